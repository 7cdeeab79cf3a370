"""examples/web_service: both apps on real servers on 127.0.0.1, against the emulator."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
import uvicorn
from aiohttp import web
from batch_support import make_inputs, options
from client_support import account_stats, new_key

from emoclient import MemoryStore
from emoclient.emulator import RunningEmulator
from examples.web_service import app as aiohttp_app
from examples.web_service import fastapi_app
from examples.web_service.service import Settings

DEADLINE = 20.0
ROOT = Path(__file__).resolve().parent.parent
APPS = ["aiohttp", "fastapi"]


def settings_for(emulator: RunningEmulator, data_dir: Path, **overrides: Any) -> Settings:
    """The app's settings on ``emulator``: an account of its own, polls tightened for speed."""
    client = {
        "api_key": new_key(),
        "base_url": emulator.base_url,
        "store": MemoryStore(),
        "poll_interval": 0.02,
        "max_poll_interval": 0.1,
    }
    return Settings(data_dir=data_dir, client=client, options=options(), **overrides)


@asynccontextmanager
async def running(kind: str, settings: Settings) -> AsyncIterator[str]:
    """The ``kind`` app (aiohttp or fastapi) served on a free port; yields its root URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()  # connections wait in the backlog until the app has started
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    if kind == "aiohttp":
        runner = web.AppRunner(aiohttp_app.create_app(settings))
        await runner.setup()
        try:
            await web.SockSite(runner, sock).start()
            yield url
        finally:
            await runner.cleanup()
        return
    config = uvicorn.Config(fastapi_app.create_app(settings), log_level="warning")
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        try:
            yield url
        finally:
            server.should_exit = True


async def post_job(
    session: aiohttp.ClientSession,
    url: str,
    image: Path | None,
    audio: Path | None = None,
    **fields: str,
) -> tuple[int, dict[str, Any], Mapping[str, str]]:
    """POST /jobs as a browser's form does; the status, the JSON answer and the headers."""
    form = aiohttp.FormData()
    for name, path in (("image", image), ("audio", audio)):
        if path is not None:
            form.add_field(name, await anyio.Path(path).read_bytes(), filename=path.name)
    for name, value in fields.items():
        form.add_field(name, value)
    async with session.post(f"{url}/jobs", data=form) as response:
        return response.status, await response.json(), response.headers


async def events(session: aiohttp.ClientSession, url: str) -> AsyncIterator[tuple[str, Any]]:
    """The server-sent events at ``url`` as (event name, data)."""
    async with session.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        name = "message"
        async for raw in response.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                yield name, json.loads(line.removeprefix("data: "))
                name = "message"


async def until(session: aiohttp.ClientSession, url: str, job_id: str, *states: str) -> None:
    """Follow the job's events until its state is one of ``states``."""
    data: Any = None
    with anyio.fail_after(DEADLINE):  # a deadline, not a synchronisation
        async for _, data in events(session, f"{url}/jobs/{job_id}/events"):
            if data["state"] in states:
                return
    raise AssertionError(f"job {job_id} ended without reaching {states}: {data}")


@pytest.mark.parametrize("kind", APPS)
async def test_an_upload_becomes_a_video_that_can_be_streamed(
    emulator: RunningEmulator, tmp_path: Path, kind: str
) -> None:
    images, sounds = make_inputs(tmp_path / "in", portraits=1, audios=1)
    settings = settings_for(emulator, tmp_path / "data")
    async with running(kind, settings) as url, aiohttp.ClientSession() as session:
        status, answer, _ = await post_job(session, url, images[0], sounds[0], ratio="3:4")
        assert status == 202
        job_id = answer["id"]
        seen: list[str] = []
        with anyio.fail_after(DEADLINE):
            async for name, data in events(session, f"{url}/jobs/{job_id}/events"):
                seen.append(data["state"] if name == "message" else f"done:{data['state']}")
        assert seen[-1] == "done:succeeded"
        assert len(set(seen)) >= 2  # the state moved while the stream was open

        async with session.get(f"{url}/jobs/{job_id}") as response:
            job = await response.json()
        assert job["state"] == "succeeded"
        assert job["model"] == "emo-v1"
        assert job["task_id"]
        assert job["video"] == f"/jobs/{job_id}/video"

        async with session.get(f"{url}{job['video']}") as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "video/mp4"
            video = await response.read()
        assert video[4:8] == b"ftyp"  # an MP4
        ranged = {"Range": "bytes=100-199"}  # what a browser asks for when it seeks
        async with session.get(f"{url}{job['video']}", headers=ranged) as response:
            assert response.status == 206
            assert response.headers["Content-Range"] == f"bytes 100-199/{len(video)}"
            assert await response.read() == video[100:200]


@pytest.mark.parametrize("kind", APPS)
async def test_bad_input_is_a_400_that_says_why(
    emulator: RunningEmulator, tmp_path: Path, kind: str
) -> None:
    images, sounds = make_inputs(tmp_path / "in", portraits=1, audios=1)
    image, sound = images[0], sounds[0]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"image": None, "audio": sound}, "send a portrait"),
        ({"image": image}, "send one of an `audio` file"),
        ({"image": image, "audio": sound, "driven_id": "mengwa_kaixin"}, "send one of"),
        ({"image": image, "driven_id": "mengwa_kaixn"}, "not one of the 20 Emoji templates"),
        ({"image": image, "audio": sound, "style_level": "loud"}, "style_level"),
        ({"image": image, "driven_id": "mengwa_kaixin", "ratio": "3:4"}, "always 1:1"),
        ({"image": sound, "audio": sound}, f"{sound.name}: not a JPEG, PNG"),
    ]
    settings = settings_for(emulator, tmp_path / "data")
    async with running(kind, settings) as url, aiohttp.ClientSession() as session:
        for fields, message in cases:
            status, answer, _ = await post_job(session, url, **fields)
            assert status == 400, fields
            assert message in answer["error"]
            assert str(tmp_path) not in answer["error"]  # no server path leaks out
        async with session.get(f"{url}/jobs/no-such-job") as response:
            assert response.status == 404
            assert "no job no-such-job" in (await response.json())["error"]
    assert account_stats_or_none(await emulator.stats()) is None  # nothing reached the service


def account_stats_or_none(stats: dict[str, Any]) -> dict[str, Any] | None:
    return account_stats(stats) if stats["accounts"] else None


@asynccontextmanager
async def frozen_clock(emulator: RunningEmulator) -> AsyncIterator[None]:
    """Tasks stay where they are until the block ends (or the test speeds the clock up).

    The clock runs fast again before the app closes: closing waits for RUNNING tasks.
    """
    emulator.set_speed(0.0)
    try:
        yield
    finally:
        emulator.set_speed(1000.0)


@pytest.mark.parametrize("kind", APPS)
async def test_delete_cancels_and_says_whether_it_is_billed(
    emulator: RunningEmulator, tmp_path: Path, kind: str
) -> None:
    images, sounds = make_inputs(tmp_path / "in", portraits=3, audios=1)
    settings = settings_for(emulator, tmp_path / "data")
    async with running(kind, settings) as url, aiohttp.ClientSession() as session:
        async with frozen_clock(emulator):
            # One after the other, so that each takes the place meant for it.
            ids: list[str] = []
            for image, state in zip(images, ["running", "submitted", "preparing"], strict=True):
                ids.append((await post_job(session, url, image, sounds[0]))[1]["id"])
                await until(session, url, ids[-1], state)
            # RUNNING; PENDING at the service; waiting for a place in the window (2).
            running_id, pending_id, queued_id = ids

            async def delete(job_id: str) -> tuple[int, dict[str, Any]]:
                async with session.delete(f"{url}/jobs/{job_id}") as response:
                    return response.status, await response.json()

            assert await delete(queued_id) == (
                200,
                {"canceled": True, "billed": False, "message": "cancelled; nothing is billed"},
            )
            await until(session, url, queued_id, "canceled")
            code, answer = await delete(pending_id)
            assert (code, answer["canceled"], answer["billed"]) == (200, True, False)
            await until(session, url, pending_id, "canceled")
            stats = account_stats(await emulator.stats())
            assert stats["submissions"] == 2  # the queued job was never submitted
            assert stats["tasks"] == {"RUNNING": 1, "CANCELED": 1}

            code, answer = await delete(running_id)
            assert (code, answer["canceled"], answer["billed"]) == (200, False, True)
            assert "the video will be saved" in answer["message"]
            assert (await delete(queued_id))[0] == 409  # it has ended already

        await until(session, url, running_id, "succeeded")
    stats = account_stats(await emulator.stats())
    assert stats["submissions"] == 2
    assert stats["tasks"] == {"SUCCEEDED": 1, "CANCELED": 1}


async def test_a_full_queue_answers_429_with_retry_after(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    images, sounds = make_inputs(tmp_path / "in", portraits=8, audios=1)
    settings = settings_for(emulator, tmp_path / "data", max_queued=1)
    async with (
        running("aiohttp", settings) as url,
        aiohttp.ClientSession() as session,
        frozen_clock(emulator),
    ):
        for image in images:
            status, answer, headers = await post_job(session, url, image, sounds[0])
            if status != 202:
                break
            await anyio.wait_all_tasks_blocked()  # the queue takes what it can run
    assert status == 429
    assert "retry later" in answer["error"]
    assert int(headers["Retry-After"]) >= 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize("flag", ["", "--fastapi"])
async def test_one_command_serves_it_on_an_embedded_emulator(tmp_path: Path, flag: str) -> None:
    images, sounds = make_inputs(tmp_path / "in", portraits=1, audios=1)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
    command = [sys.executable, "-m", "examples.web_service", "--port", str(port), flag]
    process = await anyio.open_process(
        [part for part in command if part],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.STDOUT,  # uvicorn logs its URL on stderr
    )
    try:
        with anyio.fail_after(DEADLINE):
            assert process.stdout is not None
            output = ""
            async for chunk in process.stdout:
                output += chunk.decode()
                if f"127.0.0.1:{port}" in output:
                    break
            assert "using an emulator" in output
            url = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession() as session:
                for page, expected in (("/", "<video"), ("/static/app.js", "EventSource")):
                    async with session.get(f"{url}{page}") as response:
                        assert expected in await response.text()
                status, answer, _ = await post_job(session, url, images[0], sounds[0])
                assert status == 202
                await until(session, url, answer["id"], "succeeded")
        process.send_signal(signal.SIGINT)  # Ctrl-C: the app closes its queue and stops
        with anyio.fail_after(DEADLINE):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
        await process.aclose()
    videos = list((tmp_path / "web-service-data").glob("emulator-*/videos-1/*.mp4"))
    assert len(videos) == 1
