"""Border policy as pure decisions (TS 33.180 11.1.1; TS 24.379 6.8.2; interconnection.md §6).

Each function takes what it needs (the request, the partner agreement, the domain map, the MC
identities read from the body) and returns a ``Decision`` with a reason code; nothing here does
I/O.  Reason codes are stable strings: they appear in the SIP Warning, in the audit log and in
``docs/PROFILE.md``.

Inbound (entry point, WA-IC-07/WA-IC-11):
  BC-2  REGISTER never comes from a partner; only partner servers reach SIP-3;
  BC-5  the method must be allowed by the agreement;
  BC-3  implicit authentication: the source (P-Asserted-Identity) must be an external MC service
        ID of the partner the TLS peer authenticated as; an identity claiming this system's own
        domain is spoofed; body identities are checked by the kind of request.
Outbound (exit point, TS 24.379 6.8.2): the partner is chosen by the target's domain; no
agreement, or a method the agreement does not allow, gives 403 with
``Warning: 399 <host> "179 service not authorized with the interconnected system"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from mcinterconnect.border.agreement import PartnerAgreement
from mcinterconnect.identity import DomainMap, IdentityError, McServiceId, Origin
from mcinterconnect.mcinfo import McpttInfo
from mcinterconnect.protect.ear_check import EarVerdict
from mcinterconnect.sip.message import SipRequest
from mcinterconnect.sip.proxy import is_initial

SERVICE_NOT_AUTHORIZED = "service not authorized with the interconnected system"

# Reason codes (docs/PROFILE.md lists each with its rule).
ALLOWED = "allowed"
NO_AGREEMENT = "no-agreement"
REGISTER_REFUSED = "register-refused"
METHOD_NOT_ALLOWED = "method-not-allowed"
SOURCE_MISSING = "source-missing"
SOURCE_NOT_PARTNER = "source-not-partner"
SOURCE_SPOOFED = "source-spoofed"
SOURCE_MALFORMED = "source-malformed"
CALLING_USER_MISSING = "calling-user-missing"
CALLING_USER_NOT_PARTNER = "calling-user-not-partner"
CALLING_USER_SPOOFED = "calling-user-spoofed"
TARGET_NOT_LOCAL = "target-not-local"
NOT_A_SERVER = "not-a-server"

#: Requests that a partner *user* originates must name a calling user of that partner (WA-IC-11.3).
_USER_ORIGINATED = frozenset({"MESSAGE", "INVITE"})


@dataclass(frozen=True)
class Decision:
    """The outcome of one policy check.

    ``warning`` replaces the 24.379 code and phrase of the Warning text when a rule has its own
    (the ``90x`` texts of the EAR checks, WA-SP-26).  ``ear`` is the verdict of an EAR that
    passed every check but the replay step, which the caller still owes (explicit mode).
    """

    allowed: bool
    reason: str
    detail: str = ""
    status: int = 200
    partner: str | None = None
    warning: str | None = None
    ear: EarVerdict | None = None

    @classmethod
    def allow(cls, partner: str | None, detail: str = "", *, ear: EarVerdict | None = None) -> Decision:
        return cls(True, ALLOWED, detail, 200, partner, ear=ear)

    @classmethod
    def refuse(
        cls,
        reason: str,
        detail: str,
        partner: str | None = None,
        status: int = 403,
        *,
        warning: str | None = None,
    ) -> Decision:
        return cls(False, reason, detail, status, partner, warning)

    def warning_text(self, code: int) -> str:
        """The Warning text: the 24.379 code and phrase (or the rule's own), then the rule that refused."""
        lead = self.warning or f"{code} {SERVICE_NOT_AUTHORIZED}"
        return f"{lead} ({self.reason}: {self.detail})"


class InboundAuthenticator(Protocol):
    """How a partner's requests are authenticated at the entry point (TS 33.180 11.1.1).

    ``implicit`` is built in; the explicit mode (EAR, 33.180 9.6) is ``explicit.py``.
    """

    def check(
        self, request: SipRequest, agreement: PartnerAgreement, domains: DomainMap, info: McpttInfo | None
    ) -> Decision: ...


def _identities(values: Sequence[str]) -> list[McServiceId] | str:
    """The SIP identities asserted, or the value that cannot be read (refused: fail closed).

    Only ``tel:`` values are skipped: they name no system (a tel URI may stand beside the SIP
    URI, RFC 3325).  Any other value must be an MC service ID.
    """
    found: list[McServiceId] = []
    for value in values:
        if value.strip().lstrip("<").lower().startswith("tel:") or "<tel:" in value.lower():
            continue
        try:
            found.append(McServiceId.parse(value))
        except IdentityError:
            return value
    return found


class ImplicitAuthentication:
    """Implicit authentication of partner requests (WA-IC-11)."""

    def check(
        self, request: SipRequest, agreement: PartnerAgreement, domains: DomainMap, info: McpttInfo | None
    ) -> Decision:
        partner = agreement.name
        initial = is_initial(request)
        asserted = _identities(request.headers.get_all("P-Asserted-Identity"))
        if isinstance(asserted, str):
            return Decision.refuse(
                SOURCE_MALFORMED, f"P-Asserted-Identity {asserted[:80]!r} is not an MC service ID", partner
            )
        if initial and not asserted:
            return Decision.refuse(SOURCE_MISSING, "no P-Asserted-Identity names the source", partner)
        for identity in asserted:
            verdict = domains.classify(identity)
            if verdict.origin is Origin.LOCAL:
                return Decision.refuse(
                    SOURCE_SPOOFED, f"source {identity} claims this system's own domain", partner
                )
            if verdict.partner != partner:
                return Decision.refuse(
                    SOURCE_NOT_PARTNER,
                    f"source {identity} is not an external MC service ID of {partner}",
                    partner,
                )
        return _check_body_identities(request, partner, domains, info, initial=initial)


def _check_body_identities(
    request: SipRequest, partner: str, domains: DomainMap, info: McpttInfo | None, *, initial: bool
) -> Decision:
    if info is None:
        if initial and request.method in _USER_ORIGINATED:
            return Decision.refuse(
                CALLING_USER_MISSING,
                f"{request.method} from a partner carries no mcptt-info calling user",
                partner,
            )
        return Decision.allow(partner)
    group_of_partner = False
    # The exemption for a calling user of another system holds only for a group call that the
    # partner controls (interconnection.md §9.2): an INVITE naming a calling group of that partner.
    if info.calling_group_id and request.method == "INVITE":
        group = _one(info.calling_group_id)
        group_of_partner = group is not None and domains.is_external_of(group, partner)
    if info.calling_user_id:
        caller = _one(info.calling_user_id)
        if caller is None:
            return Decision.refuse(CALLING_USER_NOT_PARTNER, "calling user is not an MC service ID", partner)
        verdict = domains.classify(caller)
        if verdict.origin is Origin.LOCAL and not group_of_partner:
            # Legitimate only when a partner-controlled group call invites our members (§9.2).
            return Decision.refuse(
                CALLING_USER_SPOOFED, f"calling user {caller} claims this system's own domain", partner
            )
        foreign = verdict.origin is Origin.UNKNOWN or (
            verdict.origin is Origin.PARTNER and verdict.partner != partner
        )
        if foreign and not group_of_partner:
            return Decision.refuse(
                CALLING_USER_NOT_PARTNER, f"calling user {caller} is not homed in {partner}", partner
            )
    elif initial and request.method in _USER_ORIGINATED:
        return Decision.refuse(
            CALLING_USER_MISSING, f"{request.method} from a partner names no calling user", partner
        )
    if info.request_uri and initial:
        target = _one(info.request_uri)
        if target is None or domains.classify(target).origin is not Origin.LOCAL:
            return Decision.refuse(TARGET_NOT_LOCAL, f"target {info.request_uri} is not homed here", partner)
    return Decision.allow(partner)


def _one(value: str) -> McServiceId | None:
    try:
        return McServiceId.parse(value)
    except IdentityError:
        return None


def check_inbound(
    request: SipRequest,
    agreement: PartnerAgreement,
    domains: DomainMap,
    info: McpttInfo | None,
    authenticator: InboundAuthenticator,
) -> Decision:
    """Entry-point decision for a request from an authenticated partner peer (BC-2, BC-5, BC-3/4)."""
    partner = agreement.name
    if request.method == "REGISTER":
        return Decision.refuse(
            REGISTER_REFUSED, "REGISTER is never accepted from a partner: clients register at home", partner
        )
    if request.method not in agreement.allowed_methods:
        return Decision.refuse(
            METHOD_NOT_ALLOWED, f"{request.method} is not allowed by the agreement", partner
        )
    return authenticator.check(request, agreement, domains, info)


def choose_partner(
    target_domain: str, agreements: Sequence[PartnerAgreement], domains: DomainMap
) -> PartnerAgreement | Decision:
    """Exit point step 1 (TS 24.379 6.8.2): the interconnected system addressed by the target."""
    partner = domains.partner_for_domain(target_domain)
    for agreement in agreements:
        if agreement.name == partner:
            return agreement
    return Decision.refuse(NO_AGREEMENT, f"no interconnection agreement covers {target_domain}")


def check_outbound(request: SipRequest, agreement: PartnerAgreement) -> Decision:
    """Exit point step 2 (TS 24.379 6.8.2): local policy for a request leaving the system."""
    if request.method == "REGISTER":
        return Decision.refuse(REGISTER_REFUSED, "REGISTER never leaves the system", agreement.name)
    if request.method not in agreement.allowed_methods:
        return Decision.refuse(
            METHOD_NOT_ALLOWED, f"{request.method} is not allowed towards {agreement.name}", agreement.name
        )
    return Decision.allow(agreement.name)
