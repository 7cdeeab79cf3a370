"""Group commit for the journal: writes that arrive while one is committed go together next.

Every caller returns only once its own write is committed, so nothing is acknowledged before
it is in the file; what grouping saves is a thread hop and a transaction per write when many
jobs change state at once. A write asked for with ``durable`` makes its whole group commit
with ``synchronous = FULL`` (an fsync); the others use the connection's ``NORMAL``.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

__all__ = ["GroupCommit", "Statement"]

Statement = tuple[str, tuple[Any, ...]]


@dataclass(eq=False)
class _Write:
    """One caller's statements, committed together with whatever else is waiting."""

    statements: list[Statement]
    durable: bool
    #: A query run right after the commit, in the same thread hop (its rows end in ``rows``).
    then: Statement | None = None
    rows: list[sqlite3.Row] = field(default_factory=list)
    error: BaseException | None = None
    done: anyio.Event = field(default_factory=anyio.Event)


class GroupCommit:
    """Commits writes on a connection reached through ``call`` (which runs a function of the
    connection in the connection's worker thread)."""

    def __init__(
        self, call: Callable[[Callable[[sqlite3.Connection], None]], Awaitable[None]]
    ) -> None:
        self._call = call
        self._waiting: list[_Write] = []
        self._committing = False

    async def write(
        self, statements: list[Statement], *, durable: bool, then: Statement | None
    ) -> list[sqlite3.Row]:
        """Commit ``statements``; return the rows of ``then``. Raises ``sqlite3.Error`` (or
        what ``call`` raises) when the write failed.

        The first writer commits, in turns, everything that is waiting; the others wait for
        their turn. Like a thread call, a write once asked for is carried out, and its caller
        returns after it, even when cancelled meanwhile.
        """
        write = _Write(statements, durable, then)
        self._waiting.append(write)
        with anyio.CancelScope(shield=True):
            if self._committing:
                await write.done.wait()
            else:
                self._committing = True
                try:
                    while self._waiting:
                        group, self._waiting = self._waiting, []
                        try:
                            await self._call(functools.partial(_commit, group=group))
                        except Exception as exc:
                            for other in group:
                                other.error = other.error or exc
                        for other in group:
                            other.done.set()
                finally:
                    self._committing = False
        if write.error is not None:
            raise write.error
        return write.rows


def _commit(conn: sqlite3.Connection, group: list[_Write]) -> None:
    """Commit ``group`` in one transaction; when that fails, each write in its own, so one
    bad write fails alone."""
    durable = any(w.durable for w in group)
    if durable:
        conn.execute("PRAGMA synchronous = FULL")
    try:
        try:
            _transaction(conn, [s for w in group for s in w.statements])
        except sqlite3.Error as exc:
            if len(group) == 1:
                group[0].error = exc
            else:
                for write in group:
                    try:
                        _transaction(conn, write.statements)
                    except sqlite3.Error as alone:
                        write.error = alone
        for write in group:
            if write.then is not None and write.error is None:
                try:
                    write.rows = conn.execute(*write.then).fetchall()
                except sqlite3.Error as exc:
                    write.error = exc
    finally:
        if durable:
            conn.execute("PRAGMA synchronous = NORMAL")


def _transaction(conn: sqlite3.Connection, statements: list[Statement]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, params in statements:
            conn.execute(sql, params)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
