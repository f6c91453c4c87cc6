"""Submitted cases are sealed: disk and database dump show nothing, a counsellor key shows all.

An official completes an intake with a distinctive canary in every free-text
answer (description, evidence link and note, call-back details), in an attached
file (its content and its name) and, in-process, in the platform user id. Then:

- every file of the data directory (database, -wal, -shm, journal, key files,
  anything) holds no canary, in UTF-8 or UTF-16, and neither does a SQL dump of
  the database with every BLOB/bytea value hex-decoded (SQLite: `iterdump()`,
  PostgreSQL: `pg_dump` plus a SELECT of every table);
- `lotse cases show` with the counsellor key recovers every canary but the
  platform user id, which by design is kept nowhere;
- `lotse cases export` writes a record whose manifest `sha256sum -c` accepts,
  and rejects once a byte changes;
- `lotse cases list` needs no key and shows metadata only.

The helpers for dumps and for running `lotse` (`lotse`, `cli_target`,
`database_findings`, …) are shared with test_deletion.py and test_audit_chain.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import delete, insert
from sqlalchemy.engine import make_url

from bot.core.types import Attachment
from storage.casefile import CaseError, open_case
from storage.keyfile import UnlockedKey
from storage.models import CaseItem, StoredBlob
from storage.repository import Store
from tests import test_core
from tests.conftest import ROOT, run_demo
from tests.test_core import Official
from tests.test_demo_script import Intake, intake_lines, ok, staff_room, text_of
from tests.test_no_plaintext import (
    ENCODINGS,
    Canaries,
    assert_canaries_went_in,
    canary_intake,
    findings,
)

DEMO_KEY = "demo-counsellor.key"
DEMO_PASSPHRASE = "demo"
# The environment variables that would change what a `lotse` subprocess reads.
LOTSE_ENVIRONMENT = ("LOTSE_PASSPHRASE", "LOTSE_CONFIG", "LOTSE_SERVER_SECRET")
CASE_LINE = re.compile(
    r"(?P<reference>L-\d{4}-\d{4})  (?P<status>\w+) +(?P<urgent>URGENT)? +"
    r"(?P<channel>\w+) +(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d) UTC"
)


# -- running `lotse` ------------------------------------------------------------------------------


def lotse(
    *arguments: str | Path, passphrase: str | None = None, secret: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    """`lotse ARGUMENTS` as a separate process, with only the environment given here."""
    environment = {key: value for key, value in os.environ.items() if key not in LOTSE_ENVIRONMENT}
    if passphrase is not None:
        environment["LOTSE_PASSPHRASE"] = passphrase
    if secret is not None:
        environment["LOTSE_SERVER_SECRET"] = base64.b64encode(secret).decode("ascii")
    return subprocess.run(
        [sys.executable, "-m", "bot", *map(str, arguments)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=environment,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


@dataclass(frozen=True)
class CliTarget:
    """How a `lotse` subprocess reaches the database of a `store` fixture."""

    arguments: tuple[str, ...]
    secret: bytes

    def secret_base64(self) -> str:
        return base64.b64encode(self.secret).decode("ascii")

    def run(self, *command: str | Path, passphrase: str | None = None):
        return lotse(*command, *self.arguments, passphrase=passphrase, secret=self.secret)


def cli_target(store: Store, secret: bytes, folder: Path) -> CliTarget:
    """SQLite: the database's folder as a demo data dir; PostgreSQL: a configuration file.

    The server secret goes in through LOTSE_SERVER_SECRET, as an operator may give it.
    """
    url = store.database.url
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        database = Path(url.database)
        assert database.name == "lotse.db", "a demo data dir keeps its database as lotse.db"
        return CliTarget(("--data-dir", str(database.parent)), secret)
    config = folder / "lotse.toml"
    config.write_text(
        "[storage]\n"
        f'url = "{url.render_as_string(hide_password=False)}"\n'
        f'data_dir = "{folder / "data"}"\n',
        encoding="utf-8",
    )
    return CliTarget(("--config", str(config)), secret)


# -- looking for plaintext ------------------------------------------------------------------------


def hits(where: str, data: bytes, canaries: dict[str, str]) -> list[str]:
    return [
        f"{what} ({encoding}) in {where}"
        for what, canary in canaries.items()
        for encoding in ENCODINGS
        if canary.encode(encoding) in data
    ]


def hex_values(dump: str, pattern: str) -> list[bytes]:
    """Every hex literal the dump writes binary values as, decoded."""
    return [bytes.fromhex(found) for found in re.findall(pattern, dump) if len(found) % 2 == 0]


@dataclass(frozen=True)
class DatabaseDump:
    """A database as someone who stole it would read it: a SQL dump and every binary value."""

    text: str
    selected: list[bytes]  # every BLOB/bytea value, from a SELECT * of every table
    decoded: list[bytes]  # every binary value the dump wrote as hex, decoded

    def findings(self, canaries: dict[str, str]) -> list[str]:
        # The dump must really be of the binary columns, or a clean result proves nothing.
        assert len(self.selected) >= 5, "hardly any binary values: nothing was sealed here?"
        assert set(self.selected) <= set(self.decoded), "the dump's hex was not read right"
        found = hits("the SQL dump", self.text.encode("utf-8"), canaries)
        for index, value in enumerate(self.selected + self.decoded):
            found += hits(f"binary value {index}", value, canaries)
        return found


def sqlite_dump(database: Path) -> DatabaseDump:
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        text = "\n".join(connection.iterdump())
        tables = [
            name
            for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        selected = [
            value
            for table in tables
            for row in connection.execute(f'SELECT * FROM "{table}"')
            for value in row
            if isinstance(value, bytes)
        ]
    finally:
        connection.close()
    return DatabaseDump(text, selected, hex_values(text, r"X'([0-9A-Fa-f]*)'"))


async def postgres_dump(url: str) -> DatabaseDump:
    parsed = make_url(url)
    dump = await asyncio.create_subprocess_exec(
        "pg_dump",
        "--host", parsed.host or "127.0.0.1",
        "--port", str(parsed.port or 5432),
        "--username", parsed.username or "postgres",
        "--no-password",
        parsed.database or "",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await dump.communicate()
    assert dump.returncode == 0, err.decode()
    text = out.decode("utf-8")
    connection = await asyncpg.connect(
        parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        tables = await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        )
        selected = [
            value
            for table in tables
            for row in await connection.fetch(f'SELECT * FROM "{table["tablename"]}"')
            for value in row.values()
            if isinstance(value, bytes)
        ]
    finally:
        await connection.close()
    # COPY writes bytea as \\x0a1b…: decode it too, so a value is read the way a thief would.
    return DatabaseDump(text, selected, hex_values(text, r"\\+x([0-9a-f]+)"))


async def database_dump(store: Store) -> DatabaseDump:
    url = store.database.url
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        await store.compact()
        return sqlite_dump(Path(url.database))
    return await postgres_dump(url.render_as_string(hide_password=False))


async def test_the_dump_finds_a_planted_canary(empty_store: Store) -> None:
    canary = "Kanarie-gepflanzt-7Q2X"
    async with empty_store.unit() as unit:
        for index in range(12):
            content = canary.encode("utf-16-le") if index == 5 else bytes([index]) * 40
            await unit.session.execute(
                insert(StoredBlob).values(
                    id=f"f{index}", sender_key="s", content=content, created_at=unit.now
                )
            )
    dump = await database_dump(empty_store)
    found = dump.findings({"planted": canary})
    assert "planted (utf-16-le) in binary value 5" in found
    assert any(line.startswith("planted (utf-16-le) in binary value") for line in found[1:])


# -- the demo, with canaries everywhere -----------------------------------------------------------


@dataclass(frozen=True)
class SubmittedCase:
    data_dir: Path
    language: str
    canaries: Canaries
    attachment: Path
    reference: str

    @property
    def key(self) -> Path:
        return self.data_dir / DEMO_KEY

    def secret(self) -> dict[str, str]:
        return self.canaries.all()


@pytest.fixture(scope="module", params=["de", "en"])
def submitted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A demo data dir in which one official submitted one case full of canaries."""
    language = request.param
    folder = tmp_path_factory.mktemp(f"sealed-{language}")
    canaries, lines = canary_intake(language, folder)
    data_dir = folder / "demo-data"
    said = ok(run_demo(data_dir, lines))
    assert_canaries_went_in(said, canaries)
    found = re.search(r"(?:Ihr Aktenzeichen|Your reference): (L-\d{4}-\d{4})", text_of(said))
    assert found, said[-5:]
    return SubmittedCase(
        data_dir, language, canaries, folder / canaries.file_name, reference=found[1]
    )


@pytest.mark.slow
def test_no_canary_in_any_file_of_the_data_dir_nor_in_a_sql_dump(submitted: SubmittedCase) -> None:
    names = {path.name for path in submitted.data_dir.iterdir()}
    assert {"lotse.db", "server.secret", DEMO_KEY, f"{DEMO_KEY}.pub"} <= names
    assert findings(submitted.data_dir, submitted.secret()) == []

    dump = sqlite_dump(submitted.data_dir / "lotse.db")
    assert "CREATE TABLE case_items" in dump.text
    assert submitted.reference in dump.text  # the dump is of the database that holds the case
    assert dump.findings(submitted.secret()) == []


@pytest.mark.slow
def test_cases_show_with_the_counsellor_key_recovers_every_canary(submitted: SubmittedCase) -> None:
    result = lotse(
        "cases", "show", submitted.reference,
        "--key", submitted.key, "--data-dir", submitted.data_dir,
        passphrase=DEMO_PASSPHRASE,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    shown = result.stdout
    assert shown.startswith(f"# {submitted.reference}\n")
    canaries = submitted.canaries
    for what, canary in {
        "description": canaries.description,
        "link": canaries.link,
        "note": canaries.note,
        "callback": canaries.callback,
    }.items():
        assert canary in shown, what
    size = len(submitted.attachment.read_bytes())
    assert f"- {canaries.file_name} (text/plain, {size} bytes)" in shown.splitlines()
    assert "platform user id" not in shown and "demo-official" not in shown
    # the viewing itself leaves only metadata on disk
    assert findings(submitted.data_dir, submitted.secret()) == []


@pytest.mark.slow
@pytest.mark.parametrize("submitted", ["de"], indirect=True)
def test_cases_export_writes_a_record_that_sha256sum_checks(
    submitted: SubmittedCase, tmp_path: Path
) -> None:
    out = tmp_path / "export"
    result = lotse(
        "cases", "export", submitted.reference,
        "--key", submitted.key, "--out", out, "--data-dir", submitted.data_dir,
        passphrase=DEMO_PASSPHRASE,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    target = out / submitted.reference
    assert f"exported {submitted.reference} to {target}" in result.stdout
    attachment = f"attachments/01-{submitted.canaries.file_name}"
    written = sorted(str(path.relative_to(target)) for path in target.rglob("*") if path.is_file())
    assert written == ["SHA256SUMS", attachment, "case.json", "case.md"]

    assert (target / attachment).read_bytes() == submitted.attachment.read_bytes()
    record = json.loads((target / "case.json").read_text(encoding="utf-8"))
    canaries = submitted.canaries
    assert record["reference"] == submitted.reference
    answers = record["intake"]["answers"]
    assert answers["description"] == canaries.description
    assert answers["callback_details"] == canaries.callback
    assert answers["evidence"]["links"] == [canaries.link]
    assert answers["evidence"]["notes"] == [canaries.note]
    assert [entry["name"] for entry in record["attachments"]] == [canaries.file_name]
    assert [entry["path"] for entry in record["attachments"]] == [attachment]
    markdown = (target / "case.md").read_text(encoding="utf-8")
    for canary in (canaries.description, canaries.link, canaries.note, canaries.callback):
        assert canary in markdown
    assert canaries.file_name in markdown

    manifest = (target / "SHA256SUMS").read_text(encoding="utf-8").splitlines()
    assert sorted(line.split("  ", 1)[1] for line in manifest) == [
        attachment,
        "case.json",
        "case.md",
    ]
    checked = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=target, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count(": OK") == 3

    changed = bytearray((target / attachment).read_bytes())
    changed[len(changed) // 2] ^= 0x01
    (target / attachment).write_bytes(bytes(changed))
    checked = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=target, capture_output=True, text=True, check=False
    )
    assert checked.returncode != 0
    assert f"{attachment}: FAILED" in checked.stdout
    assert "case.json: OK" in checked.stdout

    # exporting wrote nothing readable into the data dir (only an audit entry)
    assert findings(submitted.data_dir, submitted.secret()) == []


def stored_statuses(data_dir: Path) -> list[tuple[str, str]]:
    connection = sqlite3.connect(f"file:{data_dir / 'lotse.db'}?mode=ro", uri=True)
    try:
        return list(connection.execute("SELECT reference, status FROM cases"))
    finally:
        connection.close()


@pytest.mark.slow
@pytest.mark.parametrize("submitted", ["de"], indirect=True)
def test_cases_list_shows_metadata_only_and_needs_no_key(
    submitted: SubmittedCase, tmp_path: Path
) -> None:
    data_dir = tmp_path / "copy"
    shutil.copytree(submitted.data_dir, data_dir)
    # a second, urgent case by the same official
    urgent = ["/start", "/neu", *intake_lines(Intake(urgent=True), again=True)]
    result = run_demo(data_dir, urgent)
    ok(result)
    second = re.match(r"‼️ DRINGEND – Neuer Fall (L-\d{4}-\d{4}) · ", staff_room(result.stdout)[0])
    assert second
    # no key file anywhere near, no passphrase: the list still works
    for name in (DEMO_KEY, f"{DEMO_KEY}.pub"):
        (data_dir / name).unlink()

    listed = lotse("cases", "list", "--data-dir", data_dir)
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr == ""
    lines = listed.stdout.splitlines()
    assert len(lines) == 2
    first, then = (CASE_LINE.fullmatch(line) for line in lines)
    assert first and then, lines
    status = dict(stored_statuses(data_dir))  # whatever a case waiting for a counsellor is called
    assert (first["reference"], first["status"], first["urgent"], first["channel"]) == (
        submitted.reference,
        status[submitted.reference],
        None,
        "console",
    )
    assert (then["reference"], then["status"], then["urgent"], then["channel"]) == (
        second[1],
        status[second[1]],
        "URGENT",
        "console",
    )
    assert status[submitted.reference] != "closed"
    assert hits("cases list", listed.stdout.encode(), submitted.secret()) == []
    for fragment in ("Kanarie", "kanarie", "KANARIE", "Drohbrief", "0151", "Bayern", "Bavaria"):
        assert fragment not in listed.stdout


@pytest.mark.slow
@pytest.mark.parametrize("submitted", ["en"], indirect=True)
def test_a_wrong_passphrase_is_one_clear_line(submitted: SubmittedCase) -> None:
    result = lotse(
        "cases", "show", submitted.reference,
        "--key", submitted.key, "--data-dir", submitted.data_dir,
        passphrase="not the demo passphrase",
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"lotse: wrong passphrase for {submitted.key} (or the file was changed)"
    ]
    assert "Traceback" not in result.stderr


# -- in-process, on both databases: the platform user id as a canary too --------------------------

FILE_LINE = "(the attachment is sent here)"
USER_CANARY = "Kanarie-Nutzerkennung-4711-ZQ9B"


# test_core's official, who talks to a Core in this process on the `store` fixture's database
official_with_a_core = test_core.official


async def test_a_case_through_the_core_is_sealed_in_the_database_and_opens_with_a_key(
    official_with_a_core: Official, store: Store, counsellor_key: UnlockedKey
) -> None:
    canaries = Canaries.for_language("db")
    secret = canaries.all() | {"platform user id": USER_CANARY}
    content = canaries.file_content.encode("utf-8")
    person = official_with_a_core
    person.user_id = USER_CANARY  # before the first message: the canary is their platform id
    intake = Intake(
        description=canaries.description,
        evidence=(canaries.link, canaries.note, FILE_LINE),
        callback=canaries.callback,
    )
    for line in intake_lines(intake):
        if line == FILE_LINE:
            said = await person.say(
                "", files=(Attachment(canaries.file_name, "text/plain", content),)
            )
            assert any("1 Datei(en)" in reply for reply in said), said
        else:
            said = await person.say(line)
    found = re.search(r"Ihr Aktenzeichen: (L-\d{4}-\d{4})", "\n".join(said))
    assert found, said
    reference = found[1]
    [(posted, summary, _)] = person.recorder.posts
    assert posted == reference
    assert canaries.description in summary  # the canaries did go in

    dump = await database_dump(store)
    assert reference in dump.text
    assert dump.findings(secret) == []
    if store.database.url.get_backend_name() == "sqlite":
        assert store.database.url.database is not None
        assert findings(Path(store.database.url.database).parent, secret) == []

    async with store.unit() as unit:
        opened, by = await open_case(unit, counsellor_key, reference)
    assert by == counsellor_key.name
    answers = opened.intake["answers"]
    assert answers["description"] == canaries.description
    assert answers["callback_details"] == canaries.callback
    assert answers["evidence"]["links"] == [canaries.link]
    assert answers["evidence"]["notes"] == [canaries.note]
    [attachment] = opened.files
    assert (attachment.name, attachment.media_type, attachment.data) == (
        canaries.file_name,
        "text/plain",
        content,
    )
    # The platform user id is not kept, not even sealed: nobody can recover it.
    everything = json.dumps([item.content for item in opened.items], ensure_ascii=False)
    assert USER_CANARY not in everything + repr(opened)


async def test_cutting_off_the_newest_item_of_a_case_is_noticed(
    store: Store, counsellor_key: UnlockedKey
) -> None:
    async with store.unit() as unit:
        reference = await unit.create_case("s", "console", False, {"description": "d"}, [])
        await unit.add_item(reference, "message", {"from": "official", "text": "first"})
        await unit.add_item(reference, "message", {"from": "official", "text": "the threat"})
    async with store.unit() as unit:
        case = await unit.case(reference)
        assert case is not None
        await unit.session.execute(
            delete(CaseItem).where(CaseItem.case_id == case.id, CaseItem.position == 2)
        )
    with pytest.raises(CaseError, match=reference):
        async with store.unit() as unit:
            await open_case(unit, counsellor_key, reference)
