"""The core in-process, on both databases: consent before storage, dedupe, locks, effects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy import func, select

from bot.core.orchestrator import Core
from bot.core.settings import Settings
from bot.core.types import Attachment, Inbound, Reply, StaffMember
from flows.engine import Engine
from storage.models import Case, Conversation, ProcessedEvent, StoredBlob
from storage.repository import Store

CHANNEL = "test"


@dataclass
class Recorder:
    """Stands in for a channel's one send function and for the staff room."""

    name: str = CHANNEL
    end_to_end_encrypted: bool = True
    sent: list[tuple[str, Reply]] = field(default_factory=list)
    posts: list[tuple[str, str, bool]] = field(default_factory=list)  # new cases' threads
    room: list[tuple[str | None, str]] = field(default_factory=list)  # later posts: thread, text
    problems: list[str] = field(default_factory=list)  # what the staff room check reports
    # The platform the staff room lives on: None as in the terminal (authors are names),
    # else authors are the members' handles on that platform.
    staff_platform: str | None = None

    async def send(self, chat: str, reply: Reply) -> None:
        self.sent.append((chat, reply))

    async def check(self) -> list[str]:
        return list(self.problems)

    async def open_thread(self, reference: str, text: str, urgent: bool) -> str:
        self.posts.append((reference, text, urgent))
        return f"thread-{reference}"

    async def post(self, thread: str | None, text: str) -> None:
        self.room.append((thread, text))

    def is_author(self, member: StaffMember, author: str) -> bool:
        if self.staff_platform is not None:
            return member.handles.get(self.staff_platform) == author
        return author.casefold() in (member.name.casefold(), member.display_name.casefold())

    def mention(self, member: StaffMember) -> str:
        return f"@{member.display_name}"

    def texts(self) -> list[str]:
        return [reply.text for _, reply in self.sent]


@dataclass
class Official:
    core: Core
    recorder: Recorder
    user_id: str = "platform-user-1"
    count: int = 0

    async def say(
        self, text: str, event_id: str | None = None, files: tuple[Attachment, ...] = ()
    ) -> list[str]:
        self.count += 1
        before = len(self.recorder.sent)
        await self.core.handle(
            Inbound(
                channel=CHANNEL,
                user=self.user_id,
                chat=f"chat-{self.user_id}",
                text=text,
                event_id=event_id or f"{self.user_id}-{self.count}",
                attachments=files,
            )
        )
        await self.core.settle()
        return [reply.text for _, reply in self.recorder.sent[before:]]


@pytest.fixture
async def official(store: Store, flow_engine: Engine) -> AsyncIterator[Official]:
    recorder = Recorder()
    core = Core(flow_engine, store, staff_room=recorder, settings=Settings.defaults())
    core.attach(recorder)
    yield Official(core, recorder)


async def _rows(store: Store, model: type) -> int:
    async with store.unit() as unit:
        return int(await unit.session.scalar(select(func.count()).select_from(model)) or 0)


# The report lane: lane, consent, Land, role, safe now, categories, description, when,
# where, place, municipality, link to the office, perpetrator, how many, family, evidence,
# police, help, contact (the summary's "absenden" is added where it is sent).
NORMAL_INTAKE = [
    "/start", "3", "1", "by", "1", "1", "1, 3", "CANARY-DESCRIPTION wrote threats", "1",
    "offline", "home", "Musterstadt", "1", "1", "1", "nein", "fertig", "nein", "1", "1",
]  # fmt: skip


async def test_nothing_is_stored_before_consent(official: Official, store: Store) -> None:
    replies = await official.say("Hallo")
    assert "Was möchten Sie tun?" in replies[0]
    replies = await official.say("3")  # a lane, held in memory only
    assert "einverstanden" in replies[-1].lower()
    await official.say("2")  # decline
    await official.say("/sprache en")
    await official.say("file> x", files=(Attachment("x.png", "image/png", b"PNG-CANARY"),))
    for model in (Conversation, ProcessedEvent, StoredBlob, Case):
        assert await _rows(store, model) == 0, model.__tablename__


async def test_consent_starts_storage_and_the_intake_survives_a_new_core(
    official: Official, store: Store, flow_engine: Engine
) -> None:
    for line in NORMAL_INTAKE[:7]:
        await official.say(line)
    assert await _rows(store, Conversation) == 1
    # A new core on the same database: what a restart looks like.
    recorder = Recorder()
    core = Core(flow_engine, store, staff_room=recorder, settings=Settings.defaults())
    core.attach(recorder)
    again = Official(core, recorder, count=100)
    replies = await again.say("/start")
    assert "Willkommen zurück" in replies[0]
    assert "Frage 5 von" in replies[1]  # the description, after Land, role, safe now, categories


async def test_a_redelivered_event_is_answered_once(official: Official) -> None:
    await official.say("/start", event_id="e1")
    await official.say("3", event_id="e2")
    await official.say("1", event_id="e3")
    first = await official.say("by", event_id="e4")
    again = await official.say("by", event_id="e4")
    assert first and not again


async def test_a_redelivered_event_is_answered_once_after_a_restart(
    official: Official, store: Store, flow_engine: Engine
) -> None:
    await official.say("/start", event_id="e1")
    await official.say("3", event_id="e2")
    await official.say("1", event_id="e3")  # consent: from here on stored
    recorder = Recorder()
    core = Core(flow_engine, store, staff_room=recorder, settings=Settings.defaults())
    core.attach(recorder)
    assert await Official(core, recorder).say("1", event_id="e3") == []


async def test_concurrent_messages_of_one_official_do_not_interleave(
    official: Official, store: Store
) -> None:
    await official.say("/start")
    await official.say("3")
    await official.say("1")
    # Two answers at once: the lock makes them two steps, the second sees the first.
    await asyncio.gather(official.say("by"), official.say("1"))
    async with store.unit() as unit:
        loaded = await unit.load(official.core.pseudonym(CHANNEL, official.user_id))
    assert loaded is not None
    assert loaded.state.answers["land"] == "by"
    assert loaded.state.answers["role"] in ("mayor_full",)
    assert loaded.state.step == "safe_now"


async def test_submission_creates_an_encrypted_case_and_posts_to_the_staff_room(
    official: Official, store: Store
) -> None:
    for line in NORMAL_INTAKE:
        await official.say(line)
    replies = await official.say("absenden")
    assert any("Ihr Aktenzeichen: L-" in reply for reply in replies)
    [(reference, text, urgent)] = official.recorder.posts
    assert reference in replies[0]
    assert "CANARY-DESCRIPTION" in text
    assert urgent is False
    async with store.unit() as unit:
        loaded = await unit.load(official.core.pseudonym(CHANNEL, official.user_id))
        case = (await unit.session.scalars(select(Case))).one()
    assert case.reference == reference
    # The working copy no longer holds the answers once they are part of the case.
    assert loaded is not None
    assert loaded.state.answers == {}
    assert loaded.state.case_reference == reference


async def test_files_are_kept_only_after_consent(official: Official, store: Store) -> None:
    shot = Attachment("shot.png", "image/png", b"PNG-CANARY")
    refused = await official.say("", files=(shot,))
    assert await _rows(store, StoredBlob) == 0
    assert "nicht gespeichert" in refused[0]
    assert "Lotse" in refused[1]  # and the welcome with the lanes
    await official.say("3")
    await official.say("1")  # consent
    accepted = await official.say("", files=(shot,))
    assert any("Datei erhalten" in reply for reply in accepted)
    assert await _rows(store, StoredBlob) == 1


async def test_delete_removes_cases_and_conversation(official: Official, store: Store) -> None:
    for line in [*NORMAL_INTAKE, "absenden"]:
        await official.say(line)
    assert await _rows(store, Case) == 1
    await official.say("/loeschen")
    replies = await official.say("ja")
    assert "gelöscht" in replies[0]
    assert await _rows(store, Case) == 0
    assert await _rows(store, Conversation) == 0


async def test_a_failure_gives_a_kind_apology_and_keeps_the_answers(
    official: Official,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await official.say("/start")
    await official.say("3")
    await official.say("1")

    def broken(*_: object) -> None:
        raise RuntimeError("boom CANARY-IN-EXCEPTION")

    monkeypatch.setattr(official.core.engine, "handle", broken)
    replies = await official.say("by")
    assert "schiefgegangen" in replies[0]
    assert "CANARY" not in replies[0]
    assert "RuntimeError" in caplog.text
    assert "CANARY-IN-EXCEPTION" not in caplog.text
    monkeypatch.undo()
    replies = await official.say("by")
    assert "Frage 2 von" in replies[0]
