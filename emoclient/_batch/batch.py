"""Batches: many jobs in, finished videos out, resumable through the journal.

One manifest row walks down and back up once: the runner takes the job in through the
ledger (journal row), routes it by its journal state, the preparer uploads and detects, the
scheduler submits (exactly once), polls and hands the video to the download lane, and the
ledger records each step and delivers the result. Jobs are pulled from the caller's iterable
only as fast as they can be worked on, so memory stays bounded; results stream out as jobs
end. One failing job never stops the others.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from emoclient._activity import RETRY_KINDS, ClientActivity
from emoclient._batch.events import BatchEvent, BatchFinished
from emoclient._batch.jobs import Job, aiterate, input_digests, key_from, output_name
from emoclient._batch.journal import JobRecord, Journal, State
from emoclient._batch.ledger import BatchSummary, JobResult, Ledger, Ticket
from emoclient._batch.options import SchedulerOptions
from emoclient._batch.prepare import Preparer
from emoclient._batch.run_lock import RunLock
from emoclient._batch.scheduler import Scheduler
from emoclient._batch.submit import Owner, release_job
from emoclient._client import EmoClient
from emoclient._exceptions import JournalError
from emoclient._models import VIDEO_MODELS, Model
from emoclient._validate import check_count, check_folder, check_output_name

__all__ = ["JOURNAL_NAME", "Batch", "EventHandler"]

EventHandler = Callable[[BatchEvent], Awaitable[None] | None]
JOURNAL_NAME = "emoclient-journal.sqlite3"
_PARTIAL = re.compile(r"\..+\.[0-9a-f]{12}\.part")


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
    While the batch is open it holds a lock on the output folder and on the journal, so a
    second batch into either fails at once with :class:`BatchBusyError` instead of paying for
    the same videos twice. ``window`` is the number of tasks kept submitted (running plus
    queued); by default the client's ``Rates.window`` (2). Every task also holds a slot of
    the client's account-wide window, shared with other batches and ``generate_*`` calls on
    the same key. ``on_event`` receives every progress event (a plain or an async callable).
    ``retry=True`` gives failed and expired jobs of an earlier run another go.
    """

    def __init__(
        self,
        client: EmoClient | Sequence[EmoClient],
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
        clients = _distinct_accounts([client] if isinstance(client, EmoClient) else list(client))
        window = check_count(
            "window", window if window is not None else clients[0].limits.rates.window
        )
        if isinstance(out_dir, str):
            check_folder("out_dir", out_dir)  # Path("") would be the current folder
        if isinstance(journal, str):
            check_folder("journal", journal, example="videos/emoclient-journal.sqlite3")
        self.clients = clients
        self.client = clients[0]
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
        self._lock = RunLock(out_dir=self.out_dir, journal=self.journal_path)
        self._accounts: list[_Account] = []
        self._tickets: dict[str, tuple[Ticket, _Account]] = {}
        self._seen_keys: dict[str, str] = {}
        self._seen_outputs: dict[str, str] = {}
        self._output_of: dict[str, str] = {}
        self._withdraw_on_arrival: set[str] = set()
        self._tg: TaskGroup | None = None
        self._stop_requested = False
        self._running = False
        self._started = 0.0

    async def __aenter__(self) -> Self:
        await anyio.to_thread.run_sync(self._lock.acquire)
        try:
            await self._journal.open()
            await self._check_owners()
            await anyio.to_thread.run_sync(_remove_partial_downloads, self.out_dir)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._journal.close()
                await anyio.to_thread.run_sync(self._lock.release)
            raise
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
                await anyio.to_thread.run_sync(self._lock.release)

    async def _check_owners(self) -> None:
        # Live tasks belong to the account and service that created them: another key or
        # base URL would see them as unknown (expired) and render the jobs again.
        ours = {(c.account_label, c.base_url) for c in self.clients}
        foreign = sorted((await self._journal.owners()) - ours)
        if foreign:
            theirs = ", ".join(f"{a} at {u}" for a, u in foreign)
            mine = ", ".join(f"{a} at {u}" for a, u in sorted(ours))
            raise JournalError(
                f"the journal {self.journal_path} has live tasks of {theirs}, but this run uses "
                f"{mine}; run with the same API key (or EMOCLIENT_ACCOUNT) and base URL to "
                "finish them, or choose another output folder"
            )

    @property
    def queries(self) -> int:
        """Task queries the poller spent in the current or last run."""
        return sum(a.scheduler.queries for a in self._accounts)

    def stop(self) -> None:
        """Stop gracefully: no new submits, PENDING tasks cancelled, downloads finish.

        Tasks already RUNNING are billed anyway; they stay in the journal and a rerun of
        the same batch fetches their videos.
        """
        self._stop_requested = True
        if self._tg is not None:
            for account in self._accounts:
                self._tg.start_soon(account.scheduler.stop)

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
        ledger = Ledger(
            self._journal, emit=self._emit, results=send, summary=self.summary, on_end=self._ended
        )
        owner = Owner(self._journal.journal_id, str(self.journal_path))
        self._accounts = [
            _Account(c, Scheduler(c, ledger, options=self.options, owner=owner), owner)
            for c in self.clients
        ]
        before = [c.activity.copy() for c in self.clients]
        self._tg.start_soon(self._drive, jobs, ledger, send)
        async with receive:
            async for result in receive:
                yield result
        self._running = False
        summary = self.summary
        summary.elapsed = time.monotonic() - self._started
        summary.interrupted = sum(a.scheduler.interrupted for a in self._accounts)
        summary.stopped = self._stop_requested
        activity = ClientActivity()
        for client, earlier in zip(self.clients, before, strict=True):
            activity.add(client.activity.since(earlier))
        summary.retries = {k: activity.retries[k] for k in RETRY_KINDS if k in activity.retries}
        summary.rate_waits, summary.rate_wait_seconds = (
            activity.rate_waits,
            activity.rate_wait_seconds,
        )
        await self._emit(
            BatchFinished(
                counts=dict(summary.counts),
                billed_seconds=summary.billed_seconds,
                estimated_cost_cny=summary.estimated_cost_cny,
                elapsed=summary.elapsed,
                stopped=summary.stopped,
                retries=dict(summary.retries),
                rate_waits=summary.rate_waits,
                reconciled=summary.reconciled,
                reconciled_found=summary.reconciled_found,
                resubmitted=summary.resubmitted,
                stalled=summary.stalled,
                from_earlier_runs=summary.from_earlier_runs,
            )
        )

    async def _drive(
        self,
        jobs: Iterable[Job] | AsyncIterable[Job],
        ledger: Ledger,
        results: MemoryObjectSendStream[JobResult],
    ) -> None:
        # Each account has its own scheduler; each of its video models its own slot, so its
        # own pipeline: a job waiting for EMO's slot never holds back an Emoji job.
        async with results, anyio.create_task_group() as tg:
            for account in self._accounts:
                await tg.start(account.scheduler.run)
            async with anyio.create_task_group() as work:
                with contextlib.ExitStack() as inboxes:  # closed before `work` is awaited
                    for account in self._accounts:
                        preparer = Preparer(account.client, ledger, retry=self.options.retry)
                        for model in VIDEO_MODELS:
                            send = self._pipeline(work, account, preparer, ledger)
                            account.inbox[model] = inboxes.enter_context(send)
                    await self._feed(jobs, ledger)
            for account in self._accounts:
                await account.scheduler.close()

    def _pipeline(
        self, work: TaskGroup, account: _Account, preparer: Preparer, ledger: Ledger
    ) -> MemoryObjectSendStream[_Work]:
        send, prepare_rx = anyio.create_memory_object_stream[_Work](0)
        to_submit, submit_rx = anyio.create_memory_object_stream[_Work](0)
        with to_submit, prepare_rx:
            for _ in range(self._prepare_concurrency):
                work.start_soon(
                    self._prepare_loop, preparer, ledger, prepare_rx.clone(), to_submit.clone()
                )
        work.start_soon(self._submit_loop, account.scheduler, ledger, submit_rx)
        return send

    async def _feed(self, jobs: Iterable[Job] | AsyncIterable[Job], ledger: Ledger) -> None:
        # Jobs under way, by key and by output name: a second one of either would clash.
        self._seen_keys, self._seen_outputs = {}, {}
        seen_keys, seen_outputs = self._seen_keys, self._seen_outputs
        async for job in aiterate(jobs):
            if self._stop_requested:
                break
            digests = await input_digests(job)
            key = key_from(job, digests)
            refused = _bad_output(job)
            if refused is not None:  # a job made without its checks (model_construct, copy)
                await ledger.refused(job, refused, key=key)
                continue
            name = output_name(job, key)
            clash = seen_keys.get(key) or seen_outputs.get(name)
            if clash is not None:
                message = f"same output {name!r} as {clash}; give each job its own output name"
                await ledger.refused(job, message, key=key)
                continue
            seen_keys[key] = seen_outputs[name] = job.display_label
            self._output_of[key] = name
            ticket, record = await ledger.open(job, key=key, output=name, path=self.out_dir / name)
            account = self._account_for(record)
            account.take(ticket)
            self._tickets[key] = (ticket, account)
            if key in self._withdraw_on_arrival:  # cancelled while it was on its way in
                self._withdraw_on_arrival.discard(key)
                ticket.withdrawn = True
            await self._route(_Work(job, ticket, record, digests), account, ledger)

    def _account_for(self, record: JobRecord) -> _Account:
        """The account that owns the job's task, or the least busy one for a new job."""
        if record.account is not None and record.state in _LIVE:
            for account in self._accounts:
                if account.client.account_label == record.account:
                    return account
        return min(self._accounts, key=lambda a: a.outstanding)

    async def cancel(self, key: str, *, coming: bool = False) -> bool | None:
        """Cancel the job with content key ``key``: True when it was withdrawn before its
        submit or its PENDING task was cancelled (nothing billed); False when its task
        already runs (billed, and still downloaded); None when the batch does not have it.
        ``coming``: the job was handed to the batch and is on its way in; it is withdrawn
        as soon as it arrives (True)."""
        found = self._tickets.get(key)
        if found is None:
            if coming:
                self._withdraw_on_arrival.add(key)
                return True
            return None
        ticket, account = found
        return await account.scheduler.cancel(ticket)

    async def _rows(self, *states: State) -> list[JobRecord]:
        """The journal's rows in any of ``states`` (every row when none is given)."""
        return await self._journal.in_state(*(states or tuple(State)))

    async def _row(self, key: str) -> JobRecord | None:
        """The journal's row of the job with content key ``key``."""
        return await self._journal.get(key)

    async def drain(self) -> None:
        """No new submits; PENDING tasks cancelled; RUNNING ones still finish and download."""
        self._stop_requested = True
        for account in self._accounts:
            await account.scheduler.drain()

    async def _ended(self, ticket: Ticket, final: bool) -> None:
        # An ended job may come again (a long-lived JobQueue retries it).
        self._tickets.pop(ticket.key, None)
        self._seen_keys.pop(ticket.key, None)
        self._seen_outputs.pop(self._output_of.pop(ticket.key, ""), None)
        for account in self._accounts:
            if account.client.account_label == ticket.account:
                await account.ended(ticket, final=final)

    async def _route(self, work: _Work, account: _Account, ledger: Ledger) -> None:
        record, ticket = work.record, work.ticket
        scheduler = account.scheduler
        if self.retry and record.state in (State.FAILED, State.EXPIRED):
            await ledger.retried(ticket, record)
        if record.state != State.NEW:
            await ledger.resumed(ticket, record)
        if record.state == State.DOWNLOADED:
            if await _present(ticket.path, record.size):
                await ledger.already_downloaded(ticket, record)
                return
            record.state = State.SUCCEEDED  # the file went missing: fetch it again
        if record.state in (State.FAILED, State.EXPIRED, State.INVALID):
            await ledger.ended_before(ticket, record)
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
        await ledger.queued(ticket)
        await account.inbox[ticket.model].send(work)

    async def _prepare_loop(
        self,
        preparer: Preparer,
        ledger: Ledger,
        inbox: MemoryObjectReceiveStream[_Work],
        outbox: MemoryObjectSendStream[_Work],
    ) -> None:
        async with inbox, outbox:
            async for work in inbox:
                if self._stop_requested or work.ticket.withdrawn:
                    await ledger.held_back(work.ticket, _held_back_why(work.ticket))
                    continue
                rejection = await preparer.prepare(work.job, work.ticket, work.digests)
                if rejection is None:
                    await outbox.send(work)
                else:
                    await rejection.record(ledger, work.ticket)

    async def _submit_loop(
        self, scheduler: Scheduler, ledger: Ledger, inbox: MemoryObjectReceiveStream[_Work]
    ) -> None:
        async with inbox:
            async for work in inbox:
                intent_at = work.record.intent_at if work.record.state == State.SUBMITTING else None
                if (
                    self._stop_requested
                    or work.ticket.withdrawn
                    or not await scheduler.submit(work.ticket, intent_at=intent_at)
                ):
                    await ledger.held_back(work.ticket, _held_back_why(work.ticket))

    async def _emit(self, event: BatchEvent) -> None:
        if self._on_event is None:
            return
        outcome = self._on_event(event)
        if inspect.isawaitable(outcome):
            await outcome


def _bad_output(job: Job) -> str | None:
    """Why the job's output name cannot be used, else None (see `check_output_name`)."""
    if job.output is None:
        return None
    try:
        check_output_name(job.output)
    except (TypeError, ValueError) as exc:
        return f"output {exc}"
    return None


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


_LIVE = (State.SUBMITTING, State.SUBMITTED, State.SUCCEEDED)


def _held_back_why(ticket: Ticket) -> str:
    if ticket.withdrawn:
        return "cancelled before it was submitted (nothing billed)"
    return "the batch was stopped"


class _Account:
    """One account's share of the batch: its client, scheduler and pipelines."""

    def __init__(self, client: EmoClient, scheduler: Scheduler, owner: Owner) -> None:
        self.client = client
        self.scheduler = scheduler
        self.owner = owner
        self.inbox: dict[Model, MemoryObjectSendStream[_Work]] = {}
        self.outstanding = 0

    def take(self, ticket: Ticket) -> None:
        """The job is this account's to submit (or already is)."""
        ticket.account, ticket.base_url = self.client.account_label, self.client.base_url
        self.outstanding += 1

    async def ended(self, ticket: Ticket, *, final: bool) -> None:
        self.outstanding -= 1
        if final:  # done for good: another batch may render the same job again
            await release_job(self.client, ticket.key, self.owner)


def _distinct_accounts(clients: list[EmoClient]) -> list[EmoClient]:
    if not clients:
        raise ValueError("give the batch at least one client")
    seen: dict[str, EmoClient] = {}
    for client in clients:
        # Keys of one account share its limits: a second one would not add capacity.
        seen.setdefault(f"{client.account_label} {client.base_url}", client)
    return list(seen.values())
