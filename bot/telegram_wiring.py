"""Composing the Telegram channel for `lotse run`: texts, counsellors and configuration in."""

from __future__ import annotations

from bot.app import App
from bot.channels.telegram import Telegram, connect
from bot.config import Config, ConfigError
from bot.core.handoff import staff_member
from flows.messages import Reply
from flows.problems import Problem
from flows.texts import COMMANDS
from storage.keyring import active_counsellors


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

    commands = {
        language: [
            (texts.command(name, language).lstrip("/"), texts.commands[name].description[language])
            for name in COMMANDS
        ]
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
    return await connect(
        config.telegram,
        say=texts.get,
        done_label=done_label,
        commands=commands,
        staff_chat=staff_chat,
        counsellor_ids=counsellor_ids,
        staff_language=config.staff.language,
    )
