"""The pipeline figure through the real adapters: Bot API update JSON in, durable state on both
sides.

The burst of bench_ptb (OFFICIALS people writing at once, each a whole intake of
len(ANSWERS) messages), but every message starts as the dict Telegram sends
(`bench_ptb._update`) and parsing it is inside the timing on both sides:

- Lotse: the Telegram adapter's own entry for a raw update (`TelegramChannel._take`, what
  polling and the webhook call: `Update.de_json`, the private-chat checks, the message id
  kept for /chat_leeren as `lotse run` keeps it, the `Inbound`), then the real core on
  SQLite (WAL, synchronous FULL). Replies go to a channel named "telegram" that only
  counts; the Bot API client is never asked to send.
- python-telegram-bot: `Update.de_json`, `Application.process_update` with a persistent
  `ConversationHandler` and `PicklePersistence(on_flush=True)`; after every update the
  persistence is written to its file (`update_persistence()`, then `flush()`), so a state
  is on disk before the next message of the burst is taken. The file is written without
  fsync (PTB does not offer one): a weaker promise than Lotse's synchronous commit.

Failures: "technical error" replies and officials without a case (Lotse), handler errors
and replies never sent (PTB). The ratio is Lotse's answered messages per second over PTB's.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from telegram import Bot, Update
from telegram.ext import Application, PicklePersistence

from bot.channels.telegram.adapter import CHANNEL, TelegramChannel
from bot.channels.telegram.limits import ChatLimits
from bot.channels.telegram.send import Sender
from bot.telegram_wiring import StoredChatLog
from tests.bench_ptb import (
    OFFICIALS,
    TOKEN,
    Rate,
    _CannedRequest,
    _conversation,
    _line,
    _update,
    ptb_burst,
)
from tests.bench_results import Results
from tests.bench_rig import ANSWERS, Sink, running_core

SECTION = "adapter"
MAX_FILE_BYTES = 20 * 1024 * 1024  # the configuration's default (telegram.max_file_mb)


@dataclass(frozen=True)
class Sizes:
    officials: int = OFFICIALS


def _scripts(officials: int) -> list[list[dict[str, Any]]]:
    """Each official's updates as Telegram sends them (user ids from 1000, as in bench_ptb)."""
    return [
        [
            _update(index * 100 + number, 1000 + index, answer)
            for number, answer in enumerate(ANSWERS)
        ]
        for index in range(officials)
    ]


async def lotse_adapter(folder: Path, officials: int) -> Rate:
    async with running_core(folder) as rig:
        replies = Sink(rig.app.engine.texts.get("technical_error", "de"))
        replies.name = CHANNEL  # the core answers an Inbound on the channel it came from
        rig.core.attach(replies)
        bot = Bot(TOKEN, request=_CannedRequest())
        sender = Sender(bot, ChatLimits(), lambda reply: "Fertig")
        sender.chat_log = StoredChatLog(rig.app.store)  # as `lotse run` (telegram_wiring)
        channel = TelegramChannel(
            bot,
            sender,
            rig.app.engine.texts.get,
            staff_chat=None,
            max_file_bytes=MAX_FILE_BYTES,
        )
        scripts = _scripts(officials)

        async def official(updates: list[dict[str, Any]]) -> None:
            for data in updates:
                await channel._take(data, rig.core)  # the adapter's entry for one raw update

        started = time.perf_counter()
        await asyncio.gather(*(official(updates) for updates in scripts))
        await rig.core.settle()
        elapsed = time.perf_counter() - started
        cases = len(await rig.app.store.cases())
    messages = officials * len(ANSWERS)
    failures = replies.apologies + rig.sink.apologies + (officials - cases) * len(ANSWERS)
    return Rate(messages - failures, failures, elapsed)


async def ptb_durable(folder: Path, officials: int) -> Rate:
    request = _CannedRequest()
    persistence: PicklePersistence[Any, Any, Any] = PicklePersistence(
        folder / "ptb.pickle", on_flush=True
    )
    application = (
        Application.builder().token(TOKEN).request(request).persistence(persistence).build()
    )
    application.add_handler(_conversation(len(ANSWERS), persistent=True))

    async def take(data: dict[str, Any]) -> None:
        await application.process_update(Update.de_json(data, application.bot))
        await application.update_persistence()  # this update's state to the persistence
        await persistence.flush()  # and the persistence to its file

    return await ptb_burst(application, request, _scripts(officials), take)


async def _figures(results: Results, officials: int) -> None:
    print(
        f"adapter: {officials} officials x {len(ANSWERS)} Bot API updates at once, "
        "parsing timed, no network"
    )
    with tempfile.TemporaryDirectory() as folder:
        peer = await ptb_durable(Path(folder), officials)
    print(_line("ptb + PicklePersistence:", peer))
    with tempfile.TemporaryDirectory() as folder:
        lotse = await lotse_adapter(Path(folder), officials)
    print(_line("lotse adapter + SQLite:", lotse))
    ratio = lotse.per_second / peer.per_second
    print(f"ratio lotse/ptb (adapter, durable peer): {ratio:.2f}")
    note = f"{officials} x {len(ANSWERS)} updates at once, parsing timed"
    flushed = "ptb + PicklePersistence (flushed each update)"
    results.add(SECTION, flushed, peer.per_second, "messages/s", note)
    results.add(SECTION, "ptb: errors or replies not sent", peer.failures, "failures")
    results.add(SECTION, "lotse adapter + core on SQLite", lotse.per_second, "messages/s", note)
    results.add(SECTION, "lotse: apologies, officials without a case", lotse.failures, "failures")
    results.add(SECTION, "ratio lotse/ptb (adapter, durable peer)", ratio, "x")


def run(results: Results, sizes: Sizes = Sizes()) -> None:
    results.sizes[SECTION] = {"officials": sizes.officials, "answers": len(ANSWERS)}
    asyncio.run(_figures(results, sizes.officials))


if __name__ == "__main__":
    import sys

    run(Results(), Sizes(int(sys.argv[1])) if len(sys.argv) > 1 else Sizes())
