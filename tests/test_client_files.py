"""Uploads to temporary storage and result downloads (atomic, resumable, no credentials)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from client_support import account_stats, make_client, portrait, speech

from emoclient import (
    DownloadError,
    EmoClient,
    ResultURLExpiredError,
    UploadError,
)
from emoclient.emulator import EmulatorConfig, RunningEmulator, serve


@pytest.fixture
async def client(emulator: RunningEmulator) -> AsyncIterator[EmoClient]:
    async with make_client(emulator) as c:
        yield c


async def _finished_video_url(client: EmoClient, tmp_path: Path, *, seconds: float = 1.0) -> str:
    image = portrait(tmp_path)
    detection = await client.detect_emo((await client.upload(image, model="emo-detect-v1")).url)
    assert detection.face_bbox is not None
    assert detection.ext_bbox is not None
    submitted = await client.submit_emo(
        (await client.upload(image, model="emo-v1")).url,
        (await client.upload(speech(tmp_path, seconds=seconds), model="emo-v1")).url,
        face_bbox=detection.face_bbox,
        ext_bbox=detection.ext_bbox,
    )
    task = await client.wait(submitted.task_id)
    assert task.video_url is not None
    return task.video_url


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part"))


async def test_upload_returns_oss_url_with_48h_expiry(client: EmoClient, tmp_path: Path) -> None:
    before = datetime.now(UTC)
    uploaded = await client.upload(portrait(tmp_path), model="emo-detect-v1")
    assert uploaded.url.startswith("oss://")
    assert uploaded.url.endswith("/face.jpg")
    assert uploaded.model == "emo-detect-v1"
    assert (
        before + timedelta(hours=47)
        < uploaded.expires_at
        <= datetime.now(UTC) + timedelta(hours=48)
    )


async def test_equal_basenames_do_not_collide_and_policy_is_reused(
    client: EmoClient, emulator: RunningEmulator, tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = await client.upload(portrait(tmp_path / "a", seed=1), model="emo-detect-v1")
    second = await client.upload(portrait(tmp_path / "b", seed=2), model="emo-detect-v1")
    assert first.url != second.url
    for uploaded in (first, second):
        assert (await client.detect_emo(uploaded.url)).passed
    routes = account_stats(await emulator.stats())["routes"]
    assert routes["upload_policy"]["requests"] == 1
    assert routes["oss_upload"]["requests"] == 2


async def test_upload_of_missing_file_names_it(client: EmoClient, tmp_path: Path) -> None:
    with pytest.raises(UploadError, match=r"missing\.png"):
        await client.upload(tmp_path / "missing.png", model="emo-v1")
    with pytest.raises(UploadError, match="not a regular file"):
        await client.upload(tmp_path, model="emo-v1")


async def test_upload_over_size_limit_refused_locally(tmp_path: Path) -> None:
    big = tmp_path / "big.wav"
    big.write_bytes(b"\0" * (1024 * 1024 + 1))
    async with serve(EmulatorConfig.fast(upload_max_file_size_mb=1)) as emulator:
        async with make_client(emulator) as client:
            with pytest.raises(UploadError, match="1 MB limit"):
                await client.upload(big, model="emo-v1")
        routes = account_stats(await emulator.stats())["routes"]
    assert "oss_upload" not in routes


async def test_download_is_atomic_and_sends_no_credentials(
    client: EmoClient, emulator: RunningEmulator, tmp_path: Path
) -> None:
    url = await _finished_video_url(client, tmp_path)
    target = tmp_path / "out" / "video.mp4"
    saved = await client.download(url, target)
    assert saved == target
    assert target.stat().st_size > 0
    assert _leftovers(target.parent) == []
    stats = await emulator.stats()
    assert stats["foreign_auth_headers"] == 0
    assert account_stats(stats)["result_bytes_served"] == target.stat().st_size


async def test_cut_download_resumes_with_range(
    client: EmoClient, emulator: RunningEmulator, tmp_path: Path
) -> None:
    url = await _finished_video_url(client, tmp_path, seconds=3.0)
    whole = await client.download(url, tmp_path / "whole.mp4")
    size = whole.stat().st_size
    emulator.set_faults(download_cut_bytes=size // 3)
    resumed = await client.download(url, tmp_path / "resumed.mp4")
    assert resumed.read_bytes() == whole.read_bytes()
    assert _leftovers(tmp_path) == []
    routes = account_stats(await emulator.stats())["routes"]
    assert routes["result_download"]["requests"] == 1 + 3


async def test_download_without_progress_fails_leaving_nothing(
    client: EmoClient, emulator: RunningEmulator, tmp_path: Path
) -> None:
    url = await _finished_video_url(client, tmp_path)
    emulator.set_faults(download_cut_bytes=0)
    target = tmp_path / "never.mp4"
    with pytest.raises(DownloadError, match="without progress"):
        await client.download(url, target)
    assert not target.exists()
    assert _leftovers(tmp_path) == []


async def test_expired_result_url(
    client: EmoClient, emulator: RunningEmulator, tmp_path: Path
) -> None:
    url = await _finished_video_url(client, tmp_path)
    emulator.advance(25 * 3600)
    target = tmp_path / "late.mp4"
    with pytest.raises(ResultURLExpiredError, match="expired") as caught:
        await client.download(url, target)
    assert "Signature=" not in str(caught.value)
    assert not target.exists()
    assert _leftovers(tmp_path) == []


async def test_tampered_url_is_refused(client: EmoClient, tmp_path: Path) -> None:
    url = await _finished_video_url(client, tmp_path)
    with pytest.raises(DownloadError):
        await client.download(url.replace("Signature=", "Signature=x"), tmp_path / "x.mp4")
    missing = url.split("/results/")[0] + "/results/nothing.mp4"
    with pytest.raises(DownloadError):
        await client.download(missing, tmp_path / "y.mp4")
    assert not (tmp_path / "y.mp4").exists()


async def test_download_of_a_non_http_url_is_refused_before_touching_disk(
    client: EmoClient, tmp_path: Path
) -> None:
    target = tmp_path / "new-dir" / "v.mp4"
    with pytest.raises(ValueError, match="video_url"):
        await client.download("oss://dashscope-instant/key/face.jpg", target)
    assert not target.parent.exists()
