"""On SQLite the delivery reads the outbox in plain `sqlite3` on the hot path's thread, without
a transaction or a lease (one process alone delivers): it must take exactly what the ORM's
`take` takes – the same messages, streams, order, contents and files, and the same word on
whether anything else waits."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from flows.messages import Reply
from storage import outbox
from storage.models import OutboxMessage
from storage.repository import Store

CHANNELS = ["console", outbox.STAFF_CHANNEL]


async def _fill(store: Store) -> None:
    async with store.unit() as unit:
        for sender in ("a", "b"):
            for number in range(2):
                await outbox.to_official(
                    unit,
                    sender_key=sender,
                    channel="console",
                    address=f"chat-{sender}",
                    reply=Reply(f"{sender}{number}"),
                )
        await outbox.to_official(
            unit,
            sender_key="c",
            channel="console",
            address="chat-c",
            reply=Reply("dringend"),
            reference="LOT-2026-0001",
            urgent=True,
            file=("bild.png", "image/png", b"\x89PNG"),
        )
        await outbox.to_staff(unit, "LOT-2026-0001", "Neuer Fall", urgent=True, opens=True)
        await outbox.to_official(
            unit, sender_key="d", channel="console", address="chat-d", reply=Reply("später")
        )
        await outbox.to_official(
            unit, sender_key="elsewhere", channel="telegram", address="t", reply=Reply("x")
        )
    async with store.unit() as unit:  # d's stream waits for a later time
        later = await unit.session.scalar(
            select(OutboxMessage.id).where(OutboxMessage.stream == outbox.official_stream("d"))
        )
        assert later is not None
        await outbox.postpone(unit, [later], unit.now + dt.timedelta(minutes=5))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_plain_read_takes_what_the_orm_takes(empty_store: Store) -> None:
    store = empty_store
    await _fill(store)
    now = store.clock()
    rows = await store.hot.due(CHANNELS, outbox.TAKE_LIMIT)
    read = outbox.arrange(store.keys, now, rows)
    async with store.unit() as unit:
        unit.now = now
        taken = await outbox.take(unit, CHANNELS)

    assert read == taken  # every field of every message, the streams' order, `more`
    # what the fill meant: urgent official first, the others by age, the staff post last;
    # d's stream waits (so something else does), the telegram message is another worker's
    first = read.streams[0][0]
    assert first.content["reply"]["text"] == "dringend" and first.file_id is not None
    assert [len(stream) for stream in read.streams] == [1, 2, 2, 1]
    assert read.streams[-1][0].kind == outbox.OPEN_THREAD
    assert read.more
    assert all(m.written_at is not None and m.written_at.tzinfo for s in read.streams for m in s)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_an_outbox_with_nothing_waiting_reads_as_drained(
    empty_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = empty_store
    async with store.unit() as unit:
        await outbox.to_official(
            unit, sender_key="a", channel="console", address="chat-a", reply=Reply("r")
        )
    read = outbox.arrange(store.keys, store.clock(), await store.hot.due(CHANNELS, 500))
    assert [len(stream) for stream in read.streams] == [1] and not read.more
    monkeypatch.setattr(outbox, "TAKE_LIMIT", 1)
    rows = await store.hot.due(CHANNELS, outbox.TAKE_LIMIT)
    assert outbox.arrange(store.keys, store.clock(), rows).more  # the limit was reached
