"""The batch journal: durable per-job state in SQLite, so a rerun resumes instead of repaying.

One row per job, keyed by the job's content key. Intent is written before every submit
(state ``submitting`` with ``intent_at``), so after a crash a submit whose answer was lost
is known and can be reconciled through the list API. Every task id the journal has ever
held is kept in ``tasks``, so reconciliation never claims a task twice. Uploads (``oss://``
URLs with their expiry) and detection results are cached by content digest.

sqlite3 is blocking: every statement runs in a worker thread, one at a time, in WAL mode.
Only the intent is written with ``synchronous = FULL`` (an fsync before the submit is sent,
which also makes everything written before it durable); the other writes use ``NORMAL``,
which in WAL mode survives a crash of the process, just not of the machine, and what such a
loss costs is a query or a download again, never a second submit. Writes that arrive while
one is being committed are grouped into the next transaction (group commit): every caller
still returns only once its own write is committed. Uploads and detections, once read or
written, are served from memory.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
import anyio.to_thread

from emoclient._batch.commits import GroupCommit, Statement
from emoclient._exceptions import JournalError
from emoclient._models import BBoxTuple as BBox
from emoclient._models import parse_bbox

__all__ = ["CachedDetection", "JobRecord", "Journal", "State"]

SCHEMA_VERSION = 2

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    key TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    model TEXT NOT NULL,
    output TEXT NOT NULL,
    state TEXT NOT NULL,
    task_id TEXT,
    intent_at REAL,
    face_bbox TEXT,
    ext_bbox TEXT,
    video_url TEXT,
    url_expires_at REAL,
    video_duration REAL,
    output_seconds REAL,
    size INTEGER,
    code TEXT,
    error TEXT,
    updated_at REAL NOT NULL,
    account TEXT,
    base_url TEXT,
    job TEXT
);
CREATE INDEX IF NOT EXISTS jobs_task ON jobs (task_id);
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    model TEXT NOT NULL,
    claimed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS uploads (
    digest TEXT NOT NULL,
    model TEXT NOT NULL,
    account TEXT NOT NULL,
    url TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (digest, model, account)
);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS detections (
    digest TEXT NOT NULL,
    model TEXT NOT NULL,
    ratio TEXT NOT NULL,
    passed INTEGER NOT NULL,
    face_bbox TEXT,
    ext_bbox TEXT,
    code TEXT,
    message TEXT,
    PRIMARY KEY (digest, model, ratio)
);
"""


class State(StrEnum):
    """Journal states of a job."""

    NEW = "new"
    SUBMITTING = "submitting"  # intent written; the submit's outcome is not known
    SUBMITTED = "submitted"  # a task id is known; PENDING or RUNNING
    SUCCEEDED = "succeeded"  # the video URL is known; not yet on disk
    DOWNLOADED = "downloaded"
    FAILED = "failed"
    EXPIRED = "expired"
    INVALID = "invalid"


@dataclass(slots=True)
class JobRecord:
    """One job's row in the journal."""

    key: str
    label: str
    model: str
    output: str
    state: State
    task_id: str | None = None
    intent_at: float | None = None
    face_bbox: BBox | None = None
    ext_bbox: BBox | None = None
    video_url: str | None = None
    url_expires_at: float | None = None
    video_duration: float | None = None
    output_seconds: float | None = None
    size: int | None = None
    code: str | None = None
    error: str | None = None
    updated_at: float = 0.0
    #: The account (its label, never the key) and base URL that own the job's task.
    account: str | None = None
    base_url: str | None = None
    #: The job itself (JSON), so that a job can be taken up again from its row alone.
    job: str | None = None


@dataclass(frozen=True, slots=True)
class CachedDetection:
    """A detection answer kept by image digest, model and ratio."""

    passed: bool
    face_bbox: BBox | None
    ext_bbox: BBox | None
    code: str | None
    message: str | None


# Version 1 knew one account per journal: its rows gain the account columns (unknown, so a
# rerun accepts the account it is run with) and its upload cache, bound to no account, goes.
_FROM_V1 = """
ALTER TABLE jobs ADD COLUMN account TEXT;
ALTER TABLE jobs ADD COLUMN base_url TEXT;
ALTER TABLE jobs ADD COLUMN job TEXT;
DROP TABLE IF EXISTS uploads;
"""

_COLUMNS = tuple(f.name for f in fields(JobRecord))
_BOX_COLUMNS = ("face_bbox", "ext_bbox")


def _box_out(value: BBox | None) -> str | None:
    return None if value is None else json.dumps(list(value))


def _box_in(value: str | None) -> BBox | None:
    return None if value is None else parse_bbox(json.loads(value))


def _record(row: sqlite3.Row) -> JobRecord:
    data = {name: row[name] for name in _COLUMNS}
    for name in _BOX_COLUMNS:
        data[name] = _box_in(data[name])
    data["state"] = State(data["state"])
    return JobRecord(**data)


class Journal:
    """Durable batch state in a SQLite file; use as ``async with Journal(path) as journal``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        #: A random id of this journal file, kept in it (set by :meth:`open`).
        self.journal_id = ""
        self._conn: sqlite3.Connection | None = None
        self._limiter = anyio.CapacityLimiter(1)
        self._commits = GroupCommit(self._call)
        self._uploads: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._detections: dict[tuple[str, str, str], CachedDetection] = {}

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Open (creating if needed) the journal file and check its schema version."""
        self._conn = await anyio.to_thread.run_sync(self._connect, limiter=self._limiter)

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(
                f"cannot create the journal {self.path} ({exc}); choose a writable output folder"
            ) from exc
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise JournalError(
                    f"journal {self.path} has schema version {version}, newer than this "
                    f"emoclient's {SCHEMA_VERSION}; upgrade emoclient or use another --out folder"
                )
            if version == 1:
                conn.executescript(_FROM_V1)
            conn.executescript(_SCHEMA)
            conn.execute(
                "INSERT OR IGNORE INTO meta (name, value) VALUES ('journal_id', ?)",
                (uuid.uuid4().hex,),
            )
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self.journal_id = conn.execute(
                "SELECT value FROM meta WHERE name = 'journal_id'"
            ).fetchone()[0]
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise JournalError(
                f"cannot use {self.path} as a journal ({exc}); move it away to start afresh"
            ) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    async def close(self) -> None:
        """Close the file; later calls fail."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await anyio.to_thread.run_sync(conn.close, limiter=self._limiter)

    async def _call(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        conn = self._conn
        if conn is None:
            raise JournalError(f"journal {self.path} is not open")
        try:
            return await anyio.to_thread.run_sync(work, conn, limiter=self._limiter)
        except sqlite3.Error as exc:
            raise JournalError(f"journal {self.path}: {exc}") from exc

    async def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return await self._call(lambda conn: conn.execute(sql, params).fetchall())

    async def _write(
        self, statements: list[Statement], *, durable: bool = False, then: Statement | None = None
    ) -> list[sqlite3.Row]:
        """Commit ``statements`` (with an fsync when ``durable``); the rows of ``then``."""
        if self._conn is None:
            raise JournalError(f"journal {self.path} is not open")
        try:
            return await self._commits.write(statements, durable=durable, then=then)
        except sqlite3.Error as exc:
            raise JournalError(f"journal {self.path}: {exc}") from exc

    async def _write_one(self, sql: str, params: tuple[Any, ...]) -> None:
        await self._write([(sql, params)])

    # --- jobs -------------------------------------------------------------------------

    async def get(self, key: str) -> JobRecord | None:
        """The job's row, or None when the journal has never seen the job."""
        rows = await self._run("SELECT * FROM jobs WHERE key = ?", (key,))
        return _record(rows[0]) if rows else None

    async def add(self, record: JobRecord) -> JobRecord:
        """Insert ``record`` unless its key exists; return the row as stored."""
        record.updated_at = time.time()
        values = tuple(
            _box_out(getattr(record, n)) if n in _BOX_COLUMNS else getattr(record, n)
            for n in _COLUMNS
        )
        marks = ", ".join("?" * len(_COLUMNS))
        rows = await self._write(
            [(f"INSERT OR IGNORE INTO jobs ({', '.join(_COLUMNS)}) VALUES ({marks})", values)],
            then=("SELECT * FROM jobs WHERE key = ?", (record.key,)),
        )
        return _record(rows[0])

    async def update(self, key: str, **changes: Any) -> None:
        """Set the given columns of a job's row."""
        await self._write([_update(key, changes)])

    async def record_intent(
        self,
        key: str,
        *,
        at: float,
        account: str | None = None,
        base_url: str | None = None,
        **changes: Any,
    ) -> None:
        """Write, durably, that a submit of this job is about to be sent (by ``account`` at
        ``base_url``), with other ``changes`` to its row."""
        changes.update(
            state=State.SUBMITTING, intent_at=at, task_id=None, account=account, base_url=base_url
        )
        await self._write([_update(key, changes)], durable=True)

    async def record_submitted(self, key: str, *, task_id: str, model: str) -> None:
        """Store the task id of a job and claim it, in one transaction."""
        now = time.time()
        await self._write(
            [
                (
                    "INSERT OR IGNORE INTO tasks (task_id, key, model, claimed_at)"
                    " VALUES (?, ?, ?, ?)",
                    (task_id, key, model, now),
                ),
                (
                    "UPDATE jobs SET state = ?, task_id = ?, code = NULL, error = NULL,"
                    " updated_at = ? WHERE key = ?",
                    (State.SUBMITTED, task_id, now, key),
                ),
            ]
        )

    async def claimed_tasks(self, model: str, *, before: float | None = None) -> set[str]:
        """Every task id of ``model`` some job of this journal held (claimed before ``before``)."""
        rows = await self._run(
            "SELECT task_id FROM tasks WHERE model = ? AND claimed_at < ?",
            (model, before if before is not None else float("inf")),
        )
        return {row["task_id"] for row in rows}

    async def in_state(self, *states: str) -> list[JobRecord]:
        """The rows in any of ``states``."""
        marks = ", ".join("?" * len(states))
        rows = await self._run(f"SELECT * FROM jobs WHERE state IN ({marks})", states)
        return [_record(row) for row in rows]

    async def counts(self) -> dict[str, int]:
        """Number of rows per state."""
        rows = await self._run("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
        return {row["state"]: row["n"] for row in rows}

    # --- caches -----------------------------------------------------------------------

    async def get_upload(
        self, digest: str, model: str, *, account: str, valid_after: float
    ) -> str | None:
        """A cached ``oss://`` URL of this content for ``model`` and ``account`` (uploads are
        bound to both) still valid at ``valid_after``."""
        key = (digest, model, account)
        known = self._uploads.get(key)
        if known is None:
            rows = await self._run(
                "SELECT url, expires_at FROM uploads WHERE digest = ? AND model = ?"
                " AND account = ?",
                key,
            )
            if not rows:
                return None
            known = self._uploads[key] = (str(rows[0]["url"]), float(rows[0]["expires_at"]))
        url, expires_at = known
        return url if expires_at > valid_after else None

    async def put_upload(
        self, digest: str, model: str, *, account: str, url: str, expires_at: float
    ) -> None:
        """Remember an upload of this content for ``model`` and ``account``."""
        self._uploads[(digest, model, account)] = (url, expires_at)
        await self._write_one(
            "INSERT OR REPLACE INTO uploads (digest, model, account, url, expires_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (digest, model, account, url, expires_at),
        )

    async def owners(self) -> set[tuple[str, str]]:
        """The ``(account, base_url)`` pairs that own live tasks of this journal."""
        rows = await self._run(
            "SELECT DISTINCT account, base_url FROM jobs WHERE account IS NOT NULL"
            " AND state IN (?, ?, ?)",
            (State.SUBMITTING, State.SUBMITTED, State.SUCCEEDED),
        )
        return {(row["account"], row["base_url"]) for row in rows}

    async def get_detection(self, digest: str, model: str, ratio: str) -> CachedDetection | None:
        """A cached detection answer for this image content, model and ratio."""
        key = (digest, model, ratio)
        known = self._detections.get(key)
        if known is not None:
            return known
        rows = await self._run(
            "SELECT * FROM detections WHERE digest = ? AND model = ? AND ratio = ?", key
        )
        if not rows:
            return None
        row = rows[0]
        known = self._detections[key] = CachedDetection(
            passed=bool(row["passed"]),
            face_bbox=_box_in(row["face_bbox"]),
            ext_bbox=_box_in(row["ext_bbox"]),
            code=row["code"],
            message=row["message"],
        )
        return known

    async def put_detection(
        self, digest: str, model: str, ratio: str, detection: CachedDetection
    ) -> None:
        """Remember a detection answer (billed per call, so never asked twice)."""
        self._detections[(digest, model, ratio)] = detection
        await self._write_one(
            "INSERT OR REPLACE INTO detections VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                digest,
                model,
                ratio,
                int(detection.passed),
                _box_out(detection.face_bbox),
                _box_out(detection.ext_bbox),
                detection.code,
                detection.message,
            ),
        )


def _update(key: str, changes: dict[str, Any]) -> Statement:
    unknown = set(changes) - set(_COLUMNS)
    if unknown:
        raise ValueError(f"unknown journal columns {sorted(unknown)}")
    changes["updated_at"] = time.time()
    for name in _BOX_COLUMNS:
        if name in changes:
            changes[name] = _box_out(changes[name])
    assignments = ", ".join(f"{name} = ?" for name in changes)
    return f"UPDATE jobs SET {assignments} WHERE key = ?", (*changes.values(), key)
