"""`lotse run` on PostgreSQL when the database stops and comes back: `/healthz` names the
database (503) and is 200 again afterwards; cut off past its lease, the instance stops
acting, and takes the lease back and answers when the database returns. Then an intake
with a canary: `/metrics` of the process holds every family and no canary, reference,
pseudonym or Telegram id.

The database is "stopped" by cutting a proxy in front of the shared server
(tests/tcp_proxy.py): every connection is reset and new ones are refused, as when the
server is down, while other tests keep using the server itself.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.metrics import FAMILIES
from storage.server_secret import ServerKeys
from tests.conftest import POSTGRES_ADMIN_URL, _create_database, _drop_database
from tests.tcp_proxy import TcpProxy
from tests.telegram_emulator import Emulator, free_port
from tests.telegram_harness import COUNSELLOR_ID, Lotse
from tests.test_ops_run import _curl
from tests.test_telegram import answer_until, said_to

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
OFFICIAL = 918_273_645
CANARY = "Kanarie-Metriken-Beschreibung-7QW"
REFERENCE = re.compile(r"L-\d{4}-\d{4,}")


@pytest.fixture
def proxied_database(postgres_admin_url: str) -> Iterator[tuple[TcpProxy, str]]:
    """A fresh database reached through a proxy the test can cut, and its URL for Lotse."""
    name = asyncio.run(_create_database(postgres_admin_url))
    server = urlsplit(POSTGRES_ADMIN_URL)
    with TcpProxy(server.hostname or "127.0.0.1", server.port or 5432) as proxy:
        user = f"{server.username}@" if server.username else ""
        yield proxy, f"postgresql+asyncpg://{user}127.0.0.1:{proxy.port}/{name}"
    asyncio.run(_drop_database(postgres_admin_url, name))


def _health(port: int) -> tuple[int, list[str]]:
    status, body = _curl(f"http://127.0.0.1:{port}/healthz")
    return status, body.splitlines()


def _until_health(port: int, status: int, seconds: float = 30) -> list[str]:
    deadline = time.monotonic() + seconds
    while True:
        got, lines = _health(port)
        if got == status:
            return lines
        assert time.monotonic() < deadline, (got, lines)
        time.sleep(0.3)


def test_healthz_names_the_stopped_database_and_recovers_with_it(
    tmp_path: Path, proxied_database: tuple[TcpProxy, str]
) -> None:
    proxy, url = proxied_database
    emulator = Emulator().start()
    emulator.administrators = [COUNSELLOR_ID]
    port = free_port()
    lotse = Lotse(
        tmp_path,
        emulator,
        url=url,
        sections=f'[service]\nlisten = "127.0.0.1:{port}"\nlease_seconds = 3\n',
    )
    try:
        lotse.setup()
        lotse.start()
        lines = _until_health(port, 200)
        assert lines[0] == "ok" and "database: ok" in lines and "role: active" in lines

        proxy.cut()
        lines = _until_health(port, 503)
        failing = lines[0].removeprefix("unhealthy: ").split(", ")
        assert "database" in failing, lines
        assert any(line.startswith("database: unreachable (") for line in lines), lines
        # Cut off longer than its lease, it stops acting (and says so) but keeps running.
        _until_health_line(port, "role: standby")
        assert "this instance lost the lease" in lotse.log()
        lotse.assert_running()

        proxy.restore()
        lines = _until_health(port, 200, 60)
        assert "database: ok" in lines
        _until_health_line(port, "role: active")  # it took the lease back
        emulator.message(4711, "/start")
        said_to(emulator, 4711, "Guten Tag")
        lotse.assert_running()

        # A whole intake later, the metrics of the running process name no content, no
        # reference, no pseudonym and no Telegram id.
        emulator.message(OFFICIAL, "/start")
        said = answer_until(emulator, OFFICIAL, "Aktenzeichen", {"Bitte beschreiben": CANARY})
        references = set(REFERENCE.findall(" ".join(sent.text for sent in said)))
        assert references, "the intake reached no case: the scan would prove nothing"
        status, text = _curl(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        families = {family.name for family in text_string_to_metric_families(text)}
        assert set(FAMILIES) <= families
        secret = base64.b64decode((lotse.data_dir / "server.secret").read_text())
        pseudonym = ServerKeys.from_secret(secret).pseudonym("telegram", str(OFFICIAL))
        forbidden = [CANARY, str(OFFICIAL), pseudonym, *references]
        assert [value for value in forbidden if value in text] == []
        assert not REFERENCE.search(text)
    finally:
        if lotse.process is not None:
            lotse.stop(kill=True)
        emulator.stop()


def _until_health_line(port: int, wanted: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while wanted not in _health(port)[1]:
        assert time.monotonic() < deadline, f"{wanted!r} did not appear"
        time.sleep(0.3)
