"""The SIP core of one MC system, sans-IO: registrar and stateless proxy (TS 23.280 SIP-1/SIP-2).

* **SIP-1** (client face): REGISTER for this system's own domains only (TS 33.180 11.1.1: a
  client connects only to servers of its own system); other requests must come from a registered
  user, whose address of record the SIP core asserts in P-Asserted-Identity (anything the client
  put there is removed) before routing the request to the MCX server.
* **SIP-2** (server face): requests from the MCX server (or in-dialog requests from the IS proxy)
  for a registered user are delivered to the user's contact.

Access security of SIP-1 (IMS AKA, 33.180 6.2.1) is outside this project: registration is
accepted for any user of the domain (docs/PROFILE.md); a client's requests are then accepted only
over the flow (transport, address, port) its REGISTER came on.  Proxying follows RFC 3261 §16
statelessly; dialog-creating requests are record-routed on both faces (RFC 5658).  A client's new
request always goes to the MCX server (a pre-loaded Route is refused); its in-dialog requests may
only go to this system's servers (MCX server, IS proxy), never to an arbitrary inside address.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mcinterconnect.sip.message import SipRequest, SipResponse, make_response, warning_value
from mcinterconnect.sip.proxy import (
    Forward,
    RoutingError,
    decrement_max_forwards,
    is_initial,
    next_hop,
    pop_own_routes,
    pop_own_via,
    push_via,
    record_route_value,
    response_destination,
    stamp_received,
    stateless_branch,
    uri_address,
)
from mcinterconnect.sip.transport import Address, PeerInfo
from mcinterconnect.sip.uri import NameAddr, SipSyntaxError, SipUri, get_param

CLIENT_FACE = "sip1"
SERVER_FACE = "sip2"
_DIALOG_CREATING = frozenset({"INVITE", "SUBSCRIBE", "REFER"})


@dataclass
class Binding:
    contact: str
    expires_at: float
    #: Where the REGISTER came from (transport, address, port): the client's flow.  Its requests
    #: must come the same way, so a client cannot have another registered user asserted.
    flow: tuple[str, str, int] | None = None


class SipCoreLogic:
    """Registrar and proxy decisions of one SIP core."""

    def __init__(
        self,
        *,
        domains: list[str],
        client_face: Address,
        server_face: Address,
        mcx_server: Address,
        agent: str,
        trusted_next_hops: Iterable[Address] = (),
        max_expires: int = 3600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.domains = {domain.lower() for domain in domains}
        self.faces = {CLIENT_FACE: client_face, SERVER_FACE: server_face}
        self.mcx_server = mcx_server
        self.agent = agent
        self.max_expires = max_expires
        self.clock = clock
        self.bindings: dict[str, list[Binding]] = {}
        self._own = {(face.host.lower(), face.port) for face in self.faces.values()}
        #: Where a client's in-dialog requests may go: this system's servers (MCX, IS proxy).
        self._trusted_next_hops = {(a.host.lower(), a.port) for a in (mcx_server, *trusted_next_hops)}

    # ------------------------------------------------------------ registrar
    def contacts_of(self, aor: str) -> list[str]:
        now = self.clock()
        live = [binding for binding in self.bindings.get(aor, []) if binding.expires_at > now]
        if live:
            self.bindings[aor] = live
        else:
            self.bindings.pop(aor, None)
        return [binding.contact for binding in live]

    def _register(self, request: SipRequest, flow: tuple[str, str, int] | None = None) -> SipResponse:
        try:
            aor = SipUri.parse(NameAddr.parse(request.headers.get("To") or "").uri).address_of_record
        except SipSyntaxError as error:
            return self._error(request, 400, f"malformed To: {error.reason}")
        domain = aor.rpartition("@")[2]
        if domain not in self.domains:
            return self._error(request, 403, f"this registrar serves only {', '.join(sorted(self.domains))}")
        default = request.headers.get("Expires")
        contacts = request.headers.get_all("Contact")
        if contacts == ["*"]:
            self.bindings.pop(aor, None)
            return make_response(request, 200, to_tag="reg")
        updated = {binding.contact: binding for binding in self.bindings.get(aor, [])}
        for value in contacts:
            try:
                contact = NameAddr.parse(value)
                SipUri.parse(contact.uri)
            except SipSyntaxError as error:
                return self._error(request, 400, f"malformed Contact: {error.reason}")
            expires_text = get_param(contact.params, "expires") or default or str(self.max_expires)
            if not expires_text.isdigit():
                return self._error(request, 400, "malformed expires value")
            expires = min(int(expires_text), self.max_expires)
            if expires == 0:
                updated.pop(contact.uri, None)
            else:
                updated[contact.uri] = Binding(contact.uri, self.clock() + expires, flow)
        self.bindings[aor] = list(updated.values())
        response = make_response(request, 200, to_tag="reg")
        now = self.clock()
        for binding in self.bindings[aor]:
            response.headers.add("Contact", f"<{binding.contact}>;expires={int(binding.expires_at - now)}")
        if not self.bindings[aor]:
            del self.bindings[aor]
        return response

    # ---------------------------------------------------------------- proxy
    def on_request(self, request: SipRequest, peer: PeerInfo) -> list[Forward]:
        face = CLIENT_FACE if peer.listener == CLIENT_FACE else SERVER_FACE
        work = request.copy()
        try:
            stamp_received(work, peer.remote)
            if face == CLIENT_FACE and work.method == "REGISTER":
                flow = (peer.transport, peer.remote[0], peer.remote[1])
                return [Forward(self._register(work, flow), response_destination(work))]
            pop_own_routes(work, self._own)
            if face == CLIENT_FACE:
                # From a client, only the To tag says "in dialog": a pre-loaded Route must not
                # turn a new request into one that skips the MCX server (TS 33.180 11.1.1).
                initial = is_initial(work)
                forward = self._from_client(work, initial, (peer.transport, peer.remote[0], peer.remote[1]))
            else:
                initial = is_initial(work) and not work.headers.get("Route")
                forward = self._to_client(work, initial)
            if isinstance(forward, SipResponse):
                return [] if work.method == "ACK" else [Forward(forward, response_destination(work))]
            out_face = SERVER_FACE if face == CLIENT_FACE else CLIENT_FACE
            if initial and work.method in _DIALOG_CREATING:
                work.headers.add("Record-Route", record_route_value(self.faces[face]), first=True)
                work.headers.add("Record-Route", record_route_value(self.faces[out_face]), first=True)
            decrement_max_forwards(work)
            push_via(work, self.faces[out_face], stateless_branch(work, out_face))
            return [Forward(work, forward)]
        except RoutingError as error:
            if work.method == "ACK":
                return []
            try:
                return [Forward(self._error(work, error.status, error.reason), response_destination(work))]
            except RoutingError:
                return []

    def _from_client(
        self, request: SipRequest, initial: bool, flow: tuple[str, str, int]
    ) -> Address | SipResponse:
        try:
            aor = SipUri.parse(NameAddr.parse(request.headers.get("From") or "").uri).address_of_record
        except SipSyntaxError as error:
            return self._error(request, 400, f"malformed From: {error.reason}")
        if not self.contacts_of(aor):
            return self._error(request, 403, f"{aor} is not registered here")
        if all(binding.flow != flow for binding in self.bindings.get(aor, [])):
            # The asserted identity is the one registered over this very flow (RFC 5626-style
            # flow binding), not whatever From the request carries.
            return self._error(request, 403, f"{aor} is not registered over this connection")
        # The SIP core asserts the identity it authenticated; the client's own claims are dropped.
        request.headers.remove("P-Preferred-Identity")
        request.headers.remove("P-Asserted-Identity")
        request.headers.add("P-Asserted-Identity", f"<{aor}>")
        if initial:
            if request.headers.get("Route"):
                return self._error(request, 403, "a client may not pre-load a route")
            return self.mcx_server
        hop = next_hop(request, "tcp")
        if (hop.host.lower(), hop.port) not in self._trusted_next_hops:
            # In a dialog a client follows the route set its servers recorded; anything else
            # would make the SIP core a relay into the system's inside.
            return self._error(request, 403, "in-dialog request does not follow a recorded route")
        return hop

    def _to_client(self, request: SipRequest, initial: bool) -> Address | SipResponse:
        if not initial:
            return next_hop(request, "tcp")
        try:
            target = SipUri.parse(request.uri)
        except SipSyntaxError as error:
            return self._error(request, 400, f"malformed Request-URI: {error.reason}")
        if target.host.lower() not in self.domains or target.user is None:
            return self._error(request, 404, f"{target.address_of_record} is not a user of this system")
        contacts = self.contacts_of(target.address_of_record)
        if not contacts:
            return self._error(request, 480, f"{target.address_of_record} is not registered")
        request.uri = contacts[-1]
        return uri_address(contacts[-1], "tcp")

    def on_response(self, response: SipResponse, peer: PeerInfo) -> list[Forward]:
        del peer
        work = response.copy()
        try:
            pop_own_via(work, self._own)
            return [Forward(work, response_destination(work))]
        except RoutingError:
            return []

    def _error(self, request: SipRequest, status: int, text: str) -> SipResponse:
        return make_response(request, status, warning=warning_value(self.agent, text))
