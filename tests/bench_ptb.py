"""The pipeline figure of `make bench`: Lotse's core beside python-telegram-bot, in one run.

Both sides get the same burst: OFFICIALS people writing at once, each a whole intake of
len(ANSWERS) messages, one after the other. Neither side touches the network.

- Lotse: the real core – dedupe, the conversation's lock, the engine, encryption, the
  durable commit, the outbox and the delivery worker – with a channel that only counts.
  A reply that is the "technical error" apology is a failure, never throughput, and an
  official counts as done only when their case exists.
- python-telegram-bot: a `ConversationHandler` (state in memory, nothing written) with one
  state per message, fed through `Application.process_update`; every reply is a real
  `send_message` through a request object that answers with canned JSON.

The ratio is Lotse's answered messages per second over PTB's (higher is better for Lotse).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from telegram import Update
from telegram.ext import (
    Application,
    CommandHandler,
    ContextTypes,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.request import BaseRequest, RequestData

from bot.app import demo_config
from bot.config import config_from_dict
from bot.core.types import Inbound
from tests.bench_results import Results
from tests.bench_rig import ANSWERS, running_core

SECTION = "pipeline"
OFFICIALS = 200
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
TOKEN = "123456:BENCH-token"
U = TypeVar("U")


@dataclass(frozen=True)
class Sizes:
    officials: int = OFFICIALS
    runs: int = 3  # SQLite and the peer: the median run (one run varies by up to 2x here)


@dataclass(frozen=True)
class Rate:
    messages: int  # answered, apologies not counted
    failures: int  # "technical error" replies, officials without a case, handler errors
    seconds: float

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds


# -- Lotse ------------------------------------------------------------------------------------


async def lotse_pipeline(url: str | None, folder: Path, officials: int) -> Rate:
    """`url` None: SQLite in `folder` (as `lotse demo`); else that PostgreSQL database."""
    config = demo_config(folder)
    if url is not None:
        raw: dict[str, object] = {"storage": {"url": url, "data_dir": str(folder)}}
        config = config_from_dict(raw, folder, "bench")
    async with running_core(folder, config=config) as rig:
        core, sink = rig.core, rig.sink

        async def official(index: int) -> None:
            for number, answer in enumerate(ANSWERS):
                inbound = Inbound("bench", f"u{index}", f"c{index}", answer, f"{index}-{number}")
                await core.handle(inbound)

        started = time.perf_counter()
        await asyncio.gather(*(official(index) for index in range(officials)))
        await core.settle()
        elapsed = time.perf_counter() - started
        cases = len(await rig.app.store.cases())
    messages = officials * len(ANSWERS)
    failures = sink.apologies + (officials - cases) * len(ANSWERS)
    return Rate(messages - failures, failures, elapsed)


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[str | None]:
    """A fresh database on the local PostgreSQL, dropped afterwards; None when none runs."""
    name = f"lotse_bench_{uuid.uuid4().hex[:12]}"
    try:
        admin = await asyncpg.connect(POSTGRES_ADMIN, timeout=3)
    except (OSError, asyncpg.PostgresError):
        yield None
        return
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        base = POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        yield f"{base}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


# -- python-telegram-bot ------------------------------------------------------------------------


class _CannedRequest(BaseRequest):
    """Answers every Bot API call from memory, as Telegram would answer it."""

    def __init__(self) -> None:
        self.sent = 0
        self._ids = 0

    @property
    def read_timeout(self) -> float | None:
        return None

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    async def do_request(  # noqa: PLR0917 (the signature BaseRequest asks for)
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = None,
        write_timeout: Any = None,
        connect_timeout: Any = None,
        pool_timeout: Any = None,
    ) -> tuple[int, bytes]:
        endpoint = url.rsplit("/", 1)[-1]
        if endpoint == "getMe":
            me = {"id": 123456, "is_bot": True, "first_name": "Bench", "username": "bench_bot"}
            return 200, json.dumps({"ok": True, "result": me}).encode()
        parameters = request_data.parameters if request_data else {}
        self.sent += endpoint == "sendMessage"
        self._ids += 1
        chat = int(str(parameters.get("chat_id", 0)))
        message = {
            "message_id": self._ids,
            "date": int(time.time()),
            "chat": {"id": chat, "type": "private"},
            "from": {"id": 123456, "is_bot": True, "first_name": "Bench"},
            "text": str(parameters.get("text", "")),
        }
        return 200, json.dumps({"ok": True, "result": message}).encode()


def _conversation(length: int, *, persistent: bool = False) -> ConversationHandler[Any]:
    """One state per message: keep the answer in user_data, ask the next question.
    `persistent`: the states go to the application's persistence (a name is then required)."""

    def step(number: int) -> Any:
        async def answer(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
            assert update.message is not None and context.user_data is not None
            context.user_data[f"q{number}"] = update.message.text
            done = number + 1 == length
            text = "Danke, gesendet." if done else f"Frage {number + 1} von {length - 1}"
            await update.message.reply_text(text)
            return ConversationHandler.END if done else number + 1

        return answer

    text = filters.TEXT & ~filters.COMMAND
    return ConversationHandler(
        entry_points=[CommandHandler("start", step(0))],
        states={number: [MessageHandler(text, step(number))] for number in range(1, length)},
        fallbacks=[],
        name="intake" if persistent else None,
        persistent=persistent,
    )


def _update(update_id: int, user: int, text: str) -> dict[str, Any]:
    entities = [{"type": "bot_command", "offset": 0, "length": len(text)}]
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 0,
            "chat": {"id": user, "type": "private"},
            "from": {"id": user, "is_bot": False, "first_name": "Amt"},
            "text": text,
            **({"entities": entities} if text.startswith("/") else {}),
        },
    }


async def ptb_burst(
    application: Application[Any, Any, Any, Any, Any, Any],
    request: _CannedRequest,
    scripts: Sequence[Sequence[U]],
    take: Callable[[U], Awaitable[object]],
) -> Rate:
    """Every official's updates one after another, all officials at once, each update given
    to `take`; the handlers' errors and replies not sent are failures."""
    errors: list[object] = []

    async def count_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        errors.append(context.error)

    application.add_error_handler(count_error)
    await application.initialize()

    async def official(updates: Sequence[U]) -> None:
        for update in updates:
            await take(update)

    started = time.perf_counter()
    await asyncio.gather(*(official(updates) for updates in scripts))
    elapsed = time.perf_counter() - started
    await application.shutdown()
    messages = sum(len(updates) for updates in scripts)
    failures = len(errors) + (messages - request.sent)
    return Rate(messages - failures, failures, elapsed)


async def ptb_pipeline(officials: int) -> Rate:
    request = _CannedRequest()
    application = Application.builder().token(TOKEN).request(request).build()
    application.add_handler(_conversation(len(ANSWERS)))
    # Parsing the updates is left out of the timing: only process_update is measured.
    scripts = [
        [
            Update.de_json(_update(index * 100 + number, 1000 + index, answer), application.bot)
            for number, answer in enumerate(ANSWERS)
        ]
        for index in range(officials)
    ]
    return await ptb_burst(application, request, scripts, application.process_update)


# -- the figure ---------------------------------------------------------------------------------


def _line(label: str, rate: Rate) -> str:
    return (
        f"{label:<27}{rate.per_second:8.0f} answered messages/s, {rate.seconds:.2f} s; "
        f"failures ('technical error', no case, errors): {rate.failures}"
    )


def _median(rates: list[Rate]) -> Rate:
    """The run with the median rate; a failure in any run is not hidden by the others."""
    middle = sorted(rates, key=lambda rate: rate.per_second)[len(rates) // 2]
    return Rate(middle.messages, max(rate.failures for rate in rates), middle.seconds)


async def _figures(results: Results, officials: int, runs: int) -> None:
    print(f"pipeline: {officials} officials x {len(ANSWERS)} messages at once, no network")
    note = f"{officials} x {len(ANSWERS)} messages at once, median of {runs}"
    peer = _median([await ptb_pipeline(officials) for _ in range(runs)])
    print(_line("ptb ConversationHandler:", peer))
    results.add(SECTION, "ptb ConversationHandler (memory)", peer.per_second, "messages/s", note)
    results.add(SECTION, "ptb: errors or replies not sent", peer.failures, "failures")
    sqlite_runs = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as folder:
            sqlite_runs.append(await lotse_pipeline(None, Path(folder), officials))
    sqlite = _median(sqlite_runs)
    print(_line("lotse on SQLite:", sqlite))
    print(f"ratio lotse/ptb: {sqlite.per_second / peer.per_second:.2f}")
    results.add(SECTION, "lotse core on SQLite", sqlite.per_second, "messages/s", note)
    results.add(SECTION, "lotse SQLite: apologies, no case", sqlite.failures, "failures")
    results.add(SECTION, "ratio lotse/ptb", sqlite.per_second / peer.per_second, "x")
    async with postgres_database() as url:
        if url is None:
            print("lotse on PostgreSQL:        not measured (no server on 127.0.0.1:5432)")
            return
        with tempfile.TemporaryDirectory() as folder:
            postgres = await lotse_pipeline(url, Path(folder), officials)
    print(_line("lotse on PostgreSQL:", postgres))
    print(f"ratio lotse/ptb (PostgreSQL): {postgres.per_second / peer.per_second:.2f}")
    once = f"{officials} x {len(ANSWERS)} messages at once, one run"
    results.add(SECTION, "lotse core on PostgreSQL", postgres.per_second, "messages/s", once)
    results.add(SECTION, "lotse PostgreSQL: apologies, no case", postgres.failures, "failures")
    results.add(SECTION, "ratio lotse/ptb (PostgreSQL)", postgres.per_second / peer.per_second, "x")


def run(results: Results, sizes: Sizes = Sizes()) -> None:
    results.sizes[SECTION] = {
        "officials": sizes.officials,
        "answers": len(ANSWERS),
        "runs": sizes.runs,
    }
    asyncio.run(_figures(results, sizes.officials, sizes.runs))


def pipeline(officials: int = OFFICIALS) -> None:
    run(Results(), Sizes(officials))


if __name__ == "__main__":
    import sys

    pipeline(int(sys.argv[1]) if len(sys.argv) > 1 else OFFICIALS)
