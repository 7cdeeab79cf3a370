"""Batch runs against the emulator: throughput, limits, bad jobs, events."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from batch_support import collect, emo_jobs, emoji_job, make_inputs, options
from client_support import account_stats, make_client

from emoclient._batch import Batch
from emoclient._batch.events import BatchEvent, JobEvent, JobPreflightFailed, JobQueued
from emoclient._batch.jobs import EmoJob, Job
from emoclient.emulator import EmulatorConfig, RunningEmulator


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    # 120x: a 1-1.5 s clip takes 35-37.5 virtual seconds, about 0.3 s of real time, longer
    # than the 0.2 s between two submits that the 5 per second limit allows.
    return EmulatorConfig.fast(speed=120.0)


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[list[Path], list[Path]]:
    return make_inputs(tmp_path / "in", portraits=6)


async def test_batch_of_30_keeps_the_slot_busy_within_limits(
    emulator: RunningEmulator, tmp_path: Path, inputs: tuple[list[Path], list[Path]]
) -> None:
    jobs = emo_jobs(*inputs, 30)
    async with (
        make_client(emulator) as client,
        Batch(client, out_dir=tmp_path / "out", options=options()) as batch,
    ):
        results = await collect(batch, jobs)
    assert Counter(r.status for r in results) == {"succeeded": 30}
    assert len({r.path for r in results}) == 30
    assert all(r.path is not None and r.path.stat().st_size > 0 for r in results)
    stats = account_stats(await emulator.stats())
    assert stats["submissions"] == 30
    assert sum(route["throttled"] for route in stats["routes"].values()) == 0
    assert stats["slot_busy_seconds"] / stats["slot_span_seconds"] >= 0.9
    assert batch.summary.counts == {"succeeded": 30}
    assert batch.summary.billed_seconds > 30


async def test_bad_jobs_are_reported_while_good_ones_proceed(
    emulator: RunningEmulator, tmp_path: Path, inputs: tuple[list[Path], list[Path]]
) -> None:
    images, sounds = inputs
    from emoclient.emulator.samples import make_portrait

    nobody = make_portrait(tmp_path / "in" / "nobody.png", width=480, height=640, persons=0)
    jobs: list[Job] = [
        *emo_jobs(images, sounds, 3),
        EmoJob(image=tmp_path / "missing.png", audio=sounds[0], label="row 9"),
        EmoJob(image=nobody, audio=sounds[0], label="row 10"),
        emoji_job(images[0], "row 11"),
    ]
    events: list[BatchEvent] = []
    async with (
        make_client(emulator) as client,
        Batch(client, out_dir=tmp_path / "out", options=options(), on_event=events.append) as batch,
    ):
        results = {r.job.label: r for r in await collect(batch, jobs)}
    assert results["row 9"].status == "invalid"
    assert "does not exist" in (results["row 9"].error or "")
    assert results["row 10"].status == "failed"
    assert results["row 10"].code is not None
    assert results["row 11"].status == "succeeded"
    assert [results[f"row {i}"].status for i in (2, 3, 4)] == ["succeeded"] * 3
    failed_preflight = [e for e in events if isinstance(e, JobPreflightFailed)]
    assert [e.label for e in failed_preflight] == ["row 9"]
    kinds: dict[str, Any] = Counter(e.kind for e in events)
    assert kinds["submitted"] == 4
    assert kinds["downloaded"] == 4
    assert kinds["batch_finished"] == 1


async def test_the_events_never_show_two_tasks_of_one_model_running(
    emulator: RunningEmulator, tmp_path: Path, inputs: tuple[list[Path], list[Path]]
) -> None:
    # The account runs one EMO task at a time: a job's "started" used to come before the
    # "succeeded" of the task whose end made room for it (the progress line said 2 running).
    events: list[BatchEvent] = []
    async with (
        make_client(emulator) as client,
        Batch(client, out_dir=tmp_path / "out", options=options(), on_event=events.append) as batch,
    ):
        results = await collect(batch, emo_jobs(*inputs, 4))
    assert [r.status for r in results] == ["succeeded"] * 4
    running: set[str] = set()
    most = 0
    for event in events:
        if not isinstance(event, JobEvent):
            continue
        if event.kind == "started":
            running.add(event.label)
        elif event.kind in ("succeeded", "failed", "canceled", "expired"):
            running.discard(event.label)
        most = max(most, len(running))
    assert most == 1
    assert [e.kind for e in events].count("started") == 4


async def test_jobs_are_pulled_only_as_fast_as_they_are_worked_on(
    emulator: RunningEmulator, tmp_path: Path, inputs: tuple[list[Path], list[Path]]
) -> None:
    jobs = emo_jobs(*inputs, 12)
    pulled = 0
    finished = 0
    ahead: list[int] = []

    async def source() -> AsyncIterator[Job]:
        nonlocal pulled
        for job in jobs:
            pulled += 1
            ahead.append(pulled - finished)
            yield job

    async with (
        make_client(emulator) as client,
        Batch(client, out_dir=tmp_path / "out", options=options()) as batch,
    ):
        async for result in batch.run(source()):
            assert result.status == "succeeded"
            finished += 1
    assert finished == 12
    # In flight at most: the window (2), one per preparer (2), one handed over, one read.
    assert max(ahead) <= 7


def test_events_serialise_to_json() -> None:
    event = JobPreflightFailed(label="row 3", key="k", problems=("too small",))
    data = event.to_json()
    assert data["event"] == "preflight_failed"
    assert data["problems"] == ["too small"]
    assert data["task_id"] is None
    assert isinstance(data["at"], str)


async def test_a_failing_event_handler_surfaces_as_itself(
    emulator: RunningEmulator, tmp_path: Path, inputs: tuple[list[Path], list[Path]]
) -> None:
    def broken(event: BatchEvent) -> None:
        if isinstance(event, JobQueued):
            raise ValueError("the handler broke")

    with pytest.raises(ValueError, match="the handler broke"):
        async with (
            make_client(emulator) as client,
            Batch(client, out_dir=tmp_path / "out", options=options(), on_event=broken) as batch,
        ):
            await collect(batch, emo_jobs(*inputs, 2))


async def test_a_cold_batch_uploads_and_detects_each_distinct_file_once(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    images, sounds = make_inputs(tmp_path / "in", portraits=2, audios=1)
    jobs = emo_jobs(images, sounds, 8)  # 8 jobs over 2 portraits and 1 voice
    async with (
        make_client(emulator) as client,
        Batch(client, out_dir=tmp_path / "out", options=options(), prepare_concurrency=4) as batch,
    ):
        results = await collect(batch, jobs)
    assert Counter(r.status for r in results) == {"succeeded": 8}
    routes = account_stats(await emulator.stats())["routes"]
    # Each portrait once for emo-detect-v1 and once for emo-v1, the voice once: 5 uploads.
    assert routes["oss_upload"]["requests"] == 5
    assert routes["detect"]["requests"] == 2  # detection is billed per call: once per image


async def test_many_jobs_sharing_two_files_upload_each_once_per_model(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    images, sounds = make_inputs(tmp_path / "in", portraits=1, audios=1)
    jobs = emo_jobs(images, sounds, 16)  # 16 jobs, one portrait and one voice between them
    async with (
        make_client(emulator) as client,
        Batch(client, out_dir=tmp_path / "out", options=options(), prepare_concurrency=8) as batch,
    ):
        results = await collect(batch, jobs)
    assert Counter(r.status for r in results) == {"succeeded": 16}
    routes = account_stats(await emulator.stats())["routes"]
    # The portrait for emo-detect-v1 and for emo-v1, the voice for emo-v1: 3 uploads, however
    # many preparation workers reach the same file at once.
    assert routes["oss_upload"]["requests"] == 3
    assert routes["detect"]["requests"] == 1
