"""examples/web_service with several workers: any worker answers about any job.

Two apps on two ports (as two workers behind a proxy) share one account and one account
store; a job posted to one is followed, served and cancelled through the other. Then the
real thing: ``uvicorn --workers 2`` in its own processes.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import anyio
from batch_support import make_inputs
from client_support import account_stats, new_key
from test_web_service import (
    ROOT,
    events,
    free_port,
    frozen_clock,
    post_job,
    running,
    settings_for,
    until,
)

from emoclient import SQLiteStore
from emoclient.emulator import RunningEmulator

DEADLINE = 30.0


def two_workers(emulator: RunningEmulator, tmp_path: Path) -> tuple[Any, Any]:
    """The settings of two workers of one app: one account, one store, one data folder."""
    one = settings_for(emulator, tmp_path / "data")
    store = SQLiteStore(tmp_path / "store.sqlite3")
    client = {**one.client, "store": store}
    return dataclasses.replace(one, client=client), dataclasses.replace(one, client=client)


async def test_a_job_posted_to_one_worker_is_followed_and_served_by_another(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    images, sounds = make_inputs(tmp_path / "in", portraits=1, audios=1)
    first, second = two_workers(emulator, tmp_path)
    async with (
        running("aiohttp", first) as holder,
        running("fastapi", second) as other,
        aiohttp.ClientSession() as session,
    ):
        status, answer, _ = await post_job(session, holder, images[0], sounds[0])
        assert status == 202
        job_id = answer["id"]
        states: list[str] = []
        with anyio.fail_after(DEADLINE):
            async for name, data in events(session, f"{other}/jobs/{job_id}/events"):
                states.append(data["state"] if name == "message" else f"done:{data['state']}")
        assert states[-1] == "done:succeeded"

        async with session.get(f"{other}/jobs/{job_id}") as response:
            assert response.status == 200
            job = await response.json()
        assert job["state"] == "succeeded"
        assert job["worker"]  # answered from the board: the holder is named
        assert job["worker_alive"] is True
        assert job["video"] == f"/jobs/{job_id}/video"
        async with session.get(f"{other}{job['video']}") as response:
            assert response.status == 200
            assert (await response.read())[4:8] == b"ftyp"
        async with session.get(f"{holder}/jobs/{job_id}") as response:
            assert "worker" not in await response.json()  # the holder answers itself
    assert sorted(p.name for p in (tmp_path / "data").glob("videos-*")) == ["videos-1", "videos-2"]
    assert account_stats(await emulator.stats())["submissions"] == 1


async def test_a_delete_through_another_worker_cancels_at_the_holder(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    images, sounds = make_inputs(tmp_path / "in", portraits=3, audios=1)
    first, second = two_workers(emulator, tmp_path)
    async with (
        running("aiohttp", first) as holder,
        running("aiohttp", second) as other,
        aiohttp.ClientSession() as session,
    ):
        async with frozen_clock(emulator):
            ids: list[str] = []
            for image, state in zip(images, ["running", "submitted", "preparing"], strict=True):
                ids.append((await post_job(session, holder, image, sounds[0]))[1]["id"])
                await until(session, holder, ids[-1], state)
            running_id, pending_id, queued_id = ids

            async def delete(job_id: str) -> tuple[int, dict[str, Any]]:
                async with session.delete(f"{other}/jobs/{job_id}") as response:
                    return response.status, await response.json()

            for job_id in (queued_id, pending_id):
                code, answer = await delete(job_id)
                assert (code, answer["canceled"], answer["billed"]) == (200, True, False)
                await until(session, other, job_id, "canceled")
            code, answer = await delete(running_id)
            assert (code, answer["canceled"], answer["billed"]) == (200, False, True)
            stats = account_stats(await emulator.stats())
            assert stats["submissions"] == 2  # the queued job was never submitted
        await until(session, other, running_id, "succeeded")
    assert account_stats(await emulator.stats())["tasks"] == {"SUCCEEDED": 1, "CANCELED": 1}


async def test_uvicorn_with_two_workers_answers_every_request(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    images, sounds = make_inputs(tmp_path / "in", portraits=2, audios=1)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
    env |= {
        "DASHSCOPE_API_KEY": new_key(),
        "DASHSCOPE_HTTP_BASE_URL": emulator.base_url,
        "EMOCLIENT_HOME": str(tmp_path / "home"),  # the workers' shared account store
        "PYTHONPATH": str(ROOT),
    }
    app = "examples.web_service.fastapi_app:app"
    command = [sys.executable, "-m", "uvicorn", app, "--workers", "2", "--port", str(port)]
    process = await anyio.open_process(command, cwd=tmp_path, env=env, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    answered_by: set[int] = set()
    try:
        with anyio.fail_after(DEADLINE):
            await _until_both_started(process)
            # A connection each: uvicorn hands each to whichever worker accepts it.
            connector = aiohttp.TCPConnector(force_close=True)
            async with aiohttp.ClientSession(connector=connector) as session:
                ids = []
                for image in images:
                    status, answer, _ = await post_job(session, url, image, sounds[0])
                    assert status == 202, answer
                    ids.append(answer["id"])
                done = 0
                while done < len(ids):
                    done = 0
                    for job_id in ids:
                        async with session.get(f"{url}/jobs/{job_id}") as response:
                            assert response.status == 200, await response.text()
                            job = await response.json()
                        answered_by.add(job["served_by"])
                        done += job["state"] == "succeeded"
                    await anyio.sleep(0.1)
                for job_id in ids:
                    async with session.get(f"{url}/jobs/{job_id}/video") as response:
                        assert response.status == 200
        process.terminate()
        with anyio.fail_after(DEADLINE):
            await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
        await process.aclose()
    stats = account_stats(await emulator.stats())
    assert stats["submissions"] == len(images)
    assert sum(route["throttled"] for route in stats["routes"].values()) == 0
    assert answered_by  # which of the workers answer is the kernel's choice (both, in trials)


async def _until_both_started(process: anyio.abc.Process) -> None:
    assert process.stdout is not None
    output = ""
    async for chunk in process.stdout:
        output += chunk.decode()
        if output.count("Application startup complete") >= 2:
            return
    raise AssertionError(f"uvicorn stopped before its workers started:\n{output}")
