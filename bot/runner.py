"""`lotse run`: the long-running service, built from the configuration."""

from __future__ import annotations

import logging

from bot.app import open_app, settings_from_config
from bot.config import Config, ConfigError
from bot.core.orchestrator import Core
from bot.core.types import Adapter, StaffMember, StaffRoom
from bot.housekeeping import purge_daily
from bot.service import Service
from bot.telegram_wiring import start_telegram
from flows.problems import Problem
from storage.keyring import current_team

logger = logging.getLogger(__name__)


class NoStaffRoom:
    """The staff room when none is configured for `lotse run`: case details wait in the outbox."""

    name = "none"
    end_to_end_encrypted = False

    async def check(self) -> list[str]:
        return ["no staff room is running (staff.channel 'console' exists only in lotse demo)"]

    async def open_thread(self, reference: str, text: str, urgent: bool) -> str:
        raise LookupError("no staff room is running")

    async def post(self, thread: str | None, text: str) -> None:
        raise LookupError("no staff room is running")

    def is_author(self, member: StaffMember, author: str) -> bool:
        return False

    def mention(self, member: StaffMember) -> str:
        return member.display_name


async def run_service(config: Config) -> int:
    for name in ("matrix",):
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
        adapters: list[Adapter] = []
        staff_room: StaffRoom = NoStaffRoom()
        telegram = None
        if config.telegram.enabled:
            telegram = await start_telegram(config, app)
            adapters.append(telegram.channel)
            staff_room = telegram.staff_room or staff_room
        core = Core(app.engine, app.store, staff_room, settings_from_config(config))
        if not adapters:
            logger.warning("no channel is enabled: only the daily retention job runs")
        try:
            jobs = [lambda: purge_daily(app.store, config.counselling)]
            await Service(core, adapters, jobs=jobs).run()
        finally:
            if telegram is not None:
                await telegram.close()
    return 0
