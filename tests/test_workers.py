"""``mcic run DIR --workers N`` (issue 7, scale-out): each IS proxy as N processes on the same ports.

Real processes and real sockets only: ``mcic init`` writes a deployment, ``mcic run --workers 2``
runs it, the test reads ``/proc`` to see which process holds which listening socket, sends SIP
over TCP and TLS (TS 33.180 11.1.1: the IS proxy is the entry and exit point of SIP-3) and reads
the audit file of every worker.  Linux only (``SO_REUSEPORT`` spreading connections).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mcic_helpers import BOUND, MCIC, mcic
from mcinterconnect.crypto.uid import ntp_seconds
from mcinterconnect.deploy.config import SystemConfig, load_deployment
from mcinterconnect.deploy.probe import ProbeResult, probe, probe_request
from mcinterconnect.deploy.workers import worker_audit_path
from mcinterconnect.mcinfo import MCPTT_INFO_TYPE, McpttInfo
from mcinterconnect.protect.ear import (
    EAR_HEADER,
    Role,
    new_payload,
    sign_ear_header,
)
from mcinterconnect.services.client import TEXT_TYPE
from mcinterconnect.services.kms import read_kms
from mcinterconnect.sip.message import Headers
from mcinterconnect.sip.multipart import BodyPart, build_multipart
from mcinterconnect.sip.transport import Address, SipTransport, TransportError
from mcinterconnect.tlsprofile import client_context
from redis_helpers import RedisServer, redis_server
from system_helpers import audit_lines, client

__all__ = ["redis_server"]

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="SO_REUSEPORT spreading is Linux"
)

ALICE = "sip:alice@a.mc.example"
BOB = "sip:bob@b.mc.example"
#: Connections tried at most before concluding that the kernel never picked one of two workers
#: (each connection picks one of two with probability 1/2 by the 4-tuple hash).
TRIES = 40


# ------------------------------------------------------------------ processes and sockets in /proc


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # state, ppid, ...


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return sorted(found)


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in command and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def listening_inodes(address: Address) -> set[int]:
    """The inodes of the IPv4 TCP sockets listening on ``address`` (``/proc/net/tcp``)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        host_hex, port_hex = fields[1].split(":")
        host = socket.inet_ntoa(struct.pack("=I", int(host_hex, 16)))
        if fields[3] == "0A" and int(port_hex, 16) == address.port and host == address.host:
            inodes.add(int(fields[9]))
    return inodes


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = str(fd.readlink())
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def wait_until(condition: Callable[[], bool], what: str, timeout: float = BOUND) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


# ------------------------------------------------------------------ mcic run as a process


@dataclass
class McicRun:
    process: subprocess.Popen[str]
    lines: queue.Queue[str | None]

    def ready(self, systems: int) -> list[str]:
        """The lines ``mcic run`` prints once each system and its workers are up."""
        printed: list[str] = []
        deadline = time.monotonic() + BOUND * 2
        while len(printed) < systems:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"mcic run: not ready after {BOUND * 2:g} s")
            if line is None:
                self.process.wait(BOUND)
                assert self.process.stderr is not None
                pytest.fail(f"mcic run ended ({self.process.returncode}): {self.process.stderr.read()}")
            printed.append(line)
        return printed


@contextlib.contextmanager
def mcic_run(directory: Path, *arguments: str) -> Iterator[McicRun]:
    """``mcic run DIRECTORY ARGUMENTS``; killed at the end if the test left it running."""
    process = subprocess.Popen(
        [str(MCIC), "run", str(directory), *arguments],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        yield McicRun(process, lines)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(BOUND)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(BOUND)
        for pid in processes_mentioning(str(directory)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def init(directory: Path, *options: str) -> None:
    result = mcic("init", directory, *options)
    assert result.returncode == 0, result.stderr


def set_replay_store(directory: Path, spec: str) -> None:
    for letter in ("a", "b"):
        path = directory / letter / "system.toml"
        text = path.read_text()
        assert 'replay_store = "sqlite:replay.db"' in text
        path.write_text(text.replace('replay_store = "sqlite:replay.db"', f'replay_store = "{spec}"'))


def worker_audit_lines(config: SystemConfig, worker: int) -> list[dict[str, Any]]:
    return audit_lines(worker_audit_path(config, worker))


# ------------------------------------------------------------------ (1) (2) (3): ports, delivery, SIGTERM


def internal_message(a: SystemConfig, text: str) -> bytes:
    """A MESSAGE alice -> bob as A's MCX server hands it to its IS proxy (exit point)."""
    content_type, body = build_multipart(
        [
            BodyPart(
                Headers([("Content-Type", MCPTT_INFO_TYPE)]),
                McpttInfo(request_uri=BOB, calling_user_id=ALICE).to_xml(),
            ),
            BodyPart(Headers([("Content-Type", TEXT_TYPE)]), text.encode()),
        ]
    )
    return probe_request(
        "MESSAGE",
        BOB,
        source=ALICE,
        target=BOB,
        via_host=f"{a.mcx_server.listen.host}:{a.mcx_server.listen.port}",
        transport="TCP",
        headers=[("P-Asserted-Identity", f"<{ALICE}>")],
        body=body,
        content_type=content_type,
    ).to_bytes()


def test_two_workers_share_the_ports_spread_connections_and_stop_with_the_parent(tmp_path: Path) -> None:
    directory = tmp_path / "deployment"
    init(directory)
    # No partner is explicit inbound here: a memory replay store is never opened, so N workers are fine.
    set_replay_store(directory, "memory")
    deployment = load_deployment(directory)
    a, b = deployment.systems
    with mcic_run(directory, "--workers", "2") as run:
        printed = run.ready(2)
        assert all("2 IS proxy workers" in line for line in printed), printed
        parent = run.process.pid
        workers = children(parent)
        assert len(workers) == 2, workers  # worker 1 of A, worker 1 of B; worker 0 is the parent

        # (1) Two processes listen on each IS proxy address of each system: the parent and one worker.
        for system in (a, b):
            (worker,) = [pid for pid in workers if str(system.source.resolve()) in _cmdline(pid)]
            for address in (system.is_proxy.internal_listen, system.is_proxy.sip3_listen):
                listening = listening_inodes(address)
                assert len(listening) == 2, (address, listening)
                assert len(listening & socket_inodes(parent)) == 1, address
                assert len(listening & socket_inodes(worker)) == 1, address
            # The rest of the system runs in the parent only.
            for address in (system.sip_core.client_listen, system.mcx_server.listen):
                assert len(listening_inodes(address)) == 1, address

        # (2) Delivered alice@A -> bob@B through the running deployment, and spread over A's workers.
        async def exchange() -> None:
            async with client(BOB, b) as bob, client(ALICE, a) as alice:
                response = await alice.send_message(BOB, "through the whole path")
                assert response.status == 200, response
                received = await asyncio.wait_for(bob.inbox.get(), BOUND)
                assert received.text == "through the whole path"
                # A's MCX server keeps one connection to its IS proxy: one worker carries all it
                # sends.  Separate connections are spread by the kernel.
                for number in range(TRIES):
                    result: ProbeResult = await probe(
                        a.is_proxy.internal_listen, internal_message(a, f"message {number}"), timeout=BOUND
                    )
                    assert result.response is not None and result.response.status == 200, result.describe()
                    received = await asyncio.wait_for(bob.inbox.get(), BOUND)
                    assert received.text == f"message {number}"
                    assert received.sender == ALICE
                    if all(_allowed_outbound(a, worker) for worker in (0, 1)):
                        return
                pytest.fail(f"{TRIES} connections all went to one worker of A")

        asyncio.run(exchange())
        assert worker_audit_path(a, 1).name == "audit.w1.jsonl"

        # (3) SIGTERM to the parent: it stops, and so does every worker; the ports are free again.
        run.process.send_signal(signal.SIGTERM)
        assert run.process.wait(BOUND) == 0
        wait_until(lambda: not any(alive(pid) for pid in workers), "a worker outlived its parent")
        for system in (a, b):
            assert not listening_inodes(system.is_proxy.sip3_listen)
            assert not listening_inodes(system.is_proxy.internal_listen)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _allowed_outbound(config: SystemConfig, worker: int) -> bool:
    return any(
        line["decision"] == "allow"
        and line.get("direction") == "outbound"
        and line.get("method") == "MESSAGE"
        for line in worker_audit_lines(config, worker)
    )


# ------------------------------------------------------------------ (4) refusals


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", "0 is not between 1 and 64"),
        ("65", "65 is not between 1 and 64"),
        ("two", "'two' is not a whole number"),
    ],
)
def test_a_bad_worker_count_is_a_usage_error(tmp_path: Path, value: str, expected: str) -> None:
    init(tmp_path / "deployment")
    result = mcic("run", tmp_path / "deployment", "--workers", value)
    assert result.returncode == 2, result
    assert result.stderr.splitlines() == [f"mcic: error: --workers: {expected}"], result.stderr
    assert result.stdout == ""


def test_a_memory_replay_store_is_refused_with_workers_when_inbound_is_explicit(tmp_path: Path) -> None:
    directory = tmp_path / "deployment"
    init(directory, "--explicit")
    set_replay_store(directory, "memory")
    result = mcic("run", directory, "--workers", "2")
    assert result.returncode == 2, result
    [line] = result.stderr.splitlines()
    assert line.startswith("mcic: error: ") and "a/system.toml: is_proxy.replay_store: 'memory'" in line, line
    assert "cannot be shared by 2 IS proxy workers" in line
    assert processes_mentioning(str(directory)) == []


def test_a_worker_that_cannot_start_fails_the_run_and_stops_the_others(tmp_path: Path) -> None:
    directory = tmp_path / "deployment"
    init(directory)
    config = load_deployment(directory).systems[0]
    worker_audit_path(config, 1).mkdir()  # worker 1 of A cannot open its audit log
    result = mcic("run", directory, "--workers", "2", timeout=BOUND * 2)
    assert result.returncode == 1, result
    [line] = result.stderr.splitlines()
    assert line.startswith("mcic: error: ") and "IS proxy worker 1" in line and "audit.w1.jsonl" in line, line
    assert "Traceback" not in result.stderr
    assert processes_mentioning(str(directory)) == []
    assert not listening_inodes(config.is_proxy.sip3_listen)


# ------------------------------------------------------------------ (5) one replay store for all workers


def ear_of_b(b: SystemConfig, target_id: str) -> str:
    """An EAR signed by B's MCX server (key from B's KMS, provisioned offline as B's server has it)."""
    assert b.kms is not None
    kms = read_kms(b.kms)
    payload = new_payload(
        source_role=Role.MCX_SERVER,
        source_id=b.mcx_server.psi,
        target_role=Role.MCX_SERVER,
        target_id=target_id,
    )
    certificate = kms.certificate
    [keys] = kms.provision(b.mcx_server.psi, [certificate.key_period.number_at(ntp_seconds(payload.time))])
    return sign_ear_header(payload, keys, certificate)


def test_an_ear_admitted_by_one_worker_is_a_replay_at_the_other(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    directory = tmp_path / "deployment"
    init(directory, "--explicit")
    set_replay_store(directory, redis_server.url)
    deployment = load_deployment(directory)
    a, b = deployment.systems
    ear = ear_of_b(b, a.mcx_server.psi)
    # As B's IS proxy (its certificate) toward A's SIP-3, over a new TLS connection each time.
    as_b = client_context(
        trust_anchors=[directory / "a" / "pki" / "ca.crt"],
        cert_file=b.is_proxy.certificate,
        key_file=b.is_proxy.private_key,
    )

    def request(number: int) -> bytes:
        return probe_request(
            "MESSAGE",
            a.mcx_server.psi,
            source=b.is_proxy.uri,
            target=a.mcx_server.psi,
            via_host=f"{b.is_proxy.public_host}:{b.is_proxy.sip3_listen.port}",
            headers=[("P-Asserted-Identity", f"<{b.is_proxy.uri}>"), (EAR_HEADER, ear)],
            body=McpttInfo(request_uri=ALICE, calling_user_id=BOB).to_xml(),
            content_type=MCPTT_INFO_TYPE,
        ).to_bytes()

    def decisions(worker: int) -> list[dict[str, object]]:
        return [
            line
            for line in worker_audit_lines(a, worker)
            if line.get("side") == "external" and line.get("method") == "MESSAGE"
        ]

    with mcic_run(directory, "--workers", "2") as run:
        run.ready(2)
        parent = run.process.pid
        workers = children(parent)
        results: list[ProbeResult] = []

        async def send() -> None:
            async with client(ALICE, a):
                for number in range(TRIES):
                    results.append(
                        await probe(
                            a.is_proxy.sip3_listen,
                            request(number),
                            context=as_b,
                            server_hostname=a.is_proxy.public_host,
                            timeout=BOUND,
                        )
                    )
                    if len(results) >= 2 and decisions(0) and decisions(1):
                        return
                pytest.fail(f"{TRIES} connections all went to one worker of A")

        asyncio.run(send())
        statuses = [result.response.status if result.response else result.error for result in results]
        assert statuses[0] == 200, [result.describe() for result in results]
        assert statuses[1:] == [403] * (len(results) - 1), statuses
        assert all("907 EAR replayed" in result.describe() for result in results[1:])
        lines = decisions(0) + decisions(1)
        assert sorted(str(line["reason"]) for line in lines) == sorted(
            ["allowed"] + ["ear-replay"] * (len(results) - 1)
        ), lines

        # The parent killed outright: its workers notice the pipe closing and end too.
        run.process.send_signal(signal.SIGKILL)
        run.process.wait(BOUND)
        wait_until(lambda: not any(alive(pid) for pid in workers), "a worker outlived a killed parent")


# ------------------------------------------------------------------ the transport option underneath


def test_reuse_port_lets_two_listeners_bind_one_address_and_only_then() -> None:
    """``listen(..., reuse_port=True)``: what every IS proxy worker does on its two faces."""

    async def scenario() -> None:
        async def ignore(message: object, peer: object) -> None:
            del message, peer

        first, second, third = (SipTransport(ignore) for _ in range(3))
        try:
            for transport in ("tcp", "udp"):
                bound = await first.listen(
                    f"one-{transport}", Address(transport, "127.0.0.1", 0), reuse_port=True
                )
                await second.listen(f"two-{transport}", bound, reuse_port=True)
                with pytest.raises(TransportError, match=r"(?i)cannot listen on .* address already in use"):
                    await third.listen(f"three-{transport}", bound)
        finally:
            for transport_ in (first, second, third):
                await transport_.close()

    asyncio.run(scenario())
