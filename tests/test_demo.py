"""``mcic demo``: A and B, a MESSAGE across SIP-3 and the attacker scenarios, every row as expected."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from mcinterconnect.deploy.demo import DemoRun, run_demo

MCIC = Path(sys.executable).with_name("mcic")

#: Scenarios the demo must show (a row each), whatever else it grows.
EXPECTED_SCENARIOS = (
    "REGISTER alice@A at its home SIP core",
    "REGISTER bob@B at its home SIP core",
    "MESSAGE alice@A -> bob@B across SIP-3",
    "(a) TLS client without a certificate -> A's SIP-3",
    "(a) MC client with a certificate of A's own CA -> A's SIP-3",
    "(b) partner certificate, REGISTER over SIP-3",
    "(c) from B, source claims A's domain (P-Asserted-Identity)",
    "(c) from B, calling user claims A's domain (mcptt-info)",
    "(d) plain TCP (no TLS) -> A's SIP-3",
)


def _run_demo(directory: Path) -> DemoRun:
    async def bounded() -> DemoRun:
        async with asyncio.timeout(30):
            return await run_demo(directory)

    return asyncio.run(bounded())


def test_run_demo_passes_every_row_quickly(tmp_path: Path) -> None:
    run = _run_demo(tmp_path / "demo")
    mismatches = [row for row in run.rows if not row.ok]
    assert not mismatches, run.table()
    assert run.ok
    scenarios = [row.scenario for row in run.rows]
    assert all(scenario in scenarios for scenario in EXPECTED_SCENARIOS), scenarios
    assert run.seconds < 20
    # Something did cross SIP-3, and both borders wrote their decisions.
    assert run.sip3_bytes
    refusals = [entry for entry in run.audit["A"] if entry["decision"] == "refuse"]
    assert {entry["reason"] for entry in refusals} >= {
        "register-refused",
        "source-spoofed",
        "calling-user-spoofed",
        "tls-handshake-failed",
    }
    assert [entry["decision"] for entry in run.audit["B"]].count("allow") >= 1
    # The deployment the demo wrote is a real one, audit log on disk included.
    assert (tmp_path / "demo" / "a" / "audit.jsonl").read_text(encoding="utf-8").count("\n") == len(
        run.audit["A"]
    )


def test_mcic_demo_command_prints_the_table(tmp_path: Path) -> None:
    keep = tmp_path / "kept"
    result = subprocess.run(
        [str(MCIC), "demo", "--keep", str(keep)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    header = [cell.strip() for cell in lines[0].split("|")]
    assert header[:3] == ["scenario", "expected", "observed"]
    assert set(lines[1]) <= {"-", "+"}
    rows = [line for line in lines[2:] if " | " in line]
    assert len(rows) >= len(EXPECTED_SCENARIOS)
    assert all(row.rstrip().endswith("| ok") for row in rows), result.stdout
    for scenario in EXPECTED_SCENARIOS:
        assert any(row.startswith(scenario) for row in rows), scenario
    assert "MISMATCH" not in result.stdout
    assert lines[-1].startswith("all scenarios as expected in ")
    assert "Traceback" not in result.stderr
    assert (keep / "deployment.toml").is_file()
