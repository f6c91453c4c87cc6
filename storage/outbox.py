"""The outbox: messages to the staff room and to officials, delivered after the change commits.

Written in the same transaction as the change that causes them (a claim, a relayed
message, a new case), so a crash or a platform outage loses nothing: whatever was
not delivered is tried again, in order, with growing pauses.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from storage.models import OutboxMessage
from storage.repository import Unit

OPEN_THREAD = "open_thread"  # a new case's post in the staff room, which opens its thread
STAFF = "staff"  # a post in a case's thread, or in the room at large
OFFICIAL = "official"  # a message to an official
MAX_PAUSE = dt.timedelta(minutes=15)


@dataclass(frozen=True)
class Pending:
    id: int
    kind: str
    reference: str | None
    content: dict[str, Any]
    attempts: int


def _context(kind: str) -> str:
    return f"outbox:{kind}"


async def put(unit: Unit, kind: str, reference: str | None, **content: Any) -> None:
    unit.wrote_outbox = True
    payload = json.dumps(content, ensure_ascii=False).encode()
    unit.session.add(
        OutboxMessage(
            kind=kind,
            reference=reference,
            content=unit.keys.encrypt(payload, _context(kind)),
            created_at=unit.now,
            attempts=0,
            next_attempt_at=unit.now,
        )
    )


def pending(unit: Unit, row: OutboxMessage) -> Pending:
    content = json.loads(unit.keys.decrypt(row.content, _context(row.kind)))
    return Pending(row.id, row.kind, row.reference, content, row.attempts)


async def delivered(unit: Unit, message_id: int) -> None:
    row = await unit.session.get(OutboxMessage, message_id)
    if row is not None:
        await unit.session.delete(row)


async def held_back(unit: Unit, message_id: int) -> None:
    """Due again at once, without counting as a failure (the staff room check failed)."""
    row = await unit.session.get(OutboxMessage, message_id)
    if row is not None:
        row.next_attempt_at = unit.now


async def failed(unit: Unit, message_id: int) -> None:
    row = await unit.session.get(OutboxMessage, message_id)
    if row is not None:
        row.attempts += 1
        pause = min(dt.timedelta(seconds=5 * 2**row.attempts), MAX_PAUSE)
        row.next_attempt_at = unit.now + pause


async def waiting_count(unit: Unit) -> int:
    return int(await unit.session.scalar(select(func.count(OutboxMessage.id))) or 0)
