"""`GET /healthz`: is this instance able to do its work right now?

Three parts are checked, each by name: the database answers, the staff room's own
check passes, and every running channel reached its platform within the last minute
(a channel that implements the optional `last_reachable()` of the adapter contract,
see `bot.core.types.Reachable`; one that does not is taken at its word). A standby
instance (another one holds the lease) polls no channel: its channels are not checked.
What a failing part says is an exception type or the staff room check's operator text:
no content.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import text

from bot.core.types import Adapter, StaffRoom
from storage.repository import Store

REACHABLE_WITHIN = 60.0  # seconds
CHECK_SECONDS = 5.0  # a check that takes longer fails


@dataclass(frozen=True)
class Verdict:
    failing: dict[str, str]  # part -> why
    passing: dict[str, str]  # part -> "ok" or a note

    @property
    def healthy(self) -> bool:
        return not self.failing

    def text(self) -> str:
        head = "ok" if self.healthy else "unhealthy: " + ", ".join(self.failing)
        lines = [head, *(f"{part}: {why}" for part, why in self.failing.items())]
        lines += [f"{part}: {note}" for part, note in self.passing.items()]
        return "\n".join(lines) + "\n"


class HealthCheck:
    def __init__(
        self,
        store: Store,
        staff_room: StaffRoom,
        channels: Sequence[Adapter],
        within: float = REACHABLE_WITHIN,
        active: Callable[[], bool] = lambda: True,
    ) -> None:
        self.active = active
        self.store = store
        self.staff_room = staff_room
        self.channels = channels
        self.within = within

    async def verdict(self) -> Verdict:
        results = {
            "database": await self._database(),
            "staff room": await self._staff_room(),
        }
        active = self.active()
        passing = {part: "ok" for part, why in results.items() if why is None}
        failing = {part: why for part, why in results.items() if why is not None}
        for channel in self.channels:
            part = f"channel {channel.name}"
            why = self._channel(channel) if active else None
            if why is None:
                passing[part] = "ok" if active else "not polled (standby)"
            else:
                failing[part] = why
        passing["role"] = "active" if active else "standby"
        return Verdict(failing, passing)

    async def _database(self) -> str | None:
        try:
            async with asyncio.timeout(CHECK_SECONDS), self.store.unit() as unit:
                await unit.session.execute(text("SELECT 1"))
        except TimeoutError:
            return f"no answer within {CHECK_SECONDS:.0f} s"
        except Exception as error:
            return f"unreachable ({type(error).__name__})"
        return None

    async def _staff_room(self) -> str | None:
        try:
            async with asyncio.timeout(CHECK_SECONDS):
                problems = await self.staff_room.check()
        except TimeoutError:
            return f"the check gave no answer within {CHECK_SECONDS:.0f} s"
        except Exception as error:  # check() should never raise; if it does, say what
            return f"the check failed ({type(error).__name__})"
        return "; ".join(problems) if problems else None

    def _channel(self, channel: Adapter) -> str | None:
        last_reachable = getattr(channel, "last_reachable", None)
        if not callable(last_reachable):
            return None
        last = last_reachable()
        if last is None:
            return "has not reached its platform yet"
        ago = time.monotonic() - float(last)
        if ago > self.within:
            return f"has not reached its platform for {ago:.0f} s"
        return None
