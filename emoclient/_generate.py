"""The one-call helpers behind ``EmoClient.generate_emo`` / ``generate_emoji``.

Temporary-storage files are bound to the model named at upload, so a local portrait is
uploaded once for the detect model and once for the synthesis model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from emoclient._models import DrivenId, Model, Ratio, StyleLevel

if TYPE_CHECKING:
    from emoclient._client import EmoClient

__all__ = ["generate_emo", "generate_emoji"]


async def _resolve_all(
    client: EmoClient, *pairs: tuple[str | os.PathLike[str], Model]
) -> list[str]:
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
    client: EmoClient,
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
    async with client.limits.task_slot():
        submitted = await client.submit_emo(
            image_url, audio_url, face_bbox=face, ext_bbox=ext, style_level=style_level
        )
        task = await client.wait(submitted.task_id, timeout=wait_timeout)
    assert task.video_url is not None  # a SUCCEEDED task always carries its URL
    return await client.download(task.video_url, out)


async def generate_emoji(
    client: EmoClient,
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
    async with client.limits.task_slot():
        submitted = await client.submit_emoji(
            image_url, driven_id=driven_id, face_bbox=face, ext_bbox=ext
        )
        task = await client.wait(submitted.task_id, timeout=wait_timeout)
    assert task.video_url is not None  # a SUCCEEDED task always carries its URL
    return await client.download(task.video_url, out)
