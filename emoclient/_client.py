"""``EmoClient``: the typed asyncio client for every EMO/Emoji endpoint."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import aiohttp
import anyio

from emoclient import _generate
from emoclient._download import download_file
from emoclient._exceptions import (
    APIStatusError,
    MissingAPIKeyError,
    TaskCanceledError,
    TaskExpiredError,
    TaskFailedError,
    TransportError,
    WaitTimeoutError,
)
from emoclient._limits import AccountLimits, Rates, account_id, limits_for, shared_store
from emoclient._models import (
    SERVICE_TZ,
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
    parse_bbox,
    parse_detection,
)
from emoclient._retry import RetryPolicy, is_retryable_status
from emoclient._settings import DEFAULT_BASE_URL, checked_base_url, checked_key
from emoclient._timing import PollSchedule, Progress
from emoclient._transport import Transport
from emoclient._upload import Uploader

if TYPE_CHECKING:
    from emoclient._store import AccountStore

__all__ = ["DEFAULT_BASE_URL", "EmoClient"]


_DETECT_PATH = "services/aigc/image2video/face-detect"
_SYNTHESIS_PATH = "services/aigc/image2video/video-synthesis"
_OSS_RESOLVE = {"X-DashScope-OssResourceResolve": "enable"}
_LAST_POLL_GRACE = 5.0
# An upload cached for generate_* is reused only while it has this much life left.
_UPLOAD_REUSE_MARGIN = timedelta(hours=1)


_E = TypeVar("_E", StyleLevel, DrivenId, Ratio)


def _enum(cls: type[_E], name: str, value: str) -> _E:
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        raise ValueError(f"{name}={value!r} is not one of: {allowed}") from None


def _oss_headers(*urls: str) -> dict[str, str]:
    return dict(_OSS_RESOLVE) if any(u.startswith("oss://") for u in urls) else {}


def _list_time(value: datetime, *, round_up: bool = False) -> str:
    # The list API takes Beijing wall-clock time as YYYYMMDDhhmmss (API.md §2.2); an end
    # time is rounded up to the whole second so that the window still covers it.
    if value.tzinfo is not None:
        value = value.astimezone(SERVICE_TZ)
    if round_up and value.microsecond:
        value = value.replace(microsecond=0) + timedelta(seconds=1)
    return value.strftime("%Y%m%d%H%M%S")


class EmoClient:
    """Asyncio client for DashScope's EMO and Emoji models; use it as an async context manager.

    ``api_key`` and ``base_url`` default to ``DASHSCOPE_API_KEY`` and
    ``DASHSCOPE_HTTP_BASE_URL``; ``workspace`` sets ``X-DashScope-WorkSpace``. ``timeout``
    bounds each API request (seconds).

    Every call goes through the account's limits (``rates``, per model as the service has
    them), kept in the account ``store`` that every client and process of the account shares:
    by default one SQLite file per user on the host (``EMOCLIENT_STORE``, ``EMOCLIENT_HOME``),
    ``"memory"`` for this process only, or ``"redis://host:port/db"`` across hosts. So many
    concurrent calls, from any number of processes, never provoke a 429. An account is the
    key by default; keys of one Alibaba Cloud account share its limits when given the same
    ``account`` name (or ``EMOCLIENT_ACCOUNT``). ``retry`` says how a request is retried.
    ``poll_interval``, ``max_poll_interval`` and ``wait_timeout`` are the defaults of
    :meth:`wait`. Pass ``session`` to reuse an aiohttp session; the client does not close a
    session it did not create.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        workspace: str | None = None,
        timeout: float = 60.0,
        session: aiohttp.ClientSession | None = None,
        retry: RetryPolicy | None = None,
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
            retry=retry or RetryPolicy(),
        )
        self._uploader = Uploader(self._transport, self.limits.upload)
        self._uploads: dict[tuple[str, str], UploadedFile] = {}
        self._upload_locks: dict[tuple[str, str], anyio.Lock] = {}
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.wait_timeout = wait_timeout

    def __repr__(self) -> str:
        return f"EmoClient(base_url={self.base_url!r}, account={self.account_label!r})"

    @property
    def account_label(self) -> str:
        """A short, non-secret name of this client's account (``acct-`` and 8 hex digits),
        safe to log and to store; never the key."""
        return f"acct-{self._account[:8]}"

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
        """Close the HTTP session if the client created it."""
        await self._transport.aclose()

    # -- detection ------------------------------------------------------------------------

    async def detect_emo(self, image_url: str, *, ratio: Ratio | str = Ratio.SQUARE) -> Detection:
        """Check a portrait for emo-v1; ``ratio`` "1:1" (head) or "3:4" (half body)."""
        return await self._detect(Model.EMO_DETECT, image_url, _enum(Ratio, "ratio", ratio))

    async def detect_emoji(self, image_url: str) -> Detection:
        """Check a portrait for emoji-v1 (always 1:1)."""
        return await self._detect(Model.EMOJI_DETECT, image_url, Ratio.SQUARE)

    async def _detect(self, model: Model, image_url: str, ratio: Ratio) -> Detection:
        body = await self._transport.call(
            "POST",
            _DETECT_PATH,
            operation=f"{model} detection of {image_url}",
            limiter=self.limits.detect(model),
            json_body={
                "model": model.value,
                "input": {"image_url": image_url},
                "parameters": {"ratio": ratio.value},
            },
            headers=_oss_headers(image_url),
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
    ) -> SubmittedTask:
        """Start an emo-v1 task (portrait + voice → talking head); bboxes come from detect_emo.

        Raises :class:`SubmitOutcomeUnknownError` when the answer was lost and a task may exist.
        """
        payload = {
            "model": Model.EMO.value,
            "input": {
                "image_url": image_url,
                "audio_url": audio_url,
                "face_bbox": list(parse_bbox(face_bbox, name="face_bbox")),
                "ext_bbox": list(parse_bbox(ext_bbox, name="ext_bbox")),
            },
            "parameters": {"style_level": _enum(StyleLevel, "style_level", style_level).value},
        }
        return await self._submit(Model.EMO, payload, image_url, audio_url)

    async def submit_emoji(
        self,
        image_url: str,
        *,
        driven_id: DrivenId | str,
        face_bbox: Sequence[int],
        ext_bbox: Sequence[int],
    ) -> SubmittedTask:
        """Start an emoji-v1 task (portrait + template → expression video)."""
        payload = {
            "model": Model.EMOJI.value,
            "input": {
                "image_url": image_url,
                "driven_id": _enum(DrivenId, "driven_id", driven_id).value,
                "face_bbox": list(parse_bbox(face_bbox, name="face_bbox")),
                "ext_bbox": list(parse_bbox(ext_bbox, name="ext_bbox")),
            },
        }
        return await self._submit(Model.EMOJI, payload, image_url)

    async def _submit(self, model: Model, payload: dict[str, Any], *urls: str) -> SubmittedTask:
        body = await self._transport.submit(
            _SYNTHESIS_PATH,
            model=model.value,
            operation=f"submitting a {model} task",
            limiter=self.limits.submit(model),
            json_body=payload,
            headers={"X-DashScope-Async": "enable", **_oss_headers(*urls)},
        )
        return SubmittedTask.from_response(body, model=model)

    # -- tasks ----------------------------------------------------------------------------

    async def get_task(self, task_id: str) -> Task:
        """The task's current state (UNKNOWN when expired or never created)."""
        body = await self._transport.call(
            "GET",
            f"tasks/{task_id}",
            operation=f"querying task {task_id}",
            limiter=self.limits.query,
        )
        return Task.from_response(body)

    async def cancel(self, task_id: str) -> None:
        """Cancel a PENDING task; a task that already runs gives BadRequestError."""
        await self._transport.call(
            "POST",
            f"tasks/{task_id}/cancel",
            operation=f"canceling task {task_id}",
            limiter=self.limits.query,
        )

    async def list_tasks(
        self,
        *,
        status: TaskStatus | str | None = None,
        model: Model | str | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[list[TaskSummary]]:
        """Iterate over pages of the account's tasks; the filters are applied by the service.

        ``start_time``/``end_time`` bound the submission time (aware datetimes are converted to
        the service's Beijing time). Rows are :class:`TaskSummary`; UNKNOWN tasks are not listed.
        """
        if not 1 <= page_size <= 100:
            raise ValueError(f"page_size must be within 1..100, got {page_size}")
        params = {"page_size": str(page_size)}
        if status is not None:
            params["status"] = TaskStatus(status).value
        if model is not None:
            params["model_name"] = str(model)
        if start_time is not None:
            params["start_time"] = _list_time(start_time)
        if end_time is not None:
            params["end_time"] = _list_time(end_time, round_up=True)
        page_no = 1
        while True:
            page = await self._list_page({**params, "page_no": str(page_no)})
            if page.tasks:
                yield page.tasks
            if not page.tasks or page_no >= page.total_page:
                return
            page_no += 1

    async def _list_page(self, params: Mapping[str, str]) -> TaskPage:
        body = await self._transport.call(
            "GET", "tasks", operation="listing tasks", limiter=self.limits.query, params=params
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
        limit = self.wait_timeout if timeout is None else timeout
        first = poll_interval or self.poll_interval
        schedule = PollSchedule(
            min_interval=first,
            # A first interval above the cap (e.g. EmoClient(poll_interval=20)) lifts the cap.
            max_interval=max(max_poll_interval or self.max_poll_interval, first),
        )
        start = anyio.current_time()
        deadline = start + limit
        progress = Progress(submitted_at=start)
        last: TaskStatus | None = None
        while True:
            task = await self._poll_once(task_id, deadline)
            if task is not None:
                _raise_if_unsuccessful(task)
                if task.status is TaskStatus.SUCCEEDED:
                    return task
                last = task.status
            now = anyio.current_time()
            remaining = deadline - now
            if remaining <= 0:
                raise WaitTimeoutError(task_id=task_id, timeout=limit, last_status=last)
            if last is TaskStatus.RUNNING:
                schedule.running(progress, now, expected=expected_seconds)
            else:
                schedule.pending(progress, now)
            await anyio.sleep(min(progress.next_poll - now, remaining))

    async def _poll_once(self, task_id: str, deadline: float) -> Task | None:
        """One query; a transient failure (after the transport's retries) returns None."""
        try:
            # The poll at the deadline still gets a moment to answer.
            with anyio.fail_after(max(_LAST_POLL_GRACE, deadline - anyio.current_time())):
                return await self.get_task(task_id)
        except TimeoutError:
            return None
        except TransportError:
            return None
        except APIStatusError as exc:
            if is_retryable_status(exc.status, exc.code):
                return None
            raise

    # -- files ----------------------------------------------------------------------------

    async def download(self, url: str, path: str | os.PathLike[str]) -> Path:
        """Save a result video to ``path`` atomically (resuming with Range); return the path."""
        return await download_file(self._transport, url, path)

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
        return await _generate.generate_emoji(
            self, image, driven_id, out=out, wait_timeout=wait_timeout
        )

    async def resolve_input(self, source: str | os.PathLike[str], *, model: Model | str) -> str:
        """A URL the service can fetch for ``model``: URLs pass, local files are uploaded.

        A local file is uploaded once per model and reused while it has an hour left, even
        when many calls ask for it at the same time.
        """
        text = os.fspath(source)
        if text.startswith(("http://", "https://", "oss://")):
            return text
        key = (_absolute(text), Model(model).value)
        async with self._upload_locks.setdefault(key, anyio.Lock()):
            cached = self._uploads.get(key)
            if cached is None or cached.expires_at - _UPLOAD_REUSE_MARGIN <= datetime.now(UTC):
                cached = await self.upload(text, model=model)
                self._uploads[key] = cached
        return cached.url


def _absolute(path: str) -> str:
    # getcwd() only, no file-system walk; cheap enough to call on the loop.
    return os.path.abspath(path)


def _raise_if_unsuccessful(task: Task) -> None:
    if task.status is TaskStatus.FAILED:
        raise TaskFailedError(task_id=task.task_id, code=task.code, message=task.message)
    if task.status is TaskStatus.CANCELED:
        raise TaskCanceledError(task_id=task.task_id)
    if task.status is TaskStatus.UNKNOWN:
        raise TaskExpiredError(task_id=task.task_id)
