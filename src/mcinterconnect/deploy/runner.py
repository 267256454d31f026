"""Running MC systems from configuration: SIP core, MCX server, IS proxy and KMS of each system.

``start_system`` builds the sans-IO cores from a ``SystemConfig``, loads keys and certificates
(any problem is a ``StartError`` with one line), opens the listeners and returns a handle to
stop them.  ``mcic run`` starts every system of a deployment in one process; ``mcic demo``
uses the same entry point.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mcinterconnect.border.audit import AuditLog
from mcinterconnect.border.isproxy import INTERNAL_LISTENER, SIP3_LISTENER, IsProxy
from mcinterconnect.border.sealing import Sealer, SealingKeyError
from mcinterconnect.crypto.kms import KmsError
from mcinterconnect.deploy.config import SystemConfig
from mcinterconnect.identity import DomainMap
from mcinterconnect.services.kms import KmsService, start_kms_service
from mcinterconnect.services.mcx import McxServerLogic
from mcinterconnect.services.sipcore import CLIENT_FACE, SERVER_FACE, SipCoreLogic
from mcinterconnect.sip.node import SipNode
from mcinterconnect.sip.transport import LogSink, PeerInfo, TransportError
from mcinterconnect.tlsprofile import TlsConfigError, client_context, server_context

#: Called with the plaintext of every message an IS proxy sends across SIP-3 (leak tests, demo).
WireTap = Callable[[bytes], None]


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

    @property
    def registrar(self) -> SipCoreLogic:
        core = self.sip_core.core
        assert isinstance(core, SipCoreLogic)
        return core

    async def close(self) -> None:
        if self.kms is not None:
            await self.kms.close()
        for node in self.nodes:
            await node.close()
        self.audit.close()


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


def build_border(config: SystemConfig, sealer: Sealer, audit: AuditLog) -> IsProxy:
    """The sans-IO IS proxy of a system (what ``start_system`` runs, and what the benchmarks time)."""
    return IsProxy(
        config.is_proxy,
        own_domains=config.system.domains,
        agreements=list(config.partner),
        internal_markers=config.internal_markers(),
        sealer=sealer,
        audit=audit,
    )


async def start_system(
    config: SystemConfig,
    *,
    log: LogSink | None = None,
    audit_path: Path | None = None,
    wire_tap: WireTap | None = None,
) -> RunningSystem:
    """Start the SIP core, the MCX server and the IS proxy of one system."""
    name = config.system.name
    try:
        sealer = Sealer.from_file(config.is_proxy.sealing_keys)
    except SealingKeyError as error:
        raise StartError(f"{config.source}: is_proxy.sealing_keys: {error}") from None
    server_tls, client_tls = _tls_contexts(config)
    audit = AuditLog(audit_path or config.system.audit_log, system=name, component="is-proxy")
    domains = DomainMap(config.system.domains, {p.name: p.domains for p in config.partner})
    agent = config.domain
    border = build_border(config, sealer, audit)
    sip_core = SipNode(
        SipCoreLogic(
            domains=config.system.domains,
            client_face=config.sip_core.client_listen,
            server_face=config.sip_core.server_listen,
            mcx_server=config.mcx_server.listen,
            agent=agent,
            max_expires=config.sip_core.registration_max_expires,
        ),
        agent=agent,
        log=log,
    )
    mcx_server = SipNode(
        McxServerLogic(
            domains=domains,
            face=config.mcx_server.listen,
            sip_core=config.sip_core.server_listen,
            is_proxy=config.is_proxy.internal_listen,
            agent=agent,
        ),
        agent=agent,
        log=log,
    )

    def border_log(event: dict[str, object]) -> None:
        # TLS refusals on SIP-3 are border decisions too: they go to the audit log.
        kind = str(event.get("event", ""))
        if kind in ("tls-handshake-failed", "tls-peer-refused") and event.get("listener") == SIP3_LISTENER:
            audit.record(
                "refuse", kind, side="external", remote=event.get("remote"), detail=event.get("reason")
            )
        if log is not None:
            log(event)

    is_proxy = SipNode(
        border, agent=config.is_proxy.public_host, log=border_log, client_contexts=client_tls.get
    )
    is_proxy.wire_tap = wire_tap
    running = RunningSystem(
        config, sip_core, mcx_server, is_proxy, border, audit, [is_proxy, mcx_server, sip_core]
    )

    def sip3_peer_check(peer: PeerInfo) -> str | None:
        return border.peer_refusal(peer.certificate, peer.remote)

    try:
        await is_proxy.listen(INTERNAL_LISTENER, config.is_proxy.internal_listen)
        await is_proxy.listen(
            SIP3_LISTENER, config.is_proxy.sip3_listen, ssl_context=server_tls, peer_check=sip3_peer_check
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
    return running


async def serve_forever(systems: list[RunningSystem]) -> None:
    """Keep the systems running until cancelled, then stop them."""
    try:
        await asyncio.Event().wait()
    finally:
        for system in systems:
            await system.close()
