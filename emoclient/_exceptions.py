"""Every error emoclient raises, in one tree.

```
EmoError
├── MissingAPIKeyError          (also a ValueError)
├── TransportError              the request got no HTTP answer
│   ├── ConnectError            the connection could not be opened; nothing was sent
│   └── RequestTimeoutError     no complete answer in time
├── APIStatusError              the service answered with an error status
│   ├── BadRequestError         400 (and other 4xx without a class of their own)
│   ├── AuthenticationError     401
│   ├── PermissionDeniedError   403
│   ├── NotFoundError           404
│   ├── RateLimitError          429 (``retry_after``)
│   └── ServerError             5xx
│       └── InvalidResponseError  an answer not in the documented shape (even a 200)
├── SubmitOutcomeUnknownError   a submit may or may not have created a task
├── DetectionFailedError        the image did not pass emo-detect / emoji-detect
├── TaskError                   a task ended without a video
│   ├── TaskFailedError         FAILED (``code``, ``message``)
│   ├── TaskCanceledError       CANCELED
│   └── TaskExpiredError        UNKNOWN: expired (24 h) or never existed
├── WaitTimeoutError            wait() reached its deadline first
├── DownloadError               a result could not be saved
│   └── ResultURLExpiredError   the signed result URL is no longer valid
├── UploadError                 a file could not be put into temporary storage
├── JournalError                a batch journal cannot be used
│   └── BatchBusyError          another batch holds the output folder or the journal
├── ConfigurationError          a malformed API key or base URL (also a ValueError)
└── StoreError                  the account store failed (emoclient._store)
    └── StoreUnavailableError   the shared store stayed unreachable past its deadline
```

Every message says what happened, to what, and what to do next. None ever contains the API key.
"""

from __future__ import annotations

from datetime import datetime

__all__ = [
    "APIStatusError",
    "AuthenticationError",
    "BadRequestError",
    "BatchBusyError",
    "ConfigurationError",
    "ConnectError",
    "DetectionFailedError",
    "DownloadError",
    "EmoError",
    "InvalidResponseError",
    "JournalError",
    "MissingAPIKeyError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTimeoutError",
    "ResultURLExpiredError",
    "ServerError",
    "SubmitOutcomeUnknownError",
    "TaskCanceledError",
    "TaskError",
    "TaskExpiredError",
    "TaskFailedError",
    "TransportError",
    "UploadError",
    "WaitTimeoutError",
]


class EmoError(Exception):
    """Base class of every error raised by emoclient."""


class MissingAPIKeyError(EmoError, ValueError):
    """No API key was passed and ``DASHSCOPE_API_KEY`` is not set."""

    def __init__(self) -> None:
        super().__init__(
            "No DashScope API key: pass EmoClient(api_key=...) or set the DASHSCOPE_API_KEY "
            "environment variable (a Beijing-region key, 'sk-...')."
        )


class TransportError(EmoError):
    """The request got no HTTP answer (connection refused or dropped, timeout)."""

    def __init__(self, message: str, *, method: str, url: str) -> None:
        super().__init__(message)
        self.method = method
        self.url = url


class ConnectError(TransportError):
    """The connection could not be opened, so the request was certainly not sent."""


class RequestTimeoutError(TransportError):
    """No complete answer arrived within the timeout."""


class APIStatusError(EmoError):
    """The service answered with an HTTP error status.

    ``code``, ``message`` and ``request_id`` are the service's own; quote the request id when
    asking Alibaba Cloud support about a call.
    """

    def __init__(
        self,
        status: int,
        *,
        code: str,
        message: str,
        request_id: str | None,
        operation: str,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.operation = operation
        super().__init__(self._describe())

    _hint = "Fix the request as the message says; quote the request id to support."

    def _describe(self) -> str:
        rid = f" [request_id={self.request_id}]" if self.request_id else ""
        message = self.message.rstrip(".")
        return (
            f"{self.operation} failed: HTTP {self.status} {self.code}: {message}. {self._hint}{rid}"
        )


class BadRequestError(APIStatusError):
    """HTTP 400 (or another 4xx without its own class): the request itself is wrong."""


class AuthenticationError(APIStatusError):
    """HTTP 401: the API key is invalid; check DASHSCOPE_API_KEY (a Beijing-region key)."""

    _hint = "Check DASHSCOPE_API_KEY: EMO and Emoji need a Beijing-region key."


class PermissionDeniedError(APIStatusError):
    """HTTP 403: the key may not use this model, workspace or operation."""

    _hint = "Check that the account has activated this model and the workspace is right."


class NotFoundError(APIStatusError):
    """HTTP 404: no such model, workspace or resource."""

    _hint = "Check the model name, the workspace id and the base URL."


class RateLimitError(APIStatusError):
    """HTTP 429: throttled, or the account's quota is exhausted.

    ``retry_after`` is the server's hint in seconds, or ``None`` when it gave none.
    """

    _hint = "Slow down (lower Rates) or wait; quota and billing codes need the console."

    def __init__(
        self,
        status: int,
        *,
        code: str,
        message: str,
        request_id: str | None,
        operation: str,
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(
            status, code=code, message=message, request_id=request_id, operation=operation
        )


class ServerError(APIStatusError):
    """HTTP 5xx: the service failed; reads are retried, submits are not."""

    _hint = "The service failed; retry later."


class SubmitOutcomeUnknownError(EmoError):
    """A submit failed in a way that may still have created (and will bill) a task.

    Look for the task with ``list_tasks(model=..., start_time=started_at, end_time=ended_at)``
    before submitting again.
    """

    def __init__(
        self, *, model: str, started_at: datetime, ended_at: datetime, reason: str
    ) -> None:
        self.model = model
        self.started_at = started_at
        self.ended_at = ended_at
        self.reason = reason
        super().__init__(
            f"Submitting a {model} task failed ambiguously ({reason}); a task may have been "
            f"created between {started_at.isoformat()} and {ended_at.isoformat()}. Check with "
            f"list_tasks(model={model!r}, start_time=..., end_time=...) before resubmitting."
        )


class DetectionFailedError(EmoError):
    """The portrait did not pass detection, so it cannot be animated (the call is billed)."""

    def __init__(self, *, model: str, image: str, code: str | None, message: str | None) -> None:
        self.model = model
        self.image = image
        self.code = code
        self.message = message
        super().__init__(
            f"{model} rejected the image {image}: {code or 'no code'}: "
            f"{message or 'no message'}. Use another portrait (single, front-facing person)."
        )


class TaskError(EmoError):
    """A task ended without a video."""

    def __init__(self, message: str, *, task_id: str) -> None:
        super().__init__(message)
        self.task_id = task_id


class TaskFailedError(TaskError):
    """The task ended FAILED; ``code`` and ``message`` are the service's reason."""

    def __init__(self, *, task_id: str, code: str | None, message: str | None) -> None:
        self.code = code
        self.message = message
        super().__init__(
            f"Task {task_id} FAILED: {code or 'no code'}: {message or 'no message'}. "
            "Fix the input named in the message and submit a new task.",
            task_id=task_id,
        )


class TaskCanceledError(TaskError):
    """The task was canceled before it ran."""

    def __init__(self, *, task_id: str) -> None:
        super().__init__(
            f"Task {task_id} was CANCELED before it ran; submit it again if you still need it.",
            task_id=task_id,
        )


class TaskExpiredError(TaskError):
    """The service reports UNKNOWN: the task id expired (24 h) or never existed."""

    def __init__(self, *, task_id: str) -> None:
        super().__init__(
            f"Task {task_id} is UNKNOWN to the service: it expired (task ids live 24 h) or "
            "never existed under this account. Submit it again.",
            task_id=task_id,
        )


class WaitTimeoutError(EmoError):
    """``wait()`` reached its deadline before the task finished; the task keeps running."""

    def __init__(self, *, task_id: str, timeout: float, last_status: str | None) -> None:
        self.task_id = task_id
        self.timeout = timeout
        self.last_status = last_status
        super().__init__(
            f"Task {task_id} was still {last_status or 'unobserved'} after waiting "
            f"{timeout:g} s; it keeps running server-side: call wait() again with a longer "
            "timeout, or cancel() it."
        )


class DownloadError(EmoError):
    """A result video could not be saved; nothing partial is left at the target path."""

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class ResultURLExpiredError(DownloadError):
    """The signed result URL expired (24 h after success); query the task for a fresh one."""


class UploadError(EmoError):
    """A local file could not be put into DashScope's temporary storage."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class JournalError(EmoError):
    """A batch journal cannot be used (newer schema, not a journal, corrupt, unwritable)."""


class DiskFullError(EmoError):
    """The disk cannot take the batch's videos: too little free space for the plan (checked
    before anything is paid; ``needed`` and ``free`` in bytes), or it filled up while a video
    was written (``path``). Nothing is lost: the journal keeps the task and its URL, and a
    rerun of the same batch downloads the video once there is room."""

    def __init__(
        self, message: str, *, path: str, needed: int | None = None, free: int | None = None
    ) -> None:
        super().__init__(message)
        self.path = path
        self.needed = needed
        self.free = free


class BatchBusyError(JournalError):
    """Another batch (``pid`` when known) holds the output folder or the journal."""


class InvalidResponseError(ServerError):
    """The service answered, but not in the documented shape.

    An empty, non-JSON, oversized or incomplete body (``{}``, a missing or mistyped field).
    ``status`` is the HTTP status of that answer (usually 200) and ``code`` is
    ``"InvalidResponse"``; ``operation`` and ``request_id`` name the call. Not retried: a proxy
    in the way or a change of the service is the likely cause.
    """

    _hint = "Retry later; if it persists, quote the request id to support."


class ConfigurationError(EmoError, ValueError):
    """The API key or the base URL cannot be used; the message names the setting to fix."""
