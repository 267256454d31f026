"""The event loop every long-running ``mcic`` process uses: asyncio's own, on purpose.

ARCHITECTURE.md §4 named uvloop "where installed"; measured here it cannot carry SIP-3: the SIP
transport drives the server TLS handshake itself (``sip/transport.py``, so that every failure is
logged and audited), and uvloop reads the ClientHello into the stream before the handshake can
take the socket over, so every SIP-3 handshake times out.  Until the TLS listener is rebuilt on a
plain protocol, every process runs on asyncio's default loop (docs/PERFORMANCE.md).  ``mcic``
commands and the IS proxy workers of ``mcic run --workers`` (``deploy/workers.py``) run their main
coroutine with ``run``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new asyncio event loop."""
    with asyncio.Runner() as runner:
        return runner.run(main)
