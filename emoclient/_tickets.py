"""What the scheduler tracks per job, how a job ends, the tuning knobs, and reporting ends."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlsplit

import anyio

from emoclient._events import BatchEvent, JobExpired, JobFailed
from emoclient._journal import Journal, State
from emoclient._models import SubmittedTask, Task, TaskStatus

__all__ = ["Fit", "Learned", "Outcome", "Reporter", "ResultStatus", "SchedulerOptions", "Ticket"]

ResultStatus = Literal["succeeded", "failed", "expired", "canceled", "invalid"]

# Output length assumed for a job whose length is not known locally (EMO audio by URL).
_DEFAULT_OUTPUT_SECONDS = 10.0
_URL_TTL = 24 * 3600.0


@dataclass(eq=False)
class Ticket:
    """One job as the scheduler sees it: what to submit and where its video goes."""

    key: str
    label: str
    model: str
    path: Path
    output_seconds: float | None
    submit: Callable[[], Awaitable[SubmittedTask]] | None = None
    task_id: str | None = None
    status: TaskStatus = TaskStatus.PENDING
    video_url: str | None = None
    url_expires_at: float = math.inf
    video_duration: float = 0.0
    submitted_at: float = 0.0  # local monotonic seconds
    started_at: float | None = None
    last_pending: float = 0.0  # local time of the last answer that said PENDING
    last_running: float | None = None  # local time of the last answer that said RUNNING
    next_poll: float = 0.0
    interval: float = 0.0
    errors: int = 0
    slot: anyio.Event | None = None  # set to give the account's window slot back
    resumed: bool = False  # submitted by an earlier run

    @property
    def expected_seconds(self) -> float:
        """Seconds of video expected (a default when the length is unknown locally)."""
        return self.output_seconds or _DEFAULT_OUTPUT_SECONDS


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a ticket ended: ``status`` as in ``JobResult``."""

    ticket: Ticket
    status: ResultStatus
    error: str | None = None
    code: str | None = None
    billed_seconds: float = 0.0


@dataclass
class Fit:
    """Processing time as ``a + b * output_seconds``, least squares with forgetting.

    Tasks carry a fixed overhead, so seconds per output second alone would misjudge clips
    of other lengths. While all clips seen had one length, the fit is a plain ratio.
    """

    forget: float = 0.8
    n: float = 0.0
    sum_d: float = 0.0
    sum_t: float = 0.0
    sum_dd: float = 0.0
    sum_dt: float = 0.0

    def add(self, seconds: float, took: float) -> None:
        """Record a clip of ``seconds`` that took ``took`` seconds to render."""
        f = self.forget
        self.n = self.n * f + 1
        self.sum_d = self.sum_d * f + seconds
        self.sum_t = self.sum_t * f + took
        self.sum_dd = self.sum_dd * f + seconds * seconds
        self.sum_dt = self.sum_dt * f + seconds * took

    def predict(self, seconds: float) -> float | None:
        """Expected processing time of a clip of ``seconds``; None before any sample."""
        if self.n == 0:
            return None
        mean_d, mean_t = self.sum_d / self.n, self.sum_t / self.n
        var = self.sum_dd / self.n - mean_d * mean_d
        if var > 1e-6 * max(1.0, mean_d * mean_d):
            slope = (self.sum_dt / self.n - mean_d * mean_t) / var
            base = mean_t - slope * mean_d
            if base >= 0 and slope >= 0:
                return base + slope * seconds
        return mean_t * seconds / mean_d if mean_d > 0 else mean_t


@dataclass
class Learned:
    """Processing time fits on our clock (for polling) and the service's (for admission)."""

    local: Fit = field(default_factory=Fit)
    server: Fit = field(default_factory=Fit)

    def observe(self, seconds: float, local: float | None, server: float | None) -> None:
        """Record a task of ``seconds`` output that took ``local`` / ``server`` seconds."""
        if local is not None:
            self.local.add(seconds, local)
        if server is not None:
            self.server.add(seconds, server)


@dataclass
class SchedulerOptions:
    """Tuning knobs; the defaults suit the real service and the emulator alike."""

    window: int = 2
    poll_min: float = 0.05
    poll_max: float = 30.0
    pending_poll: float = 60.0
    queries_per_second: float = 5.0
    task_ttl: float = 24 * 3600.0
    expiry_margin: float = 4 * 3600.0
    download_workers: int = 2
    download_attempts: int = 4
    query_attempts: int = 8
    submit_attempts: int = 4
    download_backoff: float = 0.5
    clock: Callable[[], float] = field(default=time.monotonic)


class Reporter:
    """Records how a ticket ended: journal row, progress event, then the batch's result."""

    def __init__(
        self,
        journal: Journal,
        *,
        emit: Callable[[BatchEvent], Awaitable[None]],
        finish: Callable[[Outcome], Awaitable[None]],
    ) -> None:
        self.journal = journal
        self.emit = emit
        self.finish = finish

    async def fail(self, ticket: Ticket, code: str | None, message: str) -> None:
        await self.journal.update(ticket.key, state=State.FAILED, code=code, error=message)
        await self.fail_this_run(ticket, message, code=code)

    async def fail_this_run(
        self, ticket: Ticket, message: str, *, code: str | None = None, billed_seconds: float = 0.0
    ) -> None:
        """Report the job failed without touching its journal row, so a rerun picks it up."""
        await self.emit(
            JobFailed(
                label=ticket.label,
                key=ticket.key,
                task_id=ticket.task_id,
                code=code,
                message=message,
            )
        )
        await self.finish(Outcome(ticket, "failed", message, code, billed_seconds))

    async def expire(self, ticket: Ticket, message: str) -> None:
        await self.journal.update(ticket.key, state=State.EXPIRED, error=message)
        await self.emit(
            JobExpired(label=ticket.label, key=ticket.key, task_id=ticket.task_id, message=message)
        )
        billed = ticket.video_duration
        await self.finish(Outcome(ticket, "expired", message, billed_seconds=billed))


def url_expiry(task: Task) -> float:
    """Epoch seconds when the result URL expires: its ``Expires`` parameter, else end + 24 h."""
    if task.video_url:
        expires = parse_qs(urlsplit(task.video_url).query).get("Expires")
        if expires and expires[0].isdigit():
            return float(expires[0])
    end = task.end_time or datetime.now(UTC)
    return end.timestamp() + _URL_TTL
