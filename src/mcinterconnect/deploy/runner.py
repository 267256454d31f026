"""Running MC systems from configuration: SIP core, MCX server, IS proxy, KMS, HTTP proxy and GMS of
each system.

``start_system`` builds the sans-IO cores from a ``SystemConfig``, loads keys and certificates
(any problem is a ``StartError`` with one line), opens the listeners and returns a handle to
stop them.  ``mcic run`` starts every system of a deployment in one process; ``mcic demo``
uses the same entry point.

Explicit authentication (TS 33.180 9.6) adds, when some agreement asks for it:

* inbound: the partners' KMS certificates are read, the IS proxy's ``ExplicitAuthentication`` is
  built, and the EAR replay store (``is_proxy.replay_store``) is opened here and handed to the
  IS proxy's node, which runs the replay step; ``RunningSystem.close`` closes it;
* outbound: once the KMS runs, the MCX server fetches its ECCSI key sets over HTTPS with its own
  client certificate (``mcx_server.certificate``) and keeps them fresh in a background task;
  failing to get them stops the start (``StartError``);
* a background task asks the IS proxy every ``RELEASE_INTERVAL`` seconds for the dialogs whose
  EAR Request Expiry passed and sends their BYEs.

SPK protection (TS 33.180 9.3): the SPK file of every agreement with an ``spk`` is read at start
(a missing or bad file stops the start) and watched: every ``SPK_RELOAD_INTERVAL`` seconds a
changed file (``mcic spk rotate``) is read again and used from then on; a file that no longer
reads keeps the previous ring in use and logs ``spk-reload-failed``.

The HTTP proxy (WA-IC-06) and the GMS (CSC-16, WA-IC-21/22) start last, after the KMS, from which
the GMS fetches its keys; they write to the system's audit file with their own ``component`` and
the HTTP proxy claims explicit HTTP-3 requests in the IS proxy's replay store.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mcinterconnect import aio
from mcinterconnect.border.audit import AuditLog
from mcinterconnect.border.explicit import AuthenticationByAgreement, ExplicitAuthentication
from mcinterconnect.border.httpproxy import HttpProxy, HttpProxyError, start_http_proxy
from mcinterconnect.border.isproxy import INTERNAL_LISTENER, SIP3_LISTENER, IsProxy
from mcinterconnect.border.policy import ImplicitAuthentication
from mcinterconnect.border.sealing import Sealer, SealingKeyError
from mcinterconnect.crypto.kms import KmsCertificate, KmsError
from mcinterconnect.deploy.config import SystemConfig
from mcinterconnect.identity import DomainMap
from mcinterconnect.protect.ear_check import EarPolicy
from mcinterconnect.protect.replay import ReplayStore, ReplayStoreUnavailable, open_replay_store
from mcinterconnect.protect.spk import SpkError, SpkRing
from mcinterconnect.services.gms import GmsError, GmsService, start_gms_service
from mcinterconnect.services.kms import KmsService, read_certificate, start_kms_service
from mcinterconnect.services.mcx import EarPartner, McxServerLogic
from mcinterconnect.services.mcx_ear import (
    EarReceiverCheck,
    EarSigner,
    KmsAccess,
    fetch_signing_keys,
    refresh_signing_keys,
)
from mcinterconnect.services.sipcore import CLIENT_FACE, SERVER_FACE, SipCoreLogic
from mcinterconnect.sip.node import SipNode
from mcinterconnect.sip.transport import Address, LogSink, PeerInfo, TransportError
from mcinterconnect.tlsprofile import TlsConfigError, client_context, server_context

#: Called with the plaintext of every message an IS proxy sends across SIP-3 (leak tests, demo).
WireTap = Callable[[bytes], None]
#: Seconds between two looks for dialogs whose EAR Request Expiry passed.
RELEASE_INTERVAL = 0.25
#: Seconds between two looks at the SPK files for a rotation.
SPK_RELOAD_INTERVAL = 0.5


class StartError(RuntimeError):
    """A system that cannot start (one line: which file or address, and why)."""


@dataclass
class RunningSystem:
    """The running components of one MC system."""

    config: SystemConfig
    sip_core: SipNode
    mcx_server: SipNode
    is_proxy: SipNode
    border: IsProxy
    audit: AuditLog
    nodes: list[SipNode] = field(default_factory=list)
    #: The KMS service (TS 33.180 Annex D), when the system has a ``[kms]`` section.
    kms: KmsService | None = None
    #: The EAR replay store of the IS proxy, when a partner's inbound authentication is explicit.
    replay_store: ReplayStore | None = None
    #: Background tasks (Request Expiry release, EAR key refresh), cancelled by ``close``.
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    #: The HTTP proxy (WA-IC-06) and the GMS (CSC-16), when the system has those sections.
    http_proxy: HttpProxy | None = None
    gms: GmsService | None = None
    #: The audit logs of the HTTP proxy and the GMS (the same file as the IS proxy's).
    http_audits: list[AuditLog] = field(default_factory=list)

    @property
    def registrar(self) -> SipCoreLogic:
        core = self.sip_core.core
        assert isinstance(core, SipCoreLogic)
        return core

    @property
    def mcx(self) -> McxServerLogic:
        core = self.mcx_server.core
        assert isinstance(core, McxServerLogic)
        return core

    async def close(self) -> None:
        await aio.cancel_all(self.tasks)
        self.tasks.clear()
        if self.gms is not None:
            await self.gms.close()
        if self.http_proxy is not None:
            await self.http_proxy.close()
        if self.kms is not None:
            await self.kms.close()
        for node in self.nodes:
            await node.close()
        if self.replay_store is not None:
            await self.replay_store.close()
            self.replay_store = None
        self.audit.close()
        for audit in self.http_audits:
            audit.close()
        self.http_audits.clear()


def _tls_contexts(config: SystemConfig) -> tuple[ssl.SSLContext, dict[str, ssl.SSLContext]]:
    section = config.is_proxy
    anchors = [anchor for agreement in config.partner for anchor in agreement.trust_anchors]
    try:
        server = server_context(
            section.certificate, section.private_key, trust_anchors=anchors, require_client_cert=True
        )
        clients = {
            agreement.is_proxy_host: client_context(
                trust_anchors=list(agreement.trust_anchors),
                cert_file=section.certificate,
                key_file=section.private_key,
            )
            for agreement in config.partner
        }
    except TlsConfigError as error:
        raise StartError(f"{config.source}: is_proxy TLS: {error}") from None
    return server, clients


def partner_kms_certificates(config: SystemConfig) -> dict[str, KmsCertificate]:
    """The imported KMS certificate of every partner that has one (``StartError`` if unreadable)."""
    certificates: dict[str, KmsCertificate] = {}
    for index, agreement in enumerate(config.partner):
        if agreement.kms_certificate is None:
            continue
        try:
            certificates[agreement.name] = read_certificate(agreement.kms_certificate)
        except KmsError as error:
            raise StartError(f"{config.source}: partner[{index}].kms_certificate: {error}") from None
    return certificates


def load_spk_rings(config: SystemConfig) -> dict[str, SpkRing]:
    """The SPK ring of every partner whose agreement has an ``spk`` (``StartError`` if unreadable)."""
    rings: dict[str, SpkRing] = {}
    for index, agreement in enumerate(config.partner):
        if agreement.spk is None:
            continue
        try:
            rings[agreement.name] = SpkRing.load(agreement.spk.file, kdf_identity=agreement.spk.kdf_identity)
        except SpkError as error:
            raise StartError(f"{config.source}: partner[{index}].spk: {error}") from None
    return rings


def build_border(config: SystemConfig, sealer: Sealer, audit: AuditLog) -> IsProxy:
    """The sans-IO IS proxy of a system (what ``start_system`` runs, and what the benchmarks time)."""
    policy = EarPolicy(skew=config.is_proxy.ear_skew)
    implicit = ImplicitAuthentication()
    explicit = None
    if any(agreement.explicit_inbound for agreement in config.partner):
        explicit = ExplicitAuthentication(
            own_domains=config.system.domains,
            certificates=partner_kms_certificates(config),
            policy=policy,
            identities=implicit,
        )
    return IsProxy(
        config.is_proxy,
        own_domains=config.system.domains,
        agreements=list(config.partner),
        internal_markers=config.internal_markers(),
        sealer=sealer,
        audit=audit,
        authenticator=AuthenticationByAgreement(implicit=implicit, explicit=explicit),
        ear_policy=policy,
        spk_rings=load_spk_rings(config),
    )


def _open_replay_store(config: SystemConfig) -> ReplayStore | None:
    """The EAR replay store, opened only when some partner's inbound authentication is explicit."""
    if not any(agreement.explicit_inbound for agreement in config.partner):
        return None
    try:
        return open_replay_store(config.is_proxy.replay_store, base=config.source.parent)
    except (ValueError, ReplayStoreUnavailable) as error:
        raise StartError(f"{config.source}: is_proxy.replay_store: {error}") from None


def _ear_partners(config: SystemConfig) -> dict[str, EarPartner]:
    certificates = partner_kms_certificates(config) if config.mcx_server.verify_ear else {}
    return {
        agreement.name: EarPartner(
            name=agreement.name,
            domains=tuple(agreement.domains),
            psi=agreement.psis.get("mcptt"),
            sign=agreement.explicit_outbound,
            verify=agreement.explicit_inbound and config.mcx_server.verify_ear,
            allowed_request_types=tuple(agreement.allowed_request_types),
            certificate=certificates.get(agreement.name),
        )
        for agreement in config.partner
        if agreement.explicit_inbound or agreement.explicit_outbound
    }


def _kms_access(config: SystemConfig) -> KmsAccess:
    """How the MCX server reaches its own KMS (the configuration checked that all of it is there)."""
    section = config.mcx_server
    assert config.kms is not None and section.certificate is not None and section.private_key is not None
    try:
        context = client_context(
            trust_anchors=list(section.kms_trust_anchors),
            cert_file=section.certificate,
            key_file=section.private_key,
        )
    except TlsConfigError as error:
        raise StartError(f"{config.source}: mcx_server TLS: {error}") from None
    return KmsAccess(https_url(config.kms.listen), context, config.kms.uri)


def border_log(audit: AuditLog, log: LogSink | None) -> LogSink:
    """The IS proxy node's log: TLS refusals on SIP-3 are border decisions too, so they also go to
    the audit log; every event goes on to ``log``."""

    def record(event: dict[str, object]) -> None:
        kind = str(event.get("event", ""))
        if kind in ("tls-handshake-failed", "tls-peer-refused") and event.get("listener") == SIP3_LISTENER:
            audit.record(
                "refuse", kind, side="external", remote=event.get("remote"), detail=event.get("reason")
            )
        if log is not None:
            log(event)

    return record


async def _release_expired(border: IsProxy, node: SipNode) -> None:
    """Forever: send the BYEs of dialogs whose EAR Request Expiry passed (J.2.4)."""
    while True:
        await asyncio.sleep(RELEASE_INTERVAL)
        for action in border.release_expired():
            await node.execute(action)


def _file_version(path: Path) -> tuple[int, int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_ino, status.st_mtime_ns, status.st_size


def _spk_versions(config: SystemConfig) -> dict[str, tuple[int, int, int] | None]:
    """The version of each SPK file, taken before the rings are loaded (a change after it is seen)."""
    return {
        agreement.name: _file_version(agreement.spk.file) for agreement in config.partner if agreement.spk
    }


async def _reload_spk_rings(
    config: SystemConfig, border: IsProxy, log: LogSink | None, seen: dict[str, tuple[int, int, int] | None]
) -> None:
    """Forever: use a rotated SPK file (``mcic spk rotate`` replaces it atomically) once it changed."""
    agreements = [agreement for agreement in config.partner if agreement.spk is not None]
    while True:
        await asyncio.sleep(SPK_RELOAD_INTERVAL)
        for agreement in agreements:
            settings = agreement.spk
            assert settings is not None
            version = _file_version(settings.file)
            if version == seen.get(agreement.name):
                continue
            seen[agreement.name] = version
            try:
                ring = SpkRing.load(settings.file, kdf_identity=settings.kdf_identity)
            except SpkError as error:
                if log is not None:
                    log(
                        {
                            "event": "spk-reload-failed",
                            "partner": agreement.name,
                            "reason": error.reason,
                            "detail": str(error),
                        }
                    )
                continue
            border.spk.replace(agreement.name, ring)
            if log is not None:
                log({"event": "spk-reloaded", "partner": agreement.name, "current": ring.current.name})


async def start_system(
    config: SystemConfig,
    *,
    log: LogSink | None = None,
    audit_path: Path | None = None,
    wire_tap: WireTap | None = None,
    reuse_port: bool = False,
    http_wire_tap: WireTap | None = None,
) -> RunningSystem:
    """Start the SIP core, the MCX server and the IS proxy of one system, and its KMS, HTTP proxy
    and GMS when configured.

    ``wire_tap`` / ``http_wire_tap`` see, in plaintext, every message the IS proxy sends across
    SIP-3 / the HTTP proxy sends across HTTP-3 (leak tests, demo).  ``reuse_port``: the IS
    proxy's two listeners are opened with ``SO_REUSEPORT``, so that more IS proxy workers of this
    system can bind them too (issue 7, ``deploy/workers.py``)."""
    name = config.system.name
    try:
        sealer = Sealer.from_file(config.is_proxy.sealing_keys)
    except SealingKeyError as error:
        raise StartError(f"{config.source}: is_proxy.sealing_keys: {error}") from None
    server_tls, client_tls = _tls_contexts(config)
    audit = AuditLog(audit_path or config.system.audit_log, system=name, component="is-proxy")
    domains = DomainMap(config.system.domains, {p.name: p.domains for p in config.partner})
    agent = config.domain
    spk_versions = _spk_versions(config)
    try:
        border = build_border(config, sealer, audit)
        ear_partners = _ear_partners(config)
        signs = any(partner.sign for partner in ear_partners.values())
        access = _kms_access(config) if signs else None
        replay_store = _open_replay_store(config)
    except StartError:
        audit.close()
        raise
    sip_core = SipNode(
        SipCoreLogic(
            domains=config.system.domains,
            client_face=config.sip_core.client_listen,
            server_face=config.sip_core.server_listen,
            mcx_server=config.mcx_server.listen,
            agent=agent,
            trusted_next_hops=[config.is_proxy.internal_listen],
            max_expires=config.sip_core.registration_max_expires,
        ),
        agent=agent,
        log=log,
    )
    mcx_logic = McxServerLogic(
        domains=domains,
        face=config.mcx_server.listen,
        sip_core=config.sip_core.server_listen,
        is_proxy=config.is_proxy.internal_listen,
        agent=agent,
        ear_partners=ear_partners,
        receiver_check=EarReceiverCheck(
            own_psi=config.mcx_server.psi,
            own_domains=tuple(config.system.domains),
            policy=EarPolicy(skew=config.is_proxy.ear_skew),
        )
        if config.mcx_server.verify_ear
        else None,
        log=log,
    )
    mcx_server = SipNode(mcx_logic, agent=agent, log=log)

    is_proxy = SipNode(
        border,
        agent=config.is_proxy.public_host,
        log=border_log(audit, log),
        client_contexts=client_tls.get,
        claim_store=replay_store,
    )
    is_proxy.wire_tap = wire_tap
    running = RunningSystem(
        config,
        sip_core,
        mcx_server,
        is_proxy,
        border,
        audit,
        [is_proxy, mcx_server, sip_core],
        replay_store=replay_store,
    )

    def sip3_peer_check(peer: PeerInfo) -> str | None:
        return border.peer_refusal(peer.certificate, peer.remote)

    try:
        await is_proxy.listen(INTERNAL_LISTENER, config.is_proxy.internal_listen, reuse_port=reuse_port)
        await is_proxy.listen(
            SIP3_LISTENER,
            config.is_proxy.sip3_listen,
            ssl_context=server_tls,
            peer_check=sip3_peer_check,
            reuse_port=reuse_port,
        )
        await mcx_server.listen("mcx", config.mcx_server.listen)
        await sip_core.listen(CLIENT_FACE, config.sip_core.client_listen)
        await sip_core.listen(SERVER_FACE, config.sip_core.server_listen)
    except TransportError as error:
        await running.close()
        raise StartError(f"{config.source}: system {name}: {error}") from None
    if config.kms is not None:
        try:
            running.kms = await start_kms_service(
                config.kms,
                domains=config.system.domains,
                partner_certificates=[p.kms_certificate for p in config.partner if p.kms_certificate],
                log=log,
            )
        except (KmsError, TlsConfigError) as error:
            await running.close()
            raise StartError(f"{config.source}: kms: {error}") from None
        except OSError as error:
            await running.close()
            where = f"{config.kms.listen.host}:{config.kms.listen.port}"
            raise StartError(
                f"{config.source}: kms.listen: cannot listen on {where}: {error.strerror}"
            ) from None
    if access is not None:
        try:
            keys = await fetch_signing_keys(access, config.mcx_server.psi)
        except KmsError as error:
            await running.close()
            raise StartError(
                f"{config.source}: mcx_server: cannot fetch the EAR signing keys from the KMS: {error}"
            ) from None
        mcx_logic.signer = EarSigner(config.mcx_server.psi, keys)
        running.tasks.append(asyncio.create_task(refresh_signing_keys(keys, access, log=log)))
    await _start_http_side(running, log=log, audit_path=audit_path, wire_tap=http_wire_tap)
    if any(agreement.explicit_inbound for agreement in config.partner):
        running.tasks.append(asyncio.create_task(_release_expired(border, is_proxy)))
    if any(agreement.spk is not None for agreement in config.partner):
        running.tasks.append(asyncio.create_task(_reload_spk_rings(config, border, log, spk_versions)))
    return running


async def _start_http_side(
    running: RunningSystem, *, log: LogSink | None, audit_path: Path | None, wire_tap: WireTap | None
) -> None:
    """The HTTP proxy (WA-IC-06), then the GMS (CSC-16, WA-IC-21/22), when configured.

    Any failure stops the whole system start with a ``StartError`` naming the section."""
    config = running.config
    if config.http_proxy is None and config.gms is None:
        return
    proxy_audit, gms_audit = (
        AuditLog(audit_path or config.system.audit_log, system=config.system.name, component=component)
        for component in ("http-proxy", "gms")
    )
    running.http_audits += [proxy_audit, gms_audit]
    try:
        if config.http_proxy is not None:
            running.http_proxy = await start_http_proxy(
                config.http_proxy,
                domains=config.system.domains,
                partners=config.partner,
                partner_kms=partner_kms_certificates(config),
                own_psis=[config.gms.psi] if config.gms is not None else [],
                ear_skew=config.is_proxy.ear_skew,
                replay_store=running.replay_store,
                audit=proxy_audit,
                log=log,
                wire_tap=wire_tap,
                internal_markers=config.internal_markers(),
            )
        if config.gms is not None:
            kms = config.kms
            running.gms = await start_gms_service(
                config.gms,
                domains=config.system.domains,
                partners=config.partner,
                kms_certificate=read_certificate(kms.kms_certificate) if kms is not None else None,
                kms_url=https_url(kms.listen) if kms is not None else None,
                kms_server_hostname=kms.uri if kms is not None else None,
                http_proxy=config.http_proxy.internal_listen if config.http_proxy is not None else None,
                audit=gms_audit,
                log=log,
            )
    except StartError:
        await running.close()
        raise
    except (HttpProxyError, GmsError, KmsError, TlsConfigError) as error:
        await running.close()
        section = "gms" if config.http_proxy is None or running.http_proxy is not None else "http_proxy"
        raise StartError(f"{config.source}: {section}: {error}") from None
    except OSError as error:
        await running.close()
        section = "gms" if config.http_proxy is None or running.http_proxy is not None else "http_proxy"
        raise StartError(f"{config.source}: {section}: cannot listen: {error.strerror or error}") from None


def https_url(address: Address) -> str:
    """``https://host:port`` of an HTTPS listener (the KMS's, an HTTP proxy face)."""
    return f"https://{address.hostport}"


async def serve_forever(systems: list[RunningSystem]) -> None:
    """Keep the systems running until cancelled, then stop them."""
    try:
        await asyncio.Event().wait()
    finally:
        for system in systems:
            await system.close()
