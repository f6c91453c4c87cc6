"""The one configuration object, loaded from TOML and checked before anything starts.

Every problem is reported with the key it concerns and what is expected, e.g.
`counselling.retention_days: Input should be a valid integer (got 'lots')`.
Secrets never live in this file: it names the environment variables or files
that hold them. Relative paths are read relative to the configuration file.
"""

from __future__ import annotations

import os
import re
import tomllib
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bot.core.hours import OpeningHours
from bot.listen import parse_listen
from flows.problems import Problem, describe_validation_error

CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"  # set by systemd for a unit with LoadCredential=
SECRET_HINTS = {
    "token": "token_env",
    "password": "password_env",
    "secret": "secret_env or secret_file",
}


class ConfigError(Exception):
    """Start-up stops; `problems` name each offending key."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"{source}: the configuration has {len(problems)} problem(s):\n{lines}")


class StartupError(Exception):
    """A channel cannot start: its credentials are missing or refused (exit code 2)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class StorageConfig(_Section):
    url: str = Field(min_length=1)
    data_dir: Path
    secret_env: EnvName = "LOTSE_SERVER_SECRET"  # noqa: S105  (a variable name, not a secret)
    secret_file: Path | None = None  # default: server.secret inside data_dir
    max_file_mb: int = Field(default=20, ge=1, le=1024)  # per attachment, both directions
    # The name of a systemd credential (LoadCredential=NAME:/etc/lotse/server.secret):
    # read from $CREDENTIALS_DIRECTORY/NAME, never created. Takes the place of secret_file.
    secret_credential: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")

    @field_validator("url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite:///", "postgresql+asyncpg://")):
            raise ValueError(
                "use sqlite+aiosqlite:///path/lotse.db or postgresql+asyncpg://user@host/database"
            )
        return value

    @property
    def secret_path(self) -> Path:
        if self.secret_credential:
            directory = os.environ.get(CREDENTIALS_ENV) or f"${CREDENTIALS_ENV}"
            return Path(directory) / self.secret_credential
        return self.secret_file or self.data_dir / "server.secret"

    def credential_problem(self) -> str | None:
        """Why the systemd credential named by secret_credential cannot be read, if it cannot."""
        if self.secret_credential and not os.environ.get(CREDENTIALS_ENV):
            return (
                f"storage.secret_credential is {self.secret_credential!r}, but "
                f"${CREDENTIALS_ENV} is not set: start Lotse from its systemd unit "
                f"(LoadCredential={self.secret_credential}:/etc/lotse/server.secret), and run "
                "commands with deploy/lotse-admin as the README shows"
            )
        if self.secret_credential and not self.secret_path.is_file():
            return (
                f"the systemd credential {self.secret_path} is missing: check the unit's "
                f"LoadCredential={self.secret_credential}:FILE and that FILE exists "
                "(head -c 32 /dev/urandom | base64 makes one, for a new installation only)"
            )
        return None


WEBHOOK_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")  # what setWebhook accepts


class TelegramConfig(_Section):
    enabled: bool = False
    token_env: EnvName = "LOTSE_TELEGRAM_TOKEN"  # noqa: S105  (a variable name, not a secret)
    api_base_url: str = ""  # root of a self-hosted Bot API server; empty = Telegram's
    mode: Literal["polling", "webhook"] = "polling"
    listen: str = "127.0.0.1"  # webhook mode: where the local web server listens
    port: int = Field(default=8443, ge=1, le=65535)
    path: str = "telegram"
    public_url: str = ""  # webhook mode: the https URL Telegram posts to (without the path)
    secret_token_env: EnvName = "LOTSE_TELEGRAM_WEBHOOK_SECRET"  # noqa: S105  (a variable name)
    max_file_mb: int = Field(default=20, ge=1, le=2000)

    @field_validator("api_base_url")
    @classmethod
    def _http_root(cls, value: str) -> str:
        if value and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL like http://127.0.0.1:8081, or empty")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _webhook_complete(self) -> TelegramConfig:
        if self.enabled and self.mode == "webhook" and not self.public_url.startswith("http"):
            raise ValueError("public_url must be the https URL Telegram posts to in webhook mode")
        return self

    def webhook_secret_problem(self, environ: Mapping[str, str]) -> str | None:
        """In webhook mode, what is wrong with the secret token (else None): without it anyone
        who knows the address could post forged updates, even as a counsellor."""
        secret = environ.get(self.secret_token_env, "").strip()
        if self.mode != "webhook" or WEBHOOK_SECRET.match(secret):
            return None
        return (
            f"webhook mode needs a secret token in the environment variable "
            f"{self.secret_token_env} (telegram.secret_token_env): 1 to 256 characters "
            "of A-Z, a-z, 0-9, _ and -"
        )

    @property
    def base_url(self) -> str | None:
        return f"{self.api_base_url}/bot" if self.api_base_url else None

    @property
    def base_file_url(self) -> str | None:
        return f"{self.api_base_url}/file/bot" if self.api_base_url else None


class MatrixConfig(_Section):
    enabled: bool = False
    homeserver: str = ""
    user_id: str = ""
    password_env: EnvName = "LOTSE_MATRIX_PASSWORD"  # noqa: S105  (a variable name, not a secret)
    device_id: str = "LOTSEBOT"
    store_dir: Path = Path("lotse-data/matrix-store")
    max_file_mb: int = Field(default=20, ge=1, le=100)

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> MatrixConfig:
        if self.enabled:
            if not self.homeserver.startswith(("https://", "http://")):
                raise ValueError("homeserver must be an http(s) URL when matrix is enabled")
            if not self.user_id.startswith("@") or ":" not in self.user_id:
                raise ValueError("user_id must look like @lotse:example.org when matrix is enabled")
        return self


class StaffConfig(_Section):
    channel: Literal["console", "matrix", "telegram"] = "console"
    room: str = ""
    language: Literal["de", "en"] = "de"
    # How much of a new case is posted to a staff room that is not end-to-end
    # encrypted (a Telegram group): minimal = reference, urgency, Land, categories;
    # summary = every answer chosen from a list, no free text; full = everything.
    unencrypted_detail: Literal["minimal", "summary", "full"] = "summary"


class CounsellingConfig(_Section):
    timezone: str = "Europe/Berlin"
    hours: str = "Mo-Fr 09:00-16:00"
    escalate_urgent_after_minutes: int = Field(default=5, ge=1)
    retention_days: int = Field(default=180, ge=1)
    abandoned_intake_hours: int = Field(default=72, ge=1)
    reopen_days: int = Field(default=30, ge=0)  # an official may reopen a closed case this long

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(
                f"unknown time zone {value!r}; use a name like 'Europe/Berlin'"
            ) from error
        return value

    @field_validator("hours")
    @classmethod
    def _readable_hours(cls, value: str) -> str:
        OpeningHours.parse(value)  # raises ValueError naming the part it cannot read
        return value


class FlowConfig(_Section):
    questionnaire: Path | None = None  # default: the shipped flows/intake.toml
    offers: Path | None = None
    texts: Path | None = None
    safety: Path | None = None  # default: the shipped flows/safety.toml


class ServiceConfig(_Section):
    # Where `lotse run` serves GET /healthz and GET /metrics ("host:port"); empty: nowhere.
    listen: str = ""
    # On PostgreSQL, how long the active instance's lease lasts: it renews it four times
    # per length, and a standby takes over at most this long (plus 2 s) after it died.
    lease_seconds: float = Field(default=10.0, ge=3.0, le=60.0)

    @field_validator("listen")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        if value:
            parse_listen(value)  # raises ValueError saying what is wrong
        return value


class KeysConfig(_Section):
    # The signing fingerprint of the first counsellor (`lotse counsellor add --first` prints
    # the line). Set, new case keys are sealed only to a team key whose signature chain
    # leads to it (storage/chain.py). Keep the file read-only for the service.
    anchor: str = Field(default="", pattern=r"^[0-9a-fA-F ]*$")


class Config(_Section):
    storage: StorageConfig
    telegram: TelegramConfig = Field(default_factory=TelegramConfig)
    matrix: MatrixConfig = Field(default_factory=MatrixConfig)
    staff: StaffConfig = Field(default_factory=StaffConfig)
    counselling: CounsellingConfig = Field(default_factory=CounsellingConfig)
    flow: FlowConfig = Field(default_factory=FlowConfig)
    service: ServiceConfig = Field(default_factory=ServiceConfig)
    keys: KeysConfig = Field(default_factory=KeysConfig)

    def secret_from_environment(self) -> str | None:
        return os.environ.get(self.storage.secret_env) or None


def load_config(path: Path) -> Config:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ConfigError(str(path), [Problem("file", "does not exist")]) from error
    except OSError as error:
        raise ConfigError(
            str(path), [Problem("file", f"cannot be read: {error.strerror}")]
        ) from error
    except UnicodeDecodeError as error:
        raise ConfigError(
            str(path), [Problem("file", "is not a text file: a configuration is UTF-8 TOML")]
        ) from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(str(path), [Problem("file", f"is not valid TOML: {error}")]) from error
    return config_from_dict(raw, path.parent, str(path))


def config_from_dict(raw: dict[str, object], base: Path, source: str = "configuration") -> Config:
    try:
        config = Config.model_validate(raw)
    except ValidationError as error:
        problems = [_with_secret_hint(problem) for problem in describe_validation_error(error, raw)]
        raise ConfigError(source, problems) from None
    config = _resolve_paths(config, base)
    problems = _cross_checks(config)
    if problems:
        raise ConfigError(source, problems)
    return config


def _cross_checks(config: Config) -> list[Problem]:
    """What needs more than one key, or the disk: checked here so `config check` and `run` agree."""
    problems: list[Problem] = []
    staff = config.staff
    if staff.channel != "console":
        if not getattr(config, staff.channel).enabled:
            problems.append(
                Problem(
                    "staff.channel", f"is {staff.channel!r} but [{staff.channel}] is not enabled"
                )
            )
        if not staff.room:
            problems.append(
                Problem("staff.room", f"is required when staff.channel is {staff.channel!r}")
            )
    for name in ("questionnaire", "offers", "texts"):
        path = getattr(config.flow, name)
        if path is not None and not path.is_file():
            problems.append(Problem(f"flow.{name}", f"{path} does not exist or is not a file"))
    return problems


def _with_secret_hint(problem: Problem) -> Problem:
    key = problem.where.rsplit(".", 1)[-1]
    if problem.what == "is not a known key" and key in SECRET_HINTS:
        return Problem(
            problem.where,
            f"secrets do not belong in the configuration file; name an environment variable "
            f"with {SECRET_HINTS[key]} instead",
        )
    return problem


def _resolve(base: Path, path: Path | None) -> Path | None:
    if path is None:
        return None
    expanded = path.expanduser()
    return expanded if expanded.is_absolute() else base / expanded


def _resolve_paths(config: Config, base: Path) -> Config:
    storage = config.storage.model_copy(
        update={
            "data_dir": _resolve(base, config.storage.data_dir),
            "secret_file": _resolve(base, config.storage.secret_file),
            "url": _resolve_sqlite_url(config.storage.url, base),
        }
    )
    matrix = config.matrix.model_copy(update={"store_dir": _resolve(base, config.matrix.store_dir)})
    flow = config.flow.model_copy(
        update={
            name: _resolve(base, getattr(config.flow, name))
            for name in ("questionnaire", "offers", "texts")
        }
    )
    return config.model_copy(update={"storage": storage, "matrix": matrix, "flow": flow})


def _resolve_sqlite_url(url: str, base: Path) -> str:
    prefix = "sqlite+aiosqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/"):
        return prefix + str(base / url[len(prefix) :])
    return url
