"""Issue 11 (8/10 Hardening), items 3, 4, 8 and 10: tampering with the database, a lost
server secret, and read commands on a database that is not there.

Each test is named after its item. They run on SQLite and PostgreSQL and attack as
someone with write access to the database but without the server secret would.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.admin import verify_audit
from bot.app import open_app
from bot.cli import main
from bot.config import Config, config_from_dict
from flows.state import IntakeState
from storage import secret_check
from storage.audit import Action, AuditError, load_chain, verify
from storage.casefile import open_case
from storage.key_binding import KeyBindingError
from storage.keyfile import UnlockedKey
from storage.keyring import CounsellorEntry, add, bootstrap, revoke
from storage.repository import Store
from storage.sealing import PrivateKey

CONTENT = "Kanarie-Haertung-Q4ZT"


def config_for(database_url: str, folder: Path) -> Config:
    """A configuration for this database, with its server secret in a file in `folder`."""
    data_dir = folder / "data"
    return config_from_dict(
        {"storage": {"url": database_url, "data_dir": str(data_dir)}}, folder, "test"
    )


@pytest.fixture(autouse=True)
def _no_secret_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOTSE_SERVER_SECRET", raising=False)
    monkeypatch.delenv("LOTSE_CONFIG", raising=False)


async def _new_case(store: Store, official: str = "official-1") -> str:
    async with store.unit() as unit:
        return await unit.create_case(official, "console", False, {"description": CONTENT}, [])


async def _sql(store: Store, statement: str, **values: object) -> None:
    async with store.database.begin() as connection:
        await connection.execute(text(statement), values)


def _alerts(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


# -- item 3: the audit log's end ------------------------------------------------------------------


async def test_item_03_cut_audit_entries_are_not_forgotten(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    references = [await _new_case(store, f"official-{index}") for index in range(3)]
    await _sql(store, "DELETE FROM audit_log WHERE id > 3")  # the newest two "case created"

    with pytest.raises(AuditError, match=r"tampered with.*lotse audit verify"):
        async with store.unit() as unit:
            await unit.audit(Action.CASE_VIEWED, "Berger", references[0])
    with pytest.raises(AuditError):  # the action the entry belongs to does not happen either
        await _new_case(store, "official-4")
    assert [case.reference for case in await store.cases()] == references

    async with store.unit() as unit:
        chain, head = await load_chain(unit.session)
    found = verify(store.keys.audit_key, chain, head)
    assert found is not None and "the chain ends early" in found.what  # still, not papered over
    assert len(chain) == 3
    alerts = _alerts(caplog)
    assert alerts and all("tampered" in alert for alert in alerts)
    assert not any(CONTENT in alert or "official-" in alert for alert in alerts)


async def test_item_03_a_wiped_audit_log_is_not_begun_again(
    database_url: str, tmp_path: Path, counsellor_key: UnlockedKey
) -> None:
    config = config_for(database_url, tmp_path)
    async with open_app(config) as app, app.store.unit() as unit:
        await bootstrap(unit, CounsellorEntry("Berger", "A. Berger"), counsellor_key.public)
    async with open_app(config) as app:
        await _sql(app.store, "DELETE FROM audit_log")
        await _sql(app.store, "DELETE FROM audit_head")
        with pytest.raises(AuditError, match="wiped"):
            async with app.store.unit() as unit:
                second = UnlockedKey("Schmidt", PrivateKey.generate())
                await add(unit, counsellor_key, CounsellorEntry("Schmidt", "S"), second.public)
        assert await verify_audit(app.store) == 1  # never "intact: 1 entries"
        async with app.store.unit() as unit:
            chain, _ = await load_chain(unit.session)
        assert chain == []


# -- item 4: stored public keys -------------------------------------------------------------------


async def test_item_04_a_swapped_team_key_is_refused(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    await _new_case(store)
    attacker = PrivateKey.generate().public_key().to_bytes()
    await _sql(store, "UPDATE team_keys SET public_key = :key", key=attacker)
    with pytest.raises(KeyBindingError, match=r"team key \d+ was changed in the database"):
        await _new_case(store, "official-2")
    assert len(await store.cases()) == 1
    assert any("team key" in alert and "binding" in alert for alert in _alerts(caplog))


@pytest.mark.parametrize("how", ["swapped", "binding emptied"])
async def test_item_04_a_swapped_case_key_is_refused(
    store: Store, counsellor_key: UnlockedKey, how: str
) -> None:
    reference = await _new_case(store)
    if how == "swapped":
        attacker = PrivateKey.generate().public_key().to_bytes()
        await _sql(store, "UPDATE cases SET public_key = :key", key=attacker)
    else:
        await _sql(store, "UPDATE cases SET key_binding = NULL")
    with pytest.raises(KeyBindingError, match=f"{reference} was changed in the database"):
        async with store.unit() as unit:
            await unit.add_item(reference, "message", {"from": "official", "text": CONTENT})
    async with store.unit() as unit:
        case = await unit.case(reference)
        assert case is not None and case.item_count == 1  # nothing was sealed to it


async def test_item_04_counsellor_keys_are_pinned_in_the_audit_log(
    store: Store, counsellor_key: UnlockedKey
) -> None:
    schmidt = UnlockedKey("Schmidt", PrivateKey.generate())
    kaya = UnlockedKey("Kaya", PrivateKey.generate())
    async with store.unit() as unit:
        await add(unit, counsellor_key, CounsellorEntry("Schmidt", "S"), schmidt.public)
        await add(unit, counsellor_key, CounsellorEntry("Kaya", "K"), kaya.public)
    async with store.unit() as unit:
        chain, _ = await load_chain(unit.session)
    pins = [json.loads(entry.detail) for entry in chain if entry.action == "counsellor added"]
    assert [pin["counsellor"] for pin in pins] == ["Berger", "Schmidt", "Kaya"]
    assert pins[2]["fingerprint"] == kaya.public.fingerprint()

    attacker = PrivateKey.generate()
    await _sql(
        store,
        "UPDATE counsellors SET public_key = :key WHERE name = 'Kaya'",
        key=attacker.public_key().to_bytes(),
    )
    # Revoking Schmidt seals the new team key to everyone left, Kaya's stored key included.
    with pytest.raises(KeyBindingError, match="not the one recorded when they were added"):
        async with store.unit() as unit:
            await revoke(unit, counsellor_key, "Schmidt")
    reference = await _new_case(store)
    async with store.unit() as unit:  # nothing was rotated: Schmidt still opens cases
        opened, _ = await open_case(unit, schmidt, reference)
    assert opened.intake == {"description": CONTENT}


async def test_item_04_keys_from_before_bindings_are_bound_once_at_the_first_start(
    store: Store, counsellor_key: UnlockedKey
) -> None:
    reference = await _new_case(store)
    await _sql(store, "UPDATE team_keys SET binding = NULL")  # as migration 0006 leaves them
    await _sql(store, "UPDATE cases SET key_binding = NULL")

    await secret_check.confirm(store, "the test secret")
    async with store.unit() as unit:
        await unit.add_item(reference, "message", {"from": "official", "text": CONTENT})
        chain, _ = await load_chain(unit.session)
    assert (chain[-1].action, json.loads(chain[-1].detail)) == (
        "server check set",
        {"keys_bound": 2},
    )
    await _new_case(store, "official-2")

    await _sql(store, "UPDATE cases SET key_binding = NULL")  # later, emptying is refused
    await secret_check.confirm(store, "the test secret")
    with pytest.raises(KeyBindingError):
        async with store.unit() as unit:
            await unit.add_item(reference, "message", {"from": "official", "text": CONTENT})


# -- item 8: the server secret --------------------------------------------------------------------


async def test_item_08_a_fresh_database_gets_a_new_secret(
    database_url: str, tmp_path: Path
) -> None:
    config = config_for(database_url, tmp_path)
    assert not config.storage.secret_path.exists()
    async with open_app(config):
        pass
    assert config.storage.secret_path.stat().st_mode & 0o777 == 0o600
    async with open_app(config):  # and the next start accepts it
        pass


async def test_item_08_a_missing_server_secret_is_not_replaced(
    database_url: str, tmp_path: Path, counsellor_key: UnlockedKey
) -> None:
    config = config_for(database_url, tmp_path)
    async with open_app(config) as app, app.store.unit() as unit:
        await bootstrap(unit, CounsellorEntry("Berger", "A. Berger"), counsellor_key.public)
    path = config.storage.secret_path
    path.unlink()
    with pytest.raises(Exception, match=f"{path} is missing.*restore {path} from your backup"):
        async with open_app(config):
            pass
    assert not path.exists()


async def test_item_08_a_different_server_secret_is_refused(
    database_url: str, tmp_path: Path, counsellor_key: UnlockedKey
) -> None:
    config = config_for(database_url, tmp_path)
    async with open_app(config) as app:
        await _new_conversation(app.store)
    path = config.storage.secret_path
    path.write_text(base64.b64encode(secrets.token_bytes(32)).decode() + "\n", encoding="ascii")
    with pytest.raises(Exception, match=f"{path} does not belong to this database"):
        async with open_app(config):
            pass


async def _new_conversation(store: Store) -> None:
    async with store.unit() as unit:
        await unit.save("sender-1", "console", "address", IntakeState(language="de", step="role"))


async def test_item_08_a_database_from_before_check_values_is_tested_against_its_data(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`store` was written with the fixture's secret and has no check value yet (as after
    migration 0006): another secret is refused, the right one is recorded."""
    await _new_case(store)
    config = config_for(store.database.url.render_as_string(hide_password=False), tmp_path)
    monkeypatch.setenv("LOTSE_SERVER_SECRET", base64.b64encode(secrets.token_bytes(32)).decode())
    with pytest.raises(Exception, match="LOTSE_SERVER_SECRET does not belong to this database"):
        async with open_app(config):
            pass
    monkeypatch.setenv("LOTSE_SERVER_SECRET", base64.b64encode(b"\x07" * 32).decode())
    async with open_app(config) as app, app.store.unit() as unit:
        chain, _ = await load_chain(unit.session)
    assert chain[-1].action == "server check set"


def test_item_08_the_command_line_names_the_file_and_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    assert main(["db", "upgrade", "--data-dir", str(data)]) == 0
    (data / "server.secret").unlink()
    capsys.readouterr()
    assert main(["cases", "list", "--data-dir", str(data)]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert f"{data / 'server.secret'} is missing" in error and "restore" in error
    assert not (data / "server.secret").exists()


# -- item 10: read commands on a database that does not exist -----------------------------------


@pytest.mark.parametrize(
    "command",
    [["audit", "verify"], ["cases", "list"], ["purge"], ["counsellor", "list"]],
)
def test_item_10_read_commands_refuse_a_data_dir_that_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    typo = tmp_path / "lotse-dmeo"
    assert main([*command, "--data-dir", str(typo)]) == 1
    error = capsys.readouterr().err
    assert f"there is no Lotse database at {typo / 'lotse.db'}" in error
    assert "intact" not in error
    assert not typo.exists()


@pytest.mark.postgres
async def test_item_10_read_commands_refuse_a_postgresql_database_without_lotse(
    postgres_admin_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    import asyncpg

    from tests.conftest import _async_url, _create_database, _drop_database

    name = await _create_database(postgres_admin_url)
    try:
        config = tmp_path / "lotse.toml"
        config.write_text(
            f'[storage]\nurl = "{_async_url(postgres_admin_url, name)}"\n'
            f'data_dir = "{tmp_path / "data"}"\n',
            encoding="utf-8",
        )
        code = await asyncio.to_thread(main, ["audit", "verify", "--config", str(config)])
        assert code == 1
        assert "there is no Lotse database" in capsys.readouterr().err
        connection = await asyncpg.connect(postgres_admin_url.rsplit("/", 1)[0] + f"/{name}")
        try:
            tables = await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname='public'"
            )
        finally:
            await connection.close()
        assert tables == []
    finally:
        await _drop_database(postgres_admin_url, name)
