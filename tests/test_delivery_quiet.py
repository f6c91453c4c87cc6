"""A quiet hour: the delivery worker looks at the outbox once per message, not three times,
and still finds what another process queued without waking it."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Collection

import pytest

from bot.core import delivery
from bot.core.orchestrator import Core
from bot.core.settings import Settings
from bot.core.types import Inbound, Reply
from flows.engine import Engine
from storage import outbox
from storage.repository import Store, Unit
from tests.test_core import Recorder

ANSWERS = ["/start", "3", "1", "by", "1", "1", "1"]  # welcome, lane, consent, Land, …


async def _until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def _at_least(recorder: Recorder, count: int) -> bool:
    return len(recorder.sent) >= count


async def test_a_worker_with_nothing_left_waits_to_be_woken_instead_of_looking_again(
    store: Store, flow_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    looks: list[str] = []
    take, next_due = outbox.take, outbox.next_due

    async def counted_take(unit: Unit, channels: Collection[str]) -> outbox.Taken:
        looks.append("take")
        return await take(unit, channels)

    async def counted_next_due(unit: Unit, channels: Collection[str]) -> object:
        looks.append("next_due")
        return await next_due(unit, channels)

    monkeypatch.setattr(outbox, "take", counted_take)
    monkeypatch.setattr(outbox, "next_due", counted_next_due)
    recorder = Recorder()
    core = Core(flow_engine, store, staff_room=recorder, settings=Settings.defaults())
    core.attach(recorder)
    workers = asyncio.create_task(core.delivery.run())
    try:
        await asyncio.sleep(0.2)  # the workers' first look, with nothing there
        before = len(looks)
        for number, answer in enumerate(ANSWERS):  # one at a time, as a person writes
            await core.handle(Inbound("test", "calm", "chat-c", answer, f"e{number}"))
            await _until(functools.partial(_at_least, recorder, number + 1))
            await asyncio.sleep(0.05)  # a worker that looks again does so now
        # One look per message (replies before consent wait in memory, yet they wake the
        # worker too); looking again after each delivery, and asking when the next is due,
        # made it three.
        assert len(looks) - before <= len(ANSWERS) + 1, looks[before:]
    finally:
        workers.cancel()
        await asyncio.gather(workers, return_exceptions=True)


async def test_what_another_process_queued_goes_out_without_a_wake(
    store: Store, flow_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery, "IDLE_SECONDS", 0.3)
    recorder = Recorder()
    core = Core(flow_engine, store, staff_room=recorder, settings=Settings.defaults())
    core.attach(recorder)
    workers = asyncio.create_task(core.delivery.run())
    try:
        for number, answer in enumerate(ANSWERS[:3]):
            await core.handle(Inbound("test", "calm", "chat-c", answer, f"e{number}"))
        await _until(lambda: len(recorder.sent) >= 3)
        async with store.unit() as unit:  # as `lotse` run beside it would: nobody wakes
            await outbox.to_official(
                unit, sender_key="s", channel="test", address="chat-x", reply=Reply("Hallo")
            )
        await _until(lambda: any(chat == "chat-x" for chat, _ in recorder.sent), seconds=5.0)
    finally:
        workers.cancel()
        await asyncio.gather(workers, return_exceptions=True)


async def test_a_worker_stopped_just_as_it_is_woken_stops(
    store: Store, flow_engine: Engine
) -> None:
    """On Python 3.11 `asyncio.wait_for` loses a cancellation that arrives together with
    the event it waits for: the stopped worker ran on for ever and its stop never returned."""
    recorder = Recorder()
    core = Core(flow_engine, store, staff_room=recorder, settings=Settings.defaults())
    core.attach(recorder)
    for _ in range(20):
        workers = asyncio.create_task(core.delivery.run())
        await asyncio.sleep(0.05)  # asleep, waiting to be woken
        core.delivery.wake(["test"])
        workers.cancel()
        done, _ = await asyncio.wait([workers], timeout=5)
        assert done, "the stopped delivery worker is still running"
