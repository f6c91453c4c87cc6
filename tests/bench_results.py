"""The bench's figures: one table printed, one JSON file written, each with the machine.

Every figure carries its section, a name, a value and a unit; the file adds what the
figures depend on (core count, Python, SQLAlchemy, python-telegram-bot, the Lotse git
revision) and the date, so two runs can be compared honestly. Failures are figures
too (an apology or a lost reply is counted, never hidden in a rate).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy
import telegram

from bot import event_loop

# Every section runs on the loop `lotse` runs on (bot/event_loop.py), the peer included:
# both sides of a ratio get the same loop.
asyncio.set_event_loop_policy(event_loop.policy())

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"


def percentile(values: list[float], share: float) -> float:
    """The value below which `share` of the values lie (nearest rank); 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def git_revision() -> str:
    try:
        found = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=10"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return "unknown"
    return found.stdout.strip() or "unknown"


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "sqlalchemy": sqlalchemy.__version__,
        "python-telegram-bot": telegram.__version__,
        "event loop": event_loop.name(),
        "lotse": git_revision(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@dataclass(frozen=True)
class Figure:
    section: str
    name: str
    value: float
    unit: str
    note: str = ""


@dataclass
class Results:
    figures: list[Figure] = field(default_factory=list)
    sizes: dict[str, Any] = field(default_factory=dict)

    def add(self, section: str, name: str, value: float, unit: str, note: str = "") -> None:
        figure = Figure(section, name, round(float(value), 4), unit, note)
        self.figures.append(figure)
        print(f"  {section:<16} {name:<44} {_shown(figure.value):>10} {unit:<12} {note}")

    def get(self, section: str, name: str) -> float:
        for figure in self.figures:
            if figure.section == section and figure.name == name:
                return figure.value
        raise KeyError(f"{section}: {name}")

    def failures(self) -> float:
        """Every figure that counts something that went wrong."""
        return sum(f.value for f in self.figures if f.unit in ("failures", "violations"))

    def table(self) -> str:
        lines = ["| section | figure | value | unit | note |", "| --- | --- | ---: | --- | --- |"]
        lines += [
            f"| {f.section} | {f.name} | {_shown(f.value)} | {f.unit} | {f.note} |"
            for f in self.figures
        ]
        return "\n".join(lines)

    def write(self, path: Path = RESULTS) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "machine": machine(),
            "sizes": self.sizes,
            "failures": self.failures(),
            "figures": [asdict(figure) for figure in self.figures],
        }
        path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
        return path


def _shown(value: float) -> str:
    if value == int(value) and abs(value) >= 10:
        return f"{int(value):,}"
    return f"{value:,.3g}" if abs(value) < 10 else f"{value:,.1f}"
