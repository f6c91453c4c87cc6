"""Opening the database: SQLite (WAL, secure_delete) or PostgreSQL, and applying migrations."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from storage.sqlite_driver import one_call_dbapi

MIGRATIONS = Path(__file__).with_name("migrations")
LOCK_WAIT_SECONDS = 30  # for a lock another process or session holds, then the work fails
PING_AFTER_REST_SECONDS = 1.0
_RESTING_SINCE = "lotse_resting_since"


class DatabaseError(Exception):
    """The database cannot be opened or upgraded; the message names what to fix."""


def unreachable(error: BaseException) -> bool:
    """Whether `error` says the database could not be reached or the connection was lost
    (rather than that the database refused the work)."""
    if isinstance(error, DBAPIError):
        return (
            error.connection_invalidated
            or isinstance(error, InterfaceError)
            or isinstance(error.orig, OSError)
        )
    return isinstance(error, OSError | TimeoutError)


def open_database(url: str, idle_transaction_seconds: float | None = None) -> AsyncEngine:
    """The connection pool for `url` (SQLAlchemy calls it an engine).

    With `idle_transaction_seconds`, PostgreSQL ends a session whose transaction waits that
    long for its client: the locks of a paused or cut-off process are released then, so the
    instance that takes over from it is not blocked by them (see storage/lease.py).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _open_sqlite(url, parsed.database)
    if parsed.get_backend_name() == "postgresql":
        if parsed.get_driver_name() != "asyncpg":
            raise DatabaseError(
                f"use the asyncpg driver: postgresql+asyncpg://… (got {parsed.drivername})"
            )
        # A step waits for a row another session holds as long as SQLite waits for its lock,
        # then the official is asked to send again (bot/core/outage.py), never for ever.
        settings = {"lock_timeout": str(LOCK_WAIT_SECONDS * 1000)}
        if idle_transaction_seconds is not None:
            milliseconds = str(round(idle_transaction_seconds * 1000))
            settings["idle_in_transaction_session_timeout"] = milliseconds
        database = create_async_engine(url, connect_args={"server_settings": settings})
        _ping_after_rest(database.sync_engine)
        return database
    raise DatabaseError(
        f"storage.url: unsupported database '{parsed.drivername}'; "
        "use sqlite+aiosqlite:///path/lotse.db or postgresql+asyncpg://user@host/db"
    )


def _ping_after_rest(engine: Engine) -> None:
    """`pool_pre_ping`, for a connection that rested at least `PING_AFTER_REST_SECONDS`.

    A server restarted or a link cut while a connection sat in the pool is found before the
    work starts, and a fresh connection is taken instead. asyncpg's ping is three round trips
    (BEGIN, a statement, ROLLBACK), as many as the rest of a step's reading: under a burst a
    connection comes back within milliseconds and is not pinged. One lost in that moment
    fails its statement; the pool lets it go and the step is retried (bot/core/outage.py)."""

    def checked_in(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_RESTING_SINCE] = time.monotonic()

    def checked_out(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        rested = record.info.get(_RESTING_SINCE)  # none yet: connected just now
        if rested is None or time.monotonic() - rested < PING_AFTER_REST_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:  # the pool takes a fresh connection on this error
            raise DisconnectionError("the pooled connection no longer answers") from error

    event.listen(engine, "checkin", checked_in)
    event.listen(engine, "checkout", checked_out)


def _open_sqlite(url: str, file: str | None) -> AsyncEngine:
    if not file or file == ":memory:":
        raise DatabaseError(
            "storage.url: SQLite needs a file path, e.g. sqlite+aiosqlite:///lotse-data/lotse.db"
        )
    path = Path(file)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():  # SQLite gives its -wal and -shm files the database file's mode
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    database = create_async_engine(
        url,
        module=one_call_dbapi(),
        connect_args={"timeout": LOCK_WAIT_SECONDS},
    )

    take_sqlite_in_hand(database.sync_engine)
    return database


def take_sqlite_in_hand(engine: Engine) -> None:
    """Every connection of `engine` gets the pragmas Lotse relies on and BEGIN IMMEDIATE."""
    event.listen(engine, "connect", _on_connect)
    event.listen(engine, "begin", _on_begin)


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take transactions into our own hands (see _on_begin); set the pragmas Lotse relies on.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (
        "journal_mode=WAL",
        "synchronous=FULL",
        "secure_delete=ON",  # deleted rows are overwritten, not left in free pages
        "foreign_keys=ON",
        f"busy_timeout={LOCK_WAIT_SECONDS * 1000}",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _on_begin(connection: Connection) -> None:
    # IMMEDIATE takes the write lock up front: two writers queue on busy_timeout
    # instead of one failing when it upgrades a read lock.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _alembic_config(connection: Connection) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


async def upgrade(database: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to the newest migration (also run on every start), or to `revision`.

    SQLite changes a table by copying it and dropping the old one; with foreign keys on,
    that DROP would also delete every row referring to the table (ON DELETE CASCADE: the
    team key wraps of the counsellors, the items of the cases). So, as SQLite's manual
    advises, foreign keys are off while migrating and checked before the commit.
    """

    def run(connection: Connection) -> None:
        command.upgrade(_alembic_config(connection), revision)

    async with database.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            await _sqlite_outside_transaction(connection, "PRAGMA foreign_keys=OFF")
        try:
            async with connection.begin():
                await connection.run_sync(run)
                if sqlite:
                    dangling = (await connection.exec_driver_sql("PRAGMA foreign_key_check")).all()
                    if dangling:
                        raise DatabaseError(
                            f"the migration would leave {len(dangling)} row(s) referring to rows "
                            "that do not exist; nothing was changed"
                        )
        finally:
            if sqlite:
                await _sqlite_outside_transaction(connection, "PRAGMA foreign_keys=ON")


async def _sqlite_outside_transaction(connection: AsyncConnection, statement: str) -> None:
    """Run a pragma that SQLite ignores inside a transaction (such as foreign_keys)."""
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    await driver.execute(statement)


async def schema_is_current(database: AsyncEngine) -> bool:
    def check(connection: Connection) -> bool:
        current = MigrationContext.configure(connection).get_current_heads()
        heads = ScriptDirectory.from_config(_alembic_config(connection)).get_heads()
        return set(current) == set(heads)

    async with database.connect() as connection:
        return await connection.run_sync(check)
