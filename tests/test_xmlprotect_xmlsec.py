"""Wire compatibility of protect.xmlprotect with python-xmlsec (libxmlsec1), a test-only dependency.

xmlsec decrypts what we encrypt and verifies what we sign; we decrypt and verify what xmlsec
produces; each side detects the other's tampering (spec/crypto.md 8.1-8.3).  xmlsec is pinned with
lxml as a pair in pyproject.toml: its wheel bundles libxml2 and refuses an lxml built on another.

Two python-xmlsec 1.3.17 defects shape these tests (product code never uses xmlsec):

* ``EncryptionContext.encrypt_xml`` in ``Type=#Content`` mode raises ``AssertionError: Unknown node
  type: 3`` on an element holding only text, after producing a correct tree (upstream #265), and
  **crashes the interpreter** (SIGSEGV) on mixed content (text beside elements).  Here Content-mode
  encryption by xmlsec is therefore done with ``encrypt_binary`` over the serialised content, which is
  what Content mode encrypts, with the template then put in place of the content by hand; the #265 case
  itself runs in a child process, so a crash cannot take the test run down.
* ``cid:`` references are resolved through IO callbacks registered process-wide
  (``xmlsec.register_callbacks``); the fixture registers them for one test and restores the defaults.
"""

from __future__ import annotations

import base64
import io
import subprocess
import sys
from collections.abc import Iterator

import pytest
import xmlsec
from lxml import etree

from mcinterconnect.protect.xmlprotect import (
    SIGNED_NS,
    SIGNED_TYPE,
    XENC_NS,
    XmlKeys,
    XmlProtectError,
    decrypt_elements,
    encrypt_elements,
    protect_message,
    sign_bodies,
    verify_bodies,
)
from mcinterconnect.sip.message import Headers, SipRequest
from mcinterconnect.sip.multipart import BodyPart, parse_multipart

KEYS = XmlKeys.derive(bytes(range(16)), 0x3ABCDEF1, "a.mc.example")
KEY_NAME = base64.b64encode(KEYS.key_id.to_bytes(4, "big")).decode()
INFO_TYPE = "application/vnd.3gpp.mcptt-info+xml"
ALICE = "sip:alice@a.mc.example"
CAROL = "sip:carol@b.mc.example"
INFO = f"""<?xml version="1.0" encoding="UTF-8"?>
<mcpttinfo xmlns="urn:3gpp:ns:mcpttInfo:1.0" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <mcptt-Params>
    <mcptt-access-token type="Normal"><mcpttString>token-123</mcpttString></mcptt-access-token>
    <session-type>prearranged</session-type>
    <mcptt-request-uri type="Normal">
      <mcpttURI>{CAROL}</mcpttURI>
    </mcptt-request-uri>
    <mcptt-calling-user-id type="Normal"><mcpttURI>{ALICE}</mcpttURI></mcptt-calling-user-id>
    <!-- comment -->
  </mcptt-Params>
</mcpttinfo>
""".encode()
RESOURCE_LISTS = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists" xmlns:unused="urn:unused">'
    b'<!-- c --><list><entry uri="sip:bob@b.mc.example"/></list></resource-lists>'
)
NS = "{urn:3gpp:ns:mcpttInfo:1.0}"


def resolve(key_id: int) -> XmlKeys | None:
    return KEYS if key_id == KEYS.key_id else None


def c14n(document: bytes | etree._Element) -> bytes:
    root = etree.fromstring(document) if isinstance(document, bytes) else document
    return etree.tostring(root.getroottree(), method="c14n")


def aes_key() -> xmlsec.Key:
    key = xmlsec.Key.from_binary_data(xmlsec.constants.KeyDataAes, KEYS.confidentiality)
    key.name = KEY_NAME
    return key


def hmac_key() -> xmlsec.Key:
    key = xmlsec.Key.from_binary_data(xmlsec.constants.KeyDataHmac, KEYS.integrity)
    key.name = KEY_NAME
    return key


@pytest.fixture(scope="module")
def manager() -> xmlsec.KeysManager:
    # Building a KeysManager costs milliseconds (spec/crypto.md 8.1): once per module.
    keys_manager = xmlsec.KeysManager()
    keys_manager.add_key(aes_key())
    return keys_manager


def encrypted_nodes(root: etree._Element) -> list[etree._Element]:
    return list(root.iter(f"{{{XENC_NS}}}EncryptedData"))


def xmlsec_template(root: etree._Element, kind: int) -> etree._Element:
    template = xmlsec.template.encrypted_data_create(root, xmlsec.Transform.AES128_GCM, type=kind, ns="xenc")
    xmlsec.template.encrypted_data_ensure_cipher_value(template)
    key_info = xmlsec.template.encrypted_data_ensure_key_info(template, ns="ds")
    xmlsec.template.add_key_name(key_info, KEY_NAME)
    return template


def xmlsec_encrypt_content(element: etree._Element) -> None:
    """Content-mode encryption by xmlsec without ``encrypt_xml`` (see the module docstring)."""
    holder = etree.Element("t")
    holder.text = element.text
    lead = etree.tostring(holder, encoding="unicode")[3:-4] if element.text else ""
    content = (lead + "".join(etree.tostring(child, encoding="unicode") for child in element)).encode()
    context = xmlsec.EncryptionContext()
    context.key = aes_key()
    encrypted = context.encrypt_binary(xmlsec_template(element, xmlsec.EncryptionType.CONTENT), content)
    element.text = None
    for child in list(element):
        element.remove(child)
    element.set("type", "Encrypted")
    element.append(encrypted)


# --- Encryption ------------------------------------------------------------------------------------------


def test_xmlsec_decrypts_what_we_encrypt(manager: xmlsec.KeysManager) -> None:
    root = etree.fromstring(encrypt_elements(INFO, KEYS))
    nodes = encrypted_nodes(root)
    assert len(nodes) == 3
    for node in nodes:
        xmlsec.EncryptionContext(manager).decrypt(node)
    # xmlsec leaves the type attribute alone (it belongs to the MC schema, not to XML Encryption).
    assert c14n(root) == c14n(INFO.replace(b'type="Normal"', b'type="Encrypted"'))


def test_xmlsec_decrypts_our_mixed_and_text_only_content(manager: xmlsec.KeysManager) -> None:
    document = (
        b'<r xmlns="urn:d" xmlns:p="urn:p"><mcptt-request-uri>only text &amp; more</mcptt-request-uri>'
        b"<mcptt-calling-user-id>lead<p:b q='1'>x</p:b>tail<!--c--></mcptt-calling-user-id></r>"
    )
    root = etree.fromstring(encrypt_elements(document, KEYS))
    for node in encrypted_nodes(root):
        xmlsec.EncryptionContext(manager).decrypt(node)
    assert c14n(root) == c14n(
        document.replace(b"-uri>", b'-uri type="Encrypted">', 1).replace(
            b"<mcptt-calling-user-id>", b'<mcptt-calling-user-id type="Encrypted">'
        )
    )


def test_xmlsec_refuses_our_tampered_ciphertext(manager: xmlsec.KeysManager) -> None:
    root = etree.fromstring(encrypt_elements(INFO, KEYS))
    value = next(root.iter(f"{{{XENC_NS}}}CipherValue"))
    sealed = bytearray(base64.b64decode(value.text or ""))
    sealed[-1] ^= 1
    value.text = base64.b64encode(bytes(sealed)).decode()
    with pytest.raises(xmlsec.Error):
        xmlsec.EncryptionContext(manager).decrypt(encrypted_nodes(root)[0])


def test_xmlsec_does_not_decrypt_under_another_key() -> None:
    other = xmlsec.KeysManager()
    key = xmlsec.Key.from_binary_data(xmlsec.constants.KeyDataAes, bytes(16))
    key.name = KEY_NAME
    other.add_key(key)
    root = etree.fromstring(encrypt_elements(INFO, KEYS))
    with pytest.raises(xmlsec.Error):
        xmlsec.EncryptionContext(other).decrypt(encrypted_nodes(root)[0])


def test_we_decrypt_xmlsec_element_type_of_the_child() -> None:
    root = etree.fromstring(INFO)
    identity = root.find(f"{NS}mcptt-Params/{NS}mcptt-calling-user-id")
    assert identity is not None
    context = xmlsec.EncryptionContext()
    context.key = aes_key()
    context.encrypt_xml(xmlsec_template(root, xmlsec.EncryptionType.ELEMENT), identity[0])
    identity.set("type", "Encrypted")
    protected = etree.tostring(root)
    assert ALICE.encode() not in protected
    assert b"xmlenc#Element" in protected
    plain, key_ids = decrypt_elements(protected, resolve)
    assert key_ids == {KEYS.key_id}
    assert c14n(plain) == c14n(INFO)


def test_we_decrypt_xmlsec_element_type_of_the_whole_identity() -> None:
    root = etree.fromstring(INFO)
    identity = root.find(f"{NS}mcptt-Params/{NS}mcptt-request-uri")
    assert identity is not None
    context = xmlsec.EncryptionContext()
    context.key = aes_key()
    context.encrypt_xml(xmlsec_template(root, xmlsec.EncryptionType.ELEMENT), identity)
    protected = etree.tostring(root)
    assert CAROL.encode() not in protected
    plain, _ = decrypt_elements(protected, resolve)
    assert c14n(plain) == c14n(INFO)


def test_we_decrypt_xmlsec_content_type() -> None:
    root = etree.fromstring(INFO)
    for local in ("mcptt-access-token", "mcptt-request-uri", "mcptt-calling-user-id"):
        element = root.find(f"{NS}mcptt-Params/{NS}{local}")
        assert element is not None
        xmlsec_encrypt_content(element)
    protected = etree.tostring(root)
    assert b"xmlenc#Content" in protected and ALICE.encode() not in protected
    assert b"\n" in etree.tostring(encrypted_nodes(root)[0])  # xmlsec's line layout, as sent
    plain, _ = decrypt_elements(protected, resolve)
    assert c14n(plain) == c14n(INFO)


def test_we_decrypt_xmlsec_content_type_of_mixed_content() -> None:
    document = b'<r xmlns="urn:d"><mcptt-request-uri>lead<b>x</b>tail</mcptt-request-uri></r>'
    root = etree.fromstring(document)
    xmlsec_encrypt_content(root[0])
    plain, _ = decrypt_elements(etree.tostring(root), resolve)
    assert c14n(plain) == c14n(document.replace(b"<mcptt-request-uri>", b'<mcptt-request-uri type="Normal">'))


_ISSUE_265 = f"""
import sys, xmlsec
from lxml import etree
key = xmlsec.Key.from_binary_data(xmlsec.constants.KeyDataAes, bytes.fromhex("{KEYS.confidentiality.hex()}"))
key.name = "{KEY_NAME}"
root = etree.fromstring(b'<r><mcptt-access-token type="Encrypted">only-text-token</mcptt-access-token></r>')
template = xmlsec.template.encrypted_data_create(
    root, xmlsec.Transform.AES128_GCM, type=xmlsec.EncryptionType.CONTENT, ns="xenc"
)
xmlsec.template.encrypted_data_ensure_cipher_value(template)
xmlsec.template.add_key_name(xmlsec.template.encrypted_data_ensure_key_info(template, ns="ds"), key.name)
context = xmlsec.EncryptionContext()
context.key = key
try:
    context.encrypt_xml(template, root[0])
    outcome = "no error"
except AssertionError as exc:
    outcome = "AssertionError: " + str(exc)
sys.stderr.write(outcome)
sys.stdout.write(etree.tostring(root).decode())
"""


def test_we_decrypt_what_xmlsec_content_mode_leaves_despite_issue_265() -> None:
    # In a child process: the same xmlsec code path crashes the interpreter on mixed content.
    done = subprocess.run(
        [sys.executable, "-c", _ISSUE_265], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    # Either the bug is still there (#265) or it was fixed upstream: the tree is right in both cases.
    assert done.stderr in ("AssertionError: Unknown node type: 3", "no error")
    protected = done.stdout.encode()
    assert b"only-text-token" not in protected
    plain, _ = decrypt_elements(protected, resolve)
    assert c14n(plain) == c14n(
        b'<r><mcptt-access-token type="Normal">only-text-token</mcptt-access-token></r>'
    )


def test_we_refuse_xmlsec_tampered_ciphertext() -> None:
    root = etree.fromstring(INFO)
    element = root.find(f"{NS}mcptt-Params/{NS}mcptt-calling-user-id")
    assert element is not None
    xmlsec_encrypt_content(element)
    value = next(root.iter(f"{{{XENC_NS}}}CipherValue"))
    sealed = bytearray(base64.b64decode("".join((value.text or "").split())))
    sealed[14] ^= 1
    value.text = base64.b64encode(bytes(sealed)).decode()
    with pytest.raises(XmlProtectError) as info:
        decrypt_elements(etree.tostring(root), resolve)
    assert info.value.reason == "xml-decrypt"


# --- Signatures ------------------------------------------------------------------------------------------


class CidStore:
    """IO callbacks through which libxmlsec reads a ``cid:`` URI: the body of the part it names."""

    def __init__(self) -> None:
        self.bodies: dict[str, bytes] = {}
        self.opened: list[str] = []

    def set_parts(self, parts: list[BodyPart]) -> None:
        self.bodies = {f"cid:{part.content_id}": part.body for part in parts if part.content_id}

    def match(self, uri: bytes) -> bool:
        return uri.startswith(b"cid:")

    def open(self, uri: bytes) -> io.BytesIO:
        self.opened.append(uri.decode())
        return io.BytesIO(self.bodies[uri.decode()])

    def read(self, stream: io.BytesIO, buffer: memoryview) -> int:
        data = stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self, stream: io.BytesIO) -> None:
        stream.close()


@pytest.fixture
def cid_store() -> Iterator[CidStore]:
    store = CidStore()
    xmlsec.cleanup_callbacks()
    xmlsec.register_callbacks(store.match, store.open, store.read, store.close)
    try:
        yield store
    finally:
        xmlsec.cleanup_callbacks()
        xmlsec.register_default_callbacks()


def info_parts() -> list[BodyPart]:
    return [
        BodyPart(Headers([("Content-Type", INFO_TYPE)]), encrypt_elements(INFO, KEYS)),
        BodyPart(
            Headers(
                [("Content-Type", "application/resource-lists+xml"), ("Content-ID", "<rl@a.mc.example>")]
            ),
            RESOURCE_LISTS,
        ),
    ]


def xmlsec_verify(signed_body: bytes) -> int:
    root = etree.fromstring(signed_body)
    signatures = root.findall("{http://www.w3.org/2000/09/xmldsig#}Signature")
    for signature in signatures:
        context = xmlsec.SignatureContext()
        context.key = hmac_key()
        context.verify(signature)
    return len(signatures)


def test_xmlsec_verifies_what_we_sign(cid_store: CidStore) -> None:
    parts = info_parts()
    signed = sign_bodies(parts, KEYS)
    cid_store.set_parts(parts)
    assert xmlsec_verify(signed.body) == 2
    assert sorted(cid_store.opened) == sorted(f"cid:{part.content_id}" for part in parts)


def test_xmlsec_detects_a_body_changed_after_we_signed(cid_store: CidStore) -> None:
    parts = info_parts()
    signed = sign_bodies(parts, KEYS)
    parts[1].body = parts[1].body.replace(b"bob", b"eve")
    cid_store.set_parts(parts)
    with pytest.raises(xmlsec.VerificationError):
        xmlsec_verify(signed.body)


def test_xmlsec_detects_our_tampered_signature_value(cid_store: CidStore) -> None:
    parts = info_parts()
    signed = sign_bodies(parts, KEYS)
    cid_store.set_parts(parts)
    root = etree.fromstring(signed.body)
    value = root.find(".//{http://www.w3.org/2000/09/xmldsig#}SignatureValue")
    assert value is not None
    raw = bytearray(base64.b64decode(value.text or ""))
    raw[3] ^= 1
    value.text = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(xmlsec.VerificationError):
        xmlsec_verify(etree.tostring(root))


def xmlsec_sign(parts: list[BodyPart], c14n_method: object, *, transform: bool = True) -> BodyPart:
    root = etree.Element(f"{{{SIGNED_NS}}}signatures", nsmap={None: SIGNED_NS})  # type: ignore[dict-item]
    for part in parts:
        signature = xmlsec.template.create(root, c14n_method, xmlsec.Transform.HMAC_SHA256, ns="ds")
        root.append(signature)
        reference = xmlsec.template.add_reference(
            signature, xmlsec.Transform.SHA256, uri=f"cid:{part.content_id}"
        )
        if transform:
            xmlsec.template.add_transform(reference, c14n_method)
        xmlsec.template.add_key_name(xmlsec.template.ensure_key_info(signature), KEY_NAME)
        context = xmlsec.SignatureContext()
        context.key = hmac_key()
        context.sign(signature)
    return BodyPart(
        Headers([("Content-Type", SIGNED_TYPE)]), etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    )


@pytest.mark.parametrize(
    ("method", "transform"),
    [
        (xmlsec.Transform.C14N, True),
        (xmlsec.Transform.EXCL_C14N, True),
        (xmlsec.Transform.C14N, False),
    ],
    ids=["c14n", "exc-c14n", "raw-octets"],
)
def test_we_verify_what_xmlsec_signs(cid_store: CidStore, method: object, transform: bool) -> None:
    parts = info_parts()
    for number, part in enumerate(parts):
        part.headers.set("Content-ID", f"<part{number}@b.mc.example>")
    cid_store.set_parts(parts)
    signed = xmlsec_sign(parts, method, transform=transform)
    assert verify_bodies(signed, parts, resolve) == {KEYS.key_id}
    parts[0].body = parts[0].body.replace(b"prearranged", b"chat")
    with pytest.raises(XmlProtectError) as info:
        verify_bodies(signed, parts, resolve)
    assert info.value.reason == "xml-integrity"


def test_we_refuse_xmlsec_tampered_signature_value(cid_store: CidStore) -> None:
    parts = info_parts()
    parts[0].headers.set("Content-ID", "<info@b.mc.example>")
    cid_store.set_parts(parts)
    signed = xmlsec_sign(parts, xmlsec.Transform.C14N)
    signed.body = signed.body.replace(b"<ds:SignatureValue>", b"<ds:SignatureValue>AAAA", 1)
    with pytest.raises(XmlProtectError) as info:
        verify_bodies(signed, parts, resolve)
    assert info.value.reason == "xml-integrity"


# --- A whole protected message -----------------------------------------------------------------------------


def test_xmlsec_reads_a_message_we_protected(cid_store: CidStore, manager: xmlsec.KeysManager) -> None:
    message = SipRequest(
        headers=Headers([("Content-Type", INFO_TYPE)]), body=INFO, method="MESSAGE", uri="sip:x@b.mc.example"
    )
    protect_message(message, KEYS)
    parts = parse_multipart(message.body, message.headers.get("Content-Type") or "")
    info_part, signed = parts
    cid_store.set_parts([info_part])
    assert xmlsec_verify(signed.body) == 1  # verify first ...
    root = etree.fromstring(info_part.body)
    for node in encrypted_nodes(root):  # ... then decrypt
        xmlsec.EncryptionContext(manager).decrypt(node)
    assert c14n(root) == c14n(INFO.replace(b'type="Normal"', b'type="Encrypted"'))
