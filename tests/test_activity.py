"""What a client rides out is counted: retries by call kind and waits for the rate limit; a
batch tries a failed preparation step and a failed download again, and says so."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from batch_support import collect, emo_jobs, make_inputs, options
from client_support import make_client
from emulator_http import emo_body

from emoclient import Batch, ClientActivity, MemoryStore, Rates, RetryPolicy
from emoclient._activity import kind_of_path
from emoclient._batch.ledger import BatchSummary
from emoclient._cli._report import summary_notes
from emoclient._limits import RateLimiter
from emoclient.emulator import RunningEmulator

NO_TRANSPORT_RETRY = RetryPolicy(max_attempts=1)


def test_activity_counts_and_differences() -> None:
    activity = ClientActivity()
    activity.retried("upload")
    activity.waited(0.5)
    activity.waited(0.0)  # went at once: not a wait
    before = activity.copy()
    activity.retried("upload")
    activity.retried("query")
    activity.waited(0.25)
    since = activity.since(before)
    assert since.retries == {"upload": 1, "query": 1}
    assert (since.rate_waits, since.rate_wait_seconds) == (1, 0.25)
    total = ClientActivity()
    total.add(since)
    total.add(since)
    assert total.retries == {"upload": 2, "query": 2}
    assert total.rate_waits == 2


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("tasks/abc", "query"),
        ("/tasks", "query"),
        ("tasks/abc/cancel", "query"),
        ("uploads", "upload"),
        ("services/aigc/image2video/face-detect", "detect"),
        ("services/aigc/image2video/video-synthesis", "submit"),
    ],
)
def test_call_kinds_by_path(path: str, kind: str) -> None:
    assert kind_of_path(path) == kind


async def test_the_rate_limiter_says_how_long_a_caller_waited() -> None:
    now = [1000.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = RateLimiter(MemoryStore(clock=lambda: now[0]), "k", rate=4, sleep=sleep)
    assert await limiter.acquire() == 0.0
    assert await limiter.acquire() == pytest.approx(0.25)
    now[0] += 1.0
    assert await limiter.acquire() == 0.0


async def test_the_client_counts_its_retries_by_kind_and_its_rate_waits(
    emulator: RunningEmulator,
) -> None:
    body = emo_body(emulator, seconds=1.0)["input"]
    rates = Rates(query=5.0)
    async with make_client(emulator, rates=rates) as client:
        task = await client.submit_emo(
            body["image_url"],
            body["audio_url"],
            face_bbox=body["face_bbox"],
            ext_bbox=body["ext_bbox"],
        )
        emulator.set_faults(error_rate={"task_get": 1.0})
        with pytest.raises(Exception, match="HTTP 50"):
            await client.get_task(task.task_id)
        emulator.set_faults(error_rate={})
        for _ in range(3):
            await client.get_task(task.task_id)
    # FAST_RETRY: 4 attempts, so 3 retries, all of them task queries.
    assert client.activity.retries == {"query": 3}
    assert client.activity.rate_waits >= 2  # 7 queries at 5/s: most waited their turn
    assert client.activity.rate_wait_seconds > 0


async def test_a_503_from_the_result_host_resumes_the_download(
    emulator: RunningEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    body = emo_body(emulator, seconds=2.0)["input"]
    async with make_client(emulator) as client:
        task = await client.submit_emo(
            body["image_url"],
            body["audio_url"],
            face_bbox=body["face_bbox"],
            ext_bbox=body["ext_bbox"],
        )
        done = await client.wait(task.task_id)
        assert done.video_url is not None
        # Every answer is cut after 8000 bytes and every second one is a 5xx (seeded).
        emulator.set_faults(download_cut_bytes=8000, error_rate={"result_download": 0.5}, seed=3)
        with caplog.at_level(logging.INFO, logger="emoclient"):
            path = await client.download(done.video_url, tmp_path / "v.mp4")
        emulator.set_faults(download_cut_bytes=None, error_rate={})
    assert path.read_bytes()[4:8] == b"ftyp"
    refused = [r.getMessage() for r in caplog.records if "resuming" in r.getMessage()]
    assert any("HTTP 50" in m for m in refused), refused
    assert client.activity.retries["download"] == len(refused)


async def test_a_batch_tries_a_failed_upload_again_when_the_transport_gave_up(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    # No transport retries: each failed storage POST reaches the batch's preparation.
    images, sounds = make_inputs(tmp_path / "in", portraits=2)
    emulator.set_faults(error_rate={"oss_upload": 0.3}, seed=5)
    async with (
        make_client(emulator, retry=NO_TRANSPORT_RETRY) as client,
        Batch(client, out_dir=tmp_path / "out", options=options()) as batch,
    ):
        results = await collect(batch, emo_jobs(images, sounds, 2))
    emulator.set_faults(error_rate={})
    assert [r.status for r in results] == ["succeeded", "succeeded"]
    assert batch.summary.retries.get("upload", 0) > 0


async def test_a_batch_gives_up_an_upload_after_its_policy_s_attempts(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    images, sounds = make_inputs(tmp_path / "in", portraits=1, audios=1)
    emulator.set_faults(error_rate={"oss_upload": 1.0})
    async with (
        make_client(emulator, retry=NO_TRANSPORT_RETRY) as client,
        Batch(client, out_dir=tmp_path / "out", options=options()) as batch,
    ):
        results = await collect(batch, emo_jobs(images, sounds, 1))
    emulator.set_faults(error_rate={})
    # A 5xx is worth trying again: the batch's policy (4 attempts) tried 3 more times.
    assert [r.status for r in results] == ["failed"]
    assert batch.summary.retries == {"upload": 3}


def test_the_cli_summary_names_what_was_ridden_out() -> None:
    summary = BatchSummary(
        retries={"upload": 2, "download": 5},
        rate_waits=3,
        reconciled=2,
        reconciled_found=1,
        resubmitted=1,
        stalled=1,
    )
    assert summary_notes(summary) == [
        "1 task(s) failed on the service's side and were submitted again",
        "retried 2 upload, 5 download",
        "3 wait(s) for the rate limit",
        "2 lost submit answers looked up",
        "1 of them found their task (none paid twice)",
        "1 task(s) stalled",
    ]
    assert summary_notes(BatchSummary()) == []
