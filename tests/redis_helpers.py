"""A real ``redis-server`` (Debian package redis-server) on a free loopback port, for tests.

``redis_server`` is a session fixture: one server for the whole run, without persistence, stopped
at the end.  Tests that share it keep apart by a key prefix of their own (``unique_prefix``).
Tests that kill or restart a server use ``RedisServer`` directly.  To use the fixture in a test
module, import it and list it in the module's ``__all__`` (otherwise ruff reports the import as
unused, F401, and each test argument of that name as a redefinition, F811)::

    from redis_helpers import RedisServer, redis_server

    __all__ = ["redis_server"]

    def test_something(redis_server: RedisServer) -> None: ...
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ports import free_port

REDIS_SERVER = shutil.which("redis-server")
SKIP_REASON = "redis-server (Debian package redis-server) not installed"
needs_redis_server = pytest.mark.skipif(REDIS_SERVER is None, reason=SKIP_REASON)


def unique_prefix() -> str:
    return f"test:{uuid.uuid4().hex}:"


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as connection:
            connection.sendall(b"PING\r\n")
            connection.settimeout(0.5)
            # A server with a password answers NOAUTH: it is up all the same.
            return connection.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


@dataclass
class RedisServer:
    """One ``redis-server`` process on 127.0.0.1: ``start()``, ``kill()``, ``stop()``.

    ``start()`` may be called again after ``kill()``/``stop()`` and reuses the same port, as a
    restarted server would."""

    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *extra: str, ready_within: float = 10.0) -> None:
        if REDIS_SERVER is None:
            pytest.skip(SKIP_REASON)
        assert self.process is None, "already running"
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / f"redis-{self.port}.log").open("ab")
        with log:
            self.process = subprocess.Popen(
                [
                    REDIS_SERVER,
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.workdir),
                    "--daemonize",
                    "no",
                    *extra,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + ready_within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if _answers_ping(self.port):
                return
            time.sleep(0.02)
        self.stop()
        tail = (self.workdir / f"redis-{self.port}.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"redis-server on port {self.port} did not come up:\n{tail}")

    def kill(self) -> None:
        """SIGKILL: the server vanishes without closing anything politely."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None


def started_redis(workdir: Path) -> RedisServer:
    """A running server; a port taken between asking and binding is retried on another."""
    last: Exception | None = None
    for _ in range(3):
        server = RedisServer(workdir)
        try:
            server.start()
        except RuntimeError as error:
            last = error
            continue
        return server
    raise RuntimeError(f"could not start redis-server: {last}")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the test session (skips when the binary is missing)."""
    if REDIS_SERVER is None:
        pytest.skip(SKIP_REASON)
    server = started_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()
