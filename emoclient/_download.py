"""Saving a result video: stream to a temporary file beside the target, verify, rename.

The video is never held in memory. A transfer that breaks is resumed with ``Range`` when the
server answers 206; otherwise it starts over. It gives up after a few attempts in a row that
bring no new byte. The whole download has a size cap and a deadline (the announced size at a
minimum speed, never less than ``min_seconds``), and what arrives must be an MP4 (an ``ftyp``
box first) no longer than announced. Whatever happens, the target path either holds the
complete file or is untouched.
"""

from __future__ import annotations

import functools
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import aiohttp
import anyio

from emoclient._answers import error_from_response, redact_url, scrub_urls
from emoclient._exceptions import (
    DownloadError,
    RateLimitError,
    ResultURLExpiredError,
    TransportError,
)
from emoclient._log import logger
from emoclient._retry import is_retryable_status
from emoclient._transport import Transport

__all__ = ["MIN_DOWNLOAD_SECONDS", "download_file"]

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_CHUNK = 256 * 1024
_BATCH = 4 * 1024 * 1024
_RETRY_HINT = "Query the task for a fresh video_url and retry."
MIN_DOWNLOAD_SECONDS = 60.0
"""The shortest deadline a download gets, however small the video."""


class _Broken(Exception):
    """The body stopped early; the partial file may be resumed."""


class _Refused(_Broken):
    """The result host answered an error worth another try (408, 429, 5xx): the partial
    file is kept and resumed after a pause."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Budget:
    """The size cap and the deadline of one download; the deadline tightens once the server
    announces the size."""

    def __init__(self, url: str, *, max_bytes: int, min_speed: float, min_seconds: float) -> None:
        self.where = redact_url(url)
        self.url = url
        self.max_bytes = max_bytes
        self.min_speed = min_speed
        self.min_seconds = min_seconds
        self.started = anyio.current_time()
        self.seconds = self._seconds_for(max_bytes)
        self.scope = anyio.CancelScope(deadline=self.started + self.seconds)

    def _seconds_for(self, size: int) -> float:
        return max(self.min_seconds, size / self.min_speed)

    def announce(self, total: int) -> None:
        """The server says the video has ``total`` bytes."""
        if total > self.max_bytes:
            raise self.error(
                f"{self.where} announces {total} bytes, over the limit of {self.max_bytes} "
                "(EMOCLIENT_DOWNLOAD_MAX_MB)"
            )
        self.seconds = min(self.seconds, self._seconds_for(total))
        self.scope.deadline = self.started + self.seconds

    def check(self, position: int, total: int | None) -> None:
        """Refuse a body that runs past its announced size or the cap."""
        if total is not None and position > total:
            raise self.error(f"{self.where} sent more than the {total} bytes it announced")
        if position > self.max_bytes:
            raise self.error(
                f"{self.where} sent more than {self.max_bytes} bytes "
                "(EMOCLIENT_DOWNLOAD_MAX_MB) and did not stop"
            )

    def too_slow(self) -> DownloadError:
        return self.error(
            f"Downloading {self.where} did not finish within {self.seconds:.0f} s (slower than "
            f"{self.min_speed / 1024:g} KiB/s, EMOCLIENT_DOWNLOAD_MIN_KBPS)"
        )

    def error(self, what: str) -> DownloadError:
        return DownloadError(f"{what}; nothing was saved. {_RETRY_HINT}", url=self.url)


async def download_file(
    transport: Transport,
    url: str,
    path: str | os.PathLike[str],
    *,
    max_restarts: int = 3,
    max_bytes: int | None = None,
    min_speed: float | None = None,
    min_seconds: float = MIN_DOWNLOAD_SECONDS,
) -> Path:
    """Download ``url`` to ``path`` atomically; return the final path.

    ``max_bytes`` and ``min_speed`` (bytes per second) default to the transport's
    (``EMOCLIENT_DOWNLOAD_MAX_MB``, ``EMOCLIENT_DOWNLOAD_MIN_KBPS``).
    """
    if not url.startswith(("http://", "https://")):
        # aiohttp's own error would be just the URL; oss:// inputs cannot be downloaded at all.
        raise ValueError(f"cannot download {redact_url(url)!r}: pass a task's http(s) video_url")
    budget = _Budget(
        url,
        max_bytes=max_bytes or transport.max_download_bytes,
        min_speed=min_speed or transport.min_speed,
        min_seconds=min_seconds,
    )
    target = Path(path)
    if await anyio.Path(target).is_dir():
        # Else the error would name the temporary file beside it, not what went wrong.
        raise ValueError(f"cannot save the video to {target}: it is a folder; give a file path")
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.part")
    try:
        file = await anyio.to_thread.run_sync(_open_new, tmp)
        try:
            sink = _Sink(file)
            await _receive(transport, budget, sink, max_restarts=max_restarts)
            head = await anyio.to_thread.run_sync(_complete, sink.rest(), file, target)
        finally:
            if not file.closed:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(file.close)
        if head[4:8] != b"ftyp":
            # An ISO-BMFF file opens with its ``ftyp`` box: 4 bytes of size, then the type.
            raise budget.error(
                f"The answer from {budget.where} is not an MP4 video (it starts with "
                f"{head!r}; an error page served as a success?)"
            )
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _open_new(path: Path) -> BinaryIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("w+b")


def _complete(rest: list[bytes], file: BinaryIO, target: Path) -> bytes:
    """Write ``rest``, make the file durable and, when it opens like an MP4, move it to
    ``target`` (durably too); return its first 16 bytes. One thread hop."""
    file.writelines(rest)
    file.flush()
    os.fsync(file.fileno())
    file.seek(0)
    head = file.read(16)
    if head[4:8] != b"ftyp":
        return head
    file.close()
    os.replace(file.name, target)
    # Makes the rename itself durable, so a crash cannot leave the old directory entry.
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return head


async def _receive(transport: Transport, budget: _Budget, out: _Sink, *, max_restarts: int) -> None:
    """The whole body into ``out``'s file (but its last batch), within the budget's deadline;
    the file is written while the body arrives."""
    try:
        with budget.scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(out.run)
                try:
                    await _fetch_with_resume(transport, budget, out, max_restarts=max_restarts)
                finally:
                    out.close()
    except BaseExceptionGroup as group:
        raise _first(group) from None
    if budget.scope.cancelled_caught:
        raise budget.too_slow()


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    # The receiver and the writer fail one at a time: the first failure is the one to show.
    inner: BaseException = group
    while isinstance(inner, BaseExceptionGroup):
        inner = inner.exceptions[0]
    return inner


class _Sink:
    """The temporary file, written by a task of its own in batches of about ``_BATCH`` bytes,
    one thread hop each, while the next batch arrives.

    A thread hop per received chunk cost more CPU than the transfer itself, and writing in
    the event loop would stall it when the disk is slow. The chunks are kept as they came
    (copying them into one buffer was measured to cost more). At most one batch waits for
    the writer, so memory stays bounded whatever the video's size.
    """

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._send, self._queue = anyio.create_memory_object_stream[Callable[[], object]](1)
        #: Bytes of the body held: written, on their way to the file, or in the batch.
        self.position = 0
        #: Bytes handed to the writer.
        self._sent = 0

    async def run(self) -> None:
        """Carry out the file operations in order until :meth:`close`."""
        async with self._queue:
            async for operation in self._queue:
                await anyio.to_thread.run_sync(operation)

    def close(self) -> None:
        """No more operations; :meth:`run` ends once the queued one is done."""
        self._send.close()

    async def write(self, data: bytes) -> None:
        if not data:
            return
        self._pending.append(data)
        self._pending_size += len(data)
        self.position += len(data)
        if self._pending_size >= _BATCH:
            await self.flush()

    async def flush(self) -> None:
        """Hand the batch to the writer (durable only once :func:`_complete` ran)."""
        if self._pending:
            batch = self.rest()
            self._sent += sum(len(chunk) for chunk in batch)
            await self._send.send(functools.partial(self._file.writelines, batch))

    def rest(self) -> list[bytes]:
        """Take the chunks not handed to the writer yet."""
        batch, self._pending, self._pending_size = self._pending, [], 0
        return batch

    async def restart_at(self, position: int) -> None:
        """Continue the file at ``position`` (what it holds up to there is kept)."""
        if position == 0 and self._sent == 0:  # nothing went to the file yet
            self.rest()
            self.position = 0
            return
        await self.flush()
        await self._send.send(functools.partial(_cut, self._file, position))
        self.position = self._sent = position


def _cut(file: BinaryIO, position: int) -> None:
    file.seek(position)
    file.truncate()


async def _fetch_with_resume(
    transport: Transport, budget: _Budget, out: _Sink, *, max_restarts: int
) -> int:
    # Give up only after ``max_restarts`` attempts in a row that brought no new byte.
    held, stalled = 0, 0
    while True:
        try:
            return await _fetch_once(transport, budget, out, written=held)
        except (_Broken, TransportError, aiohttp.ClientPayloadError) as exc:
            now_held = out.position
            stalled = 0 if now_held > held else stalled + 1
            held = now_held
            if stalled > max_restarts:
                logger.warning("download of %s: giving up, no progress", budget.where)
                why = str(exc) if isinstance(exc, _Refused) else type(exc).__name__
                raise DownloadError(
                    f"Download of {budget.where} kept breaking ({why}) without "
                    "progress; nothing was written to the target. Retry later, or query the "
                    "task for a fresh video_url.",
                    url=budget.url,
                ) from exc
            transport.activity.retried("download")
            logger.info(
                "download of %s broke after %d bytes (%s); resuming (no progress %d of %d)",
                budget.where,
                held,
                exc if isinstance(exc, _Refused) else type(exc).__name__,
                stalled,
                max_restarts,
            )
            if isinstance(exc, _Refused):
                pause = transport.retry.delay(max(0, stalled - 1), retry_after=exc.retry_after)
                await anyio.sleep(pause)


async def _fetch_once(transport: Transport, budget: _Budget, out: _Sink, *, written: int) -> int:
    headers = {"Range": f"bytes={written}-"} if written else {}
    try:
        async with transport.stream(budget.url, headers=headers) as resp:
            position, total = await _position_for(resp, budget, out, written=written)
            if total is not None:
                budget.announce(total)
            try:
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    position += len(chunk)
                    budget.check(position, total)
                    await out.write(chunk)
            except aiohttp.ClientPayloadError as exc:
                await out.write(_already_buffered(resp.content))
                raise _Broken(str(exc)) from exc
    except aiohttp.ClientResponseError as exc:
        # aiohttp's parser met bytes that are not HTTP, e.g. a body longer than announced.
        raise budget.error(
            f"The answer from {budget.where} is not valid HTTP "
            f"({scrub_urls(exc.message)[:60]!r}; more bytes than its Content-Length?)"
        ) from exc
    except aiohttp.ClientConnectionError as exc:
        raise _Broken(str(exc)) from exc
    done = out.position
    if total is not None and done != total:
        raise _Broken(f"got {done} of {total} bytes")
    return done


def _already_buffered(content: aiohttp.StreamReader) -> bytes:
    """Bytes that arrived before the transfer broke but were not handed out yet.

    aiohttp raises a stored payload error before returning data it already buffered; when the
    connection drops right after a burst, that is the whole burst. Keeping it is what lets a
    cut transfer resume where it really stopped. Uses a private aiohttp method, hence the guard.
    """
    read_nowait = getattr(content, "_read_nowait", None)
    if read_nowait is None:
        return b""
    try:
        data = read_nowait(-1)
    except Exception:
        return b""
    return data if isinstance(data, bytes) else b""


async def _position_for(
    resp: aiohttp.ClientResponse, budget: _Budget, out: _Sink, *, written: int
) -> tuple[int, int | None]:
    """Check the status; seek/truncate ``out`` so the body continues it; return where the
    body starts and the full size."""
    if resp.status == 206:
        match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
        if match is None or int(match[1]) != written:
            raise _Broken("server resumed at an unexpected offset")
        await out.restart_at(written)
        return written, None if match[3] == "*" else int(match[3])
    if resp.status == 200:
        # The server ignored Range (or this is the first request): start from scratch.
        await out.restart_at(0)
        return 0, resp.content_length
    text = (await resp.content.read(64 * 1024)).decode("utf-8", errors="replace")
    error = error_from_response(resp.status, text, resp.headers, operation="download")
    where = budget.where
    if is_retryable_status(resp.status, error.code):
        retry_after = error.retry_after if isinstance(error, RateLimitError) else None
        raise _Refused(f"HTTP {resp.status} {error.code}", retry_after)
    if resp.status == 403:
        raise ResultURLExpiredError(
            f"The result URL {where} was refused ({error.code}: {error.message}); it has "
            "probably expired (24 h after success). Query the task for a fresh video_url.",
            url=budget.url,
        )
    raise DownloadError(
        f"Downloading {where} failed: HTTP {resp.status} {error.code}: "
        f"{error.message.rstrip('.')}. {_RETRY_HINT}",
        url=budget.url,
    ) from error
