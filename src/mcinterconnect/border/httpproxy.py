"""The HTTP proxy of one MC system on asyncio/aiohttp (TS 33.180 11.1.1; WA-IC-06, WA-IC-14).

Three listeners, each an ``services.httpserver.HttpListener`` (bounded TLS handshake, short
error pages, no access log); every decision is taken by ``httppolicy.HttpBorderPolicy`` and
written as one JSON line to the audit log (component ``http-proxy``):

* ``client`` — HTTP-1 over TLS (TS 33.180 6.1.3 profile, ``tlsprofile.server_context``), mutual
  TLS with ``client_trust_anchors``: own clients to own servers (``routes``), never a partner;
* ``internal`` — plain HTTP on the internal network: own servers' requests for a partner, which
  leave over HTTPS with mutual TLS (this proxy's certificate; the partner's trust anchors only;
  server name = the partner's ``http_proxy_host``) to its ``http_proxy_address``;
* ``http3`` — HTTP-3 (the 3GPP reference point; HTTP/1.1 over TLS 1.2/1.3, WA-IC-14), mutual
  TLS: the server context trusts every partner's anchors and requires a certificate, so a peer
  without one or from the own CA fails the handshake (audited ``tls-handshake-failed``); a
  certificate that verifies but is not a partner HTTP proxy's (issued by *that* partner's
  anchor and naming its ``http_proxy_host``) gets ``403 peer-unknown``.  Explicit inbound
  authentication (TS 33.180 9.6, WA-IC-10): the EAR is checked, then its ID claimed on the
  replay store (WA-SP-26 step 9; any store failure refuses, fail closed).

Limits: request and response bodies ≤ ``max_body_bytes`` (413 ``body-too-large`` / 502
``response-too-large``), aiohttp's header count and size limits, ``timeout`` seconds on each
exchange with the next hop (504 ``upstream-timeout``) and on receiving a request body (408),
a 5 s TLS handshake.  Refusal bodies are one line holding the reason code; the ``Server``
header is always ``http-proxy``; nothing names an internal host, a version or a traceback.

``wire_tap`` sees the plaintext this proxy sends across HTTP-3 (requests to partners, responses
to partners) as it is written; a message may come in several calls.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import aiohttp
from aiohttp import web
from cryptography import x509
from multidict import CIMultiDict
from yarl import URL

from mcinterconnect.border.agreement import HttpProxySettings, PartnerAgreement
from mcinterconnect.border.audit import AuditLog
from mcinterconnect.border.httppolicy import (
    ALLOWED,
    BODY_TOO_LARGE,
    INTERNAL_ERROR,
    PARTNER_UNREACHABLE,
    PEER_UNKNOWN,
    REQUEST_TIMEOUT,
    RESPONSE_TOO_LARGE,
    TLS_HANDSHAKE_FAILED,
    UPSTREAM_TIMEOUT,
    UPSTREAM_UNREACHABLE,
    Headers,
    HttpBorderPolicy,
    Refusal,
    Relay,
    ResponsePlan,
    client_identity,
)
from mcinterconnect.crypto.kms import KmsCertificate
from mcinterconnect.protect import ear_check
from mcinterconnect.protect.ear_check import EarPolicy, replay_ttl
from mcinterconnect.protect.replay import ReplayStore
from mcinterconnect.services.httpserver import HttpListener
from mcinterconnect.sip.transport import Address, LogSink
from mcinterconnect.tlsprofile import (
    TlsConfigError,
    client_context,
    load_certificates,
    peer_certificate,
    server_context,
)

__all__ = ["CLIENT_FACE", "HTTP3_FACE", "INTERNAL_FACE", "HttpProxy", "HttpProxyError", "start_http_proxy"]

CLIENT_FACE: Final = "client"
INTERNAL_FACE: Final = "internal"
HTTP3_FACE: Final = "http3"
#: The ``Server`` header of every response of the proxy (names no software or version).
SERVER_NAME: Final = "http-proxy"
_CHUNK: Final = 65_536
_WILDCARDS: Final = frozenset({"", "0.0.0.0", "::", "*"})
_SKIP_AUTO_HEADERS: Final = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")

_FaceHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpProxyError(ValueError):
    """A configuration the HTTP proxy cannot start with (one line, no key material)."""


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: Headers
    body: bytes


class _TooLargeError(Exception):
    pass


class HttpProxy:
    """The running HTTP proxy: ``addresses`` (face name → bound ``(host, port)``) and ``close``."""

    def __init__(
        self,
        settings: HttpProxySettings,
        *,
        policy: HttpBorderPolicy,
        partner_contexts: Mapping[str, ssl.SSLContext],
        client_tls: ssl.SSLContext,
        http3_tls: ssl.SSLContext | None,
        replay_store: ReplayStore | None,
        ear_ttl: float,
        audit: AuditLog,
        log: LogSink | None,
        wire_tap: Callable[[bytes], None] | None,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.audit = audit
        self.addresses: dict[str, tuple[str, int]] = {}
        self._partner_contexts = dict(partner_contexts)
        self._client_tls = client_tls
        self._http3_tls = http3_tls
        self._replay_store = replay_store
        self._ear_ttl = ear_ttl
        self._log = log
        self._tap = wire_tap
        self._listeners: dict[str, HttpListener] = {}
        self._own_host = next(iter(policy.own_domains), settings.public_host)
        self._internal_session: aiohttp.ClientSession | None = None
        self._partner_session: aiohttp.ClientSession | None = None

    # ----------------------------------------------------------------- life cycle
    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        self._internal_session = aiohttp.ClientSession(
            timeout=timeout, auto_decompress=False, skip_auto_headers=_SKIP_AUTO_HEADERS
        )
        traces = [self._trace()] if self._tap is not None else []
        self._partner_session = aiohttp.ClientSession(
            timeout=timeout,
            auto_decompress=False,
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            trace_configs=traces,
        )
        settings = self.settings
        faces: list[tuple[str, Address, _FaceHandler, ssl.SSLContext | None]] = [
            (CLIENT_FACE, settings.client_listen, self._client, self._client_tls),
            (INTERNAL_FACE, settings.internal_listen, self._internal, None),
        ]
        if self._http3_tls is not None:
            faces.append((HTTP3_FACE, settings.http3_listen, self._http3, self._http3_tls))
        try:
            for face, address, handler, context in faces:
                listener = HttpListener(SERVER_NAME)
                self._listeners[face] = listener
                await listener.start(
                    self._application(face, handler),
                    address.host,
                    address.port,
                    context,
                    on_handshake_failure=self._handshake_failed(face) if context is not None else None,
                    tap=self._tap if face == HTTP3_FACE else None,
                )
                self.addresses[face] = listener.address
        except BaseException:
            await self.close()
            raise
        # Bound addresses (port 0 in tests) are internal too.
        self.policy.markers = list(
            dict.fromkeys([*self.policy.markers, *(f"{h}:{p}" for h, p in self.addresses.values())])
        )

    async def close(self) -> None:
        for listener in self._listeners.values():
            await listener.close()
        self._listeners.clear()
        for session in (self._internal_session, self._partner_session):
            if session is not None:
                await session.close()
        self._internal_session = self._partner_session = None

    def _application(self, face: str, face_handler: _FaceHandler) -> web.Application:
        @web.middleware
        async def dispatch(request: web.Request, handler: _FaceHandler) -> web.StreamResponse:
            # Every request reaches the face handler; aiohttp's router (and its error pages,
            # which name the server software) never answers.
            del handler
            try:
                return await face_handler(request)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # anything unexpected: 500, type only
                self.audit.record(
                    "refuse",
                    INTERNAL_ERROR,
                    side=face,
                    method=request.method,
                    status=500,
                    detail=type(error).__name__,
                    remote=_remote(request),
                )
                return _refusal_response(Refusal(500, INTERNAL_ERROR, ""))

        app = web.Application(middlewares=[dispatch], client_max_size=self.settings.max_body_bytes)

        async def server_header(_: web.Request, response: web.StreamResponse) -> None:
            response.headers["Server"] = SERVER_NAME

        app.on_response_prepare.append(server_header)
        return app

    def _handshake_failed(self, face: str) -> Callable[[tuple[str, int], str], None]:
        def failed(remote: tuple[str, int], reason: str) -> None:
            self.audit.record(
                "refuse",
                TLS_HANDSHAKE_FAILED,
                side=face,
                detail=reason[:200],
                remote=f"{remote[0]}:{remote[1]}",
            )

        return failed

    def _trace(self) -> aiohttp.TraceConfig:
        """Shows the wire tap what goes to partners: request line, headers as sent, body."""
        trace = aiohttp.TraceConfig()
        tap = self._tap
        assert tap is not None

        async def headers_sent(
            _: aiohttp.ClientSession, __: object, params: aiohttp.TraceRequestHeadersSentParams
        ) -> None:
            lines = [f"{params.method} {params.url.raw_path_qs} HTTP/1.1"]
            lines += [f"{name}: {value}" for name, value in params.headers.items()]
            tap(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace"))

        async def chunk_sent(
            _: aiohttp.ClientSession, __: object, params: aiohttp.TraceRequestChunkSentParams
        ) -> None:
            tap(bytes(params.chunk))

        trace.on_request_headers_sent.append(headers_sent)
        trace.on_request_chunk_sent.append(chunk_sent)
        return trace

    # ----------------------------------------------------------------- faces
    async def _client(self, request: web.Request) -> web.StreamResponse:
        """Own client → own server (never a partner)."""
        certificate = _peer_certificate(request)
        identity = client_identity(certificate, self.policy.own_domains)
        if isinstance(identity, Refusal):
            return self._refuse(request, CLIENT_FACE, identity)
        decision = self.policy.client_request(request.method, request.raw_path, _headers(request), identity)
        if isinstance(decision, Refusal):
            return self._refuse(request, CLIENT_FACE, decision, identity=identity)
        body = await self._request_body(request)
        if isinstance(body, Refusal):
            return self._refuse(request, CLIENT_FACE, body, identity=identity)
        answer = await self._exchange(request.method, decision, body, internal=True)
        if isinstance(answer, Refusal):
            return self._refuse(request, CLIENT_FACE, answer, identity=identity)
        self._allow(request, CLIENT_FACE, decision, answer.status)
        return _relayed(self.policy.client_response(answer.status, answer.headers), answer.body)

    async def _internal(self, request: web.Request) -> web.StreamResponse:
        """Exit: own server → partner over HTTP-3."""
        decision = self.policy.outbound(request.method, request.raw_path, _headers(request))
        if isinstance(decision, Refusal):
            return self._refuse(request, INTERNAL_FACE, decision)
        body = await self._request_body(request)
        if isinstance(body, Refusal):
            return self._refuse(request, INTERNAL_FACE, body, partner=decision.partner)
        answer = await self._exchange(request.method, decision, body, internal=False)
        if isinstance(answer, Refusal):
            return self._refuse(request, INTERNAL_FACE, answer, partner=decision.partner)
        self._allow(request, INTERNAL_FACE, decision, answer.status)
        return _relayed(self.policy.outbound_response(answer.status, answer.headers), answer.body)

    async def _http3(self, request: web.Request) -> web.StreamResponse:
        """Entry: partner HTTP proxy → own server."""
        certificate = _peer_certificate(request)
        partner = self.policy.identify_peer(certificate, request.remote or "")
        if partner is None:
            subject = certificate.subject.rfc4514_string() if certificate is not None else "no certificate"
            refusal = Refusal(403, PEER_UNKNOWN, f"peer ({subject[:120]}) is not a partner HTTP proxy")
            return self._refuse(request, HTTP3_FACE, refusal)
        decision = self.policy.inbound(partner, request.method, request.raw_path, _headers(request))
        if isinstance(decision, Refusal):
            return self._refuse(request, HTTP3_FACE, decision, partner=partner)
        body = await self._request_body(request)
        if isinstance(body, Refusal):
            return self._refuse(request, HTTP3_FACE, body, partner=partner)
        if decision.ear is not None:
            replayed = await self._claim(decision)
            if replayed is not None:
                return self._refuse(request, HTTP3_FACE, replayed, partner=partner)
        answer = await self._exchange(request.method, decision, body, internal=True)
        if isinstance(answer, Refusal):
            return self._refuse(request, HTTP3_FACE, answer, partner=partner)
        plan = self.policy.inbound_response(answer.status, answer.headers)
        if isinstance(plan, Refusal):
            return self._refuse(request, HTTP3_FACE, plan, partner=partner)
        self._allow(request, HTTP3_FACE, decision, answer.status)
        return _relayed(plan, answer.body)

    # ----------------------------------------------------------------- steps
    async def _claim(self, relay: Relay) -> Refusal | None:
        """The replay step of a verified EAR (WA-SP-26 step 9); fail closed."""
        assert relay.ear is not None and relay.ear.ear_id is not None
        if self._replay_store is None:
            return Refusal(403, ear_check.UNAVAILABLE, "no replay store is configured", relay.partner)
        try:
            new = await self._replay_store.add_if_absent(relay.ear.ear_id, self._ear_ttl)
        except Exception as error:  # any store failure: fail closed
            detail = " ".join(str(error).split()) or type(error).__name__
            return Refusal(403, ear_check.UNAVAILABLE, detail[:200], relay.partner)
        if not new:
            return Refusal(403, ear_check.REPLAY, "EAR already used within the replay window", relay.partner)
        return None

    async def _request_body(self, request: web.Request) -> bytes | Refusal:
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return Refusal(413, BODY_TOO_LARGE, f"Content-Length {request.content_length} > {limit}")
        try:
            async with asyncio.timeout(self.settings.timeout):
                return await _read_bounded(request.content, limit)
        except _TooLargeError:
            return Refusal(413, BODY_TOO_LARGE, f"body above {limit} octets")
        except TimeoutError:
            return Refusal(408, REQUEST_TIMEOUT, f"body not received within {self.settings.timeout:g} s")

    async def _exchange(self, method: str, relay: Relay, body: bytes, *, internal: bool) -> _Answer | Refusal:
        """One exchange with the next hop, bounded in time and size."""
        session = self._internal_session if internal else self._partner_session
        assert session is not None
        destination = relay.destination
        path, _, query = relay.target.partition("?")
        url = URL.build(
            scheme="http" if internal else "https",
            host=destination.host,
            port=destination.port,
            path=path,
            query_string=query,
            encoded=True,
        )
        headers: CIMultiDict[str] = CIMultiDict(relay.headers)
        if internal:
            # The system's domain, not the server's address: a server that builds absolute URIs
            # from Host (Location, links in bodies) then names no internal host.
            headers["Host"] = self._own_host
        context = None if internal else self._partner_contexts.get(relay.partner or "")
        unreachable = UPSTREAM_UNREACHABLE if internal else PARTNER_UNREACHABLE
        if not internal and context is None:
            return Refusal(502, PARTNER_UNREACHABLE, "no TLS context for the partner", relay.partner)
        try:
            async with session.request(
                method,
                url,
                headers=headers,
                data=body if body else None,
                allow_redirects=False,
                ssl=context if context is not None else False,
                server_hostname=relay.server_hostname,
            ) as response:
                data = await _read_bounded(response.content, self.settings.max_body_bytes)
                return _Answer(response.status, list(response.headers.items()), data)
        except _TooLargeError:
            return Refusal(502, RESPONSE_TOO_LARGE, "response body above max_body_bytes", relay.partner)
        except TimeoutError:
            return Refusal(
                504, UPSTREAM_TIMEOUT, f"no answer within {self.settings.timeout:g} s", relay.partner
            )
        except (aiohttp.ClientError, OSError, ValueError) as error:
            return Refusal(502, unreachable, type(error).__name__, relay.partner)

    # ----------------------------------------------------------------- audit
    def _refuse(
        self,
        request: web.Request,
        face: str,
        refusal: Refusal,
        *,
        partner: str | None = None,
        identity: str | None = None,
    ) -> web.Response:
        self.audit.record(
            "refuse",
            refusal.reason,
            side=face,
            direction=_direction(face),
            partner=refusal.partner or partner,
            method=request.method,
            path=request.raw_path[:200],
            status=refusal.status,
            detail=refusal.detail,
            identity=identity,
            remote=_remote(request),
        )
        return _refusal_response(refusal)

    def _allow(self, request: web.Request, face: str, relay: Relay, status: int) -> None:
        ear = relay.ear
        self.audit.record(
            "allow",
            ALLOWED,
            side=face,
            direction=_direction(face),
            partner=relay.partner,
            method=request.method,
            path=request.raw_path[:200],
            status=status,
            identity=relay.identity,
            ear=str(ear.ear.payload.ear_id) if ear is not None and ear.ear is not None else None,
            remote=_remote(request),
        )


# --- helpers -----------------------------------------------------------------------------------


async def _read_bounded(stream: aiohttp.StreamReader, limit: int) -> bytes:
    data = bytearray()
    while True:
        chunk = await stream.read(_CHUNK)
        if not chunk:
            return bytes(data)
        data += chunk
        if len(data) > limit:
            raise _TooLargeError


def _headers(request: web.Request) -> Headers:
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.raw_headers]


def _peer_certificate(request: web.Request) -> x509.Certificate | None:
    transport = request.transport
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    return peer_certificate(ssl_object) if isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket) else None


def _remote(request: web.Request) -> str | None:
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return request.remote


def _direction(face: str) -> str:
    return {INTERNAL_FACE: "outbound", HTTP3_FACE: "inbound"}.get(face, "client")


def _refusal_response(refusal: Refusal) -> web.Response:
    response = web.Response(status=refusal.status, text=refusal.body, content_type="text/plain")
    response.headers["Server"] = SERVER_NAME
    return response


def _relayed(plan: ResponsePlan, body: bytes) -> web.Response:
    headers: CIMultiDict[str] = CIMultiDict(plan.headers)
    headers["Server"] = SERVER_NAME
    return web.Response(status=plan.status, body=body, headers=headers)


def _markers(settings: HttpProxySettings, extra: Collection[str]) -> list[str]:
    """Internal hosts, addresses and ``host:port`` of this proxy's inside (never sent across)."""
    markers = list(extra)
    for address in [settings.client_listen, settings.internal_listen, *settings.routes.values()]:
        if address.host not in _WILDCARDS:
            markers += [address.host, f"{address.host}:{address.port}"]
    return list(dict.fromkeys(markers))


def _partner_anchors(partners: Sequence[PartnerAgreement]) -> dict[str, list[x509.Certificate]]:
    anchors: dict[str, list[x509.Certificate]] = {}
    for partner in partners:
        anchors[partner.name] = [cert for path in partner.trust_anchors for cert in load_certificates(path)]
    return anchors


async def start_http_proxy(
    settings: HttpProxySettings,
    *,
    domains: Sequence[str],
    partners: Sequence[PartnerAgreement],
    partner_kms: Mapping[str, KmsCertificate],
    own_psis: Collection[str],
    ear_skew: float,
    replay_store: ReplayStore | None,
    audit: AuditLog,
    log: LogSink | None = None,
    wire_tap: Callable[[bytes], None] | None = None,
    internal_markers: Collection[str] = (),
) -> HttpProxy:
    """Build and start the HTTP proxy of one system (module docstring).

    ``partner_kms``: the imported KMS certificate of each explicit-inbound partner, by name;
    ``own_psis``: the EAR Target IDs accepted inbound; ``replay_store``: required when some
    partner is explicit inbound; ``internal_markers``: more internal hosts / ``host:port`` that
    must never cross (the configured listen and route addresses are always included).
    ``HttpProxyError`` for an unusable certificate, key, anchor or missing EAR prerequisite;
    ``OSError`` when a listener cannot bind."""
    for partner in partners:
        if partner.explicit_inbound and partner.name not in partner_kms:
            raise HttpProxyError(
                f"http_proxy: partner {partner.name}: explicit inbound needs its KMS certificate"
            )
    if replay_store is None and any(partner.explicit_inbound for partner in partners):
        raise HttpProxyError("http_proxy: explicit inbound authentication needs a replay store")
    try:
        client_tls = server_context(
            settings.certificate,
            settings.private_key,
            trust_anchors=list(settings.client_trust_anchors),
            require_client_cert=True,
        )
        anchor_files = [path for partner in partners for path in partner.trust_anchors]
        http3_tls = (
            server_context(
                settings.certificate,
                settings.private_key,
                trust_anchors=anchor_files,
                require_client_cert=True,
            )
            if anchor_files
            else None
        )
        partner_contexts = {
            partner.name: client_context(
                trust_anchors=list(partner.trust_anchors),
                cert_file=settings.certificate,
                key_file=settings.private_key,
            )
            for partner in partners
            if partner.http_proxy_address is not None
        }
        anchors = _partner_anchors(partners)
    except TlsConfigError as error:
        raise HttpProxyError(f"http_proxy TLS: {error}") from None
    policy_ear = EarPolicy(skew=ear_skew)
    policy = HttpBorderPolicy(
        own_domains=list(domains),
        partners=list(partners),
        routes=dict(settings.routes),
        anchors=anchors,
        markers=_markers(settings, internal_markers),
        partner_kms=dict(partner_kms),
        own_psis=frozenset(own_psis),
        ear_policy=policy_ear,
    )
    proxy = HttpProxy(
        settings,
        policy=policy,
        partner_contexts=partner_contexts,
        client_tls=client_tls,
        http3_tls=http3_tls,
        replay_store=replay_store,
        ear_ttl=replay_ttl(policy_ear),
        audit=audit,
        log=log,
        wire_tap=wire_tap,
    )
    await proxy.start()
    return proxy
