"""PostgreSQL backups through the server's own tools: pg_dump and pg_restore.

pg_dump reads the whole database inside one transaction snapshot, so its archive is
consistent while Lotse keeps writing. The custom format (-Fc) is compressed and is
read only by pg_restore. Both tools must be at least the server's major version
(pg_dump refuses a newer server; pg_restore cannot read archives of a newer pg_dump).
The password, if any, is handed over in PGPASSWORD, never on the command line.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.backup import BackupError, create_private

_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)")
_ERROR_LINES = 3


def _client_package(major: int) -> str:
    return f"postgresql-client-{major} (Debian/Ubuntu: apt-get install postgresql-client-{major})"


async def server_major(database: AsyncEngine) -> int:
    async with database.connect() as connection:
        number = await connection.scalar(text("SHOW server_version_num"))
    return int(str(number)) // 10000


async def _run(
    *command: str, env: dict[str, str], stdout: int | None = None
) -> tuple[int, str, str]:
    """Exit code, standard output (unless sent to `stdout`) and error output."""
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=stdout if stdout is not None else asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return (
        process.returncode,
        (out or b"").decode("utf-8", errors="replace"),
        err.decode("utf-8", errors="replace"),
    )


async def tool(name: str, database: AsyncEngine) -> str:
    """The path of pg_dump or pg_restore, checked against the server's version."""
    found = shutil.which(name)
    major = await server_major(database)
    if found is None:
        raise BackupError(
            f"{name} is not installed (or not in PATH): Lotse's PostgreSQL backups use the "
            f"server's own tools. Install {_client_package(major)}"
        )
    code, output, _ = await _run(found, "--version", env=dict(os.environ))
    version = _VERSION.search(output)
    if code != 0 or version is None:
        raise BackupError(f"{found} --version did not answer like {name}: install {name} again")
    if int(version.group(1)) < major:
        raise BackupError(
            f"{found} is version {version.group(1)} but the server runs PostgreSQL {major}: "
            f"{name} must be at least the server's version. Install {_client_package(major)} "
            "and put its bin folder first in PATH"
        )
    return found


def libpq_environment(url: str) -> dict[str, str]:
    """storage.url as the PG* variables the client tools read (no password on a command line)."""
    parsed = make_url(url)
    env = dict(os.environ)
    for variable, value in (
        ("PGHOST", parsed.host),
        ("PGPORT", parsed.port),
        ("PGUSER", parsed.username),
        ("PGPASSWORD", parsed.password),
        ("PGDATABASE", parsed.database),
    ):
        if value is not None:
            env[variable] = str(value)
    return env


def _last_lines(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return " / ".join(lines[-_ERROR_LINES:]) or "no message"


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


async def dump(database: AsyncEngine, url: str, out: Path) -> None:
    """pg_dump -Fc into the new file `out` (mode 0600); a failed dump leaves no file."""
    pg_dump = await tool("pg_dump", database)
    descriptor = create_private(out)
    try:
        code, _, output = await _run(
            pg_dump, "--format=custom", "--no-owner", "--no-privileges", "--no-password",
            env=libpq_environment(url), stdout=descriptor,
        )  # fmt: skip
    finally:
        os.close(descriptor)
    if code != 0:
        _remove(out)
        raise BackupError(f"pg_dump failed, no backup was written: {_last_lines(output)}")


async def revision(database: AsyncEngine, backup: Path) -> str:
    """The schema version in a pg_dump archive, after reading the whole archive once.

    Reading it all (into /dev/null) finds a cut-off or damaged archive before anything
    is written to the database.
    """
    pg_restore = await tool("pg_restore", database)
    env = dict(os.environ)
    damaged = f"{backup} is damaged or incomplete (cut off while copying?); use another backup"
    code, _, output = await _run(pg_restore, "--file=/dev/null", str(backup), env=env)
    if code != 0 and "unsupported version" in output:
        raise BackupError(
            f"{backup} was made by a newer pg_dump than {pg_restore} can read: install the "
            f"PostgreSQL client tools of that version. pg_restore says: {_last_lines(output)}"
        )
    if code != 0:
        raise BackupError(f"{damaged}. pg_restore says: {_last_lines(output)}")
    code, output, errors = await _run(
        pg_restore, "--data-only", "--table=alembic_version", "--file=-", str(backup), env=env
    )
    if code != 0:
        raise BackupError(f"{damaged}. pg_restore says: {_last_lines(errors)}")
    lines = output.splitlines()
    for number, line in enumerate(lines):
        if line.startswith("COPY ") and "alembic_version" in line and number + 1 < len(lines):
            value = lines[number + 1].strip()
            if value and value != "\\.":
                return value
    raise BackupError(f"{backup} has no schema version; it is not a Lotse backup")


async def restore(database: AsyncEngine, url: str, backup: Path, tables: list[str]) -> None:
    """Drop the (checked empty) tables of a migrated database, then pg_restore in one transaction.

    --single-transaction with --exit-on-error: a restore that fails half-way leaves the
    database as it was.
    """
    pg_restore = await tool("pg_restore", database)
    if tables:
        listed = ", ".join(f'"{table}"' for table in tables)
        async with database.begin() as connection:
            await connection.execute(text(f"DROP TABLE IF EXISTS {listed} CASCADE"))
    code, _, output = await _run(
        pg_restore, "--no-owner", "--no-privileges", "--no-password", "--single-transaction",
        "--exit-on-error", f"--dbname={make_url(url).database}", str(backup),
        env=libpq_environment(url),
    )  # fmt: skip
    if code != 0:
        raise BackupError(
            f"pg_restore failed and changed nothing in the database: {_last_lines(output)}"
        )
