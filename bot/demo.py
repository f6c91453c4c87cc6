"""`lotse demo`: the intake in this terminal on an embedded SQLite, with a built-in staff room."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from bot.app import App, open_app, settings_from_config
from bot.channels.console import ConsoleChannel
from bot.config import Config
from bot.core.orchestrator import Core
from bot.instance import only_instance
from bot.service import Service
from storage.keyfile import UnlockedKey, public_path, read_public_key, write_key_pair
from storage.keyring import CounsellorEntry, active_counsellors, bootstrap
from storage.sealing import PrivateKey
from storage.signing import SigningKey

DEFAULT_DEMO_DIR = "lotse-demo"
DEMO_KEY = "demo-counsellor.key"
DEMO_COUNSELLOR = "demo"
DEMO_DISPLAY_NAME = "Beraterin Demo"
DEMO_PASSPHRASE = "demo"  # noqa: S105  (said on screen: for trying only)
DEMO_KEY_NOTICE = """\
A demo counsellor key was created: {key}
Its passphrase is "demo". FOR TRYING ONLY: never use this key or this folder for real cases.
Open a submitted case with:
  lotse cases show L-YYYY-NNNN --key {key} --data-dir {data_dir}
"""
BANNER = """\
Lotse demo – the intake as an official sees it, in this terminal.
Data: {data_dir} (encrypted SQLite). Type /hilfe for commands, /sprache for English.
"staff> /warteschlange" or "staff> L-2026-0001 /uebernehmen" is the demo counsellor in the
staff room ("staff> L-… text" writes to the official once claimed); "file> PATH" sends a file.
In a real emergency call 110. Ctrl-D or Ctrl-C ends the demo; run it again to continue where
you were.
"""


def console_core(app: App, channel: ConsoleChannel) -> Core:
    """The core wired to the terminal: the official's chat and the built-in staff room."""
    core = Core(
        app.engine, app.store, staff_room=channel, settings=settings_from_config(app.config)
    )
    core.attach(channel)
    return core


async def demo_counsellor(app: App) -> Path | None:
    """On a demo's first run: a counsellor key with a known passphrase, and the team key.

    Returns the key file when it was created now.
    """
    async with app.store.unit() as unit:
        if await active_counsellors(unit.session):
            return None
    key_file = app.config.storage.data_dir / DEMO_KEY
    own = None  # made now: the demo counsellor signs the team key at once
    if not key_file.exists():
        own = UnlockedKey(DEMO_COUNSELLOR, PrivateKey.generate(), SigningKey.generate())
        write_key_pair(key_file, DEMO_COUNSELLOR, DEMO_PASSPHRASE, own.key, own.signing)
    public = read_public_key(public_path(key_file))  # or the key a half-finished run left
    async with app.store.unit() as unit:
        await bootstrap(
            unit,
            CounsellorEntry(DEMO_COUNSELLOR, DEMO_DISPLAY_NAME),
            public.key,
            signing=public.signing,
            own=own,
        )
    return key_file


async def run_demo(config: Config, source: TextIO = sys.stdin) -> int:
    interactive = source.isatty()
    reconfigure = getattr(source, "reconfigure", None)
    if reconfigure is not None:  # a line that is not valid UTF-8 is read with replacements
        reconfigure(errors="replace")
    async with open_app(config) as app:
        created = await demo_counsellor(app)
        if created is not None:
            notice = DEMO_KEY_NOTICE.format(key=created, data_dir=config.storage.data_dir)
            print(notice, file=sys.stdout if interactive else sys.stderr)
        limit = settings_from_config(config).max_file_bytes
        channel = ConsoleChannel(sys.stdout, source, interactive, max_file_bytes=limit)
        core = console_core(app, channel)
        with only_instance(config.storage.data_dir):
            if interactive:
                print(BANNER.format(data_dir=config.storage.data_dir))
                await channel.feed(core, "/start")
            await Service(core, [channel], stop_when_adapters_end=True).run()
    return 0
