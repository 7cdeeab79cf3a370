"""A job of a :class:`~emoclient.JobQueue` as an app sees it: its state and its handle."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from enum import StrEnum
from pathlib import Path
from typing import Any

import anyio

from emoclient._batch.events import (
    BatchEvent,
    JobDownloaded,
    JobEvent,
    JobQueued,
    JobStarted,
    JobSubmitted,
    JobSucceeded,
)
from emoclient._batch.jobs import Job
from emoclient._batch.journal import State
from emoclient._batch.ledger import JobResult
from emoclient._exceptions import WaitTimeoutError
from emoclient._validate import check_optional_seconds

__all__ = ["BY_RECORD", "JobHandle", "JobState"]


class JobState(StrEnum):
    """Where a job stands, as a user would say it."""

    QUEUED = "queued"  # accepted, waiting for its turn
    PREPARING = "preparing"  # checks, uploads and detection
    SUBMITTED = "submitted"  # the task waits at the service (PENDING)
    RUNNING = "running"  # the task renders (billed from here on)
    DOWNLOADING = "downloading"  # the task succeeded; the video is being saved
    SUCCEEDED = "succeeded"  # the video is on disk
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"
    INVALID = "invalid"

    @property
    def is_final(self) -> bool:
        """True once the job has ended."""
        return self in _FINAL


_FINAL = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED, JobState.EXPIRED, JobState.INVALID}
)
_BY_EVENT: dict[type[BatchEvent], JobState] = {
    JobQueued: JobState.PREPARING,
    JobSubmitted: JobState.SUBMITTED,
    JobStarted: JobState.RUNNING,
    JobSucceeded: JobState.DOWNLOADING,
}
BY_RECORD = {
    State.NEW: JobState.QUEUED,
    State.SUBMITTING: JobState.SUBMITTED,
    State.SUBMITTED: JobState.SUBMITTED,
    State.SUCCEEDED: JobState.DOWNLOADING,
    State.DOWNLOADED: JobState.SUCCEEDED,
    State.FAILED: JobState.FAILED,
    State.EXPIRED: JobState.EXPIRED,
    State.INVALID: JobState.INVALID,
}


class JobHandle:
    """One job of a :class:`JobQueue`: watch it, wait for it, cancel it.

    ``id`` is the job's content key (stable across restarts: :meth:`JobQueue.get` finds the
    job again by it). ``billed_anyway`` is True when a cancel came after the task started:
    the service cannot stop a RUNNING task, so it is billed, and its video is still saved.
    """

    def __init__(
        self, job: Job, *, id: str, owner: str, cancel: Callable[[JobHandle], Awaitable[bool]]
    ) -> None:
        self.id = id
        self.job = job
        self.owner = owner
        self.state = JobState.QUEUED
        self.task_id: str | None = None
        self.path: Path | None = None
        self.result: JobResult | None = None
        self.billed_anyway = False
        #: When the queue accepted the job, and when its turn came (epoch seconds).
        self.accepted_at = time.time()
        self.taken_at: float | None = None
        self._cancel = cancel
        self._history: list[BatchEvent] = []
        self._changed = anyio.Event()
        self._done = anyio.Event()

    def __repr__(self) -> str:
        return f"JobHandle(id={self.id[:12]!r}, state={self.state.value!r})"

    @property
    def history(self) -> list[BatchEvent]:
        """The job's events so far, oldest first."""
        return list(self._history)

    @property
    def error(self) -> str | None:
        """Why the job did not produce a video, once it ended."""
        return self.result.error if self.result is not None else None

    def snapshot(self) -> dict[str, Any]:
        """The handle as JSON-ready data (for a web API)."""
        last = self._history[-1].to_json() if self._history else None
        return {
            "id": self.id,
            "owner": self.owner,
            "label": self.job.display_label,
            "model": str(self.job.model),
            "state": self.state.value,
            "task_id": self.task_id,
            "video": str(self.path) if self.path is not None else None,
            "error": self.error,
            "billed_anyway": self.billed_anyway,
            "events": len(self._history),
            "last_event": last,
        }

    async def events(self) -> AsyncIterator[BatchEvent]:
        """Every event of the job, past ones first, then live ones until it ends."""
        seen = 0
        while True:
            while seen < len(self._history):
                seen += 1
                yield self._history[seen - 1]
            if self._done.is_set():
                return
            await self._changed.wait()

    async def wait(self, timeout: float | None = None) -> JobResult:  # noqa: ASYNC109
        """The job's result once it ends; :class:`WaitTimeoutError` after ``timeout`` s."""
        check_optional_seconds("timeout", timeout)
        with anyio.move_on_after(timeout):
            await self._done.wait()
        if self.result is None:
            raise WaitTimeoutError(
                task_id=self.task_id or self.id, timeout=timeout or 0.0, last_status=None
            )
        return self.result

    async def cancel(self) -> bool:
        """Cancel the job. True when nothing is billed (it had not been submitted, or its
        PENDING task was cancelled at the service); False when its task already runs (it is
        billed, and its video is still downloaded and kept) or the job has ended."""
        return await self._cancel(self)

    def _event(self, event: BatchEvent) -> None:
        if isinstance(event, JobEvent) and event.task_id:
            self.task_id = event.task_id
        state = _BY_EVENT.get(type(event))
        if state is not None and not self.state.is_final:
            self.state = state
        if isinstance(event, JobDownloaded):
            self.path = event.path
        self._history.append(event)
        self._wake()

    def _finish(self, result: JobResult) -> None:
        self.result = result
        self.task_id = result.task_id or self.task_id
        self.path = result.path
        self.state = JobState(result.status)
        self._done.set()
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()
