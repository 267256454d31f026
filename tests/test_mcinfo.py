"""Tests of mcinterconnect.mcinfo: the MCPTT info body (TS 24.379 Annex F.1) read, found and rewritten."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from mcinterconnect.mcinfo import (
    MCPTT_INFO_NS,
    MCPTT_INFO_TYPE,
    McInfoEncryptedError,
    McInfoError,
    McInfoFault,
    McpttInfo,
    find_mcptt_info,
    parse_mcptt_info,
    replace_mcptt_info,
)
from mcinterconnect.sip.message import Headers, SipRequest
from mcinterconnect.sip.multipart import parse_multipart
from mcinterconnect.sip.parser import parse_message

NS = MCPTT_INFO_NS

FULL = McpttInfo(
    request_uri="sip:grp1@b.mc.example",
    calling_user_id="sip:alice@a.mc.example",
    called_party_id="sip:bob@b.mc.example",
    calling_group_id="sip:grp1@b.mc.example",
    session_type="prearranged",
)

# As a controlling function sends it towards a terminating participating function (24.379 Table H.2-1),
# written by hand with the usual xsi declaration, indentation and elements this module does not read.
HAND_WRITTEN = b"""<?xml version="1.0" encoding="UTF-8"?>
<mcpttinfo xmlns="urn:3gpp:ns:mcpttInfo:1.0" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <mcptt-Params>
    <mcptt-access-token type="Normal"><mcpttString>eyJhbGciOi</mcpttString></mcptt-access-token>
    <session-type>prearranged</session-type>
    <mcptt-request-uri type="Normal">
      <mcpttURI>sip:carol@b.mc.example</mcpttURI>
    </mcptt-request-uri>
    <mcptt-calling-user-id type="Normal"><mcpttURI>sip:alice@a.mc.example</mcpttURI></mcptt-calling-user-id>
    <mcptt-calling-group-id type="Normal"><mcpttURI>sip:grp1@b.mc.example</mcpttURI></mcptt-calling-group-id>
    <emergency-ind type="Normal"><mcpttBoolean>false</mcpttBoolean></emergency-ind>
    <!-- operators leave comments too -->
    <anyExt><x xmlns="urn:example:ext">kept</x></anyExt>
  </mcptt-Params>
</mcpttinfo>
"""
HAND_WRITTEN_INFO = McpttInfo(
    request_uri="sip:carol@b.mc.example",
    calling_user_id="sip:alice@a.mc.example",
    calling_group_id="sip:grp1@b.mc.example",
    session_type="prearranged",
)

SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
RESOURCE_LISTS = (
    b'<?xml version="1.0" encoding="UTF-8"?>\r\n'
    b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">'
    b'<list><entry uri="sip:bob@b.mc.example"/></list></resource-lists>\r\n'
)


def params_xml(inner: str, *, root: str = f'<mcpttinfo xmlns="{NS}">', end: str = "</mcpttinfo>") -> bytes:
    return f"{root}<mcptt-Params>{inner}</mcptt-Params>{end}".encode()


def uri_element(name: str, uri: str, attributes: str = ' type="Normal"') -> str:
    return f"<{name}{attributes}><mcpttURI>{uri}</mcpttURI></{name}>"


def invite(body: bytes, content_type: str | None) -> SipRequest:
    headers = Headers(
        [
            ("Via", "SIP/2.0/TLS isproxy.a.mc.example;branch=z9hG4bK1"),
            ("From", "<sip:alice@a.mc.example>;tag=1"),
            ("To", "<sip:grp1@b.mc.example>"),
            ("Call-ID", "c1@a.mc.example"),
            ("CSeq", "1 INVITE"),
            ("Max-Forwards", "70"),
        ]
    )
    if content_type is not None:
        headers.add("Content-Type", content_type)
    return SipRequest(headers=headers, body=body, method="INVITE", uri="sip:cf-psi@b.mc.example")


def multipart(*parts: tuple[str, bytes], boundary: str = "mcx-boundary", preamble: bytes = b"") -> bytes:
    pieces = [preamble]
    for content_type, body in parts:
        pieces.append(f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode() + body + b"\r\n")
    pieces.append(f"--{boundary}--\r\n".encode())
    return b"".join(pieces)


def error_of(data: bytes) -> McInfoError:
    with pytest.raises(McInfoError) as caught:
        parse_mcptt_info(data)
    assert str(caught.value) == caught.value.reason
    return caught.value


# --- McpttInfo and to_xml ------------------------------------------------------------------------------


def test_media_type_and_namespace() -> None:
    assert MCPTT_INFO_TYPE == "application/vnd.3gpp.mcptt-info+xml"
    assert NS == "urn:3gpp:ns:mcpttInfo:1.0"


def test_to_xml_has_declaration_namespace_and_schema_order() -> None:
    xml = FULL.to_xml()
    assert xml.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    root = etree.fromstring(xml)
    assert root.tag == f"{{{NS}}}mcpttinfo"
    assert root.prefix is None
    (params,) = list(root)
    assert [etree.QName(child).localname for child in params] == [
        "session-type",
        "mcptt-request-uri",
        "mcptt-calling-user-id",
        "mcptt-called-party-id",
        "mcptt-calling-group-id",
    ]
    request_uri = params[1]
    assert request_uri.get("type") == "Normal"
    assert request_uri.findtext(f"{{{NS}}}mcpttURI") == "sip:grp1@b.mc.example"


def test_to_xml_of_an_empty_info() -> None:
    assert parse_mcptt_info(McpttInfo().to_xml()) == McpttInfo()
    assert b"<mcptt-Params/>" in McpttInfo().to_xml()


@pytest.mark.parametrize(
    "info",
    [
        FULL,
        McpttInfo(),
        McpttInfo(request_uri="sip:grp1@b.mc.example"),
        McpttInfo(calling_user_id="sip:alice@a.mc.example", called_party_id="tel:+4912345"),
        McpttInfo(request_uri="sip:bj%C3%B6rk@b.mc.example;transport=tls", session_type="ad hoc & <more>"),
        McpttInfo(calling_user_id="sip:björk@a.mc.example"),
    ],
)
def test_round_trip(info: McpttInfo) -> None:
    assert parse_mcptt_info(info.to_xml()) == info


_VALUE = st.text(
    alphabet=st.characters(min_codepoint=0x20, codec="utf-8", exclude_characters="\ufffe\uffff"),
    min_size=1,
    max_size=40,
).filter(lambda value: value == value.strip() and value != "")


@settings(max_examples=200, deadline=None)
@given(st.builds(McpttInfo, *[st.none() | _VALUE for _ in range(5)]))
def test_round_trip_of_any_values(info: McpttInfo) -> None:
    assert parse_mcptt_info(info.to_xml()) == info


@pytest.mark.parametrize("value", ["", " sip:a@b", "sip:a@b\n", "sip:a\x00@b", "sip:a\x1b@b", "\ufffe"])
def test_values_that_xml_cannot_round_trip_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="request-uri"):
        McpttInfo(request_uri=value)


def test_info_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        FULL.request_uri = "sip:x@y"  # type: ignore[misc]


# --- Parsing hand-written documents --------------------------------------------------------------------


def test_hand_written_document() -> None:
    assert parse_mcptt_info(HAND_WRITTEN) == HAND_WRITTEN_INFO


@pytest.mark.parametrize(
    "document",
    [
        # A prefix everywhere instead of the default namespace.
        b"<m:mcpttinfo xmlns:m='urn:3gpp:ns:mcpttInfo:1.0'><m:mcptt-Params>"
        b"<m:mcptt-request-uri type='Normal'><m:mcpttURI>sip:grp1@b.mc.example</m:mcpttURI>"
        b"</m:mcptt-request-uri>"
        b"</m:mcptt-Params></m:mcpttinfo>",
        # Prefixed root, default namespace declared again lower down.
        b"<?xml version='1.0'?><m:mcpttinfo xmlns:m='urn:3gpp:ns:mcpttInfo:1.0'>"
        b"<mcptt-Params xmlns='urn:3gpp:ns:mcpttInfo:1.0'>"
        b"<mcptt-request-uri><mcpttURI>sip:grp1@b.mc.example</mcpttURI></mcptt-request-uri>"
        b"</mcptt-Params></m:mcpttinfo>",
        # Declaration without encoding, BOM, CRLF line ends, URI in CDATA and split by a comment.
        b"\xef\xbb\xbf<?xml version=\"1.0\"?>\r\n<mcpttinfo xmlns='urn:3gpp:ns:mcpttInfo:1.0'>\r\n"
        b"<mcptt-Params>\r\n<mcptt-request-uri type='Normal'>\r\n"
        b"<mcpttURI> <![CDATA[sip:grp1@b.mc.]]><!-- split -->example </mcpttURI>\r\n"
        b"</mcptt-request-uri>\r\n</mcptt-Params>\r\n</mcpttinfo>\r\n",
    ],
    ids=["prefixed", "mixed-prefixes", "bom-crlf-cdata"],
)
def test_namespace_prefix_and_declaration_variations(document: bytes) -> None:
    assert parse_mcptt_info(document) == McpttInfo(request_uri="sip:grp1@b.mc.example")


def test_no_params_element_means_no_identities() -> None:
    assert parse_mcptt_info(f'<mcpttinfo xmlns="{NS}"/>'.encode()) == McpttInfo()


def test_elements_of_other_namespaces_are_ignored() -> None:
    document = params_xml(
        '<mcptt-request-uri xmlns="urn:other"><mcpttURI>sip:evil@x</mcpttURI></mcptt-request-uri>'
        + uri_element("mcptt-calling-user-id", "sip:alice@a.mc.example"),
    )
    assert parse_mcptt_info(document) == McpttInfo(calling_user_id="sip:alice@a.mc.example")


def test_unknown_elements_are_ignored_even_if_encrypted() -> None:
    document = params_xml(
        '<mcptt-access-token type="Encrypted"><EncryptedData xmlns="http://www.w3.org/2001/04/xmlenc#"/>'
        "</mcptt-access-token>" + uri_element("mcptt-request-uri", "sip:grp1@b.mc.example")
    )
    assert parse_mcptt_info(document) == McpttInfo(request_uri="sip:grp1@b.mc.example")


# --- Every error reason --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (
            b"<mcpttinfo><mcptt-Params/></mcpttinfo>",
            "root element is mcpttinfo (no namespace), "
            "expected mcpttinfo in namespace urn:3gpp:ns:mcpttInfo:1.0",
        ),
        (
            b'<mcpttinfo xmlns="urn:3gpp:ns:mcpttInfo:2.0"/>',
            "root element is mcpttinfo in namespace urn:3gpp:ns:mcpttInfo:2.0, "
            "expected mcpttinfo in namespace urn:3gpp:ns:mcpttInfo:1.0",
        ),
        (
            b'<mcdatainfo xmlns="urn:3gpp:ns:mcdataInfo:1.0"/>',
            "root element is mcdatainfo in namespace urn:3gpp:ns:mcdataInfo:1.0, "
            "expected mcpttinfo in namespace urn:3gpp:ns:mcpttInfo:1.0",
        ),
    ],
)
def test_wrong_root_or_namespace(document: bytes, reason: str) -> None:
    error = error_of(document)
    assert error.fault is McInfoFault.WRONG_ROOT
    assert error.reason == reason


@pytest.mark.parametrize(
    "element",
    ["mcptt-request-uri", "mcptt-calling-user-id", "mcptt-called-party-id", "mcptt-calling-group-id"],
)
def test_encrypted_identity_is_its_own_error(element: str) -> None:
    encrypted = (
        f'<{element} type="Encrypted">'
        '<xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#" '
        'Type="http://www.w3.org/2001/04/xmlenc#Content">'
        '<xenc:EncryptionMethod Algorithm="http://www.w3.org/2009/xmlenc11#aes128-gcm"/>'
        "<xenc:CipherData><xenc:CipherValue>AAAA</xenc:CipherValue></xenc:CipherData>"
        f"</xenc:EncryptedData></{element}>"
    )
    error = error_of(params_xml(encrypted))
    assert isinstance(error, McInfoEncryptedError)
    assert error.fault is McInfoFault.ENCRYPTED
    assert error.element == element
    assert error.reason == f'{element} is encrypted (type="Encrypted") and cannot be read without the key'


def test_encrypted_data_without_the_type_attribute_is_still_encrypted() -> None:
    document = params_xml(
        '<mcptt-calling-user-id><EncryptedData xmlns="http://www.w3.org/2001/04/xmlenc#"/></mcptt-calling-user-id>'
    )
    error = error_of(document)
    assert isinstance(error, McInfoEncryptedError)
    assert error.element == "mcptt-calling-user-id"


@pytest.mark.parametrize(
    ("inner", "fault", "reason"),
    [
        (
            '<mcptt-request-uri type="Normal"/>',
            McInfoFault.MISSING_VALUE,
            "mcptt-request-uri has no mcpttURI",
        ),
        (
            # Some implementations put the URI straight in the element; the schema does not allow it.
            "<mcptt-request-uri>sip:grp1@b.mc.example</mcptt-request-uri>",
            McInfoFault.MISSING_VALUE,
            "mcptt-request-uri has no mcpttURI",
        ),
        (
            '<mcptt-called-party-id type="Normal"><mcpttURI/></mcptt-called-party-id>',
            McInfoFault.MISSING_VALUE,
            "mcptt-called-party-id has an empty mcpttURI",
        ),
        (
            '<mcptt-called-party-id type="Normal"><mcpttURI>  \n </mcpttURI></mcptt-called-party-id>',
            McInfoFault.MISSING_VALUE,
            "mcptt-called-party-id has an empty mcpttURI",
        ),
        (
            "<session-type/>",
            McInfoFault.MISSING_VALUE,
            "session-type is empty",
        ),
        (
            uri_element("mcptt-request-uri", "sip:a@b") + uri_element("mcptt-request-uri", "sip:c@d"),
            McInfoFault.DUPLICATE_ELEMENT,
            "duplicate element mcptt-request-uri in mcptt-Params",
        ),
        (
            "<session-type>prearranged</session-type><session-type>chat</session-type>",
            McInfoFault.DUPLICATE_ELEMENT,
            "duplicate element session-type in mcptt-Params",
        ),
        (
            "<mcptt-calling-user-id><mcpttURI>sip:a@b</mcpttURI><mcpttURI>sip:c@d</mcpttURI></mcptt-calling-user-id>",
            McInfoFault.DUPLICATE_ELEMENT,
            "duplicate element mcpttURI in mcptt-calling-user-id",
        ),
        (
            uri_element("mcptt-request-uri", "sip:a@b", ' type="Plain"'),
            McInfoFault.BAD_PROTECTION_TYPE,
            "mcptt-request-uri has type 'Plain' (expected 'Normal' or 'Encrypted')",
        ),
        (
            "<mcptt-request-uri><mcpttURI>sip:a@<b>evil</b>b</mcpttURI></mcptt-request-uri>",
            McInfoFault.BAD_VALUE,
            "mcpttURI must hold text only, not elements",
        ),
        (
            "<session-type>pre<x/>arranged</session-type>",
            McInfoFault.BAD_VALUE,
            "session-type must hold text only, not elements",
        ),
    ],
)
def test_element_errors(inner: str, fault: McInfoFault, reason: str) -> None:
    error = error_of(params_xml(inner))
    assert (error.fault, error.reason) == (fault, reason)


def test_duplicate_params_element() -> None:
    document = f'<mcpttinfo xmlns="{NS}"><mcptt-Params/><mcptt-Params/></mcpttinfo>'.encode()
    error = error_of(document)
    assert (error.fault, error.reason) == (
        McInfoFault.DUPLICATE_ELEMENT,
        "duplicate element mcptt-Params in mcpttinfo",
    )


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (
            b'<!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]><mcpttinfo>&x;</mcpttinfo>',
            "mcptt-info body refused: document has a DTD (refused)",
        ),
        (
            b"<mcpttinfo>",
            "mcptt-info body refused: malformed XML: Premature end of data in tag mcpttinfo line 1, ",
        ),
        (b"", "mcptt-info body refused: document is empty"),
    ],
)
def test_unsafe_or_malformed_xml(document: bytes, reason: str) -> None:
    error = error_of(document)
    assert error.fault is McInfoFault.UNSAFE_XML
    assert error.reason.startswith(reason)


def test_errors_are_value_errors() -> None:
    assert issubclass(McInfoError, ValueError)
    assert issubclass(McInfoEncryptedError, McInfoError)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_give_info_or_mcinfo_error(data: bytes) -> None:
    try:
        info = parse_mcptt_info(data)
    except McInfoError as exc:
        assert exc.reason and isinstance(exc.fault, McInfoFault)
    else:
        assert isinstance(info, McpttInfo)


# --- Finding the body in a SIP message -----------------------------------------------------------------


def test_whole_body() -> None:
    assert find_mcptt_info(invite(FULL.to_xml(), MCPTT_INFO_TYPE)) == FULL


def test_whole_body_with_parameters_and_other_case() -> None:
    message = invite(FULL.to_xml(), "Application/VND.3gpp.MCPTT-info+XML; charset=UTF-8")
    assert find_mcptt_info(message) == FULL


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"", None),
        (SDP, "application/sdp"),
        (multipart(("application/sdp", SDP)), "multipart/mixed;boundary=mcx-boundary"),
    ],
    ids=["no-body", "sdp", "multipart-without-info"],
)
def test_no_mcptt_info(body: bytes, content_type: str | None) -> None:
    assert find_mcptt_info(invite(body, content_type)) is None


def test_multipart_discovery() -> None:
    body = multipart(
        ("application/sdp", SDP),
        (MCPTT_INFO_TYPE, HAND_WRITTEN),
        ("application/resource-lists+xml", RESOURCE_LISTS),
        preamble=b"This is a multi-part message in MIME format.\r\n",
    )
    message = invite(body, 'multipart/mixed; boundary="mcx-boundary"')
    assert find_mcptt_info(message) == HAND_WRITTEN_INFO


def test_multipart_discovery_through_the_sip_parser() -> None:
    body = multipart((MCPTT_INFO_TYPE, FULL.to_xml()), ("application/sdp", SDP), boundary="b1")
    raw = (
        b"INVITE sip:cf-psi@b.mc.example SIP/2.0\r\n"
        b"Via: SIP/2.0/TLS isproxy.a.mc.example;branch=z9hG4bK1\r\n"
        b"f: <sip:alice@a.mc.example>;tag=1\r\nt: <sip:grp1@b.mc.example>\r\ni: c1@a.mc.example\r\n"
        b"CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nc: multipart/mixed;boundary=b1\r\n"
        + f"l: {len(body)}\r\n\r\n".encode()
        + body
    )
    assert find_mcptt_info(parse_message(raw)) == FULL


def test_two_mcptt_info_parts_are_refused() -> None:
    body = multipart((MCPTT_INFO_TYPE, FULL.to_xml()), (MCPTT_INFO_TYPE, McpttInfo().to_xml()))
    with pytest.raises(McInfoError) as caught:
        find_mcptt_info(invite(body, "multipart/mixed;boundary=mcx-boundary"))
    assert caught.value.fault is McInfoFault.BAD_BODY
    assert caught.value.reason == "multipart body has 2 mcptt-info parts"


def test_nested_multipart_is_refused() -> None:
    inner = multipart((MCPTT_INFO_TYPE, FULL.to_xml()), boundary="inner")
    body = multipart(("application/sdp", SDP), ("multipart/mixed;boundary=inner", inner))
    with pytest.raises(McInfoError) as caught:
        find_mcptt_info(invite(body, "multipart/mixed;boundary=mcx-boundary"))
    assert caught.value.fault is McInfoFault.BAD_BODY
    assert caught.value.reason == "nested multipart/mixed body in part 2 (refused)"


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (
            b"no delimiter at all",
            "multipart/mixed;boundary=b",
            "multipart body refused: no delimiter line '--b'",
        ),
        (
            multipart(("application/sdp", SDP)),
            "multipart/mixed",
            "multipart body refused: Content-Type has no boundary",
        ),
    ],
)
def test_malformed_multipart(body: bytes, content_type: str, reason: str) -> None:
    with pytest.raises(McInfoError) as caught:
        find_mcptt_info(invite(body, content_type))
    assert caught.value.fault is McInfoFault.BAD_BODY
    assert caught.value.reason.startswith(reason)


def test_errors_inside_the_part_are_reported() -> None:
    encrypted = params_xml(
        '<mcptt-calling-user-id type="Encrypted"><EncryptedData xmlns="http://www.w3.org/2001/04/xmlenc#"/>'
        "</mcptt-calling-user-id>"
    )
    body = multipart(("application/sdp", SDP), (MCPTT_INFO_TYPE, encrypted))
    with pytest.raises(McInfoEncryptedError) as caught:
        find_mcptt_info(invite(body, "multipart/mixed;boundary=mcx-boundary"))
    assert caught.value.element == "mcptt-calling-user-id"


# --- Rewriting -----------------------------------------------------------------------------------------


def test_replace_whole_body() -> None:
    message = invite(FULL.to_xml(), MCPTT_INFO_TYPE)
    new = dataclasses.replace(FULL, calling_user_id="sip:anonymous@a.mc.example", called_party_id=None)
    replace_mcptt_info(message, new)
    assert find_mcptt_info(message) == new
    assert message.headers.get("Content-Type") == MCPTT_INFO_TYPE
    assert b"called-party-id" not in message.body
    assert f"Content-Length: {len(message.body)}\r\n".encode() in message.to_bytes()


def test_replace_keeps_unknown_elements_comments_and_positions() -> None:
    message = invite(HAND_WRITTEN, MCPTT_INFO_TYPE)
    new = dataclasses.replace(
        HAND_WRITTEN_INFO,
        request_uri="sip:carol@partner.b.mc.example",
        called_party_id="sip:dave@b.mc.example",
    )
    replace_mcptt_info(message, new)
    assert find_mcptt_info(message) == new
    params = etree.fromstring(message.body)[0]
    names = [etree.QName(child).localname if isinstance(child.tag, str) else "#comment" for child in params]
    assert names == [
        "mcptt-access-token",
        "session-type",
        "mcptt-request-uri",
        "mcptt-calling-user-id",
        "mcptt-called-party-id",
        "mcptt-calling-group-id",
        "emergency-ind",
        "#comment",
        "anyExt",
    ]
    assert b"<mcpttString>eyJhbGciOi</mcpttString>" in message.body
    assert b'<x xmlns="urn:example:ext">kept</x>' in message.body
    assert b"<!-- operators leave comments too -->" in message.body
    # Indentation of the original document is kept for the new element.
    assert b"</mcptt-calling-user-id>\n    <mcptt-called-party-id" in message.body


def test_replace_removes_every_field_left_none() -> None:
    message = invite(HAND_WRITTEN, MCPTT_INFO_TYPE)
    replace_mcptt_info(message, McpttInfo())
    assert find_mcptt_info(message) == McpttInfo()
    assert b"mcptt-access-token" in message.body
    assert b"mcpttURI" not in message.body
    assert b"\n  </mcptt-Params>" in message.body


def test_replace_overwrites_an_encrypted_element_and_collapses_duplicates() -> None:
    document = params_xml(
        '<mcptt-calling-user-id type="Encrypted"><EncryptedData xmlns="http://www.w3.org/2001/04/xmlenc#"/>'
        "</mcptt-calling-user-id>"
        + uri_element("mcptt-request-uri", "sip:a@b")
        + uri_element("mcptt-request-uri", "sip:c@d")
    )
    message = invite(document, MCPTT_INFO_TYPE)
    new = McpttInfo(request_uri="sip:grp1@b.mc.example", calling_user_id="sip:alice@a.mc.example")
    replace_mcptt_info(message, new)
    assert find_mcptt_info(message) == new


def test_replace_keeps_the_prefix_of_the_document() -> None:
    document = (
        b"<m:mcpttinfo xmlns:m='urn:3gpp:ns:mcpttInfo:1.0'><m:mcptt-Params>"
        b"<m:session-type>prearranged</m:session-type></m:mcptt-Params></m:mcpttinfo>"
    )
    message = invite(document, MCPTT_INFO_TYPE)
    replace_mcptt_info(message, McpttInfo(request_uri="sip:grp1@b.mc.example", session_type="chat"))
    assert (
        b'<m:mcptt-request-uri type="Normal"><m:mcpttURI>sip:grp1@b.mc.example</m:mcpttURI>' in message.body
    )
    assert find_mcptt_info(message) == McpttInfo(request_uri="sip:grp1@b.mc.example", session_type="chat")


def test_replace_adds_a_missing_params_element() -> None:
    message = invite(f'<mcpttinfo xmlns="{NS}"><anyExt/></mcpttinfo>'.encode(), MCPTT_INFO_TYPE)
    replace_mcptt_info(message, FULL)
    assert find_mcptt_info(message) == FULL
    assert etree.QName(etree.fromstring(message.body)[0]).localname == "mcptt-Params"


@pytest.mark.parametrize("position", [0, 1, 2])
def test_replace_in_multipart_keeps_other_parts_byte_identical(position: int) -> None:
    others = [("application/sdp", SDP), ("application/resource-lists+xml", RESOURCE_LISTS)]
    parts = [*others[:position], (MCPTT_INFO_TYPE, HAND_WRITTEN), *others[position:]]
    preamble = b"preamble text\r\n"
    body = multipart(*parts, preamble=preamble) + b"epilogue, ignored but kept\r\n"
    header = "multipart/mixed;boundary=mcx-boundary"
    message = invite(body, header)
    new = dataclasses.replace(HAND_WRITTEN_INFO, calling_user_id="sip:alice-alias@a.mc.example")

    replace_mcptt_info(message, new)

    assert find_mcptt_info(message) == new
    before, after = parse_multipart(body, header), parse_multipart(message.body, header)
    assert len(after) == 3
    for index, (old_part, new_part) in enumerate(zip(before, after, strict=True)):
        assert old_part.headers == new_part.headers
        if index == position:
            assert new_part.body != old_part.body
        else:
            assert new_part.body == old_part.body
    # Everything outside the mcptt-info part's body is the same bytes as before.
    old_info = before[position].body
    start = body.index(old_info)
    new_info = after[position].body
    assert message.body == body[:start] + new_info + body[start + len(old_info) :]
    assert message.body.startswith(preamble)
    assert message.body.endswith(b"epilogue, ignored but kept\r\n")


def test_replace_in_multipart_with_padding_and_empty_part_headers() -> None:
    body = (
        b"--b \t\r\nContent-Type: application/sdp\r\n\r\n" + SDP + b"\r\n"
        b"--b\r\ncontent-type: application/vnd.3gpp.mcptt-info+xml\r\n"
        b"Content-ID: <info1@a.mc.example>\r\n\r\n"
        + FULL.to_xml()
        + b"\r\n--b\r\n\r\nno headers here\r\n--b--"
    )
    message = invite(body, "multipart/mixed;boundary=b")
    replace_mcptt_info(message, McpttInfo(request_uri="sip:x@b.mc.example"))
    assert find_mcptt_info(message) == McpttInfo(request_uri="sip:x@b.mc.example")
    head = body[: body.index(b"<?xml")]
    assert message.body.startswith(head)
    assert message.body.endswith(b"\r\n--b\r\n\r\nno headers here\r\n--b--")


def test_replace_into_a_message_without_body() -> None:
    message = invite(b"", None)
    replace_mcptt_info(message, FULL)
    assert message.body == FULL.to_xml()
    assert message.headers.get("Content-Type") == MCPTT_INFO_TYPE
    assert find_mcptt_info(message) == FULL


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (SDP, "application/sdp"),
        (multipart(("application/sdp", SDP)), "multipart/mixed;boundary=mcx-boundary"),
    ],
    ids=["sdp", "multipart-without-info"],
)
def test_replace_without_an_mcptt_info_body_is_refused(body: bytes, content_type: str) -> None:
    message = invite(body, content_type)
    with pytest.raises(McInfoError) as caught:
        replace_mcptt_info(message, FULL)
    assert caught.value.fault is McInfoFault.ABSENT
    assert caught.value.reason == "message has no mcptt-info body to replace"
    assert message.body == body


def test_replace_refuses_an_unsafe_document_and_leaves_the_message_alone() -> None:
    body = b'<!DOCTYPE m [<!ENTITY x "y">]><mcpttinfo xmlns="urn:3gpp:ns:mcpttInfo:1.0"/>'
    message = invite(body, MCPTT_INFO_TYPE)
    with pytest.raises(McInfoError) as caught:
        replace_mcptt_info(message, FULL)
    assert caught.value.fault is McInfoFault.UNSAFE_XML
    assert message.body == body
