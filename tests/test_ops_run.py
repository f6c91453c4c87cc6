"""`lotse run` with `[service] listen`: curl reaches /healthz and /metrics over 127.0.0.1,
and `--log-format json` writes one JSON object per line."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.logs import JsonFormatter
from bot.metrics import FAMILIES
from tests.conftest import ROOT
from tests.test_housekeeping import _configured, _lotse, with_first_counsellor

KEYS = {"time", "level", "logger", "message"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _curl(url: str) -> tuple[int, str]:
    result = subprocess.run(
        ["curl", "--silent", "--max-time", "20", "--write-out", "\n%{http_code}", url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    body, _, status = result.stdout.rpartition("\n")
    return int(status or 0), body


@pytest.mark.slow
def test_run_serves_health_and_metrics_and_logs_json_lines(tmp_path: Path) -> None:
    port = _free_port()
    config = _configured(tmp_path, f'[service]\nlisten = "127.0.0.1:{port}"\n')
    with_first_counsellor(tmp_path, config)
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "-v", "--log-format", "json", "run", "--config", str(config)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while not any("health and metrics on" in line for line in lines):
            assert time.monotonic() < deadline, lines
            line = process.stderr.readline()
            assert line, f"lotse run ended: {lines}"
            lines.append(line)

        status, body = _curl(f"http://127.0.0.1:{port}/healthz")
        # `lotse run` of this version has no staff room yet: the health check says so.
        assert status == 503, body
        assert body.splitlines()[0] == "unhealthy: staff room"
        assert "database: ok" in body.splitlines()

        status, body = _curl(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        names = {family.name for family in text_string_to_metric_families(body)}
        assert set(FAMILIES) <= names
        assert _curl(f"http://127.0.0.1:{port}/nothing")[0] == 404
    finally:
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=30)
    assert process.returncode == 0
    lines += rest.splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    assert records
    assert all(set(record) >= KEYS for record in records), records
    messages = [record["message"] for record in records]
    assert f"health and metrics on http://127.0.0.1:{port}/" in messages
    assert "stopped" in messages


def test_run_refuses_a_listen_address_it_cannot_bind(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = _configured(tmp_path, f'[service]\nlisten = "127.0.0.1:{port}"\n')
        with_first_counsellor(tmp_path, config)
        result = _lotse("run", "--config", str(config))
    assert result.returncode == 1
    assert "service.listen" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_json_log_line_has_the_event_and_no_exception_text() -> None:
    try:
        raise ValueError("Kanarie-Beschreibung: the official's words")
    except ValueError:
        record = logging.LogRecord(
            "bot.core", logging.ERROR, __file__, 1, "case %s submitted", ("L-2026-0001",),
            sys.exc_info(),
        )  # fmt: skip
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["level"] == "ERROR"
    assert parsed["logger"] == "bot.core"
    assert parsed["message"] == "case L-2026-0001 submitted"
    assert parsed["exception"] == "ValueError"
    assert parsed["time"].endswith("+00:00")
    assert "Kanarie" not in line
