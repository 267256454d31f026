"""SPK protection of SIP-3 at the IS proxy (TS 33.180 9.1, 9.3; WA-SP-13/14), sans-IO.

Toward a partner whose agreement has an ``spk``, the exit point protects every MC XML body of a
message (``xmlprotect.protect_message``: the sensitive elements encrypted, then every MC XML body
signed) with the keys of the link's current SPK, after policy has read the identities in clear and
before topology hiding; it also replaces the From and To URIs, which would otherwise name the
users the encryption hides, by the IS proxy's own URI and the partner's PSI (tags kept).  From
such a partner, the entry point verifies every signature, then decrypts
(``xmlprotect.unprotect_message``) with the SPK-IDs the link accepts at that instant (the current
SPK and those in their grace period), before policy reads the body, and hands plaintext on;
unsigned MC XML bodies are refused when the agreement says ``required``.  Responses are treated
alike in both directions; a response that fails is dropped.

Every refusal is a ``Decision`` with its own reason code and a 92x Warning text (docs/PROFILE.md,
"SPK protection of SIP-3"): an unreadable protection is 400, everything else 403.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Final

from mcinterconnect.border.agreement import PartnerAgreement
from mcinterconnect.border.policy import Decision
from mcinterconnect.crypto.keyids import format_key_id
from mcinterconnect.protect.spk import SPK_EXPIRED, SPK_KEY_PURPOSE, SPK_UNKNOWN, SpkRing
from mcinterconnect.protect.xmlprotect import (
    XmlFault,
    XmlProtectError,
    protect_message,
    unprotect_message,
)
from mcinterconnect.sip.message import SipMessage, SipRequest
from mcinterconnect.sip.uri import NameAddr, SipSyntaxError

# Reason codes of SPK protection (spk-unknown, spk-expired and spk-key-purpose live in protect/spk.py).
SPK_MALFORMED: Final = "spk-malformed"
SPK_INTEGRITY: Final = "spk-integrity"
SPK_DECRYPT: Final = "spk-decrypt"
SPK_UNPROTECTED: Final = "spk-unprotected"

#: The Warning text of each refusal (code and phrase; the rule and detail follow in parentheses).
SPK_WARNINGS: Final = {
    SPK_MALFORMED: "920 SPK protection malformed",
    SPK_INTEGRITY: "921 SPK integrity check failed",
    SPK_DECRYPT: "922 SPK decryption failed",
    SPK_UNKNOWN: "923 SPK-ID unknown",
    SPK_EXPIRED: "924 SPK-ID expired",
    SPK_UNPROTECTED: "925 SPK protection required",
    SPK_KEY_PURPOSE: "926 key ID is not an SPK-ID",
}

#: What a refusal sent to an SPK partner says instead of its detail (unless it is an SPK refusal):
#: details of policy checks quote the identities that the SPK keeps from the path.
DETAIL_WITHHELD: Final = "detail withheld on an SPK-protected link (see the audit log)"

_BY_FAULT: Final = {
    XmlFault.MALFORMED: SPK_MALFORMED,
    XmlFault.INTEGRITY: SPK_INTEGRITY,
    XmlFault.DECRYPT: SPK_DECRYPT,
    XmlFault.UNPROTECTED: SPK_UNPROTECTED,
    XmlFault.KEY_PURPOSE: SPK_KEY_PURPOSE,
}


def is_spk_reason(reason: str) -> bool:
    """A refusal of SPK protection itself (its detail names SPK-IDs and faults, never identities)."""
    return reason in SPK_WARNINGS


def spk_refusal(reason: str, detail: str, partner: str | None) -> Decision:
    """A refusal of SPK protection: 400 for a malformed protection, 403 otherwise."""
    status = 400 if reason == SPK_MALFORMED else 403
    return Decision.refuse(reason, detail, partner, status, warning=SPK_WARNINGS[reason])


class SpkProtection:
    """The SPK rings of every partner link of one IS proxy, and the two steps that use them."""

    def __init__(
        self,
        rings: Mapping[str, SpkRing] | None = None,
        *,
        own_uri: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``rings``: the loaded SPK file of each partner whose agreement has an ``spk``, by name;
        ``own_uri``: the IS proxy's URI (the From of what it protects); ``clock``: Unix seconds
        (the grace periods are instants)."""
        self.rings = dict(rings or {})
        self.own_uri = own_uri
        self.clock = clock

    def replace(self, partner: str, ring: SpkRing) -> None:
        """Use ``ring`` from now on (the runner reloads a rotated SPK file)."""
        self.rings[partner] = ring

    def _ring(self, agreement: PartnerAgreement) -> SpkRing | Decision:
        ring = self.rings.get(agreement.name)
        if ring is None:  # the runner always loads one; never send or admit without it
            return spk_refusal(SPK_UNKNOWN, f"no SPK loaded for {agreement.name}", agreement.name)
        return ring

    # ------------------------------------------------------------------- exit
    def protect(self, message: SipMessage, agreement: PartnerAgreement) -> tuple[Decision | None, str | None]:
        """Protect ``message`` for ``agreement``'s partner in place.

        Returns a refusal (the message is then unchanged) or ``None``, and the SPK-ID that
        protected it (8 hex digits; ``None`` without an SPK or without an MC XML body)."""
        if agreement.spk is None:
            return None, None
        ring = self._ring(agreement)
        if isinstance(ring, Decision):
            return ring, None
        before = message.body
        try:
            protect_message(message, ring.current_keys())
        except XmlProtectError as error:
            reason = _BY_FAULT.get(error.reason, SPK_MALFORMED)
            return spk_refusal(
                reason, f"cannot protect toward {agreement.name}: {error}", agreement.name
            ), None
        if isinstance(message, SipRequest):
            _mask_identity_headers(message, {"From": self.own_uri, "To": agreement.psis["mcptt"]})
        return None, (ring.current.name if message.body != before else None)

    # ------------------------------------------------------------------ entry
    def unprotect(
        self, message: SipMessage, agreement: PartnerAgreement
    ) -> tuple[Decision | None, str | None]:
        """Verify, then decrypt ``message`` from ``agreement``'s partner in place.

        Returns a refusal (the message is then unchanged) or ``None``, and the SPK-IDs used
        (8 hex digits, comma separated) for the audit line, if any."""
        settings = agreement.spk
        if settings is None:
            return None, None
        ring = self._ring(agreement)
        if isinstance(ring, Decision):
            return ring, None
        now = self.clock()
        asked: list[int] = []
        try:
            found = unprotect_message(message, ring.resolver(now, asked), require_signature=settings.required)
        except XmlProtectError as error:
            return self._refusal(error, ring, asked, now, agreement.name), None
        used = ",".join(format_key_id(key_id) for key_id in sorted(found.key_ids)) or None
        return None, used

    def _refusal(
        self, error: XmlProtectError, ring: SpkRing, asked: list[int], now: float, partner: str
    ) -> Decision:
        if error.reason is XmlFault.UNKNOWN_KEY and asked:
            for key_id in reversed(asked):
                reason, detail = ring.refusal(key_id, now)
                if reason:
                    return spk_refusal(reason, detail, partner)
        reason = _BY_FAULT.get(
            error.reason, SPK_UNKNOWN if error.reason is XmlFault.UNKNOWN_KEY else SPK_MALFORMED
        )
        return spk_refusal(reason, str(error), partner)


def _mask_identity_headers(request: SipRequest, replacements: Mapping[str, str]) -> None:
    """From := this border's URI, To := the partner's PSI, tags and other parameters kept.

    The SPK hides the users in the MC body; From and To would name them again in clear.  Both are
    rewritten the same way for every request, so a CANCEL still matches its INVITE (RFC 3261 §9.1);
    dialogs are matched by Call-ID and tags, never by these URIs (RFC 3261 §12)."""
    for name, uri in replacements.items():
        value = request.headers.get(name)
        if value is None:
            continue
        try:
            address = NameAddr.parse(value)
        except SipSyntaxError:
            continue  # unreadable: the topology hider's checks decide about it
        request.headers.set(name, str(dataclasses.replace(address, uri=uri, display=None, bracketed=True)))
