"""XML confidentiality and integrity of MC SIP bodies with CSK/SPK-derived keys (TS 33.180 9.3, F.1.4).

Two mechanisms, both sans-IO (bytes and ``SipMessage`` objects in, bytes and objects out):

* **Confidentiality** (spec/signalling-protection-and-ear.md 5.3, WA-SP-10/12): the *content* of each
  sensitive ``contentType`` element of an MC info document (the identities and access tokens of
  ``SENSITIVE_ELEMENTS``) is replaced by an ``xenc:EncryptedData`` of ``Type`` ``#Content``:
  AES-128-GCM (``xmlenc11#aes128-gcm``) under the F.1.4 confidentiality key (FC 0x51),
  ``CipherValue`` = base64(12-octet random IV || ciphertext || 16-octet tag), ``KeyInfo/KeyName`` =
  base64 of the 4-octet key ID, and the element gets ``type="Encrypted"``.  Receivers also accept
  ``Type`` ``#Element``.
* **Integrity** (5.2, WA-SP-07/08/09): one extra MIME body ``application/vnd.3gpp.mcptt-signed+xml``
  (root ``<signatures>`` in ``urn:3gpp:ns:mcpttSignedDoc:1.0``) holding one ``ds:Signature`` per signed
  MC XML body: HMAC-SHA-256 under the F.1.4 integrity key (FC 0x52) over the C14N 1.0 form of
  ``SignedInfo``, whose single ``Reference`` names the body by ``cid:<Content-ID>`` and carries the
  SHA-256 digest of the body's canonical form (a C14N 1.0 ``Transform``).  Receivers accept inclusive or
  exclusive C14N 1.0, a ``Reference`` without transforms (digest over the raw octets), and a bare
  Content-ID in place of the ``cid:`` URL; nothing else.

Order (24.379 7.3.1A, WA-SP-13): the sender encrypts, then signs the encrypted bodies; the receiver
verifies every signature before it decrypts anything, and changes the message only when every step
succeeded, so a refused message is left exactly as it came.

Keys come from ``crypto.kdf.derive_xml_keys`` (F.1.4); a key ID names its key in every ``KeyName`` and must
carry the CSK (2) or SPK (3) purpose tag (WA-SP-02/03).  Every XML document — bodies, signature lists and
decrypted plaintext — is parsed by ``xmlsafe.parse_xml`` (no DTD, entity or network; size and depth
limits).  Every failure raises ``XmlProtectError`` whose ``reason`` is one of the ``XmlFault`` codes and
whose message is one line without key material.  The choices are listed in docs/PROFILE.md, Part 4.
"""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, cast
from urllib.parse import quote, unquote

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from lxml import etree

from mcinterconnect.crypto.kdf import XML_KEY_LENGTH, derive_xml_keys
from mcinterconnect.crypto.keyids import KeyIdError, Purpose, purpose_of
from mcinterconnect.sip.message import Headers, SipMessage
from mcinterconnect.sip.multipart import (
    BodyPart,
    MultipartError,
    boundary_of,
    build_multipart,
    parse_multipart,
)
from mcinterconnect.xmlsafe import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_ELEMENTS,
    XmlSafetyError,
    parse_xml,
)

# --- Names and algorithms ----------------------------------------------------------------------------

SIGNED_TYPE: Final = "application/vnd.3gpp.mcptt-signed+xml"
SIGNED_NS: Final = "urn:3gpp:ns:mcpttSignedDoc:1.0"
XENC_NS: Final = "http://www.w3.org/2001/04/xmlenc#"
DSIG_NS: Final = "http://www.w3.org/2000/09/xmldsig#"

AES128_GCM: Final = "http://www.w3.org/2009/xmlenc11#aes128-gcm"
TYPE_CONTENT: Final = "http://www.w3.org/2001/04/xmlenc#Content"
TYPE_ELEMENT: Final = "http://www.w3.org/2001/04/xmlenc#Element"
C14N: Final = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
EXC_C14N: Final = "http://www.w3.org/2001/10/xml-exc-c14n#"
HMAC_SHA256: Final = "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256"
SHA256: Final = "http://www.w3.org/2001/04/xmlenc#sha256"

#: WA-SP-12: local names of the ``contentType`` elements whose content is encrypted by default — the
#: access token, request URI, calling user, called party and calling group of mcptt-info (24.379 F.1),
#: mcdata-info (24.282 D.1) and mcvideo-info (24.281 F.1), plus MCData's client ID and originated-by.
#: Matched by local name in any namespace.
SENSITIVE_ELEMENTS: Final = frozenset(
    {
        *(
            f"{service}-{item}"
            for service in ("mcptt", "mcdata", "mcvideo")
            for item in (
                "access-token",
                "request-uri",
                "calling-user-id",
                "called-party-id",
                "calling-group-id",
            )
        ),
        "mcdata-client-id",
        "originated-by",
    }
)

#: WA-SP-09: the MC XML bodies that are encrypted where they hold listed elements, and signed.
MC_XML_TYPES: Final = frozenset(
    {
        "application/vnd.3gpp.mcptt-info+xml",
        "application/vnd.3gpp.mcdata-info+xml",
        "application/vnd.3gpp.mcvideo-info+xml",
        "application/resource-lists+xml",
        "application/vnd.3gpp.mcptt-location-info+xml",
        "application/vnd.3gpp.mcptt-affiliation-command+xml",
        "application/vnd.3gpp.mcptt-floor-request+xml",
        "application/vnd.3gpp.mcptt-mbms-usage-info+xml",
    }
)

IV_LENGTH: Final = 12
TAG_LENGTH: Final = 16
KEY_ID_LENGTH: Final = 4
HMAC_LENGTH: Final = 32
#: Purpose tags a key ID of XML protection may carry (WA-SP-02/03).
XML_KEY_PURPOSES: Final = frozenset({Purpose.CSK, Purpose.SPK})
#: Headers that describe a single SIP body and move into its part when the body becomes multipart.
_BODY_HEADERS: Final = ("Content-Disposition", "Content-Language", "Content-Encoding")
#: Name of the element wrapped around decrypted content while it is parsed in its context.
_FRAGMENT_ROOT: Final = "xmlprotect-fragment"
_DIGEST_TRANSFORMS: Final = frozenset({C14N, EXC_C14N})
_CANONICALISATIONS: Final = frozenset({C14N, EXC_C14N})


class XmlFault(StrEnum):
    """Reason codes of ``XmlProtectError``, for the audit log and the SIP Warning."""

    MALFORMED = "xml-malformed"
    UNKNOWN_KEY = "xml-unknown-key"
    INTEGRITY = "xml-integrity"
    DECRYPT = "xml-decrypt"
    UNPROTECTED = "xml-unprotected"
    KEY_PURPOSE = "xml-key-purpose"


class XmlProtectError(ValueError):
    """XML protection refused; ``reason`` is an ``XmlFault`` code, ``str()`` one line without key bytes."""

    def __init__(self, reason: XmlFault, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# --- Keys --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class XmlKeys:
    """The F.1.4 keys of one XPK (CSK or SPK) and the key ID that names them in ``KeyName``."""

    key_id: int
    confidentiality: bytes = field(repr=False)
    integrity: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_key_purpose(self.key_id)
        for name in ("confidentiality", "integrity"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != XML_KEY_LENGTH:
                raise ValueError(f"{name} key must be {XML_KEY_LENGTH} bytes")

    @classmethod
    def derive(cls, xpk: bytes, key_id: int, identity: str) -> XmlKeys:
        """F.1.4 keys from the XPK: ``identity`` is the CSK's MC service user ID or the SPK's
        configured ``kdf_identity`` (WA-SP-05).  A key ID that is not a CSK/SPK ID raises
        ``XmlProtectError`` (xml-key-purpose); a bad XPK or identity raises ``KdfError``."""
        _check_key_purpose(key_id)
        keys = derive_xml_keys(xpk, key_id, identity)
        return cls(key_id, keys.confidentiality, keys.integrity)


#: Returns the keys of a key ID, or ``None`` when the key ID is unknown (or expired).
KeyResolver = Callable[[int], XmlKeys | None]


def _check_key_purpose(key_id: object) -> int:
    if isinstance(key_id, bool) or not isinstance(key_id, int):
        raise XmlProtectError(XmlFault.KEY_PURPOSE, f"key ID must be an int, not {type(key_id).__name__}")
    try:
        purpose = purpose_of(key_id)
    except KeyIdError as exc:
        raise XmlProtectError(XmlFault.KEY_PURPOSE, str(exc)) from None
    if purpose not in XML_KEY_PURPOSES:
        raise XmlProtectError(
            XmlFault.KEY_PURPOSE,
            f"key ID {key_id:08x} is tagged {purpose.name}; XML protection takes a CSK or SPK",
        )
    return key_id


def _key_name(key_id: int) -> str:
    return base64.b64encode(key_id.to_bytes(KEY_ID_LENGTH, "big")).decode("ascii")


def _resolve(resolve: KeyResolver, key_info: etree._Element | None, where: str) -> XmlKeys:
    """The keys named by ``KeyInfo/KeyName``: purpose checked first, then looked up."""
    if key_info is None:
        raise XmlProtectError(XmlFault.MALFORMED, f"{where} has no KeyInfo")
    names = [child for child in key_info if isinstance(child.tag, str)]
    if len(names) != 1 or names[0].tag != f"{{{DSIG_NS}}}KeyName":
        raise XmlProtectError(XmlFault.MALFORMED, f"{where}: KeyInfo must hold exactly one KeyName")
    octets = _b64(names[0].text, f"{where}: KeyName")
    if len(octets) != KEY_ID_LENGTH:
        raise XmlProtectError(
            XmlFault.MALFORMED, f"{where}: KeyName holds {len(octets)} octets, expected a 4-octet key ID"
        )
    key_id = _check_key_purpose(int.from_bytes(octets, "big"))
    keys = resolve(key_id)
    if keys is None:
        raise XmlProtectError(XmlFault.UNKNOWN_KEY, f"{where}: unknown key ID {key_id:08x}")
    if keys.key_id != key_id:
        raise XmlProtectError(XmlFault.UNKNOWN_KEY, f"{where}: resolver gave other keys for {key_id:08x}")
    return keys


def _b64(text: str | None, what: str) -> bytes:
    """Strict base64; ASCII white space (xmlsec wraps lines) is ignored."""
    compact = "".join((text or "").split())
    if not compact:
        raise XmlProtectError(XmlFault.MALFORMED, f"{what} is empty")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise XmlProtectError(XmlFault.MALFORMED, f"{what} is not base64") from None


# --- Parsing and serialising ---------------------------------------------------------------------------


def _parse(document: bytes, what: str) -> etree._Element:
    if not isinstance(document, bytes):
        raise TypeError(f"{what} must be bytes, not {type(document).__name__}")
    try:
        return parse_xml(document)
    except XmlSafetyError as exc:
        raise XmlProtectError(XmlFault.MALFORMED, f"{what} refused: {exc.reason}") from None


def _serialise(root: etree._Element, original: bytes) -> bytes:
    """The document again, with an XML declaration only if the original had one."""
    declaration = original.removeprefix(b"\xef\xbb\xbf").startswith(b"<?xml")
    return etree.tostring(root.getroottree(), encoding="UTF-8", xml_declaration=declaration)


def _local(element: etree._Element) -> str:
    tag = element.tag
    if not isinstance(tag, str):
        return ""
    return tag.rpartition("}")[2]


def _children(element: etree._Element) -> list[etree._Element]:
    """Element children only (comments carry no meaning)."""
    return [child for child in element if isinstance(child.tag, str)]


def _join(first: str | None, second: str | None) -> str | None:
    return ((first or "") + (second or "")) or None


# --- Confidentiality ---------------------------------------------------------------------------------


def encrypt_elements(
    document: bytes, keys: XmlKeys, *, elements: Collection[str] = SENSITIVE_ELEMENTS
) -> bytes:
    """Encrypt the content of every element whose local name is in ``elements`` (WA-SP-10).

    Elements already encrypted (``type="Encrypted"`` or holding ``EncryptedData``) are passed on as
    they are (24.379 6.6.2.5), an element inside one that is encrypted goes with it, and an empty
    element, which hides nothing, is left as it is.  A document
    without listed elements comes back byte for byte."""
    root = _parse(document, "document")
    wanted = frozenset(elements)
    targets: list[etree._Element] = []
    for element in root.iter():
        if (
            _local(element) in wanted
            and _has_content(element)
            and not _is_encrypted(element)
            and not _inside_any(element, targets)
        ):
            targets.append(element)
    if not targets:
        return document
    cipher = AESGCM(keys.confidentiality)
    for element in targets:
        plaintext = _content_bytes(element)
        iv = os.urandom(IV_LENGTH)
        sealed = iv + cipher.encrypt(iv, plaintext, None)
        for child in list(element):
            element.remove(child)
        element.text = None
        element.set("type", "Encrypted")
        element.append(_encrypted_data(sealed, keys.key_id))
    return _serialise(root, document)


def _has_content(element: etree._Element) -> bool:
    # An empty element hides nothing, and libxmlsec cannot decrypt an empty Content (interop).
    return bool(element.text) or len(element) > 0


def _is_encrypted(element: etree._Element) -> bool:
    return element.get("type") == "Encrypted" or element.find(f"{{{XENC_NS}}}EncryptedData") is not None


def _inside_any(element: etree._Element, targets: list[etree._Element]) -> bool:
    if not targets:
        return False
    chosen = set(targets)
    return any(ancestor in chosen for ancestor in element.iterancestors())


def _content_bytes(element: etree._Element) -> bytes:
    """The element's content as an XML fragment: its text, then each child with its tail.

    lxml writes on each child the namespace declarations it needs, so the fragment stands alone."""
    holder = etree.Element("t")
    holder.text = element.text
    lead = etree.tostring(holder, encoding="unicode")[len("<t>") : -len("</t>")] if element.text else ""
    rest = "".join(etree.tostring(child, encoding="unicode", with_tail=True) for child in element)
    return (lead + rest).encode("utf-8")


def _encrypted_data(sealed: bytes, key_id: int) -> etree._Element:
    data = copy.copy(_encrypted_data_template(key_id))  # lxml's copy is deep; cheaper than building
    data[2][0].text = base64.b64encode(sealed).decode("ascii")
    return data


@functools.lru_cache(maxsize=64)
def _encrypted_data_template(key_id: int) -> etree._Element:
    """An ``EncryptedData`` naming ``key_id``, CipherValue empty; never changed, only copied."""
    data = etree.Element(f"{{{XENC_NS}}}EncryptedData", nsmap={"xenc": XENC_NS})
    data.set("Type", TYPE_CONTENT)
    etree.SubElement(data, f"{{{XENC_NS}}}EncryptionMethod").set("Algorithm", AES128_GCM)
    key_info = etree.SubElement(data, f"{{{DSIG_NS}}}KeyInfo", nsmap={"ds": DSIG_NS})
    etree.SubElement(key_info, f"{{{DSIG_NS}}}KeyName").text = _key_name(key_id)
    cipher_data = etree.SubElement(data, f"{{{XENC_NS}}}CipherData")
    etree.SubElement(cipher_data, f"{{{XENC_NS}}}CipherValue")
    return data


@dataclass(frozen=True)
class _Sealed:
    """One checked ``EncryptedData``: where it stands, its type, its keys and its bytes."""

    node: etree._Element
    whole_element: bool
    keys: XmlKeys
    sealed: bytes


def decrypt_elements(document: bytes, resolve: KeyResolver) -> tuple[bytes, set[int]]:
    """Decrypt every ``xenc:EncryptedData`` of the document; return it and the key IDs used.

    Each ``EncryptedData`` is replaced by its plaintext, parsed in its context, and a parent with
    ``type="Encrypted"`` gets ``type="Normal"``.  Every ``EncryptedData`` is checked and its key
    resolved before any is opened.  A document without one comes back byte for byte."""
    return _decrypt(document, resolve, None)


def _decrypt(document: bytes, resolve: KeyResolver, root: etree._Element | None) -> tuple[bytes, set[int]]:
    """``decrypt_elements``, on ``root`` when the caller already parsed ``document`` safely."""
    if root is None:
        root = _parse(document, "document")
    found = list(root.iter(f"{{{XENC_NS}}}EncryptedData"))
    if not found:
        return document, set()
    sealed = [_check_encrypted_data(node, resolve) for node in found]
    for item in sealed:
        plaintext = _open_cipher_value(item.keys.confidentiality, item.sealed)
        _restore(item, plaintext)
    _check_limits(root)
    return _serialise(root, document), {item.keys.key_id for item in sealed}


def _check_encrypted_data(node: etree._Element, resolve: KeyResolver) -> _Sealed:
    """Refuse every form but ours (and xmlsec's): one method, one KeyName, an inline CipherValue."""
    parent = node.getparent()
    if parent is None:
        raise XmlProtectError(XmlFault.MALFORMED, "EncryptedData is the document root")
    if any(ancestor.tag == node.tag for ancestor in node.iterancestors()):
        raise XmlProtectError(XmlFault.MALFORMED, "EncryptedData inside EncryptedData")
    where = f"EncryptedData in {_local(parent)}"
    kind = node.get("Type")
    if kind not in (TYPE_CONTENT, TYPE_ELEMENT):
        raise XmlProtectError(
            XmlFault.MALFORMED, f"{where} has Type {kind!r} (expected #Content or #Element)"
        )
    method = key_info = cipher_data = None
    for child in _children(node):
        if child.tag == f"{{{XENC_NS}}}EncryptionMethod" and method is None:
            method = child
        elif child.tag == f"{{{DSIG_NS}}}KeyInfo" and key_info is None:
            key_info = child
        elif child.tag == f"{{{XENC_NS}}}CipherData" and cipher_data is None:
            cipher_data = child
        elif child.tag != f"{{{XENC_NS}}}EncryptionProperties":
            raise XmlProtectError(XmlFault.MALFORMED, f"{where} holds an unexpected {_local(child)}")
    if method is None or method.get("Algorithm") != AES128_GCM or _children(method):
        raise XmlProtectError(XmlFault.MALFORMED, f"{where}: EncryptionMethod must be {AES128_GCM}")
    if cipher_data is None:
        raise XmlProtectError(XmlFault.MALFORMED, f"{where} has no CipherData")
    values = _children(cipher_data)
    # A CipherReference would make the receiver fetch a URI: never followed, refused.
    if len(values) != 1 or values[0].tag != f"{{{XENC_NS}}}CipherValue":
        raise XmlProtectError(XmlFault.MALFORMED, f"{where}: CipherData must hold one CipherValue")
    sealed = _b64(values[0].text, f"{where}: CipherValue")
    if len(sealed) < IV_LENGTH + TAG_LENGTH:
        raise XmlProtectError(XmlFault.MALFORMED, f"{where}: CipherValue is shorter than IV and tag")
    keys = _resolve(resolve, key_info, where)
    return _Sealed(node, kind == TYPE_ELEMENT, keys, sealed)


def _open_cipher_value(key: bytes, sealed: bytes) -> bytes:
    """AES-128-GCM open of IV || ciphertext || tag (no AAD)."""
    try:
        return AESGCM(key).decrypt(sealed[:IV_LENGTH], sealed[IV_LENGTH:], None)
    except InvalidTag:
        raise XmlProtectError(
            XmlFault.DECRYPT, "EncryptedData does not decrypt (authentication tag)"
        ) from None


def _restore(item: _Sealed, plaintext: bytes) -> None:
    """Put the plaintext nodes where the ``EncryptedData`` stood."""
    node = item.node
    parent = node.getparent()
    assert parent is not None  # checked in _check_encrypted_data
    wrapper = _parse_fragment(plaintext, parent)
    nodes = list(wrapper)
    if item.whole_element and (
        len(nodes) != 1 or not isinstance(nodes[0].tag, str) or (wrapper.text or "").strip()
    ):
        raise XmlProtectError(XmlFault.MALFORMED, "EncryptedData of Type #Element does not hold one element")
    index = parent.index(node)
    previous = node.getprevious()
    tail = node.tail
    parent.remove(node)
    if previous is None:
        parent.text = _join(parent.text, wrapper.text)
    else:
        previous.tail = _join(previous.tail, wrapper.text)
    for offset, child in enumerate(nodes):
        parent.insert(index + offset, child)
    if nodes:
        nodes[-1].tail = _join(nodes[-1].tail, tail)
    elif previous is None:
        parent.text = _join(parent.text, tail)
    else:
        previous.tail = _join(previous.tail, tail)
    if parent.get("type") == "Encrypted":
        parent.set("type", "Normal")


def _parse_fragment(plaintext: bytes, parent: etree._Element) -> etree._Element:
    """Parse decrypted content under a wrapper that declares the namespaces in scope at ``parent``.

    The plaintext is as untrusted as any body, so it goes through ``parse_xml`` too, with the depth
    left below ``parent``."""
    declarations = "".join(
        f" xmlns={_quote_attr(uri)}" if prefix is None else f" xmlns:{prefix}={_quote_attr(uri)}"
        for prefix, uri in parent.nsmap.items()
    )
    wrapped = f"<{_FRAGMENT_ROOT}{declarations}>".encode() + plaintext + f"</{_FRAGMENT_ROOT}>".encode()
    depth = sum(1 for _ in parent.iterancestors()) + 1
    try:
        # The plaintext came out of a document within the size limit; the wrapper may add a little.
        return parse_xml(
            wrapped,
            max_bytes=max(DEFAULT_MAX_BYTES, len(wrapped)),
            max_depth=max(1, DEFAULT_MAX_DEPTH - depth + 1),
        )
    except XmlSafetyError as exc:
        raise XmlProtectError(XmlFault.MALFORMED, f"decrypted content refused: {exc.reason}") from None


def _quote_attr(value: str) -> str:
    return '"' + value.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;") + '"'


def _check_limits(root: etree._Element) -> None:
    """The decrypted document keeps within the limits ``parse_xml`` sets on any document."""
    count = 0
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > DEFAULT_MAX_DEPTH or count > DEFAULT_MAX_ELEMENTS:
            raise XmlProtectError(XmlFault.MALFORMED, "decrypted document exceeds the XML size limits")
        stack.extend((child, depth + 1) for child in _children(node))


# --- Integrity -----------------------------------------------------------------------------------------

_NSMAP_SIGNED: Final = cast("dict[str, str]", {None: SIGNED_NS, "ds": DSIG_NS})


def _ds(local: str) -> str:
    return f"{{{DSIG_NS}}}{local}"


def sign_bodies(parts: list[BodyPart], keys: XmlKeys) -> BodyPart:
    """The ``application/vnd.3gpp.mcptt-signed+xml`` body with one ``ds:Signature`` per part.

    Each part must be an XML document; one without a Content-ID gets a random one (its headers are
    changed in place), since the signature names the part by ``cid:`` (WA-SP-07)."""
    if not parts:
        raise XmlProtectError(XmlFault.MALFORMED, "no body to sign")
    seen: set[str] = set()
    for part in parts:
        content_id = part.content_id
        if content_id is None:
            content_id = _new_content_id()
            part.headers.set("Content-ID", f"<{content_id}>")
        if content_id in seen:
            raise XmlProtectError(XmlFault.MALFORMED, f"two bodies have Content-ID {content_id[:60]!r}")
        seen.add(content_id)
    root = etree.Element(f"{{{SIGNED_NS}}}signatures", nsmap=_NSMAP_SIGNED)
    for number, part in enumerate(parts, start=1):
        content_id = part.content_id
        assert content_id is not None
        digest = hashlib.sha256(_canonical(_parse(part.body, f"body {content_id[:60]!r}"), C14N)).digest()
        signature = etree.SubElement(root, _ds("Signature"), Id=f"signature{number}")
        signed_info = etree.SubElement(signature, _ds("SignedInfo"))
        etree.SubElement(signed_info, _ds("CanonicalizationMethod"), Algorithm=C14N)
        etree.SubElement(signed_info, _ds("SignatureMethod"), Algorithm=HMAC_SHA256)
        reference = etree.SubElement(signed_info, _ds("Reference"), URI="cid:" + _cid_url(content_id))
        transforms = etree.SubElement(reference, _ds("Transforms"))
        etree.SubElement(transforms, _ds("Transform"), Algorithm=C14N)
        etree.SubElement(reference, _ds("DigestMethod"), Algorithm=SHA256)
        etree.SubElement(reference, _ds("DigestValue")).text = base64.b64encode(digest).decode("ascii")
        value = hmac.digest(keys.integrity, _canonical(signed_info, C14N), "sha256")
        etree.SubElement(signature, _ds("SignatureValue")).text = base64.b64encode(value).decode("ascii")
        key_info = etree.SubElement(signature, _ds("KeyInfo"))
        etree.SubElement(key_info, _ds("KeyName")).text = _key_name(keys.key_id)
    body = etree.tostring(root, encoding="UTF-8", xml_declaration=True)
    return BodyPart(Headers([("Content-Type", SIGNED_TYPE)]), body)


def _new_content_id() -> str:
    # Random, and in a reserved domain: a Content-ID must not reveal a host name (topology hiding).
    return f"{secrets.token_hex(16)}@xmlprotect.invalid"


def _cid_url(content_id: str) -> str:
    """RFC 2392: the Content-ID in a ``cid:`` URL, %-encoding what a URL cannot hold."""
    return quote(content_id, safe="@.!$&'()*+,;=:-_~")


def _canonical(element: etree._Element, method: str) -> bytes:
    if element.getparent() is None:
        # A whole document: canonicalise the tree (comments dropped), not a detached subtree.
        return etree.tostring(
            element.getroottree(), method="c14n", exclusive=method == EXC_C14N, with_comments=False
        )
    return etree.tostring(element, method="c14n", exclusive=method == EXC_C14N, with_comments=False)


@dataclass(frozen=True)
class _Reference:
    """What one checked ``ds:Signature`` claims: the part it names and the digest of that part."""

    part: BodyPart
    transform: str | None
    digest: bytes


def verify_bodies(signed: BodyPart, parts: list[BodyPart], resolve: KeyResolver) -> set[int]:
    """Check every signature of ``signed`` over ``parts``; return the key IDs that signed.

    Every MC XML part (``MC_XML_TYPES``) must be covered by a valid signature, and every signature
    must name a part of ``parts`` by Content-ID and match it; anything else is ``xml-integrity``."""
    return _verify(signed, parts, resolve, {})


#: The trees parsed while checking digests, by ``id`` of their part: decryption reuses them.
_Parsed = dict[int, etree._Element]


def _verify(signed: BodyPart, parts: list[BodyPart], resolve: KeyResolver, parsed: _Parsed) -> set[int]:
    if signed.content_type != SIGNED_TYPE:
        raise XmlProtectError(XmlFault.MALFORMED, f"signature body has type {signed.content_type!r}")
    root = _parse(signed.body, "signature body")
    if root.tag != f"{{{SIGNED_NS}}}signatures":
        raise XmlProtectError(XmlFault.MALFORMED, f"signature body root is not signatures in {SIGNED_NS}")
    # The schema's xs:any admits other elements; only ds:Signature counts (IANA: ignore the unknown).
    signatures = [child for child in root if child.tag == _ds("Signature")]
    if not signatures:
        raise XmlProtectError(XmlFault.INTEGRITY, "signature body holds no Signature")
    by_content_id: dict[str, list[BodyPart]] = {}
    for part in parts:
        if part is not signed and part.content_id is not None:
            by_content_id.setdefault(part.content_id, []).append(part)
    covered: list[BodyPart] = []
    key_ids: set[int] = set()
    for number, signature in enumerate(signatures, start=1):
        where = f"Signature {number}"
        signed_info, method, value, key_info = _signature_parts(signature, where)
        keys = _resolve(resolve, key_info, where)
        expected = hmac.digest(keys.integrity, _canonical(signed_info, method), "sha256")
        if not hmac.compare_digest(expected, value):
            raise XmlProtectError(XmlFault.INTEGRITY, f"{where}: SignatureValue does not match SignedInfo")
        reference = _reference(signed_info, by_content_id, where)
        if not hmac.compare_digest(_digest_of(reference, where, parsed), reference.digest):
            raise XmlProtectError(XmlFault.INTEGRITY, f"{where}: digest does not match the body it names")
        covered.append(reference.part)
        key_ids.add(keys.key_id)
    for index, part in enumerate(parts, start=1):
        if part is not signed and part.content_type in MC_XML_TYPES and not any(part is c for c in covered):
            raise XmlProtectError(XmlFault.INTEGRITY, f"part {index} ({part.content_type}) is not signed")
    return key_ids


def _signature_parts(
    signature: etree._Element, where: str
) -> tuple[etree._Element, str, bytes, etree._Element | None]:
    """SignedInfo, its canonicalisation, SignatureValue and KeyInfo of one Signature, shape checked."""
    children = _children(signature)
    tags = [child.tag for child in children]
    if tags != [_ds("SignedInfo"), _ds("SignatureValue"), _ds("KeyInfo")]:
        raise XmlProtectError(XmlFault.MALFORMED, f"{where} must hold SignedInfo, SignatureValue, KeyInfo")
    signed_info, value_element, key_info = children
    info = _children(signed_info)
    if [child.tag for child in info[:2]] != [_ds("CanonicalizationMethod"), _ds("SignatureMethod")]:
        raise XmlProtectError(XmlFault.MALFORMED, f"{where}: SignedInfo lacks its methods")
    canonicalisation, signature_method = info[0], info[1]
    method = canonicalisation.get("Algorithm") or ""
    if method not in _CANONICALISATIONS or _children(canonicalisation):
        raise XmlProtectError(XmlFault.MALFORMED, f"{where}: canonicalisation {method[:80]!r} not accepted")
    # No HMACOutputLength: a truncated HMAC is refused, not checked.
    if signature_method.get("Algorithm") != HMAC_SHA256 or _children(signature_method):
        raise XmlProtectError(XmlFault.MALFORMED, f"{where}: SignatureMethod must be {HMAC_SHA256}")
    value = _b64(value_element.text, f"{where}: SignatureValue")
    if len(value) != HMAC_LENGTH:
        raise XmlProtectError(XmlFault.INTEGRITY, f"{where}: SignatureValue has {len(value)} octets, not 32")
    return signed_info, method, value, key_info


def _reference(
    signed_info: etree._Element, by_content_id: dict[str, list[BodyPart]], where: str
) -> _Reference:
    """The one Reference of a SignedInfo, resolved to a part by Content-ID (WA-SP-07/08)."""
    references = _children(signed_info)[2:]
    if len(references) != 1 or references[0].tag != _ds("Reference"):
        raise XmlProtectError(XmlFault.MALFORMED, f"{where}: SignedInfo must hold exactly one Reference")
    reference = references[0]
    children = _children(reference)
    transform: str | None = None
    if children and children[0].tag == _ds("Transforms"):
        steps = _children(children.pop(0))
        if len(steps) != 1 or steps[0].tag != _ds("Transform") or _children(steps[0]):
            raise XmlProtectError(XmlFault.MALFORMED, f"{where}: Reference must have one C14N Transform")
        transform = steps[0].get("Algorithm") or ""
        if transform not in _DIGEST_TRANSFORMS:
            raise XmlProtectError(XmlFault.MALFORMED, f"{where}: transform {transform[:80]!r} not accepted")
    if [child.tag for child in children] != [_ds("DigestMethod"), _ds("DigestValue")]:
        raise XmlProtectError(XmlFault.MALFORMED, f"{where}: Reference must hold DigestMethod, DigestValue")
    if children[0].get("Algorithm") != SHA256 or _children(children[0]):
        raise XmlProtectError(XmlFault.MALFORMED, f"{where}: DigestMethod must be {SHA256}")
    digest = _b64(children[1].text, f"{where}: DigestValue")
    uri = reference.get("URI")
    if not uri:
        raise XmlProtectError(XmlFault.MALFORMED, f"{where}: Reference has no URI")
    # WA-SP-07: the cid: URL (RFC 2392) is what we send; a bare Content-ID is accepted too.
    bare = uri.removeprefix("<").removesuffix(">")
    content_id = unquote(uri[4:]) if uri[:4].lower() == "cid:" else bare
    candidates = by_content_id.get(content_id, [])
    if len(candidates) != 1:
        state = "no body" if not candidates else "more than one body"
        raise XmlProtectError(XmlFault.INTEGRITY, f"{where} names {uri[:80]!r}, which matches {state}")
    return _Reference(candidates[0], transform, digest)


def _digest_of(reference: _Reference, where: str, parsed: _Parsed) -> bytes:
    body = reference.part.body
    if reference.transform is None:
        return hashlib.sha256(body).digest()
    root = parsed.get(id(reference.part))
    if root is None:
        try:
            root = parse_xml(body)
        except XmlSafetyError as exc:
            raise XmlProtectError(
                XmlFault.INTEGRITY, f"{where}: the body it names is refused: {exc.reason}"
            ) from None
        parsed[id(reference.part)] = root
    return hashlib.sha256(_canonical(root, reference.transform)).digest()


# --- SIP messages ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unprotected:
    """What ``unprotect_message`` found: the key IDs used, and whether the message was signed/encrypted."""

    key_ids: frozenset[int]
    was_signed: bool
    was_encrypted: bool


@dataclass
class _Body:
    """The SIP body as parts; ``single`` when it was not multipart."""

    parts: list[BodyPart]
    single: bool
    boundary: str | None


def _body_of(message: SipMessage) -> _Body | None:
    """The message body as parts, or ``None`` when there is no body."""
    content_type = message.content_type
    header = message.headers.get("Content-Type") or ""
    if not content_type.startswith("multipart/"):
        if not message.body and not content_type:
            return None
        headers = Headers([("Content-Type", header)] if header else [])
        for name in _BODY_HEADERS:
            value = message.headers.get(name)
            if value is not None:
                headers.add(name, value)
        return _Body([BodyPart(headers, message.body)], single=True, boundary=None)
    if content_type != "multipart/mixed":
        raise XmlProtectError(XmlFault.MALFORMED, f"{content_type} body (only multipart/mixed is protected)")
    try:
        parts = parse_multipart(message.body, header)
        boundary = boundary_of(header)
    except MultipartError as exc:
        raise XmlProtectError(XmlFault.MALFORMED, f"multipart body refused: {exc.reason}") from None
    for index, part in enumerate(parts, start=1):
        if part.content_type.startswith("multipart/"):
            raise XmlProtectError(XmlFault.MALFORMED, f"nested {part.content_type} in part {index}")
    return _Body(parts, single=False, boundary=boundary)


def _write_body(message: SipMessage, parts: list[BodyPart], body: _Body) -> None:
    """Set the message body to ``parts``: a single part becomes the whole body again."""
    if len(parts) == 1:
        part = parts[0]
        message.body = part.body
        content_type = part.headers.get("Content-Type")
        if content_type is None:
            message.headers.remove("Content-Type")
        else:
            message.headers.set("Content-Type", content_type)
        for name in _BODY_HEADERS:
            value = part.headers.get(name)
            if value is None:
                message.headers.remove(name)
            else:
                message.headers.set(name, value)
        return
    try:
        content_type, encoded = build_multipart(parts, body.boundary)
    except ValueError:
        content_type, encoded = build_multipart(parts)  # the old boundary now occurs in a part
    message.body = encoded
    message.headers.set("Content-Type", content_type)
    if body.single:
        for name in _BODY_HEADERS:
            message.headers.remove(name)  # they moved into the part they describe


def protect_message(
    message: SipMessage,
    keys: XmlKeys,
    *,
    encrypt: bool = True,
    sign: bool = True,
    elements: Collection[str] = SENSITIVE_ELEMENTS,
) -> None:
    """Protect the message in place: encrypt the listed elements of every MC XML body, then add the
    signature body over all MC XML bodies (a single body becomes ``multipart/mixed``).

    A message without an MC XML body is left alone.  One that already carries a signature body is
    refused (remove internal protection first, WA-SP-14).  On any error the message is unchanged."""
    body = _body_of(message)
    if body is None:
        return
    if any(part.content_type == SIGNED_TYPE for part in body.parts):
        raise XmlProtectError(XmlFault.MALFORMED, "message already carries a signature body")
    mc_parts = [part for part in body.parts if part.content_type in MC_XML_TYPES]
    if not mc_parts or not (encrypt or sign):
        return
    if encrypt:
        for part in mc_parts:
            part.body = encrypt_elements(part.body, keys, elements=elements)
    parts = body.parts
    if sign:
        parts = [*parts, sign_bodies(mc_parts, keys)]
    _write_body(message, parts, body)


def unprotect_message(
    message: SipMessage, resolve: KeyResolver, *, require_signature: bool = True
) -> Unprotected:
    """Verify, then decrypt, in place: the signature body is removed and every encrypted element of
    the MC XML bodies decrypted.

    Every signature is checked before anything is decrypted (24.379 7.3.1A, WA-SP-13), and the message
    is changed only when all succeeded.  MC XML bodies without a signature are ``xml-unprotected``
    when ``require_signature``; a message without MC XML bodies gives ``Unprotected(∅, False, False)``."""
    body = _body_of(message)
    if body is None:
        return Unprotected(frozenset(), was_signed=False, was_encrypted=False)
    signed_parts = [part for part in body.parts if part.content_type == SIGNED_TYPE]
    others = [part for part in body.parts if part.content_type != SIGNED_TYPE]
    mc_parts = [part for part in others if part.content_type in MC_XML_TYPES]
    if len(signed_parts) > 1:
        raise XmlProtectError(XmlFault.MALFORMED, f"message carries {len(signed_parts)} signature bodies")
    if not signed_parts and not mc_parts:
        return Unprotected(frozenset(), was_signed=False, was_encrypted=False)
    key_ids: set[int] = set()
    parsed: _Parsed = {}
    if signed_parts:
        key_ids |= _verify(signed_parts[0], others, resolve, parsed)
    elif require_signature:
        raise XmlProtectError(XmlFault.UNPROTECTED, "MC XML body without the required signature body")
    plaintexts: list[bytes] = []
    was_encrypted = False
    for part in mc_parts:
        # The tree the digest was checked on is the verified one: decrypt it rather than parse again.
        plaintext, used = _decrypt(part.body, resolve, parsed.get(id(part)))
        plaintexts.append(plaintext)
        was_encrypted = was_encrypted or bool(used)
        key_ids |= used
    for part, plaintext in zip(mc_parts, plaintexts, strict=True):
        part.body = plaintext
    if signed_parts:
        _write_body(message, others, body)
    elif was_encrypted:
        _write_body(message, body.parts, body)
    return Unprotected(frozenset(key_ids), was_signed=bool(signed_parts), was_encrypted=was_encrypted)


def is_protected(message: SipMessage) -> bool:
    """Whether the message carries a signature body or an encrypted element in an MC XML body.

    Never raises: a body that cannot be read counts as unprotected (``unprotect_message`` will say why)."""
    try:
        body = _body_of(message)
    except XmlProtectError:
        return False
    if body is None:
        return False
    for part in body.parts:
        if part.content_type == SIGNED_TYPE:
            return True
        if part.content_type in MC_XML_TYPES and b"EncryptedData" in part.body:
            try:
                root = parse_xml(part.body)
            except XmlSafetyError:
                continue
            if next(_encrypted_nodes(root), None) is not None:
                return True
    return False


def _encrypted_nodes(root: etree._Element) -> Iterator[etree._Element]:
    return root.iter(f"{{{XENC_NS}}}EncryptedData")
