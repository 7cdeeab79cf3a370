"""emoclient: the asyncio-native client for DashScope's EMO and Emoji portrait-video models."""

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from emoclient._client import EmoClient
from emoclient._exceptions import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    BatchBusyError,
    ConnectError,
    DetectionFailedError,
    DownloadError,
    EmoError,
    JournalError,
    MissingAPIKeyError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    ResultURLExpiredError,
    ServerError,
    SubmitOutcomeUnknownError,
    TaskCanceledError,
    TaskError,
    TaskExpiredError,
    TaskFailedError,
    TransportError,
    UploadError,
    WaitTimeoutError,
)
from emoclient._limits import AccountLimits, RateLimiter, Rates
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
from emoclient._retry import RetryPolicy

if TYPE_CHECKING:
    from emoclient._batch import (
        Batch,
        BatchEvent,
        BatchFinished,
        BatchSummary,
        EmojiJob,
        EmoJob,
        Job,
        JobCanceled,
        JobDetected,
        JobDownloaded,
        JobEvent,
        JobExpired,
        JobFailed,
        JobPreflightFailed,
        JobQueued,
        JobReconciled,
        JobResult,
        JobResumed,
        JobStarted,
        JobSubmitted,
        JobSucceeded,
        JobUploaded,
        Plan,
        Problem,
        ResultStatus,
        SchedulerOptions,
        plan_batch,
        preflight,
    )
    from emoclient._batch.batch import (
        EventHandler,
    )
    from emoclient._store import (
        AccountStore,
        Intent,
        MemoryStore,
        RedisStore,
        SQLiteStore,
        StoreError,
        StoreUnavailableError,
        open_store,
    )

# The batch half (SQLite journal, scheduler, manifests) loads on first use, so that one API
# call does not pay for it: ``import emoclient`` stays as light as the client needs.
_LAZY = {
    "AccountStore": "emoclient._store",
    "Intent": "emoclient._store",
    "MemoryStore": "emoclient._store",
    "RedisStore": "emoclient._store",
    "SQLiteStore": "emoclient._store",
    "StoreError": "emoclient._store",
    "StoreUnavailableError": "emoclient._store",
    "open_store": "emoclient._store",
    "Batch": "emoclient._batch",
    "BatchEvent": "emoclient._batch",
    "BatchFinished": "emoclient._batch",
    "BatchSummary": "emoclient._batch",
    "EmoJob": "emoclient._batch",
    "EmojiJob": "emoclient._batch",
    "EventHandler": "emoclient._batch.batch",
    "Job": "emoclient._batch",
    "JobCanceled": "emoclient._batch",
    "JobDetected": "emoclient._batch",
    "JobDownloaded": "emoclient._batch",
    "JobEvent": "emoclient._batch",
    "JobExpired": "emoclient._batch",
    "JobFailed": "emoclient._batch",
    "JobPreflightFailed": "emoclient._batch",
    "JobQueued": "emoclient._batch",
    "JobReconciled": "emoclient._batch",
    "JobResult": "emoclient._batch",
    "JobResumed": "emoclient._batch",
    "JobStarted": "emoclient._batch",
    "JobSubmitted": "emoclient._batch",
    "JobSucceeded": "emoclient._batch",
    "JobUploaded": "emoclient._batch",
    "Plan": "emoclient._batch",
    "Problem": "emoclient._batch",
    "ResultStatus": "emoclient._batch",
    "SchedulerOptions": "emoclient._batch",
    "plan_batch": "emoclient._batch",
    "preflight": "emoclient._batch",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'emoclient' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


try:
    __version__ = version("emoclient")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = [
    "APIStatusError",
    "AccountLimits",
    "AccountStore",
    "AuthenticationError",
    "BadRequestError",
    "Batch",
    "BatchBusyError",
    "BatchEvent",
    "BatchFinished",
    "BatchSummary",
    "ConnectError",
    "Detection",
    "DetectionFailedError",
    "DownloadError",
    "DrivenId",
    "EmoClient",
    "EmoError",
    "EmoJob",
    "EmojiJob",
    "EventHandler",
    "Intent",
    "Job",
    "JobCanceled",
    "JobDetected",
    "JobDownloaded",
    "JobEvent",
    "JobExpired",
    "JobFailed",
    "JobPreflightFailed",
    "JobQueued",
    "JobReconciled",
    "JobResult",
    "JobResumed",
    "JobStarted",
    "JobSubmitted",
    "JobSucceeded",
    "JobUploaded",
    "JournalError",
    "MemoryStore",
    "MissingAPIKeyError",
    "Model",
    "NotFoundError",
    "PermissionDeniedError",
    "Plan",
    "Problem",
    "RateLimitError",
    "RateLimiter",
    "Rates",
    "Ratio",
    "RedisStore",
    "RequestTimeoutError",
    "ResultStatus",
    "ResultURLExpiredError",
    "RetryPolicy",
    "SQLiteStore",
    "SchedulerOptions",
    "ServerError",
    "StoreError",
    "StoreUnavailableError",
    "StyleLevel",
    "SubmitOutcomeUnknownError",
    "SubmittedTask",
    "Task",
    "TaskCanceledError",
    "TaskError",
    "TaskExpiredError",
    "TaskFailedError",
    "TaskStatus",
    "TaskSummary",
    "TransportError",
    "UploadError",
    "UploadedFile",
    "WaitTimeoutError",
    "__version__",
    "open_store",
    "plan_batch",
    "preflight",
]
