"""The service: a stop lets the step in flight finish and commit, delivers, and ends in time."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sqlalchemy import func, select

from bot.core.orchestrator import Core, _Step
from bot.core.settings import Settings
from bot.core.types import Inbound, InboundSink, Reply
from bot.service import STOP_SECONDS, Service
from flows.engine import Engine
from storage.models import Conversation
from storage.repository import Store
from tests.fakes import NullRoom


class SlowCore(Core):
    """A core whose steps take a while, so a stop arrives while one is in flight."""

    async def _step_with_retry(self, inbound: Inbound, sender: str, event_key: str) -> _Step:
        self.started.set()
        await asyncio.sleep(0.5)
        return await super()._step_with_retry(inbound, sender, event_key)

    started: asyncio.Event = asyncio.Event()


@dataclass
class OneShot(NullRoom):
    """An adapter that receives the lane and the consent after the welcome, then waits."""

    name: str = "test"
    sent: list[str] = field(default_factory=list)

    async def receive(self, sink: InboundSink) -> None:
        await sink.handle(Inbound(self.name, "u1", "chat", "/start", "e1"))
        await sink.handle(Inbound(self.name, "u1", "chat", "3", "e2"))
        await sink.handle(Inbound(self.name, "u1", "chat", "1", "e3"))
        await asyncio.Event().wait()

    async def send(self, chat: str, reply: Reply) -> None:
        self.sent.append(reply.text)


async def test_a_stop_finishes_the_step_in_flight_and_delivers_its_reply(
    store: Store, flow_engine: Engine
) -> None:
    adapter = OneShot()
    core = SlowCore(flow_engine, store, adapter, Settings.defaults())
    core.started = asyncio.Event()
    service = Service(core, [adapter])
    running = asyncio.create_task(service.run(handle_signals=False))
    for _ in range(2):  # the welcome's step, the lane's step
        await core.started.wait()
        core.started.clear()
    await core.started.wait()  # the consent's step is in flight now
    loop = asyncio.get_running_loop()
    stopped_at = loop.time()
    service.stopping.set()
    await asyncio.wait_for(running, STOP_SECONDS + 5)
    assert loop.time() - stopped_at < STOP_SECONDS
    async with store.unit() as unit:  # the consent was committed, not rolled back
        count = await unit.session.scalar(select(func.count()).select_from(Conversation))
    assert count == 1
    assert any(text.startswith("Frage 1 von") for text in adapter.sent)  # and delivered
