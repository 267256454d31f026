"""Torture messages in the manner of RFC 4475 §3.1.1 (valid) and §3.1.2 (invalid).

The messages are written for this project after the RFC 4475 test cases whose names they carry
(wsinv, intmeth, esc01, ...): they exercise the same grammar corners, with other hosts and values.
Valid messages are asserted field by field; invalid ones must raise ``SipParseError`` with the
status and the reason a border writes in its Warning.
"""

from __future__ import annotations

import pytest

from mcinterconnect.sip.message import SipRequest, SipResponse
from mcinterconnect.sip.multipart import parse_multipart
from mcinterconnect.sip.parser import SipParseError, error_response, parse_message
from mcinterconnect.sip.uri import NameAddr, SipUri, Via, get_param

SDP = (
    b"v=0\r\n"
    b"o=mhandley 29739 7272939 IN IP4 192.0.2.3\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.4\r\n"
    b"t=0 0\r\n"
    b"m=audio 49217 RTP/AVP 0 12\r\n"
    b"m=video 3227 RTP/AVP 31\r\n"
    b"a=rtpmap:31 LPC\r\n"
)


def message(*lines: str, body: bytes = b"") -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def refused(data: bytes) -> SipParseError:
    with pytest.raises(SipParseError) as caught:
        parse_message(data)
    return caught.value


# --- §3.1.1 valid messages ----------------------------------------------------------------


def test_wsinv_short_tortuous_invite() -> None:
    """Unusual white space, folding everywhere, escaped quotes, compact and mixed-case names."""
    data = message(
        "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0",
        "TO :",
        " sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n",
        'from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>',
        "  ;",
        "  tag = 98asjd8",
        "MaX-fOrWaRdS: 0068",
        "Call-ID: wsinv.ndaksdj@192.0.2.1",
        f"Content-Length   : {len(SDP)}",
        "cseq: 0009",
        "  INVITE",
        "Via  : SIP  /   2.0",
        " /UDP",
        "    192.0.2.2;rport;branch=390skdjuw",
        "s :",
        "NewFangledHeader:   newfangled value",
        " continued newfangled value",
        "UnknownHeaderWithUnusualValue: ;;,,;;,;",
        "Content-Type: application/sdp",
        "Route:",
        " <sip:services.example.com;lr;unknownwith=value;unknown-no-value>",
        "v:  SIP  / 2.0  / TCP     spindle.example.com   ;",
        "  branch  =   z9hG4bK9ikj8  ,",
        " SIP  /    2.0   / UDP  192.168.255.111   ; branch=",
        " z9hG4bK30239",
        'm:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =',
        "      newvalue ;",
        "  secondparam ; q = 0.33",
        body=SDP,
    )
    parsed = parse_message(data)
    assert isinstance(parsed, SipRequest)
    assert (parsed.method, parsed.uri) == ("INVITE", "sip:vivekg@chair-dnrc.example.com;unknownparam")
    assert list(parsed.headers) == [
        ("To", "sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n"),
        ("From", '"J Rosenberg \\\\\\""       <sip:jdrosen@example.com> ; tag = 98asjd8'),
        ("Max-Forwards", "0068"),
        ("Call-ID", "wsinv.ndaksdj@192.0.2.1"),
        ("Content-Length", str(len(SDP))),
        ("CSeq", "0009 INVITE"),
        ("Via", "SIP  /   2.0 /UDP 192.0.2.2;rport;branch=390skdjuw"),
        ("Subject", ""),
        ("NewFangledHeader", "newfangled value continued newfangled value"),
        ("UnknownHeaderWithUnusualValue", ";;,,;;,;"),
        ("Content-Type", "application/sdp"),
        ("Route", "<sip:services.example.com;lr;unknownwith=value;unknown-no-value>"),
        ("Via", "SIP  / 2.0  / TCP     spindle.example.com   ; branch  =   z9hG4bK9ikj8"),
        ("Via", "SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239"),
        (
            "Contact",
            '"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam = newvalue ; secondparam ; q = 0.33',
        ),
    ]
    assert parsed.cseq == (9, "INVITE")
    assert parsed.body == SDP
    to = NameAddr.parse(parsed.headers.get("To") or "")
    assert (to.uri, to.display, to.tag, to.bracketed) == (
        "sip:vivekg@chair-dnrc.example.com",
        None,
        "1918181833n",
        False,
    )
    sender = NameAddr.parse(parsed.headers.get("From") or "")
    assert (sender.display, sender.uri, sender.tag) == (
        '"J Rosenberg \\\\\\""',
        "sip:jdrosen@example.com",
        "98asjd8",
    )
    vias = [Via.parse(value) for value in parsed.vias]
    assert [(via.transport, via.host, via.port, via.branch) for via in vias] == [
        ("UDP", "192.0.2.2", None, "390skdjuw"),
        ("TCP", "spindle.example.com", None, "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", None, "z9hG4bK30239"),
    ]
    assert vias[0].params == [("rport", None), ("branch", "390skdjuw")]
    contact = NameAddr.parse(parsed.headers.get("Contact") or "")
    assert contact.params == [("newparam", "newvalue"), ("secondparam", None), ("q", "0.33")]
    route = SipUri.parse(NameAddr.parse(parsed.headers.get("Route") or "").uri)
    assert route.params == [("lr", None), ("unknownwith", "value"), ("unknown-no-value", None)]


def test_intmeth_wide_range_of_valid_characters() -> None:
    """Every token character in the method and header names; odd but valid URI and Call-ID."""
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    user = "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    ruri = f"sip:{user}:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com"
    data = message(
        f"{method} {ruri} SIP/2.0",
        "Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~",
        f'To: "BEL:\\\x07 HT:\\\t DEL:\\\x7f" <sip:{user}@example.com>',
        "From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%="
        '"\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439";tag=_token~1\'+`*%!-.',
        "Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{",
        f"CSeq: 139122385 {method}",
        "Max-Forwards: 255",
        "extensionHeader-!.%*+_`'~: \U0001f600\u5927\u505c\u96fb",
        "Content-Length: 0",
    )
    parsed = parse_message(data)
    assert isinstance(parsed, SipRequest)
    assert (parsed.method, parsed.uri) == (method, ruri)
    uri = SipUri.parse(ruri)
    assert uri.user == user
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert (uri.host, uri.params, uri.headers) == ("example.com", [], "")
    assert parsed.cseq == (139122385, method)
    assert parsed.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert parsed.headers.get("extensionheader-!.%*+_`'~") == "\U0001f600\u5927\u505c\u96fb"
    sender = NameAddr.parse(parsed.headers.get("From") or "")
    assert sender.display == "token1~` token2'+_ token3*%!.-"
    assert (
        get_param(sender.params, "fromparam''~+*_!.-%")
        == '"\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439"'
    )
    assert sender.tag == "_token~1'+`*%!-."
    to = NameAddr.parse(parsed.headers.get("To") or "")
    assert to.display == '"BEL:\\\x07 HT:\\\t DEL:\\\x7f"'
    assert Via.parse(parsed.vias[0]).branch == "z9hG4bK-.!%66*_+`'~"


def test_nul_octets_are_refused_even_escaped_in_a_quoted_string() -> None:
    """RFC 4475 intmeth puts an escaped NUL in a display name; this border refuses every NUL in the
    header section (nothing downstream has to cope with one), so that variant is refused."""
    data = message(
        "OPTIONS sip:a@example.com SIP/2.0",
        "Via: SIP/2.0/UDP h.example.com;branch=z9hG4bK1",
        'To: "NUL:\\\x00" <sip:a@example.com>',
        "From: <sip:b@example.com>;tag=1",
        "Call-ID: nul",
        "CSeq: 1 OPTIONS",
    )
    error = refused(data)
    assert (error.status, error.reason) == (400, "bare CR, LF or NUL inside the header section")


def test_esc01_valid_use_of_percent_escaping() -> None:
    data = message(
        "INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0",
        "To: sip:%75se%72@example.com",
        "From: <sip:I%20have%20spaces@example.net>;tag=938",
        "Max-Forwards: 87",
        "i: esc01.239409asdfakjkn23onasd0-3234",
        "CSeq: 234234 INVITE",
        "Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw",
        "C: application/sdp",
        "Contact:",
        "  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>",
        f"Content-Length: {len(SDP)}",
        body=SDP,
    )
    parsed = parse_message(data)
    assert isinstance(parsed, SipRequest)
    assert SipUri.parse(parsed.uri).user == "sips%3Auser%40example.com"
    assert SipUri.parse(parsed.uri).host == "example.net"
    assert parsed.headers.get("To") == "sip:%75se%72@example.com"
    assert parsed.call_id == "esc01.239409asdfakjkn23onasd0-3234"
    assert parsed.content_type == "application/sdp"
    contact = SipUri.parse(NameAddr.parse(parsed.headers.get("Contact") or "").uri)
    assert contact.user == "cal%6Cer"
    assert contact.params == [("%6C%72", None), ("n%61me", "v%61lue%25%34%31")]


def test_escnull_escaped_nuls_in_uris() -> None:
    data = message(
        "REGISTER sip:example.com SIP/2.0",
        "To: sip:null-%00-null@example.com",
        "From: sip:null-%00-null@example.com;tag=839923423",
        "Max-Forwards: 70",
        "Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd",
        "CSeq: 14398234 REGISTER",
        "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw",
        "Contact: <sip:%00@host5.example.com>",
        "Contact: <sip:%00%00@host5.example.com>",
        "L:0",
    )
    parsed = parse_message(data)
    assert parsed.headers.get_all("Contact") == [
        "<sip:%00@host5.example.com>",
        "<sip:%00%00@host5.example.com>",
    ]
    assert NameAddr.parse(parsed.headers.get("From") or "").tag == "839923423"
    assert SipUri.parse(NameAddr.parse(parsed.headers.get("To") or "").uri).user == "null-%00-null"


def test_esc02_percent_that_is_not_an_escape() -> None:
    data = message(
        "RE%47IST%45R sip:registrar.example.com SIP/2.0",
        'To: "%Z%45" <sip:resource@example.com>',
        'From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23',
        "Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf",
        "Via: SIP/2.0/TCP host.example.com;rport;branch=z9hG4bKasdf",
        "CSeq: 29344 RE%47IST%45R",
        "Max-Forwards: 70",
        "Contact: <sip:alias1@host1.example.com>",
        "C%6Fntact: <sip:alias2@host2.example.com>",
        "Contact: <sip:alias3@host3.example.com>",
        "l: 0",
    )
    parsed = parse_message(data)
    assert isinstance(parsed, SipRequest)
    assert parsed.method == "RE%47IST%45R"
    # Header names are not unescaped: C%6Fntact is an unknown header, not a Contact.
    assert parsed.headers.get_all("Contact") == [
        "<sip:alias1@host1.example.com>",
        "<sip:alias3@host3.example.com>",
    ]
    assert parsed.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    assert NameAddr.parse(parsed.headers.get("To") or "").display == '"%Z%45"'


def test_lwsdisp_no_white_space_between_display_name_and_bracket() -> None:
    data = message(
        "OPTIONS sip:user@example.com SIP/2.0",
        "To: sip:user@example.com",
        "From: caller<sip:caller@example.com>;tag=323",
        "Max-Forwards: 70",
        "Call-ID: lwsdisp.1234abcd@funky.example.com",
        "CSeq: 60 OPTIONS",
        "Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw",
        "l: 0",
    )
    sender = NameAddr.parse(parse_message(data).headers.get("From") or "")
    assert (sender.display, sender.uri, sender.tag) == ("caller", "sip:caller@example.com", "323")


def test_longreq_long_values_in_header_fields() -> None:
    long_name = "I have a user name of " + "extreme" * 60 + " proportion"
    long_tag = "12982" * 80
    long_call_id = "longreq.one" + "really" * 100 + "longcallid"
    vias = [f"SIP/2.0/TCP sip{n}.example.com;branch=z9hG4bK{n}" for n in range(30)]
    data = message(
        "INVITE sip:user@example.com SIP/2.0",
        f'To: "{long_name}"<sip:user@example.com:6000;unknownparam1=very{"long" * 100}value>',
        f"From: sip:caller@example.net;tag={long_tag}",
        f"Call-ID: {long_call_id}",
        "CSeq: 1 INVITE",
        "Max-Forwards: 70",
        f"Unknown-{'LongLong' * 20}-Name: unknown-{'long' * 60}-value; unknown-{'long' * 40}-parameter-name="
        f"unknown-{'long' * 40}-parameter-value",
        *(f"Via: {via}" for via in vias[:10]),
        "Via: " + ", ".join(vias[10:]),
        f"Contact: <sip:amazinglylongcallername{'x' * 500}@host5.example.net>",
        "Content-Length: 0",
    )
    assert len(data) > 4800
    parsed = parse_message(data)
    to = NameAddr.parse(parsed.headers.get("To") or "")
    assert to.display == f'"{long_name}"'
    assert SipUri.parse(to.uri).port == 6000
    assert NameAddr.parse(parsed.headers.get("From") or "").tag == long_tag
    assert parsed.call_id == long_call_id
    assert parsed.vias == vias
    # The comma-separated Vias come back one a line; nothing else changes.
    assert parse_message(parsed.to_bytes()) == parsed


def test_dblreq_extra_trailing_octets_in_a_datagram() -> None:
    register = message(
        "REGISTER sip:example.com SIP/2.0",
        "To: sip:j.user@example.com",
        "From: sip:j.user@example.com;tag=43251j3j324",
        "Max-Forwards: 8",
        "I: dblreq.0ha0isndaksdj99sdfafnl3lk233412",
        "Contact: sip:j.user@host.example.com",
        "CSeq: 8 REGISTER",
        "Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492",
        "Content-Length: 0",
    )
    trailing = message(
        "INVITE sip:joe@example.com SIP/2.0",
        "t: sip:joe@example.com",
        "From: sip:caller@example.net;tag=141334",
        "Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15",
        "CSeq: 8 INVITE",
        "Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234",
        "Content-Length: 0",
    )
    parsed = parse_message(register + trailing)
    assert isinstance(parsed, SipRequest)
    assert parsed.method == "REGISTER"
    assert parsed.body == b""


def test_semiuri_semicolons_in_the_user_part() -> None:
    data = message(
        "OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0",
        "To: sip:j_user@example.com",
        "From: sip:caller@example.org;tag=33242",
        "Max-Forwards: 3",
        "Call-ID: semiuri.0ha0isndaksdj",
        "CSeq: 8 OPTIONS",
        "Accept: application/sdp, application/pkcs7-mime,",
        "        multipart/mixed, multipart/signed,",
        "        message/sip, message/sipfrag",
        "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw",
        "l: 0",
    )
    parsed = parse_message(data)
    assert isinstance(parsed, SipRequest)
    uri = SipUri.parse(parsed.uri)
    assert (uri.user, uri.host, uri.params) == ("user;par=u%40example.net", "example.com", [])
    assert parsed.headers.get("Accept") == (
        "application/sdp, application/pkcs7-mime, multipart/mixed, multipart/signed, "
        "message/sip, message/sipfrag"
    )


def test_transports_varied_and_unknown_transport_types() -> None:
    data = message(
        "OPTIONS sip:user@example.com SIP/2.0",
        "To: sip:user@example.com",
        "From: <sip:caller@example.com>;tag=323",
        "Max-Forwards: 70",
        "Call-ID:  transports.kijh4akdnaqjkwendsasfdj",
        "Accept: application/sdp",
        "CSeq: 60 OPTIONS",
        "Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw",
        "Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf",
        "Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj",
        "Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en",
        "Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee",
        "l: 0",
    )
    vias = [Via.parse(value) for value in parse_message(data).vias]
    assert [(via.transport, via.host) for via in vias] == [
        ("UDP", "t1.example.com"),
        ("SCTP", "t2.example.com"),
        ("TLS", "t3.example.com"),
        ("UNKNOWN", "t4.example.com"),
        ("TCP", "t5.example.com"),
    ]


def test_mpart01_multipart_body_with_binary_part() -> None:
    binary = bytes(range(256)) + b"\r\n--not-the-boundary\r\n"
    body = (
        b"preamble is ignored\r\n"
        b"--7a9cbec02ceef655\r\n"
        b"Content-Type: text/plain\r\n"
        b"Content-Transfer-Encoding: binary\r\n"
        b"\r\n"
        b"Hello\r\n"
        b"--7a9cbec02ceef655\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: binary\r\n"
        b"\r\n" + binary + b"\r\n"
        b"--7a9cbec02ceef655--\r\n"
        b"epilogue is ignored too\r\n"
    )
    data = message(
        "MESSAGE sip:kumiko@example.org SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport",
        "Max-Forwards: 70",
        "Route: <sip:127.0.0.1:5080>",
        "Identity: r5mwreLuyDRYBi/0TiPwEsY3rEVsk/G2WxhgTV1PF7hHuLIK0YWVKZhKv9Mj8UeXqkMVbnVq37CD+813gvYj"
        "cBUaZngQmXc9WNZSDNGCzA+fWl9MEUHWIZo1CeJebdY/XlgKeTa0Olvq0rt70Q5jiSfbqMJmQFteeivUhkMWYUA=",
        "Contact: <sip:fluffy@127.0.0.1:5070>",
        "To: <sip:kumiko@example.org>",
        "From: <sip:fluffy@example.com>;tag=2fb0dcc9",
        "Call-ID: 3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..",
        "CSeq: 1 MESSAGE",
        "Content-Transfer-Encoding: binary",
        "Content-Type: multipart/mixed;boundary=7a9cbec02ceef655",
        "Date: Sat, 15 Oct 2005 04:44:56 GMT",
        "User-Agent: Torture test generator",
        f"Content-Length: {len(body)}",
        body=body,
    )
    parsed = parse_message(data)
    assert parsed.body == body
    assert parsed.content_type == "multipart/mixed"
    parts = parse_multipart(parsed.body, parsed.headers.get("Content-Type") or "")
    assert [part.content_type for part in parts] == ["text/plain", "application/octet-stream"]
    assert [part.body for part in parts] == [b"Hello", binary]
    assert parts[1].headers.get("Content-Transfer-Encoding") == "binary"


def test_unreason_unusual_reason_phrase() -> None:
    reason = "= 2**3 * 5**2 но сто девяносто девять - простое"
    data = message(
        f"SIP/2.0 200 {reason}",
        "Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923",
        "Call-ID: unreason.1234ksdfak3j2erwedfsASdf",
        "CSeq: 35 INVITE",
        "From: sip:user@example.com;tag=11141343",
        "To: sip:user@example.edu;tag=2229",
        "Content-Type: application/sdp",
        f"Content-Length: {len(SDP)}",
        body=SDP,
    )
    parsed = parse_message(data)
    assert isinstance(parsed, SipResponse)
    assert (parsed.status, parsed.reason, parsed.body) == (200, reason, SDP)
    assert parsed.to_bytes() == data


def test_noreason_empty_reason_phrase() -> None:
    data = message(
        "SIP/2.0 100 ",
        "Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe",
        "Call-ID: noreason.asndj203insdf99223ndf",
        "CSeq: 35 INVITE",
        "From: <sip:user@example.com>;tag=39ansfi3",
        "To: <sip:user@example.edu>;tag=902jndnke3",
        "Content-Length: 0",
    )
    parsed = parse_message(data)
    assert isinstance(parsed, SipResponse)
    assert (parsed.status, parsed.reason) == (100, "")
    assert parsed.to_bytes() == data


@pytest.mark.parametrize(
    "ruri",
    [
        "tel:+1-201-555-0123;phone-context=example.com",
        "urn:service:sos",
        "nobodyKnowsThisScheme:totallyopaquecontent",
        "soap.beep://192.0.2.103:3002",
        "sips:user@example.com",
    ],
)
def test_unkscm_novelsc_other_schemes_in_the_request_uri(ruri: str) -> None:
    data = message(
        f"OPTIONS {ruri} SIP/2.0",
        "To: sip:user@example.com",
        "From: sip:caller@example.net;tag=384",
        "Max-Forwards: 3",
        "Call-ID: unkscm.nasdfasser0q239nwsdfasdkl34",
        "CSeq: 3923423 OPTIONS",
        "Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234",
        "Content-Length: 0",
    )
    parsed = parse_message(data)
    assert isinstance(parsed, SipRequest)
    assert parsed.uri == ruri


def test_unksm2_unknown_schemes_in_header_fields() -> None:
    data = message(
        "REGISTER sip:example.com SIP/2.0",
        "To: isbn:2983792873",
        "From: <http://www.example.com>;tag=3234233",
        "Call-ID: unksm2.daksdj@hyphenated-host.example.com",
        "CSeq: 234902 REGISTER",
        "Max-Forwards: 70",
        "Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKkdjuw",
        "Contact: <name:John_Smith>",
        "l: 0",
    )
    parsed = parse_message(data)
    assert NameAddr.parse(parsed.headers.get("To") or "").uri == "isbn:2983792873"
    assert NameAddr.parse(parsed.headers.get("From") or "").uri == "http://www.example.com"
    assert parsed.headers.get_all("Contact") == ["<name:John_Smith>"]


def test_zeromf_max_forwards_of_zero_and_zero_length_body() -> None:
    data = message(
        "OPTIONS sip:user@example.com SIP/2.0",
        "To: sip:user@example.com",
        "From: sip:caller@example.net;tag=3ghsd41",
        "Call-ID: zeromf.jfasdlfnm2o2l43r5u0asdfas",
        "CSeq: 39234321 OPTIONS",
        "Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw2349i",
        "Max-Forwards: 0",
        "Content-Length: 0",
    )
    parsed = parse_message(data)
    assert parsed.headers.get("Max-Forwards") == "0"
    assert parsed.body == b""


def test_regescrt_escaped_headers_allowed_in_a_bracketed_contact() -> None:
    data = message(
        "REGISTER sip:example.com SIP/2.0",
        "To: sip:user@example.com",
        "From: sip:user@example.com;tag=8",
        "Max-Forwards: 70",
        "Call-ID: regescrt.k345asrl3fdbv@192.0.2.1",
        "CSeq: 14398234 REGISTER",
        "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw",
        "M: <sip:user@example.com?Route=%3Csip:sip.example.com%3E>",
        "L:0",
    )
    contact = NameAddr.parse(parse_message(data).headers.get("Contact") or "")
    assert SipUri.parse(contact.uri).headers == "Route=%3Csip:sip.example.com%3E"


def test_unknown_method_with_body() -> None:
    body = b"Unknown method, known body.\r\n"
    data = message(
        "NEWMETHOD sip:user@example.com SIP/2.0",
        "To: sip:j.user@example.com",
        "From: sip:caller@example.net;tag=34525",
        "Max-Forwards: 6",
        "Call-ID: unknown-method.98asdh@192.0.2.1",
        "CSeq: 8 NEWMETHOD",
        "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw",
        "Content-Type: text/plain",
        f"Content-Length: {len(body)}",
        body=body,
    )
    parsed = parse_message(data)
    assert isinstance(parsed, SipRequest)
    assert (parsed.method, parsed.cseq, parsed.body) == ("NEWMETHOD", (8, "NEWMETHOD"), body)


def test_baddate_is_not_interpreted_by_the_parser() -> None:
    """RFC 4475 §3.1.2.12 lets an element that does not use Date ignore a bad one: it is kept."""
    data = message(
        "INVITE sip:user@example.com SIP/2.0",
        "To: sip:user@example.com",
        "From: sip:caller@example.net;tag=2234923",
        "Max-Forwards: 70",
        "Call-ID: baddate.239423mnsadf3j23lj42--sedfnm234",
        "CSeq: 1392934 INVITE",
        "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw",
        "Date: Fri, 01 Jan 2010 16:00:00 EST",
        "Contact: <sip:caller@host5.example.net>",
        "Content-Length: 0",
    )
    assert parse_message(data).headers.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"


# --- §3.1.2 invalid messages --------------------------------------------------------------

BASE = (
    "To: sip:j.user@example.com",
    "From: sip:caller@example.net;tag=134161461246",
    "Max-Forwards: 7",
    "Call-ID: torture.0ha0isndaksdjasdf3234nas",
    "Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw",
)


def invite(*extra: str, start: str = "INVITE sip:user@example.com SIP/2.0", cseq: str = "8 INVITE") -> bytes:
    return message(start, *BASE, f"CSeq: {cseq}", *extra, "Content-Length: 0")


def replace_base(old: str, new: str, **kwargs: str) -> bytes:
    data = invite(**kwargs)
    assert old.encode() in data
    return data.replace(old.encode(), new.encode(), 1)


INVALID = [
    pytest.param(
        replace_base("Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw", "Via: SIP/2.0/UDP 192.0.2.15;;,;,,"),
        400,
        "invalid Via header: empty parameter",
        id="badinv01-extraneous-separators-in-via",
    ),
    pytest.param(
        invite('Contact: "Joe" <sip:joe@example.org>;;;;'),
        400,
        "invalid Contact header: empty parameter",
        id="badinv01-extraneous-separators-in-contact",
    ),
    pytest.param(
        replace_base("Content-Length: 0", "Content-Length: 9999") + SDP,
        400,
        f"Content-Length 9999 is larger than the {len(SDP)} bytes of body received",
        id="clerr-content-length-larger-than-message",
    ),
    pytest.param(
        replace_base("Content-Length: 0", "Content-Length: -999"),
        400,
        "malformed Content-Length '-999'",
        id="ncl-negative-content-length",
    ),
    pytest.param(
        invite(cseq="36893488147419103232 INVITE"),
        400,
        "malformed CSeq '36893488147419103232 INVITE'",
        id="scalar02-huge-cseq",
    ),
    pytest.param(
        invite(cseq="4294967296 INVITE"),
        400,
        "malformed CSeq '4294967296 INVITE'",
        id="scalar02-cseq-beyond-2**31",
    ),
    pytest.param(
        replace_base("Max-Forwards: 7", "Max-Forwards: 300"),
        400,
        "malformed Max-Forwards '300'",
        id="scalar02-huge-max-forwards",
    ),
    pytest.param(
        replace_base("To: sip:j.user@example.com", 'To: "Mr. J. User <sip:j.user@example.com>'),
        400,
        "invalid To header: unterminated quoted string in '\"Mr. J. User <sip:j.user@example.com>'",
        id="quotbal-unterminated-quoted-display-name",
    ),
    pytest.param(
        invite(start="INVITE <sip:user@example.com> SIP/2.0"),
        400,
        "malformed Request-URI '<sip:user@example.com>'",
        id="ltgtruri-brackets-around-request-uri",
    ),
    pytest.param(
        invite(start="INVITE sip:user@example.com; lr SIP/2.0"),
        400,
        "malformed request line 'INVITE sip:user@example.com; lr SIP/2.0'",
        id="lwsruri-white-space-in-request-uri",
    ),
    pytest.param(
        invite(start="INVITE  sip:user@example.com  SIP/2.0"),
        400,
        "malformed request line 'INVITE  sip:user@example.com  SIP/2.0'",
        id="lwsstart-several-spaces-between-elements",
    ),
    pytest.param(
        invite(start="INVITE sip:user@example.com SIP/2.0 "),
        400,
        "malformed request line 'INVITE sip:user@example.com SIP/2.0 '",
        id="trws-trailing-space-on-request-line",
    ),
    pytest.param(
        invite(start="INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0"),
        400,
        "Request-URI 'sip:user@example.com?Route=%3Csip:example.com%3E' carries URI headers",
        id="escruri-escaped-headers-in-request-uri",
    ),
    pytest.param(
        invite("Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E"),
        400,
        "invalid Contact header: URI with ',' or '?' must be enclosed in <>: "
        "'sip:user@example.com?Route=%3Csip:sip.example.com%3E'",
        id="regbadct-unbracketed-contact-with-headers",
    ),
    pytest.param(
        replace_base("To: sip:j.user@example.com", 'To: "Watson, Thomas" < sip:t.watson@example.org >'),
        400,
        "invalid To header: malformed URI ' sip:t.watson@example.org ' in address",
        id="badaspec-spaces-inside-brackets",
    ),
    pytest.param(
        replace_base(
            "From: sip:caller@example.net;tag=134161461246",
            "From: Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
        ),
        400,
        "invalid From header: malformed display name 'Bell, Alexander'",
        id="baddn-non-token-characters-in-display-name",
    ),
    pytest.param(
        invite(start="INVITE sip:user@example.com SIP/7.0"),
        505,
        "SIP version 7.0 is not supported",
        id="badvers-unknown-protocol-version",
    ),
    pytest.param(
        invite(start="OPTIONS sip:user@example.com SIP/2.0"),
        400,
        "CSeq method INVITE does not match request method OPTIONS",
        id="mismatch01-start-line-and-cseq-method",
    ),
    pytest.param(
        invite(start="NEWMETHOD sip:user@example.com SIP/2.0"),
        400,
        "CSeq method INVITE does not match request method NEWMETHOD",
        id="mismatch02-unknown-method-and-cseq-method",
    ),
    pytest.param(
        invite("Content-Length: 0"),
        400,
        "header Content-Length appears more than once",
        id="mcl01-multiple-content-length",
    ),
    pytest.param(
        invite("From: sip:caller2@example.net;tag=2", "Call-ID: second"),
        400,
        "header From appears more than once",
        id="multi01-multiple-values-in-single-value-fields",
    ),
    pytest.param(
        message(
            "INVITE sip:user@example.com SIP/2.0",
            "CSeq: 193942 INVITE",
            "Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf",
            "Content-Length: 0",
        ),
        400,
        "missing mandatory header From",
        id="insuf-missing-mandatory-headers",
    ),
    pytest.param(
        replace_base(
            "Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw",
            "Via: SIP/2.0/UDP 192.0.2.15:99999;branch=z9hG4bK1",
        ),
        400,
        "invalid Via header: malformed port '99999'",
        id="bad-via-port",
    ),
    pytest.param(
        replace_base(
            "Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw", "Via: SIP/3.0/UDP 192.0.2.15;branch=z9hG4bK1"
        ),
        400,
        "invalid Via header: malformed Via 'SIP/3.0/UDP 192.0.2.15;branch=z9hG4bK1'",
        id="bad-via-version",
    ),
    pytest.param(
        replace_base(
            "Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw", "Via: SIP/2.0/UDP bad_host!;branch=z9hG4bK1"
        ),
        400,
        "invalid Via header: malformed host 'bad_host!'",
        id="bad-via-host",
    ),
    pytest.param(
        replace_base(
            "Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw", "Via: SIP/2.0/UDP 192.0.2.15;branch=a b"
        ),
        400,
        "invalid Via header: malformed value of parameter 'branch': 'a b'",
        id="bad-via-parameter-value",
    ),
    pytest.param(
        invite("Record-Route: <sip:p1.example.com;lr"),
        400,
        "invalid Record-Route header: unterminated '<' in '<sip:p1.example.com;lr'",
        id="unterminated-bracket-in-record-route",
    ),
    pytest.param(
        invite("Route: <sip:p1.example.com;lr> junk"),
        400,
        "invalid Route header: parameters must start with ';': 'junk'",
        id="junk-after-route",
    ),
    pytest.param(
        invite(start="INVITE sip:user@exa mple.com SIP/2.0"),
        400,
        "malformed request line 'INVITE sip:user@exa mple.com SIP/2.0'",
        id="space-in-request-uri-host",
    ),
    pytest.param(
        invite(start="INVITE sip:user@[2001:db8::1 SIP/2.0"),
        400,
        "malformed Request-URI: unterminated IPv6 reference in 'sip:user@[2001:db8::1'",
        id="unterminated-ipv6-reference-in-request-uri",
    ),
    pytest.param(
        invite(start="INVITE sip:user@host_name.example.com SIP/2.0"),
        400,
        "malformed Request-URI: malformed host 'host_name.example.com'",
        id="underscore-in-request-uri-host",
    ),
]


@pytest.mark.parametrize(("data", "status", "reason"), INVALID)
def test_invalid_request_is_refused(data: bytes, status: int, reason: str) -> None:
    error = refused(data)
    assert (error.status, error.reason) == (status, reason)
    assert error.is_request


def test_invalid_request_with_its_addressing_headers_gets_an_error_response() -> None:
    error = refused(invite(start="INVITE sip:user@example.com SIP/7.0"))
    response = error_response(error, "is.example.com")
    assert response is not None
    assert response.status == 505
    assert response.call_id == "torture.0ha0isndaksdjasdf3234nas"
    assert response.headers.get("Warning") == '399 is.example.com "SIP version 7.0 is not supported"'


@pytest.mark.parametrize(
    ("start", "status", "reason"),
    [
        (
            "SIP/2.0 4294967301 better not break the receiver",
            400,
            "malformed status line 'SIP/2.0 4294967301 better not break the receiver'",
        ),
        ("SIP/2.0 503 Service Unavailable", 400, "malformed CSeq '36893488147419103232 INVITE'"),
    ],
    ids=["bigcode-overlarge-response-code", "scalarlg-response-with-huge-cseq"],
)
def test_invalid_response_is_refused(start: str, status: int, reason: str) -> None:
    data = message(
        start,
        "Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe",
        "Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3",
        "CSeq: 36893488147419103232 INVITE",
        "From: <sip:user@example.com>;tag=39ansfi3",
        "To: <sip:user@example.edu>;tag=902jndnke3",
        "Retry-After: 949302838503028349304023988",
        'Warning: 1812 overture "In Progress"',
        "Content-Length: 0",
    )
    error = refused(data)
    assert (error.status, error.reason) == (status, reason)
    assert not error.is_request
    assert error_response(error, "agent") is None
