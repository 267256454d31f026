"""Unit tests of multipart/mixed bodies (RFC 2046 §5.1.1) as carried by MC SIP requests."""

from __future__ import annotations

import pytest

from mcinterconnect.sip import multipart
from mcinterconnect.sip.message import Headers
from mcinterconnect.sip.multipart import (
    BodyPart,
    MultipartError,
    boundary_of,
    build_multipart,
    parse_multipart,
)
from mcinterconnect.sip.parser import SipParseError, parse_message

SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
MCPTT_INFO = (
    b'<?xml version="1.0" encoding="UTF-8"?>\r\n'
    b'<mcpttinfo xmlns="urn:3gpp:ns:mcpttInfo:1.0">\r\n'
    b"<mcptt-Params><session-type>prearranged</session-type></mcptt-Params>\r\n"
    b"</mcpttinfo>"
)
RESOURCE_LISTS = b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list/></resource-lists>'

MC_BODY = (
    b"--boundary1\r\n"
    b"Content-Type: application/sdp\r\n"
    b"\r\n" + SDP + b"\r\n"
    b"--boundary1\r\n"
    b"Content-Type: application/vnd.3gpp.mcptt-info+xml\r\n"
    b"Content-ID: <mcptt-info@a.mc.example>\r\n"
    b"\r\n" + MCPTT_INFO + b"\r\n"
    b"--boundary1\r\n"
    b"Content-Type: application/resource-lists+xml\r\n"
    b"Content-Disposition: recipient-list\r\n"
    b"\r\n" + RESOURCE_LISTS + b"\r\n"
    b"--boundary1--\r\n"
)


def part(body: bytes, *fields: tuple[str, str]) -> BodyPart:
    return BodyPart(Headers(fields), body)


def parse_error(
    body: bytes, content_type: str = "multipart/mixed;boundary=b1", **kwargs: int
) -> MultipartError:
    with pytest.raises(MultipartError) as caught:
        parse_multipart(body, content_type, **kwargs)
    return caught.value


# --- parsing ------------------------------------------------------------------------------


def test_mc_body_parts() -> None:
    parts = parse_multipart(MC_BODY, "multipart/mixed;boundary=boundary1")
    assert [p.content_type for p in parts] == [
        "application/sdp",
        "application/vnd.3gpp.mcptt-info+xml",
        "application/resource-lists+xml",
    ]
    assert [p.body for p in parts] == [SDP, MCPTT_INFO, RESOURCE_LISTS]
    assert [p.content_id for p in parts] == [None, "mcptt-info@a.mc.example", None]
    assert list(parts[2].headers) == [
        ("Content-Type", "application/resource-lists+xml"),
        ("Content-Disposition", "recipient-list"),
    ]


def test_mc_body_inside_a_sip_message() -> None:
    head = (
        "INVITE sip:mcptt-orig-part-mgmt@mcx.b.mc.example SIP/2.0\r\n"
        "Via: SIP/2.0/TLS is.a.mc.example;branch=z9hG4bK1\r\n"
        "To: <sip:mcptt-orig-part-mgmt@mcx.b.mc.example>\r\n"
        "From: <sip:mcx.a.mc.example>;tag=1\r\n"
        "Call-ID: mp-1\r\n"
        "CSeq: 1 INVITE\r\n"
        'Content-Type: multipart/mixed; boundary="boundary1"\r\n'
        f"Content-Length: {len(MC_BODY)}\r\n\r\n"
    )
    message = parse_message(head.encode() + MC_BODY)
    assert message.content_type == "multipart/mixed"
    parts = parse_multipart(message.body, message.headers.get("Content-Type") or "")
    assert parts[1].body == MCPTT_INFO


def test_content_type_and_content_id_normalisation() -> None:
    p = part(b"", ("Content-Type", " Application/SDP ; charset=x"), ("Content-ID", "plain-id"))
    assert (p.content_type, p.content_id) == ("application/sdp", "plain-id")
    assert part(b"").content_type == ""
    assert part(b"", ("Content-ID", "<a@b>")).content_id == "a@b"


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/mixed;boundary=b1",
        'multipart/mixed; boundary="b1"',
        "Multipart/Mixed ; charset=utf-8 ; BOUNDARY = b1",
        "multipart/related;type=application/sdp;boundary=b1",
    ],
)
def test_boundary_parameter_forms(content_type: str) -> None:
    assert boundary_of(content_type) == "b1"
    assert parse_multipart(b"--b1\r\n\r\nx\r\n--b1--", content_type) == [part(b"x")]


def test_quoted_boundary_with_special_characters() -> None:
    content_type = "multipart/mixed; boundary=\"gc0p4Jq0M2Yt08j34c0p: (a) 'b' ?=\""
    body = b"--gc0p4Jq0M2Yt08j34c0p: (a) 'b' ?=\r\n\r\nbody\r\n--gc0p4Jq0M2Yt08j34c0p: (a) 'b' ?=--"
    assert parse_multipart(body, content_type) == [part(b"body")]


def test_preamble_epilogue_and_transport_padding_are_ignored() -> None:
    body = (
        b"This is the preamble.  It is to be ignored.\r\n"
        b"--b1 \t\r\n"
        b"Content-Type: text/plain\r\n"
        b"\r\n"
        b"first\r\n"
        b"--b1\t\r\n"
        b"\r\n"
        b"second, no header\r\n"
        b"--b1--  \r\n"
        b"This is the epilogue.  It is also to be ignored.\r\n"
        b"--b1\r\nnot a part\r\n"
    )
    assert parse_multipart(body, "multipart/mixed;boundary=b1") == [
        part(b"first", ("Content-Type", "text/plain")),
        part(b"second, no header"),
    ]


def test_part_edge_forms() -> None:
    body = (
        b"--b1\r\n"
        b"\r\n"  # empty part: no header, no body
        b"\r\n--b1\r\n"
        b"Content-Type: text/plain\r\n"  # header section without the empty line: no body
        b"\r\n--b1\r\n"
        b"c: text/plain\r\n"  # compact form and folding, as in SIP headers
        b"X-Folded: one\r\n"
        b"  two\r\n"
        b"\r\n"
        b"\r\n\r\nbody with empty lines\r\n\r\n"
        b"\r\n--b1--"
    )
    assert parse_multipart(body, "multipart/mixed;boundary=b1") == [
        part(b""),
        part(b"", ("Content-Type", "text/plain")),
        part(
            b"\r\n\r\nbody with empty lines\r\n\r\n", ("Content-Type", "text/plain"), ("X-Folded", "one two")
        ),
    ]


def test_boundary_text_not_at_a_line_start_is_content() -> None:
    body = b"--b1\r\n\r\nx --b1 y\r\n-b1\r\n--b\r\n--b1--"
    assert parse_multipart(body, "multipart/mixed;boundary=b1") == [part(b"x --b1 y\r\n-b1\r\n--b")]


def test_binary_part_bodies_are_kept_byte_for_byte() -> None:
    binary = bytes(range(256)) * 2
    body = b"--b1\r\nContent-Type: application/octet-stream\r\n\r\n" + binary + b"\r\n--b1--\r\n"
    assert parse_multipart(body, "multipart/mixed;boundary=b1")[0].body == binary


# --- parse errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "reason"),
    [
        ("application/sdp", "Content-Type 'application/sdp' is not a multipart type"),
        ("", "Content-Type '' is not a multipart type"),
        ("multipart", "Content-Type 'multipart' is not a multipart type"),
        ("multipart/mixed", "Content-Type has no boundary parameter"),
        ("multipart/mixed;", "Content-Type has no boundary parameter"),
        ("multipart/mixed;charset=x", "Content-Type has no boundary parameter"),
        ("multipart/mixed;boundary", "malformed boundary '' (RFC 2046 §5.1.1)"),
        ('multipart/mixed;boundary=""', "malformed boundary '' (RFC 2046 §5.1.1)"),
        (
            'multipart/mixed;boundary="ends in space "',
            "malformed boundary 'ends in space ' (RFC 2046 §5.1.1)",
        ),
        ('multipart/mixed;boundary="a<b"', "malformed boundary 'a<b' (RFC 2046 §5.1.1)"),
        ("multipart/mixed;boundary=" + "x" * 71, f"malformed boundary '{'x' * 71}' (RFC 2046 §5.1.1)"),
        (
            "multipart/mixed;boundary=a b",
            "malformed Content-Type parameters: malformed value of parameter 'boundary': 'a b'",
        ),
        ('multipart/mixed;boundary="open', "malformed Content-Type parameters: unterminated quoted string"),
    ],
)
def test_bad_content_type_is_refused(content_type: str, reason: str) -> None:
    assert parse_error(b"--b1\r\n\r\n\r\n--b1--", content_type).reason == reason


def test_longest_boundary_is_accepted() -> None:
    boundary = "x" * 70
    body = f"--{boundary}\r\n\r\nok\r\n--{boundary}--".encode()
    assert parse_multipart(body, f"multipart/mixed;boundary={boundary}") == [part(b"ok")]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "no delimiter line '--b1' in the body"),
        (b"no delimiter at all", "no delimiter line '--b1' in the body"),
        (b"preamble--b1\r\n\r\nx\r\n--b1--", "multipart body has no part before its closing delimiter"),
        (b"--b1\r\n\r\nx", "no closing delimiter after part 1"),
        (b"--b1\r\n\r\nx\r\n--b1\r\n\r\ny", "no closing delimiter after part 2"),
        (b"--b1\r\n--b1--", "no closing delimiter after part 1"),
        (b"--b1--\r\n", "multipart body has no part before its closing delimiter"),
        (b"--b1", "delimiter line before part 1 does not end in CRLF"),
        (b"--b1x\r\n\r\nx\r\n--b1--", "delimiter line before part 1 does not end in CRLF"),
        (
            b"--b1\r\n\r\nx\r\n--b1 junk\r\n\r\ny\r\n--b1--",
            "delimiter line before part 2 does not end in CRLF",
        ),
        (b"--b1\nContent-Type: a/b\n\nx\n--b1--", "delimiter line before part 1 does not end in CRLF"),
        (
            b"--b1\r\nbad header\r\n\r\nx\r\n--b1--",
            "malformed header in part 1: malformed header field 'bad header'",
        ),
        (
            b"--b1\r\n\r\nx\r\n--b1\r\n folded first\r\n\r\nx\r\n--b1--",
            "malformed header in part 2: continuation line before the first header field",
        ),
        (
            b"--b1\r\nX-Nul: a\x00b\r\n\r\nx\r\n--b1--",
            "malformed header in part 1: bare CR, LF or NUL inside the header section",
        ),
        (b"--b1\r\nX-Bin: \xff\r\n\r\nx\r\n--b1--", "header section of part 1 is not valid UTF-8 (byte 7)"),
    ],
)
def test_bad_body_is_refused(body: bytes, reason: str) -> None:
    error = parse_error(body)
    assert (error.status, error.reason) == (400, reason)


def test_multipart_error_is_a_sip_parse_error() -> None:
    assert issubclass(MultipartError, SipParseError)


def many_parts(count: int) -> bytes:
    return b"".join(b"--b1\r\n\r\npart\r\n" for _ in range(count)) + b"--b1--"


def test_part_count_limit() -> None:
    assert len(parse_multipart(many_parts(16), "multipart/mixed;boundary=b1")) == 16
    assert parse_error(many_parts(17)).reason == "more than 16 parts in the multipart body"
    assert len(parse_multipart(many_parts(3), "multipart/mixed;boundary=b1", max_parts=3)) == 3
    assert parse_error(many_parts(4), max_parts=3).reason == "more than 3 parts in the multipart body"


def test_part_count_limit_applies_before_the_closing_delimiter_is_found() -> None:
    unterminated = b"".join(b"--b1\r\n\r\npart\r\n" for _ in range(20))
    assert parse_error(unterminated).reason == "more than 16 parts in the multipart body"


# --- building -----------------------------------------------------------------------------


def test_build_with_a_given_boundary() -> None:
    parts = [
        part(SDP, ("Content-Type", "application/sdp")),
        part(MCPTT_INFO, ("Content-Type", "application/vnd.3gpp.mcptt-info+xml"), ("Content-ID", "<i@a>")),
        part(
            RESOURCE_LISTS,
            ("Content-Type", "application/resource-lists+xml"),
            ("Content-Disposition", "recipient-list"),
        ),
    ]
    content_type, body = build_multipart(parts, "boundary1")
    assert content_type == "multipart/mixed;boundary=boundary1"
    assert body == MC_BODY.replace(b"Content-ID: <mcptt-info@a.mc.example>", b"Content-ID: <i@a>")
    assert parse_multipart(body, content_type) == parts


def test_build_quotes_a_boundary_that_needs_it() -> None:
    content_type, body = build_multipart([part(b"x")], "a b:c")
    assert content_type == 'multipart/mixed;boundary="a b:c"'
    assert body == b"--a b:c\r\n\r\nx\r\n--a b:c--\r\n"
    assert parse_multipart(body, content_type) == [part(b"x")]


def test_generated_boundary_is_random_hex() -> None:
    first, _ = build_multipart([part(b"x")])
    second, _ = build_multipart([part(b"x")])
    prefix = "multipart/mixed;boundary="
    assert first.startswith(prefix)
    assert len(first) == len(prefix) + 32
    int(first[len(prefix) :], 16)
    assert first != second


def test_generated_boundary_never_occurs_in_a_part(monkeypatch: pytest.MonkeyPatch) -> None:
    draws = iter(["deadbeef", "cafe", "f00d"])
    monkeypatch.setattr(multipart.secrets, "token_hex", lambda _nbytes: next(draws))
    parts = [part(b"contains deadbeef"), part(b"x", ("X-Id", "cafe"))]
    content_type, body = build_multipart(parts)
    assert content_type == "multipart/mixed;boundary=f00d"
    assert parse_multipart(body, content_type) == parts


@pytest.mark.parametrize(
    ("parts", "boundary", "message"),
    [
        ([], None, "a multipart body needs at least one part (RFC 2046 §5.1.1)"),
        ([part(b"has --b1 inside")], "b1", "the boundary occurs inside a part"),
        ([part(b"x", ("X-B", "b1"))], "b1", "the boundary occurs inside a part"),
        ([part(b"x")], "", "malformed boundary '' (RFC 2046 §5.1.1)"),
        ([part(b"x")], "trailing ", "malformed boundary 'trailing ' (RFC 2046 §5.1.1)"),
        ([part(b"x")], "é", "malformed boundary 'é' (RFC 2046 §5.1.1)"),
        ([part(b"x", ("X-Bad", "a\r\nInjected: yes"))], None, "header 'X-Bad' of a part holds CR, LF or NUL"),
    ],
)
def test_build_refuses(parts: list[BodyPart], boundary: str | None, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        build_multipart(parts, boundary)
    assert str(caught.value) == message
    assert not isinstance(caught.value, MultipartError)
