"""The account store: what every process using one DashScope account must share.

The service's limits belong to the account, not the process, so several processes on one
key (web workers, batches, hosts) keep their shared state here:

- **rates** (GCRA, evaluated when a request is sent): :meth:`~AccountStore.try_acquire`
  grants now and sets the key's theoretical arrival time (TAT) to ``now + interval``, or
  reserves nothing and says how long to wait. Grants are at least ``interval`` apart on the
  store's clock, so with ``interval = 1 / limit`` no one-second window holds more than
  ``limit`` grants, even when a process stalls between asking and sending;
- **the in-flight window** as leases with a TTL, renewed by a heartbeat: a killed holder's
  slot frees itself when its lease expires;
- **task ownership**: open submit intents (a dead owner's become *abandoned* after their TTL
  instead of vanishing) and which owner claimed which task id, so reconciling a lost answer
  never takes another process's task;
- **job claims**, so one job is paid for once even when two journals list it;
- **records**: small notes with a TTL that processes leave each other, such as the job board
  of the :class:`~emoclient.JobQueue` of every worker of a web service and the cancel
  requests they pass on, so any worker can answer about any job.

The protocol, every method a coroutine; times are epoch seconds, durations seconds::

    class AccountStore(Protocol):
        async def try_acquire(self, key: str, *, interval: float) -> float
        async def try_lease(self, window: str, *, size: int, holder: str, ttl: float) -> bool
        async def renew_lease(self, window: str, *, holder: str, ttl: float) -> bool
        async def release_lease(self, window: str, *, holder: str) -> None
        async def lease_count(self, window: str) -> int
        async def open_intent(self, account: str, model: str, *, owner: str, at: float,
                              ttl: float) -> None
        async def close_intent(self, account: str, model: str, *, owner: str) -> None
        async def open_intents(self, account: str, model: str) -> list[Intent]
        async def claim_task(self, account: str, model: str, *, task_id: str,
                             owner: str) -> str
        async def task_owners(self, account: str, model: str, *,
                              since: float) -> dict[str, str]
        async def claim_job(self, account: str, job_key: str, *, owner: str,
                            ttl: float) -> str | None
        async def release_job(self, account: str, job_key: str, *, owner: str) -> None
        async def put_record(self, board: str, key: str, value: str, *, ttl: float) -> None
        async def read_records(self, board: str, keys: Sequence[str], *,
                               take: bool = False) -> dict[str, str]
        async def aclose(self) -> None

``claim_task`` also closes the winner's open intent in the same step. ``renew_lease`` only
extends a live lease; when it says False, ``try_lease`` takes a slot again if one is free.
Ownership and abandoned intents are purged :data:`RETENTION` (48 h) after they end. Each
backend also has ``try_acquire_at(key, *, interval) -> (wait, now)``, which adds the store's
clock at the decision (the grant time), and works as an ``async with`` block.

Backends, chosen by :func:`open_store` (``store=...``, else ``EMOCLIENT_STORE``):

- :class:`SQLiteStore`, the default: one file per user (:func:`default_store_path`, under
  ``EMOCLIENT_HOME`` or the user's cache folder) shared by every process of that user on
  the host; the host's clock;
- :class:`MemoryStore`: one process only; an injectable clock for tests;
- :class:`RedisStore` (``pip install 'emoclient[redis]'``): processes on several hosts;
  Lua scripts on the server's clock; retries while Redis is away, never granting what it
  could not record, and raises :class:`StoreUnavailableError` after a deadline.
"""

from emoclient._store._errors import StoreError, StoreUnavailableError
from emoclient._store._maths import gcra_try
from emoclient._store._memory import MemoryStore
from emoclient._store._open import default_home, default_store_path, open_store
from emoclient._store._protocol import RETENTION, AccountStore, Intent
from emoclient._store._redis import RedisStore
from emoclient._store._sqlite import SQLiteStore

__all__ = [
    "RETENTION",
    "AccountStore",
    "Intent",
    "MemoryStore",
    "RedisStore",
    "SQLiteStore",
    "StoreError",
    "StoreUnavailableError",
    "default_home",
    "default_store_path",
    "gcra_try",
    "open_store",
]
