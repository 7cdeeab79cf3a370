"""When to ask about a task again: a polite poll schedule. Pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from emoclient._models import TaskStatus

__all__ = ["PollSchedule"]


@dataclass
class PollSchedule:
    """Poll intervals that start short, grow to ``max_interval``, and reset on a change.

    The service's docs advise polling about every 15 s. When the caller knows roughly how long
    a task runs (``expected_seconds``), the first poll after the task starts RUNNING is placed
    near its expected end instead of spending queries on a task that cannot be done yet.
    """

    min_interval: float = 3.0
    max_interval: float = 15.0
    growth: float = 1.5
    expected_seconds: float | None = None
    _interval: float = 0.0
    _status: TaskStatus | None = None
    _running_since: float | None = None

    def __post_init__(self) -> None:
        if self.min_interval <= 0 or self.max_interval < self.min_interval:
            raise ValueError(
                f"need 0 < min_interval <= max_interval, got {self.min_interval}, "
                f"{self.max_interval}"
            )
        self._interval = self.min_interval

    def next_delay(self, status: TaskStatus, *, now: float) -> float:
        """Seconds to wait before the next poll, given the status just observed at ``now``."""
        if status != self._status:
            self._status = status
            self._interval = self.min_interval
            if status is TaskStatus.RUNNING:
                self._running_since = now
        else:
            self._interval = min(self.max_interval, self._interval * self.growth)
        delay = self._interval
        if (
            status is TaskStatus.RUNNING
            and self.expected_seconds
            and self._running_since is not None
        ):
            until_done = self._running_since + self.expected_seconds - now
            if until_done > delay:
                delay = until_done
        return delay
