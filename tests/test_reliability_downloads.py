"""Downloads are verified: an MP4, no longer than announced, under a size cap, in time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from client_support import account_stats, make_client
from emulator_http import emo_body

from emoclient import DownloadError, EmoClient
from emoclient._download import download_file
from emoclient._exceptions import ConfigurationError
from emoclient.emulator import RunningEmulator


@pytest.fixture
async def client(emulator: RunningEmulator) -> AsyncIterator[EmoClient]:
    async with make_client(emulator) as c:
        yield c


async def _video_url(client: EmoClient, emulator: RunningEmulator) -> str:
    inputs = emo_body(emulator, seconds=1.0)["input"]
    submitted = await client.submit_emo(
        inputs["image_url"],
        inputs["audio_url"],
        face_bbox=inputs["face_bbox"],
        ext_bbox=inputs["ext_bbox"],
    )
    task = await client.wait(submitted.task_id)
    assert task.video_url is not None
    return task.video_url


def _nothing_saved(target: Path) -> bool:
    return not target.exists() and not any(target.parent.glob("*.part"))


async def test_an_html_page_served_with_200_is_not_saved(
    client: EmoClient, emulator: RunningEmulator, tmp_path: Path
) -> None:
    url = await _video_url(client, emulator)
    emulator.set_faults(download_fault="html")
    target = tmp_path / "v.mp4"
    with pytest.raises(DownloadError, match="not an MP4") as caught:
        await client.download(url, target)
    assert "b'<html>" in str(caught.value)
    assert "Signature" not in str(caught.value)
    assert _nothing_saved(target)


async def test_a_body_longer_than_announced_is_not_saved(
    client: EmoClient, emulator: RunningEmulator, tmp_path: Path
) -> None:
    url = await _video_url(client, emulator)
    emulator.set_faults(download_fault="longer")
    target = tmp_path / "v.mp4"
    with pytest.raises(DownloadError, match="Content-Length") as caught:
        await client.download(url, target)
    assert "Signature" not in str(caught.value)
    assert len(str(caught.value)) < 600
    assert _nothing_saved(target)


async def test_a_body_that_never_ends_stops_at_the_size_cap(
    emulator: RunningEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMOCLIENT_DOWNLOAD_MAX_MB", "1")
    target = tmp_path / "v.mp4"
    async with make_client(emulator) as client:
        url = await _video_url(client, emulator)
        emulator.set_faults(download_fault="endless")
        with pytest.raises(DownloadError, match="EMOCLIENT_DOWNLOAD_MAX_MB"):
            await client.download(url, target)
    assert _nothing_saved(target)


async def test_an_announced_size_over_the_cap_is_refused_unread(
    emulator: RunningEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMOCLIENT_DOWNLOAD_MAX_MB", "0.01")  # the 1 s video is 16 KiB
    target = tmp_path / "v.mp4"
    async with make_client(emulator) as client:
        url = await _video_url(client, emulator)
        with pytest.raises(DownloadError, match=r"announces 16384 bytes, over the limit"):
            await client.download(url, target)
    assert _nothing_saved(target)


async def test_a_stalled_body_misses_its_deadline(
    client: EmoClient, emulator: RunningEmulator, tmp_path: Path
) -> None:
    url = await _video_url(client, emulator)
    emulator.set_faults(download_fault="stall")
    target = tmp_path / "v.mp4"
    with pytest.raises(DownloadError, match="did not finish within") as caught:
        # 16 KiB at 64 KiB/s is a quarter second; the floor makes it half a second.
        await download_file(client._transport, url, target, min_seconds=0.5)
    assert "EMOCLIENT_DOWNLOAD_MIN_KBPS" in str(caught.value)
    assert _nothing_saved(target)


async def test_a_verified_video_is_still_saved(
    client: EmoClient, emulator: RunningEmulator, tmp_path: Path
) -> None:
    url = await _video_url(client, emulator)
    saved = await download_file(client._transport, url, tmp_path / "v.mp4", min_seconds=5.0)
    assert saved.read_bytes()[4:8] == b"ftyp"
    assert saved.stat().st_size == 16 * 1024


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("EMOCLIENT_DOWNLOAD_MAX_MB", "lots"),
        ("EMOCLIENT_DOWNLOAD_MIN_KBPS", "0"),
        ("EMOCLIENT_MAX_JSON_MB", "-1"),
        ("EMOCLIENT_MAX_JSON_MB", "inf"),
    ],
)
def test_bad_limits_in_the_environment_are_refused_at_construction(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=variable):
        EmoClient("sk-x", base_url="http://127.0.0.1:9/api/v1")


async def test_a_folder_as_the_target_is_named_before_anything_is_fetched(
    client: EmoClient, emulator: RunningEmulator, tmp_path: Path
) -> None:
    url = await _video_url(client, emulator)
    served = account_stats(await emulator.stats())["result_bytes_served"]
    with pytest.raises(ValueError, match=r"it is a folder; give a file path"):
        await client.download(url, tmp_path)
    assert account_stats(await emulator.stats())["result_bytes_served"] == served
    assert _nothing_saved(tmp_path / "v.mp4")
