"""Prompt ids and picks in the engine alone: the id scheme, and a button as the official uses it.

The scheme (flows/picks.py): `<step id>.<serial>` for a question, the consent and the
summary; `delete-confirm.<serial>`, `cancel-confirm.<serial>` and `return-choice.<serial>`
for what the conversation waits for; the serial rises whenever the official is moved on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from flows.engine import Engine
from flows.messages import Choice, Effect, Pick, Reply, UserInput
from flows.picks import picked, prompt_id
from flows.questionnaire import ID_MAX_LENGTH
from flows.state import Evidence, IntakeState
from tests.test_engine import ANSWERS, Chat
from tests.test_engine_properties import noise, valid_answer

PROMPT = re.compile(
    r"^(?:[a-z][a-z0-9_]*|delete-confirm|cancel-confirm|return-choice|talk-offer|send-now)"
    r"\.[0-9]+$"
)
CALLBACK_DATA_LIMIT = 64  # bytes, Telegram


@dataclass
class Buttons(Chat):
    """A chat whose official may also press buttons."""

    def press(self, prompt: str, *keys: str) -> str:
        return self.send(UserInput("", pick=Pick(prompt, keys)))

    def send(self, given: UserInput) -> str:
        self.outcome = self.engine.handle(self.state, given)
        self.state = self.outcome.state
        texts = [reply.text for reply in self.outcome.replies]
        self.transcript.extend(texts)
        return "\n\n".join(texts)

    @property
    def asked(self) -> Reply:
        """The last reply that asks something."""
        return [reply for reply in self.replies if reply.prompt is not None][-1]

    @property
    def prompt(self) -> str:
        prompt = self.asked.prompt
        assert prompt is not None
        return prompt

    def keys(self) -> tuple[str, ...]:
        return tuple(choice.key for choice in self.asked.choices)


@pytest.fixture
def buttons(flow_engine: Engine) -> Buttons:
    """At the privacy notice, on the report lane."""
    chat = Buttons(flow_engine)
    chat.say("Hallo")
    chat.say("Ich möchte schildern, was passiert ist")
    return chat


def stale(engine: Engine, language: str = "de") -> str:
    return engine.texts.get("stale_pick", language)


# -- the scheme -----------------------------------------------------------------------------------


def test_every_asking_reply_of_a_whole_intake_has_a_short_content_free_prompt_id(
    buttons: Buttons,
) -> None:
    seen: list[Reply] = list(buttons.replies)
    buttons.say("Einverstanden")
    seen += buttons.replies
    given = {**ANSWERS, "description": "CANARY-ANSWER Drohbriefe", "safe_now": "Nein"}
    for _ in range(40):
        if buttons.step == "summary":
            break
        buttons.say(given[buttons.step])
        seen += buttons.replies
    buttons.say("/loeschen")
    seen += buttons.replies
    buttons.say("nein")
    buttons.say("/abbrechen")
    seen += buttons.replies
    assert buttons.step == "summary"
    prompts = [reply.prompt for reply in seen if reply.prompt is not None]
    assert len(set(prompts)) > 15
    for reply in seen:
        if reply.choices:
            assert reply.prompt is not None, f"buttons without a prompt id: {reply.text[:40]!r}"
        if reply.prompt is None:
            continue
        assert PROMPT.fullmatch(reply.prompt), reply.prompt
        assert "CANARY" not in reply.prompt
        for choice in reply.choices:
            assert len(f"{reply.prompt}|{choice.key}".encode()) <= CALLBACK_DATA_LIMIT
    # The bound holds for any questionnaire that passes the check (ids of at most
    # ID_MAX_LENGTH characters) up to ten million moves, not just for the shipped one.
    assert len("delete-confirm") <= ID_MAX_LENGTH
    assert ID_MAX_LENGTH + len(".9999999") + len("|") + ID_MAX_LENGTH <= CALLBACK_DATA_LIMIT


def test_ids_name_the_step_and_rise_with_each_move(buttons: Buttons, flow_engine: Engine) -> None:
    assert buttons.transcript[0].startswith("In Gefahr?")
    assert buttons.prompt == "welcome.1"  # after "lane.0"
    buttons.say("Einverstanden")
    assert buttons.prompt == "land.2"
    buttons.say("Bremen")
    assert buttons.prompt == "role.3"
    buttons.say("/loeschen")
    assert buttons.prompt == "delete-confirm.4"
    assert buttons.keys() == ("delete_confirm", "delete_keep")
    buttons.say("nein")
    assert buttons.prompt == "role.4"  # the role question again, but not its earlier instance
    buttons.say("Kann ich mit jemandem reden?")
    assert buttons.prompt == "talk-offer.5"
    assert buttons.keys() == ("talk_switch", "talk_stay")
    buttons.say("nein")
    buttons.say("/abbrechen")
    assert buttons.prompt == "cancel-confirm.6"
    assert buttons.keys() == ("cancel_confirm", "cancel_keep")
    assert prompt_id(IntakeState.submitted(buttons.now, "L-2026-0001")) is None


def test_the_same_prompt_keeps_its_id_when_it_is_shown_again(buttons: Buttons) -> None:
    buttons.say("Einverstanden")
    first = buttons.prompt
    for text in ("Was soll das?", "/hilfe", "/sprache en", "/info", "/sprache de", "/start"):
        buttons.say(text)
        assert buttons.prompt == first, text
    buttons.press(first, "hb")  # the button of the very first message still answers
    assert buttons.answers["land"] == "hb"


def test_a_button_of_an_earlier_visit_of_the_same_step_is_refused(buttons: Buttons) -> None:
    buttons.say("Einverstanden")
    buttons.answer_until("safe_now")
    first_visit = buttons.prompt
    buttons.say("Ja")
    buttons.say("/zurueck")
    assert buttons.step == "safe_now"
    assert buttons.prompt != first_visit
    before = buttons.now.model_copy(deep=True)
    text = buttons.press(first_visit, "no")
    assert text.startswith(stale(buttons.engine))
    assert "Sind Sie gerade in Sicherheit?" in buttons.replies[1].text
    assert buttons.now == before
    assert buttons.engine.is_urgent(buttons.now) is False
    buttons.press(buttons.prompt, "no")  # the current one counts
    assert buttons.engine.is_urgent(buttons.now) is True


def test_a_correction_from_the_summary_is_a_new_instance(buttons: Buttons) -> None:
    buttons.say("Einverstanden")
    role_first = None
    for _ in range(40):
        if buttons.step == "role":
            role_first = buttons.prompt
        if buttons.step == "summary":
            break
        buttons.say(ANSWERS[buttons.step])
    summary_first = buttons.prompt
    buttons.say("3")  # the role, the third item after the lane and the Land
    assert buttons.step == "role"
    assert role_first is not None and buttons.prompt != role_first
    assert buttons.press(role_first, "mayor_honorary").startswith(stale(buttons.engine))
    assert buttons.answers.get("role") == "mayor_full"
    buttons.press(buttons.prompt, "mayor_honorary")
    assert buttons.step == "summary"
    assert buttons.answers["role"] == "mayor_honorary"
    assert buttons.prompt != summary_first
    assert buttons.press(summary_first, "submit").startswith(stale(buttons.engine))
    assert buttons.effect is None
    buttons.press(buttons.prompt, "submit")
    assert buttons.effect is Effect.SUBMIT


def test_the_serial_is_carried_into_the_submitted_state_and_a_new_report(
    buttons: Buttons, flow_engine: Engine
) -> None:
    lane_first = "lane.0"  # the buttons of the very first message
    buttons.say("Einverstanden")
    buttons.answer_until("summary")
    buttons.say("absenden")
    submitted = IntakeState.submitted(buttons.now, "L-2026-0001")
    assert submitted.prompt_serial == buttons.now.prompt_serial
    buttons.state = submitted
    buttons.say("/neu")
    assert buttons.step == "lane"
    assert buttons.prompt != lane_first
    assert buttons.press(lane_first, "danger").startswith(stale(flow_engine))
    assert "lane" not in buttons.answers


def test_a_stored_state_from_before_prompt_ids_still_loads() -> None:
    old = {
        "version": 1,
        "language": "de",
        "step": "role",
        "phase": "intake",
        "consented": True,
        "answers": {"welcome": "agree", "danger": "no"},
        "history": ["welcome", "danger"],
        "files": [],
        "pending": "delete",
        "case_reference": None,
        "previous_reference": None,
        "relay_backlog": [],
    }
    state = IntakeState.from_bytes(json.dumps(old).encode())
    assert state.pending == "delete"
    assert state.prompt_serial == 0
    assert prompt_id(state) == "delete-confirm.0"
    assert json.loads(state.to_bytes())["pending"] == "delete"  # the stored name stays


# -- confirmations ---------------------------------------------------------------------------------


@pytest.mark.parametrize("typed", ["ja", "Ja", "yes", "1", "j", "ok"])
def test_typed_yes_words_still_confirm_a_deletion(buttons: Buttons, typed: str) -> None:
    buttons.say("Einverstanden")
    buttons.say("/loeschen")
    buttons.say(typed)
    assert buttons.effect is Effect.DELETE_ALL
    assert buttons.state is None


@pytest.mark.parametrize("typed", ["nein", "no", "2", "n", "vielleicht"])
def test_anything_but_yes_keeps_everything(buttons: Buttons, typed: str) -> None:
    buttons.say("Einverstanden")
    buttons.say("/abbrechen")
    text = buttons.say(typed)
    assert buttons.effect is None
    assert "Nichts wurde gelöscht" in text
    assert buttons.now.consented


def test_a_yes_key_of_a_question_cannot_confirm_anything(buttons: Buttons) -> None:
    buttons.say("Einverstanden")
    buttons.say("/loeschen")
    current = buttons.prompt
    for keys in [("yes",), ("agree",), ("cancel_confirm",), ("delete_confirm", "delete_keep")]:
        text = buttons.press(current, *keys)
        assert text.startswith(stale(buttons.engine)), keys
        assert buttons.effect is None
        assert buttons.now.pending == "delete"
    buttons.press(current, "delete_confirm")
    assert buttons.effect is Effect.DELETE_ALL


def test_a_pick_before_there_is_any_state_is_refused(flow_engine: Engine) -> None:
    chat = Buttons(flow_engine)
    text = chat.press("lane.0", "talk")
    assert text.startswith(stale(flow_engine))
    assert "Was möchten Sie tun?" in chat.replies[1].text
    assert chat.answers == {}
    assert chat.now.consented is False


# -- a valid pick is the typed answer --------------------------------------------------------------


def _pick_for(engine: Engine, before: IntakeState, after: IntakeState) -> tuple[str, ...] | None:
    """The keys a button would send to give the answer the typed text gave; None for text."""
    if before.pending is not None:
        return None
    step = engine.questionnaire.step(before.step)
    if step.kind == "summary":
        return ("submit",)
    answer = after.answers.get(step.id)
    if step.kind == "evidence":
        assert isinstance(answer, Evidence)
        return ("later",) if answer.later else ("done",)
    if step.kind in ("choice", "yesno", "consent"):
        assert isinstance(answer, str)
        return (answer,)
    if step.kind == "multi":
        assert isinstance(answer, list)
        return tuple(reversed(answer))  # the order of the toggles does not matter
    return None


@pytest.mark.parametrize(
    ("safe", "language"), [("ja", "de"), ("nein", "de"), ("ja", "en")], ids=str
)
def test_every_valid_pick_gives_exactly_what_its_typed_equivalent_gives(
    flow_engine: Engine, safe: str, language: str
) -> None:
    state = flow_engine.new_state(language)
    given = {**ANSWERS, "safe_now": safe, "categories": "1, 3, 4", "summary": "absenden"}
    typed_answers = {**given, "welcome": "1"}
    compared = 0
    for _ in range(40):
        typed = typed_answers[state.step]
        by_text = flow_engine.handle(state, UserInput(typed))
        assert by_text.state is not None
        keys = _pick_for(flow_engine, state, by_text.state)
        if keys is not None:
            prompt = prompt_id(state)
            assert prompt is not None
            by_button = flow_engine.handle(state, UserInput("", pick=Pick(prompt, keys)))
            assert by_button == by_text, f"{state.step}: {keys}"
            compared += 1
        if by_text.effect is Effect.SUBMIT:
            break
        state = by_text.state
    assert compared >= 10
    assert by_text.effect is Effect.SUBMIT


@pytest.mark.parametrize(
    ("command", "typed", "keys"),
    [
        ("/loeschen", "ja", ("delete_confirm",)),
        ("/loeschen", "nein", ("delete_keep",)),
        ("/abbrechen", "ja", ("cancel_confirm",)),
        ("/abbrechen", "nein", ("cancel_keep",)),
    ],
)
def test_a_confirmation_button_gives_what_the_typed_word_gives(
    buttons: Buttons, command: str, typed: str, keys: tuple[str, ...]
) -> None:
    buttons.say("Einverstanden")
    buttons.say("Bremen")
    buttons.say(command)
    state, prompt = buttons.now, buttons.prompt
    by_text = buttons.engine.handle(state, UserInput(typed))
    by_button = buttons.engine.handle(state, UserInput("", pick=Pick(prompt, keys)))
    assert by_button == by_text


def test_a_multiple_choice_pick_with_several_keys(buttons: Buttons) -> None:
    buttons.say("Einverstanden")
    buttons.answer_until("categories")
    buttons.press(buttons.prompt, "stalking", "insult", "insult")
    assert buttons.answers["categories"] == ["insult", "stalking"]
    assert buttons.step == "description"


def test_text_in_a_pick_is_not_read(buttons: Buttons) -> None:
    """An adapter may put the button's label into `text`; it must not count as typed."""
    buttons.say("Einverstanden")
    buttons.send(UserInput("/loeschen Messer", pick=Pick(buttons.prompt, ("hb",))))
    assert buttons.answers["land"] == "hb"
    assert buttons.now.pending is None
    danger_reply = buttons.engine.texts.get("safety_danger", "de")
    assert not any(danger_reply in reply.text for reply in buttons.replies)
    assert buttons.now.safety == []


# -- picked(), the rule itself ---------------------------------------------------------------


def test_picked_refuses_everything_that_is_not_an_offered_choice_of_this_prompt() -> None:
    choices = (Choice("a", "A"), Choice("b", "B"), Choice("c", "C"))
    assert picked(Pick("p.1", ("b",)), "p.1", choices, multiple=False) == ["b"]
    assert picked(Pick("p.1", ("c", "a")), "p.1", choices, multiple=True) == ["a", "c"]
    assert picked(Pick("p.0", ("b",)), "p.1", choices, multiple=False) is None
    assert picked(Pick("p.1", ("b",)), None, choices, multiple=False) is None
    assert picked(Pick("p.1", ()), "p.1", choices, multiple=True) is None
    assert picked(Pick("p.1", ("a", "b")), "p.1", choices, multiple=False) is None
    assert picked(Pick("p.1", ("a", "x")), "p.1", choices, multiple=True) is None
    assert (
        picked(Pick("p.1", ("A",)), "p.1", choices, multiple=False) is None
    )  # labels are not keys
    assert picked(Pick("p.1", ("a",)), "p.1", (), multiple=False) is None  # a text question


# -- any button at any moment: a property ----------------------------------------------------


def _typed_twin(reply: Reply, keys: tuple[str, ...]) -> str:
    """What the official would type instead of pressing `keys` on `reply`: the numbers."""
    if not reply.numbered:
        return "absenden"  # the summary's one button
    order = [choice.key for choice in reply.choices]
    return ", ".join(str(order.index(key) + 1) for key in keys)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_button_either_answers_like_its_number_or_changes_nothing(
    flow_engine: Engine, data: st.DataObject
) -> None:
    engine = flow_engine
    state: IntakeState | None = None
    shown: list[Reply] = []  # every reply with buttons the chat has shown, oldest first
    for number in range(40):
        press = bool(shown) and data.draw(st.booleans(), label=f"press {number}")
        if press:
            # The latest buttons half of the time, else any the chat still shows.
            reply = data.draw(st.one_of(st.just(shown[-1]), st.sampled_from(shown)), label="reply")
            keys = tuple(
                data.draw(
                    st.lists(
                        st.sampled_from([choice.key for choice in reply.choices]),
                        min_size=1,
                        max_size=3 if reply.multiple else 1,
                        unique=True,
                    ),
                    label="keys",
                )
            )
            assert reply.prompt is not None
            outcome = engine.handle(state, UserInput("", pick=Pick(reply.prompt, keys)))
            current = prompt_id(state) if state is not None else None
            if reply.prompt != current:
                event("an earlier button")
                unchanged = state or engine.new_state()
                assert outcome.state == unchanged
                assert outcome.effect is None
                assert outcome.replies[0].text == stale(engine, unchanged.language)
            else:
                event(f"a button of the current prompt {reply.prompt.split('.')[0]}")
                assert state is not None
                typed = engine.handle(state, UserInput(_typed_twin(reply, keys)))
                assert outcome == typed
        else:
            strategy = st.one_of(noise(engine), valid_answer(engine, state, 0))
            outcome = engine.handle(state, UserInput(data.draw(strategy, label="typed").text))
        after = outcome.state
        for reply in outcome.replies:
            if reply.choices:
                assert reply.prompt is not None
            if reply.prompt is not None:  # no reply shows a button that is stale already
                assert after is not None and reply.prompt == prompt_id(after)
        shown += [reply for reply in outcome.replies if reply.choices]
        if outcome.effect is Effect.SUBMIT:
            assert after is not None
            after = IntakeState.submitted(after, "L-2026-0001")
        state = after
