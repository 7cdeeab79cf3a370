"""Parsing of every literal JSON shape in API.md into the client's typed models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from emoclient._exceptions import DetectionFailedError
from emoclient._models import (
    BBox,
    Detection,
    Model,
    Ratio,
    SubmittedTask,
    Task,
    TaskPage,
    TaskStatus,
    UploadPolicy,
    parse_detection,
    parse_task_time,
)

EMO_DETECT_PASSED: dict[str, Any] = {
    "output": {
        "check_pass": True,
        "face_bbox": [302, 286, 610, 593],
        "ext_bbox": [71, 9, 840, 778],
        "humanoid": True,
    },
    "usage": {"image_count": 1},
    "request_id": "c56f62df-724e-9c19-96bd-xxxxxx",
}
EMO_DETECT_FAILED: dict[str, Any] = {
    "output": {
        "check_pass": False,
        "humanoid": True,
        "code": "InvalidFile.FacePose",
        "message": "The pose of the detected face is invalid, please upload other image with "
        "the expected orientation.",
    },
    "usage": {"image_count": 1},
    "request_id": "r1",
}
EMOJI_DETECT_PASSED: dict[str, Any] = {
    "output": {"bbox_face": [212, 194, 460, 441], "ext_bbox_face": [63, 30, 609, 575]},
    "usage": {"image_count": 1},
    "request_id": "78becbc4-f7f7-41ea-9e38-xxxxxx",
}
EMOJI_DETECT_FAILED: dict[str, Any] = {
    "output": {
        "code": "InvalidFile.FacePose",
        "message": "The pose of the detected face is invalid, please upload other image with "
        "the expected oriention.",
    },
    "usage": {"image_count": 1},
    "request_id": "ed0d0d8f-e55a-4144-b855-xxxxxx",
}
EMO_SUCCEEDED: dict[str, Any] = {
    "request_id": "8190395f-ca1b-4703-9656-xxxxxx",
    "output": {
        "task_id": "a8532587-fa8c-4ef8-82be-xxxxxx",
        "task_status": "SUCCEEDED",
        "submit_time": "2025-09-11 14:33:38.716",
        "scheduled_time": "2025-09-11 14:33:53.089",
        "end_time": "2025-09-11 14:35:51.541",
        "results": {
            "video_url": "http://dashscope-result-sh.oss-cn-shanghai.aliyuncs.com/xxx.mp4?Expires=xxxx"
        },
    },
    "usage": {"video_duration": 13.93, "video_ratio": "1:1"},
}
EMOJI_SUCCEEDED: dict[str, Any] = {
    "request_id": "ad225054-6c94-47e5-9356-xxxxxxx",
    "output": {
        "task_id": "b56f509a-3ea9-4cfe-848d-xxxxxxx",
        "task_status": "SUCCEEDED",
        "submit_time": "2025-10-14 11:28:04.372",
        "scheduled_time": "2025-10-14 11:28:04.400",
        "end_time": "2025-10-14 11:29:03.924",
        "video_url": "http://dashscope-result-sh.oss-cn-shanghai.aliyuncs.com/xx.mp4?Expires=xxx",
    },
    "usage": {"video_duration": 2, "video_ratio": "standard"},
}
TASK_FAILED: dict[str, Any] = {
    "request_id": "e5d70b02-ebd3-98ce-9fe8-759d7d7b107d",
    "output": {
        "task_id": "86ecf553-d340-4e21-af6e-a0c6a421c010",
        "task_status": "FAILED",
        "code": "InvalidParameter",
        "message": "The size is not match xxxxxx",
    },
}
TASK_UNKNOWN: dict[str, Any] = {
    "request_id": "a4de7c32-7057-9f82-8581-xxxxxx",
    "output": {"task_id": "502a00b1-19d9-4839-a82f-xxxxxx", "task_status": "UNKNOWN"},
}
TASK_RUNNING: dict[str, Any] = {
    "request_id": "edbd4e81",
    "output": {
        "task_id": "9e2b6ef6",
        "task_status": "RUNNING",
        "submit_time": "2024-03-01 17:38:24.817",
        "scheduled_time": "2024-03-01 17:38:24.831",
        "task_metrics": {"TOTAL": 1, "SUCCEEDED": 0, "FAILED": 0},
    },
}
LIST_PAGE: dict[str, Any] = {
    "total": 1,
    "data": [
        {
            "api_key_id": "42677",
            "caller_parent_id": "1493478651020171",
            "caller_uid": "1493478651020171",
            "end_time": 1709260685184,
            "gmt_create": 1709260684485,
            "model_name": "text-embedding-async-v2",
            "region": "cn-beijing",
            "request_id": "db5ce040-4548-9919-9a75-3385ee152335",
            "start_time": 1709260684527,
            "status": "SUCCEEDED",
            "task_id": "6075262c-b56d-4968-9abf-2a9784a90f3e",
            "user_api_unique_key": "apikey:v1:embeddings:text-embedding",
        }
    ],
    "total_page": 1,
    "page_no": 1,
    "request_id": "fcb29ae5-a352-9e7b-901c-e53525376cde",
    "page_size": 10,
}
UPLOAD_POLICY: dict[str, Any] = {
    "data": {
        "policy": "eyJleHBpcmF0aW9uIjoi...",
        "signature": "n3dNX/aD3+WAly0QgzsURfiIk00=",
        "upload_dir": "dashscope-instant/52afe077fb4825c6d74411758cb1ab98/2025-07-12/b744f4f8",
        "upload_host": "https://dashscope-file-mgr.oss-cn-beijing.aliyuncs.com",
        "expire_in_seconds": 300,
        "max_file_size_mb": 1024,
        "capacity_limit_mb": 999999999,
        "oss_access_key_id": "accessKeyId",
        "x_oss_object_acl": "private",
        "x_oss_forbid_overwrite": "true",
    },
    "request_id": "b744f4f8-1a9c-9c6b-950d-0d327e331f2f",
}


def test_emo_detect_passed() -> None:
    d = parse_detection(EMO_DETECT_PASSED, model=Model.EMO_DETECT, ratio=Ratio.SQUARE)
    assert d.passed
    assert d.face_bbox == (302, 286, 610, 593)
    assert d.ext_bbox == (71, 9, 840, 778)
    assert d.humanoid is True
    assert d.code is None
    assert d.request_id == "c56f62df-724e-9c19-96bd-xxxxxx"


def test_emo_detect_failed_says_why() -> None:
    d = parse_detection(EMO_DETECT_FAILED, model=Model.EMO_DETECT, ratio=Ratio.PORTRAIT)
    assert not d.passed
    assert d.code == "InvalidFile.FacePose"
    assert d.message is not None
    assert "pose" in d.message
    assert d.face_bbox is None
    assert d.ext_bbox is None
    assert d.ratio is Ratio.PORTRAIT


def test_emoji_detect_passed_uses_other_field_names() -> None:
    d = parse_detection(EMOJI_DETECT_PASSED, model=Model.EMOJI_DETECT, ratio=Ratio.SQUARE)
    assert d.passed
    assert d.face_bbox == (212, 194, 460, 441)
    assert d.ext_bbox == (63, 30, 609, 575)
    assert d.humanoid is None


def test_emoji_detect_failed_has_no_check_pass() -> None:
    d = parse_detection(EMOJI_DETECT_FAILED, model=Model.EMOJI_DETECT, ratio=Ratio.SQUARE)
    assert not d.passed
    assert d.code == "InvalidFile.FacePose"
    assert d.message is not None
    assert "oriention" in d.message


def test_submit_answer() -> None:
    body = {
        "output": {"task_status": "PENDING", "task_id": "0385dc79-5ff8-4d82-bcb6-xxxxxx"},
        "request_id": "4909100c-7b5a-9f92-bfe5-xxxxxx",
    }
    t = SubmittedTask.from_response(body, model=Model.EMOJI)
    assert t.task_id == "0385dc79-5ff8-4d82-bcb6-xxxxxx"
    assert t.status is TaskStatus.PENDING
    assert t.request_id == "4909100c-7b5a-9f92-bfe5-xxxxxx"


def test_emo_result_url_under_results_with_float_duration() -> None:
    t = Task.from_response(EMO_SUCCEEDED)
    assert t.status is TaskStatus.SUCCEEDED
    assert t.is_terminal
    assert t.video_url is not None
    assert t.video_url.endswith("xxx.mp4?Expires=xxxx")
    assert t.video_duration == pytest.approx(13.93)
    assert t.video_ratio == "1:1"
    assert t.submit_time is not None
    assert t.scheduled_time is not None
    assert t.end_time is not None
    # Times are Beijing wall-clock without a zone in the wire format.
    assert t.submit_time.astimezone(UTC) == datetime(2025, 9, 11, 6, 33, 38, 716000, tzinfo=UTC)
    assert (t.end_time - t.scheduled_time) == timedelta(seconds=118, microseconds=452000)


def test_emoji_result_url_at_top_level_with_int_duration() -> None:
    t = Task.from_response(EMOJI_SUCCEEDED)
    assert t.video_url is not None
    assert t.video_url.endswith("xx.mp4?Expires=xxx")
    assert t.video_duration == 2
    assert t.video_ratio == "standard"


def test_failed_task_carries_code_and_message() -> None:
    t = Task.from_response(TASK_FAILED)
    assert t.status is TaskStatus.FAILED
    assert t.is_terminal
    assert t.code == "InvalidParameter"
    assert t.message == "The size is not match xxxxxx"
    assert t.video_url is None
    assert t.submit_time is None


def test_unknown_task_is_terminal_without_times() -> None:
    t = Task.from_response(TASK_UNKNOWN)
    assert t.status is TaskStatus.UNKNOWN
    assert t.is_terminal
    assert t.submit_time is None
    assert t.end_time is None


def test_running_task_tolerates_extra_fields() -> None:
    t = Task.from_response(TASK_RUNNING)
    assert t.status is TaskStatus.RUNNING
    assert not t.is_terminal
    assert t.scheduled_time is not None


def test_list_envelope_with_epoch_milliseconds() -> None:
    page = TaskPage.from_response(LIST_PAGE)
    assert (page.total, page.total_page, page.page_no, page.page_size) == (1, 1, 1, 10)
    (row,) = page.tasks
    assert row.task_id == "6075262c-b56d-4968-9abf-2a9784a90f3e"
    assert row.status is TaskStatus.SUCCEEDED
    assert row.model_name == "text-embedding-async-v2"
    assert row.created_at == datetime.fromtimestamp(1709260684.485, tz=UTC)
    assert row.ended_at is not None
    assert row.started_at is not None
    assert row.ended_at - row.started_at == timedelta(milliseconds=657)


def test_upload_policy_in_data_envelope() -> None:
    issued = datetime(2026, 1, 1, tzinfo=UTC)
    p = UploadPolicy.from_response(UPLOAD_POLICY, model="emo-v1", issued_at=issued)
    assert p.upload_host == "https://dashscope-file-mgr.oss-cn-beijing.aliyuncs.com"
    assert p.upload_dir.startswith("dashscope-instant/")
    assert p.oss_access_key_id == "accessKeyId"
    assert p.expires_at == issued + timedelta(seconds=300)
    assert p.model == "emo-v1"


@pytest.mark.parametrize("box", [(10, 10, 5, 20), (10, 10, 20, 10), (-1, 0, 5, 5), (0, 0, 0, 0)])
def test_bad_bboxes_are_rejected(box: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValidationError, match="bbox"):
        TypeAdapter(BBox).validate_python(box)


def test_good_bbox_accepted_from_list() -> None:
    assert TypeAdapter(BBox).validate_python([1, 2, 3, 4]) == (1, 2, 3, 4)


def test_task_time_formats() -> None:
    assert parse_task_time(None) is None
    assert parse_task_time("") is None
    assert parse_task_time(0) == datetime(1970, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="not a task time"):
        parse_task_time([1])


def test_detection_is_frozen() -> None:
    d = Detection(model=Model.EMO_DETECT, passed=True)
    with pytest.raises(ValidationError):
        d.passed = False  # type: ignore[misc]


def test_detection_boxes_for_submit() -> None:
    passed = parse_detection(EMO_DETECT_PASSED, model=Model.EMO_DETECT, ratio=Ratio.SQUARE)
    assert passed.boxes() == ((302, 286, 610, 593), (71, 9, 840, 778))
    failed = parse_detection(EMOJI_DETECT_FAILED, model=Model.EMOJI_DETECT, ratio=Ratio.SQUARE)
    with pytest.raises(DetectionFailedError, match=r"emoji-detect-v1 rejected the image a\.png"):
        failed.boxes(image="a.png")
