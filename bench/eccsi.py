"""ECCSI (RFC 6507, P-256) sign and verify rates: reference path, OpenSSL fast path, and ECDSA.

Measured in one run (ARCHITECTURE.md §5: ratios against a reference measured alongside):

* ``reference`` — ``sign_reference`` ([j]G in ``ec.py``), ``verify_reference`` (Y and
  J = [s]([HE]G + [r]Y) in ``ec.py``) and ``validate_ssk``, once per integer backend, each in a
  subprocess started with ``MCIC_CRYPTO_BACKEND=int`` or ``gmpy2`` (the backend is chosen at import);
* ``fast`` — ``sign`` ([j]G by OpenSSL) and ``Verifier.verify`` with Y cached (one OpenSSL ECDSA
  verification, spec/crypto.md §3.3), plus the first verification of a new signer (Y computed
  by ``ec.py``, in this process's backend);
* ``ecdsa`` — OpenSSL's own ECDSA P-256 with SHA-256 (sign, verify, and verify of a prehashed
  digest), the floor the fast path is compared with.

Prints each figure (operations per second and mean milliseconds), the ratios, and one final
JSON line.  ``--seconds`` sets the time spent per figure (``--quick``: 0.3 s).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec as openssl_ec
from cryptography.hazmat.primitives.asymmetric import utils as openssl_utils

from benchlib import add_time_options, rate, run_under_backend, seconds_of

MESSAGE = b"<ear>an explicit authentication request of typical size</ear>" * 8
IDENTIFIER = bytes(range(32))  # the shape of a 33.180 UID


def _keys() -> tuple[Any, Any, int, Any, bytes]:
    from mcinterconnect.crypto import eccsi

    ksak, kpak = eccsi.generate_kms_keys()
    ssk, pvt = eccsi.issue_ssk(ksak, kpak, IDENTIFIER)
    hs = eccsi.validate_ssk(ssk, pvt, kpak, IDENTIFIER)
    return eccsi, kpak, ssk, pvt, hs


def measure_reference(seconds: float) -> dict[str, Any]:
    """The reference path in this process (its backend was chosen by the environment)."""
    from mcinterconnect.crypto import backend

    eccsi, kpak, ssk, pvt, hs = _keys()
    signature = eccsi.sign_reference(MESSAGE, IDENTIFIER, ssk, pvt, kpak, hs=hs)
    return {
        "backend": backend.NAME,
        "sign": rate(lambda: eccsi.sign_reference(MESSAGE, IDENTIFIER, ssk, pvt, kpak, hs=hs), seconds),
        "verify": rate(lambda: eccsi.verify_reference(MESSAGE, signature, IDENTIFIER, kpak), seconds),
        "validate_ssk": rate(lambda: eccsi.validate_ssk(ssk, pvt, kpak, IDENTIFIER), seconds),
    }


def measure_fast(seconds: float) -> dict[str, Any]:
    from mcinterconnect.crypto import backend

    eccsi, kpak, ssk, pvt, hs = _keys()
    signature = eccsi.sign(MESSAGE, IDENTIFIER, ssk, pvt, kpak, hs=hs)
    verifier = eccsi.Verifier()
    verifier.verify(MESSAGE, signature, IDENTIFIER, kpak)
    return {
        "backend_for_y": backend.NAME,
        "sign": rate(lambda: eccsi.sign(MESSAGE, IDENTIFIER, ssk, pvt, kpak, hs=hs), seconds),
        "verify_cached": rate(lambda: verifier.verify(MESSAGE, signature, IDENTIFIER, kpak), seconds),
        "verify_new_signer": rate(
            lambda: eccsi.Verifier().verify(MESSAGE, signature, IDENTIFIER, kpak), seconds
        ),
    }


def measure_ecdsa(seconds: float) -> dict[str, Any]:
    curve = openssl_ec.SECP256R1()
    key = openssl_ec.generate_private_key(curve)
    public = key.public_key()
    algorithm = openssl_ec.ECDSA(hashes.SHA256())
    signature = key.sign(MESSAGE, algorithm)
    digest_algorithm = hashes.Hash(hashes.SHA256())
    digest_algorithm.update(MESSAGE)
    digest = digest_algorithm.finalize()
    prehashed = openssl_ec.ECDSA(openssl_utils.Prehashed(hashes.SHA256()))
    return {
        "sign": rate(lambda: key.sign(MESSAGE, algorithm), seconds),
        "verify": rate(lambda: public.verify(signature, MESSAGE, algorithm), seconds),
        "verify_prehashed": rate(lambda: public.verify(signature, digest, prehashed), seconds),
    }


def _line(label: str, figure: dict[str, float]) -> None:
    print(f"  {label:<34} {figure['per_second']:>10,.0f} /s  {figure['ms']:>9.4f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_time_options(parser)
    parser.add_argument("--reference-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    seconds = seconds_of(args)

    if args.reference_worker:
        print(json.dumps(measure_reference(seconds)))
        return 0

    import cryptography

    print(
        f"ECCSI P-256 — Python {platform.python_version()}, cryptography {cryptography.__version__}, "
        f"{seconds:g} s per figure"
    )
    reference: dict[str, Any] = {}
    for backend_name in ("int", "gmpy2"):
        outcome = run_under_backend(
            __file__, "--reference-worker", backend_name, seconds, timeout=60 + 10 * seconds
        )
        reference[backend_name] = outcome
        print(f"reference path, backend {backend_name}:")
        if isinstance(outcome, str):
            print(f"  {outcome}")
            continue
        for what in ("sign", "verify", "validate_ssk"):
            _line(what, outcome[what])
    fast = measure_fast(seconds)
    print(f"fast path (OpenSSL; Y for a new signer on backend {fast['backend_for_y']}):")
    for what in ("sign", "verify_cached", "verify_new_signer"):
        _line(what, fast[what])
    ecdsa = measure_ecdsa(seconds)
    print("OpenSSL ECDSA P-256 / SHA-256 (reference):")
    for what in ("sign", "verify", "verify_prehashed"):
        _line(what, ecdsa[what])

    ratios: dict[str, float] = {
        "fast_sign_over_ecdsa_sign": fast["sign"]["ms"] / ecdsa["sign"]["ms"],
        "fast_verify_cached_over_ecdsa_verify": fast["verify_cached"]["ms"] / ecdsa["verify"]["ms"],
        "fast_verify_new_signer_over_ecdsa_verify": fast["verify_new_signer"]["ms"] / ecdsa["verify"]["ms"],
    }
    for backend_name, outcome in reference.items():
        if isinstance(outcome, dict):
            ratios[f"reference_{backend_name}_sign_over_fast"] = outcome["sign"]["ms"] / fast["sign"]["ms"]
            ratios[f"reference_{backend_name}_verify_over_fast_cached"] = (
                outcome["verify"]["ms"] / fast["verify_cached"]["ms"]
            )
    ratios = {name: round(value, 2) for name, value in ratios.items()}
    print("ratios (time / time; > 1 means slower than the reference it is divided by):")
    for name, value in ratios.items():
        print(f"  {name:<46} {value:>8.2f}")
    figures = {
        "bench": "eccsi",
        "seconds_per_figure": seconds,
        "reference": reference,
        "fast": fast,
        "ecdsa": ecdsa,
        "ratios": ratios,
    }
    print(json.dumps(figures, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
