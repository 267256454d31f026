"""SIPp as a real third-party SIP peer on both sides of the interconnection (field-notes.md §5).

A SIPp UAC plays an internal server of A and sends MC short-data MESSAGEs into A's IS proxy
(exit point); a SIPp UAS stands behind B where B's IS proxy routes B's MCX PSI (entry point).
Between them, A's and B's IS proxies talk SIP-3 over mutual TLS.  Debian's SIPp has no TLS, so
SIPp only speaks TCP on the internal sides.  Systems A and B run in a background thread with
their own event loop while the SIPp processes run.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mcinterconnect.deploy.config import SystemConfig, load_deployment
from mcinterconnect.deploy.init import init_deployment
from mcinterconnect.deploy.runner import RunningSystem, start_system
from mcinterconnect.sip.transport import Address
from ports import free_port

pytestmark = [
    pytest.mark.sipp,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="SIPp (Debian package sip-tester) not installed"),
]

SCENARIOS = Path(__file__).parent / "sipp"
CALLS = 200
RATE = 100  # MESSAGEs per second
SIPP_TIMEOUT = 30  # seconds, for each SIPp process (-timeout) and its subprocess bound


@dataclass
class SystemsThread:
    """Systems started and stopped in a thread of their own, with their own event loop."""

    configs: list[SystemConfig]
    sip3: list[bytes] = field(default_factory=list)
    systems: list[RunningSystem] = field(default_factory=list)
    error: BaseException | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="mc-systems", daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "systems did not start within 10 s"
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)
            assert not self._thread.is_alive(), "systems did not stop within 10 s"
        if self.error is not None:
            raise self.error

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # reported to the test thread
            self.error = error
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with asyncio.timeout(10):
                for config in self.configs:
                    self.systems.append(await start_system(config, wire_tap=self.sip3.append))
            self._ready.set()
            await self._stop.wait()
        finally:
            for system in self.systems:
                async with asyncio.timeout(10):
                    await system.close()


@pytest.fixture
def sipp_deployment(tmp_path: Path) -> tuple[SystemConfig, SystemConfig, Address]:
    """A and B, with B's MCX PSI routed by B's IS proxy to a SIPp UAS (TCP on B's internal host)."""
    deployment = load_deployment(init_deployment(tmp_path / "deployment"))
    a, b = deployment.systems
    host_b = b.mcx_server.listen.host
    uas = Address("tcp", host_b, free_port(host_b))
    b = b.model_copy(update={"is_proxy": b.is_proxy.model_copy(update={"routes": {b.mcx_server.psi: uas}})})
    return a, b, uas


@pytest.fixture
def systems(sipp_deployment: tuple[SystemConfig, SystemConfig, Address]) -> Iterator[SystemsThread]:
    a, b, _ = sipp_deployment
    running = SystemsThread([a, b])
    running.start()
    try:
        yield running
    finally:
        running.stop()


def sipp_command(scenario: str, *arguments: str, local: Address, calls: int) -> list[str]:
    return [
        "sipp",
        *arguments,
        "-sf",
        str(SCENARIOS / scenario),
        "-t",
        "t1",  # TCP, one socket for all calls
        "-i",
        local.host,
        "-p",
        str(local.port),
        "-m",
        str(calls),
        "-timeout",
        f"{SIPP_TIMEOUT}s",
        "-timeout_error",
        "-nostdin",
        "-trace_err",
        "-trace_stat",
        "-fd",
        "1",
    ]


def wait_listening(address: Address, process: subprocess.Popen[bytes], seconds: float = 5.0) -> None:
    """Wait until SIPp's TCP listener is bound (the kernel's socket table, no connection made)."""
    wanted = f"{address.host}:{address.port}"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"SIPp UAS exited early with {process.returncode}"
        with open("/proc/net/tcp") as table:
            for line in table.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and _proc_address(local) == wanted:
                    return
        time.sleep(0.05)
    raise AssertionError(f"SIPp UAS not listening on {wanted} after {seconds} s")


def _proc_address(text: str) -> str:
    hexhost, hexport = text.split(":")
    octets = [str(int(hexhost[i : i + 2], 16)) for i in range(6, -1, -2)]
    return f"{'.'.join(octets)}:{int(hexport, 16)}"


def successful_calls(stat_csv: Path) -> int:
    """The cumulative successful-call count of the last line of a SIPp -trace_stat file."""
    lines = [line for line in stat_csv.read_text(encoding="latin-1").splitlines() if line.strip()]
    header = lines[0].split(";")
    last = lines[-1].split(";")
    return int(last[header.index("SuccessfulCall(C)")])


def test_sipp_uac_to_sipp_uas_across_sip3(
    tmp_path: Path, sipp_deployment: tuple[SystemConfig, SystemConfig, Address], systems: SystemsThread
) -> None:
    a, _, uas_address = sipp_deployment
    assert a.is_proxy.internal_listen.transport == "tcp"
    assert a.is_proxy.internal_listen.host == "127.0.10.1"  # the UAS scenario checks it never reaches B
    uac_address = Address("tcp", a.is_proxy.internal_listen.host, free_port(a.is_proxy.internal_listen.host))
    work = tmp_path / "sipp"
    (work / "uas").mkdir(parents=True)
    (work / "uac").mkdir(parents=True)

    uas = subprocess.Popen(
        sipp_command("uas_message.xml", local=uas_address, calls=CALLS),
        cwd=work / "uas",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_listening(uas_address, uas)
        target = a.is_proxy.internal_listen
        uac = subprocess.run(
            sipp_command(
                "uac_message.xml",
                f"{target.host}:{target.port}",
                "-r",
                str(RATE),
                "-l",
                "50",
                local=uac_address,
                calls=CALLS,
            ),
            cwd=work / "uac",
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=SIPP_TIMEOUT + 10,
            check=False,
        )
        uas_output, _ = uas.communicate(timeout=SIPP_TIMEOUT + 10)
    finally:
        if uas.poll() is None:
            uas.kill()
            uas.wait(10)

    def report(name: str) -> str:
        logs = "\n".join(
            path.read_text(encoding="latin-1")[-3000:] for path in (work / name).glob("*errors.log")
        )
        return f"SIPp {name} errors:\n{logs}"

    assert uac.returncode == 0, report("uac") + uac.stdout.decode("latin-1")[-3000:]
    assert uas.returncode == 0, report("uas") + uas_output.decode("latin-1")[-3000:]
    # Every MESSAGE was answered 200 at the UAC and passed the checks at the UAS, exactly N of each.
    (uac_stat,) = (work / "uac").glob("*.csv")
    (uas_stat,) = (work / "uas").glob("*.csv")
    assert successful_calls(uac_stat) == CALLS
    assert successful_calls(uas_stat) == CALLS
    # -trace_err writes a log only when something unexpected arrived.
    assert not list(work.glob("*/*errors.log"))
    # The MESSAGEs and their 200s crossed SIP-3 inside TLS, through both IS proxies.
    starts = [data.split(b"\r\n", 1)[0] for data in systems.sip3]
    assert starts.count(b"MESSAGE sip:mcptt-server@b.mc.example SIP/2.0") == CALLS
    assert starts.count(b"SIP/2.0 200 OK") == CALLS
    assert len(starts) == 2 * CALLS
