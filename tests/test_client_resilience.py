"""Retries and their limits: 429, 5xx and dropped connections, reads versus submits."""

from __future__ import annotations

import socket
from pathlib import Path

import anyio
import pytest
from client_support import account_stats, make_client, portrait, speech

from emoclient import (
    ConnectError,
    EmoClient,
    RateLimitError,
    Rates,
    RequestTimeoutError,
    RetryPolicy,
    ServerError,
    SubmitOutcomeUnknownError,
    TaskStatus,
    TransportError,
)
from emoclient.emulator import EmulatorConfig, RunningEmulator, serve


async def _inputs(client: EmoClient, tmp_path: Path) -> tuple[str, str]:
    image = await client.upload(portrait(tmp_path), model="emo-v1")
    audio = await client.upload(speech(tmp_path), model="emo-v1")
    return image.url, audio.url


BOXES = {"face_bbox": (284, 229, 484, 429), "ext_bbox": (184, 129, 584, 529)}


async def test_reads_retry_through_429(tmp_path: Path) -> None:
    # A client that believes in a far higher budget than the service grants provokes 429s.
    config = EmulatorConfig.fast(rate_limits={"submit": 5, "query": 3, "detect": 5})
    async with serve(config) as emulator:
        retry = RetryPolicy(max_attempts=20, base_delay=0.05, max_delay=0.3)
        async with make_client(emulator, rates=Rates(query=1000), retry=retry) as client:
            tasks: list[TaskStatus] = []

            async def query() -> None:
                tasks.append((await client.get_task("t")).status)

            async with anyio.create_task_group() as tg:
                for _ in range(6):
                    tg.start_soon(query)
        routes = account_stats(await emulator.stats())["routes"]
    assert tasks == [TaskStatus.UNKNOWN] * 6
    assert routes["task_get"]["throttled"] > 0


async def test_rate_limit_error_when_retries_run_out(tmp_path: Path) -> None:
    config = EmulatorConfig.fast(rate_limits={"query": 1})
    async with serve(config) as emulator:
        once = RetryPolicy(max_attempts=1)
        async with make_client(emulator, rates=Rates(query=1000), retry=once) as client:
            await client.get_task("a")
            with pytest.raises(RateLimitError) as caught:
                await client.get_task("b")
    assert caught.value.status == 429
    assert caught.value.code.startswith("Throttling")
    assert caught.value.retry_after is None


async def test_reads_retry_through_server_errors(emulator: RunningEmulator) -> None:
    emulator.set_faults(error_rate={"task_get": 0.5}, seed=7)
    async with make_client(emulator, retry=RetryPolicy(max_attempts=10, base_delay=0.001)) as c:
        for _ in range(6):
            assert (await c.get_task("x")).status is TaskStatus.UNKNOWN
    routes = account_stats(await emulator.stats())["routes"]
    assert routes["task_get"]["requests"] > 6


async def test_reads_give_up_with_server_error(emulator: RunningEmulator) -> None:
    emulator.set_faults(error_rate={"task_get": 1.0})
    async with make_client(emulator) as client:
        with pytest.raises(ServerError) as caught:
            await client.get_task("x")
    assert caught.value.status in (500, 503)
    routes = account_stats(await emulator.stats())["routes"]
    assert routes["task_get"]["requests"] == 4  # FAST_RETRY.max_attempts


async def test_reads_retry_dropped_connections(emulator: RunningEmulator) -> None:
    emulator.set_faults(drop_rate={"task_get": 0.5}, seed=3)
    async with make_client(emulator, retry=RetryPolicy(max_attempts=12, base_delay=0.001)) as c:
        for _ in range(5):
            assert (await c.get_task("x")).status is TaskStatus.UNKNOWN
    emulator.set_faults(drop_rate={"task_get": 1.0})
    async with make_client(emulator) as client:
        with pytest.raises(TransportError):
            await client.get_task("x")


@pytest.mark.parametrize(
    "faults",
    [
        {"error_rate": {"submit": 1.0}},
        {"drop_rate": {"submit": 1.0}},
        {"drop_after_rate": {"submit": 1.0}},
    ],
)
async def test_ambiguous_submit_is_never_retried(
    emulator: RunningEmulator, tmp_path: Path, faults: dict[str, object]
) -> None:
    async with make_client(emulator) as client:
        image, audio = await _inputs(client, tmp_path)
        emulator.set_faults(**faults)
        with pytest.raises(SubmitOutcomeUnknownError) as caught:
            await client.submit_emo(image, audio, **BOXES)  # type: ignore[arg-type]
    error = caught.value
    assert error.model == "emo-v1"
    assert error.started_at <= error.ended_at
    assert "list_tasks" in str(error)
    routes = account_stats(await emulator.stats())["routes"]
    assert routes["submit"]["requests"] == 1


async def test_dropped_answer_after_submit_left_a_task_to_reconcile(tmp_path: Path) -> None:
    # Real-time virtual clock, so the error's wall-clock window matches the task's times.
    async with serve(EmulatorConfig.fast(speed=1.0)) as emulator, make_client(emulator) as client:
        image, audio = await _inputs(client, tmp_path)
        emulator.set_faults(drop_after_rate={"submit": 1.0})
        with pytest.raises(SubmitOutcomeUnknownError) as caught:
            await client.submit_emo(image, audio, **BOXES)  # type: ignore[arg-type]
        emulator.set_faults(drop_after_rate=0.0)
        found = [
            row
            async for page in client.list_tasks(
                model=caught.value.model,
                start_time=caught.value.started_at,
                end_time=caught.value.ended_at,
            )
            for row in page
        ]
    assert len(found) == 1


async def test_submit_retries_through_429(tmp_path: Path) -> None:
    config = EmulatorConfig.fast(rate_limits={"submit": 2, "query": 20, "detect": 5})
    async with serve(config) as emulator:
        retry = RetryPolicy(max_attempts=30, base_delay=0.05, max_delay=0.2)
        async with make_client(emulator, rates=Rates(submit=1000), retry=retry) as client:
            image, audio = await _inputs(client, tmp_path)
            ids = [
                (await client.submit_emo(image, audio, **BOXES)).task_id  # type: ignore[arg-type]
                for _ in range(3)
            ]
        stats = account_stats(await emulator.stats())
    assert len(set(ids)) == 3
    assert stats["submissions"] == 3
    assert stats["routes"]["submit"]["throttled"] > 0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_refused_connection_is_a_connect_error_even_for_submit() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/api/v1"
    retry = RetryPolicy(max_attempts=2, base_delay=0.001)
    async with EmoClient("sk-x", base_url=url, retry=retry) as client:
        with pytest.raises(ConnectError, match="Could not connect"):
            await client.get_task("x")
        # Nothing can have been sent, so this is not an ambiguous outcome.
        with pytest.raises(ConnectError):
            await client.submit_emo("oss://a/b.png", "oss://a/b.wav", **BOXES)  # type: ignore[arg-type]


async def test_slow_answers_time_out(emulator: RunningEmulator, tmp_path: Path) -> None:
    async with make_client(emulator) as client:
        image, audio = await _inputs(client, tmp_path)
    emulator.set_faults(latency=0.5)
    retry = RetryPolicy(max_attempts=2, base_delay=0.001)
    async with make_client(emulator, timeout=0.1, retry=retry) as client:
        with pytest.raises(RequestTimeoutError, match="timeout"):
            await client.get_task("x")
        # The request may have arrived: a submit that timed out is ambiguous.
        with pytest.raises(SubmitOutcomeUnknownError, match="RequestTimeoutError"):
            await client.submit_emo(image, audio, **BOXES)  # type: ignore[arg-type]


async def test_gateway_error_page_in_another_charset_is_retried() -> None:
    from aiohttp import web

    answers = 0

    async def task(request: web.Request) -> web.Response:
        nonlocal answers
        answers += 1
        if answers == 1:  # a proxy's 502 page in GBK, with no charset named
            return web.Response(
                status=502, body=b"<h1>\xb4\xed\xce\xf3</h1>", content_type="text/html"
            )
        return web.json_response({"output": {"task_id": "t-1", "task_status": "PENDING"}})

    app = web.Application()
    app.router.add_get("/api/v1/tasks/{task_id}", task)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _closed_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        url = f"http://127.0.0.1:{port}/api/v1"
        async with EmoClient("sk-x", base_url=url, retry=RetryPolicy(base_delay=0.001)) as client:
            task_state = await client.get_task("t-1")
    finally:
        await runner.cleanup()
    assert task_state.status is TaskStatus.PENDING
    assert answers == 2
