"""Old buttons through the real core, on both databases: what an official's chat history could
press, and what an attacker could forge, while a deletion or a cancellation waits for its "yes".

A chat keeps every earlier question with its buttons. Pressed later, each must be refused with
a short note and the current question again, and change nothing in the database: no deletion,
no cancellation, no urgent mark, no answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy import func, select

from bot.core.orchestrator import Core
from bot.core.settings import Settings
from bot.core.types import Inbound, Pick, Reply, StaffInbound
from flows.engine import Engine
from flows.state import IntakeState
from storage import queue
from storage.models import Case, CaseItem, Conversation
from storage.repository import Store
from tests.test_core import CHANNEL, NORMAL_INTAKE, Recorder

SECOND_REPORT = ["3", "by", "1", "1", "1, 3"]  # after /neu: lane, Land, role, safe now, categories


@dataclass
class Phone:
    """One official's chat: what they type or press, and every button the chat has shown."""

    core: Core
    recorder: Recorder
    user_id: str = "official-1"
    count: int = 0
    buttons: list[tuple[str, str]] = field(default_factory=list)  # (prompt id, key), in order
    last: list[Reply] = field(default_factory=list)

    @property
    def chat(self) -> str:
        return f"chat-{self.user_id}"

    @property
    def sender(self) -> str:
        return self.core.pseudonym(CHANNEL, self.user_id)

    async def say(self, text: str) -> list[Reply]:
        return await self._send(text, None)

    async def press(self, prompt: str, *keys: str) -> list[Reply]:
        return await self._send("", Pick(prompt, keys))

    async def _send(self, text: str, pick: Pick | None) -> list[Reply]:
        self.count += 1
        before = len(self.recorder.sent)
        await self.core.handle(
            Inbound(
                CHANNEL, self.user_id, self.chat, text, f"{self.user_id}-{self.count}", pick=pick
            )
        )
        await self.core.settle()
        self.last = [reply for chat, reply in self.recorder.sent[before:] if chat == self.chat]
        for reply in self.last:
            if reply.choices:
                assert reply.prompt is not None, f"buttons without a prompt: {reply.text[:40]!r}"
            self.buttons += [(reply.prompt or "", choice.key) for choice in reply.choices]
        return self.last

    @property
    def prompt(self) -> str:
        """The prompt id of the last question asked."""
        prompt = [reply.prompt for reply in self.last if reply.prompt is not None][-1]
        assert prompt is not None
        return prompt

    def earlier_buttons(self) -> list[tuple[str, str]]:
        """Every button shown so far except the current prompt's own, each once."""
        current = self.prompt
        return [button for button in dict.fromkeys(self.buttons) if button[0] != current]

    async def state(self) -> IntakeState:
        async with self.core.store.unit() as unit:
            loaded = await unit.load(self.sender)
        assert loaded is not None
        return loaded.state


@pytest.fixture
async def phone(store: Store, flow_engine: Engine) -> AsyncIterator[Phone]:
    recorder = Recorder()
    core = Core(flow_engine, store, staff_room=recorder, settings=Settings.defaults())
    core.attach(recorder)
    yield Phone(core, recorder)


async def _count(store: Store, model: type) -> int:
    async with store.unit() as unit:
        return int(await unit.session.scalar(select(func.count()).select_from(model)) or 0)


async def _cases(store: Store) -> list[Case]:
    async with store.unit() as unit:
        return list(await unit.session.scalars(select(Case)))


def _stale(engine: Engine) -> str:
    return engine.texts.get("stale_pick", "de")


async def _submitted_and_a_second_report_begun(phone: Phone) -> str:
    """A submitted case (not urgent), then a second report under way; the case reference."""
    for line in [*NORMAL_INTAKE, "absenden"]:
        await phone.say(line)
    [case] = await _cases(phone.core.store)
    await phone.say("/neu")
    for line in SECOND_REPORT:
        await phone.say(line)
    return case.reference


async def _press_all_while_pending(
    phone: Phone, store: Store, engine: Engine, command: str, question: str
) -> int:
    """Start `command`, press every earlier button, and check that each changed nothing."""
    await phone.say(command)
    pending = phone.prompt
    assert pending.startswith(f"{command_prompt(command)}.")
    confirm_keys = tuple(choice.key for choice in phone.last[-1].choices)
    before = await phone.state()
    earlier = phone.earlier_buttons()
    for prompt, key in earlier:
        replies = await phone.press(prompt, key)
        assert [reply.text for reply in replies][:1] == [_stale(engine)], (prompt, key)
        assert len(replies) == 2, (prompt, key)
        again = replies[1]
        assert again.prompt == pending
        assert question in again.text
        assert tuple(choice.key for choice in again.choices) == confirm_keys
        assert await phone.state() == before, (prompt, key)
    assert await _count(store, Conversation) == 1
    [case] = await _cases(store)
    assert case.urgent is False
    assert case.status == queue.WAITING
    return len(earlier)


def command_prompt(command: str) -> str:
    return {"/loeschen": "delete-confirm", "/abbrechen": "cancel-confirm"}[command]


# -- the acceptance test ---------------------------------------------------------------------


async def test_no_earlier_button_deletes_cancels_or_marks_urgent(
    phone: Phone, store: Store, flow_engine: Engine
) -> None:
    await _submitted_and_a_second_report_begun(phone)
    lane_buttons = [(prompt, key) for prompt, key in phone.buttons if prompt.startswith("lane.")]
    assert len({prompt for prompt, _ in lane_buttons}) == 2  # one per report
    assert {key for _, key in lane_buttons} == {"danger", "talk", "report"}
    answers = (await phone.state()).answers

    delete_question = flow_engine.texts.get("delete_confirm", "de")
    pressed = await _press_all_while_pending(
        phone, store, flow_engine, "/loeschen", delete_question
    )
    assert pressed > 40
    kept = await phone.say("nein")
    assert kept[0].text == flow_engine.texts.get("delete_kept", "de")

    # Now the delete confirmation's own buttons are earlier buttons too.
    assert any(key == "delete_confirm" for _, key in phone.earlier_buttons())
    cancel_question = flow_engine.texts.get("cancel_confirm", "de")
    pressed = await _press_all_while_pending(
        phone, store, flow_engine, "/abbrechen", cancel_question
    )
    assert pressed > 40
    await phone.say("nein")

    # A second /loeschen: the first one's "Ja" is an earlier button, and refused.
    first_confirm = next(button for button in phone.buttons if button[1] == "delete_confirm")
    await _press_all_while_pending(phone, store, flow_engine, "/loeschen", delete_question)
    assert first_confirm in phone.earlier_buttons()
    await phone.say("nein")

    state = await phone.state()
    assert state.answers == answers
    assert state.pending is None
    assert await _count(store, Conversation) == 1
    [case] = await _cases(store)
    assert (case.urgent, case.status) == (False, queue.WAITING)
    # And the question now asked still takes its own button.
    assert state.step == "description"
    await phone.say("Drohungen per Mail")
    assert phone.prompt.startswith("when.")
    first = phone.last[-1].choices[0].key
    await phone.press(phone.prompt, first)
    assert (await phone.state()).answers["when"] == first


async def test_forged_picks_are_refused_without_a_crash(
    phone: Phone, store: Store, flow_engine: Engine
) -> None:
    for line in NORMAL_INTAKE[:3]:  # up to the Land question
        await phone.say(line)
    current = phone.prompt
    assert current.startswith("land.")
    serial = current.split(".")[1]
    before = await phone.state()
    forged = [
        Pick("", ("by",)),
        Pick("nonsense", ("by",)),
        Pick(f"land.{int(serial) + 1}", ("by",)),  # a future instance
        Pick(f"delete-confirm.{serial}", ("delete_confirm",)),  # no deletion is pending
        Pick(f"cancel-confirm.{serial}", ("cancel_confirm",)),
        Pick(current, ()),
        Pick(current, ("x" * 10_240,)),
        Pick("p" * 10_240, ("by",)),
        Pick(current, ("by", "be")),  # two keys for a single choice
        Pick(current, ("yes",)),  # another question's key
        Pick(current, ("Bayern",)),  # a label is not a key
        Pick(current, ("/loeschen",)),
    ]
    for pick in forged:
        replies = await phone.press(pick.prompt, *pick.keys)
        texts = [reply.text for reply in replies]
        assert texts[0] == _stale(flow_engine), pick.prompt[:20]
        assert "schiefgegangen" not in " ".join(texts)
        assert replies[1].prompt == current
        assert await phone.state() == before
    assert await _count(store, Conversation) == 1
    assert await _count(store, Case) == 0
    await phone.press(current, "by")
    assert (await phone.state()).answers["land"] == "by"


async def test_a_multiple_choice_pick_with_several_keys_is_accepted(phone: Phone) -> None:
    for line in NORMAL_INTAKE[:6]:  # up to the categories
        await phone.say(line)
    assert phone.prompt.startswith("categories.")
    await phone.press(phone.prompt, "stalking", "insult", "threat")
    state = await phone.state()
    assert state.answers["categories"] == ["insult", "threat", "stalking"]
    assert state.step == "description"


async def test_a_valid_pick_stores_exactly_what_the_typed_answer_stores(
    store: Store, flow_engine: Engine
) -> None:
    recorder = Recorder()
    core = Core(flow_engine, store, staff_room=recorder, settings=Settings.defaults())
    core.attach(recorder)
    typing, pressing = Phone(core, recorder, "typist"), Phone(core, recorder, "presser")
    await typing.say("/start")
    await pressing.say("/start")
    await typing.say("3")  # the lane: held in memory until the consent, nothing to compare
    await pressing.press(pressing.prompt, "report")
    pressed = 1
    for line in [*NORMAL_INTAKE[2:], "absenden"]:
        prompt = pressing.prompt
        step = flow_engine.questionnaire.step(prompt.rsplit(".", 1)[0])
        await typing.say(line)
        typed = await typing.state()
        if step.kind == "text":
            await pressing.say(line)
        else:
            await pressing.press(prompt, *_keys_of(step.kind, typed.answers.get(step.id)))
            pressed += 1
        mine = await pressing.state()
        assert mine.model_copy(update={"case_reference": None}) == typed.model_copy(
            update={"case_reference": None}
        ), step.id
    assert pressed > 10
    cases = await _cases(store)
    assert len(cases) == 2
    assert {case.urgent for case in cases} == {False}


def _keys_of(kind: str, answer: object) -> tuple[str, ...]:
    if kind == "summary":
        return ("submit",)
    if kind == "evidence":
        return ("done",)
    if isinstance(answer, list):
        return tuple(answer)
    assert isinstance(answer, str)
    return (answer,)


# -- after submitting: the return choice and an open case -----------------------------------


async def test_after_submitting_old_buttons_change_nothing_and_the_return_choice_is_guarded(
    phone: Phone, store: Store, flow_engine: Engine
) -> None:
    for line in [*NORMAL_INTAKE, "absenden"]:
        await phone.say(line)
    [case] = await _cases(store)
    reference = case.reference
    earlier = list(dict.fromkeys(phone.buttons))
    assert any(prompt.startswith("lane.") and key == "danger" for prompt, key in earlier)

    # The case waits: nothing is asked, so any button is an earlier one; nothing is kept.
    before = await phone.state()
    items = await _count(store, CaseItem)  # the sealed answers
    for prompt, key in earlier:
        replies = await phone.press(prompt, key)
        assert [reply.text for reply in replies] == [flow_engine.texts.get("stale_pick_gone", "de")]
    assert await phone.state() == before
    assert await _count(store, CaseItem) == items
    assert (await _cases(store))[0].urgent is False

    for staff, command in enumerate(("/uebernehmen", "/abschliessen vermittelt")):
        await phone.core.handle_staff(
            StaffInbound("console", "Berger", f"thread-{reference}", command, f"staff-{staff}")
        )
    assert (await _cases(store))[0].status == queue.CLOSED

    offer = await phone.say("Hallo, ich bin es wieder.")
    current = phone.prompt
    assert current.startswith("return-choice.")
    assert tuple(choice.key for choice in offer[-1].choices) == ("reopen", "new")
    before = await phone.state()
    items = await _count(store, CaseItem)
    for prompt, key in [*earlier, (current, "bogus"), (current, "")]:
        replies = await phone.press(prompt, key)
        assert replies[0].text == _stale(flow_engine), (prompt, key)
        assert replies[1].prompt == current
        assert replies[1].text == offer[-1].text
        assert await phone.state() == before
    assert (await _cases(store))[0].status == queue.CLOSED
    assert await _count(store, CaseItem) == items

    await phone.press(current, "reopen")
    assert (await _cases(store))[0].status == queue.WAITING
    assert (await phone.state()).pending is None
