"""The official ``dashscope`` SDK (1.26.2), unchanged, against the emulator."""

from __future__ import annotations

from functools import partial
from http import HTTPStatus
from pathlib import Path
from typing import Any

import anyio
import pytest
from emulator_http import host_inputs, sample_boxes

from emoclient.emulator import RunningEmulator
from emoclient.emulator.samples import make_speech

dashscope = pytest.importorskip("dashscope")


def _submit_and_wait(base_url: str, image_url: str, audio: Path) -> tuple[Any, Any]:
    from dashscope import VideoSynthesis

    dashscope.base_http_api_url = base_url
    face, ext = sample_boxes()
    submitted = VideoSynthesis.async_call(
        model="emo-v1",
        task="image2video",
        api_key="sk-sdk",
        audio_url=f"file://{audio}",  # a local file: the SDK uploads it itself
        extra_input={"image_url": image_url, "face_bbox": face, "ext_bbox": ext},
        style_level="active",
    )
    # A deadline: the SDK waits forever by default, in a thread no test timeout can stop.
    done = VideoSynthesis.wait(submitted, api_key="sk-sdk", wait_timeout=60)
    return submitted, done


async def test_sdk_submits_uploads_waits_and_reads_the_result(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    image_url, _ = host_inputs(emulator)
    audio = make_speech(tmp_path / "voice.wav", seconds=2.0)
    submitted, done = await anyio.to_thread.run_sync(
        partial(_submit_and_wait, emulator.base_url, image_url, audio)
    )
    assert submitted.status_code == HTTPStatus.OK, submitted
    assert submitted.output.task_status == "PENDING"
    assert done.status_code == HTTPStatus.OK, done
    assert done.output.task_status == "SUCCEEDED"
    assert done.output.results["video_url"].startswith(emulator.files_url)
    assert done.usage.video_duration == 2.0
    stats = (await emulator.stats())["accounts"]
    routes = next(iter(stats.values()))["routes"]
    assert routes["upload_policy"]["requests"] == 1
    assert routes["oss_upload"]["requests"] == 1
    assert (await emulator.stats())["foreign_auth_headers"] == 0


def _detect_cancel_fetch(base_url: str, image_url: str) -> tuple[Any, Any, Any]:
    from dashscope import VideoSynthesis
    from dashscope.client.base_api import BaseApi

    dashscope.base_http_api_url = base_url
    detected = BaseApi.call(
        model="emo-detect-v1",
        input={"image_url": image_url},
        task_group="aigc",
        task="image2video",
        function="face-detect",
        api_key="sk-sdk",
        ratio="3:4",
    )
    unknown = VideoSynthesis.fetch("1111", api_key="sk-sdk")
    refused = VideoSynthesis.cancel("1111", api_key="sk-sdk")
    return detected, unknown, refused


async def test_sdk_detect_fetch_and_cancel(emulator: RunningEmulator) -> None:
    image_url, _ = host_inputs(emulator)
    detected, unknown, refused = await anyio.to_thread.run_sync(
        partial(_detect_cancel_fetch, emulator.base_url, image_url)
    )
    assert detected.status_code == HTTPStatus.OK, detected
    assert detected.output["check_pass"] is True
    x1, y1, x2, y2 = detected.output["ext_bbox"]
    assert (x2 - x1) * 4 == (y2 - y1) * 3
    assert detected.usage == {"image_count": 1}
    assert unknown.status_code == HTTPStatus.OK
    assert unknown.output.task_status == "UNKNOWN"
    assert refused.status_code == HTTPStatus.BAD_REQUEST
    assert refused.code == "UnsupportedOperation"


async def test_sdk_asyncio_client_submits_waits_and_cancels(emulator: RunningEmulator) -> None:
    # AioVideoSynthesis joins its task URLs with a trailing slash (GET .../tasks/{id}/).
    from dashscope.aigc.video_synthesis import AioVideoSynthesis

    dashscope.base_http_api_url = emulator.base_url
    emulator.set_speed(0)  # frozen until the second task is cancelled while PENDING
    image_url, audio_url = host_inputs(emulator, seconds=1.0)
    face, ext = sample_boxes()
    extra = {"image_url": image_url, "audio_url": audio_url, "face_bbox": face, "ext_bbox": ext}
    calls = [
        AioVideoSynthesis.async_call(
            model="emo-v1", task="image2video", api_key="sk-aio", extra_input=extra
        )
        for _ in range(2)
    ]
    first = await calls[0]
    second = await calls[1]
    assert first.status_code == HTTPStatus.OK, first
    canceled = await AioVideoSynthesis.cancel(second, api_key="sk-aio")
    assert canceled.status_code == HTTPStatus.OK, canceled
    emulator.set_speed(1000)
    with anyio.fail_after(60):  # the SDK waits forever by default
        done = await AioVideoSynthesis.wait(first, api_key="sk-aio")
    assert done.status_code == HTTPStatus.OK, done
    assert done.output.task_status == "SUCCEEDED"
    assert done.output.results["video_url"].startswith(emulator.files_url)
    fetched = await AioVideoSynthesis.fetch(second, api_key="sk-aio")
    assert fetched.output.task_status == "CANCELED"
