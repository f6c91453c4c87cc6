"""PostgreSQL's side of the hot path's batches (storage/batches.py): delivered messages and
small inserts of many callers in one transaction, in a few set-based statements.

Alone, each delivered message cost a pool checkout (with its pre-ping), BEGIN, two
deletions and COMMIT – round trips and Python far beyond the work itself; together they
are two deletions by `= ANY(array)` for all of them, and the inserts one executemany per
table and set of columns. The array keeps each statement's text the same whatever the
batch's size, so asyncpg prepares it once (an expanding IN would be a new statement per
size).

A batch is one transaction without savepoints: committed or failed as a whole, and every
caller in it hears which. Nothing in it is expected to fail alone: a deletion of a row that
is gone deletes nothing, and the inserted rows (a chat's message ids) have no unique column
but their serial id.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Integer,
    String,
    Table,
    any_,
    bindparam,
    delete,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql import ClauseElement

from storage.models import CASES, OUTBOX, TRANSIT_FILES
from storage.pg_step import Transaction


@dataclass(frozen=True)
class Delivered:
    """A message the platform accepted: it leaves the outbox, with its file if it had one."""

    message_id: int
    file_id: str | None
    opened: tuple[str, str] | None = None  # (case reference, thread): it opened a case's thread


@dataclass(frozen=True)
class Insert:
    table: Table
    rows: list[dict[str, Any]]


Write = Delivered | Insert


@functools.cache
def _forget_files() -> ClauseElement:
    return delete(TRANSIT_FILES).where(
        TRANSIT_FILES.c.id == any_(bindparam("ids", type_=ARRAY(String)))
    )


@functools.cache
def _delivered() -> ClauseElement:
    return delete(OUTBOX).where(OUTBOX.c.id == any_(bindparam("ids", type_=ARRAY(Integer))))


@functools.cache
def _thread_opened() -> ClauseElement:
    return (
        update(CASES)
        .where(CASES.c.reference == bindparam("opened_reference"))
        .values(thread=bindparam("opened_thread"))
    )


@functools.cache
def _insert(table: Table) -> ClauseElement:
    # Built once: SQLAlchemy then finds its compiled form in the cache at once.
    return table.insert()


async def run_batch(transaction: Transaction, writes: Sequence[Write]) -> None:
    """The writes, in the open transaction (on the driver's connection: storage/pg_step.py)."""
    delivered = [write for write in writes if isinstance(write, Delivered)]
    files = [write.file_id for write in delivered if write.file_id is not None]
    if files:
        await transaction.execute(_forget_files(), {"ids": files})
    opened = [write.opened for write in delivered if write.opened is not None]
    if opened:
        threads = [{"opened_reference": ref, "opened_thread": thread} for ref, thread in opened]
        await transaction.executemany(_thread_opened(), threads)
    if delivered:
        ids = [write.message_id for write in delivered]
        await transaction.execute(_delivered(), {"ids": ids})
    # One executemany needs the same columns in every row: grouped by table and columns.
    grouped: dict[tuple[Table, tuple[str, ...]], list[dict[str, Any]]] = {}
    for write in writes:
        if isinstance(write, Insert):
            for row in write.rows:
                grouped.setdefault((write.table, tuple(row)), []).append(row)
    for (table, columns), rows in grouped.items():
        await transaction.executemany(_insert(table), rows, columns)
