"""Sealed topology hiding (topology.py) across two IS proxies, sans-IO, with hand-built SIP.

System A hides its inside behind IS proxy A, system B behind IS proxy B; each border runs two
instances built from the same sealing key (A1/A2, B1/B2).  Every message goes through one instance
and its answer or the next request of the dialog through the other, so any instance restores what
any other sealed (ARCHITECTURE.md §4; field-notes.md §3.6 lists the shapes covered here).

Hops are simulated as real elements behave: the UAC alice sits behind the SIP core and the MCX
server of A (both record-route), the UAS bob behind the MCX server and the SIP core of B; the IS
proxies stamp ``received``/``rport`` like ``IsProxy`` does, then restore and hide.  User agents
build in-dialog requests from their route set exactly as RFC 3261 §12 says (UAC: reversed
Record-Route of the 2xx; UAS: Record-Route of the request; Request-URI: the remote Contact), and
the subscriber of RFC 6665 §4.1.2.4 builds its dialog from a NOTIFY that overtakes the 200.

Every message on SIP-3 is checked for any internal name, address, port, Via, Contact or Call-ID
of either system; every message delivered inside a system is checked for the other system's.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import pytest

from mcinterconnect.border.sealing import Sealer
from mcinterconnect.border.topology import Face, Side, TopologyError, TopologyHider
from mcinterconnect.sip.message import Headers, SipMessage, SipRequest, SipResponse, make_response
from mcinterconnect.sip.proxy import MAGIC_COOKIE, next_hop, stamp_received
from mcinterconnect.sip.uri import NameAddr, SipUri, Via

KEY_A = bytes(range(64))
KEY_B = bytes(range(100, 164))
KEY_A_NEW = bytes(range(1, 65))

A_INTERNAL = Face("10.1.0.5", 15080, "tcp")
A_EXTERNAL = Face("isproxy.a.mc.example", 5061, "tls")
B_INTERNAL = Face("10.2.0.5", 25080, "tcp")
B_EXTERNAL = Face("isproxy.b.mc.example", 5061, "tls")

#: Where the IS proxies connect from on SIP-3 (public, may be seen by the partner).
A_SIP3_SOURCE = ("192.0.2.1", 41000)
B_SIP3_SOURCE = ("192.0.2.2", 42000)


@dataclass(frozen=True)
class Node:
    """An internal proxy: named by ``host`` in Via and Record-Route, sending from ``ip``."""

    host: str
    ip: str
    port: int

    def via(self, branch: str) -> str:
        return f"SIP/2.0/TCP {self.host}:{self.port};branch={branch};rport"

    def record_route(self) -> str:
        return f"<sip:{self.host}:{self.port};transport=tcp;lr>"


A_CORE = Node("sipcore.a.internal", "10.1.0.11", 15070)
A_MCX = Node("mcx.a.internal", "10.1.0.12", 15072)
B_MCX = Node("mcx.b.internal", "10.2.0.12", 25072)
B_CORE = Node("sipcore.b.internal", "10.2.0.11", 25070)
#: UAC → IS proxy A, and IS proxy B → UAS (record-routing proxies on the way).
A_PATH = (A_CORE, A_MCX)
B_PATH = (B_MCX, B_CORE)


@dataclass
class UserAgent:
    """A user agent: its public MC service ID and its internal device address and name."""

    aor: str
    ip: str
    port: int
    device: str  # internal host name, found in its Call-IDs and User-Agent header
    branches: Iterator[int] = field(default_factory=itertools.count)

    @property
    def contact_uri(self) -> str:
        user = self.aor.split(":", 1)[1].split("@", 1)[0]
        return f"sip:{user}@{self.ip}:{self.port};transport=tcp"

    @property
    def contact(self) -> str:
        return f'<{self.contact_uri}>;+g.3gpp.icsi-ref="urn%3Aurn-7%3A3gpp-service.ims.icsi.mcptt"'

    def via(self, branch: str | None = None) -> str:
        branch = branch or f"{MAGIC_COOKIE}{self.device.split('.')[0]}-{next(self.branches)}"
        return f"SIP/2.0/TCP {self.ip}:{self.port};branch={branch};rport"


ALICE = UserAgent("sip:alice@a.mc.example", "10.1.0.21", 15062, "ua1.a.internal")
BOB = UserAgent("sip:bob@b.mc.example", "10.2.0.31", 25062, "ua7.b.internal")

A_MARKERS = [
    *(n.host for n in A_PATH),
    *(n.ip for n in A_PATH),
    *(f"{n.host}:{n.port}" for n in A_PATH),
    ALICE.ip,
    f"{ALICE.ip}:{ALICE.port}",
    ALICE.device,
    A_INTERNAL.host,
    A_INTERNAL.hostport(),
]
B_MARKERS = [
    *(n.host for n in B_PATH),
    *(n.ip for n in B_PATH),
    *(f"{n.host}:{n.port}" for n in B_PATH),
    BOB.ip,
    f"{BOB.ip}:{BOB.port}",
    BOB.device,
    B_INTERNAL.host,
    B_INTERNAL.hostport(),
]
A_PORTS = (A_CORE.port, A_MCX.port, ALICE.port, A_INTERNAL.port)
B_PORTS = (B_CORE.port, B_MCX.port, BOB.port, B_INTERNAL.port)


def hider(key: bytes | list[tuple[int, bytes]], system: str) -> TopologyHider:
    keys = [(1, key)] if isinstance(key, bytes) else key
    if system == "A":
        return TopologyHider(Sealer(keys), A_INTERNAL, A_EXTERNAL, A_MARKERS)
    return TopologyHider(Sealer(keys), B_INTERNAL, B_EXTERNAL, B_MARKERS)


# ------------------------------------------------------------------------- leak checks


def secrets_of(system: str) -> list[str]:
    """Everything of ``system``'s inside that must never show outside it."""
    if system == "A":
        return ["a.internal", "10.1.0.", ALICE.contact_uri, "a84b4c76e66710", "5e1f09a7", *A_MARKERS]
    return ["b.internal", "10.2.0.", BOB.contact_uri, *B_MARKERS]


def leaks(message: SipMessage, system: str) -> list[str]:
    text = message.to_bytes().decode("utf-8").lower()
    found = [secret for secret in secrets_of(system) if secret.lower() in text]
    for port in A_PORTS if system == "A" else B_PORTS:
        # A base64url token is made of [A-Za-z0-9_-]: a port standing alone is not inside one.
        if re.search(rf"(?<![\w-]){port}(?![\w-])", text):
            found.append(str(port))
    return found


def assert_hidden(message: SipMessage, *systems: str) -> None:
    for system in systems:
        found = leaks(message, system)
        assert not found, f"{system}'s topology leaks {found} in:\n{message.to_bytes().decode()}"


# -------------------------------------------------------------------- the two borders


class Border:
    """Two instances of one IS proxy sharing a key; ``swap`` exchanges their roles."""

    def __init__(self, system: str, key: bytes, *, swap: bool) -> None:
        self.instances = (hider(key, system), hider(key, system))
        self.swap = swap
        self.used: list[int] = []

    def instance(self, arrived_on: Side) -> TopologyHider:
        # What arrives inside goes through one instance, what arrives from the partner through the
        # other: a response and the request it answers never meet the same instance.
        index = (arrived_on is Side.EXTERNAL) ^ self.swap
        self.used.append(index)
        return self.instances[index]

    def request(
        self, request: SipRequest, arrived_on: Side, remote: tuple[str, int]
    ) -> tuple[SipRequest, SipRequest]:
        """As ``IsProxy`` does: stamp received/rport, restore, hide; returns (as received, as sent)."""
        received = request.copy()
        stamp_received(received, remote)
        work = received.copy()
        hider_ = self.instance(arrived_on)
        dialog_key = hider_.restore_request(work, arrived_on)
        hider_.hide_request(work, arrived_on, dialog_key)
        return received, work

    def response(self, response: SipResponse, arrived_on: Side) -> SipResponse:
        work = response.copy()
        self.instance(arrived_on).restore_response(work, arrived_on)
        return work


@dataclass
class Crossing:
    """One message's trip: what each IS proxy received, what crossed SIP-3, what was delivered."""

    at_first_border: SipMessage
    on_sip3: SipMessage
    out_of_second_border: SipMessage
    delivered: SipMessage

    def delivered_request(self) -> SipRequest:
        assert isinstance(self.delivered, SipRequest)
        return self.delivered

    def delivered_response(self) -> SipResponse:
        assert isinstance(self.delivered, SipResponse)
        return self.delivered


class World:
    """System A (alice, A's proxies, IS proxy A) and system B, joined by SIP-3."""

    def __init__(self, *, swap: bool = False) -> None:
        self.a = Border("A", KEY_A, swap=swap)
        self.b = Border("B", KEY_B, swap=swap)
        self.sip3: list[SipMessage] = []
        self.inside: list[SipMessage] = []
        self.ports = itertools.count(40001)

    def _sip3(self, message: SipMessage) -> None:
        assert_hidden(message, "A", "B")
        for name in ("Server", "User-Agent"):
            assert name not in message.headers, f"{name} crossed SIP-3"
        self.sip3.append(message)

    def _inside(self, *messages: SipMessage) -> None:
        self.inside.extend(messages)

    def finish(self) -> None:
        """No Call-ID, Via or Contact seen inside either system ever crossed SIP-3, and both
        instances of both borders took part."""
        secrets = set()
        for message in self.inside:
            secrets.add(message.call_id)
            secrets.update(message.vias)
            secrets.update(message.headers.get_all("Contact"))
            secrets.update(message.headers.get_all("Record-Route"))
        for message in self.sip3:
            data = message.to_bytes().decode()
            assert not [secret for secret in secrets if secret in data]
            assert message.call_id not in {m.call_id for m in self.inside}
        assert set(self.a.used) == {0, 1}
        assert set(self.b.used) == {0, 1}

    # Requests ---------------------------------------------------------------------------
    def a_to_b(self, request: SipRequest, *, record_route: bool | None = None) -> Crossing:
        """A request of alice's side, from alice's device to bob's device."""
        rr = _record_routes(request) if record_route is None else record_route
        at_a = through_proxies(request, A_PATH, record_route=rr, toward=A_INTERNAL)
        received, out_a = self.a.request(at_a, Side.INTERNAL, (A_MCX.ip, next(self.ports)))
        self._sip3(out_a)
        _, out_b = self.b.request(out_a, Side.EXTERNAL, A_SIP3_SOURCE)
        assert_hidden(out_b, "A")
        delivered = through_proxies(out_b, B_PATH, record_route=rr, toward=None)
        assert_hidden(delivered, "A")
        self._inside(request, received, out_b, delivered)
        return Crossing(received, out_a, out_b, delivered)

    def b_to_a(self, request: SipRequest, *, record_route: bool | None = None) -> Crossing:
        """A request of bob's side, from bob's device to alice's device."""
        rr = _record_routes(request) if record_route is None else record_route
        at_b = through_proxies(request, B_PATH[::-1], record_route=rr, toward=B_INTERNAL)
        received, out_b = self.b.request(at_b, Side.INTERNAL, (B_MCX.ip, next(self.ports)))
        self._sip3(out_b)
        _, out_a = self.a.request(out_b, Side.EXTERNAL, B_SIP3_SOURCE)
        assert_hidden(out_a, "B")
        delivered = through_proxies(out_a, A_PATH[::-1], record_route=rr, toward=None)
        assert_hidden(delivered, "B")
        self._inside(request, received, out_a, delivered)
        return Crossing(received, out_b, out_a, delivered)

    # Responses --------------------------------------------------------------------------
    def b_answers(self, response: SipResponse) -> Crossing:
        """A response of bob's device to a request that came from alice's side."""
        at_b = response_through(response, B_PATH[::-1])
        out_b = self.b.response(at_b, Side.INTERNAL)
        self._sip3(out_b)
        out_a = self.a.response(out_b, Side.EXTERNAL)
        assert_hidden(out_a, "B")
        delivered = response_through(out_a, A_PATH[::-1])
        assert_hidden(delivered, "B")
        self._inside(response, at_b, out_a, delivered)
        return Crossing(at_b, out_b, out_a, delivered)

    def a_answers(self, response: SipResponse) -> Crossing:
        """A response of alice's device to a request that came from bob's side."""
        at_a = response_through(response, A_PATH)
        out_a = self.a.response(at_a, Side.INTERNAL)
        self._sip3(out_a)
        out_b = self.b.response(out_a, Side.EXTERNAL)
        assert_hidden(out_b, "A")
        delivered = response_through(out_b, B_PATH)
        assert_hidden(delivered, "A")
        self._inside(response, at_a, out_b, delivered)
        return Crossing(at_a, out_a, out_b, delivered)


def _record_routes(request: SipRequest) -> bool:
    # Proxies record-route dialog-creating requests, and every NOTIFY of a subscription they
    # record-routed (RFC 6665 §4.3); they leave other in-dialog requests alone.
    initial = NameAddr.parse(request.headers.get("To") or "").tag is None
    return (initial and request.method in ("INVITE", "SUBSCRIBE")) or request.method == "NOTIFY"


def _hop_address(node: Node | Face) -> tuple[str, int]:
    return (node.ip, node.port) if isinstance(node, Node) else (node.host, node.port)


def _sends_to(message: SipRequest, node: Node | Face) -> None:
    """Loose routing (RFC 3261 §16.12): the next hop is the top Route, else the Request-URI."""
    address = next_hop(message, "tcp")
    expected = {_hop_address(node), (node.host, node.port)}
    assert (address.host, address.port) in expected, f"request goes to {address}, not to {node}"


def through_proxies(
    request: SipRequest, path: Iterable[Node], *, record_route: bool, toward: Face | None
) -> SipRequest:
    """Forward through internal proxies: pop own Route, push Via (branch stable for a CANCEL or a
    non-2xx ACK, as RFC 3261 §16.11 asks), record-route if asked; check the next hop each time."""
    message = request.copy()
    hops = list(path)
    in_dialog = NameAddr.parse(message.headers.get("To") or "").tag is not None
    for index, node in enumerate(hops):
        if (in_dialog and message.method not in ("ACK", "CANCEL")) or message.headers.get("Route"):
            _sends_to(message, node)
        routes = message.headers.get_all("Route")
        if routes and NameAddr.parse(routes[0]).sip_uri.host == node.host:
            message.headers.replace_all("Route", routes[1:])
        incoming = Via.parse(message.vias[0]).branch or ""
        digest = hashlib.sha256(f"{node.host}|{incoming}".encode()).hexdigest()[:16]
        message.headers.add("Via", node.via(MAGIC_COOKIE + digest), first=True)
        if record_route:
            message.headers.add("Record-Route", node.record_route(), first=True)
        if index == len(hops) - 1 and toward is not None and in_dialog and message.method != "ACK":
            _sends_to(message, toward)
    return message


def response_through(response: SipResponse, path: Iterable[Node]) -> SipResponse:
    """A response back through proxies: each removes its own Via (RFC 3261 §16.7 step 3)."""
    message = response.copy()
    for node in path:
        top = Via.parse(message.vias[0])
        assert (top.host, top.port) == (node.host, node.port), f"response reached {node} with {top}"
        message.headers.pop_first("Via")
    return message


# ------------------------------------------------------------------------- user agents


@dataclass
class Dialog:
    """A UA's dialog state (RFC 3261 §12.1)."""

    call_id: str
    local_uri: str
    local_tag: str
    remote_uri: str
    remote_tag: str
    remote_target: str
    route_set: list[str]
    cseq: int


def initial_request(
    ua: UserAgent, method: str, *, to: str, call_id: str, cseq: int = 1, via: str | None = None
) -> SipRequest:
    headers = Headers(
        [
            ("Via", via or ua.via()),
            ("Max-Forwards", "70"),
            ("From", f"<{ua.aor}>;tag=ftag-{ua.device.split('.')[0]}"),
            ("To", f"<{to}>"),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} {method}"),
            ("User-Agent", f"MCPTT-Client/2.1 ({ua.device})"),
        ]
    )
    if method in ("INVITE", "SUBSCRIBE"):
        headers.add("Contact", ua.contact)
    if method == "SUBSCRIBE":
        headers.add("Event", "conference")
        headers.add("Expires", "600")
    body = b""
    if method == "MESSAGE":
        headers.add("Content-Type", "text/plain")
        body = b"short data for bob"
    return SipRequest(headers=headers, body=body, method=method, uri=to)


def answer(request: SipRequest, status: int, ua: UserAgent, *, to_tag: str) -> SipResponse:
    """A UAS response: Via, From, To, Call-ID, CSeq copied; Record-Route copied and Contact added
    on a response that establishes a dialog (RFC 3261 §12.1.1)."""
    response = make_response(request, status, to_tag=to_tag)
    response.headers.add("Server", f"MCPTT-Server/3.0 ({ua.device})")
    establishes = request.method in ("INVITE", "SUBSCRIBE", "NOTIFY") and 100 < status < 300
    if establishes:
        for value in request.headers.get_all("Record-Route"):
            response.headers.add("Record-Route", value)
    if establishes or (request.method == "INVITE" and 100 < status < 300):
        response.headers.add("Contact", ua.contact)
    return response


def uac_dialog(ua: UserAgent, request: SipRequest, response: SipResponse) -> Dialog:
    """UAC side: route set = Record-Route of the response, reversed (RFC 3261 §12.1.2)."""
    return Dialog(
        call_id=response.call_id,
        local_uri=ua.aor,
        local_tag=_tag(response.headers.get("From")),
        remote_uri=NameAddr.parse(response.headers.get("To") or "").uri,
        remote_tag=_tag(response.headers.get("To")),
        remote_target=NameAddr.parse(response.headers.get("Contact") or "").uri,
        route_set=response.headers.get_all("Record-Route")[::-1],
        cseq=request.cseq[0],
    )


def uas_dialog(ua: UserAgent, request: SipRequest, to_tag: str) -> Dialog:
    """UAS side: route set = Record-Route of the request, in order (RFC 3261 §12.1.1)."""
    return Dialog(
        call_id=request.call_id,
        local_uri=ua.aor,
        local_tag=to_tag,
        remote_uri=NameAddr.parse(request.headers.get("From") or "").uri,
        remote_tag=_tag(request.headers.get("From")),
        remote_target=NameAddr.parse(request.headers.get("Contact") or "").uri,
        route_set=request.headers.get_all("Record-Route"),
        cseq=0,
    )


def _tag(value: str | None) -> str:
    tag = NameAddr.parse(value or "").tag
    assert tag is not None
    return tag


def in_dialog(ua: UserAgent, dialog: Dialog, method: str, *, via: str | None = None) -> SipRequest:
    """A request within the dialog (RFC 3261 §12.2.1.1)."""
    if method != "ACK":
        dialog.cseq += 1
    headers = Headers([("Via", via or ua.via()), ("Max-Forwards", "70")])
    for route in dialog.route_set:
        headers.add("Route", route)
    headers.add("From", f"<{dialog.local_uri}>;tag={dialog.local_tag}")
    headers.add("To", f"<{dialog.remote_uri}>;tag={dialog.remote_tag}")
    headers.add("Call-ID", dialog.call_id)
    headers.add("CSeq", f"{dialog.cseq} {method}")
    if method in ("INVITE", "SUBSCRIBE", "NOTIFY", "UPDATE"):
        headers.add("Contact", ua.contact)
    if method == "NOTIFY":
        headers.add("Event", "conference")
    return SipRequest(headers=headers, method=method, uri=dialog.remote_target)


# ------------------------------------------------------------------------------ helpers


CALL_ID_A = "a84b4c76e66710@ua1.a.internal"
PSI_B = "sip:mcptt-server@b.mc.example"


@pytest.fixture(params=[False, True], ids=["A1B1-first", "A2B2-first"])
def world(request: pytest.FixtureRequest) -> World:
    return World(swap=bool(request.param))


def as_request(message: SipMessage) -> SipRequest:
    assert isinstance(message, SipRequest)
    return message


def route_values(message: SipMessage) -> list[str]:
    return message.headers.get_all("Route")


def branch_of(message: SipMessage) -> str:
    branch = Via.parse(message.vias[0]).branch
    assert branch is not None
    return branch


def establish_call(world: World) -> tuple[Dialog, Dialog, SipRequest]:
    """INVITE / 180 / 200 / ACK from alice to bob; returns alice's and bob's dialogs."""
    invite = initial_request(ALICE, "INVITE", to=PSI_B, call_id=CALL_ID_A)
    sent = world.a_to_b(invite)
    at_bob = sent.delivered
    assert isinstance(at_bob, SipRequest)
    # Bob's view: one Via and Record-Route of IS proxy B behind B's proxies, IS proxy B's Contact.
    assert [Via.parse(v).host for v in at_bob.vias] == [B_CORE.host, B_MCX.host, B_INTERNAL.host]
    assert at_bob.headers.get_all("Record-Route")[:2] == [B_CORE.record_route(), B_MCX.record_route()]
    assert len(at_bob.headers.get_all("Record-Route")) == 3
    assert at_bob.uri == PSI_B
    bob_contact = NameAddr.parse(at_bob.headers.get("Contact") or "")
    assert B_INTERNAL.matches(bob_contact.sip_uri.host, bob_contact.sip_uri.port)
    assert bob_contact.params == NameAddr.parse(ALICE.contact).params  # feature tags kept
    assert at_bob.call_id != CALL_ID_A

    ringing = world.b_answers(answer(at_bob, 180, BOB, to_tag="bobtag"))
    ok = world.b_answers(answer(at_bob, 200, BOB, to_tag="bobtag"))
    for response in (ringing, ok):
        # What IS proxy A received from inside comes back exactly, and so does alice's own Via.
        assert response.out_of_second_border.vias == sent.at_first_border.vias
        assert response.delivered.vias == invite.vias
        assert response.delivered.call_id == CALL_ID_A
    bob_dialog = uas_dialog(BOB, at_bob, "bobtag")
    assert isinstance(ringing.delivered, SipResponse)
    assert isinstance(ok.delivered, SipResponse)
    early = uac_dialog(ALICE, invite, ringing.delivered)
    alice_dialog = uac_dialog(ALICE, invite, ok.delivered)
    assert (early.route_set, early.remote_target) == (alice_dialog.route_set, alice_dialog.remote_target)
    # Alice's route set: her own proxies, then IS proxy A's inside face, nothing of B.
    assert alice_dialog.route_set[:2] == [A_CORE.record_route(), A_MCX.record_route()]
    assert len(alice_dialog.route_set) == 3
    own = NameAddr.parse(alice_dialog.route_set[2]).sip_uri
    assert A_INTERNAL.matches(own.host, own.port, own.param("transport"))
    target = SipUri.parse(alice_dialog.remote_target)
    assert A_INTERNAL.matches(target.host, target.port, target.param("transport"))

    ack = world.a_to_b(in_dialog(ALICE, alice_dialog, "ACK"))
    check_arrival(ack.delivered, bob_dialog, BOB)
    return alice_dialog, bob_dialog, invite


def check_arrival(request: SipMessage, receiver_dialog: Dialog, receiver: UserAgent) -> None:
    """An in-dialog request reached the receiver as its own dialog expects it."""
    assert isinstance(request, SipRequest)
    assert request.uri == receiver.contact_uri
    assert route_values(request) == []  # every hop of the route set was visited and popped
    assert request.call_id == receiver_dialog.call_id
    assert _tag(request.headers.get("To")) == receiver_dialog.local_tag
    assert _tag(request.headers.get("From")) == receiver_dialog.remote_tag


# --------------------------------------------------------------------------- the flows


def test_invite_dialog_reinvite_from_callee_and_bye_from_caller(world: World) -> None:
    alice_dialog, bob_dialog, _ = establish_call(world)

    # re-INVITE from bob (callee): route set = Record-Route of the INVITE he received.
    reinvite = in_dialog(BOB, bob_dialog, "INVITE")
    crossing = world.b_to_a(reinvite)
    # IS proxy A put back alice's side route set and target before A's proxies got it.
    out_a = crossing.out_of_second_border
    assert isinstance(out_a, SipRequest)
    assert route_values(out_a) == [A_MCX.record_route(), A_CORE.record_route()]
    assert out_a.uri == ALICE.contact_uri
    check_arrival(crossing.delivered, alice_dialog, ALICE)
    # Bob's Contact reaches alice as the same remote target as before (no change of target).
    contact = NameAddr.parse(crossing.delivered.headers.get("Contact") or "")
    assert contact.uri == alice_dialog.remote_target

    ok = world.a_answers(answer(crossing.delivered_request(), 200, ALICE, to_tag=bob_dialog.remote_tag))
    assert ok.out_of_second_border.vias == crossing.at_first_border.vias
    assert ok.delivered.vias == reinvite.vias
    assert ok.delivered.call_id == bob_dialog.call_id
    assert NameAddr.parse(ok.delivered.headers.get("Contact") or "").uri == bob_dialog.remote_target
    ack = world.b_to_a(in_dialog(BOB, bob_dialog, "ACK"))
    check_arrival(ack.delivered, alice_dialog, ALICE)

    # BYE from alice (caller): route set = reversed Record-Route of the 2xx.
    bye_request = in_dialog(ALICE, alice_dialog, "BYE")
    bye = world.a_to_b(bye_request)
    out_b = bye.out_of_second_border
    assert isinstance(out_b, SipRequest)
    assert route_values(out_b) == [B_MCX.record_route(), B_CORE.record_route()]
    assert out_b.uri == BOB.contact_uri
    check_arrival(bye.delivered, bob_dialog, BOB)
    done = world.b_answers(answer(bye.delivered_request(), 200, BOB, to_tag=bob_dialog.local_tag))
    assert done.out_of_second_border.vias == bye.at_first_border.vias
    assert done.delivered.vias == bye_request.vias
    assert done.delivered.call_id == CALL_ID_A
    world.finish()
    # One Call-ID for the whole dialog on SIP-3, unrelated to the inside one.
    assert {m.call_id for m in world.sip3} == {world.sip3[0].call_id}


def test_bye_from_callee(world: World) -> None:
    alice_dialog, bob_dialog, _ = establish_call(world)
    bye = in_dialog(BOB, bob_dialog, "BYE")
    crossing = world.b_to_a(bye)
    out_a = crossing.out_of_second_border
    assert isinstance(out_a, SipRequest)
    assert route_values(out_a) == [A_MCX.record_route(), A_CORE.record_route()]
    assert out_a.uri == ALICE.contact_uri
    check_arrival(crossing.delivered, alice_dialog, ALICE)
    assert crossing.delivered.call_id == CALL_ID_A
    ok = world.a_answers(answer(crossing.delivered_request(), 200, ALICE, to_tag=alice_dialog.local_tag))
    assert ok.out_of_second_border.vias == crossing.at_first_border.vias
    assert ok.delivered.vias == bye.vias
    assert ok.delivered.call_id == bob_dialog.call_id


def test_cancel_of_pending_invite_and_ack_of_487(world: World) -> None:
    invite = initial_request(ALICE, "INVITE", to=PSI_B, call_id=CALL_ID_A)
    sent = world.a_to_b(invite)
    at_bob = sent.delivered_request()
    world.b_answers(answer(at_bob, 180, BOB, to_tag="bobtag"))

    # RFC 3261 §9.1: same Request-URI, Call-ID, From, To, CSeq number and top Via as the INVITE.
    cancel = invite.copy()
    cancel.method = "CANCEL"
    cancel.headers.set("CSeq", "1 CANCEL")
    cancel.headers.remove("Contact")
    cancelled = world.a_to_b(cancel, record_route=False)
    # It arrived at IS proxy A over another connection (other rport), through the other instance,
    # yet its branch on SIP-3 and at bob is the INVITE's: bob matches it to his INVITE transaction.
    assert cancelled.at_first_border.vias != sent.at_first_border.vias
    assert branch_of(cancelled.on_sip3) == branch_of(sent.on_sip3)
    assert branch_of(cancelled.delivered) == branch_of(sent.delivered)
    assert cancelled.delivered.vias[:2] == sent.delivered.vias[:2]
    assert cancelled.delivered_request().uri == at_bob.uri
    assert cancelled.delivered.call_id == at_bob.call_id

    ok = world.b_answers(answer(cancelled.delivered_request(), 200, BOB, to_tag="bobtag"))
    assert ok.delivered.vias == cancel.vias
    terminated = world.b_answers(answer(at_bob, 487, BOB, to_tag="bobtag"))
    assert terminated.out_of_second_border.vias == sent.at_first_border.vias
    assert terminated.delivered.vias == invite.vias
    assert terminated.delivered.call_id == CALL_ID_A
    assert terminated.delivered.headers.get("Record-Route") is None

    # ACK for the non-2xx: the INVITE's top Via and Request-URI, To with the 487's tag.
    ack = invite.copy()
    ack.method = "ACK"
    ack.headers.set("CSeq", "1 ACK")
    ack.headers.set("To", terminated.delivered.headers.get("To") or "")
    ack.headers.remove("Contact")
    acked = world.a_to_b(ack, record_route=False)
    assert branch_of(acked.on_sip3) == branch_of(sent.on_sip3)
    assert branch_of(acked.delivered) == branch_of(sent.delivered)
    assert acked.delivered_request().uri == at_bob.uri
    assert acked.delivered.call_id == at_bob.call_id
    world.finish()


def test_message_and_200(world: World) -> None:
    message = initial_request(ALICE, "MESSAGE", to=PSI_B, call_id="c0ffee@ua1.a.internal")
    message.headers.add("Subject", "status")
    sent = world.a_to_b(message)
    delivered = sent.delivered_request()
    assert delivered.body == b"short data for bob"
    assert delivered.headers.get("Subject") == "status"
    assert delivered.headers.get("Record-Route") is None
    assert delivered.headers.get("Contact") is None
    assert delivered.uri == PSI_B
    ok = world.b_answers(answer(delivered, 200, BOB, to_tag="m1"))
    assert ok.out_of_second_border.vias == sent.at_first_border.vias
    assert ok.delivered.vias == message.vias
    assert ok.delivered.call_id == "c0ffee@ua1.a.internal"
    assert ok.delivered.headers.get("Record-Route") is None


@pytest.mark.parametrize("notify_first", [True, False], ids=["notify-before-200", "notify-after-200"])
def test_subscribe_notify_refresh_and_terminate(world: World, notify_first: bool) -> None:
    subscribe = initial_request(ALICE, "SUBSCRIBE", to=PSI_B, call_id="5e1f09a7-sub@ua1.a.internal")
    sent = world.a_to_b(subscribe)
    at_notifier = sent.delivered_request()
    notifier = uas_dialog(BOB, at_notifier, "ntag")
    ok_to_subscribe = answer(at_notifier, 200, BOB, to_tag="ntag")
    notify = in_dialog(BOB, notifier, "NOTIFY")
    notify.headers.add("Subscription-State", "active;expires=600")

    def deliver_notify() -> Dialog:
        crossing = world.b_to_a(notify)
        request = crossing.delivered_request()
        assert request.uri == ALICE.contact_uri
        assert route_values(request) == []
        assert request.call_id == subscribe.call_id
        assert _tag(request.headers.get("To")) == _tag(subscribe.headers.get("From"))
        # RFC 6665 §4.1.2.4: a NOTIFY may create the subscriber's dialog; its route set is the
        # NOTIFY's Record-Route, in order, as a UAS takes it.
        dialog = uas_dialog(ALICE, request, _tag(request.headers.get("To")))
        response = world.a_answers(answer(request, 200, ALICE, to_tag=dialog.local_tag))
        assert response.delivered.vias == notify.vias
        assert response.delivered.call_id == notifier.call_id
        return dialog

    def deliver_ok() -> Dialog:
        crossing = world.b_answers(ok_to_subscribe)
        assert crossing.out_of_second_border.vias == sent.at_first_border.vias
        assert crossing.delivered.vias == subscribe.vias
        assert crossing.delivered.call_id == subscribe.call_id
        response = crossing.delivered
        assert isinstance(response, SipResponse)
        return uac_dialog(ALICE, subscribe, response)

    if notify_first:
        from_notify, from_ok = deliver_notify(), deliver_ok()
    else:
        from_ok, from_notify = deliver_ok(), deliver_notify()
    # Whichever came first, the subscriber learns one route set and one remote target.
    assert from_notify.route_set == from_ok.route_set
    assert from_notify.remote_target == from_ok.remote_target
    assert from_notify.call_id == from_ok.call_id == subscribe.call_id
    subscriber = from_notify if notify_first else from_ok
    subscriber.cseq = 1

    # Refresh SUBSCRIBE from the subscriber's route set.
    refresh = in_dialog(ALICE, subscriber, "SUBSCRIBE")
    refresh.headers.add("Event", "conference")
    refresh.headers.add("Expires", "600")
    refreshed = world.a_to_b(refresh)
    out_b = refreshed.out_of_second_border
    assert isinstance(out_b, SipRequest)
    assert route_values(out_b) == [B_MCX.record_route(), B_CORE.record_route()]
    assert out_b.uri == BOB.contact_uri
    check_arrival(refreshed.delivered, notifier, BOB)
    ok = world.b_answers(answer(refreshed.delivered_request(), 200, BOB, to_tag="ntag"))
    assert ok.delivered.vias == refresh.vias

    # Terminating NOTIFY.
    final = in_dialog(BOB, notifier, "NOTIFY")
    final.headers.add("Subscription-State", "terminated;reason=timeout")
    crossing = world.b_to_a(final)
    check_arrival(crossing.delivered, subscriber, ALICE)
    assert crossing.delivered.headers.get("Subscription-State") == "terminated;reason=timeout"
    done = world.a_answers(answer(crossing.delivered_request(), 200, ALICE, to_tag=subscriber.local_tag))
    assert done.delivered.vias == final.vias
    world.finish()


# ----------------------------------------------------------------------- tampered tokens


def _flip(token: str) -> str:
    """The token with one character in its middle replaced by another base64url character."""
    index = len(token) // 2
    return token[:index] + ("A" if token[index] != "A" else "B") + token[index + 1 :]


def _replace_param(text: str, name: str, value: str) -> str:
    return re.sub(rf"(;{name}=)[A-Za-z0-9_-]+", lambda m: m.group(1) + value, text, count=1)


def _param(text: str, name: str) -> str:
    match = re.search(rf";{name}=([A-Za-z0-9_-]+)", text)
    assert match is not None, f"no {name} in {text}"
    return match.group(1)


def test_tampered_via_tokens() -> None:
    world = World()
    invite = initial_request(ALICE, "INVITE", to=PSI_B, call_id=CALL_ID_A)
    sent = world.a_to_b(invite)
    response = world.b.response(
        response_through(answer(sent.delivered_request(), 180, BOB, to_tag="t"), B_PATH[::-1]), Side.INTERNAL
    )
    top = response.vias[0]
    a = hider(KEY_A, "A")

    # The sealed stack (vs) decides where a response goes: altered, it is refused.
    altered_stack = response.copy()
    altered_stack.headers.replace_all(
        "Via", [_replace_param(top, "vs", _flip(_param(top, "vs"))), *response.vias[1:]]
    )
    with pytest.raises(TopologyError) as refused:
        a.restore_response(altered_stack, Side.EXTERNAL)
    assert refused.value.status == 403

    # The branch is a transaction id, not routing data: altered, the response still goes exactly
    # where the sealed stack says, and nothing else comes out.
    branch = _param(top, "branch")
    altered_branch = response.copy()
    altered_branch.headers.replace_all(
        "Via",
        [
            _replace_param(top, "branch", MAGIC_COOKIE + _flip(branch[len(MAGIC_COOKIE) :])),
            *response.vias[1:],
        ],
    )
    a.restore_response(altered_branch, Side.EXTERNAL)
    assert altered_branch.vias == sent.at_first_border.vias

    # A Via that carries no sealed stack is not ours.
    foreign = response.copy()
    foreign.headers.replace_all("Via", ["SIP/2.0/TLS isproxy.a.mc.example:5061;branch=z9hG4bKx;rport"])
    with pytest.raises(TopologyError):
        a.restore_response(foreign, Side.EXTERNAL)


def test_tampered_route_contact_and_call_id_tokens() -> None:
    world = World()
    alice_dialog, bob_dialog, _ = establish_call(world)
    bye = in_dialog(BOB, bob_dialog, "BYE")
    at_b = through_proxies(bye, B_PATH[::-1], record_route=False, toward=B_INTERNAL)
    _, on_sip3 = world.b.request(at_b, Side.INTERNAL, (B_MCX.ip, 40999))
    route = route_values(on_sip3)[0]
    assert _param(route, "th")

    a = hider(KEY_A, "A")
    altered_th = on_sip3.copy()
    altered_th.headers.replace_all("Route", [_replace_param(route, "th", _flip(_param(route, "th")))])
    with pytest.raises(TopologyError) as refused:
        a.restore_request(altered_th, Side.EXTERNAL)
    assert refused.value.status == 403

    altered_ct = on_sip3.copy()
    altered_ct.uri = _replace_param(on_sip3.uri, "ct", _flip(_param(on_sip3.uri, "ct")))
    with pytest.raises(TopologyError) as refused:
        a.restore_request(altered_ct, Side.EXTERNAL)
    assert refused.value.status == 403

    # The Request-URI names IS proxy A but carries no sealed target.
    bare = on_sip3.copy()
    bare.uri = f"sip:{A_EXTERNAL.hostport()};transport=tls"
    with pytest.raises(TopologyError) as refused:
        a.restore_request(bare, Side.EXTERNAL)
    assert refused.value.status == 404

    # The tokens are bound to the dialog's Call-ID on that side: with another Call-ID (an altered
    # one, or a new "dialog" made up by the partner around a token it saw) nothing verifies.
    altered_cid = on_sip3.copy()
    altered_cid.headers.set("Call-ID", _flip(on_sip3.call_id))
    with pytest.raises(TopologyError) as refused:
        a.restore_request(altered_cid, Side.EXTERNAL)
    assert refused.value.status == 403
    made_up = on_sip3.copy()
    made_up.method = "MESSAGE"
    made_up.headers.set("CSeq", "1 MESSAGE")
    made_up.headers.set("Call-ID", "brand-new-dialog")
    made_up.headers.set("To", "<sip:alice@a.mc.example>;tag=made-up")
    made_up.headers.remove("Route")
    with pytest.raises(TopologyError) as refused:
        a.restore_request(made_up, Side.EXTERNAL)
    assert refused.value.status == 403
    untouched = on_sip3.copy()
    a.restore_request(untouched, Side.EXTERNAL)
    a.hide_request(untouched, Side.EXTERNAL)
    assert untouched.call_id == alice_dialog.call_id == CALL_ID_A


def test_token_sealed_for_one_side_is_refused_on_the_other() -> None:
    world = World()
    invite = initial_request(ALICE, "INVITE", to=PSI_B, call_id=CALL_ID_A)
    sent = world.a_to_b(invite)
    on_sip3 = sent.on_sip3
    a = hider(KEY_A, "A")
    # ct and th that IS proxy A sealed toward the partner, replayed on its inside face.
    ct = _param(on_sip3.headers.get("Contact") or "", "ct")
    th = _param(on_sip3.headers.get("Record-Route") or "", "th")
    replay = initial_request(ALICE, "BYE", to=PSI_B, call_id=CALL_ID_A)
    replay.headers.set("To", f"<{PSI_B}>;tag=x")
    replay.uri = f"sip:{A_INTERNAL.hostport()};transport=tcp;ct={ct}"
    with pytest.raises(TopologyError):
        a.restore_request(replay.copy(), Side.INTERNAL)
    replay.uri = ALICE.contact_uri
    replay.headers.add("Route", f"<sip:{A_INTERNAL.hostport()};transport=tcp;lr;th={th}>")
    with pytest.raises(TopologyError):
        a.restore_request(replay.copy(), Side.INTERNAL)
    # The same tokens are good on the face they were sealed for, in their own dialog (the
    # Call-ID the partner sees).
    good = replay.copy()
    good.headers.set("Call-ID", on_sip3.call_id)
    good.uri = f"sip:{A_EXTERNAL.hostport()};transport=tls;ct={ct}"
    good.headers.set("Route", f"<sip:{A_EXTERNAL.hostport()};transport=tls;lr;th={th}>")
    assert a.restore_request(good, Side.EXTERNAL) is not None
    assert good.uri == ALICE.contact_uri
    assert route_values(good) == [A_MCX.record_route(), A_CORE.record_route()]

    # A Via stack sealed toward the partner does not open as one sealed toward the inside.
    response = make_response(as_request(on_sip3), 200)
    with pytest.raises(TopologyError):
        a.restore_response(response.copy(), Side.INTERNAL)
    a.restore_response(response, Side.EXTERNAL)
    assert response.vias == sent.at_first_border.vias

    # Tokens of the other border (B's key) open at neither face of A.
    b_tokens = sent.out_of_second_border
    ct_b = _param(b_tokens.headers.get("Contact") or "", "ct")
    for side, face in ((Side.INTERNAL, A_INTERNAL), (Side.EXTERNAL, A_EXTERNAL)):
        other = replay.copy()
        other.headers.remove("Route")
        other.uri = f"sip:{face.hostport()};transport={face.transport};ct={ct_b}"
        with pytest.raises(TopologyError):
            a.restore_request(other, side)


def test_key_rotation_restores_tokens_of_the_old_key() -> None:
    world = World()
    alice_dialog, bob_dialog, _ = establish_call(world)
    # IS proxy A's instances now seal with a new key and keep the old one for unsealing.
    rotated = [(2, KEY_A_NEW), (1, KEY_A)]
    world.a.instances = (hider(rotated, "A"), hider(rotated, "A"))

    # bob's BYE carries tokens (th, ct, Call-ID) IS proxy A sealed under the old key.
    bye = in_dialog(BOB, bob_dialog, "BYE")
    crossing = world.b_to_a(bye)
    check_arrival(crossing.delivered, alice_dialog, ALICE)
    assert route_values(crossing.out_of_second_border) == [A_MCX.record_route(), A_CORE.record_route()]
    # A dialog keeps the key it began with (id 1): its tokens and its Call-ID do not change in the
    # middle of the call, on either side, although both instances now seal new dialogs with id 2.
    vs = _param(crossing.out_of_second_border.vias[0], "vs")
    assert base64.urlsafe_b64decode(vs + "=" * (-len(vs) % 4))[0] == 1
    ok = world.a_answers(answer(crossing.delivered_request(), 200, ALICE, to_tag=alice_dialog.local_tag))
    assert ok.delivered.vias == bye.vias
    assert ok.on_sip3.call_id == crossing.on_sip3.call_id
    reinvite = world.a_to_b(in_dialog(ALICE, alice_dialog, "INVITE"))
    assert reinvite.on_sip3.call_id == crossing.on_sip3.call_id
    # A new dialog after the rotation is sealed with the new key.
    fresh = world.a_to_b(initial_request(ALICE, "MESSAGE", to=PSI_B, call_id="fresh@ua1.a.internal"))
    fresh_vs = _param(fresh.on_sip3.vias[0], "vs")
    assert base64.urlsafe_b64decode(fresh_vs + "=" * (-len(fresh_vs) % 4))[0] == 2

    # Responses to requests sealed before the rotation still find their way back.
    old_a = hider(KEY_A, "A")
    late = initial_request(ALICE, "MESSAGE", to=PSI_B, call_id="late@ua1.a.internal")
    at_a = through_proxies(late, A_PATH, record_route=False, toward=A_INTERNAL)
    stamp_received(at_a, (A_MCX.ip, 40500))
    sealed_before = at_a.copy()
    old_a.hide_request(sealed_before, Side.INTERNAL)
    response = make_response(sealed_before, 200, to_tag="z")
    world.a.instances[0].restore_response(response, Side.EXTERNAL)
    assert response.vias == at_a.vias
    assert response.call_id == "late@ua1.a.internal"
    # The old key alone cannot open what the new key sealed.
    with pytest.raises(TopologyError):
        old_a.restore_response(make_response(as_request(fresh.on_sip3), 200), Side.EXTERNAL)


# ------------------------------------------------------------------------ scrubbing


def test_server_user_agent_and_internal_headers_removed_toward_partner() -> None:
    a = hider(KEY_A, "A")
    request = initial_request(ALICE, "MESSAGE", to=PSI_B, call_id="s1@ua1.a.internal")
    request.headers.add("Alert-Info", f"<http://{A_CORE.host}/ring.wav>")
    request.headers.add("Call-Info", f"<sip:{A_MCX.ip}:{A_MCX.port}>;purpose=info")
    request.headers.add("Subject", "nothing internal here")
    request.headers.add("X-Trace", f"via {A_INTERNAL.hostport()}")
    request.headers.add("X-Count", "10.1.0.55 is not a configured address")
    hidden = request.copy()
    a.hide_request(hidden, Side.INTERNAL)
    for name in ("User-Agent", "Alert-Info", "Call-Info", "X-Trace"):
        assert name not in hidden.headers
    assert hidden.headers.get("Subject") == "nothing internal here"
    assert hidden.headers.get("X-Count") == "10.1.0.55 is not a configured address"
    assert hidden.body == request.body

    # A response leaving for the partner loses Server and any header naming an internal host.
    inside = make_response(request, 200, to_tag="r")
    inside.headers.add("Server", "MCPTT-Server/3.0")
    inside.headers.add("Warning", f'399 {A_CORE.host} "internal detail"')
    inside.headers.add("Subject", "kept")
    assert a.scrub(inside) == ["Server", "Warning"]
    assert "Server" not in inside.headers and "Warning" not in inside.headers
    assert inside.headers.get("Subject") == "kept"

    # Toward the inside nothing is scrubbed: what the partner sends is the partner's to hide.
    reply = make_response(hidden, 200, to_tag="r")
    reply.headers.add("Server", "partner/1.0")
    reply.headers.add("User-Agent", "partner/1.0")
    a.restore_response(reply, Side.EXTERNAL)
    assert reply.headers.get("Server") == reply.headers.get("User-Agent") == "partner/1.0"
    assert reply.vias == request.vias


@pytest.mark.parametrize("header", ["From", "To"])
def test_from_or_to_naming_an_internal_host_refused(header: str) -> None:
    a = hider(KEY_A, "A")
    request = initial_request(ALICE, "MESSAGE", to=PSI_B, call_id="s2@ua1.a.internal")
    value = f"<sip:alice@{ALICE.device}>;tag=1" if header == "From" else f"<sip:bob@{A_MCX.host}>"
    request.headers.set(header, value)
    with pytest.raises(TopologyError) as refused:
        a.hide_request(request, Side.INTERNAL)
    assert refused.value.status == 403
    assert header in refused.value.reason


def test_internal_name_inside_a_longer_name_is_not_a_leak() -> None:
    a = hider(KEY_A, "A")
    assert a.leaks(f"see {A_CORE.host}")
    assert a.leaks(f"sip:x@{ALICE.ip}:5060")
    assert not a.leaks(f"x{A_CORE.host}")
    assert not a.leaks(f"{ALICE.ip}9")
    assert not a.leaks(f"{A_CORE.host}.example.org")
