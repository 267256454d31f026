"""End-to-end cost of a short-data MESSAGE over loopback, local versus across SIP-3 (real TLS).

Systems A and B of a fresh ``init_deployment`` run in this one process (``start_system`` for
each, as ``mcic run`` does); clients alice@A, alice2@A and bob@B register at their home SIP core.
Two paths are measured in the same run (ARCHITECTURE.md §5: a ratio against a reference):

* ``local`` (reference): alice → alice2, client → SIP core → MCX server → SIP core → client, never
  reaches the border (4 hops each way, TCP);
* ``crossing`` (measured): alice → bob, client → SIP core A → MCX A → IS proxy A ══ mutual TLS
  SIP-3 ══ IS proxy B → MCX B → SIP core B → client (7 hops each way).

For each path: sequential round-trip latency (``send_message`` until its 200) over N messages,
p50/p99; then throughput, K concurrent senders for a fixed duration, in completed transactions
per second, with the process CPU time (``resource.getrusage``) per transaction.  The two paths
alternate (message by message, then throughput slice by slice) so that a change in what else
the machine runs touches both alike.  Prints the crossing/local ratios and one final JSON line.
Every phase is bounded in time; systems, clients and the temporary deployment are always removed.
uvloop is used when installed (it is not a dependency); the loop that ran is printed.  ``--quick``
runs in well under 30 s.

Read the absolute figures with care: the load generator (the clients), both systems and all their
components share one event loop, hence one core, so a figure is the cost of the whole path.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib import machine
from mcinterconnect.deploy.config import SystemConfig, load_deployment
from mcinterconnect.deploy.init import init_deployment
from mcinterconnect.deploy.runner import RunningSystem, StartError, start_system
from mcinterconnect.services.client import ClientError, McClient

ALICE = "sip:alice@a.mc.example"
ALICE2 = "sip:alice2@a.mc.example"
BOB = "sip:bob@b.mc.example"
TEXT = "Fire on level 3, need support"
WARMUP_MESSAGES = 50
CLIENT_TIMEOUT = 5.0
#: Extra time a phase may take beyond its nominal length before it is cut (in-flight messages).
GRACE_SECONDS = CLIENT_TIMEOUT + 5.0


class BenchError(RuntimeError):
    """The deployment did not deliver what the benchmark measures."""


@dataclass
class Settings:
    latency_messages: int
    latency_max_seconds: float
    throughput_seconds: float
    senders: int
    #: The throughput phase of each path is cut in this many slices, alternating the paths.
    rounds: int


@dataclass
class PathResult:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    latency_failures: int = 0
    latency_cpu_s: float = 0.0
    throughput_completed: int = 0
    throughput_failures: int = 0
    throughput_wall_s: float = 0.0
    throughput_cpu_s: float = 0.0
    loaded_latencies_ms: list[float] = field(default_factory=list)

    def percentile(self, values: list[float], fraction: float) -> float:
        if not values:
            return float("nan")
        ordered = sorted(values)
        index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
        return ordered[index]

    @property
    def p50_ms(self) -> float:
        return self.percentile(self.latencies_ms, 0.50)

    @property
    def p99_ms(self) -> float:
        return self.percentile(self.latencies_ms, 0.99)

    @property
    def messages_per_s(self) -> float:
        return self.throughput_completed / self.throughput_wall_s if self.throughput_wall_s else 0.0

    @property
    def cpu_us_per_message(self) -> float:
        return 1e6 * self.throughput_cpu_s / self.throughput_completed if self.throughput_completed else 0.0

    @property
    def messages_per_cpu_s(self) -> float:
        """Throughput per CPU second the process got: unlike messages/s, not lowered by other
        work on the machine taking the CPU away."""
        return self.throughput_completed / self.throughput_cpu_s if self.throughput_cpu_s else 0.0

    @property
    def cpu_share(self) -> float:
        """Process CPU seconds per wall second during the throughput phase (1.0 = one core busy)."""
        return self.throughput_cpu_s / self.throughput_wall_s if self.throughput_wall_s else 0.0

    def figures(self) -> dict[str, float | int]:
        return {
            "latency_n": len(self.latencies_ms),
            "latency_failures": self.latency_failures,
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "mean_ms": round(statistics.fmean(self.latencies_ms), 3) if self.latencies_ms else float("nan"),
            "sequential_cpu_us_per_message": round(1e6 * self.latency_cpu_s / len(self.latencies_ms), 1)
            if self.latencies_ms
            else float("nan"),
            "throughput_messages_per_s": round(self.messages_per_s, 1),
            "throughput_completed": self.throughput_completed,
            "throughput_failures": self.throughput_failures,
            "throughput_wall_s": round(self.throughput_wall_s, 3),
            "cpu_us_per_message": round(self.cpu_us_per_message, 1),
            "messages_per_cpu_s": round(self.messages_per_cpu_s, 1),
            "cpu_share": round(self.cpu_share, 3),
            "loaded_p50_ms": round(self.percentile(self.loaded_latencies_ms, 0.50), 3),
            "loaded_p99_ms": round(self.percentile(self.loaded_latencies_ms, 0.99), 3),
        }


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ------------------------------------------------------------------------ the deployment
@dataclass
class Deployment:
    systems: list[RunningSystem] = field(default_factory=list)
    clients: dict[str, McClient] = field(default_factory=dict)
    drains: list[asyncio.Task[None]] = field(default_factory=list)
    transport_events: list[dict[str, object]] = field(default_factory=list)

    async def close(self) -> None:
        for task in self.drains:
            task.cancel()
        for task in self.drains:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for client in self.clients.values():
            await client.close()
        for system in self.systems:
            await system.close()


async def _drain(client: McClient) -> None:
    """Empty a receiving client's inbox so that it does not grow during the run."""
    while True:
        await client.inbox.get()


def _client(user: str, config: SystemConfig) -> McClient:
    return McClient(
        user,
        config.sip_core.client_listen,
        mcx_psi=config.mcx_server.psi,
        listen_host=config.sip_core.client_listen.host,
        timeout=CLIENT_TIMEOUT,
    )


async def start(directory: Path, deployment: Deployment) -> None:
    init_deployment(directory)
    config_a, config_b = load_deployment(directory).systems
    for config in (config_a, config_b):
        deployment.systems.append(await start_system(config, log=deployment.transport_events.append))
    for user, config in ((ALICE, config_a), (ALICE2, config_a), (BOB, config_b)):
        client = _client(user, config)
        deployment.clients[user] = client
        await client.start()
        response = await client.register()
        if response.status != 200:
            raise BenchError(f"REGISTER {user}: {response.status} {response.reason}")
    for user in (ALICE2, BOB):
        deployment.drains.append(asyncio.create_task(_drain(deployment.clients[user])))


# ------------------------------------------------------------------------------ phases
async def _send(sender: McClient, target: str) -> float | None:
    """One transaction; its round-trip time in ms, or None if it did not end with a 200."""
    started = time.perf_counter()
    try:
        response = await sender.send_message(target, TEXT)
    except ClientError:
        return None
    if response.status != 200:
        return None
    return 1000.0 * (time.perf_counter() - started)


async def warm_up(sender: McClient, target: str) -> None:
    """Open every connection on the path (the TLS handshake of SIP-3 among them) before timing."""
    for _ in range(WARMUP_MESSAGES):
        if await _send(sender, target) is None:
            raise BenchError(f"warm-up MESSAGE to {target} failed")


#: A path measured and the target whose messages take it.
Route = tuple[PathResult, str]


async def sequential(paths: list[Route], sender: McClient, settings: Settings) -> None:
    """One message at a time, alternating the paths, so that both see the same machine."""
    deadline = time.monotonic() + settings.latency_max_seconds
    for _ in range(settings.latency_messages):
        if time.monotonic() > deadline:
            break
        for result, target in paths:
            cpu = cpu_seconds()
            elapsed = await _send(sender, target)
            result.latency_cpu_s += cpu_seconds() - cpu
            if elapsed is None:
                result.latency_failures += 1
            else:
                result.latencies_ms.append(elapsed)


async def concurrent(result: PathResult, sender: McClient, target: str, settings: Settings) -> None:
    """One slice of the throughput phase: ``senders`` tasks send back to back until it ends."""
    stop = time.monotonic() + settings.throughput_seconds / settings.rounds

    async def one_sender() -> None:
        while time.monotonic() < stop:
            elapsed = await _send(sender, target)
            if elapsed is None:
                result.throughput_failures += 1
            else:
                result.throughput_completed += 1
                result.loaded_latencies_ms.append(elapsed)

    cpu = cpu_seconds()
    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(settings.senders):
            group.create_task(one_sender())
    result.throughput_wall_s += time.perf_counter() - started
    result.throughput_cpu_s += cpu_seconds() - cpu


async def _bounded(work: Awaitable[None], seconds: float, what: str) -> None:
    try:
        async with asyncio.timeout(seconds):
            await work
    except TimeoutError:
        raise BenchError(f"{what} did not finish within {seconds:g} s") from None


async def measure(directory: Path, settings: Settings) -> tuple[PathResult, PathResult, Counter[str]]:
    deployment = Deployment()
    local, crossing = PathResult("local"), PathResult("crossing")
    try:
        await _bounded(start(directory, deployment), 30.0, "start-up")
        alice = deployment.clients[ALICE]
        paths = [(local, ALICE2), (crossing, BOB)]
        for _, target in paths:
            await _bounded(warm_up(alice, target), 30.0, f"warm-up to {target}")
        print(f"  sequential, {settings.latency_messages} messages per path, alternating ...", flush=True)
        phase_bound = 2 * settings.latency_max_seconds + GRACE_SECONDS
        await _bounded(sequential(paths, alice, settings), phase_bound, "sequential phase")
        slice_bound = settings.throughput_seconds / settings.rounds + GRACE_SECONDS
        for number in range(settings.rounds):
            for result, target in paths:
                print(
                    f"  throughput round {number + 1}/{settings.rounds}, {settings.senders} senders, "
                    f"{result.name} ...",
                    flush=True,
                )
                await _bounded(concurrent(result, alice, target, settings), slice_bound, "throughput phase")
    finally:
        await deployment.close()
    events = Counter(str(event.get("event", "?")) for event in deployment.transport_events)
    return local, crossing, events


# ---------------------------------------------------------------------------- output
def report(
    local: PathResult, crossing: PathResult, events: Counter[str], settings: Settings, loop: str
) -> dict[str, Any]:
    def ratio(numerator: float, denominator: float) -> float:
        return round(numerator / denominator, 3) if denominator else float("nan")

    def sequential_cpu(result: PathResult) -> float:
        return 1e6 * result.latency_cpu_s / max(1, len(result.latencies_ms))

    def loaded(result: PathResult, fraction: float) -> float:
        return result.percentile(result.loaded_latencies_ms, fraction)

    rows = [
        ("sequential p50 (ms)", local.p50_ms, crossing.p50_ms),
        ("sequential p99 (ms)", local.p99_ms, crossing.p99_ms),
        ("CPU per message, sequential (µs)", sequential_cpu(local), sequential_cpu(crossing)),
        (f"throughput, {settings.senders} senders (msg/s)", local.messages_per_s, crossing.messages_per_s),
        ("loaded p50 (ms)", loaded(local, 0.50), loaded(crossing, 0.50)),
        ("loaded p99 (ms)", loaded(local, 0.99), loaded(crossing, 0.99)),
        ("CPU per message, loaded (µs)", local.cpu_us_per_message, crossing.cpu_us_per_message),
        ("messages per CPU second, loaded", local.messages_per_cpu_s, crossing.messages_per_cpu_s),
        ("process CPU share, loaded", local.cpu_share, crossing.cpu_share),
    ]
    print(f"\nMESSAGE transactions, event loop {loop}")
    print(f"{'':<36} {'local':>10} {'crossing':>10} {'ratio':>7}")
    for label, reference, measured in rows:
        print(f"{label:<36} {reference:>10.2f} {measured:>10.2f} {ratio(measured, reference):>7.2f}")
    failures = local.latency_failures + local.throughput_failures
    failures += crossing.latency_failures + crossing.throughput_failures
    print(f"failed transactions: {failures}; transport events: {dict(events)}")
    return {
        "bench": "message_path",
        "loop": loop,
        "settings": {
            "latency_messages": settings.latency_messages,
            "throughput_seconds": settings.throughput_seconds,
            "senders": settings.senders,
            "rounds": settings.rounds,
        },
        "machine": machine(),
        "local": local.figures(),
        "crossing": crossing.figures(),
        "ratios": {
            "throughput_crossing_over_local": ratio(crossing.messages_per_s, local.messages_per_s),
            "throughput_per_cpu_s_crossing_over_local": ratio(
                crossing.messages_per_cpu_s, local.messages_per_cpu_s
            ),
            "p50_crossing_over_local": ratio(crossing.p50_ms, local.p50_ms),
            "p99_crossing_over_local": ratio(crossing.p99_ms, local.p99_ms),
            "cpu_per_message_crossing_over_local": ratio(
                crossing.cpu_us_per_message, local.cpu_us_per_message
            ),
        },
        "failures": failures,
        "transport_events": dict(events),
    }


def _loop_factory() -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None, f"asyncio (default {asyncio.get_event_loop_policy().__class__.__name__})"
    return uvloop.new_event_loop, f"uvloop {uvloop.__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run (< 30 s)")
    parser.add_argument("--messages", type=int, default=2000, help="sequential messages per path")
    parser.add_argument("--seconds", type=float, default=5.0, help="throughput phase length per path")
    parser.add_argument("--senders", type=int, default=16, help="concurrent senders in the throughput phase")
    parser.add_argument(
        "--rounds", type=int, default=5, help="alternating slices of each path's throughput phase"
    )
    args = parser.parse_args(argv)
    if args.quick:
        settings = Settings(
            latency_messages=200, latency_max_seconds=3.0, throughput_seconds=2.0, senders=16, rounds=2
        )
    else:
        settings = Settings(
            latency_messages=max(1, args.messages),
            latency_max_seconds=30.0,
            throughput_seconds=min(max(0.5, args.seconds), 60.0),
            senders=min(max(1, args.senders), 200),
            rounds=min(max(1, args.rounds), 20),
        )
    factory, loop = _loop_factory()
    directory = Path(tempfile.mkdtemp(prefix="mcic-bench-path-"))
    load_at_start = round(os.getloadavg()[0], 2)
    print(f"message path over loopback (TLS on SIP-3), event loop {loop}", flush=True)
    print(f"load average (1 min) before the run: {load_at_start} on {os.cpu_count()} CPUs", flush=True)
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            local, crossing, events = runner.run(measure(directory / "deployment", settings))
    except (BenchError, StartError, ClientError) as error:
        print(f"message_path: {error}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    figures = report(local, crossing, events, settings, loop)
    figures["loadavg_1min_at_start"] = load_at_start
    print(json.dumps(figures, separators=(",", ":")))
    return 0 if figures["failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
