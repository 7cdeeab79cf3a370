"""emoclient: the asyncio-native client for DashScope's EMO and Emoji portrait-video models."""

import importlib
from typing import TYPE_CHECKING, Any

from emoclient._client import EmoClient, EmoClientWithRawResponse
from emoclient._exceptions import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    BatchBusyError,
    ConfigurationError,
    ConnectError,
    DetectionFailedError,
    DownloadError,
    EmoError,
    InvalidResponseError,
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
from emoclient._options import Timeout
from emoclient._raw import RawResponse
from emoclient._retry import RetryPolicy

if TYPE_CHECKING:
    __version__: str
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
        JobHandle,
        JobPreflightFailed,
        JobQueue,
        JobQueued,
        JobReconciled,
        JobResubmitted,
        JobResult,
        JobResumed,
        JobStalled,
        JobStarted,
        JobState,
        JobSubmitted,
        JobSucceeded,
        JobUploaded,
        Plan,
        Problem,
        QueueFullError,
        ResultStatus,
        SchedulerOptions,
        plan_batch,
        preflight,
    )
    from emoclient._batch.batch import (
        EventHandler,
    )
    from emoclient._blocking import BlockingEmoClient, BlockingEmoClientWithRawResponse
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
    "BlockingEmoClient": "emoclient._blocking",
    "BlockingEmoClientWithRawResponse": "emoclient._blocking",
    "QueueFullError": "emoclient._batch",
    "JobState": "emoclient._batch",
    "JobQueue": "emoclient._batch",
    "JobHandle": "emoclient._batch",
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
    "JobResubmitted": "emoclient._batch",
    "JobResult": "emoclient._batch",
    "JobResumed": "emoclient._batch",
    "JobStalled": "emoclient._batch",
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


def _version() -> str:
    # importlib.metadata alone costs more than a tenth of the import: only on demand.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("emoclient")
    except PackageNotFoundError:  # pragma: no cover - a source tree without install
        return "0.0.0"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        globals()[name] = value = _version()
        return value
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'emoclient' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


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
    "BlockingEmoClient",
    "BlockingEmoClientWithRawResponse",
    "ConfigurationError",
    "ConnectError",
    "Detection",
    "DetectionFailedError",
    "DownloadError",
    "DrivenId",
    "EmoClient",
    "EmoClientWithRawResponse",
    "EmoError",
    "EmoJob",
    "EmojiJob",
    "EventHandler",
    "Intent",
    "InvalidResponseError",
    "Job",
    "JobCanceled",
    "JobDetected",
    "JobDownloaded",
    "JobEvent",
    "JobExpired",
    "JobFailed",
    "JobHandle",
    "JobPreflightFailed",
    "JobQueue",
    "JobQueued",
    "JobReconciled",
    "JobResubmitted",
    "JobResult",
    "JobResumed",
    "JobStalled",
    "JobStarted",
    "JobState",
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
    "QueueFullError",
    "RateLimitError",
    "RateLimiter",
    "Rates",
    "Ratio",
    "RawResponse",
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
    "Timeout",
    "TransportError",
    "UploadError",
    "UploadedFile",
    "WaitTimeoutError",
    "__version__",
    "open_store",
    "plan_batch",
    "preflight",
]
