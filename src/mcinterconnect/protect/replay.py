"""Replay stores: "has this EAR ID been seen within its freshness window?" (TS 33.180 9.6).

One question, ``add_if_absent(key, ttl)``, answered atomically by three stores behind one
interface (ARCHITECTURE.md §4):

* ``MemoryReplayStore`` — a dict in this process (tests, one-process demo);
* ``SqliteReplayStore`` — one file on this node, shared by its processes, kept across restarts;
* ``RedisReplayStore`` — ``SET key 1 NX PX ttl`` on a Redis shared by several border instances
  (field-notes §9.3).

Every store fails closed: when it cannot answer within bounded time it raises
``ReplayStoreUnavailable`` with a one-line reason (never a credential), and the caller refuses the
request.  ``docs/PROFILE.md`` (Part 3, replay stores) says what is stored where and why.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import math
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable
from urllib.parse import SplitResult, unquote, urlsplit

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = [
    "MAX_KEY_BYTES",
    "MemoryReplayStore",
    "RedisReplayStore",
    "ReplayStore",
    "ReplayStoreUnavailable",
    "SqliteReplayStore",
    "open_replay_store",
]

#: Longest key accepted (an EAR ID is 16 octets); bounds what a caller bug can make a store hold.
MAX_KEY_BYTES = 1024

_T = TypeVar("_T")


class ReplayStoreUnavailable(RuntimeError):  # noqa: N818 (name fixed by the IS proxy integration)
    """The store cannot answer; the caller must refuse (fail closed).  The message is one line
    and names no credential."""


@runtime_checkable
class ReplayStore(Protocol):
    """Records keys for a time; answers whether a key is new."""

    name: str

    async def add_if_absent(self, key: bytes, ttl: float) -> bool:
        """True: first sighting, now recorded for ``ttl`` seconds.  False: seen before (a replay).

        Atomic: of any number of concurrent calls with one key (across processes for SQLite and
        Redis) exactly one gets True.  Raises ``ReplayStoreUnavailable`` within bounded time when
        the store cannot answer."""
        ...

    async def close(self) -> None: ...


def _check_entry(key: bytes, ttl: float) -> None:
    """Caller bugs are ValueErrors, not store failures."""
    if not isinstance(key, bytes) or not key:
        raise ValueError("replay key must be non-empty bytes")
    if len(key) > MAX_KEY_BYTES:
        raise ValueError(f"replay key of {len(key)} bytes is longer than {MAX_KEY_BYTES}")
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl) or ttl <= 0:
        raise ValueError(f"replay ttl must be finite seconds above 0, not {ttl!r}")


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "no detail"


# --------------------------------------------------------------------------------------------
# Memory


class MemoryReplayStore:
    """Keys in a dict of this process, each with its expiry on ``clock`` (monotonic by default).

    Single-threaded asyncio makes ``add_if_absent`` atomic: it never awaits between the look-up
    and the insert.  A heap ordered by expiry lets each call drop the expired keys in
    O(log n).  When ``max_entries`` live keys are held, a new key is refused with
    ``ReplayStoreUnavailable``: forgetting a live key would let its replay through.
    """

    name: str = "memory"

    def __init__(self, *, max_entries: int = 1_000_000, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        self.max_entries = max_entries
        self.location = "memory"
        self._clock = clock
        self._expiry: dict[bytes, float] = {}
        # Exactly one heap entry per key in _expiry: a key is only re-added after its entry
        # was popped as expired.
        self._heap: list[tuple[float, bytes]] = []
        self._closed = False

    def __len__(self) -> int:
        return len(self._expiry)

    def __repr__(self) -> str:
        return f"MemoryReplayStore(keys={len(self._expiry)}, max_entries={self.max_entries})"

    def _purge(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            _, key = heapq.heappop(self._heap)
            del self._expiry[key]

    async def add_if_absent(self, key: bytes, ttl: float) -> bool:
        _check_entry(key, ttl)
        if self._closed:
            raise ReplayStoreUnavailable("memory replay store is closed")
        now = self._clock()
        self._purge(now)
        if key in self._expiry:
            return False
        if len(self._expiry) >= self.max_entries:
            raise ReplayStoreUnavailable(
                f"memory replay store full ({self.max_entries} live keys): refusing rather than forgetting"
            )
        expires_at = now + ttl
        self._expiry[key] = expires_at
        heapq.heappush(self._heap, (expires_at, key))
        return True

    async def close(self) -> None:
        self._closed = True
        self._expiry.clear()
        self._heap.clear()


# --------------------------------------------------------------------------------------------
# SQLite

_SQLITE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS replay_cache (key BLOB PRIMARY KEY, expires_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS replay_cache_expires_at ON replay_cache (expires_at)",
)
# One statement, so atomic under SQLite's write lock whichever process runs it: a new key is
# inserted, an expired one is taken over, a live one is left alone (no row changed).
_SQLITE_ADD = (
    "INSERT INTO replay_cache (key, expires_at) VALUES (?1, ?2) "
    "ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at "
    "WHERE replay_cache.expires_at <= ?3"
)
_SQLITE_PURGE = (
    "DELETE FROM replay_cache WHERE rowid IN (SELECT rowid FROM replay_cache WHERE expires_at <= ?1 LIMIT ?2)"
)
_PURGE_BATCH = 10_000


class SqliteReplayStore:
    """Keys in one SQLite file (WAL mode): one node, several processes, kept across restarts.

    Expiry is on the wall clock (``clock``, ``time.time`` by default): a monotonic clock means
    nothing to another process or after a restart.

    The blocking sqlite3 calls run on one worker thread owned by the store, never on the event
    loop: a write waits up to ``timeout`` seconds for another process's lock and a commit may
    fsync, and either would stall every request of this instance.  One thread (not the shared
    ``to_thread`` pool) keeps the connection on the thread that made it and cannot starve other
    users of the default executor.  Each call is bounded by ``2 × timeout + 1`` seconds.

    The file is opened in the constructor, so a corrupt file or an unwritable place stops start-up
    with ``ReplayStoreUnavailable``; later failures raise it per call.  Expired rows are purged
    (in batches) at most every ``purge_interval`` seconds, on the worker thread.
    """

    name: str = "sqlite"

    def __init__(
        self,
        path: Path,
        *,
        timeout: float = 0.5,
        clock: Callable[[], float] = time.time,
        purge_interval: float = 60.0,
    ) -> None:
        if not math.isfinite(timeout) or timeout <= 0:
            raise ValueError(f"timeout must be finite seconds above 0, not {timeout!r}")
        self.path = Path(path)
        self.location = f"sqlite:{self.path}"
        self.timeout = timeout
        self._clock = clock
        self._purge_interval = purge_interval
        self._next_purge = 0.0
        self._deadline = 2 * timeout + 1.0
        self._connection: sqlite3.Connection | None = None
        self._closed = False
        self._worker = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="replay-sqlite"
        )
        try:
            self._worker.submit(self._open).result(timeout=self._deadline)
        except concurrent.futures.TimeoutError:
            self._abandon()
            raise ReplayStoreUnavailable(
                f"{self.location}: no answer within {self._deadline:g} s while opening"
            ) from None
        except ReplayStoreUnavailable:
            self._abandon()
            raise

    def __repr__(self) -> str:
        return f"SqliteReplayStore({str(self.path)!r}, timeout={self.timeout})"

    def _unavailable(self, error: BaseException) -> ReplayStoreUnavailable:
        return ReplayStoreUnavailable(f"{self.location}: {type(error).__name__}: {_one_line(str(error))}")

    def _abandon(self) -> None:
        self._closed = True
        self._worker.submit(self._close_connection)
        self._worker.shutdown(wait=False, cancel_futures=False)

    # The methods below run on the worker thread only.

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        except (OSError, sqlite3.Error) as error:
            raise self._unavailable(error) from error
        self._connection = connection
        try:
            mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                raise ReplayStoreUnavailable(f"{self.location}: cannot switch to WAL mode (got {mode!r})")
            # A commit survives a crash of this process; a power cut may lose the last commits
            # (WAL + NORMAL), which reopens at most those keys' windows.
            connection.execute("PRAGMA synchronous=NORMAL")
            for statement in _SQLITE_SCHEMA:
                connection.execute(statement)
        except sqlite3.Error as error:
            raise self._unavailable(error) from error

    def _add(self, key: bytes, ttl: float) -> bool:
        connection = self._connection
        if connection is None:
            raise ReplayStoreUnavailable(f"{self.location}: closed")
        now = self._clock()
        try:
            if now >= self._next_purge:
                purged = connection.execute(_SQLITE_PURGE, (now, _PURGE_BATCH)).rowcount
                # A full batch means more are waiting: purge again on the next call.
                self._next_purge = now if purged >= _PURGE_BATCH else now + self._purge_interval
            changed = connection.execute(_SQLITE_ADD, (key, now + ttl, now)).rowcount
        except sqlite3.Error as error:
            raise self._unavailable(error) from error
        return changed == 1

    def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    # Event-loop side.

    async def _call(self, function: Callable[[], _T]) -> _T:
        if self._closed:
            raise ReplayStoreUnavailable(f"{self.location}: closed")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._deadline):
                return await loop.run_in_executor(self._worker, function)
        except TimeoutError:
            raise ReplayStoreUnavailable(f"{self.location}: no answer within {self._deadline:g} s") from None
        except RuntimeError as error:
            if isinstance(error, ReplayStoreUnavailable):
                raise
            # The worker was shut down by close() while this call waited to start.
            raise ReplayStoreUnavailable(f"{self.location}: closed") from error

    async def add_if_absent(self, key: bytes, ttl: float) -> bool:
        _check_entry(key, ttl)
        return await self._call(lambda: self._add(key, ttl))

    async def close(self) -> None:
        if self._closed:
            return
        try:
            await self._call(self._close_connection)
        except ReplayStoreUnavailable:
            pass  # closing is best effort; the connection goes with the thread
        finally:
            self._closed = True
            self._worker.shutdown(wait=False, cancel_futures=True)


# --------------------------------------------------------------------------------------------
# Redis


def _redis_location(parts: SplitResult) -> str:
    """The URL without user, password or query: safe for logs and messages."""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{parts.port or 6379}/{parts.path.strip('/') or '0'}"


class RedisReplayStore:
    """Keys in Redis shared by every instance of a border: ``SET prefix+hex(key) 1 NX PX ttl_ms``.

    ``url`` is ``redis://[[user]:password@]host[:port][/db]`` (or ``rediss://`` for TLS).  No
    connection is made until the first call.  A call is bounded by ``timeout`` for the connection
    and ``timeout`` for the answer, and is never retried: a retried ``SET NX`` whose first reply
    was lost would answer "replay" for a first sighting.  A pooled connection that the server
    closed is replaced on the next call, so a restarted Redis is used again without restarting
    the border.  Messages and ``repr`` show the URL without credentials (``location``).
    """

    name: str = "redis"

    def __init__(self, url: str, *, timeout: float = 0.25, prefix: str = "mcic:ear:") -> None:
        if not math.isfinite(timeout) or timeout <= 0:
            raise ValueError(f"timeout must be finite seconds above 0, not {timeout!r}")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise ValueError("redis replay store: malformed URL (port?)") from None
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(
                f"redis replay store: scheme must be redis:// or rediss://, not {parts.scheme!r}"
            )
        if not parts.hostname:
            raise ValueError("redis replay store: URL has no host")
        if port == 0:
            raise ValueError("redis replay store: port 0")
        db = parts.path.strip("/") or "0"
        if not db.isdigit():
            raise ValueError(f"redis replay store: database must be a number, not {db!r}")
        self.location = _redis_location(parts)
        self.timeout = timeout
        self.prefix = prefix
        # Strings to scrub from any message that a client error might echo.
        self._secrets = [secret for secret in (parts.password, unquote(parts.password or "")) if secret]
        self._closed = False
        self._client = redis.asyncio.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )

    def __repr__(self) -> str:
        return f"RedisReplayStore({self.location!r}, timeout={self.timeout}, prefix={self.prefix!r})"

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return _one_line(text)

    async def add_if_absent(self, key: bytes, ttl: float) -> bool:
        _check_entry(key, ttl)
        if self._closed:
            raise ReplayStoreUnavailable(f"redis {self.location}: closed")
        ttl_ms = max(1, math.ceil(ttl * 1000))
        try:
            async with asyncio.timeout(2 * self.timeout):
                answer = await self._client.set(self.prefix + key.hex(), b"1", nx=True, px=ttl_ms)
        except (TimeoutError, RedisTimeoutError):
            raise ReplayStoreUnavailable(
                f"redis unreachable: {self.location}: no answer within {2 * self.timeout:g} s"
            ) from None
        except AuthenticationError as error:  # a ConnectionError in redis-py, but not "unreachable"
            raise ReplayStoreUnavailable(
                f"redis refused authentication: {self.location}: {self._scrub(str(error))}"
            ) from None
        except (RedisConnectionError, OSError) as error:
            raise ReplayStoreUnavailable(
                f"redis unreachable: {self.location}: {self._scrub(str(error))}"
            ) from None
        except RedisError as error:  # READONLY replica, OOM, NOAUTH, ...
            raise ReplayStoreUnavailable(
                f"redis error: {self.location}: {type(error).__name__}: {self._scrub(str(error))}"
            ) from None
        # SET NX answers OK when it set the key and nil when the key existed.
        return bool(answer)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            async with asyncio.timeout(2 * self.timeout):
                await self._client.aclose()
        except (TimeoutError, RedisError, OSError):
            pass  # the server is gone; nothing of ours is left open on it


# --------------------------------------------------------------------------------------------
# Configuration


def open_replay_store(spec: str, *, base: Path | None = None) -> ReplayStore:
    """The store a configuration string names: ``memory``, ``sqlite:PATH`` (a relative PATH is
    relative to ``base``, or to the working directory without one), or ``redis://host:port/db``
    (also ``rediss://``, with credentials).

    Raises ValueError with a one-line reason for anything else, and ``ReplayStoreUnavailable``
    when an SQLite file cannot be opened.  No message repeats a credential."""
    if spec == "memory":
        return MemoryReplayStore()
    if spec.startswith("sqlite:"):
        raw = spec.removeprefix("sqlite:")
        if not raw:
            raise ValueError("replay store 'sqlite:' needs a path, e.g. sqlite:state/replay.db")
        if raw.startswith("//"):
            raise ValueError(
                "replay store: write sqlite:PATH (e.g. sqlite:/var/lib/mcic/replay.db), not a URL"
            )
        if raw == ":memory:":
            raise ValueError("replay store: use 'memory' for an in-process store, not sqlite::memory:")
        path = Path(raw)
        if not path.is_absolute() and base is not None:
            path = base / path
        return SqliteReplayStore(path)
    if spec.startswith(("redis://", "rediss://")):
        return RedisReplayStore(spec)
    kind = spec.split(":", 1)[0] if ":" in spec else spec
    if "@" in kind or len(kind) > 32 or not kind.isprintable():
        kind = "?"
    raise ValueError(
        f"unknown replay store {kind!r}: expected 'memory', 'sqlite:PATH' or 'redis://host:port/db'"
    )
