"""Attachments: downloaded with the bot's login, size-limited while reading, decrypted in memory.

Uses the authenticated media API (`/_matrix/client/v1/media/download`), which current
homeservers require; the file never touches the disk.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import ClientSession, ClientTimeout
from nio import AsyncClient, RoomEncryptedMedia
from nio.crypto import decrypt_attachment

from bot.channels.matrix.content import declared_size, file_name, media_type
from bot.core.types import Attachment

CHUNK = 64 * 1024


class TooLarge(Exception):
    """The file is larger than the limit."""


class Unreadable(Exception):
    """The file could not be fetched or did not decrypt (content-free reason)."""


async def _fetch(client: AsyncClient, url: str, limit: int) -> bytes:
    if not url.startswith("mxc://") or url.count("/") != 3:
        raise Unreadable("not an mxc URL")
    server, media_id = url.removeprefix("mxc://").split("/", 1)
    path = f"/_matrix/client/v1/media/download/{quote(server, safe='')}/{quote(media_id, safe='')}"
    headers = {"Authorization": f"Bearer {client.access_token}"}
    async with (
        ClientSession(timeout=ClientTimeout(total=120)) as session,
        session.get(client.homeserver + path, headers=headers) as response,
    ):
        if response.status != 200:
            raise Unreadable(f"download answered {response.status}")
        data = bytearray()
        async for chunk in response.content.iter_chunked(CHUNK):
            data += chunk
            if len(data) > limit:
                raise TooLarge
        return bytes(data)


async def download(client: AsyncClient, event: Any, limit: int) -> Attachment:
    """The attachment an m.image/m.file/m.audio/m.video event carries."""
    size = declared_size(event)
    if size is not None and size > limit:
        raise TooLarge
    data = await _fetch(client, str(getattr(event, "url", "")), limit)
    if isinstance(event, RoomEncryptedMedia):
        try:
            data = decrypt_attachment(data, event.key["k"], event.hashes["sha256"], event.iv)
        except Exception as error:
            raise Unreadable("the file did not decrypt") from error
    return Attachment(name=file_name(event), media_type=media_type(event), data=data)
