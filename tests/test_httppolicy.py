"""The HTTP proxy's sans-IO decisions (border/httppolicy.py; TS 33.180 11.1.1, WA-IC-06/10/11).

Every reason code of the exit, entry and client face without a socket; properties of the header
filter and of the path check with hypothesis.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import unquote

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from mcinterconnect.border.agreement import PartnerAgreement
from mcinterconnect.border.httppolicy import (
    ASSERTED_IDENTITY,
    REASONS,
    Headers,
    HttpBorderPolicy,
    Refusal,
    Relay,
    ResponsePlan,
    client_identity,
    filter_headers,
    longest_route,
    rewrite_location,
    rule_allows,
    unsafe_target,
)
from mcinterconnect.border.peers import PartnerPeer, PartnerPeers
from mcinterconnect.crypto.kms import Kms
from mcinterconnect.crypto.uid import ntp_seconds
from mcinterconnect.deploy.pki import create_ca, issue_certificate, write_pem
from mcinterconnect.protect.ear import (
    RequestPayload,
    RequestType,
    Role,
    new_payload,
    sign_ear_header,
)
from mcinterconnect.sip.transport import Address

GROUPS = "/org.openmobilealliance.groups/groups/"
GMS_A = "sip:gms@a.mc.example"
GMS_B = "sip:gms@b.mc.example"
GMS_ROUTE = Address.parse("tcp://127.0.20.1:7080")
OTHER_ROUTE = Address.parse("tcp://127.0.20.2:7081")


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[x509.Certificate, object, Path]]:
    directory = tmp_path_factory.mktemp("ca")
    result = {}
    for name in ("a", "b", "c"):
        cert, key = create_ca(f"CA {name}", days=2)
        path = directory / f"ca-{name}.crt"
        write_pem(path, cert)
        result[name] = (cert, key, path)
    return result


def leaf(
    cas: dict[str, tuple[x509.Certificate, object, Path]],
    system: str,
    dns: list[str],
    uris: list[str] | None = None,
) -> x509.Certificate:
    cert, key, _ = cas[system]
    issued, _ = issue_certificate(cert, key, dns, uris=uris, common_name="leaf", days=1)  # type: ignore[arg-type]
    return issued


def partner(name: str, ca: Path, **extra: object) -> PartnerAgreement:
    return PartnerAgreement(
        name=name,
        domains=[f"{name}.mc.example"],
        is_proxy_host=f"isp.{name}.mc.example",
        is_proxy_address="tls://127.0.0.1:5061",
        trust_anchors=[ca],
        http_proxy_host=f"hp.{name}.mc.example",
        http_proxy_address=f"127.0.{ord(name)}.1:8443",
        **extra,  # type: ignore[arg-type]
    )


def policy_of(cas: dict[str, tuple[x509.Certificate, object, Path]], **extra: object) -> HttpBorderPolicy:
    """B's policy: partners A (HTTP proxy) and C (no HTTP proxy address)."""
    partner_a = partner("a", cas["a"][2], **extra)
    partner_c = PartnerAgreement(
        name="c",
        domains=["c.mc.example"],
        is_proxy_host="isp.c.mc.example",
        is_proxy_address="tls://127.0.0.1:5062",
        trust_anchors=[cas["c"][2]],
    )
    return HttpBorderPolicy(
        own_domains=["b.mc.example"],
        partners=[partner_a, partner_c],
        routes={GROUPS: GMS_ROUTE, "/org.openmobilealliance.groups/": OTHER_ROUTE},
        anchors={"a": [cas["a"][0]], "c": [cas["c"][0]]},
        markers=["127.0.20.1:7080", "gms.b.internal"],
        own_psis=[GMS_B],
    )


def reason(decision: object) -> str:
    assert isinstance(decision, Refusal), decision
    return decision.reason


# --- path checks ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "http://b.mc.example/x",
        "*",
        "/a/../b",
        "/a/./b",
        "/a/..",
        "/a//b",
        "//b.mc.example/x",
        "/a/%2e%2e/b",
        "/a/%2E./b",
        "/a%2fb",
        "/a%5cb",
        "/a%252e%252e/b",
        "/a%00",
        "/a%zz",
        "/a\\b",
        "/a b",
        "/a#b",
        "/é",
        "/a?x=%zz",
    ],
)
def test_unsafe_targets(target: str) -> None:
    assert unsafe_target(target) is not None


@pytest.mark.parametrize(
    "target", [GROUPS + "sip%3Afire%40b.mc.example", "/a/b?x=..&y=%2F", "/", "/a.b/c..d/.e"]
)
def test_safe_targets(target: str) -> None:
    assert unsafe_target(target) is None


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="/.%2eEfF5c\\ab?#0", max_size=24).map(lambda text: "/" + text))
def test_accepted_paths_cannot_traverse(target: str) -> None:
    """Whatever passes decodes (once, or twice) to a path without dot segments, '//' or '\\'."""
    if unsafe_target(target) is not None:
        return
    path = target.split("?", 1)[0]
    for decoded in (path, unquote(path), unquote(unquote(path))):
        assert "\\" not in decoded
        assert "//" not in decoded
        assert all(segment not in (".", "..") for segment in decoded.split("/"))


def test_rules_and_routes() -> None:
    rules = [("GET", GROUPS)]
    assert rule_allows("GET", GROUPS + "x", rules)
    assert not rule_allows("PUT", GROUPS + "x", rules)
    assert not rule_allows("GET", "/org.openmobilealliance.groups/groupsX", rules)
    routes = {GROUPS: GMS_ROUTE, "/org.openmobilealliance.groups/": OTHER_ROUTE}
    assert longest_route(GROUPS + "x", routes) == (GROUPS, GMS_ROUTE)
    assert longest_route("/org.openmobilealliance.groups/gmk/x", routes) == (
        "/org.openmobilealliance.groups/",
        OTHER_ROUTE,
    )
    assert longest_route("/org.openmobilealliance.groups", routes) == (
        "/org.openmobilealliance.groups/",
        OTHER_ROUTE,
    )
    assert longest_route("/other", routes) is None


# --- header filtering ----------------------------------------------------------------------------

NEVER_CROSSING = {
    "via",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "server",
    "x-real-ip",
    "proxy-authorization",
    "proxy-connection",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "cookie",
    "set-cookie",
    "authorization",
    "x-powered-by",
    "user-agent",
    "host",
    "content-length",
}

header_names = st.sampled_from(
    [*sorted(NEVER_CROSSING), "Accept", "If-None-Match", "Content-Type", "X-Custom", "ETag", "X-Hop"]
).flatmap(lambda name: st.sampled_from([name, name.upper(), name.title()]))
header_values = st.sampled_from(
    ["1", "close, X-Hop", "127.0.20.1:7080", "gms.B.internal/x", "text/xml", "x-custom"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(header_names, header_values), max_size=12))
def test_filter_headers_crossing(headers: Headers) -> None:
    kept = filter_headers(headers, crossing=True, markers=["127.0.20.1:7080", "gms.b.internal"])
    connection_named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == "connection"
        for token in value.split(",")
    }
    for name, value in kept:
        assert name.lower() not in NEVER_CROSSING
        assert name.lower() not in connection_named
        assert "127.0.20.1:7080" not in value and "gms.b.internal" not in value.lower()
    # Everything else is kept, in order.
    expected = [
        (name, value)
        for name, value in headers
        if name.lower() not in NEVER_CROSSING
        and name.lower() not in connection_named
        and "127.0.20.1:7080" not in value
        and "gms.b.internal" not in value.lower()
    ]
    assert kept == expected


def test_filter_headers_inside_keeps_credentials() -> None:
    headers = [("Cookie", "a=1"), ("Authorization", "Bearer t"), ("Connection", "close"), ("Via", "x")]
    assert filter_headers(headers, crossing=False) == [
        ("Cookie", "a=1"),
        ("Authorization", "Bearer t"),
        ("Via", "x"),
    ]


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("http://127.0.20.1:7080/org/x?y=1", "/org/x?y=1"),
        ("https://gms.internal/", "/"),
        ("//gms.internal/a", "/a"),
        ("/a/b", "/a/b"),
        ("b/c", "b/c"),
        ("http://gms.internal/../etc", None),
    ],
)
def test_rewrite_location(location: str, expected: str | None) -> None:
    assert rewrite_location(location) == expected


# --- client identity -----------------------------------------------------------------------------


def test_client_identity(cas: dict[str, tuple[x509.Certificate, object, Path]]) -> None:
    alice = leaf(cas, "a", [], ["sip:alice@a.mc.example"])
    assert client_identity(alice, ["a.mc.example"]) == "sip:alice@a.mc.example"
    assert reason(client_identity(alice, ["b.mc.example"])) == "identity-not-local"
    assert reason(client_identity(None, ["a.mc.example"])) == "identity-missing"
    assert (
        reason(client_identity(leaf(cas, "a", ["hp.a.mc.example"]), ["a.mc.example"])) == "identity-missing"
    )
    two = leaf(cas, "a", [], ["sip:alice@a.mc.example", "sip:bob@a.mc.example"])
    assert reason(client_identity(two, ["a.mc.example"])) == "identity-ambiguous"


# --- peers ---------------------------------------------------------------------------------------


def test_identify_peer(cas: dict[str, tuple[x509.Certificate, object, Path]]) -> None:
    policy = policy_of(cas)
    assert policy.identify_peer(leaf(cas, "a", ["hp.a.mc.example"]), "127.0.0.1") == "a"
    assert policy.identify_peer(leaf(cas, "a", ["other.a.mc.example"]), "127.0.0.1") is None
    # C's CA cannot vouch for A's name; C has no HTTP proxy at all.
    assert policy.identify_peer(leaf(cas, "c", ["hp.a.mc.example"]), "127.0.0.1") is None
    assert policy.identify_peer(leaf(cas, "c", ["hp.c.mc.example"]), "127.0.0.1") is None
    assert policy.identify_peer(leaf(cas, "b", ["hp.a.mc.example"]), "127.0.0.1") is None
    assert policy.identify_peer(None, "127.0.0.1") is None


def test_partner_peers_cache_the_verdict_per_certificate_and_address(
    cas: dict[str, tuple[x509.Certificate, object, Path]],
) -> None:
    """The cache shared by the IS proxy and the HTTP proxy (border/peers.py): a verdict cached
    for an allowed source address is not reused for another address."""
    peers = PartnerPeers(
        [PartnerPeer("a", "hp.a.mc.example", (cas["a"][0],), frozenset({"127.0.0.1"}))], cache_size=2
    )
    certificate = leaf(cas, "a", ["hp.a.mc.example"])
    for _ in range(2):  # the second round answers from the cache
        assert peers.identify(certificate, "127.0.0.1") == "a"
        assert peers.identify(certificate, "127.0.0.9") is None
    other = leaf(cas, "a", ["other.a.mc.example"])
    assert peers.identify(other, "127.0.0.1") is None  # a third entry: the bounded cache starts over
    assert peers.identify(certificate, "127.0.0.1") == "a"
    assert peers.identify(None, "127.0.0.1") is None


# --- exit ----------------------------------------------------------------------------------------


def exit_headers(**extra: str) -> Headers:
    headers = [("Host", "a.mc.example:443"), (ASSERTED_IDENTITY, "sip:gms@b.mc.example")]
    return headers + [(name.replace("_", "-"), value) for name, value in extra.items()]


def test_outbound(cas: dict[str, tuple[x509.Certificate, object, Path]]) -> None:
    policy = policy_of(cas)
    relay = policy.outbound(
        "GET", GROUPS + "g?x=1", exit_headers(Via="1.1 gms.b.internal", X_Forwarded_For="1.2.3.4")
    )
    assert isinstance(relay, Relay)
    assert relay.destination == Address.parse("tls://127.0.97.1:8443")
    assert relay.server_hostname == "hp.a.mc.example"
    assert relay.partner == "a"
    assert relay.headers == [(ASSERTED_IDENTITY, GMS_B), ("Host", "a.mc.example")]
    cases = [
        (("GET", GROUPS + "g", [(ASSERTED_IDENTITY, GMS_B)]), "bad-request"),
        (("GET", "http://a.mc.example/x", exit_headers()), "bad-request"),
        (("GET", GROUPS, [("Host", "z.mc.example"), (ASSERTED_IDENTITY, GMS_B)]), "no-agreement"),
        (("GET", GROUPS, [("Host", "b.mc.example"), (ASSERTED_IDENTITY, GMS_B)]), "no-agreement"),
        (("GET", GROUPS, [("Host", "c.mc.example"), (ASSERTED_IDENTITY, GMS_B)]), "partner-unreachable"),
        (("DELETE", GROUPS + "g", exit_headers()), "not-allowed"),
        (("GET", GROUPS + "../x", exit_headers()), "not-allowed"),
        (("TRACE", GROUPS, exit_headers()), "method-not-allowed"),
        (("GET", GROUPS, [("Host", "a.mc.example")]), "source-not-own"),
        (
            ("GET", GROUPS, [("Host", "a.mc.example"), (ASSERTED_IDENTITY, "sip:x@a.mc.example")]),
            "source-not-own",
        ),
        (("GET", GROUPS, [*exit_headers(), (ASSERTED_IDENTITY, GMS_B)]), "source-not-own"),
    ]
    for (method, target, headers), expected in cases:
        assert reason(policy.outbound(method, target, headers)) == expected, (method, target)
    explicit = policy_of(cas, authentication={"outbound": "explicit"})
    assert reason(explicit.outbound("GET", GROUPS, exit_headers())) == "ear-missing"
    assert isinstance(explicit.outbound("GET", GROUPS, exit_headers(MC_EAR="x")), Relay)
    assert reason(explicit.outbound("GET", GROUPS, exit_headers(MC_EAR="x", mc_ear="y"))) == "ear-malformed"


# --- entry ---------------------------------------------------------------------------------------


def test_inbound_implicit(cas: dict[str, tuple[x509.Certificate, object, Path]]) -> None:
    policy = policy_of(cas)
    relay = policy.inbound(
        "a", "GET", GROUPS + "g", [(ASSERTED_IDENTITY, GMS_A), ("MC-EAR", "x"), ("Cookie", "a")]
    )
    assert isinstance(relay, Relay)
    assert relay.destination == GMS_ROUTE
    assert relay.headers == [(ASSERTED_IDENTITY, GMS_A)]
    assert relay.ear is None
    ident = [(ASSERTED_IDENTITY, GMS_A)]
    cases = [
        (("zz", "GET", GROUPS, ident), "peer-unknown"),
        (("a", "PUT", GROUPS + "g", ident), "not-allowed"),
        (("a", "GET", "/org.openmobilealliance.groups/other", ident), "not-allowed"),
        (("a", "GET", GROUPS + "%2e%2e/x", ident), "not-allowed"),
        (("a", "GET", GROUPS, []), "source-missing"),
        (("a", "GET", GROUPS, [(ASSERTED_IDENTITY, GMS_B)]), "source-not-partner"),
        (("a", "GET", GROUPS, [(ASSERTED_IDENTITY, "sip:gms@c.mc.example")]), "source-not-partner"),
        (("a", "GET", GROUPS, [(ASSERTED_IDENTITY, "nonsense")]), "source-not-partner"),
        (("a", "GET", GROUPS, [*ident, *ident]), "source-not-partner"),
    ]
    for args, expected in cases:
        assert reason(policy.inbound(*args)) == expected, args
    no_route = policy_of(cas, http_allowed=["GET /elsewhere/"])
    assert reason(no_route.inbound("a", "GET", "/elsewhere/x", ident)) == "no-route"


def test_inbound_response(cas: dict[str, tuple[x509.Certificate, object, Path]]) -> None:
    policy = policy_of(cas)
    assert reason(policy.inbound_response(503, [])) == "upstream-error"
    plan = policy.inbound_response(
        302,
        [
            ("Location", "http://127.0.20.1:7080/a?b=1"),
            ("Server", "gms/1"),
            ("Set-Cookie", "s=1"),
            ("X-Powered-By", "x"),
            ("Link", "<http://gms.b.internal/x>"),
            ("ETag", '"1"'),
        ],
    )
    assert plan == ResponsePlan(302, [("Location", "/a?b=1"), ("ETag", '"1"')])


def test_client_request(cas: dict[str, tuple[x509.Certificate, object, Path]]) -> None:
    policy = policy_of(cas)
    relay = policy.client_request(
        "PUT",
        GROUPS + "g",
        [
            ("Host", "a.mc.example"),
            (ASSERTED_IDENTITY, "sip:boss@b.mc.example"),
            ("MC-EAR", "x"),
            ("Cookie", "c"),
        ],
        "sip:alice@b.mc.example",
    )
    assert isinstance(relay, Relay)
    assert relay.destination == GMS_ROUTE and relay.partner is None and relay.server_hostname is None
    assert relay.headers == [("Cookie", "c"), (ASSERTED_IDENTITY, "sip:alice@b.mc.example")]
    assert reason(policy.client_request("GET", "/nowhere", [], "sip:a@b.mc.example")) == "no-route"
    assert reason(policy.client_request("GET", GROUPS + "../x", [], "sip:a@b.mc.example")) == "path-invalid"
    assert reason(policy.client_request("CONNECT", GROUPS, [], "sip:a@b.mc.example")) == "method-not-allowed"


# --- explicit inbound ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kms_a() -> Kms:
    return Kms.create("kms.a.mc.example")


def ear(
    kms: Kms,
    *,
    source_role: int = Role.GMS,
    target: str = GMS_B,
    request: RequestType | None = RequestType.GROUP,
    signer: str = GMS_A,
) -> str:
    now = time.time()
    payload = new_payload(
        source_role=source_role,
        source_id=GMS_A,
        target_role=Role.GMS,
        target_id=target,
        request=None if request is None else RequestPayload(request),
        now=now,
    )
    certificate = kms.certificate
    [keys] = kms.provision(signer, [certificate.key_period.number_at(ntp_seconds(now))])
    return sign_ear_header(payload, keys, certificate)


def test_inbound_explicit(
    cas: dict[str, tuple[x509.Certificate, object, Path]], kms_a: Kms, tmp_path: Path
) -> None:
    kms_file = tmp_path / "kms.xml"
    kms_file.write_text("<x/>")
    policy = policy_of(cas, authentication={"inbound": "explicit"}, kms_certificate=kms_file)
    policy.partner_kms = {"a": kms_a.certificate}
    ident = (ASSERTED_IDENTITY, GMS_A)
    relay = policy.inbound("a", "GET", GROUPS + "g", [ident, ("MC-EAR", ear(kms_a))])
    assert isinstance(relay, Relay) and relay.ear is not None and relay.ear.ear_id is not None
    assert relay.headers == [ident]
    cases = [
        ([ident], "ear-missing"),
        ([ident, ("MC-EAR", "x"), ("MC-EAR", "y")], "ear-malformed"),
        ([ident, ("MC-EAR", ear(kms_a, target="sip:other@b.mc.example"))], "ear-target"),
        ([ident, ("MC-EAR", ear(kms_a, source_role=Role.CLIENT))], "ear-source"),
        ([ident, ("MC-EAR", ear(kms_a, request=None))], "ear-request-type"),
        ([ident, ("MC-EAR", ear(kms_a, signer="sip:mallory@a.mc.example"))], "ear-signature"),
        ([(ASSERTED_IDENTITY, "sip:other@a.mc.example"), ("MC-EAR", ear(kms_a))], "ear-source"),
    ]
    for headers, expected in cases:
        assert reason(policy.inbound("a", "GET", GROUPS, headers)) == expected, expected
    policy.partner_kms = {}
    assert reason(policy.inbound("a", "GET", GROUPS, [ident, ("MC-EAR", ear(kms_a))])) == "ear-signature"


def test_every_reason_is_documented() -> None:
    for code, (status, meaning) in REASONS.items():
        assert code and meaning
        assert status == 0 or 400 <= status < 600
