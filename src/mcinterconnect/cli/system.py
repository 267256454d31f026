"""``mcic`` commands that build and run systems: init, run, demo, client."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path

from mcinterconnect import aio
from mcinterconnect.cli.common import CliError, run_async
from mcinterconnect.deploy.config import load_deployment
from mcinterconnect.deploy.init import init_deployment
from mcinterconnect.deploy.runner import RunningSystem, https_url, start_system
from mcinterconnect.deploy.workers import WorkerPool, WorkerUsageError, check_workers, parse_worker_count
from mcinterconnect.services.client import McClient


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = commands.add_parser("init", help="write a two-system deployment (A and B) on loopback")
    init.add_argument("directory", type=Path)
    init.add_argument("--force", action="store_true", help="write into a non-empty directory")
    init.add_argument(
        "--explicit",
        action="store_true",
        help="explicit authentication (signed EAR, TS 33.180 9.6) both ways; default implicit",
    )
    init.add_argument(
        "--spk",
        action="store_true",
        help="protect the MC XML bodies of the A<->B link with a shared SPK (TS 33.180 9.3)",
    )
    init.set_defaults(handler=_init)

    run = commands.add_parser("run", help="run the systems of a deployment")
    run.add_argument("directory", type=Path, help="deployment folder or deployment.toml")
    run.add_argument("--system", action="append", default=[], help="only this system (repeatable)")
    run.add_argument(
        "--workers",
        default="1",
        metavar="N",
        help="run each IS proxy as N processes on the same ports (SO_REUSEPORT, Linux; issue 7, "
        "docs/DEPLOYMENT.md); default 1",
    )
    run.set_defaults(handler=lambda args: _run(args.directory, args.system, args.workers))

    demo = commands.add_parser("demo", help="run the two-system demo and the attacker scenarios")
    demo.add_argument("--keep", type=Path, help="write the deployment here and keep it")
    demo.set_defaults(handler=_demo)

    client = commands.add_parser("client", help="an MC client: register, send and receive MESSAGEs")
    client.add_argument("directory", type=Path, help="deployment folder or deployment.toml")
    client.add_argument("--system", required=True, help="the client's home system (name or domain)")
    client.add_argument(
        "--user", required=True, help="the client's MC service ID, e.g. sip:alice@a.mc.example"
    )
    client.add_argument("--to", help="send one MESSAGE to this MC service ID")
    client.add_argument("--text", default="", help="the text of that MESSAGE")
    client.add_argument("--wait", type=float, default=0.0, help="seconds to wait for incoming MESSAGEs")
    client.set_defaults(handler=lambda args: run_async(_client(args)))


def _init(args: argparse.Namespace) -> int:
    path = init_deployment(args.directory, overwrite=args.force, explicit=args.explicit, spk=args.spk)
    notes = [
        *(["explicit authentication: EAR both ways"] if args.explicit else []),
        *(["SPK protection of the A<->B link"] if args.spk else []),
    ]
    suffix = f" ({'; '.join(notes)})" if notes else ""
    print(f"deployment written: {path}{suffix}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from mcinterconnect.deploy.demo import demo_main

    return demo_main(args.keep)


def _run(directory: Path, only: list[str], workers_text: str = "1") -> int:
    deployment = load_deployment(directory)
    configs = [deployment.system(name) for name in only] if only else deployment.systems
    try:
        workers = parse_worker_count(workers_text)
        check_workers(configs, workers)
    except WorkerUsageError as error:  # a usage error: exit status 2, one line
        print(f"mcic: error: {error}", file=sys.stderr)
        return 2

    def warn(line: str) -> None:
        print(f"mcic: warning: {line}", file=sys.stderr, flush=True)

    async def serve() -> None:
        systems: list[RunningSystem] = []
        # IS proxy workers 1..N-1 of each system (issue 7, deploy/workers.py); worker 0 is here.
        pool = WorkerPool(report=warn)
        try:
            for config in configs:
                systems.append(await start_system(config, reuse_port=workers > 1))
                await pool.spawn(config, workers - 1)
                section = config.is_proxy
                kms = f", KMS {https_url(config.kms.listen)}" if config.kms else ""
                if config.http_proxy is not None:
                    http3, name = config.http_proxy.http3_listen, config.http_proxy.public_host
                    kms += f", HTTP proxy HTTP-3 {https_url(http3)} as {name}"
                pids = ", ".join(map(str, pool.pids_of(config)))
                scale = f", {workers} IS proxy workers (this process and pids {pids})" if pids else ""
                print(
                    f"system {config.system.name} ({config.domain}): "
                    f"SIP core {config.sip_core.client_listen}, "
                    f"IS proxy SIP-3 {section.sip3_listen} as {section.public_host}{kms}{scale}",
                    flush=True,
                )
        except BaseException:
            await pool.stop()
            for system in systems:
                await system.close()
            raise
        aio.settle_heap()
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            if task is not None:
                loop.add_signal_handler(signum, task.cancel)
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await pool.watch()  # until a signal; raises StartError if a worker keeps dying
        finally:
            await pool.stop()
            for system in systems:
                await system.close()

    run_async(serve())
    return 0


async def _client(args: argparse.Namespace) -> int:
    deployment = load_deployment(args.directory)
    config = deployment.system(args.system)
    client = McClient(
        args.user,
        config.sip_core.client_listen,
        mcx_psi=config.mcx_server.psi,
        listen_host=config.sip_core.client_listen.host,
    )
    await client.start()
    try:
        response = await client.register()
        print(
            json.dumps({"event": "register", "status": response.status, "reason": response.reason}),
            flush=True,
        )
        if response.status != 200:
            raise CliError(f"registration refused: {response.status} {response.reason}")
        if args.to:
            response = await client.send_message(args.to, args.text)
            print(
                json.dumps(
                    {
                        "event": "message-sent",
                        "to": args.to,
                        "status": response.status,
                        "warning": response.headers.get("Warning"),
                    }
                ),
                flush=True,
            )
            if response.status != 200:
                raise CliError(f"MESSAGE refused: {response.status} {response.reason}")
        deadline = asyncio.get_running_loop().time() + args.wait
        while (remaining := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                received = await asyncio.wait_for(client.inbox.get(), remaining)
            except TimeoutError:
                break
            print(
                json.dumps({"event": "message-received", "from": received.sender, "text": received.text}),
                flush=True,
            )
    finally:
        await client.close()
    return 0
