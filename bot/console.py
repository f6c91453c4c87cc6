"""The terminal channel behind `lotse demo`: the official types, the bot answers.

When standard input is not a terminal, each line is one message: a line starting
with `staff> ` is written by the demo counsellor in the staff room, a line
starting with `file> ` sends the named file as an attachment, every other line
is the official's. Output for the official starts with `bot> `, posts in the
staff room with `staff-room> `, so the whole demo can be scripted.
"""

from __future__ import annotations

import asyncio
import mimetypes
import secrets
import sys
from pathlib import Path
from typing import TextIO

from bot.core.orchestrator import Core
from bot.core.text_render import reply_as_text
from bot.core.types import Attachment, Inbound, Reply

OFFICIAL_PREFIX = "bot> "
STAFF_ROOM_PREFIX = "staff-room> "
STAFF_INPUT = "staff> "
FILE_INPUT = "file> "
CHANNEL = "console"
STAFF_NOT_YET = "Counsellor commands arrive with the queue; for now the staff room shows new cases."
DEMO_USER = "demo-official"


class ConsoleChannel:
    """Both sides of the demo: the official's chat and the built-in staff room."""

    name = CHANNEL

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def _write(self, prefix: str, text: str) -> None:
        for line in text.splitlines() or [""]:
            self._out.write(f"{prefix}{line}\n")
        self._out.flush()

    async def send(self, chat: str, reply: Reply) -> None:
        self._write(OFFICIAL_PREFIX, reply_as_text(reply))

    async def post_case(self, reference: str, text: str, urgent: bool) -> None:
        self._write(STAFF_ROOM_PREFIX, text)

    def staff_says(self, text: str) -> None:
        self._write(STAFF_ROOM_PREFIX, text)


class ConsoleSession:
    """Reads the terminal line by line and feeds the core, one message at a time."""

    def __init__(
        self, core: Core, channel: ConsoleChannel, source: TextIO, interactive: bool
    ) -> None:
        self._core = core
        self._channel = channel
        self._source = source
        self._interactive = interactive
        self._sender = core.pseudonym(CHANNEL, DEMO_USER)
        self._run = secrets.token_hex(4)
        self._count = 0

    async def _read(self) -> str | None:
        loop = asyncio.get_running_loop()
        if self._interactive:
            try:
                return await loop.run_in_executor(None, input, "> ")
            except EOFError:
                return None
        line = await loop.run_in_executor(None, self._source.readline)
        return line.rstrip("\n") if line else None

    async def run(self) -> None:
        while (line := await self._read()) is not None:
            await self.feed(line)

    async def feed(self, line: str) -> None:
        if line.startswith(STAFF_INPUT):
            self._channel.staff_says(STAFF_NOT_YET)
            return
        attachments: tuple[Attachment, ...] = ()
        text = line
        if line.startswith(FILE_INPUT):
            attachment = self._attachment(line[len(FILE_INPUT) :].strip())
            if attachment is None:
                return
            attachments, text = (attachment,), ""
        self._count += 1
        await self._core.handle(
            Inbound(
                channel=CHANNEL,
                sender=self._sender,
                chat=DEMO_USER,
                text=text,
                event_id=f"{self._run}:{self._count}",
                attachments=attachments,
            )
        )

    def _attachment(self, name: str) -> Attachment | None:
        path = Path(name).expanduser()
        try:
            data = path.read_bytes()
        except OSError as error:
            print(f"lotse demo: cannot read {path}: {error.strerror}", file=sys.stderr)
            return None
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return Attachment(path.name, media_type, data)
