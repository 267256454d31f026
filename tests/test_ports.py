"""deploy/ports.py: listener ports of a generated deployment stay out of the ephemeral range."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

from mcinterconnect.deploy.config import load_deployment
from mcinterconnect.deploy.init import init_deployment
from mcinterconnect.deploy.ports import DEFAULT_EPHEMERAL_LOW, LOWEST, candidate_ports, ephemeral_low


def test_ephemeral_low_reads_the_kernel_range(tmp_path: Path) -> None:
    table = tmp_path / "ip_local_port_range"
    table.write_text("40000\t60999\n", encoding="ascii")
    assert ephemeral_low(table) == 40000
    table.write_text("garbage\n", encoding="ascii")
    assert ephemeral_low(table) == DEFAULT_EPHEMERAL_LOW
    assert ephemeral_low(tmp_path / "missing") == DEFAULT_EPHEMERAL_LOW


def test_candidates_stay_below_the_range() -> None:
    ports = list(itertools.islice(candidate_ports(random.Random(7), low=20000), 2000))
    assert all(LOWEST <= port < 20000 for port in ports)
    assert len(set(ports)) > 1500  # spread, not one port again and again
    # No room below a range that starts low: no candidate, init falls back to bind(0).
    assert list(candidate_ports(low=LOWEST + 10)) == []


def test_init_writes_ports_below_the_ephemeral_range(tmp_path: Path) -> None:
    deployment = load_deployment(init_deployment(tmp_path / "d"))
    low = ephemeral_low()
    ports = []
    for system in deployment.systems:
        ports += [
            system.sip_core.client_listen.port,
            system.sip_core.server_listen.port,
            system.mcx_server.listen.port,
            system.is_proxy.internal_listen.port,
            system.is_proxy.sip3_listen.port,
        ]
    assert len(set(ports)) == len(ports)
    if low > LOWEST + 1000:
        assert all(LOWEST <= port < low for port in ports), ports
