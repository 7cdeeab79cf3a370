"""The same web service on FastAPI (see app.py for the API); the queue lives in the lifespan.

uvicorn examples.web_service.fastapi_app:app
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles

from emoclient import DrivenId, JobHandle, JobQueue, QueueFullError

from .service import (
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


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app; its client and queue open at startup and close at shutdown."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        # Closing the queue cancels PENDING tasks (not billed) and lets RUNNING ones finish.
        async with open_queue(settings) as queue:
            yield {"queue": queue, "settings": settings}

    app = FastAPI(title="emoclient web service", lifespan=lifespan)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(HTTPException)
    async def error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, exc.status_code)  # as app.py answers

    async def job(request: Request, job_id: str) -> JobHandle:
        queue: JobQueue = request.state.queue
        handle = await queue.get(job_id)
        if handle is None:
            raise HTTPException(404, missing(job_id))
        return handle

    @app.get("/")
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/templates")
    async def templates() -> list[str]:
        return [str(driven_id) for driven_id in DrivenId]

    @app.post("/jobs", status_code=202)
    async def start(
        request: Request,
        image: Annotated[UploadFile | None, File()] = None,
        audio: Annotated[UploadFile | None, File()] = None,
        driven_id: Annotated[str, Form()] = "",
        style_level: Annotated[str, Form()] = "",
        ratio: Annotated[str, Form()] = "",
    ) -> Any:
        fields = {"driven_id": driven_id, "style_level": style_level, "ratio": ratio}
        try:
            uploads = [
                Upload(part.filename or "", await part.read()) if part else None
                for part in (image, audio)
            ]
            new = await read_job(request.state.settings, fields, *uploads)
            # A real app names the signed-in user: the queue serves owners in turn.
            client = request.client.host if request.client else "anonymous"
            handle = await request.state.queue.start(new, owner=client)
        except BadInput as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except QueueFullError as exc:
            retry_after = str(math.ceil(exc.retry_after))
            return JSONResponse({"error": str(exc)}, 429, headers={"Retry-After": retry_after})
        return {"id": handle.id}

    @app.get("/jobs/{job_id}")
    async def status(request: Request, job_id: str) -> dict[str, Any]:
        return view(await job(request, job_id))

    @app.get("/jobs/{job_id}/events")
    async def events(request: Request, job_id: str) -> StreamingResponse:
        handle = await job(request, job_id)
        headers = {"Cache-Control": "no-cache"}
        return StreamingResponse(progress(handle), media_type="text/event-stream", headers=headers)

    @app.get("/jobs/{job_id}/video")
    async def video(request: Request, job_id: str) -> FileResponse:
        handle = await job(request, job_id)
        if view(handle)["video"] is None or handle.path is None:
            raise HTTPException(404, f"no video: the job is {handle.state}")
        return FileResponse(handle.path, media_type="video/mp4")  # answers Range requests

    @app.delete("/jobs/{job_id}")
    async def delete(request: Request, job_id: str) -> JSONResponse:
        code, answer = await cancel(await job(request, job_id))
        return JSONResponse(answer, status_code=code)

    return app


app = create_app()
