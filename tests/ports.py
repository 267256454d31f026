"""Free loopback ports for tests, chosen so that no other part of the run can pick them too."""

from __future__ import annotations

import random
import socket
from pathlib import Path

_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10000
_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (32768 on Linux unless tuned)."""
    try:
        low = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768
    return max(low, _LOWEST + 1000)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now, never handed out before in this test run.

    It is taken below the kernel's ephemeral range: ``mcic init`` and every ``bind(0)`` pick
    from that range, so a port chosen here cannot be one of a deployment's ports that is not
    bound yet (the cause of a rare "address already in use" when a second instance started).
    """
    high = _ephemeral_low()
    for _ in range(500):
        port = random.randrange(_LOWEST, high)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free TCP port on {host} in {_LOWEST}..{high - 1}")
