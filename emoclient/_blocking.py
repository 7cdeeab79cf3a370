"""``BlockingEmoClient``: the client for code that is not async (scripts, notebooks, views).

One event loop runs in a background thread for the client's whole life (an anyio blocking
portal), and the async :class:`EmoClient` lives on it, so its HTTP session and limits stay
bound to one loop however many calls are made; each method blocks until its coroutine is
done. Use it as ``with BlockingEmoClient() as client:`` (or call :meth:`close`). Inside async
code, use :class:`EmoClient` instead: a blocking call would stall the event loop.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, Self, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from emoclient._client import EmoClient
from emoclient._models import (
    Detection,
    DrivenId,
    Model,
    Ratio,
    StyleLevel,
    SubmittedTask,
    Task,
    TaskStatus,
    TaskSummary,
    UploadedFile,
)
from emoclient._options import Timeout

__all__ = ["BlockingEmoClient", "BlockingEmoClientWithRawResponse"]

_P = ParamSpec("_P")
_T = TypeVar("_T")


class BlockingEmoClient:
    """The same calls as :class:`EmoClient`, blocking; the arguments are those of EmoClient.

    Safe to call from several threads; every call runs on the client's own event loop.
    """

    def __init__(self, api_key: str | None = None, **options: Any) -> None:
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = start_blocking_portal()
        self._is_copy = False
        self._portal = self._portal_cm.__enter__()
        try:
            self._client: EmoClient = self._portal.call(_make, api_key, options)
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"Blocking{self._client!r}"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session and stop the client's loop; later calls fail. Closing a
        copy made by :meth:`with_options` leaves its original (and other copies) working."""
        portal_cm, self._portal_cm = self._portal_cm, None
        if portal_cm is None or self._is_copy:
            return
        try:
            if hasattr(self, "_client"):
                self._portal.call(self._client.aclose)
        finally:
            portal_cm.__exit__(None, None, None)

    def _call(self, func: Callable[_P, Awaitable[_T]], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        if self._portal_cm is None:
            raise RuntimeError("this BlockingEmoClient is closed")

        async def run() -> _T:
            return await func(*args, **kwargs)

        return self._portal.call(run)

    def _blocking(self, func: Callable[_P, Awaitable[_T]]) -> Callable[_P, _T]:
        @functools.wraps(func)
        def call(*args: _P.args, **kwargs: _P.kwargs) -> _T:
            return self._call(func, *args, **kwargs)

        return call

    @property
    def account_label(self) -> str:
        """See :attr:`EmoClient.account_label`."""
        return self._client.account_label

    def with_options(
        self,
        *,
        timeout: float | Timeout | None = None,
        max_retries: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> BlockingEmoClient:
        """See :meth:`EmoClient.with_options`; the copy also shares this client's loop."""
        clone = copy.copy(self)
        clone._is_copy = True
        clone._client = self._client.with_options(
            timeout=timeout, max_retries=max_retries, extra_headers=extra_headers
        )
        return clone

    @property
    def with_raw_response(self) -> BlockingEmoClientWithRawResponse:
        """See :attr:`EmoClient.with_raw_response`; each call blocks."""
        return BlockingEmoClientWithRawResponse(self)

    def detect_emo(
        self,
        image_url: str,
        *,
        ratio: Ratio | str = Ratio.SQUARE,
        timeout: float | Timeout | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Detection:
        """See :meth:`EmoClient.detect_emo`."""
        return self._call(
            self._client.detect_emo,
            image_url,
            ratio=ratio,
            timeout=timeout,
            extra_headers=extra_headers,
        )

    def detect_emoji(
        self,
        image_url: str,
        *,
        timeout: float | Timeout | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Detection:
        """See :meth:`EmoClient.detect_emoji`."""
        return self._call(
            self._client.detect_emoji, image_url, timeout=timeout, extra_headers=extra_headers
        )

    def submit_emo(self, image_url: str, audio_url: str, **kwargs: Any) -> SubmittedTask:
        """See :meth:`EmoClient.submit_emo`."""
        return self._call(self._client.submit_emo, image_url, audio_url, **kwargs)

    def submit_emoji(self, image_url: str, **kwargs: Any) -> SubmittedTask:
        """See :meth:`EmoClient.submit_emoji`."""
        return self._call(self._client.submit_emoji, image_url, **kwargs)

    def get_task(
        self,
        task_id: str,
        *,
        timeout: float | Timeout | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Task:
        """See :meth:`EmoClient.get_task`."""
        return self._call(
            self._client.get_task, task_id, timeout=timeout, extra_headers=extra_headers
        )

    def cancel(
        self,
        task_id: str,
        *,
        timeout: float | Timeout | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        """See :meth:`EmoClient.cancel`."""
        self._call(self._client.cancel, task_id, timeout=timeout, extra_headers=extra_headers)

    def list_tasks(
        self,
        *,
        status: TaskStatus | str | None = None,
        model: Model | str | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        timeout: float | Timeout | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> list[TaskSummary]:
        """Every task the filters select, all pages read (see :meth:`EmoClient.list_tasks`)."""
        rows = self.iter_tasks(
            status=status,
            model=model,
            start_time=start_time,
            end_time=end_time,
            timeout=timeout,
            extra_headers=extra_headers,
        )
        return list(rows)

    def iter_tasks(
        self,
        *,
        status: TaskStatus | str | None = None,
        model: Model | str | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        page_size: int = 100,
        timeout: float | Timeout | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Iterator[TaskSummary]:
        """See :meth:`EmoClient.iter_tasks`: the tasks one by one, each page read when the
        loop reaches it."""
        rows = self._client.iter_tasks(
            status=status,
            model=model,
            start_time=start_time,
            end_time=end_time,
            page_size=page_size,
            timeout=timeout,
            extra_headers=extra_headers,
        )
        while True:
            try:
                yield self._call(rows.__anext__)
            except StopAsyncIteration:
                return

    def wait(self, task_id: str, **kwargs: Any) -> Task:
        """See :meth:`EmoClient.wait`."""
        return self._call(self._client.wait, task_id, **kwargs)

    def download(self, url: str, path: str | os.PathLike[str]) -> Path:
        """See :meth:`EmoClient.download`."""
        return self._call(self._client.download, url, path)

    def upload(self, path: str | os.PathLike[str], *, model: Model | str) -> UploadedFile:
        """See :meth:`EmoClient.upload`."""
        return self._call(self._client.upload, path, model=model)

    def generate_emo(
        self,
        image: str | os.PathLike[str],
        audio: str | os.PathLike[str],
        *,
        out: str | os.PathLike[str],
        ratio: Ratio | str = Ratio.SQUARE,
        style_level: StyleLevel | str = StyleLevel.NORMAL,
        wait_timeout: float | None = None,
    ) -> Path:
        """See :meth:`EmoClient.generate_emo`."""
        return self._call(
            self._client.generate_emo,
            image,
            audio,
            out=out,
            ratio=ratio,
            style_level=style_level,
            wait_timeout=wait_timeout,
        )

    def generate_emoji(
        self,
        image: str | os.PathLike[str],
        driven_id: DrivenId | str,
        *,
        out: str | os.PathLike[str],
        wait_timeout: float | None = None,
    ) -> Path:
        """See :meth:`EmoClient.generate_emoji`."""
        return self._call(
            self._client.generate_emoji, image, driven_id, out=out, wait_timeout=wait_timeout
        )


async def _make(api_key: str | None, options: dict[str, Any]) -> EmoClient:
    return EmoClient(api_key, **options)


class BlockingEmoClientWithRawResponse:
    """See :class:`EmoClientWithRawResponse`: the same calls, each blocking until its
    :class:`RawResponse` is there. Get it as ``client.with_raw_response``."""

    def __init__(self, client: BlockingEmoClient) -> None:
        raw, blocking = client._client.with_raw_response, client._blocking
        self.detect_emo = blocking(raw.detect_emo)
        self.detect_emoji = blocking(raw.detect_emoji)
        self.submit_emo = blocking(raw.submit_emo)
        self.submit_emoji = blocking(raw.submit_emoji)
        self.get_task = blocking(raw.get_task)
        self.cancel = blocking(raw.cancel)
