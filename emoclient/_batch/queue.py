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

Several queues of one account (the worker processes of a web service, on one host or many)
share a job board in the account store (:mod:`emoclient._batch.board`): any of them answers
:meth:`~JobQueue.get` about a job another holds, and passes a cancel on to it.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import anyio
from anyio.abc import TaskGroup
from pydantic import TypeAdapter

from emoclient._batch.batch import Batch
from emoclient._batch.board import JobBoard, RemoteJobHandle
from emoclient._batch.events import BatchEvent, JobEvent
from emoclient._batch.handles import BY_RECORD, JobHandle, JobState
from emoclient._batch.jobs import Job, input_digests, key_from
from emoclient._batch.journal import JobRecord, State
from emoclient._batch.ledger import JobResult
from emoclient._batch.options import SchedulerOptions
from emoclient._client import EmoClient
from emoclient._exceptions import EmoError
from emoclient._store import StoreError
from emoclient._validate import check_count, check_output_name

__all__ = ["JobQueue", "QueueFullError"]

logger = logging.getLogger("emoclient")
# How long a successful cancel waits for the batch to end the job.
_CANCEL_SETTLES = 10.0
# How long the paths that accept jobs and deliver results wait for the job board.
_BOARD_WAIT = 2.0

_JOB = TypeAdapter[Job](Job)


class QueueFullError(EmoError):
    """The queue holds as much as it can run in time; come back after ``retry_after`` s."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class JobQueue:
    """A long-lived batch that accepts jobs at any time; see the module docstring.

    ``client`` may be one client or several (jobs spread over their accounts). ``out_dir``
    holds the videos and the journal; ``max_queued`` bounds the jobs waiting for their
    turn. On exit, PENDING tasks are cancelled and RUNNING ones finish and download
    (``finish=True`` in :meth:`aclose` waits for every job instead). ``board`` (default
    True) publishes the queue's jobs to the job board of the first client's account, so that
    every queue of the account can answer about them; pass a :class:`JobBoard` to tune how
    often it polls, or False for a queue no other process needs to ask about. The handles
    of the last ``keep_ended`` jobs that ended stay in memory; older ones are found again by
    :meth:`get` in the journal (and on the board), without their event history.
    """

    def __init__(
        self,
        client: EmoClient | Sequence[EmoClient],
        *,
        out_dir: str | Path,
        journal: str | Path | None = None,
        max_queued: int = 100,
        options: SchedulerOptions | None = None,
        board: JobBoard | bool = True,
        keep_ended: int = 1000,
    ) -> None:
        self.max_queued = check_count("max_queued", max_queued)
        self.keep_ended = check_count("keep_ended", keep_ended)
        self._ended: deque[str] = deque()
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
        first = self._batch.clients[0]
        if board is True:
            board = JobBoard(first.limits.store, first.limits.account)
        self._board = board or None
        self._board_scope = anyio.CancelScope()
        # Jobs changed since last published: id -> its change count, so that a write that
        # raced a newer change does not mark the job clean; one writer at a time, so that
        # the record written last is the one built last.
        self._dirty: dict[str, int] = {}
        self._publishing = anyio.Lock()
        self._answers: dict[str, dict[str, bool]] = {}
        self._cancelling: set[str] = set()  # cancel requests of other queues under way

    async def __aenter__(self) -> Self:
        await self._batch.__aenter__()
        try:
            self._tg = anyio.create_task_group()
            await self._tg.__aenter__()
            self._tg.start_soon(self._run)
            await self._resume()
            if self._board is not None:
                await self._board.beat()
                self._tg.start_soon(self._keep_board, self._board)
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
        self._board_scope.cancel()
        if self._board is not None:
            try:
                await self._publish(self._board)  # the jobs' last states, for other queues
            except StoreError as exc:
                logger.warning("job board not updated at close: %s", exc)

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
        elsewhere = await self._remote(key, others_only=True)
        if elsewhere is not None and not elsewhere.state.is_final and elsewhere.worker_alive:
            return elsewhere  # another queue of the account runs this very job
        known = self._handles.get(key)  # looked up again: another start() ran meanwhile
        if known is not None and not known.state.is_final:
            return known
        self._check_room()
        handle = JobHandle(job, id=key, owner=owner, cancel=self.cancel)
        self._handles[key] = handle
        self._enqueue(handle)
        self._changed(handle)
        # On the board before its id is handed out (the next request about it may reach
        # another worker at once), unless the store is slow: then within a poll.
        await self._publish_now(handle)
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
        """The handle of job ``id``: a live one; a :class:`RemoteJobHandle` when another
        queue of the account holds it (its board record); one rebuilt from the journal (a job
        of an earlier run of the app); None when none of them knows it."""
        handle = self._handles.get(id)
        if handle is not None:
            return handle
        record = await self._batch._row(id)
        if record is None or record.job is None:
            return await self._remote(id)
        job = _JOB.validate_json(record.job)
        handle = JobHandle(job, id=id, owner="earlier run", cancel=self.cancel)
        handle.state = BY_RECORD[record.state]
        if not handle.state.is_final:
            # Not held by this queue, so not going anywhere: a live row is taken up when the
            # queue opens, and a NEW one was cancelled (or never submitted) and stays so
            # until the job is started again.
            live = await self._remote(id)
            if live is not None:
                return live
            handle.state = JobState.CANCELED
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
        elif done:
            # The batch ends the job on its way out; the caller sees it ended on return.
            with anyio.move_on_after(_CANCEL_SETTLES):
                await handle._done.wait()
        self._changed(handle)
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
        self._changed(handle)
        self._forget_old(handle)

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
                await self._publish_ending(handle, result)
                handle._finish(result)
                self._changed(handle)
                self._forget_old(handle)

    async def _on_event(self, event: BatchEvent) -> None:
        if isinstance(event, JobEvent):
            handle = self._handles.get(event.key)
            if handle is not None:
                handle._event(event)
                self._changed(handle)

    async def _resume(self) -> None:
        # Jobs an earlier run of the app left live: their tasks are billed or may be, so
        # they are taken up again (polled and downloaded, never submitted twice).
        live = await self._batch._rows(State.SUBMITTING, State.SUBMITTED, State.SUCCEEDED)
        for record in live:
            if record.job is not None and record.key not in self._handles:
                await self._adopt(record)

    async def _adopt(self, record: JobRecord) -> None:
        job = _JOB.validate_json(record.job or "")
        handle = JobHandle(job, id=record.key, owner="earlier run", cancel=self.cancel)
        handle.state, handle.task_id = BY_RECORD[record.state], record.task_id
        self._handles[record.key] = handle
        self._enqueue(handle)
        self._changed(handle)

    def _forget_old(self, handle: JobHandle) -> None:
        """Keep the last ``keep_ended`` ended handles; a long-lived app must not grow."""
        self._ended.append(handle.id)
        while len(self._ended) > self.keep_ended:
            id = self._ended[0]
            if id in self._dirty:
                return  # not on the board yet: forgotten after it is
            self._ended.popleft()
            old = self._handles.get(id)
            if old is not None and old.state.is_final:
                del self._handles[id]
                self._answers.pop(id, None)

    # --- the job board ------------------------------------------------------------------

    def _changed(self, handle: JobHandle) -> None:
        if self._board is not None:
            self._dirty[handle.id] = self._dirty.get(handle.id, 0) + 1

    async def _publish_now(self, handle: JobHandle, ending: JobResult | None = None) -> None:
        """Write ``handle``'s record at once; a store slower than ``_BOARD_WAIT`` or failing
        leaves it to the board loop (the handle stays dirty), never holding the jobs up."""
        if self._board is None:
            return
        with anyio.move_on_after(_BOARD_WAIT):
            try:
                await self._write(self._board, handle, ending=ending)
            except StoreError as exc:
                logger.warning("job board not updated for job %s: %s", handle.id[:12], exc)

    async def _publish_ending(self, handle: JobHandle, result: JobResult) -> None:
        # On the board first: a request that sees the job ended here, then asks another
        # worker for its video, must find it ended there too.
        self._changed(handle)
        await self._publish_now(handle, ending=result)

    async def _remote(self, id: str, *, others_only: bool = False) -> RemoteJobHandle | None:
        if self._board is None:
            return None
        handle: RemoteJobHandle | None = None
        with anyio.move_on_after(_BOARD_WAIT):
            try:
                handle = await self._board.lookup(id)
            except StoreError as exc:
                logger.warning("job board unreadable, job %s looked up here only: %s", id[:12], exc)
        # This queue's own record of a job it no longer holds: an ended job it forgot (kept
        # for get()), or a record a store outage left behind (never "running").
        own = handle is not None and handle.worker == self._board.worker
        if own and (others_only or handle is None or not handle.state.is_final):
            return None
        return handle

    async def _keep_board(self, board: JobBoard) -> None:
        """Publish what changed, carry out cancel requests, and beat, for the queue's life."""
        with self._board_scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._beat, board)
                while True:
                    await anyio.sleep(board.poll)
                    try:
                        await self._publish(board)
                        await self._take_cancels(board, tg)
                    except Exception as exc:  # a courtesy to other queues; the jobs go on
                        logger.warning("job board not updated (%s); trying again", exc)

    async def _beat(self, board: JobBoard) -> None:
        # A task of its own: a slow cancel or publish must not make this queue look gone.
        while True:
            await anyio.sleep(board.heartbeat)
            try:
                await board.beat()
            except Exception as exc:
                logger.warning("job board heartbeat not sent (%s); trying again", exc)

    async def _publish(self, board: JobBoard) -> None:
        for id in list(self._dirty):
            handle = self._handles.get(id)
            if handle is not None:
                await self._write(board, handle)  # a failure keeps it and the rest dirty
            elif id in self._dirty:
                del self._dirty[id]  # gone

    async def _write(
        self, board: JobBoard, handle: JobHandle, ending: JobResult | None = None
    ) -> None:
        """Publish ``handle`` as it is now; clean unless it changed meanwhile (an ending
        record is written ahead of the handle's own change, which stays dirty)."""
        async with self._publishing:
            change = self._dirty.get(handle.id)
            await board.publish(handle, answers=self._answers.get(handle.id, {}), ending=ending)
            if ending is None and change is not None and self._dirty.get(handle.id) == change:
                del self._dirty[handle.id]

    async def _take_cancels(self, board: JobBoard, tg: TaskGroup) -> None:
        live = [id for id, handle in self._handles.items() if not handle.state.is_final]
        if live:
            for id, asked in (await board.cancel_requests(live)).items():
                request, handle = asked.request, self._handles.get(id)
                if handle is None or asked.run not in (None, handle.accepted_at):
                    continue  # forgotten meanwhile, or for another run of the job (elsewhere)
                if request not in self._cancelling and request not in self._answers.get(id, {}):
                    self._cancelling.add(request)
                    tg.start_soon(self._remote_cancel, id, request)

    async def _remote_cancel(self, id: str, request: str) -> None:
        """Carry out a cancel another queue passed on, and answer it on the board."""
        handle = self._handles.get(id)
        answer = False
        if handle is not None:
            try:
                answer = await self.cancel(handle)
            except Exception as exc:
                logger.warning("a cancel of job %s passed on failed: %s", id[:12], exc)
        self._cancelling.discard(request)
        if id in self._handles:  # (not forgotten meanwhile: its answers would never go)
            self._answers.setdefault(id, {})[request] = answer
        if handle is not None:
            self._changed(handle)
