"""Unit tests of SIP URIs, name-addr values, Via values and parameters (RFC 3261 §19.1, §20, §25.1)."""

from __future__ import annotations

import pytest

from mcinterconnect.sip.parser import SipParseError
from mcinterconnect.sip.uri import (
    NameAddr,
    SipSyntaxError,
    SipUri,
    Via,
    drop_param,
    format_params,
    get_param,
    parse_params,
    set_param,
    tag_of,
)


def syntax_error(parse: object, text: str) -> str:
    with pytest.raises(SipSyntaxError) as caught:
        parse(text)  # type: ignore[operator]
    return caught.value.reason


# --- parameters ---------------------------------------------------------------------------


def test_parse_params_keeps_order_flags_and_quotes() -> None:
    assert parse_params(';lr;transport=tls;x="a;b, c";Q = 0.5') == [
        ("lr", None),
        ("transport", "tls"),
        ("x", '"a;b, c"'),
        ("Q", "0.5"),
    ]
    assert parse_params("") == []


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("lr", "parameters must start with ';': 'lr'"),
        (";", "empty parameter"),
        (";a;;b", "empty parameter"),
        (";a b=1", "malformed parameter name 'a b'"),
        (";=1", "malformed parameter name ''"),
        (";a=", "empty value for parameter 'a'"),
        (";a=b c", "malformed value of parameter 'a': 'b c'"),
        (";a=b,c", "malformed value of parameter 'a': 'b,c'"),
        (';a="b"c', "malformed value of parameter 'a': '\"b\"c'"),
        (";a=é", "malformed value of parameter 'a': 'é'"),
        (';a="open', "unterminated quoted string"),
    ],
)
def test_bad_params_are_refused(text: str, reason: str) -> None:
    assert syntax_error(parse_params, text) == reason


def test_param_helpers() -> None:
    params = parse_params(";lr;Transport=TLS")
    assert get_param(params, "LR") == ""
    assert get_param(params, "transport") == "TLS"
    assert get_param(params, "maddr") is None
    params = set_param(params, "transport", "tcp")
    assert params == [("lr", None), ("transport", "tcp")]
    assert drop_param(params, "LR") == [("transport", "tcp")]
    assert format_params([("lr", None), ("th", "abc")]) == ";lr;th=abc"


def test_syntax_error_is_a_parse_error_answered_with_400() -> None:
    with pytest.raises(SipParseError) as caught:
        SipUri.parse("mailto:a@b")
    assert caught.value.status == 400


# --- SIP URIs -----------------------------------------------------------------------------


def test_sip_uri_parts() -> None:
    uri = SipUri.parse("sips:alice:secret@A.MC.example:5061;transport=tls;lr?subject=x&priority=urgent")
    assert uri.scheme == "sips"
    assert (uri.user, uri.password) == ("alice", "secret")
    assert (uri.host, uri.port) == ("A.MC.example", 5061)
    assert uri.params == [("transport", "tls"), ("lr", None)]
    assert uri.param("TRANSPORT") == "tls"
    assert uri.headers == "subject=x&priority=urgent"
    assert uri.address_of_record == "sips:alice@a.mc.example"
    assert str(uri) == "sips:alice:secret@A.MC.example:5061;transport=tls;lr?subject=x&priority=urgent"


def test_sip_uri_without_user_and_with_ipv6_host() -> None:
    uri = SipUri.parse("SIP:[2001:db8::10]:5070;maddr=[2001:db8::1]")
    assert (uri.scheme, uri.user, uri.host, uri.port) == ("sip", None, "[2001:db8::10]", 5070)
    assert uri.params == [("maddr", "[2001:db8::1]")]
    assert uri.address_of_record == "sip:[2001:db8::10]"
    assert str(uri) == "sip:[2001:db8::10]:5070;maddr=[2001:db8::1]"


def test_user_part_may_hold_semicolons_and_question_marks() -> None:
    uri = SipUri.parse("sip:+4912345;phone-context=a.mc.example?x@a.mc.example;user=phone")
    assert uri.user == "+4912345;phone-context=a.mc.example?x"
    assert uri.host == "a.mc.example"
    assert uri.params == [("user", "phone")]
    assert uri.headers == ""


def test_headers_after_the_host() -> None:
    uri = SipUri.parse("sip:bob@b.mc.example?Route=%3Csip:p.example%3E")
    assert (uri.user, uri.host, uri.headers) == ("bob", "b.mc.example", "Route=%3Csip:p.example%3E")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("tel:+123", "not a SIP URI: 'tel:+123'"),
        ("sip", "not a SIP URI: 'sip'"),
        ("sip:@host", "empty user part in 'sip:@host'"),
        ("sip:a b@host", "malformed user part in 'sip:a b@host'"),
        ("sip:a:p@ss@host", "malformed user part in 'sip:a:p@ss@host'"),
        ("sip:", "malformed host ''"),
        ("sip:user@", "malformed host ''"),
        ("sip:host_name", "malformed host 'host_name'"),
        ("sip:[::1", "unterminated IPv6 reference in 'sip:[::1'"),
        ("sip:[::1]x", "malformed host in 'sip:[::1]x'"),
        ("sip:host:0", "malformed port '0'"),
        ("sip:host:65536", "malformed port '65536'"),
        ("sip:host:http", "malformed port 'http'"),
        ("sip:host:٥٠٦٠", "malformed port '٥٠٦٠'"),
        ("sip:host;", "empty parameter"),
        ("sip:host;a=b c", "malformed value of parameter 'a': 'b c'"),
    ],
)
def test_bad_sip_uris_are_refused(text: str, reason: str) -> None:
    assert syntax_error(SipUri.parse, text) == reason


def test_largest_port() -> None:
    assert SipUri.parse("sip:h:65535").port == 65535


# --- name-addr ----------------------------------------------------------------------------


def test_name_addr_with_quoted_display_name() -> None:
    address = NameAddr.parse('  "Alice \\"A\\" <Admin>" <sip:alice@a.mc.example;transport=tls> ;tag=abc;x  ')
    assert address.display == '"Alice \\"A\\" <Admin>"'
    assert address.uri == "sip:alice@a.mc.example;transport=tls"
    assert address.params == [("tag", "abc"), ("x", None)]
    assert address.tag == "abc"
    assert address.bracketed
    assert address.sip_uri.params == [("transport", "tls")]
    assert str(address) == '"Alice \\"A\\" <Admin>" <sip:alice@a.mc.example;transport=tls>;tag=abc;x'


def test_name_addr_with_token_display_name() -> None:
    address = NameAddr.parse("MC Dispatcher 7<sip:d7@a.mc.example>")
    assert (address.display, address.uri, address.params) == ("MC Dispatcher 7", "sip:d7@a.mc.example", [])


def test_addr_spec_parameters_belong_to_the_header() -> None:
    address = NameAddr.parse("sip:bob@b.mc.example ; tag = 77")
    assert (address.uri, address.display, address.tag, address.bracketed) == (
        "sip:bob@b.mc.example",
        None,
        "77",
        False,
    )
    assert str(address) == "<sip:bob@b.mc.example>;tag=77"


def test_name_addr_with_other_schemes() -> None:
    assert NameAddr.parse("<tel:+4912345>").uri == "tel:+4912345"
    assert NameAddr.parse("urn:service:sos").uri == "urn:service:sos"
    with pytest.raises(SipSyntaxError) as caught:
        _ = NameAddr.parse("<tel:+4912345>").sip_uri
    assert caught.value.reason == "not a SIP URI: 'tel:+4912345'"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty address"),
        ("   ", "empty address"),
        ("<sip:a@b", "unterminated '<' in '<sip:a@b'"),
        ("<>", "empty URI in address"),
        ("< sip:a@b>", "malformed URI ' sip:a@b' in address"),
        ("<sip:a@b >", "malformed URI 'sip:a@b ' in address"),
        ("<a@b>", "malformed URI 'a@b' in address"),
        ('<sip:a"b@c>', "malformed URI 'sip:a\"b@c' in address"),
        ("Bell, Alexander <sip:a@b>", "malformed display name 'Bell, Alexander'"),
        ('"a" b <sip:a@b>', "malformed display name '\"a\" b'"),
        ('"unterminated <sip:a@b>', "unterminated quoted string in '\"unterminated <sip:a@b>'"),
        ("<sip:a@b> junk", "parameters must start with ';': 'junk'"),
        ("sip:a@b c", "malformed address 'sip:a@b c'"),
        ("alice", "malformed address 'alice'"),
        ("sip:a@b?x=1", "URI with ',' or '?' must be enclosed in <>: 'sip:a@b?x=1'"),
        ("sip:a,b@c", "URI with ',' or '?' must be enclosed in <>: 'sip:a,b@c'"),
    ],
)
def test_bad_name_addr_is_refused(text: str, reason: str) -> None:
    assert syntax_error(NameAddr.parse, text) == reason


def test_tag_of() -> None:
    assert tag_of("<sip:a@b>;tag=x1") == "x1"
    assert tag_of("<sip:a@b>") is None
    assert tag_of("<broken") is None
    assert tag_of(None) is None
    assert tag_of("") is None


# --- Via ----------------------------------------------------------------------------------


def test_via_parts() -> None:
    via = Via.parse("SIP/2.0/TLS is.a.mc.example:5061;branch=z9hG4bK74bf9;received=192.0.2.1;rport")
    assert (via.transport, via.host, via.port) == ("TLS", "is.a.mc.example", 5061)
    assert via.branch == "z9hG4bK74bf9"
    assert via.param("RPORT") == ""
    assert via.param("maddr") is None
    assert str(via) == "SIP/2.0/TLS is.a.mc.example:5061;branch=z9hG4bK74bf9;received=192.0.2.1;rport"


def test_via_with_white_space_lower_case_and_ipv6() -> None:
    via = Via.parse("  sip / 2.0 / udp   [2001:db8::9]:5070 ; branch = z9hG4bK1 ;received=[2001:db8::1]  ")
    assert (via.transport, via.host, via.port) == ("UDP", "[2001:db8::9]", 5070)
    assert via.params == [("branch", "z9hG4bK1"), ("received", "[2001:db8::1]")]
    assert str(via) == "SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bK1;received=[2001:db8::1]"


def test_via_without_parameters() -> None:
    via = Via.parse("SIP/2.0/TCP 192.0.2.7")
    assert (via.transport, via.host, via.port, via.params, via.branch) == ("TCP", "192.0.2.7", None, [], None)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "malformed Via ''"),
        ("SIP/2.0/UDP", "malformed Via 'SIP/2.0/UDP'"),
        ("SIP/3.0/UDP host", "malformed Via 'SIP/3.0/UDP host'"),
        ("SIP/2.0 host", "malformed Via 'SIP/2.0 host'"),
        ("SIP/2.0/UDP host:99999", "malformed port '99999'"),
        ("SIP/2.0/UDP host:٥٠٦٠", "malformed port '٥٠٦٠'"),
        ("SIP/2.0/UDP ho$t", "malformed host 'ho$t'"),
        ("SIP/2.0/UDP host junk", "parameters must start with ';': 'junk'"),
        ("SIP/2.0/UDP host;;branch=1", "empty parameter"),
        ("SIP/2.0/UDP host;branch=", "empty value for parameter 'branch'"),
    ],
)
def test_bad_via_is_refused(text: str, reason: str) -> None:
    assert syntax_error(Via.parse, text) == reason
