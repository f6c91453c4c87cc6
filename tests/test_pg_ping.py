"""PostgreSQL: a pooled connection is pinged before use only after it rested.

asyncpg's ping is three round trips; under a burst a connection comes back to the pool
within milliseconds and goes out again without one. One that rested – through a server
restart, a cut link – is pinged, and a dead one is replaced before any work meets it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text

from storage import db
from storage.db import open_database

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]


async def test_a_rested_connection_is_pinged_and_a_dead_one_replaced(
    postgres_admin_url: str, postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_REST_SECONDS", 0.2)
    url = postgres_admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    database = open_database(f"{url}/{postgres_database}")
    dialect: Any = database.dialect
    pings: list[bool] = []
    real_ping = dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        try:
            answered: bool = real_ping(dbapi_connection)
        except Exception:
            pings.append(False)
            raise
        pings.append(answered)
        return answered

    dialect.do_ping = counted

    async def backend() -> int:
        async with database.connect() as connection:
            return int((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())

    try:
        first = await backend()  # a new connection: not pinged
        assert await backend() == first  # the same one at once: not pinged
        assert pings == []

        await asyncio.sleep(0.3)
        assert await backend() == first  # rested: pinged, alive, kept
        assert pings == [True]

        admin = await asyncpg.connect(postgres_admin_url)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", first)
        finally:
            await admin.close()
        await asyncio.sleep(0.3)
        replaced = await backend()  # the work never meets the dead connection
        assert replaced != first
        assert pings == [True, False]
    finally:
        await database.dispose()
