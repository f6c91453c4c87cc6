"""Asking for a person instead of answering: offered the talk lane, never "could not match"."""

from __future__ import annotations

import pytest

from flows.engine import Engine
from flows.messages import Effect
from tests.test_engine import Chat

ASKS = [
    "Ich möchte einfach nur mit einem Menschen sprechen",
    "Kann ich mit jemandem reden?",
    "Bitte um Rückruf",
    "Können Sie mich anrufen?",
]


def reporting(engine: Engine) -> Chat:
    """On the report lane, privacy notice accepted: at the first question."""
    chat = Chat(engine)
    chat.say("Hallo")
    chat.say("Ich möchte schildern, was passiert ist")
    chat.say("Einverstanden")
    return chat


@pytest.mark.parametrize("message", ASKS)
@pytest.mark.parametrize("stop", ["role", "categories", "when"])
def test_a_request_for_a_person_at_a_choice_step_offers_the_talk_lane(
    flow_engine: Engine, message: str, stop: str
) -> None:
    chat = reporting(flow_engine)
    chat.answer_until(stop)
    before = chat.answers
    text = chat.say(message)
    assert "Sie möchten mit einem Menschen sprechen" in text
    assert "0800 300 99 44" in text
    assert "konnte ich keiner Antwort zuordnen" not in text
    assert chat.step == stop and chat.answers == before  # nothing was taken as an answer
    assert chat.choice_labels() == ["Ja, mit jemandem sprechen", "Nein, hier weitermachen"]


def test_switching_to_the_talk_lane_asks_only_what_is_still_missing(flow_engine: Engine) -> None:
    chat = reporting(flow_engine)
    chat.answer_until("categories")  # Land, role and safe now are answered
    chat.say("Ich möchte mit einem Menschen sprechen")
    text = chat.say("Ja, mit jemandem sprechen")
    assert chat.answers["lane"] == "talk"
    assert chat.step == "contact"
    assert "Wie sollen wir mit Ihnen Kontakt aufnehmen?" in text
    text = chat.say("Hier in diesem Chat")
    assert chat.step == "summary"
    chat.say("absenden")
    assert chat.effect is Effect.SUBMIT
    assert chat.now.answers["role"] == "mayor_full"


def test_staying_goes_on_with_the_same_question(flow_engine: Engine) -> None:
    chat = reporting(flow_engine)
    chat.answer_until("role")
    chat.say("Rückruf bitte")
    text = chat.say("nein")
    assert "Gut, dann geht es hier weiter." in text
    assert "Welche Rolle trifft auf Sie zu?" in text
    assert chat.answers["lane"] == "report"
    # an answer to the question instead of to the offer counts as that answer
    chat.say("Kann ich mit jemandem reden?")
    chat.say("Landrat")
    assert chat.answers["role"] == "district_head"
    assert chat.step == "safe_now"


def test_at_the_first_question_a_request_for_a_person_is_the_talk_lane(
    flow_engine: Engine,
) -> None:
    chat = Chat(flow_engine)
    chat.say("Hallo")
    text = chat.say("Ich will einfach mit einem Menschen sprechen")
    assert chat.answers == {"lane": "talk"} and not chat.now.consented
    assert "Sind Sie einverstanden" in text


def test_before_consent_and_in_english(flow_engine: Engine) -> None:
    chat = Chat(flow_engine)
    chat.say("Hallo")
    chat.say("3")
    text = chat.say("Ich will mit einem Menschen sprechen")  # at the privacy notice
    assert "Gern. Dann frage ich nur das Nötigste" in text and not chat.now.consented
    assert chat.answers["lane"] == "talk"
    chat.say("/sprache en")
    chat.say("I agree")
    chat.say("Bremen")
    text = chat.say("Can I talk to someone?")  # already on the talk lane: how to reach one
    assert "You would like to talk to a person" in text
    assert chat.step == "role"


def test_the_danger_lane_is_not_left_for_a_request_for_a_person(flow_engine: Engine) -> None:
    chat = Chat(flow_engine)
    chat.say("Hallo")
    chat.say("1")
    text = chat.say("Ich will mit einem Menschen sprechen")
    assert "Sie möchten mit einem Menschen sprechen" in text
    assert chat.answers["lane"] == "danger"


def test_an_ordinary_wrong_answer_still_gets_the_usual_nudge(flow_engine: Engine) -> None:
    chat = reporting(flow_engine)
    chat.answer_until("role")
    assert "konnte ich keiner Antwort zuordnen" in chat.say("Gärtner")
