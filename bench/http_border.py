"""What the HTTP-3 border costs (issue 6): a group document through both HTTP proxies, against the
same request straight to the partner GMS, in the same run.

Systems A and B from ``mcic init`` run in this process (``start_system``: KMS, HTTP proxy, GMS,
real TLS on every HTTPS face).  Timed, one request after another (``--requests N`` each), with an
aiohttp client that keeps its connection:

* ``direct``    GET of B's group document straight at GMS B's internal listener, asserted as GMS
                A (the reference: what GMS B itself costs, filtering included);
* ``crossing``  the same request as GMS A sends it: to HTTP proxy A's internal side (``Host:
                b.mc.example``) → HTTP-3, mutual TLS → HTTP proxy B (peer check, allow-list,
                implicit authentication, header stripping) → GMS B, and back;
* ``client``    alice reads the B-homed group from her own GMS through HTTP proxy A's client
                side (mutual TLS; the copy GMS A keeps, WA-IC-21): what a client sees;
* ``gmk``       alice fetches the group's GMK through the client side and opens it (GMS A wraps a
                MIKEY-SAKKE I_MESSAGE for her, she verifies ECCSI and decapsulates SAKKE).

Printed: p50 / p99 in ms, requests per second, and the ratio of each to ``direct``; the last line
is one JSON object with every figure.  ``--quick``: 50 requests each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import machine
from mcinterconnect.deploy.config import load_deployment
from mcinterconnect.deploy.init import init_deployment
from mcinterconnect.deploy.runner import start_system
from mcinterconnect.deploy.users import proxy_url, user_context, user_keys
from mcinterconnect.services.gms_client import fetch_gmk

GROUP_B = "sip:rescue@b.mc.example"
PATH_B = f"/org.openmobilealliance.groups/groups/{quote(GROUP_B, safe='')}"


def _figures(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "p50_ms": round(1e3 * statistics.median(ordered), 3),
        "p99_ms": round(1e3 * p99, 3),
        "per_second": round(len(samples) / sum(samples), 1),
        "requests": len(samples),
    }


async def _timed(operation: Callable[[], Awaitable[None]], count: int) -> dict[str, float]:
    await operation()  # warm-up: connections open, keys cached
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        await operation()
        samples.append(time.perf_counter() - start)
    return _figures(samples)


async def measure(count: int) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder) / "deployment"
        init_deployment(directory)
        a, b = load_deployment(directory).systems
        assert a.gms is not None and b.gms is not None and a.http_proxy is not None
        systems = [await start_system(b), await start_system(a)]
        try:
            url, name = proxy_url(a)
            context = user_context(a, "alice")
            keys = await user_keys(a, "alice")
            gms_b, internal_a = b.gms.listen, a.http_proxy.internal_listen
            server_headers = {"X-3GPP-Asserted-Identity": a.gms.psi}
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:

                async def get(target: str, **options: object) -> None:
                    async with session.get(target, **options) as response:  # type: ignore[arg-type]
                        await response.read()
                        if response.status != 200:
                            raise RuntimeError(f"{target}: {response.status}")

                for _ in range(100):  # GMS A fetches B's group at start (WA-IC-21)
                    async with session.get(url + PATH_B, ssl=context, server_hostname=name) as response:
                        if response.status == 200:
                            break
                    await asyncio.sleep(0.1)

                async def direct() -> None:
                    await get(f"http://{gms_b.host}:{gms_b.port}{PATH_B}", headers=server_headers)

                async def crossing() -> None:
                    await get(
                        f"http://{internal_a.host}:{internal_a.port}{PATH_B}",
                        headers={**server_headers, "Host": "b.mc.example"},
                    )

                async def client() -> None:
                    await get(url + PATH_B, ssl=context, server_hostname=name)

                async def gmk() -> None:
                    await fetch_gmk(
                        url,
                        GROUP_B,
                        user_uri="sip:alice@a.mc.example",
                        keys=keys,
                        gms_psi=a.gms.psi,
                        ssl_context=context,
                        server_hostname=name,
                    )

                results = {
                    "direct": await _timed(direct, count),
                    "crossing": await _timed(crossing, count),
                    "client": await _timed(client, count),
                    "gmk": await _timed(gmk, max(10, count // 20)),
                }
        finally:
            for system in systems:
                await system.close()
    reference = results["direct"]["p50_ms"]
    for figures in results.values():
        figures["p50_ratio_to_direct"] = round(figures["p50_ms"] / reference, 2)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=1000, help="requests per case (default 1000)")
    parser.add_argument("--quick", action="store_true", help="50 requests per case")
    args = parser.parse_args(argv)
    count = 50 if args.quick else args.requests
    results = asyncio.run(measure(count))
    print(f"{'case':10} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'x direct':>9}")
    for case, figures in results.items():
        print(
            f"{case:10} {figures['p50_ms']:8.2f} {figures['p99_ms']:8.2f} "
            f"{figures['per_second']:8.1f} {figures['p50_ratio_to_direct']:9.2f}"
        )
    print(json.dumps({"bench": "http_border", "cases": results, "machine": machine()}, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
