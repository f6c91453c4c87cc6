"""Latency per message through the real core: at 1, 100 and 1,000 conversations at once, and
under a realistic load.

A message's latency runs from the moment the official's message reaches the core until
the channel has been handed the last reply to it (the reply counts per answer are
learnt from one warm-up conversation). Back-to-back: every conversation sends its next
answer as soon as the previous one is answered. Realistic: each conversation writes
its next answer 2–10 s (uniform) after the last reply, in real time, for a fixed
window (no time compression: compressing would raise the rate and change the load).
Beside it, a thread times the disk's own fsync in the same folder: every answer is on
disk before it is sent, so a disk whose fsync now and then takes 100 ms or more shows in
the realistic tail whatever the code does – the figures say which it was.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.bench_results import Results, percentile
from tests.bench_rig import ANSWERS, Rig, Tally, running_core, walk

SECTION = "latency"
FSYNC_EVERY = 0.05  # s between two probes of the disk during the realistic window


@dataclass(frozen=True)
class Sizes:
    # (conversations at once, answers each): 1,000 at once send the first four answers
    # (welcome, lane, consent – the first write –, Land), 10,000 the first three, so the
    # run fits the budget; what counts there is that nobody is told "technical error".
    concurrent: tuple[tuple[int, int], ...] = ((1, 20), (100, 20), (1000, 4), (10_000, 3))
    realistic_conversations: int = 100
    realistic_seconds: float = 45.0
    pause: tuple[float, float] = (2.0, 10.0)


def _report(results: Results, label: str, tally: Tally, rig: Rig, note: str) -> None:
    for share in (0.50, 0.95, 0.99):
        value = percentile(tally.latencies, share) * 1000
        results.add(SECTION, f"{label}: p{round(share * 100)}", value, "ms", note)
    results.add(SECTION, f"{label}: unanswered or apologies", tally.failures, "failures")


async def _concurrent(results: Results, folder: Path, conversations: int, answers: int) -> None:
    async with running_core(folder) as rig:
        expected = await rig.replies_per_answer(ANSWERS[:answers])
        tally = Tally()
        started = time.perf_counter()
        await asyncio.gather(*(walk(rig, f"c{i}", expected, tally) for i in range(conversations)))
        elapsed = time.perf_counter() - started
        messages = len(tally.latencies)
        note = f"{conversations} x {answers} messages, {messages / elapsed:.0f} answered/s"
        _report(results, f"{conversations} at once", tally, rig, note)


async def _realistic(results: Results, folder: Path, sizes: Sizes) -> None:
    async with running_core(folder) as rig:
        expected = await rig.replies_per_answer(ANSWERS)
        tally = Tally()
        until = time.monotonic() + sizes.realistic_seconds
        cpu_before = _cpu_seconds()
        with concurrent.futures.ThreadPoolExecutor(1) as probing:
            probe = probing.submit(_fsyncs, folder, until)
            tasks = [
                asyncio.create_task(
                    walk(rig, f"r{i}", expected, tally, pause=sizes.pause, until=until)
                )
                for i in range(sizes.realistic_conversations)
            ]
            await asyncio.sleep(sizes.realistic_seconds)
            await asyncio.gather(*tasks)  # the answers in flight at the end are still measured
            cpu = _cpu_seconds() - cpu_before
            disk = await asyncio.wrap_future(probe)
        rate = len(tally.latencies) / sizes.realistic_seconds
        note = (
            f"{sizes.realistic_conversations} conversations, one message each "
            f"{sizes.pause[0]:g}-{sizes.pause[1]:g} s, {sizes.realistic_seconds:g} s real time, "
            f"{len(tally.latencies)} messages ({rate:.1f}/s)"
        )
        _report(results, "realistic", tally, rig, note)
        # what a quiet load costs the machine: every thread of the process, idle ones free
        per_message = cpu / max(1, len(tally.latencies)) * 1000
        results.add(SECTION, "realistic: CPU per message", per_message, "ms", note)
        note = f"{len(disk)} fsyncs of 4 KiB beside the load, one each {FSYNC_EVERY * 1000:g} ms"
        for share, label in ((0.50, "p50"), (0.99, "p99"), (1.0, "max")):
            value = percentile(disk, share) * 1000
            results.add(SECTION, f"realistic: the disk's own fsync {label}", value, "ms", note)


def _fsyncs(folder: Path, until: float) -> list[float]:
    """The disk's own fsync times while the load runs: every answer waits for one, so a
    disk whose fsync sometimes takes 100 ms shows in the tail, whatever the code does."""
    taken: list[float] = []
    descriptor = os.open(folder / "fsync-probe", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while time.monotonic() < until:
            os.write(descriptor, b"x" * 4096)
            began = time.perf_counter()
            os.fsync(descriptor)
            taken.append(time.perf_counter() - began)
            time.sleep(FSYNC_EVERY)
    finally:
        os.close(descriptor)
    return taken


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(results: Results, sizes: Sizes = Sizes()) -> None:
    results.sizes[SECTION] = {
        "concurrent": sizes.concurrent,
        "realistic_conversations": sizes.realistic_conversations,
        "realistic_seconds": sizes.realistic_seconds,
    }
    for conversations, answers in sizes.concurrent:
        with tempfile.TemporaryDirectory() as folder:
            asyncio.run(_concurrent(results, Path(folder), conversations, answers))
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(_realistic(results, Path(folder), sizes))


if __name__ == "__main__":
    run(Results())
