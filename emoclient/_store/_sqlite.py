"""The embedded account store: one SQLite file shared by every process of a user on a host.

Every call is one ``BEGIN IMMEDIATE`` transaction that reads the clock after taking the
file's write lock, so decisions happen in one order across processes and the times they
record follow that order. sqlite3 blocks, so a call runs on the event loop's own thread
only where it cannot wait: on a second connection without a busy timeout, while no other call
of this process holds the store; the moment the file is locked by another process (or a call
of this one is under way) it runs in a worker thread instead, one at a time, and waits there.
Commits in WAL mode with ``synchronous = NORMAL`` do not fsync; the checkpoints that do are
run in a thread of their own every ``_CHECKPOINT_EVERY`` writes, never on the loop. Calls are
not strictly first come, first served within a process: one queued for the thread (behind a
busy file) may be overtaken by a later one that succeeds inline.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread

from emoclient._log import logger
from emoclient._loops import PerLoop
from emoclient._store._errors import StoreError
from emoclient._store._maths import check_duration, check_size, gcra_try
from emoclient._store._protocol import RETENTION, Intent

__all__ = ["SQLiteStore"]

SCHEMA_VERSION = 1

_T = TypeVar("_T")
Clock = Callable[[], float]
_Work = Callable[[sqlite3.Connection, float], _T]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rates (key TEXT PRIMARY KEY, tat REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    win TEXT NOT NULL, holder TEXT NOT NULL, expires_at REAL NOT NULL,
    PRIMARY KEY (win, holder)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS intents (
    account TEXT NOT NULL, model TEXT NOT NULL, owner TEXT NOT NULL,
    at REAL NOT NULL, expires_at REAL NOT NULL,
    PRIMARY KEY (account, model, owner)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tasks (
    account TEXT NOT NULL, model TEXT NOT NULL, task_id TEXT NOT NULL,
    owner TEXT NOT NULL, claimed_at REAL NOT NULL,
    PRIMARY KEY (account, model, task_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tasks_by_time ON tasks (account, model, claimed_at);
CREATE TABLE IF NOT EXISTS jobs (
    account TEXT NOT NULL, job_key TEXT NOT NULL, owner TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (account, job_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    board TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, expires_at REAL NOT NULL,
    PRIMARY KEY (board, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_by_expiry ON records (expires_at);
"""

#: Writes on the loop's connection between two WAL checkpoints (run in the worker thread).
_CHECKPOINT_EVERY = 256

_CLOSE_INTENT = "DELETE FROM intents WHERE account = ? AND model = ? AND owner = ?"


class SQLiteStore:
    """Account state in the SQLite file ``path`` (created on first use).

    ``clock`` gives epoch seconds; every process using the file must share it, which the
    host's wall clock does. ``busy_timeout`` bounds how long a call waits for the file's lock.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, clock: Clock = time.time, busy_timeout: float = 30.0
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._busy_ms = int(check_duration("busy_timeout", busy_timeout) * 1000)
        self._conn: sqlite3.Connection | None = None
        self._inline: sqlite3.Connection | None = None  # the loop's: never waits for a lock
        self._inline_writes = 0
        self._checkpointer: threading.Thread | None = None
        self._closed = False
        # One call at a time per event loop (a worker thread each), and one at a time on
        # the connection across the loops of this process (see emoclient._loops).
        self._limiter = PerLoop(lambda: anyio.CapacityLimiter(1))
        self._lock = threading.Lock()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(
                f"cannot open the account store {self.path} ({exc}); choose a writable "
                "file with EMOCLIENT_STORE or a writable folder with EMOCLIENT_HOME"
            ) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            self._wal(conn)
            # WAL with NORMAL survives any process crash; only a power cut may lose the last
            # grants, and those are seconds old by the time the host is back.
            conn.execute("PRAGMA synchronous = NORMAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"account store {self.path} has schema version {version}, newer than this "
                    f"emoclient's {SCHEMA_VERSION}; upgrade emoclient everywhere on this host"
                )
            conn.executescript(
                f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            )
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(
                f"cannot use {self.path} as an account store ({exc}); delete it to start afresh"
            ) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _wal(self, conn: sqlite3.Connection) -> None:
        # Switching a new file to WAL answers "locked" at once, without the busy timeout,
        # while another process is creating the same file: wait for it, as the timeout would.
        deadline = time.monotonic() + self._busy_ms / 1000
        delay = 0.005
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(delay)  # in the store's worker thread, never on the event loop
            delay = min(delay * 2, 0.1)

    def _transaction(self, work: _Work[_T], write: bool) -> _T:
        with self._lock:
            return self._locked_transaction(work, write)

    def _locked_transaction(self, work: _Work[_T], write: bool) -> _T:
        if self._closed:
            raise StoreError(f"account store {self.path} is closed")
        if self._conn is None:
            self._conn = self._connect()
            self._inline = self._connect_inline()
        try:
            return _run(self._conn, work, write, self._clock)
        except sqlite3.Error as exc:
            raise StoreError(f"account store {self.path}: {exc}") from exc

    def _connect_inline(self) -> sqlite3.Connection | None:
        """The connection calls use on the event loop's thread (the file exists by now)."""
        try:
            conn = sqlite3.connect(
                self.path, timeout=0, check_same_thread=False, isolation_level=None
            )
        except sqlite3.Error:
            return None  # every call goes through the worker thread, as before
        try:
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA wal_autocheckpoint = 0")  # see _checkpoint
        except sqlite3.Error:
            conn.close()
            return None
        return conn

    def _try_inline(self, work: _Work[_T], write: bool) -> _T:
        """``work`` on the loop's connection; raises :class:`_Busy` where it would wait."""
        if not self._lock.acquire(blocking=False):
            raise _Busy  # a call in the worker thread holds the connection
        try:
            conn = self._inline
            if conn is None or self._closed:
                raise _Busy
            try:
                return _run(conn, work, write, self._clock)
            except sqlite3.OperationalError as exc:
                if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _LOCKED_CODES:
                    raise _Busy from exc  # another process holds the file: wait in a thread
                raise StoreError(f"account store {self.path}: {exc}") from exc
            except sqlite3.Error as exc:
                raise StoreError(f"account store {self.path}: {exc}") from exc
        finally:
            self._lock.release()

    async def _call(self, work: _Work[_T], *, write: bool = True) -> _T:
        if self._inline is not None:
            await anyio.lowlevel.checkpoint()  # a call is a checkpoint, wherever it runs
            try:
                result = self._try_inline(work, write)
            except _Busy:
                pass
            else:
                if write:
                    self._inline_writes += 1
                    if self._inline_writes % _CHECKPOINT_EVERY == 0:
                        self._start_checkpoint()
                return result
        limiter = self._limiter.get()
        return await anyio.to_thread.run_sync(self._transaction, work, write, limiter=limiter)

    def _start_checkpoint(self) -> None:
        """Move the WAL's pages into the file (an fsync) in a thread of its own, off every
        caller's path (a caller whose write is committed must get its result, not wait or be
        cancelled); one at a time, and one that cannot run now is left to the next."""
        if self._checkpointer is not None and self._checkpointer.is_alive():
            return
        self._checkpointer = threading.Thread(
            target=self._checkpoint, name="emoclient-store-checkpoint", daemon=True
        )
        self._checkpointer.start()

    def _checkpoint(self) -> None:
        with self._lock:  # meanwhile calls wait for the connection in the worker thread
            if self._conn is None or self._closed:
                return
            try:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:
                logger.debug("account store %s: checkpoint skipped (%s)", self.path, exc)

    async def try_acquire(self, key: str, *, interval: float) -> float:
        """See :meth:`AccountStore.try_acquire`."""
        return (await self.try_acquire_at(key, interval=interval))[0]

    async def try_acquire_at(self, key: str, *, interval: float) -> tuple[float, float]:
        """:meth:`try_acquire` and the store's clock at the decision (the grant time)."""
        check_duration("interval", interval)

        def work(conn: sqlite3.Connection, now: float) -> tuple[float, float]:
            row = conn.execute("SELECT tat FROM rates WHERE key = ?", (key,)).fetchone()
            tat = None if row is None else row[0]
            wait, new_tat = gcra_try(tat, now, interval=interval)
            if new_tat != tat:
                conn.execute("REPLACE INTO rates (key, tat) VALUES (?, ?)", (key, new_tat))
            return wait, now

        return await self._call(work)

    async def try_lease(self, window: str, *, size: int, holder: str, ttl: float) -> bool:
        """See :meth:`AccountStore.try_lease`."""
        check_size(size)
        check_duration("ttl", ttl)

        def work(conn: sqlite3.Connection, now: float) -> bool:
            held, count = _live_leases(conn, window, holder, now)
            if not held and count >= size:
                return False
            conn.execute("REPLACE INTO leases VALUES (?, ?, ?)", (window, holder, now + ttl))
            return True

        return await self._call(work)

    async def renew_lease(self, window: str, *, holder: str, ttl: float) -> bool:
        """See :meth:`AccountStore.renew_lease`."""
        check_duration("ttl", ttl)

        def work(conn: sqlite3.Connection, now: float) -> bool:
            cursor = conn.execute(
                "UPDATE leases SET expires_at = ? WHERE win = ? AND holder = ? AND expires_at > ?",
                (now + ttl, window, holder, now),
            )
            return cursor.rowcount == 1

        return await self._call(work)

    async def release_lease(self, window: str, *, holder: str) -> None:
        """See :meth:`AccountStore.release_lease`."""
        await self._call(
            _statement("DELETE FROM leases WHERE win = ? AND holder = ?", (window, holder))
        )

    async def lease_count(self, window: str) -> int:
        """See :meth:`AccountStore.lease_count`."""
        sql = "SELECT COUNT(*) FROM leases WHERE win = ? AND expires_at > ?"
        count: int = await self._call(
            lambda conn, now: conn.execute(sql, (window, now)).fetchone()[0], write=False
        )
        return count

    async def open_intent(
        self, account: str, model: str, *, owner: str, at: float, ttl: float
    ) -> None:
        """See :meth:`AccountStore.open_intent`."""
        check_duration("ttl", ttl)

        def work(conn: sqlite3.Connection, now: float) -> None:
            conn.execute(
                "DELETE FROM intents WHERE account = ? AND model = ? AND expires_at < ?",
                (account, model, now - RETENTION),
            )
            conn.execute(
                "REPLACE INTO intents VALUES (?, ?, ?, ?, ?)",
                (account, model, owner, at, now + ttl),
            )

        await self._call(work)

    async def close_intent(self, account: str, model: str, *, owner: str) -> None:
        """See :meth:`AccountStore.close_intent`."""
        await self._call(_statement(_CLOSE_INTENT, (account, model, owner)))

    async def open_intents(self, account: str, model: str) -> list[Intent]:
        """See :meth:`AccountStore.open_intents`."""

        def work(conn: sqlite3.Connection, now: float) -> list[Intent]:
            rows = conn.execute(
                "SELECT owner, at, expires_at FROM intents"
                " WHERE account = ? AND model = ? AND expires_at >= ? ORDER BY at",
                (account, model, now - RETENTION),
            )
            return [Intent(owner, at, expires, expires <= now) for owner, at, expires in rows]

        return await self._call(work, write=False)

    async def claim_task(self, account: str, model: str, *, task_id: str, owner: str) -> str:
        """See :meth:`AccountStore.claim_task`."""

        def work(conn: sqlite3.Connection, now: float) -> str:
            conn.execute(
                "DELETE FROM tasks WHERE account = ? AND model = ? AND claimed_at < ?",
                (account, model, now - RETENTION),
            )
            conn.execute(
                "INSERT OR IGNORE INTO tasks VALUES (?, ?, ?, ?, ?)",
                (account, model, task_id, owner, now),
            )
            recorded: str = conn.execute(
                "SELECT owner FROM tasks WHERE account = ? AND model = ? AND task_id = ?",
                (account, model, task_id),
            ).fetchone()[0]
            if recorded == owner:
                conn.execute(_CLOSE_INTENT, (account, model, owner))
            return recorded

        return await self._call(work)

    async def task_owners(self, account: str, model: str, *, since: float) -> dict[str, str]:
        """See :meth:`AccountStore.task_owners`."""
        sql = "SELECT task_id, owner FROM tasks WHERE account = ? AND model = ? AND claimed_at >= ?"
        return await self._call(
            lambda conn, _: dict(conn.execute(sql, (account, model, since)).fetchall()),
            write=False,
        )

    async def claim_job(self, account: str, job_key: str, *, owner: str, ttl: float) -> str | None:
        """See :meth:`AccountStore.claim_job`."""
        check_duration("ttl", ttl)

        def work(conn: sqlite3.Connection, now: float) -> str | None:
            row = conn.execute(
                "SELECT owner FROM jobs WHERE account = ? AND job_key = ? AND expires_at > ?",
                (account, job_key, now),
            ).fetchone()
            if row is not None and row[0] != owner:
                other: str = row[0]
                return other
            conn.execute(
                "REPLACE INTO jobs VALUES (?, ?, ?, ?)", (account, job_key, owner, now + ttl)
            )
            return None

        return await self._call(work)

    async def release_job(self, account: str, job_key: str, *, owner: str) -> None:
        """See :meth:`AccountStore.release_job`."""
        sql = "DELETE FROM jobs WHERE account = ? AND job_key = ? AND owner = ?"
        await self._call(_statement(sql, (account, job_key, owner)))

    async def put_record(self, board: str, key: str, value: str, *, ttl: float) -> None:
        """See :meth:`AccountStore.put_record`."""
        check_duration("ttl", ttl)

        def work(conn: sqlite3.Connection, now: float) -> None:
            conn.execute("DELETE FROM records WHERE expires_at <= ?", (now,))
            conn.execute("REPLACE INTO records VALUES (?, ?, ?, ?)", (board, key, value, now + ttl))

        await self._call(work)

    async def read_records(
        self, board: str, keys: Sequence[str], *, take: bool = False
    ) -> dict[str, str]:
        """See :meth:`AccountStore.read_records`."""
        if not keys:
            return {}
        wanted = list(keys)

        def work(conn: sqlite3.Connection, now: float) -> dict[str, str]:
            found: dict[str, str] = {}
            for start in range(0, len(wanted), 500):  # SQLite's bound on parameters
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                where = f"board = ? AND key IN ({marks})"
                rows = conn.execute(
                    f"SELECT key, value FROM records WHERE {where} AND expires_at > ?",
                    (board, *chunk, now),
                ).fetchall()
                found.update(rows)
                if take and rows:
                    conn.execute(f"DELETE FROM records WHERE {where}", (board, *chunk))
            return found

        return await self._call(work, write=take)

    async def aclose(self) -> None:
        """Close the file; later calls raise :class:`StoreError`."""

        def close() -> None:
            with self._lock:
                self._closed = True
                if self._conn is not None:
                    conn, self._conn = self._conn, None
                    conn.close()
                if self._inline is not None:
                    inline, self._inline = self._inline, None
                    inline.close()

        await anyio.to_thread.run_sync(close, limiter=self._limiter.get())


def _run(conn: sqlite3.Connection, work: _Work[_T], write: bool, clock: Clock) -> _T:
    """``work`` in one transaction, on the clock read once the transaction has begun."""
    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        result = work(conn, clock())
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


class _Busy(Exception):
    """The loop's connection would have to wait: the call goes to the worker thread."""


#: SQLITE_BUSY and SQLITE_LOCKED (with any extended code).
_LOCKED_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _live_leases(
    conn: sqlite3.Connection, window: str, holder: str, now: float
) -> tuple[bool, int]:
    conn.execute("DELETE FROM leases WHERE win = ? AND expires_at <= ?", (window, now))
    row = conn.execute(
        "SELECT COUNT(*), SUM(holder = ?) FROM leases WHERE win = ?", (holder, window)
    ).fetchone()
    return bool(row[1]), int(row[0])


def _statement(sql: str, params: tuple[str, ...]) -> _Work[None]:
    def work(conn: sqlite3.Connection, now: float) -> None:
        conn.execute(sql, params)

    return work
