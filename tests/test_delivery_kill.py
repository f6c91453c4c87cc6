"""A process killed between committing a step and delivering its reply: on restart the reply
goes out, once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def _run(data_dir: Path, mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.deliver_once", str(data_dir), mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _sent(data_dir: Path) -> list[str]:
    log = data_dir / "sent.jsonl"
    if not log.exists():
        return []
    return [json.loads(line)["text"] for line in log.read_text(encoding="utf-8").splitlines()]


def test_a_reply_committed_but_not_delivered_goes_out_once_after_a_kill(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    killed = _run(data_dir, "kill")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    before = _sent(data_dir)
    # the lane question and the privacy notice went out (the replies to /start and the lane)
    assert len(before) == 2, before
    assert "Was möchten Sie tun?" in before[0] and "einverstanden" in before[1].casefold()
    assert not any("Frage 1 von" in text for text in before)  # the reply to consent did not

    restarted = _run(data_dir, "restart")
    assert restarted.returncode == 0, restarted.stderr
    after = _sent(data_dir)[len(before) :]
    assert len([text for text in after if "Frage 1 von" in text]) == 1
    assert after[-1].startswith("Frage 1 von")

    again = _run(data_dir, "restart")
    assert again.returncode == 0, again.stderr
    assert _sent(data_dir)[len(before) + len(after) :] == []  # delivered means gone
