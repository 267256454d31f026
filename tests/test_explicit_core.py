"""Explicit authentication without sockets: the EAR checks at the entry point, the replay claim,
the exit-point EAR requirement, Request Expiry release, the MCX server's signer and checker.

Systems A and B as ``mcic init --explicit`` writes them (every port given, nothing binds); EARs
are signed with keys provisioned offline from each system's KMS secrets (``ear_helpers``).
Clocks are fixed so that every time rule is exact.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from ear_helpers import ear_id_of, key_set, kms_of, sign_as
from mcinterconnect.border.agreement import AuthenticationPolicy
from mcinterconnect.border.audit import AuditLog
from mcinterconnect.border.explicit import AuthenticationByAgreement, ExplicitAuthentication
from mcinterconnect.border.isproxy import Arrival, IsProxy
from mcinterconnect.border.policy import ImplicitAuthentication
from mcinterconnect.border.sealing import Sealer
from mcinterconnect.border.topology import Side
from mcinterconnect.deploy.config import DeploymentConfig, SystemConfig, load_deployment
from mcinterconnect.deploy.init import init_deployment
from mcinterconnect.identity import DomainMap
from mcinterconnect.mcinfo import MCPTT_INFO_TYPE, McpttInfo, find_mcptt_info
from mcinterconnect.protect.ear import EAR_HEADER, RequestType
from mcinterconnect.protect.ear_check import EarPolicy, check_ear
from mcinterconnect.protect.replay import MemoryReplayStore, ReplayStoreUnavailable
from mcinterconnect.protect.request_types import request_type_for, request_type_rule
from mcinterconnect.services import mcx_ear
from mcinterconnect.services.kms import read_certificate
from mcinterconnect.services.mcx import EarPartner, McxServerLogic
from mcinterconnect.services.mcx_ear import EarReceiverCheck, EarSigner, SigningKeyError, SigningKeys
from mcinterconnect.sip.message import Headers, SipRequest, SipResponse, make_response
from mcinterconnect.sip.node import SipNode
from mcinterconnect.sip.proxy import Claim, Forward
from mcinterconnect.sip.transport import Address, PeerInfo
from mcinterconnect.sip.uri import NameAddr

HOST_A = "127.0.10.1"
HOST_B = "127.0.20.1"
BORDER = "127.0.0.1"
PORTS = {
    "a.sip_core.client_listen": 15160,
    "a.sip_core.server_listen": 15170,
    "a.mcx_server.listen": 15172,
    "a.is_proxy.internal_listen": 15180,
    "a.is_proxy.sip3_listen": 5161,
    "b.sip_core.client_listen": 25160,
    "b.sip_core.server_listen": 25170,
    "b.mcx_server.listen": 25172,
    "b.is_proxy.internal_listen": 25180,
    "b.is_proxy.sip3_listen": 5162,
    "a.kms.listen": 15190,
    "b.kms.listen": 25190,
}
FROM_A = (BORDER, 41000)
FROM_B = (BORDER, 42000)
MCX_A = (HOST_A, 40123)
MCX_B = (HOST_B, 40456)
PSI_A = "sip:mcptt-server@a.mc.example"
PSI_B = "sip:mcptt-server@b.mc.example"
ALICE = "sip:alice@a.mc.example"
BOB = "sip:bob@b.mc.example"
NOW = float(int(time.time()))


@dataclass(frozen=True)
class Systems:
    directory: Path
    config: DeploymentConfig

    @property
    def a(self) -> SystemConfig:
        return self.config.systems[0]

    @property
    def b(self) -> SystemConfig:
        return self.config.systems[1]


@pytest.fixture(scope="module")
def systems(tmp_path_factory: pytest.TempPathFactory) -> Systems:
    directory = tmp_path_factory.mktemp("explicit")
    path = init_deployment(
        directory, host_a=HOST_A, host_b=HOST_B, border_host=BORDER, ports=PORTS, explicit=True
    )
    return Systems(directory, load_deployment(path))


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def build_proxy(system: SystemConfig, clock: Clock) -> IsProxy:
    policy = EarPolicy(skew=system.is_proxy.ear_skew)
    certificates = {p.name: read_certificate(p.kms_certificate) for p in system.partner if p.kms_certificate}
    explicit = ExplicitAuthentication(
        own_domains=system.system.domains, certificates=certificates, policy=policy, clock=clock
    )
    return IsProxy(
        system.is_proxy,
        own_domains=list(system.system.domains),
        agreements=list(system.partner),
        internal_markers=system.internal_markers(),
        sealer=Sealer.from_file(system.is_proxy.sealing_keys),
        audit=AuditLog(None, system=system.system.name, component="is-proxy"),
        authenticator=AuthenticationByAgreement(implicit=ImplicitAuthentication(), explicit=explicit),
        ear_policy=policy,
        clock=clock,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def proxy_a(systems: Systems, clock: Clock) -> IsProxy:
    return build_proxy(systems.a, clock)


@pytest.fixture
def proxy_b(systems: Systems, clock: Clock) -> IsProxy:
    return build_proxy(systems.b, clock)


ALICE_TO_BOB = McpttInfo(request_uri=BOB, calling_user_id=ALICE)
GROUP_CALL = McpttInfo(request_uri=BOB, calling_user_id=ALICE, calling_group_id="sip:fire@a.mc.example")


def partner_request(
    method: str = "MESSAGE",
    *,
    ear: str | None = None,
    info: McpttInfo | None = ALICE_TO_BOB,
    to_tag: str | None = None,
    uri: str = PSI_B,
) -> SipRequest:
    """A request as A's exit point sends it to B."""
    headers = Headers(
        [
            ("Via", "SIP/2.0/TLS isproxy.a.mc.example:5161;branch=z9hG4bKsip3-1;rport"),
            ("Max-Forwards", "69"),
            ("From", f"<{ALICE}>;tag=alice1"),
            ("To", f"<{BOB}>" + (f";tag={to_tag}" if to_tag else "")),
            ("Call-ID", "cid-1@a"),
            ("CSeq", f"1 {method}"),
            ("P-Asserted-Identity", "<sip:isproxy@a.mc.example>"),
        ]
    )
    if ear is not None:
        headers.add(EAR_HEADER, ear)
    body = b""
    if info is not None:
        headers.add("Content-Type", MCPTT_INFO_TYPE)
        body = info.to_xml()
    return SipRequest(headers=headers, body=body, method=method, uri=uri)


def from_a() -> Arrival:
    return Arrival(Side.EXTERNAL, FROM_A, "A")


def inside_b() -> Arrival:
    return Arrival(Side.INTERNAL, (HOST_B, 25999))


def valid_ear(systems: Systems, **arguments: object) -> str:
    values: dict[str, object] = {"target_id": PSI_B, "now": NOW}
    values.update(arguments)
    return sign_as(systems.a, **values)


def only(forwards: list[Forward]) -> Forward:
    assert len(forwards) == 1, forwards
    return forwards[0]


def refused(proxy: IsProxy, message: SipRequest, reason: str) -> tuple[str, dict[str, object]]:
    before = len(proxy.audit.recent)
    response = only(proxy.handle_request(message, from_a())).message
    assert isinstance(response, SipResponse)
    assert response.status == 403, response
    lines = list(proxy.audit.recent)[before:]
    assert [(line["decision"], line["reason"]) for line in lines] == [("refuse", reason)]
    return response.headers.get("Warning") or "", lines[0]


# ------------------------------------------------------------------ the request-type rule (WA-SP-27)


@pytest.mark.parametrize(
    ("info", "allowed", "request_type", "fits"),
    [
        (ALICE_TO_BOB, ("GROUP", "none"), None, True),
        (ALICE_TO_BOB, ("GROUP",), None, False),
        (ALICE_TO_BOB, ("GROUP", "none"), RequestType.GROUP, False),
        (GROUP_CALL, ("GROUP", "none"), RequestType.GROUP, True),
        (GROUP_CALL, ("GROUP", "none"), None, False),
        (GROUP_CALL, ("none", "MIGRATION"), RequestType.GROUP, False),
        (GROUP_CALL, ("GROUP", "MIGRATION"), RequestType.MIGRATION, False),
        (ALICE_TO_BOB, ("GROUP", "none"), RequestType.MIGRATION, False),
        (ALICE_TO_BOB, ("MIGRATION",), RequestType.MIGRATION, True),
        (None, ("PRIVILEGED", "INTERWORKING"), RequestType.PRIVILEGED, True),
        (None, ("PRIVILEGED", "INTERWORKING"), RequestType.INTERWORKING, True),
        (None, ("PRIVILEGED", "INTERWORKING", "none", "GROUP"), RequestType.OFF_NETWORK, False),
    ],
)
def test_request_type_rule(
    info: McpttInfo | None, allowed: tuple[str, ...], request_type: RequestType | None, fits: bool
) -> None:
    assert request_type_rule(info, allowed)(request_type) is fits


def test_request_type_the_sender_writes() -> None:
    assert request_type_for(GROUP_CALL) is RequestType.GROUP
    assert request_type_for(ALICE_TO_BOB) is None
    assert request_type_for(None) is None


# ------------------------------------------------------------------ entry point: every rule


def test_valid_ear_is_forwarded_with_a_replay_claim(systems: Systems, proxy_b: IsProxy) -> None:
    ear = valid_ear(systems)
    forward = only(proxy_b.handle_request(partner_request(ear=ear), from_a()))
    assert isinstance(forward.message, SipRequest)
    assert forward.destination == systems.b.mcx_server.listen
    assert forward.message.headers.get(EAR_HEADER) == ear  # the MCX server may verify it again
    claim = forward.claim
    assert claim is not None
    assert claim.key == ear_id_of(ear)
    assert claim.ttl == 61.0  # 2 × 30 s skew + 1 s
    # Nothing is written before the replay step passed.
    assert list(proxy_b.audit.recent) == []
    claim.on_claimed()
    [line] = proxy_b.audit.recent
    assert (line["decision"], line["reason"], line["partner"]) == ("allow", "allowed", "A")
    assert line["ear"] == str(uuid.UUID(bytes=ear_id_of(ear)))
    # The prepared refusals, sent instead when the store says "seen" or cannot answer.
    for prepared, code, reason in (
        (claim.if_seen, "907 EAR replayed", "ear-replay"),
        (claim.if_unavailable, "910 EAR replay store unavailable", "ear-replay-store-unavailable"),
    ):
        assert prepared is not None and isinstance(prepared.message, SipResponse)
        assert prepared.message.status == 403
        assert prepared.message.headers.get("Warning", "").startswith(
            f'399 isproxy.b.mc.example "{code} ({reason}: '
        )
        assert prepared.server_hostname == "isproxy.a.mc.example"
    claim.on_seen()
    claim.on_unavailable("redis unreachable: redis://127.0.0.1:1/0: Connection refused")
    lines = list(proxy_b.audit.recent)[1:]
    assert [(line["decision"], line["reason"], line["status"]) for line in lines] == [
        ("refuse", "ear-replay", 403),
        ("refuse", "ear-replay-store-unavailable", 403),
    ]
    assert lines[1]["detail"] == "redis unreachable: redis://127.0.0.1:1/0: Connection refused"


CASES = [
    ("missing", "ear-missing", "901 EAR missing"),
    ("malformed", "ear-malformed", "902 EAR malformed"),
    ("two-headers", "ear-malformed", "902 EAR malformed"),
    ("stale", "ear-stale", "906 EAR outside time window"),
    ("source-own-domain", "ear-source", "904 EAR source not allowed"),
    ("source-third-domain", "ear-source", "904 EAR source not allowed"),
    ("target-other-system", "ear-target", "905 EAR target mismatch"),
    ("group-type-on-private", "ear-request-type", "908 EAR request type not allowed"),
    ("no-type-on-group", "ear-request-type", "908 EAR request type not allowed"),
    ("off-network", "ear-request-type", "908 EAR request type not allowed"),
    ("migration-not-allowed", "ear-request-type", "908 EAR request type not allowed"),
    ("expired", "ear-expired", "909 EAR expired"),
    ("forged", "ear-signature", "903 EAR signature invalid"),
    ("tampered", "ear-signature", "903 EAR signature invalid"),
    ("signed-by-b", "ear-signature", "903 EAR signature invalid"),
]


def bad_request(case: str, systems: Systems) -> SipRequest:
    a, b = systems.a, systems.b
    if case == "missing":
        return partner_request()
    if case == "malformed":
        return partner_request(ear="AAECAwQ=")
    if case == "two-headers":
        message = partner_request(ear=valid_ear(systems))
        message.headers.add(EAR_HEADER, valid_ear(systems))
        return message
    if case == "stale":
        return partner_request(ear=valid_ear(systems, now=NOW - 31))
    if case == "source-own-domain":
        return partner_request(ear=valid_ear(systems, source_id="sip:mcptt-server@b.mc.example"))
    if case == "source-third-domain":
        return partner_request(ear=valid_ear(systems, source_id="sip:mcptt-server@c.mc.example"))
    if case == "target-other-system":
        return partner_request(ear=valid_ear(systems, target_id="sip:mcptt-server@c.mc.example"))
    if case == "group-type-on-private":
        return partner_request(ear=valid_ear(systems, request_type=RequestType.GROUP))
    if case == "no-type-on-group":
        return partner_request(ear=valid_ear(systems), info=GROUP_CALL)
    if case == "off-network":
        return partner_request(ear=valid_ear(systems, request_type=RequestType.OFF_NETWORK))
    if case == "migration-not-allowed":
        return partner_request(ear=valid_ear(systems, request_type=RequestType.MIGRATION))
    if case == "expired":
        ear = valid_ear(systems, request_type=RequestType.GROUP, expiry=int(NOW) - 1)
        return partner_request(ear=ear, info=GROUP_CALL)
    if case == "forged":
        return partner_request(ear=valid_ear(systems, signer_uri="sip:mallory@a.mc.example"))
    if case == "tampered":
        return partner_request(ear=valid_ear(systems, tamper=True))
    assert case == "signed-by-b"  # right names, but keys of B's KMS: not under A's KPAK
    return partner_request(ear=sign_as(b, source_id=a.mcx_server.psi, target_id=PSI_B, now=NOW))


@pytest.mark.parametrize(("case", "reason", "text"), CASES)
def test_entry_refusals(systems: Systems, proxy_b: IsProxy, case: str, reason: str, text: str) -> None:
    warning, line = refused(proxy_b, bad_request(case, systems), reason)
    assert warning.startswith(f'399 isproxy.b.mc.example "{text} ({reason}: ')
    assert (line["direction"], line["partner"], line["status"]) == ("inbound", "A", 403)
    assert line["detail"] and line["detail"] in warning


def test_stale_boundaries(systems: Systems, proxy_b: IsProxy, clock: Clock) -> None:
    for offset in (-30, 30):
        forward = only(
            proxy_b.handle_request(partner_request(ear=valid_ear(systems, now=NOW + offset)), from_a())
        )
        assert forward.claim is not None
    refused(proxy_b, partner_request(ear=valid_ear(systems, now=NOW + 31)), "ear-stale")
    # the skew is the configured one
    clock.now = NOW + 100
    refused(proxy_b, partner_request(ear=valid_ear(systems)), "ear-stale")


def test_group_call_with_expiry_in_the_future_is_admitted(systems: Systems, proxy_b: IsProxy) -> None:
    ear = valid_ear(systems, request_type=RequestType.GROUP, expiry=int(NOW) + 5)
    forward = only(proxy_b.handle_request(partner_request(ear=ear, info=GROUP_CALL), from_a()))
    assert forward.claim is not None


def test_identity_rules_still_apply_after_the_ear(systems: Systems, proxy_b: IsProxy) -> None:
    spoofed = McpttInfo(request_uri=BOB, calling_user_id="sip:mallory@b.mc.example")
    refused(proxy_b, partner_request(ear=valid_ear(systems), info=spoofed), "calling-user-spoofed")


def test_in_dialog_requests_without_ear_need_sealed_routing(systems: Systems, proxy_b: IsProxy) -> None:
    # WA-SP-28: no EAR needed in a dialog, but the dialog proof still is.
    message = partner_request("BYE", info=None, to_tag="bob1")
    response = only(proxy_b.handle_request(message, from_a())).message
    assert isinstance(response, SipResponse) and response.status == 403
    assert list(proxy_b.audit.recent)[-1]["reason"] == "dialog-not-sealed"


def test_in_dialog_request_with_a_bad_ear_is_refused(systems: Systems, proxy_b: IsProxy) -> None:
    message = partner_request("INFO", info=None, to_tag="bob1", ear=valid_ear(systems, tamper=True))
    refused(proxy_b, message, "ear-signature")


def test_cancel_needs_no_ear(systems: Systems, proxy_b: IsProxy) -> None:
    forward = only(proxy_b.handle_request(partner_request("CANCEL", info=None), from_a()))
    assert forward.claim is None
    assert isinstance(forward.message, SipRequest) and forward.message.method == "CANCEL"
    assert list(proxy_b.audit.recent)[-1]["reason"] == "allowed"


def test_implicit_partner_needs_no_ear(systems: Systems, clock: Clock) -> None:
    b = systems.b
    implicit_agreement = b.partner[0].model_copy(
        update={"authentication": AuthenticationPolicy(inbound="implicit", outbound="explicit")}
    )
    assert not implicit_agreement.explicit_inbound
    proxy = build_proxy(b.model_copy(update={"partner": [implicit_agreement]}), clock)
    forward = only(proxy.handle_request(partner_request(), from_a()))
    assert forward.claim is None and isinstance(forward.message, SipRequest)


# ------------------------------------------------------------------ exit point (explicit outbound)


def from_inside_a(ear: str | None) -> SipRequest:
    headers = Headers(
        [
            ("Via", f"SIP/2.0/TCP {HOST_A}:15172;branch=z9hG4bKmcx-1;rport"),
            ("Max-Forwards", "69"),
            ("From", f"<{ALICE}>;tag=alice1"),
            ("To", f"<{BOB}>"),
            ("Call-ID", "out-1"),
            ("CSeq", "1 MESSAGE"),
            ("P-Asserted-Identity", f"<{ALICE}>"),
            ("Content-Type", MCPTT_INFO_TYPE),
        ]
    )
    if ear is not None:
        headers.add(EAR_HEADER, ear)
    return SipRequest(headers=headers, body=ALICE_TO_BOB.to_xml(), method="MESSAGE", uri=BOB)


def test_exit_refuses_an_initial_request_without_ear(proxy_a: IsProxy) -> None:
    forward = only(proxy_a.handle_request(from_inside_a(None), Arrival(Side.INTERNAL, MCX_A)))
    response = forward.message
    assert isinstance(response, SipResponse) and response.status == 403
    assert response.headers.get("Warning") == (
        '399 isproxy.a.mc.example "901 EAR missing (ear-missing: explicit authentication toward B: '
        'the sending server attached no EAR)"'
    )
    assert forward.destination == Address("tcp", *MCX_A)  # back inside, never toward B
    [line] = proxy_a.audit.recent
    assert (line["decision"], line["reason"], line["direction"]) == ("refuse", "ear-missing", "outbound")


def test_exit_forwards_the_ear_unchanged(systems: Systems, proxy_a: IsProxy) -> None:
    ear = valid_ear(systems)
    forward = only(proxy_a.handle_request(from_inside_a(ear), Arrival(Side.INTERNAL, MCX_A)))
    assert isinstance(forward.message, SipRequest)
    assert forward.message.headers.get(EAR_HEADER) == ear
    assert forward.server_hostname == "isproxy.b.mc.example"
    assert forward.claim is None  # the replay step is the receiver's


# ------------------------------------------------------------------ the node runs the claim


class _Store:
    def __init__(self, answer: bool | Exception) -> None:
        self.answer = answer
        self.calls: list[tuple[bytes, float]] = []

    async def add_if_absent(self, key: bytes, ttl: float) -> bool:
        self.calls.append((key, ttl))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class _NoCore:
    def on_request(self, request: SipRequest, peer: PeerInfo) -> list[Forward]:
        return []

    def on_response(self, response: SipResponse, peer: PeerInfo) -> list[Forward]:
        return []


def _claimed_forward(events: list[str]) -> Forward:
    target = Address("tcp", HOST_B, 1)
    message = partner_request()
    refusal = Forward(make_response(message, 403), Address("tcp", HOST_B, 2))
    unavailable = Forward(make_response(message, 403), Address("tcp", HOST_B, 3))
    return Forward(
        message,
        target,
        claim=Claim(
            key=b"k" * 16,
            ttl=61.0,
            on_claimed=lambda: events.append("claimed"),
            if_seen=refusal,
            on_seen=lambda: events.append("seen"),
            if_unavailable=unavailable,
            on_unavailable=lambda reason: events.append(f"unavailable: {reason}"),
        ),
    )


@pytest.mark.parametrize(
    ("store", "sent_to", "events"),
    [
        (_Store(True), 1, ["claimed"]),
        (_Store(False), 2, ["seen"]),
        (_Store(ReplayStoreUnavailable("redis unreachable: x")), 3, ["unavailable: redis unreachable: x"]),
        (_Store(OSError("disk\nfull")), 3, ["unavailable: disk full"]),
        (None, 3, ["unavailable: no replay store is configured on this node"]),
    ],
)
def test_node_settles_the_claim_before_sending(store: _Store | None, sent_to: int, events: list[str]) -> None:
    node = SipNode(_NoCore(), agent="test", claim_store=store)
    sent: list[Forward] = []

    async def deliver(action: Forward) -> None:
        sent.append(action)

    node._deliver = deliver  # type: ignore[method-assign]
    seen: list[str] = []
    asyncio.run(node.execute(_claimed_forward(seen)))
    assert [forward.destination.port for forward in sent] == [sent_to]
    assert seen == events
    if store is not None:
        assert store.calls == [(b"k" * 16, 61.0)]


def test_node_with_a_memory_store_refuses_the_second_use() -> None:
    node = SipNode(_NoCore(), agent="test", claim_store=MemoryReplayStore())
    sent: list[int] = []

    async def deliver(action: Forward) -> None:
        sent.append(action.destination.port)

    node._deliver = deliver  # type: ignore[method-assign]

    async def twice() -> None:
        await node.execute(_claimed_forward([]))
        await node.execute(_claimed_forward([]))

    asyncio.run(twice())
    assert sent == [1, 2]


# ------------------------------------------------------------------ Request Expiry: release both ways


def _contact(message: SipRequest | SipResponse) -> str:
    return NameAddr.parse(message.headers.get("Contact") or "").uri


def invite_from_a_inside(ear: str) -> SipRequest:
    headers = Headers(
        [
            ("Via", f"SIP/2.0/TCP {HOST_A}:15172;branch=z9hG4bKcaller-1;rport"),
            ("Max-Forwards", "69"),
            ("From", f"<{ALICE}>;tag=alice1"),
            ("To", f"<{BOB}>"),
            ("Call-ID", "call-1@caller"),
            ("CSeq", "10 INVITE"),
            ("P-Asserted-Identity", f"<{ALICE}>"),
            ("Contact", f"<sip:alice@{HOST_A}:15999;transport=tcp>"),
            ("Content-Type", MCPTT_INFO_TYPE),
            (EAR_HEADER, ear),
        ]
    )
    return SipRequest(headers=headers, body=GROUP_CALL.to_xml(), method="INVITE", uri=BOB)


@dataclass
class Dialog:
    caller_invite: SipRequest  # as A's inside sent it
    crossing_invite: SipRequest  # as it crossed SIP-3
    callee_invite: SipRequest  # as B's inside received it
    callee_ok: SipResponse  # as B's inside sent it
    caller_ok: SipResponse  # as A's inside received it


def set_up_dialog(systems: Systems, proxy_a: IsProxy, proxy_b: IsProxy, expiry: int) -> Dialog:
    ear = valid_ear(systems, request_type=RequestType.GROUP, expiry=expiry)
    invite = invite_from_a_inside(ear)
    crossing = only(proxy_a.handle_request(invite, Arrival(Side.INTERNAL, MCX_A))).message
    assert isinstance(crossing, SipRequest)
    entered = only(proxy_b.handle_request(crossing, from_a()))
    assert entered.claim is not None
    entered.claim.on_claimed()  # the replay store said "new"
    callee_invite = entered.message
    assert isinstance(callee_invite, SipRequest)
    assert len(proxy_b.expiry) == 1
    ok = make_response(callee_invite, 200, to_tag="bob1")
    ok.headers.add("Contact", f"<sip:bob@{HOST_B}:25999;transport=tcp>")
    for value in callee_invite.headers.get_all("Record-Route"):
        ok.headers.add("Record-Route", value)
    back = only(proxy_b.handle_response(ok, inside_b()))
    assert isinstance(back.message, SipResponse)
    arrived = only(proxy_a.handle_response(back.message, Arrival(Side.EXTERNAL, FROM_B, "B")))
    assert isinstance(arrived.message, SipResponse)
    return Dialog(invite, crossing, callee_invite, ok, arrived.message)


def test_expired_dialog_is_released_both_ways(systems: Systems, proxy_a: IsProxy, proxy_b: IsProxy) -> None:
    dialog = set_up_dialog(systems, proxy_a, proxy_b, int(NOW) + 5)
    assert proxy_b.release_expired(NOW + 4) == []
    inside, toward_a = proxy_b.release_expired(NOW + 5)
    assert proxy_b.release_expired(NOW + 6) == []  # once only
    # Toward the inside: the callee's own dialog identifiers and contact.
    bye = inside.message
    assert isinstance(bye, SipRequest) and bye.method == "BYE"
    assert inside.destination == Address("tcp", HOST_B, 25999)
    assert bye.uri == _contact(dialog.callee_ok)
    assert bye.call_id == dialog.callee_invite.call_id
    assert NameAddr.parse(bye.headers.get("From") or "").tag == "alice1"
    assert NameAddr.parse(bye.headers.get("To") or "").tag == "bob1"
    assert bye.cseq == (11, "BYE")
    # Toward A: the partner-side Call-ID and A's sealed contact, over SIP-3.
    bye_a = toward_a.message
    assert isinstance(bye_a, SipRequest) and bye_a.method == "BYE"
    assert (toward_a.destination, toward_a.server_hostname) == (
        systems.a.is_proxy.sip3_listen,
        "isproxy.a.mc.example",
    )
    assert bye_a.call_id == dialog.crossing_invite.call_id
    assert len({bye_a.call_id, dialog.callee_invite.call_id, dialog.caller_invite.call_id}) == 3
    assert NameAddr.parse(bye_a.headers.get("From") or "").tag == "bob1"
    assert NameAddr.parse(bye_a.headers.get("To") or "").tag == "alice1"
    assert not [m for m in systems.b.internal_markers() if m in bye_a.to_bytes().decode()]
    # A's border restores it to A's caller: its own Call-ID and contact.
    at_caller = only(proxy_a.handle_request(bye_a, Arrival(Side.EXTERNAL, FROM_B, "B")))
    caller_bye = at_caller.message
    assert isinstance(caller_bye, SipRequest)
    assert caller_bye.call_id == dialog.caller_invite.call_id
    assert caller_bye.uri == _contact(dialog.caller_invite)
    assert at_caller.destination == Address("tcp", HOST_A, 15999)
    [release] = [line for line in proxy_b.audit.recent if line["decision"] == "release"]
    assert (release["reason"], release["partner"], release["method"]) == ("ear-expired", "A", "BYE")
    # The answers to the border's own BYEs end at the border.
    ok_inside = make_response(bye, 200)
    assert proxy_b.handle_response(ok_inside, inside_b()) == []
    ok_a = make_response(caller_bye, 200)
    back_to_b = only(proxy_a.handle_response(ok_a, Arrival(Side.INTERNAL, MCX_A))).message
    assert isinstance(back_to_b, SipResponse)
    assert proxy_b.handle_response(back_to_b, Arrival(Side.EXTERNAL, FROM_A, "A")) == []
    answered = [line for line in proxy_b.audit.recent if line["reason"] == "release-answered"]
    assert [line["status"] for line in answered] == [200, 200]


def test_dialog_ended_before_expiry_is_forgotten(
    systems: Systems, proxy_a: IsProxy, proxy_b: IsProxy
) -> None:
    dialog = set_up_dialog(systems, proxy_a, proxy_b, int(NOW) + 5)
    # The callee hangs up first: its BYE crosses B's border, which stops tracking.
    bye = SipRequest(
        headers=Headers(
            [
                ("Via", f"SIP/2.0/TCP {HOST_B}:25999;branch=z9hG4bKbye-1;rport"),
                ("Max-Forwards", "70"),
                ("Route", dialog.callee_invite.headers.get_all("Record-Route")[0]),
                ("From", dialog.callee_ok.headers.get("To") or ""),
                ("To", dialog.callee_invite.headers.get("From") or ""),
                ("Call-ID", dialog.callee_invite.call_id),
                ("CSeq", "1 BYE"),
            ]
        ),
        body=b"",
        method="BYE",
        uri=_contact(dialog.callee_invite),
    )
    forward = only(proxy_b.handle_request(bye, inside_b()))
    assert isinstance(forward.message, SipRequest)
    assert len(proxy_b.expiry) == 0
    assert proxy_b.release_expired(NOW + 10) == []


def test_rejected_invite_is_forgotten(systems: Systems, proxy_a: IsProxy, proxy_b: IsProxy) -> None:
    ear = valid_ear(systems, request_type=RequestType.GROUP, expiry=int(NOW) + 5)
    crossing = only(proxy_a.handle_request(invite_from_a_inside(ear), Arrival(Side.INTERNAL, MCX_A))).message
    assert isinstance(crossing, SipRequest)
    entered = only(proxy_b.handle_request(crossing, from_a()))
    assert entered.claim is not None
    entered.claim.on_claimed()
    assert isinstance(entered.message, SipRequest)
    only(proxy_b.handle_response(make_response(entered.message, 486, to_tag="bob1"), inside_b()))
    assert len(proxy_b.expiry) == 0


def test_expiry_is_not_tracked_before_the_replay_step(
    systems: Systems, proxy_a: IsProxy, proxy_b: IsProxy
) -> None:
    ear = valid_ear(systems, request_type=RequestType.GROUP, expiry=int(NOW) + 5)
    crossing = only(proxy_a.handle_request(invite_from_a_inside(ear), Arrival(Side.INTERNAL, MCX_A))).message
    assert isinstance(crossing, SipRequest)
    entered = only(proxy_b.handle_request(crossing, from_a()))
    assert entered.claim is not None
    entered.claim.on_seen()  # a replay: never forwarded, never tracked
    assert len(proxy_b.expiry) == 0


def test_full_expiry_table_refuses(systems: Systems, proxy_a: IsProxy, proxy_b: IsProxy) -> None:
    proxy_b.expiry.max_tracked = 0
    ear = valid_ear(systems, request_type=RequestType.GROUP, expiry=int(NOW) + 5)
    crossing = only(proxy_a.handle_request(invite_from_a_inside(ear), Arrival(Side.INTERNAL, MCX_A))).message
    assert isinstance(crossing, SipRequest)
    response = only(proxy_b.handle_request(crossing, from_a())).message
    assert isinstance(response, SipResponse) and response.status == 503
    assert list(proxy_b.audit.recent)[-1]["reason"] == "expiry-table-full"


# ------------------------------------------------------------------ the MCX server: sign and verify


def signing_keys(system: SystemConfig, at: float = NOW) -> SigningKeys:
    kms = kms_of(system)
    keys = SigningKeys(kms.certificate, system.mcx_server.psi)
    keys.add([key_set(system, system.mcx_server.psi, at)])
    return keys


def mcx(
    system: SystemConfig, *, sign: bool = True, verify: bool = False, clock: Clock | None = None
) -> McxServerLogic:
    partner = system.partner[0]
    policy = EarPolicy(skew=30)
    return McxServerLogic(
        domains=DomainMap(system.system.domains, {partner.name: partner.domains}),
        face=system.mcx_server.listen,
        sip_core=system.sip_core.server_listen,
        is_proxy=system.is_proxy.internal_listen,
        agent=system.domain,
        ear_partners={
            partner.name: EarPartner(
                name=partner.name,
                domains=tuple(partner.domains),
                psi=partner.psis["mcptt"],
                sign=sign,
                verify=verify,
                allowed_request_types=tuple(partner.allowed_request_types),
                certificate=read_certificate(partner.kms_certificate) if partner.kms_certificate else None,
            )
        },
        signer=EarSigner(system.mcx_server.psi, signing_keys(system), clock or Clock()) if sign else None,
        receiver_check=EarReceiverCheck(
            system.mcx_server.psi, tuple(system.system.domains), policy, clock or Clock()
        )
        if verify
        else None,
    )


def peer(remote: tuple[str, int]) -> PeerInfo:
    return PeerInfo("tcp", remote, (HOST_A, 1), "mcx", None, 1)


def originating(info: McpttInfo, client_ear: str | None = None) -> SipRequest:
    headers = Headers(
        [
            ("Via", f"SIP/2.0/TCP {HOST_A}:15170;branch=z9hG4bKcore-1;rport"),
            ("Max-Forwards", "69"),
            ("From", f"<{ALICE}>;tag=alice1"),
            ("To", f"<{PSI_A}>"),
            ("Call-ID", "orig-1"),
            ("CSeq", "1 MESSAGE"),
            ("P-Asserted-Identity", f"<{ALICE}>"),
            ("Content-Type", MCPTT_INFO_TYPE),
        ]
    )
    if client_ear is not None:
        headers.add(EAR_HEADER, client_ear)
    return SipRequest(headers=headers, body=info.to_xml(), method="MESSAGE", uri=PSI_A)


@pytest.mark.parametrize(
    "info", [McpttInfo(request_uri=BOB), McpttInfo(request_uri=BOB, calling_group_id="sip:fire@a.mc.example")]
)
def test_mcx_signs_what_it_sends_to_an_explicit_partner(systems: Systems, info: McpttInfo) -> None:
    a, b = systems.a, systems.b
    server = mcx(a)
    forward = only(server.on_request(originating(info, client_ear="Zm9yZ2Vk"), peer((HOST_A, 15170))))
    sent = forward.message
    assert isinstance(sent, SipRequest) and forward.destination == a.is_proxy.internal_listen
    [value] = sent.headers.get_all(EAR_HEADER)  # the client's own MC-EAR is gone
    certificate = read_certificate(b.partner[0].kms_certificate or Path())
    verdict = check_ear(
        value,
        now=NOW,
        policy=EarPolicy(),
        source_domains=["a.mc.example"],
        target_domains=["b.mc.example"],
        target_id=PSI_B,
        allowed_request_types=request_type_rule(find_mcptt_info(sent), ("GROUP", "none")),
        kms_uri=certificate.kms_uri,
        kpak=certificate.pub_auth_key,
        key_period=certificate.key_period,
    )
    assert verdict.ok, verdict
    assert verdict.ear is not None
    payload = verdict.ear.payload
    assert (payload.source_id, payload.target_id, payload.source_role, payload.target_role) == (
        PSI_A,
        PSI_B,
        2,
        2,
    )
    expected = None if info.calling_group_id is None else RequestType.GROUP
    assert (payload.request.request_type if payload.request else None) == expected


def test_mcx_without_a_signing_key_refuses_rather_than_send_unsigned(systems: Systems) -> None:
    a = systems.a
    period = kms_of(a).certificate.user_key_period
    server = mcx(a, clock=Clock(NOW + 3 * period))  # keys held only for the period of NOW
    response = only(server.on_request(originating(McpttInfo(request_uri=BOB)), peer((HOST_A, 15170)))).message
    assert isinstance(response, SipResponse) and response.status == 503
    assert "cannot sign the EAR toward B: no EAR signing key for key period" in (
        response.headers.get("Warning") or ""
    )


def test_mcx_does_not_sign_toward_an_implicit_partner(systems: Systems) -> None:
    server = mcx(systems.a, sign=False)
    forward = only(server.on_request(originating(McpttInfo(request_uri=BOB)), peer((HOST_A, 15170))))
    assert isinstance(forward.message, SipRequest) and EAR_HEADER not in forward.message.headers


def terminating(ear: str | None) -> SipRequest:
    headers = Headers(
        [
            ("Via", f"SIP/2.0/TCP {HOST_A}:15180;branch=z9hG4bKisp-1;rport"),
            ("Max-Forwards", "66"),
            ("From", f"<{BOB}>;tag=bob1"),
            ("To", f"<{ALICE}>"),
            ("Call-ID", "term-1"),
            ("CSeq", "1 MESSAGE"),
            ("P-Asserted-Identity", "<sip:isproxy@b.mc.example>"),
            ("Content-Type", MCPTT_INFO_TYPE),
        ]
    )
    if ear is not None:
        headers.add(EAR_HEADER, ear)
    body = McpttInfo(request_uri=ALICE, calling_user_id=BOB).to_xml()
    return SipRequest(headers=headers, body=body, method="MESSAGE", uri=PSI_A)


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        (PSI_A, None),
        ("sip:gms@a.mc.example", "ear-target"),  # right system, wrong server: the border let it in
        (None, "ear-missing"),
    ],
)
def test_mcx_verify_ear_checks_the_exact_target(
    systems: Systems, target: str | None, reason: str | None
) -> None:
    a, b = systems.a, systems.b
    server = mcx(a, sign=False, verify=True)
    ear = None if target is None else sign_as(b, target_id=target, now=NOW)
    forward = only(server.on_request(terminating(ear), peer((HOST_A, 15180))))
    if reason is None:
        assert isinstance(forward.message, SipRequest)
        assert forward.destination == a.sip_core.server_listen
        assert EAR_HEADER not in forward.message.headers  # clients never see the EAR
        return
    response = forward.message
    assert isinstance(response, SipResponse) and response.status == 403
    warning = response.headers.get("Warning") or ""
    assert warning.startswith('399 a.mc.example "90') and f"({reason}: " in warning


def test_mcx_verify_ear_does_not_consult_a_replay_store(systems: Systems) -> None:
    a, b = systems.a, systems.b
    server = mcx(a, sign=False, verify=True)
    ear = sign_as(b, target_id=PSI_A, now=NOW)
    for _ in range(2):  # the border did the replay step; the server must not refuse a second look
        forward = only(server.on_request(terminating(ear), peer((HOST_A, 15180))))
        assert isinstance(forward.message, SipRequest)


# ------------------------------------------------------------------ signing keys: periods and refresh


def test_signing_keys_by_period(systems: Systems) -> None:
    a = systems.a
    certificate = kms_of(a).certificate
    period = certificate.user_key_period
    keys = signing_keys(a)
    assert keys.for_time(NOW).user_uri == PSI_A
    with pytest.raises(SigningKeyError, match="no EAR signing key for key period"):
        keys.for_time(NOW + period)
    assert len(keys.missing(NOW)) == 2
    assert keys.seconds_until_refresh(NOW) == 0.0
    keys.add([key_set(a, PSI_A, NOW - period), key_set(a, PSI_A, NOW + period)])
    assert keys.missing(NOW) == []
    assert 1.0 <= keys.seconds_until_refresh(NOW) <= mcx_ear.REFRESH_CEILING
    keys.prune(NOW + period)  # a period later, the oldest set is no longer wanted
    assert len(keys.periods) == 2
    with pytest.raises(Exception, match="another user"):
        keys.add([key_set(a, ALICE, NOW)])


def test_refresh_fetches_the_missing_periods(systems: Systems, monkeypatch: pytest.MonkeyPatch) -> None:
    a = systems.a
    keys = signing_keys(a)
    asked: list[list[int]] = []

    async def fetch(url: str, context: object, **arguments: object) -> list[object]:
        periods = list(arguments["periods"])  # type: ignore[call-overload]
        asked.append(periods)
        return [kms_of(a).provision(PSI_A, [number])[0] for number in periods]

    monkeypatch.setattr(mcx_ear, "fetch_key_sets", fetch)
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) > 1:
            raise asyncio.CancelledError

    access = mcx_ear.KmsAccess("https://127.0.0.1:1", None, "kms.a.mc.example")  # type: ignore[arg-type]

    async def scenario() -> None:
        with pytest.raises(asyncio.CancelledError):
            await mcx_ear.refresh_signing_keys(keys, access, clock=lambda: NOW, sleep=sleep)

    asyncio.run(scenario())
    assert sleeps[0] == 0.0 and sleeps[1] >= 1.0
    assert len(asked) == 1 and len(asked[0]) == 2
    assert keys.missing(NOW) == []
