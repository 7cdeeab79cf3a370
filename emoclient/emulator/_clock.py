"""The virtual clock: wall time that runs ``speed`` times faster and can be advanced."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import anyio


class VirtualClock:
    """Virtual epoch seconds, anchored at the real wall clock when created.

    Processing times and expiries run on this clock; rate-limit windows never do
    (they use real monotonic time, as the service does).
    """

    def __init__(
        self,
        *,
        speed: float = 1.0,
        start: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._monotonic = monotonic
        self._speed = speed
        self._base_virtual = time.time() if start is None else start
        self._base_real = monotonic()
        self._changed = anyio.Event()

    @property
    def speed(self) -> float:
        """Virtual seconds per real second (0 = frozen)."""
        return self._speed

    def now(self) -> float:
        """The current virtual time in epoch seconds."""
        return self._base_virtual + (self._monotonic() - self._base_real) * self._speed

    def advance(self, seconds: float) -> None:
        """Jump ``seconds`` into the virtual future (never backwards)."""
        if not 0 <= seconds < math.inf:
            raise ValueError(f"cannot move the clock by {seconds} s; pass finite seconds >= 0")
        self._base_virtual += seconds
        self._notify()

    def set_speed(self, speed: float) -> None:
        """Change the speed factor from now on, keeping the current virtual time."""
        if not 0 <= speed < math.inf:
            raise ValueError(f"speed must be a finite number >= 0, got {speed}")
        self._base_virtual = self.now()
        self._base_real = self._monotonic()
        self._speed = speed
        self._notify()

    def real_delay(self, until: float) -> float | None:
        """Real seconds until virtual time ``until``; None when the clock is frozen."""
        remaining = until - self.now()
        if remaining <= 0:
            return 0.0
        if self._speed == 0:
            return None
        return remaining / self._speed

    def changed(self) -> anyio.Event:
        """An event set the next time the clock is advanced or its speed changes."""
        return self._changed

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()
