"""Unit tests of the sans-IO SIP parser and serializer (RFC 3261 §7, §18.3, §20)."""

from __future__ import annotations

import pytest

from mcinterconnect.sip.message import COMPACT_FORMS, Headers, SipRequest, SipResponse, canonical_name
from mcinterconnect.sip.parser import (
    ParserLimits,
    SipParseError,
    StreamFramer,
    content_length_of,
    error_response,
    parse_message,
)

VIA = "SIP/2.0/TLS is.a.mc.example:5061;branch=z9hG4bK776asdhds"
REQUEST_HEAD = (
    "INVITE sip:bob@b.mc.example SIP/2.0",
    f"Via: {VIA}",
    "Max-Forwards: 70",
    "To: <sip:bob@b.mc.example>",
    'From: "Alice" <sip:alice@a.mc.example>;tag=1928301774',
    "Call-ID: a84b4c76e66710@a.mc.example",
    "CSeq: 314159 INVITE",
    "Contact: <sip:alice@192.0.2.1:5061;transport=tls>",
)
RESPONSE_HEAD = (
    "SIP/2.0 180 Ringing",
    f"Via: {VIA}",
    "To: <sip:bob@b.mc.example>;tag=a6c85cf",
    'From: "Alice" <sip:alice@a.mc.example>;tag=1928301774',
    "Call-ID: a84b4c76e66710@a.mc.example",
    "CSeq: 314159 INVITE",
)


def raw(*lines: str, body: bytes = b"", content_length: int | None = -1) -> bytes:
    """A message from its lines; Content-Length is the body length unless given (None: absent)."""
    fields = list(lines)
    if content_length is not None:
        fields.append(f"Content-Length: {len(body) if content_length == -1 else content_length}")
    return ("\r\n".join(fields) + "\r\n\r\n").encode("utf-8") + body


def request(*extra: str, body: bytes = b"", content_length: int | None = -1) -> bytes:
    return raw(*REQUEST_HEAD, *extra, body=body, content_length=content_length)


def refused(data: bytes, **kwargs: object) -> SipParseError:
    with pytest.raises(SipParseError) as caught:
        parse_message(data, **kwargs)  # type: ignore[arg-type]
    return caught.value


# --- requests and responses ---------------------------------------------------------------


def test_request_start_line_headers_and_body() -> None:
    message = parse_message(request("Content-Type: application/sdp", body=b"v=0\r\n"))
    assert isinstance(message, SipRequest)
    assert (message.method, message.uri) == ("INVITE", "sip:bob@b.mc.example")
    assert list(message.headers) == [
        ("Via", VIA),
        ("Max-Forwards", "70"),
        ("To", "<sip:bob@b.mc.example>"),
        ("From", '"Alice" <sip:alice@a.mc.example>;tag=1928301774'),
        ("Call-ID", "a84b4c76e66710@a.mc.example"),
        ("CSeq", "314159 INVITE"),
        ("Contact", "<sip:alice@192.0.2.1:5061;transport=tls>"),
        ("Content-Type", "application/sdp"),
        ("Content-Length", "5"),
    ]
    assert message.body == b"v=0\r\n"
    assert message.cseq == (314159, "INVITE")
    assert message.call_id == "a84b4c76e66710@a.mc.example"
    assert message.content_type == "application/sdp"


def test_response_status_line_and_headers() -> None:
    message = parse_message(raw(*RESPONSE_HEAD))
    assert isinstance(message, SipResponse)
    assert (message.status, message.reason) == (180, "Ringing")
    assert message.headers.get("To") == "<sip:bob@b.mc.example>;tag=a6c85cf"
    assert message.body == b""


def test_request_serializes_to_the_bytes_it_was_parsed_from() -> None:
    data = request("Content-Type: text/plain", body=b"hello")
    message = parse_message(data)
    assert message.to_bytes() == data
    assert parse_message(message.to_bytes()) == message


def test_response_serializes_to_the_bytes_it_was_parsed_from() -> None:
    data = raw(*RESPONSE_HEAD)
    assert parse_message(data).to_bytes() == data


def test_serialization_recomputes_content_length_and_puts_it_last() -> None:
    message = parse_message(request(body=b"abc"))
    message.body = b"longer body"
    data = message.to_bytes()
    assert data.endswith(b"\r\nContent-Length: 11\r\n\r\nlonger body")
    assert data.count(b"Content-Length") == 1
    assert parse_message(data).body == b"longer body"


def test_serialization_uses_long_canonical_names() -> None:
    data = raw(
        "OPTIONS sip:b.mc.example SIP/2.0",
        f"v: {VIA}",
        "t: <sip:b.mc.example>",
        "f: <sip:a.mc.example>;tag=1",
        "i: opt-1",
        "cseq: 1 OPTIONS",
        "call-info: <http://a.mc.example/x>",
    )
    text = parse_message(data).to_bytes().decode()
    assert text.splitlines()[1:7] == [
        f"Via: {VIA}",
        "To: <sip:b.mc.example>",
        "From: <sip:a.mc.example>;tag=1",
        "Call-ID: opt-1",
        "CSeq: 1 OPTIONS",
        "Call-Info: <http://a.mc.example/x>",
    ]


def test_header_names_are_case_insensitive_and_white_space_around_colon_is_allowed() -> None:
    message = parse_message(request("X-Mixed-Case  :\t  value  "))
    assert message.headers.get("x-mixed-case") == "value"
    assert ("X-Mixed-Case", "value") in list(message.headers)
    assert message.headers.get("CALL-ID") == "a84b4c76e66710@a.mc.example"


def test_folded_header_lines_are_joined_with_one_space() -> None:
    message = parse_message(request("Subject: first", " \t second", "\tthird"))
    assert message.headers.get("Subject") == "first second third"


def test_empty_header_value_is_kept() -> None:
    assert parse_message(request("Subject:")).headers.get("Subject") == ""


# --- multi-value headers ------------------------------------------------------------------


def test_comma_separated_and_repeated_via_values_are_split_in_order() -> None:
    message = parse_message(
        request(
            "Via: SIP/2.0/UDP a.example;branch=z9hG4bK1 , SIP/2.0/TCP b.example:5070;branch=z9hG4bK2",
            "Via: SIP/2.0/TLS c.example;branch=z9hG4bK3",
        )
    )
    assert message.vias == [
        VIA,
        "SIP/2.0/UDP a.example;branch=z9hG4bK1",
        "SIP/2.0/TCP b.example:5070;branch=z9hG4bK2",
        "SIP/2.0/TLS c.example;branch=z9hG4bK3",
    ]


@pytest.mark.parametrize("name", ["Route", "Record-Route"])
def test_route_sets_are_split_but_commas_inside_brackets_are_not(name: str) -> None:
    message = parse_message(
        request(
            f"{name}: <sip:p1.example;lr>,<sip:p2.example;lr;x=a,b>",
            f"{name}: <sip:p3.example;lr>",
        )
    )
    assert message.headers.get_all(name) == [
        "<sip:p1.example;lr>",
        "<sip:p2.example;lr;x=a,b>",
        "<sip:p3.example;lr>",
    ]


def test_contact_commas_in_quoted_display_names_do_not_split() -> None:
    message = parse_message(
        request(
            'Contact: "Watson, Thomas" <sip:watson@192.0.2.5>;q=0.5, '
            '"Quote \\" and, comma" <sip:q@192.0.2.6>',
            "Contact: <sip:third@192.0.2.7>",
        )
    )
    assert message.headers.get_all("Contact") == [
        "<sip:alice@192.0.2.1:5061;transport=tls>",
        '"Watson, Thomas" <sip:watson@192.0.2.5>;q=0.5',
        '"Quote \\" and, comma" <sip:q@192.0.2.6>',
        "<sip:third@192.0.2.7>",
    ]


def test_split_values_serialize_one_per_line() -> None:
    message = parse_message(request("Route: <sip:p1.example;lr>, <sip:p2.example;lr>"))
    lines = message.to_bytes().decode().split("\r\n")
    assert lines.count("Route: <sip:p1.example;lr>") == 1
    assert lines.count("Route: <sip:p2.example;lr>") == 1


def test_contact_star_is_kept_as_one_value() -> None:
    data = raw(
        "REGISTER sip:a.mc.example SIP/2.0",
        f"Via: {VIA}",
        "To: <sip:alice@a.mc.example>",
        "From: <sip:alice@a.mc.example>;tag=1",
        "Call-ID: reg-1",
        "CSeq: 2 REGISTER",
        "Contact: *",
        "Expires: 0",
    )
    assert parse_message(data).headers.get_all("Contact") == ["*"]


def test_other_headers_keep_their_commas() -> None:
    message = parse_message(request("Allow: INVITE, ACK, BYE", "Supported: timer, path"))
    assert message.headers.get_all("Allow") == ["INVITE, ACK, BYE"]
    assert message.headers.get_all("Supported") == ["timer, path"]


# --- compact forms ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("compact", "long"),
    [
        ("v", "Via"),
        ("f", "From"),
        ("t", "To"),
        ("i", "Call-ID"),
        ("m", "Contact"),
        ("l", "Content-Length"),
        ("c", "Content-Type"),
        ("k", "Supported"),
        ("s", "Subject"),
        ("e", "Content-Encoding"),
        ("o", "Event"),
        ("u", "Allow-Events"),
        ("r", "Refer-To"),
        ("b", "Referred-By"),
        ("x", "Session-Expires"),
        ("a", "Accept-Contact"),
        ("j", "Reject-Contact"),
        ("d", "Request-Disposition"),
        ("y", "Identity"),
        ("n", "Identity-Info"),
    ],
)
def test_compact_form_expands_to_long_name(compact: str, long: str) -> None:
    assert COMPACT_FORMS[compact] == long
    assert canonical_name(compact) == long
    assert canonical_name(compact.upper()) == long


def test_message_written_in_compact_forms() -> None:
    data = raw(
        "MESSAGE sip:bob@b.mc.example SIP/2.0",
        f"v: {VIA}",
        "t: <sip:bob@b.mc.example>",
        "F: <sip:alice@a.mc.example>;tag=9",
        "i: msg-1@a.mc.example",
        "CSeq: 7 MESSAGE",
        "m: <sip:alice@192.0.2.1>",
        "c: text/plain",
        "k: path",
        "s: hello",
        "l: 2",
        body=b"hi",
        content_length=None,
    )
    message = parse_message(data)
    assert [name for name, _ in message.headers] == [
        "Via",
        "To",
        "From",
        "Call-ID",
        "CSeq",
        "Contact",
        "Content-Type",
        "Supported",
        "Subject",
        "Content-Length",
    ]
    assert message.body == b"hi"
    assert message.content_type == "text/plain"


def test_one_letter_names_without_compact_form_are_not_expanded() -> None:
    message = parse_message(request("z: zed", "g: gee"))
    assert message.headers.get_all("z") == ["zed"]
    assert [name for name, _ in message.headers][-3:-1] == ["z", "g"]


# --- unknown headers ----------------------------------------------------------------------


def test_unknown_headers_are_kept_in_order_and_round_trip() -> None:
    unknown = [
        ("X-Zulu", "last, but first"),
        ("P-Unknown-Thing", ";;,,;;"),
        ("X-Alpha", 'value with "quotes" and <brackets>'),
        ("x-zulu", "second zulu"),
        ("Ext-!%*_+`'~.-", "token characters in the name"),
        ("X-Utf8", "Grüße 大停電"),
    ]
    data = request(*(f"{name}: {value}" for name, value in unknown))
    message = parse_message(data)
    fields = list(message.headers)
    assert fields[:7] == [tuple(line.split(": ", 1)) for line in REQUEST_HEAD[1:]]
    assert fields[7:] == [*unknown, ("Content-Length", "0")]
    assert message.headers.get_all("X-ZULU") == ["last, but first", "second zulu"]
    assert message.to_bytes() == data


# --- datagram framing ---------------------------------------------------------------------


def test_datagram_bytes_beyond_content_length_are_discarded() -> None:
    data = request(body=b"abc", content_length=3) + b"garbage that follows"
    assert parse_message(data).body == b"abc"


def test_datagram_body_shorter_than_content_length_is_refused() -> None:
    error = refused(request(body=b"abc", content_length=10))
    assert error.status == 400
    assert error.reason == "Content-Length 10 is larger than the 3 bytes of body received"


def test_datagram_without_content_length_takes_the_rest_as_body() -> None:
    assert parse_message(request(body=b"whole datagram", content_length=None)).body == b"whole datagram"


def test_stream_message_without_content_length_is_refused_by_the_parser() -> None:
    error = refused(request(content_length=None), stream=True)
    assert error.reason == "Content-Length is mandatory on a stream transport"


@pytest.mark.parametrize("value", ["-1", "1e3", "0x10", "", "12345678901", "٣", "1 2"])
def test_malformed_content_length_is_refused(value: str) -> None:
    data = request(f"Content-Length: {value}", content_length=None)
    assert refused(data).reason == f"malformed Content-Length {value!r}"


def test_leading_crlfs_before_the_start_line_are_ignored() -> None:
    message = parse_message(b"\r\n\r\n\r\n" + request())
    assert isinstance(message, SipRequest)
    assert message.method == "INVITE"


@pytest.mark.parametrize("data", [b"", b"\r\n", b"\r\n\r\n"])
def test_empty_datagram_is_refused(data: bytes) -> None:
    assert refused(data).reason == "empty message"


def test_header_section_without_empty_line_is_refused() -> None:
    assert refused(b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n").reason == "no empty line ends the header section"


def test_bare_lf_line_endings_are_refused() -> None:
    data = request().replace(b"\r\n", b"\n")
    assert refused(data).reason == "no empty line ends the header section"


# --- stream framing -----------------------------------------------------------------------


def drain(framer: StreamFramer) -> list[bytes]:
    messages = []
    while (message := framer.next_message()) is not None:
        messages.append(message)
    return messages


def test_framer_reassembles_a_message_fed_byte_by_byte() -> None:
    data = request(body=b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n")
    framer = StreamFramer()
    got: list[bytes] = []
    for index in range(len(data)):
        framer.feed(data[index : index + 1])
        got += drain(framer)
        if index < len(data) - 1:
            assert got == []
    assert got == [data]
    assert framer.buffered == 0
    assert parse_message(got[0], stream=True).body == b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n"


def test_framer_cuts_two_messages_from_one_chunk() -> None:
    first = request(body=b"one")
    second = raw(*RESPONSE_HEAD, body=b"second body")
    framer = StreamFramer()
    framer.feed(first + second + first[:10])
    assert drain(framer) == [first, second]
    assert framer.buffered == 10


def test_framer_skips_crlf_keepalives_between_messages() -> None:
    message = request()
    framer = StreamFramer()
    framer.feed(b"\r\n\r\n" + message + b"\r\n\r\n\r\n\r\n" + message + b"\r\n")
    assert drain(framer) == [message, message]
    assert framer.keepalives == 3
    # A lone CRLF (a keep-alive pong) is skipped once what follows it is known.
    assert framer.buffered == 2
    framer.feed(message)
    assert drain(framer) == [message]
    assert framer.buffered == 0


def test_framer_waits_on_a_partial_keepalive() -> None:
    framer = StreamFramer()
    framer.feed(b"\r\n\r")
    assert framer.next_message() is None
    framer.feed(b"\n")
    assert framer.next_message() is None
    assert framer.keepalives == 1
    assert framer.buffered == 0


def test_framer_refuses_a_message_without_content_length() -> None:
    framer = StreamFramer()
    framer.feed(request(content_length=None) + b"body")
    with pytest.raises(SipParseError) as caught:
        framer.next_message()
    assert caught.value.reason == "Content-Length is mandatory on a stream transport"


def test_framer_refuses_a_declared_length_beyond_the_limit() -> None:
    framer = StreamFramer(ParserLimits(max_message_size=1000))
    data = request(content_length=900)
    framer.feed(data)
    with pytest.raises(SipParseError) as caught:
        framer.next_message()
    assert caught.value.status == 513
    assert caught.value.reason == f"message of {len(data) + 900} bytes exceeds the limit of 1000"


def test_framer_refuses_an_endless_header_section() -> None:
    framer = StreamFramer(ParserLimits(max_message_size=1000))
    framer.feed(b"INVITE sip:a@b SIP/2.0\r\n")
    for _ in range(100):
        framer.feed(b"X-Filler: 0123456789\r\n")
        if framer.buffered > 1000:
            break
        assert framer.next_message() is None
    with pytest.raises(SipParseError) as caught:
        framer.next_message()
    assert caught.value.status == 513
    assert caught.value.reason == "header section exceeds the limit of 1000"


def test_framer_refuses_a_malformed_content_length() -> None:
    framer = StreamFramer()
    framer.feed(request("l: -5", content_length=None))
    with pytest.raises(SipParseError) as caught:
        framer.next_message()
    assert caught.value.reason == "malformed Content-Length '-5'"


def test_framer_reads_compact_and_folded_content_length_as_the_parser_does() -> None:
    body = b"0123456789"
    data = request("l:", "  10", body=body, content_length=None) + b"NEXT"
    assert content_length_of(data[: data.index(b"\r\n\r\n")]) == 10
    framer = StreamFramer()
    framer.feed(data)
    message = framer.next_message()
    assert message is not None
    assert parse_message(message, stream=True).body == body
    assert framer.buffered == 4


def test_content_length_of_absent_header() -> None:
    assert content_length_of(b"INVITE sip:a@b SIP/2.0\r\nVia: x") is None


# --- limits -------------------------------------------------------------------------------


def test_message_larger_than_the_limit_is_refused_with_513() -> None:
    data = request(body=b"x" * 2000)
    error = refused(data, limits=ParserLimits(max_message_size=1500))
    assert error.status == 513
    assert error.reason == f"message of {len(data)} bytes exceeds the limit of 1500"
    assert error.is_request


def test_too_many_header_fields_are_refused() -> None:
    limits = ParserLimits(max_header_count=10)
    assert parse_message(request("X-1: a"), limits=limits)
    error = refused(request("X-1: a", "X-2: b", "X-3: c"), limits=limits)
    assert (error.status, error.reason) == (400, "more than 10 header fields")


def test_too_many_header_values_after_splitting_are_refused() -> None:
    limits = ParserLimits(max_header_count=10)
    error = refused(request("Route: <sip:a;lr>, <sip:b;lr>, <sip:c;lr>"), limits=limits)
    assert error.reason == "more than 10 header values"


def test_long_header_line_is_refused() -> None:
    limits = ParserLimits(max_line_length=200)
    assert parse_message(request("X-Long: " + "a" * 190), limits=limits)
    error = refused(request("X-Long: " + "a" * 193), limits=limits)
    assert error.reason == "header line longer than 200 bytes"


def test_long_folded_header_is_refused() -> None:
    limits = ParserLimits(max_line_length=200)
    error = refused(request("X-Long: " + "a" * 150, " " + "b" * 150), limits=limits)
    assert error.reason == "folded header field longer than 200 bytes"


def test_long_start_line_is_refused() -> None:
    limits = ParserLimits(max_line_length=200)
    data = request().replace(b"sip:bob@b.mc.example SIP", b"sip:" + b"b" * 200 + b"@b.mc.example SIP", 1)
    assert refused(data, limits=limits).reason == "start line longer than 200 bytes"


# --- other refusals -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_missing_mandatory_header_is_refused(name: str) -> None:
    lines = [line for line in REQUEST_HEAD if not line.startswith(f"{name}:")]
    assert refused(raw(*lines)).reason == f"missing mandatory header {name}"


@pytest.mark.parametrize(
    "line",
    [
        "From: <sip:mallory@a.mc.example>;tag=2",
        "To: <sip:eve@b.mc.example>",
        "Call-ID: second-call-id",
        "CSeq: 314159 INVITE",
        "Max-Forwards: 69",
    ],
)
def test_repeated_single_value_header_is_refused(line: str) -> None:
    name = line.split(":", 1)[0]
    assert refused(request(line)).reason == f"header {name} appears more than once"


def test_repeated_content_type_is_refused() -> None:
    data = request("Content-Type: text/plain", "c: application/sdp")
    assert refused(data).reason == "header Content-Type appears more than once"


def test_repeated_content_length_is_refused() -> None:
    error = refused(request("Content-Length: 0"))
    assert error.reason == "header Content-Length appears more than once"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "missing mandatory header CSeq"),
        ("INVITE", "malformed CSeq 'INVITE'"),
        ("1", "malformed CSeq '1'"),
        ("2147483648 INVITE", "malformed CSeq '2147483648 INVITE'"),
        ("-1 INVITE", "malformed CSeq '-1 INVITE'"),
        ("1 INVITE extra", "malformed CSeq '1 INVITE extra'"),
        ("1 BYE", "CSeq method BYE does not match request method INVITE"),
        ("1 invite", "CSeq method invite does not match request method INVITE"),
    ],
)
def test_bad_cseq_is_refused(value: str, reason: str) -> None:
    data = request().replace(b"CSeq: 314159 INVITE", f"CSeq: {value}".encode())
    assert refused(data).reason == reason


def test_largest_cseq_is_accepted() -> None:
    data = request().replace(b"CSeq: 314159 INVITE", b"CSeq: 2147483647 INVITE")
    assert parse_message(data).cseq == (2147483647, "INVITE")


@pytest.mark.parametrize("value", ["256", "-1", "seventy", "", "7 0"])
def test_bad_max_forwards_is_refused(value: str) -> None:
    data = request().replace(b"Max-Forwards: 70", f"Max-Forwards: {value}".encode())
    assert refused(data).reason == f"malformed Max-Forwards {value!r}"


@pytest.mark.parametrize(
    ("start", "status", "reason"),
    [
        ("INVITE sip:bob@b.mc.example SIP/3.0", 505, "SIP version 3.0 is not supported"),
        (
            "INVITE sip:bob@b.mc.example SIP/2.0x",
            400,
            "malformed request line 'INVITE sip:bob@b.mc.example SIP/2.0x'",
        ),
        (
            "INVITE sip:bob@b.mc.example HTTP/1.1",
            400,
            "malformed request line 'INVITE sip:bob@b.mc.example HTTP/1.1'",
        ),
        (
            "INVITE sip:bob@b.mc.example SIP/٢.0",
            400,
            "malformed request line 'INVITE sip:bob@b.mc.example SIP/٢.0'",
        ),
        ("INVITE sip:bob@b.mc.example", 400, "malformed request line 'INVITE sip:bob@b.mc.example'"),
        ("IN<VITE sip:bob@b.mc.example SIP/2.0", 400, "malformed method 'IN<VITE'"),
        ("INVITE bob@b.mc.example SIP/2.0", 400, "malformed Request-URI 'bob@b.mc.example'"),
        (
            "INVITE sip:bob@b.mc.example\x07 SIP/2.0",
            400,
            "control character in the start line 'INVITE sip:bob@b.mc.example\\x07 SIP/2.0'",
        ),
    ],
)
def test_bad_request_line_is_refused(start: str, status: int, reason: str) -> None:
    error = refused(raw(start, *REQUEST_HEAD[1:]))
    assert (error.status, error.reason) == (status, reason)
    assert error.is_request


def test_sip_version_is_case_insensitive() -> None:
    assert isinstance(
        parse_message(raw("INVITE sip:bob@b.mc.example sip/2.0", *REQUEST_HEAD[1:])), SipRequest
    )


@pytest.mark.parametrize(
    ("start", "status", "reason"),
    [
        ("SIP/2.0 099 Too Low", 400, "status code 99 out of range"),
        ("SIP/2.0 700 Too High", 400, "status code 700 out of range"),
        ("SIP/2.0 2000 OK", 400, "malformed status line 'SIP/2.0 2000 OK'"),
        ("SIP/2.0 200", 400, "malformed status line 'SIP/2.0 200'"),
        ("SIP/2.0  200 OK", 400, "malformed status line 'SIP/2.0  200 OK'"),
        ("SIP/2.0 ٢٠٠ OK", 400, "malformed status line 'SIP/2.0 ٢٠٠ OK'"),
        ("SIP/1.0 200 OK", 505, "SIP version 1.0 is not supported"),
    ],
)
def test_bad_status_line_is_refused(start: str, status: int, reason: str) -> None:
    error = refused(raw(start, *RESPONSE_HEAD[1:]))
    assert (error.status, error.reason) == (status, reason)
    assert not error.is_request


def test_empty_reason_phrase_is_accepted() -> None:
    message = parse_message(raw("SIP/2.0 100 ", *RESPONSE_HEAD[1:]))
    assert isinstance(message, SipResponse)
    assert (message.status, message.reason) == (100, "")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("No colon here", "malformed header field 'No colon here'"),
        ("Bad Name: value", "malformed header field 'Bad Name: value'"),
        (": no name", "malformed header field ': no name'"),
        ("Näme: value", "malformed header field 'Näme: value'"),
    ],
)
def test_malformed_header_field_is_refused(line: str, reason: str) -> None:
    assert refused(request(line)).reason == reason


def test_continuation_before_the_first_header_is_refused() -> None:
    data = raw("INVITE sip:bob@b.mc.example SIP/2.0", " folded", *REQUEST_HEAD[1:])
    assert refused(data).reason == "continuation line before the first header field"


@pytest.mark.parametrize("junk", ["\x00", "\r", "\n"])
def test_nul_and_bare_cr_or_lf_in_headers_are_refused(junk: str) -> None:
    assert refused(request(f"Subject: a{junk}b")).reason == "bare CR, LF or NUL inside the header section"


def test_header_section_that_is_not_utf8_is_refused() -> None:
    data = request("Subject: \xff").replace("\xff".encode(), b"\xff")
    position = data.index(b"\xff")
    assert refused(data).reason == f"header section is not valid UTF-8 (byte {position})"


def test_non_utf8_body_is_accepted() -> None:
    assert parse_message(request(body=b"\xff\x00\xfe")).body == b"\xff\x00\xfe"


# --- error responses ----------------------------------------------------------------------


def test_error_response_answers_400_with_warning_and_copied_headers() -> None:
    data = request("Route: <sip:p1.example;lr>", "Max-Forwards: 70")
    error = refused(data)
    assert error.reason == "header Max-Forwards appears more than once"
    response = error_response(error, "is.b.mc.example")
    assert response is not None
    assert (response.status, response.reason) == (400, "Bad Request")
    assert list(response.headers) == [
        ("Via", VIA),
        ("From", '"Alice" <sip:alice@a.mc.example>;tag=1928301774'),
        ("To", "<sip:bob@b.mc.example>"),
        ("Call-ID", "a84b4c76e66710@a.mc.example"),
        ("CSeq", "314159 INVITE"),
        ("Warning", '399 is.b.mc.example "header Max-Forwards appears more than once"'),
    ]
    parsed = parse_message(response.to_bytes())
    assert isinstance(parsed, SipResponse)
    assert list(parsed.headers) == [*response.headers, ("Content-Length", "0")]


def test_error_response_copies_every_via_and_escapes_quotes_in_the_warning() -> None:
    data = request("Via: SIP/2.0/UDP second.example;branch=z9hG4bK2", 'Bad Header": x')
    response = error_response(refused(data), "agent")
    assert response is not None
    assert response.vias == [VIA, "SIP/2.0/UDP second.example;branch=z9hG4bK2"]
    assert response.headers.get("Warning") == '399 agent "malformed header field \'Bad Header\\": x\'"'


def test_error_response_for_unsupported_version_is_505() -> None:
    error = refused(raw("INVITE sip:bob@b.mc.example SIP/7.0", *REQUEST_HEAD[1:]))
    response = error_response(error, "agent")
    assert response is not None
    assert (response.status, response.reason) == (505, "Version Not Supported")
    assert response.headers.get("Warning") == '399 agent "SIP version 7.0 is not supported"'


def test_no_error_response_to_an_ack() -> None:
    data = raw(
        "ACK sip:bob@b.mc.example SIP/2.0",
        f"Via: {VIA}",
        "To: <sip:bob@b.mc.example>;tag=x",
        "From: <sip:alice@a.mc.example>;tag=y",
        "Call-ID: ack-1",
        "CSeq: 1 ACK",
        "Max-Forwards: 999",
    )
    error = refused(data)
    assert error.reason == "malformed Max-Forwards '999'"
    assert error.is_request
    assert error_response(error, "agent") is None


def test_no_error_response_to_a_response() -> None:
    error = refused(raw(*RESPONSE_HEAD, "Max-Forwards: 999"))
    assert error.partial is not None
    assert not error.is_request
    assert error_response(error, "agent") is None


def test_no_error_response_without_the_headers_to_address_it() -> None:
    lines = [line for line in REQUEST_HEAD if not line.startswith("Call-ID")]
    error = refused(raw(*lines))
    assert error.reason == "missing mandatory header Call-ID"
    assert error_response(error, "agent") is None


def test_no_error_response_when_the_fault_comes_before_the_headers() -> None:
    error = refused(request(body=b"x" * 100), limits=ParserLimits(max_message_size=100))
    assert error.partial is None
    assert error_response(error, "agent") is None


def test_no_error_response_with_a_malformed_cseq() -> None:
    data = request().replace(b"CSeq: 314159 INVITE", b"CSeq: x INVITE")
    assert error_response(refused(data), "agent") is None


def test_error_response_uses_only_the_headers_read_before_the_fault() -> None:
    # The fault is in the third header: From, To... follow it and are unknown to the error.
    data = raw(REQUEST_HEAD[0], REQUEST_HEAD[1], "Broken", *REQUEST_HEAD[2:])
    error = refused(data)
    assert error.partial == Headers([("Via", VIA)])
    assert error_response(error, "agent") is None
