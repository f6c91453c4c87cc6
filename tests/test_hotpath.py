"""The hot path's group commit (storage/hotpath.py) against both databases: steps that share
a transaction are still all or nothing each, and a duplicate event writes nothing; on
PostgreSQL, delivered messages share transactions, and a failed batch tells every caller."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, func, make_url, select, text
from sqlalchemy.exc import OperationalError

from bot.core.orchestrator import Core
from bot.core.settings import Settings
from flows.engine import Engine
from flows.messages import Reply
from flows.state import IntakeState
from storage import chat_messages, db, outbox, sqlite_batch
from storage.db import open_database
from storage.models import ChatMessage, Conversation, OutboxMessage, ProcessedEvent, TransitFile
from storage.repository import POOL_SLOTS, Store, open_conversation, seal_conversation
from storage.server_secret import ServerKeys
from storage.sqlite_batch import AlreadySeen, Overtaken
from tests.tcp_proxy import TcpProxy
from tests.test_core import NORMAL_INTAKE, Official, Recorder

on_postgres = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


def _conversation(store: Store, sender: str) -> dict[str, object]:
    state = IntakeState(language="de", step="role", consented=True, answers={"x": sender})
    sealed_state, sealed_address = seal_conversation(store.keys, sender, state, f"chat-{sender}")
    now = store.clock()
    return {
        "sender_key": sender,
        "channel": "console",
        "address": sealed_address,
        "state": sealed_state,
        "created_at": now,
        "updated_at": now,
    }


def _reply_row(store: Store, sender: str) -> dict[str, object]:
    return outbox.official_values(
        store.keys,
        store.clock(),
        sender_key=sender,
        channel="console",
        address=f"chat-{sender}",
        reply=Reply("r"),
    )


async def _count(store: Store, model: type) -> int:
    async with store.unit() as unit:
        return int(await unit.session.scalar(select(func.count()).select_from(model)) or 0)


async def _step(store: Store, sender: str, fail: bool = False) -> None:
    async with store.hot.step(f"event-{sender}", sender, store.clock()) as hot:
        assert not hot.seen
        hot.save(_conversation(store, sender), [])
        if fail:
            raise RuntimeError("this step fails after writing")


async def test_steps_in_one_batch_are_all_or_nothing_each(empty_store: Store) -> None:
    senders = [f"s{index}" for index in range(20)]
    results = await asyncio.gather(
        *(_step(empty_store, sender, fail=index % 5 == 0) for index, sender in enumerate(senders)),
        return_exceptions=True,
    )
    failed = {sender for sender, result in zip(senders, results, strict=True) if result}
    assert failed == {"s0", "s5", "s10", "s15"}
    async with empty_store.unit() as unit:
        rows = (await unit.session.scalars(select(Conversation))).all()
        events = set((await unit.session.scalars(select(ProcessedEvent.event_key))).all())
    assert {row.sender_key for row in rows} == set(senders) - failed
    assert events == {f"event-{sender}" for sender in set(senders) - failed}
    for row in rows:
        loaded = open_conversation(empty_store.keys, row.sender_key, row.state, row.address, "x")
        assert loaded.state.answers == {"x": row.sender_key}


async def test_a_seen_event_is_not_stepped_again(empty_store: Store) -> None:
    await _step(empty_store, "a")
    empty_store.hot.forget("a")  # read anew: the read says so
    async with empty_store.hot.step("event-a", "a", empty_store.clock()) as hot:
        assert hot.seen
    assert await _count(empty_store, ProcessedEvent) == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the kept rows are SQLite's
async def test_a_seen_event_on_a_kept_row_is_refused_at_the_write(empty_store: Store) -> None:
    await _step(empty_store, "a")
    before = await _count(empty_store, OutboxMessage)
    with pytest.raises(AlreadySeen):
        async with empty_store.hot.step("event-a", "a", empty_store.clock()) as hot:
            assert not hot.seen and hot.row is not None  # no read: the row as written
            hot.save(_conversation(empty_store, "a"), [_reply_row(empty_store, "a")])
    assert await _count(empty_store, ProcessedEvent) == 1
    assert await _count(empty_store, OutboxMessage) == before


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_row_changed_behind_the_kept_one_is_not_overwritten(empty_store: Store) -> None:
    """Another process (a purge from the command line) changed the row after this one wrote
    it: the step is refused (the core steps again on a fresh read), nothing is written."""
    await _step(empty_store, "a")
    async with empty_store.unit() as unit:
        row = await unit.session.scalar(select(Conversation))
        assert row is not None
        row.state = b"changed elsewhere"
    with pytest.raises(Overtaken):
        async with empty_store.hot.step("event-a2", "a", empty_store.clock()) as hot:
            hot.save(_conversation(empty_store, "a"), [])
    async with empty_store.unit() as unit:
        assert await unit.session.scalar(select(Conversation.state)) == b"changed elsewhere"
        events = set((await unit.session.scalars(select(ProcessedEvent.event_key))).all())
    assert events == {"event-a"}
    async with empty_store.hot.step("event-a2", "a", empty_store.clock()) as hot:
        assert hot.row is not None and hot.row.state == b"changed elsewhere"  # read anew


async def test_a_step_that_saves_nothing_leaves_nothing(empty_store: Store) -> None:
    async with empty_store.hot.step("event-b", "b", empty_store.clock()) as hot:
        assert hot.row is None
    assert await _count(empty_store, ProcessedEvent) == 0
    assert await _count(empty_store, Conversation) == 0
    assert await _count(empty_store, OutboxMessage) == 0


@pytest.mark.parametrize("count", [1, 3])
async def test_delivered_messages_leave_the_outbox(empty_store: Store, count: int) -> None:
    async with empty_store.unit() as unit:
        for index in range(count):
            await outbox.to_official(
                unit, sender_key="a", channel="console", address="c", reply=Reply(f"r{index}")
            )
    async with empty_store.unit() as unit:
        taken = [
            message
            for stream in (await outbox.take(unit, ["console"])).streams
            for message in stream
        ]
    for message in taken:
        await empty_store.hot.delivered(message.id, message.file_id)
    assert await _count(empty_store, OutboxMessage) == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # group commit is SQLite's
async def test_a_batch_the_database_rolled_back_stores_none_of_its_steps_and_the_next_works(
    empty_store: Store,
) -> None:
    """SQLite may roll back the open transaction by itself (a full disk, an I/O error): every
    step of that batch fails – so its official is asked to send again – and none of them is
    written afterwards in autocommit, behind the failed batch's back."""

    async def rolled_back_by_sqlite() -> None:
        # as SQLite does on its own after some errors, on the batch's connection
        await empty_store.hot._batched(lambda raw: raw.execute("ROLLBACK"), durable=True)

    async with empty_store._slots:  # the next batch waits: all three join it
        steps = asyncio.gather(
            _step(empty_store, "a"),
            rolled_back_by_sqlite(),
            _step(empty_store, "c"),
            return_exceptions=True,
        )
        while len(empty_store.hot._sqlite_batches.queue) < 3:  # noqa: ASYNC110 (the steps' reads come first)
            await asyncio.sleep(0.01)
    results = await steps
    assert all(isinstance(result, Exception) for result in results), results
    assert await _count(empty_store, Conversation) == 0
    assert await _count(empty_store, ProcessedEvent) == 0
    await _step(empty_store, "d")  # the same process goes on by itself
    assert await _count(empty_store, Conversation) == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_rows_written_in_plain_sqlite_read_as_the_orm_writes_them(empty_store: Store) -> None:
    """The batch writes through sqlite3 with the columns' own conversions: the stored text of
    a time is the ORM's, so comparisons in SQL (purge, the 48-hour chat log) keep working."""
    await _step(empty_store, "a")  # the hot path
    async with empty_store.unit() as unit:  # the ORM, at the same moment
        at = await unit.session.scalar(select(Conversation.updated_at))
        assert at is not None
        state = IntakeState(language="de", step="role", consented=True)
        await unit.save("b", "console", "chat-b", state)
        unit_row = await unit.session.scalar(
            select(Conversation).where(Conversation.sender_key == "b")
        )
        assert unit_row is not None
        unit_row.updated_at = at
    async with empty_store.unit() as unit:
        stored = (
            await unit.session.execute(
                text("SELECT sender_key, typeof(updated_at), updated_at FROM conversations")
            )
        ).all()
    (_, kind_a, text_a), (_, kind_b, text_b) = sorted(stored)
    assert (kind_a, text_a) == (kind_b, text_b)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_batch_whose_call_fails_tells_every_step_and_the_next_opens_anew(
    empty_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nobody waits for ever on a batch that could not run at all (say the connection could
    not be opened): each of its steps hears the error, and the next batch starts afresh."""
    real = sqlite_batch.run_batch
    calls = []

    def broken_once(raw: object, writes: object) -> object:
        calls.append(writes)
        if len(calls) == 1:
            raise sqlite3.OperationalError("unable to open database file")
        return real(raw, writes)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite_batch, "run_batch", broken_once)
    async with empty_store._slots:  # both join one batch
        steps = asyncio.gather(
            _step(empty_store, "a"), _step(empty_store, "b"), return_exceptions=True
        )
        while len(empty_store.hot._sqlite_batches.queue) < 2:  # noqa: ASYNC110 (the steps' reads come first)
            await asyncio.sleep(0.01)
    results = await asyncio.wait_for(steps, 10)
    assert all(isinstance(result, sqlite3.OperationalError) for result in results), results
    await _step(empty_store, "c")
    assert await _count(empty_store, Conversation) == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_conversation_changed_behind_the_kept_row_is_stepped_again_not_apologised(
    store: Store, flow_engine: Engine
) -> None:
    """The core keeps the row it wrote last; when another process changes it meanwhile (here
    the answers are rolled back one question, as a restore could), the next message is
    refused at the write and stepped again on a fresh read: the official hears the question
    the stored state is at, never "technical error"."""
    recorder = Recorder()
    core = Core(flow_engine, store, staff_room=recorder, settings=Settings.defaults())
    core.attach(recorder)
    official = Official(core, recorder)
    for line in NORMAL_INTAKE[:4]:
        await official.say(line)
    async with store.unit() as unit:
        earlier = await unit.session.scalar(select(Conversation.state))
    replies = await official.say(NORMAL_INTAKE[4])
    assert replies[-1].startswith("Frage 3 von")
    async with store.unit() as unit:  # behind the core's back: the state of one answer ago
        row = await unit.session.scalar(select(Conversation))
        assert row is not None and earlier is not None
        row.state = earlier
    replies = await official.say(NORMAL_INTAKE[4])  # answers the stored question again
    assert flow_engine.texts.get("technical_error", "de") not in replies
    assert replies[-1].startswith("Frage 3 von")


async def _taken(store: Store, count: int) -> list[outbox.Queued]:
    """`count` messages to officials, every third with a file, taken for delivery."""
    async with store.unit() as unit:
        for index in range(count):
            await outbox.to_official(
                unit,
                sender_key=f"s{index}",
                channel="console",
                address="c",
                reply=Reply("r"),
                file=("a.txt", "text/plain", b"x") if index % 3 == 0 else None,
            )
    async with store.unit() as unit:
        taken = [
            message
            for stream in (await outbox.take(unit, ["console"])).streams
            for message in stream
        ]
    assert len(taken) == count
    return taken


@pytest.mark.postgres
@on_postgres
async def test_many_delivered_messages_at_once_leave_the_outbox_in_few_transactions(
    empty_store: Store,
) -> None:
    taken = await _taken(empty_store, 60)
    chats = [
        chat_messages.rows(empty_store.keys, empty_store.clock(), "telegram", str(chat), [1, 2])
        for chat in range(10)
    ]
    transactions: list[object] = []

    def begun(connection: object) -> None:
        transactions.append(connection)

    engine = empty_store.database.sync_engine
    event.listen(engine, "begin", begun)
    try:
        await asyncio.wait_for(
            asyncio.gather(
                *(empty_store.hot.delivered(message.id, message.file_id) for message in taken),
                *(empty_store.hot.insert(chat_messages.TABLE, rows) for rows in chats),
            ),
            30,
        )
    finally:
        event.remove(engine, "begin", begun)
    assert await _count(empty_store, OutboxMessage) == 0
    assert await _count(empty_store, TransitFile) == 0
    assert await _count(empty_store, ChatMessage) == 20
    assert len(transactions) < 10, len(transactions)  # one per call (70) when each was alone


@pytest.mark.postgres
@on_postgres
async def test_a_batch_the_lost_database_failed_tells_every_caller_and_deletes_nothing(
    database_url: str, server_keys: ServerKeys
) -> None:
    """The server goes away while messages wait for their batch: each caller hears the error
    (none waits for ever), every message stays to be sent again, and once the server is back
    the same process goes on."""
    server = make_url(database_url)
    with TcpProxy(server.host or "127.0.0.1", server.port or 5432) as proxy:
        proxied = server.set(host="127.0.0.1", port=proxy.port)
        database = open_database(proxied.render_as_string(hide_password=False))
        store = Store(database, server_keys)
        try:
            taken = await _taken(store, 20)
            for _ in range(POOL_SLOTS):  # the next batch waits: all of them join it
                await store._slots.acquire()
            calls = asyncio.gather(
                *(store.hot.delivered(message.id, message.file_id) for message in taken),
                return_exceptions=True,
            )
            while len(store.hot._pg_batches.queue) < len(taken):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            proxy.cut()
            for _ in range(POOL_SLOTS):
                store._slots.release()
            results = await asyncio.wait_for(calls, 30)
            assert all(isinstance(result, Exception) for result in results), results
            proxy.restore()
            assert await _count(store, OutboxMessage) == len(taken)
            assert await _count(store, TransitFile) == 7
            await store.hot.delivered(taken[0].id, taken[0].file_id)
            assert await _count(store, OutboxMessage) == len(taken) - 1
            assert await _count(store, TransitFile) == 6
        finally:
            store.close()
            await database.dispose()


@pytest.mark.postgres
@on_postgres
async def test_callers_waiting_on_a_cancelled_batcher_are_told_and_the_next_call_works(
    empty_store: Store,
) -> None:
    taken = await _taken(empty_store, 5)
    for _ in range(POOL_SLOTS):  # the batcher waits for its turn with all of them queued
        await empty_store._slots.acquire()
    calls = asyncio.gather(
        *(empty_store.hot.delivered(message.id, message.file_id) for message in taken),
        return_exceptions=True,
    )
    batches = empty_store.hot._pg_batches
    while len(batches.queue) < len(taken):  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    assert batches._batcher is not None
    batches._batcher.cancel()
    results = await asyncio.wait_for(calls, 10)
    for _ in range(POOL_SLOTS):
        empty_store._slots.release()
    assert all(isinstance(result, asyncio.CancelledError) for result in results), results
    assert await _count(empty_store, OutboxMessage) == len(taken)
    await asyncio.wait_for(empty_store.hot.delivered(taken[0].id, taken[0].file_id), 10)
    assert await _count(empty_store, OutboxMessage) == len(taken) - 1


@pytest.mark.postgres
@on_postgres
async def test_a_step_on_postgres_is_two_statements_whatever_it_replies(
    empty_store: Store,
) -> None:
    """Marking the event seen with loading the row, and saving it with its replies: with BEGIN
    and COMMIT four round trips (six when each was a statement of its own). Read where they
    leave, at the driver (storage/pg_step.py sends them to asyncpg itself)."""
    sent: list[str] = []

    def logged(query: Any) -> None:
        sent.append(query.query.split(maxsplit=1)[0].rstrip(";"))

    def checked_out(_driver: object, record: Any, _proxy: object) -> None:
        record.driver_connection.add_query_logger(logged)

    def checked_in(_driver: object, record: Any) -> None:
        if record.driver_connection is not None:
            record.driver_connection.remove_query_logger(logged)

    for sender, replies in (("warm", 1), ("up", 0)):  # asyncpg's first look at the types
        async with empty_store.hot.step(sender, sender, empty_store.clock()) as hot:
            replied = [_reply_row(empty_store, sender)] * replies
            hot.save(_conversation(empty_store, sender), replied)
    pool = empty_store.database.sync_engine.pool
    event.listen(pool, "checkout", checked_out)
    event.listen(pool, "checkin", checked_in)
    try:
        for sender, replies in (("a", 2), ("b", 0), ("a", 1)):
            async with empty_store.hot.step(
                f"event-{sender}-{replies}", sender, empty_store.clock()
            ) as hot:
                assert not hot.seen
                assert (hot.row is None) == (replies != 1)  # "a" was saved by its first step
                hot.save(
                    _conversation(empty_store, sender), [_reply_row(empty_store, sender)] * replies
                )
        async with empty_store.hot.step("event-a-1", "a", empty_store.clock()) as hot:
            assert hot.seen  # a duplicate: nothing loaded, nothing written
    finally:
        event.remove(pool, "checkout", checked_out)
        event.remove(pool, "checkin", checked_in)
    # each step: the claim with the load, then the upsert with the replies (without replies,
    # the upsert alone); the duplicate: the claim with the load only, rolled back
    step = ["BEGIN", "WITH", "WITH", "COMMIT"]
    expected = [*step, "BEGIN", "WITH", "INSERT", "COMMIT", *step, "BEGIN", "WITH", "ROLLBACK"]
    assert sent == expected, sent
    assert await _count(empty_store, Conversation) == 4
    assert await _count(empty_store, OutboxMessage) == 4
    assert await _count(empty_store, ProcessedEvent) == 5


async def test_a_caller_cancelled_while_its_write_waits_does_not_take_the_write_out(
    empty_store: Store,
) -> None:
    """The write may be in a running batch already: it goes through all the same."""
    taken = await _taken(empty_store, 5)
    slots = empty_store._slots._value
    for _ in range(slots):  # the batcher waits for its turn with all of them queued
        await empty_store._slots.acquire()
    calls = [
        asyncio.create_task(empty_store.hot.delivered(message.id, message.file_id))
        for message in taken
    ]
    batches = empty_store.hot._sqlite_batches
    if empty_store.database.dialect.name != "sqlite":
        batches = empty_store.hot._pg_batches  # type: ignore[assignment]
    while len(batches.queue) < len(taken):  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    for call in calls[:3]:
        call.cancel()
    for _ in range(slots):
        empty_store._slots.release()
    results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 10)
    assert [isinstance(result, asyncio.CancelledError) for result in results] == [
        True,
        True,
        True,
        False,
        False,
    ]
    assert await _count(empty_store, OutboxMessage) == 0
    assert await _count(empty_store, TransitFile) == 0


@pytest.mark.postgres
@on_postgres
async def test_a_step_whose_connection_dies_is_told_unreachable_and_leaves_no_dead_connection(
    empty_store: Store, postgres_admin_url: str
) -> None:
    """The step talks to asyncpg itself (storage/pg_step.py): a backend killed in the middle
    of it must still read as "unreachable" (the core then waits, bot/core/outage.py) and
    the dead connection must not go back to the pool; the retried step goes through."""
    with pytest.raises(OperationalError) as raised:
        async with empty_store.hot.step("event-1", "a", empty_store.clock()) as hot:
            assert not hot.seen
            admin = await asyncpg.connect(postgres_admin_url)
            try:  # every session of the store's database
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                    empty_store.database.url.database,
                )
            finally:
                await admin.close()
            hot.save(_conversation(empty_store, "a"), [_reply_row(empty_store, "a")])
    assert db.unreachable(raised.value)
    assert raised.value.connection_invalidated
    async with empty_store.hot.step("event-1", "a", empty_store.clock()) as hot:
        assert not hot.seen  # the killed step left nothing
        hot.save(_conversation(empty_store, "a"), [_reply_row(empty_store, "a")])
    assert await _count(empty_store, Conversation) == 1
    assert await _count(empty_store, OutboxMessage) == 1


@pytest.mark.postgres
@on_postgres
async def test_a_step_on_a_pooled_connection_closed_meanwhile_is_told_unreachable(
    empty_store: Store,
) -> None:
    """The pool may hand out a connection that closed while it rested (no ping within a
    second of rest): asyncpg refuses it before any await – that too reads as unreachable
    (the core waits, it does not apologise), and the connection is not pooled again."""
    async with empty_store.database.connect() as connection:
        raw = await connection.get_raw_connection()
        await raw.driver_connection.close()  # type: ignore[union-attr]
    with pytest.raises(OperationalError) as raised:
        async with empty_store.hot.step("event-1", "a", empty_store.clock()):
            pass
    assert db.unreachable(raised.value)
    async with empty_store.hot.step("event-1", "a", empty_store.clock()) as hot:
        assert not hot.seen
        hot.save(_conversation(empty_store, "a"), [])
    assert await _count(empty_store, Conversation) == 1
