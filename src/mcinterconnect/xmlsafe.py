"""Safe XML parsing: the one place in the project where XML is parsed.

Every XML document the border reads comes from a peer it does not control (MC info bodies, signed-body
lists, group documents, KMS responses), so parsing must not let the document make the parser do work or
reach resources the document's size does not account for:

* billion laughs (nested internal entities expanding to gigabytes) and its quadratic-blowup cousin;
* XXE: external entities and external DTD subsets that read local files (``file:///etc/passwd``) or make
  network requests (``http://...``), leaking data or probing the operator's network;
* parameter entities, which carry either attack from inside a DTD;
* very deep or very wide trees that cost memory and recursion in whatever walks them later.

No MC document needs a DTD, an entity or a processing instruction, so all of them are refused outright
rather than merely left unexpanded: a DOCTYPE (or an ``<!ENTITY`` declaration) is refused on sight in the
bytes, and again from the parsed tree as a second, independent check.  The parser itself runs with entity
resolution, DTD loading, DTD validation and network access off, and without libxml2's ``huge_tree``.
XInclude is never processed (lxml only does so when asked).  Only UTF-8 documents are accepted, so the
byte-level checks above cannot be dodged by an ASCII-incompatible encoding and every reader of the same
bytes sees the same characters (no encoding differential between the border and the MC server).

Clauses: the project rule "parse all XML with DTDs, entity resolution and network access disabled"
(spec/crypto.md 8.3), on which the XML protection of TS 33.180 clause 9.3 (signature and encryption of MC
XML bodies, with keys from Annex F.1.4) relies: a signature check or a decryption is only as sound as the
parse of the document it runs on.
"""

from __future__ import annotations

import re
from typing import Final

from lxml import etree

DEFAULT_MAX_BYTES: Final = 65_536
DEFAULT_MAX_DEPTH: Final = 32
DEFAULT_MAX_ELEMENTS: Final = 2_000

#: Markup that only a DTD can hold; no MC document has one, so seeing it anywhere is enough to refuse.
_DTD_MARKERS: Final = (
    (b"<!DOCTYPE", "document has a DTD (refused)"),
    (b"<!ENTITY", "document declares an entity (refused)"),
)

_DECLARED_ENCODING_RE: Final = re.compile(
    rb"\A(?:\xef\xbb\xbf)?<\?xml\s[^>]*?\bencoding\s*=\s*([\"'])([^\"']*)\1",
)
_UTF8_NAMES: Final = frozenset({"utf-8", "utf8"})


class XmlSafetyError(ValueError):
    """An XML document refused by ``parse_xml``; ``reason`` is one line naming the fault."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_xml(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> etree._Element:
    """Parse one UTF-8 XML document and return its root element.

    Refused, with ``XmlSafetyError``: empty or oversized input, bytes that are not UTF-8 or an XML
    declaration naming another encoding, any DTD or entity declaration, any processing instruction
    (the XML declaration is not one), nesting deeper than ``max_depth`` elements (the root is depth 1),
    more than ``max_elements`` elements, and anything that is not well-formed XML.  No other exception
    leaves this function for any ``bytes`` input.  Comments are kept and carry no meaning.
    """
    if not isinstance(data, bytes):
        raise TypeError(f"parse_xml takes bytes, not {type(data).__name__}")
    _check_bytes(data, max_bytes)
    root = _parse(data, max_depth)
    _check_tree(root, max_depth, max_elements)
    return root


def _check_bytes(data: bytes, max_bytes: int) -> None:
    """Checks made on the raw bytes, before any parsing."""
    if not data:
        raise XmlSafetyError("document is empty")
    if len(data) > max_bytes:
        raise XmlSafetyError(f"document exceeds {max_bytes} bytes")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise XmlSafetyError(f"document is not UTF-8 (invalid byte at offset {exc.start})") from None
    declared = _DECLARED_ENCODING_RE.match(data)
    if declared is not None:
        name = declared.group(2).decode("ascii", "replace")
        if name.lower() not in _UTF8_NAMES:
            raise XmlSafetyError(f"document declares encoding {name!r} (only UTF-8 is accepted)")
    for marker, reason in _DTD_MARKERS:
        if marker in data:
            raise XmlSafetyError(reason)


def _new_parser() -> etree.XMLParser:
    return etree.XMLParser(
        # The bytes were checked to be UTF-8; forcing it keeps libxml2 from switching on the declaration.
        encoding="utf-8",
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        attribute_defaults=False,
        huge_tree=False,
        remove_comments=False,
        remove_pis=False,
    )


def _parse(data: bytes, max_depth: int) -> etree._Element:
    # One-shot parse: libxml2's push (feed) interface reports some faults only as "no element found".
    try:
        return etree.fromstring(data, _new_parser())
    except etree.XMLSyntaxError as exc:
        message = _first_line(exc)
        # libxml2's own nesting cap (256 without huge_tree) is met before our walk can count.
        if message.startswith("Excessive depth"):
            raise XmlSafetyError(f"element depth exceeds {max_depth}") from None
        raise XmlSafetyError(f"malformed XML: {message}") from None


def _check_tree(root: etree._Element, max_depth: int, max_elements: int) -> None:
    """Checks on the parsed tree, independent of the byte scan: no DTD, entity or PI; depth and size."""
    docinfo = root.getroottree().docinfo
    doctype: str = getattr(docinfo, "doctype", "") or ""
    if doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise XmlSafetyError("document has a DTD (refused)")
    # Prolog and epilogue: only comments may stand beside the root.
    for sibling in (*root.itersiblings(preceding=True), *root.itersiblings()):
        _refuse_special_node(sibling)
    elements = 0
    # Iterative walk, so that depth is bounded by our limit and never by Python's recursion limit.
    stack: list[tuple[etree._Element, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node.tag, str):
            _refuse_special_node(node)
            continue
        elements += 1
        if depth > max_depth:
            raise XmlSafetyError(f"element depth exceeds {max_depth}")
        if elements > max_elements:
            raise XmlSafetyError(f"element count exceeds {max_elements}")
        stack.extend((child, depth + 1) for child in node)


def _refuse_special_node(node: etree._Element) -> None:
    """Refuse a node that is not an element or a comment."""
    if isinstance(node, etree._ProcessingInstruction):
        raise XmlSafetyError(f"document has a processing instruction <?{_pi_target(node)}?> (refused)")
    if isinstance(node, etree._Entity):
        raise XmlSafetyError("document references an entity (refused)")


def _pi_target(node: object) -> str:
    target = getattr(node, "target", None)
    return target if isinstance(target, str) else "?"


def _first_line(exc: etree.XMLSyntaxError) -> str:
    """libxml2's message for the fault, on one line (it names the line and column itself)."""
    text = str(exc.msg if exc.msg else exc).strip()
    return text.splitlines()[0].strip() if text else "unknown parse error"
