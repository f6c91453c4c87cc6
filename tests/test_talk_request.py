"""Asking for a person instead of answering: told how to reach one, never "could not match"."""

from __future__ import annotations

import pytest

from flows.engine import Engine
from tests.test_engine import Chat

ASKS = [
    "Ich möchte einfach nur mit einem Menschen sprechen",
    "Kann ich mit jemandem reden?",
    "Bitte um Rückruf",
    "Können Sie mich anrufen?",
]


@pytest.mark.parametrize("message", ASKS)
@pytest.mark.parametrize("stop", ["role", "categories", "when"])
def test_a_request_for_a_person_at_a_choice_step(
    flow_engine: Engine, message: str, stop: str
) -> None:
    chat = Chat(flow_engine)
    chat.say("Hallo")
    chat.say("Einverstanden")
    chat.answer_until(stop)
    text = chat.say(message)
    assert "Sie möchten mit einem Menschen sprechen" in text
    assert "0800 300 99 44" in text
    assert "konnte ich keiner Antwort zuordnen" not in text
    assert chat.step == stop  # nothing was taken as an answer
    assert [choice.key for choice in chat.replies[-1].choices]  # the choices stay at hand


def test_before_consent_and_in_english(flow_engine: Engine) -> None:
    chat = Chat(flow_engine)
    chat.say("Hallo")
    text = chat.say("Ich will mit einem Menschen sprechen")
    assert "Sie möchten mit einem Menschen sprechen" in text and not chat.now.consented
    chat.say("/sprache en")
    chat.say("I agree")
    text = chat.say("Can I talk to someone?")
    assert "You would like to talk to a person" in text


def test_an_ordinary_wrong_answer_still_gets_the_usual_nudge(flow_engine: Engine) -> None:
    chat = Chat(flow_engine)
    chat.say("Hallo")
    chat.say("Einverstanden")
    chat.answer_until("role")
    assert "konnte ich keiner Antwort zuordnen" in chat.say("Gärtner")
