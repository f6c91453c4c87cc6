"""The counsellor queue on both databases: order, the claim race, the state rules, the numbers.

A claim is one conditional UPDATE, so however many counsellors press "claim" at once
(tasks of one process, or separate processes on PostgreSQL), exactly one wins and
everyone else is told who has the case. The audit chain records each claim once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.admin import case_stats
from bot.app import App, demo_config
from bot.cli import main
from flows.engine import Engine
from storage import queue
from storage.audit import Action, load_chain, verify
from storage.keyfile import UnlockedKey
from storage.keyring import CounsellorEntry, add, revoke
from storage.models import AuditEntry, Case, Counsellor
from storage.repository import Store
from storage.sealing import PrivateKey
from tests.conftest import ROOT
from tests.test_sealed_cases import cli_target

SECRET = b"\x07" * 32  # the conftest's server secret: the audit key of the `store` fixture
START = dt.datetime(2025, 3, 5, 8, 0, tzinfo=dt.UTC)  # a Wednesday
ESCALATE = dt.timedelta(minutes=5)


@dataclass
class Clock:
    """A stopped clock the test moves by hand; `Store(clock=…)` reads it for `unit.now`."""

    now: dt.datetime = START

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> dt.datetime:
        self.now += dt.timedelta(**delta)
        return self.now


@dataclass
class Desk:
    """The queue as counsellors work it: the same database as `store`, on a clock."""

    store: Store
    clock: Clock = field(default_factory=Clock)
    counsellors: dict[str, Counsellor] = field(default_factory=dict)

    @classmethod
    async def on(cls, store: Store) -> Desk:
        clock = Clock()
        desk = cls(Store(store.database, store.keys, clock=clock), clock)
        await desk.reload()
        return desk

    async def reload(self) -> None:
        async with self.store.unit() as unit:
            rows = await unit.session.scalars(select(Counsellor))
            self.counsellors = {row.name: row for row in rows}

    async def hire(self, by: UnlockedKey, name: str, display: str) -> Counsellor:
        async with self.store.unit() as unit:
            await add(unit, by, CounsellorEntry(name, display), PrivateKey.generate().public_key())
        await self.reload()
        return self.counsellors[name]

    async def submit(self, urgent: bool = False, sender: str = "official") -> str:
        async with self.store.unit() as unit:
            return await unit.create_case(sender, "console", urgent, {"description": "x"}, [])

    async def claim(self, reference: str, name: str = "Berger") -> Case:
        async with self.store.unit() as unit:
            return await queue.claim(unit, reference, self.counsellors[name])

    async def release(self, reference: str, name: str = "Berger", reason: str = "Urlaub") -> Case:
        async with self.store.unit() as unit:
            return await queue.release(unit, reference, self.counsellors[name], reason, ESCALATE)

    async def transfer(self, reference: str, name: str, to: str) -> None:
        async with self.store.unit() as unit:
            await queue.transfer(unit, reference, self.counsellors[name], to)

    async def close(self, reference: str, name: str = "Berger", outcome: str = "advised") -> None:
        async with self.store.unit() as unit:
            await queue.close(unit, reference, self.counsellors[name], outcome)

    async def reopen(self, reference: str, actor: str = "Berger") -> None:
        async with self.store.unit() as unit:
            await queue.reopen(unit, reference, actor, ESCALATE)

    async def waiting(self) -> list[str]:
        async with self.store.unit() as unit:
            return [case.reference for case in await queue.waiting(unit)]

    async def position(self, reference: str) -> int | None:
        async with self.store.unit() as unit:
            return await queue.position(unit, reference)

    async def case(self, reference: str) -> Case:
        async with self.store.unit() as unit:
            case = await unit.case(reference)
        assert case is not None
        return case

    async def audited(self, action: Action) -> list[AuditEntry]:
        async with self.store.unit() as unit:
            chain, _ = await load_chain(unit.session)
        return [entry for entry in chain if entry.action == action.value]


@pytest.fixture
async def desk(store: Store) -> Desk:
    return await Desk.on(store)


async def refused(action, key: str) -> dict[str, str]:
    """Run `action`, which must be refused for `key`; the refusal's fields, for its text."""
    with pytest.raises(queue.Refusal) as caught:
        await action
    assert caught.value.key == key
    return caught.value.fields


# -- order ----------------------------------------------------------------------------------------


async def test_the_place_counted_by_the_database_is_the_place_in_the_queue(desk: Desk) -> None:
    """Ties on the clock (a burst submits many cases in the same instant) are broken by
    arrival, and urgency goes first: the counted place agrees with the queue's order."""
    picks = random.Random(12)
    references = []
    for _ in range(3):
        for _ in range(5):  # five cases in one instant, urgent or not
            references.append(await desk.submit(urgent=picks.random() < 0.4))
        desk.clock.advance(seconds=1)
    claimed = picks.sample(references, 4)
    for reference in claimed:
        await desk.claim(reference)
    desk.clock.advance(seconds=1)
    await desk.release(claimed[0])  # back in, behind everyone waiting since before

    queued = await desk.waiting()
    assert len(queued) >= 11
    assert [await desk.position(reference) for reference in queued] == list(
        range(1, len(queued) + 1)
    )
    for reference in set(references) - set(queued):
        assert await desk.position(reference) is None


async def test_urgent_first_then_longest_waiting_and_a_release_goes_back_in_order(
    desk: Desk,
) -> None:
    old = await desk.submit()
    desk.clock.advance(minutes=1)
    urgent = await desk.submit(urgent=True)
    desk.clock.advance(minutes=1)
    newer = await desk.submit()
    desk.clock.advance(minutes=1)
    later_urgent = await desk.submit(urgent=True)

    assert await desk.waiting() == [urgent, later_urgent, old, newer]
    assert [await desk.position(ref) for ref in (urgent, later_urgent, old, newer)] == [1, 2, 3, 4]

    desk.clock.advance(minutes=1)
    await desk.claim(urgent)
    await desk.claim(old)
    assert await desk.waiting() == [later_urgent, newer]
    assert await desk.position(old) is None
    assert await desk.position(newer) == 2

    # Back in the queue by when it re-entered it: behind the cases waiting since before,
    # ahead of those that come later; an urgent case still goes before every normal one.
    desk.clock.advance(minutes=10)
    await desk.release(old)
    desk.clock.advance(minutes=1)
    latest = await desk.submit()
    assert await desk.waiting() == [later_urgent, newer, old, latest]
    assert await desk.position(old) == 3
    desk.clock.advance(minutes=1)
    await desk.release(urgent)
    assert await desk.waiting() == [later_urgent, urgent, newer, old, latest]

    await desk.claim(newer)
    await desk.close(newer)
    assert await desk.position(newer) is None
    desk.clock.advance(minutes=1)
    await desk.reopen(newer)
    assert await desk.waiting() == [later_urgent, urgent, old, latest, newer]
    async with desk.store.unit() as unit:
        assert (await queue.health(unit)).oldest_wait == dt.timedelta(minutes=14)  # later_urgent


# -- the claim race -------------------------------------------------------------------------------

CASES = 50
CLAIMERS = 8


async def team_of_eight(desk: Desk, key: UnlockedKey) -> list[Counsellor]:
    async with desk.store.unit() as unit:
        for number in range(2, CLAIMERS + 1):
            entry = CounsellorEntry(f"Beraterin{number}", f"B. Nummer {number}")
            await add(unit, key, entry, PrivateKey.generate().public_key())
    await desk.reload()
    return list(desk.counsellors.values())


async def fifty_cases(desk: Desk) -> list[str]:
    async with desk.store.unit() as unit:  # one transaction: quicker to set up
        return [
            await unit.create_case(f"official-{number}", "console", number % 7 == 0, {}, [])
            for number in range(CASES)
        ]


async def check_each_claimed_once(
    desk: Desk, references: list[str], won: dict[str, list[str]], losses: list[list[str]]
) -> None:
    """`won`: counsellor name → references; `losses`: [reference, refusal key, holder]."""
    names = {counsellor.id: counsellor.name for counsellor in desk.counsellors.values()}
    displays = {
        counsellor.name: counsellor.display_name for counsellor in desk.counsellors.values()
    }
    winners: dict[str, list[str]] = {}
    for name, references_won in won.items():
        for reference in references_won:
            winners.setdefault(reference, []).append(name)
    assert sorted(winners) == sorted(references)
    assert sum(1 for taken in won.values() if taken) > 1, "one claimer took all: no race"
    assert all(len(names_) == 1 for names_ in winners.values()), winners

    for reference in references:
        case = await desk.case(reference)
        assert case.status == queue.CLAIMED
        assert case.claimed_by is not None
        assert names[case.claimed_by] == winners[reference][0]

    claimed = await desk.audited(Action.CASE_CLAIMED)
    assert len(claimed) == CASES
    assert sorted(entry.case_reference or "" for entry in claimed) == sorted(references)
    assert all(entry.actor == winners[entry.case_reference or ""][0] for entry in claimed)

    assert len(losses) == CASES * (CLAIMERS - 1)
    for reference, key, holder in losses:
        assert key == "staff_claimed_by_other"
        assert holder == displays[winners[reference][0]]

    async with desk.store.unit() as unit:
        chain, head = await load_chain(unit.session)
    assert verify(desk.store.keys.audit_key, chain, head) is None


async def test_fifty_cases_eight_claimers_as_tasks_each_case_claimed_once(
    desk: Desk, counsellor_key: UnlockedKey
) -> None:
    team = await team_of_eight(desk, counsellor_key)
    references = await fifty_cases(desk)
    won: dict[str, list[str]] = {counsellor.name: [] for counsellor in team}
    losses: list[list[str]] = []
    start = asyncio.Event()

    async def claimer(number: int, counsellor: Counsellor) -> None:
        order = list(references)
        random.Random(number).shuffle(order)  # so that more than the fastest one wins
        await start.wait()
        for reference in order:
            try:
                async with desk.store.unit() as unit:
                    await queue.claim(unit, reference, counsellor)
            except queue.Refusal as refusal:
                losses.append([reference, refusal.key, refusal.fields.get("holder", "")])
            else:
                won[counsellor.name].append(reference)

    tasks = [asyncio.create_task(claimer(n, counsellor)) for n, counsellor in enumerate(team)]
    await asyncio.sleep(0)
    start.set()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)

    await check_each_claimed_once(desk, references, won, losses)


CLAIMER_SCRIPT = """
import asyncio, json, pathlib, random, sys

from sqlalchemy import select

from storage import queue
from storage.db import open_database
from storage.models import Counsellor
from storage.repository import Store
from storage.server_secret import ServerKeys


async def main(url, name, folder):
    folder = pathlib.Path(folder)
    database = open_database(url)
    store = Store(database, ServerKeys.from_secret(bytes([7]) * 32))
    references = json.loads((folder / "references.json").read_text())
    random.Random(name).shuffle(references)
    async with store.unit() as unit:
        me = (await unit.session.scalars(select(Counsellor).where(Counsellor.name == name))).one()
    (folder / f"ready-{name}").touch()
    while not (folder / "go").exists():
        await asyncio.sleep(0.005)
    won, lost = [], []
    for reference in references:
        try:
            async with store.unit() as unit:
                await queue.claim(unit, reference, me)
        except queue.Refusal as refusal:
            lost.append([reference, refusal.key, refusal.fields.get("holder", "")])
        else:
            won.append(reference)
    await database.dispose()
    print(json.dumps({"won": won, "lost": lost}))


asyncio.run(main(*sys.argv[1:]))
"""


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_fifty_cases_eight_claiming_processes_on_postgresql(
    desk: Desk, counsellor_key: UnlockedKey, database_url: str, tmp_path: Path
) -> None:
    assert database_url.startswith("postgresql+asyncpg://")
    team = await team_of_eight(desk, counsellor_key)
    references = await fifty_cases(desk)
    (tmp_path / "references.json").write_text(json.dumps(references))
    script = tmp_path / "claimer.py"
    script.write_text(CLAIMER_SCRIPT)
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            database_url,
            counsellor.name,
            str(tmp_path),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for counsellor in team
    ]
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not all((tmp_path / f"ready-{c.name}").exists() for c in team):
            assert all(process.returncode in (None, 0) for process in processes), [
                (await process.communicate())[1] for process in processes if process.returncode
            ]
            assert loop.time() < deadline, "the claiming processes did not start in time"
            await asyncio.sleep(0.02)
        (tmp_path / "go").touch()  # all at once
        results = [
            await asyncio.wait_for(process.communicate(), timeout=60) for process in processes
        ]
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
    for process, (_, err) in zip(processes, results, strict=True):
        assert process.returncode == 0, err.decode()

    won: dict[str, list[str]] = {}
    losses: list[list[str]] = []
    for counsellor, (out, _) in zip(team, results, strict=True):
        reported = json.loads(out.decode().strip().splitlines()[-1])
        won[counsellor.name] = reported["won"]
        losses += reported["lost"]
    await check_each_claimed_once(desk, references, won, losses)


# -- what may happen in which state ---------------------------------------------------------------


async def test_claim_refusals_name_the_holder_and_the_state(desk: Desk, counsellor_key) -> None:
    await desk.hire(counsellor_key, "Koch", "K. Koch")
    reference = await desk.submit()
    await desk.claim(reference, "Berger")
    fields = await refused(desk.claim(reference, "Koch"), "staff_claimed_by_other")
    assert fields == {"reference": reference, "holder": "A. Berger"}
    await refused(desk.claim(reference, "Berger"), "staff_already_yours")
    await desk.close(reference, "Berger", "referred")
    await refused(desk.claim(reference, "Koch"), "staff_closed_cannot_claim")
    await refused(desk.claim(reference, "Berger"), "staff_closed_cannot_claim")
    await refused(desk.claim("L-2025-9999", "Berger"), "staff_unknown_case")
    # Nothing of the refused attempts changed the case or reached the audit log.
    case = await desk.case(reference)
    assert (case.status, case.claimed_by) == (queue.CLOSED, desk.counsellors["Berger"].id)
    assert len(await desk.audited(Action.CASE_CLAIMED)) == 1


async def test_only_the_holder_may_release_transfer_or_close(desk: Desk, counsellor_key) -> None:
    await desk.hire(counsellor_key, "Koch", "K. Koch")
    await desk.hire(counsellor_key, "Lutz", "L. Lutz")
    reference = await desk.submit()
    await refused(desk.release(reference, "Berger"), "staff_not_claimed")
    await refused(desk.close(reference, "Berger"), "staff_not_claimed")
    await refused(desk.transfer(reference, "Berger", "Koch"), "staff_not_claimed")

    await desk.claim(reference, "Berger")
    for attempt in (
        desk.release(reference, "Koch"),
        desk.transfer(reference, "Koch", "Lutz"),
        desk.close(reference, "Koch"),
    ):
        fields = await refused(attempt, "staff_claimed_by_other")
        assert fields["holder"] == "A. Berger"
    await refused(desk.release(reference, "Berger", reason="  "), "staff_release_needs_reason")
    await refused(desk.close(reference, "Berger", outcome="gelöst"), "staff_unknown_outcome")
    case = await desk.case(reference)
    assert (case.status, case.claimed_by) == (queue.CLAIMED, desk.counsellors["Berger"].id)

    await refused(desk.reopen(reference), "staff_not_closed")
    await desk.close(reference, "Berger", "no_contact")
    await refused(desk.close(reference, "Berger"), "staff_is_closed")
    await refused(desk.release(reference, "Berger"), "staff_is_closed")
    await desk.reopen(reference)
    await refused(desk.reopen(reference), "staff_not_closed")
    assert await desk.waiting() == [reference]
    case = await desk.case(reference)
    assert (case.claimed_by, case.outcome, case.closed_at) == (None, None, None)


async def test_transfer_needs_an_active_counsellor(desk: Desk, counsellor_key) -> None:
    await desk.hire(counsellor_key, "Koch", "K. Koch")
    await desk.hire(counsellor_key, "Lutz", "L. Lutz")
    async with desk.store.unit() as unit:
        await revoke(unit, counsellor_key, "Lutz")
    reference = await desk.submit()
    await desk.claim(reference, "Berger")
    await refused(desk.transfer(reference, "Berger", "Niemand"), "staff_unknown_counsellor")
    await refused(desk.transfer(reference, "Berger", "Lutz"), "staff_unknown_counsellor")
    await refused(desk.transfer(reference, "Berger", "L. Lutz"), "staff_unknown_counsellor")
    await refused(desk.transfer(reference, "Berger", "Berger"), "staff_already_yours")
    assert (await desk.case(reference)).claimed_by == desk.counsellors["Berger"].id

    await desk.transfer(reference, "Berger", "k. koch")  # by display name, any case
    assert (await desk.case(reference)).claimed_by == desk.counsellors["Koch"].id
    await refused(desk.close(reference, "Berger"), "staff_claimed_by_other")
    await desk.close(reference, "Koch")
    [entry] = await desk.audited(Action.CASE_TRANSFERRED)
    assert json.loads(entry.detail) == {"from": "Berger", "to": "Koch"}


async def test_a_release_rearms_escalation_for_urgent_cases_only(desk: Desk) -> None:
    urgent, normal = await desk.submit(urgent=True), await desk.submit()
    await desk.claim(urgent)
    await desk.claim(normal)
    assert (await desk.case(urgent)).escalate_at is None
    desk.clock.advance(minutes=3)
    await desk.release(urgent)
    await desk.release(normal)
    urgent_case = await desk.case(urgent)
    assert urgent_case.escalate_at is not None
    assert urgent_case.escalate_at.replace(tzinfo=dt.UTC) == desk.clock.now + ESCALATE
    assert (await desk.case(normal)).escalate_at is None
    async with desk.store.unit() as unit:
        assert await queue.due_escalations(unit) == []
    desk.clock.advance(minutes=5)
    async with desk.store.unit() as unit:
        assert [case.reference for case in await queue.due_escalations(unit)] == [urgent]


# -- health and statistics ------------------------------------------------------------------------


@dataclass(frozen=True)
class Day:
    """Four cases of Wednesday 5 March 2025 and one from long ago, with known timings."""

    first: str  # 08:00, claimed by Berger after 10 min, first reply after 30 min
    second: str  # 09:00, claimed by Koch after 20 min, first reply after 40 min
    third: str  # 10:00, claimed by Berger after 30 min, no reply, closed "referred"
    fourth: str  # 11:00, urgent, waiting
    ancient: str  # 40 days earlier, claimed after 600 min, closed


async def reply_at(desk: Desk, reference: str) -> None:
    async with desk.store.unit() as unit:
        case = await unit.case(reference, lock=True)
        assert case is not None
        case.first_reply_at = unit.now


async def a_day(desk: Desk, key: UnlockedKey) -> Day:
    await desk.hire(key, "Koch", "K. Koch")
    desk.clock.now = START - dt.timedelta(days=40)
    ancient = await desk.submit()
    desk.clock.advance(minutes=600)
    await desk.claim(ancient)
    await reply_at(desk, ancient)
    await desk.close(ancient)

    desk.clock.now = START
    first = await desk.submit()
    desk.clock.now = START + dt.timedelta(minutes=10)
    await desk.claim(first, "Berger")
    desk.clock.now = START + dt.timedelta(minutes=30)
    await reply_at(desk, first)
    desk.clock.now = START + dt.timedelta(hours=1)
    second = await desk.submit()
    desk.clock.advance(minutes=20)
    await desk.claim(second, "Koch")
    desk.clock.advance(minutes=20)
    await reply_at(desk, second)
    desk.clock.now = START + dt.timedelta(hours=2)
    third = await desk.submit()
    desk.clock.advance(minutes=30)
    await desk.claim(third, "Berger")
    await desk.close(third, "Berger", "referred")
    # a second claim after a release does not change the time to the first claim
    desk.clock.advance(minutes=5)
    await desk.release(first, "Berger")
    await desk.claim(first, "Koch")
    desk.clock.now = START + dt.timedelta(hours=3)
    fourth = await desk.submit(urgent=True)
    desk.clock.now = START + dt.timedelta(hours=4)
    return Day(first, second, third, fourth, ancient)


async def test_health_counts_the_queue_and_the_medians_of_the_last_30_days(
    desk: Desk, counsellor_key: UnlockedKey
) -> None:
    await a_day(desk, counsellor_key)
    async with desk.store.unit() as unit:
        found = await queue.health(unit)
    assert found.waiting == 1
    assert found.oldest_wait == dt.timedelta(hours=1)
    assert found.urgent_unclaimed == 1
    assert found.open_per_counsellor == {"K. Koch": 2}
    assert found.median_minutes_to_claim == 20.0  # 10, 20, 30 (not the 600 of long ago)
    assert found.median_minutes_to_first_reply == 35.0  # 30, 40


async def test_stats_cover_the_period_asked_for(desk: Desk, counsellor_key: UnlockedKey) -> None:
    day = await a_day(desk, counsellor_key)
    async with desk.store.unit() as unit:
        morning = await queue.stats(unit, START, START + dt.timedelta(hours=2))
        whole = await queue.stats(unit, START, START + dt.timedelta(days=1))
        before = await queue.stats(unit, START - dt.timedelta(days=41), START)
    assert (morning.submitted, morning.claimed, morning.closed) == (2, 2, 0)
    assert morning.median_minutes_to_claim == 15.0
    assert morning.longest_minutes_to_claim == 20.0
    assert morning.median_minutes_to_first_reply == 35.0
    assert (whole.submitted, whole.urgent, whole.claimed, whole.closed) == (4, 1, 3, 1)
    assert whole.outcomes == {"referred": 1}
    assert whole.median_minutes_to_claim == 20.0
    assert whole.longest_minutes_to_claim == 30.0
    assert whole.median_minutes_to_first_reply == 35.0
    assert (before.submitted, before.median_minutes_to_claim) == (1, 600.0)
    assert before.outcomes == {"advised": 1}
    assert day.fourth not in {day.first, day.second, day.third}


STATS_OUTPUT = (
    "cases submitted 2025-03-05 to 2025-03-05 (UTC): 4, urgent: 1\n"
    "claimed: 3, closed: 1, outcomes: referred 1\n"
    "time to claim: median 20.0 min, longest 30.0 min\n"
    "time to first counsellor reply: median 35.0 min\n"
)


async def test_case_stats_prints_the_period(
    desk: Desk,
    counsellor_key: UnlockedKey,
    flow_engine: Engine,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await a_day(desk, counsellor_key)
    app = App(demo_config(tmp_path), flow_engine, desk.store)
    capsys.readouterr()
    assert await case_stats(app, dt.date(2025, 3, 5), dt.date(2025, 3, 5)) == 0
    assert capsys.readouterr().out == STATS_OUTPUT
    assert await case_stats(app, dt.date(2025, 3, 6), dt.date(2025, 3, 7)) == 0
    out = capsys.readouterr().out
    assert "2025-03-06 to 2025-03-07 (UTC): 0, urgent: 0" in out
    assert "time to claim: median –, longest –" in out


async def test_lotse_cases_stats_on_the_command_line(
    desk: Desk,
    counsellor_key: UnlockedKey,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await a_day(desk, counsellor_key)
    target = cli_target(desk.store, SECRET, tmp_path)
    monkeypatch.delenv("LOTSE_CONFIG", raising=False)
    monkeypatch.setenv("LOTSE_SERVER_SECRET", target.secret_base64())
    capsys.readouterr()
    arguments = ["cases", "stats", "--since", "2025-03-05", "--until", "2025-03-05"]
    code = await asyncio.to_thread(main, [*arguments, *target.arguments])
    out, err = capsys.readouterr()
    assert (code, out, err) == (0, STATS_OUTPUT, "")
    arguments = ["cases", "stats", "--since", "2025-03-06", "--until", "2025-03-05"]
    code = await asyncio.to_thread(main, [*arguments, *target.arguments])
    out, err = capsys.readouterr()
    assert code == 1
    assert "--since 2025-03-06 lies after --until 2025-03-05" in err
