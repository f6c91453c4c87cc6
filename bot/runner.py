"""`lotse run`: the long-running service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from bot.app import open_app
from bot.config import Config, ConfigError
from bot.housekeeping import purge_daily
from flows.problems import Problem
from storage.keyring import current_team

logger = logging.getLogger(__name__)


async def run_service(config: Config) -> int:
    for name in ("telegram", "matrix"):
        if getattr(config, name).enabled:
            raise ConfigError(
                "configuration",
                [Problem(f"{name}.enabled", f"the {name} channel is not part of this version yet")],
            )
    async with open_app(config) as app:
        async with app.store.unit() as unit:
            if await current_team(unit.session) is None:
                raise ConfigError(
                    "configuration",
                    [
                        Problem(
                            "counsellors",
                            "no counsellor key is set up, so no case could be sealed; run: "
                            "lotse counsellor add NAME --public-key FILE --first",
                        )
                    ],
                )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        logger.warning("no channel is enabled: only the daily retention job runs")
        housekeeping = asyncio.create_task(purge_daily(app.store, config.counselling))
        await stop.wait()
        housekeeping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await housekeeping
    return 0
