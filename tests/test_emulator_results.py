"""Results: real MP4s, signed URLs that expire like OSS, Range requests, cut downloads."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import aiohttp
import pytest
from emulator_http import Api, emo_body, emoji_body

from emoclient.emulator import EmulatorConfig, RunningEmulator, serve


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig.fast(speed=0.0)


@pytest.fixture
async def api(emulator: RunningEmulator) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, emulator, "sk-results")


async def _finished_url(api: Api, body: dict[str, object]) -> str:
    task_id = (await api.submit(body)).body["output"]["task_id"]
    api.emulator.advance(3600)
    output = (await api.task(task_id)).body["output"]
    assert output["task_status"] == "SUCCEEDED", output
    url: str = output["results"]["video_url"] if "results" in output else output["video_url"]
    return url


async def _get(
    session: aiohttp.ClientSession, url: str, **headers: str
) -> tuple[int, bytes, dict[str, str]]:
    async with session.get(url, headers=headers) as response:
        return response.status, await response.read(), dict(response.headers)


def _probe(data: bytes) -> dict[str, object]:
    import av

    with av.open(io.BytesIO(data), mode="r") as container:
        video = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video))
        assert video.average_rate is not None
        return {
            "size": (video.codec_context.width, video.codec_context.height),
            "codec": video.codec_context.name,
            "audio": [s.codec_context.name for s in container.streams.audio],
            "seconds": frames / float(video.average_rate),
        }


@pytest.mark.parametrize(("ratio", "size"), [("1:1", (512, 512)), ("3:4", (512, 704))])
async def test_rendered_emo_result_decodes(ratio: str, size: tuple[int, int]) -> None:
    async with (
        serve(EmulatorConfig.fast(render=True)) as emu,
        aiohttp.ClientSession() as session,
    ):
        api = Api(session, emu, "sk-render")
        task_id = (await api.submit(emo_body(emu, seconds=2.0, ratio=ratio))).body["output"][
            "task_id"
        ]
        # The task ends only once its video is rendered (in a worker thread).
        await emu.wait_rendered(task_id)
        emu.advance(3600)
        reply = await api.task(task_id)
        assert reply.body["usage"] == {"video_duration": 2.0, "video_ratio": ratio}
        status, data, headers = await _get(session, reply.body["output"]["results"]["video_url"])
    assert status == 200
    assert headers["Content-Type"] == "video/mp4"
    probed = _probe(data)
    assert probed["size"] == size
    assert probed["codec"] == "h264"
    assert probed["audio"] == ["aac"]
    assert probed["seconds"] == pytest.approx(2.0, abs=0.1)


async def test_rendered_emoji_result_is_video_only() -> None:
    async with (
        serve(EmulatorConfig.fast(render=True)) as emu,
        aiohttp.ClientSession() as session,
    ):
        api = Api(session, emu, "sk-render")
        body = emoji_body(emu, driven_id="mengwa_dengyan")  # a 2-second template
        task_id = (await api.submit(body)).body["output"]["task_id"]
        await emu.wait_rendered(task_id)
        emu.advance(3600)
        reply = await api.task(task_id)
        _, data, _ = await _get(session, reply.body["output"]["video_url"])
    assert reply.body["usage"] == {"video_duration": 2, "video_ratio": "standard"}
    probed = _probe(data)
    assert probed["size"] == (512, 512)
    assert probed["audio"] == []
    assert probed["seconds"] == pytest.approx(2.0, abs=0.1)


async def test_result_url_expires_24_hours_after_success(api: Api) -> None:
    url = await _finished_url(api, emo_body(api.emulator))
    status, data, headers = await _get(api.session, url)
    assert status == 200
    assert headers["Content-Length"] == str(len(data))
    api.emulator.advance(24 * 3600)
    status, body, headers = await _get(api.session, url)
    assert status == 403
    assert headers["Content-Type"].startswith("application/xml")
    text = body.decode()
    assert "<Code>AccessDenied</Code>" in text
    assert "<Message>Request has expired.</Message>" in text


async def test_tampered_signature_is_refused(api: Api) -> None:
    url = await _finished_url(api, emo_body(api.emulator))
    status, body, _ = await _get(api.session, url.replace("Expires=", "Expires=9"))
    assert status == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in body


async def test_range_requests_resume_a_download(api: Api) -> None:
    url = await _finished_url(api, emo_body(api.emulator))
    _, whole, _ = await _get(api.session, url)
    status, tail, headers = await _get(api.session, url, Range="bytes=1000-")
    assert status == 206
    assert headers["Content-Range"] == f"bytes 1000-{len(whole) - 1}/{len(whole)}"
    assert tail == whole[1000:]
    status, _, headers = await _get(api.session, url, Range=f"bytes={len(whole)}-")
    assert status == 416
    assert headers["Content-Range"] == f"bytes */{len(whole)}"
    status, last, _ = await _get(api.session, url, Range="bytes=-10")
    assert (status, last) == (206, whole[-10:])


async def test_download_cut_fault_closes_mid_body(api: Api) -> None:
    url = await _finished_url(api, emo_body(api.emulator))
    api.emulator.set_faults(download_cut_bytes=100)
    with pytest.raises(aiohttp.ClientPayloadError):
        await _get(api.session, url)
    api.emulator.set_faults(download_cut_bytes=None)
    _, whole, _ = await _get(api.session, url, Range="bytes=100-")
    stats = next(iter((await api.emulator.stats())["accounts"].values()))
    assert stats["result_bytes_served"] == 100 + len(whole)
    assert stats["routes"]["result_download"]["requests"] == 2


async def test_result_host_faults_answer_oss_xml(api: Api) -> None:
    url = await _finished_url(api, emo_body(api.emulator))
    api.emulator.set_faults(error_rate={"result_download": 1.0})
    status, body, _ = await _get(api.session, url)
    assert status in (500, 503)
    assert body.startswith(b"<?xml")
    api.emulator.set_faults(error_rate=0.0, drop_rate={"result_download": 1.0})
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await _get(api.session, url)
