"""The per-account scheduler: admission window, one budgeted poller and the download lane.

The account renders one task at a time and queues the rest. The scheduler keeps ``window``
tasks submitted (by default the running one plus one queued, so the slot never idles while
we learn that a task ended) and admits a task only when it can finish well inside its 24 h
life. One poller queries every live task, spending queries where a change is likely: the
running task around its expected end (learned as seconds per output second), queued tasks
rarely. Tasks are dated by the service's own timestamps (see :mod:`emoclient._timing`).
Finished videos go to a download lane ordered by URL expiry, earliest first; a URL that fails
makes the task be queried again for a fresh one.
"""

from __future__ import annotations

from datetime import datetime

import anyio
from anyio.abc import TaskGroup
from anyio.abc import TaskStatus as StartStatus

from emoclient._batch.download_lane import DownloadLane
from emoclient._batch.ledger import Ledger, Ticket
from emoclient._batch.options import SchedulerOptions, poll_schedule
from emoclient._batch.submit import JobTakenError, Owner, UndecidedError, submit_once
from emoclient._client import EmoClient
from emoclient._exceptions import (
    APIStatusError,
    EmoError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from emoclient._models import Model, Task, TaskStatus
from emoclient._timing import AccountTiming, Progress

__all__ = ["Scheduler"]

# Task failure codes of the service itself (API.md 3.4): nothing was billed, a retry may pass.
_TRANSIENT_CODES = ("InternalError", "SystemError", "ModelServiceFailed")


class Scheduler:
    """Runs submitted tasks of one account to a downloaded video; see the module docstring."""

    def __init__(
        self, client: EmoClient, ledger: Ledger, *, options: SchedulerOptions, owner: Owner
    ) -> None:
        self._client = client
        self._ledger = ledger
        self._opt = options
        self._owner = owner
        self._lane = DownloadLane(
            client, ledger, workers=options.download_workers, retry=options.retry
        )
        self._clock = options.clock
        self._live: dict[str, Ticket] = {}
        self._changed = anyio.Condition()
        self._closing = False
        self._stopping = False
        self._draining = False
        self._submitting = 0
        self._next_query = 0.0
        self._tg: TaskGroup | None = None
        # Tickets waiting for a slot of the account's window, each with its own scope.
        self._admissions: dict[Ticket, anyio.CancelScope] = {}
        self._timing: dict[Model, AccountTiming] = {}
        self._submit_locks: dict[Model, anyio.Lock] = {}
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
        for scope in self._admissions.values():
            scope.cancel()
        await self._notify()

    async def drain(self) -> None:
        """Stop submitting and cancel PENDING tasks, but see RUNNING ones to their video
        (they are billed anyway): nothing billed is left undownloaded."""
        self._draining = True
        self._closing = True
        for scope in self._admissions.values():
            scope.cancel()
        for ticket in list(self._live.values()):
            if ticket.progress.status is not TaskStatus.RUNNING:
                await self.cancel(ticket)
        await self._notify()

    async def cancel(self, ticket: Ticket) -> bool:
        """Withdraw one job: before its submit it never goes out; a PENDING task is cancelled
        at the service (nothing billed). Returns False when its task already runs: the
        service cannot stop it, so it is billed, and its video is still downloaded."""
        if ticket.task_id is None or ticket.task_id not in self._live:
            ticket.withdrawn = True
            scope = self._admissions.get(ticket)
            if scope is not None:
                scope.cancel()
            await self._notify()
            return ticket.task_id is None
        if ticket.progress.status is TaskStatus.RUNNING or not await self._try_cancel(
            ticket.task_id
        ):
            return False
        if self._live.pop(ticket.task_id, None) is None:
            return True  # the poller saw it CANCELED meanwhile and ended the job
        self._give_slot_back(ticket)
        await self._ledger.canceled(ticket, "cancelled before it ran (not billed)")
        await self._notify()
        return True

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
        self._submitting += 1  # the poller outlives a submit in flight (see drain())
        try:
            return await self._submit(ticket, intent_at=intent_at)
        finally:
            self._submitting -= 1
            await self._notify()

    async def _submit(self, ticket: Ticket, *, intent_at: float | None) -> bool:
        if not await self._admit(ticket):
            return False
        # One submit of a model at a time: two answers lost at once would leave two tasks
        # that the task list cannot tell apart, and neither job would know its own.
        lock = self._submit_locks.setdefault(ticket.model, anyio.Lock())
        try:
            async with lock:
                if self._held_back(ticket):  # stopped while waiting for the lock
                    self._give_slot_back(ticket)
                    return False
                sent = self._clock()
                task_id = await submit_once(
                    self._client,
                    self._ledger,
                    ticket,
                    intent_at=intent_at,
                    policy=self._opt.retry,
                    owner=self._owner,
                )
        except APIStatusError as exc:
            self._give_slot_back(ticket)
            if isinstance(exc, ServerError):  # the service's trouble, not a refusal
                message = f"submitting failed: {exc}; rerun to retry"
                await self._ledger.failed_this_run(ticket, message, code=exc.code)
            else:
                message = f"the service refused the submit: {exc}"
                await self._ledger.failed(ticket, exc.code, message)
            return True
        except EmoError as exc:
            self._give_slot_back(ticket)
            # The intent stays in the journal: a rerun looks for the task before sending again.
            code = "NeedsAttention" if isinstance(exc, UndecidedError | JobTakenError) else None
            await self._ledger.failed_this_run(
                ticket, f"submitting failed: {exc}; rerun to retry", code=code
            )
            return True
        except BaseException:
            self._give_slot_back(ticket)
            raise
        # A submit of an earlier run may have been found instead: its time says nothing here.
        await self.track(ticket, task_id, sent=sent if intent_at is None else None)
        return True

    async def _admit(self, ticket: Ticket) -> bool:
        async with self._changed:
            while not self._held_back(ticket) and not self._has_room(ticket):
                await self._changed.wait()
        if self._held_back(ticket):
            return False
        # Another client on the key may hold the shared slots for long: stop() must not wait.
        with anyio.CancelScope() as scope:
            self._admissions[ticket] = scope
            try:
                await self._take_slot(ticket, wait=True)
            finally:
                del self._admissions[ticket]
        if scope.cancelled_caught or self._held_back(ticket):
            self._give_slot_back(ticket)
            return False
        return True

    def _held_back(self, ticket: Ticket) -> bool:
        return self._stopping or self._draining or ticket.withdrawn

    async def _take_slot(self, ticket: Ticket, *, wait: bool) -> None:
        """Hold one slot of the account's in-flight window (shared with other clients of the
        same key, across processes with a shared limits backend) until the task ends."""
        assert self._tg is not None, "Scheduler.run() must be running"
        ticket.slot = anyio.Event()
        if wait:
            await self._tg.start(self._hold_slot, ticket.model, ticket.slot)
        else:
            self._tg.start_soon(self._hold_slot, ticket.model, ticket.slot)

    async def _hold_slot(
        self,
        model: Model,
        release: anyio.Event,
        *,
        task_status: StartStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        async with self._client.limits.task_slot(model):
            task_status.started()
            await release.wait()

    @staticmethod
    def _give_slot_back(ticket: Ticket) -> None:
        if ticket.slot is not None:
            ticket.slot.set()

    def timing(self, model: Model) -> AccountTiming:
        """The timing policy of ``model``'s tasks (each video model has its own slot)."""
        timing = self._timing.get(model)
        if timing is None:
            timing = self._timing[model] = AccountTiming(poll_schedule(self._opt))
        return timing

    def _live_of(self, model: Model) -> list[Ticket]:
        return [t for t in self._live.values() if t.model == model]

    def _has_room(self, ticket: Ticket) -> bool:
        live = self._live_of(ticket.model)
        if len(live) >= self._opt.window:
            return False
        return self.timing(ticket.model).admits(
            (t.expected_seconds for t in live),
            ticket.expected_seconds,
            budget=self._opt.task_ttl - self._opt.expiry_margin,
        )

    async def track(self, ticket: Ticket, task_id: str, *, sent: float | None = None) -> None:
        """Poll an existing task (just submitted at ``sent``, or live from an earlier run)."""
        ticket.task_id = task_id
        if self._stopping:  # the poller may be gone already: nobody would end this task
            await self._stop_ticket(ticket)
            return
        if ticket.withdrawn and await self._try_cancel(task_id):  # cancelled during its POST
            self._give_slot_back(ticket)
            await self._ledger.canceled(ticket, "cancelled before it ran (not billed)")
            return
        if ticket.slot is None:  # live from an earlier run: it holds a slot already
            ticket.progress.resumed = True
            await self._take_slot(ticket, wait=False)
        alone = not self._live_of(ticket.model)
        self.timing(ticket.model).submitted(ticket.progress, self._clock(), alone=alone, sent=sent)
        self._live[task_id] = ticket
        await self._notify()

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
                if self._closing and not self._submitting:
                    return
                await self._wait_change(None)
                continue
            ticket = min(self._live.values(), key=lambda t: t.progress.next_poll)
            delay = max(ticket.progress.next_poll, self._next_query) - self._clock()
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
            ticket.progress.next_poll = self._clock() + (exc.retry_after or 1.0)
            return
        except Exception as exc:  # one task's trouble must not stop the others
            await self._query_failed(ticket, exc)
            return
        ticket.errors = 0
        await self._observe(ticket, task)

    async def _query_failed(self, ticket: Ticket, exc: Exception) -> None:
        policy = self._opt.query_retry
        ticket.errors += 1
        if policy.should_retry(ticket.errors - 1):
            self._client.activity.retried("query")
            ticket.progress.next_poll = self._clock() + policy.delay(ticket.errors - 1)
            return
        # Give up for this run only: the journal keeps the task id, and a rerun polls again.
        self._live.pop(ticket.task_id or "", None)
        self._give_slot_back(ticket)
        message = (
            f"querying task {ticket.task_id} failed {ticket.errors} times in a row ({exc}); "
            "the task is kept in the journal, rerun the batch to pick it up again"
        )
        await self._ledger.failed_this_run(ticket, message)
        await self._notify()

    async def _observe(self, ticket: Ticket, task: Task) -> None:
        now = self._clock()
        timing = self.timing(ticket.model)
        timing.answered(ticket.progress, submit_time=_seconds(task.submit_time))
        if task.status is TaskStatus.RUNNING:
            if timing.running(
                ticket.progress,
                now,
                output_seconds=ticket.expected_seconds,
                scheduled=_seconds(task.scheduled_time),
            ):
                await self._ledger.started(ticket)
            await self._check_stall(ticket, now)
        elif not task.is_terminal:
            ours_running = any(
                t.progress.status is TaskStatus.RUNNING for t in self._live_of(ticket.model)
            )
            timing.pending(ticket.progress, now, ours_running=ours_running)
        else:
            self._live.pop(ticket.task_id or "", None)
            self._give_slot_back(ticket)
            ended = timing.ended(ticket.progress, now, end=_seconds(task.end_time))
            promoted = self._promote_next(ticket.model, ended, now)
            await self._terminal(ticket, task, now)
            if promoted is not None:  # said after the end that made room for it
                await self._ledger.started(promoted)
            await self._notify()

    def _promote_next(self, model: Model, ended: float, now: float) -> Ticket | None:
        """The model's slot passes to our oldest queued task the moment a task ends."""
        pending = [t for t in self._live_of(model) if t.progress.status is not TaskStatus.RUNNING]
        if not pending:
            return None
        ticket = min(pending, key=lambda t: t.progress.submitted_at)
        self.timing(model).promote(
            ticket.progress, ended=ended, now=now, output_seconds=ticket.expected_seconds
        )
        return ticket

    async def _terminal(self, ticket: Ticket, task: Task, now: float) -> None:
        ticket.progress.status = task.status
        if task.status is TaskStatus.SUCCEEDED:
            server = None
            if task.scheduled_time is not None and task.end_time is not None:
                server = (task.end_time - task.scheduled_time).total_seconds()
            self.timing(ticket.model).learn(
                ticket.progress,
                output_seconds=task.video_duration or ticket.output_seconds or 0.0,
                now=now,
                server_seconds=server,
            )
            await self._ledger.succeeded(ticket, task, url_expires_at=task.url_expires_at())
            await self._lane.put(ticket)
        elif task.status is TaskStatus.FAILED:
            if self._may_resubmit(ticket, task.code):
                ticket.resubmits += 1
                await self._resubmit(ticket, code=task.code, message=task.message)
            else:
                await self._ledger.failed(ticket, task.code, task.message or "the task failed")
        elif task.status is TaskStatus.CANCELED:
            await self._ledger.canceled(ticket, "the task was cancelled; rerun to redo")
        else:
            message = (
                f"task {ticket.task_id} expired (UNKNOWN) before it finished; its 24 h life "
                "ran out. Rerun with retry to submit it again"
            )
            await self._ledger.expired(ticket, message)

    async def _check_stall(self, ticket: Ticket, now: float) -> None:
        """Say so when a task runs far past its expected length, and save the tasks queued
        behind it from expiring: each whose 24 h life runs short is cancelled (it never ran,
        so nothing is billed) and submitted again, to wait for the slot afresh."""
        expected = self.timing(ticket.model).expected_length(ticket.expected_seconds)
        started = ticket.progress.started_at
        if expected is None or started is None:
            return
        running = now - started
        if running < max(self._opt.stall_factor * expected, self._opt.stall_min):
            return
        last = ticket.stall_warned_at
        if last is not None and now - last < self._opt.stall_repeat:
            return
        ticket.stall_warned_at = now
        await self._ledger.stalled(ticket, running=running, expected=expected)
        budget = self._opt.task_ttl - self._opt.expiry_margin
        scale = self.timing(ticket.model).service_per_local(ticket.expected_seconds)
        for queued in self._live_of(ticket.model):
            waited = (now - queued.progress.submitted_at) * scale  # in service seconds
            if queued.progress.status is TaskStatus.RUNNING or waited < budget:
                continue
            if queued.submit is None or not await self._try_cancel(queued.task_id or ""):
                continue
            self._live.pop(queued.task_id or "", None)
            self._give_slot_back(queued)
            why = f"queued behind stalled task {ticket.task_id} for {waited:.0f} s"
            await self._resubmit(queued, code="Requeued", message=why, behind=ticket)

    def _may_resubmit(self, ticket: Ticket, code: str | None) -> bool:
        # The service's own failures bill nothing and may pass; content errors never will.
        transient = code is not None and code.startswith(_TRANSIENT_CODES)
        return (
            transient
            and ticket.submit is not None
            and ticket.resubmits < self._opt.resubmits
            and not self._held_back(ticket)
        )

    async def _resubmit(
        self, ticket: Ticket, *, code: str | None, message: str | None, behind: Ticket | None = None
    ) -> None:
        """Record and start submitting ``ticket`` again (after ``behind`` frees the slot)."""
        await self._ledger.resubmitting(
            ticket, code=code, message=message, limit=self._opt.resubmits
        )
        ticket.task_id, ticket.progress = None, Progress()
        assert self._tg is not None
        self._submitting += 1  # the poller waits for it (see drain())
        self._tg.start_soon(self._submit_again, ticket, behind)

    async def _submit_again(self, ticket: Ticket, behind: Ticket | None = None) -> None:
        try:
            if behind is not None:  # once the stalled task has freed the slot
                async with self._changed:
                    while behind.task_id in self._live and not self._held_back(ticket):
                        await self._changed.wait()
            if not await self._submit(ticket, intent_at=None):
                await self._ledger.held_back(ticket, "the batch was stopped")
        finally:
            self._submitting -= 1
            await self._notify()

    async def _cancel_pending(self) -> None:
        for ticket in list(self._live.values()):
            assert ticket.task_id is not None
            self._live.pop(ticket.task_id)
            await self._stop_ticket(ticket)
        await self._notify()

    async def _stop_ticket(self, ticket: Ticket) -> None:
        assert ticket.task_id is not None
        self._give_slot_back(ticket)
        running = ticket.progress.status is TaskStatus.RUNNING
        if running or not await self._try_cancel(ticket.task_id):
            self.interrupted += 1  # running (billed anyway): a rerun fetches it
            return
        await self._ledger.canceled(ticket, "the batch was stopped before it ran")

    async def _try_cancel(self, task_id: str) -> bool:
        try:
            await self._client.cancel(task_id)
        except EmoError:
            return False  # it started meanwhile (or the call failed): leave it to a rerun
        return True


def _seconds(when: datetime | None) -> float | None:
    return None if when is None else when.timestamp()
