"""Device trust: whose devices Lotse encrypts to, and what it tells the staff room.

The policy (README "Matrix"): every device of the people in a room is trusted on first
use; a counsellor who already had a trusted device and shows a new one is reported to
the staff room; blacklisted devices never receive keys (matrix-nio leaves them out).

A device whose keys change under the same device id is blacklisted and reported. A
real client never does that (a new login is a new device), so it is a stolen or
replaced device, or a homeserver lying. matrix-nio would not notice: it keeps the old
keys when the ed25519 key changes, and takes a new curve25519 key as it comes, the
device still trusted. So `KeyWatchingClient` compares what a key query returns with
the stored keys before nio takes the answer in.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from nio import AsyncClient, KeysQueryResponse

from bot.channels.matrix import content as read

logger = logging.getLogger(__name__)

Texts = Callable[[str, str], str]  # (message key, language) -> text
Counsellors = Callable[[], Awaitable[set[str]]]  # the Matrix ids of active counsellors


@dataclass(frozen=True)
class KeyChange:
    user: str
    device: str


def changed_keys(client: AsyncClient, response: KeysQueryResponse) -> list[KeyChange]:
    """The known devices whose identity keys in `response` differ from the stored ones.

    Only a payload signed with the key it carries counts (nio drops the others unread)."""
    olm = client.olm
    if olm is None:
        return []
    changes = []
    for user, devices in response.device_keys.items():
        stored = client.device_store[user] if user in client.device_store.users else {}
        for device_id, payload in devices.items():
            known = stored.get(device_id)
            if known is None or known.blacklisted:  # a blacklisted one was told already
                continue
            if (user, device_id) == (client.user_id, client.device_id):
                continue
            try:
                keys = payload["keys"]
                ed25519, curve25519 = keys[f"ed25519:{device_id}"], keys[f"curve25519:{device_id}"]
                signed = olm.verify_json(payload, ed25519, user, device_id)
            except (KeyError, TypeError):
                continue
            if signed and (known.ed25519, known.curve25519) != (ed25519, curve25519):
                changes.append(KeyChange(user, device_id))
    return changes


class KeyWatchingClient(AsyncClient):  # type: ignore[misc]  # nio has no type hints
    """matrix-nio's client; a known device that shows other keys is blacklisted at once,
    before any room key could reach it, and noted in `key_changes` to be reported."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_changes: list[KeyChange] = []

    async def receive_response(self, response: Any) -> None:
        changes = []
        if isinstance(response, KeysQueryResponse):
            changes = changed_keys(self, response)
        await super().receive_response(response)
        for change in changes:
            device = self.device_store[change.user].get(change.device)
            if device is not None:
                self.blacklist_device(device)
            for room in self.rooms.values():  # a session it may have had goes out of use
                if change.user in room.users:
                    self.invalidate_outbound_session(room.room_id)
        if changes:
            logger.warning("matrix: %d device(s) changed their keys; blacklisted", len(changes))
        self.key_changes += changes


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
        """Ask the homeserver for the device keys of the users nio waits to hear about;
        a device that changed its keys is reported (it is blacklisted already)."""
        if self.client.should_query_keys:
            await self.client.keys_query()
        await self.report_key_changes()

    async def report_key_changes(self) -> None:
        changes: list[KeyChange] = getattr(self.client, "key_changes", [])
        if not changes:
            return
        counsellors = await self.counsellors()
        while changes:  # each taken off once it is told (a failed send tries again later)
            change = changes[0]
            if change.user in counsellors:
                await self._tell_staff_room(
                    "matrix_device_keys_changed", who=change.user, device=change.device
                )
            else:  # an official: nobody in the staff room may learn their Matrix id
                await self._tell_staff_room("matrix_official_device_keys_changed")
            changes.pop(0)

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
        room = self.client.rooms.get(self.staff_room) if self.staff_room else None
        if room is None or not room.encrypted:
            return  # never in the clear; the operator log has it
        note = self.texts(key, self.language).format(**fields)
        content = read.text_content(note)
        await self.client.room_send(
            self.staff_room, "m.room.message", content, ignore_unverified_devices=True
        )
