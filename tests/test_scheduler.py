"""Scheduler policy: admission, learned timing, URL expiry order, query economy and stop()."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from batch_support import collect, emo_jobs, make_inputs, options
from client_support import account_stats, make_client, new_key

from emoclient._batch import Batch, BatchSummary, JobResult, SchedulerOptions
from emoclient._batch.download_lane import DownloadLane
from emoclient._batch.events import BatchEvent, JobQueued, JobReconciled, JobSubmitted
from emoclient._batch.jobs import EmoJob
from emoclient._batch.journal import Journal, State
from emoclient._batch.ledger import Ledger
from emoclient._batch.options import poll_schedule
from emoclient._models import Task, TaskStatus
from emoclient._retry import RetryPolicy
from emoclient._timing import AccountTiming, Learned, Progress
from emoclient.emulator import EmulatorConfig, RunningEmulator, serve
from emoclient.emulator._results import placeholder_video
from emoclient.emulator._state import Task as EmulatedTask
from emoclient.emulator._state import TaskInputs


async def _ignore(_: Any) -> None:
    return None


def _timing(**opts: Any) -> AccountTiming:
    return AccountTiming(poll_schedule(SchedulerOptions(**opts)))


def _admits(timing: AccountTiming, live: list[float], new: float) -> bool:
    return timing.admits(live, new, budget=20 * 3600.0)


def test_admission_refuses_a_task_that_would_expire_in_the_queue() -> None:
    # 2000 service seconds per output second: 60 s clips take 33 h each.
    timing = _timing()
    timing.learned.observe(1.0, None, 2000.0)
    assert _admits(timing, [], 5)  # nothing ahead: always admitted
    assert _admits(timing, [5], 5)  # (5 + 5) * 2000 s = 5.6 h
    assert not _admits(timing, [5, 30], 5)  # (5 + 30 + 5) * 2000 s = 22 h > 20 h


def test_processing_time_is_fitted_as_overhead_plus_rate() -> None:
    learned = Learned()
    learned.observe(2.0, 4.0, None)
    assert learned.local.predict(3.0) == pytest.approx(6.0)  # one length seen: a ratio
    assert learned.server.predict(3.0) is None
    learned.observe(4.0, 5.0, None)  # 30 + 5 s per output second, scaled by 1/10
    learned.observe(1.0, 3.5, None)
    assert learned.local.predict(2.0) == pytest.approx(4.0, abs=0.01)
    for _ in range(30):  # the service slowed down: old samples fade
        learned.observe(2.0, 8.0, None)
        learned.observe(4.0, 10.0, None)
    assert learned.local.predict(3.0) == pytest.approx(9.0, abs=0.1)


def test_a_running_task_is_first_asked_about_just_before_its_expected_end() -> None:
    timing = _timing(poll_min=0.5, poll_max=30.0, pending_poll=60.0)
    first, second = Progress(), Progress()
    timing.submitted(first, 0.0, alone=True)
    assert first.next_poll == 0.5
    timing.submitted(second, 0.0, alone=False)
    assert second.next_poll == 60.0  # queued behind ours: asked rarely
    # Nothing learned yet: the running task is probed at doubling intervals.
    assert timing.running(first, 1.0, output_seconds=5.0)
    assert (first.started_at, first.next_poll) == (0.5, 1.5)
    assert not timing.running(first, 1.5, output_seconds=5.0)
    assert first.next_poll == 2.5
    ended = timing.ended(first, 2.5)
    assert ended == 2.0  # between the last RUNNING answer and this one
    timing.learn(first, output_seconds=5.0, now=2.5, server_seconds=None)
    assert timing.expected_length(5.0) == pytest.approx(1.5)
    # The next one runs from the moment the first ended; first asked at 95 % of 1.5 s.
    timing.promote(second, ended=ended, now=2.5, output_seconds=5.0)
    assert second.status is TaskStatus.RUNNING
    assert second.next_poll == pytest.approx(2.0 + 0.95 * 1.5)
    # Past that, in steps of 8 % of the length (at least poll_min), growing by half.
    timing.running(second, 3.5, output_seconds=5.0)
    assert second.next_poll == pytest.approx(4.0)
    timing.running(second, 4.0, output_seconds=5.0)
    assert second.next_poll == pytest.approx(4.75)


def test_a_task_thought_running_that_answers_pending_is_queued_again() -> None:
    timing = _timing(poll_min=1.0, poll_max=4.0)
    p = Progress()
    timing.submitted(p, 0.0, alone=True)
    timing.promote(p, ended=0.0, now=0.0, output_seconds=5.0)
    timing.pending(p, 1.0, ours_running=False)
    assert (p.status, p.started_at) == (TaskStatus.PENDING, None)
    delays = []
    for now in (1.0, 2.0, 3.0, 4.0):
        timing.pending(p, now, ours_running=False)
        delays.append(p.next_poll - now)
    assert delays == [1.5, 2.25, 3.375, 4.0]  # backing off to poll_max


def test_url_expiry_from_signed_url_or_end_time() -> None:
    signed = Task(
        task_id="t", status=TaskStatus.SUCCEEDED, video_url="http://h/r.mp4?Expires=1700000000&S=x"
    )
    assert signed.url_expires_at() == 1_700_000_000.0
    end = datetime(2025, 1, 1, tzinfo=UTC)
    plain = Task(task_id="t", status=TaskStatus.SUCCEEDED, video_url="http://h/r", end_time=end)
    assert plain.url_expires_at() == end.timestamp() + 24 * 3600


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig.fast(speed=120.0)


async def test_poller_spends_few_queries_per_task(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    jobs = emo_jobs(*make_inputs(tmp_path / "in", portraits=2), 10)
    async with (
        make_client(emulator) as client,
        Batch(client, out_dir=tmp_path / "out", options=options()) as batch,
    ):
        await collect(batch, jobs)
    stats = account_stats(await emulator.stats())
    assert batch.summary.counts == {"succeeded": 10}
    assert stats["routes"]["task_get"]["requests"] == batch.queries
    # The SDK's 1-1-2-2-2-4 s schedule, scaled to this clock, would spend ~10 per task.
    assert batch.queries <= 4 * len(jobs)


async def test_stop_cancels_pending_and_leaves_running_to_the_rerun(tmp_path: Path) -> None:
    jobs = emo_jobs(*make_inputs(tmp_path / "in", portraits=2), 3)
    key, out = new_key(), tmp_path / "out"
    async with serve(EmulatorConfig.fast(speed=0.0)) as emulator:
        async with make_client(emulator, api_key=key) as client:
            submitted = 0

            def on_event(event: BatchEvent) -> None:
                nonlocal submitted
                if isinstance(event, JobSubmitted):
                    submitted += 1
                    if submitted == 2:
                        batch.stop()

            async with Batch(client, out_dir=out, options=options(), on_event=on_event) as batch:
                results = await collect(batch, jobs)
        assert Counter(r.status for r in results) == {"canceled": 2}
        assert batch.summary.interrupted == 1
        assert batch.summary.stopped
        tasks = account_stats(await emulator.stats())["tasks"]
        assert (tasks.get("RUNNING"), tasks.get("CANCELED")) == (1, 1)

        def advance_after_submit(event: BatchEvent) -> None:
            if isinstance(event, JobSubmitted):  # the frozen clock moves only when told
                emulator.advance(600)

        emulator.advance(600)
        async with (
            make_client(emulator, api_key=key) as client,
            Batch(client, out_dir=out, options=options(), on_event=advance_after_submit) as batch,
        ):
            results = await collect(batch, jobs)
        assert Counter(r.status for r in results) == {"succeeded": 3}
        tasks = account_stats(await emulator.stats())["tasks"]
        assert (tasks.get("SUCCEEDED"), tasks.get("CANCELED")) == (3, 1)


async def test_stop_during_a_submit_in_flight_still_ends_the_run(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    jobs = emo_jobs(*make_inputs(tmp_path / "in", portraits=1), 1)
    key, out = new_key(), tmp_path / "out"
    emulator.set_faults(drop_rate={"submit": 1.0})

    def stop_between_attempts(event: BatchEvent) -> None:
        # The first submit was dropped and nothing was found: the next attempt is sent
        # after the stop, and the poller has ended by the time its answer comes.
        if isinstance(event, JobReconciled):
            emulator.set_faults(drop_rate=0.0)
            batch.stop()

    with anyio.fail_after(10):  # a deadline, not a synchronisation
        async with (
            make_client(emulator, api_key=key) as client,
            Batch(client, out_dir=out, options=options(), on_event=stop_between_attempts) as batch,
        ):
            results = await collect(batch, jobs)
    assert results == []
    assert batch.summary.interrupted == 1  # RUNNING at once (the account was idle)
    async with (
        make_client(emulator, api_key=key) as client,
        Batch(client, out_dir=out, options=options()) as batch,
    ):
        results = await collect(batch, jobs)
    assert [r.status for r in results] == ["succeeded"]
    assert account_stats(await emulator.stats())["submissions"] == 1


async def test_stop_does_not_wait_for_a_slot_held_elsewhere(tmp_path: Path) -> None:
    jobs = emo_jobs(*make_inputs(tmp_path / "in", portraits=2), 2)
    async with (
        serve(EmulatorConfig.fast(speed=0.0)) as emulator,
        make_client(emulator) as client,
    ):
        held, prepared = anyio.Event(), anyio.Event()

        submitted: list[str] = []

        def on_first(event: BatchEvent) -> None:
            # Rows are prepared concurrently, so either may be submitted second.
            if isinstance(event, JobSubmitted):
                submitted.append(event.label)
                if len(submitted) == 2:
                    held.set()  # both shared slots of the key are now held by frozen tasks

        def on_second(event: BatchEvent) -> None:
            if isinstance(event, JobQueued):
                prepared.set()

        # URLs and boxes: preparing this job needs no request, so it goes straight to admission.
        ready = EmoJob(
            image=emulator.host_file("face.png", b"unused"),
            audio=emulator.host_file("voice.wav", b"unused"),
            face_bbox=(10, 10, 100, 100),
            ext_bbox=(0, 0, 200, 200),
            label="ready",
        )

        first = Batch(client, out_dir=tmp_path / "a", options=options(), on_event=on_first)
        second = Batch(client, out_dir=tmp_path / "b", options=options(), on_event=on_second)
        async with first, second, anyio.create_task_group() as tg:
            tg.start_soon(collect, first, jobs)
            await held.wait()
            results: list[JobResult] = []

            second_done = anyio.Event()

            async def run_second() -> None:
                results.extend(await collect(second, [ready]))
                second_done.set()

            tg.start_soon(run_second)
            await prepared.wait()
            # The second batch reaches admission after journal writes in worker threads,
            # which wait_all_tasks_blocked() does not wait for: look until it is there.
            with anyio.fail_after(10):
                while not second._accounts or not second._accounts[0].scheduler._admissions:
                    await anyio.wait_all_tasks_blocked()
            second.stop()
            with anyio.fail_after(10):  # a deadline, not a synchronisation
                await second_done.wait()
            first.stop()
        assert [r.status for r in results] == ["canceled"]
        assert account_stats(await emulator.stats())["submissions"] == 2


def _mp4(seconds: float, ratio: str = "1:1") -> bytes:
    """An MP4 whose headers say ``seconds`` and the frame size of ``ratio``."""
    inputs = TaskInputs(image=b"", ext_bbox=(0, 0, 1, 1), output_seconds=seconds, video_ratio=ratio)
    return placeholder_video(EmulatedTask("t", "a", "emo-v1", 0.0, inputs))


class _RecordingClient:
    """Stands in for EmoClient.download only: records the order of downloads and refuses
    the URL "bad" as unusable (ValueError), as the client does for a non-http(s) URL.
    Saves a 2 s 1:1 MP4, or what ``videos`` says for a URL."""

    def __init__(self, videos: dict[str, bytes] | None = None) -> None:
        self.order: list[str] = []
        self.videos = videos or {}

    async def download(self, url: str, path: Path) -> Path:
        self.order.append(url)
        if url == "bad":
            raise ValueError("download() needs an http(s) URL")
        await anyio.Path(path).write_bytes(self.videos.get(url, _mp4(2.0)))
        return path


async def _run_lane(
    client: _RecordingClient, tmp_path: Path, urls: list[tuple[str, float]]
) -> list[str]:
    """Queue one SUCCEEDED ticket per (url, expiry), run the lane to the end, return the
    status of each job's result in the order they finished."""
    send, receive = anyio.create_memory_object_stream[JobResult](len(urls))
    async with Journal(tmp_path / "j.sqlite3") as journal:
        ledger = Ledger(journal, emit=_ignore, results=send, summary=BatchSummary())
        lane = DownloadLane(
            client,  # type: ignore[arg-type]
            ledger,
            workers=1,
            retry=RetryPolicy(max_attempts=2, base_delay=0.0),
        )
        for n, (url, expires) in enumerate(urls):
            job = EmoJob(image=f"https://h/{n}.png", audio="https://h/a.wav", output=f"{n}.mp4")
            ticket, _ = await ledger.open(
                job, key=f"k{n}", output=f"{n}.mp4", path=tmp_path / f"{n}.mp4"
            )
            ticket.video_url, ticket.url_expires_at = url, expires
            await lane.put(ticket)
        await lane.close()
        await lane.run()
    send.close()
    return [result.status async for result in receive]


async def test_download_lane_takes_the_earliest_url_expiry_first(tmp_path: Path) -> None:
    client = _RecordingClient()
    urls = [(f"url-{expires:.0f}", expires) for expires in [300.0, 100.0, 200.0]]
    finished = await _run_lane(client, tmp_path, urls)
    assert client.order == ["url-100", "url-200", "url-300"]
    assert finished == ["succeeded"] * 3


async def test_an_unusable_download_fails_its_job_not_the_batch(tmp_path: Path) -> None:
    client = _RecordingClient()
    finished = await _run_lane(client, tmp_path, [("bad", 0.0), ("good", 1.0)])
    assert client.order == ["bad", "good"]  # tried once: retrying cannot help
    assert finished == ["failed", "succeeded"]


@pytest.mark.parametrize(
    ("video", "problem"),
    [
        (_mp4(5.0), "lasts 5.0 s, but the job's audio lasts 2.0 s"),
        (_mp4(2.0, "3:4"), "frames are 512x704, but a 1:1 video is 512x512"),
        (b"<html>not a video</html>", "cannot be read as an MP4"),
    ],
)
async def test_a_video_that_is_not_the_job_s_is_set_aside_and_fails_the_job(
    tmp_path: Path, video: bytes, problem: str
) -> None:
    events: list[BatchEvent] = []
    client = _RecordingClient({"other": video})
    send, receive = anyio.create_memory_object_stream[JobResult](1)
    async with Journal(tmp_path / "j.sqlite3") as journal:
        ledger = Ledger(journal, emit=_collect(events), results=send, summary=BatchSummary())
        lane = DownloadLane(
            client,  # type: ignore[arg-type]
            ledger,
            workers=1,
            retry=RetryPolicy(max_attempts=1),
        )
        job = EmoJob(image="https://h/0.png", audio="https://h/a.wav", output="0.mp4")
        path = tmp_path / "0.mp4"
        ticket, _ = await ledger.open(job, key="k0", output=path.name, path=path)
        ticket.output_seconds, ticket.task_id, ticket.video_url = 2.0, "task-0", "other"
        await lane.put(ticket)
        await lane.close()
        await lane.run()
        record = await journal.get("k0")
    send.close()
    (result,) = [r async for r in receive]
    assert (result.status, result.code) == ("failed", "VideoMismatch")
    assert problem in (result.error or "")
    assert not path.exists()  # never delivered under the job's name...
    assert (tmp_path / "0.mismatch-task-0.mp4").read_bytes() == video  # ...but nothing lost
    assert record is not None
    assert record.state == State.FAILED


def _collect(events: list[BatchEvent]) -> Callable[[BatchEvent], Awaitable[None]]:
    async def emit(event: BatchEvent) -> None:
        events.append(event)

    return emit


def test_our_own_waiting_is_not_learned_as_the_task_s_length() -> None:
    timing = _timing(poll_min=0.5, poll_max=30.0)
    p = Progress()
    timing.submitted(p, 0.0, alone=True)
    timing.running(p, 1.0, output_seconds=5.0)  # started about 0.5
    # The next answer came 19 s later (we were waiting for something else): the task ended
    # somewhere in between, and the middle (10.5) would teach a length of 10 s.
    timing.learn(p, output_seconds=5.0, now=20.0, server_seconds=None)
    expected = timing.expected_length(5.0)
    assert expected is not None
    assert expected <= 1.0


def test_before_any_length_is_known_a_running_task_is_asked_about_often() -> None:
    # The first task of a batch: nothing says when it ends, so each wait grows, but never
    # past a third of the longest (a finished video must not wait long to be noticed).
    from emoclient._timing import PollSchedule

    schedule = PollSchedule(min_interval=3.0, max_interval=15.0)
    p, now, waits = Progress(), 0.0, []
    for _ in range(12):
        schedule.running(p, now, expected=None)
        waits.append(p.next_poll - now)
        now = p.next_poll
    assert waits[0] == 3.0
    assert waits == sorted(waits)  # growing...
    assert max(waits) == 5.0  # ...up to max_interval / 3
