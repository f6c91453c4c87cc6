"""SQLite under SQLAlchemy's asyncio layer, one round trip to the database thread per statement.

SQLAlchemy's aiosqlite adapter makes a cursor, executes, fetches and closes it, each a
round trip to aiosqlite's thread and back through the event loop: three or four per
statement. Under a burst every round trip waits its turn in a busy loop, and a unit holds
SQLite's one write turn (`Store._slots`) across all of them: a submission's ~20 statements
held it for ~30 ms, three quarters of the pipeline's time. Here one call on aiosqlite's
thread executes the statement, reads its rows, rowcount and lastrowid, and closes the
cursor; SQLAlchemy then reads that result without another trip. The pool's rollback of a
connection it takes back costs no trip when no transaction is open (after every commit).

Everything else – the connection, its thread, commit, rollback, the pool, the errors – is
SQLAlchemy's aiosqlite dialect as it is, given this module as its DBAPI
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
    connection: aiosqlite.Connection, operation: str, parameters: Any, many: bool
) -> _Outcome:
    """On aiosqlite's thread: the statement from start to end."""
    cursor = connection._conn.cursor()  # private: aiosqlite's sqlite3 connection
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
    """What SQLAlchemy's adapter awaits of an aiosqlite cursor; only `execute` is a trip."""

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
        # private, but the one way onto aiosqlite's thread (SQLAlchemy's adapter uses its
        # queue too); aiosqlite is pinned below 0.23 in pyproject.toml
        run_on_thread: Any = self._connection._execute
        outcome: _Outcome = await run_on_thread(
            _execute, self._connection, operation, parameters, many
        )
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
        if driver._connection is not None and not _in_transaction(driver):
            return
        super().rollback()


def _in_transaction(connection: aiosqlite.Connection) -> bool:
    """Read from the event loop's thread: sqlite3 allows this one attribute from any thread
    (it asks SQLite whether it is in autocommit mode); should it ever refuse, assume yes."""
    try:
        return bool(connection._conn.in_transaction)
    except sqlite3.ProgrammingError:
        return True


class _OneCallDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> _Connection:
        adapted = super().connect(*arg, **kw)
        return _Connection(self, adapted._connection)  # the same aiosqlite connection


def one_call_dbapi() -> AsyncAdapt_aiosqlite_dbapi:
    """The DBAPI module for SQLAlchemy's aiosqlite dialect, one trip per statement."""
    return _OneCallDBAPI(aiosqlite, sqlite3)
