"""The group management server (GMS) of one MC system: XCAP-style group documents and group keys.

Issue 6 items 1, 3, 4 (TS 24.481 documents, RFC 4825 XCAP semantics; TS 33.180 5.7 and 11.1.1;
TS 23.280 10.2.7; spec/interconnection.md §9.4 CSC-16 and §9.5, WA-IC-12/21/22):

* ``GET /org.openmobilealliance.groups/groups/{group-id}`` — the document (``ETag``); with
  ``If-None-Match`` naming the current ETag (or ``*``): 304, the conditional polling of WA-IC-21;
* ``PUT`` — create (201) or replace (200) the document; answers its ``ETag``.  ``If-Match``
  (an ETag list or ``*``) and ``If-None-Match: *`` (create only) are honoured: 412 otherwise;
* ``DELETE`` — 200, with ``If-Match`` as for PUT;
* ``GET /org.openmobilealliance.groups/gmk/{group-id}`` — the group's GMK for the requester, a
  binary MIKEY-SAKKE I_MESSAGE (``application/mikey``) encrypted to the requester and signed by
  this GMS (``services/gmk.py``; WA-IC-22).

``{group-id}`` is the MC service group ID, URL-encoded (``sip%3Afire%40b.mc.example``); a PUT
document must name the same group.  ETags are strong (``groupdoc.GroupDocument.etag``).

Who is asking: the ``X-3GPP-Asserted-Identity`` header (an MC service ID).  The GMS listens on
the internal network only and trusts that header: this system's HTTP proxy sets it from an own
client's TLS certificate, or keeps the one of a partner server whose request it admitted on
HTTP-3.  When its domain is not one of this GMS's domains the requester is external: it may only
GET; it gets a document ``filtered_for`` its domain (WA-IC-12, minimum disclosure), with the ETag
of the filtered bytes, and 404 when the document has no visibility rule for its domain (as if the
group did not exist); it gets a GMK only when it is exactly the partner's GMS PSI
(``psis.gms`` of the agreement for that domain) and the group reveals members to that domain,
encrypted to that PSI under the partner's KMS certificate.  Without the header a document request
counts as this system's own (a GMK request is refused: there is no one to encrypt to).

Own requesters also see the partner-homed groups this GMS keeps (``gms.partner_groups``, fetched
by ``gmssync``): the document as received (this system's members only) and, for a member, the GMK
received from the home GMS re-wrapped and signed by this GMS.  Partner groups are read-only here
and never shown to an external requester.

Refusals: an HTTP status with a one-line ``text/plain`` reason code and one JSON log event;
invalid documents get 409 with an ``application/xcap-error+xml`` body (RFC 4825 §11); never a
traceback, a module name or an internal host.

==============================  ======  ====================================================
reason                          status  meaning
==============================  ======  ====================================================
``group-id-invalid``            400     the path's group ID is not an MC service ID
``identity-invalid``            400     X-3GPP-Asserted-Identity is not an MC service ID
``identity-missing``            403     GMK request without X-3GPP-Asserted-Identity
``external-write-refused``      403     PUT or DELETE by an external requester
``partner-group-read-only``     403     PUT or DELETE of a group homed in a partner system
``not-partner-gms``             403     external GMK requester that is not the partner's GMS PSI
                                        (or of a domain no agreement names)
``not-a-member``                403     own GMK requester that is not a member of the group
``not-found``                   404     no such group (or not visible to the requester), or
                                        another path
``method-not-allowed``          405     another method than GET, HEAD, PUT, DELETE
``document-invalid``            409     the PUT body is not a valid group document (xcap-error)
``precondition-failed``         412     If-Match / If-None-Match not met
``body-too-large``              413     request body above ``max_request_bytes``
``unsupported-media-type``      415     PUT body not ``application/vnd.oma.poc.groups+xml``
``internal-error``              500     anything unexpected (logged by exception type only)
``keys-unavailable``            503     the GMS holds no key set (SSK/PVT) from its KMS, or
                                        no KMS certificate for the receiver
``gmk-unavailable``             503     a partner group whose GMK has not been received yet
==============================  ======  ====================================================
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import quote, urlsplit
from xml.sax.saxutils import quoteattr

from aiohttp import web
from pydantic import Field

from mcinterconnect import aio
from mcinterconnect.border.agreement import PartnerAgreement
from mcinterconnect.border.audit import AuditLog
from mcinterconnect.configtypes import ConfigModel, HttpAddressField, McIdField
from mcinterconnect.crypto.kms import KmsCertificate, KmsError
from mcinterconnect.identity import IdentityError, McServiceId
from mcinterconnect.services.gmk import GMK_CONTENT_TYPE, GmkError, GroupKey, GroupKeyRing, wrap_gmk
from mcinterconnect.services.groupdoc import (
    MAX_DOCUMENT_BYTES,
    GroupDocument,
    GroupDocumentError,
    filtered_for,
)
from mcinterconnect.services.httpserver import HttpListener
from mcinterconnect.services.kms import read_certificate
from mcinterconnect.services.mcx_ear import (
    REFRESH_RETRY,
    KmsAccess,
    SigningKeys,
    fetch_signing_keys,
    refresh_signing_keys,
)
from mcinterconnect.sip.transport import Address, LogSink
from mcinterconnect.tlsprofile import TlsConfigError, client_context

if TYPE_CHECKING:
    from mcinterconnect.services.gmssync import PartnerGroupPoller

__all__ = [
    "ASSERTED_IDENTITY_HEADER",
    "GMK_PATH",
    "GROUPS_PATH",
    "GROUP_CONTENT_TYPE",
    "XCAP_ERROR_CONTENT_TYPE",
    "GmsError",
    "GmsPartner",
    "GmsRequestError",
    "GmsService",
    "GmsSettings",
    "GroupFileError",
    "GroupStore",
    "MemoryGroupStore",
    "PartnerGroup",
    "PartnerGroupCache",
    "gmk_path",
    "group_path",
    "load_group_documents",
    "start_gms_service",
    "xcap_error_body",
]

#: XCAP root-relative path of the group documents (AUID org.openmobilealliance.groups).
GROUPS_PATH: Final = "/org.openmobilealliance.groups/groups"
#: Path of the GMK resource (this project's, WA-IC-22): one I_MESSAGE per request.
GMK_PATH: Final = "/org.openmobilealliance.groups/gmk"
GROUP_CONTENT_TYPE: Final = "application/vnd.oma.poc.groups+xml"
XCAP_ERROR_CONTENT_TYPE: Final = "application/xcap-error+xml"
XCAP_ERROR_NS: Final = "urn:ietf:params:xml:ns:xcap-error"
ASSERTED_IDENTITY_HEADER: Final = "X-3GPP-Asserted-Identity"
_ACCEPTED_CONTENT_TYPES: Final = frozenset({GROUP_CONTENT_TYPE, "application/xml"})
DEFAULT_MAX_REQUEST_BYTES: Final = MAX_DOCUMENT_BYTES
_SERVER: Final = "gms"

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class GmsSettings(ConfigModel):
    """The ``[gms]`` section of ``system.toml``: the group management server of this system."""

    #: ``host:port``, plain HTTP on the internal network: reached through this system's HTTP
    #: proxy only (its client side for own clients, its HTTP-3 side for partners).
    listen: HttpAddressField
    #: The GMS server URI: its identity towards partners (``X-3GPP-Asserted-Identity``), the
    #: ECCSI identity that signs the GMKs it sends and the SAKKE identity partners encrypt to.
    psi: McIdField
    #: Folder of group documents (``*.xml``, TS 24.481 model) loaded at start; absent: none.
    groups: Path | None = None
    #: TLS client identity with which the GMS fetches its own keys from this system's KMS
    #: (subjectAltName URI = ``psi``), and the CAs the KMS's server certificate must chain to.
    certificate: Path | None = None
    private_key: Path | None = None
    kms_trust_anchors: list[Path] = Field(default_factory=list)
    #: Groups homed in partner systems that this GMS keeps and serves to its own users (CSC-16).
    partner_groups: list[McIdField] = Field(default_factory=list)
    #: Seconds between two conditional GETs of each partner group (WA-IC-21).
    poll_interval: float = Field(5.0, ge=0.1, le=86_400)
    #: Largest request body accepted.
    max_request_bytes: int = Field(MAX_DOCUMENT_BYTES, ge=1024, le=1_048_576)


class GmsError(ValueError):
    """The GMS cannot start: one line naming the file or setting at fault."""


class GroupFileError(GmsError):
    """A group document file in ``gms.groups`` that cannot be loaded."""


def group_path(group_id: str) -> str:
    """The request path of a group document (the group ID percent-encoded, ``/`` included)."""
    return f"{GROUPS_PATH}/{quote(group_id, safe='')}"


def gmk_path(group_id: str) -> str:
    """The request path of a group's GMK (the group ID percent-encoded, ``/`` included)."""
    return f"{GMK_PATH}/{quote(group_id, safe='')}"


class GroupStore(Protocol):
    """Where the GMS keeps documents.  Methods are synchronous on purpose: the service checks a
    precondition and writes with no ``await`` in between, so a check-and-set is atomic within the
    event loop.  A SQLite store implements the same three methods (one transaction each)."""

    def get(self, group_id: str) -> GroupDocument | None: ...

    def put(self, document: GroupDocument) -> bool:
        """Store ``document`` under its group ID; True when it was created, False when replaced."""
        ...

    def delete(self, group_id: str) -> bool:
        """Remove the group; True when it existed."""
        ...


class MemoryGroupStore:
    """An in-memory ``GroupStore`` (tests, demos)."""

    def __init__(self, documents: Iterable[GroupDocument] = ()) -> None:
        self._documents: dict[str, GroupDocument] = {doc.group_id: doc for doc in documents}

    def get(self, group_id: str) -> GroupDocument | None:
        return self._documents.get(group_id)

    def put(self, document: GroupDocument) -> bool:
        created = document.group_id not in self._documents
        self._documents[document.group_id] = document
        return created

    def delete(self, group_id: str) -> bool:
        return self._documents.pop(group_id, None) is not None

    def ids(self) -> list[str]:
        return sorted(self._documents)


def load_group_documents(folder: Path) -> list[GroupDocument]:
    """Every ``*.xml`` of ``folder`` (sorted by name) as a group document.

    ``GroupFileError`` names the first file that cannot be read or parsed, or that names a group
    another file already defined."""
    try:
        files = sorted(path for path in folder.glob("*.xml") if path.is_file())
    except OSError as error:
        raise GroupFileError(f"{folder}: cannot list the group documents ({error.strerror})") from None
    documents: dict[str, Path] = {}
    loaded = []
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as error:
            raise GroupFileError(f"{path}: cannot read ({error.strerror})") from None
        try:
            document = GroupDocument.from_xml(data)
        except GroupDocumentError as error:
            raise GroupFileError(f"{path}: not a valid group document: {error.reason}") from None
        if document.group_id in documents:
            raise GroupFileError(
                f"{path}: group {document.group_id} is already defined in {documents[document.group_id].name}"
            )
        documents[document.group_id] = path
        loaded.append(document)
    return loaded


@dataclass(frozen=True)
class GmsPartner:
    """What the GMS needs of one partner agreement: its domains, its GMS PSI, its KMS certificate
    (imported, WA-IC-19) and whether requests to it carry an EAR (explicit outbound)."""

    name: str
    domains: frozenset[str]
    gms_psi: str | None
    kms_certificate: KmsCertificate | None
    explicit_outbound: bool = False

    @classmethod
    def from_agreement(cls, agreement: PartnerAgreement, certificate: KmsCertificate | None) -> GmsPartner:
        return cls(
            name=agreement.name,
            domains=frozenset(domain.lower() for domain in agreement.domains),
            gms_psi=agreement.psis.get("gms"),
            kms_certificate=certificate,
            explicit_outbound=agreement.explicit_outbound,
        )


@dataclass(frozen=True)
class PartnerGroup:
    """A partner-homed group as this GMS keeps it (WA-IC-21, WA-IC-22).

    ``document`` is what this GMS serves to its own users (the home GMS's filtered view, reduced
    again to this system's members); ``remote_etag`` the home GMS's ETag (``If-None-Match`` of the
    next poll); ``key`` the GMK received from the home GMS (None until one was opened);
    ``gmk_pending`` is set while the document changed and the GMK could not be fetched again."""

    document: GroupDocument
    remote_etag: str | None
    key: GroupKey | None = None
    gmk_pending: bool = False


class PartnerGroupCache:
    """The partner groups this GMS keeps, by group ID (in memory: fetched again after a restart)."""

    def __init__(self) -> None:
        self._groups: dict[str, PartnerGroup] = {}

    def get(self, group_id: str) -> PartnerGroup | None:
        return self._groups.get(group_id)

    def put(self, group_id: str, group: PartnerGroup) -> None:
        self._groups[group_id] = group

    def ids(self) -> list[str]:
        return sorted(self._groups)


class GmsRequestError(Exception):
    """A refused request: HTTP ``status`` and a one-line ``reason`` code."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _DocumentRefusedError(Exception):
    """A PUT body refused as a group document: answered 409 with an xcap-error body."""

    def __init__(self, error: GroupDocumentError) -> None:
        super().__init__(error.reason)
        self.error = error


def xcap_error_body(error: GroupDocumentError) -> bytes:
    """An RFC 4825 §11 error document naming the fault (the reason is one line, bounded)."""
    phrase = quoteattr(error.reason[:200])
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<xcap-error xmlns="{XCAP_ERROR_NS}">'
        f"<{error.xcap_error} phrase={phrase}/></xcap-error>\n"
    ).encode()


def _etag_list(header: str) -> list[str]:
    """The entity tags of an If-Match / If-None-Match header (``*`` kept as is; weak ones kept
    with their ``W/`` prefix, so that they never match strongly)."""
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def _matches(header: str, current: str | None) -> bool:
    tags = _etag_list(header)
    if current is None:
        return False
    return "*" in tags or current in tags


@dataclass(frozen=True)
class _Requester:
    """The asserted requester: its MC service ID (None without the header) and whether it is external."""

    identity: str | None
    domain: str | None
    external: bool


class GmsService:
    """The GMS of one system: ``start`` it on an address (TLS optional), ``close`` it when done.

    ``psi``, ``kms_certificate`` (own KMS), ``keys`` (the GMS's own key sets, settable later) and
    ``partners`` enable the GMK resource; ``partner_groups`` is the cache ``gmssync`` fills."""

    def __init__(
        self,
        *,
        domains: Iterable[str],
        store: GroupStore | None = None,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        ssl_context: ssl.SSLContext | None = None,
        log: LogSink | None = None,
        psi: str | None = None,
        partners: Iterable[GmsPartner] = (),
        kms_certificate: KmsCertificate | None = None,
        keys: SigningKeys | None = None,
        group_keys: GroupKeyRing | None = None,
        partner_groups: PartnerGroupCache | None = None,
        partner_group_ids: Iterable[str] = (),
    ) -> None:
        self.domains = frozenset(domain.lower() for domain in domains)
        if not self.domains:
            raise ValueError("the GMS needs at least one own domain")
        self.store: GroupStore = store if store is not None else MemoryGroupStore()
        self.max_request_bytes = max_request_bytes
        self.psi = psi
        self.partners = tuple(partners)
        self._partner_by_domain = {domain: partner for partner in self.partners for domain in partner.domains}
        self.kms_certificate = kms_certificate
        self.keys = keys
        self.group_keys = group_keys if group_keys is not None else GroupKeyRing()
        self.partner_groups = partner_groups if partner_groups is not None else PartnerGroupCache()
        self.partner_group_ids = frozenset(partner_group_ids)
        self._ssl_context = ssl_context
        self._log = log
        self._listener = HttpListener("gms")
        self._tasks: list[asyncio.Task[None]] = []
        #: The partner-group poller ``start_gms_service`` runs (None without partner groups).
        self.poller: PartnerGroupPoller | None = None

    def application(self) -> web.Application:
        """The aiohttp application (routes and the refusal middleware)."""
        app = web.Application(middlewares=[self._middleware], client_max_size=self.max_request_bytes)
        route = GROUPS_PATH + "/{group_id}"
        app.router.add_get(route, self._get)
        app.router.add_put(route, self._put)
        app.router.add_delete(route, self._delete)
        app.router.add_get(GMK_PATH + "/{group_id}", self._get_gmk)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host:port`` (0: any free port, see ``address``), over TLS if configured."""
        await self._listener.start(self.application(), host, port, self._ssl_context)

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the service listens on."""
        return self._listener.address

    def run_in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` until ``close`` (the partner poller, the key refresh)."""
        self._tasks.append(asyncio.create_task(work))

    async def close(self) -> None:
        """Stop the background work, stop listening and close every connection."""
        tasks, self._tasks = self._tasks, []
        await aio.cancel_all(tasks, swallow_errors=True)
        await self._listener.close()

    # -- HTTP plumbing

    def _event(self, request: web.Request, status: int, reason: str) -> None:
        if self._log is None:
            return
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        self._log(
            {
                "event": "gms-request",
                "decision": "allow" if status < 400 else "refuse",
                "reason": reason,
                "status": status,
                "method": request.method,
                "path": request.rel_url.raw_path[:200],
                "identity": request.headers.get(ASSERTED_IDENTITY_HEADER, "")[:200] or None,
                "remote": f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else None,
            }
        )

    @staticmethod
    def _refusal(status: int, reason: str) -> web.Response:
        if status == 304:
            response = web.Response(status=304)
        else:
            response = web.Response(status=status, text=f"{reason}\n", content_type="text/plain")
        response.headers["Server"] = _SERVER
        if status == 405:
            response.headers["Allow"] = "GET, HEAD, PUT, DELETE"
        return response

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except GmsRequestError as refusal:
            self._event(request, refusal.status, refusal.reason)
            return self._refusal(refusal.status, refusal.reason)
        except _DocumentRefusedError as refused:
            self._event(request, 409, "document-invalid")
            answer = web.Response(status=409, body=xcap_error_body(refused.error))
            answer.headers["Content-Type"] = XCAP_ERROR_CONTENT_TYPE
            answer.headers["Server"] = _SERVER
            return answer
        except web.HTTPException as exc:  # the router's 404 / 405, aiohttp's 413
            reason = {404: "not-found", 405: "method-not-allowed", 413: "body-too-large"}.get(
                exc.status, "bad-request"
            )
            self._event(request, exc.status, reason)
            return self._refusal(exc.status, reason)
        except Exception as exc:
            self._event(request, 500, "internal-error")
            if self._log is not None:
                self._log({"event": "gms-internal-error", "error": type(exc).__name__})
            return self._refusal(500, "internal-error")
        self._event(request, response.status, "allowed")
        return response

    def _group_id(self, request: web.Request) -> str:
        raw = request.match_info.get("group_id", "")
        try:
            return str(McServiceId.parse(raw))
        except (IdentityError, ValueError):
            raise GmsRequestError(400, "group-id-invalid") from None

    def _requester(self, request: web.Request) -> _Requester:
        """The asserted requester (the header is trusted: the GMS listens internally only)."""
        values = request.headers.getall(ASSERTED_IDENTITY_HEADER, [])
        if not values:
            return _Requester(None, None, external=False)
        if len(values) > 1:
            raise GmsRequestError(400, "identity-invalid")
        try:
            identity = McServiceId.parse(values[0])
        except (IdentityError, ValueError):
            raise GmsRequestError(400, "identity-invalid") from None
        domain = identity.domain
        return _Requester(str(identity), domain, external=domain not in self.domains)

    def _requester_domain(self, request: web.Request) -> str | None:
        """The asserted requester's domain when it is external, None for this system's own."""
        requester = self._requester(request)
        return requester.domain if requester.external else None

    def _is_partner_group(self, group_id: str) -> bool:
        if group_id in self.partner_group_ids or self.partner_groups.get(group_id) is not None:
            return True
        return McServiceId.parse(group_id).domain in self._partner_by_domain

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.max_request_bytes
        if request.content_length is not None and request.content_length > limit:
            raise GmsRequestError(413, "body-too-large")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(65536):
            size += len(chunk)
            if size > limit:
                raise GmsRequestError(413, "body-too-large")
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _document_response(status: int, document: GroupDocument | None, etag: str) -> web.Response:
        if document is None:
            response = web.Response(status=status)
        else:
            response = web.Response(status=status, body=document.to_xml())
            response.headers["Content-Type"] = GROUP_CONTENT_TYPE
        response.headers["ETag"] = etag
        response.headers["Server"] = _SERVER
        response.headers["Cache-Control"] = "no-cache"
        return response

    @staticmethod
    def _check_if_match(request: web.Request, current: str | None) -> None:
        if_match = request.headers.get("If-Match")
        if if_match is not None and not _matches(if_match, current):
            raise GmsRequestError(412, "precondition-failed")

    @staticmethod
    def _visible_to(document: GroupDocument, domain: str, *, members: bool) -> bool:
        """Whether ``document`` has a visibility rule for ``domain`` (revealing members if asked)."""
        return any(
            rule.domain == domain and (rule.reveal_members or not members) for rule in document.visibility
        )

    # -- endpoints

    async def _get(self, request: web.Request) -> web.Response:
        group_id = self._group_id(request)
        requester = self._requester(request)
        if requester.external:
            # Only groups homed here, and only to a domain they name (WA-IC-12): anything else
            # is answered as if the group did not exist.
            assert requester.domain is not None
            document = self.store.get(group_id)
            if document is None or not self._visible_to(document, requester.domain, members=False):
                raise GmsRequestError(404, "not-found")
            document = filtered_for(document, [requester.domain], self.domains)
        else:
            document = self.store.get(group_id)
            if document is None:
                cached = self.partner_groups.get(group_id)
                document = cached.document if cached is not None else None
            if document is None:
                raise GmsRequestError(404, "not-found")
        etag = document.etag
        self._check_if_match(request, etag)
        if_none_match = request.headers.get("If-None-Match")
        if if_none_match is not None and _matches(if_none_match, etag):
            return self._document_response(304, None, etag)
        return self._document_response(200, document, etag)

    async def _put(self, request: web.Request) -> web.Response:
        group_id = self._group_id(request)
        if self._requester_domain(request) is not None:
            raise GmsRequestError(403, "external-write-refused")
        if self._is_partner_group(group_id):
            raise GmsRequestError(403, "partner-group-read-only")
        if request.content_type not in _ACCEPTED_CONTENT_TYPES:
            raise GmsRequestError(415, "unsupported-media-type")
        body = await self._read_body(request)
        try:
            document = GroupDocument.from_xml(body)
        except GroupDocumentError as exc:
            raise _DocumentRefusedError(exc) from None
        if document.group_id != group_id:
            raise _DocumentRefusedError(
                GroupDocumentError("the document names another group than the URI", "constraint-failure")
            )
        # From here to the write: no await, so the precondition and the write are one step.
        existing = self.store.get(group_id)
        current = existing.etag if existing is not None else None
        self._check_if_match(request, current)
        if_none_match = request.headers.get("If-None-Match")
        if if_none_match is not None and _matches(if_none_match, current):
            raise GmsRequestError(412, "precondition-failed")
        created = self.store.put(document)
        self.group_keys.ensure(group_id)  # a new group gets its GMK now; a replaced one keeps it
        return self._document_response(201 if created else 200, None, document.etag)

    async def _delete(self, request: web.Request) -> web.Response:
        group_id = self._group_id(request)
        if self._requester_domain(request) is not None:
            raise GmsRequestError(403, "external-write-refused")
        if self._is_partner_group(group_id):
            raise GmsRequestError(403, "partner-group-read-only")
        existing = self.store.get(group_id)
        if existing is None:
            raise GmsRequestError(404, "not-found")
        self._check_if_match(request, existing.etag)
        self.store.delete(group_id)
        self.group_keys.discard(group_id)
        response = web.Response(status=200)
        response.headers["Server"] = _SERVER
        return response

    def _gmk_for_partner(self, group_id: str, requester: _Requester) -> tuple[GroupKey, KmsCertificate]:
        """Authorise a partner's GMK request: its GMS PSI, a group homed here that reveals members
        to its domain (WA-IC-22); the key and the certificate to encrypt under."""
        assert requester.domain is not None and requester.identity is not None
        partner = self._partner_by_domain.get(requester.domain)
        if partner is None or partner.gms_psi is None or requester.identity != partner.gms_psi:
            raise GmsRequestError(403, "not-partner-gms")
        document = self.store.get(group_id)
        if document is None or not self._visible_to(document, requester.domain, members=True):
            raise GmsRequestError(404, "not-found")
        if partner.kms_certificate is None:
            raise GmsRequestError(503, "keys-unavailable")
        return self.group_keys.ensure(group_id), partner.kms_certificate

    def _gmk_for_member(self, group_id: str, requester: _Requester) -> tuple[GroupKey, KmsCertificate]:
        """Authorise an own user's GMK request: a member of an own group or of a kept partner group."""
        document = self.store.get(group_id)
        cached = None if document is not None else self.partner_groups.get(group_id)
        if cached is not None:
            document = cached.document
        if document is None:
            raise GmsRequestError(404, "not-found")
        if requester.identity not in {member.id for member in document.members}:
            raise GmsRequestError(403, "not-a-member")
        if cached is not None:
            if cached.key is None:
                raise GmsRequestError(503, "gmk-unavailable")
            key = cached.key
        else:
            key = self.group_keys.ensure(group_id)
        if self.kms_certificate is None:
            raise GmsRequestError(503, "keys-unavailable")
        return key, self.kms_certificate

    async def _get_gmk(self, request: web.Request) -> web.Response:
        group_id = self._group_id(request)
        requester = self._requester(request)
        if requester.identity is None:
            raise GmsRequestError(403, "identity-missing")
        if requester.external:
            key, certificate = self._gmk_for_partner(group_id, requester)
        else:
            key, certificate = self._gmk_for_member(group_id, requester)
        keys, psi = self.keys, self.psi
        if keys is None or psi is None:
            raise GmsRequestError(503, "keys-unavailable")
        receiver = requester.identity
        try:
            # SAKKE encapsulation and ECCSI signing: off the event loop.
            message = await asyncio.get_running_loop().run_in_executor(
                None,
                lambda: wrap_gmk(
                    key,
                    receiver_uri=receiver,
                    receiver_certificate=certificate,
                    sender_uri=psi,
                    sender_keys=keys,
                ),
            )
        except GmkError as error:
            if error.reason == "keys-unavailable":
                raise GmsRequestError(503, "keys-unavailable") from None
            raise
        response = web.Response(status=200, body=message)
        response.headers["Content-Type"] = GMK_CONTENT_TYPE
        response.headers["Server"] = _SERVER
        response.headers["Cache-Control"] = "no-store"
        return response


# --- the runner's entry point ----------------------------------------------------------------------


def _kms_access(settings: GmsSettings, kms_url: str, server_hostname: str | None) -> KmsAccess:
    assert settings.certificate is not None and settings.private_key is not None
    try:
        context = client_context(
            trust_anchors=list(settings.kms_trust_anchors),
            cert_file=settings.certificate,
            key_file=settings.private_key,
        )
    except TlsConfigError as error:
        raise GmsError(f"gms: TLS towards the KMS: {error}") from None
    hostname = server_hostname or urlsplit(kms_url).hostname or ""
    return KmsAccess(kms_url, context, hostname)


def _same_kms(a: KmsCertificate, b: KmsCertificate) -> bool:
    return (a.kms_uri, a.pub_auth_key, a.pub_enc_key) == (b.kms_uri, b.pub_auth_key, b.pub_enc_key)


async def _load_keys(
    service: GmsService, access: KmsAccess, psi: str, audit: AuditLog, log: LogSink | None
) -> SigningKeys | None:
    """The GMS's key sets from its KMS, or None (logged and audited) when they cannot be had."""
    try:
        keys = await fetch_signing_keys(access, psi)
    except KmsError as error:
        reason = "keys-unavailable"
        detail = f"{error.reason}: {error}"[:300]
    else:
        if service.kms_certificate is None or _same_kms(keys.certificate, service.kms_certificate):
            return keys
        reason, detail = "kms-certificate-mismatch", "the KMS serves another certificate than configured"
    audit.record("refuse", reason, event="gms-keys", detail=detail)
    if log is not None:
        log({"event": "gms-keys-unavailable", "reason": reason, "detail": detail})
    return None


async def _keep_keys(
    service: GmsService,
    access: KmsAccess,
    *,
    psi: str,
    audit: AuditLog,
    log: LogSink | None,
    retry: float,
) -> None:
    """Forever: get the GMS's key sets (retrying every ``retry`` s), then keep them fresh."""
    keys = service.keys
    while keys is None:
        await asyncio.sleep(retry)
        keys = service.keys = await _load_keys(service, access, psi, audit, log)
    if service.kms_certificate is None:
        service.kms_certificate = keys.certificate
    await refresh_signing_keys(keys, access, log=log)


async def start_gms_service(
    settings: GmsSettings,
    *,
    domains: Sequence[str],
    partners: Sequence[PartnerAgreement],
    kms_certificate: KmsCertificate | None,
    kms_url: str | None,
    kms_server_hostname: str | None,
    http_proxy: Address | None,
    audit: AuditLog,
    log: LogSink | None = None,
) -> GmsService:
    """Load the group documents, start the GMS on ``settings.listen`` and its background work.

    * group documents: every ``*.xml`` of ``settings.groups`` (``GroupFileError`` names a bad
      file); each own group gets its GMK now;
    * keys: with ``kms_url`` and ``settings.certificate``, the GMS's key sets (SSK/PVT, RSK) from
      its own KMS over mutual TLS, refreshed per key period; a KMS that cannot be reached is
      logged and audited, the GMS starts without keys (GMK requests: 503 ``keys-unavailable``)
      and retries;
    * partner groups: with ``settings.partner_groups`` and ``http_proxy``, the poller of
      ``gmssync`` (WA-IC-21, WA-IC-22), every ``settings.poll_interval`` seconds.

    Raises ``GmsError`` (files, TLS material, a partner group no agreement serves) or ``OSError``
    (bind).  ``close()`` on the result stops all of it.
    """
    from mcinterconnect.services.gmssync import PartnerGroupPoller  # gmssync builds on this module

    documents = load_group_documents(settings.groups) if settings.groups is not None else []
    gms_partners = []
    for agreement in partners:
        certificate = None
        if agreement.kms_certificate is not None:
            try:
                certificate = read_certificate(agreement.kms_certificate).as_role("External")
            except KmsError as error:
                raise GmsError(f"partner {agreement.name}: kms_certificate: {error}") from None
        gms_partners.append(GmsPartner.from_agreement(agreement, certificate))
    service = GmsService(
        domains=domains,
        store=MemoryGroupStore(documents),
        max_request_bytes=settings.max_request_bytes,
        log=log,
        psi=settings.psi,
        partners=gms_partners,
        kms_certificate=kms_certificate,
        partner_group_ids=settings.partner_groups,
    )
    for document in documents:
        service.group_keys.ensure(document.group_id)
    poller = None
    if settings.partner_groups:
        if http_proxy is None:
            raise GmsError("gms.partner_groups: no HTTP proxy to fetch them through")
        for group_id in settings.partner_groups:
            domain = McServiceId.parse(group_id).domain
            serving = [partner for partner in gms_partners if domain in partner.domains]
            if not serving or serving[0].gms_psi is None:
                raise GmsError(
                    f"gms.partner_groups: {group_id}: no partner agreement with a psis.gms serves it"
                )
        poller = PartnerGroupPoller(
            psi=settings.psi,
            group_ids=settings.partner_groups,
            partners=gms_partners,
            cache=service.partner_groups,
            http_proxy=http_proxy,
            keys=lambda: service.keys,
            audit=audit,
            domains=domains,
            log=log,
        )
    access = None
    if kms_url is not None and settings.certificate is not None and settings.private_key is not None:
        access = _kms_access(settings, kms_url, kms_server_hostname)
        service.keys = await _load_keys(service, access, settings.psi, audit, log)
        if service.kms_certificate is None and service.keys is not None:
            service.kms_certificate = service.keys.certificate
    await service.start(settings.listen.host, settings.listen.port)
    if access is not None:
        service.run_in_background(
            _keep_keys(service, access, psi=settings.psi, audit=audit, log=log, retry=REFRESH_RETRY)
        )
    if poller is not None:
        service.poller = poller
        service.run_in_background(poller.run(settings.poll_interval))
    audit.record(
        "allow",
        "gms-started",
        groups=len(documents),
        partner_groups=len(settings.partner_groups),
        keys=service.keys is not None,
    )
    return service
