"""The handoff: from a submitted case to a counsellor talking with the official through the bot.

Everything here runs inside the core's transaction (`Unit`) and writes what must
be said to the outbox, which `delivery.py` sends once the change is committed.
Nothing is relayed before a claim; only the claiming counsellor's messages reach
the official, signed with their display name; notes are sealed, never relayed.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from bot.core.hours import describe, describe_moment
from bot.core.settings import Settings
from bot.core.types import Attachment, Pick, Reply, StaffInbound, StaffMember, StaffRoom
from flows.answers import match_one, parse_command
from flows.engine import Engine
from flows.messages import Choice
from flows.picks import await_answer, picked, prompt_id
from flows.state import IntakeState, StoredFile
from storage import outbox, queue
from storage.audit import OFFICIAL, Action
from storage.keyring import active_counsellors
from storage.models import Case, Counsellor
from storage.queue import Refusal
from storage.repository import Unit, aware

logger = logging.getLogger(__name__)

CASE_COMMANDS = frozenset({"claim", "release", "transfer", "note", "close", "reopen"})


def staff_member(counsellor: Counsellor) -> StaffMember:
    """A counsellor as the staff room sees them."""
    handles = {held.channel: held.handle for held in counsellor.handles}
    return StaffMember(counsellor.display_name, counsellor.name, handles)


@dataclass(frozen=True)
class OfficialTurn:
    """What the core does with an official's message after submission."""

    state: IntakeState
    replies: list[Reply]


class Handoff:
    def __init__(self, engine: Engine, settings: Settings, staff_room: StaffRoom) -> None:
        self.engine = engine
        self.texts = engine.texts
        self.settings = settings
        self.staff_room = staff_room
        self._staff_commands = self.texts.command_names("staff_commands")
        self._outcomes = self.texts.command_names("outcomes")

    def _staff(self, key: str, **fields: object) -> str:
        return self.texts.get(key, self.settings.staff_language, **fields)

    # -- the official's side -----------------------------------------------------------------

    def waiting_note(self, position: int | None, language: str, now: dt.datetime) -> str:
        """Queue position and whether someone is on duty, or when they will be and whom to call."""
        parts = []
        if position is not None:
            parts.append(self.texts.get("queue_position", language, position=position))
        opening = self._next_opening(language, now)
        if opening is None:
            parts.append(self.texts.get("hours_open", language))
        else:
            hours = describe(self.settings.hours, self.texts, language)
            parts.append(
                self.texts.get("hours_closed", language, hours=hours, next_opening=opening)
            )
        return " ".join(parts)

    def _next_opening(self, language: str, now: dt.datetime) -> str | None:
        """None during counselling hours; otherwise when they next begin, e.g. 'Montag, 9 Uhr'."""
        local = now.astimezone(self.settings.timezone)
        if self.settings.hours.is_open(local):
            return None
        return describe_moment(self.settings.hours.next_opening(local), self.texts, language)

    async def case_submitted(self, unit: Unit, reference: str, summary: str, urgent: bool) -> None:
        """Queue the new case's post in the staff room, and arm the escalation timer."""
        case = await unit.case(reference, lock=True)
        assert case is not None
        if urgent:
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
        if files:
            await unit.add_files(reference, sender, files)
        if case.status == queue.WAITING:
            if text:
                await unit.add_item(reference, "message", {"from": OFFICIAL, "text": text})
                state.relay_backlog.append(text)
            # The whole confirmation was said once; now just the news: kept, and the place.
            position = await queue.position(unit, reference)
            text = self.texts.get("waiting_message_kept", language, position=position or 1)
            opening = self._next_opening(language, unit.now)
            if opening is not None:
                text += " " + self.texts.get("hours_closed_short", language, next_opening=opening)
            return OfficialTurn(state, [Reply(text)])
        if case.status == queue.CLAIMED:
            if text:
                await unit.add_item(reference, "message", {"from": OFFICIAL, "text": text})
                await self._post(unit, reference, self._staff("staff_official_says", text=text))
            for file in files:
                await self._post(
                    unit,
                    reference,
                    self._staff("staff_official_file", name=file.name, size=file.size),
                )
            return OfficialTurn(state, [])
        if text:  # what they came back to say is kept; a counsellor sees it at the next claim
            await unit.add_item(reference, "message", {"from": OFFICIAL, "text": text})
            state.relay_backlog.append(text)
        return self._offer_return(unit, state, case)

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
            await self._post(unit, case.reference, self._staff("staff_reopened", actor=actor))
        position = await queue.position(unit, case.reference)
        reopened = self.texts.get("reopened_notice", language, reference=case.reference)
        note = self.waiting_note(position, language, unit.now)
        return OfficialTurn(state, [Reply(f"{reopened} {note}")])

    def _first_question(self, state: IntakeState) -> list[Reply]:
        return [self.engine.ask(state)]

    # -- the staff room ----------------------------------------------------------------------

    async def _post(self, unit: Unit, reference: str | None, text: str) -> None:
        await outbox.to_staff(unit, reference, text)

    async def _tell_official(self, unit: Unit, case: Case, key: str, **fields: object) -> None:
        loaded = await unit.load(case.sender_key)
        if loaded is None:  # the official deleted everything, or the intake was purged
            return
        text = self.texts.get(key, loaded.state.language, **fields)
        await outbox.to_official(
            unit,
            sender_key=case.sender_key,
            channel=loaded.channel,
            address=loaded.address,
            reply=Reply(text),
            reference=case.reference,
            urgent=case.urgent,
        )

    async def counsellor_for(self, unit: Unit, author: str) -> Counsellor | None:
        """The active counsellor behind a staff-room author, or None: the allow-list.
        The staff room decides who an author is."""
        for counsellor in await active_counsellors(unit.session):
            if self.staff_room.is_author(staff_member(counsellor), author):
                return counsellor
        return None

    async def staff_writes(self, unit: Unit, inbound: StaffInbound) -> None:
        """One staff-room message: a command, or (in a claimed case) words for the official."""
        text = inbound.text.strip()
        command, argument, spelled = parse_command(text, self._staff_commands)
        reference = await self._reference_of(unit, inbound.thread)
        counsellor = await self.counsellor_for(unit, inbound.author)
        if inbound.thread is not None and reference is None and counsellor is not None:
            # A thread Lotse does not know (or of a case since deleted).
            await self._post(
                unit, None, self._staff("staff_unknown_case", reference=inbound.thread)
            )
            return
        if reference is not None:
            # Lock order everywhere: the official's conversation, then the case. An official's
            # message takes them in this order, so a claim at the same moment must too.
            await unit.lock_conversation_of(reference)
        if counsellor is None:
            if spelled is not None or reference is not None:
                who = (
                    "unknown:"
                    + unit.keys.pseudonym(f"staff:{inbound.channel}", inbound.author)[:12]
                )
                await unit.audit(
                    Action.COMMAND_REFUSED, who, reference, {"command": command or "message"}
                )
                await self._post(unit, reference, self._staff("staff_not_allowed"))
                logger.warning(
                    "a staff-room message from someone not on the counsellor list was refused"
                )
            return
        if spelled is not None and command is None:
            shown = self.texts.staff_commands["help"].shown[self.settings.staff_language]
            await self._post(
                unit, reference, self._staff("staff_unknown_command", name=spelled, command=shown)
            )
            return
        try:
            if command in CASE_COMMANDS:
                if reference is None:
                    shown = self.texts.staff_commands[command].shown[self.settings.staff_language]
                    await self._post(unit, None, self._staff("staff_needs_case", command=shown))
                    return
                await self._case_command(unit, command, argument, reference, counsellor)
            elif command == "queue":
                await self._post(unit, reference, await self._queue_text(unit))
            elif command == "health":
                await self._post(unit, reference, await self._health_text(unit))
            elif command == "help":
                await self._post(unit, reference, self._help_text())
            elif reference is not None:
                await self._relay_to_official(unit, reference, counsellor, text, inbound)
        except Refusal as refusal:
            await self._post(unit, reference, self._staff(refusal.key, **refusal.fields))

    async def _reference_of(self, unit: Unit, thread: str | None) -> str | None:
        if thread is None:
            return None
        case = await unit.case_by_thread(thread)
        return case.reference if case else None

    async def _case_command(
        self, unit: Unit, command: str, argument: str, reference: str, counsellor: Counsellor
    ) -> None:
        name = counsellor.display_name
        if command == "claim":
            case = await queue.claim(unit, reference, counsellor)
            await self._post(unit, reference, self._staff("staff_claimed", name=name))
            await self._relay_backlog(unit, case)
            await self._tell_official(unit, case, "claimed_notice", name=name)
        elif command == "release":
            case = await queue.release(
                unit, reference, counsellor, argument, self.settings.escalate_after
            )
            await self._post(
                unit, reference, self._staff("staff_released", name=name, reason=argument)
            )
            await self._tell_official(unit, case, "released_notice")
        elif command == "transfer":
            case, target = await queue.transfer(unit, reference, counsellor, argument)
            await self._post(
                unit,
                reference,
                self._staff("staff_transferred", source=name, target=target.display_name),
            )
            await self._tell_official(unit, case, "transferred_notice", name=target.display_name)
        elif command == "note":
            if not argument:
                raise Refusal("staff_note_needs_text")
            await unit.add_item(reference, "note", {"by": counsellor.name, "text": argument})
            await self._post(unit, reference, self._staff("staff_note_saved"))
        elif command == "close":
            outcome = self._outcomes.get(argument.casefold().strip(), argument)
            case = await queue.close(unit, reference, counsellor, outcome)
            shown = self.texts.outcomes[outcome].shown[self.settings.staff_language]
            await self._post(unit, reference, self._staff("staff_closed", name=name, outcome=shown))
            await self._tell_official(unit, case, "closed_notice", reference=reference)
        else:  # reopen
            case = await queue.reopen(
                unit, reference, counsellor.name, self.settings.escalate_after
            )
            await self._post(unit, reference, self._staff("staff_reopened", actor=name))
            await self._tell_official(unit, case, "reopened_notice", reference=reference)

    async def _relay_backlog(self, unit: Unit, case: Case) -> None:
        """What the official wrote while waiting reaches the thread once someone has claimed."""
        loaded = await unit.load(case.sender_key)
        if loaded is None or not loaded.state.relay_backlog:
            return
        lines = [self._staff("staff_waiting_messages")]
        lines += [
            self._staff("staff_official_says", text=text) for text in loaded.state.relay_backlog
        ]
        await self._post(unit, case.reference, "\n".join(lines))
        loaded.state.relay_backlog = []
        await unit.save(case.sender_key, loaded.channel, loaded.address, loaded.state)

    async def _relay_to_official(
        self, unit: Unit, reference: str, counsellor: Counsellor, text: str, inbound: StaffInbound
    ) -> None:
        case = await unit.case(reference, lock=True)
        assert case is not None
        if case.status != queue.CLAIMED:
            claim = self.texts.staff_commands["claim"].shown[self.settings.staff_language]
            key = "staff_not_relayed" if case.status == queue.WAITING else "staff_is_closed"
            await self._post(unit, reference, self._staff(key, command=claim, reference=reference))
            return
        if case.claimed_by != counsellor.id:
            holder = await unit.session.get(Counsellor, case.claimed_by)
            await self._post(
                unit,
                reference,
                self._staff(
                    "staff_claimed_by_other",
                    reference=reference,
                    holder=holder.display_name if holder else "?",
                ),
            )
            return
        if not text and not inbound.attachments:
            return
        loaded = await unit.load(case.sender_key)
        if loaded is None:  # the official deleted everything meanwhile
            return

        async def to_official(words: str, file: Attachment | None = None) -> None:
            assert loaded is not None
            await outbox.to_official(
                unit,
                sender_key=case.sender_key,
                channel=loaded.channel,
                address=loaded.address,
                reply=Reply(words),
                reference=reference,
                urgent=case.urgent,
                file=(file.name, file.media_type, file.data) if file else None,
            )

        if text:
            await unit.add_item(reference, "reply", {"from": counsellor.display_name, "text": text})
            await to_official(f"{counsellor.display_name}: {text}")
        limit = self.settings.max_file_bytes
        files = [attachment for attachment in inbound.attachments if len(attachment.data) <= limit]
        for attachment in inbound.attachments:
            if len(attachment.data) > limit:
                too_big = self._staff(
                    "staff_file_too_big", name=attachment.name, limit=limit // (1024 * 1024)
                )
                await self._post(unit, reference, too_big)
        if files:
            handles = [
                await unit.store_file(
                    case.sender_key, attachment.name, attachment.media_type, attachment.data
                )
                for attachment in files
            ]
            await unit.add_files(
                reference, case.sender_key, handles, sent_by=counsellor.display_name
            )
            for attachment in files:
                await to_official(f"{counsellor.display_name}: {attachment.name}", attachment)
        if case.first_reply_at is None:
            case.first_reply_at = unit.now

    async def _queue_text(self, unit: Unit) -> str:
        cases = await queue.waiting(unit)
        if not cases:
            return self._staff("staff_queue_empty")
        lines = [self._staff("staff_queue_header", count=len(cases))]
        for position, case in enumerate(cases, start=1):
            minutes = int((unit.now - queue.waiting_since(case)).total_seconds() // 60)
            urgent = self._staff("staff_urgent_mark") if case.urgent else ""
            lines.append(
                self._staff(
                    "staff_queue_line",
                    position=position,
                    reference=case.reference,
                    urgent=urgent,
                    minutes=minutes,
                )
            )
        return "\n".join(lines)

    async def _health_text(self, unit: Unit) -> str:
        found = await queue.health(unit)
        nobody = self._staff("staff_nobody")
        open_cases = ", ".join(
            f"{name} {count}" for name, count in found.open_per_counsellor.items()
        )
        return self._staff(
            "staff_health",
            waiting=found.waiting,
            oldest=int(found.oldest_wait.total_seconds() // 60) if found.oldest_wait else 0,
            urgent=found.urgent_unclaimed,
            open=open_cases or nobody,
            claim=nobody
            if found.median_minutes_to_claim is None
            else f"{found.median_minutes_to_claim} min",
            reply=nobody
            if found.median_minutes_to_first_reply is None
            else f"{found.median_minutes_to_first_reply} min",
        )

    def _help_text(self) -> str:
        language = self.settings.staff_language
        lines = [
            f"{entry.shown[language]} – {entry.description[language]}"
            for entry in self.texts.staff_commands.values()
        ]
        return self._staff("staff_help", commands="\n".join(lines))

    # -- escalation ------------------------------------------------------------------------------

    async def escalate(self, unit: Unit, mentions: str) -> int:
        """Raise urgent cases nobody has claimed in time, again at each interval until claimed."""
        cases = await queue.due_escalations(unit)
        for case in cases:
            minutes = int((unit.now - queue.waiting_since(case)).total_seconds() // 60)
            await self._post(
                unit,
                None,
                self._staff(
                    "staff_escalation", reference=case.reference, minutes=minutes, mentions=mentions
                ),
            )
            case.escalate_at = unit.now + self.settings.escalate_after
        if cases:
            logger.warning(
                "%d urgent case(s) still unclaimed: raised again in the staff room", len(cases)
            )
        return len(cases)
