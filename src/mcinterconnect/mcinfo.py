"""The MCPTT info body, ``application/vnd.3gpp.mcptt-info+xml`` (TS 24.379 Annex F.1).

The border reads and rewrites the identities this body carries along the call path (24.379 Annex H,
spec/interconnection.md 8.3): the Request-URI of the MC service (``mcptt-request-uri``), the calling user
(``mcptt-calling-user-id``), the called party (``mcptt-called-party-id``) and the calling group
(``mcptt-calling-group-id``), plus ``session-type``.  The document is::

    <mcpttinfo xmlns="urn:3gpp:ns:mcpttInfo:1.0">
      <mcptt-Params>
        <session-type>prearranged</session-type>
        <mcptt-request-uri type="Normal"><mcpttURI>sip:grp1@b.mc.example</mcpttURI></mcptt-request-uri>
      </mcptt-Params>
    </mcpttinfo>

The identity elements are of the schema's ``contentType``: a plain ``<mcpttURI>`` with ``type="Normal"``
(or no ``type``), or an ``xenc:EncryptedData`` with ``type="Encrypted"`` when XML confidentiality
protection (TS 33.180 9.3, spec/signalling-protection-and-ear.md 5.3) is on.  An encrypted identity cannot
be read without the key, and parsing says so with its own exception, ``McInfoEncryptedError``, so that the
border can refuse with that reason rather than a generic one.

Parsing is strict where a lenient reader would let two readers disagree on an identity: duplicates of a
read element, an ``mcpttURI`` holding elements, and a ``type`` other than Normal/Encrypted are refused.
Elements this module does not read (the access token, emergency and alert indications, other namespaces
admitted by the schema's ``xs:any``) are ignored when parsing and kept untouched by
``replace_mcptt_info``.  All XML goes through ``mcinterconnect.xmlsafe`` (no DTD, entity or network).

The body is found either as the whole SIP body or as one part of a ``multipart/mixed`` body (24.379 uses
multipart to carry it beside SDP, resource-lists and the signature body).  Rewriting it invalidates an
``application/vnd.3gpp.mcptt-signed+xml`` signature over it (33.180 9.3); re-signing is the caller's job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, cast

from lxml import etree

from mcinterconnect.sip.message import SipMessage
from mcinterconnect.sip.multipart import BodyPart, MultipartError, boundary_of, parse_multipart
from mcinterconnect.xmlsafe import XmlSafetyError, parse_xml

MCPTT_INFO_TYPE: Final = "application/vnd.3gpp.mcptt-info+xml"
MCPTT_INFO_NS: Final = "urn:3gpp:ns:mcpttInfo:1.0"
XENC_NS: Final = "http://www.w3.org/2001/04/xmlenc#"

#: Children of ``mcptt-Params`` in schema order (24.379 F.1.2), as far as the last element read here;
#: new elements are inserted after the last of these that precedes them.
_PARAMS_ORDER: Final = (
    "mcptt-access-token",
    "session-type",
    "mcptt-request-uri",
    "mcptt-calling-user-id",
    "mcptt-called-party-id",
    "mcptt-calling-group-id",
)


#: The MCPTT info namespace as default namespace (lxml-stubs types nsmap keys without the ``None`` key).
_DEFAULT_NAMESPACE: Final = cast("dict[str, str]", {None: MCPTT_INFO_NS})


class McInfoFault(StrEnum):
    """Reason codes of ``McInfoError``, for the audit log and the SIP Warning."""

    UNSAFE_XML = "mcptt-info-unsafe-xml"
    WRONG_ROOT = "mcptt-info-wrong-root"
    DUPLICATE_ELEMENT = "mcptt-info-duplicate-element"
    MISSING_VALUE = "mcptt-info-missing-value"
    BAD_VALUE = "mcptt-info-bad-value"
    BAD_PROTECTION_TYPE = "mcptt-info-bad-protection-type"
    ENCRYPTED = "mcptt-info-encrypted"
    BAD_BODY = "mcptt-info-bad-body"
    ABSENT = "mcptt-info-absent"


class McInfoError(ValueError):
    """An MCPTT info body that cannot be used; ``reason`` is one line, ``fault`` its reason code."""

    def __init__(self, reason: str, fault: McInfoFault) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fault = fault


class McInfoEncryptedError(McInfoError):
    """An identity element is encrypted (``type="Encrypted"``); reading it needs the XML protection key."""

    def __init__(self, element: str) -> None:
        super().__init__(
            f'{element} is encrypted (type="Encrypted") and cannot be read without the key',
            McInfoFault.ENCRYPTED,
        )
        #: Local name of the encrypted element, e.g. ``mcptt-calling-user-id``.
        self.element = element


@dataclass(frozen=True)
class McpttInfo:
    """The identities of an MCPTT info body; ``None`` means the element is absent.

    Values are the text of ``<mcpttURI>`` (or of ``<session-type>``), without surrounding whitespace.
    """

    request_uri: str | None = None
    calling_user_id: str | None = None
    called_party_id: str | None = None
    calling_group_id: str | None = None
    session_type: str | None = None

    def __post_init__(self) -> None:
        for spec in _FIELDS:
            value = getattr(self, spec.attribute)
            if value is not None:
                _check_value(spec.element, value)

    def to_xml(self) -> bytes:
        """The body: UTF-8 with an XML declaration, default namespace, elements in schema order."""
        root = etree.Element(_qname("mcpttinfo"), nsmap=_DEFAULT_NAMESPACE)
        params = etree.SubElement(root, _qname("mcptt-Params"))
        for spec in _FIELDS_IN_SCHEMA_ORDER:
            value = getattr(self, spec.attribute)
            if value is not None:
                params.append(spec.build(value))
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


@dataclass(frozen=True)
class _FieldSpec:
    """How one ``McpttInfo`` attribute is carried: element name, and whether it is a ``contentType``."""

    attribute: str
    element: str
    is_content_type: bool

    def build(self, value: str) -> etree._Element:
        element = etree.Element(_qname(self.element))
        if self.is_content_type:
            element.set("type", "Normal")
            etree.SubElement(element, _qname("mcpttURI")).text = value
        else:
            element.text = value
        return element


_FIELDS: Final = (
    _FieldSpec("request_uri", "mcptt-request-uri", is_content_type=True),
    _FieldSpec("calling_user_id", "mcptt-calling-user-id", is_content_type=True),
    _FieldSpec("called_party_id", "mcptt-called-party-id", is_content_type=True),
    _FieldSpec("calling_group_id", "mcptt-calling-group-id", is_content_type=True),
    _FieldSpec("session_type", "session-type", is_content_type=False),
)
_FIELDS_IN_SCHEMA_ORDER: Final = tuple(sorted(_FIELDS, key=lambda spec: _PARAMS_ORDER.index(spec.element)))


def _qname(local: str) -> str:
    return f"{{{MCPTT_INFO_NS}}}{local}"


#: Control characters, surrogates and U+FFFE/U+FFFF: not XML characters (XML 1.0 §2.2), or (tab,
#: line feed, carriage return) not kept as they are by a reader.
_NOT_CARRIED: Final = re.compile("[\x00-\x1f\ud800-\udfff\ufffe\uffff]")


def _check_value(element: str, value: str) -> None:
    """Refuse values that would not come back unchanged from ``to_xml`` and ``parse_mcptt_info``."""
    if not value or value != value.strip():
        raise ValueError(f"{element} value must be non-empty without surrounding whitespace: {value!r}")
    bad = _NOT_CARRIED.search(value)
    if bad is not None:
        raise ValueError(f"{element} value holds character U+{ord(bad.group()):04X}, which XML cannot carry")


# --- Parsing -----------------------------------------------------------------------------------------


def parse_mcptt_info(data: bytes) -> McpttInfo:
    """Read the identities of an MCPTT info document.

    Raises ``McInfoError`` (``McInfoEncryptedError`` for an encrypted identity) naming the fault.
    Elements not listed in ``McpttInfo`` are ignored.
    """
    params = _params_of(_parse_root(data))
    if params is None:
        return McpttInfo()
    children = _children_by_tag(params)
    values: dict[str, str] = {}
    for spec in _FIELDS_IN_SCHEMA_ORDER:
        element = _only(children, params, spec.element)
        if element is None:
            continue
        local = spec.element
        values[spec.attribute] = (
            _content_value(element, local) if spec.is_content_type else _string_value(element, local)
        )
    return McpttInfo(**values)


def _parse_root(data: bytes) -> etree._Element:
    try:
        root = parse_xml(data)
    except XmlSafetyError as exc:
        raise McInfoError(f"mcptt-info body refused: {exc.reason}", McInfoFault.UNSAFE_XML) from None
    if root.tag != _qname("mcpttinfo"):
        raise McInfoError(
            f"root element is {_describe(root.tag)}, expected mcpttinfo in namespace {MCPTT_INFO_NS}",
            McInfoFault.WRONG_ROOT,
        )
    return root


def _params_of(root: etree._Element) -> etree._Element | None:
    return _single_child(root, "mcptt-Params")


def _describe(tag: object) -> str:
    qname = etree.QName(str(tag))
    if qname.namespace is None:
        return f"{qname.localname} (no namespace)"
    return f"{qname.localname} in namespace {qname.namespace}"


_ENCRYPTED_DATA: Final = f"{{{XENC_NS}}}EncryptedData"
#: Element children by qualified tag.
_Children = dict[str, list[etree._Element]]


def _single_child(parent: etree._Element, local: str) -> etree._Element | None:
    """The one child ``local`` (in the MCPTT info namespace) of ``parent``; a second one is refused."""
    return _only({_qname(local): parent.findall(_qname(local))}, parent, local)


def _children_by_tag(parent: etree._Element) -> _Children:
    """The element children of ``parent`` by qualified tag, in document order (one pass, for
    reading several fields of the same parent)."""
    children: _Children = {}
    for child in parent:
        tag = child.tag
        if isinstance(tag, str):
            children.setdefault(tag, []).append(child)
    return children


def _only(children: _Children, parent: etree._Element, local: str) -> etree._Element | None:
    """The one child ``local`` (MCPTT info namespace) among ``children``; a second one is refused."""
    found = children.get(_qname(local))
    if not found:
        return None
    if len(found) > 1:
        raise McInfoError(
            f"duplicate element {local} in {etree.QName(parent).localname}", McInfoFault.DUPLICATE_ELEMENT
        )
    return found[0]


def _text_of(element: etree._Element, local: str) -> str:
    """The XPath string value of a leaf element; child elements are refused (readers would disagree)."""
    if any(isinstance(child.tag, str) for child in element):
        raise McInfoError(f"{local} must hold text only, not elements", McInfoFault.BAD_VALUE)
    return "".join(text for text in element.itertext() if isinstance(text, str)).strip()


def _string_value(element: etree._Element, local: str) -> str:
    value = _text_of(element, local)
    if not value:
        raise McInfoError(f"{local} is empty", McInfoFault.MISSING_VALUE)
    return value


def _content_value(element: etree._Element, local: str) -> str:
    """The URI of the ``contentType`` element ``local`` (24.379 F.1.2) holding a plain ``mcpttURI``."""
    protection = element.get("type")
    children = _children_by_tag(element)
    if protection == "Encrypted" or _ENCRYPTED_DATA in children:
        raise McInfoEncryptedError(local)
    if protection not in (None, "Normal"):
        raise McInfoError(
            f"{local} has type {protection!r} (expected 'Normal' or 'Encrypted')",
            McInfoFault.BAD_PROTECTION_TYPE,
        )
    uri = _only(children, element, "mcpttURI")
    if uri is None:
        raise McInfoError(f"{local} has no mcpttURI", McInfoFault.MISSING_VALUE)
    value = _text_of(uri, "mcpttURI")
    if not value:
        raise McInfoError(f"{local} has an empty mcpttURI", McInfoFault.MISSING_VALUE)
    return value


# --- Finding the body in a SIP message ---------------------------------------------------------------


@dataclass(frozen=True)
class _Located:
    """Where the MCPTT info document sits in the SIP body: ``body[start:end]``."""

    document: bytes
    start: int
    end: int


def find_mcptt_info(message: SipMessage) -> McpttInfo | None:
    """The identities of the message's MCPTT info body, or ``None`` if it has none.

    The body is the whole SIP body (Content-Type ``application/vnd.3gpp.mcptt-info+xml``) or exactly one
    part of a ``multipart/mixed`` body (any other ``multipart/*`` body is searched the same way).
    Raises ``McInfoError`` for an unusable body: a malformed multipart, a nested multipart (whose parts
    a border would not see), two MCPTT info parts (readers could pick different ones), or a document
    that ``parse_mcptt_info`` refuses.
    """
    located = _locate(message)
    if located is None:
        return None
    return parse_mcptt_info(located.document)


def replace_mcptt_info(message: SipMessage, info: McpttInfo) -> None:
    """Rewrite the message's MCPTT info document in place so that it carries ``info``.

    Each identity element is replaced where it stands (a ``None`` field removes the element, even an
    encrypted one), new ones go to their schema position, and every other element, comment and part is
    kept: the other parts of a multipart body stay byte-identical.  A message without a body gets
    ``info.to_xml()`` as its body.  Raises ``McInfoError`` when the message has a body but no MCPTT info
    document, or when the existing document is refused.
    """
    located = _locate(message)
    if located is None:
        if message.body.strip() or message.headers.get("Content-Type"):
            raise McInfoError("message has no mcptt-info body to replace", McInfoFault.ABSENT)
        message.body = info.to_xml()
        message.headers.set("Content-Type", MCPTT_INFO_TYPE)
        return
    rewritten = _rewrite_document(located.document, info)
    message.body = message.body[: located.start] + rewritten + message.body[located.end :]


def _locate(message: SipMessage) -> _Located | None:
    content_type = message.content_type
    if content_type == MCPTT_INFO_TYPE:
        return _Located(message.body, 0, len(message.body))
    # 24.379 uses multipart/mixed; other multipart subtypes are searched alike so that no part escapes.
    if not content_type.startswith("multipart/"):
        return None
    header = message.headers.get("Content-Type") or ""
    try:
        parts = parse_multipart(message.body, header)
    except MultipartError as exc:
        raise McInfoError(f"multipart body refused: {exc.reason}", McInfoFault.BAD_BODY) from None
    found: list[int] = []
    for index, part in enumerate(parts):
        if part.content_type.startswith("multipart/"):
            raise McInfoError(
                f"nested {part.content_type} body in part {index + 1} (refused)", McInfoFault.BAD_BODY
            )
        if part.content_type == MCPTT_INFO_TYPE:
            found.append(index)
    if not found:
        return None
    if len(found) > 1:
        raise McInfoError(f"multipart body has {len(found)} mcptt-info parts", McInfoFault.BAD_BODY)
    start, end = _part_body_span(message.body, header, parts, found[0])
    return _Located(message.body[start:end], start, end)


def _part_body_span(body: bytes, header: str, parts: list[BodyPart], index: int) -> tuple[int, int]:
    """Where the body of ``parts[index]`` lies in ``body``, so that it can be swapped byte-exactly.

    ``parse_multipart`` (which has already accepted this body) returns copies, not offsets; this walks
    the same delimiters (RFC 2046 5.1.1) and checks that it lands on the same bytes.  A part's body is
    the tail of the bytes between its delimiter line and the next delimiter.
    """
    dash_boundary = b"--" + boundary_of(header).encode("ascii")
    delimiter = b"\r\n" + dash_boundary
    position = 0 if body.startswith(dash_boundary) else body.find(delimiter) + 2
    content_start = end = -1
    for _ in range(index + 1):
        # After the delimiter: optional transport padding (checked by parse_multipart), then CRLF.
        line_end = body.find(b"\r\n", position + len(dash_boundary))
        if line_end < 0:
            break
        content_start = line_end + 2
        end = body.find(delimiter, content_start)
        if end < 0:
            break
        position = end + 2
    start = end - len(parts[index].body)
    if end < 0 or start < content_start or body[start:end] != parts[index].body:
        raise McInfoError(f"cannot locate the mcptt-info part (part {index + 1})", McInfoFault.BAD_BODY)
    return start, end


# --- Rewriting ---------------------------------------------------------------------------------------


def _rewrite_document(document: bytes, info: McpttInfo) -> bytes:
    root = _parse_root(document)
    params = _params_of(root)
    if params is None:
        params = etree.Element(_qname("mcptt-Params"))
        root.insert(0, params)
    for spec in _FIELDS_IN_SCHEMA_ORDER:
        value = getattr(info, spec.attribute)
        existing = params.findall(_qname(spec.element))
        replacement = spec.build(value) if value is not None else None
        if existing:
            first, duplicates = existing[0], existing[1:]
            for duplicate in duplicates:
                _remove(duplicate)
            if replacement is None:
                _remove(first)
            else:
                replacement.tail = first.tail
                params.replace(first, replacement)
        elif replacement is not None:
            _insert_in_schema_order(params, replacement, spec.element)
    return etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")


def _insert_in_schema_order(params: etree._Element, new: etree._Element, local: str) -> None:
    rank = _PARAMS_ORDER.index(local)
    before = {_qname(name) for name in _PARAMS_ORDER[:rank]}
    predecessors = [child for child in params if child.tag in before]
    if predecessors:
        anchor = predecessors[-1]
        new.tail = anchor.tail
        anchor.addnext(new)
    else:
        new.tail = params.text
        params.insert(0, new)


def _remove(element: etree._Element) -> None:
    """Remove ``element``, handing its tail to what came before it so that indentation stays right.

    The tails dropped this way are only whitespace: ``mcptt-Params`` holds no mixed content.
    """
    parent = element.getparent()
    if parent is None:
        return
    previous = element.getprevious()
    if previous is not None:
        previous.tail = element.tail
    else:
        parent.text = element.tail
    parent.remove(element)
