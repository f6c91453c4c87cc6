"""Backups taken while officials write, restored into an empty database; and what is refused.

Runs on SQLite and on the real PostgreSQL (with the installed pg_dump/pg_restore, which
must fit the server: the commands say so otherwise, and then these tests fail).
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from bot.app import open_app
from bot.backup import take_backup
from bot.cli import main
from bot.config import load_config
from bot.core.orchestrator import Core
from bot.core.settings import Settings
from bot.core.types import Inbound
from bot.demo import DEMO_PASSPHRASE, demo_counsellor
from storage.backup import head_revision
from storage.db import open_database, schema_is_current, upgrade
from storage.server_secret import ServerKeys, _derive
from tests.bench_rig import ANSWERS, Sink
from tests.conftest import _async_url, _create_database, _drop_database

OFFICIALS = 8
STAGGER_SECONDS = 0.15  # officials start one after another, so writing goes on for a while
REFERENCE = re.compile(r"^(L-\d{4}-\d{4})\s", re.MULTILINE)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two databases of one kind: the live one and an empty one to restore into."""
    if request.param == "sqlite":
        yield (
            f"sqlite+aiosqlite:///{tmp_path / 'live' / 'lotse.db'}",
            f"sqlite+aiosqlite:///{tmp_path / 'restored' / 'lotse.db'}",
        )
        return
    admin = request.getfixturevalue("postgres_admin_url")
    names = [asyncio.run(_create_database(admin)) for _ in range(2)]
    try:
        yield (_async_url(admin, names[0]), _async_url(admin, names[1]))
    finally:
        for name in names:
            asyncio.run(_drop_database(admin, name))


def _config(folder: Path, url: str) -> Path:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / "config.toml"
    path.write_text(f'[storage]\nurl = "{url}"\ndata_dir = "{folder / "data"}"\n')
    return path


def _copy_secret(source: Path, target: Path) -> None:
    (target / "data").mkdir(mode=0o700, parents=True, exist_ok=True)
    secret = target / "data" / "server.secret"
    secret.write_bytes((source / "data" / "server.secret").read_bytes())
    secret.chmod(0o600)


def lotse(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str, str]:
    code = main(list(arguments))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def _burst_with_backup(config_path: Path, out: Path) -> tuple[bool, int, int]:
    """Officials submit intakes; a backup is taken once the first case exists.

    Returns whether the officials were still writing when the backup began, how many
    cases there are at the end, and how many 'technical error' replies they got.
    """
    config = load_config(config_path)
    async with open_app(config) as app:
        await demo_counsellor(app)
        sink = Sink(app.engine.texts.get("technical_error", "de"))
        core = Core(app.engine, app.store, staff_room=sink, settings=Settings.defaults())
        core.attach(sink)
        workers = asyncio.create_task(core.delivery.run())

        first_submitted = asyncio.Event()

        async def official(index: int) -> None:
            await asyncio.sleep(index * STAGGER_SECONDS)
            for number, answer in enumerate(ANSWERS):
                await core.handle(
                    Inbound("bench", f"u{index}", f"c{index}", answer, f"{index}.{number}")
                )
            first_submitted.set()

        burst = asyncio.gather(*(official(index) for index in range(OFFICIALS)))
        await first_submitted.wait()
        writing = not burst.done()
        assert await take_backup(config, out) == 0  # what `lotse backup` runs
        await burst
        await core.settle()
        workers.cancel()
        return writing, len(await app.store.cases()), sink.apologies


def test_a_backup_taken_during_a_burst_of_intakes_restores_completely(
    urls: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    live, restored = tmp_path / "live", tmp_path / "restored"
    live_config, restored_config = _config(live, urls[0]), _config(restored, urls[1])
    out = tmp_path / "lotse.backup"

    writing, cases_at_end, apologies = asyncio.run(_burst_with_backup(live_config, out))
    capsys.readouterr()
    assert writing, "the backup should have been taken while officials were still writing"
    assert apologies == 0
    assert cases_at_end == OFFICIALS
    assert stat.S_IMODE(out.stat().st_mode) == 0o600

    # Nothing in the backup lets it be read without the server secret kept apart.
    secret = base64.b64decode((live / "data" / "server.secret").read_text())
    keys = ServerKeys.from_secret(secret)
    content = out.read_bytes()
    derived = [_derive(secret, purpose) for purpose in ("state", "pseudonym", "check")]
    for needle in (secret, base64.b64encode(secret), keys.audit_key, keys.binding_key, *derived):
        assert needle not in content
        assert needle.hex().encode() not in content

    _copy_secret(live, restored)
    code, stdout, err = lotse(capsys, "restore", str(out), "--config", str(restored_config))
    assert code == 0, err
    assert "belongs to this data" in stdout

    code, listing, err = lotse(capsys, "cases", "list", "--config", str(restored_config))
    assert code == 0, err
    references = REFERENCE.findall(listing)
    assert 1 <= len(references) <= cases_at_end
    monkeypatch.setenv("LOTSE_PASSPHRASE", DEMO_PASSPHRASE)
    key = live / "data" / "demo-counsellor.key"
    for reference in references:
        code, shown, err = lotse(
            capsys, "cases", "show", reference, "--key", str(key), "--config", str(restored_config)
        )
        assert code == 0, err
        assert reference in shown and "Beschreibung des Vorfalls" in shown
    code, verified, err = lotse(capsys, "audit", "verify", "--config", str(restored_config))
    assert code == 0, err
    assert "intact" in verified


async def _live_with_data(config_path: Path) -> None:
    async with open_app(load_config(config_path)) as app:
        await demo_counsellor(app)


async def _set_schema_version(url: str, version: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        with sqlite3.connect(parsed.database or "") as connection:
            connection.execute("UPDATE alembic_version SET version_num = ?", (version,))
        return
    plain = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(plain)
    try:
        await connection.execute("UPDATE alembic_version SET version_num = $1", version)
    finally:
        await connection.close()


def _exists(path: Path) -> bool:
    return path.exists()


async def _has_tables(url: str) -> bool:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _exists(Path(parsed.database or ""))
    plain = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(plain)
    try:
        return bool(
            await connection.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        )
    finally:
        await connection.close()


def test_restore_refuses_a_full_database_a_newer_schema_and_a_damaged_file(
    urls: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live, target = tmp_path / "live", tmp_path / "restored"
    live_config, target_config = _config(live, urls[0]), _config(target, urls[1])
    asyncio.run(_live_with_data(live_config))
    good = tmp_path / "good.backup"
    assert lotse(capsys, "backup", "--out", str(good), "--config", str(live_config))[0] == 0

    before = good.read_bytes()
    code, _, err = lotse(capsys, "backup", "--out", str(good), "--config", str(live_config))
    assert code == 1 and "never overwrites" in err
    assert good.read_bytes() == before

    code, _, err = lotse(capsys, "restore", str(good), "--config", str(live_config))
    assert code == 1 and "is not empty" in err and "nothing was restored" in err

    cut = tmp_path / "cut.backup"
    cut.write_bytes(before[: len(before) // 2])
    code, _, err = lotse(capsys, "restore", str(cut), "--config", str(target_config))
    assert code == 1 and "damaged or incomplete" in err

    garbage = tmp_path / "notes.txt"
    garbage.write_text("not a backup at all")
    code, _, err = lotse(capsys, "restore", str(garbage), "--config", str(target_config))
    assert code == 1 and "not a Lotse backup" in err

    asyncio.run(_set_schema_version(urls[0], "9999"))
    newer = tmp_path / "newer.backup"
    assert lotse(capsys, "backup", "--out", str(newer), "--config", str(live_config))[0] == 0
    code, _, err = lotse(capsys, "restore", str(newer), "--config", str(target_config))
    assert code == 1
    assert "9999" in err and f"schema version {head_revision()}" in err

    assert not asyncio.run(_has_tables(urls[1])), "a refused restore must leave nothing behind"
    _copy_secret(live, target)
    code, _, err = lotse(capsys, "restore", str(good), "--config", str(target_config))
    assert code == 0, err


async def _database_at(url: str, revision: str) -> None:
    database = open_database(url)
    try:
        await upgrade(database, revision)
    finally:
        await database.dispose()


async def _current(url: str) -> bool:
    database = open_database(url)
    try:
        return await schema_is_current(database)
    finally:
        await database.dispose()


def test_a_backup_of_an_older_schema_is_restored_then_upgraded(
    urls: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live, target = tmp_path / "live", tmp_path / "restored"
    live_config, target_config = _config(live, urls[0]), _config(target, urls[1])
    asyncio.run(_database_at(urls[0], "0005"))
    out = tmp_path / "old.backup"
    assert lotse(capsys, "backup", "--out", str(out), "--config", str(live_config))[0] == 0
    (target / "data").mkdir(mode=0o700)
    (target / "data" / "server.secret").write_text(base64.b64encode(os.urandom(32)).decode())
    (target / "data" / "server.secret").chmod(0o600)
    code, stdout, err = lotse(capsys, "restore", str(out), "--config", str(target_config))
    assert code == 0, err
    assert f"upgraded the schema from version 0005 to {head_revision()}" in stdout
    assert asyncio.run(_current(urls[1]))


def test_a_restore_without_the_right_server_secret_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live, target = tmp_path / "live", tmp_path / "restored"
    live_config = _config(live, f"sqlite+aiosqlite:///{live / 'lotse.db'}")
    target_config = _config(target, f"sqlite+aiosqlite:///{target / 'lotse.db'}")
    asyncio.run(_live_with_data(live_config))
    out = tmp_path / "b.backup"
    assert lotse(capsys, "backup", "--out", str(out), "--config", str(live_config))[0] == 0

    code, _, err = lotse(capsys, "restore", str(out), "--config", str(target_config))
    assert code == 1
    assert "the database is restored, but there is no server secret" in err
    (target / "data").mkdir(mode=0o700, exist_ok=True)
    (target / "data" / "server.secret").write_text(base64.b64encode(os.urandom(32)).decode())
    (target / "data" / "server.secret").chmod(0o600)
    code, _, err = lotse(capsys, "cases", "list", "--config", str(target_config))
    assert code == 1 and "does not belong to this database" in err


@pytest.mark.postgres
def test_pg_dump_missing_or_too_old_is_named(
    postgres_admin_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    name = asyncio.run(_create_database(postgres_admin_url))
    try:
        config = _config(tmp_path / "live", _async_url(postgres_admin_url, name))
        out = tmp_path / "b.backup"
        tools = tmp_path / "bin"
        tools.mkdir()
        monkeypatch.setenv("PATH", str(tools))
        code, _, err = lotse(capsys, "backup", "--out", str(out), "--config", str(config))
        assert code == 1 and "pg_dump is not installed" in err and "postgresql-client-" in err
        fake = tools / "pg_dump"
        fake.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n")
        fake.chmod(0o755)
        code, _, err = lotse(capsys, "backup", "--out", str(out), "--config", str(config))
        assert code == 1 and "version 9" in err and "at least the server's version" in err
        assert not out.exists()
    finally:
        asyncio.run(_drop_database(postgres_admin_url, name))


def test_restore_refuses_a_database_with_tables_of_another_program(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live, target = tmp_path / "live", tmp_path / "restored"
    live_config = _config(live, f"sqlite+aiosqlite:///{live / 'lotse.db'}")
    target_config = _config(target, f"sqlite+aiosqlite:///{target / 'lotse.db'}")
    asyncio.run(_live_with_data(live_config))
    out = tmp_path / "b.backup"
    assert lotse(capsys, "backup", "--out", str(out), "--config", str(live_config))[0] == 0
    with sqlite3.connect(target / "lotse.db") as connection:
        connection.execute("CREATE TABLE invoices (id INTEGER)")
    code, _, err = lotse(capsys, "restore", str(out), "--config", str(target_config))
    assert code == 1 and "not Lotse's (invoices)" in err
    with sqlite3.connect(target / "lotse.db") as connection:
        assert connection.execute("SELECT name FROM sqlite_master").fetchall() == [("invoices",)]
