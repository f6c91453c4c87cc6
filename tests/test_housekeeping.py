"""The daily retention job, and `lotse run` that keeps it going."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import update

from bot.config import CounsellingConfig
from bot.housekeeping import DAY, purge_daily
from storage.models import Case
from storage.repository import Store
from tests.conftest import ROOT


async def test_purge_runs_now_and_then_every_day_and_survives_a_failure(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with store.unit() as unit:
        old = await unit.create_case("s", "console", False, {}, [])
        await unit.session.execute(
            update(Case).values(status="closed", closed_at=unit.now - dt.timedelta(days=400))
        )
    sleeps: list[float] = []
    runs = 0
    real_purge = store.unit

    def flaky_unit():  # the second night the database is away
        nonlocal runs
        runs += 1
        if runs == 2:
            raise ConnectionError("database away")
        return real_purge()

    monkeypatch.setattr(store, "unit", flaky_unit)

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await purge_daily(store, CounsellingConfig(retention_days=180), sleep=sleep)
    assert sleeps == [DAY, DAY, DAY]
    assert runs == 3
    assert "the retention job failed: ConnectionError" in caplog.text
    assert "database away" not in caplog.text
    monkeypatch.undo()
    async with store.unit() as unit:
        assert await unit.case(old) is None


def _configured(tmp_path: Path, extra: str = "") -> Path:
    config = tmp_path / "lotse.toml"
    config.write_text(
        f'[storage]\nurl = "sqlite+aiosqlite:///data/lotse.db"\ndata_dir = "data"\n{extra}',
        encoding="utf-8",
    )
    return config


def _lotse(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *arguments],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_run_refuses_to_start_without_a_counsellor_key(tmp_path: Path) -> None:
    result = _lotse("run", "--config", str(_configured(tmp_path)))
    assert result.returncode == 1
    assert "lotse counsellor add NAME --public-key FILE --first" in result.stderr
    assert "Traceback" not in result.stderr


def with_first_counsellor(tmp_path: Path, config: Path) -> None:
    """A key pair and the first counsellor, so `lotse run` can seal cases."""
    env = {"LOTSE_PASSPHRASE": "passphrase-123"}
    assert _lotse("keys", "generate", "--out", str(tmp_path / "b.key"), env=env).returncode == 0
    added = _lotse(
        "counsellor", "add", "B", "--public-key", str(tmp_path / "b.key.pub"), "--first",
        "--config", str(config),
    )  # fmt: skip
    assert added.returncode == 0, added.stderr


@pytest.mark.slow
def test_run_purges_at_start_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    config = _configured(tmp_path)
    with_first_counsellor(tmp_path, config)
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "-v", "run", "--config", str(config)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    log = ""
    assert process.stderr is not None
    while "retention:" not in log and time.monotonic() < deadline:
        log += process.stderr.readline()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert "retention: 0 case(s)" in log
