"""Backups that can be restored: what a backup file is, its schema version, SQLite's online backup.

A backup holds the database and nothing else. The server secret is never in it: it
lives in a file beside the data (or an environment variable, or a systemd credential),
and the database keeps only a check value, an HMAC that reveals nothing of the secret
(storage/secret_check.py). So a backup alone opens no intake in progress and links no
pseudonym to a person; kept with the secret apart, it restores everything.

SQLite backups are plain SQLite files (the online backup API copies a consistent
snapshot while the service keeps writing); PostgreSQL backups are pg_dump archives in
the custom format (storage/pg_backup.py). Either is restored only into an empty
database, and only by a Lotse that knows the backup's schema version.
"""

from __future__ import annotations

import os
import sqlite3
from enum import Enum
from pathlib import Path

from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, inspect, literal, select, table
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.db import MIGRATIONS
from storage.models import Base

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_DUMP_MAGIC = b"PGDMP"
SQLITE_BUSY_MILLISECONDS = 30_000


class BackupError(Exception):
    """A backup or restore cannot go ahead; the message says why and what to do."""


class Kind(Enum):
    SQLITE = "SQLite"
    POSTGRESQL = "PostgreSQL"


def create_private(out: Path) -> int:
    """A new file only its owner may read; an existing file is never overwritten."""
    try:
        return os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as error:
        raise BackupError(
            f"{out} exists already; a backup never overwrites a file: name a new one"
        ) from error
    except OSError as error:
        raise BackupError(f"{out} cannot be created: {error.strerror}") from error


def kind_of(backup: Path) -> Kind:
    """What a backup file holds, from its first bytes."""
    try:
        with backup.open("rb") as handle:
            start = handle.read(len(SQLITE_MAGIC))
    except FileNotFoundError as error:
        raise BackupError(f"{backup} does not exist") from error
    except OSError as error:
        raise BackupError(f"{backup} cannot be read: {error.strerror}") from error
    if start.startswith(SQLITE_MAGIC):
        return Kind.SQLITE
    if start.startswith(PG_DUMP_MAGIC):
        return Kind.POSTGRESQL
    raise BackupError(
        f"{backup} is not a Lotse backup (neither an SQLite database nor a pg_dump archive); "
        "nothing was restored"
    )


# -- schema versions -------------------------------------------------------------------------


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def schema_relation(revision: str) -> str:
    """ "current", "older" (this code can upgrade it) or "unknown" (a newer Lotse made it)."""
    if revision == head_revision():
        return "current"
    try:
        known = ScriptDirectory(str(MIGRATIONS)).get_revision(revision)
    except CommandError:
        known = None
    return "older" if known is not None else "unknown"


def needs_upgrade(revision: str) -> bool:
    """True if the backup's schema is older than this code's, False if it is the same.

    A version this code does not know is newer (or from another branch of Lotse): refused,
    because an older Lotse cannot know what the newer schema means.
    """
    relation = schema_relation(revision)
    if relation == "unknown":
        raise BackupError(
            f"the backup has schema version {revision}, which this Lotse (schema version "
            f"{head_revision()}) does not know: it was made by a newer Lotse. Restore it with "
            "that version or a later one; nothing was restored"
        )
    return relation == "older"


# -- the target must be empty ----------------------------------------------------------------


def _tables_with_rows(connection: Connection) -> list[str]:
    found = []
    for name in inspect(connection).get_table_names():
        if name == "alembic_version":  # a migrated database with nothing in it is empty
            continue
        if connection.execute(select(literal(1)).select_from(table(name)).limit(1)).first():
            found.append(name)
    return found


async def refuse_unless_empty(database: AsyncEngine, where: str) -> list[str]:
    """Refuse a database that holds anything; returns its (empty) tables."""
    async with database.connect() as connection:
        filled = await connection.run_sync(_tables_with_rows)
        tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    foreign = [name for name in tables if name not in Base.metadata.tables]
    if foreign and foreign != ["alembic_version"]:
        raise BackupError(
            f"the database {where} holds tables that are not Lotse's ({', '.join(foreign)}): "
            "restore into a new, empty database of its own; nothing was restored"
        )
    if filled:
        raise BackupError(
            f"the database {where} is not empty (rows in {', '.join(filled)}): a restore never "
            "mixes or replaces data. Restore into a new, empty database "
            "(point storage.url or --data-dir at it); nothing was restored"
        )
    return tables


# -- SQLite ----------------------------------------------------------------------------------


def sqlite_backup(database: Path, out: Path) -> None:
    """Copy a consistent snapshot of a live database into the new file `out` (mode 0600).

    The backup API copies every page in one step under one read transaction; in WAL
    mode writers go on meanwhile. The copy is switched out of WAL mode so it is one
    self-contained file, and checked before it counts as a backup.
    """
    if not database.is_file():
        raise BackupError(f"there is no database at {database}: check storage.url or --data-dir")
    os.close(create_private(out))
    try:
        source = sqlite3.connect(database, timeout=SQLITE_BUSY_MILLISECONDS / 1000)
        try:
            target = sqlite3.connect(out)
            try:
                source.backup(target)
                target.execute("PRAGMA journal_mode=DELETE")
                if target.execute("PRAGMA quick_check").fetchall() != [("ok",)]:
                    raise BackupError(f"the copy in {out} did not check out; nothing was kept")
            finally:
                target.close()
        finally:
            source.close()
    except BaseException:
        out.unlink(missing_ok=True)
        raise


def _open_read_only(backup: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{backup.resolve().as_uri()}?mode=ro", uri=True)


def sqlite_revision(backup: Path) -> str:
    """The schema version of an SQLite backup, after checking every page of it."""
    damaged = (
        f"{backup} is damaged or incomplete (cut off while copying?); use another backup. "
        "Nothing was restored"
    )
    try:
        connection = _open_read_only(backup)
        try:
            if connection.execute("PRAGMA integrity_check").fetchall() != [("ok",)]:
                raise BackupError(damaged)
            row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        finally:
            connection.close()
    except sqlite3.OperationalError as error:
        if "no such table" in str(error):
            raise BackupError(f"{backup} is an SQLite file but not a Lotse backup") from error
        raise BackupError(damaged) from error
    except sqlite3.DatabaseError as error:
        raise BackupError(damaged) from error
    if row is None:
        raise BackupError(f"{backup} has no schema version; it is not a Lotse backup")
    return str(row[0])


def sqlite_restore(backup: Path, database: Path) -> None:
    """Copy a checked backup into the (empty) database file, created 0600 if missing."""
    database.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not database.exists():
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT, 0o600))
    source = _open_read_only(backup)
    try:
        target = sqlite3.connect(database, timeout=SQLITE_BUSY_MILLISECONDS / 1000)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()
