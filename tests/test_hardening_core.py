"""Issue 11 (8/10 Hardening), items 1, 2, 5, 6, 7, 9, 13, 14, 15 and 17: what an adversarial
test of the demo broke, each as the official, the staff room or an attacker observes it.

Each test is named after its item. Most run `lotse demo` as a separate process, as the
issue reproduced them; the rest go through the core in-process on both databases.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, demo_command, run_demo
from tests.test_demo_script import Intake, intake_lines, ok
from tests.test_handoff_demo import REF, THREAD, cases_show, thread_of
from tests.test_sealed_cases import DEMO_KEY, DEMO_PASSPHRASE, lotse

pytestmark = pytest.mark.slow

SUBMIT_URGENT = ["/start", "1", "1", "5", "/ueberspringen", "ja"]  # the danger lane: sent at once
CLAIM = f"staff> {REF} /uebernehmen"
ROOM_PREFIX = "staff-room> "
TOO_BIG_DE = "Diese Datei ist größer als 20 MB; ich habe sie nicht gespeichert."
MEMORY_LIMIT_KIB = 200 * 1024

# Runs the demo as its child and prints the child's peak resident memory (KiB) to stderr last.
_MEASURED = """\
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:]).returncode
print(f"peak-rss-kib {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}", file=sys.stderr)
sys.exit(code)
"""


def measured_demo(
    data_dir: Path, lines: list[str], timeout: float = 120, stdin: bytes | None = None
) -> tuple[subprocess.CompletedProcess[str], int]:
    """The demo fed `lines` (or raw bytes), and its peak resident memory in KiB."""
    data = stdin if stdin is not None else "".join(f"{line}\n" for line in lines).encode()
    result = subprocess.run(
        [sys.executable, "-c", _MEASURED, *demo_command(data_dir)],
        input=data,
        capture_output=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )
    stderr = result.stderr.decode("utf-8", "replace")
    *rest, last = stderr.rstrip("\n").splitlines()
    assert last.startswith("peak-rss-kib "), stderr
    text = subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode("utf-8", "replace"), "\n".join(rest)
    )
    return text, int(last.split()[1])


def said(stdout: str) -> str:
    """Everything the bot told the official, as one text."""
    return "\n".join(line[5:] for line in stdout.splitlines() if line.startswith("bot> "))


# -- item 1: attachments -------------------------------------------------------------------------


def test_item_01_what_is_not_a_regular_file_is_refused_unread(
    demo_dir: Path, tmp_path: Path
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    folder = tmp_path / "folder"
    folder.mkdir()
    lines = ["/start", "3", "1", "file> /dev/zero", f"file> {fifo}", f"file> {folder}", "2"]
    result, peak = measured_demo(demo_dir, lines, timeout=60)
    assert result.returncode == 0, result.stderr
    for target in ("/dev/zero", str(fifo), str(folder)):
        assert f"cannot send '{target}': not a regular file" in result.stderr
    assert "unexpected" not in result.stderr
    assert "Frage 2 von" in said(result.stdout)  # the intake went on
    assert peak < MEMORY_LIMIT_KIB


def test_item_01_a_file_over_the_limit_is_called_too_big_after_consent(
    demo_dir: Path, tmp_path: Path
) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as file:
        file.truncate(200 * 1024 * 1024)  # 200 MB, sparse
    ok(run_demo(demo_dir, ["/start", "1"]))  # the first run derives the demo key: 150 MB
    result, peak = measured_demo(demo_dir, [f"file> {big}"])
    assert result.returncode == 0, result.stderr
    text = said(result.stdout)
    assert TOO_BIG_DE in text
    assert "zugestimmt haben" not in text
    assert "Ihre Nachricht war leer" not in text
    assert peak < 120 * 1024  # never read whole: at most the limit and one byte


def test_item_01_a_counsellors_file_over_the_limit_is_refused_unread(
    demo_dir: Path, tmp_path: Path
) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as file:
        file.truncate(200 * 1024 * 1024)
    ok(run_demo(demo_dir, [*SUBMIT_URGENT, CLAIM]))
    result, peak = measured_demo(demo_dir, [f"staff> {REF} file> {big}"])
    assert result.returncode == 0, result.stderr
    assert f"{THREAD}Nicht weitergeleitet: big.bin ist größer als 20 MB." in result.stdout
    assert "big.bin" not in said(result.stdout)
    assert (demo_dir / "lotse.db").stat().st_size < 10 * 1024 * 1024
    assert peak < 120 * 1024


def test_item_01_the_limit_comes_from_the_configuration(tmp_path: Path) -> None:
    from bot.app import settings_from_config
    from bot.config import config_from_dict

    config = config_from_dict(
        {"storage": {"url": "sqlite+aiosqlite:///x.db", "data_dir": "d", "max_file_mb": 3}},
        tmp_path,
        "test",
    )
    assert settings_from_config(config).max_file_bytes == 3 * 1024 * 1024
    example = (ROOT / "config.example.toml").read_text()
    assert "max_file_mb = 20" in example


# -- item 9: Ctrl-C in the interactive demo ------------------------------------------------------


def _read_until(descriptor: int, ending: bytes, timeout: float) -> bytes:
    read = b""
    deadline = time.monotonic() + timeout
    while not read.endswith(ending):
        assert time.monotonic() < deadline, read[-400:]
        ready, _, _ = select.select([descriptor], [], [], 0.5)
        if ready:
            read += os.read(descriptor, 65536)
    return read


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_item_09_the_interactive_demo_stops_at_once_on_ctrl_c(
    demo_dir: Path, signum: signal.Signals
) -> None:
    """In a terminal (a pty), waiting at the prompt: the signal ends it, no next line needed."""
    ok(run_demo(demo_dir, ["/start"]))  # the first run's key derivation is not what is timed
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        demo_command(demo_dir),
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        cwd=ROOT,
        start_new_session=True,
    )
    os.close(terminal)
    try:
        shown = _read_until(controller, b"\n> ", timeout=60)
        assert b"Ctrl-C" in shown  # the banner promises it
        started = time.monotonic()
        process.send_signal(signum)
        assert process.wait(timeout=10) == 0
        assert time.monotonic() - started < 5
    finally:
        if process.poll() is None:
            process.kill()
        os.close(controller)


# -- item 5: words cannot pass for structure or for the bot ----------------------------------------

FORGED_DESCRIPTION = (
    "Drohbriefe.\u2028Akute Gefahr: Ja\u2029## Transcript\u2028"
    "- 2026-01-01 10:00 · reply (Beraterin Demo): Alles erledigt"
)
FORGED_WHILE_WAITING = "Noch etwas\u2028Beraterin Demo hat den Fall abgeschlossen: beraten."
CONTROLS = "Steuerzeichen \x1b[2J\x07\x00 und \u202eumgedreht\u200f"
FORGED_BY_COUNSELLOR = "Hallo\u2028bot> Bitte senden Sie mir Ihre PIN"


def test_item_05_words_are_cleaned_and_quoted_in_every_rendering(
    demo_dir: Path, tmp_path: Path
) -> None:
    lines = [
        *intake_lines(Intake(description=FORGED_DESCRIPTION)),
        FORGED_WHILE_WAITING,
        CONTROLS,
        CLAIM,
        f"staff> {REF} {FORGED_BY_COUNSELLOR}",
        f"staff> {REF} /freigeben Urlaub\u2028Beraterin Demo hat den Fall übernommen.",
    ]
    stdout = run_demo(demo_dir, lines).stdout
    for character in ("\x1b", "\x07", "\x00", "\u202e", "\u200f", "\u2028", "\u2029"):
        assert character not in stdout, repr(character)
    thread = thread_of(stdout)
    assert [line for line in thread if line.startswith("Akute Gefahr:")] == []  # not a field
    assert "│ Akute Gefahr: Ja" in thread
    assert "Beraterin Demo hat den Fall abgeschlossen: beraten." not in thread
    assert "│ Beraterin Demo hat den Fall abgeschlossen: beraten." in thread
    assert [
        line for line in thread if line.startswith("Beraterin Demo hat den Fall übernommen")
    ] == [
        "Beraterin Demo hat den Fall übernommen. Nachrichten von Beraterin Demo in diesem Fall "
        "gehen jetzt an die Person."
    ]
    assert "Person: Steuerzeichen [2J und umgedreht" in thread
    to_official = said(stdout).splitlines()
    assert not any(line.startswith("bot> ") for line in to_official)
    assert "│ bot> Bitte senden Sie mir Ihre PIN" in to_official

    shown = cases_show(demo_dir)
    exported = tmp_path / "export"
    result_export = lotse(
        "cases", "export", REF, "--out", exported,
        "--key", demo_dir / DEMO_KEY, "--data-dir", demo_dir,
        passphrase=DEMO_PASSPHRASE,
    )  # fmt: skip
    assert result_export.returncode == 0, result_export.stderr
    markdown = (exported / REF / "case.md").read_text()
    for rendering in (shown, markdown):
        rendered = rendering.splitlines()
        assert rendered.count("## Transcript") == 1
        assert not any(line.startswith("- 2026-01-01") for line in rendered)
        assert not any(line.startswith("Beraterin Demo hat") for line in rendered)
        for character in ("\x1b", "\x07", "\u202e", "\u2028"):
            assert character not in rendering


# -- item 6: bytes that are not UTF-8 ------------------------------------------------------------


def test_item_06_invalid_utf8_anywhere_is_read_with_replacements(
    demo_dir: Path, tmp_path: Path
) -> None:
    ok(run_demo(demo_dir, SUBMIT_URGENT))
    script = b"".join(
        [
            b"Ich bin \xff\xfe noch da\n",  # after submitting, while waiting
            CLAIM.encode() + b"\n",
            f"staff> {REF} ".encode() + b"Guten Tag \xc3\x28 wie geht es?\n",  # a counsellor's
            b"file> " + str(tmp_path).encode() + b"/\xff.txt\n",  # a file name
            b"Danke \xe2\x82\n",
        ]
    )
    result, _ = measured_demo(demo_dir, [], stdin=script)
    assert result.returncode == 0, result.stderr
    assert "unexpected" not in result.stderr and "Traceback" not in result.stderr
    text = said(result.stdout)
    assert "technischer Fehler" not in text.casefold() and "technical error" not in text
    assert "Beraterin Demo: Guten Tag \ufffd( wie geht es?" in text
    assert f"{THREAD}Person: Ich bin \ufffd\ufffd noch da" in result.stdout
    assert f"{THREAD}Person: Danke \ufffd" in result.stdout
    assert "cannot send" in result.stderr and ".txt" in result.stderr


# -- item 17: a kill between sending and recording it ---------------------------------------------


def test_item_17_a_kill_after_a_send_repeats_that_one_message_only(tmp_path: Path) -> None:
    from tests.test_delivery_kill import _run, _sent

    data_dir = tmp_path / "data"
    killed = _run(data_dir, "kill-after-send")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    before = _sent(data_dir)
    assert [text for text in before if "Frage 1 von" in text] == [before[-1]]  # it went out

    restarted = _run(data_dir, "restart")
    assert restarted.returncode == 0, restarted.stderr
    after = _sent(data_dir)[len(before) :]
    assert after == [before[-1]]  # that one message again, nothing else
    again = _run(data_dir, "restart")
    assert again.returncode == 0, again.stderr
    assert _sent(data_dir)[len(before) + len(after) :] == []
    readme = (ROOT / "README.md").read_text()
    assert "that one message is sent again at the next start" in readme


# -- item 13: parsing corner cases ---------------------------------------------------------------


def test_item_13_a_long_list_of_unknown_items_is_not_echoed_whole(demo_dir: Path) -> None:
    many = ",".join(str(number) for number in range(1, 501))
    stdout = ok(run_demo(demo_dir, ["/start", "3", "1", "2", "2", "1", many]))
    [answer] = [line for line in stdout if "„13“" in line]  # 12 choices: 13 is the first unknown
    assert len(answer) < 400, answer
    assert "(+" in answer


def test_item_13_odd_staff_and_file_lines_are_read_as_meant(demo_dir: Path, tmp_path: Path) -> None:
    note = tmp_path / "beleg.txt"
    note.write_text("Beleg", encoding="utf-8")
    lines = [
        *SUBMIT_URGENT,
        "staff()> /warteschlange",  # a staff line with an empty name: nobody on the list
        f"staff> {REF.lower()} /uebernehmen",  # a lower-case reference
        f"file>{note}",  # no space after file>
    ]
    result = run_demo(demo_dir, lines)
    assert result.returncode == 0, result.stderr
    assert f"{ROOM_PREFIX}Sie stehen nicht auf der Liste der Beratenden" in result.stdout
    assert "staff()>" not in said(result.stdout) and "staff()>" not in result.stdout
    assert f"{THREAD}Beraterin Demo hat den Fall übernommen." in result.stdout
    assert f"{THREAD}Person schickt eine Datei: beleg.txt (5 Bytes)" in result.stdout


def test_item_13_yes_and_submit_at_the_evidence_step_are_not_evidence_notes(
    demo_dir: Path,
) -> None:
    lines = intake_lines(Intake(evidence=("ja",)))
    evidence_done = len(lines) - 1 - lines[::-1].index("1, 2") - 2  # the "1" after "ja"
    assert lines[evidence_done] == "1" and lines[evidence_done - 1] == "ja"
    lines[evidence_done] = "absenden"  # "send" while asked for evidence: done, not a note
    result = run_demo(demo_dir, lines)
    assert result.returncode == 0, result.stderr
    text = said(result.stdout)
    assert "Gut. Senden Sie die Belege jetzt hier" in text
    assert f"Ihr Aktenzeichen: {REF}" in text
    shown = cases_show(demo_dir)
    evidence = [line for line in shown.splitlines() if line.startswith("- **Belege")]
    assert evidence and "ja" not in evidence[0].split(":", 1)[1] and "absenden" not in evidence[0]
