"""The staff room: counsellors' messages in case threads, and the guard before case details.

Every case is a thread rooted at its summary. Before anything with case details is
posted, `check` makes sure the room is encrypted and everyone in it (joined or invited)
is a counsellor or the bot; otherwise the operator text names who is not allowed and
the room gets one content-free warning.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from nio import AsyncClient, JoinedMembersResponse, RoomMessageText

from bot.channels.matrix import content as read
from bot.channels.matrix.media import TooLarge, Unreadable, download
from bot.channels.matrix.trust import Counsellors, DeviceTrust, Texts
from bot.core.types import Attachment, InboundSink, StaffInbound, StaffMember

CHANNEL = "matrix"
SendText = Callable[[str, str], Awaitable[str]]  # (room id, text) -> event id


class StaffSide:
    def __init__(
        self,
        client: AsyncClient,
        room_id: str | None,
        *,
        texts: Texts,
        language: str,
        counsellors: Counsellors,
        trust: DeviceTrust,
        send_text: SendText,
        synced: Callable[[], Awaitable[bool]],
        max_file_bytes: int,
    ) -> None:
        self.client = client
        self.room_id = room_id
        self.texts = texts
        self.language = language
        self.counsellors = counsellors
        self.trust = trust
        self.send_text = send_text
        self.synced = synced
        self.max_file_bytes = max_file_bytes
        self._alerted: tuple[str, ...] = ()

    async def event(self, event: Any, sink: InboundSink) -> None:
        if not isinstance(event, RoomMessageText) and not read.is_media(event):
            return
        text = event.body[: read.MAX_TEXT] if isinstance(event, RoomMessageText) else ""
        attachments: tuple[Attachment, ...] = ()
        if read.is_media(event):
            try:
                attachments = (await download(self.client, event, self.max_file_bytes),)
            except (TooLarge, Unreadable):
                return
        await sink.handle_staff(
            StaffInbound(
                CHANNEL, event.sender, read.thread_of(event), text, event.event_id, attachments
            )
        )

    # -- the guard -------------------------------------------------------------------------

    async def check(self) -> list[str]:
        try:
            return await self._check()
        except Exception as error:
            return [f"the staff room could not be checked ({type(error).__name__})"]

    async def _check(self) -> list[str]:
        if not await self.synced():
            return ["the Matrix channel has not synced with the homeserver yet"]
        if self.room_id is None:
            return ["no Matrix staff room is configured"]
        room = self.client.rooms.get(self.room_id)
        if room is None:
            return ["the bot is not in the staff room: invite it there"]
        problems = []
        if not room.encrypted:
            problems.append("the staff room is not encrypted")
        members = await self.client.joined_members(self.room_id)
        if not isinstance(members, JoinedMembersResponse):
            return ["the staff room's members could not be read"]
        allowed = await self.counsellors() | {self.client.user_id}
        present = {member.user_id for member in members.members} | set(room.invited_users)
        problems += [
            f"{user} is in the staff room but not a counsellor"
            for user in sorted(present - allowed)
        ]
        if problems and tuple(problems) != self._alerted:
            alert = self.texts("matrix_staff_room_unsafe", self.language)
            await self.send_text(self.room_id, alert)
        self._alerted = tuple(problems)
        if not problems:
            await self.trust.trust_room(self.room_id, report=True)
        return problems

    # -- counsellors -----------------------------------------------------------------------

    def is_author(self, member: StaffMember, author: str) -> bool:
        return member.handles.get(CHANNEL) == author

    def mention(self, member: StaffMember) -> str:
        return member.handles.get(CHANNEL) or member.display_name
