"""The one way out to Telegram: a `Reply` becomes messages with inline keyboards.

Callback data is `prompt|key` for a button that answers (`prompt|+key` toggles a
multiple choice, `prompt|=` is its Done button): ids only, never answer content, and
short enough for Telegram's 64 bytes. A reply longer than 4,096 characters is split at
paragraph boundaries; its buttons go with the last part. Only the newest question of a
chat keeps its buttons: sending one removes the keyboard of the one before.

Telegram's failures map onto the core's: a 429 is `RetryAfter`, a blocked bot or a
chat that is gone is `PermanentFailure`, a chat at its own limit is `ChatBusy`
(nothing sent), anything else (the network) is temporary.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import warnings
from collections.abc import Awaitable, Callable
from typing import Protocol

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, Message
from telegram import error as tg
from telegram.warnings import PTBDeprecationWarning

from bot.channels.telegram.limits import ChatLimits
from bot.channels.text import reply_as_text
from bot.core.types import ChatBusy, PermanentFailure, Reply, RetryAfter

logger = logging.getLogger(__name__)
MAX_TEXT = 4096
MAX_CALLBACK = 64
SEPARATOR = "|"
TOGGLE = "+"
DONE = "="
CHECK = "✓ "
DoneLabel = Callable[[Reply], str]  # the Done button's label, in the reply's language


class ChatLog(Protocol):
    """The message ids of officials' chats of the last 48 hours (kept by the composition)."""

    async def remember(self, chat: int, message_ids: list[int]) -> None: ...

    async def recall(self, chat: int) -> list[int]: ...

    async def forget(self, chat: int) -> None: ...


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """`text` in parts of at most `limit` characters, cut at paragraphs, else lines, else words."""
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[:limit]
        cut = max(window.rfind("\n\n"), 0) or max(window.rfind("\n"), 0) or window.rfind(" ")
        if cut <= limit // 4:  # no boundary worth the name: cut hard
            cut = limit
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip("\n ")
    if rest:
        parts.append(rest)
    return [part for part in parts if part] or [text[:limit]]


def keyboard(reply: Reply, done_label: str) -> InlineKeyboardMarkup | None:
    """The reply's choices as buttons; None when it has none or they cannot be buttons."""
    if not reply.choices or reply.prompt is None:
        return None
    marker = TOGGLE if reply.multiple else ""
    rows = [
        [
            InlineKeyboardButton(
                choice.label, callback_data=callback(reply.prompt, marker + choice.key)
            )
        ]
        for choice in reply.choices
    ]
    if reply.multiple:
        rows.append([InlineKeyboardButton(done_label, callback_data=callback(reply.prompt, DONE))])
    if any(
        len(str(button.callback_data).encode()) > MAX_CALLBACK for row in rows for button in row
    ):
        return None
    return InlineKeyboardMarkup(rows)


def callback(prompt: str, key: str) -> str:
    return f"{prompt}{SEPARATOR}{key}"


def retry_seconds(error: tg.RetryAfter) -> float:
    with warnings.catch_warnings():  # an int now, a timedelta in a later version: both read
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = error.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


class Sender:
    """Sends to private chats and the staff group, within the limits of `ChatLimits`."""

    def __init__(self, bot: Bot, limits: ChatLimits, done_label: DoneLabel) -> None:
        self.bot = bot
        self.limits = limits
        self._done_label = done_label
        self._keyboards: dict[int, int] = {}  # chat -> the message whose buttons are live
        self.chat_log: ChatLog | None = None  # remembers private chats' ids for /chat_leeren

    async def send(
        self, chat: str, reply: Reply, thread: int | None = None, head: str = ""
    ) -> list[Message]:
        """`head` starts every part of a long reply (the case's reference in a staff group
        without topics, where a counsellor may reply to any part)."""
        chat_id = int(chat)
        markup = keyboard(reply, self._done_label(reply))
        text = reply.text if markup is not None else reply_as_text(reply)
        if head and text.startswith(head):
            text = text[len(head) :]
        parts = [head + part for part in split_text(text, MAX_TEXT - len(head))]
        busy = self.limits.delay(chat_id, len(parts) + len(reply.files))
        if busy > 0:
            raise ChatBusy(busy)
        sent: list[Message] = []
        with translated():
            if markup is not None:
                await self.forget_keyboard(chat_id)
            for index, part in enumerate(parts):
                last_markup = markup if index == len(parts) - 1 else None
                sent.append(
                    await self._one(
                        chat_id,
                        self.bot.send_message(
                            chat_id, part, reply_markup=last_markup, message_thread_id=thread
                        ),
                    )
                )
            for file in reply.files:
                document = InputFile(file.data, filename=file.name)
                sent.append(
                    await self._one(
                        chat_id,
                        self.bot.send_document(chat_id, document, message_thread_id=thread),
                    )
                )
        if markup is not None:
            self._keyboards[chat_id] = sent[-1 - len(reply.files)].message_id
        await self.log(chat_id, [message.message_id for message in sent])
        return sent

    async def log(self, chat_id: int, message_ids: list[int]) -> None:
        """Remember a private chat's message ids for /chat_leeren; a failure loses only that."""
        if self.chat_log is None or chat_id < 0 or not message_ids:
            return
        try:
            await self.chat_log.remember(chat_id, message_ids)
        except Exception as error:
            logger.warning("telegram: message ids not remembered (%s)", type(error).__name__)

    async def _one(self, chat_id: int, call: Awaitable[Message]) -> Message:
        """One API call that posts a message; `call` is not awaited before the limits allow."""
        wait = self.limits.delay(chat_id)
        if wait > 0:  # a long reply's later parts: wait here, the chat is ours meanwhile
            await asyncio.sleep(wait)
        await self.limits.overall()
        self.limits.spend(chat_id)
        return await call

    async def forget_keyboard(self, chat_id: int, message_id: int | None = None) -> None:
        """Remove the buttons of the chat's live question (or of `message_id`); best effort."""
        live = self._keyboards.get(chat_id)
        target = message_id if message_id is not None else live
        if target is None:
            return
        if target == live:
            del self._keyboards[chat_id]
        try:
            await self.bot.edit_message_reply_markup(chat_id, target, reply_markup=None)
        except tg.TelegramError as error:  # already gone or unchanged: nothing to remove
            logger.debug("keyboard not removed: %s", type(error).__name__)


class translated:
    """Turns Telegram's exceptions into the core's delivery failures."""

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: object
    ) -> None:
        if error is None or not isinstance(error, tg.TelegramError):
            return
        if isinstance(error, tg.RetryAfter):
            raise RetryAfter(retry_seconds(error)) from None
        if isinstance(error, tg.Forbidden):
            raise PermanentFailure("the bot was blocked or removed from the chat") from None
        if isinstance(error, tg.ChatMigrated):
            raise PermanentFailure("the group became a supergroup with a new id") from None
        if isinstance(error, tg.BadRequest) and _gone(error.message):
            raise PermanentFailure("the chat does not exist (any more)") from None


def _gone(message: str) -> bool:
    text = message.casefold()
    return any(
        words in text for words in ("chat not found", "user is deactivated", "peer_id_invalid")
    )
