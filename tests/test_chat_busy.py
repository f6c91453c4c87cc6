"""`ChatBusy`: a chat at its platform limit waits alone, without counting as a failure."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sqlalchemy import func, select

from bot.core.orchestrator import Core
from bot.core.settings import Settings
from bot.core.types import ChatBusy, Inbound, Reply
from flows.engine import Engine
from storage.models import OutboxMessage
from storage.repository import Store
from tests.test_core import NORMAL_INTAKE, Recorder

BUSY_SECONDS = 1.5


@dataclass
class OneBusyChat:
    """A channel on which chat "slow" is at its limit once for every message."""

    name: str = "test"
    sent: list[tuple[str, str, float]] = field(default_factory=list)
    refused: int = 0
    _waiting: dict[str, float] = field(default_factory=dict)

    async def send(self, chat: str, reply: Reply) -> None:
        now = asyncio.get_running_loop().time()
        if chat == "slow" and now < self._waiting.get(reply.text, now + 1):
            self.refused += 1
            self._waiting[reply.text] = now + BUSY_SECONDS
            raise ChatBusy(BUSY_SECONDS)
        self.sent.append((chat, reply.text, now))


async def test_a_busy_chat_waits_alone_and_nothing_counts_as_failed(
    store: Store, flow_engine: Engine
) -> None:
    channel = OneBusyChat()
    core = Core(flow_engine, store, staff_room=Recorder(), settings=Settings.defaults())
    core.attach(channel)
    workers = asyncio.create_task(core.delivery.run())
    try:
        for number, line in enumerate(NORMAL_INTAKE[:3]):  # lane, consent, then stored replies
            for chat in ("slow", "fast"):
                await core.handle(Inbound("test", chat, chat, line, f"{chat}-{number}"))
        deadline = asyncio.get_running_loop().time() + 30
        while len([s for s in channel.sent if s[0] == "slow"]) < 3:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        fast = [at for chat, _, at in channel.sent if chat == "fast"]
        slow = [at for chat, _, at in channel.sent if chat == "slow"]
        assert channel.refused >= 3
        assert max(fast) < min(slow)  # the other chat was not held up
        slow_texts = [text for chat, text, _ in channel.sent if chat == "slow"]
        fast_texts = [text for chat, text, _ in channel.sent if chat == "fast"]
        assert slow_texts == fast_texts  # all of it, in order, once
        async with store.unit() as unit:
            failed = await unit.session.scalar(
                select(func.count()).where(OutboxMessage.attempts > 0)
            )
        assert failed == 0
    finally:
        workers.cancel()
        await asyncio.gather(workers, return_exceptions=True)
