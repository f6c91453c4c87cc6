"""Officials' direct chats: invitations, encryption before anything sensitive, their
messages and files for the core, and clearing the chat (/chat_leeren).

A room with more than the official and the bot is not a direct chat: the bot says so
and leaves (the staff room excepted). Nothing of an unencrypted chat reaches the core.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import ClientError
from nio import (
    AsyncClient,
    InviteMemberEvent,
    JoinedMembersResponse,
    JoinError,
    RoomMemberEvent,
    RoomMessageText,
    RoomPutStateResponse,
    SyncResponse,
)
from nio.exceptions import LocalProtocolError

from bot.channels.matrix import content as read
from bot.channels.matrix.media import TooLarge, Unreadable, download
from bot.channels.matrix.trust import DeviceTrust
from bot.core.types import Attachment, Inbound, InboundSink

logger = logging.getLogger(__name__)
CHANNEL = "matrix"
ENCRYPTION = {"algorithm": "m.megolm.v1.aes-sha2"}
CLEAR_COMMANDS = frozenset({"/chat_leeren", "/clear_chat"})
YES = frozenset({"ja", "yes", "j", "y", "1"})

Both = Callable[..., str]  # (message key, **fields) -> the text in German and English
SendText = Callable[[str, str], Awaitable[str]]  # (room id, text) -> event id


class DirectChats:
    def __init__(
        self,
        client: AsyncClient,
        staff_room: str | None,
        *,
        both: Both,
        trust: DeviceTrust,
        send_text: SendText,
        max_file_bytes: int,
    ) -> None:
        self.client = client
        self.staff_room = staff_room
        self.both = both
        self.trust = trust
        self.send_text = send_text
        self.max_file_bytes = max_file_bytes
        self._clearing: set[str] = set()  # rooms where /chat_leeren waits for its yes

    # -- invitations -----------------------------------------------------------------------

    async def invitations(self, response: SyncResponse) -> None:
        for room_id in list(response.rooms.invite):
            answer = await self.client.join(room_id)
            if isinstance(answer, JoinError):
                logger.warning("matrix: an invitation could not be accepted")
                continue
            if room_id == self.staff_room:
                logger.info("matrix: joined the staff room")
                continue
            members = await self.client.joined_members(room_id)
            room = self.client.rooms.get(room_id)
            invited = len(room.invited_users) if room is not None else 0
            count = len(members.members) if isinstance(members, JoinedMembersResponse) else 0
            if count + invited > 2:
                await self._leave_group(room_id)

    async def _leave_group(self, room_id: str) -> None:
        note = read.text_content(self.both("matrix_group_room"))
        with contextlib.suppress(LocalProtocolError, ClientError, OSError, TimeoutError):
            await self.client.room_send(  # leaving matters more than the note
                room_id, "m.room.message", note, ignore_unverified_devices=True
            )
        await self.client.room_leave(room_id)
        logger.info("matrix: left a group room that is not the staff room")

    # -- an official's message -------------------------------------------------------------

    async def event(self, room_id: str, event: Any, sink: InboundSink) -> None:
        if isinstance(event, InviteMemberEvent | RoomMemberEvent):
            return
        if not isinstance(event, RoomMessageText) and not read.is_media(event):
            return  # reactions, edits, unknown types: nothing an intake reads
        room = self.client.rooms.get(room_id)
        if room is None or room.member_count > 2:
            return
        if not room.encrypted and not await self._encrypt(room_id):
            return  # nothing of an unencrypted chat reaches the core
        await self._official_event(room_id, event, sink)

    async def _encrypt(self, room_id: str) -> bool:
        """Switch on encryption in a direct chat; False when the bot may not (then it asks)."""
        answer = await self.client.room_put_state(room_id, "m.room.encryption", ENCRYPTION)
        if not isinstance(answer, RoomPutStateResponse):
            logger.info("matrix: may not switch on encryption in a direct chat; asked to")
            # the one message ever sent in the clear, and it says nothing about anyone
            await self.client.room_send(
                room_id, "m.room.message", read.text_content(self.both("matrix_encryption_needed"))
            )
            return False
        room = self.client.rooms[room_id]
        room.encrypted = True
        self.client.encrypted_rooms.add(room_id)
        if self.client.olm is not None:  # know the official's devices before the first key
            self.client.olm.update_tracked_users(room)
            await self.trust.query_keys()
        await self.send_text(room_id, self.both("matrix_encryption_on"))
        logger.info("matrix: switched on encryption in a direct chat")
        return True

    async def _official_event(self, room_id: str, event: Any, sink: InboundSink) -> None:
        text = ""
        attachments: tuple[Attachment, ...] = ()
        if isinstance(event, RoomMessageText):
            text = event.body[: read.MAX_TEXT]
            if await self._clear_chat(room_id, text):
                return
        else:
            try:
                attachments = (await download(self.client, event, self.max_file_bytes),)
            except TooLarge:
                limit = self.max_file_bytes // (1024 * 1024)
                await self.send_text(room_id, self.both("matrix_file_too_large", limit=limit))
                return
            except Unreadable:
                await self.send_text(room_id, self.both("matrix_undecryptable"))
                return
        await sink.handle(
            Inbound(CHANNEL, event.sender, room_id, text, event.event_id, attachments)
        )

    # -- clearing the chat -----------------------------------------------------------------

    async def _clear_chat(self, room_id: str, text: str) -> bool:
        """/chat_leeren: True when the message belonged to it (not for the core)."""
        word = text.strip().casefold()
        if word in CLEAR_COMMANDS:
            self._clearing.add(room_id)
            await self.send_text(room_id, self.both("matrix_clear_confirm"))
            return True
        if room_id not in self._clearing:
            return False
        self._clearing.discard(room_id)
        if word not in YES:
            await self.send_text(room_id, self.both("matrix_clear_kept"))
            return True
        await self._redact_own(room_id)
        await self.send_text(room_id, self.both("matrix_clear_done"))
        return True

    async def _redact_own(self, room_id: str) -> None:
        start = ""
        for _ in range(50):  # pages of history, newest first
            page = await self.client.room_messages(room_id, start=start, limit=100)
            chunk = getattr(page, "chunk", None)
            if not chunk:
                return
            for event in chunk:
                if event.sender == self.client.user_id and read.content_of(event):
                    await self.client.room_redact(room_id, event.event_id)
            start = getattr(page, "end", "") or ""
            if not start:
                return
