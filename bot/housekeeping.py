"""The daily retention job that `lotse run` keeps going."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable

from bot.config import CounsellingConfig
from bot.logs import log_failure
from storage import outbox
from storage.repository import PurgeReport, Store

logger = logging.getLogger(__name__)
DAY = 24 * 60 * 60


async def purge_once(store: Store, counselling: CounsellingConfig) -> PurgeReport:
    async with store.unit() as unit:
        report = await unit.purge(
            dt.timedelta(days=counselling.retention_days),
            dt.timedelta(hours=counselling.abandoned_intake_hours),
        )
        await outbox.purge_dead_letters(unit)
    await store.compact()
    logger.info(
        "retention: %d case(s), %d intake(s), %d file(s), %d delivery record(s) deleted",
        report.cases,
        report.intakes,
        report.files,
        report.events,
    )
    return report


async def purge_daily(
    store: Store,
    counselling: CounsellingConfig,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Purge now, then once a day; a failed run is logged and tried again the next day."""
    while True:
        try:
            await purge_once(store, counselling)
        except Exception as error:  # the job must outlive one bad night
            log_failure(logger, "the retention job", error)
        await sleep(DAY)
