"""The job ledger: every transition of a batch job, recorded by one call.

A transition writes, in this order, the job's journal row (durable first), its progress event
and, when the job ends, its :class:`JobResult` on the batch's result stream. So what the
journal says, what the user saw and what the batch returned never disagree. Nothing else
writes job rows or builds job events; the rest of the batch reads the journal through here.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from emoclient._batch.checks import price_per_second
from emoclient._batch.events import (
    BatchEvent,
    JobCanceled,
    JobDetected,
    JobDownloaded,
    JobEvent,
    JobExpired,
    JobFailed,
    JobPreflightFailed,
    JobQueued,
    JobReconciled,
    JobResubmitted,
    JobResumed,
    JobStalled,
    JobStarted,
    JobSubmitted,
    JobSucceeded,
    JobUploaded,
)
from emoclient._batch.jobs import Job
from emoclient._batch.journal import CachedDetection, JobRecord, Journal, State
from emoclient._models import BBoxTuple, Model, SubmittedTask, Task, UploadedFile
from emoclient._timing import Progress

__all__ = ["BatchSummary", "JobResult", "Ledger", "ResultStatus", "Ticket"]

ResultStatus = Literal["succeeded", "failed", "expired", "canceled", "invalid"]

_E = TypeVar("_E", bound=JobEvent)
logger = logging.getLogger("emoclient")


@dataclass(eq=False)
class Ticket:
    """One job as the batch machinery sees it: what to submit, its task, where its video goes."""

    key: str
    label: str
    model: Model
    path: Path
    output_seconds: float | None
    submit: Callable[[], Awaitable[SubmittedTask]] | None = None
    task_id: str | None = None
    progress: Progress = field(default_factory=Progress)
    video_url: str | None = None
    url_expires_at: float = math.inf
    video_duration: float = 0.0
    ratio: str = "1:1"  # the output's ratio, which fixes its frame size
    exact_length: bool = False  # output_seconds is the video's length (EMO: the audio's)
    estimated_seconds: float | None = None  # URL audio: its length as its header tells
    account: str = ""  # the label of the account that submits it (never the key)
    base_url: str = ""
    errors: int = 0  # query failures in a row
    withdrawn: bool = False  # cancelled by the caller before its submit
    resubmits: int = 0  # times submitted again after the service's own failure
    stall_warned_at: float | None = None  # when it was last reported as stalled
    slot: anyio.Event | None = None  # set to give the account's window slot back

    @property
    def expected_seconds(self) -> float | None:
        """Seconds of video expected; None when unknown (URL audio whose header said nothing)."""
        return self.output_seconds or self.estimated_seconds


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
    #: The job's content key (its id in the journal and in a :class:`JobQueue`).
    key: str | None = None
    #: The video is an earlier run's, still on disk (its billed seconds were paid then).
    earlier: bool = False


@dataclass(slots=True)
class BatchSummary:
    """Counts by result status, this run's billed seconds and cost (videos an earlier run
    made count in ``counts`` and ``from_earlier_runs`` only), elapsed seconds. ``interrupted``
    counts tasks left RUNNING by :meth:`Batch.stop`; a rerun fetches them."""

    counts: dict[str, int] = field(default_factory=dict)
    billed_seconds: float = 0.0
    estimated_cost_cny: float = 0.0
    elapsed: float = 0.0
    interrupted: int = 0
    stopped: bool = False
    #: Tasks submitted again after the service's own failure (billed nothing).
    resubmitted: int = 0
    #: Requests sent again after a failure, by call kind (upload, detect, submit, query,
    #: download); a broken download resumed counts as a download retry.
    retries: dict[str, int] = field(default_factory=dict)
    #: Requests that waited for the account's rate limit, and the seconds they waited.
    rate_waits: int = 0
    rate_wait_seconds: float = 0.0
    #: Submits whose answer was lost and that were looked up in the task list before any
    #: new submit (found: the task was there, not paid twice).
    reconciled: int = 0
    reconciled_found: int = 0
    #: Tasks reported as stalled (RUNNING far past their expected length).
    stalled: int = 0
    #: Videos an earlier run made and paid for, found on disk.
    from_earlier_runs: int = 0

    @property
    def retried(self) -> int:
        """Requests sent again, all call kinds together."""
        return sum(self.retries.values())

    @property
    def total(self) -> int:
        """Number of jobs that produced a result."""
        return sum(self.counts.values())

    def add(self, result: JobResult) -> None:
        """Count one result in."""
        self.counts[result.status] = self.counts.get(result.status, 0) + 1
        if result.earlier:
            self.from_earlier_runs += 1
            return
        self.billed_seconds += result.billed_seconds
        self.estimated_cost_cny = round(self.estimated_cost_cny + result.cost_cny, 4)


class Ledger:
    """Records the transitions of one batch run's jobs; see the module docstring."""

    def __init__(
        self,
        journal: Journal,
        *,
        emit: Callable[[BatchEvent], Awaitable[None]],
        results: MemoryObjectSendStream[JobResult],
        summary: BatchSummary,
        on_end: Callable[[Ticket, bool], Awaitable[None]] | None = None,
    ) -> None:
        self._journal = journal
        self._emit = emit
        self._results = results
        self._summary = summary
        self._on_end = on_end
        self._jobs: dict[str, Job] = {}
        # Columns of prepared jobs, written with their intent.
        self._staged: dict[str, dict[str, object]] = {}
        self._stalled: set[str | None] = set()

    # --- intake -------------------------------------------------------------------------

    async def open(
        self, job: Job, *, key: str, output: str, path: Path
    ) -> tuple[Ticket, JobRecord]:
        """Take ``job`` in: its journal row (created when new) and its ticket."""
        label = job.display_label
        record = await self._journal.add(
            JobRecord(
                key=key,
                label=label,
                model=job.model,
                output=output,
                state=State.NEW,
                job=job.model_dump_json(),
            )
        )
        self._jobs[key] = job
        ticket = Ticket(
            key=key,
            label=label,
            model=job.model,
            path=path,
            output_seconds=record.output_seconds,
            ratio=job.detect_ratio,
            exact_length=job.spec.output_seconds is None,
        )
        return ticket, record

    async def refused(self, job: Job, message: str, *, key: str) -> None:
        """A job the batch will not take (it clashes with another); no journal row."""
        await self._deliver(JobResult(job=job, status="invalid", error=message, key=key))

    async def retried(self, ticket: Ticket, record: JobRecord) -> None:
        """A job that failed or expired in an earlier run gets another go."""
        await self._journal.update(ticket.key, state=State.NEW, task_id=None, code=None, error=None)
        record.state = State.NEW

    async def resumed(self, ticket: Ticket, record: JobRecord) -> None:
        """The journal knew the job; work continues from ``record.state``."""
        await self._emit(self._event(JobResumed, ticket, record.task_id, state=record.state))

    async def queued(self, ticket: Ticket) -> None:
        """The job goes to preparation."""
        await self._emit(self._event(JobQueued, ticket))

    async def already_downloaded(self, ticket: Ticket, record: JobRecord) -> None:
        """An earlier run saved the video and it is still there."""
        ticket.task_id = record.task_id
        size = record.size or 0
        await self._emit(
            self._event(JobDownloaded, ticket, path=ticket.path, size=size, skipped=True)
        )
        await self._end(ticket, "succeeded", billed=record.video_duration or 0.0, earlier=True)

    async def ended_before(self, ticket: Ticket, record: JobRecord) -> None:
        """The job ended (failed, expired, invalid) in an earlier run."""
        status: ResultStatus = (
            "failed"
            if record.state == State.FAILED
            else "expired"
            if record.state == State.EXPIRED
            else "invalid"
        )
        ticket.task_id = record.task_id
        await self._end(ticket, status, record.error, record.code)

    # --- preparation ----------------------------------------------------------------------

    async def cached_upload(
        self, ticket: Ticket, digest: str, model: str, *, valid_after: float
    ) -> str | None:
        """A journalled temporary upload of this content for ``model`` and the ticket's
        account, still valid then."""
        return await self._journal.get_upload(
            digest, model, account=ticket.account, valid_after=valid_after
        )

    async def uploaded(
        self, ticket: Ticket, *, field: str, digest: str, uploaded: UploadedFile
    ) -> None:
        """A local input went to temporary storage."""
        await self._journal.put_upload(
            digest,
            uploaded.model,
            account=ticket.account,
            url=uploaded.url,
            expires_at=uploaded.expires_at.timestamp(),
        )
        await self._emit(self._event(JobUploaded, ticket, field=field, url=uploaded.url))

    async def cached_detection(self, digest: str, model: str, ratio: str) -> CachedDetection | None:
        """A journalled detection answer for this image content, model and ratio."""
        return await self._journal.get_detection(digest, model, ratio)

    async def detected(
        self,
        ticket: Ticket,
        detection: CachedDetection,
        *,
        cache: tuple[str, str, str] | None,
    ) -> None:
        """Detection answered (``cache`` = digest, model, ratio to remember it by) or came
        from the cache (``cache`` None)."""
        if cache is not None:
            await self._journal.put_detection(*cache, detection)
        await self._emit(
            self._event(
                JobDetected,
                ticket,
                passed=detection.passed,
                cached=cache is None,
                code=detection.code,
                message=detection.message,
            )
        )

    async def prepared(self, ticket: Ticket, *, face: BBoxTuple, ext: BBoxTuple) -> None:
        """The job is ready to submit. Its boxes and length are journalled with the intent
        (one write): only a submitted job needs them on a rerun."""
        self._staged[ticket.key] = {
            "face_bbox": face,
            "ext_bbox": ext,
            "output_seconds": ticket.output_seconds,
        }

    async def invalid(self, ticket: Ticket, problems: tuple[str, ...]) -> None:
        """Local checks refused the job; nothing was paid for."""
        message = "; ".join(problems)
        await self._journal.update(ticket.key, state=State.INVALID, code=None, error=message)
        await self._emit(self._event(JobPreflightFailed, ticket, problems=problems))
        await self._end(ticket, "invalid", message)

    async def not_prepared(
        self, ticket: Ticket, message: str, *, code: str | None, final: bool
    ) -> None:
        """Preparation failed: for good (``final``: the service refused the portrait), or for
        this run only, keeping the journal state (a submit left unresolved by an earlier run
        keeps its intent, so the rerun still looks for its task before sending it again)."""
        changes: dict[str, object] = {"code": code, "error": message}
        if final:
            changes["state"] = State.FAILED
        await self._journal.update(ticket.key, **changes)
        await self._emit(self._event(JobFailed, ticket, code=code, message=message))
        await self._end(ticket, "failed", message, code)

    # --- submission -----------------------------------------------------------------------

    async def claimed_tasks(self, model: str, *, before: float | None = None) -> set[str]:
        """Task ids of ``model`` this journal's jobs ever held (claimed before ``before``)."""
        return await self._journal.claimed_tasks(model, before=before)

    async def intent(self, ticket: Ticket, *, at: float) -> None:
        """Durably: a submit of this job is about to be sent, by the ticket's account."""
        await self._journal.record_intent(
            ticket.key,
            at=at,
            account=ticket.account,
            base_url=ticket.base_url,
            **self._staged.pop(ticket.key, {}),
        )

    async def submitted(self, ticket: Ticket, task_id: str) -> None:
        """The service accepted the task (also when found by reconciliation)."""
        await self._journal.record_submitted(ticket.key, task_id=task_id, model=ticket.model)
        ticket.task_id = task_id
        await self._emit(self._event(JobSubmitted, ticket, task_id))

    async def reconciled(self, ticket: Ticket, task_id: str | None) -> None:
        """A lost submit's task was found (``task_id``; :meth:`submitted` follows) or found
        absent."""
        self._summary.reconciled += 1
        self._summary.reconciled_found += task_id is not None
        logger.info(
            "%s: a submit's answer was lost; the task list %s",
            ticket.label,
            f"has its task {task_id} (not submitted again)"
            if task_id
            else "has no task of it (safe to submit again)",
        )
        await self._emit(self._event(JobReconciled, ticket, task_id, found=task_id is not None))

    # --- running --------------------------------------------------------------------------

    async def resubmitting(
        self, ticket: Ticket, *, code: str | None, message: str | None, limit: int
    ) -> None:
        """The task FAILED with the service's own error (not billed): the job goes again."""
        why = f"{code or 'no code'}: {message or 'no message'}"
        note = f"task {ticket.task_id} failed ({why}); submitted again ({ticket.resubmits}/{limit})"
        await self._journal.update(ticket.key, state=State.NEW, task_id=None, code=code, error=note)
        self._summary.resubmitted += 1
        logger.info("%s: %s", ticket.label, note)
        await self._emit(
            self._event(JobResubmitted, ticket, code=code, message=note, attempt=ticket.resubmits)
        )

    async def stalled(self, ticket: Ticket, *, running: float, expected: float) -> None:
        """The task runs far past its expected length (reported again while it lasts)."""
        message = (
            f"task {ticket.task_id} has been RUNNING for {running:.0f} s, about "
            f"{running / expected:.0f}x its expected {expected:.0f} s; the service holds the "
            "account's slot for it. Tasks queued behind it are kept from expiring"
        )
        logger.warning("%s: %s", ticket.label, message)
        if ticket.task_id not in self._stalled:
            self._stalled.add(ticket.task_id)
            self._summary.stalled += 1
        await self._emit(
            self._event(JobStalled, ticket, running_for=running, expected=expected, message=message)
        )

    async def started(self, ticket: Ticket) -> None:
        """The task holds the account's running slot."""
        await self._emit(self._event(JobStarted, ticket))

    async def succeeded(self, ticket: Ticket, task: Task, *, url_expires_at: float) -> None:
        """The task SUCCEEDED: its URL is journalled before the download starts."""
        ticket.video_url = task.video_url
        ticket.video_duration = float(task.video_duration or 0.0)
        ticket.url_expires_at = url_expires_at
        await self._journal.update(
            ticket.key,
            state=State.SUCCEEDED,
            video_url=task.video_url,
            url_expires_at=url_expires_at,
            video_duration=ticket.video_duration,
        )
        await self._emit(self._event(JobSucceeded, ticket, video_duration=ticket.video_duration))

    async def url_refreshed(self, ticket: Ticket, url: str) -> None:
        """A re-query gave a fresh result URL."""
        ticket.video_url = url
        await self._journal.update(ticket.key, video_url=url)

    async def downloaded(self, ticket: Ticket, *, size: int) -> None:
        """The video is on disk."""
        await self._journal.update(ticket.key, state=State.DOWNLOADED, size=size)
        await self._emit(self._event(JobDownloaded, ticket, path=ticket.path, size=size))
        await self._end(ticket, "succeeded", billed=ticket.video_duration)

    # --- other ends -----------------------------------------------------------------------

    async def failed(self, ticket: Ticket, code: str | None, message: str) -> None:
        """The job failed for good (the service refused it, or its task FAILED)."""
        await self._journal.update(ticket.key, state=State.FAILED, code=code, error=message)
        await self._emit(self._event(JobFailed, ticket, code=code, message=message))
        await self._end(ticket, "failed", message, code)

    async def failed_this_run(
        self, ticket: Ticket, message: str, *, code: str | None = None, billed: float = 0.0
    ) -> None:
        """The job failed in this run; its journal row is kept, so a rerun picks it up."""
        await self._emit(self._event(JobFailed, ticket, code=code, message=message))
        await self._end(ticket, "failed", message, code, billed=billed, final=False)

    async def expired(self, ticket: Ticket, message: str) -> None:
        """The task or its result URL expired before the video could be fetched."""
        await self._journal.update(ticket.key, state=State.EXPIRED, error=message)
        await self._emit(self._event(JobExpired, ticket, message=message))
        await self._end(ticket, "expired", message, billed=ticket.video_duration)

    async def canceled(self, ticket: Ticket, message: str) -> None:
        """The job's task was cancelled (not billed); a rerun submits the job again."""
        await self._journal.update(ticket.key, state=State.NEW, task_id=None)
        await self._emit(self._event(JobCanceled, ticket))
        await self._end(ticket, "canceled", message)

    async def held_back(self, ticket: Ticket, message: str) -> None:
        """The batch was stopped before the job was submitted; the journal keeps its state."""
        await self._end(ticket, "canceled", message, final=False)

    # --- plumbing -------------------------------------------------------------------------

    def _event(
        self, kind: type[_E], ticket: Ticket, task_id: str | None = None, **fields: object
    ) -> _E:
        return kind(
            label=ticket.label,
            key=ticket.key,
            task_id=task_id or ticket.task_id,
            **fields,  # type: ignore[arg-type]
        )

    async def _end(
        self,
        ticket: Ticket,
        status: ResultStatus,
        error: str | None = None,
        code: str | None = None,
        *,
        billed: float = 0.0,
        final: bool = True,
        earlier: bool = False,
    ) -> None:
        """Deliver the job's result; ``final`` when the job is done for good (its journal row
        is not live any more); ``earlier`` when an earlier run made (and paid) the video."""
        job = self._jobs.pop(ticket.key, None)
        self._staged.pop(ticket.key, None)
        if job is None:  # already ended (a race of two ends must not crash the batch)
            return
        if self._on_end is not None:
            await self._on_end(ticket, final)
        await self._deliver(
            JobResult(
                job=job,
                status=status,
                path=ticket.path if status == "succeeded" else None,
                task_id=ticket.task_id,
                error=error,
                code=code,
                billed_seconds=billed,
                cost_cny=round(billed * price_per_second(job), 4),
                key=ticket.key,
                earlier=earlier,
            )
        )

    async def _deliver(self, result: JobResult) -> None:
        self._summary.add(result)
        # When the caller stopped reading results, the journal still has them.
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await self._results.send(result)
