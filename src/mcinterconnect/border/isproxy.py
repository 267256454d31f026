"""The IS proxy, sans-IO: exit and entry point of one MC system on SIP-3 (TS 33.180 11.1.1).

A message goes in with where it arrived (``Arrival``); what to send, and where, comes out
(``Forward``).  The asyncio adapter (``isproxy_server.py``) only moves bytes.

Exit point (internal → SIP-3, TS 24.379 6.8.2): the partner is chosen by the target's domain;
local policy may refuse with 403 and ``Warning: 399 <host> "179 service not authorized with the
interconnected system"``; P-Asserted-Identity becomes the IS proxy's own URI and the
Request-URI the partner's PSI of the target function; topology is sealed (``topology.py``).

Entry point (SIP-3 → internal, WA-IC-07): only TLS peers that authenticated as a partner's IS
proxy reach this code (``identify_peer`` is the TLS peer check, BC-1); REGISTER and requests not
allowed by the agreement are refused (BC-2, BC-5); the partner is authenticated implicitly
(BC-3, WA-IC-11) or by the explicit-mode authenticator plugged in; the published PSI in the
Request-URI selects the internal destination (404 for an unknown one).  In-dialog requests are
accepted only with routing data this border sealed itself, which proves the dialog went through
it.  Every decision is written to the audit log with a reason code.

Explicit authentication (TS 33.180 9.6, ``explicit.py``): at the exit point, an initial request
toward a partner whose agreement is explicit outbound must carry the EAR its sending server
attached (``ear-missing`` otherwise, never forwarded).  At the entry point, a request whose EAR
passed every check still owes the replay step (WA-SP-26 step 9), which needs the asynchronous
replay store: the forward goes out with a ``Claim`` on the EAR ID, and the node sends it (and
the allow audit line is written) only once the store said the ID is new; a replay gets the
prepared ``ear-replay`` refusal, an unreachable store the ``ear-replay-store-unavailable`` one
(fail closed).  An admitted INVITE whose EAR carries a Request Expiry is tracked
(``expiry.py``) and its dialogs are released (BYE both ways) when it passes
(``release_expired``, called by a periodic task of the asyncio layer).

SPK protection (TS 33.180 9.3, ``spkprotection.py``): toward a partner whose agreement has an
SPK, the exit point protects the MC XML bodies (encrypt, then sign) and masks From/To after its
policy read the body in clear, just before topology hiding; from such a partner, the entry point
verifies and decrypts before anything reads the body (the identity rules and the EAR request-type
rule need plaintext), so internal servers get plaintext.  Responses are protected and checked the
same way; one that fails is dropped with an audit line.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from mcinterconnect.border.agreement import IsProxySettings, PartnerAgreement
from mcinterconnect.border.audit import AuditLog
from mcinterconnect.border.expiry import ExpiryTracker, is_release
from mcinterconnect.border.explicit import needs_ear
from mcinterconnect.border.peers import PartnerPeer, PartnerPeers
from mcinterconnect.border.policy import (
    ALLOWED,
    NOT_A_SERVER,
    REGISTER_REFUSED,
    Decision,
    ImplicitAuthentication,
    InboundAuthenticator,
    check_inbound,
    check_outbound,
    choose_partner,
)
from mcinterconnect.border.sealing import Sealer
from mcinterconnect.border.spkprotection import DETAIL_WITHHELD, SpkProtection, is_spk_reason
from mcinterconnect.border.topology import Face, Side, TopologyError, TopologyHider, TopologyLeakError
from mcinterconnect.identity import DomainMap
from mcinterconnect.mcinfo import McInfoError, McpttInfo, find_mcptt_info
from mcinterconnect.protect.ear import EAR_HEADER
from mcinterconnect.protect.ear_check import (
    EXPIRED,
    MISSING,
    REPLAY,
    UNAVAILABLE,
    EarPolicy,
    EarVerdict,
    replay_ttl,
)
from mcinterconnect.protect.spk import SpkRing
from mcinterconnect.sip.message import SipRequest, SipResponse, make_response, warning_value
from mcinterconnect.sip.proxy import (
    Claim,
    Forward,
    RoutingError,
    decrement_max_forwards,
    is_initial,
    next_hop,
    response_destination,
    stamp_received,
)
from mcinterconnect.sip.transport import OUTBOUND, Address, PeerInfo
from mcinterconnect.sip.uri import NameAddr, SipSyntaxError, SipUri, Via

INTERNAL_LISTENER = "internal"
SIP3_LISTENER = "sip3"

# Reason codes of this module (policy reason codes live in policy.py).
BAD_REQUEST = "bad-request"
BODY_UNREADABLE = "body-unreadable"
ROUTE_UNSEALED = "route-unsealed"
INTERNAL_NAME = "internal-name"
DIALOG_NOT_SEALED = "dialog-not-sealed"
UNKNOWN_PSI = "unknown-psi"
TARGET_LOCAL = "target-local"
TOO_MANY_HOPS = "too-many-hops"
RESPONSE_UNROUTABLE = "response-unroutable"
PEER_UNKNOWN = "peer-unknown"
EXPIRY_TABLE_FULL = "expiry-table-full"
RELEASE_FAILED = "release-failed"


@dataclass(frozen=True)
class Arrival:
    """Where a message arrived: the side, the sender's address and, on SIP-3, the partner."""

    side: Side
    remote: tuple[str, int]
    partner: str | None = None


@dataclass
class _Partner:
    agreement: PartnerAgreement
    anchors: list[x509.Certificate] = field(default_factory=list)


class IsProxy:
    """Sans-IO core of one IS proxy instance; instances sharing the sealing keys are interchangeable."""

    def __init__(
        self,
        settings: IsProxySettings,
        *,
        own_domains: list[str],
        agreements: list[PartnerAgreement],
        internal_markers: list[str],
        sealer: Sealer,
        audit: AuditLog,
        internal: Address | None = None,
        external: Address | None = None,
        authenticator: InboundAuthenticator | None = None,
        ear_policy: EarPolicy | None = None,
        spk_rings: Mapping[str, SpkRing] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``internal_markers``: every internal host, address and ``host:port`` that must not
        cross the border; ``internal``/``external``: the bound listen addresses when they differ
        from the configured ones (port 0); ``ear_policy``: the EAR knobs (default: the skew of
        ``settings``); ``spk_rings``: the SPK file of each partner whose agreement has an SPK;
        ``clock``: Unix seconds, for Request Expiry and SPK grace periods."""
        self.settings = settings
        self.public_host = settings.public_host
        self.own_uri = settings.uri
        self.audit = audit
        internal = internal or settings.internal_listen
        external = external or settings.sip3_listen
        internal_face = Face(internal.host, internal.port, internal.transport)
        external_face = Face(settings.public_host, external.port, "tls")
        self.topology = TopologyHider(sealer, internal_face, external_face, internal_markers=internal_markers)
        self.ear_policy = ear_policy or EarPolicy(skew=settings.ear_skew)
        self.clock = clock
        #: SPK protection of the MC bodies, per partner link (TS 33.180 9.3).
        self.spk = SpkProtection(spk_rings, own_uri=self.own_uri, clock=clock)
        #: Dialogs to release at their Request Expiry: the only per-instance state (expiry.py).
        self.expiry = ExpiryTracker(internal_face, external_face)
        self.domains = DomainMap(own_domains, {p.name: p.domains for p in agreements})
        self.partners = {
            p.name: _Partner(p, [_load_anchor(path) for path in p.trust_anchors]) for p in agreements
        }
        self._peers = PartnerPeers(
            PartnerPeer(
                name, partner.agreement.is_proxy_host, partner.anchors, partner.agreement.allowed_sources
            )
            for name, partner in self.partners.items()
        )
        self.authenticator = authenticator or ImplicitAuthentication()
        self._internal_sources = {ipaddress.ip_address(a) for a in settings.allowed_internal_sources}

    # ------------------------------------------------------------- TLS peers
    def identify_peer(self, certificate: x509.Certificate | None, remote: tuple[str, int]) -> str | None:
        """BC-1: the partner whose IS proxy presented ``certificate``, else ``None``.

        The certificate must be issued by one of that partner's trust anchors *and* name the
        partner's configured IS proxy host (WA-IC-17); a partner's CA cannot vouch for another.
        """
        return self._peers.identify(certificate, remote[0])

    def peer_refusal(self, certificate: x509.Certificate | None, remote: tuple[str, int]) -> str | None:
        """The TLS peer check of the SIP-3 listener: a refusal reason, or None for a partner."""
        if self.identify_peer(certificate, remote) is not None:
            return None
        subject = certificate.subject.rfc4514_string() if certificate is not None else "no certificate"
        self.audit.record(
            "refuse", PEER_UNKNOWN, side="external", remote=f"{remote[0]}:{remote[1]}", peer=subject
        )
        return f"peer ({subject}) is not a partner IS proxy"

    # ------------------------------------------------------- transport glue
    def arrival(self, peer: PeerInfo) -> Arrival:
        """Which side a message came from: the SIP-3 listener, or a TLS connection we opened to a
        partner, is the external side; everything else is internal."""
        external = peer.listener == SIP3_LISTENER or (peer.listener == OUTBOUND and peer.transport == "tls")
        if not external:
            return Arrival(Side.INTERNAL, peer.remote)
        return Arrival(Side.EXTERNAL, peer.remote, self.identify_peer(peer.certificate, peer.remote))

    def on_request(self, request: SipRequest, peer: PeerInfo) -> list[Forward]:
        return self.handle_request(request, self.arrival(peer))

    def on_response(self, response: SipResponse, peer: PeerInfo) -> list[Forward]:
        return self.handle_response(response, self.arrival(peer))

    # -------------------------------------------------------------- requests
    def handle_request(self, request: SipRequest, arrival: Arrival) -> list[Forward]:
        """Process one request; return it forwarded, or the response that refuses it."""
        work = request.copy()
        try:
            stamp_received(work, arrival.remote)
        except RoutingError as error:
            return self._refuse(request, arrival, BAD_REQUEST, error.reason, error.status)
        respond_to = work.copy()
        try:
            if arrival.side is Side.INTERNAL:
                return self._exit(work, arrival, respond_to)
            return self._entry(work, arrival, respond_to)
        except TopologyLeakError as error:
            return self._refuse(respond_to, arrival, INTERNAL_NAME, error.reason, error.status)
        except TopologyError as error:
            return self._refuse(respond_to, arrival, ROUTE_UNSEALED, error.reason, error.status)
        except RoutingError as error:
            reason = TOO_MANY_HOPS if error.status == 483 else BAD_REQUEST
            return self._refuse(respond_to, arrival, reason, error.reason, error.status)

    def _exit(self, request: SipRequest, arrival: Arrival, respond_to: SipRequest) -> list[Forward]:
        """Exit point: internal → partner (TS 24.379 6.8.2)."""
        if self._internal_sources and ipaddress.ip_address(arrival.remote[0]) not in self._internal_sources:
            return self._refuse(
                respond_to, arrival, NOT_A_SERVER, "source is not one of this system's servers"
            )
        if request.method == "REGISTER":
            return self._refuse(respond_to, arrival, REGISTER_REFUSED, "REGISTER never leaves the system")
        initial = is_initial(request)
        dialog_key = self.topology.restore_request(request, Side.INTERNAL)
        chosen = self._partner_of_outbound(request, initial)
        if isinstance(chosen, Decision):
            return self._refuse_with(respond_to, arrival, chosen)
        agreement = chosen
        decision = check_outbound(request, agreement)
        if not decision.allowed:
            return self._refuse_with(respond_to, arrival, decision)
        if agreement.explicit_outbound and needs_ear(request) and EAR_HEADER not in request.headers:
            # WA-SP-28: the sending server signs; the border never forwards an unsigned request.
            return self._refuse_with(
                respond_to,
                arrival,
                Decision.refuse(
                    MISSING,
                    f"explicit authentication toward {agreement.name}: the sending server attached no EAR",
                    agreement.name,
                    warning=self.ear_policy.warning(MISSING),
                ),
            )
        info = self._mcptt_info(request)
        if isinstance(info, Decision):
            return self._refuse_with(respond_to, arrival, info)
        # Identities read in clear from our own servers above; now the SPK hides them (9.3).
        refusal, spk_id = self.spk.protect(request, agreement)
        if refusal is not None:
            return self._refuse_with(respond_to, arrival, refusal)
        if not initial:
            self.expiry.observed(request, from_partner=False)
        # 24.379 6.8.2 step 3: the gateway's own URI as asserted identity, the partner's PSI as target.
        request.headers.remove("P-Asserted-Identity")
        request.headers.remove("P-Preferred-Identity")
        request.headers.add("P-Asserted-Identity", f"<{self.own_uri}>")
        # A CANCEL or non-2xx ACK of an initial INVITE has its Request-URI but no body (RFC 3261
        # §9.1, §17.1.1.3): it gets the INVITE's rewrite, or the partner could not match or route it.
        follows_invite = request.method in ("CANCEL", "ACK") and dialog_key is None
        if "mcptt" in agreement.psis and (
            (initial and info is not None and info.request_uri) or follows_invite
        ):
            request.uri = agreement.psis["mcptt"]
        self.topology.hide_request(request, Side.INTERNAL, dialog_key)
        decrement_max_forwards(request, self.settings.max_forwards)
        self._audit_allow(request, arrival, agreement.name, "outbound", **_spk_field(spk_id))
        return [Forward(request, agreement.is_proxy_address, agreement.is_proxy_host)]

    def _partner_of_outbound(self, request: SipRequest, initial: bool) -> PartnerAgreement | Decision:
        routes = request.headers.get_all("Route")
        try:
            target = SipUri.parse(NameAddr.parse(routes[0]).uri if routes else request.uri)
        except SipSyntaxError as error:
            return Decision.refuse(BAD_REQUEST, f"cannot read the target: {error.reason}", status=400)
        host = target.host.lower()
        for name, partner in self.partners.items():
            if host == partner.agreement.is_proxy_host:
                return self.partners[name].agreement
        if initial and host in self.domains.own:
            return Decision.refuse(
                TARGET_LOCAL, f"target {target.address_of_record} is homed here", status=404
            )
        return choose_partner(host, [p.agreement for p in self.partners.values()], self.domains)

    def _entry(self, request: SipRequest, arrival: Arrival, respond_to: SipRequest) -> list[Forward]:
        """Entry point: partner → internal (WA-IC-07)."""
        partner = self.partners.get(arrival.partner or "")
        if partner is None:
            return self._refuse(respond_to, arrival, PEER_UNKNOWN, "peer did not authenticate as a partner")
        agreement = partner.agreement
        initial = is_initial(request)
        if initial and request.method == "OPTIONS" and self._addresses_proxy(request.uri):
            response = make_response(respond_to, 200, to_tag="isp")
            self._audit_allow(request, arrival, agreement.name, "inbound", local="options")
            return [self._answer(response, arrival)]
        # Verify, then decrypt, before anything reads the body (TS 24.379 7.3.1A, WA-SP-13/14).
        refusal, spk_ids = self.spk.unprotect(request, agreement)
        if refusal is not None:
            return self._refuse_with(respond_to, arrival, refusal)
        info = self._mcptt_info(request)
        if isinstance(info, Decision):
            return self._refuse_with(respond_to, arrival, info)
        decision = check_inbound(request, agreement, self.domains, info, self.authenticator)
        if not decision.allowed:
            return self._refuse_with(respond_to, arrival, decision)
        ear = decision.ear
        tracked = ear is not None and ear.expiry is not None and initial and request.method == "INVITE"
        if tracked and self.expiry.full:
            return self._refuse(
                respond_to,
                arrival,
                EXPIRY_TABLE_FULL,
                "too many INVITEs with a Request Expiry in progress on this instance",
                503,
            )
        dialog_key = self.topology.restore_request(request, Side.EXTERNAL)
        if initial or (request.method == "ACK" and dialog_key is None):
            destination = self.settings.routes.get(_aor(request.uri))
            if destination is None:
                return self._refuse(
                    respond_to, arrival, UNKNOWN_PSI, f"{_aor(request.uri)} is not a published PSI", 404
                )
        elif dialog_key is None:
            return self._refuse(
                respond_to, arrival, DIALOG_NOT_SEALED, "in-dialog request without routing data sealed here"
            )
        else:
            destination = next_hop(request, "tcp")
            # Only a request proved to belong to a dialog of this border may end or advance its
            # expiry tracking (a refused BYE must not cancel the release).
            self.expiry.observed(request, from_partner=True)
        self.topology.hide_request(request, Side.EXTERNAL, dialog_key)
        decrement_max_forwards(request, self.settings.max_forwards)
        forward = Forward(request, destination)
        extra = _spk_field(spk_ids)
        if ear is not None and ear.ear_id is not None:
            return [
                self._claimed(forward, respond_to, arrival, agreement.name, ear, tracked=tracked, extra=extra)
            ]
        self._audit_allow(request, arrival, agreement.name, "inbound", **extra)
        return [forward]

    def _claimed(
        self,
        forward: Forward,
        respond_to: SipRequest,
        arrival: Arrival,
        partner: str,
        ear: EarVerdict,
        *,
        tracked: bool,
        extra: Mapping[str, str],
    ) -> Forward:
        """The forward with its replay step (WA-SP-26 step 9): every outcome prepared here, the
        store asked by the node; the allow line is written only once the EAR ID proved new."""
        assert ear.ear_id is not None
        request = forward.message
        assert isinstance(request, SipRequest)
        ear_name = str(uuid.UUID(bytes=ear.ear_id))

        def on_claimed() -> None:
            self._audit_allow(request, arrival, partner, "inbound", ear=ear_name, **extra)
            if tracked and ear.expiry is not None:
                self.expiry.admitted(request, partner=partner, expiry=ear.expiry, now=self.clock())

        seen_detail = f"EAR {ear_name} was already used within the replay window"

        def on_seen() -> None:
            self._audit_refusal(respond_to, arrival, REPLAY, seen_detail, status=403, partner=partner)

        def on_unavailable(reason: str) -> None:
            self._audit_refusal(respond_to, arrival, UNAVAILABLE, reason, status=403, partner=partner)

        def refusal(reason: str, detail: str) -> Forward | None:
            decision = Decision.refuse(reason, detail, partner, warning=self.ear_policy.warning(reason))
            refusals = self._refusal(respond_to, arrival, decision)
            return refusals[0] if refusals else None

        return Forward(
            forward.message,
            forward.destination,
            forward.server_hostname,
            forward.fallback,
            claim=Claim(
                key=ear.ear_id,
                ttl=replay_ttl(self.ear_policy),
                on_claimed=on_claimed,
                if_seen=refusal(REPLAY, seen_detail),
                on_seen=on_seen,
                if_unavailable=refusal(UNAVAILABLE, "the replay store cannot answer: refused (fail closed)"),
                on_unavailable=on_unavailable,
            ),
        )

    def _mcptt_info(self, request: SipRequest) -> McpttInfo | Decision | None:
        try:
            return find_mcptt_info(request)
        except (McInfoError, SipSyntaxError, ValueError) as error:
            return Decision.refuse(BODY_UNREADABLE, f"MC body cannot be read: {error}", status=400)

    def _addresses_proxy(self, uri: str) -> bool:
        try:
            parsed = SipUri.parse(uri)
        except SipSyntaxError:
            return False
        return (parsed.user is None and parsed.host.lower() == self.public_host) or (
            f"{parsed.scheme}:{parsed.user}@{parsed.host.lower()}" == self.own_uri
        )

    # ------------------------------------------------------------- responses
    def handle_response(self, response: SipResponse, arrival: Arrival) -> list[Forward]:
        """Route a response back across the border by the Via stack sealed in our Via."""
        work = response.copy()
        inside_call_id = work.call_id
        try:
            self.topology.restore_response(work, arrival.side)
            if is_release(work):
                self._audit_release_answer(work, arrival)
                return []
            destination = response_destination(work)
        except RoutingError as error:
            self.audit.record(
                "drop",
                RESPONSE_UNROUTABLE,
                side=arrival.side.value,
                partner=arrival.partner,
                status=response.status,
                detail=error.reason,
            )
            return []
        if arrival.side is Side.INTERNAL:
            agreement = self._partner_by_via(work)
            if agreement is not None:
                refusal, _ = self.spk.protect(work, agreement)
                if refusal is not None:
                    self._audit_response_drop(work, arrival, refusal, agreement.name)
                    return []
            if len(self.expiry) and _answers_invite(work):
                self.expiry.answered(inside_call_id, work)
            return [self._toward_partner(work, destination)]
        partner = self.partners.get(arrival.partner or "")
        if partner is not None:
            refusal, _ = self.spk.unprotect(work, partner.agreement)
            if refusal is not None:
                self._audit_response_drop(work, arrival, refusal, partner.agreement.name)
                return []
        return [Forward(work, destination)]

    def _audit_response_drop(
        self, response: SipResponse, arrival: Arrival, refusal: Decision, partner: str
    ) -> None:
        """A response whose SPK protection failed is not forwarded (nothing half protected crosses)."""
        self.audit.record(
            "drop",
            refusal.reason,
            side=arrival.side.value,
            direction="outbound" if arrival.side is Side.INTERNAL else "inbound",
            partner=partner,
            status=response.status,
            detail=refusal.detail,
        )

    # ------------------------------------------------------ Request Expiry
    def release_expired(self, now: float | None = None) -> list[Forward]:
        """BYE toward the inside and toward the partner for every dialog whose EAR Request Expiry
        passed (J.2.4); each BYE is restored and sealed by the topology hider like a BYE from the
        other end of the dialog, so each side sees only its own Call-ID and route."""
        forwards: list[Forward] = []
        for release in self.expiry.due(self.clock() if now is None else now):
            partner = self.partners.get(release.partner)
            sent: list[str] = []
            for bye, arrived_on in (
                (release.toward_inside, Side.EXTERNAL),
                (release.toward_partner, Side.INTERNAL),
            ):
                try:
                    dialog_key = self.topology.restore_request(bye, arrived_on)
                    self.topology.hide_request(bye, arrived_on, dialog_key)
                    if arrived_on is Side.EXTERNAL:
                        forwards.append(Forward(bye, next_hop(bye, "tcp")))
                        sent.append("inside")
                    elif partner is not None:
                        agreement = partner.agreement
                        forwards.append(Forward(bye, agreement.is_proxy_address, agreement.is_proxy_host))
                        sent.append(release.partner)
                except RoutingError as error:
                    self.audit.record(
                        "drop",
                        RELEASE_FAILED,
                        partner=release.partner,
                        method="BYE",
                        side=arrived_on.other.value,
                        detail=error.reason,
                    )
            self.audit.record(
                "release",
                EXPIRED,
                partner=release.partner,
                method="BYE",
                detail=f"Request Expiry {release.expiry:.0f} passed: BYE toward "
                + (" and ".join(sent) or "nobody"),
            )
        return forwards

    def _audit_release_answer(self, response: SipResponse, arrival: Arrival) -> None:
        self.audit.record(
            "release",
            "release-answered",
            side=arrival.side.value,
            partner=arrival.partner,
            method="BYE",
            status=response.status,
        )

    def _partner_by_via(self, message: SipResponse) -> PartnerAgreement | None:
        """The partner whose IS proxy the top Via names (the one a response goes back to)."""
        try:
            sent_by = Via.parse(message.headers.get("Via") or "").host.lower()
        except SipSyntaxError:
            return None
        for partner in self.partners.values():
            if sent_by == partner.agreement.is_proxy_host:
                return partner.agreement
        return None

    def _toward_partner(self, message: SipResponse, destination: Address) -> Forward:
        """A response for a partner goes back over the connection its request came on (received,
        rport); when that connection is gone, to the partner IS proxy named by the Via sent-by."""
        agreement = self._partner_by_via(message)
        if agreement is None:
            return Forward(message, destination)
        return Forward(message, destination, agreement.is_proxy_host, agreement.is_proxy_address)

    # --------------------------------------------------------------- helpers
    def _refuse(
        self,
        request: SipRequest,
        arrival: Arrival,
        reason: str,
        detail: str,
        status: int = 403,
        *,
        decision: Decision | None = None,
    ) -> list[Forward]:
        partner = decision.partner if decision else None
        self._audit_refusal(request, arrival, reason, detail, status=status, partner=partner)
        warning = decision.warning if decision else None
        refusal = Decision.refuse(reason, detail, status=status, warning=warning)
        return self._refusal(request, arrival, refusal)

    def _audit_refusal(
        self,
        request: SipRequest,
        arrival: Arrival,
        reason: str,
        detail: str,
        *,
        status: int,
        partner: str | None,
    ) -> None:
        self.audit.record(
            "refuse",
            reason,
            side=arrival.side.value,
            direction="outbound" if arrival.side is Side.INTERNAL else "inbound",
            partner=arrival.partner or partner,
            method=request.method,
            status=status,
            detail=detail,
            remote=f"{arrival.remote[0]}:{arrival.remote[1]}",
        )

    def _refusal(self, request: SipRequest, arrival: Arrival, decision: Decision) -> list[Forward]:
        """The response that refuses ``request`` (nothing for an ACK), without an audit line."""
        if request.method == "ACK":
            return []  # an ACK is never answered (RFC 3261 §17.2.1)
        if (
            arrival.side is Side.EXTERNAL
            and self._spk_link(arrival.partner)
            and not is_spk_reason(decision.reason)
        ):
            # The detail may quote identities the SPK hides (read after decryption); the audit has it.
            decision = dataclasses.replace(decision, detail=DETAIL_WITHHELD)
        text = decision.warning_text(self.settings.warning_code)
        response = make_response(request, decision.status, warning=warning_value(self.public_host, text))
        try:
            return [self._answer(response, arrival)]
        except RoutingError:
            return []  # no usable Via: the refusal cannot be addressed

    def _spk_link(self, partner: str | None) -> bool:
        found = self.partners.get(partner or "")
        return found is not None and found.agreement.spk is not None

    def _refuse_with(self, request: SipRequest, arrival: Arrival, decision: Decision) -> list[Forward]:
        return self._refuse(
            request, arrival, decision.reason, decision.detail, decision.status, decision=decision
        )

    def _answer(self, response: SipResponse, arrival: Arrival) -> Forward:
        destination = response_destination(response)
        if arrival.side is Side.EXTERNAL:
            partner = self.partners.get(arrival.partner or "")
            if partner is not None:
                agreement = partner.agreement
                return Forward(response, destination, agreement.is_proxy_host, agreement.is_proxy_address)
        return Forward(response, destination)

    def _audit_allow(
        self, request: SipRequest, arrival: Arrival, partner: str, direction: str, **extra: str
    ) -> None:
        self.audit.record(
            "allow",
            ALLOWED,
            side=arrival.side.value,
            direction=direction,
            partner=partner,
            method=request.method,
            initial=is_initial(request),
            remote=f"{arrival.remote[0]}:{arrival.remote[1]}",
            **extra,
        )


def _spk_field(spk_ids: str | None) -> dict[str, str]:
    """The ``spk`` field of an allow line: the SPK-ID(s) that protected the message."""
    return {"spk": spk_ids} if spk_ids else {}


def _answers_invite(response: SipResponse) -> bool:
    try:
        return response.cseq[1] == "INVITE" and response.status >= 200
    except ValueError:
        return False


def _aor(uri: str) -> str:
    try:
        parsed = SipUri.parse(uri)
    except SipSyntaxError:
        return uri
    return f"sip:{parsed.user}@{parsed.host.lower()}" if parsed.user else f"sip:{parsed.host.lower()}"


def _load_anchor(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())
