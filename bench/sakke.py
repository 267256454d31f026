# ruff: noqa: N806
# RFC 6508 names (Z, K_b, R_b) kept as the RFC writes them.
"""SAKKE (RFC 6508, parameter set 1) rates under both integer backends, and their ratio.

Each backend runs in its own subprocess started with ``MCIC_CRYPTO_BACKEND=int`` or ``gmpy2``
(the backend is chosen at import), on the same inputs: a UID-shaped 32-octet identifier, a fresh
KMS master secret, a random SSV.  Figures (operations per second and mean milliseconds):

* ``encapsulate``   r, R_(b,S) = [r]([b]P + Z), g^r and H (spec/crypto.md §4.5);
* ``decapsulate``   parse, the pairing w = ⟨R_(b,S), K_b⟩, SSV, TEST (§4.6);
* ``pairing``       ⟨R_(b,S), K_b⟩ alone (§4.2);
* ``rsk_issue``     K_b = [(b + z)⁻¹]P (KMS, §4.4);
* ``rsk_validate``  ⟨[b]P + Z, K_b⟩ = g (§4.4);
* ``g_power_r``     g^r in PF_p, and ``multiply_r``, [r]Q for a 1022-bit r: the two halves of
  the sender's cost.

The reference measured in the same run (ARCHITECTURE.md §5) is the pure-``int`` backend: the
ratios are int time / gmpy2 time, of the mean (> 1: gmpy2 is that many times faster).  Prints each figure
and one final JSON line.  ``--seconds`` sets the time spent per figure (``--quick``: 0.3 s).
"""

from __future__ import annotations

import argparse
import json
import platform
import secrets
import sys
from collections.abc import Callable
from typing import Any

from benchlib import add_time_options, rate, run_under_backend, seconds_of

BACKENDS = ("int", "gmpy2")
OPERATIONS = (
    "encapsulate",
    "decapsulate",
    "pairing",
    "rsk_issue",
    "rsk_validate",
    "g_power_r",
    "multiply_r",
)
IDENTIFIER = bytes(range(32))  # the shape of a 33.180 UID


def measure(seconds: float) -> dict[str, Any]:
    """Every figure in this process (its backend was chosen by the environment)."""
    from mcinterconnect.crypto import backend, ec, sakke

    z, Z = sakke.generate_master_secret()
    K_b = sakke.issue_rsk(z, IDENTIFIER)
    sakke.validate_rsk(K_b, IDENTIFIER, Z)
    ssv = secrets.token_bytes(sakke.SSV_LENGTH)
    data = sakke.encapsulate(ssv, IDENTIFIER, Z)
    if sakke.decapsulate(data, IDENTIFIER, K_b, Z) != ssv:
        raise RuntimeError("SAKKE round trip failed: nothing to time")
    R_b, _ = sakke.parse_encapsulated_data(data)
    r = sakke.derive_r(ssv, IDENTIFIER)
    point = ec.add(sakke.CURVE, ec.multiply(sakke.CURVE, int.from_bytes(IDENTIFIER, "big"), sakke.P), Z)
    operations: dict[str, Callable[[], object]] = {
        "encapsulate": lambda: sakke.encapsulate(ssv, IDENTIFIER, Z),
        "decapsulate": lambda: sakke.decapsulate(data, IDENTIFIER, K_b, Z),
        "pairing": lambda: sakke.pairing(R_b, K_b),
        "rsk_issue": lambda: sakke.issue_rsk(z, IDENTIFIER),
        "rsk_validate": lambda: sakke.validate_rsk(K_b, IDENTIFIER, Z),
        "g_power_r": lambda: sakke.pf_power(sakke.g, r),
        "multiply_r": lambda: ec.multiply(sakke.CURVE, r, point),
    }
    figures: dict[str, Any] = {"backend": backend.NAME}
    for name in OPERATIONS:
        figures[name] = rate(operations[name], seconds)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_time_options(parser)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    seconds = seconds_of(args)

    if args.worker:
        print(json.dumps(measure(seconds)))
        return 0

    print(f"SAKKE parameter set 1 — Python {platform.python_version()}, {seconds:g} s per figure")
    results: dict[str, dict[str, Any] | str] = {}
    for backend_name in BACKENDS:
        results[backend_name] = run_under_backend(
            __file__, "--worker", backend_name, seconds, timeout=120 + 20 * seconds * len(OPERATIONS)
        )
    header = "".join(f"{name + ' (/s, mean ms, best ms)':>32}" for name in BACKENDS)
    print(f"  {'operation':<14}{header}{'int / gmpy2':>14}")
    ratios: dict[str, float] = {}
    for operation in OPERATIONS:
        cells = []
        for backend_name in BACKENDS:
            outcome = results[backend_name]
            if isinstance(outcome, str):
                cells.append(f"{'-':>32}")
            else:
                figure = outcome[operation]
                cells.append(
                    f"{figure['per_second']:>8,.1f} /s {figure['ms']:>7.2f} ms ({figure['best_ms']:>6.2f})"
                )
        int_outcome, gmpy2_outcome = results["int"], results["gmpy2"]
        ratio_text = f"{'-':>14}"
        if isinstance(int_outcome, dict) and isinstance(gmpy2_outcome, dict):
            ratio = round(int_outcome[operation]["ms"] / gmpy2_outcome[operation]["ms"], 2)
            ratios[operation] = ratio
            ratio_text = f"{ratio:>14.2f}"
        print(f"  {operation:<14}{''.join(cells)}{ratio_text}")
    for backend_name, outcome in results.items():
        if isinstance(outcome, str):
            print(f"backend {backend_name}: {outcome}")
    figures = {
        "bench": "sakke",
        "parameter_set": 1,
        "seconds_per_figure": seconds,
        "results": results,
        "ratios_int_over_gmpy2": ratios,
    }
    print(json.dumps(figures, separators=(",", ":")))
    return 0 if all(isinstance(outcome, dict) for outcome in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
