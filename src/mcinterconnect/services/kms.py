"""The KMS service of one MC system (TS 33.180 Annex D over HTTPS) and a client that checks what it gets.

Endpoints (33.180 D.2, HTTPS POST; the request body is never parsed, only bounded):

* ``/keymanagement/identity/v1/init`` — a ``KmsResponse`` with ``KmsInit``: the KMS's own (Root)
  certificate;
* ``/keymanagement/identity/v1/keyprov`` (or ``.../keyprov/<user URI>``) — ``KmsKeyProv``: key sets
  of the authenticated user for the previous, current and next key periods (WA-CR-07), or for the
  periods listed in a ``periods`` query parameter (at most ``MAX_REQUESTED_PERIODS``, each within
  ``PERIODS_BEHIND`` before and ``PERIODS_AHEAD`` after the current one);
* ``/keymanagement/identity/v1/certcache`` — ``KmsCertCache``: the partner KMS certificates imported
  by manual cross-certification (WA-IC-19), with role External.

Who is asking (the project's choice, docs/PROFILE.md §13, P-KMS-04): the connection is
mutual TLS with the profile of ``tlsprofile`` (WA-IC-15/16).  The client certificate must chain to
one of this system's own CAs (``kms.client_trust_anchors``) and carry exactly one subjectAltName
URI that is an MC service ID (or server URI) of this system's domains: that URI is the
authenticated identity, and the KMS provisions keys for that identity only.  (33.180
authenticates KMS requests with an access token of the IdMS, Annex B, which this project does not
implement; the certificate stands in for it.)  Responses are not signed (WA-CR-06): their
authenticity is the TLS server certificate, and the client validates every key set it receives.

Every refusal is an HTTP status with a one-line ``text/plain`` body holding a reason code (below)
and one JSON log event; never a traceback, a file name or an internal host.

============================  ======  ==========================================================
reason                        status  meaning
============================  ======  ==========================================================
``identity-missing``          403     no client certificate, or no MC service ID URI in its SAN
``identity-ambiguous``        403     more than one MC service ID URI in the SAN
``identity-not-local``        403     the identity's domain is not one of this system's
``identity-mismatch``         403     ``keyprov/<user URI>`` names someone else
``periods-invalid``           400     ``periods`` is not a comma-separated list of numbers
``too-many-periods``          400     more than ``MAX_REQUESTED_PERIODS`` periods
``period-out-of-range``       400     a period outside the window around the current one
``body-too-large``            413     request body above ``kms.max_request_bytes``
``not-found``                 404     another path
``method-not-allowed``        405     another method than POST
``kms-refused``               409     the KMS logic refused (e.g. a period after its certificate)
``internal-error``            500     anything unexpected (logged by exception type only)
============================  ======  ==========================================================

The asyncio/aiohttp code here is a thin adapter over ``crypto/kms.py`` (sans-IO).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextvars
import datetime
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import Final

import aiohttp
from aiohttp import web
from cryptography import x509
from pydantic import Field, field_validator

from mcinterconnect.configtypes import ConfigModel, HttpsAddressField, domain_name
from mcinterconnect.crypto.kms import (
    MAX_DOCUMENT_BYTES,
    STORAGE_KEY_LENGTH,
    KeySet,
    Kms,
    KmsCertificate,
    KmsError,
    KmsResponse,
    KmsSecrets,
    validate_key_set,
)
from mcinterconnect.files import write_with_mode
from mcinterconnect.identity import (
    CertificateIdentityError,
    certificate_identity,
)
from mcinterconnect.services.httpserver import HttpListener
from mcinterconnect.sip.transport import LogSink
from mcinterconnect.tlsprofile import peer_certificate, server_context

__all__ = [
    "CERTCACHE_PATH",
    "INIT_PATH",
    "KEYPROV_PATH",
    "KmsClientError",
    "KmsRequestError",
    "KmsService",
    "KmsSettings",
    "authenticated_identity",
    "fetch_cert_cache",
    "fetch_certificate",
    "fetch_key_sets",
    "read_certificate",
    "read_kms",
    "read_storage_key",
    "requested_periods",
    "start_kms_service",
    "write_certificate",
    "write_sealed_secrets",
    "write_storage_key",
]

#: Path prefix of the KMS interface (33.180 D.2).
BASE_PATH: Final = "/keymanagement/identity/v1"
INIT_PATH: Final = BASE_PATH + "/init"
KEYPROV_PATH: Final = BASE_PATH + "/keyprov"
CERTCACHE_PATH: Final = BASE_PATH + "/certcache"
XML_CONTENT_TYPE: Final = "application/xml"

#: Most key periods one ``keyprov`` request may name.
MAX_REQUESTED_PERIODS: Final = 4
#: How far before / after the current key period a requested period may lie.
PERIODS_BEHIND: Final = 1
PERIODS_AHEAD: Final = 2
DEFAULT_MAX_REQUEST_BYTES: Final = 4096

KEY_FILE_MODE: Final = 0o600
PUBLIC_FILE_MODE: Final = 0o644
_STORAGE_KEY_COMMENT: Final = (
    "# Storage key of the KMS secrets (AES-256-GCM, base64). Keep it apart from the secrets file."
)
_REASON_RE: Final = re.compile(r"[a-z0-9-]{1,40}")


# --- configuration ------------------------------------------------------------------------------


class KmsSettings(ConfigModel):
    """The ``[kms]`` section of ``system.toml``: the KMS of this system."""

    #: ``host:port`` of the HTTPS listener.
    listen: HttpsAddressField
    #: The KMS URI (KmsUri of the certificate; part of every UID, 33.180 F.2.1).
    uri: str
    #: UserKeyPeriod and UserKeyOffset in seconds (33.180 F.2.1); the certificate must agree.
    user_key_period: int = Field(2_592_000, gt=0, le=(1 << 32) - 1)
    user_key_offset: int = Field(0, ge=0, le=(1 << 32) - 1)
    #: The KSAK and z, sealed with AES-256-GCM under ``storage_key``.
    secrets: Path
    #: The storage key file (base64, mode 0600).
    storage_key: Path
    #: This KMS's own certificate (KmsCertificate XML, role Root): what partners import.
    kms_certificate: Path
    #: TLS server identity of the KMS (subjectAltName dNSName = ``uri``).
    certificate: Path
    private_key: Path
    #: CAs whose client certificates may ask (this system's own CA).
    client_trust_anchors: list[Path] = Field(min_length=1)
    #: Validity of the KMS certificate that ``mcic init`` writes, in days.
    validity_days: int = Field(3650, ge=1, le=36500)
    #: Largest request body accepted (bodies are not parsed).
    max_request_bytes: int = Field(DEFAULT_MAX_REQUEST_BYTES, ge=0, le=1_048_576)

    @field_validator("uri")
    @classmethod
    def _uri(cls, value: str) -> str:
        return domain_name(value)


# --- files ----------------------------------------------------------------------------------------


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise KmsError("file-unreadable", f"{path}: file not found") from None
    except OSError as exc:
        raise KmsError("file-unreadable", f"{path}: cannot read: {exc.strerror}") from None


def write_storage_key(path: Path, key: bytes) -> None:
    """Write a storage key file (a comment line and the key in base64; mode 0600)."""
    if len(key) != STORAGE_KEY_LENGTH:
        raise KmsError("storage-key-invalid", f"the storage key must be {STORAGE_KEY_LENGTH} octets")
    text = f"{_STORAGE_KEY_COMMENT}\n{base64.b64encode(key).decode('ascii')}\n"
    write_with_mode(path, text.encode("ascii"), KEY_FILE_MODE)


def read_storage_key(path: Path) -> bytes:
    """Read a storage key file; refused if others may read it.  Messages never show key bytes."""
    data = _read_file(path)
    if path.stat().st_mode & 0o077:
        raise KmsError("storage-key-invalid", f"{path}: readable by group or others (chmod 600)")
    lines = [line.strip() for line in data.decode("ascii", "replace").splitlines()]
    values = [line for line in lines if line and not line.startswith("#")]
    if len(values) != 1:
        raise KmsError("storage-key-invalid", f"{path}: expected one base64 line")
    try:
        key = base64.b64decode(values[0], validate=True)
    except binascii.Error:
        raise KmsError("storage-key-invalid", f"{path}: the key is not valid base64") from None
    if len(key) != STORAGE_KEY_LENGTH:
        raise KmsError(
            "storage-key-invalid", f"{path}: the key has {len(key)} octets, expected {STORAGE_KEY_LENGTH}"
        )
    return key


def write_sealed_secrets(path: Path, kms_secrets: KmsSecrets, storage_key: bytes) -> None:
    """Seal the KMS secrets under ``storage_key`` and write them (mode 0600)."""
    write_with_mode(path, kms_secrets.seal(storage_key), KEY_FILE_MODE)


def write_certificate(path: Path, certificate: KmsCertificate) -> None:
    """Write a KMS certificate XML file (public: mode 0644)."""
    write_with_mode(path, certificate.to_xml(), PUBLIC_FILE_MODE)


def read_certificate(path: Path) -> KmsCertificate:
    """Read and check a KMS certificate XML file; ``KmsError`` names the file."""
    try:
        return KmsCertificate.from_xml(_read_file(path))
    except KmsError as exc:
        if exc.reason == "file-unreadable":
            raise
        raise KmsError(exc.reason, f"{path}: {exc}") from None


def read_kms(settings: KmsSettings) -> Kms:
    """The KMS of ``settings``: storage key, sealed secrets and own certificate, all consistent."""
    storage_key = read_storage_key(settings.storage_key)
    try:
        kms_secrets = KmsSecrets.unseal(_read_file(settings.secrets), storage_key)
    except KmsError as exc:
        if exc.reason == "file-unreadable":
            raise
        raise KmsError(exc.reason, f"{settings.secrets}: {exc}") from None
    certificate = read_certificate(settings.kms_certificate)
    where = settings.kms_certificate
    if certificate.role != "Root":
        raise KmsError("role-unknown", f"{where}: this KMS's own certificate must have role Root")
    if certificate.kms_uri != settings.uri:
        raise KmsError(
            "kms-mismatch", f"{where}: KmsUri {certificate.kms_uri!r} is not kms.uri {settings.uri!r}"
        )
    if (certificate.user_key_period, certificate.user_key_offset) != (
        settings.user_key_period,
        settings.user_key_offset,
    ):
        raise KmsError("kms-mismatch", f"{where}: UserKeyPeriod/UserKeyOffset differ from the [kms] section")
    try:
        return Kms(kms_secrets, certificate)
    except KmsError as exc:
        raise KmsError(exc.reason, f"{settings.secrets}: {exc}") from None


# --- identity -------------------------------------------------------------------------------------


class KmsRequestError(Exception):
    """A KMS request refused with an HTTP ``status`` and a reason code (the whole response body)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def authenticated_identity(certificate: x509.Certificate | None, domains: Collection[str]) -> str:
    """The MC service ID a verified client certificate authenticates; ``KmsRequestError`` (403) if none.

    The identity is the one subjectAltName URI that parses as ``sip:user@domain`` with a domain of
    this system (other URI schemes are ignored); none or several are refused
    (``identity.certificate_identity``).
    """
    try:
        return certificate_identity(certificate, domains)
    except CertificateIdentityError as error:
        raise KmsRequestError(403, error.reason) from None


def requested_periods(text: str | None, current: int) -> list[int] | None:
    """The key periods of a ``periods`` query value (``"553,554"``), bounded; None if absent.
    ``KmsRequestError`` (400) for anything else."""
    if text is None:
        return None
    parts = text.split(",")
    if len(text) > 200 or not all(part.isascii() and part.isdigit() and len(part) <= 19 for part in parts):
        raise KmsRequestError(400, "periods-invalid")
    if len(parts) > MAX_REQUESTED_PERIODS:
        raise KmsRequestError(400, "too-many-periods")
    numbers = list(dict.fromkeys(int(part) for part in parts))
    if any(not current - PERIODS_BEHIND <= number <= current + PERIODS_AHEAD for number in numbers):
        raise KmsRequestError(400, "period-out-of-range")
    return numbers


# --- the service ----------------------------------------------------------------------------------

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: The identity authenticated for the request in progress (each request runs in its own task).
_IDENTITY: contextvars.ContextVar[str | None] = contextvars.ContextVar("kms_identity", default=None)


class KmsService:
    """The KMS of one system on HTTPS: ``start`` it on an address with a server TLS context that
    requires client certificates, ``close`` it when done."""

    def __init__(
        self,
        kms: Kms,
        *,
        domains: Iterable[str],
        external_certificates: Iterable[KmsCertificate] = (),
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        log: LogSink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kms = kms
        self.domains = frozenset(domain.lower() for domain in domains)
        self.external_certificates = tuple(cert.as_role("External") for cert in external_certificates)
        self.max_request_bytes = max_request_bytes
        self._log = log
        self._clock = clock
        self._listener = HttpListener("kms")

    # -- lifecycle

    def application(self) -> web.Application:
        """The aiohttp application (routes and the refusal middleware)."""
        app = web.Application(middlewares=[self._middleware], client_max_size=max(self.max_request_bytes, 1))
        app.router.add_post(INIT_PATH, self._init)
        app.router.add_post(KEYPROV_PATH, self._keyprov)
        app.router.add_post(KEYPROV_PATH + "/{user}", self._keyprov)
        app.router.add_post(CERTCACHE_PATH, self._certcache)
        return app

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext) -> None:
        """Listen on ``host:port`` (0: any free port, see ``address``) with ``ssl_context``."""
        await self._listener.start(self.application(), host, port, ssl_context)

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the service listens on."""
        return self._listener.address

    async def close(self) -> None:
        """Stop listening and close every connection."""
        await self._listener.close()

    # -- HTTP plumbing

    def _event(self, request: web.Request, status: int, reason: str, identity: str | None) -> None:
        if self._log is None:
            return
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        self._log(
            {
                "event": "kms-request",
                "decision": "allow" if status == 200 else "refuse",
                "reason": reason,
                "status": status,
                "method": request.method,
                "path": request.rel_url.raw_path[:200],
                "identity": identity,
                "remote": f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else None,
            }
        )

    @staticmethod
    def _refusal_response(status: int, reason: str) -> web.Response:
        response = web.Response(status=status, text=f"{reason}\n", content_type="text/plain")
        response.headers["Server"] = "kms"
        if status == 405:
            response.headers["Allow"] = "POST"
        return response

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        token = _IDENTITY.set(None)
        try:
            return await self._answer(request, handler)
        finally:
            _IDENTITY.reset(token)

    async def _answer(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except KmsRequestError as refusal:
            self._event(request, refusal.status, refusal.reason, _IDENTITY.get())
            return self._refusal_response(refusal.status, refusal.reason)
        except web.HTTPException as exc:  # the router's 404 / 405, aiohttp's 413
            reason = {404: "not-found", 405: "method-not-allowed", 413: "body-too-large"}.get(
                exc.status, "bad-request"
            )
            self._event(request, exc.status, reason, _IDENTITY.get())
            return self._refusal_response(exc.status, reason)
        except Exception as exc:
            self._event(request, 500, "internal-error", _IDENTITY.get())
            if self._log is not None:
                self._log({"event": "kms-internal-error", "error": type(exc).__name__})
            return self._refusal_response(500, "internal-error")
        self._event(request, response.status, "allowed", _IDENTITY.get())
        return response

    async def _authenticate(self, request: web.Request) -> str:
        """The authenticated identity, after the body was bounded (and discarded)."""
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport is not None else None
        identity = authenticated_identity(peer_certificate(ssl_object), self.domains)
        _IDENTITY.set(identity)
        limit = self.max_request_bytes
        if request.content_length is not None and request.content_length > limit:
            raise KmsRequestError(413, "body-too-large")
        if await _read_bounded(request.content, limit) is None:
            raise KmsRequestError(413, "body-too-large")
        return identity

    @staticmethod
    def _respond(response: KmsResponse) -> web.Response:
        answer = web.Response(status=200, body=response.to_xml(), content_type=XML_CONTENT_TYPE)
        answer.headers["Server"] = "kms"
        answer.headers["Cache-Control"] = "no-store"
        return answer

    def _response(
        self,
        request: web.Request,
        identity: str,
        kind: str,
        *,
        certificates: Sequence[KmsCertificate] = (),
        key_sets: Sequence[KeySet] = (),
    ) -> KmsResponse:
        certificate = self.kms.certificate
        return KmsResponse(
            kind=kind,  # type: ignore[arg-type]  # one of the three literal kinds, given by the handlers
            kms_uri=certificate.kms_uri,
            user_uri=identity,
            time=datetime.datetime.fromtimestamp(self._clock(), datetime.UTC),
            client_req_url=f"https://{certificate.kms_uri}{request.rel_url.raw_path[:512]}",
            certificates=tuple(certificates),
            key_sets=tuple(key_sets),
        )

    # -- endpoints

    async def _init(self, request: web.Request) -> web.Response:
        identity = await self._authenticate(request)
        return self._respond(self._response(request, identity, "init", certificates=[self.kms.certificate]))

    async def _keyprov(self, request: web.Request) -> web.Response:
        identity = await self._authenticate(request)
        named = request.match_info.get("user")
        if named is not None and named != identity:
            raise KmsRequestError(403, "identity-mismatch")
        try:
            current = self.kms.periods_around_now(self._clock)[1]
        except KmsError:
            raise KmsRequestError(409, "kms-refused") from None
        if len(request.query.getall("periods", [])) > 1:
            raise KmsRequestError(400, "periods-invalid")
        periods = requested_periods(request.query.get("periods"), current)
        numbers = periods if periods is not None else [current - 1, current, current + 1]
        loop = asyncio.get_running_loop()
        try:
            # SAKKE's RSK costs a 1024-bit scalar multiplication: keep the event loop free.
            key_sets = await loop.run_in_executor(None, self.kms.provision, identity, numbers)
        except KmsError:
            raise KmsRequestError(409, "kms-refused") from None
        return self._respond(self._response(request, identity, "keyprov", key_sets=key_sets))

    async def _certcache(self, request: web.Request) -> web.Response:
        identity = await self._authenticate(request)
        return self._respond(
            self._response(request, identity, "certcache", certificates=self.external_certificates),
        )


async def start_kms_service(
    settings: KmsSettings,
    *,
    domains: Iterable[str],
    partner_certificates: Iterable[Path] = (),
    log: LogSink | None = None,
) -> KmsService:
    """Load the KMS of ``settings`` and the imported partner certificates, and start the service.

    Raises ``KmsError`` (files), ``tlsprofile.TlsConfigError`` (TLS material) or ``OSError`` (bind).
    """
    kms = read_kms(settings)
    external = [read_certificate(path) for path in partner_certificates]
    context = server_context(
        settings.certificate,
        settings.private_key,
        trust_anchors=list(settings.client_trust_anchors),
        require_client_cert=True,
    )
    service = KmsService(
        kms,
        domains=domains,
        external_certificates=external,
        max_request_bytes=settings.max_request_bytes,
        log=log,
    )
    await service.start(settings.listen.host, settings.listen.port, context)
    return service


# --- client ---------------------------------------------------------------------------------------


class KmsClientError(KmsError):
    """A KMS exchange that failed: ``transport``, ``timeout``, ``http-status``, ``content-type``,
    ``response-too-large``, ``response-unexpected`` (or a ``KmsError`` reason of the document)."""


async def _read_bounded(stream: aiohttp.StreamReader, limit: int) -> bytes | None:
    """The whole body (``read(n)`` returns what is buffered, not n bytes), or None past ``limit``."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _post(
    url: str,
    path: str,
    ssl_context: ssl.SSLContext,
    *,
    server_hostname: str | None,
    timeout: float,
    params: dict[str, str] | None = None,
) -> KmsResponse:
    target = url.rstrip("/") + path
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.post(
                target, data=b"", ssl=ssl_context, server_hostname=server_hostname, params=params
            ) as response,
        ):
            bounded = await _read_bounded(response.content, MAX_DOCUMENT_BYTES)
            status, content_type = response.status, response.content_type
    except TimeoutError:
        raise KmsClientError("timeout", f"the KMS at {url} did not answer within {timeout} s") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise KmsClientError("transport", f"cannot reach the KMS at {url} ({type(exc).__name__})") from None
    if bounded is None:
        raise KmsClientError("response-too-large", f"the KMS response exceeds {MAX_DOCUMENT_BYTES} bytes")
    body = bounded
    if status != 200:
        first = body.decode("ascii", "replace").strip().split("\n", 1)[0]
        reason = first if _REASON_RE.fullmatch(first) else "no reason given"
        raise KmsClientError("http-status", f"the KMS refused {path}: {status} ({reason})")
    if content_type != XML_CONTENT_TYPE:
        raise KmsClientError(
            "content-type", f"the KMS answered {content_type[:60]!r}, not {XML_CONTENT_TYPE}"
        )
    return KmsResponse.from_xml(body)


async def fetch_certificate(
    url: str, ssl_context: ssl.SSLContext, *, server_hostname: str | None = None, timeout: float = 10.0
) -> KmsCertificate:
    """The KMS's own certificate (``init``).  Trusted because the TLS server certificate was
    verified against ``ssl_context``'s anchors (WA-CR-06: responses are not signed)."""
    response = await _post(url, INIT_PATH, ssl_context, server_hostname=server_hostname, timeout=timeout)
    if response.kind != "init" or response.certificates[0].role != "Root":
        raise KmsClientError("response-unexpected", "the KMS did not answer init with its Root certificate")
    certificate = response.certificates[0]
    if certificate.kms_uri != response.kms_uri:
        raise KmsClientError("response-unexpected", "the certificate's KmsUri differs from the response's")
    return certificate


async def fetch_cert_cache(
    url: str, ssl_context: ssl.SSLContext, *, server_hostname: str | None = None, timeout: float = 10.0
) -> list[KmsCertificate]:
    """The external (partner) KMS certificates the home KMS offers (``certcache``)."""
    response = await _post(url, CERTCACHE_PATH, ssl_context, server_hostname=server_hostname, timeout=timeout)
    if response.kind != "certcache" or any(cert.role != "External" for cert in response.certificates):
        raise KmsClientError(
            "response-unexpected", "the KMS did not answer certcache with External certificates"
        )
    return list(response.certificates)


def _validate_all(
    key_sets: Sequence[KeySet], certificate: KmsCertificate, user_uri: str, periods: Sequence[int] | None
) -> None:
    for key_set in key_sets:
        validate_key_set(key_set, certificate, user_uri)
    if periods is not None and sorted(ks.key_period_no for ks in key_sets) != sorted(set(periods)):
        raise KmsClientError("response-unexpected", "the key periods received are not those requested")


async def fetch_key_sets(
    url: str,
    ssl_context: ssl.SSLContext,
    *,
    user_uri: str,
    certificate: KmsCertificate | None = None,
    periods: Sequence[int] | None = None,
    server_hostname: str | None = None,
    timeout: float = 10.0,
) -> list[KeySet]:
    """Key sets of ``user_uri`` from the KMS at ``url`` (``https://host:port``), every one
    validated before it is returned (``validate_key_set``: UID, SSK, RSK).

    ``ssl_context`` must carry the client certificate naming ``user_uri``.  Without
    ``certificate`` the KMS's certificate is fetched first (``fetch_certificate``).  ``periods``
    asks for those key periods instead of the previous, current and next ones.
    """
    if certificate is None:
        certificate = await fetch_certificate(
            url, ssl_context, server_hostname=server_hostname, timeout=timeout
        )
    params = {"periods": ",".join(str(number) for number in periods)} if periods else None
    response = await _post(
        url, KEYPROV_PATH, ssl_context, server_hostname=server_hostname, timeout=timeout, params=params
    )
    if response.kind != "keyprov" or not response.key_sets:
        raise KmsClientError("response-unexpected", "the KMS did not answer keyprov with key sets")
    if response.user_uri != user_uri:
        raise KmsClientError("response-unexpected", "the KMS answered for another user")
    if response.kms_uri != certificate.kms_uri:
        raise KmsClientError(
            "response-unexpected", "the response comes from another KMS than the certificate's"
        )
    key_sets = list(response.key_sets)
    # Two pairings per key set (RSK check): off the event loop.
    await asyncio.get_running_loop().run_in_executor(
        None, _validate_all, key_sets, certificate, user_uri, list(periods) if periods else None
    )
    return key_sets
