"""The first bytes of a public http(s) URL: one ranged GET, without credentials.

Used to learn the length of an audio file given as a URL from its header, without
downloading it. The request goes through :meth:`Transport.stream`, which never sends the
API key; a server that ignores ``Range`` answers 200 and only the bytes asked for are read
before the connection is dropped.
"""

from __future__ import annotations

import re

import aiohttp
import anyio

from emoclient._answers import redact_url
from emoclient._exceptions import DownloadError, EmoError
from emoclient._transport import Transport

__all__ = ["read_head"]

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


async def read_head(
    transport: Transport, url: str, *, start: int = 0, size: int = 65536, within: float = 10.0
) -> tuple[bytes, int | None]:
    """Bytes ``start`` to ``start + size`` of ``url`` (fewer at its end) and its full size
    (None when the server does not say). Raises :class:`DownloadError` when it cannot be read
    within ``within`` seconds."""
    if not url.startswith(("http://", "https://")):
        raise DownloadError(f"cannot read {redact_url(url)}: not an http(s) URL", url=url)
    try:
        with anyio.fail_after(within):
            return await _read(transport, url, start, size, read_timeout=within)
    except DownloadError:
        raise
    except (EmoError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
        reason = type(exc).__name__ if isinstance(exc, TimeoutError) else str(exc)
        raise DownloadError(
            f"reading the first bytes of {redact_url(url)} failed: {reason}", url=url
        ) from exc


async def _read(
    transport: Transport, url: str, start: int, size: int, *, read_timeout: float
) -> tuple[bytes, int | None]:
    headers = {"Range": f"bytes={start}-{start + size - 1}"}
    async with transport.stream(url, headers=headers, read_timeout=read_timeout) as resp:
        if resp.status == 206:
            match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
            if match is None or int(match[1]) != start:
                raise DownloadError(f"{redact_url(url)} answered an unexpected range", url=url)
            skip, total = 0, None if match[3] == "*" else int(match[3])
        elif resp.status == 200:  # Range ignored: the whole file from byte 0
            skip, total = start, resp.content_length
        elif resp.status == 416 and start > 0:  # the file ends before ``start``
            return b"", None
        else:
            raise DownloadError(f"{redact_url(url)} answered HTTP {resp.status}", url=url)
        data = bytearray()
        async for chunk in resp.content.iter_chunked(size):
            data += chunk
            if len(data) >= skip + size:
                break
        return bytes(data[skip : skip + size]), total
