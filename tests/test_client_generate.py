"""One-call generation: local files in, finished MP4s out, inside the service's limits."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import anyio
import pytest
from client_support import FAST_RETRY, account_stats, make_client, portrait, speech

from emoclient import DetectionFailedError, DrivenId, EmoClient, UploadError
from emoclient.emulator import EmulatorConfig, RunningEmulator, serve


def _streams(path: Path) -> set[str]:
    import av

    with av.open(str(path)) as container:
        kinds: set[str] = {stream.type for stream in container.streams}
        for frame in container.decode(video=0):
            assert frame.width > 0
            break
    return kinds


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig.fast(render=True)


async def test_twenty_concurrent_generate_emo_never_throttled(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    images = [portrait(tmp_path, f"p{i}.jpg", seed=i) for i in range(4)]
    voice = speech(tmp_path, seconds=1.0)
    outputs: list[Path] = []
    async with make_client(emulator) as client:

        async def one(i: int) -> None:
            out = await client.generate_emo(
                images[i % len(images)], voice, out=tmp_path / "out" / f"v{i}.mp4"
            )
            outputs.append(out)

        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(one, i)
    stats = await emulator.stats()
    account = account_stats(stats)
    assert {name: r["throttled"] for name, r in account["routes"].items()} == dict.fromkeys(
        account["routes"], 0
    )
    assert account["routes"]["submit"]["max_in_1s"] <= 5
    assert account["routes"]["task_get"]["max_in_1s"] <= 20
    assert account["tasks"] == {"SUCCEEDED": 20}
    assert stats["foreign_auth_headers"] == 0
    # Local files are uploaded once per (file, model): 4 portraits x 2 models + 1 voice.
    assert account["routes"]["oss_upload"]["requests"] == 4 * 2 + 1
    assert sorted(p.name for p in outputs) == sorted(f"v{i}.mp4" for i in range(20))
    for out in outputs:
        assert _streams(out) == {"video", "audio"}


async def test_generate_emoji(emulator: RunningEmulator, tmp_path: Path) -> None:
    async with make_client(emulator) as client:
        out = await client.generate_emoji(
            portrait(tmp_path), DrivenId.DAGONG_KAIXIN, out=tmp_path / "emoji.mp4"
        )
    assert "video" in _streams(out)


async def test_generate_stops_at_failed_detection(tmp_path: Path) -> None:
    async with serve(EmulatorConfig.fast()) as emulator, make_client(emulator) as client:
        image = portrait(tmp_path, fail="InvalidFile.FullFace")
        with pytest.raises(DetectionFailedError) as caught:
            await client.generate_emo(image, speech(tmp_path), out=tmp_path / "x.mp4")
        routes = account_stats(await emulator.stats())["routes"]
    assert caught.value.code == "InvalidFile.FullFace"
    assert str(image) in str(caught.value)
    assert "submit" not in routes
    assert not (tmp_path / "x.mp4").exists()


async def test_generate_accepts_urls(tmp_path: Path) -> None:
    async with serve(EmulatorConfig.fast()) as emulator, make_client(emulator) as client:
        image_url = emulator.host_file("face.jpg", portrait(tmp_path).read_bytes())
        voice_url = emulator.host_file("voice.wav", speech(tmp_path).read_bytes())
        out = await client.generate_emo(image_url, voice_url, out=tmp_path / "u.mp4")
        routes = account_stats(await emulator.stats())["routes"]
    assert out.stat().st_size > 0
    assert "oss_upload" not in routes


async def test_generate_with_a_missing_file_raises_upload_error(tmp_path: Path) -> None:
    # Both uploads of the portrait fail; the caller still gets the UploadError, not a group.
    async with EmoClient("sk-unused", base_url="http://127.0.0.1:9", retry=FAST_RETRY) as client:
        with pytest.raises(UploadError) as caught:
            await client.generate_emo(
                tmp_path / "missing.jpg", speech(tmp_path), out=tmp_path / "x.mp4"
            )
    assert "missing.jpg" in str(caught.value)


@pytest.mark.parametrize("model", ["emo", "emoji"])
async def test_cancelling_generate_cancels_its_pending_task(tmp_path: Path, model: str) -> None:
    image, voice = portrait(tmp_path), speech(tmp_path)
    async with serve(EmulatorConfig.fast(speed=0.0)) as emulator, make_client(emulator) as client:
        # Another task holds the model's running slot: ours will wait, PENDING.
        blocker = await client.upload(image, model=f"{model}-v1")
        if model == "emo":
            audio = await client.upload(voice, model="emo-v1")
            await client.submit_emo(blocker.url, audio.url, face_bbox=BOX, ext_bbox=EXT)
        else:
            await client.submit_emoji(
                blocker.url, driven_id="mengwa_kaixin", face_bbox=BOX, ext_bbox=EXT
            )
        async with anyio.create_task_group() as tg:
            out = tmp_path / "out.mp4"
            if model == "emo":
                tg.start_soon(partial(client.generate_emo, image, voice, out=out))
            else:
                tg.start_soon(partial(client.generate_emoji, image, "mengwa_kaixin", out=out))
            with anyio.fail_after(10):  # a deadline; the server's state is polled
                while account_stats(await emulator.stats())["submissions"] < 2:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()  # the caller gives up (say, its HTTP client left)
        tasks = account_stats(await emulator.stats())["tasks"]
    assert tasks == {"RUNNING": 1, "CANCELED": 1}  # nothing billed for the abandoned call


BOX, EXT = (100, 100, 300, 300), (0, 0, 400, 400)
