"""Tests of mcinterconnect.protect.xmlprotect: XML confidentiality and integrity (TS 33.180 9.3, F.1.4)."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from mcinterconnect.crypto.kdf import derive_xml_keys
from mcinterconnect.crypto.keyids import Purpose
from mcinterconnect.mcinfo import McInfoEncryptedError, McpttInfo, find_mcptt_info
from mcinterconnect.protect import xmlprotect
from mcinterconnect.protect.xmlprotect import (
    AES128_GCM,
    C14N,
    DSIG_NS,
    EXC_C14N,
    HMAC_SHA256,
    MC_XML_TYPES,
    SENSITIVE_ELEMENTS,
    SHA256,
    SIGNED_NS,
    SIGNED_TYPE,
    TYPE_CONTENT,
    XENC_NS,
    KeyResolver,
    Unprotected,
    XmlFault,
    XmlKeys,
    XmlProtectError,
    decrypt_elements,
    encrypt_elements,
    is_protected,
    protect_message,
    sign_bodies,
    unprotect_message,
    verify_bodies,
)
from mcinterconnect.sip.message import Headers, SipMessage, SipRequest
from mcinterconnect.sip.multipart import BodyPart, build_multipart, parse_multipart
from mcinterconnect.sip.parser import parse_message

SPK = bytes(range(16))
SPK_ID = 0x3ABCDEF1
CSK = bytes(range(16, 32))
CSK_ID = 0x21234567
SPK_KEYS = XmlKeys.derive(SPK, SPK_ID, "a.mc.example")
CSK_KEYS = XmlKeys.derive(CSK, CSK_ID, "sip:alice@a.mc.example")
INFO_TYPE = "application/vnd.3gpp.mcptt-info+xml"

ALICE = "sip:alice@a.mc.example"
CAROL = "sip:carol@b.mc.example"
GROUP = "sip:grp1@b.mc.example"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.secret-token"

# An mcptt-info body as a server writes it, with elements that are not encrypted and a comment.
INFO = f"""<?xml version="1.0" encoding="UTF-8"?>
<mcpttinfo xmlns="urn:3gpp:ns:mcpttInfo:1.0" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <mcptt-Params>
    <mcptt-access-token type="Normal"><mcpttString>{TOKEN}</mcpttString></mcptt-access-token>
    <session-type>prearranged</session-type>
    <mcptt-request-uri type="Normal">
      <mcpttURI>{CAROL}</mcpttURI>
    </mcptt-request-uri>
    <mcptt-calling-user-id type="Normal"><mcpttURI>{ALICE}</mcpttURI></mcptt-calling-user-id>
    <mcptt-calling-group-id type="Normal"><mcpttURI>{GROUP}</mcpttURI></mcptt-calling-group-id>
    <emergency-ind type="Normal"><mcpttBoolean>false</mcpttBoolean></emergency-ind>
    <!-- a comment -->
    <anyExt><x xmlns="urn:example:ext">kept</x></anyExt>
  </mcptt-Params>
</mcpttinfo>
""".encode()
PROTECTED_VALUES = (ALICE, CAROL, GROUP, TOKEN)

SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
TEXT = "Hello from Alice — ünïcode".encode()


def resolver(*known: XmlKeys) -> KeyResolver:
    table = {keys.key_id: keys for keys in known}
    return table.get


RESOLVE = resolver(SPK_KEYS, CSK_KEYS)


def c14n(document: bytes) -> bytes:
    return etree.tostring(etree.fromstring(document).getroottree(), method="c14n")


def info_message() -> SipRequest:
    return SipRequest(
        headers=Headers(
            [
                ("Via", "SIP/2.0/TLS isproxy.a.mc.example;branch=z9hG4bK1"),
                ("From", "<sip:mcptt-server@a.mc.example>;tag=1"),
                ("To", "<sip:mcptt-server@b.mc.example>"),
                ("Call-ID", "c1"),
                ("CSeq", "1 MESSAGE"),
                ("Content-Type", INFO_TYPE),
            ]
        ),
        body=INFO,
        method="MESSAGE",
        uri="sip:mcptt-server@b.mc.example",
    )


def multipart_message() -> SipRequest:
    content_type, body = build_multipart(
        [
            BodyPart(Headers([("Content-Type", "application/sdp")]), SDP),
            BodyPart(Headers([("Content-Type", INFO_TYPE)]), INFO),
            BodyPart(Headers([("Content-Type", "text/plain;charset=utf-8")]), TEXT),
        ],
        boundary="boundary42",
    )
    message = info_message()
    message.headers.set("Content-Type", content_type)
    message.body = body
    return message


def parts_of(message: SipMessage) -> list[BodyPart]:
    return parse_multipart(message.body, message.headers.get("Content-Type") or "")


def refusal(call: Callable[[], object]) -> XmlProtectError:
    with pytest.raises(XmlProtectError) as info:
        call()
    error = info.value
    assert isinstance(error.reason, XmlFault)
    message = str(error)
    assert message and "\n" not in message
    for keys in (SPK_KEYS, CSK_KEYS):
        for secret in (keys.confidentiality, keys.integrity):
            assert secret.hex() not in message and base64.b64encode(secret).decode() not in message
    return error


def encrypted_data(document: bytes) -> list[etree._Element]:
    return list(etree.fromstring(document).iter(f"{{{XENC_NS}}}EncryptedData"))


def with_cipher_value(document: bytes, change: Callable[[bytes], bytes], index: int = 0) -> bytes:
    root = etree.fromstring(document)
    value = list(root.iter(f"{{{XENC_NS}}}CipherValue"))[index]
    value.text = base64.b64encode(change(base64.b64decode(value.text or ""))).decode()
    return etree.tostring(root)


def flip(position: int) -> Callable[[bytes], bytes]:
    def change(data: bytes) -> bytes:
        mutable = bytearray(data)
        mutable[position] ^= 0x01
        return bytes(mutable)

    return change


# --- Keys -------------------------------------------------------------------------------------------------


def test_keys_are_the_f14_keys() -> None:
    expected = derive_xml_keys(SPK, SPK_ID, "a.mc.example")
    assert XmlKeys(SPK_ID, expected.confidentiality, expected.integrity) == SPK_KEYS


def test_keys_never_show_in_repr() -> None:
    text = repr(SPK_KEYS)
    assert SPK_KEYS.confidentiality.hex() not in text and str(SPK_KEYS.integrity) not in text
    assert f"key_id={SPK_ID}" in text


@pytest.mark.parametrize("purpose", [Purpose.CSK, Purpose.SPK])
def test_csk_and_spk_key_ids_are_accepted(purpose: Purpose) -> None:
    key_id = (purpose << 28) | 0x0123456
    keys = XmlKeys.derive(SPK, key_id, "a.mc.example")
    protected = encrypt_elements(INFO, keys)
    assert decrypt_elements(protected, resolver(keys))[1] == {key_id}


@pytest.mark.parametrize(
    "key_id", [0x01234567, 0x11234567, 0x41234567, 0x51234567, 0x61234567, 0x71234567, 0xF1234567]
)
def test_other_purposes_are_refused(key_id: int) -> None:
    assert refusal(lambda: XmlKeys.derive(SPK, key_id, "a.mc.example")).reason == "xml-key-purpose"
    assert refusal(lambda: XmlKeys(key_id, bytes(16), bytes(16))).reason == "xml-key-purpose"


@pytest.mark.parametrize("key_id", [-1, 1 << 32, True])
def test_key_ids_out_of_range_are_refused(key_id: int) -> None:
    assert refusal(lambda: XmlKeys(key_id, bytes(16), bytes(16))).reason == XmlFault.KEY_PURPOSE


def test_key_lengths_are_checked() -> None:
    with pytest.raises(ValueError, match="confidentiality key must be 16 bytes"):
        XmlKeys(SPK_ID, bytes(15), bytes(16))
    with pytest.raises(ValueError, match="integrity key must be 16 bytes"):
        XmlKeys(SPK_ID, bytes(16), b"")


def test_a_received_key_id_with_another_purpose_is_refused_before_lookup() -> None:
    asked: list[int] = []
    gmk_id = 0x01234567
    document = encrypt_elements(INFO, SPK_KEYS).replace(
        base64.b64encode(SPK_ID.to_bytes(4, "big")), base64.b64encode(gmk_id.to_bytes(4, "big"))
    )

    def spy(key_id: int) -> XmlKeys | None:
        asked.append(key_id)
        return SPK_KEYS

    assert refusal(lambda: decrypt_elements(document, spy)).reason == "xml-key-purpose"
    assert asked == []


# --- Confidentiality ---------------------------------------------------------------------------------------


def test_sensitive_elements_cover_the_three_services() -> None:
    for service in ("mcptt", "mcdata", "mcvideo"):
        for item in ("request-uri", "calling-user-id", "called-party-id", "calling-group-id", "access-token"):
            assert f"{service}-{item}" in SENSITIVE_ELEMENTS
    assert {"mcdata-client-id", "originated-by"} <= SENSITIVE_ELEMENTS
    assert "session-type" not in SENSITIVE_ELEMENTS and "emergency-ind" not in SENSITIVE_ELEMENTS
    assert {
        INFO_TYPE,
        "application/vnd.3gpp.mcdata-info+xml",
        "application/resource-lists+xml",
    } <= MC_XML_TYPES


def test_only_listed_elements_are_encrypted_and_their_values_vanish() -> None:
    protected = encrypt_elements(INFO, SPK_KEYS)
    for value in PROTECTED_VALUES:
        assert value.encode() not in protected
    root = etree.fromstring(protected)
    encrypted = {etree.QName(node.getparent()).localname for node in encrypted_data(protected)}
    assert encrypted == {
        "mcptt-access-token",
        "mcptt-request-uri",
        "mcptt-calling-user-id",
        "mcptt-calling-group-id",
    }
    for node in root.iter():
        local = etree.QName(node).localname if isinstance(node.tag, str) else ""
        if local in encrypted:
            assert node.get("type") == "Encrypted"
            assert [etree.QName(child).localname for child in node] == ["EncryptedData"]
            assert node.text is None
    # What is not listed stays exactly as it was.
    assert b"<session-type>prearranged</session-type>" in protected
    assert b'<emergency-ind type="Normal"><mcpttBoolean>false</mcpttBoolean></emergency-ind>' in protected
    assert b"<!-- a comment -->" in protected and b"kept" in protected


def test_encrypted_data_has_the_profile_form() -> None:
    protected = encrypt_elements(INFO, SPK_KEYS, elements={"mcptt-calling-user-id"})
    (node,) = encrypted_data(protected)
    assert node.get("Type") == TYPE_CONTENT == "http://www.w3.org/2001/04/xmlenc#Content"
    method, key_info, cipher_data = list(node)
    assert method.tag == f"{{{XENC_NS}}}EncryptionMethod"
    assert method.get("Algorithm") == AES128_GCM == "http://www.w3.org/2009/xmlenc11#aes128-gcm"
    assert key_info.tag == f"{{{DSIG_NS}}}KeyInfo"
    (key_name,) = list(key_info)
    assert key_name.tag == f"{{{DSIG_NS}}}KeyName"
    assert base64.b64decode(key_name.text or "") == bytes.fromhex("3abcdef1")
    (value,) = list(cipher_data)
    assert value.tag == f"{{{XENC_NS}}}CipherValue"
    sealed = base64.b64decode(value.text or "")
    plaintext = xmlprotect._open_cipher_value(SPK_KEYS.confidentiality, sealed)
    assert len(sealed) == 12 + len(plaintext) + 16
    # The content, standing alone: each child carries the namespace declarations in scope (xsi too,
    # since a QName in an attribute value may need one).
    assert (
        plaintext
        == (
            f'<mcpttURI xmlns="urn:3gpp:ns:mcpttInfo:1.0" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            f"{ALICE}</mcpttURI>"
        ).encode()
    )


def test_each_encryption_draws_a_new_iv() -> None:
    first = encrypt_elements(INFO, SPK_KEYS, elements={"mcptt-calling-user-id"})
    second = encrypt_elements(INFO, SPK_KEYS, elements={"mcptt-calling-user-id"})
    iv = [base64.b64decode(encrypted_data(doc)[0][2][0].text or "")[:12] for doc in (first, second)]
    assert iv[0] != iv[1]


def test_round_trip_restores_the_document() -> None:
    protected = encrypt_elements(INFO, SPK_KEYS)
    plain, key_ids = decrypt_elements(protected, RESOLVE)
    assert key_ids == {SPK_ID}
    assert c14n(plain) == c14n(INFO)
    assert plain.startswith(b"<?xml")


def test_round_trip_of_content_with_text_comments_prefixes_and_references() -> None:
    document = (
        b'<r xmlns="urn:d" xmlns:p="urn:p"><mcdata-calling-user-id a="1">lead &amp; &lt;'
        b"<!-- c --><p:x p:q='2'>in&#13;side</p:x>tail<y/>end</mcdata-calling-user-id></r>"
    )
    protected = encrypt_elements(document, CSK_KEYS)
    assert b"lead" not in protected and b"inside" not in protected
    plain, _ = decrypt_elements(protected, RESOLVE)
    expected = document.replace(b'a="1"', b'a="1" type="Normal"')
    assert c14n(plain) == c14n(expected)


def test_elements_without_a_type_attribute_get_one() -> None:
    document = (
        b'<r xmlns="urn:3gpp:ns:mcdataInfo:1.0">'
        b"<mcdata-request-uri><mcdataURI>sip:x@y</mcdataURI></mcdata-request-uri></r>"
    )
    protected = encrypt_elements(document, SPK_KEYS)
    assert b'type="Encrypted"' in protected
    plain, _ = decrypt_elements(protected, RESOLVE)
    assert b'<mcdata-request-uri type="Normal"><mcdataURI>sip:x@y</mcdataURI></mcdata-request-uri>' in plain


def test_an_empty_element_is_left_as_it_is() -> None:
    document = b'<r><mcptt-access-token type="Normal"/><mcptt-request-uri> </mcptt-request-uri></r>'
    protected = encrypt_elements(document, SPK_KEYS)
    assert b'<mcptt-access-token type="Normal"/>' in protected
    assert len(encrypted_data(protected)) == 1  # white space is content
    assert c14n(decrypt_elements(protected, RESOLVE)[0]) == c14n(
        document.replace(b"<mcptt-request-uri>", b'<mcptt-request-uri type="Normal">')
    )


def test_the_element_list_is_a_parameter() -> None:
    protected = encrypt_elements(INFO, SPK_KEYS, elements=["mcptt-calling-group-id", "session-type"])
    parents = sorted(etree.QName(node.getparent()).localname for node in encrypted_data(protected))
    assert parents == ["mcptt-calling-group-id", "session-type"]
    assert ALICE.encode() in protected and GROUP.encode() not in protected


def test_already_encrypted_elements_pass_as_they_are() -> None:
    once = encrypt_elements(INFO, SPK_KEYS)
    twice = encrypt_elements(once, CSK_KEYS)
    assert c14n(twice) == c14n(once)
    assert decrypt_elements(twice, RESOLVE)[1] == {SPK_ID}


def test_an_element_inside_a_listed_element_goes_with_it() -> None:
    document = (
        b"<r><mcptt-request-uri><mcptt-calling-user-id>x</mcptt-calling-user-id></mcptt-request-uri></r>"
    )
    protected = encrypt_elements(document, SPK_KEYS)
    assert len(encrypted_data(protected)) == 1
    assert c14n(decrypt_elements(protected, RESOLVE)[0]) == c14n(
        document.replace(b"<mcptt-request-uri>", b'<mcptt-request-uri type="Normal">')
    )


def test_documents_without_work_come_back_byte_for_byte() -> None:
    document = b"<r>\n  <session-type>x</session-type>\n</r>"
    assert encrypt_elements(document, SPK_KEYS) is document
    assert decrypt_elements(document, RESOLVE) == (document, set())


def test_mcinfo_reads_the_result() -> None:
    message = info_message()
    message.body = encrypt_elements(INFO, SPK_KEYS)
    with pytest.raises(McInfoEncryptedError):
        find_mcptt_info(message)
    message.body = decrypt_elements(message.body, RESOLVE)[0]
    assert find_mcptt_info(message) == McpttInfo(
        request_uri=CAROL, calling_user_id=ALICE, calling_group_id=GROUP, session_type="prearranged"
    )


def test_unknown_key_id() -> None:
    protected = encrypt_elements(INFO, SPK_KEYS)
    error = refusal(lambda: decrypt_elements(protected, resolver(CSK_KEYS)))
    assert error.reason == "xml-unknown-key"
    assert "3abcdef1" in str(error)


def test_a_resolver_giving_keys_of_another_id_is_refused() -> None:
    protected = encrypt_elements(INFO, SPK_KEYS)
    assert refusal(lambda: decrypt_elements(protected, lambda _: CSK_KEYS)).reason == "xml-unknown-key"


@pytest.mark.parametrize(
    ("label", "change"),
    [
        ("iv", flip(0)),
        ("ciphertext", flip(12)),
        ("tag", flip(-1)),
        ("truncated", lambda data: data[:-1]),
        ("appended", lambda data: data + b"\x00"),
    ],
)
def test_tampered_ciphertext_does_not_decrypt(label: str, change: Callable[[bytes], bytes]) -> None:
    tampered = with_cipher_value(encrypt_elements(INFO, SPK_KEYS), change)
    error = refusal(lambda: decrypt_elements(tampered, RESOLVE))
    assert error.reason == "xml-decrypt", label


def test_the_wrong_key_under_the_right_id_does_not_decrypt() -> None:
    protected = encrypt_elements(INFO, SPK_KEYS)
    impostor = XmlKeys.derive(bytes(16), SPK_ID, "a.mc.example")
    assert refusal(lambda: decrypt_elements(protected, resolver(impostor))).reason == "xml-decrypt"


def test_swapping_two_ciphertexts_still_decrypts_and_is_why_signatures_exist() -> None:
    # GCM without AAD does not bind a CipherValue to its element: integrity of the body is the signature's.
    protected = encrypt_elements(INFO, SPK_KEYS)
    root = etree.fromstring(protected)
    values = list(root.iter(f"{{{XENC_NS}}}CipherValue"))
    values[1].text, values[2].text = values[2].text, values[1].text
    plain, _ = decrypt_elements(etree.tostring(root), RESOLVE)
    assert plain.index(ALICE.encode()) < plain.index(CAROL.encode())


def _edit(document: bytes, edit: Callable[[etree._Element], None]) -> bytes:
    root = etree.fromstring(document)
    edit(next(root.iter(f"{{{XENC_NS}}}EncryptedData")))
    return etree.tostring(root)


def _set_text(path: str, text: str) -> Callable[[etree._Element], None]:
    def edit(node: etree._Element) -> None:
        target = node.find(path, {"xenc": XENC_NS, "ds": DSIG_NS})
        assert target is not None
        target.text = text

    return edit


def _remove(path: str) -> Callable[[etree._Element], None]:
    def edit(node: etree._Element) -> None:
        target = node.find(path, {"xenc": XENC_NS, "ds": DSIG_NS})
        assert target is not None
        target.getparent().remove(target)  # type: ignore[union-attr]

    return edit


def _cipher_reference(node: etree._Element) -> None:
    cipher_data = node.find(f"{{{XENC_NS}}}CipherData")
    assert cipher_data is not None
    cipher_data[0].tag = f"{{{XENC_NS}}}CipherReference"
    cipher_data[0].set("URI", "http://127.0.0.1:9/steal")


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda node: node.set("Type", "urn:other"), "has Type 'urn:other'"),
        (lambda node: node.attrib.pop("Type"), "has Type None"),
        (
            lambda node: node[0].set("Algorithm", "http://www.w3.org/2001/04/xmlenc#aes128-cbc"),
            "EncryptionMethod",
        ),
        (_remove("xenc:EncryptionMethod"), "EncryptionMethod must be"),
        (_remove("ds:KeyInfo"), "has no KeyInfo"),
        (_set_text("ds:KeyInfo/ds:KeyName", "not base64!"), "KeyName is not base64"),
        (_set_text("ds:KeyInfo/ds:KeyName", ""), "KeyName is empty"),
        (_set_text("ds:KeyInfo/ds:KeyName", "AAAAAAA="), "holds 5 octets"),
        (_set_text("xenc:CipherData/xenc:CipherValue", "AAAA"), "shorter than IV and tag"),
        (_set_text("xenc:CipherData/xenc:CipherValue", "é"), "CipherValue is not base64"),
        (_remove("xenc:CipherData"), "has no CipherData"),
        (_cipher_reference, "must hold one CipherValue"),
        (lambda node: etree.SubElement(node, "{urn:x}extra"), "unexpected extra"),
        (lambda node: etree.SubElement(node[1], f"{{{DSIG_NS}}}RetrievalMethod"), "exactly one KeyName"),
    ],
)
def test_malformed_encrypted_data(edit: Callable[[etree._Element], None], fragment: str) -> None:
    document = _edit(encrypt_elements(INFO, SPK_KEYS), edit)
    error = refusal(lambda: decrypt_elements(document, RESOLVE))
    assert error.reason == "xml-malformed"
    assert fragment in str(error)


def test_encrypted_data_at_the_root_or_nested_is_refused() -> None:
    protected = encrypt_elements(b"<r><mcptt-request-uri>x</mcptt-request-uri></r>", SPK_KEYS)
    node = encrypted_data(protected)[0]
    assert "document root" in str(refusal(lambda: decrypt_elements(etree.tostring(node), RESOLVE)))
    root = etree.fromstring(protected)
    inner = etree.fromstring(etree.tostring(node))
    properties = etree.SubElement(
        next(root.iter(f"{{{XENC_NS}}}EncryptedData")), f"{{{XENC_NS}}}EncryptionProperties"
    )
    properties.append(inner)
    assert "inside EncryptedData" in str(refusal(lambda: decrypt_elements(etree.tostring(root), RESOLVE)))


def _sealed_document(plaintext: bytes, *, kind: str = TYPE_CONTENT) -> bytes:
    """A document whose one EncryptedData holds ``plaintext`` sealed with the SPK keys."""
    document = encrypt_elements(b"<r><mcptt-request-uri>x</mcptt-request-uri></r>", SPK_KEYS)
    iv = bytes(12)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    sealed = iv + AESGCM(SPK_KEYS.confidentiality).encrypt(iv, plaintext, None)
    root = etree.fromstring(document)
    next(root.iter(f"{{{XENC_NS}}}CipherValue")).text = base64.b64encode(sealed).decode()
    next(root.iter(f"{{{XENC_NS}}}EncryptedData")).set("Type", kind)
    return etree.tostring(root)


def test_element_type_needs_exactly_one_element() -> None:
    element = "http://www.w3.org/2001/04/xmlenc#Element"
    plain, _ = decrypt_elements(_sealed_document(b"<a>1</a>", kind=element), RESOLVE)
    assert c14n(plain) == c14n(b'<r><mcptt-request-uri type="Normal"><a>1</a></mcptt-request-uri></r>')
    for plaintext in (b"<a/><b/>", b"text", b"x<a/>"):
        document = _sealed_document(plaintext, kind=element)
        assert (
            refusal(lambda document=document: decrypt_elements(document, RESOLVE)).reason == "xml-malformed"
        )


@pytest.mark.parametrize(
    ("plaintext", "fragment"),
    [
        (b"<a>", "malformed XML"),
        (b"\xff", "not UTF-8"),
        (b"</xmlprotect-fragment><x>", "malformed XML"),
        (b"<?pi x?>", "processing instruction"),
    ],
)
def test_decrypted_content_is_parsed_safely(plaintext: bytes, fragment: str) -> None:
    error = refusal(lambda: decrypt_elements(_sealed_document(plaintext), RESOLVE))
    assert error.reason == "xml-malformed"
    assert fragment in str(error)


def test_decrypted_content_sees_the_namespaces_in_scope() -> None:
    document = _sealed_document(b"<p:a xmlns:p='urn:p'><b/></p:a>")
    plain, _ = decrypt_elements(document.replace(b"<r>", b'<r xmlns="urn:d">'), RESOLVE)
    assert etree.fromstring(plain)[0][0][0].tag == "{urn:d}b"


# --- Integrity ---------------------------------------------------------------------------------------------


def info_parts() -> list[BodyPart]:
    resource_lists = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">'
        b'<list><entry uri="sip:bob@b.mc.example"/></list></resource-lists>'
    )
    return [
        BodyPart(Headers([("Content-Type", INFO_TYPE)]), INFO),
        BodyPart(
            Headers([("Content-Type", "application/resource-lists+xml"), ("Content-ID", "<rl1@a.example>")]),
            resource_lists,
        ),
    ]


def test_signed_body_has_the_profile_form() -> None:
    parts = info_parts()
    signed = sign_bodies(parts, SPK_KEYS)
    assert signed.content_type == SIGNED_TYPE == "application/vnd.3gpp.mcptt-signed+xml"
    assert parts[1].content_id == "rl1@a.example"
    assert re.fullmatch(r"[0-9a-f]{32}@xmlprotect\.invalid", parts[0].content_id or "")
    root = etree.fromstring(signed.body)
    assert root.tag == f"{{{SIGNED_NS}}}signatures" and SIGNED_NS == "urn:3gpp:ns:mcpttSignedDoc:1.0"
    signatures = list(root)
    assert [sig.get("Id") for sig in signatures] == ["signature1", "signature2"]
    for signature, part in zip(signatures, parts, strict=True):
        ns = {"ds": DSIG_NS}
        assert signature.findtext("ds:KeyInfo/ds:KeyName", namespaces=ns) == "Orze8Q=="
        info = signature.find("ds:SignedInfo", ns)
        assert info is not None
        assert info.find("ds:CanonicalizationMethod", ns).get("Algorithm") == C14N  # type: ignore[union-attr]
        assert info.find("ds:SignatureMethod", ns).get("Algorithm") == HMAC_SHA256  # type: ignore[union-attr]
        reference = info.find("ds:Reference", ns)
        assert reference is not None
        assert reference.get("URI") == f"cid:{part.content_id}"
        assert [t.get("Algorithm") for t in reference.iterfind("ds:Transforms/ds:Transform", ns)] == [C14N]
        assert reference.find("ds:DigestMethod", ns).get("Algorithm") == SHA256  # type: ignore[union-attr]
        canonical = etree.tostring(
            etree.fromstring(part.body).getroottree(), method="c14n", with_comments=False
        )
        digest = base64.b64decode(reference.findtext("ds:DigestValue", namespaces=ns) or "")
        assert digest == hashlib.sha256(canonical).digest()
        value = base64.b64decode(signature.findtext("ds:SignatureValue", namespaces=ns) or "")
        import hmac as hmac_module

        assert value == hmac_module.digest(SPK_KEYS.integrity, etree.tostring(info, method="c14n"), "sha256")


def test_sign_and_verify() -> None:
    parts = info_parts()
    signed = sign_bodies(parts, CSK_KEYS)
    assert verify_bodies(signed, parts, RESOLVE) == {CSK_ID}


def test_content_ids_outside_the_url_alphabet_are_escaped() -> None:
    parts = info_parts()
    parts[1].headers.set("Content-ID", "<a b%c@x>")
    signed = sign_bodies(parts, SPK_KEYS)
    assert b'URI="cid:a%20b%25c@x"' in signed.body
    assert verify_bodies(signed, parts, RESOLVE) == {SPK_ID}


def test_sign_refuses_what_it_cannot_sign() -> None:
    assert refusal(lambda: sign_bodies([], SPK_KEYS)).reason == "xml-malformed"
    sdp = BodyPart(Headers([("Content-Type", "application/sdp")]), SDP)
    assert refusal(lambda: sign_bodies([sdp], SPK_KEYS)).reason == "xml-malformed"
    parts = info_parts()
    parts[0].headers.set("Content-ID", "<rl1@a.example>")
    assert "two bodies" in str(refusal(lambda: sign_bodies(parts, SPK_KEYS)))


def _signed_and_parts(keys: XmlKeys = SPK_KEYS) -> tuple[BodyPart, list[BodyPart]]:
    parts = info_parts()
    return sign_bodies(parts, keys), parts


def _edit_signature(signed: BodyPart, edit: Callable[[etree._Element], None], index: int = 0) -> BodyPart:
    root = etree.fromstring(signed.body)
    edit(root[index])
    return BodyPart(signed.headers.copy(), etree.tostring(root))


def _ds(path: str) -> str:
    return "/".join(f"{{{DSIG_NS}}}{step}" for step in path.split("/"))


def test_tampered_signature_value() -> None:
    signed, parts = _signed_and_parts()

    def edit(signature: etree._Element) -> None:
        value = signature.find(_ds("SignatureValue"))
        assert value is not None
        raw = bytearray(base64.b64decode(value.text or ""))
        raw[0] ^= 1
        value.text = base64.b64encode(bytes(raw)).decode()

    error = refusal(lambda: verify_bodies(_edit_signature(signed, edit), parts, RESOLVE))
    assert error.reason == "xml-integrity" and "SignatureValue" in str(error)


def test_tampered_digest_value_breaks_the_signature_value() -> None:
    signed, parts = _signed_and_parts()

    def edit(signature: etree._Element) -> None:
        value = signature.find(_ds("SignedInfo/Reference/DigestValue"))
        assert value is not None
        value.text = base64.b64encode(bytes(32)).decode()

    assert (
        refusal(lambda: verify_bodies(_edit_signature(signed, edit), parts, RESOLVE)).reason
        == "xml-integrity"
    )


def test_a_body_changed_after_signing() -> None:
    signed, parts = _signed_and_parts()
    parts[0].body = parts[0].body.replace(b"prearranged", b"chat")
    error = refusal(lambda: verify_bodies(signed, parts, RESOLVE))
    assert error.reason == "xml-integrity" and "digest" in str(error)


def test_a_change_that_canonicalisation_removes_is_not_a_change() -> None:
    signed, parts = _signed_and_parts()
    parts[0].body = (
        parts[0]
        .body.replace(b'<?xml version="1.0" encoding="UTF-8"?>', b"<?xml version='1.0'?>")
        .replace(b'type="Normal"', b"type = 'Normal'")
        .replace(b"<!-- a comment -->", b"<!-- another comment -->")
    )
    assert verify_bodies(signed, parts, RESOLVE) == {SPK_ID}


def test_an_mc_body_added_without_signature() -> None:
    signed, parts = _signed_and_parts()
    extra = BodyPart(
        Headers([("Content-Type", "application/vnd.3gpp.mcdata-info+xml"), ("Content-ID", "<x@y>")]),
        b"<mcdatainfo/>",
    )
    error = refusal(lambda: verify_bodies(signed, [*parts, extra], RESOLVE))
    assert error.reason == "xml-integrity"
    assert "part 3 (application/vnd.3gpp.mcdata-info+xml) is not signed" in str(error)


def test_a_non_mc_body_needs_no_signature() -> None:
    signed, parts = _signed_and_parts()
    sdp = BodyPart(Headers([("Content-Type", "application/sdp")]), SDP)
    assert verify_bodies(signed, [sdp, *parts], RESOLVE) == {SPK_ID}


def test_content_ids_swapped() -> None:
    signed, parts = _signed_and_parts()
    first, second = parts[0].headers.get("Content-ID"), parts[1].headers.get("Content-ID")
    assert first and second
    parts[0].headers.set("Content-ID", second)
    parts[1].headers.set("Content-ID", first)
    assert refusal(lambda: verify_bodies(signed, parts, RESOLVE)).reason == "xml-integrity"


def test_a_signature_naming_a_missing_or_ambiguous_body() -> None:
    signed, parts = _signed_and_parts()
    error = refusal(lambda: verify_bodies(signed, parts[:1], RESOLVE))
    assert error.reason == "xml-integrity" and "matches no body" in str(error)
    twin = BodyPart(parts[1].headers.copy(), parts[1].body)
    error = refusal(lambda: verify_bodies(signed, [*parts, twin], RESOLVE))
    assert error.reason == "xml-integrity" and "more than one body" in str(error)


def test_a_signature_removed_leaves_its_body_unsigned() -> None:
    signed, parts = _signed_and_parts()
    root = etree.fromstring(signed.body)
    root.remove(root[1])
    shorter = BodyPart(signed.headers.copy(), etree.tostring(root))
    assert refusal(lambda: verify_bodies(shorter, parts, RESOLVE)).reason == "xml-integrity"


def test_unknown_signing_key() -> None:
    signed, parts = _signed_and_parts(CSK_KEYS)
    error = refusal(lambda: verify_bodies(signed, parts, resolver(SPK_KEYS)))
    assert error.reason == "xml-unknown-key" and "21234567" in str(error)


def test_the_wrong_key_under_the_right_id_fails_integrity() -> None:
    signed, parts = _signed_and_parts()
    impostor = XmlKeys.derive(bytes(16), SPK_ID, "a.mc.example")
    assert refusal(lambda: verify_bodies(signed, parts, resolver(impostor))).reason == "xml-integrity"


def _resign(signed: BodyPart, edit: Callable[[etree._Element], None], keys: XmlKeys = SPK_KEYS) -> BodyPart:
    """Edit each SignedInfo and sign it again, as another implementation might write it."""
    import hmac as hmac_module

    root = etree.fromstring(signed.body)
    for signature in root:
        info = signature.find(_ds("SignedInfo"))
        assert info is not None
        edit(info)
        method = info[0].get("Algorithm")
        canonical = etree.tostring(info, method="c14n", exclusive=method == EXC_C14N)
        value = signature.find(_ds("SignatureValue"))
        assert value is not None
        value.text = base64.b64encode(hmac_module.digest(keys.integrity, canonical, "sha256")).decode()
    return BodyPart(signed.headers.copy(), etree.tostring(root))


def test_exclusive_c14n_is_accepted() -> None:
    signed, parts = _signed_and_parts()

    def edit(info: etree._Element) -> None:
        info[0].set("Algorithm", EXC_C14N)
        reference = info.find(_ds("Reference"))
        assert reference is not None
        reference.find(_ds("Transforms/Transform")).set("Algorithm", EXC_C14N)  # type: ignore[union-attr]
        part = next(p for p in parts if f"cid:{p.content_id}" == reference.get("URI"))
        canonical = etree.tostring(
            etree.fromstring(part.body).getroottree(), method="c14n", exclusive=True, with_comments=False
        )
        reference[2].text = base64.b64encode(hashlib.sha256(canonical).digest()).decode()

    assert verify_bodies(_resign(signed, edit), parts, RESOLVE) == {SPK_ID}


def test_a_reference_without_transforms_digests_the_raw_octets() -> None:
    signed, parts = _signed_and_parts()

    def edit(info: etree._Element) -> None:
        reference = info.find(_ds("Reference"))
        assert reference is not None
        reference.remove(reference[0])
        uri = reference.get("URI") or ""
        part = next(p for p in parts if f"cid:{p.content_id}" == uri)
        reference[1].text = base64.b64encode(hashlib.sha256(part.body).digest()).decode()

    resigned = _resign(signed, edit)
    assert verify_bodies(resigned, parts, RESOLVE) == {SPK_ID}
    # Raw octets: any byte change counts, even one canonicalisation would remove.
    parts[0].body = parts[0].body.replace(b"<!-- a comment -->", b"<!-- a different one -->")
    assert refusal(lambda: verify_bodies(resigned, parts, RESOLVE)).reason == "xml-integrity"


def test_a_bare_content_id_reference_is_accepted() -> None:
    signed, parts = _signed_and_parts()

    def edit(info: etree._Element) -> None:
        reference = info.find(_ds("Reference"))
        assert reference is not None
        reference.set("URI", "<" + (reference.get("URI") or "").removeprefix("cid:") + ">")

    assert verify_bodies(_resign(signed, edit), parts, RESOLVE) == {SPK_ID}


def _set_algorithm(path: str, algorithm: str) -> Callable[[etree._Element], None]:
    def edit(info: etree._Element) -> None:
        target = info.find(_ds(path)) if path else info
        assert target is not None
        target.set("Algorithm", algorithm)

    return edit


def _add_child(path: str, tag: str) -> Callable[[etree._Element], None]:
    def edit(info: etree._Element) -> None:
        target = info.find(_ds(path))
        assert target is not None
        etree.SubElement(target, _ds(tag)).text = "128"

    return edit


def _second_reference(info: etree._Element) -> None:
    reference = info.find(_ds("Reference"))
    assert reference is not None
    info.append(etree.fromstring(etree.tostring(reference)))


def _two_transforms(info: etree._Element) -> None:
    transforms = info.find(_ds("Reference/Transforms"))
    assert transforms is not None
    etree.SubElement(transforms, _ds("Transform"), Algorithm=C14N)


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (_set_algorithm("CanonicalizationMethod", C14N + "#WithComments"), "canonicalisation"),
        (_set_algorithm("SignatureMethod", "http://www.w3.org/2000/09/xmldsig#hmac-sha1"), "SignatureMethod"),
        (_add_child("SignatureMethod", "HMACOutputLength"), "SignatureMethod"),
        (_set_algorithm("Reference/DigestMethod", "http://www.w3.org/2000/09/xmldsig#sha1"), "DigestMethod"),
        (
            _set_algorithm(
                "Reference/Transforms/Transform", "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
            ),
            "transform",
        ),
        (
            _set_algorithm("Reference/Transforms/Transform", "http://www.w3.org/TR/1999/REC-xpath-19991116"),
            "transform",
        ),
        (_two_transforms, "one C14N Transform"),
        (_second_reference, "exactly one Reference"),
        (lambda info: info.find(_ds("Reference")).attrib.pop("URI"), "no URI"),  # type: ignore[union-attr]
    ],
)
def test_signature_forms_outside_the_profile_are_refused(
    edit: Callable[[etree._Element], None], fragment: str
) -> None:
    signed, parts = _signed_and_parts()
    error = refusal(lambda: verify_bodies(_resign(signed, edit), parts, RESOLVE))
    assert error.reason == "xml-malformed"
    assert fragment in str(error)


def test_malformed_signature_bodies() -> None:
    signed, parts = _signed_and_parts()
    wrong_type = BodyPart(Headers([("Content-Type", "application/xml")]), signed.body)
    assert refusal(lambda: verify_bodies(wrong_type, parts, RESOLVE)).reason == "xml-malformed"
    for body, reason in [
        (b"not xml", "xml-malformed"),
        (b"<signatures/>", "xml-malformed"),
        (f'<signatures xmlns="{SIGNED_NS}"/>'.encode(), "xml-integrity"),
        (f'<signatures xmlns="{SIGNED_NS}"><x xmlns="urn:x"/></signatures>'.encode(), "xml-integrity"),
    ]:
        part = BodyPart(signed.headers.copy(), body)
        assert refusal(lambda part=part: verify_bodies(part, parts, RESOLVE)).reason == reason

    def drop_key_info(signature: etree._Element) -> None:
        signature.remove(signature[2])

    assert refusal(lambda: verify_bodies(_edit_signature(signed, drop_key_info), parts, RESOLVE)).reason == (
        "xml-malformed"
    )

    def short_value(signature: etree._Element) -> None:
        signature[1].text = base64.b64encode(bytes(16)).decode()

    assert refusal(lambda: verify_bodies(_edit_signature(signed, short_value), parts, RESOLVE)).reason == (
        "xml-integrity"
    )


def test_unknown_elements_beside_the_signatures_are_ignored() -> None:
    signed, parts = _signed_and_parts()
    root = etree.fromstring(signed.body)
    etree.SubElement(root, "{urn:example:ext}note").text = "ignored"
    assert verify_bodies(BodyPart(signed.headers.copy(), etree.tostring(root)), parts, RESOLVE) == {SPK_ID}


# --- Messages ----------------------------------------------------------------------------------------------


def test_single_body_round_trip() -> None:
    message = info_message()
    message.headers.set("Content-Disposition", "render;handling=optional")
    protect_message(message, SPK_KEYS)
    assert message.content_type == "multipart/mixed"
    assert message.headers.get("Content-Disposition") is None
    wire = message.to_bytes()
    for value in PROTECTED_VALUES:
        assert value.encode() not in wire
    info_part, signed = parts_of(parse_message(wire))
    assert info_part.content_type == INFO_TYPE and signed.content_type == SIGNED_TYPE
    assert info_part.headers.get("Content-Disposition") == "render;handling=optional"
    assert is_protected(message)

    received = parse_message(wire)
    result = unprotect_message(received, RESOLVE)
    assert result == Unprotected(frozenset({SPK_ID}), was_signed=True, was_encrypted=True)
    assert received.headers.get("Content-Type") == INFO_TYPE
    assert received.headers.get("Content-Disposition") == "render;handling=optional"
    assert c14n(received.body) == c14n(INFO)
    assert not is_protected(received)


def test_multipart_round_trip_with_sdp_info_and_text() -> None:
    message = multipart_message()
    protect_message(message, CSK_KEYS)
    wire = message.to_bytes()
    for value in PROTECTED_VALUES:
        assert value.encode() not in wire
    assert b"boundary42" in wire  # the boundary is kept when it can be
    parts = parts_of(parse_message(wire))
    assert [part.content_type for part in parts] == ["application/sdp", INFO_TYPE, "text/plain", SIGNED_TYPE]
    assert parts[0].body == SDP and parts[2].body == TEXT
    assert parts[0].content_id is None and parts[2].content_id is None  # only signed parts get one

    received = parse_message(wire)
    result = unprotect_message(received, RESOLVE)
    assert result == Unprotected(frozenset({CSK_ID}), was_signed=True, was_encrypted=True)
    sdp, info, text = parts_of(received)
    assert sdp.body == SDP and text.body == TEXT
    assert c14n(info.body) == c14n(INFO)
    assert find_mcptt_info(received) is not None


def test_sign_only_and_encrypt_only() -> None:
    signed_only = multipart_message()
    protect_message(signed_only, SPK_KEYS, encrypt=False)
    assert ALICE.encode() in signed_only.body and SIGNED_TYPE.encode() in signed_only.body
    assert unprotect_message(signed_only, RESOLVE) == Unprotected(frozenset({SPK_ID}), True, False)

    encrypted_only = info_message()
    protect_message(encrypted_only, SPK_KEYS, sign=False)
    assert encrypted_only.content_type == INFO_TYPE and ALICE.encode() not in encrypted_only.body
    assert is_protected(encrypted_only)
    assert refusal(lambda: unprotect_message(encrypted_only, RESOLVE)).reason == "xml-unprotected"
    result = unprotect_message(encrypted_only, RESOLVE, require_signature=False)
    assert result == Unprotected(frozenset({SPK_ID}), was_signed=False, was_encrypted=True)
    assert c14n(encrypted_only.body) == c14n(INFO)


def test_the_element_list_reaches_the_bodies() -> None:
    message = info_message()
    protect_message(message, SPK_KEYS, elements={"mcptt-calling-user-id"})
    assert ALICE.encode() not in message.body and CAROL.encode() in message.body


def test_messages_without_mc_bodies_are_left_alone() -> None:
    for content_type, body in [(None, b""), ("application/sdp", SDP), ("text/plain", TEXT)]:
        message = info_message()
        message.headers.remove("Content-Type")
        if content_type:
            message.headers.set("Content-Type", content_type)
        message.body = body
        before = message.to_bytes()
        protect_message(message, SPK_KEYS)
        assert message.to_bytes() == before
        assert unprotect_message(message, RESOLVE) == Unprotected(frozenset(), False, False)
        assert message.to_bytes() == before
        assert not is_protected(message)


def test_an_unsigned_mc_body_is_unprotected() -> None:
    for message in (info_message(), multipart_message()):
        before = message.to_bytes()
        error = refusal(lambda message=message: unprotect_message(message, RESOLVE))
        assert error.reason == "xml-unprotected"
        assert message.to_bytes() == before
        assert unprotect_message(message, RESOLVE, require_signature=False) == Unprotected(
            frozenset(), False, False
        )


def test_a_body_added_after_protection_is_refused() -> None:
    message = multipart_message()
    protect_message(message, SPK_KEYS)
    parts = parts_of(message)
    extra = BodyPart(Headers([("Content-Type", "application/resource-lists+xml")]), b"<resource-lists/>")
    content_type, message.body = build_multipart([*parts[:-1], extra, parts[-1]])
    message.headers.set("Content-Type", content_type)
    assert refusal(lambda: unprotect_message(message, RESOLVE)).reason == "xml-integrity"


def test_content_id_swapped_in_a_message() -> None:
    message = multipart_message()
    signed_part = BodyPart(
        Headers([("Content-Type", "application/resource-lists+xml")]), b"<resource-lists/>"
    )
    parts = [*parts_of(message), signed_part]
    content_type, message.body = build_multipart(parts)
    message.headers.set("Content-Type", content_type)
    protect_message(message, SPK_KEYS)
    parts = parts_of(message)
    first, second = parts[1].headers.get("Content-ID"), parts[3].headers.get("Content-ID")
    assert first and second
    parts[1].headers.set("Content-ID", second)
    parts[3].headers.set("Content-ID", first)
    content_type, message.body = build_multipart(parts)
    message.headers.set("Content-Type", content_type)
    assert refusal(lambda: unprotect_message(message, RESOLVE)).reason == "xml-integrity"


def _tamper_signature(message: SipMessage) -> None:
    parts = parts_of(message)
    parts[-1].body = parts[-1].body.replace(b"<ds:SignatureValue>", b"<ds:SignatureValue>AAAA", 1)
    content_type, message.body = build_multipart(parts)
    message.headers.set("Content-Type", content_type)


def test_verify_before_decrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[bytes] = []
    decrypted: list[bytes] = []
    original_open = xmlprotect._open_cipher_value
    original_decrypt = xmlprotect._decrypt

    def open_spy(key: bytes, sealed: bytes) -> bytes:
        opened.append(sealed)
        return original_open(key, sealed)

    def decrypt_spy(
        document: bytes, resolve: KeyResolver, root: etree._Element | None
    ) -> tuple[bytes, set[int]]:
        decrypted.append(document)
        return original_decrypt(document, resolve, root)

    monkeypatch.setattr(xmlprotect, "_open_cipher_value", open_spy)
    monkeypatch.setattr(xmlprotect, "_decrypt", decrypt_spy)
    message = multipart_message()
    protect_message(message, SPK_KEYS)
    _tamper_signature(message)
    before = message.to_bytes()
    assert refusal(lambda: unprotect_message(message, RESOLVE)).reason == "xml-integrity"
    assert opened == [] and decrypted == []
    assert message.to_bytes() == before

    # A body changed after signing: also refused before any decryption.
    message = multipart_message()
    protect_message(message, SPK_KEYS)
    parts = parts_of(message)
    parts[1].body = parts[1].body.replace(b"prearranged", b"chat")
    content_type, message.body = build_multipart(parts)
    message.headers.set("Content-Type", content_type)
    assert refusal(lambda: unprotect_message(message, RESOLVE)).reason == "xml-integrity"
    assert opened == [] and decrypted == []

    # And with a valid signature, decryption does happen, after verification.
    message = multipart_message()
    protect_message(message, SPK_KEYS)
    unprotect_message(message, RESOLVE)
    assert len(opened) == 4 and len(decrypted) == 1


def test_a_decrypt_failure_leaves_the_message_unchanged() -> None:
    message = multipart_message()
    protect_message(message, SPK_KEYS, sign=False)
    parts = parts_of(message)
    parts[1].body = with_cipher_value(parts[1].body, flip(20), index=1)
    content_type, message.body = build_multipart(parts)
    message.headers.set("Content-Type", content_type)
    protect_message(message, SPK_KEYS)  # signed over the tampered ciphertext: only the tag can tell
    before = message.to_bytes()
    assert refusal(lambda: unprotect_message(message, RESOLVE)).reason == "xml-decrypt"
    assert message.to_bytes() == before


def test_signature_and_encryption_keys_may_differ() -> None:
    message = info_message()
    protect_message(message, CSK_KEYS, sign=False)
    protect_message(message, SPK_KEYS, encrypt=False)
    result = unprotect_message(message, RESOLVE)
    assert result.key_ids == frozenset({CSK_ID, SPK_ID})
    assert refusal(lambda: unprotect_message(_protected_with(CSK_KEYS), resolver(SPK_KEYS))).reason == (
        "xml-unknown-key"
    )


def _protected_with(keys: XmlKeys) -> SipRequest:
    message = info_message()
    protect_message(message, keys)
    return message


def test_protect_refuses_what_it_cannot_protect() -> None:
    message = _protected_with(SPK_KEYS)
    before = message.to_bytes()
    error = refusal(lambda: protect_message(message, SPK_KEYS))
    assert error.reason == "xml-malformed" and "already carries a signature body" in str(error)
    assert message.to_bytes() == before

    related = multipart_message()
    related.headers.set("Content-Type", "multipart/related;boundary=boundary42")
    assert "only multipart/mixed" in str(refusal(lambda: protect_message(related, SPK_KEYS)))

    nested = multipart_message()
    content_type, nested.body = build_multipart(
        [BodyPart(Headers([("Content-Type", "multipart/mixed;boundary=x")]), b"--x\r\n\r\nA\r\n--x--\r\n")]
    )
    nested.headers.set("Content-Type", content_type)
    assert "nested" in str(refusal(lambda: protect_message(nested, SPK_KEYS)))

    broken = info_message()
    broken.headers.set("Content-Type", "multipart/mixed;boundary=zz")
    broken.body = b"no delimiter"
    assert refusal(lambda: protect_message(broken, SPK_KEYS)).reason == "xml-malformed"

    bad_info = info_message()
    bad_info.body = b"<mcpttinfo"
    before = bad_info.to_bytes()
    assert refusal(lambda: protect_message(bad_info, SPK_KEYS)).reason == "xml-malformed"
    assert bad_info.to_bytes() == before


def test_two_signature_bodies_are_refused() -> None:
    message = _protected_with(SPK_KEYS)
    parts = parts_of(message)
    content_type, message.body = build_multipart([*parts, parts[-1]])
    message.headers.set("Content-Type", content_type)
    assert "2 signature bodies" in str(refusal(lambda: unprotect_message(message, RESOLVE)))


def test_a_lone_signature_body_is_refused() -> None:
    message = _protected_with(SPK_KEYS)
    signed = parts_of(message)[-1]
    message.headers.set("Content-Type", SIGNED_TYPE)
    message.body = signed.body
    assert refusal(lambda: unprotect_message(message, RESOLVE)).reason == "xml-integrity"


def test_is_protected_never_raises() -> None:
    message = info_message()
    assert not is_protected(message)
    message.headers.set("Content-Type", "multipart/mixed;boundary=zz")
    message.body = b"garbage"
    assert not is_protected(message)
    message.headers.set("Content-Type", INFO_TYPE)
    message.body = b"<x>EncryptedData</x"
    assert not is_protected(message)
    message.body = b"<x>EncryptedData</x>"
    assert not is_protected(message)


# --- Properties -------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_as_document(data: bytes) -> None:
    for call in (
        lambda: decrypt_elements(data, RESOLVE),
        lambda: encrypt_elements(data, SPK_KEYS),
        lambda: verify_bodies(BodyPart(Headers([("Content-Type", SIGNED_TYPE)]), data), [], RESOLVE),
    ):
        try:
            call()
        except XmlProtectError as exc:
            assert isinstance(exc.reason, XmlFault) and "\n" not in str(exc)


_PIECES = [
    b"<mcptt-request-uri>",
    b"</mcptt-request-uri>",
    f'<xenc:EncryptedData xmlns:xenc="{XENC_NS}" Type="{TYPE_CONTENT}">'.encode(),
    b"</xenc:EncryptedData>",
    f'<xenc:EncryptionMethod xmlns:xenc="{XENC_NS}" Algorithm="{AES128_GCM}"/>'.encode(),
    f'<ds:KeyInfo xmlns:ds="{DSIG_NS}"><ds:KeyName>Orze8Q==</ds:KeyName></ds:KeyInfo>'.encode(),
    f'<xenc:CipherData xmlns:xenc="{XENC_NS}"><xenc:CipherValue>'.encode(),
    b"</xenc:CipherValue></xenc:CipherData>",
    base64.b64encode(bytes(40)),
    b"<r>",
    b"</r>",
    b"text",
    b"&amp;",
    b"<!DOCTYPE r>",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=20).map(b"".join))
def test_encrypted_data_like_documents(data: bytes) -> None:
    try:
        decrypt_elements(data, RESOLVE)
    except XmlProtectError as exc:
        assert isinstance(exc.reason, XmlFault)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(sorted(MC_XML_TYPES | {SIGNED_TYPE})))
def test_any_bytes_as_a_message_body(data: bytes, content_type: str) -> None:
    message = info_message()
    message.headers.set("Content-Type", content_type)
    message.body = data
    for require in (True, False):
        try:
            unprotect_message(message, RESOLVE, require_signature=require)
        except XmlProtectError as exc:
            assert isinstance(exc.reason, XmlFault)
    try:
        protect_message(message, SPK_KEYS)
    except XmlProtectError as exc:
        assert isinstance(exc.reason, XmlFault)
    is_protected(message)


_XML_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\ufffe\uffff").filter(
        lambda c: c in "\t\n\r" or ord(c) >= 0x20
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(_XML_TEXT, _XML_TEXT)
def test_round_trip_of_any_text(value: str, tail: str) -> None:
    root = etree.Element("{urn:3gpp:ns:mcpttInfo:1.0}mcpttinfo")
    element = etree.SubElement(root, "{urn:3gpp:ns:mcpttInfo:1.0}mcptt-calling-user-id", type="Normal")
    element.text = value
    etree.SubElement(element, "{urn:3gpp:ns:mcpttInfo:1.0}mcpttURI").text = value
    element[0].tail = tail
    document = etree.tostring(root, encoding="UTF-8")
    protected = encrypt_elements(document, SPK_KEYS)
    assert len(encrypted_data(protected)) == 1
    plain, _ = decrypt_elements(protected, RESOLVE)
    assert c14n(plain) == c14n(document)


@settings(max_examples=100, deadline=None)
@given(_XML_TEXT)
def test_message_round_trip_of_any_identity(value: str) -> None:
    message = info_message()
    message.body = INFO.replace(ALICE.encode(), value.replace("&", "&amp;").replace("<", "&lt;").encode())
    reference = c14n(message.body)
    protect_message(message, SPK_KEYS)
    received = parse_message(message.to_bytes())
    assert unprotect_message(received, RESOLVE).was_signed
    assert c14n(received.body) == reference
