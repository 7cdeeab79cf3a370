"""Accounts and tasks: a one-slot FIFO queue per account and model, run on the virtual clock."""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ._errors import ALGO_FAILURE
from ._ratelimit import PeakMeter, RateLimiter

Fate = Literal["succeed", "fail", "stall"]
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN"})


@dataclass
class TaskInputs:
    """What a task needs to be rendered, fixed at submission."""

    image: bytes
    ext_bbox: tuple[int, int, int, int]
    output_seconds: float
    video_ratio: str
    audio: bytes | None = None
    driven_id: str | None = None

    def release(self) -> None:
        """Drop the media bytes of an ended task: long-running emulators must not hoard them."""
        self.image, self.audio = b"", None


@dataclass
class Task:
    """One video-synthesis task and everything that happened to it (virtual epoch seconds)."""

    task_id: str
    account: str
    model: str
    submit_time: float
    inputs: TaskInputs
    #: ``key_label`` of the API key that submitted the task (the list API's ``api_key_id``).
    key_id: str = ""
    request_id: str = ""
    status: str = "PENDING"
    scheduled_time: float | None = None
    processing_end: float | None = None
    end_time: float | None = None
    fate: Fate = "succeed"
    #: A content problem found after submission; the task fails with it.
    content_error: tuple[str, str] | None = None
    code: str | None = None
    message: str | None = None
    #: Rendering: None while not needed or pending; set when the file is ready or failed.
    render_done_at: float | None = None
    render_error: str | None = None
    result_path: Path | None = None
    result_name: str | None = None

    def due_end(self, *, needs_render: bool) -> float | None:
        """When the running task ends, or None while that is not yet known."""
        if self.fate == "stall" or self.processing_end is None:
            return None
        if self.fate == "fail" or self.content_error is not None or not needs_render:
            return self.processing_end
        if self.render_done_at is None:
            return None
        return max(self.processing_end, self.render_done_at)


@dataclass
class RouteStats:
    """Counters of one route of one account."""

    requests: int = 0
    throttled: int = 0
    peak: PeakMeter = field(default_factory=PeakMeter)


@dataclass
class Gauge:
    """A count that goes up and down, and the highest it has ever been."""

    now: int = 0
    peak: int = 0

    def add(self, delta: int) -> None:
        """Move the count by ``delta``."""
        self.now += delta
        self.peak = max(self.peak, self.now)


@dataclass
class Load:
    """Tasks submitted but unfinished (PENDING or RUNNING), and tasks RUNNING."""

    in_flight: Gauge = field(default_factory=Gauge)
    running: Gauge = field(default_factory=Gauge)


@dataclass
class ModelUsage:
    """One model of one account: its route counters and, for a video model, its slot.

    The service runs one task per account and video model at a time (API.md §3.1); the
    account's other tasks of that model wait in a FIFO queue, whichever key sent them.
    """

    routes: dict[str, RouteStats] = field(default_factory=dict)
    queue: deque[Task] = field(default_factory=deque)
    running: Task | None = None
    slot_free_at: float | None = None
    first_start: float | None = None
    last_end: float | None = None
    busy_seconds: float = 0.0
    submissions: int = 0
    load: Load = field(default_factory=Load)

    def route(self, name: str) -> RouteStats:
        """The counters of route ``name`` for this model, created on first use."""
        return self.routes.setdefault(name, RouteStats())


@dataclass
class Account:
    """One account's world, all its keys together: tasks, models, counters and limiters."""

    label: str
    tasks: list[Task] = field(default_factory=list)
    result_bytes_served: int = 0
    routes: dict[str, RouteStats] = field(default_factory=dict)
    models: dict[str, ModelUsage] = field(default_factory=dict)
    limiters: dict[str, RateLimiter] = field(default_factory=dict)
    #: All models together: how many tasks are in flight and running at once.
    load: Load = field(default_factory=Load)

    def route(self, name: str) -> RouteStats:
        """The counters of route ``name`` (all models together), created on first use."""
        return self.routes.setdefault(name, RouteStats())

    def model(self, name: str) -> ModelUsage:
        """The part of the account that concerns model ``name``, created on first use."""
        return self.models.setdefault(name, ModelUsage())


StartHook = Callable[[Task], None]
#: Events at one instant: a task ends (0) before the next one starts (1).
_END, _START = 0, 1


class Scheduler:
    """Moves every account's tasks along the virtual timeline, lazily and exactly.

    ``advance(now)`` replays everything that happened up to virtual time ``now``: a task
    ends at its due time, the next queued task of its model starts at that very instant.
    The account's models are replayed together, one event at a time in time order, so
    the account's counts of tasks at once are exact. Called on every request and by the
    emulator's driver loop, so state never depends on polling.
    """

    def __init__(
        self,
        *,
        processing_seconds: Callable[[Task], float],
        choose_fate: Callable[[], Fate],
        task_ttl: float,
        needs_render: Callable[[Task], bool],
        on_start: StartHook,
        content_failure_seconds: float = 5.0,
    ) -> None:
        self._processing_seconds = processing_seconds
        self._choose_fate = choose_fate
        self._task_ttl = task_ttl
        self._needs_render = needs_render
        self._on_start = on_start
        self._content_failure_seconds = content_failure_seconds

    def submit(self, account: Account, task: Task, now: float) -> None:
        """Queue ``task`` (PENDING) and start it at once if its model's slot is free."""
        self.advance(account, now)
        usage = account.model(task.model)
        account.tasks.append(task)
        usage.queue.append(task)
        usage.submissions += 1
        _count(account, usage, in_flight=1)
        self.advance(account, now)

    def cancel(self, account: Account, task: Task, now: float) -> bool:
        """Cancel a PENDING task; False if it is not PENDING (any more)."""
        self.advance(account, now)
        if task.status != "PENDING":
            return False
        usage = account.model(task.model)
        usage.queue.remove(task)
        task.status = "CANCELED"
        task.end_time = now
        task.inputs.release()
        _count(account, usage, in_flight=-1)
        return True

    def advance(self, account: Account, now: float) -> None:
        """Replay ``account``'s timeline up to virtual time ``now``."""
        while (event := self._next_event(account, now)) is not None:
            when, usage = event
            if usage.running is not None:
                self._finish(account, usage, usage.running, when)
            else:
                self._start_next(account, usage, when)

    def next_due(self, account: Account) -> float | None:
        """The virtual time of the account's next scheduled change, if one is known."""
        dues = (self._due(usage) for usage in account.models.values())
        return min((due[0] for due in dues if due is not None), default=None)

    def _due(self, usage: ModelUsage) -> tuple[float, int] | None:
        running = usage.running
        if running is not None:
            end = running.due_end(needs_render=self._needs_render(running))
            return None if end is None else (end, _END)
        if usage.queue:
            head = usage.queue[0]
            free = usage.slot_free_at
            return (head.submit_time if free is None else max(head.submit_time, free)), _START
        return None

    def _next_event(self, account: Account, now: float) -> tuple[float, ModelUsage] | None:
        usages = account.models.values()
        dues = [(due, usage) for usage in usages if (due := self._due(usage)) is not None]
        if not dues:
            return None
        (when, _), usage = min(dues, key=lambda pair: pair[0])
        return (when, usage) if when <= now else None

    def _start_next(self, account: Account, usage: ModelUsage, start: float) -> None:
        task = usage.queue.popleft()
        if start >= task.submit_time + self._task_ttl:
            task.status = "UNKNOWN"  # lost in the queue: its id expired before it ran
            task.end_time = start  # when it left the queue (UNKNOWN answers show no times)
            task.inputs.release()
            _count(account, usage, in_flight=-1)
            return
        task.status = "RUNNING"
        task.scheduled_time = start
        if task.content_error is not None:
            task.processing_end = start + self._content_failure_seconds
        else:
            task.fate = self._choose_fate()
            task.processing_end = start + self._processing_seconds(task)
        usage.running = task
        if usage.first_start is None:
            usage.first_start = start
        _count(account, usage, running=1)
        if task.fate == "succeed" and task.content_error is None and self._needs_render(task):
            self._on_start(task)

    def _finish(self, account: Account, usage: ModelUsage, task: Task, end: float) -> None:
        task.end_time = end
        failure = task.content_error
        if failure is None and task.fate == "fail":
            failure = ALGO_FAILURE
        if failure is None and task.render_error is not None:
            failure = ("InternalError", task.render_error)
        if failure is None:
            task.status = "SUCCEEDED"
        else:
            task.status = "FAILED"
            task.code, task.message = failure
        task.inputs.release()
        usage.running = None
        usage.slot_free_at = end
        usage.last_end = end
        if task.scheduled_time is not None:  # not "or": a task may start at time 0.0
            usage.busy_seconds += end - task.scheduled_time
        _count(account, usage, in_flight=-1, running=-1)


def _count(account: Account, usage: ModelUsage, *, in_flight: int = 0, running: int = 0) -> None:
    for load in (account.load, usage.load):
        load.in_flight.add(in_flight)
        load.running.add(running)


def new_task_id() -> str:
    """A fresh task id, UUID-shaped like the service's."""
    return str(uuid.uuid4())
