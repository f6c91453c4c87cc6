"""Migrations on databases that hold data: what was there before is there afterwards."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.db import open_database, upgrade

ADDED = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)


async def _rows(connection: AsyncConnection, query: str) -> set[tuple[object, ...]]:
    return {tuple(row) for row in (await connection.execute(sa.text(query))).all()}


async def test_rebuilding_the_cases_table_keeps_their_records(blank_database_url: str) -> None:
    """0003 rebuilds `cases` on SQLite; the sealed items and files of a case must stay."""
    database = open_database(blank_database_url)
    try:
        await upgrade(database, "0002")
        async with database.begin() as connection:
            await connection.execute(
                sa.text(
                    "INSERT INTO cases (id, reference, sender_key, channel, status, urgent, "
                    "created_at) VALUES (1, 'L-2026-0001', 'sender', 'console', 'submitted', "
                    "false, :at)"
                ).bindparams(sa.bindparam("at", ADDED, sa.DateTime(timezone=True)))
            )
            await connection.execute(
                sa.text(
                    "INSERT INTO case_items (id, case_id, position, kind, content, created_at) "
                    "VALUES (1, 1, 0, 'intake', :content, :at)"
                ).bindparams(
                    sa.bindparam("content", b"sealed", sa.LargeBinary),
                    sa.bindparam("at", ADDED, sa.DateTime(timezone=True)),
                )
            )
            await connection.execute(
                sa.text(
                    "INSERT INTO files (id, sender_key, case_id, content, created_at) "
                    "VALUES ('f1', 'sender', 1, :content, :at)"
                ).bindparams(
                    sa.bindparam("content", b"sealed", sa.LargeBinary),
                    sa.bindparam("at", ADDED, sa.DateTime(timezone=True)),
                )
            )
        await upgrade(database)
        async with database.connect() as connection:
            cases = await _rows(connection, "SELECT reference, status FROM cases")
            items = await _rows(connection, "SELECT case_id, kind FROM case_items")
            files = await _rows(connection, "SELECT id, case_id FROM files")
        assert cases == {("L-2026-0001", "waiting")}
        assert items == {(1, "intake")}
        assert files == {("f1", 1)}
    finally:
        await database.dispose()
