"""Several OS processes on one account: the account's limits hold across all of them.

Each worker is a real ``python`` process (``tests/account_workers/worker.py``) calling the
real emulator (in a process of its own) through its own ``EmoClient``; what they share is
the account store: the default SQLite file (under the session's ``EMOCLIENT_HOME``, inherited by the
workers) or a real ``redis-server``. What a user would notice is read from the emulator's
statistics: 429 answers, the busiest second of each route, tasks in flight.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from account_workers.harness import Workers, assert_inside_the_limits, new_key, worker_config
from client_support import account_stats

from emoclient import EmoClient, Model, Rates, RedisStore
from emoclient.emulator.samples import make_portrait, make_speech

if TYPE_CHECKING:  # the module is a plugin: pytest imports it first, to rewrite its asserts
    from redis_server import RedisServer

# The redis_server and redis_url fixtures, one server for the whole session.
pytest_plugins = ["redis_server"]

#: A base URL for workers that only use the store: nothing listens there.
UNUSED_URL = "http://127.0.0.1:9/api/v1"

#: The clients' margin under each limit. A grant is exact on the store's clock, but a process
#: descheduled between its grant and its send (three workers, the emulator and coverage on
#: two cores) lands its request next to later ones: the default 2 % (20 ms a second) was
#: overrun in a fresh-clone CI run (one throttled detect). What these tests check is that
#: the processes share one budget (unshared, three would send 15 a second); the precision at
#: the default headroom is measured in benchmarks/bench_store.py.
HEADROOM = 0.1

#: emo-v1 tasks an account keeps submitted but unfinished (``Rates().window``).
WINDOW = Rates().window


def emo_input(folder: Path, seed: int) -> dict[str, str]:
    """A (portrait, speech) pair of its own for ``generate_emo``.

    A worker makes all its calls from one pair: a client uploads a file once, so the
    emulator is not kept busy with dozens of uploads while it timestamps the requests
    whose rate it limits.
    """
    folder.mkdir(parents=True, exist_ok=True)
    image = make_portrait(folder / f"p{seed}.png", width=480, height=640, seed=seed)
    audio = make_speech(folder / f"s{seed}.wav", seconds=1.0, seed=seed)
    return {"image": str(image), "audio": str(audio)}


async def generate_in_processes(
    tmp_path: Path,
    keys: list[list[str] | list[tuple[str, str]]],
    *,
    store: str | None,
    calls: int,
    **emulator_config: Any,
) -> dict[str, Any]:
    """One worker per entry of ``keys``, each making ``calls`` concurrent ``generate_emo``
    calls at once, on an emulator of ``EmulatorConfig.fast(**emulator_config)``; returns
    the emulator's statistics."""
    async with Workers(tmp_path / "workers") as workers:
        emulator = await workers.emulator(**emulator_config)
        configs = [
            worker_config(
                "generate",
                emulator.base_url,
                worker_keys,
                store=store,
                headroom=HEADROOM,
                emo=[emo_input(tmp_path / "in", n)] * calls,
                out_dir=str(tmp_path / f"out-{n}"),
            )
            for n, worker_keys in enumerate(keys)
        ]
        for worker in await workers.start(*configs):
            _, end = await worker.until_end()
            assert end["errors"] == [], worker.log_tail()
            assert len(end["videos"]) == calls
        return await emulator.stats()


def assert_one_account_within_its_limits(stats: dict[str, Any], *, tasks: int) -> None:
    account = account_stats(stats)
    assert_inside_the_limits(account)
    emo = account["models"]["emo-v1"]
    assert emo["submissions"] == tasks
    assert account["tasks"] == {"SUCCEEDED": tasks}
    # generate_emo holds a slot of the account's window from submit until the task ends.
    assert 1 <= emo["max_in_flight"] <= WINDOW


async def test_three_processes_on_one_key_share_the_default_store(tmp_path: Path) -> None:
    key = new_key()
    stats = await generate_in_processes(tmp_path, [[key], [key], [key]], store=None, calls=5)
    assert_one_account_within_its_limits(stats, tasks=15)


async def test_three_processes_on_one_key_share_a_redis_store(
    tmp_path: Path, redis_url: str
) -> None:
    key = new_key()
    stats = await generate_in_processes(tmp_path, [[key], [key], [key]], store=redis_url, calls=5)
    assert_one_account_within_its_limits(stats, tasks=15)


async def test_two_keys_of_one_account_in_two_processes_share_one_budget(
    tmp_path: Path,
) -> None:
    # Two keys, one cloud account: the emulator adds both keys' requests up.
    stats = await generate_in_processes(
        tmp_path,
        [[("k1", "acme")], [("k2", "acme")]],
        store=None,
        calls=5,
        api_keys={"k1": "acme", "k2": "acme"},
    )
    assert list(stats["accounts"]) == ["acme"]
    assert_one_account_within_its_limits(stats, tasks=10)


async def test_processes_creating_one_store_at_once_all_open_it(tmp_path: Path) -> None:
    # Several processes of a user start together on a host where the store's file does not
    # exist yet (the default store's first use: cron jobs, an app's workers at boot). Every
    # one of them must be able to use it; a failure shows within a few rounds.
    async with Workers(tmp_path / "workers") as workers:
        openers = await workers.start(
            *(worker_config("open", UNUSED_URL, ["k"], store="memory") for _ in range(4))
        )
        failures: list[str] = []
        for round_ in range(100):
            path = tmp_path / f"home-{round_}" / "store.sqlite3"
            for worker in openers:
                await worker.send(f"open {path}")
            answers = [(await worker.read())["opened"] for worker in openers]
            failures += [f"round {round_}: {answer}" for answer in answers if answer is not None]
            if failures:
                break
        for worker in openers:
            await worker.send("quit")
            await worker.until_end()
    assert not failures, "\n".join(failures)


@pytest.fixture(params=["sqlite", "redis"])
def store_spec(request: pytest.FixtureRequest) -> str | None:
    """Where the processes meet: the default SQLite file (None), or the session's Redis."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("redis_url")
    return url


async def test_a_slot_held_by_a_killed_process_is_free_within_its_lease_ttl(
    tmp_path: Path, store_spec: str | None
) -> None:
    ttl = 1.0
    key = new_key()
    base_url = UNUSED_URL
    store = RedisStore(store_spec) if store_spec is not None else None
    try:
        async with Workers(tmp_path / "workers") as workers:
            [holder] = await workers.start(
                worker_config("hold", base_url, [key], store=store_spec, lease_ttl=ttl)
            )
            assert await holder.read() == "held"
            async with EmoClient(
                key, base_url=base_url, store=store, rates=Rates(window=1, lease_ttl=ttl)
            ) as client:
                assert await client.limits.tasks_in_flight(Model.EMO) == 1
                # While the holder lives, its heartbeat keeps the slot past one TTL.
                with anyio.move_on_after(ttl * 1.5) as waiting:
                    async with client.limits.task_slot(Model.EMO):
                        pytest.fail("a live process's slot was given to another")
                assert waiting.cancelled_caught
                await holder.kill()
                with anyio.fail_after(ttl * 3):
                    async with client.limits.task_slot(Model.EMO):
                        assert await client.limits.tasks_in_flight(Model.EMO) == 1
                assert await client.limits.tasks_in_flight(Model.EMO) == 0
    finally:
        if store is not None:
            await store.aclose()


async def test_processes_keep_working_through_a_redis_restart(
    tmp_path: Path, redis_server: RedisServer, redis_url: str
) -> None:
    key = new_key()
    async with Workers(tmp_path / "workers") as workers:
        emulator = await workers.emulator()
        running = await workers.start(
            *(
                worker_config(
                    "generate_until",
                    emulator.base_url,
                    [key],
                    store=redis_url,
                    emo=[emo_input(tmp_path / "in", n)],
                    concurrency=3,
                    out_dir=str(tmp_path / f"out-{n}"),
                )
                for n in range(2)
            )
        )
        for worker in running:
            assert await worker.read() == {"done": 1}  # a first video, through Redis
        # Redis keeps nothing on disk here: it comes back empty, mid-run.
        await anyio.to_thread.run_sync(redis_server.stop)
        await anyio.to_thread.run_sync(redis_server.start)
        for worker in running:
            await worker.send("more 3")  # three more videos each, after the restart
        videos = 0
        for worker in running:
            _, end = await worker.until_end()
            assert end["errors"] == [], worker.log_tail()
            videos += end["videos"]
        account = account_stats(await emulator.stats())
    assert videos >= 2 * 4
    assert_inside_the_limits(account)
    assert account["tasks"] == {"SUCCEEDED": videos}
    assert account["submissions"] == videos
