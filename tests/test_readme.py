"""Issue 11 item 18: every runnable README example runs verbatim, in order, on a fresh clone.

A runnable example is a fenced block of language `sh`; the others (`text`, `toml`) are
walk-throughs that need a configuration, a terminal or a server. The blocks run one
after another with bash in a fresh folder that holds only the README's context: the
installed `.venv` (as after `make demo`). `lotse` alone is not on the PATH there.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

RUNNABLE = re.compile(r"^```sh\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)


def runnable_examples(readme: str) -> list[str]:
    return [match["body"] for match in RUNNABLE.finditer(readme)]


def test_item_18_every_readme_example_runs_verbatim_in_order(tmp_path: Path) -> None:
    examples = runnable_examples((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(examples) >= 3
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / ".venv").symlink_to(ROOT / ".venv")
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LOTSE_", "VIRTUAL_ENV"))
    }
    environment["PATH"] = "/usr/local/bin:/usr/bin:/bin"  # no `lotse` without .venv/bin
    for number, example in enumerate(examples, start=1):
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", example],
            cwd=clone,
            env=environment,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        where = f"README example {number}:\n{example}\nstderr: {result.stderr[-2000:]}"
        assert result.returncode == 0, where
        assert "Traceback" not in result.stderr and "unexpected" not in result.stderr, where
        assert "gibt es nicht" not in result.stdout, where  # a reference that does not exist
        assert "Nicht möglich" not in result.stdout, where


def test_item_18_the_handoff_example_reaches_the_counsellor_and_back(tmp_path: Path) -> None:
    """The examples do what the README says, not merely exit 0."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    [handoff] = [example for example in runnable_examples(readme) if "/uebernehmen" in example]
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / ".venv").symlink_to(ROOT / ".venv")
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", handoff],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "bot> Beraterin Demo: Guten Tag, sind Sie in Sicherheit?" in result.stdout
    assert "Person: Ja, danke." in result.stdout
    assert "hat den Fall abgeschlossen" in result.stdout
