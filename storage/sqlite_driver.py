"""SQLite under SQLAlchemy's asyncio layer without a thread trip per call.

SQLAlchemy's aiosqlite adapter makes a cursor, executes, fetches and closes it, each a
round trip to aiosqlite's thread and back through the event loop: three or four per
statement. Under a burst every round trip waits its turn in the busy loop, and a unit holds
SQLite's one write turn (`Store._slots`) across all of them: a submission's ~20 statements
held it for ~30 ms, three quarters of the pipeline's time. Here:

- A statement inside a transaction runs at once on the caller's thread, rows, rowcount
  and lastrowid read and the cursor closed. Every transaction here is BEGIN IMMEDIATE
  (storage/db.py): once it began, this connection holds SQLite's write lock and nothing in
  it can wait for a lock – a statement is the CPU and the page cache, microseconds to a
  few milliseconds, less than a trip costs the loop.
- What can wait goes to aiosqlite's thread, one trip each: BEGIN IMMEDIATE (it waits for
  another process's write lock, up to `LOCK_WAIT_SECONDS`), COMMIT (the fsync), and any
  statement outside a transaction.
- The pool's rollback of a connection it takes back (after every commit) costs no trip
  when no transaction is open.

The sqlite3 connection is made on aiosqlite's thread with `check_same_thread=False`; it is
used from one thread at a time, as SQLAlchemy never runs two calls on one connection at
once. Everything else – the connection, its thread, commit, rollback, the pool, the errors
– is SQLAlchemy's aiosqlite dialect as it is, given this module as its DBAPI
(`create_async_engine(…, module=one_call_dbapi())`, see storage/db.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)

_Outcome = tuple[Any, list[Any], int, int | None]  # description, rows, rowcount, lastrowid


def _execute(
    connection: sqlite3.Connection, operation: str, parameters: Any, many: bool
) -> _Outcome:
    """The statement from start to end."""
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class _OneCallCursor:
    """What SQLAlchemy's adapter awaits of an aiosqlite cursor: `execute` runs the statement
    (at once inside a transaction, else in one trip), the rest reads what it left."""

    arraysize = 1

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._connection = connection
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: list[Any] = []

    async def __aenter__(self) -> _OneCallCursor:
        return self

    async def execute(self, operation: str, parameters: Any = None) -> None:
        await self._run(operation, parameters, many=False)

    async def executemany(self, operation: str, parameters: Sequence[Any]) -> None:
        await self._run(operation, parameters, many=True)

    async def _run(self, operation: str, parameters: Any, many: bool) -> None:
        # `_conn` and `_execute` are private, but the one way to the sqlite3 connection and
        # onto aiosqlite's thread (SQLAlchemy's adapter uses its queue too); aiosqlite is
        # pinned below 0.23 in pyproject.toml
        sqlite: sqlite3.Connection = self._connection._conn
        if sqlite.in_transaction:  # holding the write lock: nothing to wait for
            outcome = _execute(sqlite, operation, parameters, many)
        else:
            run_on_thread: Any = self._connection._execute
            outcome = await run_on_thread(_execute, sqlite, operation, parameters, many)
        self.description, self._rows, self.rowcount, self.lastrowid = outcome

    async def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    async def close(self) -> None:
        self._rows = []


class _Cursor(AsyncAdapt_aiosqlite_cursor):
    __slots__ = ()

    def _make_new_cursor(self, connection: Any) -> Any:
        return _OneCallCursor(connection)


class _Connection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = _Cursor

    def rollback(self) -> None:
        """No trip when there is nothing to roll back: SQLAlchemy's pool rolls back every
        connection it takes back, also just after a commit."""
        driver: Any = self._connection  # the aiosqlite connection
        if driver._connection is not None and not driver._conn.in_transaction:
            return
        super().rollback()


class _OneCallDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> _Connection:
        # made on aiosqlite's thread, used from the event loop's as well (one at a time)
        adapted = super().connect(*arg, **{**kw, "check_same_thread": False})
        return _Connection(self, adapted._connection)  # the same aiosqlite connection


def one_call_dbapi() -> AsyncAdapt_aiosqlite_dbapi:
    """The DBAPI module for SQLAlchemy's aiosqlite dialect, as described above."""
    return _OneCallDBAPI(aiosqlite, sqlite3)
