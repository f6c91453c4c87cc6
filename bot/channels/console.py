"""The terminal channel behind `lotse demo`: the official types, the bot answers.

When standard input is not a terminal, each line is one message: a line starting
with `staff> ` is written by the demo counsellor in the staff room (`staff> L-2026-0001
/uebernehmen` in that case's thread, `staff> /warteschlange` in the room at large;
`staff(Name)> ` writes as someone else), a line starting with `file>` sends the
named regular file as an attachment (read up to the configured limit and one byte,
never more), every other line is the official's. Output for the
official starts with `bot> `, posts in the staff room with `staff-room> `
(`staff-room> [L-2026-0001] …` inside a case's thread), so the whole demo can be
scripted. After each line the channel waits until what it caused has been
delivered, as a person waits for the answer, so a script's output comes in order.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import re
import secrets
import stat
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from bot.channels.text import reply_as_text
from bot.core.types import Attachment, Inbound, InboundSink, Reply, StaffInbound, StaffMember

OFFICIAL_PREFIX = "bot> "
STAFF_ROOM_PREFIX = "staff-room> "
STAFF_INPUT = re.compile(r"^staff(?:\((?P<author>[^)]*)\))?> ?(?P<text>.*)$", re.DOTALL)
THREAD = re.compile(r"^(?P<reference>L-\d{4}-\d{4,})\b\s*(?P<text>.*)$", re.DOTALL | re.IGNORECASE)
FILE_INPUT = "file>"  # then the path, after an optional space
CHANNEL = "console"
DEMO_USER = "demo-official"


class ConsoleChannel:
    """Both sides of the demo: the official's chat and the built-in staff room.

    The staff room is this terminal: always "encrypted", with only the demo
    counsellor in it, so its check passes.
    """

    name = CHANNEL
    end_to_end_encrypted = True

    def __init__(
        self,
        out: TextIO,
        source: TextIO | None = None,
        interactive: bool = False,
        counsellor: str = "demo",
        max_file_bytes: int = 20 * 1024 * 1024,
    ) -> None:
        self._out = out
        self._source = source
        self._interactive = interactive
        self._counsellor = counsellor  # who `staff> ` lines are written by
        self._run = secrets.token_hex(4)
        self._count = 0
        self._max_file_bytes = max_file_bytes

    # -- sending ----------------------------------------------------------------------------

    def _write(self, prefix: str, text: str) -> None:
        for line in text.splitlines() or [""]:
            self._out.write(f"{prefix}{line}\n")
        self._out.flush()

    async def send(self, chat: str, reply: Reply) -> None:
        text = reply_as_text(reply)
        for file in reply.files:
            text += f"\n[{file.name}, {len(file.data)} bytes]"
        self._write(OFFICIAL_PREFIX, text)

    async def check(self) -> list[str]:
        return []

    async def open_thread(self, reference: str, text: str, urgent: bool) -> str:
        self._write(f"{STAFF_ROOM_PREFIX}[{reference}] ", text)
        return reference

    async def post(self, thread: str | None, text: str) -> None:
        self._write(f"{STAFF_ROOM_PREFIX}[{thread}] " if thread else STAFF_ROOM_PREFIX, text)

    def is_author(self, member: StaffMember, author: str) -> bool:
        """In the terminal a counsellor writes under their name or display name."""
        return author.casefold() in (member.name.casefold(), member.display_name.casefold())

    def last_reachable(self) -> float:
        """The terminal is always there (the health check's optional hook)."""
        return time.monotonic()

    def mention(self, member: StaffMember) -> str:
        return f"@{member.display_name}"

    # -- receiving ----------------------------------------------------------------------------

    async def receive(self, sink: InboundSink) -> None:
        """Read the terminal line by line until it ends; each line is one message."""
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        answered = threading.Event()  # the next prompt waits until the last line is answered
        answered.set()

        def read() -> None:  # a daemon thread: a pending read never keeps the process alive
            while answered.wait():
                answered.clear()
                try:
                    line = input("> ") if self._interactive else self._readline()
                except (EOFError, OSError, ValueError):  # ended, closed, or not text at all
                    line = None
                loop.call_soon_threadsafe(lines.put_nowait, line)
                if line is None:
                    return

        threading.Thread(target=read, name="console-input", daemon=True).start()
        while (line := await lines.get()) is not None:
            await self.feed(sink, line)
            answered.set()

    def _readline(self) -> str | None:
        source = self._source or sys.stdin
        line = source.readline()
        return line.rstrip("\n") if line else None

    async def feed(self, sink: InboundSink, line: str) -> None:
        """One line typed into the demo, then what it caused, delivered."""
        self._count += 1
        event_id = f"{self._run}:{self._count}"
        staff = STAFF_INPUT.match(line)
        if staff is not None:
            author = self._counsellor if staff["author"] is None else staff["author"]
            await self._staff(sink, author, staff["text"], event_id)  # "staff()>": nobody
        else:
            message = self._message(line)
            if message is not None:
                text, attachments = message
                await sink.handle(
                    Inbound(
                        channel=CHANNEL,
                        user=DEMO_USER,
                        chat=DEMO_USER,
                        text=text,
                        event_id=event_id,
                        attachments=attachments,
                    )
                )
        await sink.settle()

    async def _staff(self, sink: InboundSink, author: str, text: str, event_id: str) -> None:
        thread = None
        in_case = THREAD.match(text.strip())
        if in_case is not None:
            thread, text = in_case["reference"].upper(), in_case["text"]
        message = self._message(text)
        if message is None:
            return
        text, attachments = message
        await sink.handle_staff(
            StaffInbound(
                channel=CHANNEL,
                author=author,
                thread=thread,
                text=text,
                event_id=event_id,
                attachments=attachments,
            )
        )

    def _message(self, line: str) -> tuple[str, tuple[Attachment, ...]] | None:
        """A line's text, or the file a `file> PATH` line sends (None: it cannot be read)."""
        if not line.startswith(FILE_INPUT):
            return line, ()
        attachment = self._attachment(line[len(FILE_INPUT) :].strip())
        return None if attachment is None else ("", (attachment,))

    def _attachment(self, name: str) -> Attachment | None:
        """The file's bytes, never more than the limit and one byte (the core refuses those).

        Only regular files: a FIFO would hang the demo, /dev/zero would never end, so they
        are opened without blocking and refused with a message before anything is read.
        """
        path = Path(name).expanduser()
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except (OSError, ValueError) as error:  # ValueError: a NUL in the name
            reason = error.strerror if isinstance(error, OSError) else "not a file name"
            self._refuse(path, reason or "cannot be opened")
            return None
        try:
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):
                self._refuse(path, "not a regular file (only files can be sent)")
                return None
            data = _read_at_most(descriptor, self._max_file_bytes + 1)
        except OSError as error:
            self._refuse(path, error.strerror or "cannot be read")
            return None
        finally:
            os.close(descriptor)
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return Attachment(path.name, media_type, data)

    @staticmethod
    def _refuse(path: Path, reason: str) -> None:
        print(f"lotse demo: cannot send {str(path)!r}: {reason}", file=sys.stderr)


def _read_at_most(descriptor: int, limit: int) -> bytes:
    """Up to `limit` bytes: one read for a regular file, more only if the system reads short."""
    first = os.read(descriptor, limit)
    chunks = [first]
    left = limit - len(first)
    while left > 0 and chunks[-1]:
        chunks.append(os.read(descriptor, left))
        left -= len(chunks[-1])
    return first if len(chunks) == 1 or not chunks[1] else b"".join(chunks)
