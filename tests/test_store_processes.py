"""Real OS processes sharing one SQLite file or one Redis: the store's guarantees across them.

Run as a script, this module is the worker: ``python test_store_processes.py '<json>'`` opens
the store, prints ``"ready"``, waits for ``go`` on stdin, does its part and prints JSON lines.
Grant times come from the store's own clock (``try_acquire_at``), so the rate check is exact.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest

from emoclient._store import RedisStore, SQLiteStore

_T = TypeVar("_T")
Spec = dict[str, str]
ROOT = Path(__file__).resolve().parents[1]

# The redis_server and redis_url fixtures, one server for the whole session.
pytest_plugins = ["redis_server"]


def make_store(spec: Spec) -> SQLiteStore | RedisStore:
    if spec["kind"] == "sqlite":
        return SQLiteStore(spec["path"])
    return RedisStore(spec["url"], prefix=spec["prefix"])


def on_store(spec: Spec, work: Callable[[SQLiteStore | RedisStore], Awaitable[_T]]) -> _T:
    """Run ``work`` on a fresh store of ``spec`` in its own event loop (from a sync test)."""

    async def run() -> _T:
        async with make_store(spec) as store:
            return await work(store)

    return anyio.run(run)


def eventually(spec: Spec, check: Callable[[SQLiteStore | RedisStore], Awaitable[bool]]) -> None:
    """Poll ``check`` until it holds (a deadline, not a timing assertion)."""

    async def run() -> None:
        async with make_store(spec) as store:
            with anyio.fail_after(10):
                # Another process's state: there is no event to wait on, only polling.
                while not await check(store):  # noqa: ASYNC110
                    await anyio.sleep(0.02)

    anyio.run(run)


@pytest.fixture(params=["sqlite", "redis"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Spec:
    """Where the processes of one test meet: a SQLite file, or a fresh prefix in Redis."""
    if request.param == "sqlite":
        return {"kind": "sqlite", "path": str(tmp_path / "store.sqlite3")}
    url = request.getfixturevalue("redis_url")
    return {"kind": "redis", "url": url, "prefix": f"test-{uuid.uuid4().hex}:"}


class Worker:
    """One worker process (see the module docstring)."""

    def __init__(self, spec: Spec, mode: str, **args: Any) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        config = json.dumps({"store": spec, "mode": mode, **args})
        self.process = subprocess.Popen(
            [sys.executable, __file__, config],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def read(self) -> Any:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"worker {self.process.pid} ended early (exit {self.process.wait()})"
        return json.loads(line)

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.close()


def start(started: list[Worker], spec: Spec, mode: str, count: int, **args: Any) -> list[Worker]:
    """``count`` workers, released together once every one is ready."""
    new = [Worker(spec, mode, **args, index=i) for i in range(count)]
    started.extend(new)
    for worker in new:
        assert worker.read() == "ready"
    for worker in new:
        worker.go()
    return new


def test_processes_never_exceed_a_shared_rate(shared: Spec, workers: list[Worker]) -> None:
    # 128/s: the interval 1/128 s is exact in binary, so the check allows no excess at all.
    limit, each = 128, 60
    hammers = start(workers, shared, "rate", 3, key="submit", interval=1 / limit, grants=each)
    grants = sorted(itertools.chain.from_iterable(worker.read() for worker in hammers))
    assert len(grants) == 3 * each
    assert all(b - a >= 1 / limit for a, b in itertools.pairwise(grants))
    assert all(b - a >= 1.0 for a, b in zip(grants, grants[limit:], strict=False))


def test_processes_never_hold_more_leases_than_the_window(
    shared: Spec, workers: list[Worker]
) -> None:
    contenders = start(workers, shared, "lease", 3, window="w", size=2, ttl=30)
    assert sorted(worker.read() for worker in contenders) == [False, True, True]
    assert on_store(shared, lambda store: store.lease_count("w")) == 2


def test_a_killed_holder_frees_its_slot_after_its_ttl(shared: Spec, workers: list[Worker]) -> None:
    [holder] = start(workers, shared, "hold", 1, window="w", ttl=0.5, every=0.05)
    assert holder.read() == "held"
    # Renewed for longer than one TTL, the lease is still the holder's.
    assert [holder.read() for _ in range(12)] == ["renewed"] * 12
    assert not on_store(shared, lambda s: s.try_lease("w", size=1, holder="next", ttl=30))
    holder.kill()
    eventually(shared, lambda s: s.try_lease("w", size=1, holder="next", ttl=30))


def test_one_owner_per_task_across_processes(shared: Spec, workers: list[Worker]) -> None:
    tasks = [f"task-{n}" for n in range(60)]
    claimers = start(workers, shared, "claim", 3, tasks=tasks)
    seen = [worker.read() for worker in claimers]
    assert seen[0] == seen[1] == seen[2]
    assert set(seen[0].values()) <= {"owner-0", "owner-1", "owner-2"}
    owners = on_store(shared, lambda s: s.task_owners("acct", "emo", since=0.0))
    assert owners == seen[0]


def test_a_dead_process_leaves_an_abandoned_intent_and_frees_its_job(
    shared: Spec, workers: list[Worker]
) -> None:
    [owner] = start(workers, shared, "own", 1, ttl=0.5, every=0.05)
    assert owner.read() == "owning"

    async def look(store: SQLiteStore | RedisStore) -> tuple[Any, ...]:
        intents = await store.open_intents("acct", "emo")
        other = await store.claim_job("acct", "job", owner="me", ttl=30)
        return tuple((i.owner, i.abandoned) for i in intents), other

    assert on_store(shared, look) == ((("owner-0", False),), "owner-0")
    owner.kill()

    async def abandoned_and_free(store: SQLiteStore | RedisStore) -> bool:
        intents = await store.open_intents("acct", "emo")
        free = await store.claim_job("acct", "job", owner="me", ttl=30) is None
        return free and [(i.owner, i.abandoned) for i in intents] == [("owner-0", True)]

    eventually(shared, abandoned_and_free)


# --- the worker -------------------------------------------------------------------------


def say(value: Any) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


async def rate(store: SQLiteStore | RedisStore, args: dict[str, Any]) -> None:
    grants: list[float] = []
    while len(grants) < args["grants"]:
        wait, now = await store.try_acquire_at(args["key"], interval=args["interval"])
        if wait == 0.0:
            grants.append(now)
        else:
            await anyio.sleep(wait)
    say(grants)


async def lease(store: SQLiteStore | RedisStore, args: dict[str, Any]) -> None:
    holder = f"holder-{args['index']}"
    say(await store.try_lease(args["window"], size=args["size"], holder=holder, ttl=args["ttl"]))


async def hold(store: SQLiteStore | RedisStore, args: dict[str, Any]) -> None:
    window, ttl = args["window"], args["ttl"]
    assert await store.try_lease(window, size=1, holder="holder", ttl=ttl)
    say("held")
    while await store.renew_lease(window, holder="holder", ttl=ttl):
        say("renewed")
        await anyio.sleep(args["every"])
    say("lost")


async def claim(store: SQLiteStore | RedisStore, args: dict[str, Any]) -> None:
    tasks = list(args["tasks"])
    random.Random(args["index"]).shuffle(tasks)
    owner = f"owner-{args['index']}"
    seen = {
        task: await store.claim_task("acct", "emo", task_id=task, owner=owner) for task in tasks
    }
    say(seen)


async def own(store: SQLiteStore | RedisStore, args: dict[str, Any]) -> None:
    owner, ttl = f"owner-{args['index']}", args["ttl"]
    for beat in itertools.count():
        await store.open_intent("acct", "emo", owner=owner, at=1000.0, ttl=ttl)
        assert await store.claim_job("acct", "job", owner=owner, ttl=ttl) is None
        if beat == 0:
            say("owning")
        await anyio.sleep(args["every"])


MODES = {"rate": rate, "lease": lease, "hold": hold, "claim": claim, "own": own}


async def work(config: dict[str, Any]) -> None:
    async with make_store(config["store"]) as store:
        await store.lease_count("warm-up")  # schema created, scripts loaded
        say("ready")
        await anyio.to_thread.run_sync(sys.stdin.readline)
        await MODES[config["mode"]](store, config)


if __name__ == "__main__":
    anyio.run(work, json.loads(sys.argv[1]))
