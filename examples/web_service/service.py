"""What both apps share: the client and queue of the app's life, a form read into a job,
progress as server-sent events, and the answer to a cancel."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
from pydantic import ValidationError

from emoclient import (
    BatchBusyError,
    EmoClient,
    EmoError,
    EmojiJob,
    EmoJob,
    Job,
    JobHandle,
    JobQueue,
    JobState,
    SchedulerOptions,
    preflight,
)

STATIC = Path(__file__).resolve().parent / "static"
MAX_UPLOAD = 32 * 1024 * 1024  # the service takes images up to 10 MB and audio up to 15 MB
DEMO_KEY = "sk-web-service-demo"


@dataclass(frozen=True)
class Settings:
    """Where the app keeps its files, and how it makes its client and queue."""

    data_dir: Path = Path("web-service-data")
    #: Keyword arguments of EmoClient; empty: DASHSCOPE_API_KEY and DASHSCOPE_HTTP_BASE_URL.
    client: Mapping[str, Any] = field(default_factory=dict)
    #: The queue's scheduler options (tests tighten the polls); None: the defaults.
    options: SchedulerOptions | None = None
    #: Jobs that may wait for their turn; past that, POST /jobs answers 429.
    max_queued: int = 100


@dataclass(frozen=True)
class Upload:
    """An uploaded file: the name the browser gave it, and its bytes."""

    filename: str
    data: bytes


class BadInput(ValueError):
    """The request cannot make a job; the message says why (the app answers 400)."""


@asynccontextmanager
async def open_queue(settings: Settings) -> AsyncIterator[JobQueue]:
    """One client and one queue for the app's whole life."""
    async with AsyncExitStack() as stack:
        settings = await stack.enter_async_context(_backend(settings))
        client = await stack.enter_async_context(EmoClient(**settings.client))
        # A queue locks its folder, so each worker process (uvicorn --workers N) takes the
        # first free one; the account store keeps them all inside the account's limits.
        for n in range(1, 65):
            folder = settings.data_dir / f"videos-{n}"
            try:
                queue = JobQueue(
                    client, out_dir=folder, options=settings.options, max_queued=settings.max_queued
                )
                await stack.enter_async_context(queue)
                break
            except BatchBusyError:
                continue
        else:
            raise RuntimeError(f"every videos-N folder in {settings.data_dir} is in use")
        yield queue


@asynccontextmanager
async def _backend(settings: Settings) -> AsyncIterator[Settings]:
    if settings.client or os.environ.get("DASHSCOPE_API_KEY"):
        yield settings  # EmoClient reads DASHSCOPE_API_KEY and DASHSCOPE_HTTP_BASE_URL
        return
    from emoclient.emulator import EmulatorConfig, serve

    # No key: an emulator in this process. render=True makes real H.264 MP4s that a browser
    # plays; at 20x speed a task takes seconds instead of a minute.
    config = EmulatorConfig(speed=20.0, render=True, api_keys=frozenset({DEMO_KEY}))
    async with serve(config) as emulator:
        print(f"No DASHSCOPE_API_KEY: using an emulator at {emulator.base_url}", flush=True)
        # Its tasks end with this process, so each run keeps its videos in a folder of its own.
        run = settings.data_dir / f"emulator-{urlsplit(emulator.root_url).port}"
        client = {"api_key": DEMO_KEY, "base_url": emulator.base_url}
        yield dataclasses.replace(settings, client=client, data_dir=run)


async def read_job(
    settings: Settings, fields: Mapping[str, str], image: Upload | None, audio: Upload | None
) -> Job:
    """The job a form asks for: ``image`` and ``audio`` (EMO) or ``driven_id`` (Emoji)."""
    driven_id = fields.get("driven_id") or None
    options = {k: fields[k] for k in ("style_level", "ratio") if fields.get(k)}
    if image is None:
        raise BadInput("send a portrait as the file field `image`")
    if (audio is None) == (driven_id is None):
        raise BadInput(
            "send one of an `audio` file (EMO: a talking head) "
            "and a `driven_id` (Emoji: one of the 20 expression templates)"
        )
    if driven_id is not None and options:
        raise BadInput("style_level and ratio are EMO options; an Emoji video is always 1:1")
    uploads = [upload for upload in (image, audio) if upload is not None]
    paths = [await _save(settings, upload) for upload in uploads]
    try:
        if driven_id is not None:
            job: Job = EmojiJob(image=paths[0], driven_id=driven_id, label=image.filename)
        else:
            job = EmoJob(image=paths[0], audio=paths[-1], label=image.filename, **options)
    except ValidationError as exc:
        raise BadInput("; ".join(_describe(error) for error in exc.errors())) from None
    problems = await preflight(job)  # local checks: format, size, length; nothing is billed
    message = "; ".join(f"{p.field}: {p.message}" for p in problems)
    for path, upload in zip(paths, uploads, strict=True):  # the user knows the upload's name
        message = message.replace(str(path), upload.filename)
    if message:
        raise BadInput(message)
    return job


def _describe(error: Mapping[str, Any]) -> str:
    message = str(error["msg"])
    if error["type"] == "value_error":  # our validators' messages name the field already
        return message.removeprefix("Value error, ")
    return f"{'.'.join(str(part) for part in error['loc'])}: {message}"


async def _save(settings: Settings, upload: Upload) -> Path:
    # Named by content: the same upload is the same file, hence the same job (and handle).
    suffix = Path(upload.filename).suffix.lower()
    name = hashlib.sha256(upload.data).hexdigest()[:24] + suffix
    folder = anyio.Path(settings.data_dir / "uploads")
    await folder.mkdir(parents=True, exist_ok=True)
    path = await (folder / name).resolve()
    # Written aside, then renamed: a job reading the same file meanwhile never sees half of it.
    partial = path.with_name(f".{name}.{uuid.uuid4().hex}.part")
    await partial.write_bytes(upload.data)
    await partial.replace(path)
    return Path(path)


def view(handle: JobHandle) -> dict[str, Any]:
    """The job as the API shows it: its snapshot, with the video's URL once it is saved.

    With several workers, a request may reach one that does not hold the job: the queue
    then answers from the account's job board (``worker`` names the holder), and
    ``served_by`` says which process answered.
    """
    done = handle.state is JobState.SUCCEEDED and handle.path is not None
    video = f"/jobs/{handle.id}/video" if done else None
    return {**handle.snapshot(), "video": video, "served_by": os.getpid()}


async def progress(handle: JobHandle) -> AsyncGenerator[str, None]:
    """The job's progress as server-sent events: each event, then ``done`` with the job."""
    async for event in handle.events():
        yield f"data: {json.dumps({**event.to_json(), 'state': handle.state.value})}\n\n"
    yield f"event: done\ndata: {json.dumps(view(handle))}\n\n"


async def cancel(handle: JobHandle) -> tuple[int, dict[str, Any]]:
    """Cancel the job: the HTTP status and an answer that says whether it is billed."""
    try:
        canceled = not handle.state.is_final and await handle.cancel()
    except EmoError as exc:  # another worker holds the job and did not answer
        return 503, {"canceled": False, "message": str(exc)}
    if canceled:
        return 200, {"canceled": True, "billed": False, "message": "cancelled; nothing is billed"}
    if handle.billed_anyway and not handle.state.is_final:
        message = "its task already runs at the service, so it is billed; the video will be saved"
        return 200, {"canceled": False, "billed": True, "message": message}
    return 409, {"canceled": False, "message": f"the job has already ended: {handle.state}"}


def missing(job_id: str) -> str:
    """What to say about an unknown job id."""
    return (
        f"no job {job_id}: no worker of this account has it, nor the journal of an earlier "
        "run (ids are the `id` answers of POST /jobs)"
    )
