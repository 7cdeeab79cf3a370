"""Typed progress events of a batch, for progress bars, logs and ``--json`` output.

Every event names its job by ``label`` (the job's label, or its image name) and ``key`` (the
job's content key), carries the ``task_id`` once there is one, and the UTC time it happened.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_type_hints

__all__ = [
    "BatchEvent",
    "BatchFinished",
    "JobCanceled",
    "JobDetected",
    "JobDownloaded",
    "JobEvent",
    "JobExpired",
    "JobFailed",
    "JobPreflightFailed",
    "JobQueued",
    "JobReconciled",
    "JobResubmitted",
    "JobResumed",
    "JobStalled",
    "JobStarted",
    "JobSubmitted",
    "JobSucceeded",
    "JobUploaded",
    "event_from_json",
]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True)
class BatchEvent:
    """Base of every batch progress event."""

    at: datetime = field(default_factory=_now)

    @property
    def kind(self) -> str:
        """The event's snake_case name without the ``job_`` prefix, e.g. ``submitted``."""
        name = type(self).__name__
        snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
        return snake.removeprefix("job_")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the event, with ``event`` set to :attr:`kind`."""
        data = {"event": self.kind, **asdict(self)}
        return {k: _jsonable(v) for k, v in data.items()}


def _jsonable(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


@dataclass(frozen=True, kw_only=True)
class JobEvent(BatchEvent):
    """An event about one job."""

    label: str
    key: str
    task_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class JobQueued(JobEvent):
    """The batch accepted the job (it passed preflight) and will work on it."""


@dataclass(frozen=True, kw_only=True)
class JobPreflightFailed(JobEvent):
    """Local checks rejected the job; nothing was paid for. ``problems`` says why."""

    problems: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class JobResumed(JobEvent):
    """The journal knew this job from an earlier run; work continues from ``state``."""

    state: str


@dataclass(frozen=True, kw_only=True)
class JobUploaded(JobEvent):
    """A local input (``field``) was uploaded to temporary storage."""

    field: str
    url: str


@dataclass(frozen=True, kw_only=True)
class JobDetected(JobEvent):
    """Detection ran (or came from the cache); ``passed`` False means the job fails."""

    passed: bool
    cached: bool = False
    code: str | None = None
    message: str | None = None


@dataclass(frozen=True, kw_only=True)
class JobSubmitted(JobEvent):
    """The service accepted the task (it is PENDING)."""


@dataclass(frozen=True, kw_only=True)
class JobReconciled(JobEvent):
    """A submit whose answer was lost was matched to a task (``task_id``) or found absent."""

    found: bool


@dataclass(frozen=True, kw_only=True)
class JobStarted(JobEvent):
    """The task holds the account's running slot (RUNNING)."""


@dataclass(frozen=True, kw_only=True)
class JobSucceeded(JobEvent):
    """The task SUCCEEDED; ``video_duration`` seconds are billed; the download follows."""

    video_duration: float


@dataclass(frozen=True, kw_only=True)
class JobDownloaded(JobEvent):
    """The video is on disk at ``path`` (``size`` bytes)."""

    path: Path
    size: int
    skipped: bool = False


@dataclass(frozen=True, kw_only=True)
class JobFailed(JobEvent):
    """The job failed: detection, submission, the task or the download. See ``message``."""

    code: str | None
    message: str


@dataclass(frozen=True, kw_only=True)
class JobExpired(JobEvent):
    """The task or its result URL expired before the video could be fetched."""

    message: str


@dataclass(frozen=True, kw_only=True)
class JobResubmitted(JobEvent):
    """The task failed with the service's own error (nothing billed); the job goes again
    (``attempt`` of the scheduler's ``resubmits``). ``task_id`` is the failed task."""

    code: str | None
    message: str
    attempt: int


@dataclass(frozen=True, kw_only=True)
class JobStalled(JobEvent):
    """The task has been RUNNING for ``running_for`` seconds, far past its ``expected``."""

    running_for: float
    expected: float
    message: str


@dataclass(frozen=True, kw_only=True)
class JobCanceled(JobEvent):
    """The batch was stopped and the job's PENDING task was cancelled (not billed)."""


@dataclass(frozen=True, kw_only=True)
class BatchFinished(BatchEvent):
    """The batch ended. ``counts`` by result status; ``stopped`` if ``stop()`` ended it early.

    What was ridden out on the way: ``retries`` (requests sent again, by call kind),
    ``rate_waits`` (requests that waited for the rate limit), ``reconciled`` (lost submit
    answers looked up before sending again; ``reconciled_found`` of them found their task),
    ``resubmitted`` (tasks the service failed, submitted again) and ``stalled`` (tasks
    reported as stalled). ``from_earlier_runs``: videos an earlier run made (counted in
    ``counts``, not in ``billed_seconds``)."""

    counts: dict[str, int]
    billed_seconds: float
    estimated_cost_cny: float
    elapsed: float
    stopped: bool = False
    retries: dict[str, int] = field(default_factory=dict)
    rate_waits: int = 0
    reconciled: int = 0
    reconciled_found: int = 0
    resubmitted: int = 0
    stalled: int = 0
    from_earlier_runs: int = 0


def event_from_json(data: dict[str, Any]) -> BatchEvent | None:
    """The event :meth:`BatchEvent.to_json` made ``data`` from; None for a kind this
    version does not know (a newer emoclient wrote it), so a reader can skip it."""
    cls = _by_kind().get(str(data.get("event")))
    if cls is None:
        return None
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for item in fields(cls):
        if item.name not in data:
            continue
        value, hint = data[item.name], str(hints[item.name])
        if value is not None and "datetime" in hint:
            value = datetime.fromisoformat(value)
        elif value is not None and "Path" in hint:
            value = Path(value)
        elif isinstance(value, list) and "tuple" in hint:
            value = tuple(value)
        values[item.name] = value
    try:
        return cls(**values)
    except TypeError:  # a field this version requires is missing
        return None


def _by_kind() -> dict[str, type[BatchEvent]]:
    found: dict[str, type[BatchEvent]] = {}
    todo: list[type[BatchEvent]] = [BatchEvent]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        name = cls.__name__
        snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
        found[snake.removeprefix("job_")] = cls
    return found
