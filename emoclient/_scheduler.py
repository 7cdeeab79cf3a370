"""The per-account scheduler: admission window, one budgeted poller and the download lane.

The account renders one task at a time and queues the rest. The scheduler keeps ``window``
tasks submitted (by default the running one plus one queued, so the slot never idles while
we learn that a task ended) and admits a task only when it can finish well inside its 24 h
life. One poller queries every live task, spending queries where a change is likely: the
running task around its expected end (learned as seconds per output second), queued tasks
rarely. Finished videos go to a download lane ordered by URL expiry, earliest first; a URL
that fails makes the task be queried again for a fresh one.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlsplit

import anyio
from anyio.abc import TaskGroup
from anyio.abc import TaskStatus as StartStatus

from emoclient._client import EmoClient
from emoclient._events import (
    BatchEvent,
    JobCanceled,
    JobDownloaded,
    JobExpired,
    JobFailed,
    JobStarted,
    JobSubmitted,
    JobSucceeded,
)
from emoclient._exceptions import (
    APIStatusError,
    EmoError,
    NotFoundError,
    RateLimitError,
    ResultURLExpiredError,
)
from emoclient._journal import Journal, State
from emoclient._models import SubmittedTask, Task, TaskStatus
from emoclient._reconcile import submit_once

__all__ = ["Outcome", "ResultStatus", "Scheduler", "SchedulerOptions", "Ticket"]

ResultStatus = Literal["succeeded", "failed", "expired", "canceled", "invalid"]

# Guess of processing seconds per output second until the first task teaches us better.
_DEFAULT_SECONDS_PER_OUTPUT = 10.0
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

    @property
    def expected_seconds(self) -> float:
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
class _Learned:
    """Running estimates of processing time per output second (local and server clocks)."""

    local: float | None = None
    server: float | None = None
    samples: int = 0

    def update(self, local: float | None, server: float | None) -> None:
        weight = 1.0 / min(self.samples + 1, 5)  # a mean first, then an EWMA
        if local is not None:
            self.local = local if self.local is None else self.local + weight * (local - self.local)
        if server is not None:
            self.server = (
                server if self.server is None else self.server + weight * (server - self.server)
            )
        self.samples += 1


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
    download_backoff: float = 0.5
    clock: Callable[[], float] = field(default=time.monotonic)


class Scheduler:
    """Runs submitted tasks of one account to a downloaded video; see the module docstring."""

    def __init__(
        self,
        client: EmoClient,
        journal: Journal,
        *,
        options: SchedulerOptions,
        emit: Callable[[BatchEvent], Awaitable[None]],
        finish: Callable[[Outcome], Awaitable[None]],
    ) -> None:
        self._client = client
        self._journal = journal
        self._opt = options
        self._emit = emit
        self._finish = finish
        self._clock = options.clock
        self._live: dict[str, Ticket] = {}
        self._changed = anyio.Condition()
        self._downloads: list[tuple[float, int, Ticket]] = []
        self._seq = itertools.count()
        self._closing = False
        self._stopping = False
        self._active_downloads = 0
        self._last_end_seen: float | None = None
        self._next_query = 0.0
        self._tg: TaskGroup | None = None
        self.learned = _Learned()
        self.queries = 0
        self.interrupted = 0

    # --- lifecycle ---------------------------------------------------------------------

    async def run(self, *, task_status: StartStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Poll and download until :meth:`close` was called and nothing is left."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            tg.start_soon(self._poll_loop)
            for _ in range(self._opt.download_workers):
                tg.start_soon(self._download_loop)

    async def close(self) -> None:
        """No more tickets will come; :meth:`run` returns once the live ones are done."""
        self._closing = True
        await self._notify()

    async def stop(self) -> None:
        """Stop gracefully: cancel PENDING tasks, leave RUNNING ones to a rerun, keep downloads."""
        self._stopping = True
        self._closing = True
        await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _wait_change(self, delay: float | None) -> None:
        async with self._changed:
            with anyio.move_on_after(delay):
                await self._changed.wait()

    # --- admission and submission -------------------------------------------------------

    async def submit(self, ticket: Ticket, *, intent_at: float | None) -> bool:
        """Wait for room, then submit (reconciling a lost earlier submit first).

        ``intent_at`` is the journal's intent time when an earlier run's submit is unresolved.
        Returns False when the batch was stopped before the task could be submitted.
        """
        if not await self._admit(ticket):
            return False
        try:
            task_id = await submit_once(
                self._client, self._journal, ticket, intent_at=intent_at, emit=self._emit
            )
        except APIStatusError as exc:
            self._give_slot_back(ticket)
            await self._fail(ticket, exc.code, f"the service refused the submit: {exc}")
            return True
        except EmoError as exc:
            self._give_slot_back(ticket)
            await self._journal.update(ticket.key, state=State.NEW)
            await self._fail(ticket, None, f"submitting failed: {exc}; rerun to retry")
            return True
        except BaseException:
            self._give_slot_back(ticket)
            raise
        await self.track(ticket, task_id)
        await self._emit(JobSubmitted(label=ticket.label, key=ticket.key, task_id=task_id))
        return True

    async def _admit(self, ticket: Ticket) -> bool:
        async with self._changed:
            while not self._stopping and not self._has_room(ticket):
                await self._changed.wait()
        if self._stopping:
            return False
        await self._take_slot(ticket, wait=True)
        if self._stopping:
            self._give_slot_back(ticket)
            return False
        return True

    async def _take_slot(self, ticket: Ticket, *, wait: bool) -> None:
        """Hold one slot of the account's in-flight window (shared with other clients of the
        same key, across processes with a shared limits backend) until the task ends."""
        assert self._tg is not None, "Scheduler.run() must be running"
        ticket.slot = anyio.Event()
        if wait:
            await self._tg.start(self._hold_slot, ticket.slot)
        else:
            self._tg.start_soon(self._hold_slot, ticket.slot)

    async def _hold_slot(
        self, release: anyio.Event, *, task_status: StartStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        async with self._client.limits.task_slot():
            task_status.started()
            await release.wait()

    @staticmethod
    def _give_slot_back(ticket: Ticket) -> None:
        if ticket.slot is not None:
            ticket.slot.set()

    def _has_room(self, ticket: Ticket) -> bool:
        if len(self._live) >= self._opt.window:
            return False
        if not self._live:
            return True
        # Server seconds until this task would end if queued behind our live ones.
        per_second = self.learned.server or _DEFAULT_SECONDS_PER_OUTPUT
        ahead = sum(t.expected_seconds for t in self._live.values())
        finish = per_second * (ahead + ticket.expected_seconds)
        return finish < self._opt.task_ttl - self._opt.expiry_margin

    async def track(self, ticket: Ticket, task_id: str) -> None:
        """Poll an existing task (just submitted, or live from an earlier run)."""
        if ticket.slot is None:  # live from an earlier run: it holds a slot already
            await self._take_slot(ticket, wait=False)
        now = self._clock()
        ticket.task_id = task_id
        ticket.submitted_at = ticket.submitted_at or now
        ticket.interval = self._opt.poll_min
        ticket.next_poll = now + self._first_delay()
        self._live[task_id] = ticket
        await self._notify()

    def _first_delay(self) -> float:
        # A new task queues behind the live ones; if it is alone it may start at once.
        return self._opt.poll_min if not self._live else self._opt.pending_poll

    async def fetch(self, ticket: Ticket) -> None:
        """Download a SUCCEEDED task's video (known from an earlier run)."""
        await self._queue_download(ticket)

    # --- the poller ---------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        while True:
            if self._stopping:
                await self._cancel_pending()
                return
            if not self._live:
                if self._closing:
                    return
                await self._wait_change(None)
                continue
            ticket = min(self._live.values(), key=lambda t: t.next_poll)
            delay = max(ticket.next_poll, self._next_query) - self._clock()
            if delay > 0:
                await self._wait_change(delay)
                continue
            self._next_query = self._clock() + 1.0 / self._opt.queries_per_second
            await self._poll(ticket)

    async def _poll(self, ticket: Ticket) -> None:
        assert ticket.task_id is not None
        self.queries += 1
        try:
            task = await self._client.get_task(ticket.task_id)
        except NotFoundError:
            task = Task(task_id=ticket.task_id, status=TaskStatus.UNKNOWN)
        except RateLimitError as exc:
            ticket.next_poll = self._clock() + (exc.retry_after or 1.0)
            return
        except Exception as exc:  # one task's trouble must not stop the others
            await self._query_failed(ticket, exc)
            return
        ticket.errors = 0
        await self._observe(ticket, task)

    async def _query_failed(self, ticket: Ticket, exc: Exception) -> None:
        ticket.errors += 1
        if ticket.errors < self._opt.query_attempts:
            ticket.next_poll = self._clock() + min(2.0**ticket.errors, self._opt.poll_max)
            return
        # Give up for this run only: the journal keeps the task id, and a rerun polls again.
        self._live.pop(ticket.task_id or "", None)
        self._give_slot_back(ticket)
        message = (
            f"querying task {ticket.task_id} failed {ticket.errors} times in a row ({exc}); "
            "the task is kept in the journal, rerun the batch to pick it up again"
        )
        await self._emit(
            JobFailed(
                label=ticket.label,
                key=ticket.key,
                task_id=ticket.task_id,
                code=None,
                message=message,
            )
        )
        await self._finish(Outcome(ticket, "failed", message))
        await self._notify()

    async def _observe(self, ticket: Ticket, task: Task) -> None:
        now = self._clock()
        if task.status is TaskStatus.RUNNING:
            await self._running(ticket, now)
        elif not task.is_terminal:
            ticket.last_pending = now
            ticket.next_poll = now + self._pending_delay(ticket)
        else:
            self._live.pop(ticket.task_id or "", None)
            self._give_slot_back(ticket)
            self._last_end_seen = now
            self._poll_oldest_pending_now(now)
            await self._terminal(ticket, task, now)
            await self._notify()

    def _pending_delay(self, ticket: Ticket) -> float:
        running = [t for t in self._live.values() if t.status is TaskStatus.RUNNING]
        if not running:  # nothing of ours runs: this one is next (or another client's runs)
            ticket.interval = min(
                max(ticket.interval, self._opt.poll_min) * 1.5, self._opt.poll_max
            )
            return ticket.interval
        return self._opt.pending_poll

    def _poll_oldest_pending_now(self, now: float) -> None:
        pending = [t for t in self._live.values() if t.status is not TaskStatus.RUNNING]
        if pending:
            oldest = min(pending, key=lambda t: t.submitted_at)
            oldest.next_poll = now
            oldest.interval = self._opt.poll_min

    async def _running(self, ticket: Ticket, now: float) -> None:
        if ticket.status is not TaskStatus.RUNNING:
            ticket.status = TaskStatus.RUNNING
            ticket.started_at = self._start_estimate(ticket, now)
            ticket.interval = 0.0
            await self._emit(JobStarted(label=ticket.label, key=ticket.key, task_id=ticket.task_id))
        ticket.last_running = now
        length = self._expected_length(ticket)
        if length is not None and ticket.started_at is not None:
            # Aim a little early, so that the learned estimate is not only ever corrected upwards.
            early = ticket.started_at + 0.9 * length
            if now + self._opt.poll_min < early:
                ticket.next_poll = early
                return
            step, growth = max(self._opt.poll_min, 0.05 * length), 1.5
        else:
            step, growth = self._opt.poll_min, 2.0  # nothing learned yet: find the scale fast
        interval = step if ticket.interval <= 0 else ticket.interval * growth
        ticket.interval = min(interval, self._opt.poll_max)
        ticket.next_poll = now + ticket.interval

    def _start_estimate(self, ticket: Ticket, now: float) -> float:
        """Midpoint of what we know: after our last PENDING answer, before now and before
        we saw the task ahead of it end (the slot passes on at once)."""
        lower = max(ticket.submitted_at, ticket.last_pending)
        upper = now
        seen = self._last_end_seen
        if seen is not None and lower <= seen < upper:
            upper = seen
        return (lower + upper) / 2

    def _expected_length(self, ticket: Ticket) -> float | None:
        if self.learned.local is None:
            return None
        return self.learned.local * ticket.expected_seconds

    async def _terminal(self, ticket: Ticket, task: Task, now: float) -> None:
        ticket.status = task.status
        if task.status is TaskStatus.SUCCEEDED:
            self._learn(ticket, task, now)
            await self._succeeded(ticket, task)
        elif task.status is TaskStatus.FAILED:
            await self._fail(ticket, task.code, task.message or "the task failed")
        elif task.status is TaskStatus.CANCELED:
            await self._journal.update(ticket.key, state=State.NEW, task_id=None)
            await self._emit(
                JobCanceled(label=ticket.label, key=ticket.key, task_id=ticket.task_id)
            )
            await self._finish(Outcome(ticket, "canceled", "the task was cancelled; rerun to redo"))
        else:
            message = (
                f"task {ticket.task_id} expired (UNKNOWN) before it finished; its 24 h life "
                "ran out. Rerun with retry to submit it again"
            )
            await self._expire(ticket, message)

    def _learn(self, ticket: Ticket, task: Task, now: float) -> None:
        seconds = task.video_duration or ticket.output_seconds
        if not seconds:
            return
        # It ended between the last RUNNING answer and this one.
        end = (ticket.last_running + now) / 2 if ticket.last_running is not None else now
        local = (end - ticket.started_at) / seconds if ticket.started_at is not None else None
        server = None
        if task.scheduled_time is not None and task.end_time is not None:
            server = (task.end_time - task.scheduled_time).total_seconds() / seconds
        self.learned.update(local, server)

    async def _succeeded(self, ticket: Ticket, task: Task) -> None:
        ticket.video_url = task.video_url
        ticket.video_duration = float(task.video_duration or 0.0)
        ticket.url_expires_at = _url_expiry(task)
        await self._journal.update(
            ticket.key,
            state=State.SUCCEEDED,
            video_url=task.video_url,
            url_expires_at=ticket.url_expires_at,
            video_duration=ticket.video_duration,
        )
        await self._emit(
            JobSucceeded(
                label=ticket.label,
                key=ticket.key,
                task_id=ticket.task_id,
                video_duration=ticket.video_duration,
            )
        )
        await self._queue_download(ticket)

    async def _fail(self, ticket: Ticket, code: str | None, message: str) -> None:
        await self._journal.update(ticket.key, state=State.FAILED, code=code, error=message)
        await self._emit(
            JobFailed(
                label=ticket.label,
                key=ticket.key,
                task_id=ticket.task_id,
                code=code,
                message=message,
            )
        )
        await self._finish(Outcome(ticket, "failed", message, code))

    async def _expire(self, ticket: Ticket, message: str) -> None:
        await self._journal.update(ticket.key, state=State.EXPIRED, error=message)
        await self._emit(
            JobExpired(label=ticket.label, key=ticket.key, task_id=ticket.task_id, message=message)
        )
        billed = ticket.video_duration
        await self._finish(Outcome(ticket, "expired", message, billed_seconds=billed))

    async def _cancel_pending(self) -> None:
        for ticket in list(self._live.values()):
            assert ticket.task_id is not None
            self._live.pop(ticket.task_id)
            self._give_slot_back(ticket)
            if ticket.status is TaskStatus.RUNNING or not await self._try_cancel(ticket.task_id):
                self.interrupted += 1  # running (billed anyway): a rerun fetches it
                continue
            await self._journal.update(ticket.key, state=State.NEW, task_id=None)
            await self._emit(
                JobCanceled(label=ticket.label, key=ticket.key, task_id=ticket.task_id)
            )
            await self._finish(Outcome(ticket, "canceled", "the batch was stopped before it ran"))
        await self._notify()

    async def _try_cancel(self, task_id: str) -> bool:
        try:
            await self._client.cancel(task_id)
        except EmoError:
            return False  # it started meanwhile (or the call failed): leave it to a rerun
        return True

    # --- the download lane ----------------------------------------------------------------

    async def _queue_download(self, ticket: Ticket) -> None:
        heapq.heappush(self._downloads, (ticket.url_expires_at, next(self._seq), ticket))
        await self._notify()

    async def _download_loop(self) -> None:
        while True:
            async with self._changed:
                while not self._downloads and not self._downloads_done():
                    await self._changed.wait()
                if not self._downloads:
                    return
                _, _, ticket = heapq.heappop(self._downloads)
                self._active_downloads += 1
            try:
                await self._download(ticket)
            finally:
                self._active_downloads -= 1
                await self._notify()

    def _downloads_done(self) -> bool:
        return self._closing and (self._stopping or not self._live)

    async def _download(self, ticket: Ticket) -> None:
        error = "no video URL"
        for attempt in range(self._opt.download_attempts):
            if ticket.video_url is None:
                break
            try:
                await self._client.download(ticket.video_url, ticket.path)
            except ResultURLExpiredError:
                if not await self._refresh_url(ticket):
                    return
                continue
            except (EmoError, OSError) as exc:
                error = str(exc)
                await anyio.sleep(min(self._opt.download_backoff * 2**attempt, 8.0))
                continue
            await self._downloaded(ticket)
            return
        message = f"downloading the video of task {ticket.task_id} failed ({error}); rerun to retry"
        await self._emit(
            JobFailed(
                label=ticket.label,
                key=ticket.key,
                task_id=ticket.task_id,
                code=None,
                message=message,
            )
        )
        await self._finish(Outcome(ticket, "failed", message, billed_seconds=ticket.video_duration))

    async def _refresh_url(self, ticket: Ticket) -> bool:
        """After a 403 on the result URL: True with a new URL, else report expiry and False."""
        assert ticket.task_id is not None
        try:
            task = await self._client.get_task(ticket.task_id)
        except EmoError:
            task = None
        if task is not None and task.video_url and task.video_url != ticket.video_url:
            ticket.video_url = task.video_url
            await self._journal.update(ticket.key, video_url=task.video_url)
            return True
        message = (
            f"the video of task {ticket.task_id} can no longer be downloaded: its result URL "
            "expired (24 h after the task succeeded). The seconds are billed; rerun with retry "
            "to render it again"
        )
        await self._expire(ticket, message)
        return False

    async def _downloaded(self, ticket: Ticket) -> None:
        size = (await anyio.Path(ticket.path).stat()).st_size
        await self._journal.update(ticket.key, state=State.DOWNLOADED, size=size)
        await self._emit(
            JobDownloaded(
                label=ticket.label,
                key=ticket.key,
                task_id=ticket.task_id,
                path=ticket.path,
                size=size,
            )
        )
        await self._finish(Outcome(ticket, "succeeded", billed_seconds=ticket.video_duration))


def _url_expiry(task: Task) -> float:
    """Epoch seconds when the result URL expires: its ``Expires`` parameter, else end + 24 h."""
    if task.video_url:
        expires = parse_qs(urlsplit(task.video_url).query).get("Expires")
        if expires and expires[0].isdigit():
            return float(expires[0])
    end = task.end_time or datetime.now(UTC)
    return end.timestamp() + _URL_TTL
