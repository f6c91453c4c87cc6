"""Message ids of officials' chats, for clearing the chat on their phone (`/chat_leeren`).

A chat is stored as an HMAC, each id encrypted with the server secret; nothing is kept
longer than `KEEP` (Telegram lets a bot delete messages for 48 hours only).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select

from storage.models import ChatMessage
from storage.repository import Unit

KEEP = dt.timedelta(hours=48)
CONTEXT = "chat-message"


def _chat_key(unit: Unit, channel: str, chat: str) -> str:
    return unit.keys.pseudonym(f"chat:{channel}", chat)


async def remember(unit: Unit, channel: str, chat: str, message_ids: list[int]) -> None:
    key = _chat_key(unit, channel, chat)
    for message_id in message_ids:
        sealed = unit.keys.encrypt(str(message_id).encode(), CONTEXT)
        unit.session.add(ChatMessage(chat_key=key, sealed=sealed, sent_at=unit.now))


async def recall(unit: Unit, channel: str, chat: str) -> list[int]:
    """The chat's message ids of the last 48 hours, oldest first."""
    rows = await unit.session.scalars(
        select(ChatMessage)
        .where(
            ChatMessage.chat_key == _chat_key(unit, channel, chat),
            ChatMessage.sent_at >= unit.now - KEEP,
        )
        .order_by(ChatMessage.id)
    )
    return [int(unit.keys.decrypt(row.sealed, CONTEXT)) for row in rows]


async def forget(unit: Unit, channel: str, chat: str) -> None:
    key = _chat_key(unit, channel, chat)
    await unit.session.execute(delete(ChatMessage).where(ChatMessage.chat_key == key))


async def purge(unit: Unit) -> None:
    """Forget every id older than 48 hours."""
    await unit.session.execute(delete(ChatMessage).where(ChatMessage.sent_at < unit.now - KEEP))
