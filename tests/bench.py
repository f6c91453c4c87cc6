"""`make bench`: how fast the engine and the core are, printed as figures (never asserted).

.venv/bin/python -m tests.bench [--intakes N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import traceback
import tracemalloc
from pathlib import Path

from bot.app import demo_config, open_app
from bot.core.types import Inbound
from bot.demo import DEMO_PASSPHRASE, demo_counsellor
from flows.engine import Engine
from flows.messages import UserInput
from flows.state import IntakeState
from storage import queue
from storage.keyfile import unlock
from storage.keyring import CounsellorEntry, active_counsellors, add
from storage.models import Counsellor
from storage.sealing import PrivateKey
from tests import (
    bench_adapter,
    bench_crypto,
    bench_drain,
    bench_flood,
    bench_latency,
    bench_matrix,
    bench_ptb,
    bench_scale,
)
from tests.bench_results import Results
from tests.bench_rig import ANSWERS, running_core


def bench_engine(engine: Engine, rounds: int) -> None:
    timings: list[float] = []
    sizes: list[int] = []
    for _ in range(rounds):
        state: IntakeState | None = None
        for answer in ANSWERS:
            started = time.perf_counter()
            outcome = engine.handle(state, UserInput(answer))
            timings.append(time.perf_counter() - started)
            state = outcome.state
            if state is not None:
                sizes.append(len(state.to_bytes()))
    timings.sort()
    print(
        f"engine step (pure):        median {statistics.median(timings) * 1e6:8.0f} µs, "
        f"p99 {timings[int(len(timings) * 0.99)] * 1e6:8.0f} µs over {len(timings)} steps"
    )
    print(
        f"state size (JSON, plain):  median {statistics.median(sizes):8.0f} B,  max {max(sizes)} B"
    )


async def bench_core(intakes: int, folder: Path, answers: list[str] = ANSWERS) -> None:
    """Officials writing at once through the real core; apologies are counted as failures."""
    async with running_core(folder) as rig:
        core, sink = rig.core, rig.sink

        async def official(index: int) -> None:
            for number, answer in enumerate(answers):
                await core.handle(
                    Inbound("bench", f"user-{index}", f"chat-{index}", answer, f"{index}-{number}")
                )

        started = time.perf_counter()
        await asyncio.gather(*(official(index) for index in range(intakes)))
        await core.settle()
        elapsed = time.perf_counter() - started
        messages = intakes * len(answers)
        good = messages - sink.apologies
        print(
            f"core on SQLite (WAL, FULL): {good / elapsed:8.0f} answered messages/s, "
            f"{intakes} officials x {len(answers)} messages in {elapsed:.2f} s; "
            f"'technical error' replies: {sink.apologies} (failures)"
        )


async def bench_claims(cases: int, claimers: int, folder: Path) -> None:
    """Different counsellors racing for the same cases: how fast the queue hands them out."""
    async with open_app(demo_config(folder)) as app:
        key_file = await demo_counsellor(app)
        assert key_file is not None
        demo = unlock(key_file, DEMO_PASSPHRASE)
        async with app.store.unit() as unit:
            for index in range(1, claimers):
                entry = CounsellorEntry(f"c{index}", f"Counsellor {index}")
                await add(unit, demo, entry, PrivateKey.generate().public_key())
            counsellors = await active_counsellors(unit.session)
            references = [
                await unit.create_case(f"s{index}", "bench", index % 7 == 0, {}, [])
                for index in range(cases)
            ]
        won: list[str] = []
        refused: list[str] = []

        async def claimer(counsellor: Counsellor) -> None:
            for reference in references:
                try:
                    async with app.store.unit() as unit:
                        await queue.claim(unit, reference, counsellor)
                    won.append(reference)
                except queue.Refusal as refusal:
                    refused.append(refusal.key)

        started = time.perf_counter()
        await asyncio.gather(*(claimer(counsellor) for counsellor in counsellors))
        elapsed = time.perf_counter() - started
        attempts = cases * len(counsellors)
        once = len(won) == len(set(won)) == cases
        print(
            f"queue claims on SQLite:    {attempts / elapsed:8.0f} attempts/s, "
            f"{len(counsellors)} different counsellors x {cases} cases in {elapsed:.2f} s; "
            f"every case claimed exactly once: {once}; refusals: "
            + ", ".join(f"{key} {refused.count(key)}" for key in sorted(set(refused)))
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--intakes", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=200)
    arguments = parser.parse_args()
    tracemalloc.start()
    engine = Engine.from_files()
    _, peak = tracemalloc.get_traced_memory()
    print(
        f"engine load:               {peak / 1024:8.0f} KiB peak while compiling the questionnaire"
    )
    tracemalloc.stop()
    bench_engine(engine, arguments.rounds)
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(bench_core(arguments.intakes, Path(folder)))
        size = sum(path.stat().st_size for path in Path(folder).iterdir())
        print(f"data directory after:      {size / 1024:8.0f} KiB for {arguments.intakes} cases")
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(bench_core(1000, Path(folder), ANSWERS[:3]))  # a burst: 1,000 at once
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(bench_claims(100, 8, Path(folder)))
    results = Results()
    started = time.perf_counter()
    sections = (bench_ptb, bench_adapter, bench_latency, bench_flood, bench_scale, bench_drain)
    for section in (*sections, bench_matrix, bench_crypto):
        try:
            section.run(results)
        except Exception:  # one broken section must not hide the others' figures
            traceback.print_exc()
            results.add(section.SECTION, "the section crashed", 1, "failures")
    results.add("bench", "these sections together", time.perf_counter() - started, "s")
    print(f"\n{results.table()}\n\nfailures in all: {results.failures():g}")
    print(f"written to {results.write().relative_to(Path.cwd())}")


if __name__ == "__main__":
    main()
