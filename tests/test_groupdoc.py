"""Group documents (TS 24.481 model): round trips, refusals, ETags and minimum disclosure (WA-IC-12).

Sans-IO: no socket here.  Hypothesis drives the round trip of generated documents and the
"any bytes: a document or GroupDocumentError, nothing else" property of ``from_xml``.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcinterconnect.services.groupdoc import (
    GroupDocument,
    GroupDocumentError,
    GroupMember,
    PartnerVisibility,
    filtered_for,
)

OWN = ["b.mc.example"]

FIRE = GroupDocument(
    group_id="sip:fire@b.mc.example",
    display_name="Fire brigade",
    members=(
        GroupMember("sip:alice@a.mc.example", role="dispatcher", priority=5),
        GroupMember("sip:carol@a.mc.example"),
        GroupMember("sip:bob@b.mc.example", priority=7),
        GroupMember("sip:dave@c.mc.example"),
    ),
    services=("mcptt", "mcdata"),
    visibility=(
        PartnerVisibility("a.mc.example", reveal_members=True, reveal_attributes=True),
        PartnerVisibility("c.mc.example", reveal_members=True, reveal_attributes=False),
        PartnerVisibility("d.mc.example", reveal_members=False, reveal_attributes=True),
    ),
)

NS = (
    'xmlns="urn:oma:xml:poc:list-service" xmlns:mcpttgi="urn:3gpp:ns:mcpttGroupInfo:1.0" '
    'xmlns:mcic="urn:mcinterconnect:xml:group-visibility:1"'
)


def doc(inner: str, uri: str = "sip:fire@b.mc.example") -> bytes:
    return f'<group {NS}><list-service uri="{uri}">{inner}</list-service></group>'.encode()


def test_round_trip_and_canonical_bytes() -> None:
    data = FIRE.to_xml()
    parsed = GroupDocument.from_xml(data)
    assert parsed == FIRE
    assert parsed.to_xml() == data
    assert parsed.etag == FIRE.etag


def test_etag_is_a_quoted_strong_sha256_prefix_that_changes_with_the_document() -> None:
    etag = FIRE.etag
    assert etag.startswith('"') and etag.endswith('"') and len(etag) == 34
    assert not etag.startswith("W/")
    other = GroupDocument(FIRE.group_id, "Fire", FIRE.members, FIRE.services, FIRE.visibility)
    assert other.etag != etag


def test_ids_are_canonicalised() -> None:
    document = GroupDocument("sip:fire@B.MC.example", members=(GroupMember("sip:x@A.mc.example"),))
    assert document.group_id == "sip:fire@b.mc.example"
    assert document.members[0].id == "sip:x@a.mc.example"
    assert GroupDocument.from_xml(document.to_xml()) == document


def test_a_written_document_with_comments_and_whitespace_parses() -> None:
    data = doc(
        "<!-- c --><display-name xml:lang='en'>Fire</display-name>"
        '<list>\n <entry uri="sip:alice@a.mc.example">'
        "<mcpttgi:user-priority> 3 </mcpttgi:user-priority></entry>\n</list>"
        '<mcpttgi:supported-services><mcpttgi:service name="mcvideo"/></mcpttgi:supported-services>'
    )
    document = GroupDocument.from_xml(data)
    assert document.display_name == "Fire"
    assert document.members == (GroupMember("sip:alice@a.mc.example", priority=3),)
    assert document.services == ("mcvideo",)
    assert document.visibility == ()


@pytest.mark.parametrize(
    ("data", "reason", "kind"),
    [
        (b"", "document is empty", "not-well-formed"),
        (b"<group", "malformed XML", "not-well-formed"),
        (
            b'<!DOCTYPE g [<!ENTITY x "y">]><group xmlns="urn:oma:xml:poc:list-service"/>',
            "DTD",
            "not-well-formed",
        ),
        (b'<!ENTITY x SYSTEM "file:///etc/passwd">', "entity", "not-well-formed"),
        (b"<?xml-stylesheet href='x'?><group/>", "processing instruction", "not-well-formed"),
        (b"<list-service/>", "root element", "schema-validation-error"),
        (f"<group {NS}/>".encode(), "exactly one", "schema-validation-error"),
        (doc("", uri="http://x"), "group ID is not an MC service ID", "schema-validation-error"),
        (f"<group {NS}><list-service/></group>".encode(), "no uri", "schema-validation-error"),
        (doc("<foo/>"), "unexpected element <foo>", "schema-validation-error"),
        (doc("<list><entry/></list>"), "no uri", "schema-validation-error"),
        (doc('<list><entry uri="bob"/></list>'), "member is not", "schema-validation-error"),
        (
            doc('<list><entry uri="sip:a@x.example"/><entry uri="sip:a@X.example"/></list>'),
            "listed twice",
            "constraint-failure",
        ),
        (
            doc(
                '<list><entry uri="sip:a@x.example"><mcpttgi:user-priority>256'
                "</mcpttgi:user-priority></entry></list>"
            ),
            "priority",
            "schema-validation-error",
        ),
        (
            doc(
                '<list><entry uri="sip:a@x.example"><mcpttgi:user-priority>-1'
                "</mcpttgi:user-priority></entry></list>"
            ),
            "priority",
            "schema-validation-error",
        ),
        (
            doc('<mcpttgi:supported-services><mcpttgi:service name="sms"/></mcpttgi:supported-services>'),
            "unknown service",
            "schema-validation-error",
        ),
        (
            doc(
                '<mcic:partner-visibility><mcic:partner domain="a.example" reveal-members="yes"/>'
                "</mcic:partner-visibility>"
            ),
            "not a boolean",
            "schema-validation-error",
        ),
        (doc("<display-name/><display-name/>"), "appears twice", "schema-validation-error"),
        (doc('<list x="1"/>'), "unexpected attribute", "schema-validation-error"),
    ],
)
def test_invalid_documents_are_refused_precisely(data: bytes, reason: str, kind: str) -> None:
    with pytest.raises(GroupDocumentError) as caught:
        GroupDocument.from_xml(data)
    assert reason in caught.value.reason
    assert caught.value.xcap_error == kind
    assert isinstance(caught.value, ValueError)
    assert "\n" not in caught.value.reason


def test_billion_laughs_is_refused() -> None:
    data = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        b'<group xmlns="urn:oma:xml:poc:list-service"><list-service uri="sip:g@b.example">'
        b"<display-name>&lol2;</display-name></list-service></group>"
    )
    with pytest.raises(GroupDocumentError) as caught:
        GroupDocument.from_xml(data)
    assert caught.value.xcap_error == "not-well-formed"


def test_constructor_refuses_what_from_xml_refuses() -> None:
    with pytest.raises(GroupDocumentError):
        GroupDocument("not a uri")
    with pytest.raises(GroupDocumentError):
        GroupDocument("sip:g@b.example", services=("mcptt", "mcptt"))
    with pytest.raises(GroupDocumentError):
        GroupDocument("sip:g@b.example", display_name="bell\x07")
    with pytest.raises(GroupDocumentError):
        GroupDocument("sip:g@b.example", members=(GroupMember("sip:a@b.example", role=" x"),))


# --- minimum disclosure ---------------------------------------------------------------------------


def test_partner_with_members_and_attributes_sees_only_its_own_members() -> None:
    seen = filtered_for(FIRE, ["a.mc.example"], OWN)
    assert seen.group_id == FIRE.group_id
    assert seen.display_name == "Fire brigade"
    assert seen.services == ("mcptt", "mcdata")
    assert [member.id for member in seen.members] == ["sip:alice@a.mc.example", "sip:carol@a.mc.example"]
    assert seen.members[0] == FIRE.members[0]
    assert seen.visibility == ()
    data = seen.to_xml()
    for hidden in (b"bob", b"dave", b"c.mc.example", b"d.mc.example", b"partner-visibility"):
        assert hidden not in data


def test_partner_with_members_only_gets_no_attributes() -> None:
    seen = filtered_for(FIRE, ["C.mc.example"], OWN)
    assert seen.display_name is None and seen.services == ()
    assert [member.id for member in seen.members] == ["sip:dave@c.mc.example"]


def test_partner_with_attributes_only_gets_no_members() -> None:
    seen = filtered_for(FIRE, ["d.mc.example"], OWN)
    assert seen.display_name == "Fire brigade" and seen.members == ()


def test_unknown_requester_gets_the_group_id_only() -> None:
    seen = filtered_for(FIRE, ["e.mc.example"], OWN)
    assert seen == GroupDocument(FIRE.group_id)
    assert seen.etag != FIRE.etag


def test_a_requester_claiming_an_own_domain_learns_nothing_of_own_members() -> None:
    rules = (*FIRE.visibility, PartnerVisibility("b.mc.example", True, True))
    document = GroupDocument(FIRE.group_id, FIRE.display_name, FIRE.members, FIRE.services, rules)
    seen = filtered_for(document, ["b.mc.example"], OWN)
    assert seen == GroupDocument(FIRE.group_id)


# --- properties -------------------------------------------------------------------------------------

_label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
_domain = st.builds(lambda a, b: f"{a}.{b}.example", _label, _label)
_id = st.builds(lambda user, domain: f"sip:{user}@{domain}", _label, _domain)
_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
    max_size=40,
)
_members = st.lists(
    st.builds(
        GroupMember,
        _id,
        st.none() | _label,
        st.none() | st.integers(min_value=0, max_value=255),
    ),
    max_size=6,
    unique_by=lambda member: member.id,
)
_rules = st.lists(
    st.builds(PartnerVisibility, _domain, st.booleans(), st.booleans()),
    max_size=3,
    unique_by=lambda rule: rule.domain,
)
_documents = st.builds(
    GroupDocument,
    _id,
    st.none() | _text,
    st.builds(tuple, _members),
    st.builds(tuple, st.lists(st.sampled_from(["mcptt", "mcdata", "mcvideo"]), unique=True)),
    st.builds(tuple, _rules),
)


@settings(max_examples=150, deadline=None)
@given(_documents)
def test_generated_documents_round_trip(document: GroupDocument) -> None:
    data = document.to_xml()
    assert GroupDocument.from_xml(data) == document
    assert GroupDocument.from_xml(data).etag == document.etag


@settings(max_examples=150, deadline=None)
@given(_documents, st.lists(_domain, max_size=3))
def test_filtering_reveals_only_members_of_requester_domains(
    document: GroupDocument, domains: list[str]
) -> None:
    seen = filtered_for(document, domains, OWN)
    assert seen.visibility == ()
    assert set(seen.members) <= set(document.members)
    assert all(member.domain in domains for member in seen.members)
    assert GroupDocument.from_xml(seen.to_xml()) == seen


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=300),
        _documents.map(lambda document: document.to_xml()).flatmap(
            lambda data: st.tuples(st.integers(0, len(data)), st.binary(max_size=8)).map(
                lambda cut: data[: cut[0]] + cut[1] + data[cut[0] + len(cut[1]) :]
            )
        ),
    )
)
def test_any_bytes_give_a_document_or_group_document_error(data: bytes) -> None:
    try:
        document = GroupDocument.from_xml(data)
    except GroupDocumentError as exc:
        assert exc.reason and "\n" not in exc.reason
    else:
        assert GroupDocument.from_xml(document.to_xml()) == document
