"""MC group documents (modelled on TS 24.481) and what an external requester may see of them (sans-IO).

A group document names one MC service group and its members::

    <group xmlns="urn:oma:xml:poc:list-service"
           xmlns:mcpttgi="urn:3gpp:ns:mcpttGroupInfo:1.0"
           xmlns:mcic="urn:mcinterconnect:xml:group-visibility:1">
      <list-service uri="sip:fire@b.mc.example">
        <display-name>Fire brigade</display-name>
        <list>
          <entry uri="sip:alice@a.mc.example">
            <mcpttgi:participant-type>dispatcher</mcpttgi:participant-type>
            <mcpttgi:user-priority>5</mcpttgi:user-priority>
          </entry>
        </list>
        <mcpttgi:supported-services>
          <mcpttgi:service name="mcptt"/>
        </mcpttgi:supported-services>
        <mcic:partner-visibility>
          <mcic:partner domain="a.mc.example" reveal-members="true" reveal-attributes="true"/>
        </mcic:partner-visibility>
      </list-service>
    </group>

Choices (the 24.481 text was read only in part, spec/field-notes.md §8.2):

* ``group``, ``list-service`` (attribute ``uri`` = the MC service group ID), ``display-name``, ``list``
  and ``entry`` (attribute ``uri`` = the member's MC service ID) are OMA list-service elements
  (``urn:oma:xml:poc:list-service``), as 24.481 uses them.
* ``participant-type`` (role) and ``user-priority`` (0..255) per entry are 24.481's MCPTT group
  information extensions, written in the ``urn:3gpp:ns:mcpttGroupInfo:1.0`` namespace.
  ``supported-services`` (``mcptt``/``mcdata``/``mcvideo``) is this project's stand-in for the
  per-service group information 24.481 spreads over several elements.
* ``partner-visibility`` is this project's extension (WA-IC-12, minimum disclosure): one ``partner``
  rule per partner domain, saying whether members homed in that domain and the group attributes
  (display name, supported services) may be revealed to a requester of that domain.  Rules are by
  domain, not by partner name, so that the document stands alone; a partner with several domains
  has one rule per domain.  The rules themselves are never revealed outside the system.
* ``xml:lang`` on ``display-name`` is accepted and not kept (one display name per group).
* Anything else (unknown elements, attributes out of range, duplicate members) is refused with a
  ``GroupDocumentError`` whose ``xcap_error`` names the RFC 4825 error element to answer with.

``to_xml`` writes the canonical form (fixed prefixes, document order kept), so the strong ``etag``
(quoted SHA-256 prefix of those bytes, RFC 4825 §7.11) is the same for every equal document.
All parsing goes through ``xmlsafe.parse_xml`` (no DTD, no entity, bounded size and depth).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Final, Literal

from lxml import etree

from mcinterconnect.identity import IdentityError, McServiceId
from mcinterconnect.xmlsafe import XmlSafetyError, parse_xml

__all__ = [
    "GMCPTT_NS",
    "LIST_SERVICE_NS",
    "MAX_DOCUMENT_BYTES",
    "SERVICES",
    "VISIBILITY_NS",
    "GroupDocument",
    "GroupDocumentError",
    "GroupMember",
    "PartnerVisibility",
    "filtered_for",
]

LIST_SERVICE_NS: Final = "urn:oma:xml:poc:list-service"
GMCPTT_NS: Final = "urn:3gpp:ns:mcpttGroupInfo:1.0"
VISIBILITY_NS: Final = "urn:mcinterconnect:xml:group-visibility:1"
_NSMAP: Final = {None: LIST_SERVICE_NS, "mcpttgi": GMCPTT_NS, "mcic": VISIBILITY_NS}

SERVICES: Final = ("mcptt", "mcdata", "mcvideo")
MAX_DOCUMENT_BYTES: Final = 65_536
MAX_MEMBERS: Final = 1_000
MAX_TEXT: Final = 256
MAX_PRIORITY: Final = 255

XcapErrorKind = Literal["not-well-formed", "schema-validation-error", "constraint-failure"]


class GroupDocumentError(ValueError):
    """A group document refused; ``reason`` is one line, ``xcap_error`` the RFC 4825 error element."""

    def __init__(self, reason: str, xcap_error: XcapErrorKind = "schema-validation-error") -> None:
        super().__init__(reason)
        self.reason = reason
        self.xcap_error: XcapErrorKind = xcap_error


@dataclass(frozen=True)
class GroupMember:
    """One member: MC service ID (canonical ``sip:user@domain``), optional role and priority."""

    id: str
    role: str | None = None
    priority: int | None = None

    @property
    def domain(self) -> str:
        return McServiceId.parse(self.id).domain


@dataclass(frozen=True)
class PartnerVisibility:
    """What a requester of ``domain`` may see (WA-IC-12)."""

    domain: str
    reveal_members: bool = False
    reveal_attributes: bool = False


@dataclass(frozen=True)
class GroupDocument:
    """One MC service group (TS 24.481 group document)."""

    group_id: str
    display_name: str | None = None
    members: tuple[GroupMember, ...] = ()
    services: tuple[str, ...] = ()
    visibility: tuple[PartnerVisibility, ...] = field(default=())

    def __post_init__(self) -> None:
        _validate(self)

    # -- serialisation

    def to_xml(self) -> bytes:
        """The canonical document bytes (UTF-8, with XML declaration)."""
        return self._xml

    @cached_property
    def _xml(self) -> bytes:
        # Made once per document (it is immutable): a GET needs it for the ETag and the body.
        root = etree.Element(_ls("group"), nsmap=_NSMAP)  # type: ignore[arg-type]
        service = etree.SubElement(root, _ls("list-service"), uri=self.group_id)
        if self.display_name is not None:
            etree.SubElement(service, _ls("display-name")).text = self.display_name
        members = etree.SubElement(service, _ls("list"))
        for member in self.members:
            entry = etree.SubElement(members, _ls("entry"), uri=member.id)
            if member.role is not None:
                etree.SubElement(entry, _gi("participant-type")).text = member.role
            if member.priority is not None:
                etree.SubElement(entry, _gi("user-priority")).text = str(member.priority)
        if self.services:
            supported = etree.SubElement(service, _gi("supported-services"))
            for name in self.services:
                etree.SubElement(supported, _gi("service"), name=name)
        if self.visibility:
            rules = etree.SubElement(service, _vis("partner-visibility"))
            for rule in self.visibility:
                etree.SubElement(
                    rules,
                    _vis("partner"),
                    {
                        "domain": rule.domain,
                        "reveal-members": _bool_text(rule.reveal_members),
                        "reveal-attributes": _bool_text(rule.reveal_attributes),
                    },
                )
        return bytes(etree.tostring(root, encoding="UTF-8", xml_declaration=True, pretty_print=True))

    @cached_property
    def etag(self) -> str:
        """Strong ETag: the quoted first 32 hex digits of SHA-256 over ``to_xml()``."""
        return '"' + hashlib.sha256(self.to_xml()).hexdigest()[:32] + '"'

    @classmethod
    def from_xml(cls, data: bytes) -> GroupDocument:
        """Parse and validate a document; ``GroupDocumentError`` is the only failure for any bytes."""
        try:
            root = parse_xml(data, max_bytes=MAX_DOCUMENT_BYTES)
        except XmlSafetyError as exc:
            raise GroupDocumentError(exc.reason, "not-well-formed") from None
        if root.tag != _ls("group"):
            raise GroupDocumentError("root element is not <group> of urn:oma:xml:poc:list-service")
        _no_attributes(root, "group")
        children = _elements(root)
        if len(children) != 1 or children[0].tag != _ls("list-service"):
            raise GroupDocumentError("<group> must hold exactly one <list-service>")
        service = children[0]
        _only_attributes(service, "list-service", {"uri"})
        uri = service.get("uri")
        if uri is None:
            raise GroupDocumentError("<list-service> has no uri (the MC service group ID)")
        display_name: str | None = None
        members: list[GroupMember] = []
        services: list[str] = []
        visibility: list[PartnerVisibility] = []
        seen: set[str] = set()
        for child in _elements(service):
            tag = child.tag
            if tag in seen:
                raise GroupDocumentError(f"<{_local(child)}> appears twice in <list-service>")
            seen.add(str(tag))
            if tag == _ls("display-name"):
                _only_attributes(child, "display-name", {"{http://www.w3.org/XML/1998/namespace}lang"})
                if _elements(child):
                    raise GroupDocumentError("<display-name> holds elements")
                display_name = child.text or ""
            elif tag == _ls("list"):
                _no_attributes(child, "list")
                members = [_member(entry) for entry in _elements(child)]
            elif tag == _gi("supported-services"):
                _no_attributes(child, "supported-services")
                services = [_service(item) for item in _elements(child)]
            elif tag == _vis("partner-visibility"):
                _no_attributes(child, "partner-visibility")
                visibility = [_partner_rule(item) for item in _elements(child)]
            else:
                raise GroupDocumentError(f"unexpected element <{_local(child)}> in <list-service>")
        return cls(
            group_id=uri,
            display_name=display_name,
            members=tuple(members),
            services=tuple(services),
            visibility=tuple(visibility),
        )


def filtered_for(
    document: GroupDocument, requester_domains: Iterable[str], own_domains: Iterable[str]
) -> GroupDocument:
    """What a requester homed in ``requester_domains`` may see of ``document`` (WA-IC-12, BC-7).

    Always: the group ID (the requester named it).  Display name and supported services: only if a
    rule of one of the requester's domains reveals attributes.  Members: only those homed in a
    requester domain whose rule reveals members.  Never: the visibility rules, members of any other
    domain.  ``own_domains`` are never treated as the requester's, so a requester claiming one of
    this system's domains learns nothing of this system's own members through this function.
    """
    own = {domain.lower() for domain in own_domains}
    requester = {domain.lower() for domain in requester_domains} - own
    rules = [rule for rule in document.visibility if rule.domain in requester]
    attributes = any(rule.reveal_attributes for rule in rules)
    member_domains = {rule.domain for rule in rules if rule.reveal_members}
    return GroupDocument(
        group_id=document.group_id,
        display_name=document.display_name if attributes else None,
        members=tuple(member for member in document.members if member.domain in member_domains),
        services=document.services if attributes else (),
        visibility=(),
    )


# --- validation ---------------------------------------------------------------------------------


def _validate(document: GroupDocument) -> None:
    canonical = _canonical_id(document.group_id, "group ID")
    if canonical != document.group_id:
        object.__setattr__(document, "group_id", canonical)
    if document.display_name is not None:
        _check_text(document.display_name, "display name")
    if len(document.members) > MAX_MEMBERS:
        raise GroupDocumentError(f"more than {MAX_MEMBERS} members")
    members: list[GroupMember] = []
    for member in document.members:
        member_id = _canonical_id(member.id, "member")
        if member.role is not None:
            _check_text(member.role, "participant type")
            if not member.role or member.role != member.role.strip():
                raise GroupDocumentError("participant type is empty or has surrounding spaces")
        if member.priority is not None and not 0 <= member.priority <= MAX_PRIORITY:
            raise GroupDocumentError(f"user priority outside 0..{MAX_PRIORITY}")
        members.append(replace(member, id=member_id) if member_id != member.id else member)
    ids = [member.id for member in members]
    if len(set(ids)) != len(ids):
        raise GroupDocumentError("a member is listed twice", "constraint-failure")
    object.__setattr__(document, "members", tuple(members))
    for name in document.services:
        if name not in SERVICES:
            raise GroupDocumentError(f"unknown service {name[:20]!r} (mcptt, mcdata, mcvideo)")
    if len(set(document.services)) != len(document.services):
        raise GroupDocumentError("a supported service is listed twice", "constraint-failure")
    rules: list[PartnerVisibility] = []
    for rule in document.visibility:
        domain = rule.domain.lower()
        if not domain or len(domain) > 253 or any(ch in domain for ch in " \t\r\n@/<>\"'"):
            raise GroupDocumentError("a visibility rule has an invalid domain")
        rules.append(replace(rule, domain=domain) if domain != rule.domain else rule)
    if len({rule.domain for rule in rules}) != len(rules):
        raise GroupDocumentError("two visibility rules name the same domain", "constraint-failure")
    object.__setattr__(document, "visibility", tuple(rules))


def _canonical_id(text: str, what: str) -> str:
    if len(text) > MAX_TEXT:
        raise GroupDocumentError(f"{what} longer than {MAX_TEXT} characters")
    try:
        identity = McServiceId.parse(text)
    except (IdentityError, ValueError):
        raise GroupDocumentError(f"{what} is not an MC service ID (sip:user@domain)") from None
    canonical = str(identity)
    # The canonical form must itself parse back to the same ID, or the document would not round-trip.
    try:
        if McServiceId.parse(canonical) != identity:
            raise GroupDocumentError(f"{what} has no canonical form")
    except (IdentityError, ValueError):
        raise GroupDocumentError(f"{what} has no canonical form") from None
    return canonical


def _check_text(text: str, what: str) -> None:
    if len(text) > MAX_TEXT:
        raise GroupDocumentError(f"{what} longer than {MAX_TEXT} characters")
    # Characters XML 1.0 cannot carry (lxml would refuse to write them).
    if any((ord(ch) < 0x20 and ch not in "\t\n\r") or 0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        raise GroupDocumentError(f"{what} holds control characters")
    if any(ord(ch) in (0xFFFE, 0xFFFF) for ch in text):
        raise GroupDocumentError(f"{what} holds non-characters")


# --- parsing helpers ----------------------------------------------------------------------------


def _ls(name: str) -> str:
    return f"{{{LIST_SERVICE_NS}}}{name}"


def _gi(name: str) -> str:
    return f"{{{GMCPTT_NS}}}{name}"


def _vis(name: str) -> str:
    return f"{{{VISIBILITY_NS}}}{name}"


def _bool_text(value: bool) -> str:
    return "true" if value else "false"


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname[:40]


def _elements(parent: etree._Element) -> list[etree._Element]:
    """Child elements (comments skipped)."""
    return [child for child in parent if isinstance(child.tag, str)]


def _no_attributes(element: etree._Element, name: str) -> None:
    _only_attributes(element, name, set())


def _only_attributes(element: etree._Element, name: str, allowed: set[str]) -> None:
    for attribute in element.attrib:
        if attribute not in allowed:
            raise GroupDocumentError(f"unexpected attribute on <{name}>")


def _leaf_text(element: etree._Element, name: str) -> str:
    _no_attributes(element, name)
    if _elements(element):
        raise GroupDocumentError(f"<{name}> holds elements")
    return element.text or ""


def _member(entry: etree._Element) -> GroupMember:
    if entry.tag != _ls("entry"):
        raise GroupDocumentError(f"unexpected element <{_local(entry)}> in <list>")
    _only_attributes(entry, "entry", {"uri"})
    uri = entry.get("uri")
    if uri is None:
        raise GroupDocumentError("an <entry> has no uri (the member's MC service ID)")
    role: str | None = None
    priority: int | None = None
    for child in _elements(entry):
        if child.tag == _gi("participant-type") and role is None:
            role = _leaf_text(child, "participant-type")
        elif child.tag == _gi("user-priority") and priority is None:
            text = _leaf_text(child, "user-priority").strip()
            if not text.isascii() or not text.isdigit() or len(text) > 3:
                raise GroupDocumentError(f"user priority is not a number in 0..{MAX_PRIORITY}")
            priority = int(text)
        else:
            raise GroupDocumentError(f"unexpected or repeated element <{_local(child)}> in <entry>")
    return GroupMember(id=uri, role=role, priority=priority)


def _service(item: etree._Element) -> str:
    if item.tag != _gi("service"):
        raise GroupDocumentError(f"unexpected element <{_local(item)}> in <supported-services>")
    _only_attributes(item, "service", {"name"})
    if _elements(item):
        raise GroupDocumentError("<service> holds elements")
    name = item.get("name")
    if name is None:
        raise GroupDocumentError("a <service> has no name")
    return name


def _partner_rule(item: etree._Element) -> PartnerVisibility:
    if item.tag != _vis("partner"):
        raise GroupDocumentError(f"unexpected element <{_local(item)}> in <partner-visibility>")
    _only_attributes(item, "partner", {"domain", "reveal-members", "reveal-attributes"})
    if _elements(item):
        raise GroupDocumentError("<partner> holds elements")
    domain = item.get("domain")
    if domain is None:
        raise GroupDocumentError("a visibility rule has no domain")
    return PartnerVisibility(
        domain=domain,
        reveal_members=_flag(item, "reveal-members"),
        reveal_attributes=_flag(item, "reveal-attributes"),
    )


def _flag(item: etree._Element, name: str) -> bool:
    value = item.get(name, "false")
    if value not in ("true", "false", "1", "0"):
        raise GroupDocumentError(f"{name} is not a boolean")
    return value in ("true", "1")
