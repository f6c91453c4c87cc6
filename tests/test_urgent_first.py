"""Before consent nothing is stored, so replies wait in memory; in a burst, a message that hit
the safety layer is answered before everyone else's welcome (each chat still in its order)."""

from __future__ import annotations

from bot.core.orchestrator import Core
from bot.core.settings import Settings
from bot.core.types import Inbound
from flows.engine import Engine
from storage.repository import Store
from tests.test_core import CHANNEL, Recorder

IN_DANGER = "Er steht mit einem Messer vor meiner Tür"


async def test_a_safety_hit_before_consent_is_answered_before_the_others(
    store: Store, flow_engine: Engine
) -> None:
    recorder = Recorder()
    core = Core(flow_engine, store, staff_room=recorder, settings=Settings.defaults())
    core.attach(recorder)
    for number in range(5):  # a burst of first messages waits for the delivery worker
        await core.handle(Inbound(CHANNEL, f"u{number}", f"chat-{number}", "/start", f"e{number}"))
    await core.handle(Inbound(CHANNEL, "d", "chat-d", "/start", "ed1"))
    await core.handle(Inbound(CHANNEL, "d", "chat-d", IN_DANGER, "ed2"))
    await core.handle(Inbound(CHANNEL, "late", "chat-late", "/start", "el"))
    await core.settle()

    chats = [chat for chat, _ in recorder.sent]
    in_danger = [reply.text for chat, reply in recorder.sent if chat == "chat-d"]
    assert chats[: len(in_danger)] == ["chat-d"] * len(in_danger)  # first, all of it
    assert "Guten Tag" in in_danger[0]  # its own welcome still before …
    assert any("110" in text and "Guten Tag" not in text for text in in_danger[1:])  # … the help
    assert sorted(set(chats)) == sorted({"chat-d", "chat-late", *(f"chat-{n}" for n in range(5))})
    assert chats.index("chat-0") < chats.index("chat-late")  # the rest in arrival order
