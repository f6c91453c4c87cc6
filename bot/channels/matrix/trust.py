"""Device trust: whose devices Lotse encrypts to, and what it tells the staff room.

The policy (README "Matrix"): every device of the people in a room is trusted on first
use; a counsellor who already had a trusted device and shows a new one is reported to
the staff room; blacklisted devices never receive keys (matrix-nio leaves them out).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from nio import AsyncClient

from bot.channels.matrix import content as read

logger = logging.getLogger(__name__)

Texts = Callable[[str, str], str]  # (message key, language) -> text
Counsellors = Callable[[], Awaitable[set[str]]]  # the Matrix ids of active counsellors


class DeviceTrust:
    def __init__(
        self,
        client: AsyncClient,
        *,
        texts: Texts,
        counsellors: Counsellors,
        staff_room: str | None,
        language: str,
    ) -> None:
        self.client = client
        self.texts = texts
        self.counsellors = counsellors
        self.staff_room = staff_room
        self.language = language

    async def query_keys(self) -> None:
        """Ask the homeserver for the device keys of the users nio waits to hear about."""
        if self.client.should_query_keys:
            await self.client.keys_query()

    async def trust_room(self, room_id: str, report: bool) -> None:
        """Trust on first use; a known counsellor's new device is reported to the staff room."""
        client = self.client
        room = client.rooms.get(room_id)
        if room is None or client.olm is None:
            return
        await self.query_keys()
        counsellors = await self.counsellors() if report else set()
        for user in list(room.users):
            devices = list(client.device_store.active_user_devices(user))
            known = any(device.verified for device in devices)
            for device in devices:
                if device.verified or device.blacklisted:
                    continue
                client.verify_device(device)
                if known and user in counsellors:
                    logger.warning("matrix: a counsellor shows a new device")
                    await self._tell_staff_room("matrix_new_device", who=user)

    async def _tell_staff_room(self, key: str, **fields: object) -> None:
        """A note about devices, never about a case: sent at once, not through the outbox."""
        if self.staff_room is None:
            return
        note = self.texts(key, self.language).format(**fields)
        content = read.text_content(note)
        await self.client.room_send(
            self.staff_room, "m.room.message", content, ignore_unverified_devices=True
        )
