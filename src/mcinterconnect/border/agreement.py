"""Partner agreements: the border's policy data, one per partner system (interconnection.md §10.1).

Policy is data (ARCHITECTURE.md §4): what TS 33.180 11.1.1 and the working assumptions need at
the border: partner domains, the partner IS proxy's address and TLS identity (WA-IC-13/17),
trust anchors, the authentication mode per direction (implicit or explicit, "subject to the
policy of each MC system"), allowed methods (WA-IC-08) and the partner PSIs used for the
exit-point Request-URI rewrite (TS 24.379 6.8.2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator

from mcinterconnect.configtypes import AddressField, ConfigModel, McIdField, domain_name, mc_id
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
    #: (WA-IC-19, ``mcic kms import-partner``); offered to own users as External (certcache).
    kms_certificate: Path | None = None

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

    @field_validator("authentication")
    @classmethod
    def _explicit_not_yet(cls, value: AuthenticationPolicy) -> AuthenticationPolicy:
        if "explicit" in (value.inbound, value.outbound):
            raise ValueError("explicit authentication (EAR, TS 33.180 9.6) is not available in this version")
        return value


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
