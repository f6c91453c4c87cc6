"""Honest words about time: every message that says when someone answers uses the configured
hours, in the official's language, and the real next opening (controlled clock)."""

from __future__ import annotations

import re

import pytest

from bot.core.hours import OpeningHours, describe, describe_moment
from flows.engine import Engine
from storage.repository import Store
from tests.test_core import NORMAL_INTAKE
from tests.test_handoff import NEXT_WEDNESDAY_10, SATURDAY_11, SETTINGS, URGENT_INTAKE, Bench
from tests.test_queue import Clock

ENGLISH_URGENT = ["/start", "/sprache en", "1", "1", "5", "/skip", "yes"]  # the danger lane
QUICK = re.compile(
    r"\bbald\b|(?<!as )\bsoon\b|zuerst|\bfirst\b|gleich|sofort melde|gerade erreichbar|on duty now",
    re.IGNORECASE,
)
AWAY = re.compile(
    r"nicht erreichbar|not available|außerhalb der Beratungszeiten|outside counselling hours",
    re.IGNORECASE,
)


@pytest.fixture
def bench(store: Store, flow_engine: Engine) -> Bench:
    clock = Clock(SATURDAY_11)
    return Bench(flow_engine, Store(store.database, store.keys, clock=clock), clock, SETTINGS)


async def _everything_said(bench: Bench) -> list[str]:
    """A normal, an urgent and an English urgent intake, and a message while waiting each."""
    said: list[str] = []
    for lines in (NORMAL_INTAKE, URGENT_INTAKE, ENGLISH_URGENT):
        person = bench.person()
        await person.submit(lines)
        await person.say("Ist schon jemand da?")
        said += person.received()
    return said


async def test_outside_hours_no_message_promises_a_quick_answer(bench: Bench) -> None:
    said = await _everything_said(bench)
    for text in said:
        assert not QUICK.search(text), text
    joined = "\n".join(said)
    assert "wir melden uns ab Montag, 9 Uhr" in joined
    assert "we will be in touch from Monday, 9:00" in joined
    assert "Mo-Fr 09:00-16:00" not in joined  # never the raw configuration string


async def test_inside_hours_no_message_says_the_team_is_away(bench: Bench) -> None:
    bench.clock.now = NEXT_WEDNESDAY_10
    said = await _everything_said(bench)
    for text in said:
        assert not AWAY.search(text), text
    assert any("Unser Team ist gerade erreichbar" in text for text in said)
    assert any("Our team is on duty now" in text for text in said)


def test_hours_are_rendered_per_language(flow_engine: Engine) -> None:
    texts = flow_engine.texts
    hours = OpeningHours.parse("Mo-Th 09:00-16:00; Fr 09:30-13:00, Sa-Mo 10:00-24:00")
    assert describe(hours, texts, "de") == (
        "Montag–Donnerstag 9–16 Uhr; Freitag 9:30–13 Uhr; Samstag–Montag 10–24 Uhr"
    )
    assert describe(hours, texts, "en") == (
        "Monday–Thursday 9:00–16:00; Friday 9:30–13:00; Saturday–Monday 10:00–24:00"
    )
    assert describe_moment(hours.next_opening(SATURDAY_11), texts, "de") == "Sonntag, 10 Uhr"
    moment = SETTINGS.hours.next_opening(SATURDAY_11)
    assert describe_moment(moment, texts, "de") == "Montag, 9 Uhr"
    assert describe_moment(moment, texts, "en") == "Monday, 9:00"
