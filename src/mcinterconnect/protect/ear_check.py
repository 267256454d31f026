"""The receiver checks of an EAR (WA-SP-26) as one pure function: ``check_ear``.

Order (spec/signalling-protection-and-ear.md §7.7): cheap checks first, the signature last, so
that a forged EAR costs one decode and a few comparisons, and nothing reaches the replay store
before its signature verified:

1. ``ear-missing`` — no ``MC-EAR`` header (explicit mode requires one, WA-SP-28);
2. ``ear-malformed`` — not an Annex J EAR (``ear.parse_signed_ear``, strict, WA-SP-30);
3. ``ear-stale`` — Date and time further than the skew from now;
4. ``ear-source`` — Source ID not ``sip:user@host`` / ``sip:host`` with a host of the partner;
5. ``ear-target`` — Target ID not in this system (or not exactly the receiving entity);
6. ``ear-request-type`` — OFF-NETWORK SIGNALLING, or a type the caller finds inconsistent with
   the SIP/HTTP request (WA-SP-27);
7. ``ear-expired`` — Request Expiry reached (J.2.4);
8. ``ear-signature`` — ECCSI signature under the partner KMS (WA-SP-24).

Step 9, the replay check (``ear-replay``; ``ear-replay-store-unavailable`` when the store cannot
answer, fail closed), is the caller's: after a pass it inserts ``verdict.ear_id`` if absent for
``replay_ttl(policy)`` seconds.  Each refusal carries a reason code for the audit log, a detail
for the log (partner-supplied text is truncated and quoted) and the ``90x`` Warning text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from mcinterconnect.crypto import eccsi
from mcinterconnect.crypto.ec import Point
from mcinterconnect.crypto.uid import KeyPeriod
from mcinterconnect.protect.ear import (
    DEFAULT_CODE_POINTS,
    EarCodePoints,
    EarError,
    RequestType,
    SignedEar,
    decode_header_value,
    parse_signed_ear,
    verify_ear_signature,
)
from mcinterconnect.sip.uri import SipSyntaxError, SipUri

__all__ = [
    "DEFAULT_WARNINGS",
    "EXPIRED",
    "MALFORMED",
    "MISSING",
    "OK",
    "REPLAY",
    "REQUEST_TYPE",
    "SIGNATURE",
    "SOURCE",
    "STALE",
    "TARGET",
    "UNAVAILABLE",
    "EarPolicy",
    "EarVerdict",
    "check_ear",
    "entity_host",
    "refused",
    "replay_ttl",
]

OK = "ear-ok"
MISSING = "ear-missing"
MALFORMED = "ear-malformed"
STALE = "ear-stale"
SOURCE = "ear-source"
TARGET = "ear-target"
REQUEST_TYPE = "ear-request-type"
EXPIRED = "ear-expired"
SIGNATURE = "ear-signature"
REPLAY = "ear-replay"
UNAVAILABLE = "ear-replay-store-unavailable"

#: Warning code and text per reason (WA-SP-26 table; 910 is this project's, for fail-closed).
DEFAULT_WARNINGS: Mapping[str, str] = MappingProxyType(
    {
        MISSING: "901 EAR missing",
        MALFORMED: "902 EAR malformed",
        SIGNATURE: "903 EAR signature invalid",
        SOURCE: "904 EAR source not allowed",
        TARGET: "905 EAR target mismatch",
        STALE: "906 EAR outside time window",
        REPLAY: "907 EAR replayed",
        REQUEST_TYPE: "908 EAR request type not allowed",
        EXPIRED: "909 EAR expired",
        UNAVAILABLE: "910 EAR replay store unavailable",
    }
)

#: Shortest time an EAR ID is kept, whatever the skew.
MIN_REPLAY_TTL = 60.0
#: A warning text goes inside a SIP quoted-string: three digits, a space, printable ASCII, no quote.
_WARNING_RE = re.compile(r"[0-9]{3} [\x20\x21\x23-\x5b\x5d-\x7e]{1,100}")
_DETAIL_CHARS = 80


@dataclass(frozen=True)
class EarVerdict:
    """The outcome of ``check_ear``: ``ok`` with reason ``ear-ok``, or the first check that refused.

    ``warning`` is the ``90x text`` of the refusal (empty on a pass); ``ear`` the decoded EAR when
    decoding got that far."""

    ok: bool
    reason: str
    detail: str
    warning: str
    ear: SignedEar | None = None

    @property
    def ear_id(self) -> bytes | None:
        """The 16 EAR ID octets, the replay store key (never the signature octets: ECCSI is
        malleable, see eccsi.py)."""
        return None if self.ear is None else self.ear.payload.ear_id.bytes

    @property
    def expiry(self) -> int | None:
        """Request Expiry (Unix seconds) when present: the dialogs must end then (J.2.4)."""
        if self.ear is None or self.ear.payload.request is None:
            return None
        return self.ear.payload.request.expiry


def _default_warnings() -> Mapping[str, str]:
    return DEFAULT_WARNINGS


@dataclass(frozen=True)
class EarPolicy:
    """Knobs of the receiver checks: the allowed clock skew in seconds (default ±30 s), the
    Warning text per reason (defaults ``DEFAULT_WARNINGS``; a partial mapping overrides only
    the reasons it names) and the code points of the codec."""

    skew: float = 30.0
    warning_codes: Mapping[str, str] = field(default_factory=_default_warnings)
    codes: EarCodePoints = DEFAULT_CODE_POINTS

    def __post_init__(self) -> None:
        if (
            isinstance(self.skew, bool)
            or not isinstance(self.skew, int | float)
            or not math.isfinite(self.skew)
            or self.skew < 0
        ):
            raise ValueError(f"skew must be finite seconds of 0 or more, not {self.skew!r}")
        for reason, text in self.warning_codes.items():
            if reason not in DEFAULT_WARNINGS:
                raise ValueError(f"warning_codes: unknown reason {reason!r}")
            if not isinstance(text, str) or not _WARNING_RE.fullmatch(text):
                raise ValueError(f"warning_codes[{reason!r}] must be 'NNN text' (printable ASCII, no quote)")
        # Merged over the defaults and frozen: a later change to the caller's dict changes nothing.
        merged = MappingProxyType({**DEFAULT_WARNINGS, **self.warning_codes})
        object.__setattr__(self, "warning_codes", merged)
        if not isinstance(self.codes, EarCodePoints):
            raise ValueError("codes must be EarCodePoints")

    def warning(self, reason: str) -> str:
        """The Warning text for ``reason`` (an override, else the default; ``KeyError`` for a
        reason that is not one of this module's)."""
        return self.warning_codes[reason]


def replay_ttl(policy: EarPolicy) -> float:
    """Seconds an EAR ID stays in the replay store: an EAR dated t is accepted while now lies in
    [t − skew, t + skew], so 2 × skew after the first acceptance covers every later one; plus one
    second for stores with whole-second expiry, and never under 60 s."""
    return max(2.0 * policy.skew + 1.0, MIN_REPLAY_TTL)


def refused(reason: str, detail: str, policy: EarPolicy, ear: SignedEar | None = None) -> EarVerdict:
    """A refusal verdict with the policy's Warning text (also for the caller's replay step)."""
    return EarVerdict(False, reason, detail, policy.warning(reason), ear)


def _quoted(text: str) -> str:
    """Partner-supplied text for a log line: repr (no control characters), bounded."""
    shown = repr(text[:_DETAIL_CHARS])
    return shown + ("..." if len(text) > _DETAIL_CHARS else "")


def entity_host(entity_id: str) -> str:
    """The host (lower case) of an Entity ID of the form ``sip:user@host`` or ``sip:host``, with
    no password, port, parameters or headers (an identity, not a route); ``ValueError`` else."""
    if not entity_id.startswith("sip:"):
        raise ValueError("not a sip: URI")
    try:
        uri = SipUri.parse(entity_id)
    except SipSyntaxError as error:
        raise ValueError(f"not a SIP URI ({error})") from None
    if uri.password is not None or uri.port is not None or uri.params or uri.headers:
        raise ValueError("has a password, port, parameters or headers")
    if uri.host.startswith("["):
        raise ValueError("host is an IP address literal")
    return uri.host.lower()


def _lower_set(domains: Collection[str]) -> frozenset[str]:
    return frozenset(domain.lower() for domain in domains)


def check_ear(
    header_value: str | None,
    *,
    now: float,
    policy: EarPolicy,
    source_domains: Collection[str],
    target_domains: Collection[str],
    target_id: str | None = None,
    target_roles: Collection[int] | None = None,
    allowed_request_types: Callable[[RequestType | None], bool],
    kms_uri: str,
    kpak: Point,
    key_period: KeyPeriod,
    verifier: eccsi.Verifier | None = None,
) -> EarVerdict:
    """Run the checks of WA-SP-26 in order (module docstring) and return the first refusal or a pass.

    ``source_domains`` are the partner's domains (the partner the TLS peer authenticated as),
    ``target_domains`` this system's; ``target_id``, when given, must equal the Target ID exactly
    (at the receiving server); ``target_roles``, when given, must hold the Target Role.
    ``allowed_request_types`` gets the Request type (``None`` when the Request IE is absent) and
    says whether it fits the SIP/HTTP request (WA-SP-27).  ``kms_uri``, ``kpak`` and
    ``key_period`` are those of the partner's KMS certificate.  No I/O, no replay store."""
    if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
        raise ValueError("now must be finite Unix seconds")
    if isinstance(source_domains, str) or isinstance(target_domains, str):
        raise ValueError("source_domains and target_domains are collections of domains, not one str")
    # 1. Present.
    if header_value is None:
        return refused(MISSING, "no MC-EAR header in the request", policy)
    # 2. Decodes per Annex J.
    try:
        ear = parse_signed_ear(decode_header_value(header_value), policy.codes)
    except EarError as error:
        return refused(MALFORMED, str(error), policy)
    payload = ear.payload
    # 3. Fresh: the time of the EAR within the skew of our clock.
    if abs(payload.time - now) > policy.skew:
        return refused(
            STALE,
            f"EAR time {payload.time} is {payload.time - now:+.0f} s from now (skew {policy.skew:g} s)",
            policy,
            ear,
        )
    # 4. Source: an identity of the partner.
    try:
        source_host = entity_host(payload.source_id)
    except ValueError as error:
        return refused(SOURCE, f"Source ID {_quoted(payload.source_id)} {error}", policy, ear)
    if source_host not in _lower_set(source_domains):
        return refused(
            SOURCE, f"Source ID {_quoted(payload.source_id)} is not in the partner's domains", policy, ear
        )
    # 5. Target: this system, and exactly the receiving entity when it is known.
    try:
        target_host = entity_host(payload.target_id)
    except ValueError as error:
        return refused(TARGET, f"Target ID {_quoted(payload.target_id)} {error}", policy, ear)
    if target_host not in _lower_set(target_domains):
        return refused(TARGET, f"Target ID {_quoted(payload.target_id)} is not in this system", policy, ear)
    if target_id is not None and payload.target_id != target_id:
        return refused(
            TARGET,
            f"Target ID {_quoted(payload.target_id)} is not the receiving entity {_quoted(target_id)}",
            policy,
            ear,
        )
    if target_roles is not None and payload.target_role not in target_roles:
        return refused(
            TARGET, f"Target Role {payload.target_role} is not the receiving entity's", policy, ear
        )
    # 6. Request type consistent with the request (WA-SP-27); off-network never crosses systems.
    request_type = None if payload.request is None else payload.request.request_type
    if request_type is RequestType.OFF_NETWORK:
        return refused(
            REQUEST_TYPE,
            "OFF-NETWORK SIGNALLING is never valid on the interconnection interface",
            policy,
            ear,
        )
    if not allowed_request_types(request_type):
        shown = "absent" if request_type is None else f"{request_type.name} (0x{request_type:02x})"
        return refused(REQUEST_TYPE, f"Request type {shown} does not fit this request", policy, ear)
    # 7. Request Expiry not reached (J.2.4).
    expiry = None if payload.request is None else payload.request.expiry
    if expiry is not None and expiry <= now:
        return refused(EXPIRED, f"Request Expiry {expiry} is {now - expiry:.0f} s past", policy, ear)
    # 8. Signature, last: the only expensive step.
    try:
        verify_ear_signature(ear, kpak=kpak, kms_uri=kms_uri, key_period=key_period, verifier=verifier)
    except EarError as error:
        return refused(SIGNATURE, str(error), policy, ear)
    return EarVerdict(True, OK, f"EAR {payload.ear_id} from {_quoted(payload.source_id)} verified", "", ear)
