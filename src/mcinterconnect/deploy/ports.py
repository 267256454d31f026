"""Free TCP ports for a generated deployment, taken outside the kernel's ephemeral range.

``mcic init`` writes listener ports that ``mcic run`` binds later, maybe much later.  A port from
the ephemeral range (what ``bind(0)`` hands out) can by then be the local port of any outgoing
connection on the machine, and the listener would fail with "address already in use".  Ports
below that range are never given out by the kernel on its own.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
#: Lowest port handed out: above the registered services most machines run.
LOWEST = 10000
#: Used when the kernel's range cannot be read (Linux's default start).
DEFAULT_EPHEMERAL_LOW = 32768


def ephemeral_low(path: Path = EPHEMERAL_RANGE_FILE) -> int:
    """The first port of the kernel's ephemeral range, or 32768 when it cannot be read."""
    try:
        return int(path.read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        return DEFAULT_EPHEMERAL_LOW


def candidate_ports(rng: random.Random | None = None, *, low: int | None = None) -> Iterator[int]:
    """Random ports in ``LOWEST .. ephemeral_low() - 1``, endlessly (the caller bounds the tries);
    nothing when the ephemeral range starts too low to leave room below it."""
    high = ephemeral_low() if low is None else low
    if high <= LOWEST + 1000:
        return
    choose = rng or random.SystemRandom()
    while True:
        yield choose.randrange(LOWEST, high)
