"""The handoff: from a submitted case to a counsellor talking with the official through the bot.

Three modules, one reason to change each: this one is the case's lifecycle on the
official's side (the new case's post, writing while waiting or claimed, the safety
check after submission, coming back to a closed case); `staff.py` the staff room's
commands; `relay.py` what is posted, told and passed on. Everything runs inside the
core's transaction (`Unit`) and writes to the outbox, which `delivery.py` sends once
the change is committed. Nothing is relayed before a claim; only the claiming
counsellor's messages reach the official, signed with their display name; notes are
sealed, never relayed.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from bot.core.hours import describe, describe_moment
from bot.core.staff import StaffDesk
from bot.core.types import Pick, Reply
from flows.answers import match_one, one_line, quoted
from flows.messages import Choice
from flows.picks import await_answer, picked, prompt_id
from flows.safety import numbers_in
from flows.state import IntakeState, StoredFile
from storage import outbox, queue
from storage.audit import OFFICIAL
from storage.models import Case
from storage.repository import Unit, aware

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OfficialTurn:
    """What the core does with an official's message after submission."""

    state: IntakeState
    replies: list[Reply]


class Handoff(StaffDesk):
    """The official's side of a case: waiting, writing after submission, coming back."""

    def waiting_note(
        self, position: int | None, language: str, now: dt.datetime, said_before: str = ""
    ) -> str:
        """Queue position and whether someone is on duty, or when they will be and whom to call.

        `said_before` is the message the official reads right before this one: when it gave
        every number the note would give (the danger lane's lines), the note points to them
        instead of repeating them. A note that would add a number still gives them all.
        """
        parts = []
        if position is not None:
            parts.append(self.texts.get("queue_position", language, position=position))
        opening = self._next_opening(language, now)
        if opening is None:
            parts.append(self.texts.get("hours_open", language))
            lines = self.texts.get("lines_open", language)
        else:
            hours = describe(self.settings.hours, self.texts, language)
            parts.append(
                self.texts.get("hours_closed", language, hours=hours, next_opening=opening)
            )
            lines = self.texts.get("lines_closed", language)
        given = set(numbers_in(lines))
        if given and given <= set(numbers_in(said_before)):
            lines = self.texts.get("lines_above", language)
        parts.append(lines)
        return " ".join(parts)

    def _next_opening(self, language: str, now: dt.datetime) -> str | None:
        """None during counselling hours; otherwise when they next begin, e.g. 'Montag, 9 Uhr'."""
        local = now.astimezone(self.settings.timezone)
        if self.settings.hours.is_open(local):
            return None
        return describe_moment(self.settings.hours.next_opening(local), self.texts, language)

    async def case_submitted(self, unit: Unit, reference: str, summary: str, urgent: bool) -> None:
        """Queue the new case's post in the staff room, and arm the escalation timer."""
        if urgent:
            case = await unit.case(reference, lock=True)
            assert case is not None
            case.escalate_at = unit.now + self.settings.escalate_after
        text = f"{summary}\n\n{self._staff('staff_commands_hint')}"
        await outbox.to_staff(unit, reference, text, urgent=urgent, opens=True)

    async def official_writes(
        self,
        unit: Unit,
        sender: str,
        state: IntakeState,
        text: str,
        files: list[StoredFile],
        *,
        pick: Pick | None = None,
    ) -> OfficialTurn:
        """An official writes after submitting: the safety layer first, then the turn."""
        hit = await self._safety_first(unit, state, text) if pick is None else None
        turn = await self._official_turn(unit, sender, state, text, files, pick=pick)
        if hit is None:
            return turn
        said, replaces = hit
        return OfficialTurn(turn.state, [said] if replaces else [said, *turn.replies])

    async def _safety_first(
        self, unit: Unit, state: IntakeState, text: str
    ) -> tuple[Reply, bool] | None:
        """Words of danger or of a wish to die while the case waits or is being answered:
        the numbers first, the case raised to urgent (escalation applies) and a content-free
        alert in the staff room, claimed or not. Returns the reply and whether it replaces
        the usual "kept" note (which would thank them)."""
        verdict = self.engine.safety.check(text)
        if not verdict:
            return None
        language = state.language
        said = self.engine.safety_reply(verdict, language)
        case = await unit.case(state.case_reference or "", lock=True)
        if case is None or case.status not in (queue.WAITING, queue.CLAIMED):
            return Reply(said), False
        case.urgent = True
        due = unit.now + self.settings.escalate_after
        case.escalate_at = min(aware(case.escalate_at), due) if case.escalate_at else due
        alert = self._staff("staff_safety_alert", reference=case.reference)
        await outbox.to_staff(unit, None, alert, urgent=True)
        logger.warning("a message on a submitted case hit the safety layer: raised to urgent")
        said += "\n\n" + self.texts.get("safety_raised", language)
        if case.status == queue.CLAIMED:
            return Reply(said), False
        opening = self._next_opening(language, unit.now)
        if opening is not None:
            said += " " + self.texts.get("hours_closed_short", language, next_opening=opening)
        return Reply(said), True

    async def _official_turn(
        self,
        unit: Unit,
        sender: str,
        state: IntakeState,
        text: str,
        files: list[StoredFile],
        *,
        pick: Pick | None = None,
    ) -> OfficialTurn:
        """Keep what an official writes after submitting, relay it, or help them come back."""
        reference = state.case_reference or ""
        language = state.language
        case = await unit.case(reference, lock=True)
        if case is None:  # deleted by retention: begin again
            fresh = self.engine.new_state(language)
            return OfficialTurn(fresh, [self.engine.ask(fresh)])
        if state.pending == "return":
            return await self._return_choice(unit, state, case, text, pick)
        if pick is not None:  # nothing is asked while a case is open: an earlier question's button
            return OfficialTurn(state, [Reply(self.texts.get("stale_pick_gone", language))])
        if state.relay_backlog:  # left by a version that held words until the claim
            await self._post_backlog(unit, reference, state.relay_backlog)
            state.relay_backlog = []
        if files:
            await unit.add_files(reference, sender, files)
        if case.status == queue.WAITING:
            # Into the thread at once (the staff room sees it before a claim) and sealed
            # into the case; nothing of it stays readable in the conversation's state.
            await self._official_says(unit, reference, text, files)
            # The whole confirmation was said once; now just the news: kept, and the place.
            position = await queue.position(unit, reference)
            text = self.texts.get("waiting_message_kept", language, position=position or 1)
            opening = self._next_opening(language, unit.now)
            if opening is not None:
                text += " " + self.texts.get("hours_closed_short", language, next_opening=opening)
            return OfficialTurn(state, [Reply(text)])
        if case.status == queue.CLAIMED:
            await self._official_says(unit, reference, text, files)
            return OfficialTurn(state, [])
        # Closed: what they came back to say goes to the old case's thread, whatever they
        # choose next (a new report begins with their answers, not these words).
        await self._official_says(unit, reference, text, files)
        return self._offer_return(unit, state, case)

    async def _official_says(
        self, unit: Unit, reference: str, text: str, files: list[StoredFile]
    ) -> None:
        if text:
            await unit.add_item(reference, "message", {"from": OFFICIAL, "text": text})
            await self._post(unit, reference, self._staff("staff_official_says", text=quoted(text)))
        for file in files:
            await self._post(
                unit,
                reference,
                self._staff("staff_official_file", name=one_line(file.name), size=file.size),
            )

    def _return_choices(self, language: str, can_reopen: bool) -> tuple[Choice, ...]:
        new = Choice("new", self.texts.get("return_new", language))
        if not can_reopen:
            return (new,)
        return (Choice("reopen", self.texts.get("return_reopen", language)), new)

    def _can_reopen(self, unit: Unit, case: Case) -> bool:
        closed = aware(case.closed_at) if case.closed_at else unit.now
        return unit.now - closed <= self.settings.reopen_within

    def _offer_return(self, unit: Unit, state: IntakeState, case: Case) -> OfficialTurn:
        await_answer(state, "return")
        return OfficialTurn(
            state, [self._return_question(state, case, self._can_reopen(unit, case))]
        )

    def _return_question(self, state: IntakeState, case: Case, can_reopen: bool) -> Reply:
        language = state.language
        key = "return_choice" if can_reopen else "return_too_old"
        text = self.texts.get(key, language, reference=case.reference)
        choices = self._return_choices(language, can_reopen)
        return Reply(text, choices, prompt=prompt_id(state))

    async def _return_choice(
        self, unit: Unit, state: IntakeState, case: Case, text: str, pick: Pick | None
    ) -> OfficialTurn:
        language = state.language
        can_reopen = case.status == queue.CLOSED and self._can_reopen(unit, case)
        choices = self._return_choices(language, can_reopen)
        if pick is not None:
            keys = picked(pick, prompt_id(state), choices, multiple=False)
            if keys is None:  # an earlier button: say so, ask again, change nothing
                stale = Reply(self.texts.get("stale_pick", language))
                return OfficialTurn(state, [stale, self._return_question(state, case, can_reopen)])
            chosen: str | None = keys[0]
        else:
            chosen = match_one(text, choices, {})
        if chosen is None:
            again = Reply(
                self.texts.get("return_choose", language), choices, prompt=prompt_id(state)
            )
            return OfficialTurn(state, [again])
        state.pending = None
        if chosen == "new":
            fresh = self.engine.begin_again(state, previous_reference=case.reference)
            return OfficialTurn(fresh, self._first_question(fresh))
        if case.status == queue.CLOSED:
            await queue.reopen(unit, case.reference, OFFICIAL, self.settings.escalate_after)
            actor = self._staff("staff_official_returned")
            reopened_post = self._staff("staff_reopened", actor=actor)
            await self._post(unit, case.reference, reopened_post, thread_open=True)
        position = await queue.position(unit, case.reference)
        reopened = self.texts.get("reopened_notice", language, reference=case.reference)
        note = self.waiting_note(position, language, unit.now)
        return OfficialTurn(state, [Reply(f"{reopened} {note}")])

    def _first_question(self, state: IntakeState) -> list[Reply]:
        return [self.engine.ask(state)]
