"""The bench's test rig: the real core on SQLite with a channel that does no network I/O.

Everything runs as in `lotse run` (dedupe, lock, engine, encryption, durable commit,
outbox, delivery worker) except that the channel's one send function only counts and
times what it is given. A "technical error" apology is counted as a failure.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from bot.app import App, demo_config, open_app
from bot.config import Config
from bot.core.orchestrator import Core
from bot.core.settings import Settings
from bot.core.types import Inbound, Reply
from bot.demo import demo_counsellor
from tests.fakes import NullRoom

# One whole intake, as an official types it (the shipped questionnaire, German).
ANSWERS = [  # the report lane, every question
    "/start", "3", "1", "by", "1", "1", "1, 3", "Beschreibung des Vorfalls", "1", "online",
    "1, 2", "Musterstadt", "1", "1", "1", "nein", "https://example.org/post", "fertig", "nein",
    "1,3", "1", "absenden",
]  # fmt: skip
WAIT_SECONDS = 120.0  # a reply that takes longer counts as lost


class Sink(NullRoom):
    """The official-facing channel: counts replies per chat and wakes whoever waits for one."""

    name = "bench"

    def __init__(self, apology: str, slow_down: str = "") -> None:
        self.apology = apology
        self.slow_down = slow_down
        self.replies = 0
        self.apologies = 0  # "technical error": a failure, never throughput
        self.notices: dict[str, int] = {}  # "you are writing very fast" (the core's Pace)
        self.counts: dict[str, int] = {}
        self.apologised: set[str] = set()
        self._changed: dict[str, asyncio.Event] = {}

    async def send(self, chat: str, reply: Reply) -> None:
        self.replies += 1
        self.counts[chat] = self.counts.get(chat, 0) + 1
        if reply.text == self.apology:
            self.apologies += 1
            self.apologised.add(chat)
        elif self.slow_down and reply.text == self.slow_down:
            self.notices[chat] = self.notices.get(chat, 0) + 1
        event = self._changed.get(chat)
        if event is not None:
            event.set()

    async def wait(self, chat: str, count: int, seconds: float = WAIT_SECONDS) -> bool:
        """Until `chat` got `count` replies in all (True), or an apology or time ran out."""
        event = self._changed.setdefault(chat, asyncio.Event())
        deadline = time.monotonic() + seconds
        while self.counts.get(chat, 0) < count:
            if chat in self.apologised:
                return False
            event.clear()
            try:
                await asyncio.wait_for(event.wait(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return False
        return chat not in self.apologised


@dataclass
class Rig:
    app: App
    core: Core
    sink: Sink

    async def say(self, user: str, text: str, event: str) -> None:
        await self.core.handle(Inbound("bench", user, f"chat-{user}", text, event))

    async def replies_per_answer(self, answers: list[str]) -> list[int]:
        """How many replies each answer of the script gets (one warm-up conversation)."""
        counts: list[int] = []
        for number, answer in enumerate(answers):
            before = self.sink.counts.get("chat-warm-up", 0)
            await self.say("warm-up", answer, f"warm-up-{number}")
            await self.core.settle()
            counts.append(self.sink.counts.get("chat-warm-up", 0) - before)
        return counts


@asynccontextmanager
async def running_core(
    folder: Path, *, create: bool = True, config: Config | None = None
) -> AsyncIterator[Rig]:
    """The core over the demo's SQLite database in `folder` (or `config`'s), its delivery
    worker running."""
    async with open_app(config or demo_config(folder)) as app:
        if create:
            await demo_counsellor(app)
        texts = app.engine.texts
        sink = Sink(texts.get("technical_error", "de"), texts.get("slow_down", "de"))
        core = Core(app.engine, app.store, staff_room=sink, settings=Settings.defaults())
        core.attach(sink)
        worker = asyncio.create_task(core.delivery.run())
        try:
            yield Rig(app, core, sink)
        finally:
            worker.cancel()
            with suppress(asyncio.CancelledError):
                await worker


@dataclass
class Tally:
    """Latencies of answered messages, and messages unanswered or answered with an apology."""

    latencies: list[float] = field(default_factory=list)
    failures: int = 0


async def walk(
    rig: Rig,
    user: str,
    expected: list[int],
    tally: Tally,
    *,
    pause: tuple[float, float] | None = None,
    until: float = float("inf"),
) -> None:
    """One official answers `ANSWERS` one after another (each after `pause` seconds, if
    given, until `until`); `expected`: replies per answer. Each latency runs until the
    channel holds the answer's last reply."""
    total = 0
    for number, answer in enumerate(ANSWERS[: len(expected)]):
        if pause is not None:
            await asyncio.sleep(random.uniform(*pause))
            if time.monotonic() >= until:
                return
        total += expected[number]
        started = time.perf_counter()
        await rig.say(user, answer, f"{user}-{number}")
        if await rig.sink.wait(f"chat-{user}", total):
            tally.latencies.append(time.perf_counter() - started)
        else:
            tally.failures += 1
            return  # its later answers would no longer fit the script
