"""The contract every account store keeps (see the package docstring for its guarantees)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["RETENTION", "AccountStore", "Intent"]

# The service forgets a task 24 h after it ends; ownership and abandoned intents are kept
# twice that long so that any reconciliation still finds them, then purged.
RETENTION = 48 * 3600.0


@dataclass(frozen=True)
class Intent:
    """A submit that was about to be sent and is not resolved yet.

    ``at`` is when the owner recorded it (epoch seconds, the owner's clock). Past
    ``expires_at`` (store clock) without a renewal its owner is presumed dead: the intent is
    ``abandoned``. It no longer needs to hold anyone back, but its task (if the submit
    reached the service) is still unowned until someone reconciles it and closes the intent.
    """

    owner: str
    at: float
    expires_at: float
    abandoned: bool


class AccountStore(Protocol):
    """State that every process using one account shares (see :mod:`emoclient._store`)."""

    async def try_acquire(self, key: str, *, interval: float) -> float:
        """Take the next grant of rate ``key`` now (returns 0.0), or return the seconds to wait.

        GCRA on the store's clock: a grant sets the key's TAT to ``now + interval``. A refusal
        reserves nothing; the caller sleeps the returned time and asks again.
        """
        ...

    async def try_lease(self, window: str, *, size: int, holder: str, ttl: float) -> bool:
        """Hold one of ``size`` slots of ``window`` for ``ttl`` seconds as ``holder``.

        False when ``size`` live leases of other holders exist. Leasing again as a holder
        that already holds a slot renews it.
        """
        ...

    async def renew_lease(self, window: str, *, holder: str, ttl: float) -> bool:
        """Extend ``holder``'s live lease to ``ttl`` seconds from now.

        False when the lease was lost (it expired, or the store lost its data); then
        :meth:`try_lease` takes a slot again if one is free.
        """
        ...

    async def release_lease(self, window: str, *, holder: str) -> None:
        """Free ``holder``'s slot at once (nothing happens when it holds none)."""
        ...

    async def lease_count(self, window: str) -> int:
        """How many live leases ``window`` has."""
        ...

    async def open_intent(
        self, account: str, model: str, *, owner: str, at: float, ttl: float
    ) -> None:
        """Record (or renew) that ``owner`` is about to submit; open for ``ttl`` seconds."""
        ...

    async def close_intent(self, account: str, model: str, *, owner: str) -> None:
        """Resolve ``owner``'s intent (its answer arrived, or reconciliation settled it)."""
        ...

    async def open_intents(self, account: str, model: str) -> list[Intent]:
        """Every unresolved intent, live and abandoned, oldest ``at`` first."""
        ...

    async def claim_task(self, account: str, model: str, *, task_id: str, owner: str) -> str:
        """Record ``owner`` as the task's owner unless it has one; return the recorded owner.

        When the claim is won (the result equals ``owner``), ``owner``'s open intent for this
        account and model is closed in the same step.
        """
        ...

    async def task_owners(self, account: str, model: str, *, since: float) -> dict[str, str]:
        """``task_id -> owner`` of every task claimed at or after ``since`` (epoch seconds)."""
        ...

    async def claim_job(self, account: str, job_key: str, *, owner: str, ttl: float) -> str | None:
        """Own job ``job_key`` for ``ttl`` seconds: None when claimed or renewed by ``owner``.

        Otherwise nothing changes and the other live owner is returned.
        """
        ...

    async def release_job(self, account: str, job_key: str, *, owner: str) -> None:
        """Give the job up if ``owner`` holds it."""
        ...

    async def put_record(self, board: str, key: str, value: str, *, ttl: float) -> None:
        """Keep ``value`` under ``key`` of ``board`` for ``ttl`` seconds, replacing any other.

        Records are small shared notes between the processes of an account, such as the job
        board of a :class:`~emoclient.JobQueue` and the cancel requests sent to it.
        """
        ...

    async def read_records(
        self, board: str, keys: Sequence[str], *, take: bool = False
    ) -> dict[str, str]:
        """The live values of those ``keys`` of ``board`` that have one.

        ``take`` deletes what it returns in the same step, so each value is taken once.
        """
        ...

    async def aclose(self) -> None:
        """Release connections and files; the store cannot be used afterwards."""
        ...
