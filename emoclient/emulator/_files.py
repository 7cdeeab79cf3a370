"""The second listener: the fake OSS upload host, signed result downloads, public files."""

from __future__ import annotations

from typing import Any

import anyio
from aiohttp import web

from ._core import EmulatorState
from ._faults import (
    bad_download,
    drop_connection,
    injected_error,
    should_drop,
    should_drop_after,
)
from ._keys import STATE
from ._results import parse_range, placeholder_video
from ._state import Task
from ._uploads_api import oss_error, oss_upload


@web.middleware
async def oss_refusals(request: web.Request, handler: Any) -> web.StreamResponse:
    """aiohttp's own refusals (no such path, wrong method, body too large) as OSS XML."""
    try:
        result: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code, message = _OSS_REFUSALS.get(exc.status, ("InvalidArgument", exc.reason))
        return oss_error(exc.status, code, message)
    return result


_OSS_REFUSALS = {
    404: ("NoSuchKey", "The specified key does not exist."),
    405: ("MethodNotAllowed", "The specified method is not allowed against this resource."),
    413: ("EntityTooLarge", "Your proposed upload exceeds the maximum allowed size."),
}


@web.middleware
async def count_foreign_auth(request: web.Request, handler: Any) -> web.StreamResponse:
    """Count requests that carried an Authorization header to this foreign host."""
    if "Authorization" in request.headers:
        request.app[STATE].foreign_auth_headers += 1
    result: web.StreamResponse = await handler(request)
    return result


@web.middleware
async def files_faults(request: web.Request, handler: Any) -> web.StreamResponse:
    """The error, drop and latency faults of the upload and result routes, OSS-style.

    An upload's answer can also be lost after it was stored (``drop_after_rate``); a result
    download has sent its body by then, so only its earlier faults apply.
    """
    route = _ROUTES.get(request.match_info.handler)
    if route is None:
        passed: web.StreamResponse = await handler(request)
        return passed
    state = request.app[STATE]
    faults = state.faults
    if faults.latency > 0:
        await anyio.sleep(faults.latency)
    if should_drop(faults, route, state.rng):
        return drop_connection(request)
    failure = injected_error(faults, route, state.rng)
    if failure is not None:
        code = "InternalError" if failure.status == 500 else "ServiceUnavailable"
        return oss_error(failure.status, code, "Please try again later.")
    result: web.StreamResponse = await handler(request)
    if not result.prepared and should_drop_after(faults, route, state.rng):
        return drop_connection(request)
    return result


async def public_file(request: web.Request) -> web.Response:
    """``GET /public/{name}``: a file hosted for tests at a plain http URL."""
    data = request.app[STATE].public_files.get(request.match_info["name"])
    if data is None:
        return oss_error(404, "NoSuchKey", "The specified key does not exist.")
    return web.Response(body=data, content_type="application/octet-stream")


async def _result_bytes(state: EmulatorState, task_id: str) -> tuple[bytes, Task] | None:
    task = state.tasks.get(task_id)
    if task is None or task.status != "SUCCEEDED":
        return None
    if task.result_path is not None:
        return await anyio.Path(task.result_path).read_bytes(), task
    return placeholder_video(task), task


def _refusal(request: web.Request, state: EmulatorState) -> web.Response | None:
    query = request.query
    expires, signature = query.get("Expires", ""), query.get("Signature", "")
    if not expires or not signature:
        return oss_error(403, "AccessDenied", "You have no right to access this object.")
    if not state.signer.verify(request.match_info["name"], expires, signature):
        return oss_error(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        )
    if int(expires) < state.now():
        return oss_error(403, "AccessDenied", "Request has expired.")
    return None


async def result_download(request: web.Request) -> web.StreamResponse:
    """``GET /results/{name}?Expires=&OSSAccessKeyId=&Signature=``, with ``Range`` support."""
    state = request.app[STATE]
    refusal = _refusal(request, state)
    if refusal is not None:
        return refusal
    found = await _result_bytes(state, request.match_info["name"].removesuffix(".mp4"))
    if found is None:
        return oss_error(404, "NoSuchKey", "The specified key does not exist.")
    data, task = found
    account = state.account(task.account)
    state.count(account, "result_download", task.model)
    if state.faults.download_fault is not None:
        return await bad_download(state.faults.download_fault, request, data)
    wanted = parse_range(request.headers.get("Range"), len(data))
    if wanted is False:
        return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
    response = web.StreamResponse(
        status=200 if wanted is None else 206,
        headers={"Accept-Ranges": "bytes", "Content-Type": "video/mp4"},
    )
    body = data
    if isinstance(wanted, tuple):
        body = data[wanted[0] : wanted[1] + 1]
        response.headers["Content-Range"] = f"bytes {wanted[0]}-{wanted[1]}/{len(data)}"
    response.content_length = len(body)
    await response.prepare(request)
    cut = state.faults.download_cut_bytes
    sent = body if cut is None else body[:cut]
    await response.write(sent)
    account.result_bytes_served += len(sent)
    if cut is not None and len(sent) < len(body):
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    return response


_ROUTES: dict[object, str] = {oss_upload: "oss_upload", result_download: "result_download"}


def create_files_app(state: EmulatorState) -> web.Application:
    """The application of the fake OSS and result host, sharing ``state``."""
    app = web.Application(
        middlewares=[oss_refusals, count_foreign_auth, files_faults],
        client_max_size=1024**3 + 1024**2,
    )
    app[STATE] = state
    app.router.add_post("/", oss_upload)
    app.router.add_get("/results/{name}", result_download)
    app.router.add_get("/public/{name}", public_file)
    return app
