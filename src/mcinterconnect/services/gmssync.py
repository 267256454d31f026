"""Partner-homed groups at the GMS: conditional polling of the home GMS and GMK relay.

TS 33.180 11.1.1 (CSC-16 between GMSs through the HTTP proxies, HTTP-3), TS 23.280 10.2.7 and
10.15.3.3.1, TS 33.180 5.7; spec/interconnection.md §9.4 (**WA-IC-21**) and §9.5 (**WA-IC-22**).

For every group of ``gms.partner_groups`` the ``PartnerGroupPoller`` of GMS A, every
``poll_interval`` seconds:

1. GETs the document through its own HTTP proxy's internal listener
   (``http://<proxy>/org.openmobilealliance.groups/groups/<id>``) with ``Host`` = the group's
   (partner) domain, which selects the partner at the proxy, ``X-3GPP-Asserted-Identity`` = the
   GMS PSI, ``If-None-Match`` = the ETag held, and — when the agreement's outbound authentication
   is explicit — an ``MC-EAR`` signed by the GMS (Source Role GMS, Source ID its PSI, Target Role
   GMS, Target ID the partner's ``psis.gms``, Request type GROUP; TS 33.180 9.6, WA-SP-24);
2. 304: nothing changed.  200: the document is parsed (``groupdoc``, XML-safe), must name the
   group asked for, and is reduced to this system's members (the home GMS filtered it already,
   WA-IC-12; this is the second fence) before it replaces the one held;
3. when the document is new or changed, when no GMK is held, or while a GMK fetch is pending,
   and the document lists an own member: GETs the GMK resource likewise and opens it
   (``gmk.open_gmk``: initiator = the partner's GMS PSI under the partner's KMS certificate,
   responder = this GMS's PSI with its own RSK).  The GMK and GMK-ID are kept and re-wrapped by
   this GMS for its members (``gms.GmsService``): the home GMS never learns who they are.

Every failure (transport, HTTP status, wrong content type, bad document, wrong group, refused
GMK, missing keys) keeps the previous good state, is logged, is written as one audit line
(``decision`` refuse, reason code below) and is retried at the next poll; a refusal never stops
the poller.  Accepted changes are audited too (``partner-group-updated``, ``gmk-received``).

Audit reason codes of a refusal: ``transport``, ``timeout``, ``http-status``, ``content-type``,
``response-too-large``, ``document-invalid``, ``wrong-group``, ``no-partner``,
``no-partner-gms``, ``partner-kms-unknown``, ``keys-unavailable``, ``ear-unavailable``,
``internal-error``, and ``gmk-<reason>`` for a GMK refused by ``open_gmk`` (``gmk-signature-
invalid``, ``gmk-initiator-mismatch``, ``gmk-decapsulation-failed``, ...).

Known limit (docs/PROFILE.md): a GMK changed at the home GMS without a document change is only
noticed when this GMS restarts or the document changes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Final

import aiohttp

from mcinterconnect.border.audit import AuditLog
from mcinterconnect.identity import McServiceId
from mcinterconnect.protect.ear import (
    EAR_HEADER,
    EarError,
    RequestPayload,
    RequestType,
    Role,
    new_payload,
    sign_ear_header,
)
from mcinterconnect.services.gmk import MAX_MESSAGE_BYTES, GmkError, GroupKey, open_gmk
from mcinterconnect.services.gms import (
    ASSERTED_IDENTITY_HEADER,
    GmsPartner,
    PartnerGroup,
    PartnerGroupCache,
    gmk_path,
    group_path,
)
from mcinterconnect.services.gms_client import (
    GmsClientError,
    check_gmk_answer,
    http_get,
    parse_group_answer,
)
from mcinterconnect.services.groupdoc import MAX_DOCUMENT_BYTES, GroupDocument
from mcinterconnect.services.mcx_ear import SigningKeyError, SigningKeys
from mcinterconnect.sip.transport import Address, LogSink

__all__ = ["EAR_ROLE", "PartnerGroupPoller", "PollRefusedError", "gms_ear"]

#: Source and Target Role of the EARs between GMSs (project Role table, WA-SP-20).
EAR_ROLE: Final = Role.GMS
DEFAULT_TIMEOUT: Final = 10.0


class PollRefusedError(Exception):
    """One poll step refused: an audit ``reason`` code and a one-line detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def gms_ear(keys: SigningKeys, *, source_id: str, target_id: str, now: float | None = None) -> str:
    """The ``MC-EAR`` header value of a GMS-to-GMS request (Request type GROUP, roles GMS)."""
    payload = new_payload(
        source_role=EAR_ROLE,
        source_id=source_id,
        target_role=EAR_ROLE,
        target_id=target_id,
        request=RequestPayload(RequestType.GROUP),
        now=now,
    )
    key_set = keys.for_time(payload.time)
    certificate = keys.certificate
    return sign_ear_header(payload, key_set, certificate)


def own_view(document: GroupDocument, own_domains: Iterable[str]) -> GroupDocument:
    """What this GMS keeps of a partner's document: this system's members only, no rules."""
    own = {domain.lower() for domain in own_domains}
    return GroupDocument(
        group_id=document.group_id,
        display_name=document.display_name,
        members=tuple(member for member in document.members if member.domain in own),
        services=document.services,
    )


class PartnerGroupPoller:
    """Keeps ``cache`` up to date with the partner groups ``group_ids`` (module docstring)."""

    def __init__(
        self,
        *,
        psi: str,
        group_ids: Iterable[str],
        partners: Sequence[GmsPartner],
        cache: PartnerGroupCache,
        http_proxy: Address,
        keys: Callable[[], SigningKeys | None],
        audit: AuditLog,
        domains: Iterable[str] | None = None,
        log: LogSink | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.psi = psi
        self.group_ids = tuple(dict.fromkeys(group_ids))
        self.partners = tuple(partners)
        self.cache = cache
        self.base_url = f"http://{http_proxy.hostport}"
        self._keys = keys
        self.audit = audit
        self.domains = frozenset(
            domain.lower() for domain in (domains if domains is not None else [McServiceId.parse(psi).domain])
        )
        self._log = log
        self.timeout = timeout
        self._clock = clock
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    # -- lifecycle

    async def run(self, interval: float) -> None:
        """Forever: one poll of every group, then ``interval`` seconds of sleep."""
        try:
            while True:
                await self.poll_once()
                await asyncio.sleep(interval)
        finally:
            await self.close()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    # -- polling

    async def poll_once(self) -> dict[str, str]:
        """Poll every group once (never two polls at a time); the outcome per group."""
        async with self._lock:
            return {group_id: await self.poll_group(group_id) for group_id in self.group_ids}

    async def poll_group(self, group_id: str) -> str:
        """One poll of one group: ``unchanged``, ``updated``, ``gmk-received`` or a refusal reason."""
        partner = self._partner_of(group_id)
        try:
            return await self._poll(group_id, partner)
        except PollRefusedError as refusal:
            self._refused(group_id, partner, refusal.reason, refusal.detail)
            return refusal.reason
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a refusal never stops the poller
            self._refused(group_id, partner, "internal-error", type(error).__name__)
            return "internal-error"

    def _partner_of(self, group_id: str) -> GmsPartner | None:
        domain = McServiceId.parse(group_id).domain
        return next((partner for partner in self.partners if domain in partner.domains), None)

    def _refused(self, group_id: str, partner: GmsPartner | None, reason: str, detail: str) -> None:
        name = partner.name if partner is not None else None
        self.audit.record(
            "refuse", reason, event="partner-group", group=group_id, partner=name, detail=detail[:300]
        )
        if self._log is not None:
            self._log(
                {
                    "event": "gms-partner-group",
                    "decision": "refuse",
                    "reason": reason,
                    "group": group_id,
                    "partner": name,
                    "detail": detail[:300],
                }
            )

    def _allowed(self, group_id: str, partner: GmsPartner, reason: str, **fields: object) -> None:
        self.audit.record(
            "allow", reason, event="partner-group", group=group_id, partner=partner.name, **fields
        )
        if self._log is not None:
            self._log(
                {
                    "event": "gms-partner-group",
                    "decision": "allow",
                    "reason": reason,
                    "group": group_id,
                    "partner": partner.name,
                    **fields,
                }
            )

    def _headers(self, group_id: str, partner: GmsPartner) -> dict[str, str]:
        """Host (selects the partner at the proxy), the asserted GMS PSI, a fresh EAR if explicit."""
        assert partner.gms_psi is not None
        headers = {"Host": McServiceId.parse(group_id).domain, ASSERTED_IDENTITY_HEADER: self.psi}
        if partner.explicit_outbound:
            keys = self._keys()
            if keys is None:
                raise PollRefusedError("ear-unavailable", "no signing key from the KMS for the EAR")
            try:
                headers[EAR_HEADER] = gms_ear(
                    keys, source_id=self.psi, target_id=partner.gms_psi, now=self._clock()
                )
            except (SigningKeyError, EarError) as error:
                raise PollRefusedError("ear-unavailable", f"cannot sign the EAR: {error}") from None
        return headers

    async def _poll(self, group_id: str, partner: GmsPartner | None) -> str:
        if partner is None:
            raise PollRefusedError("no-partner", "no partner agreement names the group's domain")
        if partner.gms_psi is None:
            raise PollRefusedError("no-partner-gms", f"partner {partner.name} has no psis.gms")
        held = self.cache.get(group_id)
        headers = self._headers(group_id, partner)
        if held is not None and held.remote_etag is not None:
            headers["If-None-Match"] = held.remote_etag
        try:
            answer = await http_get(
                self._http(), self.base_url + group_path(group_id), headers=headers, limit=MAX_DOCUMENT_BYTES
            )
            fetched = parse_group_answer(answer, group_id)
        except GmsClientError as error:
            raise PollRefusedError(error.reason, str(error)) from None
        outcome = "unchanged"
        if fetched.status == 304:
            if held is None:
                raise PollRefusedError("http-status", "304 for a document not held")
            current = held
        else:
            assert fetched.document is not None
            document = own_view(fetched.document, self.domains)
            changed = held is None or held.document != document
            current = PartnerGroup(
                document=document,
                remote_etag=fetched.etag,
                key=held.key if held is not None else None,
                gmk_pending=(held.gmk_pending if held is not None else False) or changed,
            )
            self.cache.put(group_id, current)
            if changed:
                outcome = "updated"
                self._allowed(group_id, partner, "partner-group-updated", members=len(document.members))
        if not current.document.members:
            return outcome  # no own member: no one to relay a GMK to
        if current.key is not None and not current.gmk_pending:
            return outcome
        return await self._fetch_gmk(group_id, partner, current)

    async def _fetch_gmk(self, group_id: str, partner: GmsPartner, current: PartnerGroup) -> str:
        assert partner.gms_psi is not None
        pending = PartnerGroup(current.document, current.remote_etag, current.key, gmk_pending=True)
        self.cache.put(group_id, pending)  # kept pending until a GMK opens
        if partner.kms_certificate is None:
            raise PollRefusedError("partner-kms-unknown", f"partner {partner.name} has no kms_certificate")
        keys = self._keys()
        if keys is None:
            raise PollRefusedError("keys-unavailable", "no own key set from the KMS to open the GMK")
        headers = self._headers(group_id, partner)
        try:
            answer = await http_get(
                self._http(), self.base_url + gmk_path(group_id), headers=headers, limit=MAX_MESSAGE_BYTES
            )
            message = check_gmk_answer(answer)
        except GmsClientError as error:
            raise PollRefusedError(error.reason, str(error)) from None
        initiator, certificate, own = partner.gms_psi, partner.kms_certificate, self.psi
        try:
            received = await asyncio.get_running_loop().run_in_executor(
                None,
                lambda: open_gmk(
                    message,
                    receiver_uri=own,
                    receiver_keys=keys,
                    initiator_uri=initiator,
                    initiator_certificate=certificate,
                    now=self._clock(),
                ),
            )
        except GmkError as error:
            raise PollRefusedError(f"gmk-{error.reason}", str(error)) from None
        key = GroupKey(group_id, received.gmk, received.gmk_id)
        self.cache.put(group_id, PartnerGroup(current.document, current.remote_etag, key, gmk_pending=False))
        self._allowed(group_id, partner, "gmk-received", gmk_id=f"{received.gmk_id:08x}")
        return "gmk-received"
