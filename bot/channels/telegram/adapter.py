"""Telegram updates in, `Inbound`/`StaffInbound` out; the channel officials write to.

Officials are served in private chats only; the staff group goes to the core as staff
messages; any other group or channel is left. Polling is our own loop: the offset of an
update is confirmed to Telegram only after the core has committed it, so a kill loses
nothing (a repeat is dropped by the core, which remembers `update_id`s). Webhook mode
keeps the same promise with our own web server (webhook.py): it answers Telegram only
once the update is committed.

A few short notices the adapter gives itself, without the core: a file too big to take,
an edited message (which changes no stored answer), a button that is not one of ours.
They carry nothing of the conversation.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any

from telegram import (
    Bot,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    Update,
)
from telegram import error as tg

from bot.channels.telegram.evidence import file_of, origin_of
from bot.channels.telegram.request import UnreadableResponse
from bot.channels.telegram.send import (
    CHECK,
    DONE,
    MAX_TEXT,
    SEPARATOR,
    TOGGLE,
    Sender,
    retry_seconds,
)
from bot.channels.telegram.webhook import Webhook, WebhookServer
from bot.core.types import Attachment, Inbound, InboundSink, Pick, Reply, StaffInbound

logger = logging.getLogger(__name__)
CHANNEL = "telegram"
POLL_SECONDS = 25
BATCH = 100  # updates per poll, Telegram's maximum
MAX_BACKOFF = 60.0
WEBHOOK_CHECK_SECONDS = 20.0  # getWebhookInfo this often: keeps `last_reachable` fresh
ALLOWED_UPDATES = ["message", "edited_message", "callback_query", "my_chat_member"]
CLEAR_COMMANDS = ("/chat_leeren", "/clear_chat")
CLEAR_PROMPT = "clear"  # engine prompts always have a "." (flows/picks.py): no clash
REFERENCE = re.compile(r"\bL-\d{4}-\d{4,}\b")
Say = Callable[..., str]  # say(key, language, **fields): a text of flows/texts.toml


def language_of(code: str | None) -> str:
    """German, unless the official's Telegram speaks another language."""
    return "de" if code is None or code.casefold().startswith("de") else "en"


class TelegramChannel:
    name = CHANNEL

    def __init__(
        self,
        bot: Bot,
        sender: Sender,
        say: Say,
        *,
        staff_chat: int | None,
        max_file_bytes: int,
        webhook: Webhook | None = None,
        reached: Callable[[], float | None] = lambda: None,
    ) -> None:
        self.bot = bot
        self.sender = sender
        self._say = say
        self.staff_chat = staff_chat
        self.max_file_bytes = max_file_bytes
        self.webhook = webhook
        self._reached = reached
        self._left: set[int] = set()

    async def send(self, chat: str, reply: Reply) -> None:
        await self.sender.send(chat, reply)

    @property
    def clears_chat(self) -> bool:
        """/chat_leeren works once the message ids are kept (the core's capability hook)."""
        return self.sender.chat_log is not None

    def last_reachable(self) -> float | None:
        """`time.monotonic()` of the last Bot API call that succeeded (for /healthz)."""
        return self._reached()

    # -- receiving ----------------------------------------------------------------------------

    async def receive(self, sink: InboundSink) -> None:
        if self.webhook is not None:
            await self._serve_webhook(sink, self.webhook)
        else:
            await self._poll(sink)

    async def _poll(self, sink: InboundSink) -> None:
        await _retrying("removing a webhook", self.bot.delete_webhook)
        offset: int | None = None
        pause = 1.0
        hunting = False  # a batch could not be read: one update at a time until it is found
        while True:
            try:
                # Raw, so that one update this library version cannot read is skipped alone
                # instead of failing the whole batch for ever.
                raw = await self.bot.do_api_request(
                    "getUpdates",
                    {
                        "offset": offset,
                        "limit": 1 if hunting else BATCH,
                        "timeout": 0 if hunting else POLL_SECONDS,
                        "allowed_updates": ALLOWED_UPDATES,
                    },
                    read_timeout=POLL_SECONDS + 10,
                )
                pause = 1.0
                hunting = hunting and bool(raw)
            except tg.RetryAfter as error:
                await asyncio.sleep(retry_seconds(error))
                continue
            except UnreadableResponse as error:
                if hunting and error.update_ids:  # this one update cannot be read: skip it
                    logger.warning("telegram: an update that cannot be read was skipped")
                    offset = max(offset or 0, error.update_ids[0] + 1)
                    hunting = False
                elif not hunting:
                    hunting = True
                else:  # not even one update: a proxy's error page, say
                    logger.warning("telegram: unreadable answer, again in %.0f s", pause)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, MAX_BACKOFF)
                continue
            except tg.InvalidToken:
                logger.error("telegram: the bot token was revoked; no more updates are fetched")
                raise
            except Exception as error:  # the network, or the server answered nonsense
                logger.warning(
                    "telegram: fetching updates failed (%s), again in %.0f s",
                    type(error).__name__,
                    pause,
                )
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_BACKOFF)
                continue
            for data in raw if isinstance(raw, list) else []:
                update_id = data.get("update_id") if isinstance(data, dict) else None
                if not isinstance(update_id, int):
                    continue
                await self._take(data, sink)
                offset = max(offset or 0, update_id + 1)

    async def _take(self, data: dict[str, Any], sink: InboundSink) -> None:
        """One raw update to the core; returns once it is committed (or given up on)."""
        try:
            update = Update.de_json(data, self.bot)
        except Exception as error:  # a kind of update newer than this library
            logger.warning("telegram: an unreadable update was skipped (%s)", type(error).__name__)
            return
        await self.dispatch(update, sink)

    async def _serve_webhook(self, sink: InboundSink, hook: Webhook) -> None:
        """Updates one at a time, as polling takes them, each answered once committed."""

        async def take(data: dict[str, Any]) -> None:
            await self._take(data, sink)

        server = WebhookServer(hook, take)
        server.start()
        try:
            await _retrying("setting the webhook", self._set_webhook)
            while True:
                await asyncio.sleep(WEBHOOK_CHECK_SECONDS)
                await self._check_webhook()
        finally:
            await server.stop()

    async def _set_webhook(self) -> None:
        assert self.webhook is not None
        await self.bot.set_webhook(
            self.webhook.url,
            secret_token=self.webhook.secret_token,
            allowed_updates=ALLOWED_UPDATES,
        )

    async def _check_webhook(self) -> None:
        """Ask Telegram now and then (which also shows it is reachable); set the webhook
        again if something else removed or replaced it."""
        assert self.webhook is not None
        try:
            info = await self.bot.get_webhook_info()
            if info.url != self.webhook.url:
                logger.warning("telegram: the webhook was removed or replaced; setting it again")
                await self._set_webhook()
        except tg.InvalidToken:
            logger.error("telegram: the bot token was revoked; no more updates arrive")
            raise
        except (tg.TelegramError, OSError) as error:
            logger.warning("telegram: checking the webhook failed (%s)", type(error).__name__)

    async def dispatch(self, update: Update, sink: InboundSink) -> None:
        """One update to the core; never raises (a bad update must not stop the channel)."""
        try:
            await self._dispatch(update, sink)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            logger.error("telegram: an update could not be handled (%s)", type(error).__name__)

    async def _dispatch(self, update: Update, sink: InboundSink) -> None:
        event = str(update.update_id)
        if update.callback_query is not None:
            await self._button(update.callback_query, event, sink)
            return
        if update.my_chat_member is not None:
            await self._leave_unless_ours(
                update.my_chat_member.chat.id, update.my_chat_member.chat.type
            )
            return
        if update.edited_message is not None:
            edited = update.edited_message
            if edited.chat.type == "private" and edited.from_user is not None:
                language = language_of(edited.from_user.language_code)
                await self._notice(edited.chat.id, self._say("telegram_edited", language))
            return
        message = update.message
        if message is None or message.from_user is None:
            logger.debug("telegram: an update of a kind Lotse does not handle was ignored")
            return
        if message.chat.type == "private":
            await self._official(message, event, sink)
        elif message.chat.id == self.staff_chat:
            await self._staff(message, event, sink)
        else:
            await self._leave_unless_ours(message.chat.id, message.chat.type)

    async def _leave_unless_ours(self, chat: int, kind: str) -> None:
        if kind == "private" or chat == self.staff_chat or chat in self._left:
            return
        self._left.add(chat)
        logger.warning("telegram: the bot was in a group that is not the staff group; leaving it")
        try:
            await self.bot.leave_chat(chat)
        except tg.TelegramError as error:
            logger.warning("telegram: leaving a group failed (%s)", type(error).__name__)

    # -- officials ----------------------------------------------------------------------------

    async def _official(self, message: Message, event: str, sink: InboundSink) -> None:
        assert message.from_user is not None
        language = language_of(message.from_user.language_code)
        text = message.text or message.caption or ""
        if len(text) > MAX_TEXT:  # Telegram sends nothing longer: a broken or forged server
            logger.warning("telegram: a message longer than Telegram allows was ignored")
            return
        if message.text and message.text.startswith("/"):
            text = _without_bot_name(message.text)
        await self.sender.log(message.chat.id, [message.message_id])
        if text.strip().casefold() in CLEAR_COMMANDS and self.sender.chat_log is not None:
            await self._ask_to_clear(message.chat.id, language)
            return
        attachment = await self._attachment(message, language)
        origin = origin_of(message)
        if origin is not None:
            text = self._say("telegram_forwarded", language, origin=origin[0], date=origin[1]) + (
                f"\n{text}" if text else ""
            )
        if attachment is False and not text:  # refused, and nothing else came with it
            return
        await sink.handle(
            Inbound(
                channel=CHANNEL,
                user=str(message.from_user.id),
                chat=str(message.chat.id),
                text=text,
                event_id=event,
                attachments=(attachment,) if isinstance(attachment, Attachment) else (),
                language=language,
            )
        )

    async def _attachment(self, message: Message, language: str) -> Attachment | bool | None:
        """The message's file, downloaded into memory; None: it has none; False: refused."""
        found = file_of(message)
        if found is None:
            return None
        file_id, size, name, media_type = found
        limit_mb = self.max_file_bytes // (1024 * 1024)
        if size is not None and size > self.max_file_bytes:
            await self._notice(
                message.chat.id, self._say("telegram_file_too_big", language, limit=limit_mb)
            )
            return False
        try:
            file = await self.bot.get_file(file_id)
            data = bytes(await file.download_as_bytearray())
        except tg.BadRequest:  # "file is too big" for the Bot API's own limit
            await self._notice(
                message.chat.id, self._say("telegram_file_too_big", language, limit=limit_mb)
            )
            return False
        except tg.TelegramError as error:
            logger.warning("telegram: a file could not be downloaded (%s)", type(error).__name__)
            await self._notice(message.chat.id, self._say("telegram_file_failed", language))
            return False
        if len(data) > self.max_file_bytes:
            await self._notice(
                message.chat.id, self._say("telegram_file_too_big", language, limit=limit_mb)
            )
            return False
        return Attachment(name, media_type, data)

    async def _button(self, query: CallbackQuery, event: str, sink: InboundSink) -> None:
        message = query.message
        language = language_of(query.from_user.language_code)
        prompt, separator, key = (query.data or "").partition(SEPARATOR)
        if (
            not isinstance(message, Message)
            or message.chat.type != "private"
            or not separator
            or not prompt
            or not key
        ):
            await self._answer(query, self._say("telegram_button_unknown", language))
            return
        if key.startswith(TOGGLE):
            await self._toggle(query, message)
            return
        if prompt == CLEAR_PROMPT:
            await self._answer(query, None)
            await self.sender.forget_keyboard(message.chat.id, message.message_id)
            await self._clear(message.chat.id, language, key == "yes")
            return
        keys = tuple(_ticked(message.reply_markup, prompt)) if key == DONE else (key,)
        await self._answer(query, None)
        await self.sender.forget_keyboard(message.chat.id, message.message_id)
        await sink.handle(
            Inbound(
                channel=CHANNEL,
                user=str(query.from_user.id),
                chat=str(message.chat.id),
                text="",
                event_id=event,
                pick=Pick(prompt, keys),
                language=language,
            )
        )

    async def _toggle(self, query: CallbackQuery, message: Message) -> None:
        markup = message.reply_markup
        if markup is None:
            await self._answer(query, None)
            return
        rows = [
            [
                InlineKeyboardButton(
                    _flipped(button.text) if button.callback_data == query.data else button.text,
                    callback_data=button.callback_data,
                )
                for button in row
            ]
            for row in markup.inline_keyboard
        ]
        await self._answer(query, None)
        try:
            await self.bot.edit_message_reply_markup(
                message.chat.id, message.message_id, reply_markup=InlineKeyboardMarkup(rows)
            )
        except tg.TelegramError as error:
            logger.debug("telegram: toggling a button failed (%s)", type(error).__name__)

    async def _answer(self, query: CallbackQuery, text: str | None) -> None:
        try:
            await query.answer(text=text)
        except tg.TelegramError as error:  # too late (15 s) or the network: nothing to do
            logger.debug("telegram: a button press was not acknowledged (%s)", type(error).__name__)

    async def _notice(
        self, chat: int, text: str, markup: InlineKeyboardMarkup | None = None
    ) -> None:
        """One of the adapter's own short notices, within the chat's limit."""
        wait = self.sender.limits.delay(chat)
        if wait > 5:
            return
        await asyncio.sleep(wait)
        try:
            await self.sender.limits.overall()
            self.sender.limits.spend(chat)
            sent = await self.bot.send_message(chat, text, reply_markup=markup)
            await self.sender.log(chat, [sent.message_id])
        except tg.TelegramError as error:
            logger.warning("telegram: a notice could not be sent (%s)", type(error).__name__)

    # -- clearing the chat on the official's phone -------------------------------------------

    async def _ask_to_clear(self, chat: int, language: str) -> None:
        markup = InlineKeyboardMarkup(
            [
                [
                    InlineKeyboardButton(
                        self._say("telegram_clear_yes", language),
                        callback_data=f"{CLEAR_PROMPT}{SEPARATOR}yes",
                    )
                ],
                [
                    InlineKeyboardButton(
                        self._say("telegram_clear_no", language),
                        callback_data=f"{CLEAR_PROMPT}{SEPARATOR}no",
                    )
                ],
            ]
        )
        await self._notice(chat, self._say("telegram_clear_confirm", language), markup)

    async def _clear(self, chat: int, language: str, confirmed: bool) -> None:
        """Delete every message of this chat Telegram still lets a bot delete (48 hours)."""
        log = self.sender.chat_log
        if not confirmed or log is None:
            await self._notice(chat, self._say("telegram_clear_kept", language))
            return
        ids = sorted(set(await log.recall(chat)))
        deleted = 0
        for start in range(0, len(ids), 100):
            chunk = ids[start : start + 100]
            try:
                await self.bot.delete_messages(chat, chunk)
                deleted += len(chunk)
            except tg.TelegramError as error:
                logger.warning("telegram: messages could not be deleted (%s)", type(error).__name__)
        await log.forget(chat)
        key = "telegram_clear_done" if deleted == len(ids) else "telegram_clear_partly"
        await self._notice(chat, self._say(key, language, count=deleted))
        await log.forget(chat)  # not even the last notice's id stays

    # -- the staff group ------------------------------------------------------------------------

    async def _staff(self, message: Message, event: str, sink: InboundSink) -> None:
        assert message.from_user is not None
        if message.from_user.id == self.bot.id or message.from_user.is_bot:
            return
        text = message.text or message.caption or ""
        if len(text) > MAX_TEXT:  # as for officials: no real Telegram message is this long
            logger.warning("telegram: a staff-room message longer than Telegram allows was ignored")
            return
        attachment = await self._attachment(message, "de")
        if text.startswith("/"):
            text = _without_bot_name(text)
        if not text and not isinstance(attachment, Attachment):
            return  # a service message: a topic was created, someone joined
        await sink.handle_staff(
            StaffInbound(
                channel=CHANNEL,
                author=str(message.from_user.id),
                thread=_thread_of(message),
                text=text,
                event_id=event,
                attachments=(attachment,) if isinstance(attachment, Attachment) else (),
            )
        )


def _thread_of(message: Message) -> str | None:
    """The case a staff message belongs to: its forum topic, or the case of the message
    it replies to (in a group without topics every post of a case names its reference)."""
    if message.is_topic_message and message.message_thread_id is not None:
        return str(message.message_thread_id)
    replied = message.reply_to_message
    if replied is not None:
        found = REFERENCE.search(replied.text or replied.caption or "")
        if found is not None:
            return found.group(0)
    return None


def _without_bot_name(text: str) -> str:
    """`/hilfe@LotseBot args` → `/hilfe args` (Telegram appends the name in groups)."""
    head, _, rest = text.partition(" ")
    command = head.split("@", 1)[0]
    return f"{command} {rest}".rstrip() if rest else command


def _flipped(label: str) -> str:
    return label[len(CHECK) :] if label.startswith(CHECK) else CHECK + label


def _ticked(markup: InlineKeyboardMarkup | None, prompt: str) -> list[str]:
    if markup is None:
        return []
    keys = []
    for row in markup.inline_keyboard:
        for button in row:
            data = button.callback_data
            if isinstance(data, str) and button.text.startswith(CHECK):
                owner, _, key = data.partition(SEPARATOR)
                if owner == prompt and key.startswith(TOGGLE):
                    keys.append(key[len(TOGGLE) :])
    return keys


async def _retrying(what: str, call: Callable[[], object]) -> None:
    pause = 1.0
    while True:
        try:
            await call()  # type: ignore[misc]
            return
        except tg.InvalidToken:
            raise
        except (tg.TelegramError, OSError) as error:
            logger.warning(
                "telegram: %s failed (%s), again in %.0f s", what, type(error).__name__, pause
            )
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_BACKOFF)
