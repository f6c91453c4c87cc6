"""SQLite through SQLAlchemy's asyncio layer (storage/sqlite_driver.py): a trip to the database
thread only for what can wait – BEGIN IMMEDIATE (a lock), COMMIT (the fsync).

Under a burst each trip waits its turn in the busy event loop while the unit holds
SQLite's one write turn, so the number of trips is what a unit costs everyone else; and
what waits must never wait on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import func, select, text

from storage.db import open_database, upgrade
from storage.models import ProcessedEvent
from storage.repository import Store
from storage.server_secret import ServerKeys

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every call queued on an aiosqlite thread, by the name of what it runs."""
    made: list[str] = []
    queue_call: Any = aiosqlite.Connection._execute  # untyped in aiosqlite

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        made.append(getattr(fn, "__name__", repr(fn)))
        return await queue_call(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    yield made


async def test_a_unit_costs_a_trip_to_begin_and_one_to_commit(
    tmp_path: Path, server_keys: ServerKeys, trips: list[str]
) -> None:
    database = open_database(f"sqlite+aiosqlite:///{tmp_path / 'lotse.db'}")
    await upgrade(database)
    store = Store(database, server_keys)
    try:
        async with store.unit() as unit:  # connects the pooled connection once
            await unit.mark_seen("warm-up")
        trips.clear()
        async with store.unit() as unit:
            seen = await unit.seen("telegram:1")  # a SELECT
            await unit.mark_seen("telegram:1")  # an INSERT, at the flush before the commit
        # BEGIN IMMEDIATE and COMMIT; the SELECT and the INSERT at once, holding the write
        # lock; no rollback when the pool takes the connection back (SQLAlchemy's own
        # adapter: 10 trips)
        assert not seen
        assert trips == ["_execute", "commit"], trips
        async with store.unit() as unit:
            count = select(func.count()).select_from(ProcessedEvent)
            assert await unit.session.scalar(count) == 2
    finally:
        store.close()
        await database.dispose()


async def test_rows_rowcounts_errors_and_rollbacks_are_the_drivers(
    tmp_path: Path, server_keys: ServerKeys
) -> None:
    database = open_database(f"sqlite+aiosqlite:///{tmp_path / 'lotse.db'}")
    try:
        async with database.begin() as connection:
            await connection.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
            inserted = await connection.execute(
                text("INSERT INTO t (v) VALUES (:v)"), [{"v": "a"}, {"v": "b"}, {"v": "c"}]
            )
            assert inserted.rowcount == 3
            one = await connection.execute(text("INSERT INTO t (v) VALUES ('d')"))
            assert one.lastrowid == 4
            changed = await connection.execute(text("UPDATE t SET v = 'x' WHERE id > 2"))
            assert changed.rowcount == 2
        with pytest.raises(Exception, match="UNIQUE constraint failed"):
            async with database.begin() as connection:
                await connection.execute(text("INSERT INTO t (id, v) VALUES (5, 'e')"))
                await connection.execute(text("INSERT INTO t (id, v) VALUES (1, 'dup')"))
        async with database.connect() as connection:
            rows = (await connection.execute(text("SELECT id, v FROM t ORDER BY id"))).all()
        assert [tuple(row) for row in rows] == [(1, "a"), (2, "b"), (3, "x"), (4, "x")]
    finally:
        await database.dispose()


async def test_a_unit_waits_for_another_writer_off_the_event_loop(
    tmp_path: Path, server_keys: ServerKeys
) -> None:
    """Another process holds the write lock for a second: the unit waits for it on the
    database thread, and the event loop goes on meanwhile (other officials, the channels)."""
    path = tmp_path / "lotse.db"
    database = open_database(f"sqlite+aiosqlite:///{path}")
    await upgrade(database)
    store = Store(database, server_keys)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticking = asyncio.create_task(tick())
        loop = asyncio.get_running_loop()
        loop.call_later(1.0, other.rollback)  # the other writer lets go after a second

        async with store.unit() as unit:
            await unit.mark_seen("telegram:1")
        ticking.cancel()
        assert ticks >= 50, ticks  # a blocked loop would not have ticked while it waited
        assert await _marked(store) == 1
    finally:
        other.close()
        store.close()
        await database.dispose()


async def _marked(store: Store) -> int:
    async with store.unit() as unit:
        return int(await unit.session.scalar(select(func.count()).select_from(ProcessedEvent)) or 0)
