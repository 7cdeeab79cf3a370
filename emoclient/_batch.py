"""Batches: many jobs in, finished videos out, resumable through the journal.

Per job: journal lookup → preflight → upload local inputs → detection (unless boxes are
given; cached by image content) → submit (intent first) → poll → download. Jobs are pulled
from the caller's iterable only as fast as they can be worked on, so memory stays bounded;
results stream out as jobs end. One failing job never stops the others.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from emoclient._client import EmoClient
from emoclient._events import (
    BatchEvent,
    BatchFinished,
    JobDownloaded,
    JobFailed,
    JobPreflightFailed,
    JobQueued,
    JobResumed,
)
from emoclient._jobs import Job, aiterate, input_digests, key_from, output_name
from emoclient._journal import JobRecord, Journal, State
from emoclient._preflight import price_per_second
from emoclient._prepare import Preparer, Rejection
from emoclient._scheduler import Outcome, ResultStatus, Scheduler, SchedulerOptions, Ticket

__all__ = ["Batch", "BatchSummary", "JobResult", "ResultStatus"]

EventHandler = Callable[[BatchEvent], Awaitable[None] | None]
JOURNAL_NAME = "emoclient-journal.sqlite3"
_PARTIAL = re.compile(r"\..+\.[0-9a-f]{12}\.part")


@dataclass(frozen=True, slots=True)
class JobResult:
    """How one job ended. ``path`` is set when the video is on disk."""

    job: Job
    status: ResultStatus
    path: Path | None = None
    task_id: str | None = None
    error: str | None = None
    code: str | None = None
    billed_seconds: float = 0.0
    cost_cny: float = 0.0


@dataclass(slots=True)
class BatchSummary:
    """Counts by result status, billed seconds, estimated cost and elapsed seconds.

    ``interrupted`` counts tasks left RUNNING by :meth:`Batch.stop`; a rerun fetches them.
    """

    counts: dict[str, int] = field(default_factory=dict)
    billed_seconds: float = 0.0
    estimated_cost_cny: float = 0.0
    elapsed: float = 0.0
    interrupted: int = 0
    stopped: bool = False

    @property
    def total(self) -> int:
        """Number of jobs that produced a result."""
        return sum(self.counts.values())

    def add(self, result: JobResult) -> None:
        """Count one result in."""
        self.counts[result.status] = self.counts.get(result.status, 0) + 1
        self.billed_seconds += result.billed_seconds
        self.estimated_cost_cny = round(self.estimated_cost_cny + result.cost_cny, 4)


@dataclass(eq=False)
class _Work:
    job: Job
    ticket: Ticket
    record: JobRecord
    digests: dict[str, str]


class Batch:
    """Runs jobs through one account's scheduler; use as ``async with Batch(client, ...)``.

    ``out_dir`` receives the videos and, by default, the journal
    (``emoclient-journal.sqlite3``); rerunning the same jobs into the same folder resumes.
    ``window`` is the number of tasks kept submitted (running plus queued); by default the
    client's ``Rates.window`` (2). Every task also holds a slot of the client's account-wide
    window, shared with other batches and ``generate_*`` calls on the same key. ``on_event``
    receives every progress event (a plain or an async callable). ``retry=True`` gives
    failed and expired jobs of an earlier run another go.
    """

    def __init__(
        self,
        client: EmoClient,
        *,
        out_dir: str | Path,
        journal: str | Path | None = None,
        window: int | None = None,
        on_event: EventHandler | None = None,
        expiry_margin: float | None = None,
        retry: bool = False,
        prepare_concurrency: int = 2,
        options: SchedulerOptions | None = None,
    ) -> None:
        window = window if window is not None else client.limits.rates.window
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self.client = client
        self.out_dir = Path(out_dir)
        self.journal_path = Path(journal) if journal is not None else self.out_dir / JOURNAL_NAME
        base = options or SchedulerOptions()
        margin = expiry_margin if expiry_margin is not None else base.expiry_margin
        self.options = dataclasses.replace(base, window=window, expiry_margin=margin)
        self.retry = retry
        self.summary = BatchSummary()
        self._on_event = on_event
        self._prepare_concurrency = max(1, prepare_concurrency)
        self._journal = Journal(self.journal_path)
        self._scheduler: Scheduler | None = None
        self._tg: TaskGroup | None = None
        self._stop_requested = False
        self._running = False
        self._started = 0.0

    async def __aenter__(self) -> Self:
        await self._journal.open()
        await anyio.to_thread.run_sync(_remove_partial_downloads, self.out_dir)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        tg, self._tg = self._tg, None
        try:
            if tg is not None:
                if et is not None or self._running:
                    tg.cancel_scope.cancel()  # the caller left early: stop working
                try:
                    return await tg.__aexit__(et, e, tb)
                except BaseExceptionGroup as group:
                    # One failure (say, a JournalError) reads better on its own than in groups.
                    single = _single(group)
                    if single is None:
                        raise
                    raise single from None
            return None
        finally:
            with anyio.CancelScope(shield=True):
                await self._journal.close()

    @property
    def scheduler(self) -> Scheduler | None:
        """The scheduler of the current or last run (for statistics such as ``queries``)."""
        return self._scheduler

    def stop(self) -> None:
        """Stop gracefully: no new submits, PENDING tasks cancelled, downloads finish.

        Tasks already RUNNING are billed anyway; they stay in the journal and a rerun of
        the same batch fetches their videos.
        """
        self._stop_requested = True
        if self._tg is not None and self._scheduler is not None:
            self._tg.start_soon(self._scheduler.stop)

    async def run(self, jobs: Iterable[Job] | AsyncIterable[Job]) -> AsyncIterator[JobResult]:
        """Work through ``jobs`` and yield each job's :class:`JobResult` as it ends."""
        if self._tg is None:
            raise RuntimeError("use the batch as `async with Batch(client, ...) as batch:`")
        if self._running:
            raise RuntimeError("this batch is already running; start one run at a time")
        self._started = time.monotonic()
        self._running = True
        self.summary = BatchSummary()
        send, receive = anyio.create_memory_object_stream[JobResult](16)
        results = _Results(self.summary, send)
        scheduler = Scheduler(
            self.client,
            self._journal,
            options=self.options,
            emit=self._emit,
            finish=results.outcome,
        )
        self._scheduler = scheduler
        self._tg.start_soon(self._drive, jobs, scheduler, results)
        async with receive:
            async for result in receive:
                yield result
        self._running = False
        self.summary.elapsed = time.monotonic() - self._started
        self.summary.interrupted = scheduler.interrupted
        self.summary.stopped = self._stop_requested
        await self._emit(
            BatchFinished(
                counts=dict(self.summary.counts),
                billed_seconds=self.summary.billed_seconds,
                estimated_cost_cny=self.summary.estimated_cost_cny,
                elapsed=self.summary.elapsed,
                stopped=self.summary.stopped,
            )
        )

    async def _drive(
        self, jobs: Iterable[Job] | AsyncIterable[Job], scheduler: Scheduler, results: _Results
    ) -> None:
        preparer = Preparer(self.client, self._journal, emit=self._emit)
        to_prepare, prepare_rx = anyio.create_memory_object_stream[_Work](0)
        to_submit, submit_rx = anyio.create_memory_object_stream[_Work](0)
        async with results.send, anyio.create_task_group() as tg:
            await tg.start(scheduler.run)
            async with to_submit, prepare_rx:
                for _ in range(self._prepare_concurrency):
                    tg.start_soon(
                        self._prepare_loop, preparer, prepare_rx.clone(), to_submit.clone(), results
                    )
            tg.start_soon(self._submit_loop, scheduler, submit_rx, results)
            async with to_prepare:
                await self._feed(jobs, scheduler, to_prepare, results)

    async def _feed(
        self,
        jobs: Iterable[Job] | AsyncIterable[Job],
        scheduler: Scheduler,
        to_prepare: MemoryObjectSendStream[_Work],
        results: _Results,
    ) -> None:
        seen_keys: dict[str, str] = {}
        seen_outputs: dict[str, str] = {}
        async for job in aiterate(jobs):
            if self._stop_requested:
                break
            digests = await input_digests(job)
            key = key_from(job, digests)
            name = output_name(job, key)
            label = job.display_label
            clash = seen_keys.get(key) or seen_outputs.get(name)
            if clash is not None:
                message = f"same output {name!r} as {clash}; give each job its own output name"
                await results.direct(job, "invalid", error=message)
                continue
            seen_keys[key] = seen_outputs[name] = label
            record = await self._journal.add(
                JobRecord(key=key, label=label, model=job.model, output=name, state=State.NEW)
            )
            ticket = Ticket(
                key=key,
                label=label,
                model=job.model,
                path=self.out_dir / name,
                output_seconds=record.output_seconds,
            )
            results.register(ticket, job)
            await self._route(_Work(job, ticket, record, digests), scheduler, to_prepare, results)

    async def _route(
        self,
        work: _Work,
        scheduler: Scheduler,
        to_prepare: MemoryObjectSendStream[_Work],
        results: _Results,
    ) -> None:
        record, ticket = work.record, work.ticket
        if self.retry and record.state in (State.FAILED, State.EXPIRED):
            await self._journal.update(
                record.key, state=State.NEW, task_id=None, code=None, error=None
            )
            record.state = State.NEW
        if record.state != State.NEW:
            await self._emit(
                JobResumed(
                    label=ticket.label, key=ticket.key, task_id=record.task_id, state=record.state
                )
            )
        if record.state == State.DOWNLOADED:
            if await _present(ticket.path, record.size):
                await self._emit(
                    JobDownloaded(
                        label=ticket.label,
                        key=ticket.key,
                        task_id=record.task_id,
                        path=ticket.path,
                        size=record.size or 0,
                        skipped=True,
                    )
                )
                await results.outcome(
                    Outcome(ticket, "succeeded", billed_seconds=record.video_duration or 0.0)
                )
                return
            record.state = State.SUCCEEDED  # the file went missing: fetch it again
        if record.state in (State.FAILED, State.EXPIRED, State.INVALID):
            status: Literal["failed", "expired", "invalid"] = record.state  # type: ignore[assignment]
            await results.outcome(Outcome(ticket, status, record.error, record.code))
            return
        if record.state == State.SUCCEEDED and record.video_url is not None:
            ticket.task_id = record.task_id
            ticket.video_url = record.video_url
            ticket.url_expires_at = record.url_expires_at or float("inf")
            ticket.video_duration = record.video_duration or 0.0
            await scheduler.fetch(ticket)
            return
        if record.state in (State.SUBMITTED, State.SUCCEEDED) and record.task_id is not None:
            # (SUCCEEDED without a URL: the task is asked again, never submitted again.)
            await scheduler.track(ticket, record.task_id)
            return
        await self._emit(JobQueued(label=ticket.label, key=ticket.key))
        await to_prepare.send(work)

    async def _prepare_loop(
        self,
        preparer: Preparer,
        inbox: MemoryObjectReceiveStream[_Work],
        outbox: MemoryObjectSendStream[_Work],
        results: _Results,
    ) -> None:
        async with inbox, outbox:
            async for work in inbox:
                if self._stop_requested:
                    await results.outcome(Outcome(work.ticket, "canceled", "the batch was stopped"))
                    continue
                rejection = await preparer.prepare(work.job, work.ticket, work.digests)
                if rejection is None:
                    await outbox.send(work)
                else:
                    await self._reject(work.ticket, rejection, results)

    async def _reject(self, ticket: Ticket, rejection: Rejection, results: _Results) -> None:
        changes: dict[str, str | None] = {"code": rejection.code, "error": rejection.message}
        if rejection.final:
            changes["state"] = State.INVALID if rejection.status == "invalid" else State.FAILED
        # Otherwise the state stays: a submit left unresolved by an earlier run keeps its
        # intent, so the rerun still looks for its task before sending it again.
        await self._journal.update(ticket.key, **changes)
        if rejection.status == "invalid":
            event: BatchEvent = JobPreflightFailed(
                label=ticket.label, key=ticket.key, problems=rejection.problems
            )
        else:
            event = JobFailed(
                label=ticket.label, key=ticket.key, code=rejection.code, message=rejection.message
            )
        await self._emit(event)
        await results.outcome(Outcome(ticket, rejection.status, rejection.message, rejection.code))

    async def _submit_loop(
        self, scheduler: Scheduler, inbox: MemoryObjectReceiveStream[_Work], results: _Results
    ) -> None:
        async with inbox:
            async for work in inbox:
                intent_at = work.record.intent_at if work.record.state == State.SUBMITTING else None
                if self._stop_requested or not await scheduler.submit(
                    work.ticket, intent_at=intent_at
                ):
                    await results.outcome(Outcome(work.ticket, "canceled", "the batch was stopped"))
        await scheduler.close()

    async def _emit(self, event: BatchEvent) -> None:
        if self._on_event is None:
            return
        outcome = self._on_event(event)
        if inspect.isawaitable(outcome):
            await outcome


class _Results:
    """Turns scheduler outcomes into JobResults on the batch's result stream."""

    def __init__(self, summary: BatchSummary, send: MemoryObjectSendStream[JobResult]) -> None:
        self.summary = summary
        self.send = send
        self._jobs: dict[str, Job] = {}

    def register(self, ticket: Ticket, job: Job) -> None:
        self._jobs[ticket.key] = job

    async def outcome(self, outcome: Outcome) -> None:
        ticket = outcome.ticket
        job = self._jobs.pop(ticket.key)
        billed = outcome.billed_seconds
        result = JobResult(
            job=job,
            status=outcome.status,
            path=ticket.path if outcome.status == "succeeded" else None,
            task_id=ticket.task_id,
            error=outcome.error,
            code=outcome.code,
            billed_seconds=billed,
            cost_cny=round(billed * price_per_second(job), 4),
        )
        await self._deliver(result)

    async def direct(self, job: Job, status: ResultStatus, *, error: str) -> None:
        await self._deliver(JobResult(job=job, status=status, error=error))

    async def _deliver(self, result: JobResult) -> None:
        self.summary.add(result)
        # When the caller stopped reading results, the journal still has them.
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await self.send.send(result)


def _remove_partial_downloads(out_dir: Path) -> None:
    # A process killed mid-download leaves its temporary file behind (the client names
    # them ".<video>.<12 hex>.part"); the rerun downloads afresh.
    for stale in out_dir.glob("**/.*.part"):
        if _PARTIAL.fullmatch(stale.name):
            stale.unlink(missing_ok=True)


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    inner: BaseException = group
    while isinstance(inner, BaseExceptionGroup):
        if len(inner.exceptions) != 1:
            return None
        inner = inner.exceptions[0]
    return inner


async def _present(path: Path, size: int | None) -> bool:
    try:
        stat = await anyio.Path(path).stat()
    except FileNotFoundError:
        return False
    return size is None or stat.st_size == size
