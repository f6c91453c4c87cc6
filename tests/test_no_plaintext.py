"""What an official writes never reaches the disk or the log in plain text.

Every free-text answer, the evidence note and link, the call-back details and an
attached file carry a distinctive canary. The data directory is scanned byte by
byte (database, WAL, shared memory, journal, anything else) in UTF-8, UTF-16-LE
and UTF-16-BE, while the demo is still running and after it ended; the log is
read at DEBUG. Each test first shows the canaries did go in, so it can fail.
"""

from __future__ import annotations

import io
import logging
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.app import demo_config, open_app
from bot.channels.console import DEMO_USER, ConsoleChannel
from bot.demo import console_core, demo_counsellor
from bot.logs import quiet_libraries
from tests.conftest import run_demo
from tests.test_demo_script import (
    Intake,
    intake_lines,
    official,
    ok,
    summaries,
    summary_entries,
    text_of,
)
from tests.test_restart import LiveDemo

pytestmark = pytest.mark.slow

ENCODINGS = ("utf-8", "utf-16-le", "utf-16-be")


@dataclass(frozen=True)
class Canaries:
    description: str
    note: str
    link: str
    callback: str
    file_name: str
    file_content: str

    @classmethod
    def for_language(cls, language: str) -> Canaries:
        tag = language.upper()
        return cls(
            description=f"Kanarie-Beschreibung-{tag}-Q7XW: Drohbrief an die Bürgermeisterin",
            note=f"Kanarie-Notiz-{tag}-M2KD Screenshot vom Dienstag",
            link=f"https://example.org/kanarie-link-{tag}-R8PZ",
            callback=f"0151 9753{tag}1864 ab 18 Uhr",
            file_name=f"kanarie-dateiname-{tag}-H6TB.txt",
            file_content=f"KANARIE-DATEI-INHALT-{tag}-J4VN: Wir wissen, wo Sie wohnen.",
        )

    def all(self) -> dict[str, str]:
        return {
            "description": self.description,
            "note": self.note,
            "link": self.link,
            "callback": self.callback,
            "file name": self.file_name,
            "file content": self.file_content,
            "platform user id": DEMO_USER,
        }


def canary_intake(language: str, folder: Path) -> tuple[Canaries, list[str]]:
    """The canaries for `language`, and the lines of an intake that uses every one of them."""
    canaries = Canaries.for_language(language)
    attachment = folder / canaries.file_name
    attachment.write_text(canaries.file_content, encoding="utf-8")
    intake = Intake(
        language=language,
        description=canaries.description,
        evidence=(canaries.link, canaries.note, f"file> {attachment}"),
        callback=canaries.callback,
    )
    return canaries, intake_lines(intake)


def assert_canaries_went_in(said: list[str], canaries: Canaries) -> None:
    """The demo's own summary shows the canaries arrived (as text, or counted as evidence)."""
    (summary,) = summaries(said)[-1:]
    shown = list(summary_entries(summary).values())
    assert canaries.description in shown
    assert canaries.callback in shown
    evidence = {
        "1 Link(s), 1 Datei(en), 1 Notiz(en)",
        "1 link(s), 1 file(s), 1 note(s)",
    }
    assert evidence & set(shown), shown


def findings(data_dir: Path, canaries: dict[str, str]) -> list[str]:
    """Where any canary occurs in any file under `data_dir`, in any of the encodings."""
    found = []
    files = [path for path in sorted(data_dir.rglob("*")) if path.is_file()]
    assert files, f"nothing to scan in {data_dir}"
    for path in files:
        data = path.read_bytes()
        for what, canary in canaries.items():
            for encoding in ENCODINGS:
                if canary.encode(encoding) in data:
                    found.append(f"{what} ({encoding}) in {path.name}")
    return found


def test_the_scan_finds_a_planted_canary(tmp_path: Path) -> None:
    canaries = Canaries.for_language("de").all()
    (tmp_path / "lotse.db-wal").write_bytes(b"\x00" * 5 + canaries["callback"].encode("utf-16-be"))
    (tmp_path / "other").write_bytes(canaries["note"].encode("utf-16-le"))
    assert findings(tmp_path, canaries) == [
        "callback (utf-16-be) in lotse.db-wal",
        "note (utf-16-le) in other",
    ]


# -- the data directory -----------------------------------------------------------------------


@pytest.mark.parametrize("language", ["de", "en"])
def test_no_canary_on_disk_while_running_and_after(
    demo_dir: Path, tmp_path: Path, language: str
) -> None:
    canaries, lines = canary_intake(language, tmp_path)
    *answers, submit = lines
    secret = canaries.all()

    with LiveDemo(demo_dir) as demo:
        demo.write(*answers)
        said = demo.wait_for(r"^(Stimmt alles\?|Is everything right\?)")
        assert_canaries_went_in(said, canaries)

        # mid-intake: everything is in the encrypted intake state, most of it still in the WAL
        wal = demo_dir / "lotse.db-wal"
        assert wal.exists() and wal.stat().st_size > 0
        for name in ("lotse.db-wal", "lotse.db-shm"):
            assert stat.S_IMODE((demo_dir / name).stat().st_mode) == 0o600, name
        assert findings(demo_dir, secret) == []

        said = demo.say(submit, r"Aktenzeichen: L-|Your reference: L-")
        assert findings(demo_dir, secret) == []  # the case record, still running
        assert demo.finish() == 0
    assert re.search(r"L-\d{4}-0001", said[-1])
    assert findings(demo_dir, secret) == []  # after a clean shutdown


def test_data_dir_permissions(demo_dir: Path) -> None:
    assert not demo_dir.exists()
    ok(run_demo(demo_dir, intake_lines(Intake(urgent=True))))
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in demo_dir.iterdir()}
    assert stat.S_IMODE(demo_dir.stat().st_mode) == 0o700
    assert modes["server.secret"] == 0o600
    assert modes["lotse.db"] == 0o600
    assert modes["demo-counsellor.key"] == 0o600
    private = {name: mode for name, mode in modes.items() if not name.endswith(".pub")}
    assert all(mode & 0o077 == 0 for mode in private.values()), modes
    assert findings(demo_dir, {"platform user id": DEMO_USER}) == []


# -- the log ----------------------------------------------------------------------------------


def test_debug_log_of_the_demo_carries_no_answers(demo_dir: Path, tmp_path: Path) -> None:
    canaries, lines = canary_intake("de", tmp_path)
    result = run_demo(demo_dir, lines, "-v")
    said = ok(result)
    assert_canaries_went_in(said, canaries)

    log = result.stderr
    assert log.strip(), "nothing was logged at DEBUG: this check would prove nothing"
    assert re.search(r" DEBUG bot\.", log)
    assert re.search(r"case L-\d{4}-0001 submitted", log)
    for what, canary in canaries.all().items():
        assert canary not in log, what
    for fragment in ("Kanarie", "KANARIE", "kanarie", "Drohbrief", "0151", "Wir wissen"):
        assert fragment not in log


async def test_in_process_log_carries_no_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    canaries, lines = canary_intake("en", tmp_path)
    caplog.set_level(logging.DEBUG)
    quiet_libraries()
    config = demo_config(tmp_path / "data")
    out = io.StringIO()
    async with open_app(config) as app:
        await demo_counsellor(app)
        channel = ConsoleChannel(out)
        core = console_core(app, channel)
        for line in lines:
            await channel.feed(core, line)

    said = official(out.getvalue())
    assert_canaries_went_in(said, canaries)
    assert re.search(r"Your reference: L-\d{4}-0001", text_of(said))
    assert any(
        record.name.startswith("bot.") and record.levelno == logging.DEBUG
        for record in caplog.records
    )
    for what, canary in canaries.all().items():
        assert canary not in caplog.text, what
    for record in caplog.records:  # arguments too, in case a handler formats them differently
        assert not any(canary in repr(record.args) for canary in canaries.all().values())
