"""The hot path: one official's ordinary step, and one delivered message, in few statements.

Most messages an official writes are one step of the questionnaire: mark the event
seen, load the conversation, step, save it with the replies. `Store.unit()` does that
through the ORM with a statement (and, on SQLite, a thread hop) per call; here it is
a handful of SQLAlchemy Core statements in one transaction:

1. `INSERT … ON CONFLICT DO NOTHING` into processed_events: marks the event seen and
   tells whether it was (0 rows: a duplicate); on PostgreSQL it also holds the event
   against a second process.
2. `SELECT … FOR UPDATE` of the conversation (SQLite: under BEGIN IMMEDIATE's lock).
3. the step, in the caller's code, between the two hops;
4. one upsert of the conversation and one multi-row insert of the replies; commit.

A step that writes nothing (before consent) rolls back, so nothing is stored, as before.
On SQLite each group of statements runs as one call on a database thread of its own
(plain `sqlite3` under SQLAlchemy Core, the same pragmas), instead of a hop per
statement through aiosqlite; its transactions take turns under one lock.

A database that fails (locked past `SQLITE_BUSY_SECONDS`, a full disk, a lost server)
raises here as it would in a unit; the core decides what the official hears, in one
place for both paths (bot/core/outage.py, `storage.db.unreachable`). A step of a batch
is told it was committed only if the batch's transaction really was.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from sqlalchemy import (
    Connection,
    Engine,
    Executable,
    NestedTransaction,
    Table,
    bindparam,
    create_engine,
    delete,
    select,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import StaticPool

from storage import db
from storage.models import Conversation, OutboxMessage, ProcessedEvent, TransitFile

T = TypeVar("T")
_EVENTS = cast(Table, ProcessedEvent.__table__)
_CONVERSATIONS = cast(Table, Conversation.__table__)
_OUTBOX = cast(Table, OutboxMessage.__table__)


@dataclass(frozen=True)
class _Statements:
    """Built once per dialect and run with parameters: SQLAlchemy then finds each compiled
    in its cache at once, instead of building and keying a new statement per message."""

    claim: Executable
    load: Executable
    upsert: Executable
    reply: Executable
    forget_file: Executable
    delivered: Executable


@functools.cache
def _statements(dialect: str) -> _Statements:
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    upsert = insert(_CONVERSATIONS)
    changed = {key: upsert.excluded[key] for key in ("state", "address", "updated_at")}
    columns = _CONVERSATIONS.c
    return _Statements(
        claim=insert(_EVENTS).on_conflict_do_nothing(),
        load=select(columns.state, columns.address, columns.channel)
        .where(columns.sender_key == bindparam("sender_key"))
        .with_for_update(),
        upsert=upsert.on_conflict_do_update(index_elements=["sender_key"], set_=changed),
        reply=_OUTBOX.insert(),
        forget_file=delete(TransitFile).where(TransitFile.id == bindparam("file_id")),
        delivered=delete(_OUTBOX).where(_OUTBOX.c.id == bindparam("message_id")),
    )


def _claim_and_load(
    connection: Connection, dialect: str, event_key: str, sender_key: str, now: dt.datetime
) -> tuple[bool, Any]:
    """Mark the event seen (False: it was already) and load the conversation's row, locked."""
    statements = _statements(dialect)
    claimed = connection.execute(statements.claim, {"event_key": event_key, "seen_at": now})
    if not claimed.rowcount:
        return False, None
    row = connection.execute(statements.load, {"sender_key": sender_key}).first()
    return True, row


def _write(
    connection: Connection,
    dialect: str,
    conversation: dict[str, Any],
    outbox_rows: Sequence[dict[str, Any]],
) -> None:
    statements = _statements(dialect)
    connection.execute(statements.upsert, conversation)
    if outbox_rows:
        connection.execute(statements.reply, list(outbox_rows))


def _delete_delivered(
    connection: Connection, dialect: str, message_id: int, file_id: str | None
) -> None:
    statements = _statements(dialect)
    if file_id is not None:
        connection.execute(statements.forget_file, {"file_id": file_id})
    connection.execute(statements.delivered, {"message_id": message_id})


class BatchLost(Exception):
    """SQLite rolled back the batch's transaction by itself, as it may after a full disk or
    an I/O error: what its steps wrote is gone, and each is told so (the batch's COMMIT fails
    too). Writing on would autocommit each statement behind the batch's back: a step whose
    official is asked to send again could have been stored after all."""


def _in_transaction(connection: Connection) -> bool:
    raw = connection.connection.dbapi_connection
    return raw is not None and bool(raw.in_transaction)


def _batch_still_open(connection: Connection) -> None:
    if not _in_transaction(connection):
        raise BatchLost("the database rolled back the open batch")


def _commit_batch(connection: Connection) -> None:
    # sqlite3's commit() does nothing outside a transaction: it would report a lost batch as
    # committed, and its officials would be told their answers were taken.
    _batch_still_open(connection)
    connection.commit()


def _undo(connection: Connection, savepoint: NestedTransaction) -> None:
    """Roll back one step's savepoint; nothing to undo where the whole batch is gone."""
    try:
        savepoint.rollback()
    except Exception:
        if _in_transaction(connection):
            raise


@dataclass(frozen=True)
class _Batch:
    committed: asyncio.Future[None]


class HotStep:
    """One step's transaction: `seen`, `row`; `save(…)` to commit, else it rolls back."""

    def __init__(self, seen: bool, row: Any) -> None:
        self.seen = seen
        self.row = row
        self.conversation: dict[str, Any] | None = None
        self.outbox_rows: list[dict[str, Any]] = []
        self.savepoint: NestedTransaction | None = None  # SQLite: the step's part of a batch

    def save(self, conversation: dict[str, Any], outbox_rows: list[dict[str, Any]]) -> None:
        self.conversation, self.outbox_rows = conversation, outbox_rows


class HotPath:
    """Runs the hot path's transactions on SQLite's own database thread, or on PostgreSQL."""

    def __init__(self, database: AsyncEngine, slots: asyncio.Semaphore) -> None:
        self.database = database
        self.dialect = database.dialect.name
        # The store's turns: on PostgreSQL a bound on connections in use; on SQLite one
        # transaction at a time in this process, units and the hot path alike.
        self._slots = slots
        self._sqlite: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._connection: Connection | None = None
        self._turn = asyncio.Lock()  # SQLite: steps take turns on the one connection
        self._batch: _Batch | None = None
        self._committers: set[asyncio.Future[None]] = set()

    def _sqlite_connection(self) -> Connection:
        if self._connection is None:
            url = self.database.url.set(drivername="sqlite+pysqlite")
            engine = create_engine(
                url,
                poolclass=StaticPool,
                # read when connecting, as storage/db.py does: one bounded wait for both paths
                connect_args={"check_same_thread": False, "timeout": db.SQLITE_BUSY_SECONDS},
            )
            db.take_sqlite_in_hand(engine)
            self._sqlite = engine
            self._connection = engine.connect()
            # A store nobody closed (tests make many) lets go of its connection when dropped.
            weakref.finalize(self, engine.dispose)
        return self._connection

    async def _on_thread(self, work: Callable[[Connection], T]) -> T:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="lotse-sqlite")
            weakref.finalize(self, self._thread.shutdown, wait=False)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, lambda: work(self._sqlite_connection()))

    @asynccontextmanager
    async def step(
        self, event_key: str, sender_key: str, now: dt.datetime
    ) -> AsyncIterator[HotStep]:
        """The step's transaction; committed when `save` was called and the block ends."""
        if self.dialect == "sqlite":
            async with self._grouped(event_key, sender_key, now) as hot:
                yield hot
            return
        async with (
            self._slots,
            self.database.connect() as connection,
            connection.begin() as transaction,
        ):
            seen, row = await connection.run_sync(
                _claim_and_load, self.dialect, event_key, sender_key, now
            )
            hot = HotStep(not seen, row)
            yield hot
            if hot.conversation is None:
                await transaction.rollback()
                return
            await connection.run_sync(_write, self.dialect, hot.conversation, hot.outbox_rows)

    @asynccontextmanager
    async def _grouped(
        self, event_key: str, sender_key: str, now: dt.datetime
    ) -> AsyncIterator[HotStep]:
        """Group commit: the steps that queue while one transaction is open join it, each in
        a savepoint of its own (all or nothing per step), and one COMMIT – one fsync – makes
        them durable together. Each step returns only once that commit went through; a step
        of one conversation never overtakes another (the core holds its lock throughout)."""
        async with self._turn:
            batch = self._batch
            if batch is None:
                batch = await self._open_batch()
            hot = await self._on_thread(
                lambda connection: self._begin_step(connection, event_key, sender_key, now)
            )
            failed = True
            try:
                yield hot
                failed = False
            finally:
                await self._on_thread(lambda connection: self._end_step(connection, hot, failed))
        if hot.conversation is not None:
            await asyncio.shield(batch.committed)

    async def _open_batch(self) -> _Batch:
        await self._slots.acquire()
        try:
            await self._on_thread(lambda connection: connection.begin())
        except BaseException:
            self._slots.release()
            raise
        batch = self._batch = _Batch(asyncio.get_running_loop().create_future())
        # Queued behind every step already waiting for its turn: they join this batch.
        committer = asyncio.ensure_future(self._commit(batch))
        self._committers.add(committer)
        committer.add_done_callback(self._committers.discard)
        return batch

    async def _commit(self, batch: _Batch) -> None:
        async with self._turn:
            self._batch = None
            try:
                await self._on_thread(_commit_batch)
            except Exception as error:
                # Its steps are told first (each official: "please send again"): a rollback
                # that fails as well must not leave them waiting for ever.
                batch.committed.set_exception(error)
                batch.committed.exception()  # read: a batch of rolled-back steps has no reader
                try:
                    await self._on_thread(lambda connection: connection.rollback())
                except Exception:
                    await self._on_thread(lambda _connection: self._disconnect())
            else:
                batch.committed.set_result(None)
            finally:
                self._slots.release()

    def _disconnect(self) -> None:
        """Let go of a connection in a state nobody can vouch for; the next call opens anew."""
        if self._connection is not None:
            self._connection.invalidate()
            self._connection = None
        if self._sqlite is not None:
            self._sqlite.dispose()
            self._sqlite = None

    def _begin_step(
        self, connection: Connection, event_key: str, sender_key: str, now: dt.datetime
    ) -> HotStep:
        _batch_still_open(connection)
        savepoint = connection.begin_nested()
        try:
            seen, row = _claim_and_load(connection, self.dialect, event_key, sender_key, now)
        except BaseException:
            _undo(connection, savepoint)
            raise
        hot = HotStep(not seen, row)
        hot.savepoint = savepoint
        return hot

    def _end_step(self, connection: Connection, hot: HotStep, failed: bool) -> None:
        savepoint = hot.savepoint
        assert savepoint is not None
        if failed or hot.conversation is None:
            hot.conversation = None
            _undo(connection, savepoint)
            return
        try:
            _batch_still_open(connection)
            _write(connection, self.dialect, hot.conversation, hot.outbox_rows)
            savepoint.commit()
        except BaseException:
            hot.conversation = None
            _undo(connection, savepoint)
            raise

    async def delivered(self, message_id: int, file_id: str | None) -> None:
        """A message the platform accepted leaves the outbox (with its file), committed."""
        if self.dialect == "sqlite":

            def work(connection: Connection) -> None:
                # Without waiting for the disk: a commit survives the process being killed
                # (the README's promise: at most the one message under way is sent twice);
                # only a power cut before the next step's fsync could bring a sent message
                # back, to be sent again, never lost.
                raw = connection.connection.dbapi_connection  # outside any transaction
                assert raw is not None
                raw.execute("PRAGMA synchronous=NORMAL")
                try:
                    with connection.begin():
                        _delete_delivered(connection, self.dialect, message_id, file_id)
                finally:
                    raw.execute("PRAGMA synchronous=FULL")

            async with self._slots:
                await self._on_thread(work)
            return
        async with self._slots, self.database.begin() as connection:
            await connection.run_sync(_delete_delivered, self.dialect, message_id, file_id)

    def close(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._sqlite is not None:
            self._sqlite.dispose()
            self._sqlite = None
