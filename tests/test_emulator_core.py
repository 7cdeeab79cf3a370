"""The emulator's core routes against the literal shapes of API.md."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from emulator_http import Api, emo_body, emoji_body, host_inputs, mask

from emoclient.emulator import RunningEmulator


@pytest.fixture
async def api(emulator: RunningEmulator) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, emulator, "sk-core")


async def test_emo_detect_passes_with_boxes_of_the_requested_aspect(api: Api) -> None:
    image, _ = host_inputs(api.emulator)
    for ratio, aspect in (("1:1", 1.0), ("3:4", 0.75)):
        reply = await api.detect(image, ratio=ratio)
        assert reply.status == 200
        output = reply.body["output"]
        assert mask(reply.body) == {
            "output": {
                "check_pass": True,
                "face_bbox": output["face_bbox"],
                "ext_bbox": output["ext_bbox"],
                "humanoid": True,
            },
            "usage": {"image_count": 1},
            "request_id": "<uuid>",
        }
        x1, y1, x2, y2 = output["ext_bbox"]
        assert (x2 - x1) / (y2 - y1) == pytest.approx(aspect, abs=0.01)


async def test_emoji_detect_uses_its_own_field_names(api: Api) -> None:
    image, _ = host_inputs(api.emulator)
    reply = await api.detect(image, model="emoji-detect-v1", ratio="1:1")
    assert reply.status == 200
    assert set(reply.body["output"]) == {"bbox_face", "ext_bbox_face"}
    assert reply.body["usage"] == {"image_count": 1}


async def test_emo_task_lifecycle_to_succeeded(api: Api) -> None:
    submitted = await api.submit(emo_body(api.emulator, seconds=2.0))
    assert submitted.status == 200
    assert mask(submitted.body) == {
        "output": {"task_id": "<uuid>", "task_status": "PENDING"},
        "request_id": "<uuid>",
    }
    task_id = submitted.body["output"]["task_id"]
    api.emulator.advance(3600)
    reply = await api.task(task_id)
    body = mask(reply.body)
    url = reply.body["output"]["results"]["video_url"]
    assert body == {
        "request_id": "<uuid>",
        "output": {
            "task_id": "<uuid>",
            "task_status": "SUCCEEDED",
            "submit_time": "<time>",
            "scheduled_time": "<time>",
            "end_time": "<time>",
            "results": {"video_url": url},
        },
        "usage": {"video_duration": 2.0, "video_ratio": "1:1"},
    }


async def test_emoji_task_shape(api: Api) -> None:
    submitted = await api.submit(emoji_body(api.emulator))
    task_id = submitted.body["output"]["task_id"]
    api.emulator.advance(3600)
    reply = await api.task(task_id)
    output = reply.body["output"]
    assert output["task_status"] == "SUCCEEDED"
    assert "results" not in output
    assert output["video_url"].startswith(api.emulator.files_url)
    assert isinstance(reply.body["usage"]["video_duration"], int)
    assert reply.body["usage"]["video_ratio"] == "standard"


async def test_unknown_task_is_unknown_with_http_200(api: Api) -> None:
    reply = await api.task("1111")
    assert reply.status == 200
    assert mask(reply.body) == {
        "request_id": "<uuid>",
        "output": {"task_id": "1111", "task_status": "UNKNOWN"},
    }


async def test_create_app_alone_serves_files_under_its_own_origin() -> None:
    from aiohttp.test_utils import TestServer

    from emoclient.emulator import EmulatorConfig, create_app

    server = TestServer(create_app(EmulatorConfig.fast(speed=0.0)), host="127.0.0.1")
    await server.start_server()
    expected_host = str(server.make_url("/_oss/"))
    try:
        async with aiohttp.ClientSession() as session:
            headers = {"Authorization": "Bearer sk-alone"}
            policy_url = server.make_url("/api/v1/uploads?action=getPolicy&model=emo-v1")
            async with session.get(policy_url, headers=headers) as response:
                policy = (await response.json())["data"]
            form = aiohttp.FormData()
            fields = {
                "OSSAccessKeyId": policy["oss_access_key_id"],
                "Signature": policy["signature"],
                "policy": policy["policy"],
                "key": policy["upload_dir"] + "/a.wav",
                "x-oss-object-acl": "private",
                "x-oss-forbid-overwrite": "true",
                "success_action_status": "200",
            }
            for name, value in fields.items():
                form.add_field(name, value)
            form.add_field("file", b"RIFF", filename="a.wav")
            async with session.post(policy["upload_host"], data=form) as response:
                uploaded = response.status
    finally:
        await server.close()
    assert policy["upload_host"] == expected_host
    assert uploaded == 200


@pytest.mark.parametrize("listener", ["port", "files_port"])
async def test_a_busy_port_fails_cleanly(listener: str) -> None:
    import socket

    import anyio

    from emoclient.emulator import EmulatorConfig, serve

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        ports = {listener: busy.getsockname()[1]}
        # Leaving serve() must leave the caller's cancel scopes as they were (the
        # emulator's background task group must not stay open in this task).
        with anyio.CancelScope(), pytest.raises(OSError, match="in use"):
            async with serve(EmulatorConfig.fast(), **ports):
                pass
