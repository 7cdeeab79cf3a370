"""Accounts and tasks: the one-slot FIFO queue of each account, run on the virtual clock."""

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
class ModelUsage:
    """What one model of one account was asked: counters of the routes that name a model."""

    routes: dict[str, RouteStats] = field(default_factory=dict)

    def route(self, name: str) -> RouteStats:
        """The counters of route ``name`` for this model, created on first use."""
        return self.routes.setdefault(name, RouteStats())


@dataclass
class Account:
    """One API key's world: its tasks, its queue, its running slot and its counters."""

    label: str
    tasks: list[Task] = field(default_factory=list)
    queue: deque[Task] = field(default_factory=deque)
    running: Task | None = None
    slot_free_at: float | None = None
    first_start: float | None = None
    last_end: float | None = None
    busy_seconds: float = 0.0
    submissions: int = 0
    result_bytes_served: int = 0
    routes: dict[str, RouteStats] = field(default_factory=dict)
    models: dict[str, ModelUsage] = field(default_factory=dict)
    limiters: dict[str, RateLimiter] = field(default_factory=dict)

    def route(self, name: str) -> RouteStats:
        """The counters of route ``name`` (all models together), created on first use."""
        return self.routes.setdefault(name, RouteStats())

    def model(self, name: str) -> ModelUsage:
        """The part of the account that concerns model ``name``, created on first use."""
        return self.models.setdefault(name, ModelUsage())


StartHook = Callable[[Task], None]


class Scheduler:
    """Moves every account's tasks along the virtual timeline, lazily and exactly.

    ``advance(now)`` replays everything that happened up to virtual time ``now``: a task
    ends at its due time, the next queued task starts at that very instant. Called on
    every request and by the emulator's driver loop, so state never depends on polling.
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
        """Queue ``task`` (PENDING) and start it at once if the slot is free."""
        account.tasks.append(task)
        account.queue.append(task)
        account.submissions += 1
        self.advance(account, now)

    def cancel(self, account: Account, task: Task, now: float) -> bool:
        """Cancel a PENDING task; False if it is not PENDING (any more)."""
        self.advance(account, now)
        if task.status != "PENDING":
            return False
        account.queue.remove(task)
        task.status = "CANCELED"
        task.end_time = now
        task.inputs.release()
        return True

    def advance(self, account: Account, now: float) -> None:
        """Replay ``account``'s timeline up to virtual time ``now``."""
        while True:
            running = account.running
            if running is not None:
                end = running.due_end(needs_render=self._needs_render(running))
                if end is None or end > now:
                    return
                self._finish(account, running, end)
            if not account.queue:
                return
            task = account.queue.popleft()
            start = max(task.submit_time, account.slot_free_at or task.submit_time)
            if start >= task.submit_time + self._task_ttl:
                task.status = "UNKNOWN"  # lost in the queue: its id expired before it ran
                task.inputs.release()
                continue
            self._start(account, task, start)

    def next_due(self, account: Account) -> float | None:
        """The virtual time of the account's next scheduled change, if one is known."""
        running = account.running
        if running is None:
            return None
        return running.due_end(needs_render=self._needs_render(running))

    def _start(self, account: Account, task: Task, start: float) -> None:
        task.status = "RUNNING"
        task.scheduled_time = start
        if task.content_error is not None:
            task.processing_end = start + self._content_failure_seconds
        else:
            task.fate = self._choose_fate()
            task.processing_end = start + self._processing_seconds(task)
        account.running = task
        if account.first_start is None:
            account.first_start = start
        if task.fate == "succeed" and task.content_error is None and self._needs_render(task):
            self._on_start(task)

    def _finish(self, account: Account, task: Task, end: float) -> None:
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
        account.running = None
        account.slot_free_at = end
        account.last_end = end
        account.busy_seconds += end - (task.scheduled_time or end)


def new_task_id() -> str:
    """A fresh task id, UUID-shaped like the service's."""
    return str(uuid.uuid4())
