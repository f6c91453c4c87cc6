"""The audit log: who did what to which case, never what the case says.

Entries form a hash chain. Each entry's digest is an HMAC (keyed from the server
secret) over the previous digest and the entry's own fields, so changing,
removing or reordering an entry breaks the chain at that entry, and a thief
with the database alone cannot write a consistent new chain. A separate record
of where the chain ends, under its own HMAC, catches entries cut off the end
(unless an older copy of that record is put back too). `lotse audit
verify` walks the chain and names the first entry that does not fit.

Before appending, `record` checks that the end record and the last entry agree
and refuses (AuditError, logged as an alert without content) when they do not:
otherwise the next entry would paper over entries cut off the end. Once the
server's check value is set (storage/secret_check.py, outside these tables), the
chain has begun, so an empty log means it was wiped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import hmac
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import Executable, bindparam, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import (
    AUDIT_ENTRIES,
    AUDIT_HEAD,
    AuditEntry,
    AuditHead,
    Case,
    Counsellor,
    ServerCheck,
)

logger = logging.getLogger(__name__)

GENESIS = "0" * 64
AUDIT_LOCK = 0x41554454  # "AUDT", a PostgreSQL advisory lock key


class Action(StrEnum):
    CASE_CREATED = "case created"
    CASE_CLAIMED = "case claimed"
    CASE_RELEASED = "case released"
    CASE_TRANSFERRED = "case transferred"
    CASE_TAKEN_OVER = "case taken over"
    CASE_CLOSED = "case closed"
    CASE_REOPENED = "case reopened"
    CASE_VIEWED = "case viewed"
    CASE_EXPORTED = "case exported"
    CASE_DELETED = "case deleted"
    COUNSELLOR_ADDED = "counsellor added"
    COUNSELLOR_REVOKED = "counsellor revoked"
    TEAM_KEY_CREATED = "team key created"
    TEAM_KEY_ROTATED = "team key rotated"
    COMMAND_REFUSED = "command refused"
    PURGED = "retention purge"
    DELIVERY_FAILED = "delivery failed"
    CONVERSATION_QUARANTINED = "conversation quarantined"
    SERVER_CHECK_SET = "server check set"


class AuditError(Exception):
    """The audit log was tampered with; nothing is appended until it is restored."""


SYSTEM = "system"
OFFICIAL = "official"


class _Link(Protocol):
    """An entry's fields as the digest reads them: a stored entry, a row, or a new one."""

    @property
    def id(self) -> int: ...
    @property
    def at(self) -> dt.datetime: ...
    @property
    def action(self) -> str: ...
    @property
    def case_reference(self) -> str | None: ...
    @property
    def actor(self) -> str: ...
    @property
    def detail(self) -> str: ...


class _Head(Protocol):
    @property
    def count(self) -> int: ...
    @property
    def digest(self) -> str: ...
    @property
    def mac(self) -> str: ...


class _Stored(_Link, Protocol):
    @property
    def previous(self) -> str: ...
    @property
    def digest(self) -> str: ...


@dataclass(frozen=True)
class _NewLink:
    id: int
    at: dt.datetime
    action: str
    case_reference: str | None
    actor: str
    detail: str


def _digest(key: bytes, previous: str, entry: _Link) -> str:
    fields = {
        "id": entry.id,
        "at": _utc(entry.at).isoformat(),
        "action": entry.action,
        "case": entry.case_reference,
        "actor": entry.actor,
        "detail": entry.detail,
        "previous": previous,
    }
    message = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC) if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class _ChainStatements:
    """Built once, run as SQLAlchemy Core: every case created, claimed or closed appends."""

    last: Executable
    head: Executable
    append: Executable
    move_head: Executable
    first_head: Executable


@functools.cache
def _chain_statements() -> _ChainStatements:
    return _ChainStatements(
        last=select(AUDIT_ENTRIES).order_by(AUDIT_ENTRIES.c.id.desc()).limit(1),
        head=select(AUDIT_HEAD).where(AUDIT_HEAD.c.id == 1),
        append=insert(AUDIT_ENTRIES),
        move_head=update(AUDIT_HEAD)
        .where(AUDIT_HEAD.c.id == 1)
        .values(count=bindparam("count"), digest=bindparam("digest"), mac=bindparam("mac")),
        first_head=insert(AUDIT_HEAD).values(id=1),
    )


async def record(
    session: AsyncSession,
    key: bytes,
    now: dt.datetime,
    *,
    action: Action,
    actor: str,
    case_reference: str | None = None,
    detail: dict[str, str | int] | None = None,
) -> None:
    """Append one entry, in the caller's transaction: it lands with the change it records.

    Only this function writes the chain, so it reads and writes it as plain rows."""
    if session.get_bind().dialect.name == "postgresql":  # one writer at a time extends the chain
        await session.execute(text(f"SELECT pg_advisory_xact_lock({AUDIT_LOCK})"))
    await session.flush()  # what the entry records is written before it
    statements = _chain_statements()
    last: Any = (await session.execute(statements.last)).first()
    head: Any = (await session.execute(statements.head)).first()
    problem = _end_problem(key, last, head)
    if problem is None and last is None and await _should_have_begun(session):
        problem = "the log is empty although it was begun: it was wiped"
    if problem is not None:
        logger.critical(
            "audit log tampered with (%s); the action was refused and nothing recorded; "
            "restore the database from a backup and run: lotse audit verify",
            problem,
        )
        raise AuditError(
            f"the audit log was tampered with ({problem}); the action was refused. Restore the "
            "database from a backup and run: lotse audit verify"
        )
    entry = _NewLink(
        id=(last.id + 1) if last else 1,
        at=now.replace(microsecond=0),
        action=action.value,
        case_reference=case_reference,
        actor=actor,
        detail=json.dumps(detail or {}, sort_keys=True),
    )
    previous = last.digest if last else GENESIS
    digest = _digest(key, previous, entry)
    fields = {**dataclasses.asdict(entry), "previous": previous, "digest": digest}
    await session.execute(statements.append, fields)
    moved = {"count": entry.id, "digest": digest, "mac": _head_mac(key, entry.id, digest)}
    await session.execute(statements.move_head if head else statements.first_head, moved)


def _end_problem(key: bytes, last: _Stored | None, head: _Head | None) -> str | None:
    """Why the newest entry and the end record do not fit together, or None."""
    if last is None:
        return None if head is None else f"the end record names {head.count} entries, none remain"
    if head is None:
        return "the end record is missing"
    if not hmac.compare_digest(_head_mac(key, head.count, head.digest), head.mac):
        return "the end record was changed"
    if head.count != last.id or head.digest != last.digest:
        return f"the end record names {head.count} entries, the newest is {last.id}"
    if not hmac.compare_digest(_digest(key, last.previous, last), last.digest):
        return f"entry {last.id} was changed"
    return None


def entry_holds(key: bytes, entry: _Stored) -> bool:
    """Whether one entry's HMAC fits its fields under `key` (the right server secret)."""
    return hmac.compare_digest(_digest(key, entry.previous, entry), entry.digest)


async def _should_have_begun(session: AsyncSession) -> bool:
    """An empty log is wiped once the check value is set, or when cases or a second
    counsellor exist (each was recorded: the first entry is always the first counsellor)."""
    if await chain_started(session):
        return True
    cases = await session.scalar(select(func.count()).select_from(Case))
    counsellors = await session.scalar(select(func.count()).select_from(Counsellor))
    return bool(cases) or (counsellors or 0) > 1


async def chain_started(session: AsyncSession) -> bool:
    """Whether the server's check value is set: from then on the log is never empty."""
    check = await session.get(ServerCheck, 1)
    return check is not None and check.secret_check is not None


def _head_mac(key: bytes, count: int, digest: str) -> str:
    return hmac.new(key, f"head|{count}|{digest}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Break:
    entry_id: int
    position: int
    what: str

    def __str__(self) -> str:
        if self.entry_id == 0:
            return f"the whole log: {self.what}"
        return f"entry {self.entry_id} (number {self.position} in the chain): {self.what}"


def verify(
    key: bytes,
    entries: Sequence[AuditEntry],
    head: AuditHead | None,
    *,
    counsellors_exist: bool = False,
) -> Break | None:
    """The first place the chain does not hold, or None.

    With `counsellors_exist`, an empty chain is a break too: adding the first
    counsellor is always recorded, so an empty log next to a keyring was emptied.
    """
    if not entries and head is None and counsellors_exist:
        return Break(0, 0, "the log is empty although counsellors were added: it was wiped")
    found = _verify_links(key, entries)
    if found is not None:
        return found
    count, last = len(entries), entries[-1].digest if entries else GENESIS
    if head is None:
        return (
            None
            if not entries
            else Break(entries[-1].id, count, "the chain's end record is missing")
        )
    if not hmac.compare_digest(_head_mac(key, head.count, head.digest), head.mac):
        return Break(head.count, head.count, "the record of where the chain ends was changed")
    if head.count != count or head.digest != last:
        return Break(
            head.count,
            head.count,
            f"the chain ends early: it should have {head.count} entries, it has {count} "
            "(the newest were removed)",
        )
    return None


def _verify_links(key: bytes, entries: Sequence[AuditEntry]) -> Break | None:
    previous = GENESIS
    for position, entry in enumerate(entries, start=1):
        if entry.previous != previous:
            return Break(
                entry.id,
                position,
                "does not follow the entry before it: "
                "an entry was removed, inserted or reordered here",
            )
        if not hmac.compare_digest(_digest(key, entry.previous, entry), entry.digest):
            return Break(entry.id, position, "its content was changed after it was written")
        previous = entry.digest
    return None


async def load_chain(session: AsyncSession) -> tuple[list[AuditEntry], AuditHead | None]:
    entries = list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
    return entries, await session.get(AuditHead, 1)
