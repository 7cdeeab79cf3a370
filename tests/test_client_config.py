"""Client configuration: key and base URL sources, secrecy of the key, headers, sessions."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from emoclient import (
    EmoClient,
    MemoryStore,
    MissingAPIKeyError,
    RetryPolicy,
    ServerError,
    SubmitOutcomeUnknownError,
)

SECRET = "sk-very-secret-key-0123456789"


@dataclass
class Recorder:
    """A tiny real HTTP server that records what the client sends."""

    url: str = ""
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    reply: dict[str, Any] = field(default_factory=dict)
    raw: str | None = None


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    rec = Recorder()

    async def handle(request: web.Request) -> web.Response:
        rec.seen.append((request.method, request.path, dict(request.headers)))
        if rec.raw is not None:
            return web.Response(text=rec.raw)
        return web.json_response(rec.reply)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    rec.url = f"http://127.0.0.1:{port}"
    yield rec
    await runner.cleanup()


def _client(rec: Recorder, **options: Any) -> EmoClient:
    settings: dict[str, Any] = {
        "base_url": f"{rec.url}/api/v1",
        "store": MemoryStore(),
        "retry": RetryPolicy(max_attempts=1),
    }
    settings.update(options)
    return EmoClient(SECRET, **settings)


def test_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError, match="DASHSCOPE_API_KEY"):
        EmoClient()
    with pytest.raises(ValueError, match="DASHSCOPE_API_KEY"):
        EmoClient("")


async def test_key_and_base_url_from_environment(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASHSCOPE_API_KEY", SECRET)
    monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", f"{recorder.url}/api/v1/")
    recorder.reply = {"output": {"task_id": "t", "task_status": "PENDING"}, "request_id": "r"}
    async with EmoClient(store=MemoryStore()) as client:
        assert client.base_url == f"{recorder.url}/api/v1"
        await client.get_task("t")
    ((method, path, headers),) = recorder.seen
    assert (method, path) == ("GET", "/api/v1/tasks/t")
    assert headers["Authorization"] == f"Bearer {SECRET}"


def test_default_base_url_is_beijing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DASHSCOPE_HTTP_BASE_URL", raising=False)
    assert EmoClient(SECRET).base_url == "https://dashscope.aliyuncs.com/api/v1"


def test_key_never_in_repr() -> None:
    client = EmoClient(SECRET, base_url="http://127.0.0.1:1/api/v1")
    assert SECRET not in repr(client)
    assert SECRET not in str(vars(client))
    assert "acct-" in repr(client)


async def test_headers_per_call(recorder: Recorder) -> None:
    # One answer that both a detection and a submit can read.
    output = {"task_id": "t", "task_status": "PENDING", "check_pass": False}
    recorder.reply = {"output": output, "request_id": "r"}
    async with _client(recorder, workspace="ws-42") as client:
        await client.detect_emo("https://example.com/a.png")
        await client.detect_emo("oss://dashscope-instant/x/a.png")
        await client.submit_emoji(
            "oss://dashscope-instant/x/a.png",
            driven_id="mengwa_kaixin",
            face_bbox=[1, 1, 5, 5],
            ext_bbox=[0, 0, 8, 8],
        )
    plain, oss, submit = (headers for _, _, headers in recorder.seen)
    for headers in (plain, oss, submit):
        assert headers["Authorization"] == f"Bearer {SECRET}"
        assert headers["X-DashScope-WorkSpace"] == "ws-42"
    assert "X-DashScope-OssResourceResolve" not in plain
    assert "X-DashScope-Async" not in plain
    assert oss["X-DashScope-OssResourceResolve"] == "enable"
    assert submit["X-DashScope-OssResourceResolve"] == "enable"
    assert submit["X-DashScope-Async"] == "enable"


async def test_no_credentials_to_other_hosts(recorder: Recorder, tmp_path: Any) -> None:
    recorder.raw = "\0\0\0\x14ftypisom video-bytes"  # an MP4 opens with its ftyp box
    async with _client(recorder) as client:
        await client.download(f"{recorder.url}/results/x.mp4?Expires=1", tmp_path / "x.mp4")
    ((_, _, headers),) = recorder.seen
    assert "Authorization" not in headers
    assert (tmp_path / "x.mp4").read_text() == recorder.raw


async def test_callers_session_stays_open(recorder: Recorder) -> None:
    recorder.reply = {"output": {"task_id": "t", "task_status": "RUNNING"}}
    async with aiohttp.ClientSession() as session:
        async with _client(recorder, session=session) as client:
            await client.get_task("t")
        assert not session.closed
        async with _client(recorder, session=session) as again:
            await again.get_task("t")


async def test_own_session_closed_on_exit(recorder: Recorder) -> None:
    recorder.reply = {"output": {"task_id": "t", "task_status": "RUNNING"}}
    client = _client(recorder)
    async with client:
        await client.get_task("t")
        session = client._transport.session
    assert session.closed


async def test_key_never_logged(recorder: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    recorder.reply = {"output": {"task_id": "t", "task_status": "RUNNING"}}
    with caplog.at_level(logging.DEBUG):
        async with _client(recorder) as client:
            await client.get_task("t")
    assert caplog.records
    assert all(SECRET not in record.getMessage() for record in caplog.records)


async def test_a_success_holding_the_keys_characters_is_not_altered(
    recorder: Recorder,
) -> None:
    # A short key can turn up inside a signed result URL by chance (an account's two keys
    # "k1" and "k2" did, in one download of about seven): the URL must reach the download
    # as the service signed it, or the download is refused (SignatureDoesNotMatch).
    url = f"http://127.0.0.1:9/results/t.mp4?Expires=1&Signature=ab{SECRET}cd%3D"
    recorder.reply = {
        "output": {"task_id": "t", "task_status": "SUCCEEDED", "results": {"video_url": url}},
        "usage": {"duration": 2.0},
    }
    async with _client(recorder) as client:
        task = await client.get_task("t")
    assert task.video_url == url


async def test_an_answer_echoing_the_key_never_shows_it(recorder: Recorder) -> None:
    recorder.raw = f"<html>proxy: Authorization: Bearer {SECRET}</html>"
    async with _client(recorder) as client:
        with pytest.raises(ServerError, match="not JSON") as caught:
            await client.get_task("t")
    assert "<api key>" in str(caught.value)
    chain: list[BaseException] = []
    error: BaseException | None = caught.value
    while error is not None and len(chain) < 10:  # what an error reporter walks
        chain.append(error)
        error = error.__cause__ or error.__context__
    assert all(SECRET not in str(e) for e in chain)


async def test_non_json_answer(recorder: Recorder) -> None:
    recorder.raw = "<html>gateway</html>"
    async with _client(recorder) as client:
        with pytest.raises(ServerError, match="not JSON") as caught:
            await client.get_task("t")
        assert caught.value.code == "InvalidResponse"
        # For a submit, a garbled 200 means a task may well exist.
        with pytest.raises(SubmitOutcomeUnknownError):
            await client.submit_emo(
                "https://e/a.png", "https://e/a.wav", face_bbox=[1, 1, 5, 5], ext_bbox=[0, 0, 8, 8]
            )
