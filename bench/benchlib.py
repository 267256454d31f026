"""What every benchmark script under bench/ shares: timing an operation, the --seconds/--quick
options, running a measurement under a given integer backend, and the machine facts printed with
the figures (ARCHITECTURE.md §5: ratios against a reference measured in the same run)."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def rate(operation: Callable[[], object], seconds: float, repeats: int = 1) -> dict[str, float]:
    """Calls per second and time per call of ``operation`` over about ``seconds``.

    With ``repeats`` > 1 the time is cut into rounds and the fastest round is kept (the least
    disturbed by other processes).  ``best_ms`` is the fastest single call.
    """
    operation()  # warm-up
    best_round = math.inf
    best_call = math.inf
    runs = 0
    for _ in range(repeats):
        count = 0
        start = now = time.perf_counter()
        deadline = start + seconds / repeats
        while True:
            before = now
            operation()
            count += 1
            now = time.perf_counter()
            best_call = min(best_call, now - before)
            if now >= deadline:
                break
        best_round = min(best_round, (now - start) / count)
        runs += count
    return {
        "per_second": round(1 / best_round, 1),
        "ms": round(1e3 * best_round, 4),
        "us": round(1e6 * best_round, 2),
        "best_ms": round(1e3 * best_call, 3),
        "runs": runs,
    }


def add_time_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=1.0, help="time spent per figure")
    parser.add_argument("--quick", action="store_true", help="0.3 s per figure")


def seconds_of(args: argparse.Namespace) -> float:
    return 0.3 if args.quick else float(args.seconds)


def run_under_backend(
    script: str, worker_flag: str, backend_name: str, seconds: float, timeout: float
) -> dict[str, Any] | str:
    """``script worker_flag`` in a fresh interpreter with MCIC_CRYPTO_BACKEND set; its last
    output line is a JSON object naming the backend that really ran; an error text on failure."""
    env = dict(os.environ, MCIC_CRYPTO_BACKEND=backend_name)
    src = Path(__file__).resolve().parent.parent / "src"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [sys.executable, script, worker_flag, "--seconds", str(seconds)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        stderr = done.stderr.strip()
        return f"failed: {stderr.splitlines()[-1] if stderr else done.returncode}"
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if result["backend"] != backend_name:
        return f"failed: asked for {backend_name}, ran {result['backend']}"
    return result


def machine() -> dict[str, Any]:
    """The facts printed with the figures: interpreter, CPU, load, code version, time."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "platform": platform.platform(),
        # Other work on the machine skews the figures: the 1-minute load average when they were taken.
        "loadavg_1min": round(os.getloadavg()[0], 2),
        "source_digest": source_digest(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def source_digest() -> str:
    """SHA-256 (16 hex digits) of the project modules this run loaded: runs of other code differ."""
    digest = hashlib.sha256()
    for name, module in sorted(sys.modules.items()):
        source = getattr(module, "__file__", None)
        if (name == "mcinterconnect" or name.startswith("mcinterconnect.")) and source:
            digest.update(name.encode() + b"\0" + Path(source).read_bytes())
    return digest.hexdigest()[:16]
