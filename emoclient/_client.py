"""``EmoClient``: the typed asyncio client for every EMO/Emoji endpoint."""

from __future__ import annotations

import copy
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import aiohttp

from emoclient import _generate, _requests
from emoclient._activity import ClientActivity
from emoclient._download import download_file
from emoclient._exceptions import MissingAPIKeyError
from emoclient._head import read_head
from emoclient._inputs import InputCache
from emoclient._limits import AccountLimits, Rates, account_id, limits_for, shared_store
from emoclient._models import (
    Detection,
    DrivenId,
    Model,
    Ratio,
    StyleLevel,
    SubmittedTask,
    Task,
    TaskPage,
    TaskStatus,
    TaskSummary,
    UploadedFile,
    parse_detection,
)
from emoclient._options import RequestOptions, Timeout, as_timeout, call_options, retry_with
from emoclient._raw import raw_call
from emoclient._retry import RetryPolicy
from emoclient._settings import DEFAULT_BASE_URL, checked_base_url, checked_key
from emoclient._timing import PollSchedule
from emoclient._transport import Transport
from emoclient._upload import Uploader
from emoclient._validate import check_optional_seconds, check_seconds
from emoclient._wait import wait_for

if TYPE_CHECKING:
    from emoclient._store import AccountStore

__all__ = ["DEFAULT_BASE_URL", "EmoClient", "EmoClientWithRawResponse"]


class EmoClient:
    """Asyncio client for DashScope's EMO and Emoji models; use it as an async context manager.

    ``api_key`` and ``base_url`` default to ``DASHSCOPE_API_KEY`` and
    ``DASHSCOPE_HTTP_BASE_URL``; ``workspace`` sets ``X-DashScope-WorkSpace``. ``timeout``
    bounds each attempt at an API request: seconds in all, or a :class:`Timeout`.

    Every call goes through the account's limits (``rates``, per model as the service has
    them), kept in the account ``store`` that every client and process of the account shares:
    by default one SQLite file per user on the host (``EMOCLIENT_STORE``, ``EMOCLIENT_HOME``),
    ``"memory"`` for this process only, or ``"redis://host:port/db"`` across hosts. So many
    concurrent calls, from any number of processes, never provoke a 429. An account is the
    key by default; keys of one Alibaba Cloud account share its limits when given the same
    ``account`` name (or ``EMOCLIENT_ACCOUNT``). ``retry`` says how a request is retried;
    ``max_retries=n`` is short for ``RetryPolicy(max_attempts=n + 1)``, and given with
    ``retry`` it replaces that policy's ``max_attempts`` (its delays stay).
    ``poll_interval``, ``max_poll_interval`` and ``wait_timeout`` are :meth:`wait`'s defaults.
    ``session``: an aiohttp session to reuse (the client closes only one it created).

    One-request calls also take ``timeout=`` and ``extra_headers=``; :meth:`with_options`
    makes a copy with other defaults (and ``max_retries``); :attr:`with_raw_response` gives
    the HTTP answer's headers and request id.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        workspace: str | None = None,
        timeout: float | Timeout = 60.0,
        session: aiohttp.ClientSession | None = None,
        retry: RetryPolicy | None = None,
        max_retries: int | None = None,
        rates: Rates | None = None,
        account: str | None = None,
        store: AccountStore | str | os.PathLike[str] | None = None,
        poll_interval: float = 3.0,
        max_poll_interval: float = 15.0,
        wait_timeout: float = 1800.0,
    ) -> None:
        key = api_key or os.environ.get("DASHSCOPE_API_KEY")
        if not key:
            raise MissingAPIKeyError()
        key = checked_key(key)
        self.base_url = checked_base_url(
            (base_url or os.environ.get("DASHSCOPE_HTTP_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        )
        self.workspace = workspace
        account = account or os.environ.get("EMOCLIENT_ACCOUNT") or None
        # Keys of one cloud account share its limits only when the caller says so: nothing
        # in a key tells which account it belongs to.
        identity = f"account:{account}" if account is not None else key
        self._account = account_id(f"{self.base_url}\n{identity}")
        self.limits: AccountLimits = limits_for(shared_store(store), self._account, rates=rates)
        self._transport = Transport(
            api_key=key,
            base_url=self.base_url,
            workspace=workspace,
            timeout=timeout,
            session=session,
            retry=retry_with(retry, max_retries),
        )
        self._uploader = Uploader(self._transport, self.limits.upload)
        self._inputs = InputCache()
        self.poll_interval = check_seconds("poll_interval", poll_interval)
        self.max_poll_interval = check_seconds("max_poll_interval", max_poll_interval)
        self.wait_timeout = check_seconds("wait_timeout", wait_timeout)

    def __repr__(self) -> str:
        return f"EmoClient(base_url={self.base_url!r}, account={self.account_label!r})"

    @property
    def account_label(self) -> str:
        """A short, non-secret name of this client's account (``acct-`` and 8 hex digits),
        safe to log and to store; never the key."""
        return f"acct-{self._account[:8]}"

    @property
    def activity(self) -> ClientActivity:
        """Requests this client (and its copies) sent again, by call kind, and its waits for
        the account's rate limits; a batch reports what changed during its run."""
        return self._transport.activity

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP session if the client created it (a copy leaves it open)."""
        await self._transport.aclose()

    def with_options(
        self,
        *,
        timeout: float | Timeout | None = None,
        max_retries: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Self:
        """A copy of this client with other defaults for every call: ``timeout`` per attempt,
        ``max_retries`` (the retry policy's delays stay), ``extra_headers`` added to this
        client's (``Authorization`` is refused).

        The copy shares this client's HTTP session, account limits and uploads, so it costs
        nothing to make one per call: ``await client.with_options(timeout=5).get_task(id)``.
        Closing the copy leaves the session open; close the original when done.
        """
        transport = self._transport
        clone = copy.copy(self)
        clone._transport = transport.with_options(
            timeout=None if timeout is None else as_timeout(timeout),
            retry=None if max_retries is None else retry_with(transport.retry, max_retries),
            extra_headers=extra_headers,
        )
        clone._uploader = Uploader(clone._transport, self.limits.upload)
        return clone

    @property
    def with_raw_response(self) -> EmoClientWithRawResponse:
        """The single-request calls, each returning a :class:`RawResponse`: the answer's
        ``status``, ``headers`` and ``request_id``, and ``parse()`` for the usual value."""
        return EmoClientWithRawResponse(self)

    # -- detection ------------------------------------------------------------------------
    # ``timeout`` below is one request's limit (openai's and httpx's name), not a deadline on
    # the caller's work: ASYNC109's advice, a cancel scope around the call, would not retry.

    async def detect_emo(
        self,
        image_url: str,
        *,
        ratio: Ratio | str = Ratio.SQUARE,
        timeout: float | Timeout | None = None,  # noqa: ASYNC109
        extra_headers: Mapping[str, str] | None = None,
    ) -> Detection:
        """Check a portrait for emo-v1; ``ratio`` "1:1" (head) or "3:4" (half body)."""
        ratio = _requests.checked_enum(Ratio, "ratio", ratio)
        options = call_options(timeout, extra_headers)
        return await self._detect(Model.EMO_DETECT, image_url, ratio, options)

    async def detect_emoji(
        self,
        image_url: str,
        *,
        timeout: float | Timeout | None = None,  # noqa: ASYNC109
        extra_headers: Mapping[str, str] | None = None,
    ) -> Detection:
        """Check a portrait for emoji-v1 (always 1:1)."""
        options = call_options(timeout, extra_headers)
        return await self._detect(Model.EMOJI_DETECT, image_url, Ratio.SQUARE, options)

    async def _detect(
        self, model: Model, image_url: str, ratio: Ratio, options: RequestOptions
    ) -> Detection:
        body = await self._transport.call(
            "POST",
            _requests.DETECT_PATH,
            operation=f"{model} detection of {image_url}",
            limiter=self.limits.detect(model),
            json_body=_requests.detect_body(model, image_url, ratio),
            headers=_requests.oss_headers(image_url),
            options=options,
        )
        return parse_detection(body, model=model, ratio=ratio)

    # -- submission -----------------------------------------------------------------------

    async def submit_emo(
        self,
        image_url: str,
        audio_url: str,
        *,
        face_bbox: Sequence[int],
        ext_bbox: Sequence[int],
        style_level: StyleLevel | str = StyleLevel.NORMAL,
        timeout: float | Timeout | None = None,  # noqa: ASYNC109
        extra_headers: Mapping[str, str] | None = None,
    ) -> SubmittedTask:
        """Start an emo-v1 task (portrait + voice → talking head); bboxes come from detect_emo.

        Raises :class:`SubmitOutcomeUnknownError` when the answer was lost and a task may exist.
        """
        body = _requests.emo_body(
            image_url, audio_url, face_bbox=face_bbox, ext_bbox=ext_bbox, style_level=style_level
        )
        options = call_options(timeout, extra_headers)
        return await self._submit(Model.EMO, body, (image_url, audio_url), options)

    async def submit_emoji(
        self,
        image_url: str,
        *,
        driven_id: DrivenId | str,
        face_bbox: Sequence[int],
        ext_bbox: Sequence[int],
        timeout: float | Timeout | None = None,  # noqa: ASYNC109
        extra_headers: Mapping[str, str] | None = None,
    ) -> SubmittedTask:
        """Start an emoji-v1 task (portrait + template → expression video)."""
        body = _requests.emoji_body(
            image_url, driven_id=driven_id, face_bbox=face_bbox, ext_bbox=ext_bbox
        )
        options = call_options(timeout, extra_headers)
        return await self._submit(Model.EMOJI, body, (image_url,), options)

    async def _submit(
        self,
        model: Model,
        payload: dict[str, Any],
        urls: tuple[str, ...],
        options: RequestOptions,
    ) -> SubmittedTask:
        body = await self._transport.submit(
            _requests.SYNTHESIS_PATH,
            model=model.value,
            operation=f"submitting a {model} task",
            limiter=self.limits.submit(model),
            json_body=payload,
            headers={"X-DashScope-Async": "enable", **_requests.oss_headers(*urls)},
            options=options,
        )
        return SubmittedTask.from_response(body, model=model)

    # -- tasks ----------------------------------------------------------------------------

    async def get_task(
        self,
        task_id: str,
        *,
        timeout: float | Timeout | None = None,  # noqa: ASYNC109
        extra_headers: Mapping[str, str] | None = None,
    ) -> Task:
        """The task's current state (UNKNOWN when expired or never created)."""
        body = await self._transport.call(
            "GET",
            _requests.task_path(task_id),
            operation=f"querying task {task_id}",
            limiter=self.limits.query,
            options=call_options(timeout, extra_headers),
        )
        return Task.from_response(body)

    async def cancel(
        self,
        task_id: str,
        *,
        timeout: float | Timeout | None = None,  # noqa: ASYNC109
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        """Cancel a PENDING task; a task that already runs gives BadRequestError."""
        await self._transport.call(
            "POST",
            _requests.task_path(task_id, "cancel"),
            operation=f"canceling task {task_id}",
            limiter=self.limits.query,
            options=call_options(timeout, extra_headers),
        )

    async def list_tasks(
        self,
        *,
        status: TaskStatus | str | None = None,
        model: Model | str | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        page_size: int = 100,
        timeout: float | Timeout | None = None,  # noqa: ASYNC109
        extra_headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[list[TaskSummary]]:
        """Iterate over pages of the account's tasks; the filters are applied by the service.

        ``start_time``/``end_time`` bound the submission time (aware datetimes are converted to
        the service's Beijing time). Rows are :class:`TaskSummary`; UNKNOWN tasks are not listed.
        For the rows one by one, use :meth:`iter_tasks`.
        """
        params = _requests.list_params(
            status=status,
            model=model,
            start_time=start_time,
            end_time=end_time,
            page_size=page_size,
        )
        options = call_options(timeout, extra_headers)
        page_no = 1
        while True:
            page = await self._list_page({**params, "page_no": str(page_no)}, options)
            if page.tasks:
                yield page.tasks
            if not page.tasks or page_no >= page.total_page:
                return
            page_no += 1

    async def iter_tasks(
        self,
        *,
        status: TaskStatus | str | None = None,
        model: Model | str | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        page_size: int = 100,
        timeout: float | Timeout | None = None,  # noqa: ASYNC109
        extra_headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[TaskSummary]:
        """The account's tasks one by one, each page read when the loop reaches it; the
        arguments are those of :meth:`list_tasks`."""
        pages = self.list_tasks(
            status=status,
            model=model,
            start_time=start_time,
            end_time=end_time,
            page_size=page_size,
            timeout=timeout,
            extra_headers=extra_headers,
        )
        async for page in pages:
            for row in page:
                yield row

    async def _list_page(self, params: Mapping[str, str], options: RequestOptions) -> TaskPage:
        body = await self._transport.call(
            "GET",
            "tasks",
            operation="listing tasks",
            limiter=self.limits.query,
            params=params,
            options=options,
        )
        return TaskPage.from_response(body)

    async def wait(
        self,
        task_id: str,
        *,
        # The contract's name: a deadline on the task's progress, not on cancellation.
        timeout: float | None = None,  # noqa: ASYNC109
        poll_interval: float | None = None,
        max_poll_interval: float | None = None,
        expected_seconds: float | None = None,
    ) -> Task:
        """Poll until the task SUCCEEDED and return it, giving up after ``timeout`` seconds.

        Raises :class:`TaskFailedError`, :class:`TaskCanceledError`, :class:`TaskExpiredError`
        or :class:`WaitTimeoutError`. Polls start at ``poll_interval`` and back off to
        ``max_poll_interval``; ``expected_seconds`` (the task's likely running time) moves
        the first poll after it starts close to its expected end. Transient query failures
        are ridden out until the deadline; only the final query may run a few seconds past it.
        """
        limit = self.wait_timeout if timeout is None else check_seconds("timeout", timeout)
        first = check_optional_seconds("poll_interval", poll_interval) or self.poll_interval
        check_optional_seconds("max_poll_interval", max_poll_interval)
        check_optional_seconds("expected_seconds", expected_seconds)
        schedule = PollSchedule(
            min_interval=first,
            # A first interval above the cap (e.g. EmoClient(poll_interval=20)) lifts the cap.
            max_interval=max(max_poll_interval or self.max_poll_interval, first),
        )
        return await wait_for(self.get_task, task_id, limit, schedule, expected_seconds)

    # -- files ----------------------------------------------------------------------------

    async def download(self, url: str, path: str | os.PathLike[str]) -> Path:
        """Save a result video to ``path`` atomically (resuming with Range); return the path."""
        return await download_file(self._transport, url, path)

    async def read_head(
        self, url: str, *, start: int = 0, size: int = 65536, within: float = 10.0
    ) -> tuple[bytes, int | None]:
        """Bytes ``start`` to ``start + size`` of a public URL and its size (None if not told):
        one ranged GET without credentials within ``within`` s, else DownloadError."""
        return await read_head(self._transport, url, start=start, size=size, within=within)

    async def upload(self, path: str | os.PathLike[str], *, model: Model | str) -> UploadedFile:
        """Put a local file into temporary storage for calls of ``model`` (valid 48 h)."""
        return await self._uploader.upload(path, model=str(Model(model)))

    # -- one-call helpers -----------------------------------------------------------------

    async def generate_emo(
        self,
        image: str | os.PathLike[str],
        audio: str | os.PathLike[str],
        *,
        out: str | os.PathLike[str],
        ratio: Ratio | str = Ratio.SQUARE,
        style_level: StyleLevel | str = StyleLevel.NORMAL,
        wait_timeout: float | None = None,
    ) -> Path:
        """Portrait + speech (local paths or URLs) → a finished emo-v1 MP4 at ``out``.

        Uploads local files, detects (raising :class:`DetectionFailedError` when the portrait
        is rejected), submits, waits and downloads.
        """
        check_optional_seconds("wait_timeout", wait_timeout)  # before anything is paid
        return await _generate.generate_emo(
            self,
            image,
            audio,
            out=out,
            ratio=ratio,
            style_level=style_level,
            wait_timeout=wait_timeout,
        )

    async def generate_emoji(
        self,
        image: str | os.PathLike[str],
        driven_id: DrivenId | str,
        *,
        out: str | os.PathLike[str],
        wait_timeout: float | None = None,
    ) -> Path:
        """Portrait (local path or URL) + template id → a finished emoji-v1 MP4 at ``out``."""
        check_optional_seconds("wait_timeout", wait_timeout)  # before anything is paid
        return await _generate.generate_emoji(
            self, image, driven_id, out=out, wait_timeout=wait_timeout
        )

    async def resolve_input(self, source: str | os.PathLike[str], *, model: Model | str) -> str:
        """A URL the service can fetch for ``model``: URLs pass, local files are uploaded.

        A local file is uploaded once per model and reused while it has an hour left, even
        when many calls ask for it at the same time.
        """
        return await self._inputs.resolve(source, Model(model), self._upload)

    async def _upload(self, path: str, model: Model) -> UploadedFile:
        return await self.upload(path, model=model)


class EmoClientWithRawResponse:
    """The calls of an :class:`EmoClient` that make one API request, with the same arguments,
    each returning a :class:`RawResponse` (``status``, ``headers``, ``request_id``,
    ``parse()``) instead of the parsed value. Get it as ``client.with_raw_response``.
    """

    def __init__(self, client: EmoClient) -> None:
        self.detect_emo = raw_call(client.detect_emo)
        self.detect_emoji = raw_call(client.detect_emoji)
        self.submit_emo = raw_call(client.submit_emo)
        self.submit_emoji = raw_call(client.submit_emoji)
        self.get_task = raw_call(client.get_task)
        self.cancel = raw_call(client.cancel)
