"""Running the ``mcic`` command as a real process, and what every failing command must look like."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MCIC = Path(sys.executable).with_name("mcic")
BOUND = 30.0  # seconds for any one command


def mcic(*arguments: str | Path, timeout: float = BOUND) -> subprocess.CompletedProcess[str]:
    """``mcic ARGUMENTS`` with no standard input, bounded in time."""
    return subprocess.run(
        [str(MCIC), *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def assert_one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """Exit status 1, exactly one ``mcic: error:`` line on stderr, never a traceback."""
    assert result.returncode == 1, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mcic: error: ")
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]
