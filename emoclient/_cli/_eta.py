"""A steady ETA: the batch's measured throughput, smoothed, counting down between videos.

A batch on one account finishes its videos one at a time, a task's length apart. The raw
"remaining jobs / videos per minute since the start" jumps at every video and every slow
task (57 s, then 1m28s, then 55 s). Here:

- the gap between finished videos is averaged (an exponentially weighted mean, so that a
  change of pace shows after a few videos, not one);
- between two videos the estimate counts down with the clock: the next video is one gap
  after the last (or "any moment" once overdue), the others a gap each;
- what is shown follows that estimate with a time constant of ``settle`` seconds, so one
  odd gap moves it a little, and a real change of pace shows within a few ``settle``.

No I/O, no clock of its own: the caller passes ``now`` (tests use plain numbers).
"""

from __future__ import annotations

import math

__all__ = ["EtaEstimator"]


class EtaEstimator:
    """``start(now)`` when the first task is submitted, ``finished(now)`` for each video
    made in this run, ``estimate(remaining, now)`` for the seconds left (None: not yet)."""

    def __init__(self, *, weight: float = 0.3, settle: float = 10.0) -> None:
        if not 0 < weight <= 1:
            raise ValueError(f"weight must be in (0, 1], got {weight}")
        if settle < 0:
            raise ValueError(f"settle must be >= 0 seconds, got {settle}")
        self._weight = weight
        self._settle = settle
        self._started: float | None = None
        self._last: float | None = None  # when the last video finished
        self.gap: float | None = None  # the smoothed seconds between videos
        self._shown: float | None = None
        self._shown_at = 0.0

    def start(self, now: float) -> None:
        """The first task was submitted (the clock of the first gap starts)."""
        if self._started is None:
            self._started = now

    def finished(self, now: float) -> None:
        """A video was made (not one found on disk from an earlier run)."""
        since = self._last if self._last is not None else self._started
        self._last = now
        if since is None:
            return
        gap = max(now - since, 0.0)
        self.gap = gap if self.gap is None else self.gap + self._weight * (gap - self.gap)

    def per_minute(self) -> float | None:
        """Videos per minute at the smoothed pace."""
        return 60.0 / self.gap if self.gap else None

    def raw(self, remaining: int, now: float) -> float | None:
        """The unsmoothed estimate: the next video one gap after the last, then a gap each."""
        if remaining <= 0:
            return 0.0
        if self.gap is None or self._last is None:
            return None
        next_one = max(self.gap - (now - self._last), 0.0)
        return next_one + (remaining - 1) * self.gap

    def estimate(self, remaining: int, now: float) -> float | None:
        """Seconds until ``remaining`` more jobs end, smoothed (call it as often as you like)."""
        target = self.raw(remaining, now)
        if target is None or target == 0.0:
            self._shown = target
            self._shown_at = now
            return target
        if self._shown is None:
            shown = target
        else:
            elapsed = max(now - self._shown_at, 0.0)
            expected = max(self._shown - elapsed, 0.0)  # the last value, counted down
            pull = 1.0 - math.exp(-elapsed / self._settle) if self._settle else 1.0
            shown = expected + pull * (target - expected)
        self._shown = shown
        self._shown_at = now
        return shown
