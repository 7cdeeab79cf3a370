"""Handlers of the two model routes: face-detect and video-synthesis."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import anyio
from aiohttp import web

from . import _errors as err
from ._core import EmulatorState
from ._driver import template_seconds
from ._errors import ApiError, json_response, new_request_id
from ._inspect import DetectOutcome, inspect_detect, inspect_submission
from ._keys import KEY_ID, STATE, account_of
from ._media import MSG_IMAGE_TOO_BIG
from ._state import Account, Task, TaskInputs, new_task_id
from ._validate import SynthesisRequest, parse_detect, parse_synthesis

OSS_RESOLVE_HEADER = "X-DashScope-OssResourceResolve"


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or the service's body-format error."""
    try:
        body = json.loads(await request.read())
    except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deep
        raise err.bad_request(err.BODY_INVALID) from exc
    if not isinstance(body, dict):
        raise err.bad_request(err.BODY_INVALID)
    return body


async def fetch_input(
    request: web.Request, url: object, *, model: str, max_bytes: int, too_big: ApiError
) -> bytes:
    """Download the resource ``url`` names for ``model``, as the service would."""
    state = request.app[STATE]
    resolve = request.headers.get(OSS_RESOLVE_HEADER, "").lower() == "enable"
    checked = state.fetcher.check_url(
        url, resolve_oss=resolve, oss_error=state.config.oss_without_resolve_error
    )
    data = await state.fetcher.fetch(
        checked,
        account=account_of(request).label,
        model=state.upload_model(model),
        now=state.now(),
        max_bytes=max_bytes,
    )
    if data is None:
        raise too_big
    return data


async def detect(request: web.Request) -> web.Response:
    """``POST /services/aigc/image2video/face-detect`` (API.md §1.1, §1.3)."""
    state = request.app[STATE]
    parsed = parse_detect(await read_json(request))
    max_bytes = state.config.image_max_bytes
    image = await fetch_input(
        request,
        parsed.image_url,
        model=parsed.model,
        max_bytes=max_bytes,
        too_big=ApiError(400, "InvalidURL", MSG_IMAGE_TOO_BIG),
    )
    outcome = await anyio.to_thread.run_sync(
        partial(inspect_detect, image, parsed, max_bytes=max_bytes)
    )
    output = (
        _emo_detect_output(outcome) if parsed.model == "emo-detect-v1" else _emoji_output(outcome)
    )
    return json_response(
        {"output": output, "usage": {"image_count": 1}, "request_id": new_request_id()}
    )


def _emo_detect_output(outcome: DetectOutcome) -> dict[str, Any]:
    if outcome.code is not None:
        return {
            "check_pass": False,
            "humanoid": outcome.humanoid,
            "code": outcome.code,
            "message": outcome.message,
        }
    return {
        "check_pass": True,
        "face_bbox": list(outcome.face_bbox or ()),
        "ext_bbox": list(outcome.ext_bbox or ()),
        "humanoid": outcome.humanoid,
    }


def _emoji_output(outcome: DetectOutcome) -> dict[str, Any]:
    if outcome.code is not None:
        return {"code": outcome.code, "message": outcome.message}
    return {
        "bbox_face": list(outcome.face_bbox or ()),
        "ext_bbox_face": list(outcome.ext_bbox or ()),
    }


async def submit(request: web.Request) -> web.Response:
    """``POST /services/aigc/image2video/video-synthesis`` (API.md §1.2, §1.4)."""
    state = request.app[STATE]
    if request.headers.get("X-DashScope-Async", "").lower() != "enable":
        raise ApiError.of(state.config.sync_call_error)
    parsed = parse_synthesis(await read_json(request))
    task = await _prepare_task(request, state, parsed)
    state.tasks[task.task_id] = task
    state.scheduler.submit(account_of(request), task, state.now())
    state.wake()
    return json_response(
        {
            "output": {"task_id": task.task_id, "task_status": "PENDING"},
            "request_id": task.request_id,
        }
    )


async def _prepare_task(
    request: web.Request, state: EmulatorState, parsed: SynthesisRequest
) -> Task:
    config = state.config
    image = await fetch_input(
        request,
        parsed.image_url,
        model=parsed.model,
        max_bytes=config.image_max_bytes,
        too_big=ApiError(400, "InvalidURL", MSG_IMAGE_TOO_BIG),
    )
    audio = None
    if parsed.model == "emo-v1":
        audio = await fetch_input(
            request,
            parsed.audio_url,
            model=parsed.model,
            max_bytes=config.audio_max_bytes,
            too_big=ApiError.of(err.AUDIO_TOO_LARGE),
        )
    inspection = await anyio.to_thread.run_sync(
        partial(
            inspect_submission,
            parsed,
            image,
            audio,
            image_max_bytes=config.image_max_bytes,
            audio_max_bytes=config.audio_max_bytes,
            audio_max_seconds=config.audio_max_seconds,
        )
    )
    if inspection.content_error is not None and config.content_errors == "submit":
        raise ApiError(400, *inspection.content_error)
    if inspection.audio is not None:
        seconds = inspection.audio.duration
    else:
        seconds = template_seconds(parsed.driven_id or "")
    return _new_task(
        account_of(request),
        request[KEY_ID],
        parsed,
        TaskInputs(
            image=image,
            ext_bbox=parsed.ext_bbox,
            output_seconds=seconds,
            video_ratio=parsed.video_ratio,
            audio=audio,
            driven_id=parsed.driven_id,
        ),
        now=state.now(),
        content_error=inspection.content_error,
    )


def _new_task(
    account: Account,
    key_id: str,
    parsed: SynthesisRequest,
    inputs: TaskInputs,
    *,
    now: float,
    content_error: tuple[str, str] | None,
) -> Task:
    return Task(
        task_id=new_task_id(),
        account=account.label,
        model=parsed.model,
        submit_time=now,
        inputs=inputs,
        key_id=key_id,
        request_id=new_request_id(),
        content_error=content_error,
    )
