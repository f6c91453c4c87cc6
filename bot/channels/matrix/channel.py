"""The Matrix channel: officials in encrypted direct chats, counsellors in an encrypted staff room.

One sync loop. The sync token is saved only after every event of a sync was handed to
the core (which drops repeats by event id), so a crash replays rather than loses. The
first sync after the very first login is the backlog: invitations are accepted, nothing
in it is handled as a new message; neither is anything in a room from before the bot
joined it.

Device trust (README "Matrix"): every device of the people in a room is trusted on first
use; a counsellor who already had a trusted device and shows a new one is reported to
the staff room; blacklisted devices never receive keys (matrix-nio leaves them out).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import ClientError
from nio import (
    AsyncClient,
    InviteMemberEvent,
    JoinedMembersResponse,
    JoinError,
    MegolmEvent,
    RoomMemberEvent,
    RoomMessageText,
    RoomPutStateResponse,
    RoomSendResponse,
    SyncResponse,
    UploadResponse,
)
from nio.exceptions import LocalProtocolError

from bot.channels.matrix import content as read
from bot.channels.matrix.media import TooLarge, Unreadable, download
from bot.channels.matrix.session import Login, Sealer, SessionFiles, connect, make_client
from bot.channels.text import reply_as_text
from bot.core.types import (
    Attachment,
    Inbound,
    InboundSink,
    PermanentFailure,
    Reply,
    RetryAfter,
    StaffInbound,
    StaffMember,
)

logger = logging.getLogger(__name__)
CHANNEL = "matrix"
SYNC_TIMEOUT_MS = 30_000
MAX_BACKOFF = 60.0
UNDECRYPTABLE_SECONDS = 30.0  # then the official is asked to send it again
READY_SECONDS = 30.0
ENCRYPTION = {"algorithm": "m.megolm.v1.aes-sha2"}
CLEAR_COMMANDS = frozenset({"/chat_leeren", "/clear_chat"})
YES = frozenset({"ja", "yes", "j", "y", "1"})

Texts = Callable[[str, str], str]  # (message key, language) -> text
Counsellors = Callable[[], Awaitable[set[str]]]  # the Matrix ids of active counsellors


class MatrixChannel:
    """`Adapter` for officials and `StaffRoom` for counsellors, over one Matrix login."""

    name = CHANNEL
    end_to_end_encrypted = True

    def __init__(
        self,
        login: Login,
        sealer: Sealer,
        *,
        texts: Texts,
        counsellors: Counsellors,
        staff_room: str | None,
        staff_language: str,
        max_file_bytes: int,
    ) -> None:
        self.login = login
        # matrix-nio logs room, user and session ids: none of that belongs in Lotse's log
        logging.getLogger("nio").setLevel(logging.CRITICAL)
        self.client: AsyncClient = make_client(login)
        self.files = SessionFiles(login.store_dir, sealer, login.user_id)
        self.texts = texts
        self.counsellors = counsellors
        self.staff_room = staff_room
        self.language = staff_language
        self.max_file_bytes = max_file_bytes
        self._undecrypted: dict[str, tuple[MegolmEvent, float]] = {}
        self._clearing: set[str] = set()  # rooms where /chat_leeren waits for its yes
        self._alerted: tuple[str, ...] = ()
        self._ready = asyncio.Event()
        self._send_lock = asyncio.Lock()

    # -- start -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Log in or restore the login; raises MatrixStartError with one clear line."""
        await connect(self.client, self.login, self.files)
        if self.client.should_upload_keys:
            await self.client.keys_upload()

    async def close(self) -> None:
        await self.client.close()

    def _both(self, key: str, **fields: object) -> str:
        """A text for an official whose language the channel does not know: both."""
        return "\n\n".join(self.texts(key, language).format(**fields) for language in ("de", "en"))

    # -- the sync loop ---------------------------------------------------------------------

    async def receive(self, sink: InboundSink) -> None:
        token = self.files.load_sync()
        backlog = token is None
        full_state = True
        backoff = 1.0
        while True:
            try:
                response = await self.client.sync(
                    timeout=0 if full_state else SYNC_TIMEOUT_MS,
                    since=token,
                    full_state=full_state,
                )
            except (ClientError, OSError, TimeoutError) as error:
                logger.warning("matrix: sync failed (%s), retrying", type(error).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            if not isinstance(response, SyncResponse):
                wait = (response.retry_after_ms or 0) / 1000 or backoff
                logger.warning("matrix: sync refused (%s), retrying", response.status_code)
                await asyncio.sleep(wait)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = 1.0
            await self._keys()
            await self._invitations(response)
            if not backlog:
                await self._timeline(response, sink)
            await self._retry_undecrypted(sink)
            token = response.next_batch
            self.files.save_sync(token)
            backlog = full_state = False
            self._ready.set()

    async def _keys(self) -> None:
        client = self.client
        try:
            await client.send_to_device_messages()
            if client.should_upload_keys:
                await client.keys_upload()
            if client.should_query_keys:
                await client.keys_query()
            if client.should_claim_keys:
                await client.keys_claim(client.get_users_for_key_claiming())
        except (ClientError, OSError, TimeoutError, LocalProtocolError) as error:
            logger.warning("matrix: key exchange failed (%s)", type(error).__name__)

    # -- invitations -----------------------------------------------------------------------

    async def _invitations(self, response: SyncResponse) -> None:
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
        note = read.text_content(self._both("matrix_group_room"))
        with contextlib.suppress(LocalProtocolError, ClientError, OSError, TimeoutError):
            await self.client.room_send(  # leaving matters more than the note
                room_id, "m.room.message", note, ignore_unverified_devices=True
            )
        await self.client.room_leave(room_id)
        logger.info("matrix: left a group room that is not the staff room")

    # -- the timeline ----------------------------------------------------------------------

    async def _timeline(self, response: SyncResponse, sink: InboundSink) -> None:
        me = self.client.user_id
        for room_id, info in response.rooms.join.items():
            events = list(info.timeline.events)
            start = 0
            for index, event in enumerate(events):
                if (
                    isinstance(event, RoomMemberEvent)
                    and event.state_key == me
                    and event.membership == "join"
                    and event.prev_membership != "join"
                ):
                    start = index + 1  # what came before the bot joined is not new
            for event in events[start:]:
                if getattr(event, "sender", me) == me:
                    continue
                try:
                    await self._event(room_id, event, sink)
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # one bad event must not stop the loop
                    logger.warning("matrix: an event was not handled (%s)", type(error).__name__)

    async def _event(self, room_id: str, event: Any, sink: InboundSink) -> None:
        if isinstance(event, MegolmEvent):
            self._undecrypted[event.event_id] = (event, time.monotonic())
            logger.info("matrix: an event cannot be decrypted yet; kept until its key arrives")
            with contextlib.suppress(Exception):  # a courtesy: the retry stays either way
                await self.client.request_room_key(event)
            return
        if room_id == self.staff_room:
            await self._staff_event(event, sink)
            return
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
                room_id, "m.room.message", read.text_content(self._both("matrix_encryption_needed"))
            )
            return False
        room = self.client.rooms[room_id]
        room.encrypted = True
        self.client.encrypted_rooms.add(room_id)
        if self.client.olm is not None:  # know the official's devices before the first key
            self.client.olm.update_tracked_users(room)
            await self.client.keys_query()
        await self._send_text(room_id, self._both("matrix_encryption_on"))
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
                await self._send_text(room_id, self._both("matrix_file_too_large", limit=limit))
                return
            except Unreadable:
                await self._send_text(room_id, self._both("matrix_undecryptable"))
                return
        await sink.handle(
            Inbound(CHANNEL, event.sender, room_id, text, event.event_id, attachments)
        )

    async def _retry_undecrypted(self, sink: InboundSink) -> None:
        now = time.monotonic()
        for event_id, (event, since) in list(self._undecrypted.items()):
            try:
                decrypted = self.client.decrypt_event(event)
            except Exception:
                decrypted = None
            if decrypted is not None and not isinstance(decrypted, MegolmEvent):
                del self._undecrypted[event_id]
                decrypted.source.setdefault("event_id", event_id)
                await self._event(event.room_id, decrypted, sink)
            elif now - since > UNDECRYPTABLE_SECONDS:
                del self._undecrypted[event_id]
                logger.warning("matrix: an event stayed undecryptable; asked to resend")
                if event.room_id != self.staff_room:
                    await self._send_text(event.room_id, self._both("matrix_undecryptable"))

    # -- clearing the chat -----------------------------------------------------------------

    async def _clear_chat(self, room_id: str, text: str) -> bool:
        """/chat_leeren: True when the message belonged to it (not for the core)."""
        word = text.strip().casefold()
        if word in CLEAR_COMMANDS:
            self._clearing.add(room_id)
            await self._send_text(room_id, self._both("matrix_clear_confirm"))
            return True
        if room_id not in self._clearing:
            return False
        self._clearing.discard(room_id)
        if word not in YES:
            await self._send_text(room_id, self._both("matrix_clear_kept"))
            return True
        await self._redact_own(room_id)
        await self._send_text(room_id, self._both("matrix_clear_done"))
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

    # -- the staff room --------------------------------------------------------------------

    async def _staff_event(self, event: Any, sink: InboundSink) -> None:
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

    async def check(self) -> list[str]:
        try:
            return await self._check()
        except Exception as error:
            return [f"the staff room could not be checked ({type(error).__name__})"]

    async def _synced(self) -> bool:
        """Whether the first sync is done (waits a little for it)."""
        try:
            await asyncio.wait_for(self._ready.wait(), READY_SECONDS)
        except TimeoutError:
            return False
        return True

    async def _check(self) -> list[str]:
        if not await self._synced():
            return ["the Matrix channel has not synced with the homeserver yet"]
        if self.staff_room is None:
            return ["no Matrix staff room is configured"]
        room = self.client.rooms.get(self.staff_room)
        if room is None:
            return ["the bot is not in the staff room: invite it there"]
        problems = []
        if not room.encrypted:
            problems.append("the staff room is not encrypted")
        members = await self.client.joined_members(self.staff_room)
        if not isinstance(members, JoinedMembersResponse):
            return ["the staff room's members could not be read"]
        allowed = await self.counsellors() | {self.client.user_id}
        present = {member.user_id for member in members.members} | set(room.invited_users)
        problems += [
            f"{user} is in the staff room but not a counsellor"
            for user in sorted(present - allowed)
        ]
        if problems and tuple(problems) != self._alerted:
            await self._send_text(
                self.staff_room, self.texts("matrix_staff_room_unsafe", self.language)
            )
        self._alerted = tuple(problems)
        if not problems:
            await self._trust_devices(self.staff_room, report=True)
        return problems

    async def open_thread(self, reference: str, text: str, urgent: bool) -> str:
        assert self.staff_room is not None
        return await self._send_text(self.staff_room, text)

    async def post(self, thread: str | None, text: str) -> None:
        assert self.staff_room is not None
        await self._send_content(self.staff_room, read.text_content(text, thread))

    def is_author(self, member: StaffMember, author: str) -> bool:
        return member.handles.get(CHANNEL) == author

    def mention(self, member: StaffMember) -> str:
        return member.handles.get(CHANNEL) or member.display_name

    # -- sending ---------------------------------------------------------------------------

    async def send(self, chat: str, reply: Reply) -> None:
        if not await self._synced():
            raise RuntimeError("the Matrix channel has not synced yet")  # temporary: tried again
        for file in reply.files:
            await self._send_file(chat, file.name, file.media_type, file.data)
        await self._send_text(chat, reply_as_text(reply))

    async def _send_text(self, room_id: str, text: str) -> str:
        return await self._send_content(room_id, read.text_content(text))

    async def _send_file(self, room_id: str, name: str, media: str, data: bytes) -> None:
        upload, keys = await self.client.upload(
            lambda *_: data, content_type=media, filename=name, encrypt=True, filesize=len(data)
        )
        if not isinstance(upload, UploadResponse) or keys is None:
            raise RuntimeError("the file upload failed")
        await self._send_content(
            room_id, read.file_content(name, media, len(data), upload.content_uri, keys)
        )

    async def _send_content(self, room_id: str, content: dict[str, Any]) -> str:
        room = self.client.rooms.get(room_id)
        if room is None:
            raise PermanentFailure("the bot is not in this room")
        if not room.encrypted:
            raise RuntimeError("the room is not encrypted yet")  # never send in the clear
        async with self._send_lock:
            await self._trust_devices(room_id, report=False)
            answer = await self.client.room_send(
                room_id, "m.room.message", content, ignore_unverified_devices=True
            )
        if isinstance(answer, RoomSendResponse):
            return str(answer.event_id)
        if answer.status_code == "M_LIMIT_EXCEEDED":
            raise RetryAfter((answer.retry_after_ms or 1000) / 1000)
        if answer.status_code == "M_FORBIDDEN":
            raise PermanentFailure("the bot may not write in this room")
        raise RuntimeError(f"matrix send failed ({answer.status_code})")

    # -- device trust ----------------------------------------------------------------------

    async def _trust_devices(self, room_id: str, report: bool) -> None:
        """Trust on first use; a known counsellor's new device is reported to the staff room."""
        client = self.client
        room = client.rooms.get(room_id)
        if room is None or client.olm is None:
            return
        if client.should_query_keys:
            await client.keys_query()
        counsellors = await self.counsellors() if report else set()
        for user in list(room.users):
            devices = list(client.device_store.active_user_devices(user))
            known = any(device.verified for device in devices)
            for device in devices:
                if device.verified or device.blacklisted:
                    continue
                client.verify_device(device)
                if known and user in counsellors and self.staff_room is not None:
                    logger.warning("matrix: a counsellor shows a new device")
                    note = self.texts("matrix_new_device", self.language).format(who=user)
                    await self.client.room_send(
                        self.staff_room,
                        "m.room.message",
                        read.text_content(note),
                        ignore_unverified_devices=True,
                    )
