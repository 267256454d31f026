"""The IS proxy core (isproxy.py), sans-IO, configured by ``init`` + ``load_deployment``.

Two systems A and B as ``mcic init`` writes them (real CA, leaf certificates, sealing key files,
partner agreements), every port given so that nothing binds a socket.  Requests go in with an
``Arrival`` and come out as ``Forward``s; each decision leaves exactly one audit line.

Exit point: TS 24.379 6.8.2 (P-Asserted-Identity and Request-URI rewrite, 403 / "179 ...").
Entry point: WA-IC-07 (published PSIs, 404), WA-IC-11 (implicit authentication), BC-1 (TLS peer).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from mcinterconnect.border.audit import AuditLog
from mcinterconnect.border.isproxy import SIP3_LISTENER, Arrival, IsProxy
from mcinterconnect.border.sealing import Sealer
from mcinterconnect.border.topology import Side
from mcinterconnect.deploy.config import DeploymentConfig, SystemConfig, load_deployment
from mcinterconnect.deploy.init import PORT_KEYS, init_deployment
from mcinterconnect.deploy.pki import issue_certificate, load_certificate, load_private_key
from mcinterconnect.mcinfo import MCPTT_INFO_TYPE, McpttInfo
from mcinterconnect.sip.message import Headers, SipRequest, SipResponse, make_response
from mcinterconnect.sip.proxy import Forward
from mcinterconnect.sip.transport import Address, PeerInfo
from mcinterconnect.sip.uri import NameAddr, Via

HOST_A = "127.0.10.1"
HOST_B = "127.0.20.1"
BORDER = "127.0.0.1"
PORTS = {
    "a.sip_core.client_listen": 15060,
    "a.sip_core.server_listen": 15070,
    "a.mcx_server.listen": 15072,
    "a.is_proxy.internal_listen": 15080,
    "a.is_proxy.sip3_listen": 5061,
    "b.sip_core.client_listen": 25060,
    "b.sip_core.server_listen": 25070,
    "b.mcx_server.listen": 25072,
    "b.is_proxy.internal_listen": 25080,
    "b.is_proxy.sip3_listen": 5062,
}
assert set(PORTS) == set(PORT_KEYS)

#: Where each IS proxy's SIP-3 connection to the other comes from.
FROM_A = (BORDER, 41000)
FROM_B = (BORDER, 42000)
#: Where A's and B's MCX servers connect to their IS proxy from.
MCX_A = (HOST_A, 40123)
MCX_B = (HOST_B, 40456)

PSI_A = "sip:mcptt-server@a.mc.example"
PSI_B = "sip:mcptt-server@b.mc.example"
ISPROXY_A = "sip:isproxy@a.mc.example"
ISPROXY_B = "sip:isproxy@b.mc.example"


@dataclass(frozen=True)
class Deployment:
    directory: Path
    config: DeploymentConfig

    def system(self, name: str) -> SystemConfig:
        return self.config.system(name)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    directory = tmp_path_factory.mktemp("deployment")
    path = init_deployment(directory, host_a=HOST_A, host_b=HOST_B, border_host=BORDER, ports=PORTS)
    return Deployment(directory, load_deployment(path))


def build_proxy(system: SystemConfig) -> IsProxy:
    return IsProxy(
        system.is_proxy,
        own_domains=list(system.system.domains),
        agreements=list(system.partner),
        internal_markers=system.internal_markers(),
        sealer=Sealer.from_file(system.is_proxy.sealing_keys),
        audit=AuditLog(None, system=system.system.name, component="is-proxy"),
    )


@pytest.fixture
def proxy_a(deployment: Deployment) -> IsProxy:
    return build_proxy(deployment.system("A"))


@pytest.fixture
def proxy_b(deployment: Deployment) -> IsProxy:
    return build_proxy(deployment.system("B"))


# ------------------------------------------------------------------------------ messages


def request(
    method: str,
    uri: str,
    *,
    via: str,
    source: str,
    to: str | None = None,
    to_tag: str | None = None,
    info: McpttInfo | None = None,
    max_forwards: int = 69,
    call_id: str = "k2j3h4@127.0.10.1",
    cseq: int = 1,
) -> SipRequest:
    to_value = f"<{to or uri}>" + (f";tag={to_tag}" if to_tag else "")
    headers = Headers(
        [
            ("Via", via),
            ("Max-Forwards", str(max_forwards)),
            ("From", "<sip:alice@a.mc.example>;tag=alice1"),
            ("To", to_value),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} {method}"),
            ("P-Asserted-Identity", f"<{source}>"),
        ]
    )
    body = b""
    if info is not None:
        headers.add("Content-Type", MCPTT_INFO_TYPE)
        body = info.to_xml()
    return SipRequest(headers=headers, body=body, method=method, uri=uri)


def from_inside_a(
    method: str,
    uri: str,
    *,
    info: McpttInfo | None = None,
    max_forwards: int = 69,
) -> SipRequest:
    """A request of A's MCX server (via A's SIP core) for the IS proxy's inside face."""
    message = request(
        method,
        uri,
        via=f"SIP/2.0/TCP {HOST_A}:15072;branch=z9hG4bKmcx-{method.lower()};rport",
        source="sip:alice@a.mc.example",
        info=info,
        max_forwards=max_forwards,
    )
    message.headers.add("Via", f"SIP/2.0/TCP {HOST_A}:15070;branch=z9hG4bKcore-1;rport")
    message.headers.add("Contact", f"<sip:alice@{HOST_A}:15060;transport=tcp>")
    return message


def from_partner_a(
    method: str,
    uri: str,
    *,
    to: str | None = None,
    to_tag: str | None = None,
    info: McpttInfo | None = None,
    max_forwards: int = 69,
) -> SipRequest:
    """A request as A's exit point sends it to B: A's Via and A's asserted identity only."""
    return request(
        method,
        uri,
        via="SIP/2.0/TLS isproxy.a.mc.example:5061;branch=z9hG4bKsip3-1;rport",
        source=ISPROXY_A,
        to=to,
        to_tag=to_tag,
        info=info,
        max_forwards=max_forwards,
    )


ALICE_TO_BOB = McpttInfo(request_uri="sip:bob@b.mc.example", calling_user_id="sip:alice@a.mc.example")


def inside(remote: tuple[str, int] = MCX_A) -> Arrival:
    return Arrival(Side.INTERNAL, remote)


def from_a() -> Arrival:
    return Arrival(Side.EXTERNAL, FROM_A, "A")


def decide(proxy: IsProxy, message: SipRequest, arrival: Arrival) -> tuple[list[Forward], dict[str, object]]:
    """Handle one request; exactly one audit line must record the decision."""
    before = len(proxy.audit.recent)
    forwards = proxy.handle_request(message, arrival)
    lines = list(proxy.audit.recent)[before:]
    assert len(lines) == 1, lines
    return forwards, lines[0]


def refusal(forwards: list[Forward], status: int) -> SipResponse:
    assert len(forwards) == 1
    response = forwards[0].message
    assert isinstance(response, SipResponse)
    assert response.status == status
    return response


def warning_of(proxy_host: str, reason: str, detail: str) -> str:
    return (
        f'399 {proxy_host} "179 service not authorized with the interconnected system ({reason}: {detail})"'
    )


def leaked_internals(message: SipRequest | SipResponse, system: SystemConfig) -> list[str]:
    text = message.to_bytes().decode()
    return [marker for marker in system.internal_markers() if marker in text]


# ------------------------------------------------------------------------- exit point


def test_exit_point_rewrites_identity_and_target(proxy_a: IsProxy, deployment: Deployment) -> None:
    message = from_inside_a("MESSAGE", "sip:bob@b.mc.example", info=ALICE_TO_BOB)
    message.headers.add("P-Preferred-Identity", "<sip:alice@a.mc.example>")
    forwards, line = decide(proxy_a, message, inside())
    assert len(forwards) == 1
    forward = forwards[0]
    b_sip3 = deployment.system("B").is_proxy.sip3_listen
    assert (forward.destination, forward.server_hostname) == (b_sip3, "isproxy.b.mc.example")
    sent = forward.message
    assert isinstance(sent, SipRequest)
    # TS 24.379 6.8.2 step 3: the gateway's URI asserted, the partner's PSI as target.
    assert sent.headers.get_all("P-Asserted-Identity") == [f"<{ISPROXY_A}>"]
    assert "P-Preferred-Identity" not in sent.headers
    assert sent.uri == PSI_B
    assert sent.body == message.body  # the target identity still travels in mcptt-info
    assert sent.headers.get("Max-Forwards") == "68"
    [via] = sent.vias
    parsed = Via.parse(via)
    assert (parsed.transport, parsed.host, parsed.port) == ("TLS", "isproxy.a.mc.example", 5061)
    assert not leaked_internals(sent, deployment.system("A"))
    assert sent.call_id != message.call_id
    assert line["decision"] == "allow"
    assert line["reason"] == "allowed"
    assert (line["direction"], line["partner"], line["method"]) == ("outbound", "B", "MESSAGE")


def test_exit_point_keeps_request_uri_without_mcptt_target(proxy_a: IsProxy) -> None:
    message = from_inside_a("OPTIONS", "sip:bob@b.mc.example")
    forwards, line = decide(proxy_a, message, inside())
    sent = forwards[0].message
    assert isinstance(sent, SipRequest)
    assert sent.uri == "sip:bob@b.mc.example"
    assert sent.headers.get_all("P-Asserted-Identity") == [f"<{ISPROXY_A}>"]
    assert line["reason"] == "allowed"


def test_exit_point_refuses_unknown_domain(proxy_a: IsProxy) -> None:
    message = from_inside_a("MESSAGE", "sip:carol@c.mc.example", info=ALICE_TO_BOB)
    forwards, line = decide(proxy_a, message, inside())
    response = refusal(forwards, 403)
    assert response.headers.get("Warning") == (
        '399 isproxy.a.mc.example "179 service not authorized with the interconnected system '
        '(no-agreement: no interconnection agreement covers c.mc.example)"'
    )
    # The refusal goes back to the hop that sent the request, with its own Via stack intact.
    assert forwards[0].destination == Address("tcp", HOST_A, MCX_A[1])
    assert response.vias[1:] == message.vias[1:]
    assert response.call_id == message.call_id
    assert (line["decision"], line["reason"], line["direction"]) == ("refuse", "no-agreement", "outbound")
    assert line["status"] == 403


def test_exit_point_refuses_local_target(proxy_a: IsProxy) -> None:
    forwards, line = decide(proxy_a, from_inside_a("MESSAGE", "sip:bob@a.mc.example"), inside())
    response = refusal(forwards, 404)
    assert line["reason"] == "target-local"
    assert "target-local" in (response.headers.get("Warning") or "")


def test_register_refused_leaving(proxy_a: IsProxy) -> None:
    forwards, line = decide(proxy_a, from_inside_a("REGISTER", "sip:b.mc.example"), inside())
    response = refusal(forwards, 403)
    assert response.headers.get("Warning") == warning_of(
        "isproxy.a.mc.example", "register-refused", "REGISTER never leaves the system"
    )
    assert (line["reason"], line["direction"]) == ("register-refused", "outbound")


def test_register_refused_entering(proxy_b: IsProxy, deployment: Deployment) -> None:
    register = from_partner_a("REGISTER", "sip:b.mc.example", to="sip:alice@b.mc.example")
    forwards, line = decide(proxy_b, register, from_a())
    response = refusal(forwards, 403)
    assert response.headers.get("Warning") == warning_of(
        "isproxy.b.mc.example",
        "register-refused",
        "REGISTER is never accepted from a partner: clients register at home",
    )
    # Answered over SIP-3 to A's IS proxy (by name, with A's listener as fallback).
    forward = forwards[0]
    assert forward.server_hostname == "isproxy.a.mc.example"
    assert forward.fallback == deployment.system("A").is_proxy.sip3_listen
    assert forward.destination == Address("tls", *FROM_A)
    assert (line["reason"], line["direction"], line["partner"]) == ("register-refused", "inbound", "A")


@pytest.mark.parametrize("side", ["exit", "entry"])
def test_max_forwards_zero(proxy_a: IsProxy, proxy_b: IsProxy, side: str) -> None:
    if side == "exit":
        proxy, message = (
            proxy_a,
            from_inside_a("MESSAGE", "sip:bob@b.mc.example", info=ALICE_TO_BOB, max_forwards=0),
        )
        arrival = inside()
    else:
        proxy, message = proxy_b, from_partner_a("MESSAGE", PSI_B, info=ALICE_TO_BOB, max_forwards=0)
        arrival = from_a()
    forwards, line = decide(proxy, message, arrival)
    response = refusal(forwards, 483)
    assert response.reason == "Too Many Hops"
    assert (line["reason"], line["status"]) == ("too-many-hops", 483)
    # The refusal is addressed with the request's own Via stack, not a sealed one.
    assert [Via.parse(v).branch for v in response.vias] == [Via.parse(v).branch for v in message.vias]


# ------------------------------------------------------------------------ entry point


def test_entry_point_routes_published_psi(proxy_b: IsProxy, deployment: Deployment) -> None:
    forwards, line = decide(proxy_b, from_partner_a("MESSAGE", PSI_B, info=ALICE_TO_BOB), from_a())
    assert len(forwards) == 1
    forward = forwards[0]
    assert forward.destination == deployment.system("B").mcx_server.listen
    sent = forward.message
    assert isinstance(sent, SipRequest)
    assert sent.uri == PSI_B
    [via] = sent.vias
    assert Via.parse(via).host == HOST_B
    assert "isproxy.a.mc.example" not in sent.to_bytes().decode()  # A's Via is sealed too
    assert (line["decision"], line["reason"], line["direction"], line["partner"]) == (
        "allow",
        "allowed",
        "inbound",
        "A",
    )


def test_entry_point_unknown_psi(proxy_b: IsProxy) -> None:
    message = from_partner_a("MESSAGE", "sip:nobody@b.mc.example", info=ALICE_TO_BOB)
    forwards, line = decide(proxy_b, message, from_a())
    response = refusal(forwards, 404)
    detail = "sip:nobody@b.mc.example is not a published PSI"
    assert response.headers.get("Warning") == warning_of("isproxy.b.mc.example", "unknown-psi", detail)
    assert (line["reason"], line["status"], line["detail"]) == ("unknown-psi", 404, detail)


def test_entry_point_policy_refusal(proxy_b: IsProxy) -> None:
    # WA-IC-11: a partner may not name one of B's users as the caller outside a partner group call.
    info = McpttInfo(request_uri="sip:bob@b.mc.example", calling_user_id="sip:mallory@b.mc.example")
    forwards, line = decide(proxy_b, from_partner_a("INVITE", PSI_B, info=info), from_a())
    response = refusal(forwards, 403)
    detail = "calling user sip:mallory@b.mc.example claims this system's own domain"
    assert response.headers.get("Warning") == warning_of(
        "isproxy.b.mc.example", "calling-user-spoofed", detail
    )
    assert (line["reason"], line["partner"]) == ("calling-user-spoofed", "A")


def test_entry_point_unauthenticated_peer(proxy_b: IsProxy) -> None:
    message = from_partner_a("MESSAGE", PSI_B, info=ALICE_TO_BOB)
    forwards, line = decide(proxy_b, message, Arrival(Side.EXTERNAL, FROM_A, None))
    refusal(forwards, 403)
    assert line["reason"] == "peer-unknown"


def test_in_dialog_request_without_sealed_data_refused(proxy_b: IsProxy) -> None:
    bye = from_partner_a("BYE", "sip:bob@b.mc.example", to_tag="bob1")
    forwards, line = decide(proxy_b, bye, from_a())
    response = refusal(forwards, 403)
    detail = "in-dialog request without routing data sealed here"
    assert response.headers.get("Warning") == warning_of("isproxy.b.mc.example", "dialog-not-sealed", detail)
    assert (line["reason"], line["method"]) == ("dialog-not-sealed", "BYE")


def test_ack_refused_silently_but_audited(proxy_b: IsProxy) -> None:
    ack = from_partner_a("ACK", "sip:nobody@b.mc.example", to_tag="bob1")
    forwards, line = decide(proxy_b, ack, from_a())
    assert forwards == []  # an ACK is never answered (RFC 3261 §17.2.1)
    assert (line["reason"], line["method"]) == ("unknown-psi", "ACK")


def test_options_to_the_proxy_answered_locally(proxy_b: IsProxy) -> None:
    options = from_partner_a("OPTIONS", "sip:isproxy.b.mc.example")
    forwards, line = decide(proxy_b, options, from_a())
    response = refusal(forwards, 200)
    assert NameAddr.parse(response.headers.get("To") or "").tag is not None
    assert (line["decision"], line["local"]) == ("allow", "options")


# -------------------------------------------------------------------- both borders


@dataclass
class Pair:
    a: IsProxy
    b: IsProxy

    def a_to_b(self, message: SipRequest) -> Forward:
        [out_a] = self.a.handle_request(message, inside())
        assert isinstance(out_a.message, SipRequest), out_a.message
        [out_b] = self.b.handle_request(out_a.message, Arrival(Side.EXTERNAL, FROM_A, "A"))
        assert isinstance(out_b.message, SipRequest), out_b.message
        return out_b

    def b_answers(self, response: SipResponse) -> Forward:
        [back_b] = self.b.handle_response(response, Arrival(Side.INTERNAL, MCX_B))
        assert isinstance(back_b.message, SipResponse)
        [back_a] = self.a.handle_response(back_b.message, Arrival(Side.EXTERNAL, FROM_B, "B"))
        return back_a


@pytest.fixture
def pair(proxy_a: IsProxy, proxy_b: IsProxy) -> Iterator[Pair]:
    yield Pair(proxy_a, proxy_b)


def test_round_trip_through_both_borders(pair: Pair, deployment: Deployment) -> None:
    message = from_inside_a("MESSAGE", "sip:bob@b.mc.example", info=ALICE_TO_BOB)
    at_b_mcx = pair.a_to_b(message)
    assert at_b_mcx.destination == deployment.system("B").mcx_server.listen
    delivered = at_b_mcx.message
    assert isinstance(delivered, SipRequest)
    assert not leaked_internals(delivered, deployment.system("A"))
    back = pair.b_answers(make_response(delivered, 200, to_tag="b1"))
    response = back.message
    assert isinstance(response, SipResponse)
    assert back.destination == Address("tcp", *MCX_A)
    assert response.call_id == message.call_id
    # The stack A received (received/rport stamped on the top Via) is back.
    assert response.vias[1:] == message.vias[1:]
    assert Via.parse(response.vias[0]).param("rport") == str(MCX_A[1])


def test_cancel_and_non_2xx_ack_follow_the_invite(pair: Pair, deployment: Deployment) -> None:
    """A CANCEL, and the ACK of a non-2xx, carry the INVITE's Request-URI but no body (RFC 3261
    §9.1, §17.1.1.3): they must reach the partner with the Request-URI the INVITE got there."""
    invite = from_inside_a("INVITE", "sip:bob@b.mc.example", info=ALICE_TO_BOB)
    at_b_invite = pair.a_to_b(invite)
    assert isinstance(at_b_invite.message, SipRequest)
    assert at_b_invite.message.uri == PSI_B

    cancel = invite.copy()
    cancel.method = "CANCEL"
    cancel.headers.set("CSeq", "1 CANCEL")
    cancel.headers.remove("Contact")
    cancel.headers.remove("Content-Type")
    cancel.body = b""
    at_b_cancel = pair.a_to_b(cancel)
    assert isinstance(at_b_cancel.message, SipRequest)
    assert at_b_cancel.destination == at_b_invite.destination
    assert at_b_cancel.message.uri == at_b_invite.message.uri
    assert Via.parse(at_b_cancel.message.vias[0]).branch == Via.parse(at_b_invite.message.vias[0]).branch
    assert at_b_cancel.message.call_id == at_b_invite.message.call_id

    terminated = pair.b_answers(make_response(at_b_invite.message, 487, to_tag="b1"))
    assert isinstance(terminated.message, SipResponse)
    assert terminated.message.call_id == invite.call_id
    ack = cancel.copy()
    ack.method = "ACK"
    ack.headers.set("CSeq", "1 ACK")
    ack.headers.set("To", terminated.message.headers.get("To") or "")
    at_b_ack = pair.a_to_b(ack)
    assert isinstance(at_b_ack.message, SipRequest)
    assert at_b_ack.destination == at_b_invite.destination
    assert at_b_ack.message.uri == at_b_invite.message.uri
    assert Via.parse(at_b_ack.message.vias[0]).branch == Via.parse(at_b_invite.message.vias[0]).branch


# ------------------------------------------------------------------------- TLS peers


def _pki(deployment: Deployment, system: str, name: str) -> Path:
    return deployment.directory / system / "pki" / name


def test_identify_peer_accepts_partner_is_proxy(proxy_a: IsProxy, deployment: Deployment) -> None:
    certificate = load_certificate(_pki(deployment, "b", "isproxy.crt"))
    assert proxy_a.identify_peer(certificate, FROM_B) == "B"
    assert proxy_a.peer_refusal(certificate, FROM_B) is None
    assert len(proxy_a.audit.recent) == 0
    peer = PeerInfo("tls", FROM_B, (BORDER, 5061), SIP3_LISTENER, certificate, 7)
    assert proxy_a.arrival(peer) == Arrival(Side.EXTERNAL, FROM_B, "B")


def _issue(deployment: Deployment, ca_system: str, name: str) -> x509.Certificate:
    ca_cert = load_certificate(_pki(deployment, ca_system, "ca.crt"))
    ca_key = load_private_key(_pki(deployment, ca_system, "ca.key"))
    certificate, _ = issue_certificate(ca_cert, ca_key, [name], common_name=name, days=1)
    return certificate


@pytest.mark.parametrize(
    ("ca_system", "name"),
    [("b", "other.b.mc.example"), ("a", "isproxy.b.mc.example")],
    ids=["partner-ca-other-name", "own-ca-partner-name"],
)
def test_identify_peer_refuses(proxy_a: IsProxy, deployment: Deployment, ca_system: str, name: str) -> None:
    certificate = _issue(deployment, ca_system, name)
    assert proxy_a.identify_peer(certificate, FROM_B) is None
    refusal_text = proxy_a.peer_refusal(certificate, FROM_B)
    assert refusal_text == f"peer (CN={name}) is not a partner IS proxy"
    [line] = list(proxy_a.audit.recent)
    assert (line["decision"], line["reason"], line["peer"]) == ("refuse", "peer-unknown", f"CN={name}")
    # On SIP-3 such a peer is no partner: its requests are refused as unauthenticated.
    peer = PeerInfo("tls", FROM_B, (BORDER, 5061), SIP3_LISTENER, certificate, 8)
    assert proxy_a.arrival(peer) == Arrival(Side.EXTERNAL, FROM_B, None)


def test_identify_peer_without_certificate(proxy_a: IsProxy) -> None:
    assert proxy_a.identify_peer(None, FROM_B) is None
    assert proxy_a.peer_refusal(None, FROM_B) == "peer (no certificate) is not a partner IS proxy"
    assert [line["reason"] for line in proxy_a.audit.recent] == ["peer-unknown"]


def test_own_certificate_is_not_a_partner(proxy_a: IsProxy, deployment: Deployment) -> None:
    certificate = load_certificate(_pki(deployment, "a", "isproxy.crt"))
    assert proxy_a.identify_peer(certificate, FROM_B) is None


def test_cancel_of_a_reinvite_follows_its_sealed_target(pair: Pair) -> None:
    invite = from_inside_a("INVITE", "sip:bob@b.mc.example", info=ALICE_TO_BOB)
    at_b = pair.a_to_b(invite)
    assert isinstance(at_b.message, SipRequest)
    ok = make_response(at_b.message, 200, to_tag="b1")
    for value in at_b.message.headers.get_all("Record-Route"):
        ok.headers.add("Record-Route", value)
    bob = f"sip:bob@{HOST_B}:25060;transport=tcp"
    ok.headers.add("Contact", f"<{bob}>")
    back = pair.b_answers(ok)
    assert isinstance(back.message, SipResponse)
    # Alice's side builds the re-INVITE from the 2xx (RFC 3261 §12.1.2, §12.2.1.1).
    reinvite = request(
        "INVITE",
        NameAddr.parse(back.message.headers.get("Contact") or "").uri,
        via=f"SIP/2.0/TCP {HOST_A}:15072;branch=z9hG4bKmcx-reinvite;rport",
        source="sip:alice@a.mc.example",
        to="sip:bob@b.mc.example",
        to_tag="b1",
        call_id=invite.call_id,
        cseq=2,
    )
    for value in back.message.headers.get_all("Record-Route")[::-1]:
        reinvite.headers.add("Route", value)
    at_b_reinvite = pair.a_to_b(reinvite)
    assert isinstance(at_b_reinvite.message, SipRequest)
    assert at_b_reinvite.message.uri == bob
    assert at_b_reinvite.destination == Address("tcp", HOST_B, 25060)

    cancel = reinvite.copy()
    cancel.method = "CANCEL"
    cancel.headers.set("CSeq", "2 CANCEL")
    at_b_cancel = pair.a_to_b(cancel)
    assert isinstance(at_b_cancel.message, SipRequest)
    assert at_b_cancel.message.uri == bob
    assert at_b_cancel.destination == at_b_reinvite.destination
    assert Via.parse(at_b_cancel.message.vias[0]).branch == Via.parse(at_b_reinvite.message.vias[0]).branch
