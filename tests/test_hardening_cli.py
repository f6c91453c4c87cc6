"""Issue 11 (8/10 Hardening), items 11, 12 and 16: what an operator meets on the command line.

Errors name the file and what to do (never "unexpected FileExistsError"), `config
check` refuses what `run` refuses, and files and folders that hold keys or case
records are private.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bot.app import demo_config, open_app
from bot.cli import main
from storage.keyfile import KeyFileError, read_public_key, unlock, write_key_pair
from storage.keyring import CounsellorEntry, bootstrap
from tests.conftest import ROOT

PASSPHRASE = "eine lange Passphrase"


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOTSE_SERVER_SECRET", raising=False)
    monkeypatch.delenv("LOTSE_CONFIG", raising=False)
    monkeypatch.setenv("LOTSE_PASSPHRASE", PASSPHRASE)


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    assert "unexpected" not in error and "Traceback" not in error
    assert "if the database is involved" not in error  # no misleading database hint
    return error.strip()


@pytest.fixture
def case_with_key(tmp_path: Path) -> tuple[Path, Path, str]:
    """A demo data folder with one case, and the key file of the counsellor who can open it."""
    data, key = tmp_path / "data", tmp_path / "berger.key"
    write_key_pair(key, "Berger", PASSPHRASE)

    async def build() -> str:
        async with open_app(demo_config(data)) as app:
            async with app.store.unit() as unit:
                public = read_public_key(key.with_name("berger.key.pub")).key
                await bootstrap(unit, CounsellorEntry("Berger", "A. Berger"), public)
            async with app.store.unit() as unit:
                return await unit.create_case("official", "console", False, {}, [])

    return data, key, asyncio.run(build())


# -- item 11: errors name the file and what to do -------------------------------------------------


def test_item_11_export_into_an_existing_folder_is_a_clear_error(
    case_with_key: tuple[Path, Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, key, reference = case_with_key
    out = tmp_path / "export"
    (out / reference).mkdir(parents=True)
    arguments = ["cases", "export", reference, "--key", str(key), "--out", str(out)]
    capsys.readouterr()
    assert main([*arguments, "--data-dir", str(data)]) == 1
    assert one_line_error(capsys) == (
        f"lotse: {out / reference} exists already; choose another --out or move it away"
    )


def test_item_11_a_data_dir_that_is_a_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_folder = tmp_path / "passwd"
    not_a_folder.write_text("root:x:0:0::/root:/bin/sh\n")
    assert main(["db", "upgrade", "--data-dir", str(not_a_folder)]) == 1
    assert f"the data folder {not_a_folder} is a file, not a folder" in one_line_error(capsys)
    assert main(["cases", "list", "--data-dir", str(not_a_folder)]) == 1
    assert str(not_a_folder) in one_line_error(capsys)


def test_item_11_a_binary_configuration_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    binary = tmp_path / "lotse.toml"
    binary.write_bytes(bytes(range(256)) * 4)
    assert main(["config", "check", str(binary)]) == 1
    error = capsys.readouterr().err
    assert f"{binary}: the configuration has 1 problem(s)" in error
    assert "file: is not a text file" in error
    assert "unexpected" not in error


def test_item_11_a_binary_server_secret_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    secret = data / "server.secret"
    secret.write_bytes(bytes(range(128, 256)))
    secret.chmod(0o600)
    assert main(["db", "upgrade", "--data-dir", str(data)]) == 1
    assert f"{secret} cannot be read as a server secret" in one_line_error(capsys)


@pytest.mark.parametrize(
    ("setting", "value"),
    [("lanes", 0), ("memory_kib", 2**40), ("iterations", 1_000_000), ("memory_kib", 8)],
)
def test_item_11_key_derivation_settings_in_a_key_file_are_bounded(
    case_with_key: tuple[Path, Path, str], setting: str, value: int
) -> None:
    data, key, reference = case_with_key
    document = json.loads(key.read_text())
    document["kdf"][setting] = value
    key.write_text(json.dumps(document))
    command = ["cases", "show", reference, "--key", str(key), "--data-dir", str(data)]
    result = subprocess.run(  # a process of its own: today's code hangs or runs out of memory
        [sys.executable, "-m", "bot", *command],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "LOTSE_PASSPHRASE": PASSPHRASE},
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"lotse: {key}: the key derivation setting {setting} = {value} lies outside" in (
        result.stderr
    )
    assert "lotse keys generate" in result.stderr
    assert "Kanarie" not in result.stdout and result.stdout == ""


# -- item 12: one validation for `config check` and `run` -----------------------------------------


def _configuration(folder: Path, extra: str) -> Path:
    path = folder / "lotse.toml"
    path.write_text(
        f'[storage]\nurl = "sqlite+aiosqlite:///data/lotse.db"\ndata_dir = "data"\n{extra}',
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("extra", "problems"),
    [
        (
            '[flow]\nquestionnaire = "fragen.toml"\n',
            ["flow.questionnaire: {folder}/fragen.toml does not exist or is not a file"],
        ),
        (
            '[staff]\nchannel = "matrix"\n',
            [
                "staff.channel: is 'matrix' but [matrix] is not enabled",
                "staff.room: is required when staff.channel is 'matrix'",
            ],
        ),
        (
            '[telegram]\nenabled = true\nmode = "webhook"\n',
            ["telegram: public_url must be the https URL Telegram posts to in webhook mode"],
        ),
    ],
)
def test_item_12_config_check_refuses_what_run_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, problems: list[str]
) -> None:
    config = _configuration(tmp_path, extra)
    expected = [problem.format(folder=tmp_path) for problem in problems]
    for command in (["config", "check", str(config)], ["run", "--config", str(config)]):
        capsys.readouterr()
        assert main(command) == 1, command
        error = capsys.readouterr().err
        assert f"the configuration has {len(expected)} problem(s)" in error
        for problem in expected:
            assert problem in error, (command, error)
    assert not (tmp_path / "data").exists()  # `run` stopped before touching anything


def test_item_12_config_check_reads_the_questionnaire_as_run_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "fragen.toml").write_text("[meta]\nthis is not a questionnaire\n")
    config = _configuration(tmp_path, '[flow]\nquestionnaire = "fragen.toml"\n')
    assert main(["config", "check", str(config)]) == 1
    assert "fragen.toml" in capsys.readouterr().err


# -- item 16: private files and folders -----------------------------------------------------------


def test_item_16_a_database_readable_by_others_is_made_private(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    assert main(["db", "upgrade", "--data-dir", str(data)]) == 0
    database = data / "lotse.db"
    database.chmod(0o644)
    assert main(["cases", "list", "--data-dir", str(data)]) == 0
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    assert "lotse.db was readable by others (mode 644); it is now 600" in caplog.messages


def test_item_16_a_private_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "berger.key"
    write_key_pair(key, "Berger", PASSPHRASE)
    key.chmod(0o644)
    with pytest.raises(KeyFileError, match=f"run: chmod 600 {key}"):
        unlock(key, PASSPHRASE)
    key.chmod(0o600)
    assert unlock(key, PASSPHRASE).name == "Berger"


def test_item_16_keys_generate_makes_private_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    previous = os.umask(0o022)
    try:
        out = tmp_path / "keys" / "berger" / "berger.key"
        assert main(["keys", "generate", "--out", str(out)]) == 0
    finally:
        os.umask(previous)
    for folder in (tmp_path / "keys", tmp_path / "keys" / "berger"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_item_16_cases_export_makes_private_folders(
    case_with_key: tuple[Path, Path, str], tmp_path: Path
) -> None:
    data, key, reference = case_with_key
    out = tmp_path / "exports" / "today"
    previous = os.umask(0o022)
    try:
        command = ["cases", "export", reference, "--key", str(key), "--out", str(out)]
        assert main([*command, "--data-dir", str(data)]) == 0
    finally:
        os.umask(previous)
    for folder in (tmp_path / "exports", out, out / reference):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    for path in (out / reference).rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) in (0o600, 0o700), path
