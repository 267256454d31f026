"""``init``: write a ready two-system deployment on loopback (configuration, PKI, sealing keys).

Systems A (``a.mc.example``) and B (``b.mc.example``) are interconnected by their IS proxies over
SIP-3 with mutual TLS (TS 33.180 6.3.2, WA-IC-13): each system has its own CA, an IS proxy leaf
certificate named by its public host (WA-IC-17) and the partner's CA as trust anchor; each border
has its own sealing key (ARCHITECTURE.md §4, sealed topology hiding).  Each system also gets a
KMS (TS 33.180 Annex D): sealed secrets and their storage key, its KMS certificate, an HTTPS
certificate, and the partner's KMS certificate imported as External — the manual
cross-certification of WA-IC-19.  The MCX server of each system gets a TLS client certificate
whose subjectAltName URI is its PSI: with it, it fetches its ECCSI keys from its KMS to sign
EARs.  Authentication across the border is implicit unless ``explicit`` (both directions
explicit, TS 33.180 9.6).  With ``spk`` the A↔B link protects its MC XML bodies with one shared
SPK (TS 33.180 9.1, 9.3): A generates it, and the same SPK file is written on both sides.
The files follow the models of ``deploy.config`` exactly, and the result is loaded once before
returning.

Internal services of A listen on ``host_a`` and those of B on ``host_b`` (two distinct loopback
addresses, so that a leak test can look for them in SIP-3 traffic); both SIP-3 listeners are on
``border_host``.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mcinterconnect.border.sealing import generate_sealing_key, write_sealing_keys
from mcinterconnect.crypto.kms import Kms, generate_storage_key
from mcinterconnect.deploy.config import ConfigError, load_deployment
from mcinterconnect.deploy.pki import create_ca, issue_certificate, write_pem, write_private_key
from mcinterconnect.deploy.ports import candidate_ports
from mcinterconnect.identity import McServiceId
from mcinterconnect.protect.spk import DEFAULT_GRACE, SpkRing
from mcinterconnect.services.groupdoc import GroupDocument, GroupMember, PartnerVisibility
from mcinterconnect.services.kms import write_certificate, write_sealed_secrets, write_storage_key
from mcinterconnect.sip.transport import Address

CA_DAYS = 3650
LEAF_DAYS = 825
SEALING_KEY_ID = 1
KMS_DAYS = 3650

#: Listen addresses of one system, as the key paths of ``system.toml``.
SYSTEM_PORT_KEYS = (
    "sip_core.client_listen",
    "sip_core.server_listen",
    "mcx_server.listen",
    "is_proxy.internal_listen",
    "is_proxy.sip3_listen",
)
#: Keys accepted in ``ports``: ``"a.sip_core.client_listen"`` ... ``"b.is_proxy.sip3_listen"``.
PORT_KEYS = tuple(f"{system}.{key}" for system in ("a", "b") for key in SYSTEM_PORT_KEYS)
#: Also accepted in ``ports``: the HTTPS listeners of the KMSs (``"a.kms.listen"``, ``"b.kms.listen"``).
KMS_PORT_KEYS = tuple(f"{system}.kms.listen" for system in ("a", "b"))
#: HTTP listeners of one system (written ``host:port``): the HTTP proxy's three faces and the GMS.
SYSTEM_HTTP_PORT_KEYS = (
    "http_proxy.client_listen",
    "http_proxy.internal_listen",
    "http_proxy.http3_listen",
    "gms.listen",
)
#: Also accepted in ``ports``: ``"a.http_proxy.http3_listen"`` ... ``"b.gms.listen"``.
HTTP_PORT_KEYS = tuple(f"{system}.{key}" for system in ("a", "b") for key in SYSTEM_HTTP_PORT_KEYS)
#: The demo user of each system: a client certificate for the HTTP proxy's client side (and KMS).
DEMO_USERS = {"a": "alice", "b": "bob"}
#: The XCAP path prefix of group documents and group keys, routed by the HTTP proxy to the GMS.
GROUPS_PREFIX = "/org.openmobilealliance.groups/"

_FREE_PORT_ATTEMPTS = 100


class InitError(ValueError):
    """The deployment cannot be written, as one line."""


@dataclass(frozen=True)
class _System:
    letter: str  # "a" or "b": folder name and port key prefix
    name: str
    domain: str
    host: str

    @property
    def public_host(self) -> str:
        return f"isproxy.{self.domain}"

    @property
    def psi(self) -> str:
        return f"sip:mcptt-server@{self.domain}"

    @property
    def kms_uri(self) -> str:
        return f"kms.{self.domain}"

    @property
    def http_proxy_host(self) -> str:
        return f"httpproxy.{self.domain}"

    @property
    def gms_psi(self) -> str:
        return f"sip:gms@{self.domain}"

    @property
    def user(self) -> str:
        return f"sip:{DEMO_USERS[self.letter]}@{self.domain}"

    @property
    def group(self) -> str:
        """The demo group homed here (it has a member in the partner system)."""
        return f"sip:{'police' if self.letter == 'a' else 'rescue'}@{self.domain}"


def init_deployment(
    directory: Path,
    *,
    host_a: str = "127.0.10.1",
    host_b: str = "127.0.20.1",
    border_host: str = "127.0.0.1",
    ports: Mapping[str, int] | None = None,
    overwrite: bool = False,
    explicit: bool = False,
    spk: bool = False,
) -> Path:
    """Write the deployment into ``directory`` and return the path of its ``deployment.toml``.

    ``explicit``: both systems authenticate each other explicitly (EAR) in both directions;
    otherwise implicitly.  ``spk``: the link's MC XML bodies are protected with a shared SPK
    (required both ways; ``keys/spk-<partner>.key`` on each side).

    ``ports`` maps keys of ``PORT_KEYS`` (or ``KMS_PORT_KEYS``) to port numbers; every port not
    given is a free TCP port of its host, and all ports are distinct.  A non-empty ``directory``
    is refused unless ``overwrite`` (then the deployment files are replaced and other files are
    left alone).
    """
    for label, host in (("host_a", host_a), ("host_b", host_b), ("border_host", border_host)):
        try:
            Address("tcp", host, 0)
        except ValueError as exc:
            raise InitError(f"{label}: {exc}") from None
    _check_directory(directory, overwrite=overwrite)
    systems = (
        _System("a", "A", "a.mc.example", host_a),
        _System("b", "B", "b.mc.example", host_b),
    )
    hosts = {
        f"{system.letter}.{key}": border_host if key == "is_proxy.sip3_listen" else system.host
        for system in systems
        for key in SYSTEM_PORT_KEYS
    }
    hosts.update({f"{system.letter}.kms.listen": system.host for system in systems})
    hosts.update(
        {
            f"{system.letter}.{key}": border_host if key == "http_proxy.http3_listen" else system.host
            for system in systems
            for key in SYSTEM_HTTP_PORT_KEYS
        }
    )
    chosen = _choose_ports(hosts, dict(ports or {}))
    addresses = {
        key: str(Address("tls" if key.endswith("sip3_listen") else "tcp", hosts[key], chosen[key]))
        for key in hosts
    }
    for system in systems:  # the KMS, the GMS and the HTTP proxy are written host:port
        for key in (f"{system.letter}.kms.listen", *(f"{system.letter}.{k}" for k in SYSTEM_HTTP_PORT_KEYS)):
            addresses[key] = str(Address("tls", hosts[key], chosen[key])).removeprefix("tls://")

    # Make every secret before writing anything, so that a failure leaves no half deployment.
    authorities = {
        system.letter: create_ca(f"MC system {system.name} CA", days=CA_DAYS) for system in systems
    }
    leaves = {
        system.letter: issue_certificate(
            *authorities[system.letter],
            [system.public_host],
            common_name=system.public_host,
            days=LEAF_DAYS,
        )
        for system in systems
    }
    kms_leaves = {
        system.letter: issue_certificate(
            *authorities[system.letter],
            [system.kms_uri],
            common_name=system.kms_uri,
            days=LEAF_DAYS,
            client=False,
        )
        for system in systems
    }
    mcx_leaves = {
        system.letter: issue_certificate(
            *authorities[system.letter],
            [],
            uris=[system.psi],
            common_name=f"MCX server {system.name}",
            days=LEAF_DAYS,
            server=False,
        )
        for system in systems
    }
    http_leaves = {
        system.letter: issue_certificate(
            *authorities[system.letter],
            [system.http_proxy_host],
            common_name=system.http_proxy_host,
            days=LEAF_DAYS,
        )
        for system in systems
    }
    client_leaves = {  # the GMS (towards its KMS) and the demo user (HTTP proxy client side, KMS)
        (system.letter, label): issue_certificate(
            *authorities[system.letter],
            [],
            uris=[uri],
            common_name=common_name,
            days=LEAF_DAYS,
            server=False,
        )
        for system in systems
        for label, uri, common_name in (
            ("gms", system.gms_psi, f"GMS {system.name}"),
            (DEMO_USERS[system.letter], system.user, f"MC user {system.user}"),
        )
    }
    groups = {
        system.letter: _demo_group(system, partner)
        for system, partner in zip(systems, systems[::-1], strict=True)
    }
    kmss = {
        system.letter: Kms.create(system.kms_uri, issuer=f"MC system {system.name}", validity_days=KMS_DAYS)
        for system in systems
    }
    storage_keys = {system.letter: generate_storage_key() for system in systems}
    # One SPK for the link, generated by A (its domain is the F.1.4 P0, WA-SP-05), held by both.
    spk_ring = SpkRing.generate(kdf_identity=systems[0].domain) if spk else None

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "deployment.toml").write_text(_DEPLOYMENT_TOML, encoding="utf-8")
    (directory / "README.txt").write_text(
        _README.format(host_a=host_a, host_b=host_b, border_host=border_host), encoding="utf-8"
    )
    for system, partner in zip(systems, systems[::-1], strict=True):
        folder = directory / system.letter
        for sub in ("pki", "keys", "partners", "kms", "groups", "users"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        ca_cert, ca_key = authorities[system.letter]
        leaf_cert, leaf_key = leaves[system.letter]
        write_pem(folder / "pki" / "ca.crt", ca_cert)
        write_private_key(folder / "pki" / "ca.key", ca_key)
        write_pem(folder / "pki" / "isproxy.crt", leaf_cert)
        write_private_key(folder / "pki" / "isproxy.key", leaf_key)
        write_sealing_keys(folder / "keys" / "sealing.keys", [(SEALING_KEY_ID, generate_sealing_key())])
        write_pem(folder / "partners" / f"{partner.letter}-ca.crt", authorities[partner.letter][0])
        kms_cert, kms_key = kms_leaves[system.letter]
        write_pem(folder / "pki" / "kms.crt", kms_cert)
        write_private_key(folder / "pki" / "kms.key", kms_key)
        mcx_cert, mcx_key = mcx_leaves[system.letter]
        write_pem(folder / "pki" / "mcx.crt", mcx_cert)
        write_private_key(folder / "pki" / "mcx.key", mcx_key)
        http_cert, http_key = http_leaves[system.letter]
        write_pem(folder / "pki" / "httpproxy.crt", http_cert)
        write_private_key(folder / "pki" / "httpproxy.key", http_key)
        gms_cert, gms_key = client_leaves[(system.letter, "gms")]
        write_pem(folder / "pki" / "gms.crt", gms_cert)
        write_private_key(folder / "pki" / "gms.key", gms_key)
        user = DEMO_USERS[system.letter]
        user_cert, user_key = client_leaves[(system.letter, user)]
        write_pem(folder / "users" / f"{user}.crt", user_cert)
        write_private_key(folder / "users" / f"{user}.key", user_key)
        group = groups[system.letter]
        (folder / "groups" / f"{McServiceId.parse(group.group_id).user}.xml").write_bytes(group.to_xml())
        write_storage_key(folder / "keys" / "kms-storage.key", storage_keys[system.letter])
        write_sealed_secrets(
            folder / "kms" / "secrets.sealed", kmss[system.letter].secrets, storage_keys[system.letter]
        )
        write_certificate(folder / "kms" / "kms-cert.xml", kmss[system.letter].certificate)
        # Manual cross-certification (WA-IC-19): each system imports the partner's KMS certificate.
        write_certificate(
            folder / "partners" / f"{partner.letter}-kms.xml",
            kmss[partner.letter].certificate.as_role("External"),
        )
        if spk_ring is not None:
            spk_ring.save(
                folder / "keys" / spk_file_name(partner.letter),
                comment=f"SPK of the link {systems[0].name} <-> {systems[1].name}; both sides hold it.",
            )
        (folder / "system.toml").write_text(
            _system_toml(system, partner, addresses, explicit=explicit, spk=spk_ring is not None),
            encoding="utf-8",
        )

    path = directory / "deployment.toml"
    try:
        load_deployment(path)
    except ConfigError as exc:  # a bug of this module, not of the caller
        raise InitError(f"generated deployment does not load: {exc}") from None
    return path


def _demo_group(system: _System, partner: _System) -> GroupDocument:
    """A group homed in ``system`` with members in both systems; the partner sees its own members."""
    members = [
        f"sip:{DEMO_USERS[system.letter]}@{system.domain}",
        f"sip:dispatch@{system.domain}",
        partner.user,
    ]
    return GroupDocument(
        group_id=system.group,
        display_name=f"{'Police' if system.letter == 'a' else 'Rescue'} {system.name}",
        members=tuple(GroupMember(member) for member in members),
        services=("mcptt", "mcdata"),
        visibility=(PartnerVisibility(partner.domain, reveal_members=True, reveal_attributes=True),),
    )


def spk_file_name(partner: str) -> str:
    """Where a system keeps the SPK of its link with ``partner``, under ``keys/``."""
    return f"spk-{partner.lower()}.key"


def _check_directory(directory: Path, *, overwrite: bool) -> None:
    if not directory.exists():
        return
    if not directory.is_dir():
        raise InitError(f"{directory}: exists and is not a directory")
    if not overwrite and any(directory.iterdir()):
        raise InitError(f"{directory}: directory is not empty (choose an empty one or overwrite)")


def _choose_ports(hosts: Mapping[str, str], given: dict[str, int]) -> dict[str, int]:
    for key, port in given.items():
        if key not in hosts:
            expected = ", ".join((*PORT_KEYS, *KMS_PORT_KEYS, *HTTP_PORT_KEYS))
            raise InitError(f"ports: unknown key {key!r} (expected one of {expected})")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise InitError(f"ports: {key}: {port!r} is not a port number 1..65535")
    owner: dict[int, str] = {}
    for key, port in given.items():
        if port in owner:
            raise InitError(f"ports: {owner[port]} and {key} both use port {port}")
        owner[port] = key
    chosen = dict(given)
    held: list[socket.socket] = []
    try:
        for key, host in hosts.items():
            if key in chosen:
                continue
            chosen[key] = _free_port(host, set(chosen.values()), held)
    finally:
        for sock in held:  # held open until all are chosen, so the kernel never hands one out twice
            sock.close()
    return chosen


def _free_port(host: str, taken: set[int], held: list[socket.socket]) -> int:
    """A port free on ``host``, below the ephemeral range when there is room (``deploy/ports.py``),
    else one that ``bind(0)`` gives; the socket stays in ``held`` so no port is chosen twice."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0]
    except OSError as exc:
        raise InitError(f"cannot resolve {host}: {exc.strerror}") from None
    below = candidate_ports()
    for attempt in range(_FREE_PORT_ATTEMPTS):
        wanted = next(below, 0) if attempt < _FREE_PORT_ATTEMPTS // 2 else 0
        if wanted in taken:
            continue
        sock = socket.socket(family, kind, protocol)
        held.append(sock)
        try:
            sock.bind((address[0], wanted, *address[2:]))
        except OSError as exc:
            if wanted and exc.errno in (errno.EADDRINUSE, errno.EACCES):
                continue  # that one is in use: try another
            raise InitError(f"cannot bind a TCP port on {host}: {exc.strerror}") from None
        port = int(sock.getsockname()[1])
        if port not in taken:
            return port
    raise InitError(f"no free TCP port on {host} distinct from the others")


def _toml_string(value: str) -> str:
    """A TOML basic string (hosts, URIs and paths here are plain, but quote them properly)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(
        f"\\u{ord(char):04x}" if ord(char) < 0x20 or ord(char) == 0x7F else char for char in escaped
    )
    return f'"{escaped}"'


def _system_toml(
    system: _System,
    partner: _System,
    addresses: Mapping[str, str],
    *,
    explicit: bool = False,
    spk: bool = False,
) -> str:
    def address(letter: str, key: str) -> str:
        return _toml_string(addresses[f"{letter}.{key}"])

    mode = "explicit" if explicit else "implicit"
    spk_file = f"keys/{spk_file_name(partner.letter)}"
    generator = system if system.letter == "a" else partner  # A generates the link's SPK
    spk_line = (
        f"spk = {{ file = {_toml_string(spk_file)}, required = true, "
        f"kdf_identity = {_toml_string(generator.domain)}, grace = {DEFAULT_GRACE:.0f} }}"
    )
    if not spk:
        spk_line = f"# {spk_line}   (mcic spk new writes both sides)"

    me = system.letter
    q = _toml_string
    return f"""\
# MC system {system.name} ({system.domain}) of a two-system loopback deployment, written by `init`.
# Every path is relative to this file's folder.  Checked by mcinterconnect.deploy.config.load_system.

[system]
# Name of this MC system (partner agreements of other systems use it).
name = {q(system.name)}
# Domains homed here: sip:user@DOMAIN is a local MC service ID, any other is external (WA-IC-18).
domains = [{q(system.domain)}]
# Audit log of every border decision with its reason code, one JSON object a line (spec 10.2).
audit_log = "audit.jsonl"
# Extra internal host names that must never cross the border; listen addresses are hidden anyway (WA-IC-12).
internal_hosts = []

[sip_core]
# SIP-1: where MC clients of this system register and send their requests.
client_listen = {address(me, "sip_core.client_listen")}
# SIP-2: where the MCX server and the IS proxy reach the SIP core.
server_listen = {address(me, "sip_core.server_listen")}

[mcx_server]
# SIP-2 listener of the MCX server (MCPTT functions).
listen = {address(me, "mcx_server.listen")}
# Public service identity of the MCX server; partners address it (TS 24.379 6.8.2).
psi = {q(system.psi)}
# Check the EAR of requests from explicit partners again here, Target ID = psi exactly, without
# the replay step the IS proxy already did (TS 33.180 9.6; docs/PROFILE.md). Default false.
verify_ear = false
# TLS client certificate (subjectAltName URI = psi) and key with which the MCX server fetches its
# ECCSI keys from this system's KMS, to sign EARs toward explicit partners (TS 33.180 9.6, Annex D).
certificate = "pki/mcx.crt"
private_key = "pki/mcx.key"
# CA(s) the KMS's HTTPS server certificate must chain to.
kms_trust_anchors = ["pki/ca.crt"]

[is_proxy]
# Internal side: the SIP core sends requests for partner systems here (exit point, TS 24.379 6.8.2).
internal_listen = {address(me, "is_proxy.internal_listen")}
# SIP-3: mutual TLS towards partner IS proxies only (TS 33.180 6.3.2, WA-IC-13; profile WA-IC-15/16).
sip3_listen = {address(me, "is_proxy.sip3_listen")}
# Host name partners know this IS proxy by: the subjectAltName dNSName of its certificate (WA-IC-17).
public_host = {q(system.public_host)}
# URI this IS proxy asserts (P-Asserted-Identity) on requests it sends to partners (TS 24.379 6.8.2).
uri = {q(f"sip:isproxy@{system.domain}")}
# Certificate (serverAuth and clientAuth) and private key presented on SIP-3 (WA-IC-13, WA-IC-17).
certificate = "pki/isproxy.crt"
private_key = "pki/isproxy.key"
# AES-256-SIV keys of sealed topology hiding: first line seals, every line unseals (ARCHITECTURE.md §4).
sealing_keys = "keys/sealing.keys"
# Entry point: own published PSIs mapped to their internal destination (WA-IC-07).
routes = {{ {q(system.psi)} = {address(me, "mcx_server.listen")} }}
# Where EAR IDs are remembered against replay (explicit inbound partners only; WA-SP-26 step 9):
# "memory", "sqlite:PATH" (one node, kept across restarts) or "redis://host:port/db" (shared by
# several IS proxy instances). Refusals fail closed when the store cannot answer.
replay_store = "sqlite:replay.db"
# Allowed difference in seconds between an EAR's Date and time and this clock (WA-SP-26 step 3).
ear_skew = 30

[kms]
# The KMS of this system (TS 33.180 Annex D): HTTPS on host:port, mutual TLS; it provisions keys
# only for the MC service ID in the subjectAltName URI of the client certificate (docs/PROFILE.md).
listen = {address(me, "kms.listen")}
# KMS URI: KmsUri of the KMS certificate, part of every UID (TS 33.180 F.2.1); also the TLS server name.
uri = {q(system.kms_uri)}
# Key periods in seconds: UserKeyPeriod and UserKeyOffset of the KMS certificate (TS 33.180 F.2.1).
user_key_period = 2592000
user_key_offset = 0
# KSAK (ECCSI) and z (SAKKE) sealed with AES-256-GCM under the storage key (mode 0600 both).
secrets = "kms/secrets.sealed"
storage_key = "keys/kms-storage.key"
# This KMS's certificate (KmsCertificate XML, role Root): what partners import (WA-IC-19).
kms_certificate = "kms/kms-cert.xml"
# TLS server certificate (subjectAltName {system.kms_uri}) and key of the KMS (WA-CR-06).
certificate = "pki/kms.crt"
private_key = "pki/kms.key"
# CAs that issue the client certificates the KMS accepts: this system's own CA only.
client_trust_anchors = ["pki/ca.crt"]
# Validity of the KMS certificate written by init, in days.
validity_days = {KMS_DAYS}

[http_proxy]
# The HTTP proxy of this system (TS 33.180 11.1.1, WA-IC-06). Client side: HTTP-1 over TLS for this
# system's own clients (mutual TLS: their certificate's subjectAltName URI is their MC service ID);
# it reaches this system's servers only (routes), never a partner.
client_listen = {address(me, "http_proxy.client_listen")}
# Internal side, plain HTTP: this system's servers (the GMS) send requests for a partner here; the
# Host header names the partner's domain.
internal_listen = {address(me, "http_proxy.internal_listen")}
# HTTP-3: mutual TLS towards partner HTTP proxies only (TS 33.180 6.1.3, WA-IC-14).
http3_listen = {address(me, "http_proxy.http3_listen")}
# Host name partners know this HTTP proxy by: the subjectAltName dNSName of its certificate (WA-IC-17).
public_host = {q(system.http_proxy_host)}
certificate = "pki/httpproxy.crt"
private_key = "pki/httpproxy.key"
# CAs that issue the client certificates accepted on the client side: this system's own CA only.
client_trust_anchors = ["pki/ca.crt"]
# Path prefix -> internal server (plain HTTP), for own clients and for partners alike.
routes = {{ {q(GROUPS_PREFIX)} = {address(me, "gms.listen")} }}
# Largest body relayed (octets) and seconds allowed for one exchange with the next hop.
max_body_bytes = 262144
timeout = 10

[gms]
# The group management server (CSC-16, 23.280 10.2.7): plain HTTP on the internal network, reached
# through the HTTP proxy only.
listen = {address(me, "gms.listen")}
# GMS server URI: asserted towards partners, signs the GMKs it sends (TS 33.180 5.7).
psi = {q(system.gms_psi)}
# Group documents loaded at start (*.xml, TS 24.481 model; partner visibility per WA-IC-12).
groups = "groups"
# TLS client identity (subjectAltName URI = psi) with which the GMS fetches its keys from the KMS.
certificate = "pki/gms.crt"
private_key = "pki/gms.key"
kms_trust_anchors = ["pki/ca.crt"]
# Groups homed in the partner that this GMS keeps for its own users, with their GMK (WA-IC-21/22).
partner_groups = [{q(partner.group)}]
# Seconds between two conditional GETs (If-None-Match) of each partner group (WA-IC-21).
poll_interval = 2

# One [[partner]] table per interconnection agreement (spec 10.1).
[[partner]]
# Name of the partner MC system.
name = {q(partner.name)}
# Domains homed in the partner: IDs there are its external MC service IDs (TS 33.180 11.1.1, WA-IC-18).
domains = [{q(partner.domain)}]
# Name the partner's IS proxy certificate must carry as subjectAltName dNSName (WA-IC-17).
is_proxy_host = {q(partner.public_host)}
# The partner's SIP-3 listener, reached over TLS only (WA-IC-13).
is_proxy_address = {address(partner.letter, "is_proxy.sip3_listen")}
# CA certificate(s) the partner's IS proxy certificate must chain to (mutual TLS, WA-IC-17).
trust_anchors = [{q(f"partners/{partner.letter}-ca.crt")}]
# "implicit": the TLS peer and the partner's external MC service IDs authenticate the request
# (TS 33.180 11.1.1); "explicit": every initial request carries an EAR signed by the sending
# server (TS 33.180 9.6), verified under the partner's kms_certificate. Per direction:
# authentication = {{ inbound = "explicit", outbound = "implicit" }}
authentication = "{mode}"
# EAR Request types this partner may use (WA-SP-27): GROUP for group signalling, "none" for the
# Request IE omitted (private calls, one-to-one short data); PRIVILEGED, INTERWORKING, MIGRATION
# may be added; OFF_NETWORK never crosses systems.
allowed_request_types = ["GROUP", "none"]
# SIP methods allowed to and from this partner (WA-IC-08); default: all but REGISTER, which never crosses.
# For example, to narrow it: allowed_methods = ["INVITE", "ACK", "BYE", "CANCEL", "MESSAGE"]
# Partner PSIs by service, for the exit-point Request-URI rewrite (TS 24.379 6.8.2).
psis = {{ mcptt = {q(partner.psi)}, gms = {q(partner.gms_psi)} }}
# The partner's HTTP proxy on HTTP-3: the name its certificate must carry and its address (WA-IC-06).
http_proxy_host = {q(partner.http_proxy_host)}
http_proxy_address = {address(partner.letter, "http_proxy.http3_listen")}
# What the partner may ask over HTTP-3, "METHOD /path/prefix" (WA-IC-06): read group documents
# and fetch group keys only.
http_allowed = ["GET /org.openmobilealliance.groups/groups/", "GET /org.openmobilealliance.groups/gmk/"]
# The partner's KMS certificate, imported by manual cross-certification (WA-IC-19; mcic kms import-partner).
kms_certificate = {q(f"partners/{partner.letter}-kms.xml")}
# SPK protection of the MC XML bodies on this link (TS 33.180 9.1, 9.3): toward the partner the
# sensitive elements are encrypted, the MC bodies signed and From/To masked; from the partner they
# are verified, then decrypted. Both systems hold the same SPK file (mcic spk new / rotate).
# required: refuse MC bodies from the partner that are not protected. kdf_identity: P0 of the key
# derivation (WA-SP-05), the same on both sides. grace: seconds a rotated-out SPK stays accepted.
{spk_line}
"""


_DEPLOYMENT_TOML = """\
# Two interconnected MC systems on loopback (TS 33.180 11.1.1), written by `init`.

[deployment]
# Name of this deployment, shown in logs.
name = "loopback"
# One system.toml per MC system; paths are relative to this file.
systems = ["a/system.toml", "b/system.toml"]
"""

_README = """\
Two interconnected MC systems on loopback: A (a.mc.example) and B (b.mc.example).
deployment.toml          names the two systems; load or run the deployment with this file.
a/system.toml            system A: SIP core, MCX server, IS proxy and its agreement with partner B.
a/pki/ca.crt, ca.key     A's own CA; ca.key only issues certificates (keep it offline in real use).
a/pki/isproxy.crt, .key  certificate and key of A's IS proxy on SIP-3 (SAN isproxy.a.mc.example).
a/pki/mcx.crt, .key      A's MCX server towards its KMS (SAN URI sip:mcptt-server@a.mc.example).
a/keys/sealing.keys      AES-256-SIV keys of A's topology hiding; first line seals, all unseal.
a/partners/b-ca.crt      B's CA certificate: the trust anchor A checks B's IS proxy against.
a/pki/httpproxy.crt,.key A's HTTP proxy, client side and HTTP-3 (SAN httpproxy.a.mc.example).
a/pki/gms.crt, .key      A's GMS towards its KMS (SAN URI sip:gms@a.mc.example).
a/users/alice.crt, .key  the demo user alice@a.mc.example (HTTP proxy client side, KMS).
a/groups/police.xml      a group homed in A with a member in B (loaded by A's GMS).
a/keys/spk-b.key         with SPK protection: the SPK of the link A<->B (b/keys/spk-a.key is the same).
b/...                    the same files for system B (partners/a-ca.crt is A's CA certificate).
Internal services listen on {host_a} (A) and {host_b} (B); both SIP-3 listeners and both
HTTP-3 listeners on {border_host}.
Key files are mode 0600; every setting is explained by a comment in the system.toml files.
"""
