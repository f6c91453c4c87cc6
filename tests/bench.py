"""`make bench`: how fast the engine and the core are, printed as figures (never asserted).

.venv/bin/python -m tests.bench [--intakes N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

from bot.app import demo_config, open_app
from bot.core.orchestrator import Core
from bot.core.settings import Settings
from bot.core.types import Inbound, Reply, StaffMember
from bot.demo import demo_counsellor
from flows.engine import Engine
from flows.messages import UserInput
from flows.state import IntakeState
from storage import queue
from storage.keyring import active_counsellors

ANSWERS = [
    "/start", "1", "nein", "1", "by", "1, 3", "Beschreibung des Vorfalls", "1", "online", "1, 2",
    "1", "1", "1", "nein", "https://example.org/post", "fertig", "nein", "1,3", "1", "absenden",
]  # fmt: skip


class _Sink:
    name = "bench"
    end_to_end_encrypted = True

    async def send(self, chat: str, reply: Reply) -> None:
        return None

    async def check(self) -> list[str]:
        return []

    async def open_thread(self, reference: str, text: str, urgent: bool) -> str:
        return reference

    async def post(self, thread: str | None, text: str) -> None:
        return None

    def is_author(self, member: StaffMember, author: str) -> bool:
        return author in (member.name, member.display_name)

    def mention(self, member: StaffMember) -> str:
        return member.display_name


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


async def bench_core(intakes: int, folder: Path) -> None:
    async with open_app(demo_config(folder)) as app:
        await demo_counsellor(app)
        sink = _Sink()
        core = Core(app.engine, app.store, staff_room=sink, settings=Settings.defaults())
        core.attach(sink)

        async def official(index: int) -> None:
            for number, answer in enumerate(ANSWERS):
                await core.handle(
                    Inbound("bench", f"user-{index}", f"chat-{index}", answer, f"{index}-{number}")
                )

        started = time.perf_counter()
        await asyncio.gather(*(official(index) for index in range(intakes)))
        await core.settle()
        elapsed = time.perf_counter() - started
        messages = intakes * len(ANSWERS)
        print(
            f"core on SQLite (WAL, FULL): {messages / elapsed:8.0f} messages/s, "
            f"{intakes} concurrent intakes of {len(ANSWERS)} messages in {elapsed:.2f} s"
        )


async def bench_claims(cases: int, claimers: int, folder: Path) -> None:
    """Many counsellors racing for the same cases: how fast the queue hands them out."""
    async with open_app(demo_config(folder)) as app:
        await demo_counsellor(app)
        async with app.store.unit() as unit:
            first = (await active_counsellors(unit.session))[0]
            references = [
                await unit.create_case(f"s{index}", "bench", index % 7 == 0, {}, [])
                for index in range(cases)
            ]
        won: list[str] = []

        async def claimer() -> None:
            for reference in references:
                try:
                    async with app.store.unit() as unit:
                        await queue.claim(unit, reference, first)
                    won.append(reference)
                except queue.Refusal:
                    pass

        started = time.perf_counter()
        await asyncio.gather(*(claimer() for _ in range(claimers)))
        elapsed = time.perf_counter() - started
        attempts = cases * claimers
        once = len(won) == len(set(won)) == cases
        print(
            f"queue claims on SQLite:    {attempts / elapsed:8.0f} attempts/s, {claimers} claimers "
            f"x {cases} cases in {elapsed:.2f} s; every case claimed exactly once: {once}"
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
        asyncio.run(bench_claims(100, 8, Path(folder)))


if __name__ == "__main__":
    main()
