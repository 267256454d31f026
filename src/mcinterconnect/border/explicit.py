"""Explicit authentication at the entry point: the EAR checks (TS 33.180 9.6, 11.1.1; WA-SP-26..28).

``ExplicitAuthentication`` is the ``policy.InboundAuthenticator`` of a partner whose agreement
says ``authentication = "explicit"`` (inbound).  For each request it runs ``check_ear`` with the
partner's imported KMS certificate (KPAK, KMS URI, key period), the partner's domains as the
allowed sources, this system's domains as the allowed targets and the request-type rule of
``protect.request_types``; then the identity rules of implicit authentication (P-Asserted-
Identity and body identities, WA-IC-11) still apply: an EAR vouches for the sending server, not
for the users it names.

Which requests (WA-SP-28): every initial request must carry an EAR, except a CANCEL or a
non-2xx ACK, which belong to the INVITE transaction that carried one (any EAR on them is
ignored); in-dialog requests are checked when they carry one.  A pass returns a ``Decision``
holding the verdict: the replay step (WA-SP-26 step 9) needs the asynchronous store and is the
IS proxy's (``isproxy.py``, executed by the node).

``AuthenticationByAgreement`` picks implicit or explicit per partner agreement.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping

from mcinterconnect.border.agreement import PartnerAgreement
from mcinterconnect.border.policy import Decision, ImplicitAuthentication, InboundAuthenticator
from mcinterconnect.crypto import eccsi
from mcinterconnect.crypto.kms import KmsCertificate
from mcinterconnect.identity import DomainMap
from mcinterconnect.mcinfo import McpttInfo
from mcinterconnect.protect.ear import EAR_HEADER
from mcinterconnect.protect.ear_check import MALFORMED, MISSING, SIGNATURE, EarPolicy, check_ear
from mcinterconnect.protect.request_types import request_type_rule
from mcinterconnect.sip.message import SipRequest
from mcinterconnect.sip.proxy import is_initial

#: Initial requests that need no EAR of their own: they belong to their INVITE's transaction.
EAR_EXEMPT_METHODS = frozenset({"CANCEL", "ACK"})


def needs_ear(request: SipRequest) -> bool:
    """WA-SP-28: an initial request other than CANCEL / non-2xx ACK must carry an EAR."""
    return is_initial(request) and request.method not in EAR_EXEMPT_METHODS


def ear_header(request: SipRequest) -> tuple[str | None, int]:
    """The MC-EAR header value (first one) and how many the request carries."""
    values = request.headers.get_all(EAR_HEADER)
    return (values[0] if values else None), len(values)


class ExplicitAuthentication:
    """EAR verification of a partner's requests (module docstring)."""

    def __init__(
        self,
        *,
        own_domains: Collection[str],
        certificates: Mapping[str, KmsCertificate],
        policy: EarPolicy,
        clock: Callable[[], float] = time.time,
        verifier: eccsi.Verifier | None = None,
        identities: InboundAuthenticator | None = None,
    ) -> None:
        """``certificates``: the imported KMS certificate of each explicit partner, by name."""
        self.own_domains = frozenset(domain.lower() for domain in own_domains)
        self.certificates = dict(certificates)
        self.policy = policy
        self.clock = clock
        self.verifier = verifier or eccsi.Verifier()
        self.identities = identities or ImplicitAuthentication()

    def check(
        self, request: SipRequest, agreement: PartnerAgreement, domains: DomainMap, info: McpttInfo | None
    ) -> Decision:
        partner = agreement.name
        header, count = ear_header(request)
        if request.method in EAR_EXEMPT_METHODS and is_initial(request):
            return self.identities.check(request, agreement, domains, info)
        if header is None and not needs_ear(request):
            # In-dialog without an EAR (WA-SP-28): the sealed routing data proves the dialog.
            return self.identities.check(request, agreement, domains, info)
        if count > 1:
            return self._refuse(MALFORMED, f"{count} MC-EAR headers, one expected", partner)
        certificate = self.certificates.get(partner)
        if certificate is None:  # the configuration requires it; never admit without one
            return self._refuse(SIGNATURE, f"no KMS certificate of {partner} to verify with", partner)
        verdict = check_ear(
            header,
            now=self.clock(),
            policy=self.policy,
            source_domains=agreement.domains,
            target_domains=self.own_domains,
            allowed_request_types=request_type_rule(info, agreement.allowed_request_types),
            kms_uri=certificate.kms_uri,
            kpak=certificate.pub_auth_key,
            key_period=certificate.key_period,
            verifier=self.verifier,
        )
        if not verdict.ok:
            if verdict.reason == MISSING:
                detail = f"explicit authentication: {request.method} carries no EAR"
                return self._refuse(MISSING, detail, partner)
            return Decision.refuse(verdict.reason, verdict.detail, partner, warning=verdict.warning)
        identities = self.identities.check(request, agreement, domains, info)
        if not identities.allowed:
            return identities
        return Decision.allow(partner, verdict.detail, ear=verdict)

    def _refuse(self, reason: str, detail: str, partner: str) -> Decision:
        return Decision.refuse(reason, detail, partner, warning=self.policy.warning(reason))


class AuthenticationByAgreement:
    """Implicit or explicit authentication, as each partner agreement says (inbound direction)."""

    def __init__(
        self, *, implicit: InboundAuthenticator, explicit: InboundAuthenticator | None = None
    ) -> None:
        self.implicit = implicit
        self.explicit = explicit

    def check(
        self, request: SipRequest, agreement: PartnerAgreement, domains: DomainMap, info: McpttInfo | None
    ) -> Decision:
        if not agreement.explicit_inbound:
            return self.implicit.check(request, agreement, domains, info)
        if self.explicit is None:  # a configuration the runner never builds: fail closed
            return Decision.refuse(
                SIGNATURE, "explicit authentication is not set up on this IS proxy", agreement.name
            )
        return self.explicit.check(request, agreement, domains, info)
