"""`lotse doctor`: what an operator gets wrong, one line per check with what to do.

It reads; it never creates a database or a secret and never contacts Telegram or
Matrix (their tokens are checked for presence only). Exit code 0 when every check
passes, 1 otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot.app import load_engine
from bot.config import Config, ConfigError, load_config
from flows.offers import DirectoryError
from flows.questionnaire import QuestionnaireError
from flows.texts import TextsError
from storage import secret_check
from storage.backup import head_revision, schema_relation
from storage.chain import ChainError, verify_team
from storage.db import DatabaseError, open_database
from storage.keyring import current_team
from storage.models import Counsellor, ServerCheck
from storage.server_secret import SecretError, ServerKeys, load_or_create_secret

MINIMUM_COUNSELLORS = 2


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str  # what was found; when not ok, what to do
    warning: bool = False  # ok, but weaker than it could be: not counted as a problem

    def line(self) -> str:
        mark = "WARN" if self.warning else "ok  " if self.ok else "FAIL"
        return f"{mark}  {self.name}: {self.detail}"


async def run_doctor(path: Path) -> int:
    checks = await diagnose(path)
    for check in checks:
        print(check.line())
    failed = sum(not check.ok for check in checks)
    print(f"{failed} problem(s) found" if failed else "everything checked is in order")
    return 1 if failed else 0


async def diagnose(path: Path) -> list[Check]:
    try:
        config = load_config(path)
        load_engine(config)
    except (ConfigError, QuestionnaireError, DirectoryError, TextsError) as error:
        problems = getattr(error, "problems", None) or [str(error)]
        found = "; ".join(str(problem) for problem in problems)
        return [
            Check("configuration", False, f"{found}. Fix it and run: lotse config check {path}"),
            Check("other checks", False, "not run: they need a valid configuration"),
        ]
    checks = [Check("configuration", True, f"{path} is valid")]
    checks += await _database_checks(config, path)
    checks += channel_checks(config)
    checks.append(staff_room_check(config))
    checks.append(anchor_check(config))
    return checks


def anchor_check(config: Config) -> Check:
    if config.keys.anchor:
        return Check("signature anchor", True, "[keys] anchor is set")
    return Check(
        "signature anchor",
        True,
        "no [keys] anchor: someone holding the database and the server secret could swap the "
        "team key unnoticed. Set it to the first counsellor's signing fingerprint "
        '(lotse keys generate printed it) in [keys] anchor = "..."',
        warning=True,
    )


def _is_file(path: Path) -> bool:
    return path.is_file()


async def _database_checks(config: Config, path: Path) -> list[Check]:
    url = make_url(config.storage.url)
    where = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite" and not _is_file(Path(url.database or "")):
        return [
            Check(
                "database",
                False,
                f"there is no database at {url.database}: create it with lotse db upgrade "
                f"--config {path}, or restore a backup with lotse restore FILE --config {path}",
            ),
            _secret_check(config, None, False),
        ]
    database = open_database(config.storage.url)
    try:
        try:
            revision = await _revision(database)
        except (OSError, SQLAlchemyError, DatabaseError) as error:
            return [
                Check(
                    "database",
                    False,
                    f"cannot reach {where} ({type(error).__name__}): check storage.url, that "
                    "the server runs and that this user may log in",
                )
            ]
        migrated = _migration_check(revision, path)
        if not migrated.ok:
            return [Check("database", True, f"{where} answers"), migrated]
        async with database.connect() as connection:
            stored = await connection.scalar(
                select(ServerCheck.secret_check).where(ServerCheck.id == 1)
            )
            active = await connection.scalar(
                select(func.count()).select_from(Counsellor).where(Counsellor.revoked_at.is_(None))
            )
        holds_data = await secret_check.holds_data(database)
        chain = await _chain_check(database, config.keys.anchor) if config.keys.anchor else []
    finally:
        await database.dispose()
    return [
        Check("database", True, f"{where} answers"),
        migrated,
        _secret_check(config, stored, holds_data),
        _counsellor_check(int(active or 0), path),
        *chain,
    ]


async def _chain_check(database: AsyncEngine, anchor: str) -> list[Check]:
    """With an anchor: would the current team key be accepted for the next case?"""
    async with AsyncSession(database) as session:
        team = await current_team(session)
        if team is None:
            return []
        try:
            await verify_team(session, team, anchor)
        except ChainError as error:
            return [Check("signature chain", False, str(error))]
    return [Check("signature chain", True, "the team key's signatures lead to the anchor")]


async def _revision(database: AsyncEngine) -> str | None:
    async with database.connect() as connection:
        if not await connection.run_sync(lambda sync: inspect(sync).has_table("alembic_version")):
            return None
        value = await connection.scalar(text("SELECT version_num FROM alembic_version"))
    return None if value is None else str(value)


def _migration_check(revision: str | None, path: Path) -> Check:
    head = head_revision()
    if revision is None:
        return Check(
            "schema",
            False,
            f"the database has no Lotse schema: run lotse db upgrade --config {path}",
        )
    relation = schema_relation(revision)
    if relation == "current":
        return Check("schema", True, f"migrated to the newest version ({head})")
    if relation == "older":
        return Check(
            "schema",
            False,
            f"version {revision}, this Lotse needs {head}: take a backup (lotse backup --out "
            f"FILE --config {path}), then run lotse db upgrade --config {path}",
        )
    return Check(
        "schema",
        False,
        f"version {revision} is newer than this Lotse knows ({head}): install the Lotse "
        "version that wrote it",
    )


def _secret_check(config: Config, stored: str | None, holds_data: bool) -> Check:
    name = "server secret"
    from_environment = config.secret_from_environment()
    problem = None if from_environment else config.storage.credential_problem()
    if problem:
        return Check(name, False, problem)
    where = f"${config.storage.secret_env}" if from_environment else str(config.storage.secret_path)
    if not from_environment and not config.storage.secret_path.exists() and not holds_data:
        return Check(
            name,
            not config.storage.secret_credential,
            f"{where} does not exist yet; the first start creates it (mode 600): back it up "
            "then, apart from the database",
        )
    try:
        secret = load_or_create_secret(
            config.storage.secret_path, from_environment, may_create=False
        )
    except SecretError as error:
        return Check(name, False, str(error))
    if stored is not None and ServerKeys.from_secret(secret).check_value != stored:
        return Check(
            name,
            False,
            f"{where} does not belong to this database (it was written with another server "
            "secret): put the right one from your backup in place",
        )
    return Check(name, True, f"{where} is private and belongs to this database")


def _counsellor_check(active: int, path: Path) -> Check:
    if active >= MINIMUM_COUNSELLORS:
        return Check("counsellors", True, f"{active} active counsellors")
    return Check(
        "counsellors",
        False,
        f"{active} active counsellor(s): with fewer than {MINIMUM_COUNSELLORS}, one lost key or "
        "passphrase locks every case away for good. Add one: lotse counsellor add NAME "
        f"--public-key FILE.pub --by YOUR.key --config {path}"
        if active
        else f"{active} active counsellors: no case can be sealed. Add the first: lotse "
        f"counsellor add NAME --public-key FILE.pub --first --config {path}, then a second",
    )


def channel_checks(config: Config) -> list[Check]:
    """Each enabled channel's credentials are in the environment (not contacted here)."""
    checks = []
    for name, variable in (
        ("telegram", config.telegram.token_env),
        ("matrix", config.matrix.password_env),
    ):
        if not getattr(config, name).enabled:
            continue
        if name == "telegram" and (problem := config.telegram.webhook_secret_problem(os.environ)):
            checks.append(Check("telegram channel", False, f"{problem} (lotse run will not start)"))
        elif os.environ.get(variable):
            checks.append(Check(f"{name} channel", True, f"${variable} is set"))
        else:
            checks.append(
                Check(
                    f"{name} channel",
                    False,
                    f"${variable} is empty or not set: put it in the environment file "
                    "(deploy/lotse.env.example shows how)",
                )
            )
    if not checks:
        checks.append(
            Check(
                "channels",
                False,
                "no channel is enabled, so no official can reach Lotse: enable [telegram] "
                "or [matrix]",
            )
        )
    return checks


def staff_room_check(config: Config) -> Check:
    staff = config.staff
    if staff.channel == "console":
        return Check(
            "staff room",
            False,
            "staff.channel is 'console', which exists only in lotse demo: set staff.channel "
            "to 'matrix' or 'telegram' and staff.room to the counsellors' room",
        )
    room = staff.room
    plausible = (
        room.startswith("!") and ":" in room
        if staff.channel == "matrix"
        else room.lstrip("-").isdigit()
    )
    if not plausible:
        example = "!abc:example.org" if staff.channel == "matrix" else "-1001234567890"
        return Check(
            "staff room",
            False,
            f"staff.room {room!r} is not a {staff.channel} room id (like {example})",
        )
    return Check("staff room", True, f"{staff.channel} room {room}")
