"""The outbox: every message to an official or the staff room, sent after the change commits.

Written in the same transaction as the change that causes it (an answer, a claim, a
relayed message, a new case), so a crash or a platform outage loses nothing. Each
message names the channel that sends it and its stream: messages of one stream (one
official, one case thread) go out in the order they were written, and a message of
an urgent case goes before others. A message is taken on a lease, sent outside any
transaction, then deleted; a temporary failure waits with a growing pause; a message
that can never be delivered becomes a dead letter: its content is dropped, a row
without content stays until the purge, and its stream goes on.

Everything here is encrypted with the server key: the running server must read a
message to send it. This is the one place where words of a submitted case (the
official's, quoted in a staff post; a counsellor's, relayed) are readable with the
server secret, from the write until the delivery deletes the row; README.md says so.
A counsellor's file travels once, in `transit_files`, referenced
by the message and deleted with it.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import delete, func, insert, select, update

from flows.messages import Reply, reply_from_data, reply_to_data
from storage.models import OUTBOX, Case, OutboxMessage, TransitFile
from storage.repository import Unit, aware
from storage.server_secret import ServerKeys

OPEN_THREAD = "open_thread"  # a new case's post in the staff room, which opens its thread
STAFF = "staff"  # a post in a case's thread, or in the room at large
OFFICIAL = "official"  # a message to an official
STAFF_CHANNEL = "staff"  # the channel of staff-room messages, wherever the room lives
MAX_PAUSE = dt.timedelta(minutes=15)
LEASE = dt.timedelta(minutes=2)
TAKE_LIMIT = 500  # rows looked at per pass
DEAD_LETTER_MEMORY = dt.timedelta(days=7)


@dataclass(frozen=True)
class Queued:
    """One message taken for delivery."""

    id: int
    kind: str
    channel: str
    stream: str
    reference: str | None
    content: dict[str, Any]
    attempts: int
    file_id: str | None
    written_at: dt.datetime | None = None  # when the change that caused it committed

    @property
    def reply(self) -> Reply:
        return reply_from_data(self.content["reply"])

    @property
    def address(self) -> str:
        return str(self.content["address"])


def official_stream(sender_key: str) -> str:
    return f"official:{sender_key}"


def staff_stream(reference: str | None) -> str:
    return f"staff:{reference or ''}"


def _context(kind: str) -> str:
    return f"outbox:{kind}"


def row_values(
    keys: ServerKeys,
    now: dt.datetime,
    kind: str,
    channel: str,
    stream: str,
    *,
    reference: str | None,
    content: dict[str, Any],
    urgent: bool = False,
    file_id: str | None = None,
) -> dict[str, Any]:
    """An outbox row's columns, its content encrypted (written here and on the hot path)."""
    payload = json.dumps(content, ensure_ascii=False).encode()
    return {
        "kind": kind,
        "channel": channel,
        "stream": stream,
        "priority": 1 if urgent else 0,
        "reference": reference,
        "content": keys.encrypt(payload, _context(kind)),
        "file_id": file_id,
        "created_at": now,
        "attempts": 0,
        "next_attempt_at": now,
    }


def official_values(
    keys: ServerKeys,
    now: dt.datetime,
    *,
    sender_key: str,
    channel: str,
    address: str,
    reply: Reply,
) -> dict[str, Any]:
    """The row of one plain reply to an official (no case, no file)."""
    content = {"address": address, "reply": reply_to_data(reply)}
    stream = official_stream(sender_key)
    return row_values(keys, now, OFFICIAL, channel, stream, reference=None, content=content)


_INSERT = insert(OUTBOX)  # a Core statement: ids, the order, are given as rows are written


async def _add(
    unit: Unit,
    kind: str,
    channel: str,
    stream: str,
    *,
    reference: str | None,
    content: dict[str, Any],
    urgent: bool = False,
    file_id: str | None = None,
) -> None:
    unit.outbox_channels.add(channel)
    values = row_values(
        unit.keys,
        unit.now,
        kind,
        channel,
        stream,
        reference=reference,
        content=content,
        urgent=urgent,
        file_id=file_id,
    )
    await unit.session.execute(_INSERT, values)


async def to_official(
    unit: Unit,
    *,
    sender_key: str,
    channel: str,
    address: str,
    reply: Reply,
    reference: str | None = None,
    urgent: bool = False,
    file: tuple[str, str, bytes] | None = None,
) -> None:
    """A reply or a relayed message for one official; `file` is (name, media type, bytes)."""
    content: dict[str, Any] = {"address": address, "reply": reply_to_data(reply)}
    file_id = None
    if file is not None:
        name, media_type, data = file
        file_id = secrets.token_hex(16)
        unit.session.add(
            TransitFile(
                id=file_id,
                content=unit.keys.encrypt(data, f"transit:{file_id}"),
                created_at=unit.now,
            )
        )
        await unit.session.flush()  # the file before the message that names it
        content["file"] = {"name": name, "media_type": media_type}
    await _add(
        unit,
        OFFICIAL,
        channel,
        official_stream(sender_key),
        reference=reference,
        content=content,
        urgent=urgent,
        file_id=file_id,
    )


async def replies_to_official(
    unit: Unit, *, sender_key: str, channel: str, address: str, replies: Sequence[Reply]
) -> None:
    """Plain replies to one official, in order, written as one statement (a submission's
    confirmation comes in several parts)."""
    if not replies:
        return
    unit.outbox_channels.add(channel)
    rows = [
        official_values(
            unit.keys,
            unit.now,
            sender_key=sender_key,
            channel=channel,
            address=address,
            reply=reply,
        )
        for reply in replies
    ]
    await unit.session.execute(_INSERT, rows)


async def to_official_of(unit: Unit, case: Case, say: Callable[[str], str]) -> bool:
    """A notice to a case's official, in their language (`say` gives the text for one);
    False when nothing is kept about them (they deleted everything, or it was purged)."""
    loaded = await unit.load(case.sender_key)
    if loaded is None:
        return False
    await to_official(
        unit,
        sender_key=case.sender_key,
        channel=loaded.channel,
        address=loaded.address,
        reply=Reply(say(loaded.state.language)),
        reference=case.reference,
        urgent=case.urgent,
    )
    return True


async def to_staff(
    unit: Unit,
    reference: str | None,
    text: str,
    *,
    urgent: bool = False,
    opens: bool = False,
    thread: str | None = None,
    thread_open: bool | None = None,
) -> None:
    """A post in a case's thread (or the room at large); `opens`: the case's first post;
    `thread` (with no reference): a thread whose case is gone, e.g. deleted on request;
    `thread_open`: after this post the thread is closed (False) or open again (True)."""
    content: dict[str, Any] = {"text": text}
    if opens:
        content["urgent"] = urgent
    if thread is not None:
        content["thread"] = thread
    if thread_open is not None:
        content["thread_open"] = thread_open
    kind = OPEN_THREAD if opens else STAFF
    stream = staff_stream(reference)
    await _add(
        unit, kind, STAFF_CHANNEL, stream, reference=reference, content=content, urgent=urgent
    )


async def transit_file(unit: Unit, file_id: str) -> bytes | None:
    row = await unit.session.get(TransitFile, file_id)
    return None if row is None else unit.keys.decrypt(row.content, f"transit:{file_id}")


@dataclass(frozen=True)
class Taken:
    """What one look at the outbox took: `streams` in the order they should go out, and
    whether anything else waits (`more`: messages beyond TAKE_LIMIT, or not due yet)."""

    streams: list[list[Queued]]
    more: bool


class Due(Protocol):
    """An outbox row as `take` reads it: the ORM's, or SQLite's read without a transaction."""

    @property
    def id(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def channel(self) -> str: ...
    @property
    def stream(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def reference(self) -> str | None: ...
    @property
    def content(self) -> bytes: ...
    @property
    def file_id(self) -> str | None: ...
    @property
    def created_at(self) -> dt.datetime: ...
    @property
    def attempts(self) -> int: ...
    @property
    def next_attempt_at(self) -> dt.datetime: ...
    @property
    def leased_until(self) -> dt.datetime | None: ...


async def take(unit: Unit, channels: Collection[str]) -> Taken:
    """The due messages of these channels, as streams in the order they should go out.

    A stream's messages are taken up to the first one that is not due yet (or still
    leased by another worker).
    Every message taken is leased, so another process leaves it alone.
    """
    query = (
        select(OutboxMessage)
        .where(OutboxMessage.channel.in_(list(channels)), OutboxMessage.dead_at.is_(None))
        .order_by(OutboxMessage.id)
        .limit(TAKE_LIMIT)
        .with_for_update(skip_locked=True)
    )
    rows = list(await unit.session.scalars(query))
    taken = arrange(unit.keys, unit.now, rows)
    taken_ids = [message.id for stream in taken.streams for message in stream]
    if taken_ids:  # one statement, not one flush per row
        await unit.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(taken_ids))
            .values(leased_until=unit.now + LEASE)
            .execution_options(synchronize_session=False)
        )
    return taken


def arrange(keys: ServerKeys, now: dt.datetime, rows: Sequence[Due]) -> Taken:
    """The due rows among `rows` (the oldest TAKE_LIMIT of the channels, oldest first) as
    streams in the order they go out."""
    blocked: set[str] = set()
    streams: dict[str, list[Due]] = {}
    for row in rows:
        if row.stream in blocked:
            continue
        leased = row.leased_until is not None and aware(row.leased_until) > now
        if leased or aware(row.next_attempt_at) > now:
            blocked.add(row.stream)
            continue
        streams.setdefault(row.stream, []).append(row)
    # Officials before staff posts (where one worker sends both, the person waiting for an
    # answer gets it first), then urgent before the rest, then the oldest.
    ordered = sorted(
        streams.values(),
        key=lambda rows: (
            rows[0].kind != OFFICIAL,
            -max(row.priority for row in rows),
            rows[0].id,
        ),
    )
    taken = [
        [
            Queued(
                row.id,
                row.kind,
                row.channel,
                row.stream,
                row.reference,
                json.loads(keys.decrypt(row.content, _context(row.kind))),
                row.attempts,
                row.file_id,
                aware(row.created_at),
            )
            for row in stream_rows
        ]
        for stream_rows in ordered
    ]
    return Taken(taken, more=len(rows) >= TAKE_LIMIT or bool(blocked))


async def next_due(unit: Unit, channels: Collection[str]) -> dt.datetime | None:
    """When the earliest message of these channels that waits is due (None: nothing waits)."""
    found = await unit.session.scalar(
        select(func.min(OutboxMessage.next_attempt_at)).where(
            OutboxMessage.channel.in_(list(channels)), OutboxMessage.dead_at.is_(None)
        )
    )
    return aware(found) if found is not None else None


async def postpone(unit: Unit, message_ids: Iterable[int], until: dt.datetime) -> None:
    """Not the messages' fault (taken but not tried, the platform asked to wait, the staff
    room check failed): due again at `until`, without counting as a failure."""
    ids = list(message_ids)
    if ids:
        await unit.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids))
            .values(leased_until=None, next_attempt_at=until)
        )


async def failed(unit: Unit, message_id: int) -> dt.datetime | None:
    """A temporary failure: try again after a pause that grows with each attempt."""
    row = await unit.session.get(OutboxMessage, message_id)
    if row is None:
        return None
    row.attempts += 1
    pause = min(dt.timedelta(seconds=5 * 2**row.attempts), MAX_PAUSE)
    row.next_attempt_at = unit.now + pause
    row.leased_until = None
    return row.next_attempt_at


async def dead(unit: Unit, message_id: int) -> bool:
    """A message that can never be delivered: its content and file go, a bare row stays.

    Returns whether it is the stream's first dead letter in a day (worth a notice: an
    official who blocked the bot should not flood the staff room with one per message).
    """
    row = await unit.session.get(OutboxMessage, message_id)
    if row is None:
        return False
    earlier = await unit.session.scalar(
        select(func.count()).where(
            OutboxMessage.stream == row.stream,
            OutboxMessage.dead_at > unit.now - dt.timedelta(days=1),
        )
    )
    if row.file_id is not None:
        await unit.session.execute(delete(TransitFile).where(TransitFile.id == row.file_id))
    row.content, row.file_id = b"", None
    row.dead_at, row.leased_until = unit.now, None
    return not earlier


async def release_leases(unit: Unit, channels: Collection[str]) -> None:
    """At a worker's start: what a killed process had leased is due again at once."""
    await unit.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.channel.in_(list(channels)), OutboxMessage.leased_until.is_not(None))
        .values(leased_until=None)
    )


async def forget_stream(unit: Unit, stream: str) -> None:
    """Drop what still waits for a stream, dead letters too (an official who deleted
    everything)."""
    rows = await unit.session.scalars(select(OutboxMessage).where(OutboxMessage.stream == stream))
    for row in rows:
        if row.file_id is not None:
            await unit.session.execute(delete(TransitFile).where(TransitFile.id == row.file_id))
        await unit.session.delete(row)


@dataclass(frozen=True)
class Pending:
    """What waits to be sent on one channel: metadata only (for the metrics)."""

    channel: str
    count: int
    oldest: dt.datetime


async def pending(unit: Unit) -> list[Pending]:
    """Per channel, how many messages wait (dead letters not counted) and the oldest's age."""
    rows = await unit.session.execute(
        select(OutboxMessage.channel, func.count(), func.min(OutboxMessage.created_at))
        .where(OutboxMessage.dead_at.is_(None))
        .group_by(OutboxMessage.channel)
    )
    return [Pending(channel, int(count), aware(oldest)) for channel, count, oldest in rows]


async def dead_letters(unit: Unit) -> int:
    query = select(func.count()).where(OutboxMessage.dead_at.is_not(None))
    return int(await unit.session.scalar(query) or 0)


async def purge_dead_letters(unit: Unit) -> int:
    result = await unit.session.execute(
        delete(OutboxMessage).where(OutboxMessage.dead_at < unit.now - DEAD_LETTER_MEMORY)
    )
    return int(getattr(result, "rowcount", 0) or 0)
