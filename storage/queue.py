"""The counsellor queue: waiting cases, claims, and what may happen to a case in which state.

    waiting ──claim──▶ claimed ──close──▶ closed
       ▲                 │  ▲               │
       └────release──────┘  └──transfer     └──reopen──▶ waiting

A claim is one conditional UPDATE (`… WHERE status = 'waiting'`): when several
counsellors, tasks or processes claim at once, the database lets exactly one
row change, and everyone else is told who has the case.
"""

from __future__ import annotations

import datetime as dt
import functools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Select, and_, bindparam, func, or_, select, update

from storage.audit import Action
from storage.keyring import active_counsellors
from storage.models import CASES, Case, Counsellor
from storage.repository import Unit, aware

WAITING, CLAIMED, CLOSED = "waiting", "claimed", "closed"
OUTCOMES = ("referred", "advised", "no_contact", "other")
QUEUE_ORDER = (Case.urgent.desc(), Case.queued_at, Case.id)


class Refusal(Exception):
    """A staff action that does not fit the case's state; `key` names the text that explains it."""

    def __init__(self, key: str, **fields: str) -> None:
        self.key = key
        self.fields = fields
        super().__init__(key)


async def counsellor_named(unit: Unit, name: str) -> Counsellor | None:
    wanted = name.strip().casefold()
    for counsellor in await active_counsellors(unit.session):
        if wanted in (counsellor.name.casefold(), counsellor.display_name.casefold()):
            return counsellor
    return None


async def _case(unit: Unit, reference: str) -> Case:
    case = await unit.case(reference, lock=True)
    if case is None:
        raise Refusal("staff_unknown_case", reference=reference)
    return case


async def _holder(unit: Unit, case: Case) -> str:
    if case.claimed_by is None:
        return "?"
    holder = await unit.session.get(Counsellor, case.claimed_by)
    return holder.display_name if holder else "?"


async def claim(unit: Unit, reference: str, counsellor: Counsellor) -> Case:
    """Exactly one of several simultaneous claims wins; the others learn who has the case."""
    won = await unit.session.execute(
        update(Case)
        .where(Case.reference == reference, Case.status == WAITING)
        .values(
            status=CLAIMED,
            claimed_by=counsellor.id,
            claimed_at=unit.now,
            first_claimed_at=func.coalesce(Case.first_claimed_at, unit.now),
            escalate_at=None,
        )
        .returning(Case.id)
    )
    if won.scalar_one_or_none() is None:
        case = await _case(unit, reference)
        if case.status == CLAIMED:
            holder = await _holder(unit, case)
            if case.claimed_by == counsellor.id:
                raise Refusal("staff_already_yours", reference=reference)
            raise Refusal("staff_claimed_by_other", reference=reference, holder=holder)
        raise Refusal("staff_closed_cannot_claim", reference=reference)
    await unit.audit(Action.CASE_CLAIMED, counsellor.name, reference)
    case = await _case(unit, reference)
    await unit.session.refresh(case)
    return case


async def _claimed_by(unit: Unit, reference: str, counsellor: Counsellor) -> Case:
    case = await _case(unit, reference)
    if case.status == WAITING:
        raise Refusal("staff_not_claimed", reference=reference)
    if case.status == CLOSED:
        raise Refusal("staff_is_closed", reference=reference)
    if case.claimed_by != counsellor.id:
        raise Refusal(
            "staff_claimed_by_other", reference=reference, holder=await _holder(unit, case)
        )
    return case


async def release(
    unit: Unit, reference: str, counsellor: Counsellor, reason: str, escalate_after: dt.timedelta
) -> Case:
    if not reason.strip():
        raise Refusal("staff_release_needs_reason", reference=reference)
    case = await _claimed_by(unit, reference, counsellor)
    case.status, case.claimed_by, case.claimed_at = WAITING, None, None
    case.queued_at = unit.now
    case.escalate_at = unit.now + escalate_after if case.urgent else None
    await unit.add_item(reference, "release", {"by": counsellor.name, "text": reason})
    await unit.audit(Action.CASE_RELEASED, counsellor.name, reference)
    return case


async def release_held_by(
    unit: Unit, holder: Counsellor, by: str, escalate_after: dt.timedelta
) -> list[Case]:
    """Every case `holder` has claimed back to the queue (their access was revoked by `by`).

    Urgent ones are raised at once, then again at each interval until someone claims them.
    """
    held = list(
        await unit.session.scalars(
            select(Case)
            .where(Case.status == CLAIMED, Case.claimed_by == holder.id)
            .order_by(Case.id)
            .with_for_update()
        )
    )
    for case in held:
        case.status, case.claimed_by, case.claimed_at = WAITING, None, None
        case.queued_at = unit.now
        case.escalate_at = unit.now if case.urgent else None
        await unit.audit(Action.CASE_RELEASED, by, case.reference, {"revoked": holder.name})
    return held


async def take_over(unit: Unit, reference: str, counsellor: Counsellor, reason: str) -> str:
    """Claim a case another counsellor holds but cannot answer (gone, ill, unreachable).

    The reason is sealed into the case; the audit log names both. Returns the former holder.
    """
    if not reason.strip():
        raise Refusal("staff_take_over_needs_reason", reference=reference)
    case = await _case(unit, reference)
    if case.status == WAITING:
        await claim(unit, reference, counsellor)
        return ""
    if case.status == CLOSED:
        raise Refusal("staff_closed_cannot_claim", reference=reference)
    if case.claimed_by == counsellor.id:
        raise Refusal("staff_already_yours", reference=reference)
    holder = await unit.session.get(Counsellor, case.claimed_by)
    former = holder.name if holder else "?"
    case.claimed_by, case.claimed_at = counsellor.id, unit.now
    await unit.add_item(
        reference, "takeover", {"by": counsellor.name, "from": former, "text": reason}
    )
    await unit.audit(
        Action.CASE_TAKEN_OVER, counsellor.name, reference, {"from": former, "to": counsellor.name}
    )
    return holder.display_name if holder else "?"


async def transfer(
    unit: Unit, reference: str, counsellor: Counsellor, to: str
) -> tuple[Case, Counsellor]:
    case = await _claimed_by(unit, reference, counsellor)
    target = await counsellor_named(unit, to)
    if target is None:
        raise Refusal("staff_unknown_counsellor", name=to)
    if target.id == counsellor.id:
        raise Refusal("staff_already_yours", reference=reference)
    case.claimed_by, case.claimed_at = target.id, unit.now
    await unit.audit(
        Action.CASE_TRANSFERRED,
        counsellor.name,
        reference,
        {"from": counsellor.name, "to": target.name},
    )
    return case, target


async def close(unit: Unit, reference: str, counsellor: Counsellor, outcome: str) -> Case:
    case = await _claimed_by(unit, reference, counsellor)
    if outcome not in OUTCOMES:
        raise Refusal("staff_unknown_outcome", reference=reference)
    case.status, case.closed_at, case.outcome = CLOSED, unit.now, outcome
    case.escalate_at = None
    await unit.audit(Action.CASE_CLOSED, counsellor.name, reference, {"outcome": outcome})
    return case


async def reopen(unit: Unit, reference: str, actor: str, escalate_after: dt.timedelta) -> Case:
    case = await _case(unit, reference)
    if case.status != CLOSED:
        raise Refusal("staff_not_closed", reference=reference)
    case.status, case.closed_at, case.outcome = WAITING, None, None
    case.claimed_by, case.claimed_at = None, None
    case.queued_at = unit.now
    case.escalate_at = unit.now + escalate_after if case.urgent else None
    await unit.audit(Action.CASE_REOPENED, actor, reference)
    return case


def waiting_since(case: Case) -> dt.datetime:
    return aware(case.queued_at or case.created_at)


async def waiting(unit: Unit) -> list[Case]:
    query = select(Case).where(Case.status == WAITING).order_by(*QUEUE_ORDER)
    return list(await unit.session.scalars(query))


async def position(unit: Unit, reference: str) -> int | None:
    """1 for the next case a counsellor will take; None when the case is not waiting.

    Counted by the database (the waiting cases up to this one in QUEUE_ORDER), not by
    loading the queue: in a burst thousands wait, and every waiting official's message
    asks for its place. No row for this case (not waiting): nothing to count, 0."""
    await unit.session.flush()  # a claim or release of this unit counts (a Core query)
    counted = await unit.session.scalar(_place_query(), {"reference": reference})
    return int(counted) if counted else None


@functools.cache
def _place_query() -> Select[int]:
    # Built once, on the table (SQLAlchemy Core): building it, and the ORM's handling of an
    # ORM query, were most of what a submission's count cost.
    cases = CASES.c
    mine = (
        select(cases.urgent, cases.queued_at, cases.id)
        .where(cases.reference == bindparam("reference"), cases.status == WAITING)
        .subquery()
    )
    up_to_mine = or_(
        cases.urgent > mine.c.urgent,
        and_(
            cases.urgent == mine.c.urgent,
            or_(
                cases.queued_at < mine.c.queued_at,
                and_(cases.queued_at == mine.c.queued_at, cases.id <= mine.c.id),
            ),
        ),
    )
    query = select(func.count()).select_from(CASES).join(mine, up_to_mine)
    return query.where(cases.status == WAITING)


async def due_escalations(unit: Unit) -> list[Case]:
    query = (
        select(Case)
        .where(Case.status == WAITING, Case.urgent.is_(True), Case.escalate_at <= unit.now)
        .order_by(*QUEUE_ORDER)
        .with_for_update()
    )
    return list(await unit.session.scalars(query))


def _minutes(values: Sequence[dt.timedelta]) -> float | None:
    return (
        round(statistics.median(value.total_seconds() for value in values) / 60, 1)
        if values
        else None
    )


@dataclass(frozen=True)
class Health:
    waiting: int
    oldest_wait: dt.timedelta | None
    urgent_unclaimed: int
    open_per_counsellor: dict[str, int]
    median_minutes_to_claim: float | None
    median_minutes_to_first_reply: float | None


async def health(unit: Unit) -> Health:
    queue = await waiting(unit)
    claimed = (
        await unit.session.execute(
            select(Counsellor.display_name, func.count(Case.id))
            .join(Case, Case.claimed_by == Counsellor.id)
            .where(Case.status == CLAIMED)
            .group_by(Counsellor.display_name)
        )
    ).all()
    recent = await _metrics(unit, unit.now - dt.timedelta(days=30), unit.now)
    return Health(
        waiting=len(queue),
        oldest_wait=unit.now - min(waiting_since(case) for case in queue) if queue else None,
        urgent_unclaimed=sum(1 for case in queue if case.urgent),
        open_per_counsellor={name: count for name, count in claimed},
        median_minutes_to_claim=recent.median_minutes_to_claim,
        median_minutes_to_first_reply=recent.median_minutes_to_first_reply,
    )


@dataclass(frozen=True)
class Stats:
    since: dt.datetime
    until: dt.datetime
    submitted: int
    urgent: int
    claimed: int
    closed: int
    outcomes: dict[str, int] = field(default_factory=dict)
    median_minutes_to_claim: float | None = None
    median_minutes_to_first_reply: float | None = None
    longest_minutes_to_claim: float | None = None


async def _metrics(unit: Unit, since: dt.datetime, until: dt.datetime) -> Stats:
    cases = list(
        await unit.session.scalars(
            select(Case).where(Case.created_at >= since, Case.created_at < until)
        )
    )
    to_claim = [
        aware(case.first_claimed_at) - aware(case.created_at)
        for case in cases
        if case.first_claimed_at
    ]
    to_reply = [
        aware(case.first_reply_at) - aware(case.created_at) for case in cases if case.first_reply_at
    ]
    outcomes: dict[str, int] = {}
    for case in cases:
        if case.outcome:
            outcomes[case.outcome] = outcomes.get(case.outcome, 0) + 1
    return Stats(
        since=since,
        until=until,
        submitted=len(cases),
        urgent=sum(1 for case in cases if case.urgent),
        claimed=len(to_claim),
        closed=sum(1 for case in cases if case.status == CLOSED),
        outcomes=outcomes,
        median_minutes_to_claim=_minutes(to_claim),
        median_minutes_to_first_reply=_minutes(to_reply),
        longest_minutes_to_claim=round(max(to_claim).total_seconds() / 60, 1) if to_claim else None,
    )


async def stats(unit: Unit, since: dt.datetime, until: dt.datetime) -> Stats:
    """Times to claim and to first reply for cases submitted in [since, until): metadata only."""
    return await _metrics(unit, since, until)
