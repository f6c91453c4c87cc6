"""A step waits out a database that cannot be reached instead of dropping its message.

The channels confirm a message to the platform once the core has handled it (Telegram's
offset, Matrix's sync token). Had the core answered an unreachable database with the
usual apology, the message would be confirmed although nobody stored it – lost, also
for the standby that takes over when this instance loses its lease because of that very
outage. So the step is retried while the database cannot be reached; while this
instance may not act (its lease ran out, see storage/lease.py) it does not even retry,
and its channel stops receiving and is cancelled before it confirms anything: the
message stays with the platform for the instance that holds the lease. Only an outage
longer than `GIVE_UP_SECONDS` on an instance that still may act ends in the apology.

A database that answers but refuses the work – locked by another process or session for
longer than it waits (`storage.db.LOCK_WAIT_SECONDS`, SQLite and PostgreSQL alike), a
full disk – is not waited for here: nothing of the message was stored, so the apology's
"please send it again" is true at once, and the next message is taken as soon as the fault
is gone. Waiting two minutes instead would hold up every official behind this one, for a
fault that may last hours.
This is the one place that decides, for the hot path and the units alike.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bot.logs import log_failure
from storage.db import unreachable

logger = logging.getLogger(__name__)
T = TypeVar("T")
RETRY_SECONDS = 1.0
GIVE_UP_SECONDS = 120.0  # longer than any lease (at most 60 s), so a leader loses it first


async def until_stored(work: Callable[[], Awaitable[T]], may_act: Callable[[], bool]) -> T:
    began = time.monotonic()
    said = False
    while True:
        try:
            return await work()
        except Exception as error:
            if not unreachable(error) or (may_act() and time.monotonic() - began > GIVE_UP_SECONDS):
                raise
            if not said:
                log_failure(logger, "the database cannot be reached; a message waits", error)
                said = True
        await asyncio.sleep(RETRY_SECONDS)
        while not may_act():  # noqa: ASYNC110 (a clock decides, nothing that could be awaited)
            await asyncio.sleep(RETRY_SECONDS)
