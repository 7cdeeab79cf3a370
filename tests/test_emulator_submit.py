"""video-synthesis: the async header, body validation and input checks, with API.md's errors."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from emulator_http import SYNTHESIS, Api, emo_body, emoji_body, mask

from emoclient.emulator import EmulatorConfig, RunningEmulator, serve
from emoclient.emulator.samples import portrait_bytes, speech_bytes

MISSING = (
    "The request is missing required parameters or in a wrong format, "
    "please check the parameters that you send."
)
URL_MISSING = "Required URL is missing or invalid, please check the request URL."


@pytest.fixture
async def api(emulator: RunningEmulator) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, emulator, "sk-submit")


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str]]:
    return status, {"request_id": "<uuid>", "code": code, "message": message}


async def test_missing_async_header_is_refused(api: Api) -> None:
    body = emo_body(api.emulator)
    reply = await api.call("POST", SYNTHESIS, json=body)
    assert (reply.status, mask(reply.body)) == _error(
        403, "AccessDenied", "current user api does not support synchronous calls"
    )
    reply = await api.call("POST", SYNTHESIS, json=body, headers={"X-DashScope-Async": "off"})
    assert reply.status == 403


async def test_trailing_slash_and_unknown_extra_fields_are_accepted(api: Api) -> None:
    body = emo_body(api.emulator)
    body["input"].update({"prompt": None, "extend_prompt": True, "something_new": 1})
    body["parameters"]["seed"] = 7
    reply = await api.call(
        "POST", SYNTHESIS + "/", json=body, headers={"X-DashScope-Async": "enable"}
    )
    assert reply.status == 200, reply.body
    assert reply.body["output"]["task_status"] == "PENDING"


def _edit(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    edited = copy.deepcopy(body)
    *parents, leaf = path.split(".")
    target = edited
    for name in parents:
        target = target[name]
    if value is KeyError:
        del target[leaf]
    else:
        target[leaf] = value
    return edited


@pytest.mark.parametrize(
    ("path", "value", "code", "message"),
    [
        ("parameters.style_level", "wild", "InvalidParameter", "The style_level is invalid."),
        ("input.face_bbox", KeyError, "InvalidParameter", MISSING),
        ("input.face_bbox", [1, 2, 3], "InvalidParameter", MISSING),
        ("input.face_bbox", [1.5, 2, 300, 400], "InvalidParameter", MISSING),
        ("input.ext_bbox", [0, 0, 700, 350], "InvalidParameter", MISSING),
        ("input.face_bbox", [0, 0, 10, 10], "InvalidParameter", MISSING),
        ("input.ext_bbox", [0, 0, 7000, 7000], "InvalidParameter", MISSING),
        ("input.audio_url", KeyError, "InvalidURL", URL_MISSING),
        ("input.image_url", "file:///etc/passwd", "InvalidURL", URL_MISSING),
        ("model", "emo-detect-v1", "ModelNotFound", "Model can not be found."),
        ("input", "text", "InvalidParameter", MISSING),
    ],
)
async def test_emo_body_errors(api: Api, path: str, value: Any, code: str, message: str) -> None:
    reply = await api.submit(_edit(emo_body(api.emulator), path, value))
    assert reply.status == (404 if code == "ModelNotFound" else 400)
    assert mask(reply.body) == {"request_id": "<uuid>", "code": code, "message": message}


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("input.driven_id", "mengwa_dance", "Driven not exist: driven_id."),
        ("input.driven_id", KeyError, MISSING),
        ("input.ext_bbox", [0, 0, 760, 600], "Invalid ext_bbox."),
        ("input.ext_bbox", [0, 0, 7], "Invalid ext_bbox."),
    ],
)
async def test_emoji_body_errors(api: Api, path: str, value: Any, message: str) -> None:
    reply = await api.submit(_edit(emoji_body(api.emulator), path, value))
    assert (reply.status, mask(reply.body)) == _error(400, "InvalidParameter", message)


async def test_all_twenty_templates_are_accepted(api: Api) -> None:
    from emoclient.emulator._validate import DRIVEN_IDS

    assert len(DRIVEN_IDS) == 20
    reply = await api.submit(emoji_body(api.emulator, driven_id="jingdian_lei"))
    assert reply.status == 200


@pytest.mark.parametrize(
    ("audio", "config", "message"),
    [
        (b"\x89PNG not audio", {}, "File type is not supported. Allowed types are: .wav, .mp3."),
        (
            speech_bytes(seconds=3.0),
            {"audio_max_seconds": 2.0},
            "The input audio is longer than 60s!",
        ),
        (speech_bytes(seconds=1.0), {"audio_max_bytes": 1000}, "File size is larger than 15MB."),
    ],
)
async def test_audio_checks(audio: bytes, config: dict[str, Any], message: str) -> None:
    async with serve(EmulatorConfig.fast(**config)) as emu, aiohttp.ClientSession() as session:
        body = emo_body(emu)
        body["input"]["audio_url"] = emu.host_file("voice.wav", audio)
        reply = await Api(session, emu, "sk-audio").submit(body)
    assert (reply.status, mask(reply.body)) == _error(400, "InvalidURL", message)


async def test_image_checks_are_synchronous(api: Api) -> None:
    body = emo_body(api.emulator)
    body["input"]["image_url"] = api.emulator.host_file("dark.png", portrait_bytes(brightness=0.1))
    reply = await api.submit(body)
    assert reply.status == 400
    assert reply.body["code"] == "InvalidFile.Value"
    body["input"]["image_url"] = api.emulator.host_file("x.png", b"GIF89a not supported")
    reply = await api.submit(body)
    assert reply.status == 400
    assert reply.body["code"] == "InvalidURL"


async def test_unreachable_audio_is_a_data_inspection_error(api: Api) -> None:
    body = emo_body(api.emulator)
    body["input"]["audio_url"] = f"{api.emulator.files_url}/public/nothing.wav"
    reply = await api.submit(body)
    assert reply.status == 400
    assert reply.body["code"] == "InvalidParameter.DataInspection"


async def test_content_problem_fails_the_task_by_default(api: Api) -> None:
    body = emo_body(api.emulator)
    marked = portrait_bytes(fail="InvalidFile.FrontBody")
    body["input"]["image_url"] = api.emulator.host_file("back.png", marked)
    reply = await api.submit(body)
    assert reply.status == 200
    api.emulator.advance(600)
    task = await api.task(reply.body["output"]["task_id"])
    assert mask(task.body) == {
        "request_id": "<uuid>",
        "output": {
            "task_id": "<uuid>",
            "task_status": "FAILED",
            "submit_time": "<time>",
            "scheduled_time": "<time>",
            "end_time": "<time>",
            "code": "InvalidFile.FrontBody",
            "message": (
                "The pose of the detected person is invalid, please upload other image with the "
                "front view."
            ),
        },
    }


async def test_content_problem_can_be_a_submit_error() -> None:
    config = EmulatorConfig.fast(content_errors="submit")
    async with serve(config) as emu, aiohttp.ClientSession() as session:
        body = emo_body(emu)
        body["input"]["image_url"] = emu.host_file("two.png", portrait_bytes(persons=2))
        reply = await Api(session, emu, "sk-sync").submit(body)
    assert reply.status == 400
    assert reply.body["code"] == "InvalidFile.Content"


async def test_sync_call_error_is_configurable() -> None:
    spec = {"status": 400, "code": "InvalidParameter", "message": "async only"}
    config = EmulatorConfig.fast(sync_call_error=spec)
    async with serve(config) as emu, aiohttp.ClientSession() as session:
        reply = await Api(session, emu, "sk").call("POST", SYNTHESIS, json=emo_body(emu))
    assert (reply.status, reply.body["message"]) == (400, "async only")
