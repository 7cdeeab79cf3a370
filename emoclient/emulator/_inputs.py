"""Fetching the images and audio a request names: http(s) URLs or the emulator's ``oss://``."""

from __future__ import annotations

import aiohttp

from . import _errors as err
from ._config import ErrorSpec
from ._errors import ApiError
from ._uploads import UploadStore

OSS_PREFIX = "oss://"


class InputFetcher:
    """Downloads request inputs the way the service's data-inspection step would."""

    def __init__(self, *, store: UploadStore, timeout: float) -> None:
        self.store = store
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        """Close the download session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def check_url(self, url: object, *, resolve_oss: bool, oss_error: ErrorSpec) -> str:
        """``url`` if it is a usable URL string; the service's 400 otherwise."""
        if not isinstance(url, str) or not url.startswith(("http://", "https://", OSS_PREFIX)):
            raise ApiError.of(err.URL_INVALID)
        if url.startswith(OSS_PREFIX) and not resolve_oss:
            raise ApiError.of(oss_error)
        return url

    async def fetch(
        self, url: str, *, account: str, model: str, now: float, max_bytes: int
    ) -> bytes | None:
        """The bytes behind ``url``; None if they exceed ``max_bytes``.

        Raises the DataInspection error when the resource cannot be downloaded.
        """
        if url.startswith(OSS_PREFIX):
            key = url.removeprefix(OSS_PREFIX)
            data = self.store.resolve(key, account=account, model=model, now=now)
            if data is None:
                raise ApiError.of(err.DOWNLOAD_FAILED)
            return None if len(data) > max_bytes else data
        return await self._download(url, max_bytes)

    async def _download(self, url: str, max_bytes: int) -> bytes | None:
        session = self._get_session()
        chunks: list[bytes] = []
        size = 0
        try:
            async with session.get(url) as response:
                if response.status != 200:
                    raise ApiError.of(err.DOWNLOAD_FAILED)
                # content.read(n) returns only what has arrived so far: read to the end.
                async for chunk in response.content.iter_any():
                    size += len(chunk)
                    if size > max_bytes:
                        return None
                    chunks.append(chunk)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ApiError.of(err.DOWNLOAD_FAILED) from exc
        return b"".join(chunks)

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self._timeout)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session
