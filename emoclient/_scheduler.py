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

from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskGroup
from anyio.abc import TaskStatus as StartStatus

from emoclient._client import EmoClient
from emoclient._downloads import DownloadLane
from emoclient._events import (
    BatchEvent,
    JobCanceled,
    JobStarted,
    JobSubmitted,
    JobSucceeded,
)
from emoclient._exceptions import APIStatusError, EmoError, NotFoundError, RateLimitError
from emoclient._journal import Journal, State
from emoclient._models import Task, TaskStatus
from emoclient._reconcile import submit_once
from emoclient._tickets import (
    Learned,
    Outcome,
    Reporter,
    ResultStatus,
    SchedulerOptions,
    Ticket,
    url_expiry,
)

__all__ = ["Outcome", "ResultStatus", "Scheduler", "SchedulerOptions", "Ticket"]

# Guess of processing seconds per output second until the first task teaches us better.
_DEFAULT_SECONDS_PER_OUTPUT = 10.0
# The running task is first queried a little before its expected end (so that the learned
# estimate is corrected both ways, not only ever upwards), then in short steps.
_EARLY = 0.95
_STEP = 0.08


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
        self._report = Reporter(journal, emit=emit, finish=finish)
        self._emit = emit
        self._finish = finish
        self._lane = DownloadLane(client, self._report, options=options)
        self._clock = options.clock
        self._live: dict[str, Ticket] = {}
        self._changed = anyio.Condition()
        self._closing = False
        self._stopping = False
        self._last_end_seen: float | None = None
        self._next_query = 0.0
        self._tg: TaskGroup | None = None
        self._admission: anyio.CancelScope | None = None
        self.learned = Learned()
        self.queries = 0
        self.interrupted = 0

    # --- lifecycle ---------------------------------------------------------------------

    async def run(self, *, task_status: StartStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Poll and download until :meth:`close` was called and nothing is left."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            tg.start_soon(self._lane.run)
            try:
                await self._poll_loop()
            finally:
                # Only the poller (and resumes, which come before close()) queue downloads.
                with anyio.CancelScope(shield=True):
                    await self._lane.close()

    async def close(self) -> None:
        """No more tickets will come; :meth:`run` returns once the live ones are done."""
        self._closing = True
        await self._notify()

    async def stop(self) -> None:
        """Stop gracefully: cancel PENDING tasks, leave RUNNING ones to a rerun, keep downloads."""
        self._stopping = True
        self._closing = True
        if self._admission is not None:
            self._admission.cancel()
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
                self._client,
                self._journal,
                ticket,
                intent_at=intent_at,
                emit=self._emit,
                attempts=self._opt.submit_attempts,
            )
        except APIStatusError as exc:
            self._give_slot_back(ticket)
            await self._report.fail(ticket, exc.code, f"the service refused the submit: {exc}")
            return True
        except EmoError as exc:
            self._give_slot_back(ticket)
            # The intent stays in the journal: a rerun looks for the task before sending again.
            await self._report.fail_this_run(ticket, f"submitting failed: {exc}; rerun to retry")
            return True
        except BaseException:
            self._give_slot_back(ticket)
            raise
        await self._emit(JobSubmitted(label=ticket.label, key=ticket.key, task_id=task_id))
        await self.track(ticket, task_id)
        return True

    async def _admit(self, ticket: Ticket) -> bool:
        async with self._changed:
            while not self._stopping and not self._has_room(ticket):
                await self._changed.wait()
        if self._stopping:
            return False
        # Another client on the key may hold the shared slots for long: stop() must not wait.
        with anyio.CancelScope() as self._admission:
            await self._take_slot(ticket, wait=True)
        self._admission = None
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
        # Service seconds until this task would end if queued behind our live ones.
        finish = sum(self._service_time(t) for t in (*self._live.values(), ticket))
        return finish < self._opt.task_ttl - self._opt.expiry_margin

    def _service_time(self, ticket: Ticket) -> float:
        predicted = self.learned.server.predict(ticket.expected_seconds)
        if predicted is None:
            return _DEFAULT_SECONDS_PER_OUTPUT * ticket.expected_seconds
        return predicted

    async def track(self, ticket: Ticket, task_id: str) -> None:
        """Poll an existing task (just submitted, or live from an earlier run)."""
        if self._stopping:  # the poller may be gone already: nobody would end this task
            ticket.task_id = task_id
            await self._stop_ticket(ticket)
            return
        if ticket.slot is None:  # live from an earlier run: it holds a slot already
            ticket.resumed = True
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
        await self._lane.put(ticket)

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
        await self._report.fail_this_run(ticket, message)
        await self._notify()

    async def _observe(self, ticket: Ticket, task: Task) -> None:
        now = self._clock()
        if task.status is TaskStatus.RUNNING:
            await self._running(ticket, now)
        elif not task.is_terminal:
            if ticket.status is TaskStatus.RUNNING:  # assumed to have started; it has not
                ticket.status, ticket.started_at = TaskStatus.PENDING, None
            ticket.last_pending = now
            ticket.next_poll = now + self._pending_delay(ticket)
        else:
            self._live.pop(ticket.task_id or "", None)
            self._give_slot_back(ticket)
            self._last_end_seen = now
            ended = (ticket.last_running + now) / 2 if ticket.last_running is not None else now
            await self._promote_next(ended, now)
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

    async def _promote_next(self, ended: float, now: float) -> None:
        """The slot passes to our oldest queued task the moment a task ends: count it as
        started then, and first query it near its expected end (or now, if none is known)."""
        pending = [t for t in self._live.values() if t.status is not TaskStatus.RUNNING]
        if not pending:
            return
        ticket = min(pending, key=lambda t: t.submitted_at)
        ticket.status = TaskStatus.RUNNING
        ticket.started_at = max(ticket.submitted_at, ended)
        ticket.interval = 0.0
        length = self._expected_length(ticket)
        ticket.next_poll = now if length is None else ticket.started_at + _EARLY * length
        await self._emit(JobStarted(label=ticket.label, key=ticket.key, task_id=ticket.task_id))

    async def _running(self, ticket: Ticket, now: float) -> None:
        if ticket.status is not TaskStatus.RUNNING:
            ticket.status = TaskStatus.RUNNING
            ticket.started_at = self._start_estimate(ticket, now)
            ticket.interval = 0.0
            await self._emit(JobStarted(label=ticket.label, key=ticket.key, task_id=ticket.task_id))
        ticket.last_running = now
        length = self._expected_length(ticket)
        if length is not None and ticket.started_at is not None:
            early = ticket.started_at + _EARLY * length
            if now + self._opt.poll_min < early:
                ticket.next_poll = early
                return
            step, growth = max(self._opt.poll_min, _STEP * length), 1.5
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
        return self.learned.local.predict(ticket.expected_seconds)

    async def _terminal(self, ticket: Ticket, task: Task, now: float) -> None:
        ticket.status = task.status
        if task.status is TaskStatus.SUCCEEDED:
            self._learn(ticket, task, now)
            await self._succeeded(ticket, task)
        elif task.status is TaskStatus.FAILED:
            await self._report.fail(ticket, task.code, task.message or "the task failed")
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
            await self._report.expire(ticket, message)

    def _learn(self, ticket: Ticket, task: Task, now: float) -> None:
        seconds = task.video_duration or ticket.output_seconds
        if not seconds:
            return
        # It ended between the last RUNNING answer and this one.
        end = (ticket.last_running + now) / 2 if ticket.last_running is not None else now
        # A task from an earlier run may have started long before we first saw it.
        local = None
        if ticket.started_at is not None and not ticket.resumed:
            local = end - ticket.started_at
        server = None
        if task.scheduled_time is not None and task.end_time is not None:
            server = (task.end_time - task.scheduled_time).total_seconds()
        self.learned.observe(seconds, local, server)

    async def _succeeded(self, ticket: Ticket, task: Task) -> None:
        ticket.video_url = task.video_url
        ticket.video_duration = float(task.video_duration or 0.0)
        ticket.url_expires_at = url_expiry(task)
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
        await self._lane.put(ticket)

    async def _cancel_pending(self) -> None:
        for ticket in list(self._live.values()):
            assert ticket.task_id is not None
            self._live.pop(ticket.task_id)
            await self._stop_ticket(ticket)
        await self._notify()

    async def _stop_ticket(self, ticket: Ticket) -> None:
        assert ticket.task_id is not None
        self._give_slot_back(ticket)
        if ticket.status is TaskStatus.RUNNING or not await self._try_cancel(ticket.task_id):
            self.interrupted += 1  # running (billed anyway): a rerun fetches it
            return
        await self._journal.update(ticket.key, state=State.NEW, task_id=None)
        await self._emit(JobCanceled(label=ticket.label, key=ticket.key, task_id=ticket.task_id))
        await self._finish(Outcome(ticket, "canceled", "the batch was stopped before it ran"))

    async def _try_cancel(self, task_id: str) -> bool:
        try:
            await self._client.cancel(task_id)
        except EmoError:
            return False  # it started meanwhile (or the call failed): leave it to a rerun
        return True
