"""One account's limits and store used from several event loops of one process.

A BlockingEmoClient runs its own loop in a thread beside the app's, and scripts call
``asyncio.run`` more than once; both share the process's limits and store objects. Before
each loop had its own locks, a contended limiter raised "The current task is not holding
this lock" and the SQLite store hung.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path

import pytest

from emoclient import AccountStore, MemoryStore, Rates, RedisStore, SQLiteStore
from emoclient._limits import AccountLimits
from emoclient._loops import PerLoop

pytest_plugins = ["redis_server"]


def _store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> AccountStore:
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SQLiteStore(tmp_path / "store.sqlite3")
    url = request.getfixturevalue("redis_url")
    return RedisStore(url, prefix=f"test-{uuid.uuid4().hex}:")


@pytest.mark.parametrize("kind", ["memory", "sqlite", "redis"])
def test_loops_in_threads_share_one_accounts_limits(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store = _store(kind, tmp_path, request)
    # Fast rates: the point is contention between loops, not waiting.
    limits = AccountLimits(store, "acct", rates=Rates(query=400.0, window=1))
    errors: list[BaseException] = []
    held: list[int] = []
    peak: list[int] = [0]

    async def busy() -> None:
        await asyncio.gather(*(limits.query.acquire() for _ in range(8)))
        for _ in range(3):
            async with limits.task_slot("emo-v1"):
                held.append(1)
                peak[0] = max(peak[0], len(held))
                await asyncio.sleep(0.005)
                held.pop()
        await store.put_record("board", uuid.uuid4().hex, "x", ttl=5)

    def run() -> None:
        try:
            asyncio.run(busy())
        except BaseException as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    run()  # and twice more on this thread, one loop after another
    run()
    assert not [t for t in threads if t.is_alive()], "a loop hung"
    assert errors == []
    assert peak[0] == 1  # the window of one held across loops


def test_per_loop_gives_each_loop_its_own_and_forgets_closed_ones() -> None:
    made = PerLoop(object)

    async def get() -> tuple[object, object]:
        return made.get(), made.get()

    first = asyncio.run(get())
    second = asyncio.run(get())
    assert first[0] is first[1]  # one object within a loop
    assert second[0] is not first[0]  # another loop, another object
    assert len(made) == 1  # the closed loop's was dropped
