"""Waiting for an event, or at most some seconds."""

from __future__ import annotations

import asyncio
import contextlib


async def until_set(event: asyncio.Event, seconds: float) -> None:
    """Until `event` is set or `seconds` passed, whichever comes first.

    asyncio.timeout, not asyncio.wait_for: on Python 3.11 wait_for loses a cancellation that
    arrives in the moment the event is set, and a worker stopped then would run on for ever.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
