"""`lotse demo` killed hard in the middle of an intake, then started again on the same data.

`LiveDemo` (also used by test_no_plaintext.py) drives the demo line by line and
reads its output with a timeout, so a demo that stops answering fails the test
instead of hanging it.
"""

from __future__ import annotations

import contextlib
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import pytest

from tests.conftest import ROOT, demo_command, run_demo
from tests.test_demo_script import (
    PROGRESS,
    Intake,
    intake_steps,
    ok,
    staff_room,
    summaries,
    summary_entries,
    text_of,
)

pytestmark = pytest.mark.slow

READ_TIMEOUT = 20.0


class LiveDemo:
    """`lotse demo` as a running process: type lines, wait for what the bot says."""

    def __init__(self, data_dir: Path, *extra: str, stderr: Path | None = None) -> None:
        self._stderr = open(stderr or Path("/dev/null"), "w")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            demo_command(data_dir, *extra),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            encoding="utf-8",
            bufsize=1,
            cwd=ROOT,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.output: list[str] = []  # every line the demo printed, prefixes included

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def write(self, *lines: str) -> None:
        assert self.process.stdin is not None
        for line in lines:
            self.process.stdin.write(f"{line}\n")
        self.process.stdin.flush()

    def wait_for(self, pattern: str, timeout: float = READ_TIMEOUT) -> list[str]:
        """The official's lines up to the first one matching `pattern` (prefix removed)."""
        wanted = re.compile(pattern)
        read: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"the demo did not say {pattern!r} within {timeout} s; last lines: {read[-8:]}"
                ) from None
            if line is None:
                raise AssertionError(f"the demo ended before saying {pattern!r}: {read[-8:]}")
            self.output.append(line)
            if line.startswith("bot> "):
                read.append(line.removeprefix("bot> "))
                if wanted.search(read[-1]):
                    return read

    def say(self, line: str, expect: str) -> list[str]:
        self.write(line)
        return self.wait_for(expect)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def finish(self, timeout: float = 30) -> int:
        """End of input (Ctrl-D): the demo stops by itself."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        returncode = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return returncode

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):  # the pipe may already be broken
                    stream.close()
        self._reader.join(timeout=5)
        self._stderr.close()

    def __enter__(self) -> LiveDemo:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def answer_one_by_one(demo: LiveDemo, lines: Sequence[str]) -> list[str]:
    """Type each answer only after the bot has asked the next question; the last question."""
    asked: list[str] = []
    for line in lines:
        asked = demo.say(line, PROGRESS.pattern)
    return asked


# The question the bot is asking when it is killed, and how it shows it.
KILL_POINTS = {
    # the last answer was the free-text description; a choice question is waiting
    "when": ("Frage 6 von etwa 17", "Wann ist es passiert?"),
    # the last answer was a multiple choice; the free-text description is waiting
    "description": ("Frage 5 von etwa 17", "Bitte beschreiben Sie in Ihren eigenen Worten"),
}


def assert_at_most_the_last_message_again(repeated: list[str], asked: list[str]) -> None:
    """A kill right after a message was shown, before its delivery was recorded, sends that one
    message again at the restart (the README's one-message window): never more than that."""
    if repeated:
        start = asked.index(repeated[0])  # it was said before the kill
        assert repeated[: len(asked) - start] == asked[start:], repeated
        assert repeated[0] in ("Frage 5 von etwa 17", "Frage 6 von etwa 17", "Frage 2 von 3"), (
            repeated
        )
        assert len(repeated) < 15, repeated  # one question with its choices, not more


@pytest.mark.parametrize("waiting_at", sorted(KILL_POINTS))
def test_killed_mid_intake_continues_where_it_was(demo_dir: Path, waiting_at: str) -> None:
    description = "Nach der Ratssitzung wurde mein Auto zerkratzt und ein Zettel hinterlassen."
    steps = intake_steps(Intake(description=description))
    stop = next(index for index, (step, _) in enumerate(steps) if step == waiting_at)
    before = [line for _, line in steps[:stop]]
    after = [line for _, line in steps[stop:]]
    progress, prompt = KILL_POINTS[waiting_at]

    with LiveDemo(demo_dir) as demo:
        demo.say(before[0], r"^  3\. Ich möchte schildern, was passiert ist$")  # the lanes
        demo.say(before[1], r"^  2\. Nicht einverstanden$")  # the report lane: privacy notice
        asked = answer_one_by_one(demo, before[2:])
        asked += demo.wait_for(re.escape(prompt))  # the whole reply to the last answer is out
        assert asked[asked.index(progress) :][:3] == [progress, "", asked[-1]]
        demo.kill()
        assert demo.process.returncode == -signal.SIGKILL

    result = run_demo(demo_dir, ["/start", *after])
    said = ok(result)
    back = said.index(
        "Willkommen zurück. Ihre bisherigen Antworten sind gespeichert, wir machen hier weiter:"
    )
    assert_at_most_the_last_message_again(said[:back], asked)
    said = said[back:]
    assert said[1:4] == [progress, "", asked[-1]]
    assert "Sind Sie einverstanden, dass Ihre Antworten so gespeichert werden?" not in said

    (summary,) = summaries(said)
    shown = summary_entries(summary)
    given_before_kill = {
        "Anliegen": "Ich möchte schildern, was passiert ist",
        "Rolle": "Ehrenamtliche/r Bürgermeister/in oder Ortsbürgermeister/in",
        "Bundesland": "Bayern",
        "Jetzt in Sicherheit": "Ja",
        "Art des Vorfalls": "Beleidigung, Bedrohung oder Nötigung",
    }
    if waiting_at == "when":
        given_before_kill["Beschreibung"] = description
    assert shown.items() >= given_before_kill.items()
    assert shown["Beschreibung"] == description
    assert shown["Zeitpunkt"] == "In den letzten 7 Tagen"
    assert re.search(r"Ihr Aktenzeichen: L-\d{4}-0001\b", text_of(said))


def test_killed_in_the_urgent_branch_stays_urgent(demo_dir: Path) -> None:
    with LiveDemo(demo_dir) as demo:
        demo.say("/start", r"^  3\. Ich möchte schildern, was passiert ist$")
        demo.say("1", r"^  2\. Nicht einverstanden$")  # the danger lane: guidance, privacy
        demo.say("1", PROGRESS.pattern)
        asked = demo.say("11", r"^In einem Satz: Was passiert gerade\?$")
        demo.kill()

    result = run_demo(demo_dir, ["/start", "/ueberspringen", "nein"])
    said = ok(result)
    back = next(index for index, line in enumerate(said) if line.startswith("Willkommen zurück."))
    assert_at_most_the_last_message_again(said[:back], asked)
    said = said[back:]
    assert "In einem Satz: Was passiert gerade?" in said[:5]
    assert (
        "Ihre Meldung ist als dringend markiert und steht in unserer Warteschlange ganz vorn."
        in text_of(said)
    )
    assert staff_room(result.stdout)[0].startswith("‼️ DRINGEND – Neuer Fall L-")
