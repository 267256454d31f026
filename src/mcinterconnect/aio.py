"""The event loop every long-running ``mcic`` process uses: asyncio's own, on purpose.

ARCHITECTURE.md §4 named uvloop "where installed".  Measured here (uvloop 0.23.0, CPython
3.11.7) it cannot carry SIP-3 or HTTP-3: both drive the server TLS handshake themselves
(``loop.start_tls(..., server_side=True)``, so that every failure is logged and audited), and on
uvloop that handshake never completes, with or without reading paused, so every partner
connection times out (docs/PERFORMANCE.md §6).  Every process therefore runs on asyncio's default
loop.  ``mcic`` commands and the IS proxy workers of ``mcic run --workers`` (``deploy/workers.py``)
run their main coroutine with ``run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new asyncio event loop."""
    with asyncio.Runner() as runner:
        return runner.run(main)


def settle_heap() -> None:
    """Call once a server process has started (``mcic run``, each IS proxy worker).

    Everything built at start (configuration, keys, certificates, modules: most of the heap) is
    collected once and then frozen out of the cyclic collector's sight (``gc.freeze``), so that
    the collections the message path triggers do not walk it again.  (Raising the collection
    thresholds as well was measured and made no difference above the noise: docs/PERFORMANCE.md
    §6.)"""
    gc.collect()
    gc.freeze()


async def cancel_all(tasks: Iterable[asyncio.Task[None]], *, swallow_errors: bool = False) -> None:
    """Cancel background ``tasks`` and wait for each to end.  A task that had already failed
    raises its error here, unless ``swallow_errors`` (it was logged where it failed)."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    errors: tuple[type[BaseException], ...] = (
        (asyncio.CancelledError, Exception) if swallow_errors else (asyncio.CancelledError,)
    )
    for task in pending:
        with contextlib.suppress(*errors):
            await task
