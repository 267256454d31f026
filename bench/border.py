"""Side-by-side border benchmark: our IS proxy pair against a Kamailio pair, driven by SIPp.

Every subject is a pair of border elements on loopback, the same way round:

    SIPp UAC --TCP--> border A --mutual TLS (SIP-3)--> border B --TCP--> SIPp UAS

Subjects (``--subjects``):

* ``ours-implicit``  ``mcic init`` + two ``mcic run DIR --system A|B`` processes (one per border,
  as each Kamailio of the pair is its own instance); implicit authentication;
* ``ours-explicit``  ``mcic init --explicit``: every initial request carries an ``MC-EAR`` header.
  SIPp cannot sign, so one EAR per call is signed just before each SIPp run with the deployment's
  own KMS keys (A's MCX server identity, each EAR a fresh ID and the time its call is due) and
  handed to SIPp as an injection file (``-inf``, ``[field0]``); B's border checks each and claims
  its ID in the replay store (SQLite, the ``mcic init`` default);
* ``ours-spk``  ``mcic init --spk``: the MC bodies on SIP-3 encrypted and signed with the link SPK;
* ``ours-implicit-w2``  ``ours-implicit`` with ``mcic run --workers 2`` (skipped, with the reason
  printed, when ``mcic run`` has no ``--workers``);
* ``kamailio-topos``  Kamailio K-A and K-B (``bench/kamailio/kamailio.cfg.in``): tm stateful
  forwarding with Record-Route, mutual TLS 1.2+ between them, ``topos`` on both with its data in a
  real ``redis-server`` (``topos_redis`` + ``ndb_redis``, one database per instance);
* ``kamailio-plain``  the same without ``topos`` (no Redis);
* ``direct``  SIPp UAC straight to the UAS: the load generator's own ceiling (full runs only).

Scenarios (``--scenarios``, SIPp XML in ``bench/sipp/``): ``message`` (MC short data MESSAGE with
an mcptt-info body, 200) and ``call`` (private call: INVITE with SDP + mcptt-info, 200, ACK, BYE,
200, no hold).  Both satisfy our exit and entry policy (target of B, calling user and asserted
identity of A); the Kamailio pair forwards them unchanged.

The load: ``--uacs`` SIPp UACs in parallel (default 4), each with its own TCP connection to
border A and an equal share of the rate, as several internal servers would be (and so that
``SO_REUSEPORT`` workers and Kamailio's TCP workers each get connections); one SIPp UAS.

Measurements, per subject and scenario:

* **max rate**: the highest rate (calls/s; for ``message`` one call is one MESSAGE) with < 0.1 %
  failed calls.  Rates step up geometrically (x2) until a step fails, then bisect geometrically
  between the last good and the first bad rate.  A step sends ``rate x seconds`` calls; it passes
  when at most 0.1 % of them failed (any answer but 200, or none within ``RECV_TIMEOUT_MS``) *and*
  SIPp got through them within 5 % + 0.1 s of the nominal time (a border that falls behind makes
  SIPp's concurrent-call cap hold new calls back).
* **added latency per crossing** at half the max rate: SIPp's own response times have a 1 ms
  resolution, so the UAC runs with ``-trace_msg`` and the response time of each transaction is
  taken from its microsecond timestamps: MESSAGE -> 200 (``message``), INVITE -> 200 (``call``).
  The same run is made straight UAC -> UAS at the same rate.  A transaction crosses the border
  twice (the request A -> B, the response B -> A; each crossing goes through both border
  elements), so: ``added per crossing = (percentile through the border - same percentile
  direct) / 2``, for p50 and p99.
* **CPU and memory** of the border processes (both elements; with topos also redis-server):
  user + system CPU seconds from ``/proc/PID/stat``, over the whole subject and per call of the
  half-rate run; peak of the summed RSS (``VmRSS``) and of the summed PSS (``smaps_rollup``;
  Kamailio's shared memory counted once), sampled every 0.2 s.

``--rates R1,R2,...``: no ramp; each subject and scenario runs at each of these fixed rates for
``--seconds`` (default 10) and reports latency and CPU per call, to show how the added latency
depends on load (at a low rate: the work per message; near the top: queueing).

``--soak SECONDS``: after the ramps, each subject runs its first scenario at half its max rate for
SECONDS; RSS at the start (after 10 % of the time) and at the end, and the drift in %.

The LAST line printed is one JSON object: ``ours_cps``, ``kamailio_cps`` (with topos),
``kamailio_plain_cps``, ``ratio`` (ours / Kamailio with topos), ``plain_ratio``, ``explicit_ratio``
(ours explicit / Kamailio with topos), ``spk_ratio``, ``workers2_speedup`` (null if not measured),
``p99_ms`` (ours implicit: added p99 per crossing at half rate, call scenario),
``ours_mps``, ``kamailio_mps``, ``kamailio_plain_mps``, the targets and every measured figure.

Needs SIPp (Debian ``sip-tester``), Kamailio with its TLS and Redis modules (``kamailio``,
``kamailio-tls-modules``, ``kamailio-redis-modules``) and ``redis-server``; ``make bench``
installs them.  Everything listens on loopback; every process started is stopped (process
groups) and every SIPp run is bounded in time.  ``--quick`` takes under 5 minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SIPP_DIR = BENCH / "sipp"
KAMAILIO_DIR = BENCH / "kamailio"


def _kamailio_modules() -> Path:
    """Where Debian's Kamailio keeps its modules (the multiarch folder of this machine)."""
    found = sorted(Path("/usr/lib").glob("*/kamailio/modules"))
    return found[0] if found else Path("/usr/lib/kamailio/modules")


KAMAILIO_MODULES = _kamailio_modules()

HOST_A = "127.0.10.1"  # A's internal side: the UAC, A's internal listener
HOST_B = "127.0.20.1"  # B's internal side: the UAS
BORDER_HOST = "127.0.0.1"  # SIP-3 listeners

SUBJECTS = (
    "kamailio-topos",
    "kamailio-plain",
    "ours-implicit",
    "ours-explicit",
    "ours-spk",
    "ours-implicit-w2",
    "direct",
)
QUICK_SUBJECTS = SUBJECTS[:-1]
SCENARIOS = ("message", "call")
#: Allowed failed calls in a step: strictly fewer than 0.1 %.
FAILURE_LIMIT = 0.001
#: A call fails when an expected answer does not come within this time.
RECV_TIMEOUT_MS = 2000
#: A step passes only if SIPp finished its calls within nominal time x this + STEP_SLACK_S.
STEP_TIME_FACTOR = 1.05
STEP_SLACK_S = 0.1
#: SIPp's cap on calls in progress: this many seconds' worth of calls (a border that queues more
#: makes SIPp hold new calls back, and the step runs late).
CONCURRENCY_SECONDS = 0.5
MAX_RATE = 12800.0
START_RATE = {"message": 100.0, "call": 50.0}

EAR_MARK = "MC-EAR: [field0]"
#: Kamailio worker processes per instance (``children``, ``tcp_children``); env MCIC_BENCH_KAMAILIO_CHILDREN.
KAMAILIO_CHILDREN = int(os.environ.get("MCIC_BENCH_KAMAILIO_CHILDREN", "2"))
#: Kamailio shared memory per instance, MB (``-m``); env MCIC_BENCH_KAMAILIO_SHM_MB.  64 MB (the
#: packaged default) runs out at about 1,800 transactions in flight: tm keeps each one for its
#: wait timer (5 s), and the tls module wants headroom per connection.  Out of shared memory,
#: Kamailio answers 500 or drops calls, which a ramp would take for its ceiling.
KAMAILIO_SHM_MB = int(os.environ.get("MCIC_BENCH_KAMAILIO_SHM_MB", "1024"))


class BenchError(RuntimeError):
    """A benchmark that cannot run or went wrong (one line)."""


# ---------------------------------------------------------------------------------- tools
#: Each tool the benchmark runs, and the Debian package that provides it.
TOOLS = {"sipp": "sip-tester", "kamailio": "kamailio", "redis-server": "redis-server"}
#: Kamailio modules outside the main package: module file -> Debian package.
KAMAILIO_EXTRA_MODULES = {"tls.so": "kamailio-tls-modules", "topos_redis.so": "kamailio-redis-modules"}


def missing_tools(subjects: Sequence[str]) -> list[str]:
    """One line per missing tool the chosen subjects need, naming its Debian package."""
    wanted = ["sipp"]
    if any(subject.startswith("kamailio") for subject in subjects):
        wanted.append("kamailio")
    if "kamailio-topos" in subjects:
        wanted.append("redis-server")
    missing = [
        f"{tool} not found (install the Debian package {TOOLS[tool]})"
        for tool in wanted
        if shutil.which(tool) is None
    ]
    if "kamailio" in wanted and shutil.which("kamailio") is not None:
        for module, package in KAMAILIO_EXTRA_MODULES.items():
            if module == "topos_redis.so" and "kamailio-topos" not in subjects:
                continue
            if not (KAMAILIO_MODULES / module).exists():
                missing.append(f"Kamailio module {module} not found (install the Debian package {package})")
    return missing


# ------------------------------------------------------------------------- SIPp results
@dataclass(frozen=True)
class SippStats:
    """The cumulative figures of a SIPp run, from the last line of its ``-trace_stat`` file."""

    created: int
    successful: int
    failed: int
    elapsed: float  # seconds from SIPp's start to its last statistics dump


def parse_stat_csv(text: str) -> SippStats:
    """Read the last line of a SIPp ``-trace_stat`` CSV (``;``-separated, header first)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        raise BenchError("SIPp statistics file has no data line")
    header = lines[0].rstrip(";").split(";")
    last = lines[-1].split(";")
    row = dict(zip(header, last, strict=False))
    try:
        start = float(row["StartTime"].split("\t")[-1])
        now = float(row["CurrentTime"].split("\t")[-1])
        return SippStats(
            created=int(row["TotalCallCreated"]),
            successful=int(row["SuccessfulCall(C)"]),
            failed=int(row["FailedCall(C)"]),
            elapsed=round(now - start, 6),
        )
    except (KeyError, ValueError) as error:
        raise BenchError(f"SIPp statistics file unreadable: {error}") from None


def step_passes(stats: SippStats, *, calls: int, rate: float) -> bool:
    """A ramp step holds: every call made, fewer than 0.1 % failed, on time (module docstring)."""
    allowed = math.floor(calls * FAILURE_LIMIT)
    nominal = calls / rate
    return (
        stats.created >= calls
        and stats.successful >= calls - allowed
        and stats.failed <= allowed
        and stats.elapsed <= nominal * STEP_TIME_FACTOR + STEP_SLACK_S
    )


_BLOCK = re.compile(r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n", re.MULTILINE)


@dataclass(frozen=True)
class LoggedMessage:
    at: float  # seconds since the first block of the log
    sent: bool
    start_line: str
    call_id: str
    cseq: str


def parse_message_log(text: str) -> list[LoggedMessage]:
    """The messages of a SIPp ``-trace_msg`` log: time (µs resolution), direction, start line,
    Call-ID and CSeq.  Blocks that are not SIP messages are skipped."""
    found: list[LoggedMessage] = []
    origin: datetime.datetime | None = None
    marks = list(_BLOCK.finditer(text))
    for index, mark in enumerate(marks):
        end = marks[index + 1].start() if index + 1 < len(marks) else len(text)
        block = text[mark.end() : end]
        stamp = datetime.datetime.strptime(mark.group(1), "%Y-%m-%d %H:%M:%S.%f")
        title, _, message = block.partition("\n")
        if " sent " in title:
            sent = True
        elif " received " in title:
            sent = False
        else:
            continue
        lines = message.lstrip("\r\n").splitlines()
        if not lines:
            continue
        call_id = cseq = ""
        for line in lines[1:]:
            if not line.strip():
                break
            name, _, value = line.partition(":")
            key = name.strip().lower()
            if key in ("call-id", "i"):
                call_id = value.strip()
            elif key == "cseq":
                cseq = " ".join(value.split())
        origin = origin or stamp
        at = (stamp - origin).total_seconds()  # exact to the microsecond, unlike an epoch float
        found.append(LoggedMessage(at, sent, lines[0].strip(), call_id, cseq))
    return found


def response_times(messages: Sequence[LoggedMessage], method: str) -> list[float]:
    """Milliseconds from each ``method`` request sent to its first final response received."""
    pending: dict[tuple[str, str], float] = {}
    times: list[float] = []
    for message in messages:
        key = (message.call_id, message.cseq)
        if message.sent and message.start_line.startswith(f"{method} "):
            pending.setdefault(key, message.at)
        elif not message.sent and message.start_line.startswith("SIP/2.0 "):
            try:
                status = int(message.start_line.split()[1])
            except (IndexError, ValueError):
                continue
            if status >= 200 and key in pending:
                times.append(1e3 * (message.at - pending.pop(key)))
    return times


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank on sorted values)."""
    if not values:
        raise BenchError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def added_per_crossing(through: float, direct: float) -> float:
    """A transaction crosses the border twice (request A -> B, response B -> A)."""
    return (through - direct) / 2


# --------------------------------------------------------------------------------- ramp
@dataclass(frozen=True)
class Step:
    rate: float
    passed: bool
    detail: str = ""


@dataclass
class Ramp:
    max_rate: float | None
    steps: list[Step] = field(default_factory=list)


def find_max_rate(
    probe: Callable[[float], Step],
    *,
    start: float,
    factor: float = 2.0,
    bisect_steps: int = 2,
    max_rate: float = MAX_RATE,
    min_rate: float = 5.0,
) -> Ramp:
    """The highest rate at which ``probe`` passes: geometric steps up from ``start`` (down, if
    ``start`` fails) until the outcome changes, then ``bisect_steps`` geometric bisections.
    ``max_rate=None`` when even ``min_rate`` fails; a rate is never probed twice."""
    ramp = Ramp(None)
    tried: dict[float, bool] = {}

    def run(rate: float) -> bool:
        rate = float(round(rate))
        if rate not in tried:
            step = probe(rate)
            ramp.steps.append(step)
            tried[rate] = step.passed
        return tried[rate]

    good: float | None = None
    bad: float | None = None
    rate = float(round(start))
    if run(rate):
        good = rate
        while good * factor <= max_rate:
            rate = float(round(good * factor))
            if not run(rate):
                bad = rate
                break
            good = rate
    else:
        bad = rate
        while bad / factor >= min_rate:
            rate = float(round(bad / factor))
            if run(rate):
                good = rate
                break
            bad = rate
    if good is None:
        return ramp
    if bad is not None:
        for _ in range(bisect_steps):
            middle = float(round(math.sqrt(good * bad)))
            if middle <= good or middle >= bad:
                break
            if run(middle):
                good = middle
            else:
                bad = middle
    ramp.max_rate = good
    return ramp


# ---------------------------------------------------------------------- process handling
def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _proc_address(text: str) -> str:
    hexhost, hexport = text.split(":")
    octets = [str(int(hexhost[i : i + 2], 16)) for i in range(6, -1, -2)]
    return f"{'.'.join(octets)}:{int(hexport, 16)}"


def listening(host: str, port: int) -> bool:
    """Whether a TCP socket listens on host:port (the kernel's socket table; no connection made)."""
    wanted = f"{host}:{port}"
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            parts = line.split()
            if parts[3] == "0A" and _proc_address(parts[1]) == wanted:
                return True
    return False


class Service:
    """A process started in its own process group, stopped (TERM, then KILL) by ``stop``."""

    def __init__(self, name: str, command: list[str], *, log: Path, cwd: Path | None = None) -> None:
        self.name = name
        self.command = command
        self.log_path = log
        self._log = log.open("wb")
        try:
            self.process = subprocess.Popen(
                command,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError:
            self._log.close()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def wait_listening(self, addresses: Sequence[tuple[str, int]], seconds: float = 20.0) -> None:
        deadline = time.monotonic() + seconds
        while True:
            if not self.alive():
                raise BenchError(f"{self.name} exited with {self.process.returncode}: {self.tail()}")
            if all(listening(host, port) for host, port in addresses):
                return
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name} not listening on {addresses} after {seconds:.0f} s")
            time.sleep(0.05)

    def stop(self) -> None:
        try:
            if self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(5)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait(5)
            # Children of the group that outlived their leader.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        finally:
            self._log.close()


def descendants(roots: Sequence[int]) -> list[int]:
    """``roots`` and all their live descendant processes."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid in found or not Path(f"/proc/{pid}").exists():
            continue
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds of ``pids`` (live processes; reaped children included)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            # utime, stime, cutime, cstime: fields 14-17 of proc(5), here offset by the 2 read away.
            total += sum(int(value) for value in fields[11:15]) / _TICKS
    return total


def memory_kib(pids: Sequence[int]) -> tuple[int, int]:
    """Summed RSS and PSS (KiB) of ``pids``."""
    rss = pss = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
    return rss, pss


class Monitor:
    """CPU and memory of a subject's processes: peaks sampled every ``interval`` in a thread."""

    def __init__(self, roots: Callable[[], list[int]], interval: float = 0.2) -> None:
        self._roots = roots
        self.interval = interval
        self.peak_rss_kib = 0
        self.peak_pss_kib = 0
        self.last_rss_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="monitor", daemon=True)
        self._pids: list[int] = []

    def pids(self) -> list[int]:
        self._pids = descendants(self._roots())
        return self._pids

    def cpu(self) -> float:
        return cpu_seconds(self.pids())

    def sample(self) -> int:
        rss, pss = memory_kib(self.pids())
        self.last_rss_kib = rss
        self.peak_rss_kib = max(self.peak_rss_kib, rss)
        self.peak_pss_kib = max(self.peak_pss_kib, pss)
        return rss

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> Monitor:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


# ------------------------------------------------------------------------------- SIPp runs
def scenario_file(work: Path, name: str, *, with_ear: bool) -> Path:
    """The UAC/UAS scenario ``name`` for this run: the MC-EAR line kept only ``with_ear``."""
    text = (SIPP_DIR / name).read_text(encoding="iso-8859-1")
    if EAR_MARK in text and not with_ear:
        text = "\n".join(line for line in text.splitlines() if line.strip() != EAR_MARK) + "\n"
    path = work / name
    path.write_text(text, encoding="iso-8859-1")
    return path


class Uas:
    """A SIPp UAS on HOST_B for one subject and scenario (no call count: stopped at the end)."""

    def __init__(self, work: Path, scenario: str) -> None:
        self.port = free_port(HOST_B)
        self.dir = work / f"uas-{scenario}"
        self.dir.mkdir(parents=True, exist_ok=True)
        command = [
            "sipp",
            "-sf",
            str(scenario_file(self.dir, f"uas_{scenario}.xml", with_ear=False)),
            "-t",
            "t1",
            "-i",
            HOST_B,
            "-p",
            str(self.port),
            "-nostdin",
            "-recv_timeout",
            "10000",
            "-max_socket",
            "10000",
        ]
        self.service = Service(f"SIPp UAS ({scenario})", command, log=self.dir / "uas.log", cwd=self.dir)
        try:
            self.service.wait_listening([(HOST_B, self.port)], 10)
        except BaseException:
            self.service.stop()
            raise

    def check(self) -> None:
        if not self.service.alive():
            raise BenchError(f"SIPp UAS exited: {self.service.tail()}")

    def stop(self) -> None:
        self.service.stop()


def combine_stats(parts: Sequence[SippStats]) -> SippStats:
    """The figures of parallel UACs as one run: counts summed, the longest elapsed time."""
    return SippStats(
        created=sum(part.created for part in parts),
        successful=sum(part.successful for part in parts),
        failed=sum(part.failed for part in parts),
        elapsed=max((part.elapsed for part in parts), default=0.0),
    )


@dataclass(frozen=True)
class UacRun:
    stats: SippStats
    directories: list[Path]
    wall: float


class Driver:
    """Runs the SIPp UACs of one subject and scenario against ``target``: ``uacs`` SIPp processes
    in parallel, each with its own TCP connection, rate / uacs and calls / uacs."""

    def __init__(
        self,
        work: Path,
        scenario: str,
        target: tuple[str, int],
        *,
        uacs: int = 1,
        ears: Callable[[int, float, float], list[str]] | None = None,
    ) -> None:
        self.work = work
        self.scenario = scenario
        self.target = target
        self.uacs = uacs
        self.ears = ears
        self.runs = 0

    def _command(self, directory: Path, rate: float, calls: int, timeout: float, trace: bool) -> list[str]:
        scenario = scenario_file(directory, f"uac_{self.scenario}.xml", with_ear=self.ears is not None)
        command = [
            "sipp",
            f"{self.target[0]}:{self.target[1]}",
            "-sf",
            str(scenario),
            "-t",
            "t1",
            "-i",
            HOST_A,
            "-p",
            str(free_port(HOST_A)),
            "-r",
            f"{rate:g}",
            "-m",
            str(calls),
            "-l",
            str(int(rate * CONCURRENCY_SECONDS) + 20),
            "-recv_timeout",
            str(RECV_TIMEOUT_MS),
            "-timeout",
            f"{timeout:.0f}s",
            "-nostdin",
            "-trace_stat",
            "-fd",
            "1",
            "-max_socket",
            "10000",
        ]
        if trace:
            command.append("-trace_msg")
        if self.ears is not None:
            values = self.ears(calls, rate, time.time() + 0.2)
            inject = directory / "ears.csv"
            inject.write_text("SEQUENTIAL\n" + "".join(f"{value};\n" for value in values), encoding="ascii")
            command += ["-inf", str(inject)]
        return command

    def run(self, rate: float, calls: int, *, trace_messages: bool = False) -> UacRun:
        self.runs += 1
        each_rate = rate / self.uacs
        each_calls = max(1, calls // self.uacs)
        timeout = each_calls / each_rate * 2 + 10
        directories: list[Path] = []
        commands: list[list[str]] = []
        for index in range(self.uacs):
            directory = self.work / f"uac-{self.scenario}-{self.runs:03d}-{rate:g}-{index}"
            directory.mkdir(parents=True)
            directories.append(directory)
            commands.append(self._command(directory, each_rate, each_calls, timeout, trace_messages))
        started = time.monotonic()
        processes: list[subprocess.Popen[bytes]] = []
        try:
            for command, directory in zip(commands, directories, strict=True):
                processes.append(
                    subprocess.Popen(
                        command,
                        cwd=directory,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=(directory / "stderr.txt").open("wb"),
                        start_new_session=True,
                    )
                )
            for process in processes:
                try:
                    process.wait(max(1.0, timeout + 15 - (time.monotonic() - started)))
                except subprocess.TimeoutExpired:
                    raise BenchError(f"SIPp UAC did not end within {timeout + 15:.0f} s") from None
        finally:
            for process in processes:
                if process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait(5)
                if process.stderr is not None:
                    process.stderr.close()
        wall = time.monotonic() - started
        parts = []
        for process, directory in zip(processes, directories, strict=True):
            stat_files = list(directory.glob("*_.csv"))
            if not stat_files:
                error = (directory / "stderr.txt").read_text("utf-8", "replace").strip().splitlines()
                raise BenchError(
                    f"SIPp UAC exited {process.returncode} without statistics: {error[-1:] or ''}"
                )
            parts.append(parse_stat_csv(stat_files[0].read_text(encoding="latin-1")))
        return UacRun(combine_stats(parts), directories, wall)

    def transaction_times(self, run: UacRun) -> list[float]:
        method = "MESSAGE" if self.scenario == "message" else "INVITE"
        times: list[float] = []
        for directory in run.directories:
            logs = list(directory.glob("*_messages.log"))
            if not logs:
                raise BenchError("SIPp wrote no message log")
            times += response_times(parse_message_log(logs[0].read_text(encoding="latin-1")), method)
        return times


# ------------------------------------------------------------------------------ subjects
@dataclass
class Border:
    """A running pair of border elements: where the UAC sends, and the processes to measure."""

    target: tuple[str, int]
    roots: Callable[[], list[int]]
    ears: Callable[[int, float, float], list[str]] | None = None
    note: str = ""


def _stop_all(services: list[Service]) -> None:
    for service in reversed(services):
        with contextlib.suppress(Exception):
            service.stop()


@contextlib.contextmanager
def kamailio_pair(work: Path, uas_port: int, *, topos: bool, children: int = 2) -> Iterator[Border]:
    """K-A and K-B (and with ``topos`` a redis-server) on loopback; the UAS behind K-B."""
    from mcinterconnect.deploy.pki import create_ca, issue_certificate, write_pem, write_private_key

    work.mkdir(parents=True, exist_ok=True)
    ports = {
        "a_internal": free_port(HOST_A),
        "a_sip3": free_port(BORDER_HOST),
        "b_sip3": free_port(BORDER_HOST),
        "b_internal": free_port(HOST_B),
    }
    names = {"a": "isproxy.a.mc.example", "b": "isproxy.b.mc.example"}
    cas = {letter: create_ca(f"Bench Kamailio {letter.upper()} CA", days=30) for letter in names}
    for letter, name in names.items():
        cert, key = issue_certificate(*cas[letter], [name], common_name=name, days=30)
        write_pem(work / f"{letter}.crt", cert)
        write_private_key(work / f"{letter}.key", key)
        write_pem(work / f"{letter}-ca.crt", cas[letter][0])
    services: list[Service] = []
    try:
        redis_socket = work / "redis.sock"
        if topos:
            redis = Service(
                "redis-server",
                [
                    "redis-server",
                    "--port",
                    "0",
                    "--unixsocket",
                    str(redis_socket),
                    "--unixsocketperm",
                    "700",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(work),
                ],
                log=work / "redis.log",
            )
            services.append(redis)
            _wait_redis(redis, redis_socket)
        configs = {}
        for letter, partner in (("a", "b"), ("b", "a")):
            next_hop = (
                f"sip:{BORDER_HOST}:{ports['b_sip3']};transport=tls"
                if letter == "a"
                else f"sip:{HOST_B}:{uas_port};transport=tcp"
            )
            configs[letter] = write_kamailio_config(
                work,
                letter,
                internal=(HOST_A if letter == "a" else HOST_B, ports[f"{letter}_internal"]),
                sip3=(BORDER_HOST, ports[f"{letter}_sip3"]),
                next_hop=next_hop,
                partner_name=names[partner],
                ca_list=work / f"{partner}-ca.crt",
                topos=topos,
                redis_socket=redis_socket,
                children=children,
            )
        for letter in ("b", "a"):
            check_kamailio_config(configs[letter])
            runtime = work / f"run-{letter}"
            runtime.mkdir(exist_ok=True)
            service = Service(
                f"Kamailio K-{letter.upper()}",
                [
                    "kamailio",
                    "-DD",
                    "-E",
                    "-f",
                    str(configs[letter]),
                    "-Y",
                    str(runtime),
                    "-P",
                    str(runtime / "kamailio.pid"),
                    "-m",
                    str(KAMAILIO_SHM_MB),
                    "-M",
                    "16",
                ],
                log=work / f"kamailio-{letter}.log",
            )
            services.append(service)
            service.wait_listening(
                [
                    (HOST_A if letter == "a" else HOST_B, ports[f"{letter}_internal"]),
                    (BORDER_HOST, ports[f"{letter}_sip3"]),
                ]
            )

        time.sleep(0.5)  # the listeners are bound before the workers fork: let them start

        def roots() -> list[int]:
            return [service.pid for service in services]

        note = f"2 Kamailio 5.6 instances x {children} TCP workers" + (" + redis-server" if topos else "")
        yield Border((HOST_A, ports["a_internal"]), roots, note=note)
    finally:
        _stop_all(services)


def _wait_redis(service: Service, path: Path, seconds: float = 10.0) -> None:
    import redis

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not service.alive():
            raise BenchError(f"redis-server exited: {service.tail()}")
        if path.exists():
            with contextlib.suppress(redis.RedisError):
                if redis.Redis(unix_socket_path=str(path)).ping():
                    return
        time.sleep(0.05)
    raise BenchError(f"redis-server not answering on {path}")


def render_template(text: str, values: dict[str, str]) -> str:
    """Fill every ``@@NAME@@``; a placeholder left unfilled is an error."""
    for name, value in values.items():
        text = text.replace(f"@@{name}@@", value)
    left = re.findall(r"@@[A-Z_]+@@", text)
    if left:
        raise BenchError(f"template placeholders not filled: {sorted(set(left))}")
    return text


def write_kamailio_config(
    work: Path,
    letter: str,
    *,
    internal: tuple[str, int],
    sip3: tuple[str, int],
    next_hop: str,
    partner_name: str,
    ca_list: Path,
    topos: bool,
    redis_socket: Path,
    children: int = 2,
) -> Path:
    """Write K-A's or K-B's ``kamailio.cfg`` and ``tls.cfg`` from the templates; return the cfg."""
    tls = work / f"tls-{letter}.cfg"
    tls.write_text(
        render_template(
            (KAMAILIO_DIR / "tls.cfg.in").read_text(),
            {
                "CERTIFICATE": str(work / f"{letter}.crt"),
                "PRIVATE_KEY": str(work / f"{letter}.key"),
                "CA_LIST": str(ca_list),
            },
        )
    )
    config = work / f"kamailio-{letter}.cfg"
    config.write_text(
        render_template(
            (KAMAILIO_DIR / "kamailio.cfg.in").read_text(),
            {
                "DEFINES": "#!define WITH_TOPOS" if topos else "",
                "DEBUG": "-1",
                "NAME": f"K-{letter.upper()}",
                "CHILDREN": str(children),
                "INTERNAL_LISTEN": f"{internal[0]}:{internal[1]}",
                "SIP3_LISTEN": f"{sip3[0]}:{sip3[1]}",
                "MODULES": str(KAMAILIO_MODULES) + "/",
                "TLS_CONFIG": str(tls),
                "REDIS_SOCKET": str(redis_socket),
                "REDIS_DB": "1" if letter == "a" else "2",
                "PARTNER_NAME": partner_name,
                "NEXT_HOP": next_hop,
            },
        )
    )
    return config


def check_kamailio_config(config: Path) -> None:
    """``kamailio -c``: the configuration parses and every module loads."""
    done = subprocess.run(
        ["kamailio", "-c", "-f", str(config)], capture_output=True, text=True, timeout=30, check=False
    )
    if done.returncode != 0:
        lines = [line for line in (done.stdout + done.stderr).splitlines() if "ERROR" in line]
        raise BenchError(f"kamailio -c {config.name} failed: {' | '.join(lines[-3:])}")


def mcic_supports_workers() -> bool:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("mcic")), "run", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return "--workers" in done.stdout


@contextlib.contextmanager
def our_pair(
    work: Path, uas_port: int, *, explicit: bool = False, spk: bool = False, workers: int = 1
) -> Iterator[Border]:
    """``mcic init`` (with the flags) and one ``mcic run --system X`` process per system; B's
    border routes B's MCX PSI to the SIPp UAS."""
    from mcinterconnect.deploy.config import load_deployment
    from mcinterconnect.deploy.init import init_deployment

    directory = work / "deployment"
    init_deployment(directory, explicit=explicit, spk=spk)
    b_toml = directory / "b" / "system.toml"
    text = b_toml.read_text(encoding="utf-8")
    text, count = re.subn(
        r'^routes = \{ "(sip:mcptt-server@b\.mc\.example)" = "[^"]+" \}$',
        rf'routes = {{ "\1" = "tcp://{HOST_B}:{uas_port}" }}',
        text,
        flags=re.MULTILINE,
    )
    if count != 1:
        raise BenchError("b/system.toml: the is_proxy.routes line was not found")
    b_toml.write_text(text, encoding="utf-8")
    deployment = load_deployment(directory)
    a, b = deployment.systems
    if b.is_proxy.routes[b.mcx_server.psi].port != uas_port:
        raise BenchError("b/system.toml: route to the UAS not taken")
    mcic = str(Path(sys.executable).with_name("mcic"))
    services: list[Service] = []
    try:
        for config in (b, a):
            command = [mcic, "run", str(directory), "--system", config.system.name]
            if workers > 1:
                command += ["--workers", str(workers)]
            service = Service(
                f"mcic run --system {config.system.name}",
                command,
                log=work / f"mcic-{config.system.name}.log",
            )
            services.append(service)
            service.wait_listening(
                [
                    (config.is_proxy.internal_listen.host, config.is_proxy.internal_listen.port),
                    (config.is_proxy.sip3_listen.host, config.is_proxy.sip3_listen.port),
                ]
            )
        ears = ear_factory(a) if explicit else None

        def roots() -> list[int]:
            return [service.pid for service in services]

        mode = "explicit (EAR, SQLite replay store)" if explicit else "implicit"
        note = f"2 mcic run processes (A, B), {mode}" + (", SPK" if spk else "")
        if workers > 1:
            note += f", --workers {workers}"
        internal = a.is_proxy.internal_listen
        yield Border((internal.host, internal.port), roots, ears=ears, note=note)
    finally:
        _stop_all(services)


def ear_factory(a: Any) -> Callable[[int, float, float], list[str]]:
    """Signs EARs as A's MCX server toward B's MCX PSI with a key provisioned from A's own KMS
    secrets (what A's KMS would hand A's MCX server); the EAR of call i carries the time it is due
    (start + i / rate), each a fresh EAR ID, no Request IE (private call, one-to-one short data)."""
    from mcinterconnect.crypto.uid import ntp_seconds
    from mcinterconnect.protect.ear import Role, encode_header_value, new_payload, sign_ear
    from mcinterconnect.services.kms import read_kms

    kms = read_kms(a.kms)
    certificate = kms.certificate
    source = a.mcx_server.psi
    target = a.partner[0].psis["mcptt"]
    keys: dict[int, Any] = {}

    def make(calls: int, rate: float, start: float) -> list[str]:
        values = []
        for index in range(calls):
            at = start + index / rate
            number = certificate.key_period.number_at(ntp_seconds(at))
            if number not in keys:
                [keys[number]] = kms.provision(source, [number])
            payload = new_payload(
                source_role=Role.MCX_SERVER,
                source_id=source,
                target_role=Role.MCX_SERVER,
                target_id=target,
                now=at,
            )
            signed = sign_ear(
                payload,
                ssk=keys[number].ssk,
                pvt=keys[number].pvt,
                kpak=certificate.pub_auth_key,
                kms_uri=certificate.kms_uri,
                key_period=certificate.key_period,
            )
            values.append(encode_header_value(signed))
        return values

    return make


@contextlib.contextmanager
def direct_pair(uas_port: int) -> Iterator[Border]:
    yield Border((HOST_B, uas_port), list, note="SIPp UAC straight to the UAS (no border)")


def start_subject(subject: str, work: Path, uas_port: int) -> contextlib.AbstractContextManager[Border]:
    if subject == "kamailio-topos":
        return kamailio_pair(work, uas_port, topos=True, children=KAMAILIO_CHILDREN)
    if subject == "kamailio-plain":
        return kamailio_pair(work, uas_port, topos=False, children=KAMAILIO_CHILDREN)
    if subject == "ours-implicit":
        return our_pair(work, uas_port)
    if subject == "ours-explicit":
        return our_pair(work, uas_port, explicit=True)
    if subject == "ours-spk":
        return our_pair(work, uas_port, spk=True)
    if subject == "ours-implicit-w2":
        return our_pair(work, uas_port, workers=2)
    if subject == "direct":
        return direct_pair(uas_port)
    raise BenchError(f"unknown subject {subject}")


# ------------------------------------------------------------------------------ measuring
@dataclass
class Settings:
    step_seconds: float
    bisect_steps: int
    latency_seconds: float
    soak_seconds: float
    start_rate: dict[str, float]
    uacs: int = 4
    #: ``--soak`` runs on this scenario: the first of ``--scenarios``.
    soak_scenario: str = "message"


@dataclass(kw_only=True)
class Latency:
    """What one timed run gives: UAC response-time percentiles through the border and straight
    UAC -> UAS at the same rate, the added latency per crossing, and the border's CPU per call."""

    p50_ms: float | None = None
    p99_ms: float | None = None
    direct_p50_ms: float | None = None
    direct_p99_ms: float | None = None
    added_p50_ms: float | None = None
    added_p99_ms: float | None = None
    cpu_ms_per_call: float | None = None


@dataclass
class Result(Latency):
    """One subject and scenario of a ramp; its ``Latency`` is the run at half the max rate."""

    subject: str
    scenario: str
    max_rate: float | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    latency_rate: float | None = None
    cpu_s: float | None = None
    peak_rss_mb: float | None = None
    peak_pss_mb: float | None = None
    soak: dict[str, Any] | None = None
    note: str = ""
    error: str | None = None


class DirectReference:
    """Direct UAC -> UAS response times, measured once per scenario and rate."""

    def __init__(self, work: Path, uacs: int) -> None:
        self.work = work
        self.uacs = uacs
        self.cache: dict[tuple[str, float], tuple[float, float]] = {}

    def latency(self, scenario: str, rate: float, seconds: float) -> tuple[float, float]:
        key = (scenario, rate)
        if key not in self.cache:
            work = self.work / f"direct-{scenario}-{rate:g}"
            work.mkdir(parents=True, exist_ok=True)
            uas = Uas(work, scenario)
            try:
                driver = Driver(work, scenario, (HOST_B, uas.port), uacs=self.uacs)
                run = driver.run(rate, max(20, int(rate * seconds)), trace_messages=True)
                times = driver.transaction_times(run)
            finally:
                uas.stop()
            if not times:
                raise BenchError(f"direct {scenario} at {rate:g}/s: no transaction completed")
            self.cache[key] = (percentile(times, 0.5), percentile(times, 0.99))
        return self.cache[key]


def measure(
    subject: str,
    scenario: str,
    work: Path,
    settings: Settings,
    reference: DirectReference,
    say: Callable[[str], None],
) -> Result:
    result = Result(subject, scenario)
    work.mkdir(parents=True, exist_ok=True)
    uas = Uas(work, scenario)
    try:
        with start_subject(subject, work / "subject", uas.port) as border:
            result.note = border.note
            driver = Driver(work, scenario, border.target, uacs=settings.uacs, ears=border.ears)
            with Monitor(border.roots) as monitor:
                cpu_start = monitor.cpu()

                def probe(rate: float) -> Step:
                    uas.check()
                    calls = max(20, int(rate * settings.step_seconds)) // settings.uacs * settings.uacs
                    run = driver.run(rate, calls)
                    passed = step_passes(run.stats, calls=calls, rate=rate)
                    detail = (
                        f"{run.stats.successful}/{calls} ok, {run.stats.failed} failed, "
                        f"{run.stats.elapsed:.2f} s (nominal {calls / rate:.2f} s)"
                    )
                    say(f"    {subject} {scenario} {rate:>7g}/s: {'pass' if passed else 'FAIL'}  {detail}")
                    time.sleep(0.3 if passed else 1.5)  # let a backlog drain before the next step
                    return Step(rate, passed, detail)

                ramp = find_max_rate(
                    probe, start=settings.start_rate[scenario], bisect_steps=settings.bisect_steps
                )
                result.max_rate = ramp.max_rate
                result.steps = [asdict(step) for step in ramp.steps]
                if ramp.max_rate is not None:
                    rate = float(max(1, round(ramp.max_rate / 2)))
                    result.latency_rate = rate
                    timed = timed_run(subject, scenario, rate, driver, monitor, reference, settings)
                    for figure in fields(Latency):
                        setattr(result, figure.name, getattr(timed, figure.name))
                    if settings.soak_seconds > 0 and scenario == settings.soak_scenario:
                        result.soak = soak(driver, monitor, rate, settings.soak_seconds, say)
                result.cpu_s = round(monitor.cpu() - cpu_start, 3)
                monitor.sample()
                result.peak_rss_mb = round(monitor.peak_rss_kib / 1024, 1)
                result.peak_pss_mb = round(monitor.peak_pss_kib / 1024, 1)
    finally:
        uas.stop()
    return result


def soak(
    driver: Driver, monitor: Monitor, rate: float, seconds: float, say: Callable[[str], None]
) -> dict[str, Any]:
    """One long run at ``rate``: RSS after 10 % of it and at its end."""
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def watch() -> None:
        begin = time.monotonic()
        while not stop.wait(1.0):
            samples.append((time.monotonic() - begin, monitor.sample()))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        run = driver.run(rate, int(rate * seconds))
    finally:
        stop.set()
        watcher.join(5)
    if not samples:
        raise BenchError("soak: no memory sample")
    start_rss = next((rss for at, rss in samples if at >= seconds * 0.1), samples[0][1])
    end_rss = samples[-1][1]
    drift = 100.0 * (end_rss - start_rss) / start_rss if start_rss else 0.0
    say(
        f"    soak {seconds:g} s at {rate:g}/s: RSS {start_rss / 1024:.1f} -> {end_rss / 1024:.1f} MiB "
        f"({drift:+.1f} %), {run.stats.successful}/{run.stats.created} ok"
    )
    return {
        "seconds": seconds,
        "rate": rate,
        "rss_start_mb": round(start_rss / 1024, 1),
        "rss_end_mb": round(end_rss / 1024, 1),
        "drift_percent": round(drift, 2),
        "successful": run.stats.successful,
        "failed": run.stats.failed,
    }


# ------------------------------------------------------------------------- fixed rates
@dataclass
class FixedRate(Latency):
    """One subject and scenario at one fixed rate (``--rates``, and the half-rate run of a ramp)."""

    subject: str
    scenario: str
    rate: float
    calls: int = 0
    successful: int = 0
    failed: int = 0
    error: str | None = None


def timed_run(
    subject: str,
    scenario: str,
    rate: float,
    driver: Driver,
    monitor: Monitor,
    reference: DirectReference,
    settings: Settings,
) -> FixedRate:
    """``rate`` for ``settings.latency_seconds`` with message traces: response times, the same
    percentiles straight UAC -> UAS at that rate, and the border's CPU per call."""
    row = FixedRate(subject, scenario, rate, calls=max(20, int(rate * settings.latency_seconds)))
    before = monitor.cpu()
    run = driver.run(rate, row.calls, trace_messages=True)
    used = monitor.cpu() - before
    row.successful, row.failed = run.stats.successful, run.stats.failed
    times = driver.transaction_times(run)
    if row.successful and times:
        row.cpu_ms_per_call = round(1e3 * used / row.successful, 4)
        row.p50_ms = round(percentile(times, 0.5), 3)
        row.p99_ms = round(percentile(times, 0.99), 3)
        if subject != "direct":
            d50, d99 = reference.latency(scenario, rate, settings.latency_seconds)
            row.direct_p50_ms, row.direct_p99_ms = round(d50, 3), round(d99, 3)
            row.added_p50_ms = round(added_per_crossing(row.p50_ms, d50), 3)
            row.added_p99_ms = round(added_per_crossing(row.p99_ms, d99), 3)
    return row


def measure_fixed(
    subject: str,
    scenario: str,
    work: Path,
    settings: Settings,
    reference: DirectReference,
    rates: Sequence[float],
    say: Callable[[str], None],
) -> list[FixedRate]:
    """Each of ``rates`` for ``settings.latency_seconds`` through one running border pair.

    Shows how the added latency depends on load: at a low rate it is the work done per message
    (with caches and CPUs cold between messages), near the top it is mostly queueing.
    """
    rows: list[FixedRate] = []
    work.mkdir(parents=True, exist_ok=True)
    uas = Uas(work, scenario)
    try:
        with start_subject(subject, work / "subject", uas.port) as border:
            driver = Driver(work, scenario, border.target, uacs=settings.uacs, ears=border.ears)
            with Monitor(border.roots) as monitor:
                for rate in rates:
                    uas.check()
                    row = timed_run(subject, scenario, rate, driver, monitor, reference, settings)
                    rows.append(row)
                    say(
                        f"    {subject} {scenario} {rate:>6g}/s: {row.successful}/{row.calls} ok, "
                        f"added per crossing p50 {_cell(row.added_p50_ms, 2)} ms "
                        f"p99 {_cell(row.added_p99_ms, 2)} ms, CPU {_cell(row.cpu_ms_per_call, 2)} ms/call"
                    )
                    time.sleep(0.3)
    finally:
        uas.stop()
    return rows


def fixed_table(rows: Sequence[FixedRate]) -> str:
    return render_table(
        [
            ("rate/s", 7),
            ("ok", 11),
            ("p50 ms", 7),
            ("p99 ms", 7),
            ("+p50/x", 7),
            ("+p99/x", 7),
            ("CPU ms/call", 11),
        ],
        [
            (
                r.subject,
                r.scenario,
                r.error
                or [
                    f"{r.rate:g}",
                    f"{r.successful}/{r.calls}",
                    _cell(r.p50_ms, 2),
                    _cell(r.p99_ms, 2),
                    _cell(r.added_p50_ms, 2),
                    _cell(r.added_p99_ms, 2),
                    _cell(r.cpu_ms_per_call, 2),
                ],
            )
            for r in rows
        ],
    )


def parse_rates(text: str) -> list[float]:
    """``--rates``: comma-separated rates per second, each > 0 and at most 100,000."""
    rates: list[float] = []
    for item in text.split(","):
        try:
            rate = float(item)
        except ValueError:
            raise BenchError(f"--rates: {item.strip()!r} is not a number") from None
        if not 0 < rate <= 100_000 or not math.isfinite(rate):
            raise BenchError(f"--rates: {item.strip()} is not a rate in (0, 100000]")
        rates.append(rate)
    return rates


# ------------------------------------------------------------------------------- summary
TARGETS = {"ratio": 2.0, "plain_ratio": 0.5, "explicit_ratio": 1.6, "p99_ms": 2.0}


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def summarize(results: Sequence[Result], *, skipped: dict[str, str] | None = None) -> dict[str, Any]:
    """The final JSON object: headline rates, ratios, targets, every result."""

    def rate(subject: str, scenario: str) -> float | None:
        for result in results:
            if result.subject == subject and result.scenario == scenario:
                return result.max_rate
        return None

    def field_of(subject: str, scenario: str, name: str) -> Any:
        for result in results:
            if result.subject == subject and result.scenario == scenario:
                return getattr(result, name)
        return None

    summary: dict[str, Any] = {
        "ours_cps": rate("ours-implicit", "call"),
        "kamailio_cps": rate("kamailio-topos", "call"),
        "kamailio_plain_cps": rate("kamailio-plain", "call"),
        "ours_explicit_cps": rate("ours-explicit", "call"),
        "ours_spk_cps": rate("ours-spk", "call"),
        "ours_w2_cps": rate("ours-implicit-w2", "call"),
        "ours_mps": rate("ours-implicit", "message"),
        "kamailio_mps": rate("kamailio-topos", "message"),
        "kamailio_plain_mps": rate("kamailio-plain", "message"),
        "ours_explicit_mps": rate("ours-explicit", "message"),
        "ours_spk_mps": rate("ours-spk", "message"),
        "direct_cps": rate("direct", "call"),
        "direct_mps": rate("direct", "message"),
    }
    summary["ratio"] = _ratio(summary["ours_cps"], summary["kamailio_cps"])
    summary["plain_ratio"] = _ratio(summary["ours_cps"], summary["kamailio_plain_cps"])
    summary["explicit_ratio"] = _ratio(summary["ours_explicit_cps"], summary["kamailio_cps"])
    summary["spk_ratio"] = _ratio(summary["ours_spk_cps"], summary["kamailio_cps"])
    summary["message_ratio"] = _ratio(summary["ours_mps"], summary["kamailio_mps"])
    summary["message_plain_ratio"] = _ratio(summary["ours_mps"], summary["kamailio_plain_mps"])
    summary["workers2_speedup"] = _ratio(summary["ours_w2_cps"], summary["ours_cps"])
    summary["p99_ms"] = field_of("ours-implicit", "call", "added_p99_ms")
    summary["p99_message_ms"] = field_of("ours-implicit", "message", "added_p99_ms")
    summary["kamailio_p99_ms"] = field_of("kamailio-topos", "call", "added_p99_ms")
    checks: dict[str, bool | None] = {}
    for name, goal in TARGETS.items():
        value = summary[name]
        if value is None:
            checks[name] = None
        else:
            checks[name] = value <= goal if name == "p99_ms" else value >= goal
    summary["targets"] = {"goals": TARGETS, "met": checks}
    summary["skipped"] = dict(skipped or {})
    summary["results"] = [asdict(result) for result in results]
    return summary


def _cell(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_table(columns: Sequence[tuple[str, int]], rows: Sequence[tuple[str, str, list[str] | str]]) -> str:
    """A text table: subject and scenario, then ``columns`` (title, width) right-aligned; a row
    whose cells are a string is an error line."""
    header = f"{'subject':<18} {'scen.':<7} " + " ".join(f"{title:>{width}}" for title, width in columns)
    lines = [header, "-" * len(header)]
    for subject, scenario, cells in rows:
        if isinstance(cells, str):
            lines.append(f"{subject:<18} {scenario:<7} error: {cells}")
        else:
            values = " ".join(f"{cell:>{width}}" for cell, (_, width) in zip(cells, columns, strict=True))
            lines.append(f"{subject:<18} {scenario:<7} {values}")
    return "\n".join(lines)


def table(results: Sequence[Result]) -> str:
    return render_table(
        [
            ("max/s", 7),
            ("@rate", 6),
            ("p50 ms", 7),
            ("p99 ms", 7),
            ("+p50/x", 7),
            ("+p99/x", 7),
            ("CPU ms/call", 11),
            ("CPU s", 7),
            ("RSS MB", 7),
            ("PSS MB", 7),
        ],
        [
            (
                r.subject,
                r.scenario,
                r.error
                or [
                    _cell(r.max_rate, 0),
                    _cell(r.latency_rate, 0),
                    _cell(r.p50_ms, 2),
                    _cell(r.p99_ms, 2),
                    _cell(r.added_p50_ms, 2),
                    _cell(r.added_p99_ms, 2),
                    _cell(r.cpu_ms_per_call, 3),
                    _cell(r.cpu_s, 1),
                    _cell(r.peak_rss_mb),
                    _cell(r.peak_pss_mb),
                ],
            )
            for r in results
        ],
    )


# ---------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short steps; under 5 minutes in all")
    parser.add_argument("--seconds", type=float, help="length of one ramp step (default 5, quick 1.5)")
    parser.add_argument("--subjects", help=f"comma-separated, of {','.join(SUBJECTS)}")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated: message,call")
    parser.add_argument(
        "--uacs", type=int, default=4, help="parallel SIPp UACs, one TCP connection each (default 4)"
    )
    parser.add_argument("--soak", type=float, default=0.0, metavar="SECONDS", help="RSS over a long run")
    parser.add_argument(
        "--rates",
        metavar="R1,R2,...",
        help="no ramp: latency and CPU per call at these fixed rates (--seconds each, default 10)",
    )
    parser.add_argument("--json", type=Path, help="also write the final JSON object to this file")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (logs, configs)")
    args = parser.parse_args(argv)
    subjects = args.subjects.split(",") if args.subjects else list(QUICK_SUBJECTS if args.quick else SUBJECTS)
    for subject in subjects:
        if subject not in SUBJECTS:
            parser.error(f"unknown subject {subject!r} (choose from {', '.join(SUBJECTS)})")
    scenarios = args.scenarios.split(",")
    for scenario in scenarios:
        if scenario not in SCENARIOS:
            parser.error(f"unknown scenario {scenario!r} (choose from {', '.join(SCENARIOS)})")
    args.subject_list = subjects
    args.scenario_list = scenarios
    try:
        args.rate_list = parse_rates(args.rates) if args.rates else []
    except BenchError as error:
        parser.error(str(error))
    return args


def settings_of(args: argparse.Namespace) -> Settings:
    if args.quick:
        return Settings(
            step_seconds=args.seconds or 1.5,
            bisect_steps=1,
            latency_seconds=2.0,
            soak_seconds=args.soak,
            start_rate={"message": 200.0, "call": 100.0},
            uacs=args.uacs,
            soak_scenario=args.scenario_list[0],
        )
    return Settings(
        step_seconds=args.seconds or 5.0,
        bisect_steps=3,
        latency_seconds=10.0,
        soak_seconds=args.soak,
        start_rate=dict(START_RATE),
        uacs=args.uacs,
        soak_scenario=args.scenario_list[0],
    )


@contextlib.contextmanager
def work_folder(keep: Path | None) -> Iterator[Path]:
    """``--keep``'s folder (created, kept), else a temporary one removed at the end."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="bench-border-") as folder:
        yield Path(folder)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    missing = missing_tools(args.subject_list)
    if missing:
        for line in missing:
            print(f"border.py: {line}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(BENCH))
    from benchlib import machine

    settings = settings_of(args)
    if args.rate_list:
        return main_fixed_rates(args, replace(settings, latency_seconds=args.seconds or 10.0), machine())
    skipped: dict[str, str] = {}
    subjects = list(args.subject_list)
    if "ours-implicit-w2" in subjects and not mcic_supports_workers():
        skipped["ours-implicit-w2"] = "mcic run has no --workers option yet"
        subjects.remove("ours-implicit-w2")
        print("skipped ours-implicit-w2: mcic run has no --workers option yet", flush=True)
    load_before = round(os.getloadavg()[0], 2)
    started = time.monotonic()

    def say(text: str) -> None:
        print(text, flush=True)

    results: list[Result] = []
    with work_folder(args.keep) as work:
        reference = DirectReference(work / "reference", settings.uacs)
        for subject in subjects:
            for scenario in args.scenario_list:
                say(f"== {subject} / {scenario}")
                try:
                    result = measure(subject, scenario, work / subject / scenario, settings, reference, say)
                except (BenchError, OSError, subprocess.SubprocessError) as error:
                    result = Result(subject, scenario, error=str(error))
                    say(f"    error: {error}")
                results.append(result)
                say(
                    f"    max {_cell(result.max_rate, 0)}/s; at {_cell(result.latency_rate, 0)}/s "
                    f"p50 {_cell(result.p50_ms, 2)} ms p99 {_cell(result.p99_ms, 2)} ms, added per "
                    f"crossing p99 {_cell(result.added_p99_ms, 2)} ms; "
                    f"CPU {_cell(result.cpu_ms_per_call, 3)} ms/call; peak RSS {_cell(result.peak_rss_mb)} MB"
                )
    print()
    print(table(results))
    print(
        "max/s: highest rate with < 0.1 % failed calls (call = MESSAGE+200, or INVITE..BYE 200); "
        "@rate: half of it, where latency and CPU are measured; p50/p99: UAC response time "
        "(MESSAGE or INVITE -> 200); +p50/x, +p99/x: added per crossing = (through - direct) / 2; "
        "CPU: user+sys of the border processes (Kamailio topos: with redis-server); RSS/PSS: peak sums."
    )
    summary = summarize(results, skipped=skipped)
    for name in ("ratio", "plain_ratio", "explicit_ratio", "spk_ratio", "workers2_speedup"):
        print(f"{name}: {_cell(summary[name], 2)}")
    print(f"p99_ms (ours implicit, call, added per crossing at half rate): {_cell(summary['p99_ms'], 2)}")
    print(f"targets met: {summary['targets']['met']}")
    summary["settings"] = asdict(settings)
    summary["machine"] = machine()
    summary["loadavg_1min_before"] = load_before
    summary["loadavg_1min_after"] = round(os.getloadavg()[0], 2)
    summary["wall_seconds"] = round(time.monotonic() - started, 1)
    line = json.dumps(summary, separators=(",", ":"))
    if args.json:
        args.json.write_text(line + "\n", encoding="utf-8")
    print(line)
    return 1 if any(result.error for result in results) else 0


def main_fixed_rates(args: argparse.Namespace, settings: Settings, machine: dict[str, Any]) -> int:
    """``--rates``: every subject and scenario at each fixed rate; the last line is one JSON object."""
    rows: list[FixedRate] = []
    with work_folder(args.keep) as work:
        reference = DirectReference(work / "reference", settings.uacs)
        for subject in args.subject_list:
            for scenario in args.scenario_list:
                print(f"== {subject} / {scenario}", flush=True)
                try:
                    rows += measure_fixed(
                        subject,
                        scenario,
                        work / subject / scenario,
                        settings,
                        reference,
                        args.rate_list,
                        lambda text: print(text, flush=True),
                    )
                except (BenchError, OSError, subprocess.SubprocessError) as error:
                    rows.append(FixedRate(subject, scenario, 0.0, error=str(error)))
                    print(f"    error: {error}", flush=True)
    print()
    print(fixed_table(rows))
    print("+p50/x, +p99/x: added per crossing = (through - direct at the same rate) / 2")
    summary = {
        "bench": "border-fixed-rates",
        "rates": args.rate_list,
        "settings": asdict(settings),
        "machine": machine,
        "rows": [asdict(row) for row in rows],
    }
    print(json.dumps(summary, separators=(",", ":")))
    return 1 if any(row.error for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
