"""The safety layer in every phase: the acceptance table (tests/safety_table.py) sent
before consent, during the questions, at the summary, while the case waits and while a
counsellor writes with the official, observed as the official and the staff room see it."""

from __future__ import annotations

import pytest

from flows.engine import Engine
from flows.safety import numbers_in
from storage import queue
from storage.repository import Store
from tests.safety_table import DANGER, SUICIDAL, TABLE
from tests.test_core import NORMAL_INTAKE
from tests.test_engine import Chat
from tests.test_handoff import SATURDAY_11, SETTINGS, WEDNESDAY_10, Bench, Person
from tests.test_queue import Clock

LEADS_WITH = {DANGER: "110", SUICIDAL: "08001110111"}
ALERT = "Hinweis auf akute Gefahr, jetzt dringend"


def _check_reply(
    first: str, everything: str, expected: str | None, safety_replies: set[str]
) -> None:
    """The first reply leads with the right number on a hit; no safety reply otherwise."""
    if expected is None:
        assert not any(reply in everything for reply in safety_replies), everything
        return
    assert numbers_in(first)[0] == LEADS_WITH[expected], first
    if expected == DANGER:
        assert "Danke" not in everything and "Thank" not in everything, everything


def _safety_replies(engine: Engine) -> set[str]:
    return {engine.texts.get(key, "de") for key in ("safety_danger", "safety_suicidal")}


def _at(engine: Engine, phase: str) -> Chat:
    chat = Chat(engine)
    if phase == "before_consent":
        return chat
    chat.say("Hallo")
    chat.say("Einverstanden")
    chat.answer_until({"choice": "role", "text": "description", "summary": "summary"}[phase])
    return chat


@pytest.mark.parametrize("phase", ["before_consent", "choice", "text", "summary"])
@pytest.mark.parametrize(("message", "expected"), TABLE)
def test_every_message_in_every_phase_of_the_intake(
    flow_engine: Engine, phase: str, message: str, expected: str | None
) -> None:
    chat = _at(flow_engine, phase)
    everything = chat.say(message)
    _check_reply(chat.replies[0].text, everything, expected, _safety_replies(flow_engine))
    urgent = flow_engine.is_urgent(chat.now)
    assert urgent is (expected is not None)
    assert (expected in chat.now.safety) if expected else chat.now.safety == []
    if expected and phase != "before_consent":
        assert "Ihre Meldung ist jetzt als dringend markiert." in chat.replies[0].text
    if expected:  # after the numbers no "could not match that": the way on, gently
        assert "keiner Antwort zuordnen" not in everything


def test_a_hit_before_consent_is_kept_once_they_agree_and_the_intake_is_urgent(
    flow_engine: Engine,
) -> None:
    chat = Chat(flow_engine)
    chat.say("Hallo, ich habe Suizidgedanken")
    assert not chat.now.consented
    assert (
        "Ihre Meldung ist jetzt als dringend markiert." not in chat.replies[0].text
    )  # nothing kept yet
    chat.say("Einverstanden")
    assert chat.now.safety == ["suicidal"] and flow_engine.is_urgent(chat.now)
    assert flow_engine.need(chat.now).urgent


def test_english_gets_the_english_reply(flow_engine: Engine) -> None:
    chat = Chat(flow_engine)
    chat.say("/sprache english")
    chat.say("I want to kill myself")
    assert chat.replies[0].text.startswith("It is good that you are telling us.")


# -- after submission: waiting and relay ---------------------------------------------------------


@pytest.fixture
def bench(store: Store, flow_engine: Engine) -> Bench:
    clock = Clock(WEDNESDAY_10)
    return Bench(flow_engine, Store(store.database, store.keys, clock=clock), clock, SETTINGS)


async def _submitted(bench: Bench, claimed: bool) -> tuple[Person, str]:
    person = bench.person()
    reference = await person.submit()
    assert not (await bench.case(reference)).urgent
    if claimed:
        await bench.staff("/uebernehmen", reference)
    return person, reference


@pytest.mark.parametrize("claimed", [False, True], ids=["waiting", "relay"])
async def test_every_message_while_waiting_and_in_relay(bench: Bench, claimed: bool) -> None:
    person, reference = await _submitted(bench, claimed)
    safety_replies = _safety_replies(bench.engine)
    for message, expected in TABLE:
        alerts = len([text for text in bench.room_at_large() if ALERT in text])
        replies = await person.say(message)
        now = len([text for text in bench.room_at_large() if ALERT in text])
        if expected is None:
            assert now == alerts, message
            assert not any(reply in " ".join(replies) for reply in safety_replies), message
            continue
        assert replies, message
        _check_reply(replies[0], "\n".join(replies), expected, safety_replies)
        assert now == alerts + 1, message
        case = await bench.case(reference)
        assert case.urgent and case.status == (queue.CLAIMED if claimed else queue.WAITING)
    # The alert is content-free: the reference and the words above, nothing the official wrote.
    for text in bench.room_at_large():
        if ALERT in text:
            assert text == f"‼️ {reference}: {ALERT}."
    if claimed:  # the words themselves went to the counsellor holding the case, in the thread
        assert any("vor meiner Tür mit einem Messer" in text for text in bench.thread(reference))


async def test_a_hit_while_waiting_raises_the_case_and_escalation_follows(bench: Bench) -> None:
    person, reference = await _submitted(bench, claimed=False)
    start = bench.clock.now
    replies = await person.say("Jetzt steht er vor meiner Tür mit einem Messer")
    assert replies == [
        "Rufen Sie jetzt die 110 (Polizei) an. Bei Verletzten oder Feuer: 112. Gehen Sie, wenn "
        "Sie können, an einen sicheren Ort. Dieser Chat ersetzt keinen Notruf.\n\n"
        "Ihr Fall ist jetzt als dringend markiert, und das Team der starken Stelle hat einen "
        "Hinweis bekommen."
    ]
    case = await bench.case(reference)
    assert case.urgent and case.escalate_at is not None
    bench.clock.now = start + SETTINGS.escalate_after
    await bench.tick()
    assert any(
        text.startswith(f"‼️ Dringender Fall {reference} wartet") for text in bench.room_at_large()
    )


async def test_outside_hours_the_raised_reply_says_when_the_team_is_back(bench: Bench) -> None:
    bench.clock.now = SATURDAY_11
    person, _ = await _submitted(bench, claimed=False)
    [reply] = await person.say("Ich will nicht mehr leben")
    assert reply.startswith("Es ist gut, dass Sie das schreiben.")
    assert "Telefonseelsorge" in reply
    assert reply.endswith("wir melden uns ab Montag, 9 Uhr. In akuter Gefahr: 110.")
    assert "Danke" not in reply


async def test_a_closed_case_still_gets_the_numbers_first(bench: Bench) -> None:
    person, reference = await _submitted(bench, claimed=True)
    await bench.staff("/abschliessen beraten", reference)
    replies = await person.say("Er steht vor meiner Tür")
    assert replies[0].startswith("Rufen Sie jetzt die 110")
    assert "wieder öffnen" in replies[1] or "neue Meldung" in replies[1]


# -- the staff room's first post ------------------------------------------------------------------


@pytest.mark.parametrize("encrypted", [True, False])
async def test_a_hit_during_the_intake_is_flagged_on_the_case_post(
    bench: Bench, encrypted: bool
) -> None:
    bench.recorder.end_to_end_encrypted = encrypted
    lines = list(NORMAL_INTAKE)
    described = lines.index("CANARY-DESCRIPTION wrote threats")
    lines[described] = "Ich will nicht mehr leben"
    lines.insert(described + 1, "Weiter mit den Fragen")  # not sent at once: the whole intake
    reference = await bench.person().submit(lines)
    [(posted, text, urgent)] = bench.recorder.posts
    assert posted == reference and urgent
    heading, flag = text.splitlines()[:2]
    assert heading.startswith(f"‼️ DRINGEND – Neuer Fall {reference} · ")
    if encrypted:
        assert flag == (
            "⚠️ Sicherheitsprüfung: Die Person schrieb Worte, die auf Suizidgedanken hindeuten."
        )
    else:  # an unencrypted room learns only that there was a sign of danger
        assert flag == "⚠️ Sicherheitsprüfung: Hinweis auf akute Gefahr."
    assert (await bench.case(reference)).urgent


@pytest.mark.parametrize("phase", ["lanes", "choice"])
def test_after_the_numbers_the_way_on_not_a_could_not_match(
    flow_engine: Engine, phase: str
) -> None:
    chat = Chat(flow_engine)
    chat.say("Hallo")  # the welcome with the three lanes
    if phase == "choice":
        chat.say("Ich möchte schildern, was passiert ist")
        chat.say("Einverstanden")
        chat.answer_until("role")
    step = chat.step
    said = chat.say("Ich kann nicht mehr, ich denke daran mich umzubringen.")
    assert said.startswith("Es ist gut, dass Sie das schreiben.")
    assert "keiner Antwort zuordnen" not in said
    if phase == "lanes":  # nothing to send yet: the same question, gently
        assert "Wenn Sie möchten, geht es hier weiter" in said
    else:  # in the questions: what was told can go to the team at once
        assert "Ihre Meldung jetzt gleich absenden" in said
    assert chat.step == step and chat.replies[-1].choices
