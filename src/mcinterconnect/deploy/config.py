"""Deployment configuration: TOML files validated into typed models.

A deployment is a ``deployment.toml`` naming one ``system.toml`` per MC system.  Every path in a
system file is relative to that file's folder.  Every error names the file, the key and the
reason, e.g. ``b/system.toml: partner[0].trust_anchors[0]: file not found: /x/ca.crt``.

Policy is data (ARCHITECTURE.md §4): one ``PartnerAgreement`` per partner system holds what
TS 33.180 11.1.1 and the project's working assumptions need at the border (interconnection.md
§10.1): partner domains, IS proxy peer and TLS identity, trust anchors, authentication mode per
direction, allowed methods, the partner PSIs used for the exit-point Request-URI rewrite
(TS 24.379 6.8.2), the EAR request types, the partner's KMS certificate and the link's SPK
(``spk = { file = ..., required = ... }``, TS 33.180 9.1).  Explicit
outbound authentication (TS 33.180 9.6) needs the MCX server's KMS client identity
(``mcx_server.certificate``) and this system's KMS, where the MCX server fetches its signing keys.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from mcinterconnect.border.agreement import HttpProxySettings, IsProxySettings, PartnerAgreement
from mcinterconnect.configtypes import AddressField, ConfigModel, McIdField, domain_name
from mcinterconnect.identity import McServiceId
from mcinterconnect.services.gms import GmsSettings
from mcinterconnect.services.kms import KmsSettings
from mcinterconnect.sip.transport import Address

__all__ = [
    "ConfigError",
    "DeploymentConfig",
    "PartnerAgreement",
    "SystemConfig",
    "load_deployment",
    "load_system",
]


class ConfigError(ValueError):
    """A configuration problem, as one line: file, key and reason."""


class SystemSection(ConfigModel):
    name: str = Field(min_length=1)
    domains: list[str] = Field(min_length=1)
    audit_log: Path = Path("audit.jsonl")
    #: Extra internal host names that must never cross the border (addresses are derived).
    internal_hosts: list[str] = Field(default_factory=list)

    @field_validator("domains")
    @classmethod
    def _check_domains(cls, values: list[str]) -> list[str]:
        return [domain_name(value) for value in values]


class SipCoreSection(ConfigModel):
    client_listen: AddressField
    server_listen: AddressField
    registration_max_expires: int = Field(3600, ge=60, le=86400)


class McxServerSection(ConfigModel):
    listen: AddressField
    psi: McIdField
    #: Check the EAR of requests from explicit partners again, Target ID = ``psi`` exactly
    #: (the IS proxy already checked it, replay included; TS 33.180 9.6).
    verify_ear: bool = False
    #: TLS client certificate and key with which the MCX server fetches its ECCSI keys from this
    #: system's KMS (subjectAltName URI = ``psi``); needed for explicit outbound authentication.
    certificate: Path | None = None
    private_key: Path | None = None
    #: CAs the KMS's TLS server certificate must chain to.
    kms_trust_anchors: list[Path] = Field(default_factory=list)


class SystemConfig(ConfigModel):
    """One MC system: its services, its IS proxy and its partner agreements."""

    source: Path
    system: SystemSection
    sip_core: SipCoreSection
    mcx_server: McxServerSection
    is_proxy: IsProxySettings
    partner: list[PartnerAgreement] = Field(default_factory=list)
    #: The KMS of this system (TS 33.180 Annex D); optional.
    kms: KmsSettings | None = None
    #: The HTTP proxy of this system (HTTP-1 client side, HTTP-3 partner side; WA-IC-06); optional.
    http_proxy: HttpProxySettings | None = None
    #: The group management server of this system (CSC-16, WA-IC-21/22); optional.
    gms: GmsSettings | None = None

    @model_validator(mode="after")
    def _consistency(self) -> SystemConfig:
        own = set(self.system.domains)
        seen: dict[str, str] = {}
        for index, agreement in enumerate(self.partner):
            for domain in agreement.domains:
                if domain in own:
                    raise ValueError(
                        f"partner[{index}].domains: {domain} is one of this system's own domains"
                    )
                if domain in seen:
                    raise ValueError(
                        f"partner[{index}].domains: {domain} is already a domain of {seen[domain]}"
                    )
                seen[domain] = agreement.name
        for psi in self.is_proxy.routes:
            if McServiceId.parse(psi).domain not in own:
                raise ValueError(f"is_proxy.routes: {psi} is not in this system's domains")
        if McServiceId.parse(self.mcx_server.psi).domain not in own:
            raise ValueError("mcx_server.psi: not in this system's domains")
        self._explicit_outbound_consistency()
        self._http_consistency()
        return self

    def _http_consistency(self) -> None:
        """The GMS and the HTTP proxy need each other for anything that crosses HTTP-3."""
        if self.gms is not None:
            if McServiceId.parse(self.gms.psi).domain not in self.system.domains:
                raise ValueError("gms.psi: not in this system's domains")
            for group in self.gms.partner_groups:
                domain = McServiceId.parse(group).domain
                partner = next((p for p in self.partner if domain in p.domains), None)
                if partner is None:
                    raise ValueError(f"gms.partner_groups: {group} is not in a partner's domains")
                if partner.http_proxy_address is None:
                    raise ValueError(
                        f"gms.partner_groups: {group}: partner {partner.name} has no http_proxy_address"
                    )
                if "gms" not in partner.psis:
                    raise ValueError(
                        f"gms.partner_groups: {group}: partner {partner.name} has no psis.gms "
                        "(the partner GMS that signs the group's GMK)"
                    )
            if self.gms.partner_groups and self.http_proxy is None:
                raise ValueError("http_proxy: missing table: gms.partner_groups are fetched over HTTP-3")
            if (self.gms.certificate is None) != (self.gms.private_key is None):
                raise ValueError("gms.certificate, gms.private_key: give both or neither")

    def _explicit_outbound_consistency(self) -> None:
        """Explicit outbound authentication: the MCX server signs EARs with keys of this KMS."""
        for index, agreement in enumerate(self.partner):
            if not agreement.explicit_outbound:
                continue
            why = f"explicit outbound authentication toward {agreement.name}"
            if "mcptt" not in agreement.psis:
                raise ValueError(
                    f"partner[{index}].psis: {why} needs the partner's mcptt PSI (EAR Target ID)"
                )
            if self.kms is None:
                raise ValueError(f"kms: missing table: {why} needs this system's KMS (EAR signing keys)")
            for key in ("certificate", "private_key"):
                if getattr(self.mcx_server, key) is None:
                    raise ValueError(
                        f"mcx_server.{key}: missing key: {why} needs the MCX server's KMS client identity"
                    )
            if not self.mcx_server.kms_trust_anchors:
                raise ValueError(f"mcx_server.kms_trust_anchors: missing key: {why} needs the KMS's CA")

    @property
    def domain(self) -> str:
        return self.system.domains[0]

    def agreement(self, name: str) -> PartnerAgreement:
        for agreement in self.partner:
            if agreement.name == name:
                return agreement
        raise KeyError(name)

    def internal_addresses(self) -> list[Address]:
        """Every internal listen address of this system (what topology hiding must hide)."""
        addresses = [
            self.sip_core.client_listen,
            self.sip_core.server_listen,
            self.mcx_server.listen,
            self.is_proxy.internal_listen,
            *self.is_proxy.routes.values(),
        ]
        return list(dict.fromkeys(addresses))

    def internal_markers(self) -> list[str]:
        """Internal host names, addresses and ``host:port`` pairs that never cross the border."""
        markers = list(self.system.internal_hosts)
        for address in self.internal_addresses():
            markers += [address.host, f"{address.host}:{address.port}"]
        served = [
            *([self.kms.listen] if self.kms is not None else []),  # the KMS serves own users only
            *([self.gms.listen] if self.gms is not None else []),
            *(
                [
                    self.http_proxy.client_listen,
                    self.http_proxy.internal_listen,
                    *self.http_proxy.routes.values(),
                ]
                if self.http_proxy is not None
                else []
            ),
        ]
        for address in served:
            markers += [address.host, f"{address.host}:{address.port}"]
        return list(dict.fromkeys(markers))


class DeploymentConfig(ConfigModel):
    source: Path
    name: str
    systems: list[SystemConfig]

    def system(self, name_or_domain: str) -> SystemConfig:
        for system in self.systems:
            if name_or_domain in (system.system.name, *system.system.domains):
                return system
        known = ", ".join(s.system.name for s in self.systems)
        raise ConfigError(f"{self.source}: no system named {name_or_domain!r} (known: {known})")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def _format_location(location: tuple[int | str, ...]) -> str:
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + part
    return text or "(top level)"


def _validation_error(path: Path, exc: ValidationError) -> ConfigError:
    first = exc.errors()[0]
    location = _format_location(tuple(first["loc"]))
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "missing":
        message = "missing key"
    if not first["loc"]:  # a whole-file check (SystemConfig._consistency): its message names the key
        return ConfigError(f"{path}: {message}")
    return ConfigError(f"{path}: {location}: {message}")


_FILE_KEYS: tuple[tuple[str, ...], ...] = (
    ("is_proxy", "certificate"),
    ("is_proxy", "private_key"),
    ("is_proxy", "sealing_keys"),
    ("kms", "secrets"),
    ("kms", "storage_key"),
    ("kms", "kms_certificate"),
    ("kms", "certificate"),
    ("kms", "private_key"),
    ("mcx_server", "certificate"),
    ("mcx_server", "private_key"),
    ("http_proxy", "certificate"),
    ("http_proxy", "private_key"),
    ("gms", "certificate"),
    ("gms", "private_key"),
)


def _resolve_paths(data: dict[str, Any], base: Path, path: Path) -> None:
    """Make every file path absolute (relative to the system file) and check that it exists."""
    for section, key in _FILE_KEYS:
        table = data.get(section)
        if isinstance(table, dict) and isinstance(table.get(key), str):
            table[key] = _existing(base / table[key], path, f"{section}.{key}")
    system = data.get("system")
    if isinstance(system, dict) and isinstance(system.get("audit_log"), str):
        system["audit_log"] = base / system["audit_log"]
    gms = data.get("gms")
    if isinstance(gms, dict) and isinstance(gms.get("groups"), str):
        folder = (base / gms["groups"]).resolve()
        if not folder.is_dir():
            raise ConfigError(f"{path}: gms.groups: folder not found: {folder}")
        gms["groups"] = folder
    for section, key in (
        ("kms", "client_trust_anchors"),
        ("mcx_server", "kms_trust_anchors"),
        ("http_proxy", "client_trust_anchors"),
        ("gms", "kms_trust_anchors"),
    ):
        table = data.get(section)
        if isinstance(table, dict) and isinstance(table.get(key), list):
            table[key] = [
                _existing(base / anchor, path, f"{section}.{key}[{number}]")
                if isinstance(anchor, str)
                else anchor
                for number, anchor in enumerate(table[key])
            ]
    partners = data.get("partner")
    if isinstance(partners, list):
        for index, agreement in enumerate(partners):
            spk = agreement.get("spk") if isinstance(agreement, dict) else None
            if isinstance(spk, dict) and isinstance(spk.get("file"), str):
                spk["file"] = _existing(base / spk["file"], path, f"partner[{index}].spk.file")
            if isinstance(agreement, dict) and isinstance(agreement.get("kms_certificate"), str):
                agreement["kms_certificate"] = _existing(
                    base / agreement["kms_certificate"], path, f"partner[{index}].kms_certificate"
                )
            anchors = agreement.get("trust_anchors") if isinstance(agreement, dict) else None
            if isinstance(anchors, list):
                agreement["trust_anchors"] = [
                    _existing(base / anchor, path, f"partner[{index}].trust_anchors[{number}]")
                    if isinstance(anchor, str)
                    else anchor
                    for number, anchor in enumerate(anchors)
                ]


def _existing(candidate: Path, path: Path, key: str) -> Path:
    resolved = candidate.resolve()
    if not resolved.is_file():
        raise ConfigError(f"{path}: {key}: file not found: {resolved}")
    return resolved


def load_system(path: Path) -> SystemConfig:
    """Load and validate one ``system.toml``."""
    data = _read_toml(path)
    _resolve_paths(data, path.parent, path)
    try:
        return SystemConfig.model_validate({**data, "source": path})
    except ValidationError as exc:
        raise _validation_error(path, exc) from None


def load_deployment(path: Path) -> DeploymentConfig:
    """Load ``deployment.toml`` (or a folder holding one) and every system it names."""
    if path.is_dir():
        path = path / "deployment.toml"
    data = _read_toml(path)
    section = data.get("deployment")
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: deployment: missing table [deployment]")
    unknown = sorted(set(section) - {"name", "systems"})
    if unknown:
        raise ConfigError(f"{path}: deployment.{unknown[0]}: unknown key")
    files = section.get("systems")
    if not isinstance(files, list) or not files or not all(isinstance(item, str) for item in files):
        raise ConfigError(f"{path}: deployment.systems: must be a non-empty list of file paths")
    systems = [load_system(path.parent / item) for item in files]
    names = [system.system.name for system in systems]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: deployment.systems: two systems share a name")
    name = section.get("name", path.parent.name)
    if not isinstance(name, str):
        raise ConfigError(f"{path}: deployment.name: must be a string")
    return DeploymentConfig(source=path, name=name, systems=systems)
