"""The MCX server of one MC system, sans-IO: MESSAGE-based short data (TS 24.379 / 24.282 style).

Originating (from the SIP core, the caller asserted in P-Asserted-Identity): the server writes
the calling user it authenticated into ``mcptt-calling-user-id`` (whatever the client claimed is
replaced) and the target into ``mcptt-request-uri``; a local target is delivered through the
SIP core, a target homed in a partner system goes to this system's IS proxy (TS 33.180
11.1.1: partner server → own server → client, never client to partner), an unknown domain is
refused.  Terminating (from the IS proxy, the source a partner identity): the body's target
must be local and is delivered through the SIP core.

Only MESSAGE (and OPTIONS) are served in this version; other methods get 501.
"""

from __future__ import annotations

from dataclasses import replace

from mcinterconnect.identity import DomainMap, IdentityError, McServiceId, Origin
from mcinterconnect.mcinfo import McInfoError, McpttInfo, find_mcptt_info, replace_mcptt_info
from mcinterconnect.sip.message import SipRequest, SipResponse, make_response, warning_value
from mcinterconnect.sip.proxy import (
    Forward,
    RoutingError,
    decrement_max_forwards,
    pop_own_routes,
    pop_own_via,
    push_via,
    response_destination,
    stamp_received,
    stateless_branch,
)
from mcinterconnect.sip.transport import Address, PeerInfo


class McxServerLogic:
    """Routing decisions of one MCX server for short data."""

    def __init__(
        self, *, domains: DomainMap, face: Address, sip_core: Address, is_proxy: Address, agent: str
    ) -> None:
        self.domains = domains
        self.face = face
        self.sip_core = sip_core
        self.is_proxy = is_proxy
        self.agent = agent
        self._own = {(face.host.lower(), face.port)}

    def on_request(self, request: SipRequest, peer: PeerInfo) -> list[Forward]:
        work = request.copy()
        try:
            stamp_received(work, peer.remote)
            pop_own_routes(work, self._own)
            outcome = self._route(work)
        except RoutingError as error:
            outcome = self._error(work, error.status, error.reason)
        if isinstance(outcome, SipResponse):
            if work.method == "ACK":
                return []
            try:
                return [Forward(outcome, response_destination(work))]
            except RoutingError:
                return []
        decrement_max_forwards(work)
        push_via(work, self.face, stateless_branch(work, "mcx"))
        return [Forward(work, outcome)]

    def _route(self, request: SipRequest) -> Address | SipResponse:
        if request.method == "OPTIONS":
            return make_response(request, 200, to_tag="mcx")
        if request.method != "MESSAGE":
            return self._error(request, 501, f"{request.method} is not served by this MCX server")
        try:
            info = find_mcptt_info(request)
        except (McInfoError, ValueError) as error:
            return self._error(request, 400, f"MC body cannot be read: {error}")
        source = self._asserted(request)
        if source is None:
            return self._error(request, 403, "no asserted identity")
        origin = self.domains.classify(source).origin
        if origin is Origin.LOCAL:
            return self._originating(request, source, info)
        if origin is Origin.PARTNER:
            return self._terminating(request, info)
        return self._error(request, 403, f"source {source} is not served by this system or a partner")

    def _originating(
        self, request: SipRequest, caller: McServiceId, info: McpttInfo | None
    ) -> Address | SipResponse:
        target_text = info.request_uri if info and info.request_uri else request.uri
        try:
            target = McServiceId.parse(target_text)
        except IdentityError as error:
            return self._error(request, 404, f"target is not an MC service ID: {error}")
        updated = McpttInfo() if info is None else info
        try:
            replace_mcptt_info(
                request, replace(updated, request_uri=str(target), calling_user_id=str(caller))
            )
        except McInfoError as error:
            return self._error(request, 400, f"MC body cannot be rewritten: {error.reason}")
        request.uri = str(target)
        origin = self.domains.classify(target).origin
        if origin is Origin.LOCAL:
            return self.sip_core
        if origin is Origin.PARTNER:
            return self.is_proxy
        return self._error(request, 404, f"no interconnected MC system serves {target.domain}")

    def _terminating(self, request: SipRequest, info: McpttInfo | None) -> Address | SipResponse:
        if info is None or not info.request_uri:
            return self._error(request, 400, "MESSAGE from a partner names no target")
        try:
            target = McServiceId.parse(info.request_uri)
        except IdentityError as error:
            return self._error(request, 404, f"target is not an MC service ID: {error}")
        if self.domains.classify(target).origin is not Origin.LOCAL:
            return self._error(request, 404, f"{target} is not a user of this system")
        request.uri = str(target)
        return self.sip_core

    def _asserted(self, request: SipRequest) -> McServiceId | None:
        for value in request.headers.get_all("P-Asserted-Identity"):
            try:
                return McServiceId.parse(value)
            except IdentityError:
                continue
        return None

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
