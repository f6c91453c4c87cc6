"""Issue 11, acceptance: a fuzz test (hypothesis) of the whole demo input path.

The demo's terminal channel and core, in-process on an embedded SQLite with a submitted
and claimed case: official and staff lines made of arbitrary bytes (decoded as the demo
decodes standard input), control and bidirectional characters, every kind of line break,
huge and empty lines, and `file>` targets of every kind (/dev/zero, a FIFO, a folder, a
missing file, a 200 MB sparse file, a small one). Whatever comes in:

- nothing fails: no step ends in the generic "technical error", nothing is logged as failed;
- memory stays bounded: the traced peak stays under 200 MB for each example;
- no line of anyone's words passes for a line of the bot or for structure: in the terminal
  output, in `cases show` and in the Markdown export, no line begins with a forged marker
  and no control or bidirectional character comes out.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import logging
import os
import tracemalloc
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot import casebook
from bot.app import demo_config, open_app
from bot.channels.console import ConsoleChannel
from bot.demo import DEMO_KEY, DEMO_PASSPHRASE, console_core, demo_counsellor
from storage.casefile import open_case
from storage.keyfile import unlock

pytestmark = pytest.mark.slow

REF = f"L-{dt.datetime.now(dt.UTC).year}-0001"
SETUP = ["/start", "1", "1", "5", "/ueberspringen", "ja", f"staff> {REF} /uebernehmen"]
MARK = "FORGED"  # what the fuzzer tries to bring to the start of a line
FORGERIES = [
    f"{MARK} Beraterin Demo hat den Fall abgeschlossen: beraten.",
    f"{MARK} Akute Gefahr: Nein",
    f"## {MARK}",
    f"- 2026-01-01 10:00 · reply (Beraterin Demo): {MARK}",
]
BREAKS = ["\r", "\r\n", "\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1e"]
NASTY = ["\x1b[2J", "\x07", "\x00", "\u202e", "\u2066", "\u200f", "\ufeff", "\x7f", "\t"]
MEMORY_LIMIT = 200 * 1024 * 1024
TECHNICAL_ERROR = ("technischer fehler", "technical error")


def _forged_line() -> st.SearchStrategy[str]:
    pieces = st.lists(
        st.one_of(
            st.sampled_from(FORGERIES),
            st.sampled_from(BREAKS),
            st.sampled_from(NASTY),
            st.text(max_size=20),
        ),
        min_size=1,
        max_size=8,
    )
    return pieces.map("".join)


def _from_bytes() -> st.SearchStrategy[str]:
    # standard input as the demo reads it: UTF-8 with replacement, split at line ends
    return st.binary(max_size=200).map(
        lambda data: data.decode("utf-8", "replace").replace("\r", "\n").split("\n")[0]
    )


def _lines(targets: list[str]) -> st.SearchStrategy[list[str]]:
    words = st.one_of(
        _forged_line(),
        _from_bytes(),
        st.text(max_size=50),
        st.sampled_from(["", " ", "x" * 200_000, "1," * 3000, "ja", "absenden", "/hilfe"]),
    )
    line = st.one_of(
        words,
        words.map(lambda text: f"staff> {REF} {text}"),
        words.map(lambda text: f"staff> {text}"),
        words.map(lambda text: f"staff(Mallory)> {REF} {text}"),
        st.sampled_from(targets).map(lambda target: f"file> {target}"),
        st.sampled_from(targets).map(lambda target: f"staff> {REF} file> {target}"),
    )
    return st.lists(line, min_size=1, max_size=6)


def _bad_characters(text: str) -> list[str]:
    return [
        char
        for char in text
        if char not in "\n\t\u200d" and unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp")
    ]


def _forged_lines(text: str) -> list[str]:
    """Lines that begin with the marker once the terminal's prefix is taken off."""
    found = []
    for line in text.splitlines():
        body = line
        for prefix in ("bot> ", "staff-room> "):
            body = body.removeprefix(prefix)
        if body.startswith("["):  # a thread tag: "[L-2026-0001] "
            body = body.partition("] ")[2]
        if body.lstrip("#- ").startswith(MARK) or body.startswith(("## ", "- 2026-01-01")):
            found.append(line)
    return found


class _Failures(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.getMessage())


def _targets(folder: Path) -> list[str]:
    fifo = folder / "fifo"
    os.mkfifo(fifo)
    (folder / "folder").mkdir()
    big = folder / "big.bin"
    with big.open("wb") as file:
        file.truncate(200 * 1024 * 1024)
    small = folder / f"{MARK}\u2028## name.txt"
    small.write_text("Beleg", encoding="utf-8")
    return ["/dev/zero", str(fifo), str(folder / "folder"), str(folder / "nothing"), str(big),
            str(small), "", "~", "\x00"]  # fmt: skip


def test_fuzz_the_demo_input_path(tmp_path: Path) -> None:
    targets = _targets(tmp_path)
    failures = _Failures()
    logging.getLogger().addHandler(failures)
    loop = asyncio.new_event_loop()
    stack = contextlib.AsyncExitStack()
    out = io.StringIO()
    try:
        app = loop.run_until_complete(
            stack.enter_async_context(open_app(demo_config(tmp_path / "demo")))
        )
        loop.run_until_complete(demo_counsellor(app))
        channel = ConsoleChannel(out, counsellor="demo")
        core = console_core(app, channel)

        async def feed(lines: list[str]) -> None:
            for line in lines:
                await channel.feed(core, line)

        loop.run_until_complete(feed(SETUP))
        assert f"[{REF}] Beraterin Demo hat den Fall übernommen" in out.getvalue()
        tracemalloc.start()

        @settings(
            max_examples=100,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            database=None,
        )
        @given(_lines(targets))
        def one_session(lines: list[str]) -> None:
            out.seek(0)
            out.truncate()
            tracemalloc.reset_peak()
            loop.run_until_complete(feed(lines))
            _, peak = tracemalloc.get_traced_memory()
            assert peak < MEMORY_LIMIT
            shown = out.getvalue()
            assert not any(error in shown.casefold() for error in TECHNICAL_ERROR), shown[-500:]
            assert failures.records == []
            assert _bad_characters(shown) == []
            assert _forged_lines(shown) == [], lines

        one_session()
        tracemalloc.stop()

        # Every case written meanwhile, as a counsellor reads it and as exported.
        unlocked = unlock(tmp_path / "demo" / DEMO_KEY, DEMO_PASSPHRASE)

        async def renderings() -> list[str]:
            texts = []
            for case in await app.store.cases():
                async with app.store.unit() as unit:
                    opened, _ = await open_case(unit, unlocked, case.reference)
                texts.append(casebook.as_text(app.engine, opened))
                exported = casebook.export(app.engine, opened, tmp_path / "export" / case.reference)
                texts.append((exported / "case.md").read_text(encoding="utf-8"))
            return texts

        rendered = loop.run_until_complete(renderings())
        assert rendered
        for text in rendered:
            assert _bad_characters(text) == []
            lines = text.splitlines()
            assert lines.count("## Transcript") <= 1 and lines.count("## Intake") == 1
            # an attachment's name may begin a list item; no word begins a line of its own
            forged = (MARK, f"# {MARK}", f"## {MARK}", "- 2026-01-01")
            assert [line for line in lines if line.startswith(forged)] == []
    finally:
        loop.run_until_complete(stack.aclose())
        loop.close()
        logging.getLogger().removeHandler(failures)
