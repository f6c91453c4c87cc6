"""Reading and writing Lotse's records, one transaction (`Unit`) at a time.

The core opens a unit per incoming message: load the conversation (row-locked on
PostgreSQL, under SQLite's write lock otherwise), step, save, commit. Everything
personal is encrypted before it reaches a column.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import secrets
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from flows.state import IntakeState, StoredFile
from storage.audit import OFFICIAL, SYSTEM, Action, record
from storage.chain import verify_team
from storage.hotpath import HotPath
from storage.key_binding import case_binding, case_public_key, team_public_key
from storage.keyring import KeyringError, lock_keyring, sealing_team
from storage.models import (
    CONVERSATIONS,
    Case,
    CaseItem,
    Conversation,
    OutboxMessage,
    ProcessedEvent,
    ReferenceCounter,
    StoredBlob,
)
from storage.sealing import PrivateKey, case_key_info, file_info, item_info, seal
from storage.server_secret import DecryptionError, ServerKeys
from storage.statements import statements

Clock = Callable[[], dt.datetime]
REFERENCE_PREFIX = "L"
EVENT_MEMORY = dt.timedelta(days=7)  # how long a platform event id is remembered for dedupe
CHECKPOINT_ATTEMPTS = 100
SQLITE_SLOTS = 1
POOL_SLOTS = 12  # below SQLAlchemy's default pool of 5 + 10 overflow connections


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def format_reference(year: int, number: int) -> str:
    return f"{REFERENCE_PREFIX}-{year}-{number:04d}"


class UnreadableConversation(Exception):
    """A conversation's row does not open or does not parse (damaged or tampered with)."""


@dataclass(frozen=True)
class PurgeReport:
    cases: int
    intakes: int
    files: int
    events: int


@dataclass(frozen=True)
class LoadedConversation:
    state: IntakeState
    address: str
    channel: str


@dataclass(frozen=True)
class _Held:
    """A conversation's row as this unit locked or wrote it (sealed, as stored)."""

    id: int
    channel: str
    address: bytes
    state: bytes


@dataclass(frozen=True)
class CaseSummary:
    """A case's metadata: what `lotse cases list` shows without any key."""

    reference: str
    status: str
    urgent: bool
    channel: str
    created_at: dt.datetime


class Store:
    def __init__(
        self,
        database: AsyncEngine,
        keys: ServerKeys,
        clock: Clock = utc_now,
        anchor: str | None = None,
    ) -> None:
        self.database = database
        self.keys = keys
        self.clock = clock
        # `[keys] anchor`: the signing fingerprint the team key's signature chain must reach
        self.anchor = anchor
        self._sessions = async_sessionmaker(database, expire_on_commit=False)
        # Back-pressure: at most this many transactions at once, the rest wait their turn
        # here (however long) instead of timing out in the connection pool. SQLite has one
        # writer at a time anyway (every transaction is BEGIN IMMEDIATE): more would only
        # poll its lock in the busy handler, sleeping milliseconds at a time.
        sqlite = database.dialect.name == "sqlite"
        self._slots = asyncio.Semaphore(SQLITE_SLOTS if sqlite else POOL_SLOTS)
        self.hot = HotPath(database, self._slots)

    def close(self) -> None:
        """Let go of the hot path's SQLite connection and thread (the pool is the caller's)."""
        self.hot.close()

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[Unit]:
        """One transaction: committed when the block ends, rolled back if it raises.

        Its end – the commit or the rollback, and the connection's return to the pool – runs
        to completion even when the caller is cancelled meanwhile (a worker stopped at
        shutdown): cut off half-way, SQLAlchemy's pool logs a traceback, throws the
        connection away, and a SQLite connection may keep its lock until collected."""
        async with self._slots:
            session = self._sessions()
            committed = False
            try:
                await session.begin()
                yield Unit(session, self.keys, self.clock(), self.anchor)
                committed = True
            finally:
                await _to_the_end(_end(session, committed))

    async def compact(self) -> None:
        """After deleting: move SQLite's WAL into the database and truncate it.

        secure_delete zeroes deleted rows in the database file; this makes sure no
        copy of them lingers in the -wal file either.
        """
        if self.database.dialect.name != "sqlite":
            return
        async with self.database.connect() as connection:
            raw = await connection.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            # A reader at that moment (a delivery worker) makes the checkpoint give up:
            # try again until it went through.
            for _ in range(CHECKPOINT_ATTEMPTS):
                cursor = await driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                busy = await cursor.fetchone()
                if not busy or not busy[0]:
                    return
                await asyncio.sleep(0.02)

    async def cases(self) -> list[CaseSummary]:
        async with self._sessions() as session:
            rows = await session.scalars(select(Case).order_by(Case.created_at, Case.id))
            return [
                CaseSummary(
                    row.reference, row.status, row.urgent, row.channel, aware(row.created_at)
                )
                for row in rows
            ]


async def _end(session: AsyncSession, commit: bool) -> None:
    try:
        if commit:
            await session.commit()
    finally:
        await session.close()  # rolls back what was not committed; returns the connection


async def _to_the_end(work: Coroutine[Any, Any, None]) -> None:
    """Await `work` to its end; a cancellation meanwhile is raised once it has ended."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})  # cancelled once more: the task still ends on its own
        if not task.cancelled():
            task.exception()  # read: what the cancelled caller can no longer hear
        raise


class Unit:
    def __init__(
        self,
        session: AsyncSession,
        keys: ServerKeys,
        now: dt.datetime,
        anchor: str | None = None,
    ) -> None:
        self.session = session
        self.keys = keys
        self.now = now
        self.anchor = anchor
        self.outbox_channels: set[str] = set()  # channels with messages to send once committed
        self._conversations: dict[str, _Held | None] = {}  # rows locked (or written) so far

    # -- delivery bookkeeping -----------------------------------------------------------------

    async def seen(self, event_key: str) -> bool:
        found = await self.session.execute(statements().event_seen, {"event_key": event_key})
        return found.first() is not None

    async def mark_seen(self, event_key: str) -> None:
        await self.session.execute(
            statements().mark_seen, {"event_key": event_key, "seen_at": self.now}
        )

    # -- conversations ----------------------------------------------------------------------

    async def _conversation(self, sender_key: str) -> _Held | None:
        """The conversation's row, locked; asked of the database once per transaction."""
        if sender_key in self._conversations:
            return self._conversations[sender_key]
        query = statements().lock_conversation
        row = (await self.session.execute(query, {"sender_key": sender_key})).one_or_none()
        held = None if row is None else _Held(row.id, row.channel, row.address, row.state)
        self._conversations[sender_key] = held
        return held

    async def lock_conversation_of(self, reference: str) -> None:
        """Take the lock on a case's conversation first (see Handoff.staff_writes)."""
        case = await self.case(reference)
        if case is not None:
            await self._conversation(case.sender_key)

    async def load(self, sender_key: str) -> LoadedConversation | None:
        row = await self._conversation(sender_key)
        if row is None:
            return None
        return open_conversation(self.keys, sender_key, row.state, row.address, row.channel)

    async def quarantine(self, sender_key: str) -> Case | None:
        """Set a conversation that cannot be read aside, so it no longer stops every later
        message: renamed out of reach (kept for the operator until the purge), audited.
        Returns the sender's open case, if any, so the official can go on with it."""
        row = await self._conversation(sender_key)
        if row is not None:
            await self.session.execute(
                update(CONVERSATIONS)
                .where(CONVERSATIONS.c.id == row.id)
                .values(sender_key=f"quarantine-{secrets.token_hex(8)}", updated_at=self.now)
            )
        self._conversations.pop(sender_key, None)
        await self.audit(Action.CONVERSATION_QUARANTINED, SYSTEM)
        query = (
            select(Case)
            .where(Case.sender_key == sender_key, Case.status != "closed")
            .order_by(Case.created_at.desc())
        )
        return (await self.session.scalars(query)).first()

    async def save(self, sender_key: str, channel: str, address: str, state: IntakeState) -> None:
        sealed_state, sealed_address = seal_conversation(self.keys, sender_key, state, address)
        row = await self._conversation(sender_key)
        sealed = {"state": sealed_state, "address": sealed_address, "updated_at": self.now}
        if row is None:
            added = await self.session.execute(
                statements().add_conversation,
                {**sealed, "sender_key": sender_key, "channel": channel, "created_at": self.now},
            )
            row_id = added.scalar_one()
        else:
            await self.session.execute(
                statements().update_conversation, {**sealed, "row_id": row.id}
            )
            row_id, channel = row.id, row.channel
        self._conversations[sender_key] = _Held(row_id, channel, sealed_address, sealed_state)

    async def discard(self, sender_key: str) -> None:
        """Forget the intake in progress and its files; submitted cases stay."""
        self._conversations.pop(sender_key, None)
        await self.session.execute(
            delete(Conversation).where(Conversation.sender_key == sender_key)
        )
        await self.session.execute(
            delete(StoredBlob).where(
                StoredBlob.sender_key == sender_key, StoredBlob.case_id.is_(None)
            )
        )

    async def delete_person(self, sender_key: str) -> int:
        """Forget everything about one sender: intake, files, cases and their records."""
        self._conversations.pop(sender_key, None)
        cases = list(await self.session.scalars(select(Case).where(Case.sender_key == sender_key)))
        await self._delete_cases(cases, OFFICIAL, "deleted on request")
        await self.session.execute(delete(StoredBlob).where(StoredBlob.sender_key == sender_key))
        await self.session.execute(
            delete(Conversation).where(Conversation.sender_key == sender_key)
        )
        return len(cases)

    # -- files ------------------------------------------------------------------------------

    async def store_file(
        self, sender_key: str, name: str, media_type: str, data: bytes
    ) -> StoredFile:
        file_id = secrets.token_hex(16)
        self.session.add(
            StoredBlob(
                id=file_id,
                sender_key=sender_key,
                content=self.keys.encrypt(data, f"file:{file_id}"),
                created_at=self.now,
            )
        )
        return StoredFile(id=file_id, name=name, media_type=media_type, size=len(data))

    # -- cases --------------------------------------------------------------------------------

    async def _next_reference(self) -> str:
        # The UPDATE's row lock hands out numbers one by one. The first case of a year
        # finds no counter and creates it; concurrent first cases meet at ON CONFLICT.
        year = self.now.year
        bump = statements().bump_reference
        number = (await self.session.execute(bump, {"of_year": year})).scalar_one_or_none()
        if number is None:
            dialect = self.session.get_bind().dialect.name
            insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
            await self.session.execute(
                insert(ReferenceCounter).values(year=year, last=0).on_conflict_do_nothing()
            )
            number = (await self.session.execute(bump, {"of_year": year})).scalar_one()
        return format_reference(year, number)

    async def create_case(
        self,
        sender_key: str,
        channel: str,
        urgent: bool,
        record: dict[str, object],
        files: Sequence[StoredFile],
        *,
        previous_reference: str | None = None,
    ) -> str:
        """Turn a finished intake into a case, sealed to a new case key; returns its reference.

        The case's private key is sealed to the team key at once and never kept
        elsewhere: from here on the server can add to the case but not read it.
        """
        await lock_keyring(self.session, shared=True)
        team = await sealing_team(self.session)
        if team is None:
            raise KeyringError(
                "no counsellor key is set up, so cases cannot be sealed; "
                "run: lotse counsellor add NAME --public-key FILE --first"
            )
        team_public = team_public_key(self.keys, team)
        await verify_team(self.session, team, self.anchor)
        reference = await self._next_reference()
        case_private = PrivateKey.generate()
        case_public = case_private.public_key()
        public_bytes = case_public.to_bytes()
        previous = await self.case(previous_reference) if previous_reference else None
        added = await self.session.execute(
            statements().add_case,
            {
                "reference": reference,
                "sender_key": sender_key,
                "channel": channel,
                "status": "waiting",
                "queued_at": self.now,
                "previous_case_id": previous.id if previous else None,
                "urgent": urgent,
                "created_at": self.now,
                "public_key": public_bytes,
                "wrapped_key": seal(
                    team_public, case_private.to_bytes(), case_key_info(reference, team.id)
                ),
                "team_key_id": team.id,
                "key_binding": case_binding(self.keys, reference, public_bytes),
                # the intake record, sealed below, is the case's one item so far
                "item_count": 1,
                "item_mac": item_count_mac(self.keys.audit_key, reference, 1),
            },
        )
        case_id = added.scalar_one()
        await self.session.execute(
            statements().add_item,
            {
                "case_id": case_id,
                "position": 0,
                "kind": "intake",
                "content": seal(
                    case_public, _item_bytes(record), item_info(reference, 0, "intake")
                ),
                "created_at": self.now,
            },
        )
        if files:
            case = await self.case(reference)
            assert case is not None
            for file in files:
                await self._seal_file(case, file.id, sender_key)
        await self.audit(
            Action.CASE_CREATED,
            OFFICIAL,
            reference,
            {"channel": channel, "urgent": int(urgent), "files": len(files)},
        )
        return reference

    async def _seal_item(
        self, case: Case, position: int, kind: str, payload: dict[str, object]
    ) -> None:
        assert case.public_key is not None
        case.item_count = position + 1
        case.item_mac = item_count_mac(self.keys.audit_key, case.reference, case.item_count)
        content = _item_bytes(payload)
        self.session.add(
            CaseItem(
                case_id=case.id,
                position=position,
                kind=kind,
                content=seal(
                    case_public_key(self.keys, case),
                    content,
                    item_info(case.reference, position, kind),
                ),
                created_at=self.now,
            )
        )

    async def _seal_file(self, case: Case, file_id: str, sender_key: str) -> None:
        """Move a stored file into the case: re-encrypt it from the server key to the case key."""
        assert case.public_key is not None
        blob = await self.session.get(StoredBlob, file_id)
        if blob is None or blob.sender_key != sender_key or blob.case_id is not None:
            raise LookupError("a file of this intake is missing from storage")
        plaintext = self.keys.decrypt(blob.content, f"file:{file_id}")
        blob.content = seal(
            case_public_key(self.keys, case), plaintext, file_info(case.reference, file_id)
        )
        blob.case_id = case.id

    async def case(self, reference: str, lock: bool = False) -> Case | None:
        query = select(Case).where(Case.reference == reference)
        if lock:
            query = query.with_for_update()
        return (await self.session.scalars(query)).first()

    async def add_item(self, reference: str, kind: str, payload: dict[str, object]) -> int:
        """Seal one more item (a relayed message, a note) to a case; returns its position."""
        case = await self.case(reference, lock=True)
        if case is None:
            raise LookupError(f"no case {reference}")
        last = await self.session.scalar(
            select(func.max(CaseItem.position)).where(CaseItem.case_id == case.id)
        )
        position = (last if last is not None else -1) + 1
        await self._seal_item(case, position, kind, payload)
        return position

    async def add_files(
        self, reference: str, sender_key: str, files: Sequence[StoredFile], sent_by: str = OFFICIAL
    ) -> None:
        """Files sent after submitting (by the official or a counsellor): sealed into the case."""
        case = await self.case(reference, lock=True)
        if case is None:
            raise LookupError(f"no case {reference}")
        for file in files:
            await self._seal_file(case, file.id, sender_key)
        await self.add_item(
            reference,
            "attachment",
            {"from": sent_by, "files": [file.model_dump() for file in files]},
        )

    async def case_by_thread(self, thread: str) -> Case | None:
        return (await self.session.scalars(select(Case).where(Case.thread == thread))).first()

    async def audit(
        self,
        action: Action,
        actor: str,
        case_reference: str | None = None,
        detail: dict[str, str | int] | None = None,
    ) -> None:
        await record(
            self.session,
            self.keys.audit_key,
            self.now,
            action=action,
            actor=actor,
            case_reference=case_reference,
            detail=detail,
        )

    async def _delete_cases(self, cases: Sequence[Case], actor: str, why: str) -> None:
        for case in cases:
            await self.session.execute(delete(CaseItem).where(CaseItem.case_id == case.id))
            await self.session.execute(delete(StoredBlob).where(StoredBlob.case_id == case.id))
            # and what was still waiting to be posted or relayed about it
            await self.session.execute(
                delete(OutboxMessage).where(OutboxMessage.reference == case.reference)
            )
            await self.session.delete(case)
            await self.audit(Action.CASE_DELETED, actor, case.reference, {"why": why})
        await self.session.flush()

    async def purge(self, retention: dt.timedelta, abandoned: dt.timedelta) -> PurgeReport:
        """Apply the retention rules now: closed cases, abandoned intakes, loose files."""
        closed = list(
            await self.session.scalars(
                select(Case).where(Case.status == "closed", Case.closed_at < self.now - retention)
            )
        )
        await self._delete_cases(closed, SYSTEM, "retention")
        open_senders = select(Case.sender_key).where(Case.status != "closed")
        idle = self.now - abandoned
        conversations = await self.session.execute(
            delete(Conversation).where(
                Conversation.updated_at < idle, Conversation.sender_key.not_in(open_senders)
            )
        )
        set_aside = await self._set_aside_second_intakes(idle)
        # Files not (yet) part of a case go with their intake; an intake still being
        # answered keeps them.
        live = select(Conversation.sender_key).where(Conversation.updated_at >= idle)
        loose = await self.session.execute(
            delete(StoredBlob).where(
                StoredBlob.case_id.is_(None),
                StoredBlob.created_at < idle,
                StoredBlob.sender_key.not_in(live),
            )
        )
        events = await self.session.execute(
            delete(ProcessedEvent).where(ProcessedEvent.seen_at < self.now - EVENT_MEMORY)
        )
        report = PurgeReport(
            cases=len(closed),
            intakes=_rowcount(conversations) + set_aside,
            files=_rowcount(loose),
            events=_rowcount(events),
        )
        if report.cases or report.intakes or report.files:
            await self.audit(
                Action.PURGED,
                SYSTEM,
                detail={"cases": report.cases, "intakes": report.intakes, "files": report.files},
            )
        return report

    async def _set_aside_second_intakes(self, idle: dt.datetime) -> int:
        """An official with an open case who began another report and left it: the conversation
        stays (it carries the relay), but the abandoned answers go, as any abandoned intake's."""
        rows = await self.session.scalars(
            select(Conversation).where(Conversation.updated_at < idle).with_for_update()
        )
        count = 0
        for row in rows:
            state = IntakeState.from_bytes(self.keys.decrypt(row.state, f"state:{row.sender_key}"))
            if state.phase != "intake":
                continue
            case = (
                await self.session.scalars(
                    select(Case)
                    .where(Case.sender_key == row.sender_key, Case.status != "closed")
                    .order_by(Case.created_at.desc())
                )
            ).first()
            if case is None:
                continue
            waiting = IntakeState.submitted(state, case.reference)
            row.state = self.keys.encrypt(waiting.to_bytes(), f"state:{row.sender_key}")
            count += 1
        return count

    async def count_cases(self, sender_key: str) -> int:
        query = select(func.count()).select_from(Case).where(Case.sender_key == sender_key)
        return int((await self.session.scalar(query)) or 0)


def open_conversation(
    keys: ServerKeys, sender_key: str, state: bytes, address: bytes, channel: str
) -> LoadedConversation:
    """A conversation's row as the core reads it; UnreadableConversation when it does not open."""
    try:
        opened = IntakeState.from_bytes(keys.decrypt(state, f"state:{sender_key}"))
        plain_address = keys.decrypt(address, f"address:{sender_key}").decode()
    except (DecryptionError, ValueError) as error:  # pydantic's errors are ValueErrors
        raise UnreadableConversation from error
    return LoadedConversation(opened, plain_address, channel)


def seal_conversation(
    keys: ServerKeys, sender_key: str, state: IntakeState, address: str
) -> tuple[bytes, bytes]:
    """A conversation's state and chat address as stored: encrypted, bound to the sender."""
    return (
        keys.encrypt(state.to_bytes(), f"state:{sender_key}"),
        keys.encrypt(address.encode(), f"address:{sender_key}"),
    )


def _item_bytes(payload: dict[str, object]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def item_count_mac(key: bytes, reference: str, count: int) -> str:
    return hmac.new(key, f"items|{reference}|{count}".encode(), hashlib.sha256).hexdigest()


def aware(moment: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; everything Lotse writes is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
