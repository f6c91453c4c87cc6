"""Putting the pieces together from a configuration: keys, database, questionnaire engine."""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from bot.config import Config, config_from_dict
from bot.core.hours import OpeningHours
from bot.core.settings import Settings
from flows.engine import Engine
from flows.offers import SHIPPED_OFFERS
from flows.questionnaire import SHIPPED_QUESTIONNAIRE
from flows.texts import SHIPPED_TEXTS
from storage.db import open_database, upgrade
from storage.repository import Clock, Store, utc_now
from storage.server_secret import ServerKeys, load_or_create_secret

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
    )


def load_engine(config: Config) -> Engine:
    flow = config.flow
    return Engine.from_files(
        flow.questionnaire or SHIPPED_QUESTIONNAIRE,
        flow.offers or SHIPPED_OFFERS,
        flow.texts or SHIPPED_TEXTS,
    )


def _private_folder(folder: Path) -> None:
    """The data folder holds the server secret: only its owner may look inside."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    mode = folder.stat().st_mode & 0o777
    if mode & 0o077:
        folder.chmod(mode & 0o700)
        logger.warning(
            "the data folder was readable by others (mode %o); it is now %o", mode, mode & 0o700
        )


@asynccontextmanager
async def open_app(config: Config, clock: Clock = utc_now) -> AsyncIterator[App]:
    """Everything a command needs; the schema is brought up to date on every start."""
    engine = load_engine(config)
    _private_folder(config.storage.data_dir)
    secret = load_or_create_secret(config.storage.secret_path, config.secret_from_environment())
    database = open_database(config.storage.url)
    try:
        await upgrade(database)
        yield App(config, engine, Store(database, ServerKeys.from_secret(secret), clock))
    finally:
        await database.dispose()
