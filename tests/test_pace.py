"""A flood from one sender: one polite notice, slowed down, nothing lost, others unaffected."""

from __future__ import annotations

import asyncio

from bot.core.orchestrator import Core
from bot.core.pace import Pace
from bot.core.settings import Settings
from bot.core.types import Inbound
from flows.engine import Engine
from storage.repository import Store
from tests.test_core import Recorder

SLOW_DOWN = "Sie schreiben sehr schnell"


def test_the_bucket_allows_a_burst_then_the_rate() -> None:
    now = [0.0]
    pace = Pace(burst=3, per_second=2.0, clock=lambda: now[0])
    assert [pace.take("a") for _ in range(3)] == [(0.0, False)] * 3
    assert pace.take("a") == (0.5, True)  # the first one over: wait, and say so once
    assert pace.take("a") == (1.0, False)
    assert pace.take("b") == (0.0, False)  # another sender has their own bucket
    now[0] = 10.0
    assert pace.take("a") == (0.0, False)  # refilled


async def test_a_flooding_sender_is_slowed_and_told_once_while_others_are_answered(
    store: Store, flow_engine: Engine
) -> None:
    """Handed over one after another, as every adapter does: the flood takes at least 4.5 s
    of pacing, yet the adapter is free again at once and a calm official behind the flood is
    answered while the flooder's messages still wait their turn."""
    recorder = Recorder()
    core = Core(flow_engine, store, staff_room=recorder, settings=Settings.defaults())
    core.attach(recorder)
    core.pace = Pace(burst=5, per_second=10.0)
    workers = asyncio.create_task(core.delivery.run())
    try:
        for number in range(50):
            await core.handle(
                Inbound("test", "flooder", "chat-f", f"/hilfe {number}", f"f{number}")
            )
        calm = ["/start", "3", "1", "by"]  # report lane, consent, Land: durable steps
        for number, line in enumerate(calm):
            await core.handle(Inbound("test", "calm", "chat-c", line, f"c{number}"))
        assert core._slowed  # the flood is still being slowed down
        await core.settle()
        to_calm = [reply.text for chat, reply in recorder.sent if chat == "chat-c"]
        assert len(to_calm) == len(calm) and to_calm[-1].startswith("Frage 2 von")
        assert await core.drain(30.0)
        await core.settle()
    finally:
        workers.cancel()
        await asyncio.gather(workers, return_exceptions=True)
    to_flooder = [reply.text for chat, reply in recorder.sent if chat == "chat-f"]
    notices = [text for text in to_flooder if text.startswith(SLOW_DOWN)]
    assert len(notices) == 1
    answered = [text for text in to_flooder if not text.startswith(SLOW_DOWN)]
    assert len(answered) == 2 * 50  # none lost: each /hilfe gets the overview and the question
    helps = [text for text in answered if not text.startswith("So funktioniert")]
    assert len(helps) == 50  # and in order: overview, question, overview, question, …
    assert all(text.startswith("So funktioniert") for text in answered[::2])


async def test_what_pacing_holds_back_is_taken_at_once_when_the_process_stops(
    store: Store, flow_engine: Engine
) -> None:
    """A paced message was confirmed to the platform when it was taken: stopping must not
    drop it. At one a second the flood would take 45 s; the stop's drain takes it at once."""
    recorder = Recorder()
    core = Core(flow_engine, store, staff_room=recorder, settings=Settings.defaults())
    core.attach(recorder)
    core.pace = Pace(burst=5, per_second=1.0)
    for number in range(50):
        await core.handle(Inbound("test", "flooder", "chat-f", f"/hilfe {number}", f"f{number}"))
    assert await core.drain(10.0)
    await core.settle()
    to_flooder = [reply.text for chat, reply in recorder.sent if chat == "chat-f"]
    answered = [text for text in to_flooder if not text.startswith(SLOW_DOWN)]
    assert len(answered) == 2 * 50
