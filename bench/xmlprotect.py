"""XML protection (TS 33.180 9.3, F.1.4) of a typical MESSAGE body: protect and unprotect, in µs.

The message is an MCData-style short message as it crosses SIP-3: ``multipart/mixed`` with an
mcptt-info body (access token, request URI, calling user, called party, calling group) and a
``text/plain`` payload.  Measured in one run (ARCHITECTURE.md §5: ratios against a reference measured
alongside):

* ``protect`` — ``protect_message``: encrypt the 5 sensitive elements, sign the info body, rebuild the
  multipart body (what an IS proxy pays on egress);
* ``unprotect`` — ``unprotect_message``: verify the signature, then decrypt (on ingress);
* the pieces: ``encrypt_elements``, ``decrypt_elements``, ``sign_bodies``, ``verify_bodies``;
* ``derive_keys`` — ``XmlKeys.derive`` (F.1.4, two HMACs), paid once per key, not per message;
* references: ``parse`` — ``xmlsafe.parse_xml`` of the plain info body (the least any XML-reading
  border does); ``aesgcm`` — one AES-128-GCM seal of the same octets; ``multipart`` —
  ``parse_multipart`` of the plain message body.

Prints µs per operation, the ratios and one final JSON line.  ``--seconds`` sets the time spent per
figure (``--quick``: 0.3 s), split in three rounds of which the best is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from lxml import etree

from benchlib import add_time_options, rate, seconds_of
from mcinterconnect.protect.xmlprotect import (
    XmlKeys,
    decrypt_elements,
    encrypt_elements,
    protect_message,
    sign_bodies,
    unprotect_message,
    verify_bodies,
)
from mcinterconnect.sip.message import Headers, SipRequest
from mcinterconnect.sip.multipart import BodyPart, build_multipart, parse_multipart
from mcinterconnect.xmlsafe import parse_xml

INFO_TYPE = "application/vnd.3gpp.mcptt-info+xml"
INFO = b"""<?xml version="1.0" encoding="UTF-8"?>
<mcpttinfo xmlns="urn:3gpp:ns:mcpttInfo:1.0">
  <mcptt-Params>
    <mcptt-access-token type="Normal">
      <mcpttString>eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl</mcpttString>
    </mcptt-access-token>
    <session-type>private</session-type>
    <mcptt-request-uri type="Normal"><mcpttURI>sip:mcdata-server@b.mc.example</mcpttURI></mcptt-request-uri>
    <mcptt-calling-user-id type="Normal"><mcpttURI>sip:alice@a.mc.example</mcpttURI></mcptt-calling-user-id>
    <mcptt-called-party-id type="Normal"><mcpttURI>sip:bob@b.mc.example</mcpttURI></mcptt-called-party-id>
    <mcptt-calling-group-id type="Normal"><mcpttURI>sip:grp1@b.mc.example</mcpttURI></mcptt-calling-group-id>
  </mcptt-Params>
</mcpttinfo>
"""
TEXT = b"Meet at the north gate at 14:00. Bring the spare radios."


def message() -> SipRequest:
    content_type, body = build_multipart(
        [
            BodyPart(Headers([("Content-Type", INFO_TYPE)]), INFO),
            BodyPart(Headers([("Content-Type", "text/plain;charset=utf-8")]), TEXT),
        ]
    )
    return SipRequest(
        headers=Headers(
            [
                ("Via", "SIP/2.0/TLS isproxy.a.mc.example;branch=z9hG4bK1"),
                ("From", "<sip:mcdata-server@a.mc.example>;tag=1"),
                ("To", "<sip:mcdata-server@b.mc.example>"),
                ("Call-ID", "bench"),
                ("CSeq", "1 MESSAGE"),
                ("Content-Type", content_type),
            ]
        ),
        body=body,
        method="MESSAGE",
        uri="sip:mcdata-server@b.mc.example",
    )


def measure(seconds: float) -> dict[str, Any]:
    xpk = os.urandom(16)
    keys = XmlKeys.derive(xpk, 0x3ABCDEF1, "a.mc.example")
    table = {keys.key_id: keys}
    resolve = table.get
    plain = message()
    protected = plain.copy()
    protect_message(protected, keys)
    check = protected.copy()
    if not unprotect_message(check, resolve).was_encrypted or b"alice" in protected.body:
        raise SystemExit("protection did not round-trip; nothing timed")

    def protect() -> None:
        protect_message(plain.copy(), keys)

    def unprotect() -> None:
        unprotect_message(protected.copy(), resolve)

    encrypted = encrypt_elements(INFO, keys)
    part = BodyPart(Headers([("Content-Type", INFO_TYPE), ("Content-ID", "<i@a.mc.example>")]), encrypted)
    signed = sign_bodies([part], keys)
    cipher = AESGCM(keys.confidentiality)
    iv = os.urandom(12)
    header = plain.headers.get("Content-Type") or ""
    return {
        "message_octets": len(plain.body),
        "protected_octets": len(protected.body),
        "protect": rate(protect, seconds, repeats=3),
        "unprotect": rate(unprotect, seconds, repeats=3),
        "encrypt_elements": rate(lambda: encrypt_elements(INFO, keys), seconds, repeats=3),
        "decrypt_elements": rate(lambda: decrypt_elements(encrypted, resolve), seconds, repeats=3),
        "sign_bodies": rate(lambda: sign_bodies([part], keys), seconds, repeats=3),
        "verify_bodies": rate(lambda: verify_bodies(signed, [part], resolve), seconds, repeats=3),
        "derive_keys": rate(lambda: XmlKeys.derive(xpk, 0x3ABCDEF1, "a.mc.example"), seconds, repeats=3),
        "parse": rate(lambda: parse_xml(INFO), seconds, repeats=3),
        "aesgcm": rate(lambda: cipher.encrypt(iv, INFO, None), seconds, repeats=3),
        "multipart": rate(lambda: parse_multipart(plain.body, header), seconds, repeats=3),
    }


def _line(label: str, figure: dict[str, float]) -> None:
    print(f"  {label:<20} {figure['per_second']:>12,.0f} /s  {figure['us']:>10.2f} µs")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_time_options(parser)
    args = parser.parse_args(argv)
    seconds = seconds_of(args)

    import cryptography

    print(
        f"XML protection — Python {platform.python_version()}, cryptography {cryptography.__version__}, "
        f"lxml {'.'.join(map(str, etree.LXML_VERSION))}, {seconds:g} s per figure"
    )
    figures = measure(seconds)
    print(
        f"MESSAGE body: {figures['message_octets']} octets plain, {figures['protected_octets']} protected "
        "(multipart: mcptt-info with 5 sensitive elements + text/plain)"
    )
    names = [name for name, value in figures.items() if isinstance(value, dict)]
    for name in names:
        _line(name, figures[name])
    us = {name: figures[name]["us"] for name in names}
    ratios = {
        name: round(value, 2)
        for name, value in {
            "protect_over_parse": us["protect"] / us["parse"],
            "unprotect_over_parse": us["unprotect"] / us["parse"],
            "protect_over_aesgcm": us["protect"] / us["aesgcm"],
            "unprotect_over_aesgcm": us["unprotect"] / us["aesgcm"],
            "unprotect_over_protect": us["unprotect"] / us["protect"],
            "verify_over_sign": us["verify_bodies"] / us["sign_bodies"],
            "decrypt_over_encrypt": us["decrypt_elements"] / us["encrypt_elements"],
        }.items()
    }
    print("ratios (time / time; > 1 means slower than the reference it is divided by):")
    for name, value in ratios.items():
        print(f"  {name:<26} {value:>8.2f}")
    result = {
        "bench": "xmlprotect",
        "python": platform.python_version(),
        "seconds_per_figure": seconds,
        **figures,
        "ratios": ratios,
    }
    print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
