"""The hot path: one official's ordinary step, and one delivered message, in few statements.

Most messages an official writes are one step of the questionnaire: mark the event
seen, load the conversation, step, save it with the replies. `Store.unit()` does that
through the ORM with a statement (and, on SQLite, a thread hop) per call; here it is
a handful of SQLAlchemy Core statements.

On PostgreSQL, one transaction per step, two statements: `INSERT … ON CONFLICT DO NOTHING`
into processed_events (marks the event seen, no row: a duplicate, and holds it against a
second process) together with `SELECT … FOR UPDATE` of the conversation; the step in the
caller's code; the upsert of the conversation together with the insert of its replies;
commit – sent to asyncpg directly on a connection of SQLAlchemy's pool (storage/pg_step.py).

On SQLite (one writer at a time, so a step holding the lock while it is computed holds up
everyone), a step is at most two calls on a database thread of its own (storage/
sqlite_batch.py, plain `sqlite3`, the same pragmas): a read outside any transaction
(none when this process wrote the row last), then – after the step was computed, holding
nothing – its writes join the next batch. A batch is one transaction with a savepoint per
step and one COMMIT, one fsync, for all of them (group commit); each step's writes check
that nothing changed since its read (`sqlite_batch.write_step`). Delivered messages and
other small writes leave or enter in the same batches.

On PostgreSQL, delivered messages and small writes are batched the same way (storage/
batches.py queues for both databases): one transaction on one connection for all calls
that arrived while the previous batch ran, with set-based statements (storage/pg_batch.py).
A step there is its own transaction, as above: it holds its conversation's row while computed.

A step that writes nothing (before consent) leaves nothing, as before.

A database that fails (locked past `LOCK_WAIT_SECONDS`, a full disk, a lost server)
raises here as it would in a unit; the core decides what the official hears, in one
place for both paths (bot/core/outage.py, `storage.db.unreachable`). A step of a batch
is told it was committed only if the batch's transaction really was.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import sqlite3
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Engine, Table, create_engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import StaticPool

from storage import db, pg_batch, pg_step, sqlite_batch
from storage.batches import Batches, Outcomes
from storage.models import ConversationRow

T = TypeVar("T")
ROWS_KEPT = 2_000  # conversations whose last written row is kept (a few KB each)
BATCH_LIMIT = 256  # writes per transaction: bounds how long one batch holds the database


class HotStep:
    """One step: `seen`, `row`; `save(…)` to have it written when the block ends."""

    def __init__(self, seen: bool, row: Any) -> None:
        self.seen = seen
        self.row = row
        self.conversation: dict[str, Any] | None = None
        self.outbox_rows: list[dict[str, Any]] = []

    def save(self, conversation: dict[str, Any], outbox_rows: list[dict[str, Any]]) -> None:
        self.conversation, self.outbox_rows = conversation, outbox_rows


class HotPath:
    """Runs the hot path's transactions on SQLite's own database thread, or on PostgreSQL."""

    def __init__(self, database: AsyncEngine, slots: asyncio.Semaphore) -> None:
        self.database = database
        self.dialect = database.dialect.name
        # The store's turns: on PostgreSQL a bound on connections in use; on SQLite one
        # transaction at a time in this process, units and the hot path's batches alike.
        self._slots = slots
        self._sqlite: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._connection: Connection | None = None
        self._sqlite_batches = Batches(self._run_on_thread, slots, BATCH_LIMIT)
        self._pg_batches = Batches(self._run_on_postgres, slots, BATCH_LIMIT)
        # SQLite: the rows this process wrote last, so that the next step of a conversation
        # needs no read (the write still checks the row is unchanged and the event unseen).
        self._rows: OrderedDict[str, ConversationRow] = OrderedDict()

    def _sqlite_connection(self) -> Connection:
        if self._connection is None:
            url = self.database.url.set(drivername="sqlite+pysqlite")
            engine = create_engine(
                url,
                poolclass=StaticPool,
                # read when connecting, as storage/db.py does: one bounded wait for both paths
                connect_args={"check_same_thread": False, "timeout": db.LOCK_WAIT_SECONDS},
            )
            db.take_sqlite_in_hand(engine)
            self._sqlite = engine
            self._connection = engine.connect()
            # A store nobody closed (tests make many) lets go of its connection when dropped.
            weakref.finalize(self, engine.dispose)
        return self._connection

    def _raw_connection(self) -> sqlite3.Connection:
        raw = self._sqlite_connection().connection.dbapi_connection
        assert raw is not None
        return cast(sqlite3.Connection, raw)

    async def _on_thread(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="lotse-sqlite")
            weakref.finalize(self, self._thread.shutdown, wait=False)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, lambda: work(self._raw_connection()))

    @asynccontextmanager
    async def step(
        self, event_key: str, sender_key: str, now: dt.datetime
    ) -> AsyncIterator[HotStep]:
        """The step: written when `save` was called and the block ends, and only then.

        On SQLite the row is read without holding anything, the step is computed, and its
        writes join the next batch (group commit): many officials' steps share one
        transaction and one fsync, each in its own savepoint, and the block ends only once
        that commit went through. Raises AlreadySeen or Overtaken when another process got
        there between the read and the write (nothing is written then)."""
        if self.dialect == "sqlite":
            async with self._sqlite_step(event_key, sender_key, now) as hot:
                yield hot
            return
        async with (
            self._slots,
            self.database.connect() as connection,
            pg_step.Transaction(connection) as transaction,
        ):
            seen, row = await transaction.claim_and_load(event_key, sender_key, now)
            hot = HotStep(not seen, row)
            yield hot
            if hot.conversation is None:
                return  # rolled back
            await transaction.write(hot.conversation, hot.outbox_rows)
            await transaction.commit()

    @asynccontextmanager
    async def _sqlite_step(
        self, event_key: str, sender_key: str, now: dt.datetime
    ) -> AsyncIterator[HotStep]:
        row = self._rows.get(sender_key)
        if row is not None:  # as this process wrote it; the write checks it still is
            self._rows.move_to_end(sender_key)
            hot = HotStep(False, row)  # whether the event was seen, the write's claim tells
        else:
            seen, row = await self._on_thread(
                lambda raw: sqlite_batch.look(raw, event_key, sender_key)
            )
            hot = HotStep(seen, row)
        yield hot
        conversation, rows = hot.conversation, hot.outbox_rows
        if conversation is None:
            return
        self._rows.pop(sender_key, None)  # until the write is known to be committed
        await self._batched(
            functools.partial(
                sqlite_batch.write_step,
                event_key=event_key,
                now=now,
                read=row,
                conversation=conversation,
                outbox_rows=rows,
            ),
            durable=True,
        )
        self._rows[sender_key] = ConversationRow(
            conversation["state"], conversation["address"], conversation["channel"]
        )
        while len(self._rows) > ROWS_KEPT:
            self._rows.popitem(last=False)

    def forget(self, sender_key: str) -> None:
        """The conversation is about to be written another way (a unit): read it anew."""
        self._rows.pop(sender_key, None)

    async def _batched(self, run: Callable[[sqlite3.Connection], object], durable: bool) -> None:
        """Until `run` is committed as part of a batch (or the error it, or its batch, met)."""
        await self._sqlite_batches.join(sqlite_batch.Write(run, durable))

    async def _run_on_thread(self, batch: list[sqlite_batch.Write]) -> Outcomes:
        try:
            return await self._on_thread(functools.partial(sqlite_batch.run_batch, writes=batch))
        except Exception as error:
            # The thread's call itself failed (the connection could not be opened, a
            # rollback failed): nobody can vouch for the connection; the next batch opens anew.
            assert self._thread is not None
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._thread, self._disconnect)
            return [error] * len(batch)

    async def _run_on_postgres(self, batch: list[pg_batch.Write]) -> Outcomes:
        """All or nothing: an error (a lost server, a statement refused) reaches every caller
        through the batcher; the pool lets go of a connection that broke."""
        async with (
            self.database.connect() as connection,
            pg_step.Transaction(connection) as transaction,
        ):
            await pg_batch.run_batch(transaction, batch)
            await transaction.commit()
        return [None] * len(batch)

    def _disconnect(self) -> None:
        """Let go of a connection in a state nobody can vouch for; the next call opens anew."""
        if self._connection is not None:
            self._connection.invalidate()
            self._connection = None
        if self._sqlite is not None:
            self._sqlite.dispose()
            self._sqlite = None

    @property
    def reads_outbox(self) -> bool:
        """Whether the delivery reads the outbox here (`due`) rather than in a unit: SQLite,
        where one process alone delivers (bot/instance.py), so what it reads needs no
        lease, and a read needs no transaction and one thread call instead of a unit's many."""
        return self.dialect == "sqlite"

    async def due(self, channels: Sequence[str], limit: int) -> list[sqlite_batch.OutboxRow]:
        """SQLite: the oldest `limit` rows of these channels, for storage.outbox.arrange."""
        return await self._on_thread(lambda raw: sqlite_batch.due_rows(raw, channels, limit))

    async def delivered(
        self, message_id: int, file_id: str | None, opened: tuple[str, str] | None = None
    ) -> None:
        """A message the platform accepted leaves the outbox (with its file), committed: with
        the others that arrived meanwhile, in one batch. `opened`: (case reference, thread)
        when it opened a new case's thread, which the case keeps in the same write."""
        if self.dialect == "sqlite":
            await self._batched(
                lambda raw: sqlite_batch.delete_delivered(raw, message_id, file_id, opened),
                durable=False,
            )
            return
        await self._pg_batches.join(pg_batch.Delivered(message_id, file_id, opened))

    async def insert(self, table: Table, rows: list[dict[str, Any]]) -> None:
        """Rows whose loss would cost little (a chat's message ids): they join the next batch
        (on SQLite without making it wait for the disk); committed when this returns."""
        if self.dialect == "sqlite":
            await self._batched(lambda raw: sqlite_batch.insert(raw, table, rows), durable=False)
            return
        await self._pg_batches.join(pg_batch.Insert(table, rows))

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
