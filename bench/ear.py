"""EAR (TS 33.180 9.6, Annex J) rates: build + sign, parse + verify, the receiver checks, and ECDSA.

Measured in one run (ARCHITECTURE.md §5: ratios against a reference measured alongside):

* ``build_sign`` — ``new_payload`` + ``sign_ear`` (ECCSI, [j]G by OpenSSL) + ``encode_header_value``:
  what a sending border or server pays per request;
* ``decode`` — ``decode_header_value`` + ``parse_signed_ear``: the codec alone;
* ``parse_verify_cached`` — decode + ``verify_ear_signature`` with a shared ``eccsi.Verifier``
  (Y cached: one OpenSSL ECDSA verification, the steady state of a border talking to a few
  partner servers);
* ``parse_verify_uncached`` — the same with a fresh ``Verifier`` each time (a new signer or key
  period: Y = [HS]PVT + KPAK computed by ``ec.py`` on this process's integer backend);
* ``check_ear_cached`` — every receiver check of WA-SP-26 (``ear_check.check_ear``) with the
  shared Verifier;
* ``ecdsa`` — OpenSSL ECDSA P-256 / SHA-256 sign and verify of the same payload octets, the
  reference.

Prints each figure (operations per second and mean milliseconds), the ratios, and one final JSON
line.  ``--seconds`` sets the time spent per figure (``--quick``: 0.3 s), split in three rounds
of which the best is kept.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec as openssl_ec

from benchlib import add_time_options, rate, seconds_of
from mcinterconnect.crypto import backend, eccsi
from mcinterconnect.crypto.uid import KeyPeriod
from mcinterconnect.protect import ear_check
from mcinterconnect.protect.ear import (
    RequestPayload,
    RequestType,
    Role,
    decode_header_value,
    ear_signer_identity,
    encode_header_value,
    new_payload,
    parse_signed_ear,
    sign_ear,
    verify_ear_signature,
)

KMS_URI = "kms.a.mc.example"
PERIOD = KeyPeriod(2_592_000, 0)
SOURCE = "sip:mcptt-server@a.mc.example"
TARGET = "sip:mcptt-server@b.mc.example"


def measure(seconds: float) -> dict[str, Any]:
    now = time.time()
    ksak, kpak = eccsi.generate_kms_keys()
    identity = ear_signer_identity(SOURCE, int(now), kms_uri=KMS_URI, key_period=PERIOD)
    ssk, pvt = eccsi.issue_ssk(ksak, kpak, identity)
    request = RequestPayload(RequestType.GROUP, 1, int(now) + 3600)

    def build_sign() -> str:
        payload = new_payload(
            source_role=Role.MCX_SERVER,
            source_id=SOURCE,
            target_role=Role.MCX_SERVER,
            target_id=TARGET,
            request=request,
            now=now,
        )
        signed = sign_ear(payload, ssk=ssk, pvt=pvt, kpak=kpak, kms_uri=KMS_URI, key_period=PERIOD)
        return encode_header_value(signed)

    header = build_sign()
    shared = eccsi.Verifier()

    def parse_verify(verifier: eccsi.Verifier) -> None:
        signed = parse_signed_ear(decode_header_value(header))
        verify_ear_signature(signed, kpak=kpak, kms_uri=KMS_URI, key_period=PERIOD, verifier=verifier)

    policy = ear_check.EarPolicy()

    def check() -> None:
        verdict = ear_check.check_ear(
            header,
            now=now,
            policy=policy,
            source_domains=("a.mc.example",),
            target_domains=("b.mc.example",),
            allowed_request_types=lambda request_type: request_type is RequestType.GROUP,
            kms_uri=KMS_URI,
            kpak=kpak,
            key_period=PERIOD,
            verifier=shared,
        )
        if not verdict.ok:
            raise SystemExit(f"check_ear refused the benchmark EAR: {verdict.reason}: {verdict.detail}")

    check()  # a refused EAR is never timed
    payload_octets = parse_signed_ear(decode_header_value(header)).payload_octets
    key = openssl_ec.generate_private_key(openssl_ec.SECP256R1())
    public = key.public_key()
    algorithm = openssl_ec.ECDSA(hashes.SHA256())
    ecdsa_signature = key.sign(payload_octets, algorithm)
    return {
        "ear_octets": len(decode_header_value(header)),
        "header_characters": len(header),
        "build_sign": rate(build_sign, seconds, repeats=3),
        "decode": rate(lambda: parse_signed_ear(decode_header_value(header)), seconds, repeats=3),
        "parse_verify_cached": rate(lambda: parse_verify(shared), seconds, repeats=3),
        "parse_verify_uncached": rate(lambda: parse_verify(eccsi.Verifier()), seconds, repeats=3),
        "check_ear_cached": rate(check, seconds, repeats=3),
        "ecdsa_sign": rate(lambda: key.sign(payload_octets, algorithm), seconds, repeats=3),
        "ecdsa_verify": rate(
            lambda: public.verify(ecdsa_signature, payload_octets, algorithm), seconds, repeats=3
        ),
    }


def _line(label: str, figure: dict[str, float]) -> None:
    print(f"  {label:<34} {figure['per_second']:>10,.0f} /s  {figure['ms']:>9.4f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_time_options(parser)
    args = parser.parse_args(argv)
    seconds = seconds_of(args)

    import cryptography

    print(
        f"EAR — Python {platform.python_version()}, cryptography {cryptography.__version__}, "
        f"backend {backend.NAME}, {seconds:g} s per figure"
    )
    figures = measure(seconds)
    print(f"EAR of {figures['ear_octets']} octets ({figures['header_characters']} base64 characters):")
    for what in (
        "build_sign",
        "decode",
        "parse_verify_cached",
        "parse_verify_uncached",
        "check_ear_cached",
        "ecdsa_sign",
        "ecdsa_verify",
    ):
        _line(what, figures[what])
    ms = {name: value["ms"] for name, value in figures.items() if isinstance(value, dict)}
    ratios = {
        name: round(value, 2)
        for name, value in {
            "build_sign_over_ecdsa_sign": ms["build_sign"] / ms["ecdsa_sign"],
            "parse_verify_cached_over_ecdsa_verify": ms["parse_verify_cached"] / ms["ecdsa_verify"],
            "parse_verify_uncached_over_ecdsa_verify": ms["parse_verify_uncached"] / ms["ecdsa_verify"],
            "check_ear_cached_over_ecdsa_verify": ms["check_ear_cached"] / ms["ecdsa_verify"],
            "uncached_over_cached": ms["parse_verify_uncached"] / ms["parse_verify_cached"],
            "decode_share_of_check": ms["decode"] / ms["check_ear_cached"],
        }.items()
    }
    print("ratios (time / time; > 1 means slower than the reference it is divided by):")
    for name, value in ratios.items():
        print(f"  {name:<46} {value:>8.2f}")
    result = {
        "bench": "ear",
        "python": platform.python_version(),
        "backend": backend.NAME,
        "seconds_per_figure": seconds,
        **figures,
        "ratios": ratios,
    }
    print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
