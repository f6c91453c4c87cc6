"""The Telegram channel (python-telegram-bot 22): officials in private chats, the staff
group as the staff room. `connect` builds and checks it from the configuration."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from telegram import Bot, BotCommand
from telegram import error as tg

from bot.channels.telegram.adapter import MAX_BACKOFF, POLL_SECONDS, Say, TelegramChannel
from bot.channels.telegram.limits import ChatLimits
from bot.channels.telegram.request import Request
from bot.channels.telegram.send import DoneLabel, Sender
from bot.channels.telegram.staff import CounsellorIds, TelegramStaffRoom
from bot.channels.telegram.webhook import Webhook
from bot.config import StartupError, TelegramConfig

__all__ = ["Telegram", "connect"]
logger = logging.getLogger(__name__)
COMMAND_NAME = re.compile(r"^[a-z0-9_]{1,32}$")


@dataclass
class Telegram:
    bot: Bot
    channel: TelegramChannel
    staff_room: TelegramStaffRoom | None

    async def close(self) -> None:
        try:
            await self.bot.shutdown()
        except Exception as error:  # stopping anyway
            logger.debug("telegram: shutting down the client failed (%s)", type(error).__name__)


async def connect(
    config: TelegramConfig,
    *,
    say: Say,
    done_label: DoneLabel,
    commands: Mapping[str, Sequence[tuple[str, str]]],
    staff_chat: int | None,
    counsellor_ids: CounsellorIds,
    staff_language: str,
) -> Telegram:
    """The bot, its token checked (`getMe`): a missing or rejected token raises
    `StartupError`; the network is waited for with a growing pause."""
    token = os.environ.get(config.token_env, "").strip()
    if not token:
        raise StartupError(
            f"the environment variable {config.token_env} (telegram.token_env) holds no bot token"
        )
    webhook = _webhook(config) if config.mode == "webhook" else None
    reached = Reached()
    bot = Bot(
        token,
        base_url=config.base_url or "https://api.telegram.org/bot",
        base_file_url=config.base_file_url or "https://api.telegram.org/file/bot",
        request=TimedRequest(reached, connection_pool_size=16, read_timeout=20, connect_timeout=10),
        get_updates_request=TimedRequest(
            reached, read_timeout=POLL_SECONDS + 10, connect_timeout=10
        ),
    )
    pause = 1.0
    while True:
        try:
            await bot.initialize()  # getMe
            break
        except tg.InvalidToken:
            raise StartupError(
                f"Telegram rejected the bot token in {config.token_env}; "
                "check it with BotFather (/token)"
            ) from None
        except (tg.TelegramError, OSError) as error:
            logger.warning(
                "telegram: cannot reach the Bot API (%s), again in %.0f s",
                type(error).__name__,
                pause,
            )
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_BACKOFF)
    await _register_commands(bot, commands)

    sender = Sender(bot, ChatLimits(), done_label)
    staff_room = None
    if staff_chat is not None:
        staff_room = TelegramStaffRoom(
            bot,
            sender,
            staff_chat,
            counsellor_ids,
            urgent_mark=say("staff_urgent_mark", staff_language),
            alert=lambda problems: say("telegram_room_alert", staff_language, problems=problems),
        )
    channel = TelegramChannel(
        bot,
        sender,
        say,
        staff_chat=staff_chat,
        max_file_bytes=config.max_file_mb * 1024 * 1024,
        webhook=webhook,
        reached=reached.last,
    )
    return Telegram(bot, channel, staff_room)


def _webhook(config: TelegramConfig) -> Webhook:
    """Webhook mode needs Telegram's secret token: without it anyone who knows the address
    could post forged updates (even as a counsellor)."""
    secret = os.environ.get(config.secret_token_env, "").strip()
    problem = config.webhook_secret_problem(os.environ)
    if problem is not None:
        raise StartupError(problem)
    return Webhook(config.listen, config.port, config.path, config.public_url, secret)


class Reached:
    """When the Bot API last answered a call with success (`time.monotonic()`)."""

    def __init__(self) -> None:
        self._at: float | None = None

    def now(self) -> None:
        self._at = time.monotonic()

    def last(self) -> float | None:
        return self._at


class TimedRequest(Request):
    """python-telegram-bot's HTTP client, noting every call Telegram answered with 200
    (a poll, a send, a file): the health check's `last_reachable`."""

    def __init__(self, reached: Reached, **options: Any) -> None:
        super().__init__(**options)
        self._reached = reached

    async def do_request(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        code, payload = await super().do_request(*args, **kwargs)
        if code == 200:
            self._reached.now()
        return code, payload


async def _register_commands(bot: Bot, commands: Mapping[str, Sequence[tuple[str, str]]]) -> None:
    """The command menu, per language (`setMyCommands`); German is also the default."""
    for language, entries in commands.items():
        menu = [BotCommand(name, text[:256]) for name, text in entries if COMMAND_NAME.match(name)]
        try:
            await bot.set_my_commands(menu, language_code=language)
            if language == "de":
                await bot.set_my_commands(menu)
        except tg.TelegramError as error:
            logger.warning("telegram: the command menu was not set (%s)", type(error).__name__)
