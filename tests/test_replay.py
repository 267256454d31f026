"""Replay stores (protect/replay.py): one suite over memory, SQLite and a real Redis.

The shared suite runs against each store; then each store's own failure modes: a full memory
store, an SQLite file that is locked, corrupt or in an unusable place, a Redis that is closed,
silent, killed or protected by a password.  Every scenario runs in its own ``asyncio.run`` under a
deadline; Redis is a real ``redis-server`` on a free loopback port (redis_helpers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis.asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from mcinterconnect.protect.replay import (
    MAX_KEY_BYTES,
    MemoryReplayStore,
    RedisReplayStore,
    ReplayStore,
    ReplayStoreUnavailable,
    SqliteReplayStore,
    open_replay_store,
)
from ports import free_port
from redis_helpers import (
    RedisServer,
    needs_redis_server,
    redis_server,
    started_redis,
    unique_prefix,
)

# Listed so that ruff sees the imported fixture as used (pytest finds it by name).
__all__ = ["redis_server"]

DEADLINE = 15.0
T = TypeVar("T")


def run(scenario: Coroutine[Any, Any, T], deadline: float = DEADLINE) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(deadline):
            return await scenario

    return asyncio.run(bounded())


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Backend:
    """One kind of store under test.

    ``make()`` opens a new instance on the backend's state (the same SQLite file, the same Redis
    and prefix); ``shared`` says whether two instances see each other's keys; ``wait(s)`` lets
    ``s`` seconds pass (an injected clock where the store takes one, a real sleep for Redis)."""

    name: str
    make: Callable[[], ReplayStore]
    wait: Callable[[float], Awaitable[None]]
    shared: bool

    @contextlib.asynccontextmanager
    async def store(self) -> AsyncIterator[ReplayStore]:
        store = self.make()
        try:
            yield store
        finally:
            async with asyncio.timeout(5):
                await store.close()


def clock_wait(clock: FakeClock) -> Callable[[float], Awaitable[None]]:
    async def wait(seconds: float) -> None:
        clock.advance(seconds)

    return wait


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "memory":
        clock = FakeClock()
        return Backend("memory", lambda: MemoryReplayStore(clock=clock), clock_wait(clock), shared=False)
    if request.param == "sqlite":
        wall = FakeClock(time.time())
        path = tmp_path / "state" / "replay.db"
        return Backend("sqlite", lambda: SqliteReplayStore(path, clock=wall), clock_wait(wall), shared=True)
    server: RedisServer = request.getfixturevalue("redis_server")
    prefix = unique_prefix()
    # The shared suite is about answers, not deadlines: a generous timeout keeps it meaningful on a
    # loaded machine (the 0.25 s default's fail-closed behaviour has tests of its own below).
    return Backend(
        "redis", lambda: RedisReplayStore(server.url, prefix=prefix, timeout=2.0), asyncio.sleep, shared=True
    )


# --------------------------------------------------------------------------------------------
# The shared suite


def test_store_is_a_replay_store_named_after_its_kind(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.store() as store:
            assert isinstance(store, ReplayStore)
            assert store.name == backend.name

    run(scenario())


def test_first_sighting_true_then_replay_false(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.store() as store:
            assert await store.add_if_absent(b"ear-id-0000001", 60) is True
            assert await store.add_if_absent(b"ear-id-0000001", 60) is False
            assert await store.add_if_absent(b"ear-id-0000001", 60) is False

    run(scenario())


def test_key_expires_after_ttl_and_is_recorded_again(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.store() as store:
            assert await store.add_if_absent(b"short-lived", 0.6) is True
            await backend.wait(0.2)
            assert await store.add_if_absent(b"short-lived", 0.6) is False  # still in its window
            await backend.wait(0.5)
            assert await store.add_if_absent(b"short-lived", 0.6) is True  # window over: new
            assert await store.add_if_absent(b"short-lived", 0.6) is False  # and recorded again

    run(scenario())


def test_a_replay_does_not_extend_the_window(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.store() as store:
            assert await store.add_if_absent(b"k", 0.6) is True
            await backend.wait(0.3)
            assert await store.add_if_absent(b"k", 10) is False
            await backend.wait(0.4)
            assert await store.add_if_absent(b"k", 10) is True

    run(scenario())


EDGE_KEYS = [
    b"\x00",
    b"\x00\x00",
    b"a",
    b"a\x00",
    b"ab",
    b"\xff" * 16,
    bytes(range(16)),
    bytes(range(256)),
    b"k" * MAX_KEY_BYTES,
]


def test_different_keys_are_independent(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.store() as store:
            assert [await store.add_if_absent(key, 60) for key in EDGE_KEYS] == [True] * len(EDGE_KEYS)
            assert [await store.add_if_absent(key, 60) for key in EDGE_KEYS] == [False] * len(EDGE_KEYS)
            assert await store.add_if_absent(b"never seen", 60) is True

    run(scenario())


def test_fifty_concurrent_sightings_of_one_key_have_one_winner(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.store() as store:
            answers = await asyncio.gather(*(store.add_if_absent(b"contended", 60) for _ in range(50)))
            assert answers.count(True) == 1
            assert answers.count(False) == 49

    run(scenario())


def test_concurrent_sightings_of_many_keys_have_one_winner_each(backend: Backend) -> None:
    keys = [f"ear-{n}".encode() for n in range(20)]

    async def scenario() -> None:
        async with backend.store() as store:
            tries = [key for key in keys for _ in range(5)]
            answers = await asyncio.gather(*(store.add_if_absent(key, 60) for key in tries))
            winners = [key for key, answer in zip(tries, answers, strict=True) if answer]
            assert sorted(winners) == sorted(keys)

    run(scenario())


def test_two_instances_share_state_exactly_when_the_store_is_shared(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.store() as first, backend.store() as second:
            assert await first.add_if_absent(b"seen-by-first", 60) is True
            # A replay that reaches another instance of the border.
            assert await second.add_if_absent(b"seen-by-first", 60) is (not backend.shared)
            calls = [(first if n % 2 else second).add_if_absent(b"raced", 60) for n in range(50)]
            answers = await asyncio.gather(*calls)
            assert answers.count(True) == (1 if backend.shared else 2)

    run(scenario())


@pytest.mark.parametrize(
    ("key", "ttl"),
    [
        (b"", 60),
        (b"k" * (MAX_KEY_BYTES + 1), 60),
        ("text", 60),
        (b"k", 0),
        (b"k", -1),
        (b"k", float("nan")),
        (b"k", float("inf")),
        (b"k", True),
    ],
)
def test_bad_key_or_ttl_is_a_value_error(backend: Backend, key: Any, ttl: Any) -> None:
    async def scenario() -> None:
        async with backend.store() as store:
            with pytest.raises(ValueError, match=r"replay (key|ttl)"):
                await store.add_if_absent(key, ttl)
            assert await store.add_if_absent(b"k", 60) is True  # nothing was recorded

    run(scenario())


def test_closed_store_refuses_and_closes_twice(backend: Backend) -> None:
    async def scenario() -> None:
        store = backend.make()
        assert await store.add_if_absent(b"k", 60) is True
        await store.close()
        with pytest.raises(ReplayStoreUnavailable, match="closed"):
            await store.add_if_absent(b"other", 60)
        await store.close()

    run(scenario())


# --------------------------------------------------------------------------------------------
# Memory


def test_memory_expiry_is_exact_on_the_injected_clock() -> None:
    clock = FakeClock()
    store = MemoryReplayStore(clock=clock)

    async def scenario() -> None:
        assert await store.add_if_absent(b"k", 60) is True
        clock.advance(59.999)
        assert await store.add_if_absent(b"k", 60) is False
        clock.advance(0.001)
        assert await store.add_if_absent(b"k", 60) is True

    run(scenario())


def test_memory_store_full_refuses_new_keys_rather_than_forgetting() -> None:
    clock = FakeClock()
    store = MemoryReplayStore(max_entries=3, clock=clock)

    async def scenario() -> None:
        for key in (b"a", b"b"):
            assert await store.add_if_absent(key, 60) is True
        assert await store.add_if_absent(b"c", 10) is True
        with pytest.raises(ReplayStoreUnavailable, match=r"full \(3 live keys\)"):
            await store.add_if_absent(b"d", 60)
        assert await store.add_if_absent(b"a", 60) is False  # replays are still recognised
        assert len(store) == 3
        clock.advance(10)  # b"c" expires: its place is free again
        assert await store.add_if_absent(b"d", 60) is True
        with pytest.raises(ReplayStoreUnavailable, match="full"):
            await store.add_if_absent(b"e", 60)

    run(scenario())


def test_memory_store_needs_room_for_one_key() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryReplayStore(max_entries=0)


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(
            st.just("add"), st.sampled_from([b"a", b"b", b"c", b"d", b"e"]), st.sampled_from([1, 2, 5])
        ),
        st.tuples(st.just("advance"), st.sampled_from([0.5, 1, 3]), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(operations=OPERATIONS, max_entries=st.integers(1, 6))
def test_memory_store_matches_a_model(operations: list[tuple[str, Any, Any]], max_entries: int) -> None:
    clock = FakeClock(0.0)
    store = MemoryReplayStore(max_entries=max_entries, clock=clock)
    model: dict[bytes, float] = {}

    async def scenario() -> None:
        for operation, argument, ttl in operations:
            if operation == "advance":
                clock.advance(argument)
                continue
            live = {key: expiry for key, expiry in model.items() if expiry > clock.now}
            if argument in live:
                assert await store.add_if_absent(argument, ttl) is False
            elif len(live) >= max_entries:
                with pytest.raises(ReplayStoreUnavailable):
                    await store.add_if_absent(argument, ttl)
            else:
                assert await store.add_if_absent(argument, ttl) is True
                model[argument] = clock.now + ttl
            assert len(store) <= max_entries

    run(scenario())


# --------------------------------------------------------------------------------------------
# SQLite


def test_sqlite_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "replay.db"
    clock = FakeClock(time.time())

    async def scenario() -> None:
        first = SqliteReplayStore(path, clock=clock)
        assert await first.add_if_absent(b"before-restart", 60) is True
        await first.close()
        second = SqliteReplayStore(path, clock=clock)
        try:
            assert await second.add_if_absent(b"before-restart", 60) is False
            clock.advance(60)
            assert await second.add_if_absent(b"before-restart", 60) is True
        finally:
            await second.close()

    run(scenario())


def test_sqlite_layout_is_the_documented_one(tmp_path: Path) -> None:
    path = tmp_path / "replay.db"
    clock = FakeClock(2_000_000_000.0)

    async def scenario() -> None:
        store = SqliteReplayStore(path, clock=clock)
        try:
            assert await store.add_if_absent(b"\x01\x02", 90) is True
        finally:
            await store.close()

    run(scenario())
    with contextlib.closing(sqlite3.connect(path)) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        columns = [(row[1], row[2], row[5]) for row in raw.execute("PRAGMA table_info(replay_cache)")]
        assert columns == [("key", "BLOB", 1), ("expires_at", "REAL", 0)]
        assert raw.execute("SELECT key, expires_at FROM replay_cache").fetchall() == [
            (b"\x01\x02", 2_000_000_090.0)
        ]


def test_sqlite_purges_expired_rows(tmp_path: Path) -> None:
    path = tmp_path / "replay.db"
    clock = FakeClock(time.time())

    def rows() -> list[bytes]:
        with contextlib.closing(sqlite3.connect(path)) as raw:
            return sorted(key for (key,) in raw.execute("SELECT key FROM replay_cache"))

    async def scenario() -> None:
        store = SqliteReplayStore(path, clock=clock, purge_interval=30)
        try:
            for key in (b"a", b"b", b"c"):
                assert await store.add_if_absent(key, 10) is True
            assert await store.add_if_absent(b"long", 1000) is True
            clock.advance(20)
            assert await store.add_if_absent(b"d", 10) is True  # purge not yet due
            assert rows() == [b"a", b"b", b"c", b"d", b"long"]
            clock.advance(15)
            assert await store.add_if_absent(b"e", 10) is True  # due: a, b, c and d go
            assert rows() == [b"e", b"long"]
        finally:
            await store.close()

    run(scenario())


def test_sqlite_two_processes_on_one_file_count_each_key_once(tmp_path: Path) -> None:
    assert_one_winner_per_key_across_processes(f"sqlite:{tmp_path / 'replay.db'}")


def test_sqlite_locked_database_is_unavailable_within_bounded_time(tmp_path: Path) -> None:
    path = tmp_path / "replay.db"

    async def scenario() -> None:
        store = SqliteReplayStore(path, timeout=0.2)
        try:
            assert await store.add_if_absent(b"before", 60) is True
            with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as holder:
                holder.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
                started = time.monotonic()
                with pytest.raises(ReplayStoreUnavailable, match="locked"):
                    await store.add_if_absent(b"during", 60)
                assert time.monotonic() - started < 1.0
                holder.execute("ROLLBACK")
            assert await store.add_if_absent(b"during", 60) is True  # usable again
        finally:
            await store.close()

    run(scenario())


def test_sqlite_corrupt_file_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "replay.db"
    path.write_bytes(b"this is not an SQLite database\n" * 200)
    with pytest.raises(ReplayStoreUnavailable, match="not a database") as caught:
        SqliteReplayStore(path)
    assert "\n" not in str(caught.value)
    assert str(path) in str(caught.value)


def test_sqlite_in_a_place_that_is_not_a_directory_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the directory should be\n")
    with pytest.raises(ReplayStoreUnavailable, match=re.escape(str(Path("state") / "replay.db"))):
        SqliteReplayStore(blocker / "replay.db")


def test_sqlite_in_an_unwritable_directory_is_unavailable(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # Root ignores permission bits; /proc takes no new files from anyone.
        with pytest.raises(ReplayStoreUnavailable, match="unable to open database file"):
            SqliteReplayStore(Path("/proc") / f"mcic-replay-{os.getpid()}.db")
        return
    directory = tmp_path / "read-only"
    directory.mkdir()
    directory.chmod(0o555)
    try:
        with pytest.raises(ReplayStoreUnavailable, match="unable to open database file"):
            SqliteReplayStore(directory / "replay.db")
    finally:
        directory.chmod(0o755)


# --------------------------------------------------------------------------------------------
# Redis


@needs_redis_server
def test_redis_key_layout_is_the_documented_one(redis_server: RedisServer) -> None:
    prefix = unique_prefix()

    async def scenario() -> None:
        store = RedisReplayStore(redis_server.url, prefix=prefix)
        raw = redis.asyncio.Redis.from_url(redis_server.url)
        try:
            assert await store.add_if_absent(b"\x00\xab", 90) is True
            assert await raw.get(prefix + "00ab") == b"1"
            assert 0 < await raw.pttl(prefix + "00ab") <= 90_000
            assert await raw.keys(prefix + "*") == [(prefix + "00ab").encode()]
        finally:
            await store.close()
            await raw.aclose()

    run(scenario())


@needs_redis_server
def test_redis_default_prefix(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        store = RedisReplayStore(redis_server.url)
        raw = redis.asyncio.Redis.from_url(redis_server.url)
        try:
            key = os.urandom(16)
            assert await store.add_if_absent(key, 60) is True
            assert await raw.exists("mcic:ear:" + key.hex()) == 1
        finally:
            await store.close()
            await raw.aclose()

    run(scenario())


@needs_redis_server
def test_redis_two_processes_count_each_key_once(redis_server: RedisServer) -> None:
    assert_one_winner_per_key_across_processes(redis_server.url)


def test_redis_closed_port_is_unavailable_quickly() -> None:
    port = free_port()  # nothing listens there

    async def scenario() -> None:
        store = RedisReplayStore(f"redis://127.0.0.1:{port}/0")
        try:
            started = time.monotonic()
            with pytest.raises(
                ReplayStoreUnavailable, match=r"^redis unreachable: redis://127\.0\.0\.1"
            ) as caught:
                await store.add_if_absent(b"k", 60)
            assert time.monotonic() - started < 1.0
            # The refusal itself, not a retry loop cut off by the deadline.
            assert "Error 111" in str(caught.value)
            assert "no answer within" not in str(caught.value)
        finally:
            await store.close()

    run(scenario())


def test_redis_that_never_answers_is_unavailable_within_the_timeout() -> None:
    async def scenario() -> None:
        held: list[asyncio.StreamWriter] = []

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            held.append(writer)  # accept, read nothing, answer nothing

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        store = RedisReplayStore(f"redis://127.0.0.1:{port}/0", timeout=0.25)
        try:
            started = time.monotonic()
            with pytest.raises(ReplayStoreUnavailable, match=r"^redis unreachable:"):
                await store.add_if_absent(b"k", 60)
            assert time.monotonic() - started < 1.0
        finally:
            await store.close()
            for writer in held:
                writer.close()
            server.close()
            await server.wait_closed()

    run(scenario())


def test_redis_set_is_never_retried() -> None:
    # A retried SET NX whose first reply was lost would answer "replay" for a first sighting.
    async def scenario() -> None:
        accepted: list[int] = []

        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(1)
            writer.close()

        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        store = RedisReplayStore(f"redis://127.0.0.1:{port}/0")
        try:
            with pytest.raises(ReplayStoreUnavailable, match=r"^redis unreachable:"):
                await store.add_if_absent(b"k", 60)
            assert accepted == [1]
        finally:
            await store.close()
            server.close()
            await server.wait_closed()

    run(scenario())


@needs_redis_server
def test_redis_killed_mid_run_is_unavailable_then_used_again_when_back(tmp_path: Path) -> None:
    server = started_redis(tmp_path / "redis")

    async def scenario() -> None:
        store = RedisReplayStore(server.url)
        try:
            assert await store.add_if_absent(b"before", 60) is True
            server.kill()
            started = time.monotonic()
            with pytest.raises(ReplayStoreUnavailable, match=r"^redis unreachable:"):
                await store.add_if_absent(b"during", 60)
            with pytest.raises(ReplayStoreUnavailable, match=r"^redis unreachable:"):
                await store.add_if_absent(b"before", 60)  # not answered "new", nor "replay"
            assert time.monotonic() - started < 1.0
            server.start()  # same port, empty (no persistence in this test server)
            assert await store.add_if_absent(b"after", 60) is True
            assert await store.add_if_absent(b"after", 60) is False
        finally:
            await store.close()

    try:
        run(scenario())
    finally:
        server.stop()


SECRET = "s3cr3t-Pa55"


def assert_no_secret(error: BaseException, store: object) -> None:
    texts = [str(error), repr(error), repr(store), getattr(store, "location", "")]
    cause = error.__cause__
    while cause is not None:
        texts.append(str(cause))
        cause = cause.__cause__
    assert not [text for text in texts if SECRET in text]
    assert "\n" not in str(error)


def test_redis_password_never_appears_when_unreachable() -> None:
    async def scenario() -> None:
        store = RedisReplayStore(f"redis://user:{SECRET}@127.0.0.1:{free_port()}/0")
        try:
            with pytest.raises(ReplayStoreUnavailable) as caught:
                await store.add_if_absent(b"k", 60)
            assert_no_secret(caught.value, store)
            assert store.location.startswith("redis://127.0.0.1:")
        finally:
            await store.close()

    run(scenario())


@needs_redis_server
def test_redis_with_a_password(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start("--requirepass", SECRET)

    async def scenario() -> None:
        good = RedisReplayStore(f"redis://:{SECRET}@127.0.0.1:{server.port}/0")
        wrong = RedisReplayStore(f"redis://:not-{SECRET}@127.0.0.1:{server.port}/0")
        missing = RedisReplayStore(f"redis://127.0.0.1:{server.port}/0")
        try:
            assert await good.add_if_absent(b"k", 60) is True
            assert await good.add_if_absent(b"k", 60) is False
            for store in (wrong, missing):
                with pytest.raises(
                    ReplayStoreUnavailable, match=r"^redis refused authentication: "
                ) as caught:
                    await store.add_if_absent(b"k", 60)
                assert_no_secret(caught.value, store)
        finally:
            for store in (good, wrong, missing):
                await store.close()

    try:
        run(scenario())
    finally:
        server.stop()


# --------------------------------------------------------------------------------------------
# Across processes

WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from mcinterconnect.protect.replay import RedisReplayStore, open_replay_store

    async def main() -> None:
        spec, count, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
        store = (
            RedisReplayStore(spec, prefix=prefix)
            if spec.startswith("redis://")
            else open_replay_store(spec)
        )
        print("ready", flush=True)
        sys.stdin.readline()  # start together
        async with asyncio.timeout(20):
            answers = await asyncio.gather(
                *(store.add_if_absent(f"key-{n}".encode(), 60) for n in range(count))
            )
            await store.close()
        print("".join("1" if answer else "0" for answer in answers), flush=True)

    asyncio.run(main())
    """
)


def assert_one_winner_per_key_across_processes(spec: str, processes: int = 4, keys: int = 40) -> None:
    prefix = unique_prefix()  # one for all workers: they must share keys
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, spec, str(keys), prefix],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        outputs = []
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        for worker in workers:
            out, err = worker.communicate(timeout=30)
            assert worker.returncode == 0, err
            outputs.append(out.strip())
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait(timeout=10)
    assert all(len(line) == keys for line in outputs), outputs
    winners_per_key = [sum(line[n] == "1" for line in outputs) for n in range(keys)]
    assert winners_per_key == [1] * keys


# --------------------------------------------------------------------------------------------
# open_replay_store


def test_open_memory() -> None:
    store = open_replay_store("memory")
    assert isinstance(store, MemoryReplayStore)
    run(store.close())


def test_open_sqlite_relative_to_base_and_absolute(tmp_path: Path) -> None:
    relative = open_replay_store("sqlite:state/replay.db", base=tmp_path)
    absolute = open_replay_store(f"sqlite:{tmp_path / 'elsewhere.db'}", base=tmp_path / "ignored")
    try:
        assert isinstance(relative, SqliteReplayStore)
        assert relative.path == tmp_path / "state" / "replay.db"
        assert relative.path.is_file()
        assert isinstance(absolute, SqliteReplayStore)
        assert absolute.path == tmp_path / "elsewhere.db"
        assert absolute.path.is_file()
    finally:
        run(relative.close())
        run(absolute.close())


def test_open_redis_hides_credentials() -> None:
    store = open_replay_store(f"redis://:{SECRET}@cache.example:6380/2")
    try:
        assert isinstance(store, RedisReplayStore)
        assert store.location == "redis://cache.example:6380/2"
        assert SECRET not in repr(store)
        secure = open_replay_store("rediss://cache.example")
        assert isinstance(secure, RedisReplayStore)
        assert secure.location == "rediss://cache.example:6379/0"
        run(secure.close())
    finally:
        run(store.close())


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("", "unknown replay store"),
        ("Memory", "unknown replay store 'Memory'"),
        ("memory ", "unknown replay store"),
        ("sqlite:", "needs a path"),
        ("sqlite:///var/lib/replay.db", "not a URL"),
        ("sqlite::memory:", "use 'memory'"),
        ("redis://", "no host"),
        ("redis://cache.example:port/0", "malformed"),
        ("redis://cache.example:99999/0", "malformed"),
        ("redis://cache.example:0/0", "port 0"),
        ("redis://cache.example:6379/db1", "database must be a number"),
        (f"postgres://user:{SECRET}@db.example/replay", "unknown replay store 'postgres'"),
        (f"user:{SECRET}@cache.example", "unknown replay store 'user'"),
        (f"{SECRET}@cache.example", "unknown replay store '\\?'"),
        ("unix:///run/redis.sock", "unknown replay store 'unix'"),
    ],
)
def test_open_refuses_other_specs_with_a_one_line_reason(spec: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as caught:
        open_replay_store(spec)
    assert "\n" not in str(caught.value)
    assert SECRET not in str(caught.value)
