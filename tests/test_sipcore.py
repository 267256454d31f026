"""The SIP core, sans-IO: registrar for its own domains, asserted identity, and where a client's
requests may go (TS 33.180 11.1.1: a client talks to servers of its own system, through its MCX)."""

from __future__ import annotations

from mcinterconnect.services.sipcore import CLIENT_FACE, SERVER_FACE, SipCoreLogic
from mcinterconnect.sip.message import Headers, SipRequest, SipResponse
from mcinterconnect.sip.proxy import Forward
from mcinterconnect.sip.transport import Address, PeerInfo

CLIENT = Address("tcp", "127.0.10.1", 5060)
SERVER = Address("tcp", "127.0.10.1", 5062)
MCX = Address("tcp", "127.0.10.1", 5070)
IS_PROXY = Address("tcp", "127.0.10.1", 5080)
ALICE = "sip:alice@a.mc.example"
ALICE_CONTACT = "sip:alice@127.0.10.1:40001;transport=tcp"


def core() -> SipCoreLogic:
    return SipCoreLogic(
        domains=["a.mc.example"],
        client_face=CLIENT,
        server_face=SERVER,
        mcx_server=MCX,
        agent="a.mc.example",
        trusted_next_hops=[IS_PROXY],
    )


def peer(listener: str) -> PeerInfo:
    return PeerInfo("tcp", ("127.0.10.1", 40001), ("127.0.10.1", 5060), listener, None, 7)


def request(method: str, uri: str, *, to: str, extra: list[tuple[str, str]] | None = None) -> SipRequest:
    headers = Headers(
        [
            ("Via", "SIP/2.0/TCP 127.0.10.1:40001;branch=z9hG4bKclient1;rport"),
            ("Max-Forwards", "70"),
            ("From", f"<{ALICE}>;tag=f1"),
            ("To", to),
            ("Call-ID", "c1"),
            ("CSeq", f"1 {method}"),
            *(extra or []),
        ]
    )
    return SipRequest(headers=headers, method=method, uri=uri)


def registered() -> SipCoreLogic:
    logic = core()
    register = request(
        "REGISTER", "sip:a.mc.example", to=f"<{ALICE}>", extra=[("Contact", f"<{ALICE_CONTACT}>")]
    )
    (answer,) = logic.on_request(register, peer(CLIENT_FACE))
    assert isinstance(answer.message, SipResponse) and answer.message.status == 200
    return logic


def refusal(actions: list[Forward], status: int, words: str) -> None:
    (action,) = actions
    assert isinstance(action.message, SipResponse)
    assert action.message.status == status
    assert words in (action.message.headers.get("Warning") or "")


def test_registrar_serves_only_its_own_domains() -> None:
    logic = core()
    foreign = request(
        "REGISTER", "sip:a.mc.example", to="<sip:bob@b.mc.example>", extra=[("Contact", "<sip:b@h>")]
    )
    refusal(logic.on_request(foreign, peer(CLIENT_FACE)), 403, "serves only a.mc.example")
    assert logic.contacts_of("sip:bob@b.mc.example") == []


def test_unregistered_sender_refused_and_asserted_identity_replaced() -> None:
    logic = core()
    message = request("MESSAGE", "sip:mcptt-server@a.mc.example", to="<sip:bob@b.mc.example>")
    refusal(logic.on_request(message, peer(CLIENT_FACE)), 403, "is not registered here")
    logic = registered()
    claim = request(
        "MESSAGE",
        "sip:mcptt-server@a.mc.example",
        to="<sip:bob@b.mc.example>",
        extra=[("P-Asserted-Identity", "<sip:chief@a.mc.example>")],
    )
    (forward,) = logic.on_request(claim, peer(CLIENT_FACE))
    assert forward.destination == MCX
    assert forward.message.headers.get_all("P-Asserted-Identity") == [f"<{ALICE}>"]


def test_new_request_with_a_preloaded_route_is_refused() -> None:
    logic = registered()
    preloaded = request(
        "MESSAGE",
        "sip:mcptt-server@a.mc.example",
        to="<sip:bob@b.mc.example>",
        extra=[("Route", "<sip:127.0.10.1:5080;transport=tcp;lr>")],
    )
    refusal(logic.on_request(preloaded, peer(CLIENT_FACE)), 403, "may not pre-load a route")


def test_in_dialog_client_request_only_to_own_servers() -> None:
    logic = registered()
    to_inside = request(
        "BYE",
        "sip:someone@10.9.9.9:5090",
        to="<sip:bob@b.mc.example>;tag=t1",
        extra=[("Route", "<sip:10.9.9.9:5090;lr>")],
    )
    refusal(logic.on_request(to_inside, peer(CLIENT_FACE)), 403, "does not follow a recorded route")
    to_border = request(
        "BYE",
        "sip:127.0.10.1:5080;transport=tcp;ct=token",
        to="<sip:bob@b.mc.example>;tag=t1",
        extra=[("Route", "<sip:127.0.10.1:5080;transport=tcp;lr;th=token>")],
    )
    (forward,) = logic.on_request(to_border, peer(CLIENT_FACE))
    assert forward.destination == IS_PROXY
    assert isinstance(forward.message, SipRequest)


def test_delivery_to_a_registered_user_and_refusals() -> None:
    logic = registered()
    delivery = request("MESSAGE", ALICE, to=f"<{ALICE}>")
    (forward,) = logic.on_request(delivery, peer(SERVER_FACE))
    assert forward.destination == Address("tcp", "127.0.10.1", 40001)
    assert isinstance(forward.message, SipRequest) and forward.message.uri == ALICE_CONTACT
    refusal(
        logic.on_request(request("MESSAGE", "sip:carol@a.mc.example", to="<x:y>"), peer(SERVER_FACE)), 480, ""
    )
    refusal(
        logic.on_request(request("MESSAGE", "sip:dave@c.mc.example", to="<x:y>"), peer(SERVER_FACE)), 404, ""
    )


def test_cancel_and_non_2xx_ack_keep_the_invite_branch_a_2xx_ack_does_not() -> None:
    from mcinterconnect.sip.proxy import stateless_branch

    invite = request("INVITE", "sip:bob@a.mc.example", to="<sip:bob@a.mc.example>")
    cancel = request("CANCEL", "sip:bob@a.mc.example", to="<sip:bob@a.mc.example>")
    ack = request("ACK", "sip:bob@a.mc.example", to="<sip:bob@a.mc.example>;tag=486")
    for message in (cancel, ack):
        message.headers.set("CSeq", f"1 {message.method}")
    branch = stateless_branch(invite, "sip2")
    assert stateless_branch(cancel, "sip2") == branch == stateless_branch(ack, "sip2")
    ack_2xx = ack.copy()
    ack_2xx.headers.set("Via", "SIP/2.0/TCP 127.0.10.1:40001;branch=z9hG4bKnewtransaction;rport")
    assert stateless_branch(ack_2xx, "sip2") != branch
    assert stateless_branch(invite, "sip1") != branch


def test_identity_is_asserted_only_over_the_flow_it_registered_on() -> None:
    logic = registered()  # alice registered from 127.0.10.1:40001 over TCP
    other_flow = PeerInfo("tcp", ("127.0.10.1", 40999), ("127.0.10.1", 5060), CLIENT_FACE, None, 9)
    impersonation = request("MESSAGE", "sip:mcptt-server@a.mc.example", to="<sip:bob@b.mc.example>")
    refusal(logic.on_request(impersonation, other_flow), 403, "not registered over this connection")
    (forward,) = logic.on_request(impersonation, peer(CLIENT_FACE))
    assert forward.destination == MCX
