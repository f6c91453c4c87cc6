"""Two instances, one active: the lease on PostgreSQL, the lock file on SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.admin import verify_audit
from bot.core.orchestrator import Core
from bot.core.settings import Settings
from bot.core.types import InboundSink, Reply
from bot.instance import InstanceError, only_instance
from bot.service import Service
from flows.engine import Engine
from storage import outbox
from storage.audit import Action
from storage.db import open_database
from storage.lease import Lease
from storage.repository import Store
from tests.conftest import ROOT
from tests.fakes import NullRoom

pytestmark = pytest.mark.postgres
SECONDS = 2.0  # a short lease, so the tests take seconds


# The lease is for PostgreSQL (SQLite has the lock file, tested below).
on_postgres = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


async def _second_store(store: Store) -> Store:
    """Another process's connection pool on the same database."""
    url = store.database.url.render_as_string(hide_password=False)
    return Store(open_database(url), store.keys)


@on_postgres
async def test_one_holder_and_a_takeover_only_after_expiry(store: Store) -> None:
    other = await _second_store(store)
    try:
        first, second = Lease(store, "one", SECONDS), Lease(other, "two", SECONDS)
        assert await first.acquire() and first.valid()
        assert not await second.acquire() and not second.valid()
        assert await first.acquire()  # renewing
        await asyncio.sleep(SECONDS + 0.3)  # "one" is paused: no renewal
        assert not first.valid()  # it stopped acting before "two" could take over
        assert await second.acquire() and second.valid()
        assert not await first.acquire()  # back, too late: it stays out
        await second.release()
        assert await first.acquire()  # a released lease is free at once
    finally:
        await other.database.dispose()


@dataclass
class Counter(NullRoom):
    """An adapter that only counts how often it was started and what it sent."""

    name: str = "test"
    started: int = 0
    sent: list[str] = field(default_factory=list)

    async def receive(self, sink: InboundSink) -> None:
        self.started += 1
        await asyncio.Event().wait()

    async def send(self, chat: str, reply: Reply) -> None:
        self.sent.append(reply.text)


class Partitioned(Lease):
    """A lease whose database is out of reach once `cut` is set (a paused or cut-off leader)."""

    cut = False

    async def acquire(self) -> bool:
        if self.cut:
            raise ConnectionError("database unreachable")
        return await super().acquire()


@on_postgres
async def test_the_standby_takes_over_and_the_old_leader_sends_nothing(
    store: Store, flow_engine: Engine
) -> None:
    other = await _second_store(store)
    first_room, second_room = Counter(), Counter()
    first_lease, second_lease = Partitioned(store, "one", SECONDS), Lease(other, "two", SECONDS)
    first = Service(
        Core(flow_engine, store, first_room, Settings.defaults()),
        [first_room],
        leadership=first_lease,
    )
    second = Service(
        Core(flow_engine, other, second_room, Settings.defaults()),
        [second_room],
        leadership=second_lease,
    )
    running = [
        asyncio.create_task(first.run(handle_signals=False)),
    ]
    try:
        await asyncio.wait_for(first.active.wait(), 10)
        running.append(asyncio.create_task(second.run(handle_signals=False)))
        await asyncio.sleep(SECONDS)
        assert first_room.started == 1 and second_room.started == 0  # exactly one acts

        first_lease.cut = True  # the leader loses the database
        began = time.monotonic()
        await asyncio.wait_for(second.active.wait(), 15)
        assert time.monotonic() - began < 15
        assert second_room.started == 1
        assert not first_lease.valid() and not first.active.is_set()

        # A reply committed while "two" is active: only "two" sends it.
        first_lease.cut = False
        async with store.unit() as unit:
            await outbox.to_official(
                unit, sender_key="s1", channel="test", address="chat", reply=Reply("Hallo")
            )
        await first.core.settle()  # the old leader tries first: it may not send
        assert first_room.sent == []
        second.core.delivery.wake(["test"])
        await _until(lambda: bool(second_room.sent) or bool(first_room.sent))
        assert (first_room.sent, second_room.sent) == ([], ["Hallo"])
    finally:
        first.stopping.set()
        second.stopping.set()
        await asyncio.wait_for(asyncio.gather(*running), 30)
        await other.database.dispose()


async def _until(condition: Callable[[], bool], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.mark.slow
def test_a_second_instance_on_the_same_sqlite_data_is_refused(tmp_path: Path) -> None:
    with only_instance(tmp_path):
        with pytest.raises(InstanceError, match="already using"), only_instance(tmp_path):
            pass
        demo = subprocess.run(
            [sys.executable, "-m", "bot", "demo", "--data-dir", str(tmp_path)],
            input="/start\n",
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            check=False,
        )
    assert demo.returncode == 1
    assert "already using" in demo.stderr and "Traceback" not in demo.stderr
    with only_instance(tmp_path):  # released with its holder
        pass


@on_postgres
async def test_a_paused_holders_locks_are_released_for_the_instance_taking_over(
    store: Store,
) -> None:
    """A process paused inside a transaction holds its locks (here the audit chain's) until
    PostgreSQL ends the transaction that waits for it; `lotse run` asks for that
    (storage.lease.IDLE_TRANSACTION_SECONDS), else the new leader would wait until the old
    one resumed."""
    url = store.database.url.render_as_string(hide_password=False)
    paused = Store(open_database(url, idle_transaction_seconds=1.0), store.keys)
    locked = asyncio.Event()

    async def hold_the_audit_lock_and_pause() -> None:
        async with paused.unit() as unit:
            await unit.audit(Action.CASE_VIEWED, "old-leader")
            locked.set()
            await asyncio.sleep(60)  # what SIGSTOP looks like to the database

    holder = asyncio.create_task(hold_the_audit_lock_and_pause())
    try:
        await asyncio.wait_for(locked.wait(), 10)
        async with store.unit() as unit:  # the new leader appends to the chain
            await asyncio.wait_for(unit.audit(Action.CASE_VIEWED, "new-leader"), 15)
    finally:
        holder.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await holder
        await paused.database.dispose()
    assert await verify_audit(store) == 0  # the paused one's entry was rolled back
