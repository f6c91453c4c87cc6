"""Shared fixtures: the shipped engine, databases (SQLite and the real PostgreSQL), the demo."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest

from bot import event_loop
from flows.engine import Engine
from storage.db import open_database, upgrade
from storage.keyfile import UnlockedKey
from storage.keyring import CounsellorEntry, bootstrap
from storage.repository import Store
from storage.sealing import PrivateKey
from storage.server_secret import ServerKeys
from tests.synapse import Synapse, free_port

# The tests run on the loop `lotse` runs on (bot/event_loop.py): pytest-asyncio's loops and
# every asyncio.run in the tests come from this policy.
asyncio.set_event_loop_policy(event_loop.policy())

if TYPE_CHECKING:
    from tests.telegram_emulator import Emulator
    from tests.telegram_harness import Lotse

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = os.environ.get(
    "LOTSE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def flow_engine() -> Engine:
    return Engine.from_files()


@pytest.fixture
def server_keys() -> ServerKeys:
    return ServerKeys.from_secret(b"\x07" * 32)


# -- PostgreSQL: found, or started, never silently skipped --------------------------------------


async def _postgres_answers() -> bool:
    try:
        connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await connection.close()
    return True


def _start_postgres() -> None:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    for version in versions:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
            check=False,
            capture_output=True,
            timeout=60,
        )


def _answers_now() -> bool:
    # The fixture may be requested from inside a running event loop: ask from a thread.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, _postgres_answers()).result()


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    if not _answers_now():
        _start_postgres()
        if not _answers_now():
            pytest.fail(
                f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL} and could not be started "
                "with pg_ctlcluster. Start it, or point LOTSE_TEST_POSTGRES at a server "
                "(trust auth, a database the user may create databases from)."
            )
    return POSTGRES_ADMIN_URL


async def _create_database(admin_url: str) -> str:
    name = f"lotse_test_{uuid.uuid4().hex[:12]}"
    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return name


def _async_url(admin_url: str, name: str) -> str:
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{name}"


async def _migrated_template(admin_url: str) -> str:
    name = await _create_database(admin_url)
    database = open_database(_async_url(admin_url, name))
    try:
        await upgrade(database)
    finally:
        await database.dispose()
    return name


@pytest.fixture(scope="session")
def postgres_database(postgres_admin_url: str) -> Iterator[str]:
    """One migrated database for the session; each test starts with its tables emptied."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        name = pool.submit(asyncio.run, _migrated_template(postgres_admin_url)).result()
    yield name
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, _drop_database(postgres_admin_url, name)).result()


async def _drop_database(admin_url: str, name: str) -> None:
    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database of each kind: SQLite in a temporary folder, or PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'lotse.db'}"
        return
    admin_url = request.getfixturevalue("postgres_admin_url")
    name = request.getfixturevalue("postgres_database")
    connection = await asyncpg.connect(admin_url.rsplit("/", 1)[0] + f"/{name}")
    try:
        tables = await connection.fetch(
            "SELECT tablename FROM pg_tables "
            "WHERE schemaname = 'public' AND tablename != 'alembic_version'"
        )
        listed = ", ".join(f'"{row["tablename"]}"' for row in tables)
        await connection.execute(f"TRUNCATE {listed} RESTART IDENTITY CASCADE")
    finally:
        await connection.close()
    yield _async_url(admin_url, name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def blank_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database of each kind without any table: for testing the migrations themselves."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'lotse.db'}"
        return
    admin_url = request.getfixturevalue("postgres_admin_url")
    name = await _create_database(admin_url)
    try:
        yield _async_url(admin_url, name)
    finally:
        await _drop_database(admin_url, name)


@pytest.fixture
async def empty_store(database_url: str, server_keys: ServerKeys) -> AsyncIterator[Store]:
    """A migrated database with no counsellor yet."""
    database = open_database(database_url)
    await upgrade(database)
    store = Store(database, server_keys)
    try:
        yield store
    finally:
        store.close()
        await database.dispose()


@pytest.fixture(scope="session")
def counsellor_key() -> UnlockedKey:
    """The first counsellor's key, as `lotse cases show` has it once unlocked."""
    return UnlockedKey("Berger", PrivateKey.generate())


@pytest.fixture
async def store(empty_store: Store, counsellor_key: UnlockedKey) -> Store:
    """A database whose first counsellor is set up, so cases can be sealed."""
    async with empty_store.unit() as unit:
        await bootstrap(unit, CounsellorEntry("Berger", "A. Berger"), counsellor_key.public)
    return empty_store


# -- the demo as a separate process --------------------------------------------------------------


def demo_command(data_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "bot", *extra, "demo", "--data-dir", str(data_dir)]


def run_demo(
    data_dir: Path, lines: list[str], *extra: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Feed `lines` to `lotse demo` on standard input (not a terminal) and wait for it to end."""
    return subprocess.run(
        demo_command(data_dir, *extra),
        input="".join(f"{line}\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


@pytest.fixture
def demo_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "demo-data"


# -- a real Matrix homeserver (tests/synapse.py), one per test session -------------------------


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synapse]:
    server = Synapse(tmp_path_factory.mktemp("synapse"), free_port(), secrets.token_hex(16))
    try:
        server.start()
    except Exception as error:
        pytest.fail(f"Synapse (dev dependency matrix-synapse) could not start: {error}")
    yield server
    server.stop()


# -- `lotse run` against the Telegram Bot API emulator ------------------------------------------
# (imported when used: tests.telegram_harness imports ROOT from this module)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    from tests.telegram_emulator import Emulator

    running = Emulator().start()
    yield running
    running.stop()


@pytest.fixture
def service(tmp_path: Path, emulator: Emulator) -> Iterator[Lotse]:
    """A configured `lotse run` whose one counsellor administers the staff group; not yet
    started, killed after the test."""
    from tests.telegram_harness import COUNSELLOR_ID, Lotse

    emulator.administrators = [COUNSELLOR_ID]
    emulator.member_count = 2
    configured = Lotse(tmp_path, emulator)
    configured.setup()
    yield configured
    if configured.process is not None:
        configured.stop(kill=True)
