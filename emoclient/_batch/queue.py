"""Jobs for apps and web services: a long-lived queue of one batch, and a handle per job.

An app holds one :class:`JobQueue` for its life (per account, or several accounts) and starts
jobs at any time from any request; each :meth:`~JobQueue.start` returns a
:class:`JobHandle` at once: its id, state, task id, events, ``wait()`` and ``cancel()``. The
queue runs the same machinery as a :class:`Batch` (window, budgeted poller, download lane,
journal, the account store), so every guarantee of a batch holds: no 429s, nothing paid
twice, across processes too. Jobs of different owners (users, tenants) are taken in turn,
not first come first served; the queue is bounded and says when to come back instead of
accepting work that would expire before it runs. Closing it cancels what is still PENDING
and sees RUNNING tasks (billed anyway) to their video.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Sequence
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
from anyio.abc import TaskGroup
from pydantic import TypeAdapter

from emoclient._batch.batch import Batch
from emoclient._batch.events import (
    BatchEvent,
    JobDownloaded,
    JobEvent,
    JobQueued,
    JobStarted,
    JobSubmitted,
    JobSucceeded,
)
from emoclient._batch.jobs import Job, input_digests, key_from
from emoclient._batch.journal import JobRecord, State
from emoclient._batch.ledger import JobResult
from emoclient._batch.options import SchedulerOptions
from emoclient._client import EmoClient
from emoclient._exceptions import EmoError, WaitTimeoutError
from emoclient._validate import check_count, check_optional_seconds, check_output_name

__all__ = ["JobHandle", "JobQueue", "JobState", "QueueFullError"]

_JOB = TypeAdapter[Job](Job)


class QueueFullError(EmoError):
    """The queue holds as much as it can run in time; come back after ``retry_after`` s."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(message)


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
_BY_RECORD = {
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

    def __init__(self, queue: JobQueue, job: Job, *, id: str, owner: str) -> None:
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
        self._queue = queue
        self._history: list[BatchEvent] = []
        self._changed = anyio.Event()
        self._done = anyio.Event()

    def __repr__(self) -> str:
        return f"JobHandle(id={self.id[:12]!r}, state={self.state.value!r})"

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
        return await self._queue.cancel(self)

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


class JobQueue:
    """A long-lived batch that accepts jobs at any time; see the module docstring.

    ``client`` may be one client or several (jobs spread over their accounts). ``out_dir``
    holds the videos and the journal; ``max_queued`` bounds the jobs waiting for their
    turn. On exit, PENDING tasks are cancelled and RUNNING ones finish and download
    (``finish=True`` in :meth:`aclose` waits for every job instead).
    """

    def __init__(
        self,
        client: EmoClient | Sequence[EmoClient],
        *,
        out_dir: str | Path,
        journal: str | Path | None = None,
        max_queued: int = 100,
        options: SchedulerOptions | None = None,
    ) -> None:
        self.max_queued = check_count("max_queued", max_queued)
        self._batch = Batch(
            client, out_dir=out_dir, journal=journal, on_event=self._on_event, options=options
        )
        self._handles: dict[str, JobHandle] = {}
        self._waiting: OrderedDict[str, deque[JobHandle]] = OrderedDict()
        self._queued = 0
        self._arrived = anyio.Event()
        self._closed = False
        self._tg: TaskGroup | None = None
        self._completions: deque[float] = deque(maxlen=20)

    async def __aenter__(self) -> Self:
        await self._batch.__aenter__()
        try:
            self._tg = anyio.create_task_group()
            await self._tg.__aenter__()
            self._tg.start_soon(self._run)
            await self._resume()
        except BaseException as exc:
            await self._batch.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if et is None:
            await self.aclose()
        tg, self._tg = self._tg, None
        try:
            if tg is not None:
                if et is not None:
                    tg.cancel_scope.cancel()
                await tg.__aexit__(et, e, tb)
        finally:
            await self._batch.__aexit__(et, e, tb)

    async def aclose(self, *, finish: bool = False) -> None:
        """Stop taking jobs; ``finish`` waits for every job, else queued jobs are cancelled,
        PENDING tasks too (not billed), and RUNNING tasks finish and download."""
        self._closed = True
        if not finish:
            for handles in self._waiting.values():
                while handles:
                    await self._withdraw(handles.popleft())
            await self._batch.drain()
        self._arrived.set()
        for handle in list(self._handles.values()):
            await handle._done.wait()

    # --- the app's side ---------------------------------------------------------------

    async def start(self, job: Job, *, owner: str = "default") -> JobHandle:
        """Accept ``job`` and return its handle at once (the same handle for the same job).

        Raises :class:`QueueFullError` with ``retry_after`` when the queue is full, or when
        the job would wait so long that its task could expire before it runs.
        """
        if self._closed or self._tg is None:
            raise RuntimeError("the queue is closed; use it as `async with JobQueue(...)`")
        if job.output is not None:  # checked again: a copy of a job skips its checks
            check_output_name(job.output)
        key = key_from(job, await input_digests(job))
        known = self._handles.get(key)
        if known is not None and not known.state.is_final:
            return known
        self._check_room()
        handle = JobHandle(self, job, id=key, owner=owner)
        self._handles[key] = handle
        self._enqueue(handle)
        return handle

    def _enqueue(self, handle: JobHandle) -> None:
        if handle.owner not in self._waiting:
            # Owners who were served go to the back; one new here has had no turn yet.
            self._waiting[handle.owner] = deque()
            self._waiting.move_to_end(handle.owner, last=False)
        self._waiting[handle.owner].append(handle)
        self._queued += 1
        self._arrived.set()

    async def get(self, id: str) -> JobHandle | None:
        """The handle of job ``id``: a live one, or one rebuilt from the journal (a job of
        an earlier run of the app); None when the journal never saw it."""
        handle = self._handles.get(id)
        if handle is not None:
            return handle
        record = await self._batch._row(id)
        if record is None or record.job is None:
            return None
        handle = JobHandle(self, _JOB.validate_json(record.job), id=id, owner="earlier run")
        handle.state = _BY_RECORD[record.state]
        handle.task_id = record.task_id
        if record.state == State.DOWNLOADED:
            handle.path = self._batch.out_dir / record.output
        if handle.state.is_final:
            handle._done.set()
        return handle

    async def cancel(self, handle: JobHandle) -> bool:
        """Cancel ``handle``'s job (see :meth:`JobHandle.cancel`)."""
        if handle.state.is_final:
            return False
        waiting = self._waiting.get(handle.owner)
        if waiting is not None and handle in waiting:
            waiting.remove(handle)
            await self._withdraw(handle)
            return True
        done = await self._batch.cancel(handle.id, coming=handle.taken_at is not None)
        if done is False:
            handle.billed_anyway = True
        return bool(done)

    @property
    def queued(self) -> int:
        """Jobs accepted and not yet taken up."""
        return self._queued

    # --- the machinery ------------------------------------------------------------------

    def _check_room(self) -> None:
        if self._queued >= self.max_queued:
            raise QueueFullError(
                f"the queue holds {self._queued} jobs, its limit; retry later",
                retry_after=self._retry_after(1),
            )
        # Work that would wait past its task's life is refused rather than lost.
        ttl = self._batch.options.task_ttl - self._batch.options.expiry_margin
        wait = self._seconds_per_job() * (self._queued + 1) / max(1, len(self._batch.clients))
        if wait >= ttl:
            raise QueueFullError(
                f"a job started now would wait about {wait / 3600:.1f} h, longer than a "
                "task may wait before it expires; retry later",
                retry_after=self._retry_after(math.ceil((wait - ttl) / self._seconds_per_job())),
            )

    def _seconds_per_job(self) -> float:
        times = list(self._completions)
        if len(times) < 2:
            return 60.0  # nothing seen yet: a minute a job, an EMO task's order of magnitude
        return max(1.0, (times[-1] - times[0]) / (len(times) - 1))

    def _retry_after(self, jobs: int) -> float:
        return round(max(1.0, jobs * self._seconds_per_job()), 1)

    async def _withdraw(self, handle: JobHandle) -> None:
        self._queued -= 1
        handle._finish(
            JobResult(
                job=handle.job, status="canceled", error="cancelled while queued", key=handle.id
            )
        )

    async def _jobs(self) -> AsyncIterator[Job]:
        """Queued jobs, one owner after another (round robin), for as long as the queue lives."""
        while True:
            while not any(self._waiting.values()):
                if self._closed:
                    return
                self._arrived = anyio.Event()
                await self._arrived.wait()
            owner, handles = next((o, h) for o, h in self._waiting.items() if h)
            self._waiting.move_to_end(owner)  # the next turn goes to the next owner
            handle = handles.popleft()
            self._queued -= 1
            handle.taken_at = time.time()
            yield handle.job

    async def _run(self) -> None:
        async for result in self._batch.run(self._jobs()):
            self._completions.append(time.monotonic())
            handle = self._handles.get(result.key or "")
            if handle is not None:
                handle._finish(result)

    async def _on_event(self, event: BatchEvent) -> None:
        if isinstance(event, JobEvent):
            handle = self._handles.get(event.key)
            if handle is not None:
                handle._event(event)

    async def _resume(self) -> None:
        # Jobs an earlier run of the app left live: their tasks are billed or may be, so
        # they are taken up again (polled and downloaded, never submitted twice).
        live = await self._batch._rows(State.SUBMITTING, State.SUBMITTED, State.SUCCEEDED)
        for record in live:
            if record.job is not None and record.key not in self._handles:
                await self._adopt(record)

    async def _adopt(self, record: JobRecord) -> None:
        job = _JOB.validate_json(record.job or "")
        handle = JobHandle(self, job, id=record.key, owner="earlier run")
        handle.state, handle.task_id = _BY_RECORD[record.state], record.task_id
        self._handles[record.key] = handle
        self._enqueue(handle)
