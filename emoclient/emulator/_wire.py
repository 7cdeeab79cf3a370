"""The JSON bodies of the task APIs, per model, built from the emulator's own state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from ._state import Task

JSON = dict[str, Any]
#: The only region EMO and Emoji are offered in (API.md §0).
REGION = "cn-beijing"


def format_time(epoch: float, *, utc_offset_hours: float) -> str:
    """``YYYY-MM-DD HH:mm:ss.SSS`` in the service's timezone (UTC+8 by default, [I])."""
    zone = timezone(timedelta(hours=utc_offset_hours))
    moment = datetime.fromtimestamp(epoch, tz=UTC).astimezone(zone)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def epoch_ms(epoch: float | None) -> int | None:
    """Epoch milliseconds, as the list API writes times."""
    return None if epoch is None else round(epoch * 1000)


def task_output(task: Task, *, status: str, video_url: str | None, utc_offset_hours: float) -> JSON:
    """``output`` of ``GET /tasks/{id}`` for ``task`` shown with ``status``."""
    output: JSON = {"task_id": task.task_id, "task_status": status}
    if status == "UNKNOWN":
        return output
    times = {
        "submit_time": task.submit_time,
        "scheduled_time": task.scheduled_time,
        "end_time": task.end_time,
    }
    for name, value in times.items():
        if value is not None:
            output[name] = format_time(value, utc_offset_hours=utc_offset_hours)
    if status == "FAILED":
        output["code"] = task.code
        output["message"] = task.message
    if status == "SUCCEEDED" and video_url is not None:
        if task.model == "emo-v1":
            output["results"] = {"video_url": video_url}
        else:
            output["video_url"] = video_url
    return output


def task_usage(task: Task) -> JSON:
    """``usage`` of a SUCCEEDED task: EMO float seconds and ratio, Emoji int and "standard"."""
    if task.model == "emo-v1":
        return {
            "video_duration": round(task.inputs.output_seconds, 2),
            "video_ratio": task.inputs.video_ratio,
        }
    return {"video_duration": round(task.inputs.output_seconds), "video_ratio": "standard"}


def list_entry(task: Task, *, status: str, request_id: str) -> JSON:
    """One row of ``GET /tasks`` (the list API's own shape, epoch-millisecond times).

    ``api_key_id`` names the key that submitted the task, the two caller ids its account.
    """
    return {
        "api_key_id": task.key_id,
        "caller_parent_id": task.account,
        "caller_uid": task.account,
        "end_time": epoch_ms(task.end_time),
        "gmt_create": epoch_ms(task.submit_time),
        "model_name": task.model,
        "region": REGION,
        "request_id": request_id,
        "start_time": epoch_ms(task.scheduled_time),
        "status": status,
        "task_id": task.task_id,
        "user_api_unique_key": f"apikey:v1:aigc:image2video:video-synthesis:{task.model}",
    }
