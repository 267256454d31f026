"""curl (Debian package curl) as the real HTTPS client of the tests: one request, bounded in time."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import NamedTuple

import pytest

needs_curl = pytest.mark.skipif(
    shutil.which("curl") is None, reason="curl not installed (Debian package curl)"
)


class CurlAnswer(NamedTuple):
    exit_code: int  # curl's own: 0, or 35/52/56... when the TLS handshake or the connection failed
    status: int  # the HTTP status, 0 when no HTTP answer came
    content_type: str  # "" when none
    body: bytes


async def curl(
    host: str,
    port: int,
    path: str,
    ca: Path,
    *extra: str,
    address: str = "127.0.0.1",
    timeout: float = 8.0,
) -> CurlAnswer:
    """``https://host:port/path`` with ``host`` resolved to ``address`` and ``ca`` as the only
    trust anchor; ``extra`` goes to curl before the URL (``--cert``, ``-H``, ``-X``...)."""
    process = await asyncio.create_subprocess_exec(
        "curl",
        "-sS",
        "--max-time",
        f"{timeout:g}",
        "--resolve",
        f"{host}:{port}:{address}",
        "--cacert",
        str(ca),
        "-o",
        "-",
        "--write-out",
        "\n%{http_code} %{content_type}",
        *extra,
        f"https://{host}:{port}{path}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    body, _, trailer = out.rpartition(b"\n")
    status, _, content_type = trailer.decode().partition(" ")
    return CurlAnswer(process.returncode or 0, int(status or "0"), content_type, body)
