"""Running MC systems and clients over real loopback sockets in a test, every step bounded."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcinterconnect.deploy.config import SystemConfig
from mcinterconnect.deploy.runner import RunningSystem, start_system
from mcinterconnect.services.client import McClient

STEP = 5.0  # bound of any single start, stop or exchange


def run(scenario: Coroutine[Any, Any, None], deadline: float = 25.0) -> None:
    """Run one test scenario on a fresh event loop, bounded by ``deadline`` seconds."""

    async def bounded() -> None:
        async with asyncio.timeout(deadline):
            await scenario

    asyncio.run(bounded())


@dataclass
class Running:
    """Started systems with what their IS proxies sent across SIP-3 and what they logged."""

    systems: dict[str, RunningSystem] = field(default_factory=dict)
    sip3: dict[str, list[bytes]] = field(default_factory=dict)
    #: What each HTTP proxy sent across HTTP-3, in plaintext (issue 6 leak tests).
    http3: dict[str, list[bytes]] = field(default_factory=dict)
    events: dict[str, list[dict[str, object]]] = field(default_factory=dict)

    def __getitem__(self, name: str) -> RunningSystem:
        return self.systems[name]

    async def start(self, name: str, config: SystemConfig) -> RunningSystem:
        self.sip3[name] = []
        self.http3[name] = []
        self.events[name] = []
        async with asyncio.timeout(STEP):
            system = await start_system(
                config,
                log=self.events[name].append,
                wire_tap=self.sip3[name].append,
                http_wire_tap=self.http3[name].append,
            )
        self.systems[name] = system
        return system

    async def stop(self, name: str) -> None:
        async with asyncio.timeout(STEP):
            await self.systems.pop(name).close()


@contextlib.asynccontextmanager
async def running(*configs: tuple[str, SystemConfig]) -> AsyncIterator[Running]:
    """Start the named systems; stop them all at the end, whatever happened."""
    state = Running()
    try:
        for name, config in configs:
            await state.start(name, config)
        yield state
    finally:
        for system in state.systems.values():
            async with asyncio.timeout(STEP):
                await system.close()


@contextlib.asynccontextmanager
async def client(
    user: str, home: SystemConfig, *, register: bool = True, cls: type[McClient] = McClient
) -> AsyncIterator[McClient]:
    """A started client of ``home`` (registered at its SIP core unless told otherwise)."""
    mc = cls(
        user,
        home.sip_core.client_listen,
        mcx_psi=home.mcx_server.psi,
        listen_host=home.sip_core.client_listen.host,
        timeout=STEP,
    )
    try:
        async with asyncio.timeout(STEP):
            await mc.start()
            if register:
                response = await mc.register()
                assert response.status == 200, response
        yield mc
    finally:
        async with asyncio.timeout(STEP):
            await mc.close()


def audit_lines(path: Path, component: str | None = "is-proxy") -> list[dict[str, Any]]:
    """The lines of an audit file written by ``component`` (the IS proxy by default: the HTTP
    proxy and the GMS write to the same file); ``None``: every line."""
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [line for line in lines if component is None or line.get("component") == component]
