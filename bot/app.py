"""Putting the pieces together from a configuration: keys, database, questionnaire engine."""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from bot.config import Config, config_from_dict
from bot.core.hours import OpeningHours
from bot.core.settings import Settings
from flows.engine import Engine
from flows.lanes import Privacy
from flows.offers import SHIPPED_OFFERS
from flows.questionnaire import SHIPPED_QUESTIONNAIRE
from flows.safety import SHIPPED_SAFETY
from flows.texts import SHIPPED_TEXTS
from storage import secret_check
from storage.db import DatabaseError, open_database, upgrade
from storage.repository import Clock, Store, utc_now
from storage.server_secret import SecretError, ServerKeys, load_or_create_secret

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class App:
    config: Config
    engine: Engine
    store: Store


def demo_config(data_dir: Path) -> Config:
    data_dir = data_dir.expanduser().absolute()
    return config_from_dict(
        {
            "storage": {
                "url": f"sqlite+aiosqlite:///{data_dir / 'lotse.db'}",
                "data_dir": str(data_dir),
            }
        },
        data_dir,
        "demo",
    )


def settings_from_config(config: Config) -> Settings:
    """What the core needs to know from the configuration."""
    counselling = config.counselling
    return Settings(
        hours=OpeningHours.parse(counselling.hours),
        timezone=zoneinfo.ZoneInfo(counselling.timezone),
        escalate_after=dt.timedelta(minutes=counselling.escalate_urgent_after_minutes),
        reopen_within=dt.timedelta(days=counselling.reopen_days),
        staff_language=config.staff.language,
        unencrypted_detail=config.staff.unencrypted_detail,
        max_file_bytes=config.storage.max_file_mb * 1024 * 1024,
    )


def load_engine(config: Config) -> Engine:
    flow = config.flow
    return Engine.from_files(
        flow.questionnaire or SHIPPED_QUESTIONNAIRE,
        flow.offers or SHIPPED_OFFERS,
        flow.texts or SHIPPED_TEXTS,
        flow.safety or SHIPPED_SAFETY,
        Privacy(config.counselling.retention_days, config.counselling.abandoned_intake_hours),
    )


def _private_folder(folder: Path) -> None:
    """The data folder holds the server secret: only its owner may look inside."""
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except FileExistsError as error:
        raise DatabaseError(
            f"the data folder {folder} is a file, not a folder; name a folder "
            "(--data-dir or storage.data_dir)"
        ) from error
    except OSError as error:
        raise DatabaseError(
            f"the data folder {folder} cannot be made: {error.strerror}; name a folder you "
            "may write to (--data-dir or storage.data_dir)"
        ) from error
    mode = folder.stat().st_mode & 0o777
    if mode & 0o077:
        folder.chmod(mode & 0o700)
        logger.warning(
            "the data folder was readable by others (mode %o); it is now %o", mode, mode & 0o700
        )


def _private_database(url: str) -> None:
    """An SQLite database (and its -wal, -shm) readable by others is made private."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return
    database = Path(parsed.database)
    for path in (
        database,
        database.with_name(database.name + "-wal"),
        database.with_name(database.name + "-shm"),
    ):
        if not path.is_file():
            continue
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            path.chmod(0o600)
            logger.warning("%s was readable by others (mode %o); it is now 600", path.name, mode)


def _is_file(path: Path) -> bool:
    return path.is_file()


async def _refuse_missing_database(config: Config) -> None:
    """Read commands on a mistyped --data-dir or storage.url must not make a new, empty store."""
    url = make_url(config.storage.url)
    if url.get_backend_name() == "sqlite":
        where = url.database or ""
        if _is_file(Path(where)):
            return
    else:
        where = url.render_as_string(hide_password=True)
        database = open_database(config.storage.url)
        try:
            async with database.connect() as connection:
                if await connection.run_sync(
                    lambda sync: inspect(sync).has_table("alembic_version")
                ):
                    return
        finally:
            await database.dispose()
    raise DatabaseError(
        f"there is no Lotse database at {where} (a mistyped --data-dir or storage.url?); "
        "a new one is made by lotse db upgrade, lotse counsellor add … --first, or lotse demo"
    )


@asynccontextmanager
async def open_app(
    config: Config,
    clock: Clock = utc_now,
    *,
    may_create: bool = True,
    idle_transaction_seconds: float | None = None,
) -> AsyncIterator[App]:
    """Everything a command needs; the schema is brought up to date on every start.

    `idle_transaction_seconds`: see storage.db.open_database (for `lotse run` on PostgreSQL).

    A new server secret is made only for a database that holds nothing yet; otherwise
    the secret must be the one the database was written with (storage/secret_check.py).
    """
    engine = load_engine(config)
    if not may_create:
        await _refuse_missing_database(config)
    _private_folder(config.storage.data_dir)
    _private_database(config.storage.url)
    database = open_database(config.storage.url, idle_transaction_seconds)
    try:
        await upgrade(database)
        from_environment = config.secret_from_environment()
        unreadable = None if from_environment else config.storage.credential_problem()
        if unreadable:
            raise SecretError(unreadable)
        secret = load_or_create_secret(
            config.storage.secret_path,
            from_environment,
            # a systemd credential is only ever read: it is made by the operator
            may_create=not config.storage.secret_credential
            and not await secret_check.holds_data(database),
        )
        store = Store(
            database, ServerKeys.from_secret(secret), clock, anchor=config.keys.anchor or None
        )
        source = (
            f"the server secret in ${config.storage.secret_env}"
            if from_environment
            else f"the server secret {config.storage.secret_path}"
        )
        await secret_check.confirm(store, source)
        try:
            yield App(config, engine, store)
        finally:
            store.close()
    finally:
        await database.dispose()
