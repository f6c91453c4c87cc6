"""Issue 10, item 6: no repeated numbers between consecutive messages. An emergency number
the official has just read is not said again in the very next message: a wall of the same
numbers is skimmed, and the one that matters is lost in it.

"Consecutive" means messages the bot sends one after the other in answer to one message of
the official. A number said again after the official wrote something (the welcome's "In
Gefahr? 110", then 110 once they chose "Ich bin in Gefahr") answers what they said."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from flows.engine import Engine
from flows.safety import numbers_in
from storage.repository import Store
from tests.test_core import NORMAL_INTAKE
from tests.test_handoff import SATURDAY_11, SETTINGS, URGENT_INTAKE, WEDNESDAY_10, Bench
from tests.test_queue import Clock

# the danger lane in Rheinland-Pfalz (a Land with a 24/7 line), with a sentence that is itself
# a hit of the safety layer, and in English
DANGER_RP = ["/start", "1", "1", "11", "Er steht mit einem Messer vor meiner Tür", "nein"]
DANGER_EN = ["/start", "/sprache en", "1", "1", "5", "/skip", "yes"]


def _report_with_a_hit(words: str) -> list[str]:
    """The report lane, `words` as the description, then on with the questions."""
    lines = list(NORMAL_INTAKE)
    at = lines.index("CANARY-DESCRIPTION wrote threats")
    lines[at] = words
    lines.insert(at + 1, "Weiter mit den Fragen")  # not sent at once: the whole intake
    return [*lines, "absenden"]


RUNS = {
    "danger lane": URGENT_INTAKE,
    "danger lane, Land with a 24/7 line, a hit": DANGER_RP,
    "danger lane in English": DANGER_EN,
    "report lane, suicidal hit": _report_with_a_hit("Ich will nicht mehr leben"),
    "report lane, danger hit": _report_with_a_hit("Er steht mit einem Messer vor meiner Tür"),
    "talk lane": ["/start", "2", "1", "2", "2", "1", "absenden"],
}
WHILE_WAITING = ["Ist schon jemand da?", "Jetzt steht er vor meiner Tür"]


def _emergency_numbers(engine: Engine) -> set[str]:
    """110, 112 and every line the directory lists as reachable around the clock."""
    numbers = {"110", "112"}
    for offer in engine.render.directory.offers:
        if offer.around_the_clock:
            numbers |= set(numbers_in(offer.contact))
    return numbers


@pytest.fixture
def bench(store: Store, flow_engine: Engine) -> Bench:
    clock = Clock(WEDNESDAY_10)
    return Bench(flow_engine, Store(store.database, store.keys, clock=clock), clock, SETTINGS)


@pytest.mark.parametrize("now", [WEDNESDAY_10, SATURDAY_11], ids=["in hours", "out of hours"])
@pytest.mark.parametrize("run", sorted(RUNS))
async def test_no_emergency_number_in_two_consecutive_messages(
    bench: Bench, run: str, now: dt.datetime
) -> None:
    bench.clock.now = now
    emergency = _emergency_numbers(bench.engine)
    person = bench.person()
    heard = ""
    for line in [*RUNS[run], *WHILE_WAITING]:  # to the end, and messages while waiting
        replies = await person.say(line)
        heard += "\n".join(replies)
        for before, after in itertools.pairwise(replies):
            again = set(numbers_in(before)) & set(numbers_in(after)) & emergency
            assert not again, (line, before, after)
    assert any(word.startswith("L-") for word in heard.split())  # the case went in
    assert "110" in heard and "0800 111 0 111" in heard  # the numbers were given, once
    if run.startswith("danger lane, Land"):
        assert "06131 65-65250" in heard  # the Land's 24/7 line
