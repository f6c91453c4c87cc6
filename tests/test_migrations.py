"""Migrations on databases that hold data: what was there before is there afterwards."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.core.relay import staff_member
from storage.db import MIGRATIONS, open_database, upgrade
from storage.keyring import active_counsellors
from storage.repository import Store
from storage.server_secret import ServerKeys

ADDED = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)

# The tables as revision 0003 has them (only the columns these tests fill).
COUNSELLORS_0003 = sa.table(
    "counsellors",
    sa.column("id", sa.Integer),
    sa.column("name", sa.String),
    sa.column("display_name", sa.String),
    sa.column("matrix_id", sa.String),
    sa.column("telegram_id", sa.BigInteger),
    sa.column("public_key", sa.LargeBinary),
    sa.column("fingerprint", sa.String),
    sa.column("added_at", sa.DateTime(timezone=True)),
    sa.column("revoked_at", sa.DateTime(timezone=True)),
)
TEAM_KEYS = sa.table(
    "team_keys",
    sa.column("id", sa.Integer),
    sa.column("public_key", sa.LargeBinary),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
TEAM_KEY_WRAPS = sa.table(
    "team_key_wraps",
    sa.column("id", sa.Integer),
    sa.column("team_key_id", sa.Integer),
    sa.column("counsellor_id", sa.Integer),
    sa.column("wrapped", sa.LargeBinary),
)


async def _at_0003_with_counsellors(database: AsyncEngine) -> None:
    await upgrade(database, "0003")
    people = [
        (1, "Berger", "@berger:example.org", 123456789, None),
        (2, "Kaya", None, 987654321012, None),
        (3, "Alt", "@alt:example.org", 555, ADDED),  # revoked: their ids are not carried over
        (4, "Neu", "@alt:example.org", None, None),  # the revoked one's account, now theirs
        (5, "Ohne", None, None, None),
    ]
    async with database.begin() as connection:
        await connection.execute(
            sa.insert(COUNSELLORS_0003),
            [
                {
                    "id": number,
                    "name": name,
                    "display_name": f"{name} (shown)",
                    "matrix_id": matrix_id,
                    "telegram_id": telegram_id,
                    "public_key": bytes([number]) * 32,
                    "fingerprint": f"fp{number}",
                    "added_at": ADDED + dt.timedelta(minutes=number),
                    "revoked_at": revoked_at,
                }
                for number, name, matrix_id, telegram_id, revoked_at in people
            ],
        )
        await connection.execute(
            sa.insert(TEAM_KEYS), [{"id": 1, "public_key": b"team", "created_at": ADDED}]
        )
        await connection.execute(
            sa.insert(TEAM_KEY_WRAPS),
            [
                {"id": number, "team_key_id": 1, "counsellor_id": number, "wrapped": b"wrap"}
                for number in (1, 2, 4, 5)
            ],
        )


async def _rows(connection: AsyncConnection, query: str) -> set[tuple[object, ...]]:
    return {tuple(row) for row in (await connection.execute(sa.text(query))).all()}


async def _columns(connection: AsyncConnection, table: str) -> set[str]:
    def read(sync: Connection) -> set[str]:
        return {column["name"] for column in sa.inspect(sync).get_columns(table)}

    return await connection.run_sync(read)


async def test_upgrade_carries_matrix_and_telegram_ids_into_handles(
    blank_database_url: str,
) -> None:
    database = open_database(blank_database_url)
    try:
        await _at_0003_with_counsellors(database)
        await upgrade(database)
        async with database.connect() as connection:
            handles = await _rows(
                connection, "SELECT counsellor_id, channel, handle FROM counsellor_handles"
            )
            columns = await _columns(connection, "counsellors")
            wraps = await _rows(connection, "SELECT counsellor_id FROM team_key_wraps")
        assert handles == {
            (1, "matrix", "@berger:example.org"),
            (1, "telegram", "123456789"),
            (2, "telegram", "987654321012"),
            (4, "matrix", "@alt:example.org"),
        }
        assert "matrix_id" not in columns and "telegram_id" not in columns
        # SQLite rebuilds the table to drop columns: no row referring to it may go with it.
        assert wraps == {(1,), (2,), (4,), (5,)}

        store = Store(database, ServerKeys.from_secret(b"\x07" * 32))
        async with store.unit() as unit:
            members = [staff_member(row) for row in await active_counsellors(unit.session)]
        assert {member.name: dict(member.handles) for member in members} == {
            "Berger": {"matrix": "@berger:example.org", "telegram": "123456789"},
            "Kaya": {"telegram": "987654321012"},
            "Neu": {"matrix": "@alt:example.org"},
            "Ohne": {},
        }
    finally:
        await database.dispose()


async def test_downgrade_puts_the_ids_back_into_their_columns(blank_database_url: str) -> None:
    database = open_database(blank_database_url)
    try:
        await _at_0003_with_counsellors(database)
        await upgrade(database)

        def down(connection: Connection) -> None:
            config = AlembicConfig()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = connection
            command.downgrade(config, "0003")

        async with database.begin() as connection:
            await connection.run_sync(down)
        async with database.connect() as connection:
            rows = await _rows(connection, "SELECT name, matrix_id, telegram_id FROM counsellors")
            tables = await connection.run_sync(lambda sync: set(sa.inspect(sync).get_table_names()))
        assert rows == {
            ("Berger", "@berger:example.org", 123456789),
            ("Kaya", None, 987654321012),
            ("Alt", None, None),
            ("Neu", "@alt:example.org", None),
            ("Ohne", None, None),
        }
        assert "counsellor_handles" not in tables
    finally:
        await database.dispose()


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
