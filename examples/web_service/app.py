"""The web service on aiohttp: one EmoClient and one JobQueue for the app's whole life.

    POST   /jobs              multipart: image, and audio (EMO) or driven_id (Emoji) -> {"id"}
    GET    /jobs/{id}         the job (state, task id, error, video URL)
    GET    /jobs/{id}/events  its progress, live, as server-sent events
    GET    /jobs/{id}/video   the MP4 (with Range, so a browser can seek)
    DELETE /jobs/{id}         cancel it; the answer says whether it is billed anyway
    GET    /templates         the 20 Emoji templates (driven_id values)
    GET    /                  the page (static/index.html)

Run it with ``python -m examples.web_service`` (see README.md).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import AsyncIterator

import anyio.to_thread
from aiohttp import web

from emoclient import DrivenId, JobHandle, JobQueue, QueueFullError

from .service import (
    MAX_UPLOAD,
    STATIC,
    BadInput,
    Settings,
    Upload,
    cancel,
    missing,
    open_queue,
    progress,
    read_job,
    view,
)

SETTINGS = web.AppKey("settings", Settings)
QUEUE = web.AppKey("queue", JobQueue)
routes = web.RouteTableDef()


def create_app(settings: Settings | None = None) -> web.Application:
    """The app; its client and queue open at startup and close at cleanup."""
    app = web.Application(client_max_size=MAX_UPLOAD)
    app[SETTINGS] = settings or Settings()
    app.cleanup_ctx.append(_queue_for_life)
    app.add_routes(routes)
    app.router.add_static("/static", STATIC)
    return app


async def _queue_for_life(app: web.Application) -> AsyncIterator[None]:
    # Closing the queue cancels PENDING tasks (not billed) and lets RUNNING ones finish.
    async with open_queue(app[SETTINGS]) as queue:
        app[QUEUE] = queue
        yield


def _not_found(message: str) -> web.HTTPNotFound:
    return web.HTTPNotFound(text=json.dumps({"error": message}), content_type="application/json")


async def _job(request: web.Request) -> JobHandle:
    job_id = request.match_info["id"]
    handle = await request.app[QUEUE].get(job_id)
    if handle is None:
        raise _not_found(missing(job_id))
    return handle


@routes.get("/")
async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


@routes.get("/templates")
async def templates(request: web.Request) -> web.Response:
    return web.json_response([str(driven_id) for driven_id in DrivenId])


@routes.post("/jobs")
async def start(request: web.Request) -> web.Response:
    form = await request.post()
    files: dict[str, Upload] = {}
    for name in ("image", "audio"):
        part = form.get(name)
        if isinstance(part, web.FileField):  # aiohttp spools uploads to a temporary file
            files[name] = Upload(part.filename, await anyio.to_thread.run_sync(part.file.read))
    fields = {name: value for name, value in form.items() if isinstance(value, str)}
    try:
        job = await read_job(request.app[SETTINGS], fields, files.get("image"), files.get("audio"))
        # A real app names the signed-in user: the queue serves owners in turn.
        handle = await request.app[QUEUE].start(job, owner=request.remote or "anonymous")
    except BadInput as exc:
        return web.json_response({"error": str(exc)}, status=400)
    except QueueFullError as exc:
        retry_after = str(math.ceil(exc.retry_after))
        return web.json_response(
            {"error": str(exc)}, status=429, headers={"Retry-After": retry_after}
        )
    return web.json_response({"id": handle.id}, status=202)


@routes.get("/jobs/{id}")
async def status(request: web.Request) -> web.Response:
    return web.json_response(view(await _job(request)))


@routes.get("/jobs/{id}/events")
async def events(request: web.Request) -> web.StreamResponse:
    handle = await _job(request)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    async with contextlib.aclosing(progress(handle)) as frames:
        try:
            async for frame in frames:
                await response.write(frame.encode())
        except ConnectionResetError:
            pass  # the browser closed the page or the stream: the job goes on
    return response


@routes.get("/jobs/{id}/video")
async def video(request: web.Request) -> web.StreamResponse:
    handle = await _job(request)
    if view(handle)["video"] is None or handle.path is None:
        raise _not_found(f"no video: the job is {handle.state}")
    return web.FileResponse(handle.path, headers={"Content-Type": "video/mp4"})


@routes.delete("/jobs/{id}")
async def delete(request: web.Request) -> web.Response:
    code, answer = await cancel(await _job(request))
    return web.json_response(answer, status=code)
