"""`lotse backup` and `lotse restore`: the database, taken while the service runs, put back empty.

The server secret is never part of a backup (storage/backup.py says why); after a
restore, the secret that belongs to the data must be in place, or Lotse refuses to
start (storage/secret_check.py). The restore says which it found.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import Config
from storage import pg_backup
from storage.backup import (
    BackupError,
    Kind,
    head_revision,
    kind_of,
    needs_upgrade,
    refuse_unless_empty,
    sqlite_backup,
    sqlite_restore,
    sqlite_revision,
)
from storage.db import open_database, upgrade
from storage.models import ServerCheck
from storage.server_secret import SecretError, ServerKeys, load_or_create_secret


def _kind(config: Config) -> Kind:
    sqlite = make_url(config.storage.url).get_backend_name() == "sqlite"
    return Kind.SQLITE if sqlite else Kind.POSTGRESQL


def _sqlite_file(config: Config) -> Path:
    return Path(make_url(config.storage.url).database or "")


def _where(config: Config) -> str:
    return make_url(config.storage.url).render_as_string(hide_password=True)


def _secret_place(config: Config) -> str:
    storage = config.storage
    if storage.secret_credential:
        return f"the server secret (systemd credential {storage.secret_credential!r})"
    return f"the server secret ({storage.secret_path} or ${storage.secret_env})"


async def take_backup(config: Config, out: Path) -> int:
    if _kind(config) is Kind.SQLITE:
        await asyncio.to_thread(sqlite_backup, _sqlite_file(config), out)
    else:
        database = open_database(config.storage.url)
        try:
            await pg_backup.dump(database, config.storage.url, out)
        finally:
            await database.dispose()
    size = await asyncio.to_thread(lambda: out.stat().st_size)
    print(
        f"backup written to {out} (mode 600, {size} bytes). It does not hold "
        f"{_secret_place(config)}: keep that apart from the backups, in a safe place; "
        "a restore needs both."
    )
    return 0


async def restore_backup(config: Config, backup: Path) -> int:
    kind = kind_of(backup)
    if kind is not _kind(config):
        raise BackupError(
            f"{backup} is a {kind.value} backup, but storage.url is a {_kind(config).value} "
            "database: restore it into a database of the same kind; nothing was restored"
        )
    if kind is Kind.SQLITE:
        revision = await asyncio.to_thread(sqlite_revision, backup)
        upgrade_after = needs_upgrade(revision)
        target = _sqlite_file(config)
        if await asyncio.to_thread(target.exists):
            await _refuse_unless_empty(config)
        await asyncio.to_thread(sqlite_restore, backup, target)
    else:
        database = open_database(config.storage.url)
        try:
            revision = await pg_backup.revision(database, backup)
            upgrade_after = needs_upgrade(revision)
            tables = await refuse_unless_empty(database, _where(config))
            await pg_backup.restore(database, config.storage.url, backup, tables)
        finally:
            await database.dispose()
    database = open_database(config.storage.url)
    try:
        print(f"restored {backup} (schema version {revision}) into {_where(config)}")
        if upgrade_after:
            await upgrade(database)
            print(f"upgraded the schema from version {revision} to {head_revision()}")
        return await _report_secret(config, database)
    finally:
        await database.dispose()


async def _refuse_unless_empty(config: Config) -> None:
    database = open_database(config.storage.url)
    try:
        await refuse_unless_empty(database, _where(config))
    finally:
        await database.dispose()


async def _report_secret(config: Config, database: AsyncEngine) -> int:
    """Whether the server secret in place is the one the restored data was written with."""
    async with database.connect() as connection:
        stored = await connection.scalar(
            select(ServerCheck.secret_check).where(ServerCheck.id == 1)
        )
    from_environment = config.secret_from_environment()
    source = (
        f"${config.storage.secret_env}" if from_environment else str(config.storage.secret_path)
    )
    problem = None if from_environment else config.storage.credential_problem()
    if problem is None and not from_environment and not config.storage.secret_path.exists():
        problem = f"there is no server secret at {config.storage.secret_path}"
    if problem is None:
        try:
            secret = load_or_create_secret(
                config.storage.secret_path, from_environment, may_create=False
            )
        except SecretError as error:
            problem = str(error)
        else:
            if stored is not None and ServerKeys.from_secret(secret).check_value != stored:
                problem = (
                    f"the server secret in {source} is not the one this backup was written with"
                )
    if problem is not None:
        print(
            f"lotse: the database is restored, but {problem}. Put the server secret kept with "
            "this backup in place (mode 600) before starting Lotse: it refuses to start with a "
            "missing or different one, and a new secret cannot open the data.",
            file=sys.stderr,
        )
        return 1
    print(f"the server secret in {source} belongs to this data: Lotse can start")
    return 0
