"""Resuming batches through the journal: nothing submitted twice, nothing lost, expiry reported."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from batch_support import collect, emo_jobs, make_inputs, options
from client_support import account_stats, make_client, new_key

from emoclient._batch import Batch, JobResult
from emoclient._batch.events import (
    BatchEvent,
    JobReconciled,
    JobResubmitted,
    JobStalled,
    JobSubmitted,
)
from emoclient._batch.jobs import Job
from emoclient._retry import RetryPolicy
from emoclient.emulator import EmulatorConfig, RunningEmulator


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig.fast(speed=120.0)


@pytest.fixture
def jobs(tmp_path: Path) -> list[Job]:
    return emo_jobs(*make_inputs(tmp_path / "in", portraits=3), 8)


async def _run(
    emulator: RunningEmulator,
    key: str,
    out: Path,
    jobs: list[Job],
    on_event: Callable[[BatchEvent], None] | None = None,
    *,
    retry: bool = False,
) -> tuple[Batch, list[JobResult]]:
    async with (
        make_client(emulator, api_key=key) as client,
        Batch(client, out_dir=out, options=options(), on_event=on_event, retry=retry) as batch,
    ):
        results = await collect(batch, jobs)
    return batch, results


async def _render_without_download(
    emulator: RunningEmulator, key: str, out: Path, jobs: list[Job]
) -> Batch:
    """Run ``jobs`` with every download cut short: rendered and billed, not on disk."""
    emulator.set_faults(download_cut_bytes=0)
    batch, _ = await _run(emulator, key, out, jobs)
    emulator.set_faults(download_cut_bytes=None)
    return batch


async def _edit_journal(out: Path, sql: str) -> int:
    def edit() -> int:
        with sqlite3.connect(out / "emoclient-journal.sqlite3") as conn:
            return conn.execute(sql).rowcount

    return await anyio.to_thread.run_sync(edit)


async def test_cancelled_run_resumes_without_resubmitting(
    emulator: RunningEmulator, tmp_path: Path, jobs: list[Job]
) -> None:
    key, out = new_key(), tmp_path / "out"
    seen = 0
    async with make_client(emulator, api_key=key) as client:
        with anyio.CancelScope() as scope:
            async with Batch(client, out_dir=out, options=options()) as batch:
                async for _ in batch.run(jobs):
                    seen += 1
                    if seen == 3:
                        scope.cancel()
    assert seen == 3
    first = account_stats(await emulator.stats())["submissions"]
    assert 3 <= first < len(jobs)

    batch, _ = await _run(emulator, key, out, jobs)
    assert batch.summary.counts == {"succeeded": len(jobs)}
    assert account_stats(await emulator.stats())["submissions"] == len(jobs)
    assert sorted(p.name for p in out.glob("*.mp4")) == sorted(
        f"video-{i + 2}.mp4" for i in range(len(jobs))
    )


async def test_finished_run_is_not_repeated(
    emulator: RunningEmulator, tmp_path: Path, jobs: list[Job]
) -> None:
    key, out = new_key(), tmp_path / "out"
    await _run(emulator, key, out, jobs[:3])
    stats = account_stats(await emulator.stats())
    events: list[BatchEvent] = []
    batch, _ = await _run(emulator, key, out, jobs[:3], on_event=events.append)
    assert batch.summary.counts == {"succeeded": 3}
    assert batch.summary.from_earlier_runs == 3
    assert batch.summary.billed_seconds == 0.0  # paid in the first run, not again
    assert batch.summary.estimated_cost_cny == 0.0
    again = account_stats(await emulator.stats())
    assert again["submissions"] == stats["submissions"] == 3
    assert again["result_bytes_served"] == stats["result_bytes_served"]
    assert Counter(e.kind for e in events)["downloaded"] == 3


async def test_succeeded_but_not_downloaded_is_fetched_on_resume(
    emulator: RunningEmulator, tmp_path: Path, jobs: list[Job]
) -> None:
    key, out = new_key(), tmp_path / "out"
    batch = await _render_without_download(emulator, key, out, jobs[:3])
    assert batch.summary.counts == {"failed": 3}
    assert batch.summary.billed_seconds > 0  # rendered and billed, just not on disk
    assert list(out.glob("*.mp4")) == []

    batch, _ = await _run(emulator, key, out, jobs[:3])
    assert batch.summary.counts == {"succeeded": 3}
    assert account_stats(await emulator.stats())["submissions"] == 3
    assert len(list(out.glob("*.mp4"))) == 3


async def test_expired_result_is_reported_not_dropped(
    emulator: RunningEmulator, tmp_path: Path, jobs: list[Job]
) -> None:
    key, out = new_key(), tmp_path / "out"
    await _render_without_download(emulator, key, out, jobs[:2])
    emulator.advance(25 * 3600)
    batch, results = await _run(emulator, key, out, jobs[:2])
    assert batch.summary.counts == {"expired": 2}
    assert all("expired" in (r.error or "") for r in results)
    assert account_stats(await emulator.stats())["submissions"] == 2


@pytest.fixture
def frozen() -> EmulatorConfig:
    return EmulatorConfig.fast(speed=0.0)


async def test_task_expired_while_queued_is_reported(
    frozen: EmulatorConfig, tmp_path: Path, jobs: list[Job]
) -> None:
    from emoclient.emulator import serve

    key, out = new_key(), tmp_path / "out"
    async with serve(frozen) as emulator, make_client(emulator, api_key=key) as client:
        scope = anyio.CancelScope()

        def on_event(event: BatchEvent) -> None:
            if isinstance(event, JobSubmitted):
                scope.cancel()  # a crash right after the submit, before any poll

        with scope:
            async with Batch(client, out_dir=out, options=options(), on_event=on_event) as batch:
                await collect(batch, jobs[:1])
        assert scope.cancelled_caught
        emulator.advance(25 * 3600)
        batch, results = await _run(emulator, key, out, jobs[:1])
        assert batch.summary.counts == {"expired": 1}
        assert "24 h" in (results[0].error or "")
        assert account_stats(await emulator.stats())["submissions"] == 1


async def test_lost_submit_answers_are_reconciled_without_duplicates(
    emulator: RunningEmulator, tmp_path: Path, jobs: list[Job]
) -> None:
    emulator.set_faults(drop_after_rate={"submit": 1.0})
    events: list[BatchEvent] = []
    batch, _ = await _run(emulator, new_key(), tmp_path / "out", jobs[:3], on_event=events.append)
    assert batch.summary.counts == {"succeeded": 3}
    assert account_stats(await emulator.stats())["submissions"] == 3
    reconciled = [e for e in events if isinstance(e, JobReconciled)]
    assert [e.found for e in reconciled] == [True] * 3
    assert len({e.task_id for e in reconciled}) == 3


async def test_a_lost_submit_that_cannot_be_looked_for_keeps_its_intent(
    emulator: RunningEmulator, tmp_path: Path, jobs: list[Job]
) -> None:
    # The submit's answer is lost and the list API fails as well: a task may exist.
    key, out = new_key(), tmp_path / "out"
    emulator.set_faults(drop_after_rate={"submit": 1.0}, error_rate={"task_list": 1.0})
    _, results = await _run(emulator, key, out, jobs[:1])
    assert [r.status for r in results] == ["failed"]
    emulator.set_faults(drop_after_rate=0.0, error_rate=0.0)
    events: list[BatchEvent] = []
    batch, _ = await _run(emulator, key, out, jobs[:1], on_event=events.append, retry=True)
    assert batch.summary.counts == {"succeeded": 1}
    assert account_stats(await emulator.stats())["submissions"] == 1
    assert [e.found for e in events if isinstance(e, JobReconciled)] == [True]


async def test_an_unresolved_submit_keeps_its_intent_when_preparing_fails_again(
    emulator: RunningEmulator, tmp_path: Path, jobs: list[Job]
) -> None:
    key, out = new_key(), tmp_path / "out"
    emulator.set_faults(drop_after_rate={"submit": 1.0}, error_rate={"task_list": 1.0})
    await _run(emulator, key, out, jobs[:1])  # a task exists; the journal does not know it
    # The rerun has to upload again (the uploads went stale) and the uploads fail.
    emulator.set_faults(drop_after_rate=0.0, error_rate={"upload_policy": 1.0})
    assert await _edit_journal(out, "UPDATE uploads SET expires_at = 0")
    _, results = await _run(emulator, key, out, jobs[:1])
    assert [r.status for r in results] == ["failed"]
    emulator.set_faults(error_rate=0.0)
    batch, _ = await _run(emulator, key, out, jobs[:1])
    assert batch.summary.counts == {"succeeded": 1}
    assert account_stats(await emulator.stats())["submissions"] == 1


async def test_submit_lost_before_reaching_the_service_is_sent_again(
    emulator: RunningEmulator, tmp_path: Path, jobs: list[Job]
) -> None:
    # Half the submit connections close before the service sees them: nothing to find.
    emulator.set_faults(drop_rate={"submit": 0.5}, seed=7)
    events: list[BatchEvent] = []
    async with (
        make_client(emulator) as client,
        Batch(
            client,
            out_dir=tmp_path / "out",
            options=options(retry=RetryPolicy(max_attempts=12, base_delay=0.01)),  # p = 1/4096
            on_event=events.append,
        ) as batch,
    ):
        await collect(batch, jobs[:3])
    assert batch.summary.counts == {"succeeded": 3}
    assert account_stats(await emulator.stats())["submissions"] == 3
    reconciled = [e for e in events if isinstance(e, JobReconciled)]
    assert reconciled
    assert not any(e.found for e in reconciled)


async def test_refused_result_url_is_replaced_by_a_fresh_query(
    emulator: RunningEmulator, tmp_path: Path, jobs: list[Job]
) -> None:
    key, out = new_key(), tmp_path / "out"
    await _render_without_download(emulator, key, out, jobs[:2])
    spoil = "UPDATE jobs SET video_url = video_url || 'x' WHERE state = 'succeeded'"
    assert await _edit_journal(out, spoil) == 2
    batch, _ = await _run(emulator, key, out, jobs[:2])
    assert batch.summary.counts == {"succeeded": 2}
    assert account_stats(await emulator.stats())["submissions"] == 2


async def test_a_succeeded_task_without_a_known_url_is_asked_again_not_resubmitted(
    emulator: RunningEmulator, tmp_path: Path, jobs: list[Job]
) -> None:
    key, out = new_key(), tmp_path / "out"
    await _render_without_download(emulator, key, out, jobs[:2])
    drop = "UPDATE jobs SET video_url = NULL WHERE state = 'succeeded'"
    assert await _edit_journal(out, drop) == 2
    batch, _ = await _run(emulator, key, out, jobs[:2])
    assert batch.summary.counts == {"succeeded": 2}
    assert account_stats(await emulator.stats())["submissions"] == 2


@pytest.fixture
def leftovers(tmp_path: Path) -> tuple[Path, Path]:
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".video-2.mp4.0123456789ab.part"
    stale.write_bytes(b"half a video")
    mine = out / ".notes.part"
    mine.write_text("not ours")
    return stale, mine


async def test_partial_downloads_of_a_killed_run_are_removed(
    emulator: RunningEmulator, tmp_path: Path, jobs: list[Job], leftovers: tuple[Path, Path]
) -> None:
    stale, mine = leftovers
    batch, _ = await _run(emulator, new_key(), tmp_path / "out", jobs[:1])
    assert batch.summary.counts == {"succeeded": 1}
    assert not await anyio.Path(stale).exists()
    assert await anyio.Path(mine).exists()


async def test_a_task_the_service_failed_itself_is_submitted_again(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    jobs = emo_jobs(*make_inputs(tmp_path / "in", portraits=1), 1)
    emulator.set_faults(task_failure_rate=1.0)  # InternalError.Algo: billed nothing
    events: list[BatchEvent] = []

    def heal(event: BatchEvent) -> None:
        events.append(event)
        if isinstance(event, JobResubmitted):
            emulator.set_faults(task_failure_rate=0.0)

    async with (
        make_client(emulator) as client,
        Batch(client, out_dir=tmp_path / "out", options=options(), on_event=heal) as batch,
    ):
        results = [r async for r in batch.run(jobs)]
    assert [r.status for r in results] == ["succeeded"]
    (again,) = [e for e in events if isinstance(e, JobResubmitted)]
    assert again.code == "InternalError.Algo"
    assert again.attempt == 1
    assert batch.summary.resubmitted == 1
    assert account_stats(await emulator.stats())["submissions"] == 2


async def test_resubmitting_after_the_service_s_failures_is_bounded(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    jobs = emo_jobs(*make_inputs(tmp_path / "in", portraits=1), 1)
    emulator.set_faults(task_failure_rate=1.0)
    async with (
        make_client(emulator) as client,
        Batch(client, out_dir=tmp_path / "out", options=options(resubmits=2)) as batch,
    ):
        results = [r async for r in batch.run(jobs)]
    assert [(r.status, r.code) for r in results] == [("failed", "InternalError.Algo")]
    assert batch.summary.resubmitted == 2
    assert account_stats(await emulator.stats())["submissions"] == 3  # the first and 2 more


async def test_a_stalled_task_is_reported_and_the_task_behind_it_never_expires(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    jobs = emo_jobs(*make_inputs(tmp_path / "in", portraits=3), 3)
    events: list[BatchEvent] = []

    def watch(event: BatchEvent) -> None:
        events.append(event)
        if isinstance(event, JobSubmitted) and event.label == "row 2":
            emulator.set_faults(stall_rate=1.0)  # every later task stays RUNNING for good
        if isinstance(event, JobResubmitted) and event.code == "Requeued":
            batch.stop()

    # A task life of 100 service seconds: the one queued behind the stalled task would
    # expire in the queue long before the stall ends.
    settings = options(stall_min=0.0, stall_repeat=0.2, task_ttl=100.0, expiry_margin=0.0)
    with anyio.fail_after(30):  # a deadline, not a synchronisation
        async with (
            make_client(emulator) as client,
            Batch(client, out_dir=tmp_path / "out", options=settings, on_event=watch) as batch,
        ):
            results = [r async for r in batch.run(jobs)]
    stalled = [e for e in events if isinstance(e, JobStalled)]
    assert stalled
    assert "RUNNING for" in stalled[0].message
    requeued = [e for e in events if isinstance(e, JobResubmitted) and e.code == "Requeued"]
    assert requeued
    assert "stalled task" in requeued[0].message
    assert Counter(r.status for r in results)["succeeded"] == 1
    tasks = account_stats(await emulator.stats())["tasks"]
    assert tasks.get("CANCELED", 0) >= 1  # the queued one, before its life ran out
    assert tasks.get("UNKNOWN", 0) == 0  # nothing expired in the queue


async def test_a_claimed_task_the_journal_missed_is_found_not_paid_again(
    emulator: RunningEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from emoclient import JournalError, MemoryStore
    from emoclient._batch.ledger import Ledger

    jobs = emo_jobs(*make_inputs(tmp_path / "in", portraits=1), 1)
    key, store, out = new_key(), MemoryStore(), tmp_path / "out"
    real = Ledger.submitted

    async def lost(self: Ledger, ticket: Any, task_id: str) -> None:
        raise JournalError("the disk went away")  # after the POST and the store's claim

    monkeypatch.setattr(Ledger, "submitted", lost)
    async with (
        make_client(emulator, api_key=key, store=store) as client,
        Batch(client, out_dir=out, options=options()) as batch,
    ):
        first = [r.status async for r in batch.run(jobs)]
    assert first == ["failed"]
    monkeypatch.setattr(Ledger, "submitted", real)
    async with (
        make_client(emulator, api_key=key, store=store) as client,
        Batch(client, out_dir=out, options=options()) as batch,
    ):
        again = [r.status async for r in batch.run(jobs)]
    assert again == ["succeeded"]
    assert account_stats(await emulator.stats())["submissions"] == 1  # paid once
