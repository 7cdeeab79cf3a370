"""The account store of one process: plain dicts, exact for every client sharing the object."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

from emoclient._store._maths import check_duration, check_size, gcra_try
from emoclient._store._protocol import RETENTION, Intent

__all__ = ["MemoryStore"]

Clock = Callable[[], float]


class MemoryStore:
    """Account state in this process only; ``clock`` (epoch seconds) is injectable for tests."""

    def __init__(self, *, clock: Clock = time.time) -> None:
        self._clock = clock
        self._tats: dict[str, float] = {}
        self._leases: dict[str, dict[str, float]] = {}
        self._intents: dict[tuple[str, str], dict[str, tuple[float, float]]] = {}
        self._tasks: dict[tuple[str, str], dict[str, tuple[str, float]]] = {}
        self._jobs: dict[tuple[str, str], tuple[str, float]] = {}
        self._records: dict[tuple[str, str], tuple[str, float]] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def try_acquire(self, key: str, *, interval: float) -> float:
        """See :meth:`AccountStore.try_acquire`."""
        return (await self.try_acquire_at(key, interval=interval))[0]

    async def try_acquire_at(self, key: str, *, interval: float) -> tuple[float, float]:
        """:meth:`try_acquire` and the store's clock at the decision (the grant time)."""
        now = self._clock()
        wait, self._tats[key] = gcra_try(self._tats.get(key), now, interval=interval)
        return wait, now

    def _live_leases(self, window: str) -> dict[str, float]:
        now = self._clock()
        leases = self._leases.setdefault(window, {})
        for holder in [h for h, expires in leases.items() if expires <= now]:
            del leases[holder]
        return leases

    async def try_lease(self, window: str, *, size: int, holder: str, ttl: float) -> bool:
        """See :meth:`AccountStore.try_lease`."""
        check_size(size)
        check_duration("ttl", ttl)
        leases = self._live_leases(window)
        if holder not in leases and len(leases) >= size:
            return False
        leases[holder] = self._clock() + ttl
        return True

    async def renew_lease(self, window: str, *, holder: str, ttl: float) -> bool:
        """See :meth:`AccountStore.renew_lease`."""
        check_duration("ttl", ttl)
        leases = self._live_leases(window)
        if holder not in leases:
            return False
        leases[holder] = self._clock() + ttl
        return True

    async def release_lease(self, window: str, *, holder: str) -> None:
        """See :meth:`AccountStore.release_lease`."""
        self._leases.get(window, {}).pop(holder, None)

    async def lease_count(self, window: str) -> int:
        """See :meth:`AccountStore.lease_count`."""
        return len(self._live_leases(window))

    async def open_intent(
        self, account: str, model: str, *, owner: str, at: float, ttl: float
    ) -> None:
        """See :meth:`AccountStore.open_intent`."""
        check_duration("ttl", ttl)
        self._intents.setdefault((account, model), {})[owner] = (at, self._clock() + ttl)

    async def close_intent(self, account: str, model: str, *, owner: str) -> None:
        """See :meth:`AccountStore.close_intent`."""
        self._intents.get((account, model), {}).pop(owner, None)

    async def open_intents(self, account: str, model: str) -> list[Intent]:
        """See :meth:`AccountStore.open_intents`."""
        now = self._clock()
        intents = self._intents.get((account, model), {})
        for owner in [o for o, (_, expires) in intents.items() if expires + RETENTION < now]:
            del intents[owner]
        found = [Intent(o, at, exp, exp <= now) for o, (at, exp) in intents.items()]
        return sorted(found, key=lambda intent: intent.at)

    async def claim_task(self, account: str, model: str, *, task_id: str, owner: str) -> str:
        """See :meth:`AccountStore.claim_task`."""
        now = self._clock()
        tasks = self._tasks.setdefault((account, model), {})
        for old in [t for t, (_, claimed) in tasks.items() if claimed < now - RETENTION]:
            del tasks[old]
        recorded, _ = tasks.setdefault(task_id, (owner, now))
        if recorded == owner:
            await self.close_intent(account, model, owner=owner)
        return recorded

    async def task_owners(self, account: str, model: str, *, since: float) -> dict[str, str]:
        """See :meth:`AccountStore.task_owners`."""
        tasks = self._tasks.get((account, model), {})
        return {task: owner for task, (owner, claimed) in tasks.items() if claimed >= since}

    async def claim_job(self, account: str, job_key: str, *, owner: str, ttl: float) -> str | None:
        """See :meth:`AccountStore.claim_job`."""
        check_duration("ttl", ttl)
        now = self._clock()
        current = self._jobs.get((account, job_key))
        if current is not None and current[0] != owner and current[1] > now:
            return current[0]
        self._jobs[(account, job_key)] = (owner, now + ttl)
        return None

    async def release_job(self, account: str, job_key: str, *, owner: str) -> None:
        """See :meth:`AccountStore.release_job`."""
        current = self._jobs.get((account, job_key))
        if current is not None and current[0] == owner:
            del self._jobs[(account, job_key)]

    async def put_record(self, board: str, key: str, value: str, *, ttl: float) -> None:
        """See :meth:`AccountStore.put_record`."""
        check_duration("ttl", ttl)
        now = self._clock()
        for old in [k for k, (_, expires_at) in self._records.items() if expires_at <= now]:
            del self._records[old]
        self._records[(board, key)] = (value, now + ttl)

    async def read_records(
        self, board: str, keys: Sequence[str], *, take: bool = False
    ) -> dict[str, str]:
        """See :meth:`AccountStore.read_records`."""
        now = self._clock()
        found = {}
        for key in keys:
            record = self._records.get((board, key))
            if record is not None and record[1] > now:
                found[key] = record[0]
                if take:
                    del self._records[(board, key)]
        return found

    async def aclose(self) -> None:
        """Nothing to release; kept for the protocol."""
