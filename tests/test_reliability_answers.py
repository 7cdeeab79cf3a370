"""Malformed answers become one typed error naming the call and the request id.

Properties: whatever JSON the service sends, every parser gives its model or an
:class:`InvalidResponseError`, nothing else. Then the same through the emulator's
``malformed`` fault, for every kind of bad answer and every call.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from client_support import make_client, speech
from emulator_http import emo_body
from hypothesis import given, settings
from hypothesis import strategies as st

from emoclient import EmoClient, ServerError, SubmitOutcomeUnknownError
from emoclient._exceptions import InvalidResponseError
from emoclient._models import (
    Model,
    Ratio,
    SubmittedTask,
    Task,
    TaskPage,
    UploadPolicy,
    parse_detection,
)
from emoclient.emulator import RunningEmulator

# Documented answers (API.md), the starting points of the mutations below.
VALID: dict[str, dict[str, Any]] = {
    "submit": {"output": {"task_id": "a85", "task_status": "PENDING"}, "request_id": "r-1"},
    "task": {
        "request_id": "r-2",
        "output": {
            "task_id": "a85",
            "task_status": "SUCCEEDED",
            "submit_time": "2025-09-11 14:33:38.716",
            "end_time": "2025-09-11 14:35:51.541",
            "results": {"video_url": "http://oss.example/x.mp4?Expires=1"},
        },
        "usage": {"video_duration": 13.93, "video_ratio": "1:1"},
    },
    "page": {
        "total": 1,
        "data": [{"task_id": "t", "status": "SUCCEEDED", "gmt_create": 1709260684485}],
        "total_page": 1,
        "page_no": 1,
        "page_size": 10,
        "request_id": "r-3",
    },
    "policy": {
        "data": {
            "policy": "eyJ",
            "signature": "n3d=",
            "upload_dir": "dashscope-instant/52af",
            "upload_host": "https://dashscope-file-mgr.oss-cn-beijing.aliyuncs.com",
            "expire_in_seconds": 300,
            "max_file_size_mb": 1024,
            "oss_access_key_id": "id",
        },
        "request_id": "r-4",
    },
    "emo_detect": {
        "output": {"check_pass": True, "face_bbox": [302, 286, 610, 593],
                   "ext_bbox": [71, 9, 840, 778]},
        "request_id": "r-5",
    },
    "emoji_detect": {
        "output": {"bbox_face": [212, 194, 460, 441], "ext_bbox_face": [63, 30, 609, 575]},
        "request_id": "r-6",
    },
}  # fmt: skip

PARSERS: dict[str, Callable[[Any], object]] = {
    "submit": lambda body: SubmittedTask.from_response(body, model=Model.EMO),
    "task": Task.from_response,
    "page": TaskPage.from_response,
    "policy": lambda body: UploadPolicy.from_response(
        body, model="emo-v1", issued_at=datetime(2026, 1, 1, tzinfo=UTC)
    ),
    "emo_detect": lambda body: parse_detection(body, model=Model.EMO_DETECT, ratio=Ratio.SQUARE),
    "emoji_detect": lambda body: parse_detection(
        body, model=Model.EMOJI_DETECT, ratio=Ratio.SQUARE
    ),
}
MODELS = {
    "submit": SubmittedTask,
    "task": Task,
    "page": TaskPage,
    "policy": UploadPolicy,
    "emo_detect": object,  # Detection
    "emoji_detect": object,
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _parse(name: str, body: Any) -> None:
    """Parse ``body``; only the model or InvalidResponseError may come out."""
    error: InvalidResponseError | None = None
    try:
        result = PARSERS[name](body)
    except InvalidResponseError as exc:
        error = exc
    if error is None:
        assert isinstance(result, MODELS[name])
    else:
        assert error.operation
        assert error.code == "InvalidResponse"


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in a JSON value (the mutation points)."""
    found = [prefix] if prefix else []
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else []
    )
    for key, item in items:
        found += _paths(item, (*prefix, key))
    return found  # fmt: skip


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_the_documented_answers_parse(name: str) -> None:
    assert not isinstance(PARSERS[name](copy.deepcopy(VALID[name])), Exception)


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(max_examples=150, deadline=None)
@given(body=json_values)
def test_any_json_gives_the_model_or_the_typed_error(name: str, body: Any) -> None:
    _parse(name, body)


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_a_documented_answer_with_one_field_changed_or_dropped(name: str, data: Any) -> None:
    body = copy.deepcopy(VALID[name])
    path = data.draw(st.sampled_from(_paths(body)))
    parent = body
    for key in path[:-1]:
        parent = parent[key]
    if data.draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(json_values)
    _parse(name, body)


@pytest.mark.parametrize("name", sorted(PARSERS))
@pytest.mark.parametrize("body", [{}, {"request_id": "r-9"}, [], "", None, 0])
def test_empty_and_foreign_answers_are_errors(name: str, body: Any) -> None:
    with pytest.raises(InvalidResponseError) as caught:
        PARSERS[name](body)
    assert caught.value.status == 200
    assert caught.value.request_id == ("r-9" if isinstance(body, dict) and body else None)


def test_an_empty_task_list_answer_is_not_an_empty_page() -> None:
    with pytest.raises(InvalidResponseError, match="data is missing") as caught:
        TaskPage.from_response({"request_id": "r-7", "total": 0})
    assert "listing tasks failed" in str(caught.value)
    assert "r-7" in str(caught.value)
    empty = TaskPage.from_response({"data": [], "total": 0, "total_page": 0, "request_id": "r"})
    assert empty.tasks == []


def test_a_string_check_pass_is_not_a_pass() -> None:
    body = {"output": {"check_pass": "false", "face_bbox": [1, 1, 5, 5], "ext_bbox": [0, 0, 8, 8]}}
    with pytest.raises(InvalidResponseError, match="check_pass"):
        parse_detection(body, model=Model.EMO_DETECT, ratio=Ratio.SQUARE)


def test_a_success_without_a_video_url_is_an_error() -> None:
    body = copy.deepcopy(VALID["task"])
    del body["output"]["results"]
    with pytest.raises(InvalidResponseError, match="no video_url"):
        Task.from_response(body)


def test_a_garbled_submit_answer_says_to_look_before_resubmitting() -> None:
    with pytest.raises(InvalidResponseError, match="list_tasks") as caught:
        SubmittedTask.from_response({"output": {"task_id": 5}, "request_id": "r"}, model=Model.EMO)
    assert isinstance(caught.value, ServerError)
    assert "submitting a emo-v1 task failed" in str(caught.value)


# -- through the emulator ---------------------------------------------------------------

KINDS = ["empty", "html", "array", "empty_object", "wrong_types", "huge", "endless"]


async def _detect(client: EmoClient, emulator: RunningEmulator, tmp: Path) -> object:
    return await client.detect_emo(emo_body(emulator)["input"]["image_url"])


async def _submit(client: EmoClient, emulator: RunningEmulator, tmp: Path) -> object:
    inputs = emo_body(emulator)["input"]
    return await client.submit_emo(
        inputs["image_url"],
        inputs["audio_url"],
        face_bbox=inputs["face_bbox"],
        ext_bbox=inputs["ext_bbox"],
    )


async def _get_task(client: EmoClient, emulator: RunningEmulator, tmp: Path) -> object:
    return await client.get_task("t-1")


async def _list_tasks(client: EmoClient, emulator: RunningEmulator, tmp: Path) -> object:
    return [row async for page in client.list_tasks() for row in page]


async def _upload(client: EmoClient, emulator: RunningEmulator, tmp: Path) -> object:
    return await client.upload(speech(tmp), model="emo-v1")


CALLS: dict[str, tuple[str, Callable[[EmoClient, RunningEmulator, Path], Awaitable[object]]]] = {
    "detect": ("detect", _detect),
    "submit": ("submit", _submit),
    "task_get": ("querying", _get_task),
    "task_list": ("listing tasks", _list_tasks),
    "upload_policy": ("getting an upload policy", _upload),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("route", sorted(CALLS))
async def test_every_call_turns_every_bad_answer_into_the_typed_error(
    emulator: RunningEmulator, tmp_path: Path, route: str, kind: str
) -> None:
    words, call = CALLS[route]
    emulator.set_faults(malformed={route: kind})
    async with make_client(emulator) as client:
        with pytest.raises((InvalidResponseError, SubmitOutcomeUnknownError)) as caught:
            await call(client, emulator, tmp_path)
    error = caught.value
    if isinstance(error, SubmitOutcomeUnknownError):
        # A garbled answer to a submit may hide a created task: reconcile before resending.
        assert route == "submit"
        error = error.__cause__  # type: ignore[assignment]
    assert isinstance(error, InvalidResponseError)
    assert words in error.operation
    assert error.request_id
    assert error.request_id in str(error)


async def test_the_json_cap_is_configurable(
    emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMOCLIENT_MAX_JSON_MB", "0.00005")  # 52 bytes: any task answer
    async with make_client(emulator) as client:
        with pytest.raises(InvalidResponseError, match="EMOCLIENT_MAX_JSON_MB"):
            await client.get_task("t-1")
