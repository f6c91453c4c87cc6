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
