"""The configuration: one typed object, and errors that name the key and what is expected."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from bot.cli import main
from bot.config import Config, ConfigError, config_from_dict, load_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.toml"


def _problems(raw: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config_from_dict(raw, Path("/srv/lotse"))
    return [str(problem) for problem in caught.value.problems]


def _minimal(**sections: object) -> dict[str, object]:
    return {"storage": {"url": "sqlite+aiosqlite:///data/lotse.db", "data_dir": "data"}, **sections}


def test_example_is_valid_and_paths_are_relative_to_it() -> None:
    config = load_config(EXAMPLE)
    assert config.storage.data_dir == ROOT / "lotse-data"
    assert config.storage.url == f"sqlite+aiosqlite:///{ROOT / 'lotse-data/lotse.db'}"
    assert config.storage.secret_path == ROOT / "lotse-data" / "server.secret"


def _keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys |= _keys(annotation, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def test_example_documents_every_key_the_program_reads() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    sections = dict(
        re.findall(r"^\[(\w+)\]\n(.*?)(?=^\[|\Z)", text, flags=re.MULTILINE | re.DOTALL)
    )
    for key in sorted(_keys(Config)):
        section, name = key.split(".", 1)
        assert section in sections, f"[{section}] is missing from config.example.toml"
        assert re.search(rf"^#?\s*{name}\s*=", sections[section], re.MULTILINE), (
            f"{key} is not documented in config.example.toml"
        )


def test_example_parses_as_toml_with_only_known_sections() -> None:
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert set(raw) <= set(Config.model_fields)


def test_missing_required_key_is_named() -> None:
    assert _problems({"storage": {"data_dir": "x"}}) == ["storage.url: is required but missing"]
    assert _problems({}) == ["storage: is required but missing"]


def test_unknown_key_is_named() -> None:
    assert _problems(_minimal(counselling={"retention_dayz": 3})) == [
        "counselling.retention_dayz: is not a known key"
    ]


def test_wrong_type_is_named_with_what_was_given() -> None:
    [problem] = _problems(_minimal(counselling={"retention_days": "lots"}))
    assert problem.startswith("counselling.retention_days: Input should be a valid integer")
    assert "'lots'" in problem


def test_secret_in_file_is_refused_with_the_right_key_to_use() -> None:
    [problem] = _problems(_minimal(telegram={"token": "123:abc"}))
    assert problem.startswith("telegram.token:")
    assert "token_env" in problem
    assert "123:abc" not in problem


def test_bad_values_explain_what_is_expected() -> None:
    problems = _problems(
        {
            "storage": {"url": "mysql://x", "data_dir": "d"},
            "telegram": {"mode": "push"},
            "counselling": {"hours": "weekdays", "timezone": "Mars/Olympus"},
            "matrix": {"enabled": True, "homeserver": "matrix.example.org", "user_id": "@a:b"},
        }
    )
    text = "\n".join(problems)
    assert "storage.url: use sqlite+aiosqlite" in text
    assert "telegram.mode: Input should be 'polling' or 'webhook'" in text
    assert "counselling.hours: cannot read 'weekdays'" in text
    assert "counselling.timezone: unknown time zone 'Mars/Olympus'" in text
    assert "matrix: homeserver must be an http(s) URL" in text


def test_cli_config_check_reports_and_exits_nonzero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "config.toml"
    broken.write_text('[storage]\nurl = "sqlite+aiosqlite:///x.db"\n', encoding="utf-8")
    assert main(["config", "check", str(broken)]) == 1
    error = capsys.readouterr().err
    assert "storage.data_dir: is required but missing" in error
    assert "Traceback" not in error
    assert main(["config", "check", str(EXAMPLE)]) == 0


def test_missing_file_and_broken_toml_are_explained(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[storage\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(broken)


def test_telegram_keys_and_the_bot_api_root() -> None:
    config = config_from_dict(
        _minimal(
            telegram={
                "enabled": True,
                "api_base_url": "http://127.0.0.1:8081/",
                "mode": "webhook",
                "public_url": "https://lotse.example.org",
                "max_file_mb": 10,
            }
        ),
        Path("."),
    )
    assert config.telegram.base_url == "http://127.0.0.1:8081/bot"
    assert config.telegram.base_file_url == "http://127.0.0.1:8081/file/bot"
    assert config.telegram.max_file_mb == 10
    assert config_from_dict(_minimal(), Path(".")).telegram.base_url is None
    [problem] = _problems(_minimal(telegram={"api_base_url": "127.0.0.1:8081"}))
    assert problem.startswith("telegram.api_base_url: must be an http(s) URL")
    [problem] = _problems(_minimal(telegram={"enabled": True, "mode": "webhook"}))
    assert "public_url must be the https URL Telegram posts to" in problem
