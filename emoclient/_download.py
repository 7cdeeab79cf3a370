"""Saving a result video: stream to a temporary file beside the target, verify, rename.

The video is never held in memory. A transfer that breaks is resumed with ``Range`` when the
server answers 206; otherwise it starts over. It gives up after a few attempts in a row that
bring no new byte. Whatever happens, the target path either holds the complete file or is
untouched.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import aiofiles
import aiohttp
import anyio
from aiofiles.threadpool.binary import AsyncBufferedIOBase

from emoclient._exceptions import DownloadError, ResultURLExpiredError, TransportError
from emoclient._transport import Transport, error_from_response, redact_url

__all__ = ["download_file"]

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_CHUNK = 256 * 1024


class _Broken(Exception):
    """The body stopped early; the partial file may be resumed."""


async def download_file(
    transport: Transport, url: str, path: str | os.PathLike[str], *, max_restarts: int = 3
) -> Path:
    """Download ``url`` to ``path`` atomically; return the final path."""
    if not url.startswith(("http://", "https://")):
        # aiohttp's own error would be just the URL; oss:// inputs cannot be downloaded at all.
        raise ValueError(f"cannot download {redact_url(url)!r}: pass a task's http(s) video_url")
    target = Path(path)
    await anyio.Path(target.parent).mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.part")
    try:
        async with aiofiles.open(tmp, "wb") as out:
            await _fetch_with_resume(transport, url, out, max_restarts=max_restarts)
            await out.flush()
            await anyio.to_thread.run_sync(os.fsync, out.fileno())
        await anyio.to_thread.run_sync(os.replace, tmp, target)
        await anyio.to_thread.run_sync(_fsync_dir, target.parent)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable, so a crash cannot leave the old directory entry.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def _fetch_with_resume(
    transport: Transport, url: str, out: AsyncBufferedIOBase, *, max_restarts: int
) -> int:
    # Give up only after ``max_restarts`` attempts in a row that brought no new byte.
    held, stalled = 0, 0
    while True:
        try:
            return await _fetch_once(transport, url, out, written=held)
        except (_Broken, TransportError, aiohttp.ClientPayloadError) as exc:
            now_held = await out.tell()
            stalled = 0 if now_held > held else stalled + 1
            held = now_held
            if stalled > max_restarts:
                raise DownloadError(
                    f"Download of {redact_url(url)} kept breaking ({type(exc).__name__}) without "
                    "progress; nothing was written to the target. Retry later, or query the "
                    "task for a fresh video_url.",
                    url=url,
                ) from exc


async def _fetch_once(
    transport: Transport, url: str, out: AsyncBufferedIOBase, *, written: int
) -> int:
    headers = {"Range": f"bytes={written}-"} if written else {}
    try:
        async with transport.stream(url, headers=headers) as resp:
            total = await _position_for(resp, url, out, written=written)
            try:
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    await out.write(chunk)
            except aiohttp.ClientPayloadError as exc:
                await out.write(_already_buffered(resp.content))
                raise _Broken(str(exc)) from exc
    except aiohttp.ClientConnectionError as exc:
        raise _Broken(str(exc)) from exc
    done = await out.tell()
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
    resp: aiohttp.ClientResponse, url: str, out: AsyncBufferedIOBase, *, written: int
) -> int | None:
    """Check the status; seek/truncate ``out`` so the body continues it; return the full size."""
    if resp.status == 206:
        match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
        if match is None or int(match[1]) != written:
            raise _Broken("server resumed at an unexpected offset")
        return None if match[3] == "*" else int(match[3])
    if resp.status == 200:
        # The server ignored Range (or this is the first request): start from scratch.
        await out.seek(0)
        await out.truncate()
        return resp.content_length
    text = await resp.text(errors="replace")
    error = error_from_response(resp.status, text, resp.headers, operation="download")
    where = redact_url(url)
    if resp.status == 403:
        raise ResultURLExpiredError(
            f"The result URL {where} was refused ({error.code}: {error.message}); it has "
            "probably expired (24 h after success). Query the task for a fresh video_url.",
            url=url,
        )
    raise DownloadError(
        f"Downloading {where} failed: HTTP {resp.status} {error.code}: "
        f"{error.message.rstrip('.')}. Query the task for a fresh video_url and retry.",
        url=url,
    ) from error
