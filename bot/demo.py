"""`lotse demo`: the intake in this terminal on an embedded SQLite, with a built-in staff room."""

from __future__ import annotations

import sys
from typing import TextIO

from bot.app import App, open_app
from bot.config import Config
from bot.console import ConsoleChannel, ConsoleSession
from bot.core.orchestrator import Core

BANNER = """\
Lotse demo – the intake as an official sees it, in this terminal.
Data: {data_dir} (encrypted SQLite). Type /hilfe for commands, /sprache for English.
Lines starting with "staff> " are written by the demo counsellor; "file> PATH" sends a file.
In a real emergency call 110. Ctrl-D ends the demo; run it again to continue where you were.
"""


def console_session(app: App, out: TextIO, source: TextIO, interactive: bool) -> ConsoleSession:
    """The core wired to the terminal: the official's chat and the built-in staff room."""
    channel = ConsoleChannel(out)
    core = Core(
        app.engine,
        app.store,
        staff_room=channel,
        counselling_hours=app.config.counselling.hours,
        staff_language=app.config.staff.language,
    )
    core.attach(channel)
    return ConsoleSession(core, channel, source, interactive)


async def run_demo(config: Config) -> int:
    interactive = sys.stdin.isatty()
    async with open_app(config) as app:
        session = console_session(app, sys.stdout, sys.stdin, interactive)
        if interactive:
            print(BANNER.format(data_dir=config.storage.data_dir))
            await session.feed("/start")
        await session.run()
    return 0
