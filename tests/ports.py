"""Free loopback ports for tests, chosen so that no other part of the run can pick them too."""

from __future__ import annotations

import itertools
import socket

from mcinterconnect.deploy.ports import candidate_ports

_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now, never handed out before in this test run.

    It is taken below the kernel's ephemeral range (``deploy/ports.py``), where no ``bind(0)``
    and no outgoing connection picks: so it cannot be the local port of a connection, nor a port
    another part of the test was given and has not bound yet.
    """
    for port in itertools.islice(candidate_ports(), 500):
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free TCP port on {host} below the ephemeral range")
