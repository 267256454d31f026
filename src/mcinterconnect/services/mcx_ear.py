"""EARs at the MCX server: signing what it sends to explicit partners, checking what it receives.

TS 33.180 9.6 / 11.1.1 (explicit authentication), with the working assumptions of
spec/signalling-protection-and-ear.md §7 (WA-SP-24..28):

* ``SigningKeys`` — the MCX server's own ECCSI key sets (SSK, PVT) by key period, fetched from
  this system's KMS (``fetch_signing_keys``: HTTPS with the MCX server's client certificate,
  subjectAltName URI = its PSI; every key set validated on receipt) and kept fresh by
  ``refresh_signing_keys`` (previous, current and next periods; fetched again when the period
  changes, WA-CR-07);
* ``EarSigner`` — the ``MC-EAR`` header for a request to a partner: Source Role MCX server,
  Source ID the own PSI, Target Role MCX server, Target ID the partner's mcptt PSI, Request IE
  per ``protect.request_types`` (GROUP when a calling group is named, else omitted), signed with
  the key set of the period holding the EAR's Date and time;
* ``EarReceiverCheck`` — ``mcx_server.verify_ear``: the checks of WA-SP-26 again at the receiving
  server, Target ID = own PSI exactly and Target Role MCX server, **without** the replay step
  (the IS proxy recorded the EAR ID; a second insert would refuse every request as a replay).

The classes are sans-IO; only ``fetch_signing_keys`` and ``refresh_signing_keys`` do I/O.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass

from mcinterconnect.crypto import eccsi
from mcinterconnect.crypto.kms import KeySet, KmsCertificate, KmsError
from mcinterconnect.crypto.uid import UidError, ntp_seconds
from mcinterconnect.mcinfo import McpttInfo
from mcinterconnect.protect.ear import (
    EarError,
    RequestPayload,
    Role,
    new_payload,
    sign_ear_header,
)
from mcinterconnect.protect.ear_check import EarPolicy, EarVerdict, check_ear
from mcinterconnect.protect.request_types import request_type_for, request_type_rule
from mcinterconnect.services.kms import fetch_certificate, fetch_key_sets
from mcinterconnect.sip.transport import LogSink

#: Longest wait between two looks at the key ring (a clock change is noticed within it).
REFRESH_CEILING = 3600.0
#: Wait after a failed fetch before the next attempt.
REFRESH_RETRY = 30.0
#: Seconds after the start of a key period before its "next" key set is fetched.
PERIOD_MARGIN = 1.0


class SigningKeyError(RuntimeError):
    """No usable signing key (one line, no key bytes)."""


def _period_number(certificate: KmsCertificate, unix: float) -> int:
    return certificate.key_period.number_at(ntp_seconds(unix))


class SigningKeys:
    """The MCX server's validated ECCSI key sets under its own KMS certificate, by key period."""

    def __init__(self, certificate: KmsCertificate, user_uri: str) -> None:
        self.certificate = certificate
        self.user_uri = user_uri
        self._sets: dict[int, KeySet] = {}

    def __repr__(self) -> str:
        return f"SigningKeys({self.user_uri!r}, periods={self.periods})"

    @property
    def periods(self) -> tuple[int, ...]:
        return tuple(sorted(self._sets))

    def add(self, key_sets: Iterable[KeySet]) -> None:
        """Hold key sets that ``validate_key_set`` accepted (``fetch_key_sets`` does it on receipt);
        the ECCSI pair is checked again here, the cheap half of that validation."""
        for key_set in key_sets:
            if key_set.user_uri != self.user_uri or key_set.kms_uri != self.certificate.kms_uri:
                raise KmsError("user-mismatch", "a key set for another user or KMS")
            try:
                eccsi.validate_ssk(key_set.ssk, key_set.pvt, self.certificate.pub_auth_key, key_set.user_id)
            except eccsi.EccsiError as error:
                raise KmsError("ssk-invalid", f"the SSK/PVT pair does not verify ({error.reason})") from None
            self._sets[key_set.key_period_no] = key_set

    def wanted(self, now: float) -> tuple[int, int, int]:
        current = _period_number(self.certificate, now)
        return (max(current - 1, 0), current, current + 1)

    def missing(self, now: float) -> list[int]:
        """Of the previous, current and next periods, those without a key set."""
        return sorted({number for number in self.wanted(now) if number not in self._sets})

    def prune(self, now: float) -> None:
        keep = set(self.wanted(now))
        for number in [number for number in self._sets if number not in keep]:
            del self._sets[number]

    def for_time(self, unix: float) -> KeySet:
        """The key set of the period holding ``unix``; ``SigningKeyError`` when none is held."""
        try:
            number = _period_number(self.certificate, unix)
        except UidError as error:
            raise SigningKeyError(f"no key period at {unix:.0f}: {error}") from None
        key_set = self._sets.get(number)
        if key_set is None:
            raise SigningKeyError(f"no EAR signing key for key period {number}")
        return key_set

    def seconds_until_refresh(self, now: float) -> float:
        """When to look again: now if a period is missing, else just after the next period starts."""
        if self.missing(now):
            return 0.0
        period = self.certificate.key_period
        start = period.start_of(_period_number(self.certificate, now) + 1)  # NTP seconds
        remaining = start - ntp_seconds(now) + PERIOD_MARGIN
        return float(min(max(remaining, PERIOD_MARGIN), REFRESH_CEILING))


@dataclass(frozen=True)
class EarSigner:
    """Builds the ``MC-EAR`` header value of the MCX server's requests to partners."""

    source_id: str
    keys: SigningKeys
    clock: Callable[[], float] = time.time

    def header_value(self, target_id: str, info: McpttInfo | None) -> str:
        """A fresh signed EAR for a request to ``target_id`` whose body is ``info``.

        ``SigningKeyError`` when no key set covers now; ``EarError`` if signing fails."""
        request_type = request_type_for(info)
        payload = new_payload(
            source_role=Role.MCX_SERVER,
            source_id=self.source_id,
            target_role=Role.MCX_SERVER,
            target_id=target_id,
            request=None if request_type is None else RequestPayload(request_type),
            now=self.clock(),
        )
        key_set = self.keys.for_time(payload.time)
        certificate = self.keys.certificate
        return sign_ear_header(payload, key_set, certificate)


@dataclass(frozen=True)
class EarReceiverCheck:
    """``mcx_server.verify_ear``: the EAR checks at the receiving MCX server, without replay."""

    own_psi: str
    own_domains: Collection[str]
    policy: EarPolicy
    clock: Callable[[], float] = time.time
    verifier: eccsi.Verifier | None = None

    def check(
        self,
        header_value: str | None,
        *,
        partner_domains: Collection[str],
        certificate: KmsCertificate,
        allowed_request_types: Collection[str],
        info: McpttInfo | None,
    ) -> EarVerdict:
        return check_ear(
            header_value,
            now=self.clock(),
            policy=self.policy,
            source_domains=partner_domains,
            target_domains=self.own_domains,
            target_id=self.own_psi,
            target_roles=(Role.MCX_SERVER,),
            allowed_request_types=request_type_rule(info, allowed_request_types),
            kms_uri=certificate.kms_uri,
            kpak=certificate.pub_auth_key,
            key_period=certificate.key_period,
            verifier=self.verifier,
        )


# --- the KMS side (asyncio) ----------------------------------------------------------------------


@dataclass(frozen=True)
class KmsAccess:
    """How the MCX server reaches its KMS: URL, TLS client context (its certificate), server name."""

    url: str
    ssl_context: ssl.SSLContext
    server_hostname: str
    timeout: float = 10.0


async def fetch_signing_keys(access: KmsAccess, user_uri: str, *, now: float | None = None) -> SigningKeys:
    """The KMS's certificate and the MCX server's key sets (previous, current, next), validated."""
    certificate = await fetch_certificate(
        access.url, access.ssl_context, server_hostname=access.server_hostname, timeout=access.timeout
    )
    moment = datetime.datetime.fromtimestamp(time.time() if now is None else now, datetime.UTC)
    if not certificate.is_valid_at(moment):
        raise KmsError("certificate-expired", "the KMS certificate is not valid now")
    keys = SigningKeys(certificate, user_uri)
    keys.add(
        await fetch_key_sets(
            access.url,
            access.ssl_context,
            user_uri=user_uri,
            certificate=certificate,
            server_hostname=access.server_hostname,
            timeout=access.timeout,
        )
    )
    return keys


async def refresh_signing_keys(
    keys: SigningKeys,
    access: KmsAccess,
    *,
    log: LogSink | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Forever: sleep until the key period changes (or a set is missing), then fetch the missing
    periods and drop those no longer wanted.  A failed fetch is logged and retried."""
    while True:
        await sleep(keys.seconds_until_refresh(clock()))
        missing = keys.missing(clock())
        if not missing:
            continue
        try:
            key_sets = await fetch_key_sets(
                access.url,
                access.ssl_context,
                user_uri=keys.user_uri,
                certificate=keys.certificate,
                periods=missing,
                server_hostname=access.server_hostname,
                timeout=access.timeout,
            )
            keys.add(key_sets)
            keys.prune(clock())
        except (KmsError, EarError) as error:
            if log is not None:
                log(
                    {
                        "event": "ear-keys-refresh-failed",
                        "reason": getattr(error, "reason", ""),
                        "detail": str(error),
                    }
                )
            await sleep(REFRESH_RETRY)
            continue
        if log is not None:
            log({"event": "ear-keys-refreshed", "periods": list(keys.periods)})
