"""Issue 11 (8/10 Hardening), items 2, 7, 14 and 15, through the core in-process on both
databases: a stranded case, words while waiting, a message after closing, a deleted case.

Each test is named after its item and asserts what the official, the staff room or
someone with the database and the server secret would observe.
"""

from __future__ import annotations

import json

import pytest

from bot.core.revocation import revoke_and_release
from flows.engine import Engine
from storage import queue
from storage.audit import Action
from storage.keyfile import UnlockedKey
from storage.keyring import CounsellorEntry
from storage.repository import Store
from tests.test_core import CHANNEL
from tests.test_handoff import SETTINGS, URGENT_INTAKE, WEDNESDAY_10, Bench
from tests.test_queue import Clock

LUTZ = CounsellorEntry("Lutz", "L. Lutz")


@pytest.fixture
def bench(store: Store, flow_engine: Engine) -> Bench:
    clock = Clock(WEDNESDAY_10)
    return Bench(flow_engine, Store(store.database, store.keys, clock=clock), clock, SETTINGS)


async def _revoke(bench: Bench, by: UnlockedKey, name: str) -> list[str]:
    async with bench.store.unit() as unit:
        _, released = await revoke_and_release(unit, bench.engine.texts, SETTINGS, by, name)
    await bench.core.settle()
    return released


# -- item 2: a case held by a revoked counsellor -------------------------------------------------


async def test_item_02_revocation_returns_the_revoked_counsellors_cases_to_the_queue(
    bench: Bench, counsellor_key: UnlockedKey
) -> None:
    await bench.hire(counsellor_key, LUTZ)
    person = bench.person()
    reference = await person.submit(URGENT_INTAKE)
    await bench.staff("/uebernehmen", reference)
    await bench.staff("/uebergeben Lutz", reference)
    assert (await bench.case(reference)).status == queue.CLAIMED

    assert await _revoke(bench, counsellor_key, "Lutz") == [reference]

    case = await bench.case(reference)
    assert (case.status, case.claimed_by) == (queue.WAITING, None)
    assert bench.thread(reference)[-1].startswith("L. Lutz ist nicht mehr im Beratungsteam")
    assert person.received()[-1].startswith("Ihr Fall wartet wieder auf eine Beraterin")
    [released] = [
        entry
        for entry in await bench.audited(Action.CASE_RELEASED)
        if entry.case_reference == reference
    ]
    assert json.loads(released.detail) == {"revoked": "Lutz"}
    # Urgent: raised again at the next tick, not only after another interval.
    await bench.tick()
    assert any(f"Dringender Fall {reference}" in text for text in bench.room_at_large())
    # And someone can take it.
    await bench.staff("/uebernehmen", reference)
    assert (await bench.case(reference)).status == queue.CLAIMED
    assert person.received()[-1].startswith("A. Berger hat Ihren Fall übernommen")


async def test_item_02_a_case_whose_holder_cannot_answer_can_be_taken_over(
    bench: Bench, counsellor_key: UnlockedKey
) -> None:
    await bench.hire(counsellor_key, LUTZ)
    person = bench.person()
    reference = await person.submit()
    await bench.staff("/uebernehmen", reference, author="Lutz")

    refused = await bench.said("/uebernehmen", reference)
    assert "L. Lutz" in refused  # an ordinary claim still names the holder
    assert "--force GRUND" in await bench.said("/uebernehmen --force", reference)  # no reason
    assert (await bench.case(reference)).claimed_by is not None

    said = await bench.said("/uebernehmen --force seit zwei Tagen nicht erreichbar", reference)
    assert said == (
        "A. Berger hat den Fall von L. Lutz übernommen. Der Grund ist im Fall gespeichert."
    )
    assert person.received()[-1].startswith("A. Berger hat Ihren Fall übernommen")
    [entry] = await bench.audited(Action.CASE_TAKEN_OVER)
    assert (entry.actor, entry.case_reference) == ("Berger", reference)
    assert json.loads(entry.detail) == {"from": "Lutz", "to": "Berger"}
    assert "erreichbar" not in entry.detail  # the reason is sealed into the case, not logged
    await bench.staff("Guten Tag, ich übernehme.", reference)
    assert person.received()[-1] == "A. Berger: Guten Tag, ich übernehme."


async def test_item_02_a_case_held_by_a_counsellor_revoked_before_the_fix_can_be_taken_over(
    bench: Bench, counsellor_key: UnlockedKey
) -> None:
    """A case stranded by an earlier revocation (no release then) is freed by a takeover."""
    from storage.keyring import revoke

    await bench.hire(counsellor_key, LUTZ)
    reference = await bench.person().submit()
    await bench.staff("/uebernehmen", reference, author="Lutz")
    async with bench.store.unit() as unit:
        await revoke(unit, counsellor_key, "Lutz")  # the old path: the case stays claimed
    said = await bench.said("/uebernehmen --force Zugang widerrufen", reference)
    assert said.startswith("A. Berger hat den Fall von L. Lutz übernommen.")
    assert (await bench.case(reference)).status == queue.CLAIMED
    health = await bench.said("/lage")
    assert "L. Lutz" not in health


# -- item 7: words while waiting ------------------------------------------------------------------

WAITING_CANARY = "Kanarie-Wartezeit-R8VN"


async def _state_of(bench: Bench, person_id: str) -> tuple[list[str], bytes]:
    """What someone with the database and the server secret reads in the conversation."""
    sender = bench.core.pseudonym(CHANNEL, person_id)
    async with bench.store.unit() as unit:
        loaded = await unit.load(sender)
    assert loaded is not None
    return loaded.state.relay_backlog, loaded.state.to_bytes()


async def test_item_07_words_while_waiting_reach_the_thread_at_once_not_the_state(
    bench: Bench,
) -> None:
    person = bench.person()
    reference = await person.submit()
    [kept] = await person.say(f"Noch etwas: {WAITING_CANARY}")
    assert kept.startswith("Danke, Ihre Nachricht ist bei Ihrem Fall gespeichert")
    assert bench.thread(reference) == [f"Person: Noch etwas: {WAITING_CANARY}"]
    backlog, state = await _state_of(bench, person.user_id)
    assert backlog == []
    assert WAITING_CANARY.encode() not in state
    # Counsellors' words still reach the official only after a claim.
    before = len(person.received())
    await bench.staff("Hallo?", reference)
    assert person.received()[before:] == []


async def test_item_07_a_backlog_stored_by_an_older_version_is_posted_at_the_next_message(
    bench: Bench,
) -> None:
    person = bench.person()
    reference = await person.submit()
    sender = bench.core.pseudonym(CHANNEL, person.user_id)
    async with bench.store.unit() as unit:
        loaded = await unit.load(sender)
        assert loaded is not None
        loaded.state.relay_backlog = [WAITING_CANARY]
        await unit.save(sender, loaded.channel, loaded.address, loaded.state)

    await person.say("Ist jemand da?")
    assert bench.thread(reference) == [
        f"Während der Wartezeit schrieb die Person:\nPerson: {WAITING_CANARY}",
        "Person: Ist jemand da?",
    ]
    backlog, state = await _state_of(bench, person.user_id)
    assert backlog == [] and WAITING_CANARY.encode() not in state
    await bench.staff("/uebernehmen", reference)
    assert sum(WAITING_CANARY in text for text in bench.thread(reference)) == 1


async def test_item_07_a_backlog_left_until_the_claim_is_posted_with_it(bench: Bench) -> None:
    person = bench.person()
    reference = await person.submit()
    sender = bench.core.pseudonym(CHANNEL, person.user_id)
    async with bench.store.unit() as unit:
        loaded = await unit.load(sender)
        assert loaded is not None
        loaded.state.relay_backlog = [WAITING_CANARY]
        await unit.save(sender, loaded.channel, loaded.address, loaded.state)
    await bench.staff("/uebernehmen", reference)
    assert bench.thread(reference)[-1] == (
        f"Während der Wartezeit schrieb die Person:\nPerson: {WAITING_CANARY}"
    )
    backlog, _ = await _state_of(bench, person.user_id)
    assert backlog == []


# -- item 14: a message after closing, then "new report" ------------------------------------------


async def test_item_14_a_message_after_closing_reaches_the_old_thread_before_a_new_report(
    bench: Bench,
) -> None:
    person = bench.person()
    reference = await person.submit()
    await bench.staff("/uebernehmen", reference)
    await bench.staff("/abschliessen beraten", reference)
    [offer] = await person.say(f"Es ist wieder passiert. {WAITING_CANARY}")
    assert "neue Meldung" in offer
    assert bench.thread(reference)[-1] == f"Person: Es ist wieder passiert. {WAITING_CANARY}"
    assert person.choices() == ("reopen", "new")
    [question] = await person.say("2")  # a new report
    assert "Was möchten Sie tun?" in question  # the lanes of a new report
    # Seen in the old case's thread (and sealed there), told nowhere twice.
    posts = [text for _, text in bench.recorder.room if WAITING_CANARY in text]
    assert len(posts) == 1


# -- item 15: /loeschen of a claimed case ---------------------------------------------------------


async def test_item_15_deleting_a_claimed_case_is_announced_in_its_thread_without_content(
    bench: Bench,
) -> None:
    person = bench.person()
    reference = await person.submit()
    await bench.staff("/uebernehmen", reference)
    await person.say(f"Noch ein Detail: {WAITING_CANARY}")
    await person.say("/loeschen")
    await person.say("ja")
    assert await bench.outbox() == 0
    announced = bench.thread(reference)[-1]
    assert announced == (
        f"Fall {reference} wurde auf Wunsch der Person gelöscht, mit allem, was dazu "
        "gespeichert war. Hier erreicht nichts mehr die Person."
    )
    assert WAITING_CANARY not in announced
    said = await bench.said("Sind Sie noch da?", reference)
    assert said == f"Einen Fall thread-{reference} gibt es nicht."
