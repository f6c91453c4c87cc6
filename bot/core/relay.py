"""Relay: what the staff room and the official are told, and counsellors' words passed on.

The base of the handoff: its texts, the posts in a case's thread, the notices to an
official, and the relay of a claiming counsellor's words and files. Everything runs
inside the core's transaction and goes to the outbox.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from sqlalchemy import select

from bot.core.settings import Settings
from bot.core.types import Attachment, Reply, StaffInbound, StaffMember, StaffRoom
from flows.answers import one_line, quoted
from flows.engine import Engine
from storage import outbox, queue
from storage.models import Case, Counsellor
from storage.repository import Unit

logger = logging.getLogger(__name__)


def staff_member(counsellor: Counsellor) -> StaffMember:
    """A counsellor as the staff room sees them."""
    handles = {held.channel: held.handle for held in counsellor.handles}
    return StaffMember(counsellor.display_name, counsellor.name, handles)


class Relay:
    def __init__(self, engine: Engine, settings: Settings, staff_room: StaffRoom) -> None:
        self.engine = engine
        self.texts = engine.texts
        self.settings = settings
        self.staff_room = staff_room
        self._staff_commands = self.texts.command_names("staff_commands")
        self._outcomes = self.texts.command_names("outcomes")

    def _staff(self, key: str, **fields: object) -> str:
        return self.texts.get(key, self.settings.staff_language, **fields)

    async def threads_of(self, unit: Unit, sender: str) -> list[tuple[str, str]]:
        """(reference, thread) of each of this official's cases whose thread is open."""
        rows = await unit.session.execute(
            select(Case.reference, Case.thread).where(
                Case.sender_key == sender, Case.thread.is_not(None)
            )
        )
        return [(reference, thread) for reference, thread in rows if thread]

    async def announce_deleted(self, unit: Unit, threads: list[tuple[str, str]]) -> None:
        """Tell each thread its case was deleted on request, without a word of its content."""
        for reference, thread in threads:
            text = self._staff("staff_case_deleted", reference=reference)
            await outbox.to_staff(unit, None, text, thread=thread)

    async def _post(
        self, unit: Unit, reference: str | None, text: str, thread_open: bool | None = None
    ) -> None:
        await outbox.to_staff(unit, reference, text, thread_open=thread_open)

    async def _tell_official(self, unit: Unit, case: Case, key: str, **fields: object) -> None:
        await outbox.to_official_of(
            unit, case, lambda language: self.texts.get(key, language, **fields)
        )

    async def _relay_backlog(self, unit: Unit, case: Case) -> None:
        """Words a state from before item 7 of issue 11 still holds reach the thread at a claim."""
        loaded = await unit.load(case.sender_key)
        if loaded is None or not loaded.state.relay_backlog:
            return
        await self._post_backlog(unit, case.reference, loaded.state.relay_backlog)
        loaded.state.relay_backlog = []
        await unit.save(case.sender_key, loaded.channel, loaded.address, loaded.state)

    async def _post_backlog(self, unit: Unit, reference: str, backlog: list[str]) -> None:
        """Words a state from before item 7 of issue 11 still holds: into the thread, once.

        They were sealed into the case when written; only the post was held back."""
        lines = [self._staff("staff_waiting_messages")]
        lines += [self._staff("staff_official_says", text=quoted(text)) for text in backlog]
        await self._post(unit, reference, "\n".join(lines))

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
            await to_official(f"{counsellor.display_name}: {quoted(text)}")
        attachments = [replace(file, name=one_line(file.name)) for file in inbound.attachments]
        limit = self.settings.max_file_bytes
        files = [attachment for attachment in attachments if len(attachment.data) <= limit]
        for attachment in attachments:
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
