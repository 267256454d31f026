"""The HTTP proxy's decisions, sans-IO (TS 33.180 11.1.1; WA-IC-06, WA-IC-10, WA-IC-11, WA-IC-14).

The HTTP proxy of one MC system has three faces (``agreement.HttpProxySettings``); this module
decides, for a request or response described by plain values (method, raw request target,
header list, peer identity), what to relay where, or which refusal to answer.  The asyncio
service (``httpproxy.py``) only moves bytes.

* **Client face** (HTTP-1 over TLS, own clients): the requester is the MC service ID in its
  client certificate (subjectAltName URI, this system's domains); any client-supplied
  ``X-3GPP-Asserted-Identity`` or ``MC-EAR`` is removed and the certificate identity asserted;
  the request goes to an internal server chosen by ``routes`` (longest path prefix).  There is
  no partner routing on this face at all: 33.180 11.1.1 "preventing any direct MC client
  connection" (BC-2).
* **Exit** (internal face → HTTP-3): the partner is chosen by the ``Host`` domain among the
  agreements; the method and path must match the agreement's ``http_allowed`` rules (WA-IC-08
  applied to HTTP); ``X-3GPP-Asserted-Identity`` must be an MC service ID of this system (the
  sending server); with explicit outbound authentication the sending server's ``MC-EAR`` must be
  present (the proxy never signs, P-EX-01/03).
* **Entry** (HTTP-3 → internal): the TLS peer must be the partner's HTTP proxy (``peers.py``,
  BC-1, WA-IC-17); allow-list; implicit authentication: ``X-3GPP-Asserted-Identity`` must be an
  external MC service ID of that partner (WA-IC-11, BC-3); explicit authentication: the EAR is
  checked (``protect.ear_check``, WA-SP-26 steps 1–8, WA-IC-10, BC-4) and its Source ID must be
  the asserted identity; the replay step (step 9) is the caller's, on the async store.
* **Topology hiding** (BC-6) both ways: hop-by-hop headers and headers that reveal the inside
  (``Via``, ``Forwarded``, ``X-Forwarded-*``, ``Server``, ``X-Real-IP``, ``Proxy-*``, …) are
  removed, credentials (``Cookie``, ``Set-Cookie``, ``Authorization``) never cross the border,
  a ``Location`` naming a host keeps only its path and query, any other header naming an
  internal host or ``host:port`` is dropped toward the partner, and a 5xx of an internal server
  becomes ``502 upstream-error``.

Every refusal is a ``Refusal``: an HTTP status, a reason code (the one-line ``text/plain`` body)
and a detail for the audit log only.  The reason codes are listed in ``REASONS``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from cryptography import x509

from mcinterconnect.border.agreement import HTTP_METHODS, PartnerAgreement
from mcinterconnect.border.peers import PartnerPeer, PartnerPeers
from mcinterconnect.crypto import eccsi
from mcinterconnect.crypto.kms import KmsCertificate
from mcinterconnect.identity import (
    CertificateIdentityError,
    DomainMap,
    IdentityError,
    McServiceId,
    certificate_identity,
)
from mcinterconnect.protect import ear_check
from mcinterconnect.protect.ear import EAR_HEADER, RequestType, Role
from mcinterconnect.protect.ear_check import EarPolicy, EarVerdict, check_ear, refused
from mcinterconnect.sip.transport import Address

__all__ = [
    "ASSERTED_IDENTITY",
    "REASONS",
    "SERVER_ROLES",
    "Headers",
    "HttpBorderPolicy",
    "Refusal",
    "Relay",
    "ResponsePlan",
    "client_identity",
    "filter_headers",
    "longest_route",
    "rewrite_location",
    "rule_allows",
    "unsafe_target",
]

#: The requesting server's (or client's) MC service ID (WA-IC-06; a 24.109 header name).
ASSERTED_IDENTITY: Final = "X-3GPP-Asserted-Identity"

#: An ordered header list; names keep the sender's spelling, comparison is case-insensitive.
Headers = list[tuple[str, str]]

# --- reason codes ------------------------------------------------------------------------------
ALLOWED: Final = "allowed"
BAD_REQUEST: Final = "bad-request"
PATH_INVALID: Final = "path-invalid"
METHOD_NOT_ALLOWED: Final = "method-not-allowed"
IDENTITY_MISSING: Final = "identity-missing"
IDENTITY_AMBIGUOUS: Final = "identity-ambiguous"
IDENTITY_NOT_LOCAL: Final = "identity-not-local"
NO_ROUTE: Final = "no-route"
NO_AGREEMENT: Final = "no-agreement"
PARTNER_UNREACHABLE: Final = "partner-unreachable"
NOT_ALLOWED: Final = "not-allowed"
SOURCE_NOT_OWN: Final = "source-not-own"
SOURCE_MISSING: Final = "source-missing"
SOURCE_NOT_PARTNER: Final = "source-not-partner"
PEER_UNKNOWN: Final = "peer-unknown"
BODY_TOO_LARGE: Final = "body-too-large"
REQUEST_TIMEOUT: Final = "request-timeout"
UPSTREAM_ERROR: Final = "upstream-error"
UPSTREAM_UNREACHABLE: Final = "upstream-unreachable"
RESPONSE_TOO_LARGE: Final = "response-too-large"
UPSTREAM_TIMEOUT: Final = "upstream-timeout"
INTERNAL_ERROR: Final = "internal-error"
TLS_HANDSHAKE_FAILED: Final = "tls-handshake-failed"

#: Every reason code of the HTTP proxy: (status, meaning).  EAR codes are those of ear_check.
REASONS: Final[Mapping[str, tuple[int, str]]] = {
    ALLOWED: (0, "relayed (allow line)"),
    BAD_REQUEST: (400, "request target not in origin form, or no usable Host on the internal face"),
    PATH_INVALID: (400, "client face: path with dot segments, '//', '\\', %2e/%2f/%5c/%25 or bad escapes"),
    METHOD_NOT_ALLOWED: (405, "a method outside GET, HEAD, PUT, POST, DELETE, PATCH, OPTIONS"),
    IDENTITY_MISSING: (403, "client face: no sip: URI of an MC service ID in the client certificate"),
    IDENTITY_AMBIGUOUS: (403, "client face: several MC service IDs in the client certificate"),
    IDENTITY_NOT_LOCAL: (403, "client face: the certificate's MC service ID is not of this system"),
    NO_ROUTE: (404, "no internal server route for the path"),
    NO_AGREEMENT: (403, "exit: the Host domain is no partner's"),
    PARTNER_UNREACHABLE: (502, "exit: partner without HTTP proxy, or its proxy cannot be reached"),
    NOT_ALLOWED: (403, "method/path not in the agreement's http_allowed, or an unsafe path"),
    SOURCE_NOT_OWN: (403, "exit: X-3GPP-Asserted-Identity missing, several, or not of this system"),
    SOURCE_MISSING: (403, "entry: no X-3GPP-Asserted-Identity"),
    SOURCE_NOT_PARTNER: (403, "entry: X-3GPP-Asserted-Identity not an MC service ID of that partner"),
    PEER_UNKNOWN: (403, "entry: TLS peer is not a partner's HTTP proxy"),
    ear_check.MISSING: (403, "explicit: no MC-EAR (exit: the sending server attached none)"),
    ear_check.MALFORMED: (403, "explicit: several MC-EAR headers or not an Annex J EAR"),
    ear_check.STALE: (403, "explicit: EAR time outside the skew"),
    ear_check.SOURCE: (403, "explicit: EAR source not the partner's server, or not the asserted identity"),
    ear_check.TARGET: (403, "explicit: EAR target not one of this proxy's own PSIs / server roles"),
    ear_check.REQUEST_TYPE: (403, "explicit: EAR Request type not GROUP, or GROUP not allowed"),
    ear_check.EXPIRED: (403, "explicit: EAR Request Expiry passed"),
    ear_check.SIGNATURE: (403, "explicit: EAR signature invalid (or no partner KMS certificate)"),
    ear_check.REPLAY: (403, "explicit: EAR ID seen before"),
    ear_check.UNAVAILABLE: (403, "explicit: replay store cannot answer (fail closed)"),
    BODY_TOO_LARGE: (413, "request body above max_body_bytes"),
    REQUEST_TIMEOUT: (408, "request body not received within timeout"),
    UPSTREAM_ERROR: (502, "entry: the internal server answered 5xx (its text withheld)"),
    UPSTREAM_UNREACHABLE: (502, "internal server cannot be reached"),
    RESPONSE_TOO_LARGE: (502, "response body above max_body_bytes"),
    UPSTREAM_TIMEOUT: (504, "next hop did not answer within timeout"),
    INTERNAL_ERROR: (500, "unexpected failure in the proxy (logged by exception type only)"),
    TLS_HANDSHAKE_FAILED: (0, "audit only: a TLS handshake on the client or HTTP-3 face failed"),
}

#: EAR roles of the entities an HTTP request between systems may come from and go to (WA-SP-20).
SERVER_ROLES: Final = frozenset({Role.MCX_SERVER, Role.GMS, Role.CMS})

#: Hop-by-hop headers (RFC 9110 §7.6.1) and the legacy Proxy-Connection: never relayed.
_HOP_BY_HOP: Final = frozenset(
    {"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "proxy-connection"}
)
#: Headers that name intermediaries, addresses or software (topology hiding, WA-IC-06).
_REVEALING: Final = frozenset(
    {
        "via",
        "forwarded",
        "server",
        "x-real-ip",
        "x-powered-by",
        "x-aspnet-version",
        "x-backend-server",
        "x-served-by",
        "x-forwarded-client-cert",
        "alt-svc",
    }
)
_REVEALING_PREFIXES: Final = ("x-forwarded-", "proxy-")
#: Framing the proxy sets itself.
_FRAMING: Final = frozenset({"host", "content-length", "expect"})
#: Credentials and session state: they do not cross the border (the partner is authenticated by
#: mutual TLS and the asserted identity or EAR; an internal token must not reach it).
_CREDENTIALS: Final = frozenset({"cookie", "set-cookie", "set-cookie2", "authorization"})
#: Headers whose value is a URI reference that may name an internal host.
_URI_HEADERS: Final = frozenset({"location", "content-location"})

_PCT = re.compile(r"%(?![0-9A-Fa-f]{2})|%(?:2[eEfF5]|5[cC]|00)")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True)
class Refusal:
    """A refusal: ``status``, ``reason`` (the whole response body), ``detail`` for the audit only."""

    status: int
    reason: str
    detail: str
    partner: str | None = None

    @property
    def body(self) -> str:
        return f"{self.reason}\n"


@dataclass(frozen=True)
class Relay:
    """Send ``method target`` with ``headers`` to ``destination``; over TLS to a partner when
    ``server_hostname`` is set.  ``ear`` is a verified EAR whose replay step is still owed."""

    destination: Address
    target: str
    headers: Headers
    partner: str | None = None
    server_hostname: str | None = None
    identity: str | None = None
    ear: EarVerdict | None = None
    detail: str = ""


@dataclass(frozen=True)
class ResponsePlan:
    """How to answer with a relayed response: status and sanitised headers."""

    status: int
    headers: Headers


# --- pure helpers ------------------------------------------------------------------------------


def _lower(name: str) -> str:
    return name.strip().lower()


def header_values(headers: Iterable[tuple[str, str]], name: str) -> list[str]:
    """All values of ``name`` (case-insensitive), in order."""
    wanted = name.lower()
    return [value for key, value in headers if _lower(key) == wanted]


def unsafe_target(target: str) -> str | None:
    """Why a raw request target may not be relayed, or ``None`` when it is a plain origin-form
    path (+ query).  Refused: not starting with one '/', '//' anywhere in the path, '\\', '#',
    controls, spaces or non-ASCII, dot segments, malformed escapes and escapes of '.', '/', '\\',
    '%' and NUL (which an upstream decoding once would turn into traversal)."""
    if not target.startswith("/"):
        return "request target not in origin form"
    if any(ord(char) <= 0x20 or ord(char) >= 0x7F for char in target):
        return "control, space or non-ASCII character in the request target"
    if "#" in target or "\\" in target:
        return "'#' or '\\' in the request target"
    path = target.split("?", 1)[0]
    if "//" in path:
        return "empty path segment ('//')"
    if _PCT.search(path):
        return "escaped '.', '/', '\\', '%' or NUL, or a malformed escape, in the path"
    if any(segment in (".", "..") for segment in path.split("/")):
        return "dot segment in the path"
    if _BAD_ESCAPE.search(target):
        return "malformed escape in the request target"
    return None


def target_path(target: str) -> str:
    return target.split("?", 1)[0]


def longest_route(path: str, routes: Mapping[str, Address]) -> tuple[str, Address] | None:
    """The route whose prefix is the longest prefix of ``path`` (``routes`` prefixes end in '/';
    the bare prefix without its final '/' matches too)."""
    best: tuple[str, Address] | None = None
    for prefix, address in routes.items():
        if (path.startswith(prefix) or path == prefix.rstrip("/")) and (
            best is None or len(prefix) > len(best[0])
        ):
            best = (prefix, address)
    return best


def rule_allows(method: str, path: str, rules: Iterable[tuple[str, str]]) -> bool:
    """Whether one ``(METHOD, /prefix)`` rule covers the request (method equal, path prefix)."""
    return any(method == rule_method and path.startswith(prefix) for rule_method, prefix in rules)


def filter_headers(
    headers: Iterable[tuple[str, str]],
    *,
    drop: Collection[str] = (),
    crossing: bool,
    markers: Collection[str] = (),
) -> Headers:
    """``headers`` without hop-by-hop headers (and those ``Connection`` names), framing the proxy
    sets itself and the names in ``drop`` (lower case); when ``crossing`` the border also without
    headers revealing intermediaries or software, credentials, ``User-Agent`` and any header
    whose value names one of ``markers`` (internal hosts, addresses, ``host:port``)."""
    headers = list(headers)
    named = {
        _lower(token)
        for value in header_values(headers, "connection")
        for token in value.split(",")
        if token.strip()
    }
    lowered_markers = [marker.lower() for marker in markers if marker]
    kept: Headers = []
    for name, value in headers:
        key = _lower(name)
        if not _TOKEN.fullmatch(key) or key in _HOP_BY_HOP or key in named or key in _FRAMING:
            continue
        if key in drop:
            continue
        if crossing:
            if key in _REVEALING or key.startswith(_REVEALING_PREFIXES) or key in _CREDENTIALS:
                continue
            if key == "user-agent":
                continue
            lowered = value.lower()
            if any(marker in lowered for marker in lowered_markers):
                continue
        kept.append((name, value))
    return kept


def rewrite_location(value: str) -> str | None:
    """A ``Location``/``Content-Location`` for the partner: an absolute URI (or ``//host/...``)
    keeps only its path and query; ``None`` when the result is no safe origin-form target."""
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return None
    if parts.scheme or parts.netloc or value.strip().startswith("//"):
        result = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    else:
        result = value.strip()
        if not result.startswith("/"):
            return result if unsafe_target("/" + result) is None else None
    return result if unsafe_target(result) is None else None


def client_identity(certificate: x509.Certificate | None, domains: Collection[str]) -> str | Refusal:
    """The MC service ID a verified client certificate authenticates (``certificate_identity``, as
    the KMS reads it), or the refusal."""
    try:
        return certificate_identity(certificate, domains)
    except CertificateIdentityError as error:
        return Refusal(403, error.reason, error.detail)


def _one_identity(headers: Headers) -> tuple[McServiceId | None, str]:
    """The asserted identity, or None with why not."""
    values = header_values(headers, ASSERTED_IDENTITY)
    if not values:
        return None, "no X-3GPP-Asserted-Identity"
    if len(values) > 1:
        return None, f"{len(values)} X-3GPP-Asserted-Identity headers"
    try:
        return McServiceId.parse(values[0]), ""
    except IdentityError:
        return None, f"X-3GPP-Asserted-Identity {values[0][:80]!r} is not an MC service ID"


def _host_domain(headers: Headers) -> str | None:
    values = header_values(headers, "host")
    if len(values) != 1:
        return None
    host = values[0].strip().lower()
    if host.startswith("["):
        return None
    return host.rsplit(":", 1)[0] if ":" in host else host


# --- the policy ----------------------------------------------------------------------------------


@dataclass
class _HttpPartner:
    agreement: PartnerAgreement
    anchors: Sequence[x509.Certificate]


@dataclass
class HttpBorderPolicy:
    """The decisions of one HTTP proxy (module docstring); no I/O, one instance per proxy."""

    own_domains: Collection[str]
    partners: Sequence[PartnerAgreement]
    routes: Mapping[str, Address]
    #: Each partner's trust anchors (certificates), by partner name.
    anchors: Mapping[str, Sequence[x509.Certificate]]
    #: Internal hosts, addresses and ``host:port`` that never cross the border.
    markers: Collection[str] = ()
    partner_kms: Mapping[str, KmsCertificate] = field(default_factory=dict)
    own_psis: Collection[str] = ()
    ear_policy: EarPolicy = field(default_factory=EarPolicy)
    clock: Callable[[], float] = time.time
    verifier: eccsi.Verifier | None = None

    def __post_init__(self) -> None:
        self.domains = DomainMap(self.own_domains, {p.name: p.domains for p in self.partners})
        self.by_name = {p.name: p for p in self.partners}
        self._own = frozenset(domain.lower() for domain in self.own_domains)
        self._own_psis = frozenset(self.own_psis)
        self._peers = PartnerPeers(
            PartnerPeer(p.name, p.http_proxy_host, tuple(self.anchors.get(p.name, ())))
            for p in self.partners
            if p.http_proxy_host is not None
        )

    # ------------------------------------------------------------ peers (BC-1)
    def identify_peer(self, certificate: x509.Certificate | None, remote_host: str) -> str | None:
        """The partner whose HTTP proxy presented ``certificate`` (issued by one of that partner's
        anchors and naming its ``http_proxy_host``), else ``None``."""
        return self._peers.identify(certificate, remote_host)

    # ------------------------------------------------------------ client face
    def client_request(self, method: str, target: str, headers: Headers, identity: str) -> Relay | Refusal:
        """An own client's request (``identity`` from its certificate) → an internal server."""
        refusal = _method_refusal(method)
        if refusal is not None:
            return refusal
        why = unsafe_target(target)
        if why is not None:
            return Refusal(400, PATH_INVALID, why)
        route = longest_route(target_path(target), self.routes)
        if route is None:
            return Refusal(404, NO_ROUTE, f"no route for {target_path(target)[:120]!r}")
        kept = filter_headers(headers, drop={ASSERTED_IDENTITY.lower(), EAR_HEADER.lower()}, crossing=False)
        kept.append((ASSERTED_IDENTITY, identity))
        return Relay(route[1], target, kept, identity=identity, detail=f"route {route[0]}")

    def client_response(self, status: int, headers: Headers) -> ResponsePlan:
        """An internal server's answer to an own client: framing and hop-by-hop headers go."""
        return ResponsePlan(status, filter_headers(headers, crossing=False, drop={"server"}))

    # ------------------------------------------------------------ exit
    def outbound(self, method: str, target: str, headers: Headers) -> Relay | Refusal:
        """An own server's request for a partner (internal face → HTTP-3)."""
        refusal = _method_refusal(method)
        if refusal is not None:
            return refusal
        if not target.startswith("/"):
            return Refusal(400, BAD_REQUEST, "request target not in origin form")
        domain = _host_domain(headers)
        if domain is None:
            return Refusal(400, BAD_REQUEST, "no single usable Host header")
        partner_name = self.domains.partner_for_domain(domain)
        agreement = self.by_name.get(partner_name or "")
        if agreement is None:
            return Refusal(403, NO_AGREEMENT, f"no agreement covers {domain[:80]!r}")
        name = agreement.name
        if agreement.http_proxy_address is None or agreement.http_proxy_host is None:
            return Refusal(502, PARTNER_UNREACHABLE, f"{name} has no HTTP proxy address", name)
        why = unsafe_target(target)
        if why is not None:
            return Refusal(403, NOT_ALLOWED, why, name)
        if not rule_allows(method, target_path(target), agreement.http_rules):
            return Refusal(
                403, NOT_ALLOWED, f"{method} {target_path(target)[:120]} not in http_allowed", name
            )
        identity, why = _one_identity(headers)
        if identity is None:
            return Refusal(403, SOURCE_NOT_OWN, why, name)
        if identity.domain not in self._own:
            return Refusal(403, SOURCE_NOT_OWN, f"{identity} is not of this system", name)
        ears = header_values(headers, EAR_HEADER)
        if agreement.explicit_outbound and not ears:
            return Refusal(
                403, ear_check.MISSING, f"explicit toward {name}: the sending server attached no EAR", name
            )
        if len(ears) > 1:
            return Refusal(403, ear_check.MALFORMED, f"{len(ears)} MC-EAR headers", name)
        kept = filter_headers(headers, crossing=True, markers=self.markers)
        return Relay(
            agreement.http_proxy_address,
            target,
            [*kept, ("Host", domain)],
            partner=name,
            server_hostname=agreement.http_proxy_host,
            identity=str(identity),
        )

    def outbound_response(self, status: int, headers: Headers) -> ResponsePlan:
        """A partner's answer relayed to the own server: hop-by-hop, revealing and credential
        headers removed (the inside needs nothing the partner's intermediaries add)."""
        return ResponsePlan(status, filter_headers(headers, crossing=True))

    # ------------------------------------------------------------ entry
    def inbound(self, partner: str, method: str, target: str, headers: Headers) -> Relay | Refusal:
        """A request from ``partner``'s HTTP proxy (already identified) → an internal server.

        With explicit inbound authentication the returned relay holds the verified EAR: its
        replay step (WA-SP-26 step 9) must pass before the relay is sent."""
        agreement = self.by_name.get(partner)
        if agreement is None:
            return Refusal(403, PEER_UNKNOWN, f"no agreement named {partner!r}")
        refusal = _method_refusal(method)
        if refusal is not None:
            return Refusal(refusal.status, refusal.reason, refusal.detail, partner)
        why = unsafe_target(target)
        if why is not None:
            return Refusal(403, NOT_ALLOWED, why, partner)
        path = target_path(target)
        if not rule_allows(method, path, agreement.http_rules):
            return Refusal(403, NOT_ALLOWED, f"{method} {path[:120]} not in http_allowed", partner)
        route = longest_route(path, self.routes)
        if route is None:
            return Refusal(404, NO_ROUTE, f"no route for {path[:120]!r}", partner)
        values = header_values(headers, ASSERTED_IDENTITY)
        if not values:
            return Refusal(403, SOURCE_MISSING, "no X-3GPP-Asserted-Identity", partner)
        identity, why = _one_identity(headers)
        if identity is None:
            return Refusal(403, SOURCE_NOT_PARTNER, why, partner)
        if not self.domains.is_external_of(identity, partner):
            origin = (
                "this system's own domain (spoofed)" if identity.domain in self._own else "not of the partner"
            )
            return Refusal(403, SOURCE_NOT_PARTNER, f"{identity}: {origin}", partner)
        verdict: EarVerdict | None = None
        if agreement.explicit_inbound:
            verdict = self._check_ear(agreement, headers, identity)
            if not verdict.ok:
                return Refusal(403, verdict.reason, verdict.detail, partner)
        kept = filter_headers(headers, drop={ASSERTED_IDENTITY.lower(), EAR_HEADER.lower()}, crossing=True)
        kept.append((ASSERTED_IDENTITY, str(identity)))
        return Relay(route[1], target, kept, partner=partner, identity=str(identity), ear=verdict)

    def _check_ear(self, agreement: PartnerAgreement, headers: Headers, identity: McServiceId) -> EarVerdict:
        policy = self.ear_policy
        values = header_values(headers, EAR_HEADER)
        if len(values) > 1:
            return refused(ear_check.MALFORMED, f"{len(values)} MC-EAR headers, one expected", policy)
        certificate = self.partner_kms.get(agreement.name)
        if certificate is None:  # the proxy refuses to start like this; never admit without one
            return refused(ear_check.SIGNATURE, f"no KMS certificate of {agreement.name}", policy)
        allowed = frozenset(agreement.allowed_request_types)

        def group_only(request_type: RequestType | None) -> bool:
            # HTTP between GMSs is group management (interconnection.md §9.4): GROUP SIGNALLING.
            return request_type is RequestType.GROUP and RequestType.GROUP.name in allowed

        verdict = check_ear(
            values[0] if values else None,
            now=self.clock(),
            policy=policy,
            source_domains=agreement.domains,
            target_domains=self._own,
            target_roles=SERVER_ROLES,
            allowed_request_types=group_only,
            kms_uri=certificate.kms_uri,
            kpak=certificate.pub_auth_key,
            key_period=certificate.key_period,
            verifier=self.verifier,
        )
        if not verdict.ok or verdict.ear is None:
            return verdict
        payload = verdict.ear.payload
        if payload.target_id not in self._own_psis:
            return refused(
                ear_check.TARGET,
                f"Target ID {payload.target_id[:80]!r} is not a PSI served here",
                policy,
                verdict.ear,
            )
        if payload.source_role not in SERVER_ROLES:
            return refused(
                ear_check.SOURCE, f"Source Role {payload.source_role} is not a server", policy, verdict.ear
            )
        try:
            source = McServiceId.parse(payload.source_id)
        except IdentityError:
            source = None
        if source != identity:
            return refused(
                ear_check.SOURCE,
                f"Source ID {payload.source_id[:80]!r} is not the asserted identity {identity}",
                policy,
                verdict.ear,
            )
        return verdict

    def inbound_response(self, status: int, headers: Headers) -> ResponsePlan | Refusal:
        """An internal server's answer for the partner: a 5xx becomes ``502 upstream-error`` (its
        text withheld); otherwise revealing headers go, ``Location`` keeps only path and query,
        headers naming internal hosts are dropped."""
        if status >= 500:
            return Refusal(502, UPSTREAM_ERROR, f"internal server answered {status}")
        rewritten: Headers = []
        for name, value in headers:
            if _lower(name) in _URI_HEADERS:
                location = rewrite_location(value)
                if location is None:
                    continue
                rewritten.append((name, location))
            else:
                rewritten.append((name, value))
        return ResponsePlan(status, filter_headers(rewritten, crossing=True, markers=self.markers))


def _method_refusal(method: str) -> Refusal | None:
    if method not in HTTP_METHODS:
        return Refusal(405, METHOD_NOT_ALLOWED, f"method {method[:20]!r} is not relayed")
    return None
