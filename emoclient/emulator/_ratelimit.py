"""Sliding one-second windows over real time: the service's rate limits and ``max_in_1s``."""

from __future__ import annotations

from collections import deque

WINDOW_SECONDS = 1.0


class SlidingWindow:
    """Timestamps of the events of the last second, oldest first."""

    def __init__(self) -> None:
        self._events: deque[float] = deque()

    def count(self, now: float) -> int:
        """How many events lie in the window ``(now - 1 s, now]``."""
        horizon = now - WINDOW_SECONDS
        while self._events and self._events[0] <= horizon:
            self._events.popleft()
        return len(self._events)

    def add(self, now: float) -> int:
        """Record an event at ``now`` and return the window's count including it."""
        self.count(now)
        self._events.append(now)
        return len(self._events)


class RateLimiter:
    """At most ``limit`` admitted events in any sliding real-time second."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._window = SlidingWindow()

    def try_acquire(self, now: float) -> bool:
        """Admit an event at ``now`` if the window has room; False means throttle."""
        if self._window.count(now) >= self.limit:
            return False
        self._window.add(now)
        return True


class PeakMeter:
    """The most events ever seen inside one sliding second (admitted or not)."""

    def __init__(self) -> None:
        self._window = SlidingWindow()
        self.peak = 0

    def record(self, now: float) -> None:
        """Count an event at ``now``."""
        self.peak = max(self.peak, self._window.add(now))
