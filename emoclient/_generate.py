"""The one-call helpers behind ``EmoClient.generate_emo`` / ``generate_emoji``.

Temporary-storage files are bound to the model named at upload, so a local portrait is
uploaded once for the detect model and once for the synthesis model.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol

import anyio

from emoclient._models import (
    Detection,
    DrivenId,
    Model,
    Ratio,
    StyleLevel,
    SubmittedTask,
    Task,
)

__all__ = ["Client", "generate_emo", "generate_emoji"]

logger = logging.getLogger("emoclient")
# How long a cancelled call may still take to cancel its task at the service.
_CANCEL_GRACE = 10.0


class _Limits(Protocol):
    def task_slot(self, model: Model) -> AbstractAsyncContextManager[None]: ...


class Client(Protocol):
    """The calls of ``EmoClient`` the helpers use (so this module need not import it)."""

    @property
    def limits(self) -> _Limits: ...

    async def resolve_input(self, source: str | os.PathLike[str], *, model: Model | str) -> str: ...

    async def detect_emo(self, image_url: str, *, ratio: Ratio | str = ...) -> Detection: ...

    async def detect_emoji(self, image_url: str) -> Detection: ...

    async def submit_emo(
        self,
        image_url: str,
        audio_url: str,
        *,
        face_bbox: Sequence[int],
        ext_bbox: Sequence[int],
        style_level: StyleLevel | str = ...,
    ) -> SubmittedTask: ...

    async def submit_emoji(
        self,
        image_url: str,
        *,
        driven_id: DrivenId | str,
        face_bbox: Sequence[int],
        ext_bbox: Sequence[int],
    ) -> SubmittedTask: ...

    async def wait(self, task_id: str, *, timeout: float | None = ...) -> Task: ...  # noqa: ASYNC109

    async def download(self, url: str, path: str | os.PathLike[str]) -> Path: ...

    async def cancel(self, task_id: str) -> None: ...


async def _resolve_all(client: Client, *pairs: tuple[str | os.PathLike[str], Model]) -> list[str]:
    urls = [""] * len(pairs)

    async def one(index: int, source: str | os.PathLike[str], model: Model) -> None:
        urls[index] = await client.resolve_input(source, model=model)

    failure: BaseException | None = None
    try:
        async with anyio.create_task_group() as tg:
            for index, (source, model) in enumerate(pairs):
                tg.start_soon(one, index, source, model)
    except BaseExceptionGroup as group:
        # Callers catch UploadError, not a group; the uploads of one file fail alike, so the
        # first failure speaks for the others. Raised outside the handler to keep its cause.
        failure = group.exceptions[0]
    if failure is not None:
        raise failure
    return urls


async def generate_emo(
    client: Client,
    image: str | os.PathLike[str],
    audio: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str],
    ratio: Ratio | str,
    style_level: StyleLevel | str,
    wait_timeout: float | None,
) -> Path:
    """Upload, detect, submit, wait and download one emo-v1 video."""
    detect_url, image_url, audio_url = await _resolve_all(
        client, (image, Model.EMO_DETECT), (image, Model.EMO), (audio, Model.EMO)
    )
    detection = await client.detect_emo(detect_url, ratio=ratio)
    face, ext = detection.boxes(image=os.fspath(image))
    async with client.limits.task_slot(Model.EMO):
        # A cancel during the POST would lose the new task's id, and the task would run
        # billed: the submit finishes (shielded, briefly), then the cancel reaches the wait.
        with anyio.CancelScope(shield=True):
            submitted = await client.submit_emo(
                image_url, audio_url, face_bbox=face, ext_bbox=ext, style_level=style_level
            )
        task = await _wait_or_cancel(client, submitted.task_id, wait_timeout)
    assert task.video_url is not None  # a SUCCEEDED task always carries its URL
    return await client.download(task.video_url, out)


async def _wait_or_cancel(client: Client, task_id: str, timeout: float | None) -> Task:  # noqa: ASYNC109
    """Wait for the task; when the caller is cancelled meanwhile (a closed HTTP request, a
    timeout around the call), cancel the task at the service too while it is PENDING, so
    nothing is billed for a video nobody waits for."""
    try:
        return await client.wait(task_id, timeout=timeout)
    except anyio.get_cancelled_exc_class():
        with anyio.move_on_after(_CANCEL_GRACE, shield=True):
            try:
                await client.cancel(task_id)
                logger.info("generate_*: cancelled task %s at the service (not billed)", task_id)
            except Exception as exc:  # it runs already: the service cannot stop it
                logger.warning(
                    "generate_* was cancelled, but task %s could not be (%s): it is billed; "
                    "its video can still be fetched with wait() and download()",
                    task_id,
                    exc,
                )
        raise


async def generate_emoji(
    client: Client,
    image: str | os.PathLike[str],
    driven_id: DrivenId | str,
    *,
    out: str | os.PathLike[str],
    wait_timeout: float | None,
) -> Path:
    """Upload, detect, submit, wait and download one emoji-v1 video."""
    detect_url, image_url = await _resolve_all(
        client, (image, Model.EMOJI_DETECT), (image, Model.EMOJI)
    )
    detection = await client.detect_emoji(detect_url)
    face, ext = detection.boxes(image=os.fspath(image))
    async with client.limits.task_slot(Model.EMOJI):
        with anyio.CancelScope(shield=True):  # see generate_emo
            submitted = await client.submit_emoji(
                image_url, driven_id=driven_id, face_bbox=face, ext_bbox=ext
            )
        task = await _wait_or_cancel(client, submitted.task_id, wait_timeout)
    assert task.video_url is not None  # a SUCCEEDED task always carries its URL
    return await client.download(task.video_url, out)
