"""JobQueue and JobHandle: jobs for apps, against the emulator on a frozen clock."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from batch_support import label_jobs, options, until_state
from client_support import account_stats, make_client, new_key

from emoclient import (
    BatchEvent,
    EmoClient,
    JobHandle,
    JobQueue,
    JobState,
    QueueFullError,
    WaitTimeoutError,
)
from emoclient.emulator import RunningEmulator

DEADLINE = 20.0


def _queue(client: EmoClient, tmp_path: Path, *, max_queued: int = 100) -> JobQueue:
    return JobQueue(client, out_dir=tmp_path / "out", options=options(), max_queued=max_queued)


async def test_a_job_runs_to_its_video_and_its_events_tell_the_way(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    (job,) = label_jobs(tmp_path / "in", 1)
    async with make_client(emulator) as client, _queue(client, tmp_path) as queue:
        handle = await queue.start(job, owner="alice")
        assert handle.snapshot()["state"] in {"queued", "preparing"}
        assert await queue.start(job, owner="alice") is handle  # the same job, the same handle
        result = await handle.wait(timeout=DEADLINE)
        seen: list[BatchEvent] = [event async for event in handle.events()]
    assert result.status == "succeeded"
    assert handle.state is JobState.SUCCEEDED
    assert handle.path is not None
    assert handle.path.stat().st_size > 0
    assert handle.task_id is not None
    kinds = [event.kind for event in seen]
    assert kinds.index("queued") < kinds.index("submitted") < kinds.index("downloaded")
    assert handle.snapshot()["state"] == "succeeded"


async def test_cancel_in_each_state(frozen: RunningEmulator, tmp_path: Path) -> None:
    running, pending, queued = label_jobs(tmp_path / "in", 3)
    async with make_client(frozen) as client, _queue(client, tmp_path) as queue:
        first = await queue.start(running)
        await until_state(first, JobState.SUBMITTED, JobState.RUNNING)
        second = await queue.start(pending)
        await until_state(second, JobState.SUBMITTED)
        third = await queue.start(queued)  # the window (2) is full: it waits its turn
        await until_state(third, JobState.PREPARING)

        assert await third.cancel()  # never submitted: nothing billed
        assert third.state is JobState.CANCELED  # ended when cancel() returns
        assert (await third.wait(timeout=DEADLINE)).status == "canceled"
        assert await second.cancel()  # PENDING: cancelled at the service
        assert second.state is JobState.CANCELED
        assert (await second.wait(timeout=DEADLINE)).status == "canceled"
        await until_state(first, JobState.RUNNING)
        assert not await first.cancel()  # RUNNING: billed anyway, so still downloaded
        assert first.billed_anyway
        frozen.advance(600)
        result = await first.wait(timeout=DEADLINE)
    assert result.status == "succeeded"
    assert result.path is not None
    assert result.path.exists()
    account = account_stats(await frozen.stats())
    assert account["submissions"] == 2
    assert account["tasks"] == {"SUCCEEDED": 1, "CANCELED": 1}


async def test_owners_take_turns(frozen: RunningEmulator, tmp_path: Path) -> None:
    jobs = label_jobs(tmp_path / "in", 9)
    async with make_client(frozen) as client, _queue(client, tmp_path) as queue:
        # Alice sends eight jobs; while they wait for the account's slot, Bob sends one.
        handles = [await queue.start(job, owner="alice") for job in jobs[:8]]
        await anyio.wait_all_tasks_blocked()
        assert queue.queued > 1  # some of Alice's wait their turn in the queue
        bob = await queue.start(jobs[8], owner="bob")
        with anyio.fail_after(DEADLINE):
            while not all(h.state.is_final for h in [*handles, bob]):
                frozen.advance(60)  # one task's worth at a time
                await anyio.sleep(0.02)
    turns = sorted([*handles, bob], key=lambda h: h.taken_at or 0.0)
    after_bob = [h for h in turns if (h.taken_at or 0.0) >= bob.accepted_at]
    assert after_bob[0] is bob  # the next turn after Bob came was his, not Alice's next job
    assert [h.state for h in [*handles, bob]] == [JobState.SUCCEEDED] * 9


def _first(handle: JobHandle, kind: str) -> float:
    if kind == "accepted":
        return handle.accepted_at
    return next(e.at.timestamp() for e in handle._history if e.kind == kind)


async def test_a_full_queue_says_when_to_come_back(frozen: RunningEmulator, tmp_path: Path) -> None:
    jobs = label_jobs(tmp_path / "in", 12)
    accepted: list[JobHandle] = []
    async with make_client(frozen) as client, _queue(client, tmp_path, max_queued=2) as queue:
        full: QueueFullError | None = None
        for job in jobs:
            try:
                accepted.append(await queue.start(job))
            except QueueFullError as exc:
                full = exc
                break
            await anyio.wait_all_tasks_blocked()
        assert full is not None
        assert full.retry_after >= 1.0
        assert "retry later" in str(full)
        assert queue.queued == 2
        with anyio.fail_after(DEADLINE):
            async with anyio.create_task_group() as tg:
                tg.start_soon(queue.aclose)  # cancels the rest: queued jobs and PENDING tasks
                for handle in accepted:  # the one that runs cannot be cancelled: it waits
                    await until_state(handle, JobState.CANCELED, JobState.RUNNING)
                # Only now may the one task that runs finish: a faster clock used to let the
                # next PENDING task start (and be billed) before the close had cancelled it.
                frozen.advance(600)
    states = [h.state for h in accepted]
    assert states.count(JobState.SUCCEEDED) == 1
    assert states.count(JobState.CANCELED) == len(accepted) - 1
    assert account_stats(await frozen.stats())["tasks"].get("SUCCEEDED") == 1


async def test_wait_has_a_deadline(frozen: RunningEmulator, tmp_path: Path) -> None:
    (job,) = label_jobs(tmp_path / "in", 1)
    async with make_client(frozen) as client, _queue(client, tmp_path) as queue:
        handle = await queue.start(job)
        with pytest.raises(WaitTimeoutError):
            await handle.wait(timeout=0.05)
        frozen.state.clock.set_speed(1000.0)  # closing the queue waits for a running task
    # Closing ended it: cancelled if it had not run yet, else finished and downloaded.
    assert handle.state in {JobState.SUCCEEDED, JobState.CANCELED}


async def test_a_restarted_app_takes_its_jobs_up_again(
    frozen: RunningEmulator, tmp_path: Path
) -> None:
    (job,) = label_jobs(tmp_path / "in", 1)
    key = new_key()

    class Crash(Exception):
        pass

    job_id = ""

    async def run_until_the_crash() -> None:
        nonlocal job_id
        async with make_client(frozen, api_key=key) as client, _queue(client, tmp_path) as queue:
            handle = await queue.start(job)
            await until_state(handle, JobState.RUNNING)
            job_id = handle.id
            raise Crash  # the app dies with its task running

    with pytest.raises(Crash):
        await run_until_the_crash()

    frozen.advance(600)
    async with make_client(frozen, api_key=key) as client, _queue(client, tmp_path) as queue:
        again = await queue.get(job_id)
        assert again is not None
        result = await again.wait(timeout=DEADLINE)
        assert await queue.get("no-such-job") is None
    assert result.status == "succeeded"
    assert account_stats(await frozen.stats())["submissions"] == 1  # fetched, not paid twice


async def test_closing_cancels_pending_and_finishes_running(
    frozen: RunningEmulator, tmp_path: Path
) -> None:
    jobs = label_jobs(tmp_path / "in", 2)
    async with make_client(frozen) as client, _queue(client, tmp_path) as queue:
        handles = [await queue.start(job) for job in jobs]
        # Both are prepared at once and the one ready first is submitted first (under load
        # not always the first started): one runs, the other waits at the service.
        async with anyio.create_task_group() as tg:

            async def until_one_runs(handle: JobHandle) -> None:
                await until_state(handle, JobState.RUNNING)
                tg.cancel_scope.cancel()

            for handle in handles:
                tg.start_soon(until_one_runs, handle)
        await until_state(handles[0], JobState.SUBMITTED, JobState.RUNNING)
        await until_state(handles[1], JobState.SUBMITTED, JobState.RUNNING)
        first, second = sorted(handles, key=lambda h: h.state is not JobState.RUNNING)
        assert second.snapshot()["state"] == "submitted"

        async def finish_the_running_task() -> None:
            await until_state(second, JobState.CANCELED)
            frozen.advance(600)

        async with anyio.create_task_group() as tg:
            tg.start_soon(finish_the_running_task)
            with anyio.fail_after(DEADLINE):
                await queue.aclose()
    assert first.state is JobState.SUCCEEDED  # billed, so downloaded before the app stops
    assert first.path is not None
    assert first.path.exists()
    assert second.state is JobState.CANCELED
    assert account_stats(await frozen.stats())["tasks"] == {"SUCCEEDED": 1, "CANCELED": 1}


async def test_an_ended_job_can_be_started_again(frozen: RunningEmulator, tmp_path: Path) -> None:
    (job,) = label_jobs(tmp_path / "in", 1)
    async with make_client(frozen) as client, _queue(client, tmp_path) as queue:
        first = await queue.start(job)
        await until_state(first, JobState.SUBMITTED, JobState.RUNNING)
        frozen.state.clock.set_speed(1000.0)
        assert (await first.wait(timeout=DEADLINE)).status == "succeeded"
        first.path.unlink() if first.path else None
        again = await queue.start(job)  # the same job once more (say, its file was lost)
        assert again is not first
        assert (await again.wait(timeout=DEADLINE)).status == "succeeded"


async def test_old_ended_handles_are_forgotten_and_found_again(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    jobs = label_jobs(tmp_path / "in", 3)
    async with (
        make_client(emulator) as client,
        JobQueue(client, out_dir=tmp_path / "out", options=options(), keep_ended=1) as queue,
    ):
        handles = []
        for job in jobs:
            handles.append(await queue.start(job))
            await handles[-1].wait(timeout=DEADLINE)
        newest = await queue.get(handles[-1].id)
        oldest = await queue.get(handles[0].id)
    assert newest is handles[-1]  # kept in memory, with its events
    assert oldest is not None
    assert oldest is not handles[0]  # rebuilt from the journal
    assert oldest.state is JobState.SUCCEEDED
    assert oldest.path == handles[0].path
    with pytest.raises(ValueError, match="keep_ended"):
        JobQueue(client, out_dir=tmp_path / "x", keep_ended=0)
