"""EmoClient's single calls against the emulator: detect, submit, query, list, cancel, wait."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from client_support import account_stats, make_client, portrait, speech

from emoclient import (
    AuthenticationError,
    BadRequestError,
    DrivenId,
    EmoClient,
    Ratio,
    SubmittedTask,
    TaskCanceledError,
    TaskExpiredError,
    TaskFailedError,
    TaskStatus,
    WaitTimeoutError,
)
from emoclient.emulator import EmulatorConfig, RunningEmulator, serve


@pytest.fixture
async def client(emulator: RunningEmulator) -> AsyncIterator[EmoClient]:
    async with make_client(emulator) as c:
        yield c


async def _uploaded(client: EmoClient, path: Path, model: str) -> str:
    return (await client.upload(path, model=model)).url


async def _emo_task(client: EmoClient, tmp_path: Path) -> SubmittedTask:
    image = portrait(tmp_path)
    detection = await client.detect_emo(await _uploaded(client, image, "emo-detect-v1"))
    assert detection.face_bbox is not None
    assert detection.ext_bbox is not None
    return await client.submit_emo(
        await _uploaded(client, image, "emo-v1"),
        await _uploaded(client, speech(tmp_path), "emo-v1"),
        face_bbox=detection.face_bbox,
        ext_bbox=detection.ext_bbox,
    )


async def test_detect_emo_passes_with_boxes(client: EmoClient, tmp_path: Path) -> None:
    url = await _uploaded(client, portrait(tmp_path), "emo-detect-v1")
    square = await client.detect_emo(url)
    assert square.passed
    assert square.humanoid is True
    assert square.code is None
    assert square.request_id
    assert square.face_bbox is not None
    assert square.ext_bbox is not None
    x1, y1, x2, y2 = square.ext_bbox
    assert x2 - x1 == pytest.approx(y2 - y1, abs=2)
    half_body = await client.detect_emo(url, ratio="3:4")
    assert half_body.ratio is Ratio.PORTRAIT
    assert half_body.ext_bbox is not None
    x1, y1, x2, y2 = half_body.ext_bbox
    assert (x2 - x1) / (y2 - y1) == pytest.approx(3 / 4, abs=0.02)


async def test_detect_failures_say_why_for_both_models(client: EmoClient, tmp_path: Path) -> None:
    image = portrait(tmp_path, fail="InvalidFile.FacePose")
    emo = await client.detect_emo(await _uploaded(client, image, "emo-detect-v1"))
    emoji = await client.detect_emoji(await _uploaded(client, image, "emoji-detect-v1"))
    for detection in (emo, emoji):
        assert not detection.passed
        assert detection.code == "InvalidFile.FacePose"
        assert detection.message
        assert detection.face_bbox is None


async def test_detect_emoji_passes(client: EmoClient, tmp_path: Path) -> None:
    detection = await client.detect_emoji(
        await _uploaded(client, portrait(tmp_path), "emoji-detect-v1")
    )
    assert detection.passed
    assert detection.face_bbox is not None
    assert detection.ext_bbox is not None


async def test_bad_url_is_a_bad_request_with_service_fields(client: EmoClient) -> None:
    with pytest.raises(BadRequestError) as caught:
        await client.detect_emo("ftp://nowhere/x.png")
    assert caught.value.status == 400
    assert caught.value.code
    assert caught.value.message
    assert caught.value.request_id


async def test_upload_for_another_model_is_refused(client: EmoClient, tmp_path: Path) -> None:
    url = await _uploaded(client, portrait(tmp_path), "emo-v1")
    with pytest.raises(BadRequestError):
        await client.detect_emo(url)


async def test_invalid_key_is_authentication_error_without_the_key(tmp_path: Path) -> None:
    config = EmulatorConfig.fast(api_keys=frozenset({"sk-the-only-good-key"}))
    async with serve(config) as emulator:
        client = make_client(emulator, api_key="sk-wrong-secret-123")
        async with client:
            with pytest.raises(AuthenticationError) as caught:
                await client.get_task("any")
    assert caught.value.status == 401
    assert caught.value.code == "InvalidApiKey"
    assert "sk-wrong-secret-123" not in str(caught.value)
    assert "sk-wrong-secret-123" not in repr(caught.value)


async def test_emo_task_lifecycle(client: EmoClient, tmp_path: Path) -> None:
    submitted = await _emo_task(client, tmp_path)
    assert submitted.status is TaskStatus.PENDING
    assert submitted.request_id
    task = await client.wait(submitted.task_id)
    assert task.status is TaskStatus.SUCCEEDED
    assert task.video_url is not None
    assert task.video_url.startswith("http")
    assert isinstance(task.video_duration, float)
    assert task.video_ratio == "1:1"
    assert task.submit_time is not None
    assert task.scheduled_time is not None
    assert task.end_time is not None
    assert task.submit_time <= task.scheduled_time <= task.end_time
    again = await client.get_task(submitted.task_id)
    assert again.video_url == task.video_url


async def test_emoji_task_lifecycle(client: EmoClient, tmp_path: Path) -> None:
    image = portrait(tmp_path)
    detection = await client.detect_emoji(await _uploaded(client, image, "emoji-detect-v1"))
    assert detection.face_bbox is not None
    assert detection.ext_bbox is not None
    submitted = await client.submit_emoji(
        await _uploaded(client, image, "emoji-v1"),
        driven_id=DrivenId.JINGDIAN_LEI,
        face_bbox=detection.face_bbox,
        ext_bbox=detection.ext_bbox,
    )
    task = await client.wait(submitted.task_id)
    assert task.video_ratio == "standard"
    assert task.video_duration is not None
    assert task.video_duration == int(task.video_duration)
    assert task.video_url is not None


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("face_bbox", [10, 10, 5, 20], "face_bbox"),
        ("ext_bbox", [1, 2, 3], "ext_bbox"),
        ("style_level", "wild", "style_level='wild' is not one of: normal, calm, active"),
    ],
)
async def test_submit_inputs_validated_before_sending(
    emulator: RunningEmulator, field: str, value: object, match: str
) -> None:
    kwargs: dict[str, object] = {"face_bbox": [1, 1, 5, 5], "ext_bbox": [0, 0, 8, 8]}
    kwargs[field] = value
    async with make_client(emulator) as client:
        with pytest.raises(ValueError, match=match):
            await client.submit_emo("oss://a/b.png", "oss://a/b.wav", **kwargs)  # type: ignore[arg-type]
    assert (await emulator.stats())["accounts"] == {}


async def test_unknown_driven_id_rejected_locally(client: EmoClient) -> None:
    with pytest.raises(ValueError, match="driven_id='nope' is not one of: mengwa_kaixin"):
        await client.submit_emoji(
            "oss://a/b.png", driven_id="nope", face_bbox=[1, 1, 5, 5], ext_bbox=[0, 0, 8, 8]
        )


async def test_server_side_validation_error(client: EmoClient, tmp_path: Path) -> None:
    url = await _uploaded(client, portrait(tmp_path), "emoji-v1")
    with pytest.raises(BadRequestError) as caught:
        await client.submit_emoji(
            url, driven_id="mengwa_kaixin", face_bbox=[1, 1, 5, 5], ext_bbox=[0, 0, 9000, 9000]
        )
    assert caught.value.code == "InvalidParameter"


async def test_unknown_task_is_expired(client: EmoClient) -> None:
    task = await client.get_task("no-such-task")
    assert task.status is TaskStatus.UNKNOWN
    with pytest.raises(TaskExpiredError, match="no-such-task"):
        await client.wait("no-such-task")


async def test_failed_task_raises_with_code(client: EmoClient, tmp_path: Path) -> None:
    nobody = portrait(tmp_path, "nobody.jpg", persons=0)
    submitted = await client.submit_emo(
        await _uploaded(client, nobody, "emo-v1"),
        await _uploaded(client, speech(tmp_path), "emo-v1"),
        face_bbox=[300, 300, 500, 500],
        ext_bbox=[200, 200, 600, 600],
    )
    with pytest.raises(TaskFailedError) as caught:
        await client.wait(submitted.task_id)
    assert caught.value.task_id == submitted.task_id
    assert caught.value.code == "InvalidFile.Content"
    assert caught.value.message


@pytest.fixture
def frozen() -> EmulatorConfig:
    return EmulatorConfig.fast(speed=0.0)


async def test_cancel_pending_then_wait_raises(tmp_path: Path, frozen: EmulatorConfig) -> None:
    async with serve(frozen) as emulator, make_client(emulator) as client:
        first = await _emo_task(client, tmp_path)
        second = await _emo_task(client, tmp_path)
        emulator.advance(1.0)
        assert (await client.get_task(first.task_id)).status is TaskStatus.RUNNING
        with pytest.raises(BadRequestError) as caught:
            await client.cancel(first.task_id)
        assert caught.value.code == "UnsupportedOperation"
        await client.cancel(second.task_id)
        assert (await client.get_task(second.task_id)).status is TaskStatus.CANCELED
        with pytest.raises(TaskCanceledError, match=second.task_id):
            await client.wait(second.task_id)


async def test_wait_times_out_naming_the_task(tmp_path: Path, frozen: EmulatorConfig) -> None:
    async with serve(frozen) as emulator, make_client(emulator) as client:
        submitted = await _emo_task(client, tmp_path)
        with pytest.raises(WaitTimeoutError) as caught:
            await client.wait(submitted.task_id, timeout=0.2)
    assert caught.value.task_id == submitted.task_id
    assert caught.value.last_status == "RUNNING"
    assert "still RUNNING" in str(caught.value)
    assert submitted.task_id in str(caught.value)


async def test_list_tasks_pages_and_filters(client: EmoClient, tmp_path: Path) -> None:
    ids = {(await _emo_task(client, tmp_path)).task_id for _ in range(3)}
    pages = [page async for page in client.list_tasks(page_size=2)]
    assert [len(p) for p in pages] == [2, 1]
    listed = {row.task_id for page in pages for row in page}
    assert listed == ids
    row = pages[0][0]
    assert row.model_name == "emo-v1"
    assert row.created_at is not None
    for task_id in ids:
        await client.wait(task_id)
    done = [row async for page in client.list_tasks(status="SUCCEEDED") for row in page]
    assert {r.task_id for r in done} == ids
    assert [p async for p in client.list_tasks(model="emoji-v1")] == []


async def test_bad_page_size_rejected(client: EmoClient) -> None:
    with pytest.raises(ValueError, match="page_size"):
        [p async for p in client.list_tasks(page_size=0)]


async def test_stats_show_each_route_used(
    client: EmoClient, emulator: RunningEmulator, tmp_path: Path
) -> None:
    submitted = await _emo_task(client, tmp_path)
    await client.wait(submitted.task_id)
    routes = account_stats(await emulator.stats())["routes"]
    assert {"upload_policy", "oss_upload", "detect", "submit", "task_get"} <= set(routes)
    assert all(r["throttled"] == 0 for r in routes.values())
