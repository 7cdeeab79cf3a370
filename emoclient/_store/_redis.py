"""The account store for processes on several hosts: Redis, with every decision in a Lua script.

Scripts read the server's clock (``TIME``), so hosts need no synchronised clocks, and each
runs atomically, so every grant is recorded in the same step that decides it. While Redis
is unreachable nothing is granted: calls retry with backoff, reconnecting by themselves, and
raise :class:`StoreUnavailableError` after ``deadline`` seconds. Every call is safe to retry
after a reply was lost: a repeated grant is refused (its TAT is already set), a repeated
lease, intent, claim or job claim by the same holder or owner only renews it.

A Redis restarted without persistence has forgotten every TAT; the first grant of each rate
key then waits one interval after the store's first call on the new server, so it cannot
follow a grant made on the old one too closely. Leases come back as their holders renew
(:meth:`RedisStore.renew_lease` says False, :meth:`RedisStore.try_lease` takes a slot again);
task and job ownership need persistence (``appendonly yes``) to survive a restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit, urlunsplit

import anyio

from emoclient._loops import PerLoop
from emoclient._store._errors import StoreError, StoreUnavailableError
from emoclient._store._maths import check_duration, check_size
from emoclient._store._protocol import RETENTION, Intent

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ["RedisStore", "redact_url"]

logger = logging.getLogger("emoclient")

# Every script starts with the server's clock and a formatter that keeps a double exact:
# Lua's own tostring() and Redis's number replies keep 14 digits or truncate to integers.
_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function num(x) return string.format('%.17g', x) end
local function ms(seconds) return string.format('%d', math.ceil(seconds * 1000)) end
"""

# KEYS: rate key, boot marker. ARGV: interval. Mirrors gcra_try() in _maths.py.
_ACQUIRE = """
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat then
  -- Unknown TAT: the key is idle, or this server lost its data. Space the grant from the
  -- store's first call on this server, which came after any grant the old one made.
  local boot = tonumber(redis.call('GET', KEYS[2]))
  if not boot then
    boot = now
    redis.call('SET', KEYS[2], num(now))
  end
  tat = boot + interval
end
local wait = 0
if tat <= now then
  tat = now + interval
else
  tat = math.min(tat, now + interval)
  wait = tat - now
end
redis.call('SET', KEYS[1], num(tat), 'PX', ms(tat - now + 1))
return {num(wait), num(now)}
"""

_EXPIRE_LEASES = """
local function expire_leases()
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', num(now))
end
local function keep_leases()
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if #last > 0 then redis.call('PEXPIRE', KEYS[1], ms(tonumber(last[2]) - now + 1)) end
end
"""

# KEYS: lease set. ARGV: size, holder, ttl.
_LEASE = """
expire_leases()
if not redis.call('ZSCORE', KEYS[1], ARGV[2])
    and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], num(now + tonumber(ARGV[3])), ARGV[2])
keep_leases()
return 1
"""

# KEYS: lease set. ARGV: holder, ttl.
_RENEW = """
expire_leases()
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], num(now + tonumber(ARGV[2])), ARGV[1])
keep_leases()
return 1
"""

# KEYS: lease set.
_COUNT = """
return redis.call('ZCOUNT', KEYS[1], '(' .. num(now), '+inf')
"""

# Intents are a hash owner -> "at expires_at". ARGV: owner, at, ttl, retention.
_OPEN_INTENT = """
local expires = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], num(tonumber(ARGV[2])) .. ' ' .. num(expires))
local keep = ms(expires - now + tonumber(ARGV[4]))
if redis.call('PTTL', KEYS[1]) < tonumber(keep) then redis.call('PEXPIRE', KEYS[1], keep) end
"""

# KEYS: intents hash. ARGV: retention. Returns now, then owner, at, expires_at triples.
_LIST_INTENTS = """
local found = {num(now)}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local at, expires = string.match(all[i + 1], '(%S+) (%S+)')
  if tonumber(expires) + tonumber(ARGV[1]) < now then
    redis.call('HDEL', KEYS[1], all[i])
  else
    table.insert(found, all[i]); table.insert(found, at); table.insert(found, expires)
  end
end
return found
"""

# KEYS: owners hash, claim-time set, intents hash. ARGV: task_id, owner, retention.
_CLAIM_TASK = """
local retention = tonumber(ARGV[3])
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. num(now - retention),
                       'LIMIT', 0, 100)
if #old > 0 then
  redis.call('HDEL', KEYS[1], unpack(old))
  redis.call('ZREM', KEYS[2], unpack(old))
end
local owner = redis.call('HGET', KEYS[1], ARGV[1])
if not owner then
  owner = ARGV[2]
  redis.call('HSET', KEYS[1], ARGV[1], owner)
  redis.call('ZADD', KEYS[2], num(now), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ms(retention))
  redis.call('PEXPIRE', KEYS[2], ms(retention))
end
if owner == ARGV[2] then redis.call('HDEL', KEYS[3], owner) end
return owner
"""

# KEYS: owners hash, claim-time set. ARGV: since. Returns task_id, owner pairs.
_TASK_OWNERS = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], '+inf')
local found = {}
for _, id in ipairs(ids) do
  local owner = redis.call('HGET', KEYS[1], id)
  if owner then table.insert(found, id); table.insert(found, owner) end
end
return found
"""

# KEYS: job key. ARGV: owner, ttl. Returns nil when owned by ARGV[1] now, else the other owner.
_CLAIM_JOB = """
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then return current end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ms(tonumber(ARGV[2])))
return false
"""

# KEYS: job key. ARGV: owner.
_RELEASE_JOB = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
"""

# KEYS: the record. ARGV: value, ttl.
_PUT_RECORD = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ms(tonumber(ARGV[2])))
"""

# KEYS: records. ARGV: '1' to delete what is read. Returns a value or false per key.
_READ_RECORDS = """
local found = {}
for i, key in ipairs(KEYS) do
  local value = redis.call('GET', key)
  found[i] = value
  if value and ARGV[1] == '1' then redis.call('DEL', key) end
end
return found
"""

_SCRIPTS = {
    "release_lease": "redis.call('ZREM', KEYS[1], ARGV[1])",
    "close_intent": "redis.call('HDEL', KEYS[1], ARGV[1])",
    "acquire": _ACQUIRE,
    "lease": _EXPIRE_LEASES + _LEASE,
    "renew": _EXPIRE_LEASES + _RENEW,
    "count": _COUNT,
    "open_intent": _OPEN_INTENT,
    "list_intents": _LIST_INTENTS,
    "claim_task": _CLAIM_TASK,
    "task_owners": _TASK_OWNERS,
    "claim_job": _CLAIM_JOB,
    "release_job": _RELEASE_JOB,
    "put_record": _PUT_RECORD,
    "read_records": _READ_RECORDS,
}


def redact_url(url: str) -> str:
    """``url`` without its password or query (which may carry one), for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def backoff(attempt: int, *, base: float = 0.05, cap: float = 1.0) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based): doubling, capped."""
    return float(min(cap, base * 2**attempt))


class RedisStore:
    """Account state in Redis at ``url`` (``redis://[user:password@]host:port/db``, ``rediss://``).

    Keys live under ``prefix``. A call that cannot reach Redis retries for ``deadline``
    seconds, then raises :class:`StoreUnavailableError`; ``socket_timeout`` bounds one
    attempt. Needs the ``redis`` package (``pip install 'emoclient[redis]'``) and Redis 5+.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "emoclient:",
        deadline: float = 30.0,
        socket_timeout: float = 5.0,
    ) -> None:
        try:
            import redis.asyncio as aioredis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as exc:
            raise StoreError(
                "the Redis account store needs the redis package: pip install 'emoclient[redis]'"
            ) from exc
        self.url = redact_url(url)
        self.prefix = prefix
        self.deadline = check_duration("deadline", deadline)
        timeout = min(check_duration("socket_timeout", socket_timeout), self.deadline)
        # Retries happen here, under one deadline, not inside redis-py.

        def connect() -> tuple[Redis, dict[str, AsyncScript]]:
            client: Redis = aioredis.Redis.from_url(
                url,
                decode_responses=True,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
            )
            scripts = {
                name: client.register_script(_PRELUDE + body) for name, body in _SCRIPTS.items()
            }
            return client, scripts

        # redis-py's connections belong to the event loop that opened them: one client per
        # loop (a BlockingEmoClient's loop beside the app's, say; see emoclient._loops).
        self._clients = PerLoop(connect)
        self._closed = False
        self._outage_since: float | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def _run(self, script: str, keys: Sequence[str], args: Sequence[str | float]) -> Any:
        from redis import exceptions as errors

        if self._closed:
            raise StoreError(f"account store {self.url} is closed")
        deadline: float | None = None
        attempt = 0
        while True:
            try:
                if self._closed:  # closed while this call waited to retry
                    raise StoreError(f"account store {self.url} is closed")
                scripts = self._clients.get()[1]
                result = await scripts[script](keys=keys, args=[_arg(a) for a in args])
            except errors.AuthenticationError as exc:
                raise StoreError(
                    f"Redis at {self.url} refused the login ({exc}); fix the user and password "
                    "in the store URL (EMOCLIENT_STORE or store=...)"
                ) from exc
            except (
                errors.ConnectionError,
                errors.TimeoutError,
                errors.ReadOnlyError,
                OSError,
            ) as exc:
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.deadline
                    self._note_outage(now, exc)
                if now >= deadline:
                    raise StoreUnavailableError(
                        f"the account store at {self.url} has been unreachable for "
                        f"{self.deadline:g} s ({type(exc).__name__}: {exc}); nothing was sent "
                        "meanwhile. Start or fix Redis, or choose another store "
                        "(EMOCLIENT_STORE or store=...), then run again"
                    ) from exc
                await anyio.sleep(min(backoff(attempt), deadline - now))
                attempt += 1
            except errors.RedisError as exc:
                raise StoreError(f"account store {self.url}: {exc}") from exc
            else:
                self._note_recovery()
                return result

    def _note_outage(self, now: float, exc: Exception) -> None:
        if self._outage_since is None:
            self._outage_since = now
            logger.warning(
                "account store %s unreachable (%s); retrying for up to %g s per call",
                self.url,
                exc,
                self.deadline,
            )

    def _note_recovery(self) -> None:
        if self._outage_since is not None:
            logger.warning(
                "account store %s reachable again after %.1f s",
                self.url,
                time.monotonic() - self._outage_since,
            )
            self._outage_since = None

    async def try_acquire(self, key: str, *, interval: float) -> float:
        """See :meth:`AccountStore.try_acquire`."""
        return (await self.try_acquire_at(key, interval=interval))[0]

    async def try_acquire_at(self, key: str, *, interval: float) -> tuple[float, float]:
        """:meth:`try_acquire` and the server's clock at the decision (the grant time)."""
        check_duration("interval", interval)
        keys = [self._key("rate", key), self._key("boot")]
        wait, now = await self._run("acquire", keys, [interval])
        return float(wait), float(now)

    async def try_lease(self, window: str, *, size: int, holder: str, ttl: float) -> bool:
        """See :meth:`AccountStore.try_lease`."""
        check_size(size)
        check_duration("ttl", ttl)
        return bool(await self._run("lease", [self._key("lease", window)], [size, holder, ttl]))

    async def renew_lease(self, window: str, *, holder: str, ttl: float) -> bool:
        """See :meth:`AccountStore.renew_lease`."""
        check_duration("ttl", ttl)
        return bool(await self._run("renew", [self._key("lease", window)], [holder, ttl]))

    async def release_lease(self, window: str, *, holder: str) -> None:
        """See :meth:`AccountStore.release_lease`."""
        await self._run("release_lease", [self._key("lease", window)], [holder])

    async def lease_count(self, window: str) -> int:
        """See :meth:`AccountStore.lease_count`."""
        return int(await self._run("count", [self._key("lease", window)], []))

    async def open_intent(
        self, account: str, model: str, *, owner: str, at: float, ttl: float
    ) -> None:
        """See :meth:`AccountStore.open_intent`."""
        check_duration("ttl", ttl)
        keys = [self._key("intents", account, model)]
        await self._run("open_intent", keys, [owner, at, ttl, RETENTION])

    async def close_intent(self, account: str, model: str, *, owner: str) -> None:
        """See :meth:`AccountStore.close_intent`."""
        await self._run("close_intent", [self._key("intents", account, model)], [owner])

    async def open_intents(self, account: str, model: str) -> list[Intent]:
        """See :meth:`AccountStore.open_intents`."""
        keys = [self._key("intents", account, model)]
        now_text, *flat = await self._run("list_intents", keys, [RETENTION])
        now = float(now_text)
        found = [
            Intent(owner, float(at), float(exp), float(exp) <= now)
            for owner, at, exp in zip(flat[0::3], flat[1::3], flat[2::3], strict=True)
        ]
        return sorted(found, key=lambda intent: intent.at)

    def _task_keys(self, account: str, model: str) -> list[str]:
        return [self._key("task-owner", account, model), self._key("task-time", account, model)]

    async def claim_task(self, account: str, model: str, *, task_id: str, owner: str) -> str:
        """See :meth:`AccountStore.claim_task`."""
        keys = [*self._task_keys(account, model), self._key("intents", account, model)]
        return str(await self._run("claim_task", keys, [task_id, owner, RETENTION]))

    async def task_owners(self, account: str, model: str, *, since: float) -> dict[str, str]:
        """See :meth:`AccountStore.task_owners`."""
        flat = await self._run("task_owners", self._task_keys(account, model), [since])
        return dict(zip(flat[0::2], flat[1::2], strict=True))

    async def claim_job(self, account: str, job_key: str, *, owner: str, ttl: float) -> str | None:
        """See :meth:`AccountStore.claim_job`."""
        check_duration("ttl", ttl)
        other = await self._run("claim_job", [self._key("job", account, job_key)], [owner, ttl])
        return None if other is None else str(other)

    async def release_job(self, account: str, job_key: str, *, owner: str) -> None:
        """See :meth:`AccountStore.release_job`."""
        await self._run("release_job", [self._key("job", account, job_key)], [owner])

    async def put_record(self, board: str, key: str, value: str, *, ttl: float) -> None:
        """See :meth:`AccountStore.put_record`."""
        check_duration("ttl", ttl)
        await self._run("put_record", [self._key("record", board, key)], [value, ttl])

    async def read_records(
        self, board: str, keys: Sequence[str], *, take: bool = False
    ) -> dict[str, str]:
        """See :meth:`AccountStore.read_records`."""
        if not keys:
            return {}
        names = [self._key("record", board, key) for key in keys]
        values = await self._run("read_records", names, ["1" if take else "0"])
        return {key: value for key, value in zip(keys, values, strict=True) if value}

    async def aclose(self) -> None:
        """Close the connections; later calls raise :class:`StoreError`."""
        if not self._closed:
            self._closed = True
            mine = self._clients.current()
            self._clients.clear()  # other loops' connections close with their loops
            if mine is not None:
                await mine[0].aclose()


def _arg(value: str | float) -> str:
    # repr() of a float round-trips exactly; str() of an int is what Redis expects.
    return value if isinstance(value, str) else repr(value)
