"""At most three offers after submitting, the right ones, one line each; /hilfen for the rest."""

from __future__ import annotations

import itertools

import pytest

from flows.engine import Engine
from flows.safety import numbers_in
from tests.test_engine import Chat

CASES = {
    "normal_bremen": {},
    "bw": {"land": "Baden-Württemberg"},
    "by_online": {"land": "Bayern", "help": "1, 2, 3, 5"},
    "rp_attack": {"land": "Rheinland-Pfalz", "categories": "7, 8", "where": "2"},
    "psychosocial": {"land": "Hessen", "help": "3, 6"},
}


def _submitted(
    engine: Engine,
    answers: dict[str, str],
    urgent: bool = False,
    lane: str = "Ich möchte schildern, was passiert ist",
) -> Chat:
    chat = Chat(engine)
    chat.say("Hallo")
    chat.say(lane)
    chat.say("Einverstanden")
    if urgent:  # not safe right now: urgent, and the questions go on
        answers = {**answers, "safe_now": "Nein"}
    chat.answer_until("summary", answers)
    chat.say("absenden")
    return chat


def _offer_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("• ")]


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("urgent", [False, True])
def test_at_most_three_one_line_offers_and_no_repeated_numbers(
    flow_engine: Engine, name: str, urgent: bool
) -> None:
    chat = _submitted(flow_engine, CASES[name], urgent)
    replies = [reply.text for reply in flow_engine.confirmation(chat.now, "L-1", "Mo–Fr")]
    offers = _offer_lines(replies[1])
    assert len(offers) <= 3
    assert not any(line.startswith("• starke Stelle") for line in offers)  # itself: not "other"
    assert not any("VBRG" in line or "m*power" in line for line in offers)  # motive-specific
    assert "/hilfen" in replies[1]
    for before, after in itertools.pairwise(replies):
        assert not set(numbers_in(before)) & set(numbers_in(after)), (before, after)


def test_an_urgent_case_sees_its_lands_24_7_line_first(flow_engine: Engine) -> None:
    for land, line in (
        ("Baden-Württemberg", "• ZAMAT: 0711 5401-3003"),
        ("Rheinland-Pfalz", "06131 65-65250"),
    ):
        chat = _submitted(flow_engine, {"land": land}, urgent=True)
        offers = _offer_lines(flow_engine.confirmation(chat.now, "L-1", "Mo–Fr")[1].text)
        assert line in offers[0]


def test_hilfen_shows_the_rest_with_what_each_does(flow_engine: Engine) -> None:
    chat = Chat(flow_engine)
    chat.say("Hallo")
    chat.say("3")
    chat.say("Einverstanden")
    chat.answer_until("summary", {"land": "Rheinland-Pfalz"})
    text = chat.say("/hilfen")
    assert text.startswith("Hilfsangebote – bundesweit und in Ihrem Land")
    for name in ("HateAid", "VBRG", "m*power", "WEISSER RING", "Telefonseelsorge"):
        assert name in text
    assert "ZAMAT" not in text  # another Land's
    assert chat.step == "summary"  # and the conversation goes on where it was


def test_the_talk_lane_is_not_shown_offers_for_incidents_nobody_named(flow_engine: Engine) -> None:
    chat = _submitted(flow_engine, {"land": "Bayern"}, lane="Ich möchte mit jemandem sprechen")
    shown = "\n".join(reply.text for reply in flow_engine.confirmation(chat.now, "L-1", "Mo–Fr"))
    # online-hate services fit only where an online incident was told: /hilfen has them
    for name in ("HateAid", "Konsequent gegen Hass", "REspect"):
        assert name not in shown
    assert "/hilfen" in shown
    assert "Konsequent gegen Hass" in chat.say("/hilfen")
