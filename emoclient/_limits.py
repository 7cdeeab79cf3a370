"""Client-side limits of one account: rates per route and model, and the in-flight window.

The service's limits belong to the Alibaba Cloud account behind a key, per model (API.md
3.1). Their state lives in the account store (:mod:`emoclient._store`), so every client and
every process using the account shares them exactly: a rate is granted when a request is
about to be sent (GCRA on the store's clock), and a task's place in the window is a lease
that a heartbeat keeps alive, so a process killed with SIGKILL frees its slot within
``Rates.lease_ttl``. Inside one process, waiters of one limiter queue first come first
served and only the first of them asks the store.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

from emoclient._loops import PerLoop
from emoclient._models import VIDEO_MODELS, Model
from emoclient._validate import check_count

if TYPE_CHECKING:
    from emoclient._store import AccountStore

__all__ = ["AccountLimits", "RateLimiter", "Rates", "account_id", "limits_for", "shared_store"]

logger = logging.getLogger("emoclient")

Sleep = Callable[[float], Awaitable[None]]


def account_id(identity: str) -> str:
    """A stable, non-reversible id for an account (full SHA-256 of what identifies it)."""
    return hashlib.sha256(identity.encode()).hexdigest()


def _per_model(
    name: str, value: Mapping[str, float] | float, models: list[Model]
) -> dict[str, float]:
    if isinstance(value, Mapping):
        unknown = sorted(str(m) for m in value if m not in models)
        if unknown:
            known = ", ".join(models)
            raise ValueError(f"{name} rates name unknown models {unknown}; known: {known}")
        rates = {str(m): float(value.get(m, value.get(str(m), 0.0))) for m in models}
    else:
        rates = {str(m): float(value) for m in models}
    for model, rate in rates.items():
        if not rate > 0:
            raise ValueError(f"the {name} rate of {model} must be > 0 per second, got {rate}")
    return rates


@dataclass(frozen=True)
class Rates:
    """The service's limits per account (API.md 3.1); lower them to leave room for others.

    ``submit`` and ``detect`` are per model (a number applies to every model); ``query``
    is the account's; ``upload`` is per model. ``window`` is how many tasks of each video
    model the account keeps submitted but unfinished: its one running task plus a short
    lookahead queued server-side. ``headroom`` stretches every spacing by that fraction, for
    the jitter between our grant and the service's clock: grants are spaced by the store's
    clock at the moment of sending, so 0 reaches 97-99.7 % of a limit and never exceeds it on
    our side (``benchmarks/bench_store.py``), but on a loaded machine a late first request of
    a burst was seen to give the service six in one second; the default 0.02 keeps a margin.
    ``lease_ttl`` is how long a window slot of a process that died stays taken.
    """

    submit: Mapping[str, float] | float = field(
        default_factory=lambda: {str(m): s.submit_rate for m, s in VIDEO_MODELS.items()}
    )
    detect: Mapping[str, float] | float = field(
        default_factory=lambda: {str(s.detect): s.detect_rate for s in VIDEO_MODELS.values()}
    )
    query: float = 20.0
    upload: float = 100.0
    window: int = 2
    headroom: float = 0.02
    lease_ttl: float = 30.0

    def __post_init__(self) -> None:
        # A window below 1 would make every task_slot() wait forever.
        object.__setattr__(self, "window", check_count("window", self.window))
        if self.headroom < 0:
            raise ValueError(f"headroom must be >= 0, got {self.headroom}")
        if not self.query > 0 or not self.upload > 0:
            raise ValueError("query and upload rates must be > 0 per second")
        if not self.lease_ttl > 0:
            raise ValueError(f"lease_ttl must be > 0 seconds, got {self.lease_ttl}")
        detect_models = [s.detect for s in VIDEO_MODELS.values()]
        object.__setattr__(self, "submit", _per_model("submit", self.submit, list(VIDEO_MODELS)))
        object.__setattr__(self, "detect", _per_model("detect", self.detect, detect_models))

    def submit_rate(self, model: str) -> float:
        """Submissions per second of ``model``."""
        assert isinstance(self.submit, Mapping)
        return self.submit[str(model)]

    def detect_rate(self, model: str) -> float:
        """Detections per second of detection model ``model``."""
        assert isinstance(self.detect, Mapping)
        return self.detect[str(model)]


class RateLimiter:
    """Grants at most ``rate`` calls per second, evenly spaced (GCRA, no bursts)."""

    def __init__(
        self,
        store: AccountStore,
        key: str,
        *,
        rate: float,
        headroom: float = 0.0,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0 per second, got {rate}")
        self._store = store
        self._key = key
        self.rate = rate
        self.interval = (1.0 + headroom) / rate
        self._sleep = sleep
        self._queue = PerLoop(anyio.Lock)  # callers of one loop take turns; loops ask the store

    async def acquire(self) -> float:
        """Wait for this call's turn; return when the request may be sent at once, with the
        seconds it slept for its turn (0.0 when it could go at once; the wait in the queue
        of this process's other callers is theirs)."""
        waited = 0.0
        async with self._queue.get():
            while True:
                wait = await self._store.try_acquire(self._key, interval=self.interval)
                if wait <= 0:
                    return waited
                waited += wait
                await self._sleep(wait)


class _LoopWaiters:
    """One event loop's waiters for a window: their turn, and the wake-up when a slot frees."""

    def __init__(self) -> None:
        self.queue = anyio.Lock()
        self.freed: anyio.Event | None = None  # set when a slot is freed in this loop


class _Window:
    """One video model's in-flight window: leases in the store, kept alive by a heartbeat."""

    # How often a waiter asks the store when no slot was freed in this process.
    _POLL_MIN, _POLL_MAX = 0.02, 0.5

    def __init__(self, store: AccountStore, key: str, *, size: int, ttl: float) -> None:
        self._store = store
        self._key = key
        self._size = size
        self._ttl = ttl
        self._loops = PerLoop(_LoopWaiters)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        holder = uuid.uuid4().hex
        await self._acquire(holder)
        failure: BaseException | None = None
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._heartbeat, holder)
                try:
                    yield
                finally:
                    tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # The task group wraps the holder's own error (TaskFailedError, a timeout, ...)
            # in a group; the holder's caller expects the error itself. Only the body can
            # fail here (the heartbeat logs and goes on), so the group holds one error.
            if len(group.exceptions) != 1:
                raise
            failure = group.exceptions[0]
        finally:
            with anyio.CancelScope(shield=True):
                await self._store.release_lease(self._key, holder=holder)
                waiters = self._loops.current()
                if waiters is not None and waiters.freed is not None:
                    waiters.freed.set()  # wakes this loop's waiter; other loops poll
        if failure is not None:
            raise failure

    async def _acquire(self, holder: str) -> None:
        waiters = self._loops.get()
        async with waiters.queue:
            poll = self._POLL_MIN
            while not await self._store.try_lease(
                self._key, size=self._size, holder=holder, ttl=self._ttl
            ):
                freed = waiters.freed = anyio.Event()
                with anyio.move_on_after(poll):
                    await freed.wait()
                poll = min(poll * 2, self._POLL_MAX)

    async def _heartbeat(self, holder: str) -> None:
        while True:
            await anyio.sleep(self._ttl / 3)
            try:
                if await self._store.renew_lease(self._key, holder=holder, ttl=self._ttl):
                    continue
                if not await self._store.try_lease(
                    self._key, size=self._size, holder=holder, ttl=self._ttl
                ):
                    logger.warning(
                        "a task slot's lease was lost and another holder took it; the "
                        "account may briefly have one task more in flight than its window"
                    )
            except Exception as exc:  # the next beat tries again; the lease outlives a few
                logger.warning("renewing a task slot's lease failed: %s", exc)


class AccountLimits:
    """All limiters of one account, kept in ``store`` (see the module docstring)."""

    def __init__(
        self, store: AccountStore, account: str, *, rates: Rates, sleep: Sleep = anyio.sleep
    ) -> None:
        self.rates = rates
        self.store = store
        self.account = account

        def make(name: str, rate: float) -> RateLimiter:
            key = f"{account}:{name}"
            return RateLimiter(store, key, rate=rate, headroom=rates.headroom, sleep=sleep)

        self.query = make("query", rates.query)
        self._submit = {m: make(f"submit:{m}", rates.submit_rate(m)) for m in VIDEO_MODELS}
        self._detect = {
            s.detect: make(f"detect:{s.detect}", rates.detect_rate(s.detect))
            for s in VIDEO_MODELS.values()
        }
        self._upload = {m: make(f"upload:{m}", rates.upload) for m in Model}
        self._windows = {
            m: _Window(store, f"{account}:window:{m}", size=rates.window, ttl=rates.lease_ttl)
            for m in VIDEO_MODELS
        }

    def submit(self, model: Model | str) -> RateLimiter:
        """The submit limiter of video model ``model``."""
        return self._submit[Model(model)]

    def detect(self, model: Model | str) -> RateLimiter:
        """The limiter of detection model ``model``."""
        return self._detect[Model(model)]

    def upload(self, model: Model | str) -> RateLimiter:
        """The upload-policy limiter of files for ``model``."""
        return self._upload[Model(model)]

    def task_slot(self, model: Model | str) -> AbstractAsyncContextManager[None]:
        """Hold one slot of ``model``'s in-flight window from submit until the task ends.

        Every process of the account shares the window; a slot of a process that died is
        freed when its lease expires (``Rates.lease_ttl``).
        """
        return self._windows[Model(model)].slot()

    async def tasks_in_flight(self, model: Model | str) -> int:
        """How many slots of ``model``'s window are held now, by any process."""
        return await self.store.lease_count(f"{self.account}:window:{Model(model)}")


_ACCOUNTS: dict[tuple[int, str], AccountLimits] = {}
_STORES: dict[str, AccountStore] = {}


def shared_store(spec: AccountStore | str | os.PathLike[str] | None) -> AccountStore:
    """The store ``spec`` names (see ``open_store``), one object per spec in this process;
    a store object passes as it is."""
    if spec is not None and not isinstance(spec, str | os.PathLike):
        return spec
    from emoclient._store import open_store  # sqlite3 and friends load on first use

    name = os.fspath(spec) if spec is not None else os.environ.get("EMOCLIENT_STORE", "")
    store = _STORES.get(name)
    if store is None:
        store = _STORES[name] = open_store(spec)
    return store


def limits_for(store: AccountStore, account: str, *, rates: Rates | None = None) -> AccountLimits:
    """The limits of ``account`` in ``store``, shared by every client of this process."""
    key = (id(store), account)
    limits = _ACCOUNTS.get(key)
    if limits is None or limits.store is not store or (rates is not None and limits.rates != rates):
        limits = AccountLimits(store, account, rates=rates or Rates())
        _ACCOUNTS[key] = limits
    return limits
