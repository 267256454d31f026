"""HTTP clients of the GMS resources: a group document and a group's GMK (asyncio, aiohttp).

Two users of the same bounded GET (``http_get``):

* an MC client (the demo's alice) asks its own system's HTTP proxy, client side (HTTP-1 over
  TLS with its client certificate, whose subjectAltName URI is its MC service ID; the proxy
  asserts that identity to the GMS): ``fetch_group`` for the document (conditional with an ETag,
  WA-IC-21 style) and ``fetch_gmk`` for the GMK, opened with the user's own key set from its own
  KMS and checked to be signed by its GMS (TS 33.180 5.7; 23.280 10.2.7; WA-IC-22);
* the partner-group poller (``gmssync``) asks its HTTP proxy's internal listener on behalf of
  the GMS (CSC-16, TS 33.180 11.1.1).

Failures raise ``GmsClientError`` with a reason code: ``transport``, ``timeout``,
``http-status`` (``status`` and the server's one-line ``refusal`` code kept), ``content-type``,
``response-too-large``, ``document-invalid``, ``wrong-group``; a GMK that does not open raises
``gmk.GmkError``.  Nothing here logs; no message holds key material.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import aiohttp

from mcinterconnect.crypto.kms import KmsCertificate
from mcinterconnect.services.gmk import GMK_CONTENT_TYPE, MAX_MESSAGE_BYTES, ReceivedGmk, open_gmk
from mcinterconnect.services.gms import GROUP_CONTENT_TYPE, gmk_path, group_path
from mcinterconnect.services.groupdoc import MAX_DOCUMENT_BYTES, GroupDocument, GroupDocumentError
from mcinterconnect.services.mcx_ear import SigningKeys

__all__ = [
    "GmsClientError",
    "GroupFetch",
    "HttpAnswer",
    "fetch_gmk",
    "fetch_gmk_message",
    "fetch_group",
    "http_get",
    "parse_group_answer",
]

_REASON_RE: Final = re.compile(r"[a-z0-9-]{1,40}")
_DOCUMENT_TYPES: Final = frozenset({GROUP_CONTENT_TYPE, "application/xml"})
DEFAULT_TIMEOUT: Final = 10.0


class GmsClientError(Exception):
    """A GMS exchange that failed: ``reason`` code, HTTP ``status`` and ``refusal`` when answered."""

    def __init__(
        self, reason: str, message: str, *, status: int | None = None, refusal: str | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status
        self.refusal = refusal


@dataclass(frozen=True)
class HttpAnswer:
    """A bounded HTTP answer: status, content type (no parameters), ETag, body."""

    status: int
    content_type: str
    etag: str | None
    body: bytes


async def http_get(
    session: aiohttp.ClientSession,
    url: str,
    *,
    headers: Mapping[str, str],
    limit: int,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> HttpAnswer:
    """GET ``url``; the body is read up to ``limit`` octets (``response-too-large`` past it)."""
    try:
        async with session.get(
            url,
            headers=dict(headers),
            ssl=ssl_context if ssl_context is not None else True,
            server_hostname=server_hostname,
            allow_redirects=False,
        ) as response:
            if response.content_length is not None and response.content_length > limit:
                raise GmsClientError("response-too-large", f"the answer exceeds {limit} octets")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_chunked(65536):
                size += len(chunk)
                if size > limit:
                    raise GmsClientError("response-too-large", f"the answer exceeds {limit} octets")
                chunks.append(chunk)
            return HttpAnswer(
                status=response.status,
                content_type=response.content_type,
                etag=response.headers.get("ETag"),
                body=b"".join(chunks),
            )
    except TimeoutError:
        raise GmsClientError("timeout", f"no answer from {_where(url)} in time") from None
    except (aiohttp.ClientError, OSError) as error:
        raise GmsClientError("transport", f"cannot reach {_where(url)} ({type(error).__name__})") from None


def _where(url: str) -> str:
    """The URL without its path (the group ID is not a secret, but keep lines short)."""
    parts = url.split("/", 3)
    return "/".join(parts[:3])


def refusal_of(answer: HttpAnswer) -> GmsClientError:
    """``http-status`` for an unexpected status, with the server's reason code when it sent one."""
    first = answer.body[:64].decode("ascii", "replace").strip().split("\n", 1)[0]
    refusal = first if _REASON_RE.fullmatch(first) else None
    return GmsClientError(
        "http-status",
        f"the server answered {answer.status} ({refusal or 'no reason given'})",
        status=answer.status,
        refusal=refusal,
    )


@dataclass(frozen=True)
class GroupFetch:
    """A document GET: 200 with the ``document``, or 304 (``document`` None: the one held is current)."""

    status: int
    document: GroupDocument | None
    etag: str | None


def parse_group_answer(answer: HttpAnswer, group_id: str) -> GroupFetch:
    """Check a document answer: 200 with a group document naming ``group_id``, or 304."""
    if answer.status == 304:
        return GroupFetch(304, None, answer.etag)
    if answer.status != 200:
        raise refusal_of(answer)
    if answer.content_type not in _DOCUMENT_TYPES:
        raise GmsClientError("content-type", f"a document of type {answer.content_type[:60]!r}")
    try:
        document = GroupDocument.from_xml(answer.body)
    except GroupDocumentError as error:
        raise GmsClientError("document-invalid", f"not a valid group document: {error.reason}") from None
    if document.group_id != group_id:
        raise GmsClientError("wrong-group", f"the document names {document.group_id}, not {group_id}")
    return GroupFetch(200, document, answer.etag)


def _base(url: str) -> str:
    return url.rstrip("/")


async def fetch_group(
    base_url: str,
    group_id: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    etag: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> GroupFetch:
    """GET the document of ``group_id`` at ``base_url`` (``https://host:port`` of the HTTP proxy's
    client side); with ``etag``, conditional (304 when unchanged)."""
    request_headers = dict(headers or {})
    if etag is not None:
        request_headers["If-None-Match"] = etag
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        answer = await http_get(
            session,
            _base(base_url) + group_path(group_id),
            headers=request_headers,
            limit=MAX_DOCUMENT_BYTES,
            ssl_context=ssl_context,
            server_hostname=server_hostname,
        )
    return parse_group_answer(answer, group_id)


def check_gmk_answer(answer: HttpAnswer) -> bytes:
    """The I_MESSAGE of a GMK answer (200, ``application/mikey``)."""
    if answer.status != 200:
        raise refusal_of(answer)
    if answer.content_type != GMK_CONTENT_TYPE:
        raise GmsClientError("content-type", f"a GMK of type {answer.content_type[:60]!r}")
    return answer.body


async def fetch_gmk_message(
    base_url: str,
    group_id: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> bytes:
    """GET the GMK of ``group_id``: the I_MESSAGE octets, not yet opened."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        answer = await http_get(
            session,
            _base(base_url) + gmk_path(group_id),
            headers=dict(headers or {}),
            limit=MAX_MESSAGE_BYTES,
            ssl_context=ssl_context,
            server_hostname=server_hostname,
        )
    return check_gmk_answer(answer)


async def fetch_gmk(
    base_url: str,
    group_id: str,
    *,
    user_uri: str,
    keys: SigningKeys,
    gms_psi: str,
    gms_certificate: KmsCertificate | None = None,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> ReceivedGmk:
    """GET the GMK of ``group_id`` and open it as ``user_uri`` with ``keys`` (the user's key sets
    under its own KMS); it must be signed by ``gms_psi`` under ``gms_certificate`` (default: the
    user's own KMS certificate, the home GMS's KMS)."""
    message = await fetch_gmk_message(
        base_url, group_id, ssl_context=ssl_context, server_hostname=server_hostname, timeout=timeout
    )
    return open_gmk(
        message,
        receiver_uri=user_uri,
        receiver_keys=keys,
        initiator_uri=gms_psi,
        initiator_certificate=gms_certificate if gms_certificate is not None else keys.certificate,
    )
