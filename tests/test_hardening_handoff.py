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
