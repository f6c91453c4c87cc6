"""Sending what the outbox holds: staff-room posts and messages to officials.

Each message is taken on a short lease, sent outside any transaction, then
deleted; a failed one waits with a growing pause. Messages for the same case
thread (or the same official) go out in the order they were written: a later
one never overtakes an earlier one that is still waiting.

Before anything about a case is posted, the staff room is checked (Matrix: the
room is encrypted and only counsellors are in it). When the check fails, nothing
is posted and the operator log says why; the messages wait until it passes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Mapping

from sqlalchemy import select

from bot.core.types import Attachment, Channel, Reply, StaffRoom
from bot.logs import log_failure
from storage import outbox
from storage.models import OutboxMessage
from storage.repository import Store, aware

logger = logging.getLogger(__name__)
LEASE = dt.timedelta(minutes=2)


class _Gone(Exception):
    """The message's case no longer exists."""


class Delivery:
    def __init__(
        self, store: Store, staff_room: StaffRoom, channels: Mapping[str, Channel]
    ) -> None:
        self.store = store
        self.staff_room = staff_room
        self.channels = channels
        self._lock = asyncio.Lock()

    async def flush(self) -> int:
        """Send everything that is due; returns how many were delivered.

        Each pass takes the first waiting message of every thread and official; passes
        repeat while they deliver something, so a claim's several posts all go out now.
        """
        async with self._lock:
            room_problems: list[str] | None = None
            delivered = 0
            while batch := await self._take_due():
                before = delivered
                for message in batch:
                    if message.kind in (outbox.OPEN_THREAD, outbox.STAFF):
                        if room_problems is None:
                            room_problems = await self._check_room()
                        if room_problems:  # not the message's fault: again at the next tick
                            await self._held_back(message.id)
                            continue
                    if await self._send(message):
                        delivered += 1
                if delivered == before:  # everything left is failing: try again later
                    break
            return delivered

    async def _check_room(self) -> list[str]:
        problems = await self.staff_room.check()
        if problems:
            logger.error(
                "staff room check failed, case details are held back: %s", "; ".join(problems)
            )
        return problems

    async def _take_due(self) -> list[outbox.Pending]:
        """Due messages that no earlier waiting message of the same thread or official blocks."""
        async with self.store.unit() as unit:
            rows = await unit.session.scalars(
                select(OutboxMessage).order_by(OutboxMessage.id).with_for_update(skip_locked=True)
            )
            blocked: set[tuple[str, str]] = set()
            taken: list[outbox.Pending] = []
            for row in rows:
                stream = (
                    "official" if row.kind == outbox.OFFICIAL else "staff",
                    row.reference or "",
                )
                if stream in blocked:
                    continue
                blocked.add(stream)
                if aware(row.next_attempt_at) <= unit.now:
                    taken.append(outbox.pending(unit, row))
                    row.next_attempt_at = unit.now + LEASE  # another process leaves it alone
            return taken

    async def _send(self, message: outbox.Pending) -> bool:
        try:
            thread = await self._deliver(message)
        except _Gone:  # the case was deleted meanwhile: there is nothing left to post to
            thread = None
        except Exception as error:  # a platform may fail in any way: try again later
            log_failure(logger, f"delivering a {message.kind} message", error)
            await self._failed(message.id)
            return False
        async with self.store.unit() as unit:
            if message.kind == outbox.OPEN_THREAD and message.reference and thread:
                case = await unit.case(message.reference, lock=True)
                if case is not None:
                    case.thread = thread
            await outbox.delivered(unit, message.id)
        return True

    async def _held_back(self, message_id: int) -> None:
        async with self.store.unit() as unit:
            await outbox.held_back(unit, message_id)

    async def _failed(self, message_id: int) -> None:
        async with self.store.unit() as unit:
            await outbox.failed(unit, message_id)

    async def _deliver(self, message: outbox.Pending) -> str | None:
        content = message.content
        if message.kind == outbox.OPEN_THREAD:
            return await self.staff_room.open_thread(
                message.reference or "", content["text"], bool(content.get("urgent"))
            )
        if message.kind == outbox.STAFF:
            await self.staff_room.post(await self._thread_of(message.reference), content["text"])
            return None
        async with self.store.unit() as unit:
            loaded = await unit.load(content["sender"])
        if loaded is None:  # the official deleted everything meanwhile: nothing to deliver to
            return None
        channel = self.channels.get(loaded.channel)
        if channel is None:
            raise LookupError(f"the {loaded.channel} channel is not running")
        files = tuple(
            Attachment(item["name"], item["media_type"], bytes.fromhex(item["data"]))
            for item in ([content["file"]] if "file" in content else [])
        )
        await channel.send(loaded.address, Reply(content["text"], files=files))
        return None

    async def _thread_of(self, reference: str | None) -> str | None:
        if reference is None:
            return None
        async with self.store.unit() as unit:
            case = await unit.case(reference)
        if case is None:
            raise _Gone
        if case.thread is None:
            raise LookupError("the case's thread is not open yet")
        return case.thread
