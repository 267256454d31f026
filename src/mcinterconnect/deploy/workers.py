"""IS proxy workers: one border run as several processes on the same ports (issue 7, scale-out).

``mcic run DIR --workers N`` runs each system as today in the main process (``start_system``:
SIP core, MCX server, KMS and IS proxy *worker 0*) and starts N-1 more processes per system that
each run **only the IS proxy** of that system (TS 33.180 11.1.1: the entry and exit point of the
interconnection), with the same configuration, sealing keys, TLS identity, SPK rings, explicit
authentication and EAR replay store.  Every IS proxy listener (internal face and SIP-3) is then
opened with ``SO_REUSEPORT`` in every worker, worker 0 included, and Linux spreads incoming
connections (and UDP flows) over the workers by a hash of the 4-tuple.

What the workers share and what each keeps (``docs/DEPLOYMENT.md``):

* shared: the sealing keys (one file; a Via sealed by one worker unseals in another), the TLS
  certificate and key, the agreements and SPK files (each worker watches them), and the EAR
  replay store (TS 33.180 9.6 replay step) -- an SQLite file or a Redis server, so an EAR
  admitted by one worker is a replay in every other.  A ``memory`` store cannot be shared: with
  more than one worker and some explicit inbound partner, ``mcic run`` refuses to start (exit 2);
* per worker: its TLS connections (a connection and everything sent over it stay with the worker
  that accepted or opened it, so responses return through the worker that forwarded the
  request), the EAR Request Expiry table (``border/expiry.py``: a dialog is released by the worker
  that admitted its INVITE), and its audit log file: worker 0 writes ``system.audit_log`` as
  before, worker K writes the same name with ``.wK`` before the suffix (``audit.w1.jsonl``), so
  no two processes append to one file.

Lifetime: each worker reads its standard input, a pipe from the main process, and stops when it
closes (the main process exited, however it ended: no orphans); it runs in a process group of its
own, so a Ctrl-C at the terminal reaches the main process only, which stops the workers in order
(close the pipe, SIGTERM, SIGKILL after ``STOP_TIMEOUT``) and waits for them.  A worker reports
``ready`` on its standard output once its listeners are bound, or one ``error: ...`` line; one that
does not start makes ``mcic run`` fail with that line (exit 1) after stopping the others.  A worker
that dies later is started again, unless it ran less than ``MIN_UPTIME`` seconds (a crash loop):
then ``mcic run`` stops with one line and exit status 1.

Worker entry point: ``python -m mcinterconnect.deploy.workers SYSTEM_TOML INDEX``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mcinterconnect import aio
from mcinterconnect.border.audit import AuditLog
from mcinterconnect.border.isproxy import INTERNAL_LISTENER, SIP3_LISTENER, IsProxy
from mcinterconnect.border.sealing import Sealer, SealingKeyError
from mcinterconnect.deploy.config import ConfigError, SystemConfig, load_system
from mcinterconnect.deploy.runner import (
    StartError,
    _open_replay_store,
    _release_expired,
    _reload_spk_rings,
    _spk_versions,
    _tls_contexts,
    border_log,
    build_border,
)
from mcinterconnect.protect.replay import ReplayStore
from mcinterconnect.sip.node import SipNode
from mcinterconnect.sip.transport import LogSink, PeerInfo, TransportError

#: Most workers per system ``--workers`` accepts.
MAX_WORKERS = 64
#: Seconds a worker has to bind its listeners and say ``ready``.
START_TIMEOUT = 30.0
#: Seconds a worker has to stop after SIGTERM before it is killed.
STOP_TIMEOUT = 5.0
#: A worker that dies sooner than this after its start is not started again (crash loop).
MIN_UPTIME = 5.0
#: What a worker prints on its standard output once its listeners are bound.
READY = "ready"
#: The prefix of the one line a worker prints when it cannot start.
ERROR_PREFIX = "error: "

Reporter = Callable[[str], None]


class WorkerUsageError(ValueError):
    """``--workers`` cannot be honoured with this deployment (one line; exit status 2)."""


def parse_worker_count(text: str) -> int:
    """The ``--workers`` value: a whole number from 1 to ``MAX_WORKERS``."""
    value = text.strip()
    if not value.isascii() or not value.isdigit():
        raise WorkerUsageError(f"--workers: {text[:20]!r} is not a whole number")
    count = int(value)
    if not 1 <= count <= MAX_WORKERS:
        raise WorkerUsageError(f"--workers: {count} is not between 1 and {MAX_WORKERS}")
    return count


def check_workers(configs: Sequence[SystemConfig], workers: int) -> None:
    """Refuse what N IS proxy processes per system cannot do (``WorkerUsageError``, one line).

    More than one worker needs Linux (``SO_REUSEPORT`` spreading connections), and a replay store
    the workers share when some partner's inbound authentication is explicit (TS 33.180 9.6: an
    EAR admitted by one worker must be a replay for the others): not ``memory``."""
    if workers == 1:
        return
    if not sys.platform.startswith("linux") or not hasattr(socket, "SO_REUSEPORT"):
        raise WorkerUsageError(
            f"--workers {workers}: several IS proxy workers need Linux SO_REUSEPORT ({sys.platform})"
        )
    for config in configs:
        explicit = [agreement.name for agreement in config.partner if agreement.explicit_inbound]
        if explicit and config.is_proxy.replay_store == "memory":
            raise WorkerUsageError(
                f"{config.source}: is_proxy.replay_store: 'memory' cannot be shared by {workers} IS proxy "
                f"workers (explicit inbound authentication of {', '.join(explicit)}): "
                "use 'sqlite:PATH' or 'redis://host:port/db'"
            )


def worker_audit_path(config: SystemConfig, worker: int) -> Path:
    """The audit log file of IS proxy worker ``worker``: ``audit.jsonl``, ``audit.w1.jsonl`` ..."""
    base = config.system.audit_log
    if worker == 0:
        return base
    return base.with_name(f"{base.stem}.w{worker}{base.suffix}")


# ------------------------------------------------------------------ the IS proxy alone


@dataclass
class RunningIsProxy:
    """The IS proxy of one system run without the rest of the system (a worker above 0)."""

    config: SystemConfig
    worker: int
    node: SipNode
    border: IsProxy
    audit: AuditLog
    replay_store: ReplayStore | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def close(self) -> None:
        await aio.cancel_all(self.tasks)
        self.tasks.clear()
        await self.node.close()
        if self.replay_store is not None:
            await self.replay_store.close()
            self.replay_store = None
        self.audit.close()


async def start_is_proxy(
    config: SystemConfig, *, worker: int, reuse_port: bool = True, log: LogSink | None = None
) -> RunningIsProxy:
    """Start only the IS proxy of ``config`` (internal listener and SIP-3 TLS listener), as worker
    ``worker`` of its system: the same pieces ``start_system`` builds for it, its own audit file
    (``worker_audit_path``).  Any problem is a ``StartError`` of one line."""
    section = config.is_proxy
    try:
        sealer = Sealer.from_file(section.sealing_keys)
    except SealingKeyError as error:
        raise StartError(f"{config.source}: is_proxy.sealing_keys: {error}") from None
    server_tls, client_tls = _tls_contexts(config)
    audit_path = worker_audit_path(config, worker)
    try:
        audit = AuditLog(audit_path, system=config.system.name, component="is-proxy")
    except OSError as error:
        raise StartError(
            f"{config.source}: IS proxy worker {worker}: cannot open the audit log {audit_path}: "
            f"{error.strerror or error}"
        ) from None
    spk_versions = _spk_versions(config)
    try:
        border = build_border(config, sealer, audit)
        replay_store = _open_replay_store(config)
    except StartError:
        audit.close()
        raise
    node = SipNode(
        border,
        agent=section.public_host,
        log=border_log(audit, log),
        client_contexts=client_tls.get,
        claim_store=replay_store,
    )
    running = RunningIsProxy(config, worker, node, border, audit, replay_store)

    def sip3_peer_check(peer: PeerInfo) -> str | None:
        return border.peer_refusal(peer.certificate, peer.remote)

    try:
        await node.listen(INTERNAL_LISTENER, section.internal_listen, reuse_port=reuse_port)
        await node.listen(
            SIP3_LISTENER,
            section.sip3_listen,
            ssl_context=server_tls,
            peer_check=sip3_peer_check,
            reuse_port=reuse_port,
        )
    except TransportError as error:
        await running.close()
        raise StartError(f"{config.source}: IS proxy worker {worker}: {error}") from None
    if any(agreement.explicit_inbound for agreement in config.partner):
        running.tasks.append(asyncio.create_task(_release_expired(border, node)))
    if any(agreement.spk is not None for agreement in config.partner):
        running.tasks.append(asyncio.create_task(_reload_spk_rings(config, border, log, spk_versions)))
    return running


# ------------------------------------------------------------------ the main process side


def _exit_text(returncode: int | None) -> str:
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


@dataclass
class _Worker:
    config: SystemConfig
    index: int
    process: asyncio.subprocess.Process
    started: float


class WorkerPool:
    """The IS proxy workers above 0 of the systems ``mcic run`` started (the main process side)."""

    def __init__(
        self,
        *,
        report: Reporter | None = None,
        start_timeout: float = START_TIMEOUT,
        stop_timeout: float = STOP_TIMEOUT,
        min_uptime: float = MIN_UPTIME,
    ) -> None:
        self._report = report
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._min_uptime = min_uptime
        self._workers: list[_Worker] = []

    @property
    def pids(self) -> list[int]:
        return [worker.process.pid for worker in self._workers]

    def pids_of(self, config: SystemConfig) -> list[int]:
        return [worker.process.pid for worker in self._workers if worker.config is config]

    async def spawn(self, config: SystemConfig, count: int) -> None:
        """Start workers 1..``count`` of ``config``'s IS proxy; ``StartError`` if one does not start
        (the caller then ``stop``s the pool)."""
        for index in range(1, count + 1):
            self._workers.append(await self._start(config, index))

    async def _start(self, config: SystemConfig, index: int) -> _Worker:
        where = f"{config.source}: IS proxy worker {index}"
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "mcinterconnect.deploy.workers",
                str(config.source.resolve()),
                str(index),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                process_group=0,  # a terminal's Ctrl-C reaches the main process only
            )
        except OSError as error:
            raise StartError(f"{where}: cannot start a process: {error.strerror or error}") from None
        loop = asyncio.get_running_loop()
        worker = _Worker(config, index, process, loop.time())
        assert process.stdout is not None
        try:
            async with asyncio.timeout(self._start_timeout):
                line = await process.stdout.readline()
        except TimeoutError:
            await self._halt(worker)
            raise StartError(f"{where}: not ready within {self._start_timeout:g} s") from None
        except BaseException:
            await self._halt(worker)
            raise
        text = line.decode("utf-8", errors="replace").strip()
        if text == READY:
            return worker
        await self._halt(worker)
        if text.startswith(ERROR_PREFIX):
            raise StartError(text.removeprefix(ERROR_PREFIX))
        raise StartError(f"{where}: {_exit_text(process.returncode)} before it was ready")

    async def watch(self) -> None:
        """Run until cancelled; start again a worker that died, or raise ``StartError`` when it
        died within ``min_uptime`` seconds of its start or cannot start again."""
        loop = asyncio.get_running_loop()
        while True:
            if not self._workers:
                await asyncio.Event().wait()
            waits = {asyncio.ensure_future(worker.process.wait()): worker for worker in self._workers}
            try:
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
            for finished in done:
                worker = waits[finished]
                self._workers.remove(worker)
                where = f"{worker.config.source}: IS proxy worker {worker.index} (pid {worker.process.pid})"
                ended = _exit_text(worker.process.returncode)
                uptime = loop.time() - worker.started
                if uptime < self._min_uptime:
                    raise StartError(f"{where}: {ended} {uptime:.1f} s after its start; stopping")
                replacement = await self._start(worker.config, worker.index)
                self._workers.append(replacement)
                if self._report is not None:
                    self._report(f"{where}: {ended}; started again as pid {replacement.process.pid}")

    async def stop(self) -> None:
        """Stop every worker (pipe closed, SIGTERM, SIGKILL after ``stop_timeout``) and wait for it."""
        workers, self._workers = self._workers, []
        for worker in workers:
            self._signal(worker, signal.SIGTERM)
        for worker in workers:
            await self._halt(worker)

    def _signal(self, worker: _Worker, signum: signal.Signals) -> None:
        if worker.process.stdin is not None:
            worker.process.stdin.close()
        if worker.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(signum)

    async def _halt(self, worker: _Worker) -> None:
        self._signal(worker, signal.SIGTERM)
        try:
            async with asyncio.timeout(self._stop_timeout):
                await worker.process.wait()
        except TimeoutError:
            self._signal(worker, signal.SIGKILL)
            await worker.process.wait()


# ------------------------------------------------------------------ the worker process side


async def _serve_worker(config: SystemConfig, index: int) -> int:
    try:
        running = await start_is_proxy(config, worker=index, reuse_port=True)
    except StartError as error:
        print(f"{ERROR_PREFIX}{error}", flush=True)
        return 1
    aio.settle_heap()
    loop = asyncio.get_running_loop()
    try:
        with contextlib.suppress(asyncio.CancelledError):
            task = asyncio.current_task()
            if task is not None:
                loop.add_signal_handler(signal.SIGTERM, task.cancel)
            # The main process holds the other end of standard input: end of file means it is gone.
            parent = asyncio.StreamReader()
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(parent), sys.stdin)
            print(READY, flush=True)
            while await parent.read(4096):
                pass
    finally:
        await running.close()
    return 0


def worker_main(argv: Sequence[str] | None = None) -> int:
    """``python -m mcinterconnect.deploy.workers SYSTEM_TOML INDEX``: one IS proxy worker."""
    parser = argparse.ArgumentParser(prog="mcinterconnect.deploy.workers", add_help=False)
    parser.add_argument("system", type=Path)
    parser.add_argument("index", type=int)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides when workers stop
    try:
        config = load_system(args.system)
    except ConfigError as error:
        print(f"{ERROR_PREFIX}{error}", flush=True)
        return 1
    return aio.run(_serve_worker(config, args.index))


if __name__ == "__main__":  # pragma: no cover - run as a process by WorkerPool
    sys.exit(worker_main())
