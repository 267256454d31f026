"""Partner agreements: the border's policy data, one per partner system (interconnection.md §10.1).

Policy is data (ARCHITECTURE.md §4): what TS 33.180 11.1.1 and the working assumptions need at
the border: partner domains, the partner IS proxy's address and TLS identity (WA-IC-13/17),
trust anchors, the authentication mode per direction (implicit or explicit, "subject to the
policy of each MC system"), allowed methods (WA-IC-08), the EAR request types the partner may
use (WA-SP-27), the partner's KMS certificate (explicit inbound authentication verifies EARs
under its KPAK), the partner PSIs used for the exit-point Request-URI rewrite (TS 24.379
6.8.2) and the SPK that protects the MC XML bodies on the link (TS 33.180 9.1, 9.3; absent: no
SPK protection).  The IS proxy's own knobs include the EAR replay store and the allowed clock skew.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from mcinterconnect.configtypes import (
    AddressField,
    ConfigModel,
    HttpAddressField,
    HttpsAddressField,
    McIdField,
    domain_name,
    mc_id,
)
from mcinterconnect.protect.spk import DEFAULT_GRACE, MAX_GRACE
from mcinterconnect.sip.transport import Address

AuthenticationMode = Literal["implicit", "explicit"]

SIP_METHODS = frozenset(
    {
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "MESSAGE",
        "SUBSCRIBE",
        "NOTIFY",
        "PUBLISH",
        "REFER",
        "UPDATE",
        "PRACK",
        "INFO",
    }
)
#: Everything but REGISTER, which never crosses the border.
DEFAULT_PARTNER_METHODS = tuple(sorted(SIP_METHODS - {"REGISTER"}))


class AuthenticationPolicy(ConfigModel):
    """Authentication mode per direction (TS 33.180 11.1.1: implicit or explicit, per system policy)."""

    inbound: AuthenticationMode = "implicit"
    outbound: AuthenticationMode = "implicit"


#: HTTP methods an ``http_allowed`` rule may name.
HTTP_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"})
#: Default ``http_allowed``: a partner may read group documents and fetch group keys (CSC-16,
#: WA-IC-06, WA-IC-22), nothing else.
DEFAULT_HTTP_ALLOWED = (
    "GET /org.openmobilealliance.groups/groups/",
    "GET /org.openmobilealliance.groups/gmk/",
)


def http_rule(value: str) -> tuple[str, str]:
    """``"METHOD /path/prefix"`` → ``(METHOD, /path/prefix)``; ValueError says why not."""
    parts = value.split()
    if len(parts) != 2:
        raise ValueError(f"expected 'METHOD /path/prefix', got {value[:60]!r}")
    method, prefix = parts[0].upper(), parts[1]
    if method not in HTTP_METHODS:
        raise ValueError(
            f"unknown HTTP method {parts[0][:20]!r} (expected one of {', '.join(sorted(HTTP_METHODS))})"
        )
    if (
        not prefix.startswith("/")
        or any(char in prefix for char in "?#%\\")
        or "/../" in prefix + "/"
        or "/./" in prefix + "/"
    ):
        raise ValueError(
            f"path prefix {prefix[:60]!r} must start with '/' and hold no '?', '#', '%', '\\' or dot segments"
        )
    return method, prefix


#: Names of ``allowed_request_types``: the EAR Request types of Table J.2.3-1 a partner may use
#: (OFF_NETWORK never: it is not valid on the interconnection interface) and "none", the Request
#: IE omitted (private calls, one-to-one short data; WA-SP-27).
REQUEST_TYPE_NAMES = ("PRIVILEGED", "INTERWORKING", "GROUP", "MIGRATION", "none")
#: Group signalling and requests without a Request IE (private / one-to-one).
DEFAULT_REQUEST_TYPES = ("GROUP", "none")
#: Default ``is_proxy.replay_store``: an SQLite file beside the system file (one node, survives restarts).
DEFAULT_REPLAY_STORE = "sqlite:replay.db"


class SpkSettings(ConfigModel):
    """SPK protection of the MC XML bodies exchanged with one partner (TS 33.180 9.1, 9.3; WA-SP-01)."""

    #: The link's SPK file (``mcic spk new``), relative to the system file; mode 0600.
    file: Path
    #: Refuse a request from the partner whose MC XML bodies are not protected (spk-unprotected).
    required: bool = True
    #: P0 of the F.1.4 derivation (WA-SP-05); both sides must agree.  Absent: the one recorded in
    #: the SPK file, the domain of the system that generated it.
    kdf_identity: str | None = None
    #: Seconds a rotated-out SPK stays accepted (``mcic spk rotate``'s default ``--grace``).
    grace: float = Field(DEFAULT_GRACE, ge=0, le=MAX_GRACE)

    @field_validator("kdf_identity")
    @classmethod
    def _identity(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(char.isspace() or ord(char) < 0x20 for char in value)):
            raise ValueError("must be a non-empty string without whitespace (e.g. a domain name)")
        return value


def _authentication(value: object) -> object:
    if isinstance(value, str):
        return {"inbound": value, "outbound": value}
    return value


class PartnerAgreement(ConfigModel):
    """One interconnection agreement with a partner MC system (interconnection.md §10.1)."""

    name: str = Field(min_length=1)
    domains: list[str] = Field(min_length=1)
    is_proxy_host: str
    is_proxy_address: AddressField
    trust_anchors: list[Path] = Field(min_length=1)
    authentication: Annotated[AuthenticationPolicy, BeforeValidator(_authentication)] = AuthenticationPolicy()
    allowed_methods: list[str] = Field(default_factory=lambda: list(DEFAULT_PARTNER_METHODS))
    #: Partner PSIs by service, for the exit-point Request-URI rewrite (TS 24.379 6.8.2).
    psis: dict[str, McIdField] = Field(default_factory=dict)
    #: Source addresses the partner's IS proxy connects from (empty: any, TLS identity decides).
    allowed_sources: list[str] = Field(default_factory=list)
    #: The partner's KMS certificate (KmsCertificate XML), imported by manual cross-certification
    #: (WA-IC-19, ``mcic kms import-partner``); offered to own users as External (certcache) and,
    #: with explicit inbound authentication, the KPAK that partner EARs are verified under.
    kms_certificate: Path | None = None
    #: EAR Request types this partner may send (WA-SP-27), by name; "none" = Request IE omitted.
    allowed_request_types: list[str] = Field(default_factory=lambda: list(DEFAULT_REQUEST_TYPES))
    #: SPK protection of MC XML bodies on this link (absent: none).
    spk: SpkSettings | None = None
    #: The partner's HTTP proxy on HTTP-3 (WA-IC-06, WA-IC-14): the name its TLS certificate must
    #: carry (subjectAltName dNSName) and where it listens (``host:port``, HTTPS with mutual TLS).
    #: Both or neither; absent: no HTTP-3 with this partner.
    http_proxy_host: str | None = None
    http_proxy_address: HttpsAddressField | None = None
    #: What this partner may ask over HTTP-3: ``"METHOD /path/prefix"`` rules (WA-IC-06).
    http_allowed: list[str] = Field(default_factory=lambda: list(DEFAULT_HTTP_ALLOWED))

    @field_validator("domains")
    @classmethod
    def _check_domains(cls, values: list[str]) -> list[str]:
        return [domain_name(value) for value in values]

    @field_validator("is_proxy_host")
    @classmethod
    def _host(cls, value: str) -> str:
        return domain_name(value)

    @field_validator("is_proxy_address")
    @classmethod
    def _tls(cls, value: Address) -> Address:
        if value.transport != "tls":
            raise ValueError("a partner IS proxy is reached over TLS only (SIP-3): use tls://host:port")
        return value

    @field_validator("allowed_methods")
    @classmethod
    def _methods(cls, values: list[str]) -> list[str]:
        upper = [value.upper() for value in values]
        unknown = sorted(set(upper) - SIP_METHODS)
        if unknown:
            raise ValueError(f"unknown SIP method(s): {', '.join(unknown)}")
        if "REGISTER" in upper:
            raise ValueError("REGISTER never crosses the border (clients register at home only)")
        return upper

    @field_validator("http_proxy_host")
    @classmethod
    def _http_host(cls, value: str | None) -> str | None:
        return None if value is None else domain_name(value)

    @field_validator("http_allowed")
    @classmethod
    def _http_allowed(cls, values: list[str]) -> list[str]:
        rules = [http_rule(value) for value in values]
        return [f"{method} {prefix}" for method, prefix in dict.fromkeys(rules)]

    @field_validator("allowed_request_types")
    @classmethod
    def _request_types(cls, values: list[str]) -> list[str]:
        known = {name.lower(): name for name in REQUEST_TYPE_NAMES}
        chosen: list[str] = []
        for value in values:
            name = known.get(value.strip().lower())
            if name is None:
                if value.strip().upper().replace("-", "_") == "OFF_NETWORK":
                    raise ValueError(
                        "OFF_NETWORK signalling is never valid on the interconnection interface (WA-SP-27)"
                    )
                raise ValueError(
                    f"unknown request type {value[:40]!r} (expected {', '.join(REQUEST_TYPE_NAMES)})"
                )
            if name not in chosen:
                chosen.append(name)
        return chosen

    @model_validator(mode="after")
    def _explicit_needs_kms_certificate(self) -> PartnerAgreement:
        if self.authentication.inbound == "explicit" and self.kms_certificate is None:
            raise ValueError(
                "kms_certificate: missing key: explicit inbound authentication verifies the partner's "
                "EARs under its KMS certificate (import it with mcic kms import-partner)"
            )
        if (self.http_proxy_host is None) != (self.http_proxy_address is None):
            raise ValueError(
                "http_proxy_host, http_proxy_address: give both (the partner's HTTP proxy name and "
                "address on HTTP-3) or neither"
            )
        if self.spk is not None and "mcptt" not in self.psis:
            raise ValueError(
                "psis: SPK protection needs the partner's mcptt PSI: it replaces the target's identity "
                "in the Request-URI, which the SPK cannot protect"
            )
        return self

    @property
    def explicit_inbound(self) -> bool:
        """Requests from this partner must carry a valid EAR (TS 33.180 9.6)."""
        return self.authentication.inbound == "explicit"

    @property
    def explicit_outbound(self) -> bool:
        """Requests to this partner must carry an EAR signed by the sending server."""
        return self.authentication.outbound == "explicit"

    @property
    def http_rules(self) -> tuple[tuple[str, str], ...]:
        """``http_allowed`` as ``(METHOD, /path/prefix)`` pairs."""
        return tuple(http_rule(value) for value in self.http_allowed)


class IsProxySettings(ConfigModel):
    """The IS proxy of one system: its two faces, its TLS identity, its sealing keys, its routes."""

    internal_listen: AddressField
    sip3_listen: AddressField
    public_host: str
    uri: McIdField
    certificate: Path
    private_key: Path
    sealing_keys: Path
    #: Own published PSIs (entry point, WA-IC-07) mapped to internal destinations.
    routes: dict[str, AddressField] = Field(min_length=1)
    #: Three-digit code at the start of the Warning text for policy refusals (WA-IC-09).
    warning_code: int = Field(179, ge=100, le=999)
    #: Source addresses allowed on the internal listener (empty: any).
    allowed_internal_sources: list[str] = Field(default_factory=list)
    max_forwards: int = Field(70, ge=1, le=255)
    #: Where EAR IDs are remembered against replay (WA-SP-26 step 9): "memory", "sqlite:PATH"
    #: (relative to the system file) or "redis://host:port/db" (shared by several instances).
    #: Opened only when some partner's inbound authentication is explicit.
    replay_store: str = DEFAULT_REPLAY_STORE
    #: Allowed difference in seconds between an EAR's Date and time and this clock (WA-SP-26 step 3).
    ear_skew: float = Field(30.0, ge=0, le=3600)

    @field_validator("sip3_listen")
    @classmethod
    def _sip3_is_tls(cls, value: Address) -> Address:
        if value.transport != "tls":
            raise ValueError("SIP-3 must use TLS (TS 33.180 6.3.2, WA-IC-13): use tls://host:port")
        return value

    @field_validator("routes")
    @classmethod
    def _routes_are_ids(cls, value: dict[str, Address]) -> dict[str, Address]:
        return {mc_id(key): address for key, address in value.items()}

    @field_validator("public_host")
    @classmethod
    def _public_host(cls, value: str) -> str:
        return domain_name(value)

    @field_validator("replay_store")
    @classmethod
    def _replay_store(cls, value: str) -> str:
        spec = value.strip()
        if spec == "memory" or spec.startswith(("redis://", "rediss://")):
            return spec
        if spec.startswith("sqlite:") and spec.removeprefix("sqlite:") and not spec.startswith("sqlite://"):
            return spec
        raise ValueError("expected 'memory', 'sqlite:PATH' or 'redis://host:port/db'")


class HttpProxySettings(ConfigModel):
    """The HTTP proxy of one system (TS 33.180 11.1.1, WA-IC-06): three faces.

    * ``client_listen``: HTTP-1 over TLS for this system's own clients, mutual TLS with
      ``client_trust_anchors``; it reaches this system's servers only (``routes``), never a partner;
    * ``internal_listen``: plain HTTP on the internal network, where this system's servers (the
      GMS) send requests for a partner, which is chosen by the domain in the ``Host`` header;
    * ``http3_listen``: HTTP-3, mutual TLS 1.2/1.3 with partner HTTP proxies only.
    """

    client_listen: HttpsAddressField
    internal_listen: HttpAddressField
    http3_listen: HttpsAddressField
    #: The name in this proxy's certificate (subjectAltName dNSName), as partners expect it.
    public_host: str
    #: TLS identity on both faces that use TLS (server and, on HTTP-3, client).
    certificate: Path
    private_key: Path
    #: CAs whose client certificates may use the client-facing side (this system's own CA).
    client_trust_anchors: list[Path] = Field(min_length=1)
    #: Path prefix → internal server (plain HTTP ``host:port``) for requests from own clients and
    #: from partners, e.g. ``{ "/org.openmobilealliance.groups/" = "127.0.10.1:7080" }``.
    routes: dict[str, HttpAddressField] = Field(min_length=1)
    #: Largest request and response body relayed, in octets.
    max_body_bytes: int = Field(262_144, ge=1024, le=16_777_216)
    #: Seconds for a whole exchange with the next hop (connect, send, receive).
    timeout: float = Field(10.0, gt=0, le=300)

    @field_validator("public_host")
    @classmethod
    def _public_host(cls, value: str) -> str:
        return domain_name(value)

    @field_validator("routes")
    @classmethod
    def _route_prefixes(cls, value: dict[str, Address]) -> dict[str, Address]:
        for prefix in value:
            if not prefix.startswith("/") or not prefix.endswith("/") or "?" in prefix or "%" in prefix:
                raise ValueError(f"route prefix {prefix[:60]!r} must start and end with '/' (no '?' or '%')")
        return value
