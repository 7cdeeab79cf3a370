"""The job board: queues of one account (web workers) answer about each other's jobs."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from batch_support import label_jobs, options, until_state
from client_support import account_stats, make_client, new_key

from emoclient import (
    AccountStore,
    BatchEvent,
    EmoError,
    JobBoard,
    JobHandle,
    JobQueue,
    JobState,
    MemoryStore,
    RemoteJobHandle,
    SQLiteStore,
)
from emoclient._batch import events as event_module
from emoclient._batch.events import event_from_json
from emoclient._store import StoreError
from emoclient.emulator import RunningEmulator

DEADLINE = 20.0
FAST = {"poll": 0.02, "heartbeat": 0.2, "gone_after": 1.0, "cancel_timeout": 5.0}


def _queue(client: Any, folder: Path, **board: float) -> JobQueue:
    """A worker's queue: its own folder, the account's board (fast polls for tests)."""
    limits = client.limits
    return JobQueue(
        client,
        out_dir=folder,
        options=options(),
        board=JobBoard(limits.store, limits.account, **{**FAST, **board}),
    )


@asynccontextmanager
async def two_workers(
    emulator: RunningEmulator, tmp_path: Path, store: AccountStore, **holder_board: float
) -> AsyncIterator[tuple[JobQueue, JobQueue]]:
    """The queues of two workers of one account, sharing ``store`` (``holder_board``: the
    first one's board settings, over the fast ones)."""
    key = new_key()
    async with (
        make_client(emulator, api_key=key, store=store) as one,
        make_client(emulator, api_key=key, store=store) as two,
        _queue(one, tmp_path / "worker-1", **holder_board) as holder,
        _queue(two, tmp_path / "worker-2") as other,
    ):
        yield holder, other


async def _remote(queue: JobQueue, id: str) -> RemoteJobHandle:
    with anyio.fail_after(DEADLINE):
        while True:
            handle = await queue.get(id)
            if handle is not None:
                assert isinstance(handle, RemoteJobHandle)
                return handle
            await anyio.sleep(0.02)  # the holder publishes within its poll


async def test_another_queue_follows_a_job_to_its_video(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    (job,) = label_jobs(tmp_path / "in", 1)
    async with two_workers(emulator, tmp_path, SQLiteStore(tmp_path / "store.sqlite3")) as (
        holder,
        other,
    ):
        local = await holder.start(job, owner="alice")
        remote = await _remote(other, local.id)
        assert remote.id == local.id
        assert remote.owner == "alice"
        assert remote.worker != ""
        assert remote.worker_alive
        seen: list[BatchEvent] = []
        with anyio.fail_after(DEADLINE):
            async for event in remote.events():
                seen.append(event)
        result = await remote.wait(timeout=DEADLINE)
        snapshot = remote.snapshot()
    assert result.status == "succeeded"
    assert result.path is not None
    assert result.path.is_absolute()
    assert result.path.exists()
    assert remote.path == result.path
    assert remote.task_id == local.task_id is not None
    kinds = [event.kind for event in seen]
    assert kinds.index("queued") < kinds.index("submitted") < kinds.index("downloaded")
    assert snapshot["state"] == "succeeded"
    assert snapshot["worker"] == remote.worker
    assert snapshot["events"] == len(local.history)
    assert account_stats(await emulator.stats())["submissions"] == 1


async def test_starting_a_job_another_queue_runs_returns_its_handle(
    frozen: RunningEmulator, tmp_path: Path
) -> None:
    (job,) = label_jobs(tmp_path / "in", 1)
    async with two_workers(frozen, tmp_path, MemoryStore()) as (holder, other):
        local = await holder.start(job)
        await until_state(local, JobState.SUBMITTED, JobState.RUNNING)
        await _remote(other, local.id)
        again = await other.start(job)  # the same upload reached the other worker
        assert isinstance(again, RemoteJobHandle)
        assert other.queued == 0
        frozen.advance(600)
        assert (await again.wait(timeout=DEADLINE)).status == "succeeded"
    assert account_stats(await frozen.stats())["submissions"] == 1


async def test_a_cancel_through_another_queue_saves_a_pending_task(
    frozen: RunningEmulator, tmp_path: Path
) -> None:
    running, pending, queued = label_jobs(tmp_path / "in", 3)
    async with two_workers(frozen, tmp_path, MemoryStore()) as (holder, other):
        first = await holder.start(running)
        await until_state(first, JobState.SUBMITTED, JobState.RUNNING)
        second = await holder.start(pending)
        await until_state(second, JobState.SUBMITTED)
        third = await holder.start(queued)  # the window (2) is full: it waits its turn
        await until_state(third, JobState.PREPARING)

        assert await (await _remote(other, third.id)).cancel()  # never submitted
        assert await (await _remote(other, second.id)).cancel()  # PENDING: cancelled there
        await until_state(first, JobState.RUNNING)
        far = await _remote(other, first.id)
        assert not await far.cancel()  # RUNNING: billed anyway, still downloaded
        assert first.billed_anyway
        await far.refresh()
        assert far.billed_anyway
        frozen.advance(600)
        result = await far.wait(timeout=DEADLINE)
        assert (await second.wait(timeout=DEADLINE)).status == "canceled"
        assert (await third.wait(timeout=DEADLINE)).status == "canceled"
    assert result.status == "succeeded"
    account = account_stats(await frozen.stats())
    assert account["submissions"] == 2
    assert account["tasks"] == {"SUCCEEDED": 1, "CANCELED": 1}


async def test_a_gone_holder_is_named_and_its_cancel_says_so(tmp_path: Path) -> None:
    (job,) = label_jobs(tmp_path / "in", 1)
    store = MemoryStore()
    gone = JobBoard(store, "acct", **{**FAST, "cancel_timeout": 0.3})
    handle = JobHandle(job, id="job-1", owner="alice", cancel=_never)
    await gone.publish(handle, answers={})  # published once, then its process died
    reader = JobBoard(store, "acct", **{**FAST, "cancel_timeout": 0.3})
    remote = await reader.lookup("job-1")
    assert remote is not None
    assert remote.state is JobState.QUEUED
    assert not remote.worker_alive
    assert remote.snapshot()["worker_alive"] is False
    with pytest.raises(EmoError, match=r"did not answer a cancel .*heartbeat stopped"):
        await remote.cancel()
    with anyio.fail_after(10), pytest.raises(EmoError, match=r"holding job .* has gone"):
        await remote.wait()  # would follow the record forever
    assert [event async for event in remote.events()] == []  # ends, too
    assert await reader.lookup("another") is None
    assert await JobBoard(store, "other account").lookup("job-1") is None


async def _never(handle: JobHandle) -> bool:
    raise AssertionError("a published handle is not cancelled through its own queue here")


async def test_a_queue_without_a_board_publishes_nothing(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    (job,) = label_jobs(tmp_path / "in", 1)
    store, key = MemoryStore(), new_key()
    async with (
        make_client(emulator, api_key=key, store=store) as one,
        make_client(emulator, api_key=key, store=store) as two,
        JobQueue(one, out_dir=tmp_path / "w1", options=options(), board=False) as holder,
        _queue(two, tmp_path / "w2") as other,
    ):
        local = await holder.start(job)
        await local.wait(timeout=DEADLINE)
        assert await other.get(local.id) is None


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("poll", 0.0, "poll must be"),
        ("heartbeat", float("nan"), "heartbeat must be"),
        ("gone_after", 0.1, "gone_after .* must be longer than heartbeat"),
        ("cancel_timeout", -1.0, "cancel_timeout must be"),
    ],
)
def test_board_settings_are_checked(setting: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        JobBoard(MemoryStore(), "acct", **{**FAST, setting: value})


def _example(cls: type[BatchEvent]) -> BatchEvent:
    values: dict[str, Any] = {}
    for item in dataclasses.fields(cls):
        if item.name == "at":
            continue
        hint = str(item.type)
        if "Path" in hint:
            values[item.name] = Path("/videos/a.mp4")
        elif "tuple" in hint:
            values[item.name] = ("one", "two")
        elif "dict" in hint:
            values[item.name] = {"succeeded": 2}
        elif "bool" in hint:
            values[item.name] = True
        elif "int" in hint:
            values[item.name] = 3
        elif "float" in hint:
            values[item.name] = 1.5
        else:
            values[item.name] = f"{item.name}-value"
    return cls(**values)


@pytest.mark.parametrize("name", [n for n in event_module.__all__ if n[0].isupper()])
def test_every_event_survives_json(name: str) -> None:
    cls = getattr(event_module, name)
    event = _example(cls)
    assert event_from_json(event.to_json()) == event


def test_an_unknown_or_incomplete_event_is_skipped() -> None:
    assert event_from_json({"event": "from_a_newer_version", "at": "2026-01-01T00:00:00"}) is None
    assert event_from_json({"event": "downloaded", "label": "a"}) is None


class _FlakyStore(MemoryStore):
    """A memory store whose records can be made slow or failing, as a sick store is."""

    def __init__(self) -> None:
        super().__init__()
        self.read_delay = 0.0
        self.live_write_delay = 0.0  # for job records of jobs not ended yet
        self.lost_cancel_replies = 0  # takes of cancel requests done, but their reply lost
        self.failing = False

    async def put_record(self, board: str, key: str, value: str, *, ttl: float) -> None:
        if self.failing:
            raise StoreError("the store is away")
        if board.endswith(":jobs") and not JobState(json.loads(value)["state"]).is_final:
            await anyio.sleep(self.live_write_delay)
        await super().put_record(board, key, value, ttl=ttl)

    async def read_records(self, board: str, keys: Any, *, take: bool = False) -> dict[str, str]:
        await anyio.sleep(self.read_delay)
        found = await super().read_records(board, keys, take=take)
        if found and take and board.endswith(":cancel") and self.lost_cancel_replies:
            self.lost_cancel_replies -= 1
            raise StoreError("connection lost before the reply")  # done, but unheard
        return found


async def test_two_starts_of_one_job_at_once_share_one_handle(
    frozen: RunningEmulator, tmp_path: Path
) -> None:
    (job,) = label_jobs(tmp_path / "in", 1)
    store = _FlakyStore()
    store.read_delay = 0.2  # each start() waits for the board while the other runs
    async with make_client(frozen, store=store) as client, _queue(client, tmp_path) as queue:
        handles: list[JobHandle] = []
        async with anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(lambda: _append(handles, queue.start(job)))
        assert handles[0] is handles[1]  # (the job cannot end meanwhile: the clock stands)
        assert queue.queued <= 1
        store.read_delay = 0.0
        await until_state(handles[0], JobState.RUNNING)
        frozen.advance(600)
        assert (await handles[0].wait(timeout=DEADLINE)).status == "succeeded"
    assert account_stats(await frozen.stats())["submissions"] == 1


async def _append(handles: list[JobHandle], start: Any) -> None:
    handles.append(await start)


async def test_a_store_outage_as_a_job_ends_leaves_no_stuck_record(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    (job,) = label_jobs(tmp_path / "in", 1)
    store = _FlakyStore()
    async with make_client(emulator, store=store) as client, _queue(client, tmp_path) as queue:
        handle = await queue.start(job)
        await until_state(handle, JobState.DOWNLOADING, JobState.SUCCEEDED)
        store.failing = True  # the end is not written to the board...
        await handle.wait(timeout=DEADLINE)
        await anyio.sleep(0.1)
        store.failing = False  # ...until the store is back: then the board loop writes it
        reader = JobBoard(store, client.limits.account, **FAST)
        await _until_the_board_says(reader, handle.id, JobState.SUCCEEDED)
        again = await queue.start(job)  # ended here: started again here, not "elsewhere"
        assert not isinstance(again, RemoteJobHandle)


async def _until_the_board_says(board: JobBoard, id: str, state: JobState) -> None:
    with anyio.fail_after(DEADLINE):
        while True:
            record = await board.lookup(id)
            if record is not None and record.state is state:
                return
            await anyio.sleep(0.05)


async def test_a_slow_write_racing_the_end_of_a_job_does_not_leave_it_live(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    # The board loop's write of a live state, begun before the job ended, used to land after
    # the ending record and then mark the job clean: the board said "downloading" forever.
    (job,) = label_jobs(tmp_path / "in", 1)
    store = _FlakyStore()
    store.live_write_delay = 0.3  # the board loop is (nearly) always amid a live write
    async with make_client(emulator, store=store) as client, _queue(client, tmp_path) as queue:
        handle = await queue.start(job)
        assert (await handle.wait(timeout=DEADLINE)).status == "succeeded"
        reader = JobBoard(store, client.limits.account, **FAST)
        await _until_the_board_says(reader, handle.id, JobState.SUCCEEDED)
        await anyio.sleep(1.0)  # and nothing older overwrites it later
        record = await reader.lookup(handle.id)
        assert record is not None
        assert record.state is JobState.SUCCEEDED


async def test_a_cancel_request_survives_a_lost_store_reply(
    frozen: RunningEmulator, tmp_path: Path
) -> None:
    # A store call whose reply is lost (a Redis connection dropped) is retried: a request
    # must survive that. The holder used to take requests off the board, and a take whose
    # reply was lost lost the request (the asker waited out its timeout); now it only reads
    # them, and answers each request id once.
    running, queued = label_jobs(tmp_path / "in", 2)
    store = _FlakyStore()
    async with two_workers(frozen, tmp_path, store) as (holder, other):
        first = await holder.start(running)
        await until_state(first, JobState.SUBMITTED, JobState.RUNNING)
        second = await holder.start(queued)
        await until_state(second, JobState.PREPARING, JobState.SUBMITTED)
        far = await _remote(other, second.id)
        store.lost_cancel_replies = 1
        with anyio.fail_after(DEADLINE):
            assert await far.cancel()
        assert (await second.wait(timeout=DEADLINE)).status == "canceled"
        frozen.advance(600)
        assert (await first.wait(timeout=DEADLINE)).status == "succeeded"


async def test_an_old_cancel_request_leaves_a_new_run_of_the_job_alone(
    frozen: RunningEmulator, tmp_path: Path
) -> None:
    # A user cancels a queued job through worker 2, then retries it there: the first request
    # (still on the board, answered by worker 1) must not cancel the new run (found by review).
    running, job = label_jobs(tmp_path / "in", 2)
    async with two_workers(frozen, tmp_path, MemoryStore()) as (holder, other):
        first = await holder.start(running)
        await until_state(first, JobState.SUBMITTED, JobState.RUNNING)
        old = await holder.start(job)
        await until_state(old, JobState.PREPARING, JobState.SUBMITTED)
        assert await (await _remote(other, old.id)).cancel()
        assert (await old.wait(timeout=DEADLINE)).status == "canceled"
        again = await other.start(job)  # the retry
        assert again.id == old.id
        assert not isinstance(again, RemoteJobHandle)
        await anyio.sleep(0.5)  # many polls of worker 2's board loop
        assert again.state is not JobState.CANCELED
        frozen.advance(600)
        assert (await again.wait(timeout=DEADLINE)).status == "succeeded"


async def test_an_asker_whose_request_was_replaced_joins_the_new_one(
    frozen: RunningEmulator, tmp_path: Path
) -> None:
    # Two askers write their requests at the same moment: the second replaces the first on
    # the board, and the holder answers only the second. The first asker must hear it too
    # (a RUNNING job goes on, so it cannot tell from the job's end; it used to time out).
    (job,) = label_jobs(tmp_path / "in", 1)
    async with two_workers(frozen, tmp_path, MemoryStore(), poll=0.5) as (holder, other):
        running = await holder.start(job)  # (the holder polls slowly)
        await until_state(running, JobState.RUNNING)
        far = await _remote(other, running.id)
        board = far._board  # the account's board, as the other worker reads it
        answers: list[bool] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_cancel_into, answers, far)
            with anyio.fail_after(DEADLINE):
                while (mine := await board.waiting_request(job_id := running.id)) is None:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            # The other asker, as if it had read the board just before the first wrote:
            await board.request_cancel(job_id, run=far.accepted_at, answered={mine.request})
        assert answers == [False]  # RUNNING: billed anyway
        frozen.advance(600)
        assert (await running.wait(timeout=DEADLINE)).status == "succeeded"


async def test_two_workers_cancelling_one_job_at_once_both_hear_the_answer(
    frozen: RunningEmulator, tmp_path: Path
) -> None:
    (job,) = label_jobs(tmp_path / "in", 1)
    async with two_workers(frozen, tmp_path, MemoryStore()) as (holder, other):
        running = await holder.start(job)
        await until_state(running, JobState.RUNNING)
        one, two = await _remote(other, running.id), await _remote(other, running.id)
        answers: list[bool] = []
        async with anyio.create_task_group() as tg:
            for handle in (one, two):
                tg.start_soon(_cancel_into, answers, handle)
        # RUNNING: billed anyway, and both askers hear so (neither waits out its timeout).
        assert answers == [False, False]
        assert running.billed_anyway
        # Requests stay on the board until they expire: a later ask must not join the
        # answered one (and read its old answer), but be carried out and answered anew.
        assert not await one.cancel()
        await one.refresh()
        assert len(one._record["cancels"]) == 2
        frozen.advance(600)


async def _cancel_into(answers: list[bool], handle: JobHandle) -> None:
    answers.append(await handle.cancel())
