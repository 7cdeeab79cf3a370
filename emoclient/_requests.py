"""What each API call sends (API.md): bodies, query parameters and per-call headers, built
from the call's arguments and checked before anything is sent. Pure, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from emoclient._models import (
    SERVICE_TZ,
    DrivenId,
    Model,
    Ratio,
    StyleLevel,
    TaskStatus,
    parse_bbox,
)

__all__ = [
    "DETECT_PATH",
    "SYNTHESIS_PATH",
    "checked_enum",
    "detect_body",
    "emo_body",
    "emoji_body",
    "list_params",
    "oss_headers",
    "task_path",
]

DETECT_PATH = "services/aigc/image2video/face-detect"
SYNTHESIS_PATH = "services/aigc/image2video/video-synthesis"
_OSS_RESOLVE = {"X-DashScope-OssResourceResolve": "enable"}

_E = TypeVar("_E", StyleLevel, DrivenId, Ratio)


def task_path(task_id: str, action: str = "") -> str:
    """The path of one task's route, ``tasks/ID`` or ``tasks/ID/ACTION``.

    An id that is empty, or holds a character that would make it another route (``/``,
    ``?``, ``#``, a space or a control character), is refused before anything is sent:
    ``tasks/`` is the task list, whose answer would otherwise be read as a task.
    """
    if (
        not isinstance(task_id, str)
        or not task_id
        or any(c in "/?#" or c.isspace() or not c.isprintable() for c in task_id)
    ):
        raise ValueError(
            f"task_id {task_id!r} is not a task id; pass the task_id a submit returned "
            "(e.g. 'a85a1c8c-4b6e-4c0b-9a0e-3b4f5c6d7e8f')"
        )
    return f"tasks/{task_id}/{action}" if action else f"tasks/{task_id}"


def checked_enum(cls: type[_E], name: str, value: str) -> _E:
    """``value`` as a member of ``cls``; a ValueError naming the allowed values otherwise."""
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        raise ValueError(f"{name}={value!r} is not one of: {allowed}") from None


def oss_headers(*urls: str) -> dict[str, str]:
    """The header that lets the service read ``oss://`` inputs, when any input is one."""
    return dict(_OSS_RESOLVE) if any(u.startswith("oss://") for u in urls) else {}


def detect_body(model: Model, image_url: str, ratio: Ratio) -> dict[str, Any]:
    """A face-detect request."""
    return {
        "model": model.value,
        "input": {"image_url": image_url},
        "parameters": {"ratio": ratio.value},
    }


def emo_body(
    image_url: str,
    audio_url: str,
    *,
    face_bbox: Sequence[int],
    ext_bbox: Sequence[int],
    style_level: StyleLevel | str,
) -> dict[str, Any]:
    """An emo-v1 video-synthesis request."""
    return {
        "model": Model.EMO.value,
        "input": {
            "image_url": image_url,
            "audio_url": audio_url,
            "face_bbox": list(parse_bbox(face_bbox, name="face_bbox")),
            "ext_bbox": list(parse_bbox(ext_bbox, name="ext_bbox")),
        },
        "parameters": {"style_level": checked_enum(StyleLevel, "style_level", style_level).value},
    }


def emoji_body(
    image_url: str,
    *,
    driven_id: DrivenId | str,
    face_bbox: Sequence[int],
    ext_bbox: Sequence[int],
) -> dict[str, Any]:
    """An emoji-v1 video-synthesis request."""
    return {
        "model": Model.EMOJI.value,
        "input": {
            "image_url": image_url,
            "driven_id": checked_enum(DrivenId, "driven_id", driven_id).value,
            "face_bbox": list(parse_bbox(face_bbox, name="face_bbox")),
            "ext_bbox": list(parse_bbox(ext_bbox, name="ext_bbox")),
        },
    }


def list_params(
    *,
    status: TaskStatus | str | None,
    model: Model | str | None,
    start_time: datetime | None,
    end_time: datetime | None,
    page_size: int,
) -> dict[str, str]:
    """The task list's query but ``page_no`` (API.md §2.2); a bad filter is a ValueError."""
    if not 1 <= page_size <= 100:
        raise ValueError(f"page_size must be within 1..100, got {page_size}")
    params = {"page_size": str(page_size)}
    if status is not None:
        params["status"] = TaskStatus(status).value
    if model is not None:
        params["model_name"] = str(model)
    if start_time is not None:
        params["start_time"] = _list_time(start_time)
    if end_time is not None:
        params["end_time"] = _list_time(end_time, round_up=True)
    return params


def _list_time(value: datetime, *, round_up: bool = False) -> str:
    # The list API takes Beijing wall-clock time as YYYYMMDDhhmmss; an end time is rounded
    # up to the whole second so that the window still covers it.
    if value.tzinfo is not None:
        value = value.astimezone(SERVICE_TZ)
    if round_up and value.microsecond:
        value = value.replace(microsecond=0) + timedelta(seconds=1)
    return value.strftime("%Y%m%d%H%M%S")
