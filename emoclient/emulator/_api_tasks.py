"""Handlers of the generic task API: query, list and cancel."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web

from . import _errors as err
from ._config import EmulatorConfig
from ._core import EmulatorState
from ._errors import ApiError, json_response, new_request_id
from ._keys import STATE, account_of
from ._state import Task
from ._wire import REGION, list_entry, task_output, task_usage

LIST_STATUSES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED")


def visible_status(state: EmulatorState, task: Task) -> str:
    """The status the service reports now: UNKNOWN once the task id has expired."""
    if state.now() >= task.submit_time + state.config.task_ttl_seconds:
        return "UNKNOWN"
    return task.status


def _owned_task(request: web.Request) -> tuple[str, Task | None]:
    # The account owns its tasks: any of its keys may see and cancel them (API.md §2.1).
    state = request.app[STATE]
    task_id = request.match_info["task_id"]
    task = state.tasks.get(task_id)
    if task is None or task.account != account_of(request).label:
        return task_id, None
    return task_id, task


def result_url(request: web.Request, task: Task) -> str:
    """The signed result URL of a SUCCEEDED task (valid until 24 h after its end)."""
    state = request.app[STATE]
    base = state.files_base(str(request.url.origin()))
    expires = math.floor((task.end_time or 0.0) + state.config.result_url_ttl_seconds)
    return state.signer.url(base, f"{task.task_id}.mp4", expires)


async def get_task(request: web.Request) -> web.Response:
    """``GET /tasks/{task_id}`` (API.md §2.1): UNKNOWN with HTTP 200 for unknown ids."""
    state = request.app[STATE]
    task_id, task = _owned_task(request)
    request_id = new_request_id()
    if task is None:
        output = {"task_id": task_id, "task_status": "UNKNOWN"}
        return json_response({"request_id": request_id, "output": output})
    status = visible_status(state, task)
    url = result_url(request, task) if status == "SUCCEEDED" else None
    body: dict[str, Any] = {
        "request_id": request_id,
        "output": task_output(
            task, status=status, video_url=url, utc_offset_hours=state.config.utc_offset_hours
        ),
    }
    if status == "SUCCEEDED":
        body["usage"] = task_usage(task)
    return json_response(body)


async def cancel_task(request: web.Request) -> web.Response:
    """``POST /tasks/{task_id}/cancel`` (API.md §2.3): PENDING tasks only."""
    state = request.app[STATE]
    _, task = _owned_task(request)
    if task is None or visible_status(state, task) != "PENDING":
        raise ApiError.of(err.CANCEL_REFUSED)
    if not state.scheduler.cancel(account_of(request), task, state.now()):
        raise ApiError.of(err.CANCEL_REFUSED)
    return json_response({"request_id": new_request_id(), **state.config.cancel_success_extra})


@dataclass(frozen=True)
class _ListQuery:
    page_no: int
    page_size: int
    status: str | None
    model: str | None
    since: float | None
    until: float | None
    api_key_id: str | None
    region: str | None

    def wants(self, task: Task, shown: str) -> bool:
        if shown == "UNKNOWN" or (self.status and shown != self.status):
            return False
        if self.model and task.model != self.model:
            return False
        if self.api_key_id and task.key_id != self.api_key_id:
            return False
        if self.region and self.region != REGION:
            return False
        too_early = self.since is not None and task.submit_time < self.since
        too_late = self.until is not None and task.submit_time > self.until
        return not (too_early or too_late)


def _list_query(request: web.Request, config: EmulatorConfig) -> _ListQuery:
    query = request.query
    status = query.get("status")
    if status is not None and status not in LIST_STATUSES:
        raise err.bad_request()
    page_size = _int_param(query.get("page_size", "10"), minimum=1)
    return _ListQuery(
        page_no=_int_param(query.get("page_no", "1"), minimum=1),
        page_size=min(page_size, config.list_page_size_cap),
        status=status,
        model=query.get("model_name"),
        since=_time_param(query.get("start_time"), config.utc_offset_hours),
        until=_time_param(query.get("end_time"), config.utc_offset_hours),
        api_key_id=query.get("api_key_id"),
        region=query.get("region"),
    )


async def list_tasks(request: web.Request) -> web.Response:
    """``GET /tasks`` (API.md §2.2): the list API's own shape, newest first."""
    state = request.app[STATE]
    query = _list_query(request, state.config)
    account = account_of(request)
    shown = ((task, visible_status(state, task)) for task in reversed(account.tasks))
    rows = [(task, status) for task, status in shown if query.wants(task, status)]
    size = query.page_size
    page = rows[(query.page_no - 1) * size : query.page_no * size]
    return json_response(
        {
            "total": len(rows),
            "data": [list_entry(t, status=s, request_id=t.request_id) for t, s in page],
            "total_page": max(1, math.ceil(len(rows) / size)),
            "page_no": query.page_no,
            "request_id": new_request_id(),
            "page_size": size,
        }
    )


def _int_param(value: str, *, minimum: int) -> int:
    # isdigit() alone accepts digits int() refuses, such as "²".
    if not (value.isascii() and value.isdigit()) or int(value) < minimum:
        raise err.bad_request()
    return int(value)


def _time_param(value: str | None, utc_offset_hours: float) -> float | None:
    """``YYYYMMDDhhmmss`` in the service's timezone, as epoch seconds."""
    if value is None or value == "":
        return None
    try:
        moment = datetime.strptime(value, "%Y%m%d%H%M%S")
    except ValueError as exc:
        raise err.bad_request() from exc
    zone = timezone(timedelta(hours=utc_offset_hours))
    return moment.replace(tzinfo=zone).timestamp()
