"""A conversation row that no longer opens (damaged disk, tampering) is set aside with a
content-free alert instead of answering every later message with "technical error"."""

from __future__ import annotations

from sqlalchemy import select, update

from bot.core.orchestrator import Core
from bot.core.settings import Settings
from flows.engine import Engine
from storage.models import AuditEntry, Conversation
from storage.repository import Store
from tests.test_core import NORMAL_INTAKE, Official, Recorder

TECHNICAL = "Entschuldigung, bei mir ist gerade etwas schiefgegangen."


async def _damage(store: Store, official: Official) -> None:
    sender = official.core.pseudonym("test", official.user_id)
    async with store.unit() as unit:
        state = await unit.session.scalar(
            select(Conversation.state).where(Conversation.sender_key == sender)
        )
        assert state is not None
        flipped = state[:-1] + bytes([state[-1] ^ 1])
        await unit.session.execute(
            update(Conversation).where(Conversation.sender_key == sender).values(state=flipped)
        )


def _official(store: Store, flow_engine: Engine) -> tuple[Official, Recorder]:
    recorder = Recorder()
    core = Core(flow_engine, store, staff_room=recorder, settings=Settings.defaults())
    core.attach(recorder)
    return Official(core, recorder), recorder


async def test_a_damaged_intake_is_set_aside_and_the_official_can_start_again(
    store: Store, flow_engine: Engine
) -> None:
    official, recorder = _official(store, flow_engine)
    for line in NORMAL_INTAKE[:5]:
        await official.say(line)
    await _damage(store, official)

    replies = await official.say("ein Wort")
    assert replies[0].startswith("Entschuldigung: Ihre bisherigen Antworten konnte ich nicht")
    assert not any(TECHNICAL in reply for reply in replies)
    assert [text for thread, text in recorder.room if thread is None] == [
        "Hinweis für den Betrieb: Ein laufendes Gespräch war nicht mehr lesbar und wurde "
        "beiseitegelegt; die Person wurde gebeten, neu zu beginnen (Prüfprotokoll: "
        "„conversation quarantined“)."
    ]
    again = await official.say("/start")  # no longer stuck: a fresh welcome
    assert "Was möchten Sie tun?" in again[0]
    async with store.unit() as unit:
        actions = list(await unit.session.scalars(select(AuditEntry.action)))
        kept = list(await unit.session.scalars(select(Conversation.sender_key)))
    assert "conversation quarantined" in actions
    assert len(kept) == 1 and kept[0].startswith("quarantine-")  # kept for the operator


async def test_with_an_open_case_the_official_goes_on_with_it(
    store: Store, flow_engine: Engine
) -> None:
    official, recorder = _official(store, flow_engine)
    for line in [*NORMAL_INTAKE, "absenden"]:
        replies = await official.say(line)
    reference = next(word for reply in replies for word in reply.split() if word.startswith("L-"))
    reference = reference.rstrip(".,")
    await _damage(store, official)

    replies = await official.say("Noch etwas: er stand wieder vor dem Rathaus.")
    assert replies[0] == (
        f"Entschuldigung: Ein Teil unseres Gesprächs war auf meiner Seite nicht mehr lesbar. "
        f"Ihr Fall {reference} ist davon nicht betroffen – schreiben Sie einfach weiter. "
        "In akuter Gefahr: 110."
    )
    assert "Danke, Ihre Nachricht ist bei Ihrem Fall gespeichert" in replies[1]
    assert any(thread == f"thread-{reference}" and "nicht mehr lesbar" in text
               for thread, text in recorder.room)  # fmt: skip
    later = await official.say("Und noch etwas.")
    assert "Danke, Ihre Nachricht ist bei Ihrem Fall gespeichert" in later[0]
