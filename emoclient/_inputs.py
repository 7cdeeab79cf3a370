"""Inputs of the one-call helpers: a URL passes as it is, a local file is uploaded once per
model and reused while it has an hour left, even when many calls ask for it at once."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import anyio

from emoclient._models import Model, UploadedFile

__all__ = ["InputCache"]

# An upload cached for generate_* is reused only while it has this much life left.
_UPLOAD_REUSE_MARGIN = timedelta(hours=1)
Upload = Callable[[str, Model], Awaitable[UploadedFile]]


class InputCache:
    """The uploads of one client (and its copies), by absolute path and model."""

    def __init__(self) -> None:
        self._uploads: dict[tuple[str, Model], UploadedFile] = {}
        self._locks: dict[tuple[str, Model], anyio.Lock] = {}

    async def resolve(self, source: str | os.PathLike[str], model: Model, upload: Upload) -> str:
        """A URL the service can fetch for ``model``; ``upload`` puts a local file there."""
        text = os.fspath(source)
        if text.startswith(("http://", "https://", "oss://")):
            return text
        key = (_absolute(text), model)
        async with self._locks.setdefault(key, anyio.Lock()):
            cached = self._uploads.get(key)
            if cached is None or cached.expires_at - _UPLOAD_REUSE_MARGIN <= datetime.now(UTC):
                cached = await upload(text, model)
                self._uploads[key] = cached
        return cached.url


def _absolute(path: str) -> str:
    # getcwd() only, no file-system walk; cheap enough to call on the loop.
    return os.path.abspath(path)
