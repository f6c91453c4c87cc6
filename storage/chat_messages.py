"""Message ids of officials' chats, for clearing the chat on their phone (`/chat_leeren`).

A chat is stored as an HMAC, each id encrypted with the server secret; nothing is kept
longer than `KEEP` (Telegram lets a bot delete messages for 48 hours only).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select

from storage.models import CHAT_MESSAGES, ChatMessage
from storage.repository import Unit
from storage.server_secret import ServerKeys

KEEP = dt.timedelta(hours=48)
TABLE = CHAT_MESSAGES  # storage/models.py
CONTEXT = "chat-message"


def _key(keys: ServerKeys, channel: str, chat: str) -> str:
    return keys.pseudonym(f"chat:{channel}", chat)


def rows(
    keys: ServerKeys, now: dt.datetime, channel: str, chat: str, message_ids: list[int]
) -> list[dict[str, object]]:
    """The rows that remember `message_ids`, for `Store.hot.insert` (it joins the batch)."""
    key = _key(keys, channel, chat)
    return [
        {"chat_key": key, "sealed": keys.encrypt(str(one).encode(), CONTEXT), "sent_at": now}
        for one in message_ids
    ]


async def recall(unit: Unit, channel: str, chat: str) -> list[int]:
    """The chat's message ids of the last 48 hours, oldest first."""
    rows = await unit.session.scalars(
        select(ChatMessage)
        .where(
            ChatMessage.chat_key == _key(unit.keys, channel, chat),
            ChatMessage.sent_at >= unit.now - KEEP,
        )
        .order_by(ChatMessage.id)
    )
    return [int(unit.keys.decrypt(row.sealed, CONTEXT)) for row in rows]


async def forget(unit: Unit, channel: str, chat: str) -> None:
    key = _key(unit.keys, channel, chat)
    await unit.session.execute(delete(ChatMessage).where(ChatMessage.chat_key == key))


async def purge(unit: Unit) -> None:
    """Forget every id older than 48 hours."""
    await unit.session.execute(delete(ChatMessage).where(ChatMessage.sent_at < unit.now - KEEP))
