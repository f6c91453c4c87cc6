"""The three lanes of the first message, contact as the official chose it, and sending at once
after a safety hit (issue 10, items 3 and 4)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from flows.engine import Engine
from flows.lanes import offered_ways, with_ways
from flows.messages import Effect
from flows.questionnaire import required_answers
from flows.state import IntakeState
from tests.conftest import run_demo
from tests.test_demo_script import REFERENCE, Intake, intake_lines, ok, staff_room, text_of
from tests.test_engine import ANSWERS, Chat
from tests.test_talk_request import reporting

# -- the lanes' sizes -----------------------------------------------------------------------------


def test_each_lane_asks_few_required_answers(flow_engine: Engine) -> None:
    steps = flow_engine.questionnaire.steps
    assert required_answers(steps, "lane", "danger") == 3  # lane, Land, "110 called?"
    assert required_answers(steps, "lane", "talk") <= 5  # with a call-back's number
    assert required_answers(steps, "lane", "report") <= 10


def test_required_choices_of_the_report_lane_let_the_official_not_know(
    flow_engine: Engine,
) -> None:
    """Where not knowing or not saying is an honest answer, a required choice offers it."""
    honest = {"land": "none", "role": "not_said", "safe_now": "unsure", "police": "not_said"}
    honest["categories"] = "unsure"
    for step_id, choice in honest.items():
        step = flow_engine.questionnaire.step(step_id)
        assert step.required and choice in step.choice_ids(), step_id


def test_a_walk_of_the_report_lane_with_only_required_answers(flow_engine: Engine) -> None:
    chat = reporting(flow_engine)
    answered = 1  # the lane
    for _ in range(40):
        if chat.step == "summary":
            break
        step = flow_engine.questionnaire.step(chat.step)
        if step.required:
            answered += 1
            chat.say(ANSWERS[chat.step])
        else:
            chat.say("/ueberspringen")
    assert chat.step == "summary"
    assert answered <= 10
    chat.say("absenden")
    assert chat.effect is Effect.SUBMIT


# -- sending at once after a safety hit ----------------------------------------------------------


def test_after_a_suicidal_hit_the_intake_can_be_sent_at_once(flow_engine: Engine) -> None:
    chat = reporting(flow_engine)
    chat.answer_until("description")
    text = chat.say("Ich kann nicht mehr, ich denke daran mich umzubringen.")
    assert text.index("Telefonseelsorge") < text.index("jetzt gleich absenden")
    assert chat.choice_labels() == ["Jetzt absenden", "Weiter mit den Fragen"]
    assert chat.now.pending == "send_now"
    chat.say("Jetzt absenden")
    assert chat.effect is Effect.SUBMIT
    description = chat.now.answers["description"]
    assert isinstance(description, str) and description.startswith("Ich kann nicht mehr")
    assert chat.now.safety == ["suicidal"]
    assert flow_engine.is_urgent(chat.now)


def test_going_on_after_a_hit_asks_the_next_question(flow_engine: Engine) -> None:
    chat = reporting(flow_engine)
    chat.answer_until("categories")
    text = chat.say("Er steht mit einem Messer vor meiner Tür")
    assert text.startswith("Rufen Sie jetzt die 110")
    assert chat.step == "categories"  # not an answer
    text = chat.say("Weiter mit den Fragen")
    assert "Was ist passiert?" in text and chat.step == "categories"
    assert chat.effect is None and flow_engine.is_urgent(chat.now)


# -- contact as chosen ----------------------------------------------------------------------------


def test_anonymous_asks_no_name_and_the_counsellor_sees_anonym(flow_engine: Engine) -> None:
    chat = Chat(flow_engine)
    for line in ("/start", "2", "ja", "Sachsen", "1"):
        chat.say(line)
    text = chat.say("Anonym")
    assert chat.step == "summary"  # nothing more asked: no name, no number
    assert "Kontaktweg: Anonym: nur dieser Chat, ohne Namen" in text
    chat.say("absenden")
    card = flow_engine.case_summary(chat.now, "L-2026-0001", "de")
    assert "Anonym" in card


def test_e_mail_and_video_only_where_the_contact_point_offers_them(
    flow_engine: Engine,
) -> None:
    assert offered_ways(flow_engine.render.directory) == {"email", "video"}
    labels = [c.id for c in flow_engine.questionnaire.step("contact").choices]
    assert "email" in labels and "video" in labels
    bare = with_ways(flow_engine.questionnaire, frozenset())
    assert [c.id for c in bare.step("contact").choices] == ["chat", "callback", "anonymous"]


def test_an_e_mail_contact_asks_the_address(flow_engine: Engine) -> None:
    chat = Chat(flow_engine)
    for line in ("/start", "2", "ja", "Sachsen", "1"):
        chat.say(line)
    assert "An welche E-Mail-Adresse" in chat.say("Per E-Mail")
    chat.say("buero@example.org")
    assert chat.step == "summary"
    chat.say("absenden")
    assert IntakeState.submitted(chat.now, "L-1").contact == "email"


# -- the scripted demo: the acceptance runs --------------------------------------------------------


@pytest.mark.slow
def test_the_talk_lane_sends_in_at_most_seven_messages(demo_dir: Path) -> None:
    lines = intake_lines(Intake(talk=True))
    assert lines == ["/start", "2", "1", "2", "2", "1", "absenden"]
    said = ok(run_demo(demo_dir, lines))
    text = text_of(said)
    assert re.search(rf"Ihr Aktenzeichen: {REFERENCE}", text)
    assert "meldet sich hier im Chat" in text


@pytest.mark.slow
def test_a_call_back_is_promised_and_announced_as_a_call(demo_dir: Path) -> None:
    reference = f"L-{dt.date.today().year}-0001"
    lines = [
        *intake_lines(Intake(talk=True, callback="0151 2345678, nach Frau Muster fragen")),
        f"staff> {reference} /uebernehmen",
    ]
    result = run_demo(demo_dir, lines)
    text = text_of(ok(result))
    assert "ruft Sie unter der angegebenen Nummer zurück" in text
    assert "hat Ihren Fall übernommen und ruft Sie unter der angegebenen Nummer an" in text
    posted = "\n".join(staff_room(result.stdout))
    assert "Beim Rückruf in Ordnung: Ein Anruf mit unterdrückter Nummer" in posted


def test_an_intake_stored_before_the_lanes_goes_on_from_the_first_question(
    flow_engine: Engine,
) -> None:
    old = IntakeState(
        language="de",
        step="emergency_continue",
        consented=True,
        answers={"welcome": "agree", "danger": "yes"},
        history=["welcome", "danger"],
    )
    chat = Chat(flow_engine, old)
    text = chat.say("/zurueck")
    assert chat.step == "lane" and "Was möchten Sie tun?" in text
    chat.say("Ich bin in Gefahr")
    assert chat.step == "land"  # the privacy notice they accepted is not asked again
