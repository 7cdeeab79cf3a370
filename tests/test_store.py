"""The account store's contract, checked on every backend: memory, SQLite and Redis.

Memory and SQLite run on a fake clock; Redis runs on its server's clock, so for it the
tests let real (short) time pass instead.
"""

from __future__ import annotations

import heapq
import itertools
import random
import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emoclient._store import (
    RETENTION,
    Intent,
    MemoryStore,
    RedisStore,
    SQLiteStore,
    StoreError,
    gcra_try,
)

Store = MemoryStore | SQLiteStore | RedisStore

# Short enough for Redis, whose tests let real time pass.
TTL = 0.2

# The redis_server and redis_url fixtures, one server for the whole session.
pytest_plugins = ["redis_server"]


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Backend:
    store: Store
    clock: FakeClock | None  # None: the store keeps its own clock (the Redis server's)

    async def advance(self, seconds: float) -> None:
        if self.clock is None:
            await anyio.sleep(seconds)
        else:
            self.clock.now += seconds

    async def acquire(self, key: str, *, interval: float) -> float:
        """Ask until granted, waiting as told; the store's time of the grant."""
        while True:
            wait, now = await self.store.try_acquire_at(key, interval=interval)
            if wait == 0.0:
                return now
            await self.advance(wait)


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    fake = FakeClock()
    clock: FakeClock | None = fake
    store: Store
    if request.param == "memory":
        store = MemoryStore(clock=fake)
    elif request.param == "sqlite":
        store = SQLiteStore(tmp_path / "store.sqlite3", clock=fake)
    else:
        prefix = f"test-{uuid.uuid4().hex}:"
        url = request.getfixturevalue("redis_url")
        store, clock = RedisStore(url, prefix=prefix), None
        # As on a server up for long: the first grant of a key after data loss waits an
        # interval (test_store_redis.py), which would stretch these tests.
        await redis_set(url, prefix + "boot", "0")
    async with store:
        yield Backend(store, clock)


async def redis_set(url: str, key: str, value: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        await client.set(key, value)
    finally:
        await client.aclose()


# --- GCRA maths -------------------------------------------------------------------------


def test_gcra_grants_when_due_and_spaces_from_the_grant() -> None:
    assert gcra_try(None, 100.0, interval=0.25) == (0.0, 100.25)
    assert gcra_try(99.0, 100.0, interval=0.25) == (0.0, 100.25)  # idle time earns no burst
    assert gcra_try(100.25, 100.25, interval=0.25) == (0.0, 100.5)


def test_gcra_refusal_reserves_nothing() -> None:
    assert gcra_try(100.25, 100.0, interval=0.25) == (0.25, 100.25)


def test_gcra_pulls_in_a_tat_left_ahead_by_a_clock_step_back() -> None:
    # The clock went back an hour: wait one interval, not an hour.
    assert gcra_try(3700.0, 100.0, interval=0.25) == (0.25, 100.25)


@pytest.mark.parametrize("interval", [0.0, -1.0, float("nan"), float("inf")])
def test_gcra_refuses_a_meaningless_interval(interval: float) -> None:
    with pytest.raises(ValueError, match="interval"):
        gcra_try(None, 0.0, interval=interval)


def most_in_one_second(grants: list[float], limit: int) -> int:
    """The largest number of grants in any half-open window [t, t + 1 s), up to limit + 1."""
    grants = sorted(grants)
    if any(b - a < 1.0 for a, b in zip(grants, grants[limit:], strict=False)):
        return limit + 1
    return min(len(grants), limit)


@settings(max_examples=300, deadline=None)
@given(
    rate_log2=st.integers(min_value=0, max_value=6),
    # Each call: does the caller first sleep the wait it was told, then how late is it (on a
    # 2**-20 s grid, so the sums stay exact and the check can allow no excess at all).
    calls=st.lists(
        st.tuples(st.booleans(), st.integers(min_value=0, max_value=2**17)),
        min_size=1,
        max_size=300,
    ),
)
async def test_no_one_second_window_exceeds_the_limit(
    rate_log2: int, calls: list[tuple[bool, int]]
) -> None:
    limit = 2**rate_log2
    clock = FakeClock(1000.0)
    store = MemoryStore(clock=clock)
    grants, wait = [], 0.0
    for obeys, lateness in calls:
        clock.now += (wait if obeys else 0.0) + lateness / 2**20
        wait = await store.try_acquire("k", interval=1 / limit)
        if wait == 0.0:
            grants.append(clock.now)
    assert most_in_one_second(grants, limit) <= limit


async def test_continuous_demand_achieves_the_limit() -> None:
    # Three callers that each wake up to 2 ms late, as real event loops do.
    clock, rng, rate, seconds = FakeClock(), random.Random(8), 20.0, 120.0
    store = MemoryStore(clock=clock)
    start = clock.now
    wakeups = [(start, caller) for caller in range(3)]
    grants = 0
    while wakeups[0][0] < start + seconds:
        clock.now, caller = heapq.heappop(wakeups)
        wait = await store.try_acquire("submit", interval=1 / rate)
        grants += wait == 0.0
        heapq.heappush(wakeups, (clock.now + wait + rng.uniform(0, 0.002), caller))
    assert 0.97 * rate <= grants / seconds <= rate + 1 / seconds


# --- rates on every backend -------------------------------------------------------------


async def test_grants_are_spaced_by_the_interval(backend: Backend) -> None:
    # 1/16 s is exact in binary, so the sums near epoch times carry no rounding.
    grants = [await backend.acquire("submit", interval=1 / 16) for _ in range(5)]
    assert all(b - a >= 1 / 16 for a, b in itertools.pairwise(grants))


async def test_a_refused_caller_reserves_nothing(backend: Backend) -> None:
    store = backend.store
    granted = await backend.acquire("submit", interval=0.5)
    wait, refused_at = await store.try_acquire_at("submit", interval=0.5)
    assert wait == pytest.approx(granted + 0.5 - refused_at)
    # Asking again and again while early pushes nothing back: the next grant is at TAT.
    assert await store.try_acquire("submit", interval=0.5) > 0.0
    await backend.advance(wait)
    assert await backend.acquire("submit", interval=0.5) - granted < 1.0


async def test_rate_keys_are_independent(backend: Backend) -> None:
    store = backend.store
    assert await store.try_acquire("submit", interval=30.0) == 0.0
    assert await store.try_acquire("submit", interval=30.0) > 0.0
    assert await store.try_acquire("query", interval=30.0) == 0.0


# --- leases -----------------------------------------------------------------------------


async def test_leases_respect_the_window_size(backend: Backend) -> None:
    store = backend.store
    assert await store.try_lease("w", size=2, holder="a", ttl=30)
    assert await store.try_lease("w", size=2, holder="b", ttl=30)
    assert not await store.try_lease("w", size=2, holder="c", ttl=30)
    assert await store.try_lease("w", size=2, holder="a", ttl=30)  # held: renewed
    assert await store.lease_count("w") == 2
    assert await store.lease_count("other") == 0


async def test_release_frees_the_slot_at_once(backend: Backend) -> None:
    store = backend.store
    assert await store.try_lease("w", size=1, holder="a", ttl=30)
    await store.release_lease("w", holder="a")
    await store.release_lease("w", holder="a")  # twice is harmless
    assert await store.lease_count("w") == 0
    assert await store.try_lease("w", size=1, holder="b", ttl=30)


async def test_an_unrenewed_lease_expires_after_its_ttl(backend: Backend) -> None:
    store = backend.store
    assert await store.try_lease("w", size=1, holder="dead", ttl=TTL)
    assert not await store.try_lease("w", size=1, holder="b", ttl=30)
    await backend.advance(TTL * 1.5)
    assert await store.lease_count("w") == 0
    assert not await store.renew_lease("w", holder="dead", ttl=TTL)
    assert await store.try_lease("w", size=1, holder="b", ttl=30)


async def test_renewing_keeps_a_lease_past_its_first_ttl(backend: Backend) -> None:
    store, ttl = backend.store, 0.6  # renewed every 0.2 s: room for a stalled test on Redis
    assert await store.try_lease("w", size=1, holder="a", ttl=ttl)
    for _ in range(4):
        await backend.advance(ttl / 3)
        assert await store.renew_lease("w", holder="a", ttl=ttl)
    assert not await store.try_lease("w", size=1, holder="b", ttl=ttl)
    assert not await store.renew_lease("w", holder="b", ttl=ttl)  # never held


async def test_lease_arguments_are_checked(backend: Backend) -> None:
    with pytest.raises(ValueError, match="size"):
        await backend.store.try_lease("w", size=0, holder="a", ttl=1)
    with pytest.raises(ValueError, match="ttl"):
        await backend.store.try_lease("w", size=1, holder="a", ttl=0)


# --- intents and task ownership ---------------------------------------------------------


async def test_intents_are_listed_then_abandoned_not_dropped(backend: Backend) -> None:
    store = backend.store
    await store.open_intent("acct", "emo", owner="late", at=20.0, ttl=30)
    await store.open_intent("acct", "emo", owner="dying", at=10.0, ttl=TTL)
    intents = await store.open_intents("acct", "emo")
    assert [(i.owner, i.at, i.abandoned) for i in intents] == [
        ("dying", 10.0, False),
        ("late", 20.0, False),
    ]
    await backend.advance(TTL * 1.5)
    dying, late = await store.open_intents("acct", "emo")
    assert (dying.owner, dying.abandoned, late.abandoned) == ("dying", True, False)
    assert await store.open_intents("acct", "emoji") == []


async def test_reopening_an_intent_renews_it(backend: Backend) -> None:
    store = backend.store
    await store.open_intent("acct", "emo", owner="o", at=10.0, ttl=TTL)
    [first] = await store.open_intents("acct", "emo")
    await backend.advance(TTL * 1.5)
    await store.open_intent("acct", "emo", owner="o", at=10.0, ttl=30)
    [renewed] = await store.open_intents("acct", "emo")
    assert not renewed.abandoned
    assert renewed.expires_at > first.expires_at + 30


async def test_closing_an_intent_removes_it(backend: Backend) -> None:
    store = backend.store
    await store.open_intent("acct", "emo", owner="o", at=10.0, ttl=30)
    await store.close_intent("acct", "emo", owner="o")
    await store.close_intent("acct", "emo", owner="o")
    assert await store.open_intents("acct", "emo") == []


async def test_the_first_claim_of_a_task_wins(backend: Backend) -> None:
    store = backend.store
    assert await store.claim_task("acct", "emo", task_id="t1", owner="a") == "a"
    assert await store.claim_task("acct", "emo", task_id="t1", owner="b") == "a"
    assert await store.claim_task("acct", "emoji", task_id="t1", owner="b") == "b"
    assert await store.task_owners("acct", "emo", since=0.0) == {"t1": "a"}


async def test_winning_a_claim_closes_the_winners_intent_only(backend: Backend) -> None:
    store = backend.store
    for owner in ("a", "b"):
        await store.open_intent("acct", "emo", owner=owner, at=10.0, ttl=30)
    await store.claim_task("acct", "emo", task_id="t1", owner="a")
    await store.claim_task("acct", "emo", task_id="t1", owner="b")  # lost: b's stays open
    assert [i.owner for i in await store.open_intents("acct", "emo")] == ["b"]


async def test_task_owners_since_a_time(backend: Backend) -> None:
    store = backend.store
    await store.claim_task("acct", "emo", task_id="old", owner="a")
    await backend.advance(0.05)
    _, now = await store.try_acquire_at("clock", interval=1.0)
    await store.claim_task("acct", "emo", task_id="new", owner="b")
    assert await store.task_owners("acct", "emo", since=now) == {"new": "b"}
    assert await store.task_owners("acct", "emo", since=now + 60) == {}


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_ownership_is_forgotten_after_the_retention(kind: str, tmp_path: Path) -> None:
    clock = FakeClock()
    store: Store = (
        MemoryStore(clock=clock) if kind == "memory" else SQLiteStore(tmp_path / "s", clock=clock)
    )
    async with store:
        await store.claim_task("acct", "emo", task_id="old", owner="a")
        await store.open_intent("acct", "emo", owner="a", at=clock.now, ttl=60)
        clock.now += RETENTION + 120
        await store.claim_task("acct", "emo", task_id="new", owner="b")
        assert await store.task_owners("acct", "emo", since=0.0) == {"new": "b"}
        assert await store.open_intents("acct", "emo") == []


# --- jobs -------------------------------------------------------------------------------


async def test_a_job_has_one_owner_until_released(backend: Backend) -> None:
    store = backend.store
    assert await store.claim_job("acct", "job", owner="a", ttl=30) is None
    assert await store.claim_job("acct", "job", owner="a", ttl=30) is None  # renewed
    assert await store.claim_job("acct", "job", owner="b", ttl=30) == "a"
    await store.release_job("acct", "job", owner="b")  # not b's to release
    assert await store.claim_job("acct", "job", owner="b", ttl=30) == "a"
    await store.release_job("acct", "job", owner="a")
    assert await store.claim_job("acct", "job", owner="b", ttl=30) is None


async def test_a_dead_owners_job_claim_expires(backend: Backend) -> None:
    store = backend.store
    assert await store.claim_job("acct", "job", owner="dead", ttl=TTL) is None
    await backend.advance(TTL * 1.5)
    assert await store.claim_job("acct", "job", owner="b", ttl=30) is None
    assert await store.claim_job("acct", "job", owner="dead", ttl=TTL) == "b"


# --- records ----------------------------------------------------------------------------


async def test_records_are_read_by_board_and_key(backend: Backend) -> None:
    store = backend.store
    await store.put_record("acct:jobs", "a", '{"state": "queued"}', ttl=30)
    await store.put_record("acct:jobs", "b", "two", ttl=30)
    await store.put_record("other:jobs", "a", "elsewhere", ttl=30)
    await store.put_record("acct:jobs", "a", '{"state": "running"}', ttl=30)  # replaced
    found = await store.read_records("acct:jobs", ["a", "b", "missing"])
    assert found == {"a": '{"state": "running"}', "b": "two"}
    assert await store.read_records("other:jobs", ["a", "b"]) == {"a": "elsewhere"}
    assert await store.read_records("acct:jobs", []) == {}


async def test_taking_records_deletes_them_once(backend: Backend) -> None:
    store = backend.store
    await store.put_record("acct:cancel", "a", "please", ttl=30)
    assert await store.read_records("acct:cancel", ["a", "b"], take=True) == {"a": "please"}
    assert await store.read_records("acct:cancel", ["a"], take=True) == {}


async def test_a_record_lives_for_its_ttl(backend: Backend) -> None:
    store = backend.store
    await store.put_record("acct:jobs", "a", "soon gone", ttl=TTL)
    assert await store.read_records("acct:jobs", ["a"]) == {"a": "soon gone"}
    await backend.advance(TTL * 1.5)
    assert await store.read_records("acct:jobs", ["a"]) == {}
    with pytest.raises(ValueError, match="ttl"):
        await store.put_record("acct:jobs", "a", "x", ttl=-1)


async def test_many_records_are_read_in_one_call(backend: Backend) -> None:
    store = backend.store
    for n in range(600):  # past SQLite's bound on parameters per statement
        await store.put_record("acct:jobs", f"job-{n}", str(n), ttl=30)
    found = await store.read_records("acct:jobs", [f"job-{n}" for n in range(700)])
    assert len(found) == 600
    assert found["job-599"] == "599"


# --- SQLite files -----------------------------------------------------------------------


async def test_two_sqlite_stores_on_one_file_share_everything(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "deep" / "store.sqlite3"
    async with SQLiteStore(path, clock=clock) as one, SQLiteStore(path, clock=clock) as two:
        assert await one.try_acquire("submit", interval=1.0) == 0.0
        assert await two.try_acquire("submit", interval=1.0) == 1.0
        assert await one.try_lease("w", size=1, holder="a", ttl=5)
        assert not await two.try_lease("w", size=1, holder="b", ttl=5)


async def test_a_closed_store_says_so(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.sqlite3")
    await store.aclose()
    with pytest.raises(StoreError, match="closed"):
        await store.lease_count("w")


async def test_a_file_that_is_not_a_store_is_named(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    path.write_bytes(b"not a database, just bytes " * 100)
    async with SQLiteStore(path) as store:
        with pytest.raises(StoreError, match="delete it") as caught:
            await store.lease_count("w")
    assert str(path) in str(caught.value)


async def test_a_store_from_a_newer_emoclient_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    async with SQLiteStore(path) as store:
        with pytest.raises(StoreError, match="upgrade emoclient"):
            await store.lease_count("w")


async def test_an_uncreatable_store_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    async with SQLiteStore(tmp_path / "file" / "store.sqlite3") as store:
        with pytest.raises(StoreError, match="writable"):
            await store.lease_count("w")


def test_intent_is_a_plain_record() -> None:
    assert Intent("o", 1.0, 2.0, False) == Intent("o", 1.0, 2.0, abandoned=False)


async def test_a_failed_call_leaves_the_sqlite_store_usable(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    async with SQLiteStore(path) as store:
        assert await store.try_lease("w", size=1, holder="a", ttl=30)
        with sqlite3.connect(path) as conn:
            conn.execute("DROP TABLE rates")  # someone broke the file under us
        with pytest.raises(StoreError, match="rates") as caught:
            await store.try_acquire("submit", interval=1.0)
        assert str(path) in str(caught.value)
        # The failed transaction was rolled back, not left open holding the file's lock.
        assert await store.try_lease("w", size=1, holder="a", ttl=30)


async def test_a_store_locked_by_another_process_is_waited_for_off_the_loop(
    tmp_path: Path,
) -> None:
    # The loop's own connection never waits for the file's lock: while another process holds
    # it, a call waits in the worker thread, and the event loop keeps running meanwhile.
    path = tmp_path / "store.sqlite3"
    async with SQLiteStore(path) as store:
        assert await store.try_acquire("submit", interval=1.0) == 0.0  # the file exists
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # "another process" holds the write lock
            ticks = 0
            granted: list[float] = []

            async def call() -> None:
                granted.append(await store.try_acquire("other", interval=1.0))

            async def ticker() -> None:
                nonlocal ticks
                while not granted:
                    ticks += 1
                    await anyio.sleep(0.01)

            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                tg.start_soon(ticker)
                await anyio.sleep(0.3)
                assert not granted  # still waiting for the lock...
                assert ticks >= 10  # ...and not on the loop
                other.execute("COMMIT")
        finally:
            other.close()
        assert granted == [0.0]


async def test_the_sqlite_stores_wal_is_checkpointed(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    wal = path.with_name(path.name + "-wal")
    async with SQLiteStore(path) as store:
        for n in range(2000):
            await store.put_record("b", f"k{n % 50}", "v" * 200, ttl=60)
        # Without checkpoints this WAL would hold all 2,000 commits (some 18 MB); SQLite
        # writes it from its start again after each one, so it stays near SQLite's own
        # automatic checkpoint size (1,000 pages, 4 MB).
        assert wal.stat().st_size < 4 * 2**20
        assert len(await store.read_records("b", [f"k{n}" for n in range(50)])) == 50


async def test_sqlite_calls_run_on_the_loop_when_nothing_holds_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hops = 0
    real = anyio.to_thread.run_sync

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal hops
        hops += 1
        return await real(*args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    async with SQLiteStore(tmp_path / "store.sqlite3") as store:
        for n in range(100):
            await store.put_record("b", f"k{n}", "v", ttl=60)
        assert len(await store.read_records("b", [f"k{n}" for n in range(100)])) == 100
    assert hops <= 2  # the first call (it creates the file) and the close


async def test_a_call_waits_off_the_loop_while_another_holds_the_connection(
    tmp_path: Path,
) -> None:
    async with SQLiteStore(tmp_path / "store.sqlite3") as store:
        await store.lease_count("w")
        store._lock.acquire()  # as a call in the worker thread (or a checkpoint) does
        released = False

        async def release_later() -> None:
            nonlocal released
            await anyio.sleep(0.2)  # the loop runs while the call waits
            released = True
            store._lock.release()

        async with anyio.create_task_group() as tg:
            tg.start_soon(release_later)
            assert await store.try_lease("w", size=1, holder="a", ttl=30)
            assert released  # it waited for the connection, and not on the loop


async def test_an_error_inside_an_inline_call_rolls_it_back(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "store.sqlite3") as store:
        await store.lease_count("w")

        def work(conn: sqlite3.Connection, now: float) -> None:
            conn.execute("REPLACE INTO rates (key, tat) VALUES ('submit', ?)", (now + 60,))
            raise ZeroDivisionError  # any bug in a call, not only an SQLite error

        with pytest.raises(ZeroDivisionError):
            await store._call(work)
        assert await store.try_acquire("submit", interval=1.0) == 0.0  # nothing was kept


async def test_a_committed_call_returns_its_result_even_when_a_checkpoint_is_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A checkpoint used to run on the caller's path after its write was committed: a cancel
    # landing there lost a granted lease until its TTL (the caller never released it).
    from emoclient._store import _sqlite

    monkeypatch.setattr(_sqlite, "_CHECKPOINT_EVERY", 1)
    async with SQLiteStore(tmp_path / "store.sqlite3") as store:
        await store.lease_count("w")
        limiter = store._limiter.get()
        held = anyio.Event()

        async def occupy() -> None:  # another call of this loop queued for the thread
            async with limiter:
                held.set()
                await anyio.sleep(1.0)

        async with anyio.create_task_group() as tg:
            tg.start_soon(occupy)
            await held.wait()
            granted = None
            with anyio.move_on_after(0.5):
                granted = await store.try_lease("w", size=1, holder="me", ttl=30)
        assert granted is True
        assert await store.lease_count("w") == 1
