"""Client-side limits per account: GCRA rates without bursts and the in-flight task window.

The maths (:func:`gcra_reserve`) is pure. State lives in a :class:`LimitsBackend`; the
in-memory one serves every client of one process, so several ``EmoClient`` objects on one key
share one budget. A shared backend (e.g. Redis, with server time and leases) can implement the
same protocol so that many processes on one key share it too.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

import anyio

__all__ = [
    "AccountLimits",
    "InMemoryLimitsBackend",
    "LimitRegistry",
    "LimitsBackend",
    "RateLimiter",
    "Rates",
    "account_id",
    "default_registry",
    "gcra_reserve",
]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


def gcra_reserve(tat: float, now: float, *, interval: float) -> tuple[float, float]:
    """One GCRA reservation with zero burst tolerance: ``(delay, new_tat)``.

    ``tat`` is the theoretical arrival time of the next grant. The caller may go after
    ``delay`` seconds; consecutive grants are therefore at least ``interval`` apart.
    """
    start = max(tat, now)
    return start - now, start + interval


def account_id(api_key: str) -> str:
    """A stable, non-reversible id for the account behind ``api_key`` (full SHA-256)."""
    return hashlib.sha256(api_key.encode()).hexdigest()


class LimitsBackend(Protocol):
    """Where limiter state lives. Keys are opaque strings chosen by :class:`AccountLimits`."""

    async def reserve(self, key: str, *, interval: float) -> float:
        """Reserve the next grant of rate ``key``; return the seconds to wait before using it."""
        ...

    async def acquire_slot(self, key: str, *, size: int) -> None:
        """Wait until fewer than ``size`` slots of window ``key`` are held, then hold one."""
        ...

    async def release_slot(self, key: str) -> None:
        """Give back one slot of window ``key``."""
        ...


@dataclass
class _Window:
    held: int = 0
    waiters: deque[anyio.Event] = field(default_factory=deque)


class InMemoryLimitsBackend:
    """Limiter state in this process; exact for every client sharing this object."""

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._tats: dict[str, float] = {}
        self._windows: dict[str, _Window] = {}

    async def reserve(self, key: str, *, interval: float) -> float:
        """Reserve the next grant of rate ``key`` (see :func:`gcra_reserve`)."""
        now = self._clock()
        delay, self._tats[key] = gcra_reserve(self._tats.get(key, now), now, interval=interval)
        return delay

    async def acquire_slot(self, key: str, *, size: int) -> None:
        """Hold one slot of window ``key``, first come first served."""
        window = self._windows.setdefault(key, _Window())
        if window.held < size and not window.waiters:
            window.held += 1
            return
        granted = anyio.Event()
        window.waiters.append(granted)
        try:
            await granted.wait()
        except BaseException:
            # Cancelled: if the slot was already handed to us, pass it on instead of leaking it.
            if granted.is_set():
                self._release(key)
            else:
                window.waiters.remove(granted)
            raise

    async def release_slot(self, key: str) -> None:
        """Give one slot back, handing it straight to the oldest waiter if there is one."""
        self._release(key)

    def held(self, key: str) -> int:
        """How many slots of window ``key`` are held now (for tests and progress)."""
        window = self._windows.get(key)
        return window.held if window else 0

    def _release(self, key: str) -> None:
        window = self._windows[key]
        if window.waiters:
            window.waiters.popleft().set()
        else:
            window.held -= 1


class RateLimiter:
    """Grants at most ``rate`` calls per second, evenly spaced (GCRA, no bursts)."""

    def __init__(
        self,
        backend: LimitsBackend,
        key: str,
        *,
        rate: float,
        headroom: float = 0.0,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0 per second, got {rate}")
        self._backend = backend
        self._key = key
        self.rate = rate
        # Headroom stretches the spacing so network jitter cannot squeeze two grants closer
        # than the service's window when they arrive.
        self.interval = (1.0 + headroom) / rate
        self._sleep = sleep

    async def acquire(self) -> None:
        """Wait for this call's turn."""
        delay = await self._backend.reserve(self._key, interval=self.interval)
        if delay > 0:
            await self._sleep(delay)


@dataclass(frozen=True)
class Rates:
    """Per-account limits of the service (DESIGN.md); lower them to leave room for others.

    ``window`` is how many tasks one account keeps submitted but unfinished: one running plus
    a short lookahead queued server-side. ``headroom`` stretches every spacing by that fraction
    so that a stalled event loop or network jitter, which can bunch two grants together on
    arrival, still keeps the service's sliding one-second count within its limit.
    """

    submit: float = 5.0
    query: float = 20.0
    detect: float = 5.0
    upload: float = 100.0
    window: int = 2
    headroom: float = 0.1

    def __post_init__(self) -> None:
        # A window below 1 would make every task_slot() wait forever.
        if self.window < 1:
            raise ValueError(f"window must be >= 1 task, got {self.window}")
        if self.headroom < 0:
            raise ValueError(f"headroom must be >= 0, got {self.headroom}")


class AccountLimits:
    """All limiters of one account."""

    def __init__(
        self, backend: LimitsBackend, account: str, *, rates: Rates, sleep: Sleep = anyio.sleep
    ) -> None:
        self.rates = rates
        self._backend = backend
        self._window_key = f"{account}:window"

        def make(name: str, rate: float) -> RateLimiter:
            key = f"{account}:{name}"
            return RateLimiter(backend, key, rate=rate, headroom=rates.headroom, sleep=sleep)

        self.submit = make("submit", rates.submit)
        self.query = make("query", rates.query)
        self.detect = make("detect", rates.detect)
        self.upload = make("upload", rates.upload)

    @asynccontextmanager
    async def task_slot(self) -> AsyncIterator[None]:
        """Hold one slot of the in-flight window from submit until the task is terminal."""
        await self._backend.acquire_slot(self._window_key, size=self.rates.window)
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                await self._backend.release_slot(self._window_key)


class LimitRegistry:
    """Hands out one :class:`AccountLimits` per account, shared by every client using it."""

    def __init__(self, backend: LimitsBackend | None = None) -> None:
        self.backend: LimitsBackend = backend or InMemoryLimitsBackend()
        self._accounts: dict[str, AccountLimits] = {}

    def for_account(self, account: str, *, rates: Rates | None = None) -> AccountLimits:
        """The limits of ``account`` (see :func:`account_id`); created on first use."""
        limits = self._accounts.get(account)
        if limits is None or (rates is not None and limits.rates != rates):
            limits = AccountLimits(self.backend, account, rates=rates or Rates())
            self._accounts[account] = limits
        return limits


_DEFAULT_REGISTRY = LimitRegistry()


def default_registry() -> LimitRegistry:
    """The process-wide registry that clients use unless given another."""
    return _DEFAULT_REGISTRY
