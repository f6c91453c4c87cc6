"""Composing the Telegram channel for `lotse run`: texts, counsellors and configuration in."""

from __future__ import annotations

from bot.app import App
from bot.channels.telegram import Telegram, connect
from bot.config import Config, ConfigError
from bot.core.relay import staff_member
from flows.messages import Reply
from flows.problems import Problem
from flows.texts import COMMANDS
from storage import chat_messages
from storage.keyring import active_counsellors
from storage.repository import Store

CHANNEL = "telegram"


async def start_telegram(config: Config, app: App) -> Telegram:
    texts = app.engine.texts
    languages = list(texts.languages)

    def done_label(reply: Reply) -> str:
        for language in languages:
            if texts.get("multi_hint", language) in reply.text:
                return texts.get("telegram_done", language)
        return texts.get("telegram_done", app.engine.questionnaire.meta.default_language)

    async def counsellor_ids() -> set[str]:
        async with app.store.unit() as unit:
            members = [staff_member(c) for c in await active_counsellors(unit.session)]
        return {member.handles["telegram"] for member in members if "telegram" in member.handles}

    clear = {"de": "chat_leeren", "en": "clear_chat"}
    commands = {
        language: [
            (texts.command(name, language).lstrip("/"), texts.commands[name].description[language])
            for name in COMMANDS
        ]
        + [(clear.get(language, "clear_chat"), texts.get("telegram_clear_menu", language))]
        for language in languages
    }
    staff_chat = None
    if config.staff.channel == "telegram":
        try:
            staff_chat = int(config.staff.room)
        except ValueError:
            raise ConfigError(
                "configuration",
                [Problem("staff.room", "must be the staff group's numeric chat id, e.g. -100123…")],
            ) from None
    telegram = await connect(
        config.telegram,
        say=texts.get,
        done_label=done_label,
        commands=commands,
        staff_chat=staff_chat,
        counsellor_ids=counsellor_ids,
        staff_language=config.staff.language,
    )
    telegram.channel.sender.chat_log = StoredChatLog(app.store)
    return telegram


class StoredChatLog:
    """The ids of officials' Telegram chats for /chat_leeren: sealed, 48 hours (storage)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._writes = 0

    async def remember(self, chat: int, message_ids: list[int]) -> None:
        store = self.store
        rows = chat_messages.rows(store.keys, store.clock(), CHANNEL, str(chat), message_ids)
        await store.hot.insert(chat_messages.TABLE, rows)  # joins the officials' steps' batch
        self._writes += 1
        if self._writes % 500 == 1:
            async with store.unit() as unit:
                await chat_messages.purge(unit)

    async def recall(self, chat: int) -> list[int]:
        async with self.store.unit() as unit:
            await chat_messages.purge(unit)
            return await chat_messages.recall(unit, CHANNEL, str(chat))

    async def forget(self, chat: int) -> None:
        async with self.store.unit() as unit:
            await chat_messages.forget(unit, CHANNEL, str(chat))
