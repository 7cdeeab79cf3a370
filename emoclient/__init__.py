"""emoclient: the asyncio-native client for DashScope's EMO and Emoji portrait-video models."""

from importlib.metadata import PackageNotFoundError, version

from emoclient._client import EmoClient
from emoclient._exceptions import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConnectError,
    DetectionFailedError,
    DownloadError,
    EmoError,
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
from emoclient._limits import InMemoryLimitsBackend, LimitRegistry, LimitsBackend, Rates
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

try:
    __version__ = version("emoclient")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = [
    "APIStatusError",
    "AuthenticationError",
    "BadRequestError",
    "ConnectError",
    "Detection",
    "DetectionFailedError",
    "DownloadError",
    "DrivenId",
    "EmoClient",
    "EmoError",
    "InMemoryLimitsBackend",
    "LimitRegistry",
    "LimitsBackend",
    "MissingAPIKeyError",
    "Model",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "Rates",
    "Ratio",
    "RequestTimeoutError",
    "ResultURLExpiredError",
    "RetryPolicy",
    "ServerError",
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
]
