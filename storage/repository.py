"""Reading and writing Lotse's records, one transaction (`Unit`) at a time.

The core opens a unit per incoming message: load the conversation (row-locked on
PostgreSQL, under SQLite's write lock otherwise), step, save, commit. Everything
personal is encrypted before it reaches a column.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from flows.state import IntakeState, StoredFile
from storage.models import (
    Case,
    CaseItem,
    Conversation,
    ProcessedEvent,
    ReferenceCounter,
    StoredBlob,
)
from storage.server_secret import ServerKeys

Clock = Callable[[], dt.datetime]
REFERENCE_PREFIX = "L"


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def format_reference(year: int, number: int) -> str:
    return f"{REFERENCE_PREFIX}-{year}-{number:04d}"


@dataclass(frozen=True)
class LoadedConversation:
    state: IntakeState
    address: str


@dataclass(frozen=True)
class CaseSummary:
    """A case's metadata: what `lotse cases list` shows without any key."""

    reference: str
    status: str
    urgent: bool
    channel: str
    created_at: dt.datetime


class Store:
    def __init__(self, engine: AsyncEngine, keys: ServerKeys, clock: Clock = utc_now) -> None:
        self.engine = engine
        self.keys = keys
        self.clock = clock
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[Unit]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        async with self._sessions() as session, session.begin():
            yield Unit(session, self.keys, self.clock())

    async def cases(self) -> list[CaseSummary]:
        async with self._sessions() as session:
            rows = await session.scalars(select(Case).order_by(Case.created_at, Case.id))
            return [
                CaseSummary(
                    row.reference, row.status, row.urgent, row.channel, _aware(row.created_at)
                )
                for row in rows
            ]


class Unit:
    def __init__(self, session: AsyncSession, keys: ServerKeys, now: dt.datetime) -> None:
        self.session = session
        self.keys = keys
        self.now = now

    # -- delivery bookkeeping -----------------------------------------------------------------

    async def seen(self, event_key: str) -> bool:
        found = await self.session.get(ProcessedEvent, event_key)
        return found is not None

    async def mark_seen(self, event_key: str) -> None:
        self.session.add(ProcessedEvent(event_key=event_key, seen_at=self.now))

    # -- conversations ----------------------------------------------------------------------

    async def _conversation(self, sender_key: str) -> Conversation | None:
        query = select(Conversation).where(Conversation.sender_key == sender_key).with_for_update()
        return (await self.session.scalars(query)).one_or_none()

    async def load(self, sender_key: str) -> LoadedConversation | None:
        row = await self._conversation(sender_key)
        if row is None:
            return None
        state = IntakeState.from_bytes(self.keys.decrypt(row.state, f"state:{sender_key}"))
        address = self.keys.decrypt(row.address, f"address:{sender_key}").decode()
        return LoadedConversation(state, address)

    async def save(self, sender_key: str, channel: str, address: str, state: IntakeState) -> None:
        sealed_state = self.keys.encrypt(state.to_bytes(), f"state:{sender_key}")
        sealed_address = self.keys.encrypt(address.encode(), f"address:{sender_key}")
        row = await self._conversation(sender_key)
        if row is None:
            self.session.add(
                Conversation(
                    sender_key=sender_key,
                    channel=channel,
                    address=sealed_address,
                    state=sealed_state,
                    created_at=self.now,
                    updated_at=self.now,
                )
            )
            return
        row.state, row.address, row.updated_at = sealed_state, sealed_address, self.now

    async def discard(self, sender_key: str) -> None:
        """Forget the intake in progress and its files; submitted cases stay."""
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
        case_ids = select(Case.id).where(Case.sender_key == sender_key)
        await self.session.execute(delete(CaseItem).where(CaseItem.case_id.in_(case_ids)))
        await self.session.execute(delete(StoredBlob).where(StoredBlob.sender_key == sender_key))
        deleted = await self.session.execute(delete(Case).where(Case.sender_key == sender_key))
        await self.session.execute(
            delete(Conversation).where(Conversation.sender_key == sender_key)
        )
        return int(getattr(deleted, "rowcount", 0) or 0)

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
        # The first case of a year creates the counter; concurrent first cases meet
        # at ON CONFLICT, then the UPDATE's row lock hands out numbers one by one.
        year = self.now.year
        dialect = self.session.get_bind().dialect.name
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        await self.session.execute(
            insert(ReferenceCounter).values(year=year, last=0).on_conflict_do_nothing()
        )
        bumped = await self.session.execute(
            update(ReferenceCounter)
            .where(ReferenceCounter.year == year)
            .values(last=ReferenceCounter.last + 1)
            .returning(ReferenceCounter.last)
        )
        return format_reference(year, bumped.scalar_one())

    async def create_case(
        self,
        sender_key: str,
        channel: str,
        urgent: bool,
        record: dict[str, object],
        files: Sequence[StoredFile],
    ) -> str:
        """Turn a finished intake into a case; returns its reference."""
        reference = await self._next_reference()
        case = Case(
            reference=reference,
            sender_key=sender_key,
            channel=channel,
            status="submitted",
            urgent=urgent,
            created_at=self.now,
        )
        self.session.add(case)
        await self.session.flush()
        content = json.dumps(record, ensure_ascii=False).encode()
        self.session.add(
            CaseItem(
                case_id=case.id,
                position=0,
                kind="intake",
                content=self.keys.encrypt(content, f"case:{reference}:0"),
                created_at=self.now,
            )
        )
        if files:
            await self.session.execute(
                update(StoredBlob)
                .where(
                    StoredBlob.id.in_([file.id for file in files]),
                    StoredBlob.sender_key == sender_key,
                )
                .values(case_id=case.id)
            )
        return reference

    async def count_cases(self, sender_key: str) -> int:
        query = select(func.count()).select_from(Case).where(Case.sender_key == sender_key)
        return int((await self.session.scalar(query)) or 0)


def _aware(moment: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; everything Lotse writes is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
