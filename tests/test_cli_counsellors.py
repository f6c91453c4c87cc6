"""The key commands as an operator and counsellors use them, end to end through `lotse`."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main


@pytest.fixture
def lotse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    data = tmp_path / "data"

    def run(*arguments: str, passphrase: str = "passphrase-123") -> tuple[int, str, str]:
        monkeypatch.setenv("LOTSE_PASSPHRASE", passphrase)
        needs_data = arguments[0] in ("counsellor", "cases", "audit", "purge")
        code = main([*arguments, "--data-dir", str(data)] if needs_data else list(arguments))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_bootstrap_add_list_revoke(lotse, tmp_path: Path) -> None:
    keys = {name: tmp_path / f"{name}.key" for name in ("berger", "kaya", "lutz")}
    for name, path in keys.items():
        assert lotse("keys", "generate", "--out", str(path), "--name", name)[0] == 0

    code, out, err = lotse(
        "counsellor", "add", "Berger", "--public-key", f"{keys['berger']}.pub", "--first"
    )
    assert code == 0, err
    assert "added Berger" in out
    code, _, err = lotse(
        "counsellor", "add", "Kaya", "--public-key", f"{keys['kaya']}.pub", "--first"
    )
    assert code == 1
    assert "counsellors exist already" in err
    code, _, err = lotse(
        "counsellor", "add", "Kaya", "--public-key", f"{keys['kaya']}.pub", "--by",
        str(keys["berger"]), "--display-name", "Frau Kaya", "--matrix-id", "@kaya:example.org",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = lotse(
        "counsellor",
        "add",
        "Lutz",
        "--public-key",
        f"{keys['lutz']}.pub",
        "--by",
        str(keys["lutz"]),
    )
    assert code == 1
    assert "belongs to no counsellor" in err

    code, out, _ = lotse("counsellor", "list")
    assert code == 0
    assert "Berger" in out and "Kaya" in out and "'Frau Kaya'" in out and "@kaya:example.org" in out

    code, out, err = lotse("counsellor", "revoke", "Kaya", "--by", str(keys["berger"]))
    assert code == 0, err
    assert "revoked Kaya" in out
    code, out, _ = lotse("counsellor", "list")
    assert "revoked" in out

    code, out, _ = lotse("audit", "verify")
    assert code == 0
    assert "intact" in out


def test_adding_needs_by_or_first(lotse, tmp_path: Path) -> None:
    key = tmp_path / "a.key"
    lotse("keys", "generate", "--out", str(key))
    code, _, err = lotse("counsellor", "add", "A", "--public-key", f"{key}.pub")
    assert code == 1
    assert "--by KEYFILE" in err and "--first" in err


def _keys(lotse, tmp_path: Path, *names: str) -> dict[str, Path]:
    keys = {name: tmp_path / f"{name}.key" for name in names}
    for path in keys.values():
        assert lotse("keys", "generate", "--out", str(path))[0] == 0
    return keys


def test_several_handles_are_kept_and_listed(lotse, tmp_path: Path) -> None:
    keys = _keys(lotse, tmp_path, "berger", "kaya")
    code, _, err = lotse(
        "counsellor", "add", "Berger", "--public-key", f"{keys['berger']}.pub", "--first",
        "--handle", "telegram:123456789", "--handle", "matrix:@berger:example.org",
        "--handle", "console:A. Berger",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = lotse(
        "counsellor", "add", "Kaya", "--public-key", f"{keys['kaya']}.pub",
        "--by", str(keys["berger"]), "--telegram-id", "0042", "--matrix-id", "@kaya:example.org",
    )  # fmt: skip
    assert code == 0, err

    code, out, _ = lotse("counsellor", "list")
    assert code == 0
    berger, kaya = out.splitlines()
    assert berger.startswith("Berger") and berger.endswith(
        "console:A. Berger, matrix:@berger:example.org, telegram:123456789"
    )
    assert kaya.startswith("Kaya") and kaya.endswith("matrix:@kaya:example.org, telegram:42")


def test_malformed_handles_are_named_and_nothing_is_added(lotse, tmp_path: Path) -> None:
    key = _keys(lotse, tmp_path, "berger")["berger"]
    for arguments, expected in [
        (["--handle", "telegram:12ab"], "'12ab' is not a Telegram user id"),
        (["--handle", "telegram:-5"], "'-5' is not a Telegram user id"),
        (["--telegram-id", "@berger"], "--telegram-id '@berger': '@berger' is not a Telegram"),
        (["--handle", "matrix:berger"], "'berger' is not a Matrix user id (@name:server"),
        (["--matrix-id", "@berger"], "--matrix-id '@berger': '@berger' is not a Matrix user id"),
        (["--handle", "matrix:@ber ger:example.org"], "'@ber ger:example.org' is not a Matrix"),
        (["--handle", "signal:+4917012345"], "unknown channel 'signal'"),
        (["--handle", "123456789"], "--handle '123456789': write CHANNEL:ID"),
        (["--handle", "telegram:"], "--handle 'telegram:': the id must have 1 to 255 characters"),
        (
            ["--handle", "telegram:1", "--telegram-id", "2"],
            "two telegram handles given (1, 2); a counsellor has one per channel",
        ),
    ]:
        code, out, err = lotse(
            "counsellor", "add", "Berger", "--public-key", f"{key}.pub", "--first", *arguments
        )
        assert code == 1, arguments
        assert expected in err, (arguments, err)
        assert "Traceback" not in err and out == ""
    code, out, _ = lotse("counsellor", "list")
    assert "no counsellors yet" in out


def test_a_handle_belongs_to_one_active_counsellor(lotse, tmp_path: Path) -> None:
    keys = _keys(lotse, tmp_path, "berger", "kaya", "lutz")
    berger = ["--public-key", f"{keys['berger']}.pub", "--first"]
    assert (
        lotse("counsellor", "add", "Berger", *berger, "--handle", "matrix:@b:example.org")[0] == 0
    )
    by = ["--by", str(keys["berger"])]
    code, _, err = lotse(
        "counsellor", "add", "Kaya", "--public-key", f"{keys['kaya']}.pub", *by,
        "--handle", "telegram:777", "--handle", "matrix:@b:example.org",
    )  # fmt: skip
    assert code == 1
    assert "the handle matrix:@b:example.org belongs to 'Berger' already" in err
    code, _, err = lotse(
        "counsellor", "add", "Kaya", "--public-key", f"{keys['kaya']}.pub", *by,
        "--telegram-id", "777",
    )  # fmt: skip
    assert code == 0, err

    # A revoked counsellor's account may be given to someone else.
    assert lotse("counsellor", "revoke", "Kaya", *by)[0] == 0
    code, _, err = lotse(
        "counsellor", "add", "Lutz", "--public-key", f"{keys['lutz']}.pub", *by,
        "--handle", "telegram:777",
    )  # fmt: skip
    assert code == 0, err
    code, out, _ = lotse("counsellor", "list")
    [kaya] = [line for line in out.splitlines() if line.startswith("Kaya")]
    [lutz] = [line for line in out.splitlines() if line.startswith("Lutz")]
    assert "revoked" in kaya and "telegram" not in kaya
    assert lutz.endswith("telegram:777")
