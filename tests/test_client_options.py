"""Options per call and per copy: timeout, extra headers, max_retries, with_options,
iter_tasks and raw answers, against a recording server and the emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from client_support import account_stats, make_client, portrait, speech
from multidict import CIMultiDict

from emoclient import (
    EmoClient,
    MemoryStore,
    RawResponse,
    RequestTimeoutError,
    RetryPolicy,
    ServerError,
    Task,
    TaskSummary,
    Timeout,
)
from emoclient.emulator import RunningEmulator

KEY = "sk-options-test-0123456789"
FACE, EXT = (284, 229, 484, 429), (184, 129, 584, 529)
MP4 = b"\0\0\0\x14ftypisom video-bytes"  # an MP4 opens with its ftyp box


@dataclass
class Recorder:
    """A real HTTP server that records what arrives and answers like the service."""

    url: str = ""
    seen: list[tuple[str, str, CIMultiDict[str]]] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)  # statuses to answer first, in turn

    def headers_of(self, path: str) -> list[CIMultiDict[str]]:
        return [headers for _, seen_path, headers in self.seen if seen_path == path]


def _answer(rec: Recorder, request: web.Request) -> web.Response:
    path = request.path
    if rec.failures:
        return web.json_response({"code": "Busy", "message": "busy"}, status=rec.failures.pop(0))
    if path == "/api/v1/uploads":
        policy = {
            "policy": "p",
            "signature": "s",
            "upload_dir": "dashscope-instant/x",
            "upload_host": f"{rec.url}/oss",
            "expire_in_seconds": 300,
            "max_file_size_mb": 100,
            "oss_access_key_id": "id",
        }
        return web.json_response({"data": policy, "request_id": "r-policy"})
    if path == "/oss":
        return web.Response(status=200)
    if path.startswith("/results/"):
        return web.Response(body=MP4, content_type="video/mp4")
    if path == "/api/v1/tasks":
        return web.json_response({"data": [], "total_page": 1, "request_id": "r-list"})
    if path == "/api/v1/tasks/header-only":
        # No request_id in the body: the header names the request.
        running = {"task_id": "header-only", "task_status": "RUNNING"}
        return web.json_response({"output": running}, headers={"X-Request-ID": "r-header"})
    # One answer that a query, a detection, a submit and a cancel can all read.
    output: dict[str, Any] = {"task_id": "t-1", "task_status": "PENDING", "check_pass": True}
    output |= {"face_bbox": [1, 1, 5, 5], "ext_bbox": [0, 0, 8, 8]}
    return web.json_response(
        {"output": output, "request_id": "r-body"}, headers={"X-Custom": f"{len(rec.seen)}"}
    )


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    rec = Recorder()

    async def handle(request: web.Request) -> web.Response:
        rec.seen.append((request.method, request.path, request.headers.copy()))
        return _answer(rec, request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield rec
    await runner.cleanup()


def _client(rec: Recorder, **options: Any) -> EmoClient:
    settings: dict[str, Any] = {
        "base_url": f"{rec.url}/api/v1",
        "store": MemoryStore(),
        "retry": RetryPolicy(max_attempts=1),
    }
    settings.update(options)
    return EmoClient(KEY, **settings)


# -- extra headers ------------------------------------------------------------------------


async def test_extra_headers_go_with_that_call_only(recorder: Recorder) -> None:
    trace = {"X-Trace": "call-1"}
    async with _client(recorder) as client:
        await client.get_task("t-1", extra_headers=trace)
        await client.get_task("t-1")
        await client.detect_emo("oss://dashscope-instant/a.png", extra_headers=trace)
        await client.detect_emoji("https://example.com/a.png", extra_headers=trace)
        await client.submit_emo(
            "oss://x/a.png", "oss://x/a.wav", face_bbox=FACE, ext_bbox=EXT, extra_headers=trace
        )
        await client.submit_emoji(
            "oss://x/a.png",
            driven_id="mengwa_kaixin",
            face_bbox=FACE,
            ext_bbox=EXT,
            extra_headers=trace,
        )
        await client.cancel("t-1", extra_headers=trace)
        assert [row async for row in client.iter_tasks(extra_headers=trace)] == []
    sent = [headers for _, _, headers in recorder.seen]
    assert len(sent) == 8
    assert "X-Trace" not in sent[1]
    for headers in sent[:1] + sent[2:]:
        assert headers["X-Trace"] == "call-1"
        assert headers["Authorization"] == f"Bearer {KEY}"
    # The client's own per-call headers are still there beside the extra ones.
    submit = sent[4]
    assert submit["X-DashScope-Async"] == "enable"
    assert submit["X-DashScope-OssResourceResolve"] == "enable"


async def test_copy_headers_apply_to_every_call_and_calls_can_replace_them(
    recorder: Recorder,
) -> None:
    async with _client(recorder, workspace="ws-1") as client:
        tagged = client.with_options(extra_headers={"X-Team": "a", "X-Trace": "copy"})
        await tagged.get_task("t-1")
        await tagged.get_task("t-1", extra_headers={"x-trace": "call"})  # any case replaces
        await tagged.with_options(extra_headers={"X-Team": "b"}).get_task("t-1")
        await client.get_task("t-1")
    first, second, third, original = (headers for _, _, headers in recorder.seen)
    assert (first["X-Team"], first["X-Trace"]) == ("a", "copy")
    assert (second["X-Team"], second["X-Trace"]) == ("a", "call")
    assert (third["X-Team"], third["X-Trace"]) == ("b", "copy")
    assert "X-Team" not in original
    for headers in (first, second, third, original):
        assert headers["X-DashScope-WorkSpace"] == "ws-1"
    assert second.getall("X-Trace") == ["call"]  # replaced, not sent twice


@pytest.mark.parametrize("name", ["Authorization", "authorization", " AUTHORIZATION"])
async def test_extra_headers_cannot_replace_the_key(recorder: Recorder, name: str) -> None:
    async with _client(recorder) as client:
        with pytest.raises(ValueError, match="Authorization"):
            await client.get_task("t-1", extra_headers={name: "Bearer sk-other"})
        with pytest.raises(ValueError, match="Authorization"):
            client.with_options(extra_headers={name: "Bearer sk-other"})
        with pytest.raises(ValueError, match="line break"):
            await client.get_task("t-1", extra_headers={"X-Evil": "a\r\nAuthorization: b"})
    assert recorder.seen == []


async def test_extra_headers_never_reach_upload_or_result_hosts(
    recorder: Recorder, tmp_path: Path
) -> None:
    image = tmp_path / "face.png"
    image.write_bytes(b"png")
    async with _client(recorder) as client:
        tagged = client.with_options(extra_headers={"X-Trace": "copy"})
        uploaded = await tagged.upload(image, model="emo-v1")
        await tagged.download(f"{recorder.url}/results/x.mp4?Expires=1", tmp_path / "x.mp4")
    assert uploaded.url.startswith("oss://dashscope-instant/x/")
    (policy,) = recorder.headers_of("/api/v1/uploads")
    assert policy["X-Trace"] == "copy"
    for path in ("/oss", "/results/x.mp4"):
        (headers,) = recorder.headers_of(path)
        assert "X-Trace" not in headers
        assert "Authorization" not in headers


# -- timeouts -----------------------------------------------------------------------------


async def test_a_call_timeout_ends_a_slow_request(emulator: RunningEmulator) -> None:
    emulator.set_faults(latency=0.3)
    async with make_client(emulator, max_retries=0) as client:
        with pytest.raises(RequestTimeoutError, match="tasks/x"):
            await client.get_task("x", timeout=0.05)
        with pytest.raises(RequestTimeoutError):
            await client.get_task("x", timeout=Timeout(total=None, read=0.05))
        # The client's own timeout (60 s) still applies to the next call.
        assert (await client.get_task("x")).task_id == "x"
    routes = account_stats(await emulator.stats())["routes"]
    assert routes["task_get"]["requests"] == 3


async def test_timeout_objects_for_the_client_and_its_copies(emulator: RunningEmulator) -> None:
    emulator.set_faults(latency=0.3)
    async with make_client(emulator, timeout=Timeout(total=30, read=0.05), max_retries=0) as c:
        with pytest.raises(RequestTimeoutError):
            await c.get_task("x")
        assert (await c.get_task("x", timeout=30)).task_id == "x"  # a number is the total
        assert (await c.with_options(timeout=Timeout(connect=5)).get_task("x")).task_id == "x"
        with pytest.raises(RequestTimeoutError):
            await c.with_options(timeout=0.05).get_task("x")


def test_timeout_values_are_checked() -> None:
    assert Timeout() == Timeout(total=60.0, connect=None, read=None)
    assert Timeout(total=None, read=5).read == 5
    for bad in ({"total": 0}, {"read": -1}, {"connect": float("inf")}, {"total": None}):
        with pytest.raises(ValueError, match="Timeout"):
            Timeout(**bad)
    with pytest.raises(TypeError, match="seconds"):
        EmoClient(KEY, timeout="5", store=MemoryStore())  # type: ignore[arg-type]


# -- retries ------------------------------------------------------------------------------


async def test_max_retries_counts_attempts(emulator: RunningEmulator) -> None:
    emulator.set_faults(error_rate={"task_get": 1.0})
    # make_client passes a fast RetryPolicy of 4 attempts: max_retries replaces its count.
    async with make_client(emulator, max_retries=2) as client:
        with pytest.raises(ServerError):
            await client.get_task("x")
        assert account_stats(await emulator.stats())["routes"]["task_get"]["requests"] == 3
        with pytest.raises(ServerError):
            await client.with_options(max_retries=0).get_task("x")
        assert account_stats(await emulator.stats())["routes"]["task_get"]["requests"] == 4
        with pytest.raises(ServerError):
            await client.get_task("x")  # the original keeps its own count
    assert account_stats(await emulator.stats())["routes"]["task_get"]["requests"] == 7


@pytest.mark.parametrize("bad", [-1, True, 1.5])
def test_max_retries_must_be_a_count(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_retries"):
        EmoClient(KEY, max_retries=bad, store=MemoryStore())


# -- copies -------------------------------------------------------------------------------


async def test_a_copy_shares_session_and_limits_and_closing_it_keeps_them(
    emulator: RunningEmulator,
) -> None:
    client = make_client(emulator)
    async with client:
        copy = client.with_options(timeout=10, max_retries=1, extra_headers={"X-Trace": "t"})
        assert copy is not client
        assert copy.limits is client.limits
        assert copy.account_label == client.account_label
        await copy.get_task("x")  # the first use makes the session, for both
        session = client._transport.session
        assert copy._transport.session is session
        await copy.aclose()
        assert not session.closed
        assert (await client.get_task("x")).task_id == "x"
        assert (await copy.get_task("x")).task_id == "x"
    assert session.closed


async def test_a_copy_leaves_a_callers_session_open(emulator: RunningEmulator) -> None:
    async with aiohttp.ClientSession() as session:
        async with (
            make_client(emulator, session=session) as client,
            client.with_options(timeout=5) as copy,
        ):
            await copy.get_task("x")
            assert copy._transport.session is session
        assert not session.closed


# -- tasks one by one ---------------------------------------------------------------------


async def _submitted(client: EmoClient, tmp_path: Path, count: int) -> set[str]:
    image = await client.upload(portrait(tmp_path), model="emo-v1")
    audio = await client.upload(speech(tmp_path), model="emo-v1")
    return {
        (await client.submit_emo(image.url, audio.url, face_bbox=FACE, ext_bbox=EXT)).task_id
        for _ in range(count)
    }


async def test_iter_tasks_reads_pages_as_the_loop_needs_them(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    async with make_client(emulator) as client:
        ids = await _submitted(client, tmp_path, 5)
        rows: list[TaskSummary] = [row async for row in client.iter_tasks(page_size=2)]
        assert sorted(row.task_id for row in rows) == sorted(ids)
        assert account_stats(await emulator.stats())["routes"]["task_list"]["requests"] == 3
        async for row in client.iter_tasks(page_size=2, model="emo-v1", timeout=10):
            assert row.task_id in ids
            break
        assert account_stats(await emulator.stats())["routes"]["task_list"]["requests"] == 4
        # list_tasks still gives the pages.
        pages = [page async for page in client.list_tasks(page_size=2)]
        assert [len(page) for page in pages] == [2, 2, 1]


# -- raw answers --------------------------------------------------------------------------


async def test_raw_response_has_status_headers_and_request_id(recorder: Recorder) -> None:
    async with _client(recorder) as client:
        raw: RawResponse[Task] = await client.with_raw_response.get_task("t-1", timeout=5)
        assert raw.status == 200
        assert raw.headers["x-custom"] == "1"  # case-insensitive
        assert raw.headers["Content-Type"].startswith("application/json")
        assert raw.request_id == "r-body"
        task = raw.parse()
        assert (task.task_id, task.request_id) == ("t-1", "r-body")
        from_header = await client.with_raw_response.get_task("header-only")
        assert from_header.request_id == from_header.parse().request_id == "r-header"
        submitted = await client.with_raw_response.submit_emoji(
            "oss://x/a.png", driven_id="mengwa_kaixin", face_bbox=FACE, ext_bbox=EXT
        )
        assert submitted.parse().task_id == "t-1"
        canceled = await client.with_raw_response.cancel("t-1")
        assert (canceled.status, canceled.parse()) == (200, None)
        detection = await client.with_raw_response.detect_emo("https://e/a.png", ratio="1:1")
        assert detection.parse().passed


async def test_raw_response_is_the_answer_that_was_used(recorder: Recorder) -> None:
    recorder.failures = [503, 503]
    async with _client(recorder, retry=RetryPolicy(max_attempts=3, base_delay=0.001)) as client:
        raw = await client.with_raw_response.get_task("t-1")
    assert len(recorder.seen) == 3
    assert raw.status == 200
    assert raw.headers["X-Custom"] == "3"
