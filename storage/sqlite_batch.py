"""SQLite's side of the hot path: what runs on its database thread, in plain `sqlite3`.

A step reads its row outside any transaction (`look`); its writes (`write_step`), and
the outbox's deletions and other small writes, are queued and run together as one batch
(`run_batch`): BEGIN IMMEDIATE, a savepoint per write, one COMMIT – one fsync for many
officials. The statements are plain SQL on the connection SQLAlchemy opened (same
pragmas): through SQLAlchemy each cost more Python than SQLite's own work, and that
Python holds the interpreter lock the event loop needs. Values are converted by the
columns' own SQLAlchemy types, so the rows read back through the ORM exactly as if it
had written them; errors are raised as SQLAlchemy's (`IntegrityError`, …), as from the
rest of storage.
"""

from __future__ import annotations

import datetime as dt
import functools
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from sqlalchemy import Table
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError

from storage.models import CONVERSATIONS, OUTBOX, ConversationRow

_DIALECT = sqlite.dialect()
_stamp = cast(
    Callable[[dt.datetime], str],
    CONVERSATIONS.c.updated_at.type.dialect_impl(_DIALECT).bind_processor(_DIALECT),
)

_SEEN = "SELECT 1 FROM processed_events WHERE event_key = ?"
_LOAD = "SELECT state, address, channel FROM conversations WHERE sender_key = ?"
_CLAIM = "INSERT INTO processed_events (event_key, seen_at) VALUES (?, ?) ON CONFLICT DO NOTHING"
_UPDATE_IF = (
    "UPDATE conversations SET state = ?, address = ?, updated_at = ? "
    "WHERE sender_key = ? AND state = ?"
)
_FORGET_FILE = "DELETE FROM transit_files WHERE id = ?"
_DELIVERED = "DELETE FROM outbox WHERE id = ?"
_THREAD_OPENED = "UPDATE cases SET thread = ? WHERE reference = ?"


class BatchLost(Exception):
    """SQLite rolled back the batch's transaction by itself, as it may after a full disk or
    an I/O error: what its steps wrote is gone, and each is told so (the batch's COMMIT fails
    too). Writing on would autocommit each statement behind the batch's back: a step whose
    official is asked to send again could have been stored after all."""


class AlreadySeen(Exception):
    """The step's event was stored meanwhile (a second process): nothing of it is written."""


class Overtaken(Exception):
    """The conversation's row changed since the step read it: nothing is written; step again."""


def look(
    raw: sqlite3.Connection, event_key: str, sender_key: str
) -> tuple[bool, ConversationRow | None]:
    """Whether the event was stored, and the conversation's row, read without a transaction:
    between batches none is open, so no write lock is taken for reading (WAL)."""
    assert not raw.in_transaction
    if raw.execute(_SEEN, (event_key,)).fetchone() is not None:
        return True, None
    found = raw.execute(_LOAD, (sender_key,)).fetchone()
    return False, ConversationRow(*found) if found is not None else None


@functools.cache
def _insert_for(table: Table, columns: tuple[str, ...]) -> tuple[str, tuple[Any, ...]]:
    names = ", ".join(columns)
    places = ", ".join("?" * len(columns))
    convert = tuple(
        table.c[name].type.dialect_impl(_DIALECT).bind_processor(_DIALECT) for name in columns
    )
    # Names from the models only: `table.c[name]` above refuses any other.
    return f"INSERT INTO {table.name} ({names}) VALUES ({places})", convert  # noqa: S608


def insert(raw: sqlite3.Connection, table: Table, rows: Iterable[dict[str, Any]]) -> None:
    """Rows as SQLAlchemy's insert would write them (each column's type converts its value);
    columns left out get the database's default."""
    grouped: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(tuple(row), []).append(row)
    for columns, alike in grouped.items():
        sql, convert = _insert_for(table, columns)
        raw.executemany(
            sql,
            [
                tuple(
                    value if to is None else to(value)
                    for to, value in zip(convert, row.values(), strict=True)
                )
                for row in alike
            ],
        )


def write_step(
    raw: sqlite3.Connection,
    *,
    event_key: str,
    now: dt.datetime,
    read: ConversationRow | None,
    conversation: dict[str, Any],
    outbox_rows: Sequence[dict[str, Any]],
) -> None:
    """One step's writes, valid only if nothing changed since `read`: the event is still
    unseen and the row is still the one the step was computed from (optimistic: the core's
    lock keeps this process's steps of a conversation apart; this guards against others,
    such as a purge run from the command line)."""
    if not raw.execute(_CLAIM, (event_key, _stamp(now))).rowcount:
        raise AlreadySeen
    if read is None:
        insert(raw, CONVERSATIONS, [conversation])  # IntegrityError if one came meanwhile
    else:
        changed = raw.execute(
            _UPDATE_IF,
            (
                conversation["state"],
                conversation["address"],
                _stamp(conversation["updated_at"]),
                conversation["sender_key"],
                read.state,
            ),
        )
        if not changed.rowcount:
            raise Overtaken
    if outbox_rows:
        insert(raw, OUTBOX, outbox_rows)


class OutboxRow(NamedTuple):
    """An outbox row as `outbox.arrange` reads it (the columns of storage.outbox.Due)."""

    id: int
    kind: str
    channel: str
    stream: str
    priority: int
    reference: str | None
    content: bytes
    file_id: str | None
    created_at: dt.datetime
    attempts: int
    next_attempt_at: dt.datetime
    leased_until: dt.datetime | None


_DUE_COLUMNS = OutboxRow._fields
_MOMENTS = tuple(
    _DUE_COLUMNS.index(name) for name in ("created_at", "next_attempt_at", "leased_until")
)
_moment = cast(
    Callable[[str | None], dt.datetime | None],
    OUTBOX.c.created_at.type.dialect_impl(_DIALECT).result_processor(_DIALECT, None),
)


def due_rows(raw: sqlite3.Connection, channels: Sequence[str], limit: int) -> list[OutboxRow]:
    """The oldest `limit` rows of these channels that are not dead letters, read without a
    transaction (as `look`): only this process delivers, so nobody else takes them."""
    assert not raw.in_transaction
    places = ", ".join("?" * len(channels))
    sql = (
        f"SELECT {', '.join(_DUE_COLUMNS)} FROM outbox "  # noqa: S608 (names of OutboxRow)
        f"WHERE channel IN ({places}) AND dead_at IS NULL ORDER BY id LIMIT ?"
    )
    rows = []
    for found in raw.execute(sql, (*channels, limit)):
        values = list(found)
        for index in _MOMENTS:  # stored as text: the column type reads them back
            values[index] = _moment(values[index])
        rows.append(OutboxRow(*values))
    return rows


def delete_delivered(
    raw: sqlite3.Connection,
    message_id: int,
    file_id: str | None,
    opened: tuple[str, str] | None = None,
) -> None:
    """`opened`: (case reference, thread) when the message opened a new case's thread."""
    if file_id is not None:
        raw.execute(_FORGET_FILE, (file_id,))
    if opened is not None:
        reference, thread = opened
        raw.execute(_THREAD_OPENED, (thread, reference))
    raw.execute(_DELIVERED, (message_id,))


@dataclass(frozen=True)
class Write:
    """One piece of a batch, run on the database thread inside a savepoint of its own."""

    run: Callable[[sqlite3.Connection], object]
    durable: bool  # it stores what an official wrote: the batch waits for the disk


def run_batch(raw: sqlite3.Connection, writes: Sequence[Write]) -> list[BaseException | None]:
    """The writes in one transaction, each all or nothing; one COMMIT makes them durable
    together. Returns each write's outcome: None, or the error it ended in."""
    durable = any(write.durable for write in writes)
    if not durable:
        # Only delivered messages leave the outbox: a commit survives the process being
        # killed (the README's promise: at most the one message under way is sent twice);
        # only a power cut before the next fsync could bring a sent message back, to be
        # sent again, never lost.
        raw.execute("PRAGMA synchronous=NORMAL")
    try:
        return [_as_storage_error(outcome) for outcome in _in_one_transaction(raw, writes)]
    finally:
        if not durable:
            raw.execute("PRAGMA synchronous=FULL")


def _in_one_transaction(
    raw: sqlite3.Connection, writes: Sequence[Write]
) -> list[BaseException | None]:
    try:
        raw.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as error:  # locked past the busy wait, a full disk: nothing written
        return [error] * len(writes)
    outcomes: list[BaseException | None] = []
    try:
        for write in writes:
            if not raw.in_transaction:
                outcomes.append(BatchLost("the database rolled back the open batch"))
                continue
            raw.execute("SAVEPOINT step")
            try:
                write.run(raw)
            except Exception as error:
                if raw.in_transaction:  # nothing to undo where the whole batch is gone
                    raw.execute("ROLLBACK TO step")
                    raw.execute("RELEASE step")
                outcomes.append(error)
            else:
                raw.execute("RELEASE step")
                outcomes.append(None)
        # COMMIT outside a transaction would fail anyway; said plainly, it is this:
        if not raw.in_transaction:
            raise BatchLost("the database rolled back the open batch")
        raw.execute("COMMIT")
    except Exception as error:
        # Every write of the batch is gone with it, and its officials are told so.
        if raw.in_transaction:
            raw.execute("ROLLBACK")
        return [error] * len(writes)
    return outcomes


def _as_storage_error(error: BaseException | None) -> BaseException | None:
    """sqlite3's errors as SQLAlchemy raises them elsewhere in storage (the core retries an
    IntegrityError, storage.db.unreachable classifies the rest)."""
    if isinstance(error, sqlite3.Error):
        return DBAPIError.instance(None, None, error, sqlite3.Error)
    return error
