"""Sans-IO building blocks of a stateless SIP proxy (RFC 3261 §16, §18.2, RFC 3581).

Used by the SIP core, the MCX server and the IS proxy: stamping ``received``/``rport`` on the
top Via, Max-Forwards, loose-route popping, next-hop selection, Via push/pop and stateless
branch computation (§16.11), and response routing by the top Via (§18.2.2).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from mcinterconnect.sip.message import SipMessage, SipRequest, SipResponse
from mcinterconnect.sip.transport import Address
from mcinterconnect.sip.uri import NameAddr, SipSyntaxError, SipUri, Via, drop_param, set_param

MAGIC_COOKIE = "z9hG4bK"
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}


@dataclass(frozen=True)
class Claim:
    """A one-time key that must be new before a ``Forward`` may be sent (e.g. an EAR ID).

    The sans-IO core prepares every outcome; the node, which holds the asynchronous claim store,
    only picks one: ``add_if_absent(key, ttl)`` true → ``on_claimed()`` then the forward is sent;
    false (seen before) → ``on_seen()`` and ``if_seen`` is sent instead; the store failed →
    ``on_unavailable(reason)`` and ``if_unavailable`` is sent instead (fail closed).  ``None``
    refusals send nothing (an ACK is never answered).  The callbacks write audit lines; they
    must not raise.
    """

    key: bytes
    ttl: float
    on_claimed: Callable[[], None]
    if_seen: Forward | None
    on_seen: Callable[[], None]
    if_unavailable: Forward | None
    on_unavailable: Callable[[str], None]


@dataclass(frozen=True)
class Forward:
    """What a sans-IO core asks its transport to do: send ``message`` to ``destination``.

    For TLS, ``server_hostname`` is the name the peer's certificate must carry.  When no
    connection to ``destination`` is alive (a response whose request came on a connection that
    is gone, e.g. to another instance), ``fallback`` is where the same peer listens.  With a
    ``claim``, the node sends the message only once the claim's key proved new (``Claim``).
    """

    message: SipRequest | SipResponse
    destination: Address
    server_hostname: str | None = None
    fallback: Address | None = None
    claim: Claim | None = None


class RoutingError(ValueError):
    """A request or response that cannot be routed, with the status to answer with."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def stamp_received(message: SipRequest, remote: tuple[str, int]) -> None:
    """Add ``received`` and fill ``rport`` on the top Via (RFC 3261 §18.2.1, RFC 3581 §4)."""
    vias = message.headers.get_all("Via")
    if not vias:
        raise RoutingError("request without Via")
    try:
        top = Via.parse(vias[0])
    except SipSyntaxError as exc:
        raise RoutingError(f"malformed top Via: {exc.reason}") from None
    host, port = remote
    # A received value is ours to write: one the sender supplied would reflect responses anywhere.
    top.params = drop_param(top.params, "received")
    if top.host.strip("[]") != host:
        top.params = set_param(top.params, "received", host)
    if top.param("rport") is not None:
        top.params = set_param(top.params, "rport", str(port))
    message.headers.replace_all("Via", [str(top), *vias[1:]])


def decrement_max_forwards(request: SipRequest, default: int = 70) -> None:
    """RFC 3261 §16.6 step 3; a request with Max-Forwards 0 is refused with 483 (§16.3 step 3)."""
    value = request.headers.get("Max-Forwards")
    hops = default if value is None else int(value)
    if hops <= 0:
        raise RoutingError("Max-Forwards exhausted", 483)
    request.headers.set("Max-Forwards", str(hops - 1))


def uri_address(uri: str, default_transport: str = "udp") -> Address:
    """Where a SIP URI points to (RFC 3263 without DNS: transport parameter, host, port)."""
    try:
        parsed = SipUri.parse(uri)
    except SipSyntaxError as exc:
        raise RoutingError(f"cannot route to {uri[:80]!r}: {exc.reason}") from None
    transport = (
        parsed.param("transport") or ("tls" if parsed.scheme == "sips" else default_transport)
    ).lower()
    if transport not in DEFAULT_PORTS:
        raise RoutingError(f"unsupported transport {transport!r} in {uri[:80]!r}", 416)
    return Address(transport, parsed.host.strip("[]"), parsed.port or DEFAULT_PORTS[transport])


def via_address(via_value: str) -> Address:
    """Where a response goes: the top Via's received/rport or sent-by (RFC 3261 §18.2.2, RFC 3581)."""
    try:
        via = Via.parse(via_value)
    except SipSyntaxError as exc:
        raise RoutingError(f"malformed Via: {exc.reason}") from None
    transport = via.transport.lower()
    if transport not in DEFAULT_PORTS:
        raise RoutingError(f"unsupported Via transport {via.transport!r}")
    host = via.param("received") or via.host.strip("[]")
    rport = via.param("rport")
    port = int(rport) if rport and rport.isdigit() else (via.port or DEFAULT_PORTS[transport])
    try:
        return Address(transport, host, port)
    except ValueError as exc:
        raise RoutingError(f"unusable Via address: {exc}") from None


def route_is_self(route_value: str, own: set[tuple[str, int]]) -> bool:
    """Whether a Route value names one of this proxy's (host, port) pairs."""
    try:
        uri = NameAddr.parse(route_value).sip_uri
    except SipSyntaxError:
        return False
    transport = (uri.param("transport") or "udp").lower()
    port = uri.port or DEFAULT_PORTS.get(transport, 5060)
    return (uri.host.strip("[]").lower(), port) in own


def pop_own_routes(request: SipRequest, own: set[tuple[str, int]]) -> list[str]:
    """Remove the top Route values that name this proxy (RFC 3261 §16.4); return them."""
    popped: list[str] = []
    while True:
        routes = request.headers.get_all("Route")
        if not routes or not route_is_self(routes[0], own):
            return popped
        popped.append(routes[0])
        request.headers.replace_all("Route", routes[1:])


def next_hop(request: SipRequest, default_transport: str = "udp") -> Address:
    """The top Route if any, otherwise the Request-URI (RFC 3261 §16.6 steps 6-7, loose routing)."""
    routes = request.headers.get_all("Route")
    if routes:
        try:
            return uri_address(NameAddr.parse(routes[0]).uri, default_transport)
        except SipSyntaxError as exc:
            raise RoutingError(f"malformed Route: {exc.reason}") from None
    return uri_address(request.uri, default_transport)


def stateless_branch(request: SipRequest, salt: str) -> str:
    """A branch that is the same for retransmissions, and for a CANCEL or non-2xx ACK of the
    INVITE it belongs to (RFC 3261 §16.11): hashed from the incoming top Via branch and salt."""
    top = request.headers.get("Via") or ""
    try:
        incoming = Via.parse(top).branch or top
    except SipSyntaxError:
        incoming = top
    # A non-2xx ACK and a CANCEL carry the INVITE's branch and Request-URI, so they hash alike;
    # a 2xx ACK is a transaction of its own with a new incoming branch, so it differs.
    material = "\n".join((salt, incoming, request.uri, request.call_id))
    return MAGIC_COOKIE + hashlib.sha256(material.encode()).hexdigest()[:24]


def push_via(request: SipRequest, sent_by: Address, branch: str) -> None:
    """Add this proxy's Via on top (RFC 3261 §16.6 step 8), asking for rport (RFC 3581)."""
    value = f"SIP/2.0/{sent_by.transport.upper()} {sent_by.hostport};branch={branch};rport"
    request.headers.add("Via", value, first=True)


def pop_own_via(response: SipResponse, own: set[tuple[str, int]]) -> str:
    """Remove the top Via, which must be this proxy's (RFC 3261 §16.7 step 3); return it."""
    top = response.headers.get("Via")
    if top is None:
        raise RoutingError("response without Via")
    try:
        via = Via.parse(top)
    except SipSyntaxError as exc:
        raise RoutingError(f"malformed top Via: {exc.reason}") from None
    port = via.port or DEFAULT_PORTS.get(via.transport.lower(), 5060)
    if (via.host.strip("[]").lower(), port) not in own:
        raise RoutingError("top Via of the response is not this proxy's")
    response.headers.pop_first("Via")
    if not response.headers.get("Via"):
        raise RoutingError("response has no Via left after this proxy's")
    return top


def record_route_value(address: Address, params: dict[str, str | None] | None = None) -> str:
    """A Record-Route value naming ``address`` with ``lr`` (RFC 3261 §16.6 step 4)."""
    extra = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in (params or {}).items())
    return f"<sip:{address.hostport};transport={address.transport};lr{extra}>"


def response_destination(response: SipMessage) -> Address:
    """Where a response to this message (or this response) goes: by its top Via."""
    top = response.headers.get("Via")
    if top is None:
        raise RoutingError("response without Via")
    return via_address(top)


def is_initial(message: SipMessage) -> bool:
    """A request outside any dialog: its To has no tag (RFC 3261 §12)."""
    to = message.headers.get("To") or ""
    try:
        return NameAddr.parse(to).tag is None
    except SipSyntaxError:
        return True
