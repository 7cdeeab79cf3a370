"""The store's decisions as pure functions of state and time, shared by every backend."""

from __future__ import annotations

import math

__all__ = ["check_duration", "check_size", "gcra_try"]


def gcra_try(tat: float | None, now: float, *, interval: float) -> tuple[float, float]:
    """One GCRA decision at the moment of sending, with no burst: ``(wait, new_tat)``.

    ``tat`` is the key's theoretical arrival time (None: never used). When it is due
    (``tat <= now``) the call is granted: ``wait`` is 0.0 and the new TAT is ``now + interval``,
    spaced from this actual grant, never from a reservation, so a caller that stalls after
    asking cannot bunch with the next one. Otherwise nothing is reserved and ``wait`` is the
    time until TAT.

    A TAT more than one interval ahead can only come from the clock stepping back; it is
    pulled in to ``now + interval``, which still spaces the next grant at least one interval
    after every earlier one in real time.
    """
    check_duration("interval", interval)
    if tat is None or tat <= now:
        return 0.0, now + interval
    tat = min(tat, now + interval)
    return tat - now, tat


def check_duration(name: str, seconds: float) -> float:
    """``seconds`` if it is a finite duration > 0, else ValueError naming ``name``."""
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {seconds}")
    return seconds


def check_size(size: int) -> int:
    """``size`` if a window of that many slots can ever be held."""
    if size < 1:
        raise ValueError(f"a lease window needs size >= 1, got {size}")
    return size
