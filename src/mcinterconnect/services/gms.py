"""The group management server (GMS) of one MC system: XCAP-style group documents over HTTP(S).

Groundwork for issue 6 item 1 (TS 24.481 documents, RFC 4825 XCAP semantics, spec §9.4 CSC-16):

* ``GET /org.openmobilealliance.groups/groups/{group-id}`` — the document (``ETag``); with
  ``If-None-Match`` naming the current ETag (or ``*``): 304, the conditional polling of WA-IC-21;
* ``PUT`` — create (201) or replace (200) the document; answers its ``ETag``.  ``If-Match``
  (an ETag list or ``*``) and ``If-None-Match: *`` (create only) are honoured: 412 otherwise;
* ``DELETE`` — 200, with ``If-Match`` as for PUT.

``{group-id}`` is the MC service group ID, URL-encoded (``sip%3Afire%40b.mc.example``); a PUT
document must name the same group.  ETags are strong (``groupdoc.GroupDocument.etag``).

Who is asking: the ``X-3GPP-Asserted-Identity`` header (an MC service ID).  When its domain is not
one of this GMS's domains the requester is external: it may only GET, and it gets the document
``filtered_for`` its domain (WA-IC-12, minimum disclosure), with the ETag of the filtered bytes.
This is the hook the HTTP proxy relies on: it asserts a partner's identity on what it forwards
and strips the header from everything else.  Without the header the request counts as this
system's own.  There is no other authentication in this groundwork (no access token, no client
certificate check): the GMS must only be reachable through the system's own HTTP proxy.

Refusals: an HTTP status with a one-line ``text/plain`` reason code and one JSON log event;
invalid documents get 409 with an ``application/xcap-error+xml`` body (RFC 4825 §11); never a
traceback, a module name or an internal host.

==============================  ======  ====================================================
reason                          status  meaning
==============================  ======  ====================================================
``group-id-invalid``            400     the path's group ID is not an MC service ID
``identity-invalid``            400     X-3GPP-Asserted-Identity is not an MC service ID
``external-write-refused``      403     PUT or DELETE by an external requester
``not-found``                   404     no such group, or another path
``method-not-allowed``          405     another method than GET, HEAD, PUT, DELETE
``document-invalid``            409     the PUT body is not a valid group document (xcap-error)
``precondition-failed``         412     If-Match / If-None-Match not met
``body-too-large``              413     request body above ``max_request_bytes``
``unsupported-media-type``      415     PUT body not ``application/vnd.oma.poc.groups+xml``
``internal-error``              500     anything unexpected (logged by exception type only)
==============================  ======  ====================================================
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import Final, Protocol
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

from aiohttp import web

from mcinterconnect.identity import IdentityError, McServiceId
from mcinterconnect.services.groupdoc import (
    MAX_DOCUMENT_BYTES,
    GroupDocument,
    GroupDocumentError,
    filtered_for,
)
from mcinterconnect.services.httpserver import HttpListener
from mcinterconnect.sip.transport import LogSink

__all__ = [
    "ASSERTED_IDENTITY_HEADER",
    "GROUPS_PATH",
    "GROUP_CONTENT_TYPE",
    "XCAP_ERROR_CONTENT_TYPE",
    "GmsRequestError",
    "GmsService",
    "GroupStore",
    "MemoryGroupStore",
    "group_path",
    "xcap_error_body",
]

#: XCAP root-relative path of the group documents (AUID org.openmobilealliance.groups).
GROUPS_PATH: Final = "/org.openmobilealliance.groups/groups"
GROUP_CONTENT_TYPE: Final = "application/vnd.oma.poc.groups+xml"
XCAP_ERROR_CONTENT_TYPE: Final = "application/xcap-error+xml"
XCAP_ERROR_NS: Final = "urn:ietf:params:xml:ns:xcap-error"
ASSERTED_IDENTITY_HEADER: Final = "X-3GPP-Asserted-Identity"
_ACCEPTED_CONTENT_TYPES: Final = frozenset({GROUP_CONTENT_TYPE, "application/xml"})
DEFAULT_MAX_REQUEST_BYTES: Final = MAX_DOCUMENT_BYTES
_SERVER: Final = "gms"

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def group_path(group_id: str) -> str:
    """The request path of a group document (the group ID percent-encoded, ``/`` included)."""
    return f"{GROUPS_PATH}/{quote(group_id, safe='')}"


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


class GmsService:
    """The GMS of one system: ``start`` it on an address (TLS optional), ``close`` it when done."""

    def __init__(
        self,
        *,
        domains: Iterable[str],
        store: GroupStore | None = None,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        ssl_context: ssl.SSLContext | None = None,
        log: LogSink | None = None,
    ) -> None:
        self.domains = frozenset(domain.lower() for domain in domains)
        if not self.domains:
            raise ValueError("the GMS needs at least one own domain")
        self.store: GroupStore = store if store is not None else MemoryGroupStore()
        self.max_request_bytes = max_request_bytes
        self._ssl_context = ssl_context
        self._log = log
        self._listener = HttpListener("gms")

    def application(self) -> web.Application:
        """The aiohttp application (routes and the refusal middleware)."""
        app = web.Application(middlewares=[self._middleware], client_max_size=self.max_request_bytes)
        route = GROUPS_PATH + "/{group_id}"
        app.router.add_get(route, self._get)
        app.router.add_put(route, self._put)
        app.router.add_delete(route, self._delete)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host:port`` (0: any free port, see ``address``), over TLS if configured."""
        await self._listener.start(self.application(), host, port, self._ssl_context)

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the service listens on."""
        return self._listener.address

    async def close(self) -> None:
        """Stop listening and close every connection."""
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

    def _requester_domain(self, request: web.Request) -> str | None:
        """The asserted requester's domain when it is external, None for this system's own."""
        values = request.headers.getall(ASSERTED_IDENTITY_HEADER, [])
        if not values:
            return None
        if len(values) > 1:
            raise GmsRequestError(400, "identity-invalid")
        try:
            domain = McServiceId.parse(values[0]).domain
        except (IdentityError, ValueError):
            raise GmsRequestError(400, "identity-invalid") from None
        return None if domain in self.domains else domain

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

    # -- endpoints

    async def _get(self, request: web.Request) -> web.Response:
        group_id = self._group_id(request)
        external = self._requester_domain(request)
        document = self.store.get(group_id)
        if document is None:
            raise GmsRequestError(404, "not-found")
        if external is not None:
            document = filtered_for(document, [external], self.domains)
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
        return self._document_response(201 if created else 200, None, document.etag)

    async def _delete(self, request: web.Request) -> web.Response:
        group_id = self._group_id(request)
        if self._requester_domain(request) is not None:
            raise GmsRequestError(403, "external-write-refused")
        existing = self.store.get(group_id)
        if existing is None:
            raise GmsRequestError(404, "not-found")
        self._check_if_match(request, existing.etag)
        self.store.delete(group_id)
        response = web.Response(status=200)
        response.headers["Server"] = _SERVER
        return response
