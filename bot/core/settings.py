"""What the core needs to know from the configuration, in the shape it uses.

The core does not read the configuration itself: `bot.app.settings_from_config` builds this.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

from bot.core.hours import OpeningHours


@dataclass(frozen=True)
class Settings:
    hours: OpeningHours
    timezone: zoneinfo.ZoneInfo
    escalate_after: dt.timedelta
    reopen_within: dt.timedelta
    staff_language: str = "de"
    unencrypted_detail: str = "summary"  # minimal | summary | full
    max_file_bytes: int = 20 * 1024 * 1024  # per attachment, officials' and counsellors' alike

    @classmethod
    def defaults(cls, hours: str = "Mo-Fr 09:00-16:00") -> Settings:
        """The configuration's defaults: for tests and tools that have no configuration file."""
        return cls(
            hours=OpeningHours.parse(hours),
            timezone=zoneinfo.ZoneInfo("Europe/Berlin"),
            escalate_after=dt.timedelta(minutes=5),
            reopen_within=dt.timedelta(days=30),
        )
