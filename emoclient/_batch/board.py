"""The job board: every :class:`~emoclient.JobQueue` of an account answers about every job.

A web service run with several worker processes (``uvicorn --workers 4``) has one queue per
worker, and a request about a job reaches any of them. Each queue publishes its jobs to the
account store (their state, task id, video and recent events, as JSON records) and a
heartbeat of its own; a queue asked about a job it does not hold reads the board and returns
a :class:`RemoteJobHandle`, whose ``events()`` and ``wait()`` follow the record, and whose
``cancel()`` leaves a request that the holding queue carries out and answers on the board.
The SQLite store (the default) shares the board between the processes of one host, Redis
between hosts (then the video folder must be shared too, for any worker to serve a video).
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from pydantic import TypeAdapter

from emoclient._batch.events import BatchEvent, event_from_json
from emoclient._batch.handles import JobHandle, JobState
from emoclient._batch.jobs import Job
from emoclient._batch.ledger import JobResult
from emoclient._exceptions import EmoError, WaitTimeoutError
from emoclient._store import RETENTION, AccountStore
from emoclient._validate import check_optional_seconds

__all__ = ["CancelRequest", "JobBoard", "RemoteJobHandle"]

logger = logging.getLogger("emoclient")

_JOB = TypeAdapter[Job](Job)
#: Events a record keeps (the newest); a reader that falls further behind skips the rest.
KEPT_EVENTS = 50


class JobBoard:
    """The job board of ``account`` in ``store``, as one :class:`~emoclient.JobQueue` uses it.

    A queue makes its own by default; pass one as ``JobQueue(board=...)`` to tune it:
    ``poll`` is how often the queue publishes what changed and takes cancel requests, and how
    often a remote handle reads the board; the queue's heartbeat goes every ``heartbeat``
    seconds and it is presumed gone when the last is older than ``gone_after``; a remote
    cancel waits ``cancel_timeout`` seconds for the holder's answer.
    """

    def __init__(
        self,
        store: AccountStore,
        account: str,
        *,
        poll: float = 0.25,
        heartbeat: float = 5.0,
        gone_after: float = 20.0,
        cancel_timeout: float = 15.0,
    ) -> None:
        for name, value in (
            ("poll", poll),
            ("heartbeat", heartbeat),
            ("gone_after", gone_after),
            ("cancel_timeout", cancel_timeout),
        ):
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"JobBoard {name} must be a number of seconds > 0, got {value}")
        if gone_after <= heartbeat:
            raise ValueError(
                f"JobBoard gone_after ({gone_after} s) must be longer than heartbeat "
                f"({heartbeat} s), or live queues would look gone"
            )
        self.store = store
        self.account = account
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.poll = poll
        self.heartbeat = heartbeat
        self.gone_after = gone_after
        self.cancel_timeout = cancel_timeout
        self._jobs = f"{account}:jobs"
        self._cancels = f"{account}:cancel"
        self._workers = f"{account}:workers"

    # --- the holding queue's side ------------------------------------------------------

    async def publish(
        self, handle: JobHandle, *, answers: dict[str, bool], ending: JobResult | None = None
    ) -> None:
        """Write ``handle``'s record (``answers``: cancel request id -> its outcome).

        ``ending`` publishes the job as ended with that result before the handle itself says
        so, so that no one sees it ended here and not yet on the board.
        """
        events = handle.history
        result = ending or handle.result
        state = JobState(ending.status) if ending is not None else handle.state
        path = ending.path if ending is not None else handle.path
        path = path.resolve() if path is not None else None
        task_id = (ending.task_id if ending is not None else None) or handle.task_id
        record = {
            "worker": self.worker,
            "updated_at": time.time(),
            "job": _JOB.dump_json(handle.job).decode(),
            "owner": handle.owner,
            "state": state.value,
            "task_id": task_id,
            "path": str(path) if path is not None else None,
            "billed_anyway": handle.billed_anyway,
            "accepted_at": handle.accepted_at,
            "taken_at": handle.taken_at,
            "events_total": len(events),
            "events": [event.to_json() for event in events[-KEPT_EVENTS:]],
            "result": None if result is None else _result_json(result),
            "cancels": answers,
        }
        await self.store.put_record(self._jobs, handle.id, json.dumps(record), ttl=RETENTION)

    async def beat(self) -> None:
        """Say this queue is alive, for ``gone_after`` seconds."""
        await self.store.put_record(
            self._workers, self.worker, str(time.time()), ttl=self.gone_after
        )

    async def cancel_requests(self, ids: list[str]) -> dict[str, CancelRequest]:
        """The cancel requests left for jobs ``ids``, by job id.

        A request stays on the board until it expires; the holder carries out each request id
        once, for the run of the job it was made for (``run``: the run's ``accepted_at``), and
        answers it in the job's record. (Taking requests off the board instead lost one
        whenever the store's reply to the take was lost and the read retried.)
        """
        found = await self.store.read_records(self._cancels, ids)
        return {id: _cancel_request(value) for id, value in found.items()}

    # --- any queue's side ---------------------------------------------------------------

    async def lookup(self, id: str) -> RemoteJobHandle | None:
        """The job ``id`` as another queue published it; None when the board lacks it."""
        record = await self.read(id)
        if record is None:
            return None
        handle = RemoteJobHandle(self, id, record)
        await handle.check_worker()
        return handle

    async def read(self, id: str) -> dict[str, Any] | None:
        """The record of job ``id``, or None."""
        found = await self.store.read_records(self._jobs, [id])
        if id not in found:
            return None
        try:
            record: dict[str, Any] = json.loads(found[id])
        except ValueError:
            logger.warning("job board record %s is not JSON; ignored", id[:12])
            return None
        return record

    async def worker_alive(self, worker: str) -> bool:
        """True while ``worker``'s heartbeat is fresh."""
        return bool(await self.store.read_records(self._workers, [worker]))

    async def request_cancel(self, id: str, *, run: float, answered: Collection[str] = ()) -> str:
        """Ask the holder of job ``id`` to cancel its run ``run``; the request's id. A request
        for that run still waiting for the holder (not among ``answered``) is joined, so that
        both askers read the one answer."""
        waiting = await self.waiting_request(id)
        if waiting is not None and waiting.run == run and waiting.request not in answered:
            return waiting.request
        request = uuid.uuid4().hex
        value = json.dumps({"request": request, "run": run})
        await self.store.put_record(self._cancels, id, value, ttl=self.cancel_timeout * 4)
        return request

    async def waiting_request(self, id: str) -> CancelRequest | None:
        """The cancel request on the board for job ``id``, if any."""
        found = await self.cancel_requests([id])
        return found.get(id)


@dataclass(frozen=True)
class CancelRequest:
    """A cancel request on the board: its id, and the run of the job it is for (None: any)."""

    request: str
    run: float | None


def _cancel_request(value: str) -> CancelRequest:
    try:
        data = json.loads(value)
        return CancelRequest(str(data["request"]), float(data["run"]))
    except (ValueError, TypeError, KeyError):
        return CancelRequest(value, None)  # a bare request id, as an earlier version wrote


class RemoteJobHandle(JobHandle):
    """A job that another queue (another worker process, or host) holds.

    It reads the job board: ``state``, ``task_id``, ``path`` and ``result`` are as of the
    last read (:meth:`refresh`); :meth:`events` and :meth:`wait` follow the board until the
    job ends; :meth:`cancel` asks the holder and returns its answer. ``worker`` names the
    holder, ``worker_alive`` says whether its heartbeat was fresh at the last check.
    """

    def __init__(self, board: JobBoard, id: str, record: dict[str, Any]) -> None:
        super().__init__(
            _JOB.validate_json(record["job"]), id=id, owner=record["owner"], cancel=_no_cancel
        )
        self.worker: str = record["worker"]
        self.worker_alive = True
        self._board = board
        self._record = record
        self._checked = anyio.current_time()
        self._apply(record)

    def __repr__(self) -> str:
        return f"RemoteJobHandle(id={self.id[:12]!r}, state={self.state.value!r})"

    def _apply(self, record: dict[str, Any]) -> None:
        self._record = record
        self.worker = record["worker"]
        self.state = JobState(record["state"])
        self.task_id = record["task_id"]
        self.path = Path(record["path"]) if record["path"] else None
        self.billed_anyway = bool(record["billed_anyway"])
        self.accepted_at = record["accepted_at"]
        self.taken_at = record["taken_at"]
        if record["result"] is not None and self.result is None:
            self.result = _result_from_json(self.job, self.id, record["result"])
        if self.state.is_final:
            self._done.set()

    def snapshot(self) -> dict[str, Any]:
        """The handle as JSON-ready data, with the worker that holds the job."""
        events = self._record["events"]
        return {
            **super().snapshot(),
            "events": self._record["events_total"],
            "last_event": events[-1] if events else None,
            "worker": self.worker,
            "worker_alive": self.worker_alive,
        }

    def _answers(self) -> dict[str, bool]:
        answers: dict[str, bool] = self._record["cancels"]
        return answers

    async def refresh(self) -> None:
        """Read the job's record again."""
        record = await self._board.read(self.id)
        if record is not None:
            self._apply(record)

    async def check_worker(self) -> None:
        """Update :attr:`worker_alive` (a final job needs no worker)."""
        if not self.state.is_final:
            self.worker_alive = await self._board.worker_alive(self.worker)

    async def events(self) -> AsyncIterator[BatchEvent]:
        """Every event the board still keeps, then new ones until the job ends (or its
        holder has gone: then :attr:`worker_alive` is False)."""
        seen = max(0, self._record["events_total"] - KEPT_EVENTS)
        while True:
            total, kept = self._record["events_total"], self._record["events"]
            first = total - len(kept)
            for data in kept[max(0, seen - first) :]:
                event = event_from_json(data)
                if event is not None:
                    yield event
            seen = total
            if self.state.is_final or not await self._follow():
                return

    async def _follow(self) -> bool:
        """Wait a poll and read the record again; False once the holder has gone."""
        await anyio.sleep(self._board.poll)
        await self.refresh()
        now = anyio.current_time()
        if now - self._checked >= self._board.heartbeat:
            self._checked = now
            await self.check_worker()
        return self.worker_alive or self.state.is_final

    async def wait(self, timeout: float | None = None) -> JobResult:  # noqa: ASYNC109
        """The job's result once it ends; :class:`WaitTimeoutError` after ``timeout`` s;
        :class:`EmoError` when its holder has gone (the next queue to open the holder's
        folder takes the job up; ask again then)."""
        check_optional_seconds("timeout", timeout)
        with anyio.move_on_after(timeout):
            while not self.state.is_final:
                if not await self._follow():
                    raise EmoError(
                        f"the worker {self.worker} holding job {self.id[:12]} has gone (its "
                        "heartbeat stopped); the next queue to open its folder takes the job "
                        "up: ask about it again then"
                    )
        if self.result is None:
            raise WaitTimeoutError(
                task_id=self.task_id or self.id, timeout=timeout or 0.0, last_status=None
            )
        return self.result

    async def cancel(self) -> bool:
        """Ask the holding queue to cancel the job, and return its answer (see
        :meth:`JobHandle.cancel`). Raises :class:`EmoError` when the holder does not
        answer within the board's ``cancel_timeout``."""
        await self.refresh()
        if self.state.is_final:
            return False
        run = self.accepted_at
        mine = {await self._board.request_cancel(self.id, run=run, answered=self._answers())}
        with anyio.move_on_after(self._board.cancel_timeout):
            while True:
                await anyio.sleep(self._board.poll)
                await self.refresh()
                answers = self._answers()
                for request in mine & answers.keys():
                    return bool(answers[request])
                if self.state.is_final:  # ended meanwhile (another cancel's, perhaps)
                    return self.state is JobState.CANCELED and not self.billed_anyway
                if self.accepted_at != run:  # the job was taken up again: ask that run
                    run = self.accepted_at
                    mine.add(await self._board.request_cancel(self.id, run=run))
                waiting = await self._board.waiting_request(self.id)
                if waiting is not None and waiting.run == run:
                    mine.add(waiting.request)  # another asker's request replaced ours: join it
        await self.check_worker()
        why = "" if self.worker_alive else " (its heartbeat stopped: the process has gone)"
        raise EmoError(
            f"the worker {self.worker} holding job {self.id[:12]} did not answer a cancel "
            f"within {self._board.cancel_timeout:g} s{why}; try again, or cancel its task "
            f"{self.task_id or '(not submitted yet)'} with `emoclient cancel`"
        )


async def _no_cancel(handle: JobHandle) -> bool:  # pragma: no cover - cancel() is overridden
    raise NotImplementedError


def _result_json(result: JobResult) -> dict[str, Any]:
    return {
        "status": result.status,
        "path": str(result.path.resolve()) if result.path is not None else None,
        "task_id": result.task_id,
        "error": result.error,
        "code": result.code,
        "billed_seconds": result.billed_seconds,
        "cost_cny": result.cost_cny,
    }


def _result_from_json(job: Job, key: str, data: dict[str, Any]) -> JobResult:
    return JobResult(
        job=job,
        status=data["status"],
        path=Path(data["path"]) if data["path"] else None,
        task_id=data["task_id"],
        error=data["error"],
        code=data["code"],
        billed_seconds=data["billed_seconds"],
        cost_cny=data["cost_cny"],
        key=key,
    )
