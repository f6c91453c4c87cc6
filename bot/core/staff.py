"""The staff room's commands: claim, release, transfer, note, close, reopen, queue, health,
help, and the escalation of urgent cases nobody claimed.

Only counsellors in the keyring may act; the staff room decides who an author is.
"""

from __future__ import annotations

import logging

from bot.core.relay import Relay, staff_member
from bot.core.types import StaffInbound
from flows.answers import clean, parse_command, quoted
from flows.lanes import claimed_notice_key
from storage import queue
from storage.audit import Action
from storage.keyring import active_counsellors
from storage.models import Case, Counsellor
from storage.queue import Refusal
from storage.repository import Unit

logger = logging.getLogger(__name__)

FORCE = "--force"  # `/uebernehmen --force GRUND`: take over from a holder who cannot answer
CASE_COMMANDS = frozenset({"claim", "release", "transfer", "note", "close", "reopen"})


class StaffDesk(Relay):
    async def counsellor_for(self, unit: Unit, author: str) -> Counsellor | None:
        """The active counsellor behind a staff-room author, or None: the allow-list.
        The staff room decides who an author is."""
        for counsellor in await active_counsellors(unit.session):
            if self.staff_room.is_author(staff_member(counsellor), author):
                return counsellor
        return None

    async def staff_writes(self, unit: Unit, inbound: StaffInbound) -> None:
        """One staff-room message: a command, or (in a claimed case) words for the official."""
        text = clean(inbound.text)
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
        if command == "claim" and argument.split(maxsplit=1)[:1] == [FORCE]:
            reason = argument[len(FORCE) :].strip()
            holder = await queue.take_over(unit, reference, counsellor, reason)
            case = await unit.case(reference)
            assert case is not None
            key = "staff_taken_over" if holder else "staff_claimed"
            await self._post(unit, reference, self._staff(key, name=name, holder=holder))
            await self._relay_backlog(unit, case)
            await self._tell_official(unit, case, await self._claimed_notice(unit, case), name=name)
        elif command == "claim":
            case = await queue.claim(unit, reference, counsellor)
            await self._post(unit, reference, self._staff("staff_claimed", name=name))
            await self._relay_backlog(unit, case)
            await self._tell_official(unit, case, await self._claimed_notice(unit, case), name=name)
        elif command == "release":
            case = await queue.release(
                unit, reference, counsellor, argument, self.settings.escalate_after
            )
            await self._post(
                unit, reference, self._staff("staff_released", name=name, reason=quoted(argument))
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
            closed = self._staff("staff_closed", name=name, outcome=shown)
            await self._post(unit, reference, closed, thread_open=False)
            await self._tell_official(unit, case, "closed_notice", reference=reference)
        else:  # reopen
            case = await queue.reopen(
                unit, reference, counsellor.name, self.settings.escalate_after
            )
            await self._post(
                unit, reference, self._staff("staff_reopened", actor=name), thread_open=True
            )
            await self._tell_official(unit, case, "reopened_notice", reference=reference)

    async def _claimed_notice(self, unit: Unit, case: Case) -> str:
        """The claim notice that fits how the official chose to be reached (kept in their
        conversation state when they sent the intake)."""
        loaded = await unit.load(case.sender_key)
        return claimed_notice_key(loaded.state.contact if loaded else None)

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
