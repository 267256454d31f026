"""The MCX server of one MC system, sans-IO: MESSAGE-based short data (TS 24.379 / 24.282 style).

Originating (from the SIP core, the caller asserted in P-Asserted-Identity): the server writes
the calling user it authenticated into ``mcptt-calling-user-id`` (whatever the client claimed is
replaced) and the target into ``mcptt-request-uri``; a local target is delivered through the
SIP core, a target homed in a partner system goes to this system's IS proxy (TS 33.180
11.1.1: partner server → own server → client, never client to partner), an unknown domain is
refused.  Terminating (from the IS proxy, the source a partner identity): the body's target
must be local and is delivered through the SIP core.

Explicit authentication (TS 33.180 9.6, ``mcx_ear.py``): toward a partner whose agreement is
explicit outbound, every request the server sends carries an ``MC-EAR`` header it signed with
its own ECCSI key (a client's MC-EAR is never passed on); when it cannot sign, it answers 503
rather than send an unsigned request.  With ``mcx_server.verify_ear``, a request from an
explicit partner is checked again here, Target ID = this server's PSI exactly, without the
replay step (the border did it); a refusal is 403 with the EAR Warning text.  The EAR stops at
this server: it is not delivered to clients.

Only MESSAGE (and OPTIONS) are served in this version; other methods get 501.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from mcinterconnect.crypto.kms import KmsCertificate
from mcinterconnect.identity import DomainMap, IdentityError, McServiceId, Origin
from mcinterconnect.mcinfo import McInfoError, McpttInfo, find_mcptt_info, replace_mcptt_info
from mcinterconnect.protect.ear import EAR_HEADER, EarError
from mcinterconnect.services.mcx_ear import EarReceiverCheck, EarSigner, SigningKeyError
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
from mcinterconnect.sip.transport import Address, LogSink, PeerInfo


@dataclass(frozen=True)
class EarPartner:
    """What the MCX server needs of one partner agreement for explicit authentication."""

    name: str
    domains: tuple[str, ...]
    #: The partner's mcptt PSI: the Target ID of the EARs sent there.
    psi: str | None = None
    #: Explicit outbound: sign every request sent to this partner.
    sign: bool = False
    #: Explicit inbound and ``verify_ear``: check this partner's EARs again here.
    verify: bool = False
    allowed_request_types: tuple[str, ...] = ()
    #: The partner's KMS certificate (KPAK of its EARs).
    certificate: KmsCertificate | None = None


class McxServerLogic:
    """Routing decisions of one MCX server for short data."""

    def __init__(
        self,
        *,
        domains: DomainMap,
        face: Address,
        sip_core: Address,
        is_proxy: Address,
        agent: str,
        ear_partners: Mapping[str, EarPartner] | None = None,
        signer: EarSigner | None = None,
        receiver_check: EarReceiverCheck | None = None,
        log: LogSink | None = None,
    ) -> None:
        self.domains = domains
        self.face = face
        self.sip_core = sip_core
        self.is_proxy = is_proxy
        self.agent = agent
        self.ear_partners = dict(ear_partners or {})
        self.signer = signer
        self.receiver_check = receiver_check
        self._log = log
        self._own = {(face.host.lower(), face.port)}

    def on_request(self, request: SipRequest, peer: PeerInfo) -> list[Forward]:
        work = request.copy()
        try:
            stamp_received(work, peer.remote)
            pop_own_routes(work, self._own)
            outcome = self._route(work)
            if not isinstance(outcome, SipResponse):
                decrement_max_forwards(work)  # 483 when exhausted (RFC 3261 §16.3 step 3)
        except RoutingError as error:
            outcome = self._error(work, error.status, error.reason)
        if isinstance(outcome, SipResponse):
            if work.method == "ACK":
                return []
            try:
                return [Forward(outcome, response_destination(work))]
            except RoutingError:
                return []
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
            return self._terminating(request, info, self.domains.classify(source).partner)
        return self._error(request, 403, f"source {source} is not served by this system or a partner")

    def _originating(
        self, request: SipRequest, caller: McServiceId, info: McpttInfo | None
    ) -> Address | SipResponse:
        target_text = info.request_uri if info and info.request_uri else request.uri
        try:
            target = McServiceId.parse(target_text)
        except IdentityError as error:
            return self._error(request, 404, f"target is not an MC service ID: {error}")
        updated = replace(
            McpttInfo() if info is None else info, request_uri=str(target), calling_user_id=str(caller)
        )
        try:
            replace_mcptt_info(request, updated)
        except McInfoError as error:
            return self._error(request, 400, f"MC body cannot be rewritten: {error.reason}")
        request.uri = str(target)
        request.headers.remove(EAR_HEADER)  # only servers sign EARs; a client's is never passed on
        classification = self.domains.classify(target)
        if classification.origin is Origin.LOCAL:
            return self.sip_core
        if classification.origin is Origin.PARTNER:
            return self._sign_for(request, classification.partner, updated) or self.is_proxy
        return self._error(request, 404, f"no interconnected MC system serves {target.domain}")

    def _sign_for(self, request: SipRequest, partner: str | None, info: McpttInfo) -> SipResponse | None:
        """Attach this server's EAR when the partner's agreement is explicit outbound (9.6)."""
        ear_partner = self.ear_partners.get(partner or "")
        if ear_partner is None or not ear_partner.sign:
            return None
        if self.signer is None or ear_partner.psi is None:
            return self._error(request, 503, f"explicit authentication toward {partner} is not set up")
        try:
            request.headers.set(EAR_HEADER, self.signer.header_value(ear_partner.psi, info))
        except (SigningKeyError, EarError) as error:
            self._event("ear-sign-failed", partner, str(error))
            return self._error(request, 503, f"cannot sign the EAR toward {partner}: {error}")
        return None

    def _terminating(
        self, request: SipRequest, info: McpttInfo | None, partner: str | None
    ) -> Address | SipResponse:
        refusal = self._verify_ear(request, info, partner)
        if refusal is not None:
            return refusal
        request.headers.remove(EAR_HEADER)  # the EAR is server to server: clients never see it
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

    def _verify_ear(
        self, request: SipRequest, info: McpttInfo | None, partner: str | None
    ) -> SipResponse | None:
        """``verify_ear``: the EAR checks again, Target ID = this server's PSI, no replay step."""
        ear_partner = self.ear_partners.get(partner or "")
        if self.receiver_check is None or ear_partner is None or not ear_partner.verify:
            return None
        if ear_partner.certificate is None:
            return self._error(request, 403, f"no KMS certificate of {partner} to verify its EAR")
        values = request.headers.get_all(EAR_HEADER)
        verdict = self.receiver_check.check(
            values[0] if len(values) == 1 else None if not values else "",
            partner_domains=ear_partner.domains,
            certificate=ear_partner.certificate,
            allowed_request_types=ear_partner.allowed_request_types,
            info=info,
        )
        if verdict.ok:
            return None
        self._event("ear-refused", partner, verdict.detail, reason=verdict.reason)
        return self._error(request, 403, f"{verdict.warning} ({verdict.reason}: {verdict.detail})")

    def _event(self, event: str, partner: str | None, detail: str, **extra: str) -> None:
        if self._log is not None:
            self._log(
                {"event": event, "component": "mcx-server", "partner": partner, "detail": detail, **extra}
            )

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
