"""Two channels on one core in one event loop: a Telegram-like one that asks to wait and has an
official who blocked the bot, and a Matrix-like one that is also the staff room, whose check
fails at first. Nothing is lost or duplicated, order holds per official and per thread, the
blocked official becomes a dead letter the staff room hears of, and one channel's waits do
not hold up the other.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from sqlalchemy import func, select

from bot.core.orchestrator import Core
from bot.core.settings import Settings
from bot.core.types import (
    Inbound,
    PermanentFailure,
    Pick,
    Reply,
    RetryAfter,
    StaffInbound,
    StaffMember,
)
from flows.engine import Engine
from storage.keyfile import UnlockedKey
from storage.keyring import CounsellorEntry, add
from storage.models import AuditEntry, Case, OutboxMessage
from storage.repository import Store
from storage.sealing import PrivateKey
from tests.test_core import NORMAL_INTAKE, Recorder

REFERENCE = re.compile(r"L-\d{4}-\d{4}")
INTAKE = [*NORMAL_INTAKE, "absenden"]
LUTZ = "@lutz:example.org"
TELEGRAM_PAUSE = 8.0  # what the Telegram-like platform asks for, once (a wide margin under load)


def _normal(text: str) -> str:
    """Without what differs between officials: the case reference and the queue position."""
    return re.sub(r"Platz \d+", "Platz N", REFERENCE.sub("L-REF", text))


@dataclass
class FakeTelegram:
    """Sends fail as a Telegram bot's do: 429 once for the whole bot, 403 for a blocked chat."""

    name: str = "telegram"
    sent: dict[str, list[str]] = field(default_factory=dict)
    replies: dict[str, list[Reply]] = field(default_factory=dict)
    asked_to_wait_at: float | None = None
    blocked: set[str] = field(default_factory=set)
    attempts: int = 0

    async def send(self, chat: str, reply: Reply) -> None:
        if chat in self.blocked:
            raise PermanentFailure("blocked by the user")
        self.attempts += 1
        if self.attempts == 5 and self.asked_to_wait_at is None:
            self.asked_to_wait_at = asyncio.get_running_loop().time()
            raise RetryAfter(TELEGRAM_PAUSE)
        self.sent.setdefault(chat, []).append(reply.text)
        self.replies.setdefault(chat, []).append(reply)


@dataclass
class FakeMatrix:
    """Officials' direct rooms and the staff room with its threads; the room check can fail."""

    name: str = "matrix"
    end_to_end_encrypted: bool = True
    sent: dict[str, list[str]] = field(default_factory=dict)
    threads: dict[str, list[str]] = field(default_factory=dict)
    room: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=lambda: ["a stranger is in the room"])
    finished_at: dict[str, float] = field(default_factory=dict)

    async def send(self, chat: str, reply: Reply) -> None:
        self.sent.setdefault(chat, []).append(reply.text)
        self.finished_at[chat] = asyncio.get_running_loop().time()

    async def check(self) -> list[str]:
        return list(self.problems)

    async def open_thread(self, reference: str, text: str, urgent: bool) -> str:
        thread = f"$root-{reference}"
        self.threads[thread] = [text]
        return thread

    async def post(self, thread: str | None, text: str) -> None:
        if thread is None:
            self.room.append(text)
        else:
            self.threads[thread].append(text)

    def is_author(self, member: StaffMember, author: str) -> bool:
        return member.handles.get(self.name) == author

    def mention(self, member: StaffMember) -> str:
        return member.display_name


async def _expected_replies(flow_engine: Engine, store: Store) -> tuple[list[str], list[int]]:
    """What one official gets for the normal intake, from a core that sends synchronously,
    and how many replies they have before each of their messages."""
    recorder = Recorder()
    core = Core(flow_engine, store, staff_room=recorder, settings=Settings.defaults())
    core.attach(recorder)
    before = []
    for number, line in enumerate(INTAKE):
        before.append(len(recorder.sent))
        await core.handle(Inbound("test", "reference-run", "chat", line, f"ref-{number}"))
        await core.settle()
    return [_normal(text) for text in recorder.texts()], before


def _button(line: str, last: Reply | None) -> Pick | None:
    """The button a person presses instead of typing `line`, where the last question has one."""
    numbers = [part.strip() for part in line.split(",")]
    if last is None or not last.choices or last.prompt is None:
        return None
    if not all(number.isdigit() and 1 <= int(number) <= len(last.choices) for number in numbers):
        return None
    if len(numbers) > 1 and not last.multiple:
        return None
    return Pick(last.prompt, tuple(last.choices[int(number) - 1].key for number in numbers))


async def _until(condition: Callable[[], bool], seconds: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_two_channels_one_core(
    store: Store, flow_engine: Engine, counsellor_key: UnlockedKey
) -> None:
    expected, replies_before = await _expected_replies(flow_engine, store)
    telegram, matrix = FakeTelegram(blocked={"te-blocked"}), FakeMatrix()
    core = Core(flow_engine, store, staff_room=matrix, settings=Settings.defaults())
    core.attach(telegram)
    core.attach(matrix)
    core.delivery.room_recheck = dt.timedelta(seconds=0.5)
    workers = asyncio.create_task(core.delivery.run())

    async def official(channel: str, user: str) -> None:
        for number, line in enumerate(INTAKE):
            await core.handle(
                Inbound(channel, user, f"{channel[:2]}-{user}", line, f"{user}-{number}")
            )

    presses: list[Pick] = []

    async def presses_buttons(user: str) -> None:
        """A Telegram official who waits for each question and taps its buttons."""
        chat = f"te-{user}"
        for number, line in enumerate(INTAKE):
            wanted = replies_before[number]
            await _until(lambda: len(telegram.replies.get(chat, [])) >= wanted)  # noqa: B023
            got = telegram.replies.get(chat, [])
            pick = _button(line, got[-1] if got else None)
            presses.extend([pick] if pick else [])
            text = "" if pick else line
            await core.handle(Inbound("telegram", user, chat, text, f"{user}-{number}", pick=pick))

    people = [("telegram", "a"), ("telegram", "blocked"), ("matrix", "c"), ("matrix", "d")]
    typing = asyncio.gather(*(official(channel, user) for channel, user in people))
    await asyncio.gather(typing, presses_buttons("b"))
    assert len(presses) >= 8 and any(len(pick.keys) > 1 for pick in presses)
    try:
        # Matrix is not held up by Telegram's pause: its officials are done before it ends.
        await _until(
            lambda: all(len(matrix.sent.get(f"ma-{u}", [])) == len(expected) for u in "cd")
        )
        assert telegram.asked_to_wait_at is not None
        matrix_done = max(matrix.finished_at.values())
        assert matrix_done < telegram.asked_to_wait_at + TELEGRAM_PAUSE
        assert not all(len(telegram.sent.get(f"te-{u}", [])) == len(expected) for u in "ab")

        await _until(
            lambda: all(len(telegram.sent.get(f"te-{u}", [])) == len(expected) for u in "ab")
        )
        # every reply once, in order, on both channels
        for chat in ("te-a", "te-b"):
            assert [_normal(text) for text in telegram.sent[chat]] == expected
        for chat in ("ma-c", "ma-d"):
            assert [_normal(text) for text in matrix.sent[chat]] == expected
        assert "te-blocked" not in telegram.sent

        # the staff room's check failed: no case details were posted; then it passes
        assert matrix.threads == {}

        def held() -> list[str]:  # the reference and an alert only, once per case
            return [text for text in matrix.room if text.startswith("‼️ Neuer Fall L-")]

        await _until(lambda: len(held()) == 5)
        assert len({REFERENCE.search(text)[0] for text in held()}) == 5  # type: ignore[index]
        matrix.problems.clear()
        core.delivery.wake(["matrix"])
        await _until(lambda: len(matrix.threads) == 5, seconds=60)
        # the blocked official's replies are dead letters, audited and noticed in the room
        async with store.unit() as unit:
            dead = await unit.session.scalar(
                select(func.count()).where(OutboxMessage.dead_at.is_not(None))
            )
            failures = await unit.session.scalar(
                select(func.count()).where(AuditEntry.action == "delivery failed")
            )
        # the two replies before consent (the lanes, the privacy notice) were never stored:
        # they failed in memory, logged only
        assert dead == len(expected) - 2 and failures == dead

        def notices() -> list[str]:
            return [
                text
                for texts in [matrix.room, *matrix.threads.values()]
                for text in texts
                if "nicht zugestellt" in text
            ]

        await _until(lambda: len(notices()) == 1)  # once, not one per message
        await asyncio.sleep(0.5)
        assert len(notices()) == 1
        assert not any("blocked" in text or "te-" in text for text in notices())

        # a claim and a relay, in thread order, on the staff room's channel
        async with store.unit() as unit:  # a case of an official on Telegram, staff on Matrix
            case = (
                await unit.session.scalars(
                    select(Case)
                    .where(Case.channel == "telegram")
                    .where(Case.sender_key != core.pseudonym("telegram", "blocked"))
                    .order_by(Case.id)
                )
            ).first()
            assert case is not None and case.thread is not None
        thread = case.thread
        async with store.unit() as unit:
            await add(unit, counsellor_key, CounsellorEntry("Lutz", "L. Lutz", (("matrix", LUTZ),)),
                      PrivateKey.generate().public_key())  # fmt: skip
        for number, text in enumerate(["/uebernehmen", "Erste Frage", "Zweite Frage"]):
            await core.handle_staff(StaffInbound("matrix", LUTZ, thread, text, f"s-{number}"))
        await _until(lambda: len(matrix.threads[thread]) >= 2)
        assert matrix.threads[thread][-1].startswith("L. Lutz hat den Fall übernommen.")
        sent = telegram.sent if case.channel == "telegram" else matrix.sent

        def relayed() -> list[str]:
            return [text for texts in sent.values() for text in texts if "L. Lutz:" in text]

        await _until(lambda: len(relayed()) == 2)
        assert relayed() == ["L. Lutz: Erste Frage", "L. Lutz: Zweite Frage"]
    finally:
        workers.cancel()
        with pytest.raises(asyncio.CancelledError):
            await workers
