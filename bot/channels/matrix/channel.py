"""The Matrix channel: officials in encrypted direct chats, counsellors in an encrypted staff room.

One sync loop. The sync token is saved only after every event of a sync was handed to
the core (which drops repeats by event id), so a crash replays rather than loses. The
first sync after the very first login is the backlog: invitations are accepted, nothing
in it is handled as a new message; neither is anything in a room from before the bot
joined it. An event that cannot be decrypted yet is kept and tried again after every
sync (its key may come later); if it stays unreadable, the official is asked to send it
again.

What happens in officials' rooms is in direct.py, the staff room and its guard in
staff.py, whose devices get keys in trust.py; this module owns the loop and the one
function that sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from aiohttp import ClientError
from nio import (
    AsyncClient,
    MegolmEvent,
    RoomMemberEvent,
    RoomSendResponse,
    SyncResponse,
    UploadResponse,
)
from nio.exceptions import LocalProtocolError

from bot.channels.matrix import content as read
from bot.channels.matrix.direct import DirectChats
from bot.channels.matrix.session import Login, Sealer, SessionFiles, connect, make_client
from bot.channels.matrix.staff import StaffSide
from bot.channels.matrix.trust import Counsellors, DeviceTrust, Texts
from bot.channels.text import reply_as_text
from bot.core.types import (
    InboundSink,
    PermanentFailure,
    Reply,
    RetryAfter,
    StaffMember,
)

logger = logging.getLogger(__name__)
CHANNEL = "matrix"
SYNC_TIMEOUT_MS = 30_000
MAX_BACKOFF = 60.0
UNDECRYPTABLE_SECONDS = 30.0  # then the official is asked to send it again
READY_SECONDS = 30.0


class MatrixChannel:
    """`Adapter` for officials and `StaffRoom` for counsellors, over one Matrix login."""

    name = CHANNEL
    end_to_end_encrypted = True
    clears_chat = True  # /chat_leeren redacts what the bot sent (direct.py)

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
        self.staff_room = staff_room
        self._undecrypted: dict[str, tuple[MegolmEvent, float]] = {}
        self._ready = asyncio.Event()
        self._reached: float | None = None  # time.monotonic() of the last successful sync
        self._send_lock = asyncio.Lock()
        self.trust = DeviceTrust(
            self.client,
            texts=texts,
            counsellors=counsellors,
            staff_room=staff_room,
            language=staff_language,
        )
        self.direct = DirectChats(
            self.client,
            staff_room,
            both=self._both,
            trust=self.trust,
            send_text=self._send_text,
            max_file_bytes=max_file_bytes,
        )
        self.staff = StaffSide(
            self.client,
            staff_room,
            texts=texts,
            language=staff_language,
            counsellors=counsellors,
            trust=self.trust,
            send_text=self._send_text,
            synced=self._synced,
            max_file_bytes=max_file_bytes,
        )

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
            self._reached = time.monotonic()
            await self._keys()
            await self.direct.invitations(response)
            if not backlog:
                await self._timeline(response, sink)
            await self._retry_undecrypted(sink)
            token = response.next_batch
            self.files.save_sync(token)
            backlog = full_state = False
            self._ready.set()

    def last_reachable(self) -> float | None:
        """When a sync last succeeded (the health check's optional hook, `Reachable`)."""
        return self._reached

    async def _keys(self) -> None:
        client = self.client
        try:
            await client.send_to_device_messages()
            if client.should_upload_keys:
                await client.keys_upload()
            await self.trust.query_keys()
            if client.should_claim_keys:
                await client.keys_claim(client.get_users_for_key_claiming())
        except (ClientError, OSError, TimeoutError, LocalProtocolError) as error:
            logger.warning("matrix: key exchange failed (%s)", type(error).__name__)

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
            await self.staff.event(event, sink)
        else:
            await self.direct.event(room_id, event, sink)

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

    async def _synced(self) -> bool:
        """Whether the first sync is done (waits a little for it)."""
        try:  # asyncio.timeout: a cancellation is never lost (wait_for may, on 3.11)
            async with asyncio.timeout(READY_SECONDS):
                await self._ready.wait()
        except TimeoutError:
            return False
        return True

    # -- the staff room (staff.py) ---------------------------------------------------------

    async def check(self) -> list[str]:
        return await self.staff.check()

    async def open_thread(self, reference: str, text: str, urgent: bool) -> str:
        assert self.staff_room is not None
        return await self._send_text(self.staff_room, text)

    async def post(self, thread: str | None, text: str) -> None:
        assert self.staff_room is not None
        await self._send_content(self.staff_room, read.text_content(text, thread))

    def is_author(self, member: StaffMember, author: str) -> bool:
        return self.staff.is_author(member, author)

    def mention(self, member: StaffMember) -> str:
        return self.staff.mention(member)

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
            await self.trust.trust_room(room_id, report=False)
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
