"""The length of audio given as a URL, read from its header: once per distinct URL.

EMO bills and renders the audio's length, and the scheduler times its queries by it. A local
file is probed whole; a URL is read with one ranged GET of its first 64 KiB (a second one past
an MP3's ID3 tags when they are longer), never with the API key, within a bounded time. When
the length still cannot be told (the host refuses, a format whose length needs the whole
file), the answer is None and the scheduler falls back to what the service's answers taught.
"""

from __future__ import annotations

import anyio
import anyio.to_thread

from emoclient._answers import redact_url
from emoclient._batch.probe import MediaFormatError, audio_length, id3_size
from emoclient._client import EmoClient
from emoclient._exceptions import EmoError
from emoclient._log import logger

__all__ = ["RemoteLengths"]

_HEAD_BYTES = 64 * 1024
_REMEMBERED = 4096  # URLs whose answer is kept
#: ID3 tags (cover art) longer than this are not skipped: the length stays unknown.
_MAX_TAGS = 4 * 1024 * 1024


class RemoteLengths:
    """Seconds of audio behind URLs, each URL asked once; concurrent askers share the answer."""

    def __init__(
        self, client: EmoClient, *, head_bytes: int = _HEAD_BYTES, within: float = 10.0
    ) -> None:
        self._client = client
        self._head_bytes = head_bytes
        self._within = within  # seconds allowed for each read
        self._known: dict[str, float | None] = {}
        self._locks: dict[str, anyio.Lock] = {}
        self.reads = 0  # ranged GETs sent (for tests and statistics)

    async def seconds(self, url: str) -> float | None:
        """The audio's duration, or None when it cannot be told from its header."""
        if not url.startswith(("http://", "https://")):
            return None  # oss:// files are the service's own; nothing to read without a key
        if url in self._known:
            return self._known[url]
        lock = self._locks.setdefault(url, anyio.Lock())
        try:
            async with lock:
                if url not in self._known:
                    if len(self._known) >= _REMEMBERED:  # a long-lived queue: forget the oldest
                        del self._known[next(iter(self._known))]
                    self._known[url] = await self._probe(url)
                return self._known[url]
        finally:
            if not lock.statistics().tasks_waiting and self._locks.get(url) is lock:
                del self._locks[url]

    async def _probe(self, url: str) -> float | None:
        try:
            self.reads += 1
            head, total = await self._client.read_head(
                url, size=self._head_bytes, within=self._within
            )
            tags = id3_size(head)
            if tags >= len(head) and (total is None or tags < total) and tags <= _MAX_TAGS:
                self.reads += 1
                head, _ = await self._client.read_head(
                    url, start=tags, size=self._head_bytes, within=self._within
                )
                total = None if total is None else total - tags
            seconds = await anyio.to_thread.run_sync(audio_length, head, total)
        except (EmoError, MediaFormatError) as exc:
            logger.info("length of %s unknown: %s", redact_url(url), exc)
            return None
        return seconds if 0 < seconds < 3600 else None
