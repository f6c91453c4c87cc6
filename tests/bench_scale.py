"""Scale: memory and resume time with 10,000 and 100,000 open intakes.

The intakes are real: one state made by the real engine (an official who consented and
answered the first questions), encrypted per row with the server key exactly as
`Unit.save` does, and bulk-inserted (one statement per few thousand rows) so that
100,000 fit the budget. The resume runs in a fresh process, as after a restart: what
`lotse run` does at start (open and migrate the database, check the server secret,
look up the team key, build the core, start delivery), then 1,000 of those officials
write their next answer at once, until each has the reply. RSS is that process's.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import insert

from bot.app import demo_config, open_app
from bot.demo import demo_counsellor
from flows.messages import UserInput
from flows.state import IntakeState
from storage.keyring import current_team
from storage.models import Conversation
from tests.bench_results import ROOT, Results, percentile
from tests.bench_rig import ANSWERS, running_core

SECTION = "scale"
DONE = 5  # answers given before the restart; the next one is ANSWERS[DONE]
CHUNK = 5000


@dataclass(frozen=True)
class Sizes:
    intakes: tuple[int, ...] = (10_000, 100_000)
    resumed: int = 1000


def _memory_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process, Linux. Not getrusage's ru_maxrss: that
    keeps the peak of the parent it was forked from across exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise LookupError(field)


def _user(index: int) -> str:
    return f"p{index}"


async def populate(folder: Path, intakes: int) -> float:
    """`intakes` open intakes in a new demo database in `folder`; returns the seconds taken."""
    started = time.perf_counter()
    async with open_app(demo_config(folder)) as app:
        await demo_counsellor(app)
        state: IntakeState | None = None
        for answer in ANSWERS[:DONE]:
            state = app.engine.handle(state, UserInput(answer)).state
        assert state is not None and state.consented
        plain = state.to_bytes()
        keys, now = app.store.keys, app.store.clock()
        async with app.store.database.begin() as connection:
            for first in range(0, intakes, CHUNK):
                rows = []
                for index in range(first, min(intakes, first + CHUNK)):
                    sender = keys.pseudonym("bench", _user(index))
                    rows.append(
                        {
                            "sender_key": sender,
                            "channel": "bench",
                            "address": keys.encrypt(
                                f"chat-{_user(index)}".encode(), f"address:{sender}"
                            ),
                            "state": keys.encrypt(plain, f"state:{sender}"),
                            "created_at": now,
                            "updated_at": now,
                        }
                    )
                await connection.execute(insert(Conversation), rows)
    return time.perf_counter() - started


async def resume(folder: Path, resumed: int, launched: float) -> dict[str, float]:
    """In a fresh process: start as `lotse run` does, then `resumed` officials answer at once.

    `launched`: the wall-clock time the parent started this process."""
    started = time.perf_counter()
    async with running_core(folder, create=False) as rig:
        async with rig.app.store.unit() as unit:
            assert await current_team(unit.session) is not None
        ready = time.perf_counter() - started
        since_launch = time.time() - launched
        ready_rss = _memory_mb("VmRSS")
        latencies: list[float] = []
        failures = 0

        async def official(index: int) -> None:
            nonlocal failures
            sent = time.perf_counter()
            await rig.say(_user(index), ANSWERS[DONE], f"resume-{index}")
            if await rig.sink.wait(f"chat-{_user(index)}", 1):
                latencies.append(time.perf_counter() - sent)
            else:
                failures += 1

        burst = time.perf_counter()
        await asyncio.gather(*(official(index) for index in range(resumed)))
        answered = time.perf_counter() - burst
        answered_rss = _memory_mb("VmRSS")
    return {
        "ready": ready,
        "since_launch": since_launch,
        "ready_rss_mb": ready_rss,
        "answered_rss_mb": answered_rss,
        "answered": answered,
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
        "failures": failures,
        "peak_rss_mb": _memory_mb("VmHWM"),
    }


def run(results: Results, sizes: Sizes = Sizes()) -> None:
    results.sizes[SECTION] = {"intakes": sizes.intakes, "resumed": sizes.resumed}
    for intakes in sizes.intakes:
        with tempfile.TemporaryDirectory() as folder:
            made = asyncio.run(populate(Path(folder), intakes))
            size = sum(path.stat().st_size for path in Path(folder).glob("lotse.db*"))
            command = [sys.executable, "-m", "tests.bench_scale", folder, str(sizes.resumed)]
            child = subprocess.run(
                [*command, str(time.time())],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if child.returncode != 0:
                print(child.stderr[-3000:], file=sys.stderr)
                results.add(SECTION, f"{intakes:,} intakes: resume crashed", 1, "failures")
                continue
            got = json.loads(child.stdout.strip().splitlines()[-1])
            label = f"{intakes:,} intakes"
            note = f"populated in {made:.1f} s, database {size / 2**20:.0f} MiB"
            results.add(SECTION, f"{label}: start until ready", got["ready"], "s", note)
            launch = got["since_launch"]
            results.add(SECTION, f"{label}: process start until ready", launch, "s", "with imports")
            spread = f"p50 {got['p50']:.2f} s, p99 {got['p99']:.2f} s"
            answers = f"{label}: {sizes.resumed:,} first answers, all"
            results.add(SECTION, answers, got["answered"], "s", spread)
            results.add(SECTION, f"{label}: RSS when ready", got["ready_rss_mb"], "MB")
            rss = f"{label}: RSS after {sizes.resumed:,} answers"
            results.add(SECTION, rss, got["answered_rss_mb"], "MB")
            results.add(SECTION, f"{label}: peak RSS", got["peak_rss_mb"], "MB", "start included")
            results.add(SECTION, f"{label}: unanswered or apologies", got["failures"], "failures")


if __name__ == "__main__":
    if len(sys.argv) == 4:  # the resume, in its own process (see run)
        figures = asyncio.run(resume(Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
        print(json.dumps(figures))
    else:
        run(Results())
