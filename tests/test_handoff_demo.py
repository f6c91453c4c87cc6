"""The handoff in `lotse demo`, as separate processes: what the official and the counsellor see.

The demo's staff room is the same terminal (see bot/channels/console.py): `staff> L-… TEXT`
is the demo counsellor ("Beraterin Demo") writing in a case's thread, `staff(Name)> `
someone who is not on the counsellor list; the official's lines start with `bot> `,
the staff room's with `staff-room> ` (`staff-room> [L-…] ` inside a case's thread).
Each test reads the whole output and checks what each side was told, and in which
order; the acceptance story also checks that nothing relayed or noted reaches the
disk in plain text, and that `lotse cases show` gives the full transcript in order.
"""

from __future__ import annotations

import datetime as dt
import queue
import re
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.conftest import ROOT, demo_command, run_demo
from tests.test_demo_script import Intake, intake_lines, official, ok, text_of
from tests.test_no_plaintext import findings
from tests.test_sealed_cases import DEMO_KEY, DEMO_PASSPHRASE, lotse, sqlite_dump

pytestmark = pytest.mark.slow

# The first case of a fresh data dir; the year is the one the case is created in (UTC).
YEAR = dt.datetime.now(dt.UTC).year
REF = f"L-{YEAR}-0001"
THREAD = f"staff-room> [{REF}] "
ROOM = "staff-room> "
BOT = "bot> "
COUNSELLOR = "Beraterin Demo"

CLAIMED_DE = f"{COUNSELLOR} hat Ihren Fall übernommen und schreibt Ihnen hier."
CLAIMED_STAFF = f"{COUNSELLOR} hat den Fall übernommen."
KEPT_DE = "Danke, Ihre Nachricht ist bei Ihrem Fall gespeichert"


# -- reading the output ---------------------------------------------------------------------------


def at(lines: Sequence[str], needle: str, after: int = -1) -> int:
    """The index of the first line after `after` that contains `needle`."""
    for index in range(after + 1, len(lines)):
        if needle in lines[index]:
            return index
    shown = "\n".join(lines[after + 1 : after + 12])
    raise AssertionError(f"{needle!r} not found after line {after}; next lines:\n{shown}")


class Story:
    """The output read step by step: each step's lines come after everything of the one before."""

    def __init__(self, stdout: str) -> None:
        self.lines = stdout.splitlines()
        self.done = -1

    def step(self, *needles: str) -> list[int]:
        found = [at(self.lines, needle, self.done) for needle in needles]
        self.done = max(found)
        return found

    def line(self, index: int) -> str:
        return self.lines[index]


def thread_of(stdout: str, reference: str = REF) -> list[str]:
    """The posts in one case's thread, without prefix and tag."""
    prefix = f"staff-room> [{reference}] "
    return [line.removeprefix(prefix) for line in stdout.splitlines() if line.startswith(prefix)]


def room_at_large(stdout: str) -> list[str]:
    return [
        line.removeprefix(ROOM)
        for line in stdout.splitlines()
        if line.startswith(ROOM) and not line.startswith(f"{ROOM}[")
    ]


def cases_show(data_dir: Path, reference: str = REF) -> str:
    result = lotse(
        "cases", "show", reference,
        "--key", data_dir / DEMO_KEY, "--data-dir", data_dir,
        passphrase=DEMO_PASSPHRASE,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def section(shown: str, title: str) -> list[str]:
    """The lines of one `## title` section of `cases show`."""
    lines = shown.splitlines()
    start = lines.index(f"## {title}") + 1
    end = next(
        (i for i in range(start, len(lines)) if lines[i].startswith("## ")),
        len(lines),
    )
    return [line for line in lines[start:end] if line]


def audit_rows(data_dir: Path) -> list[tuple[str, str | None, str]]:
    connection = sqlite3.connect(f"file:{data_dir / 'lotse.db'}?mode=ro", uri=True)
    try:
        return list(
            connection.execute("SELECT action, case_reference, actor FROM audit_log ORDER BY id")
        )
    finally:
        connection.close()


# -- running the demo ----------------------------------------------------------------------------


class RunningDemo:
    """`lotse demo` with a whole script on standard input, kept open so the process stays up."""

    def __init__(self, data_dir: Path, lines: Sequence[str], stderr: Path) -> None:
        self._stderr_path = stderr
        self._stderr = stderr.open("w")
        self.process = subprocess.Popen(
            demo_command(data_dir),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            encoding="utf-8",
            bufsize=1,
            cwd=ROOT,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        assert self.process.stdin is not None
        self.process.stdin.write("".join(f"{line}\n" for line in lines))
        self.process.stdin.flush()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def wait_for(self, pattern: str, timeout: float = 30) -> None:
        wanted = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"the demo did not print {pattern!r} within {timeout} s: {self.output[-8:]}"
                ) from None
            assert line is not None, f"the demo ended before {pattern!r}: {self.output[-8:]}"
            self.output.append(line)
            if wanted.search(line):
                return

    def finish(self) -> tuple[int, str, str]:
        """End of input: the demo stops; (exit code, whole stdout, stderr)."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        returncode = self.process.wait(timeout=30)
        self._reader.join(timeout=5)
        while not self._lines.empty():
            line = self._lines.get_nowait()
            if line is not None:
                self.output.append(line)
        self._stderr.close()
        return returncode, "\n".join(self.output) + "\n", self._stderr_path.read_text()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        if not self._stderr.closed:
            self._stderr.close()


@pytest.fixture(scope="module")
def submitted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir in which the demo official (German) has submitted one case, still waiting."""
    data_dir = tmp_path_factory.mktemp("handoff") / "demo-data"
    result = run_demo(data_dir, intake_lines(Intake(description=DESCRIPTION_DE)))
    said = ok(result)
    assert f"Ihr Aktenzeichen: {REF}" in text_of(said)
    assert thread_of(result.stdout)[0].startswith(f"Neuer Fall {REF} · ")
    return data_dir


@pytest.fixture
def case_dir(submitted: Path, tmp_path: Path) -> Path:
    """A copy of `submitted`, for one test to go on with."""
    data_dir = tmp_path / "case"
    shutil.copytree(submitted, data_dir)
    return data_dir


def go_on(data_dir: Path, lines: Sequence[str]) -> str:
    """Run the demo on with `lines`; its whole stdout."""
    result = run_demo(data_dir, list(lines), timeout=60)
    ok(result)
    return result.stdout


# -- 1. the acceptance story, German -------------------------------------------------------------

DESCRIPTION_DE = "Seit dem Ratsbeschluss Drohbriefe im Briefkasten. KANARIE-BESCHREIBUNG-H7Q2"
TO_OFFICIAL = "Guten Tag, ich bin Ihre Beraterin. Wie geht es Ihnen? CANARY-TO-OFFICIAL-K4M9"
FROM_OFFICIAL = "Danke, dass Sie sich melden. Es kam ein neuer Brief. CANARY-FROM-OFFICIAL-P3X8"
NOTE = "wirkt sehr belastet, Rückruf anbieten CANARY-NOTE-W5R1"
REASON = "bin ab morgen im Urlaub CANARY-REASON-Z6T2"
RETURN_DE = "Hallo, ich bin es noch einmal."


def test_acceptance_story_german(demo_dir: Path, tmp_path: Path) -> None:
    lines = [
        *intake_lines(Intake(description=DESCRIPTION_DE)),
        f"staff> {REF} /uebernehmen",
        f"staff> {REF} {TO_OFFICIAL}",
        FROM_OFFICIAL,
        f"staff> {REF} /notiz {NOTE}",
        f"staff> {REF} /freigeben {REASON}",
        f"staff> {REF} /uebernehmen",
        f"staff> {REF} /abschliessen beraten",
        RETURN_DE,
        "1",  # Fall wieder öffnen
        "staff> /warteschlange",
    ]
    canaries = {
        "description": "KANARIE-BESCHREIBUNG-H7Q2",
        "to official": "CANARY-TO-OFFICIAL-K4M9",
        "from official": "CANARY-FROM-OFFICIAL-P3X8",
        "note": "CANARY-NOTE-W5R1",
        "release reason": "CANARY-REASON-Z6T2",
    }

    demo = RunningDemo(demo_dir, lines, tmp_path / "stderr")
    try:
        demo.wait_for(rf"^{re.escape(ROOM)}1\. {REF} ")  # the queue, the last thing said
        # while it still runs: every file of the data dir, the WAL too
        wal = demo_dir / "lotse.db-wal"
        assert wal.exists() and wal.stat().st_size > 0
        assert findings(demo_dir, canaries) == []
        returncode, stdout, stderr = demo.finish()
    finally:
        demo.close()
    assert returncode == 0, stderr
    assert "Traceback" not in stderr
    for what, canary in canaries.items():
        assert canary not in stderr, what
    said = official(stdout)
    story = Story(stdout)

    # the official submits; the staff room gets the case's thread with answers, offers, commands
    story.step(f"{BOT}Danke. Ihre Meldung ist angekommen. Ihr Aktenzeichen: {REF}")
    (opened,) = story.step(f"{THREAD}Neuer Fall {REF}")
    assert story.line(opened).startswith(f"{THREAD}Neuer Fall {REF} · Weg: Schilderung · Bayern · ")
    thread = thread_of(stdout)
    assert thread[0].startswith(f"Neuer Fall {REF} · ")
    assert f"Beschreibung: „{DESCRIPTION_DE}“" in thread
    assert "Bundesland: Bayern" in thread
    assert "Kontaktweg: Hier in diesem Chat" in thread
    offers = [line for line in thread if line.startswith("Passende Angebote: ")]
    assert len(offers) == 1 and "starke Stelle" not in offers[0]  # the counsellors' own
    hint = thread.index(offers[0]) + 2  # after an empty line: the commands
    assert thread[hint].startswith("Im Fall: /uebernehmen · /freigeben GRUND")
    assert "/abschliessen ERGEBNIS (vermittelt, beraten, kein_kontakt, sonstiges)" in thread[hint]

    # the claim: the thread says who has it, the official is told by name
    story.step(f"{THREAD}{CLAIMED_STAFF}", f"{BOT}{CLAIMED_DE}")

    # the counsellor's words reach the official, signed; the official's answer reaches the thread
    (relayed,) = story.step(f"{BOT}{COUNSELLOR}: {TO_OFFICIAL}")
    assert story.line(relayed) == f"{BOT}{COUNSELLOR}: {TO_OFFICIAL}"
    (answered,) = story.step(f"{THREAD}Person: {FROM_OFFICIAL}")
    assert story.line(answered) == f"{THREAD}Person: {FROM_OFFICIAL}"
    assert sum(canaries["to official"] in line for line in said) == 1
    assert not any(canaries["from official"] in line for line in said)
    assert sum(canaries["from official"] in line for line in thread) == 1

    # the note is confirmed in the thread and never goes to the official
    story.step(f"{THREAD}Notiz gespeichert – sie wird nicht weitergeleitet.")
    assert not any(canaries["note"] in line for line in said)
    assert not any(canaries["note"] in line for line in thread)

    # release with a reason: the official learns the case waits again (not the reason)
    story.step(
        f"{THREAD}{COUNSELLOR} hat den Fall zurück in die Warteschlange gegeben.",
        f"{BOT}Ihr Fall wartet wieder auf eine Beraterin oder einen Berater.",
    )
    assert not any(canaries["release reason"] in line for line in said)

    # reclaimed, then closed as "beraten": the official learns how to come back
    story.step(f"{THREAD}{CLAIMED_STAFF}", f"{BOT}{CLAIMED_DE}")
    story.step(
        f"{THREAD}{COUNSELLOR} hat den Fall abgeschlossen: beraten.",
        f"{BOT}Ihr Fall {REF} ist abgeschlossen. Wenn Sie wieder schreiben, können Sie ihn "
        "wieder öffnen oder eine neue Meldung beginnen.",
    )
    assert sum(line.startswith(CLAIMED_DE) for line in said) == 2

    # the official writes again: offered reopen or new, chooses reopen
    (offered, reopen, new) = story.step(
        f"{BOT}Willkommen zurück. Ihr Fall {REF} ist abgeschlossen. Möchten Sie ihn wieder "
        "öffnen oder eine neue Meldung beginnen?",
        f"{BOT}  1. Fall wieder öffnen",
        f"{BOT}  2. Neue Meldung beginnen",
    )
    assert offered < reopen < new
    story.step(f"{BOT}Ihr Fall {REF} ist wieder offen.", f"{THREAD}Fall wieder geöffnet")
    reopened = [line for line in thread if line.startswith("Fall wieder geöffnet")]
    assert len(reopened) == 1 and "wieder in der Warteschlange" in reopened[0]
    assert any(
        line.startswith(f"Ihr Fall {REF} ist wieder offen.") and "Platz 1 der Warteschlange" in line
        for line in said
    )

    # and the queue has it again
    story.step(f"{ROOM}Warteschlange (1):", f"{ROOM}1. {REF} ")
    assert room_at_large(stdout)[-2] == "Warteschlange (1):"
    assert room_at_large(stdout)[-1].startswith(f"1. {REF} – wartet seit ")

    # after the end: every file, and a dump of the database with every binary value decoded
    assert findings(demo_dir, canaries) == []
    dump = sqlite_dump(demo_dir / "lotse.db")
    assert REF in dump.text
    assert dump.findings(canaries) == []

    # the counsellor key opens it all: the intake, then the transcript in the order it happened
    shown = cases_show(demo_dir)
    assert shown.startswith(f"# {REF}\n")
    intake = section(shown, "Intake")
    assert f"- **Beschreibung**: {DESCRIPTION_DE}" in intake
    transcript = section(shown, "Transcript")
    order = ["to official", "from official", "note", "release reason"]
    where = [
        next(i for i, line in enumerate(transcript) if canaries[what] in line) for what in order
    ]
    assert where == sorted(where), transcript
    assert len(set(where)) == 4
    assert f"{COUNSELLOR}): {TO_OFFICIAL}" in transcript[where[0]]
    assert transcript[where[1]].endswith(FROM_OFFICIAL)
    assert transcript[where[2]].endswith(NOTE)
    assert transcript[where[3]].endswith(REASON)
    everything = [shown.index(canaries[what]) for what in ["description", *order]]
    assert everything == sorted(everything)
    # viewing leaves nothing readable behind
    assert findings(demo_dir, canaries) == []


# -- 2. shortened, in English --------------------------------------------------------------------

TO_OFFICIAL_EN = "Good afternoon, I am your counsellor. EN-CANARY-TO-5TQ1"
FROM_OFFICIAL_EN = "Thank you, another letter came today. EN-CANARY-FROM-8JW3"


def test_story_in_english(demo_dir: Path) -> None:
    lines = [
        *intake_lines(Intake(language="en")),
        f"staff> {REF} /claim",
        f"staff> {REF} {TO_OFFICIAL_EN}",
        FROM_OFFICIAL_EN,
        f"staff> {REF} /close advised",
        "Hello, it's me again.",
        "Reopen the case",
    ]
    stdout = go_on(demo_dir, lines)
    said = official(stdout)
    story = Story(stdout)
    switched = story.step(f"{BOT}The language is now English.")[0]

    story.step(f"{BOT}Thank you. Your report has arrived. Your reference: {REF}")
    story.step(f"{THREAD}Neuer Fall {REF}")  # the staff room speaks German
    story.step(
        f"{THREAD}{CLAIMED_STAFF}",
        f"{BOT}{COUNSELLOR} has taken over your case and will write to you here.",
    )
    (relayed,) = story.step(f"{BOT}{COUNSELLOR}: {TO_OFFICIAL_EN}")
    assert story.line(relayed) == f"{BOT}{COUNSELLOR}: {TO_OFFICIAL_EN}"
    (answered,) = story.step(f"{THREAD}Person: {FROM_OFFICIAL_EN}")
    assert story.line(answered) == f"{THREAD}Person: {FROM_OFFICIAL_EN}"
    story.step(
        f"{THREAD}{COUNSELLOR} hat den Fall abgeschlossen: beraten.",
        f"{BOT}Your case {REF} is closed. If you write again, you can reopen it or start a new "
        "report.",
    )
    story.step(
        f"{BOT}Welcome back. Your case {REF} is closed. Would you like to reopen it or start a "
        "new report?",
        f"{BOT}  1. Reopen the case",
        f"{BOT}  2. Start a new report",
    )
    story.step(f"{BOT}Your case {REF} is open again.", f"{THREAD}Fall wieder geöffnet")

    # after switching, the official reads no German (the offers' own names aside)
    after = [line.removeprefix(BOT) for line in story.lines[switched:] if line.startswith(BOT)]
    for german in ("Ihr Fall", "übernommen", "abgeschlossen", "Willkommen", "Warteschlange"):
        assert not any(german in line for line in after), german
    assert not any("EN-CANARY-FROM" in line for line in said)


# -- 3. nothing is relayed before a claim ---------------------------------------------------------

EARLY = "Guten Tag, sind Sie noch erreichbar? CANARY-EARLY-3VD6"
WAITING = (
    "Ist schon jemand da? CANARY-WAIT1-6HN2",
    "Heute kam noch ein Anruf. CANARY-WAIT2-9KE4",
)


def test_before_a_claim_nothing_is_relayed_and_waiting_words_reach_the_thread_at_once(
    case_dir: Path,
) -> None:
    stdout = go_on(
        case_dir,
        [
            f"staff> {REF} {EARLY}",
            WAITING[0],
            WAITING[1],
            "staff> /warteschlange",
            f"staff> {REF} /uebernehmen",
            "staff> /warteschlange",
        ],
    )
    said = official(stdout)
    thread = thread_of(stdout)
    story = Story(stdout)

    # the counsellor's words before a claim: told in the thread, never sent
    story.step(f"{THREAD}Nicht weitergeleitet: Der Fall ist noch nicht übernommen (/uebernehmen).")
    assert not any("CANARY-EARLY" in line for line in stdout.splitlines())

    # each message while waiting: kept, with the current place in the queue – not the whole
    # confirmation again
    first, second = story.step(KEPT_DE)[0], story.step(KEPT_DE)[0]
    for index in (first, second):
        line = story.line(index)
        assert line.startswith(f"{BOT}{KEPT_DE}")
        assert "Sie sind jetzt auf Platz 1." in line
        # out of hours, a short reminder of when counsellors are back and of 110
        assert ("nicht erreichbar" not in line) or ("110" in line)
    kept = [line for line in said if line.startswith(KEPT_DE)]
    assert len(kept) == 2
    assert not any("Aktenzeichen" in line or "Diese Stellen" in line for line in said)
    assert not any("Beraterin Demo" in line for line in said[: said.index(kept[-1]) + 1])

    # in the thread at once, before anyone claims (issue 11, item 7), and once only
    (queued,) = story.step(f"{ROOM}Warteschlange (1):")
    for text in WAITING:
        assert sum(text in line for line in thread) == 1
        posted = story.lines.index(f"{THREAD}Person: {text}")
        assert posted < queued
    claimed = story.step(f"{THREAD}{CLAIMED_STAFF}", f"{BOT}{CLAIMED_DE}")
    assert not any("CANARY-WAIT" in line for line in story.lines[min(claimed) :])
    assert "Die Warteschlange ist leer." in room_at_large(stdout)

    # and they are kept with the case; the unrelayed counsellor words are not
    transcript = section(cases_show(case_dir), "Transcript")
    assert len(transcript) == 2, transcript
    assert all(line.endswith(text) for line, text in zip(transcript, WAITING, strict=True))
    assert not any("CANARY-EARLY" in line for line in transcript)


def test_waiting_words_reach_the_thread_before_the_claim(case_dir: Path) -> None:
    stdout = go_on(case_dir, [WAITING[0], f"staff> {REF} /uebernehmen"])  # nothing after it
    thread = thread_of(stdout)
    assert thread.index(f"Person: {WAITING[0]}") < next(
        index for index, line in enumerate(thread) if line.startswith(CLAIMED_STAFF)
    )


# -- 4. refusals ---------------------------------------------------------------------------------

MALLORY_WORDS = "Ich bin auch Beraterin, schicken Sie mir Ihre Adresse. MALLORY-CANARY-2ZP7"


def test_refusals_in_the_staff_room(case_dir: Path) -> None:
    stdout = go_on(
        case_dir,
        [
            f"staff(Mallory)> {REF} /uebernehmen",
            f"staff> {REF} /abschliessen beraten",
            "staff> /uebernehmen",
            "staff> /gibtsnicht",
            f"staff> {REF} /uebernehmen",
            f"staff(Mallory)> {REF} {MALLORY_WORDS}",
            f"staff> {REF} /abschliessen",
            f"staff> {REF} /uebergeben Niemand",
            f"staff> {REF} /abschliessen beraten",
            f"staff> {REF} /uebernehmen",
        ],
    )
    said = official(stdout)
    not_allowed = "Sie stehen nicht auf der Liste der Beratenden; das wurde protokolliert."
    story = Story(stdout)
    story.step(f"{THREAD}{not_allowed}")
    story.step(f"{THREAD}{REF} ist noch nicht übernommen; erst /uebernehmen.")
    story.step(f"{ROOM}/uebernehmen gilt in einem Fall: schreiben Sie es im Thread des Falls.")
    story.step(f"{ROOM}Den Befehl /gibtsnicht kenne ich nicht (/hilfe zeigt die Befehle).")
    story.step(f"{THREAD}{CLAIMED_STAFF}", f"{BOT}{CLAIMED_DE}")
    story.step(f"{THREAD}{not_allowed}")
    story.step(
        f"{THREAD}Bitte ein Ergebnis angeben: vermittelt, beraten, kein_kontakt oder sonstiges."
    )
    story.step(
        f"{THREAD}Keine aktive Beraterin und kein aktiver Berater heißt „Niemand“ "
        "(siehe lotse counsellor list)."
    )
    story.step(f"{THREAD}{COUNSELLOR} hat den Fall abgeschlossen: beraten.")
    story.step(f"{THREAD}{REF} ist abgeschlossen; zum Übernehmen erst /wiedereroeffnen.")

    # Mallory got nothing: no claim, no words to the official, not named anywhere
    assert sum(line.startswith(CLAIMED_DE) for line in said) == 1
    assert not any("MALLORY-CANARY" in line for line in stdout.splitlines())
    assert "mallory" not in stdout.casefold()
    assert "Den Befehl /gibtsnicht" not in text_of(said)  # staff answers stay in the staff room

    # ... and the audit log recorded both refusals, without the name Mallory gave
    verified = lotse("audit", "verify", "--data-dir", case_dir)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    refused = [row for row in audit_rows(case_dir) if row[0] == "command refused"]
    assert len(refused) == 2, audit_rows(case_dir)
    for _, reference, actor in refused:
        assert reference == REF
        assert "mallory" not in actor.casefold()
        assert actor != "demo"


def test_a_note_without_text_asks_for_the_text(case_dir: Path) -> None:
    stdout = go_on(case_dir, [f"staff> {REF} /uebernehmen", f"staff> {REF} /notiz"])
    answer = thread_of(stdout)[-1]
    assert "/notiz TEXT" in answer
    assert "kenne ich nicht" not in answer
    assert "zeigt die Befehle" not in answer


# -- 5. files after the claim --------------------------------------------------------------------

OFFICIAL_FILE = "beweisfoto-rathaus.txt"
OFFICIAL_FILE_CONTENT = "KANARIE-DATEI-PERSON-4RB8: Foto vom beschmierten Rathaustor"
STAFF_FILE = "merkblatt-adressschutz.pdf"
STAFF_FILE_CONTENT = b"%PDF-1.4 KANARIE-DATEI-BERATUNG-7YC5 Auskunftssperre beantragen"


@pytest.fixture(scope="module")
def with_files(submitted: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """The case claimed, a file from each side; (data dir, demo stdout, cases show)."""
    folder = tmp_path_factory.mktemp("files")
    data_dir = folder / "case"
    shutil.copytree(submitted, data_dir)
    (folder / OFFICIAL_FILE).write_text(OFFICIAL_FILE_CONTENT, encoding="utf-8")
    (folder / STAFF_FILE).write_bytes(STAFF_FILE_CONTENT)
    stdout = go_on(
        data_dir,
        [
            f"staff> {REF} /uebernehmen",
            f"file> {folder / OFFICIAL_FILE}",
            f"staff> {REF} file> {folder / STAFF_FILE}",
        ],
    )
    return data_dir, stdout, cases_show(data_dir)


def test_files_after_the_claim_go_both_ways(with_files: tuple[Path, str, str]) -> None:
    data_dir, stdout, shown = with_files
    size = len(OFFICIAL_FILE_CONTENT.encode())
    story = Story(stdout)
    story.step(f"{THREAD}{CLAIMED_STAFF}", f"{BOT}{CLAIMED_DE}")
    (announced,) = story.step(f"{THREAD}Person schickt eine Datei: ")
    assert (
        story.line(announced)
        == f"{THREAD}Person schickt eine Datei: {OFFICIAL_FILE} ({size} Bytes)"
    )
    sent = story.step(f"{BOT}{COUNSELLOR}: {STAFF_FILE}", f"{BOT}[{STAFF_FILE}, ")
    assert story.line(sent[1]) == f"{BOT}[{STAFF_FILE}, {len(STAFF_FILE_CONTENT)} bytes]"
    assert not any(OFFICIAL_FILE in line for line in official(stdout))

    attachments = section(shown, "Attachments")
    assert f"- {OFFICIAL_FILE} (text/plain, {size} bytes)" in attachments
    assert f"- {STAFF_FILE} (application/pdf, {len(STAFF_FILE_CONTENT)} bytes)" in attachments
    transcript = section(shown, "Transcript")
    assert [("(official)" in line, COUNSELLOR in line) for line in transcript] == [
        (True, False),
        (False, True),
    ]
    # sealed like everything else
    secret = {
        "official's file": "KANARIE-DATEI-PERSON-4RB8",
        "counsellor's file": "KANARIE-DATEI-BERATUNG-7YC5",
        "official's file name": OFFICIAL_FILE,
        "counsellor's file name": STAFF_FILE,
    }
    assert findings(data_dir, secret) == []


def test_the_transcript_names_each_file_where_it_was_sent(
    with_files: tuple[Path, str, str],
) -> None:
    _, _, shown = with_files
    transcript = section(shown, "Transcript")
    assert OFFICIAL_FILE in transcript[0]
    assert STAFF_FILE in transcript[1]
