"""PostgreSQL's hot step on the driver's own connection: two statements, nothing in between.

One official's ordinary step is two statements in one transaction: `INSERT … ON CONFLICT
DO NOTHING` into processed_events (marks the event seen; no row: a duplicate, also held
against a second process) together with `SELECT … FOR UPDATE` of the conversation; then,
after the step was computed, the upsert of the conversation together with the insert of
its replies (as arrays, so one statement text serves any number of them).

Through SQLAlchemy's asyncio layer such a step cost ~0.9 ms of the event loop's CPU – a
greenlet per call, the adapted cursor, result objects – around ~0.2 ms of asyncpg's own
work. Here the statements are still SQLAlchemy Core, compiled once for the engine's
dialect, and the connection still comes from SQLAlchemy's pool (its size, its settings,
its ping after a rest); only the four round trips (BEGIN, the two statements, COMMIT) go
to asyncpg directly, each statement prepared once per connection by asyncpg's own cache.

An error of the driver is handed on as SQLAlchemy's (`OperationalError`, marked
`connection_invalidated` when the connection was lost), so the core reads it as it reads
every other (storage.db.unreachable, bot/core/outage.py); and the connection that met it
is invalidated: it never goes back to the pool in a state nobody can vouch for.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import asyncpg
from sqlalchemy import (
    DateTime,
    Dialect,
    Integer,
    LargeBinary,
    String,
    bindparam,
    func,
    literal_column,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from storage.models import CONVERSATIONS, EVENTS, OUTBOX, ConversationRow

T = TypeVar("T")
# the connection was lost, the server is going away, or the driver lost track of the
# connection's state (a notice of its end arriving mid-statement): storage.db.unreachable
_LOST = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
)
_DRIVER_ERRORS = (asyncpg.PostgresError, *_LOST)

REPLY_COLUMNS: dict[str, Any] = {
    "kind": String,
    "channel": String,
    "stream": String,
    "priority": Integer,
    "reference": String,
    "content": LargeBinary,
    "file_id": String,
    "created_at": DateTime(timezone=True),
    "attempts": Integer,
    "next_attempt_at": DateTime(timezone=True),
}


@dataclass(frozen=True)
class _Statement:
    sql: str
    names: tuple[str, ...]  # the parameters, in the order of $1, $2, …
    # what SQLAlchemy would do to a value before the driver gets it (an ARRAY's list)
    processors: tuple[Callable[[Any], Any] | None, ...]

    def arguments(self, values: dict[str, Any]) -> list[Any]:
        return [
            value if process is None else process(value)
            for value, process in zip(
                (values[name] for name in self.names), self.processors, strict=True
            )
        ]


@dataclass(frozen=True)
class _StepStatements:
    claim_and_load: ClauseElement
    upsert: ClauseElement
    upsert_and_reply: ClauseElement


@functools.cache
def _step_statements() -> _StepStatements:
    columns = CONVERSATIONS.c
    # the event marked seen (no row: it was already, by this or another process) and the
    # conversation's row, locked; one row whatever is found
    claimed = (
        pg_insert(EVENTS)
        .values(event_key=bindparam("event_key"), seen_at=bindparam("seen_at"))
        .on_conflict_do_nothing()
        .returning(EVENTS.c.event_key)
        .cte("claimed")
    )
    locked = (
        select(columns.state, columns.address, columns.channel)
        .where(columns.sender_key == bindparam("sender_key"))
        .with_for_update()
        .cte("locked")
    )
    one = select(literal_column("1").label("one")).subquery("one")
    claim_and_load = select(
        select(func.count()).select_from(claimed).scalar_subquery().label("claimed"),
        locked.c.state,
        locked.c.address,
        locked.c.channel,
    ).select_from(one.outerjoin(locked, true()))

    saved = ("sender_key", "channel", "address", "state", "created_at", "updated_at")
    upsert = pg_insert(CONVERSATIONS).values({name: bindparam(name) for name in saved})
    changed = {key: upsert.excluded[key] for key in ("state", "address", "updated_at")}
    upsert = upsert.on_conflict_do_update(index_elements=["sender_key"], set_=changed)
    arrays = [bindparam(f"{name}s", type_=ARRAY(kind)) for name, kind in REPLY_COLUMNS.items()]
    replies = func.unnest(*arrays).table_valued(*REPLY_COLUMNS).render_derived("reply")
    upsert_and_reply = (
        OUTBOX.insert()
        .from_select(list(REPLY_COLUMNS), select(*replies.c))
        .add_cte(upsert.cte("saved"))
    )
    return _StepStatements(claim_and_load, upsert, upsert_and_reply)


@functools.lru_cache(maxsize=256)
def _compiled(
    statement: ClauseElement, dialect: Dialect, columns: tuple[str, ...] | None = None
) -> _Statement:
    """`statement` as asyncpg takes it; `columns`: an insert of just these (executemany).
    Every statement here is built once, so this is a cache lookup after the first call."""
    keys = list(columns) if columns is not None else None
    sql = cast(SQLCompiler, statement.compile(dialect=dialect, column_keys=keys))
    assert sql.positiontup is not None
    names = tuple(sql.positiontup)
    found = cast(dict[str, Callable[[Any], Any]], sql._bind_processors)
    return _Statement(str(sql), names, tuple(found.get(name) for name in names))


class Transaction:
    """A transaction on the driver connection of `connection` (checked out of the pool):
    committed by `commit()`, otherwise rolled back when the block ends."""

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection
        self._driver: asyncpg.Connection[Any] | None = None
        self._transaction: Any = None
        self._ended = False

    async def __aenter__(self) -> Transaction:
        raw = await self._connection.get_raw_connection()
        driver = cast("asyncpg.Connection[Any]", raw.driver_connection)
        self._driver = driver
        self._transaction = await self._guarded(lambda: _begun(driver), "BEGIN")
        return self

    async def __aexit__(self, *error: object) -> None:
        if self._ended:
            return
        self._ended = True
        if error[1] is not None and self._connection.invalidated:
            return  # the error came from the connection; it is gone with it
        await self._guarded(self._transaction.rollback, "ROLLBACK")

    async def claim_and_load(
        self, event_key: str, sender_key: str, now: dt.datetime
    ) -> tuple[bool, ConversationRow | None]:
        """Mark the event seen (False: it was already) and load the conversation, locked."""
        values = {"event_key": event_key, "seen_at": now, "sender_key": sender_key}
        found = await self.fetchrow(_step_statements().claim_and_load, values)
        assert found is not None  # one row whatever is found
        if not found["claimed"]:
            return False, None
        if found["state"] is None:
            return True, None
        return True, ConversationRow(found["state"], found["address"], found["channel"])

    async def write(
        self, conversation: dict[str, Any], outbox_rows: Sequence[dict[str, Any]]
    ) -> None:
        """The conversation saved, with its replies if there are any."""
        statements = _step_statements()
        if not outbox_rows:
            await self.execute(statements.upsert, conversation)
            return
        arrays = {f"{name}s": [row[name] for row in outbox_rows] for name in REPLY_COLUMNS}
        await self.execute(statements.upsert_and_reply, {**conversation, **arrays})

    async def fetchrow(self, statement: ClauseElement, values: dict[str, Any]) -> Any:
        compiled = _compiled(statement, self._connection.dialect)
        arguments = compiled.arguments(values)
        return await self._guarded(
            lambda: self._live().fetchrow(compiled.sql, *arguments), compiled.sql
        )

    async def execute(self, statement: ClauseElement, values: dict[str, Any]) -> None:
        compiled = _compiled(statement, self._connection.dialect)
        arguments = compiled.arguments(values)
        await self._guarded(lambda: self._live().execute(compiled.sql, *arguments), compiled.sql)

    async def executemany(
        self,
        statement: ClauseElement,
        rows: Sequence[dict[str, Any]],
        columns: tuple[str, ...] | None = None,
    ) -> None:
        """One statement for many rows; `columns`: an insert of just these."""
        compiled = _compiled(statement, self._connection.dialect, columns)
        arguments = [compiled.arguments(row) for row in rows]
        await self._guarded(lambda: self._live().executemany(compiled.sql, arguments), compiled.sql)

    async def commit(self) -> None:
        self._ended = True
        await self._guarded(self._transaction.commit, "COMMIT")

    def _live(self) -> asyncpg.Connection[Any]:
        assert self._driver is not None, "use the transaction in an async with block"
        return self._driver

    async def _guarded(self, call: Callable[[], Awaitable[T]], sql: str) -> T:
        """The driver's call; whatever ends it early – an error, a cancellation – leaves the
        connection in a state nobody can vouch for: it is thrown away, not pooled again.
        `call` is made in here: asyncpg refuses a closed connection before any await."""
        try:
            return await call()
        except BaseException as error:
            await asyncio.shield(self._connection.invalidate())
            if isinstance(error, _DRIVER_ERRORS):
                raise _as_sqlalchemy(error, sql) from error
            raise


async def _begun(driver: asyncpg.Connection[Any]) -> Any:
    transaction = driver.transaction()
    await transaction.start()
    return transaction


def _as_sqlalchemy(error: BaseException, sql: str) -> Exception:
    if isinstance(error, asyncpg.UniqueViolationError):
        return IntegrityError(sql, None, error)
    return OperationalError(sql, None, error, connection_invalidated=isinstance(error, _LOST))
