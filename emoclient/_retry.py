"""Retry maths: which answers are worth retrying and how long to wait. Pure, no I/O."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["RetryPolicy", "is_retryable_status", "parse_retry_after"]

# 429 codes that mean "quota or bill exhausted": waiting a few seconds will not help (API.md §3.3).
_HOPELESS_429_CODES = frozenset(
    {
        "Throttling.AllocationQuota",
        "PrepaidBillOverdue",
        "PostpaidBillOverdue",
        "CommodityNotPurchased",
    }
)
_RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def is_retryable_status(status: int, code: str | None = None) -> bool:
    """True when an answer with this status and service code may succeed if sent again."""
    if status == 429 and code in _HOPELESS_429_CODES:
        return False
    return status in _RETRYABLE_STATUSES


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a read (and a submit that created nothing).

    Delays follow capped exponential backoff with full jitter ("Exponential Backoff And
    Jitter", AWS Architecture Blog): attempt *n* waits ``uniform(0, min(max_delay,
    base_delay * 2**n))``, but never less than the server's ``Retry-After``.
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0
    rng: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("base_delay and max_delay must be >= 0")

    def should_retry(self, attempt: int) -> bool:
        """True when failed attempt ``attempt`` (0-based) may be followed by another."""
        return attempt + 1 < self.max_attempts

    def delay(self, attempt: int, *, retry_after: float | None = None) -> float:
        """Seconds to sleep after failed attempt number ``attempt`` (0-based)."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** min(attempt, 62))
        jittered = ceiling * self.rng()
        if retry_after is None:
            return jittered
        return max(jittered, min(retry_after, self.max_retry_after))
