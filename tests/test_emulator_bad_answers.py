"""Faults that garble answers: malformed API answers and misbehaving result downloads."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import anyio
import pytest
from emulator_http import Api, emo_body
from pydantic import ValidationError

from emoclient.emulator import EmulatorConfig, RunningEmulator


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig.fast(speed=0.0)


@pytest.fixture
async def api(emulator: RunningEmulator) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, emulator, "sk-bad-answers")


async def _raw(api: Api, path: str, *, limit: int = 1 << 20) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and at most ``limit`` bytes of the body (more is never read)."""
    async with api.session.get(api.emulator.base_url + path, headers=api.headers()) as response:
        return response.status, dict(response.headers), await _read_up_to(response, limit)


async def _read_up_to(response: aiohttp.ClientResponse, limit: int) -> bytes:
    body = b""
    while len(body) < limit and (chunk := await response.content.read(limit - len(body))):
        body += chunk
    return body


async def _finished_url(api: Api) -> str:
    task_id = (await api.submit(emo_body(api.emulator))).body["output"]["task_id"]
    api.emulator.advance(3600)
    output = (await api.task(task_id)).body["output"]
    url: str = output["results"]["video_url"]
    return url


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("empty", b""),
        ("array", b"[]"),
        ("empty_object", b"{}"),
    ],
)
async def test_small_malformed_answers(api: Api, kind: str, expected: bytes) -> None:
    api.emulator.set_faults(malformed={"task_get": kind})
    status, headers, body = await _raw(api, "/tasks/t-1")
    assert (status, body) == (200, expected)
    assert headers["X-Request-ID"]


async def test_a_proxy_page_instead_of_json(api: Api) -> None:
    api.emulator.set_faults(malformed={"task_list": "html"})
    status, headers, body = await _raw(api, "/tasks")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert body.startswith(b"<html>")


async def test_wrong_types_keep_the_shape_but_not_the_types(api: Api) -> None:
    api.emulator.set_faults(malformed={"task_get": "wrong_types"})
    _, _, body = await _raw(api, "/tasks/t-1")
    output = json.loads(body)["output"]
    assert output == {"task_id": len("t-1"), "task_status": len("UNKNOWN")}


async def test_a_huge_answer_announces_its_length(api: Api) -> None:
    api.emulator.set_faults(malformed={"task_get": "huge"})
    status, headers, body = await _raw(api, "/tasks/t-1", limit=1024)
    assert status == 200
    assert int(headers["Content-Length"]) > 8 * 1024 * 1024
    assert body.startswith(b'{"request_id"')


async def test_an_endless_answer_does_not_end(api: Api) -> None:
    api.emulator.set_faults(malformed={"task_get": "endless"})
    status, headers, body = await _raw(api, "/tasks/t-1", limit=4 << 20)
    assert status == 200
    assert "Content-Length" not in headers
    assert len(body) == 4 << 20  # and still going


async def test_the_request_takes_effect_and_errors_stay_errors(api: Api) -> None:
    api.emulator.set_faults(malformed={"submit": "empty_object", "task_get": "empty"})
    reply = await api.submit(emo_body(api.emulator))
    assert (reply.status, reply.body) == (200, {})
    assert api.emulator.state.tasks  # the submit created its task
    api.emulator.set_faults(error_rate={"task_get": 1.0})
    assert (await api.task("t-1")).status in (500, 503)


async def test_unknown_kinds_are_refused(emulator: RunningEmulator) -> None:
    with pytest.raises(ValidationError):
        emulator.set_faults(malformed={"task_get": "bogus"})
    with pytest.raises(ValidationError):
        emulator.set_faults(download_fault="bogus")


async def test_download_html_page_with_200(api: Api) -> None:
    url = await _finished_url(api)
    api.emulator.set_faults(download_fault="html")
    async with api.session.get(url) as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        assert (await response.read()).startswith(b"<html>")


async def test_download_longer_than_its_content_length(api: Api) -> None:
    url = await _finished_url(api)
    api.emulator.set_faults(download_fault="longer")
    with pytest.raises(aiohttp.ClientResponseError):  # aiohttp: data after the body
        async with api.session.get(url) as response:
            await response.read()


async def test_download_that_never_ends(api: Api) -> None:
    url = await _finished_url(api)
    api.emulator.set_faults(download_fault="endless")
    async with api.session.get(url) as response:
        assert response.content_length is None
        data = await _read_up_to(response, 4 << 20)
    assert data[4:8] == b"ftyp"
    assert len(data) == 4 << 20


async def test_download_that_stalls_halfway(api: Api) -> None:
    url = await _finished_url(api)
    api.emulator.set_faults(download_fault="stall")
    async with api.session.get(url) as response:
        size = response.content_length
        assert size is not None
        received = b""
        with anyio.move_on_after(0.5):
            async for chunk in response.content.iter_any():
                received += chunk
    assert len(received) == size // 2
