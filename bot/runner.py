"""`lotse run`: the long-running service, built from the configuration."""

from __future__ import annotations

import contextlib
import logging

from bot.app import open_app, settings_from_config
from bot.config import Config, ConfigError
from bot.core.orchestrator import Core
from bot.core.pace import Pace
from bot.core.types import Adapter, StaffMember, StaffRoom
from bot.housekeeping import purge_daily
from bot.instance import only_instance
from bot.matrix_wiring import build_matrix
from bot.metrics import PrometheusMetrics
from bot.ops import serving_ops
from bot.service import Service
from bot.telegram_wiring import start_telegram
from flows.problems import Problem
from storage.keyring import current_team
from storage.lease import IDLE_TRANSACTION_SECONDS, Lease

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
    async with open_app(config, idle_transaction_seconds=IDLE_TRANSACTION_SECONDS) as app:
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
        postgres = app.store.database.dialect.name == "postgresql"
        with contextlib.nullcontext() if postgres else only_instance(config.storage.data_dir):
            async with contextlib.AsyncExitStack() as channels:
                adapters: list[Adapter] = []
                staff_room: StaffRoom = NoStaffRoom()
                if config.telegram.enabled:
                    telegram = await start_telegram(config, app)  # StartupError: exit 2
                    channels.push_async_callback(telegram.close)
                    adapters.append(telegram.channel)
                    staff_room = telegram.staff_room or staff_room
                if config.matrix.enabled:
                    matrix = build_matrix(config, app)
                    channels.push_async_callback(matrix.close)
                    await matrix.start()  # MatrixStartError: one line, exit 2
                    adapters.append(matrix)
                    if config.staff.channel == "matrix":
                        staff_room = matrix
                settings = settings_from_config(config)
                metrics = PrometheusMetrics(settings.escalate_after)
                core = Core(app.engine, app.store, staff_room, settings, metrics)
                core.pace = Pace()
                if not adapters:
                    logger.warning("no channel is enabled: only the daily retention job runs")
                service = Service(
                    core,
                    adapters,
                    jobs=[lambda: purge_daily(app.store, config.counselling)],
                    leadership=(
                        Lease(app.store, seconds=config.service.lease_seconds) if postgres else None
                    ),
                )
                # /healthz and /metrics answer on a standby too (lotse_leader 0)
                async with serving_ops(config.service.listen, service, metrics):
                    await service.run()
    return 0
