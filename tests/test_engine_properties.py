"""Properties of `Engine.handle` that hold after every single message, whatever is sent.

A walk is a conversation of up to 60 messages. Some walks start on the happy path
(every question answered validly, drawn at random) and then turn to noise; others
are noise from the start: every command spelling, numbers, choice labels and ids,
yes/no words, random unicode with control characters and emoji, very long texts,
blanks, links, and files. The state is carried from message to message the way the
core carries it: submitted intakes become `IntakeState.submitted`, and files sent
before consent arrive as `dropped_files`.

Unusual digits ('²', '③') and numbers of thousands of digits are part of the noise:
both once crashed the engine.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import DataObject, SearchStrategy

from flows.answers import clean
from flows.engine import Engine
from flows.messages import Effect, Outcome, UserInput
from flows.state import SUBMITTED, IntakeState, StoredFile

MAX_MESSAGES = 60
REFERENCE = "L-2026-0001"
EMOJI = ["🙂", "👍🏽", "👨\u200d👩\u200d👧", "🇩🇪", "❤️", "🔥", "\U0001f9ff"]
URLS = [
    "https://example.org/post/1",
    "http://example.org/a?b=c&d=e",
    "www.example.org/profil",
    "Hier: https://x.example/status/123456789.",
    "https://example.org/1 und https://example.org/2",
]
ARGUMENTS = ["", " de", " en", " English", " Deutsch", " xx", " 1", " ja"]
SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- what an official (or an attacker) may send -------------------------------------------------


@dataclass(frozen=True)
class Message:
    text: str
    files: int = 0  # how many files come with it


def _labels_and_ids(engine: Engine) -> list[str]:
    found: set[str] = set()
    for step in engine.questionnaire.steps.values():
        for choice in step.choices:
            found.add(choice.id)
            found.update(choice.label.values())
    return sorted(found)


@functools.cache
def noise(engine: Engine) -> SearchStrategy[Message]:
    commands = sorted(f"/{name}" for name in engine.texts.command_names())
    words = sorted(
        word
        for key in ("yes_words", "no_words", "submit_words", "done_words", "later_words")
        for word in engine.texts.word_list(key)
    )
    unicode_text = st.lists(st.one_of(st.characters(), st.sampled_from(EMOJI)), max_size=30).map(
        "".join
    )
    long_text = st.builds(
        lambda chunk, size: (chunk * (size // len(chunk) + 1))[:size],
        st.text(min_size=1, max_size=12),
        st.integers(10_000, 50_000),
    )
    text = st.one_of(
        st.builds(
            lambda name, arg: name + arg, st.sampled_from(commands), st.sampled_from(ARGUMENTS)
        ),
        st.sampled_from(["/zurük", "/hilfe@LotseBot", "/", "/ hilfe", "/xyz", "/SPRACHE"]),
        st.integers(0, 20).map(str),
        st.sampled_from(_labels_and_ids(engine)),
        st.sampled_from(words),
        st.sampled_from(["fertig", "später", "absenden"]),
        unicode_text,
        long_text,
        st.sampled_from(["", " ", "\n", "\t \r\n", "\u200b", "\x00"]),
        st.sampled_from(URLS),
        st.lists(st.integers(0, 13).map(str), min_size=2, max_size=4).map(", ".join),
    )
    files = st.sampled_from([0, 0, 0, 0, 0, 0, 1, 2])
    return st.builds(Message, text, files)


def valid_answer(
    engine: Engine, state: IntakeState | None, evidence_sent: int
) -> SearchStrategy[Message]:
    """Something that answers the current question (and so moves the intake on)."""
    if state is None:
        return st.sampled_from(["Hallo", "/start", "Guten Tag, ich werde bedroht"]).map(Message)
    if state.phase == "submitted":
        return st.just(Message("/neu"))
    if state.pending is not None:
        return st.sampled_from(["nein", "no"]).map(Message)
    step = engine.questionnaire.step(state.step)
    choices = engine.render.choices(step, state.language)
    if step.kind == "consent":
        return st.sampled_from(["Einverstanden", "ja", "1", "I agree", "agree"]).map(Message)
    if step.kind == "summary":
        return st.just(Message("absenden"))
    if step.kind in ("choice", "yesno"):
        numbers = [str(index) for index in range(1, len(choices) + 1)]
        options = [*numbers, *(choice.label for choice in choices), *(c.key for c in choices)]
        if step.kind == "yesno":
            options += ["ja", "nein", "yes", "no", "j", "n"]
        return st.sampled_from(options).map(Message)
    if step.kind == "multi":
        return st.lists(
            st.integers(1, len(choices)), min_size=1, max_size=len(choices), unique=True
        ).map(lambda picked: Message(", ".join(map(str, picked))))
    if step.kind == "text":
        return st.one_of(
            st.sampled_from(
                [
                    "Ich werde seit Wochen auf Facebook beleidigt.",
                    "Er stand mit einem Messer vor meiner Tür.",
                    "0151 2345678, vormittags",
                ]
            ),
            st.text(alphabet="abcdefghijklmnopqrstuvwxyzäöüß .,", min_size=3, max_size=60).map(
                lambda words: "Text " + words
            ),
        ).map(Message)
    if step.kind == "evidence" and evidence_sent < 3:
        return st.one_of(
            st.sampled_from(["fertig", "später", "1", "2", "done"]).map(Message),
            st.sampled_from(URLS).map(Message),
            st.just(Message("", files=1)),
            st.just(Message("Der Brief liegt in der Schublade.")),
        )
    return st.sampled_from(["fertig", "später"]).map(Message)


def after_summary(engine: Engine) -> SearchStrategy[Message]:
    return st.one_of(
        st.sampled_from(["absenden", "Absenden", "submit", "ja"]).map(Message),
        st.integers(0, 20).map(lambda number: Message(str(number))),
        noise(engine),
    )


# -- the walk -----------------------------------------------------------------------------------


@dataclass
class Walk:
    messages: int = 0
    reached_summary: bool = False
    submitted: int = 0
    discarded: int = 0
    evidence_sent: int = 0  # messages sent at the evidence step, to let happy walks move on


def _input(message: Message, state: IntakeState | None, counter: itertools.count[int]) -> UserInput:
    """What the core would hand the engine: files are stored only after consent."""
    if not message.files:
        return UserInput(message.text)
    if state is None or not state.consented:
        return UserInput(message.text, dropped_files=message.files)
    files = tuple(
        StoredFile(id=f"f{number}", name=f"f{number}.png", media_type="image/png", size=number)
        for number in (next(counter) for _ in range(message.files))
    )
    return UserInput(message.text, files=files)


def walk(engine: Engine, data: DataObject, happy: bool) -> Walk:
    """One conversation: optionally every question answered validly, then up to 60 messages."""
    seen = Walk()
    state: IntakeState | None = None
    counter = itertools.count(1)

    def send(strategy: SearchStrategy[Message]) -> IntakeState | None:
        message = data.draw(strategy, label=f"message {seen.messages + 1}")
        if state is not None and state.step == "evidence":
            seen.evidence_sent += 1
        seen.messages += 1
        return _step(engine, state, _input(message, state, counter), seen)

    summary = engine.questionnaire.summary.id
    if happy:
        while seen.messages < MAX_MESSAGES and (state is None or state.step != summary):
            state = send(valid_answer(engine, state, seen.evidence_sent))
            if seen.submitted:  # the danger lane sends without a summary
                break
        assert seen.reached_summary or seen.submitted, (
            "valid answers to every question must lead to the summary or send the intake"
        )
    # How noisy the rest is: one valid answer for every `noisy` random messages, roughly.
    noisy = data.draw(st.sampled_from([1, 3, 8]), label="noise per valid answer")
    for _ in range(data.draw(st.integers(0, MAX_MESSAGES - seen.messages), label="messages")):
        if seen.reached_summary and data.draw(st.booleans(), label="near the end"):
            strategy = after_summary(engine)
        else:
            valid = valid_answer(engine, state, seen.evidence_sent)
            strategy = st.one_of(*[noise(engine)] * noisy, valid)
        state = send(strategy)
    return seen


def _step(
    engine: Engine, before: IntakeState | None, given: UserInput, seen: Walk
) -> IntakeState | None:
    """One message, and every property that must hold after it; returns the state to keep."""
    snapshot = before.model_dump() if before is not None else None

    outcome = engine.handle(before, given)  # never raises

    if before is not None:
        assert before.model_dump() == snapshot, "handle mutated the state it was given"
    _check_replies(engine, outcome)
    after = outcome.state
    if after is not None:
        assert IntakeState.from_bytes(after.to_bytes()) == after
        _check_position(engine, after)
        if not after.consented:  # (the core keeps such a state in memory only)
            assert set(after.answers) <= {_lane_step(engine)}, "answers before consent"
            assert after.files == [], "files stored before consent"

    if outcome.effect in (Effect.DISCARD, Effect.DELETE_ALL):
        assert after is None
        assert before is not None
        expected = "cancel" if outcome.effect is Effect.DISCARD else "delete"
        assert before.pending == expected, "destructive effect without a confirmation"
        seen.discarded += 1
        event("cancelled or deleted")
        return None

    assert after is not None
    if outcome.effect is Effect.SUBMIT:
        assert before is not None
        _check_submission(engine, before, after)
        seen.submitted += 1
        event("submitted")
        return IntakeState.submitted(after, REFERENCE)

    assert outcome.effect is None
    _check_answers_kept(engine, before, after)
    if (
        before is not None
        and before.phase == after.phase == "intake"
        and before.pending is None
        and not clean(given.text).startswith("/")
    ):
        # Files, once stored, stay attached. (Those that come with a command, or while
        # a confirmation is pending, are dropped: test_file_sent_with_a_command_is_kept.)
        assert after.files[: len(before.files)] == before.files
        assert len(after.files) == len(before.files) + len(given.files)
    if after.step == engine.questionnaire.summary.id and after.phase == "intake":
        seen.reached_summary = True
    return after


def _check_replies(engine: Engine, outcome: Outcome) -> None:
    if outcome.effect is Effect.SUBMIT:
        # The core sends the confirmation; the engine's own replies may be empty.
        assert outcome.state is not None
        replies = [*outcome.replies, *engine.confirmation(outcome.state, REFERENCE, "Mo–Fr")]
    else:
        replies = outcome.replies
    assert replies, "no reply at all"
    for reply in replies:
        assert reply.text.strip(), "an empty reply"
        for choice in reply.choices:
            assert choice.key
            assert choice.label.strip()


def _check_position(engine: Engine, state: IntakeState) -> None:
    if state.phase == "submitted":
        assert state.step == SUBMITTED
        return
    assert state.step in engine.questionnaire.steps, f"unknown step {state.step!r}"
    assert engine.questionnaire.step(state.step).kind != "info", "waiting on an info step"
    assert state.language in engine.questionnaire.meta.languages


def _check_answers_kept(engine: Engine, before: IntakeState | None, after: IntakeState) -> None:
    """No accepted answer is lost; only the question just asked may change its answer."""
    old = before.answers if before is not None else {}
    if before is not None and before.phase == "submitted" and after.phase == "intake":
        # /neu: a fresh intake, at most with the consent given before
        consents = {
            step.id for step in engine.questionnaire.steps.values() if step.kind == "consent"
        }
        assert set(after.answers) <= consents
        assert after.case_reference is None
        return
    assert set(old) <= set(after.answers), f"answers lost: {set(old) - set(after.answers)}"
    current = before.step if before is not None else None
    # The lane changes to talk from elsewhere when the official asks for a person and
    # accepts the offer (or asks before consenting).
    may_switch = (
        before is not None
        and before.phase == "intake"
        and (before.pending == "talk" or engine.questionnaire.step(before.step).kind == "consent")
    )
    for step_id, value in after.answers.items():
        if step_id == _lane_step(engine) and may_switch and value == "talk":
            continue
        if step_id != current:
            assert step_id in old and old[step_id] == value, f"{step_id} changed from elsewhere"


def _lane_step(engine: Engine) -> str | None:
    lanes = engine.questionnaire.lanes
    return lanes.step if lanes is not None else None


def _check_submission(engine: Engine, before: IntakeState, after: IntakeState) -> None:
    step = engine.questionnaire.step(before.step)
    assert step.kind == "summary" or step.sends or before.pending == "send_now", (
        "submitted from outside the summary, a step that sends, or the offer to send now"
    )
    assert after.phase == "submitted"
    assert after.consented
    path = {step.id for step in engine.questionnaire.path(after.answers)}
    answered = set(before.answers) | ({step.id} if step.sends else set())
    assert set(after.answers) == path & answered
    for step_id, value in after.answers.items():
        if step_id in before.answers:
            assert before.answers[step_id] == value, f"{step_id} submitted with another value"


# -- the tests ----------------------------------------------------------------------------------


@SETTINGS
@given(data=st.data())
def test_every_message_keeps_the_invariants(flow_engine, data):
    happy = data.draw(st.booleans(), label="starts on the happy path")
    seen = walk(flow_engine, data, happy)
    kind = "happy path, then noise" if happy else "noise"
    event(f"{kind}: reached the summary" if seen.reached_summary else f"{kind}: no summary")
    event(f"{kind}: submitted" if seen.submitted else f"{kind}: not submitted")


@settings(SETTINGS, max_examples=60)
@given(data=st.data())
def test_happy_walks_in_english(flow_engine, data):
    """The same properties with the whole conversation in English."""
    state = flow_engine.handle(None, UserInput("/language en")).state
    assert state is not None
    seen = Walk()
    counter = itertools.count(1)
    for _ in range(40):
        if state.step == flow_engine.questionnaire.summary.id or seen.submitted:
            break
        message = data.draw(valid_answer(flow_engine, state, seen.evidence_sent))
        if state.step == "evidence":
            seen.evidence_sent += 1
        state = _step(flow_engine, state, _input(message, state, counter), seen)
        assert state is not None
        assert state.language == "en"
    if not seen.submitted:  # the danger lane sends without a summary
        assert seen.reached_summary
        assert _step(flow_engine, state, UserInput("submit"), seen) is not None
    assert seen.submitted == 1


def test_walks_reach_the_summary_and_submission_often(flow_engine):
    """The walks above are only worth something if they get that far: count how often."""
    walks: list[Walk] = []

    @settings(SETTINGS, max_examples=100, database=None, derandomize=True)
    @given(data=st.data())
    def sample(data):
        walks.append(walk(flow_engine, data, data.draw(st.booleans())))

    sample()
    assert len(walks) >= 50
    summary = sum(1 for seen in walks if seen.reached_summary) / len(walks)
    submitted = sum(1 for seen in walks if seen.submitted) / len(walks)
    assert summary >= 0.3, f"only {summary:.0%} of the walks reached the summary"
    assert submitted >= 0.2, f"only {submitted:.0%} of the walks submitted"
