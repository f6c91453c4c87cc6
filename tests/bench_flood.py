"""One sender floods, everyone else should not notice: calm officials' latency with and without.

Two runs on a fresh real core each (SQLite, the Pace `lotse run` sets: a burst of 10,
then 2 messages per second per sender). In both, CALM officials walk the intake from
its start, each writing their next answer a PAUSE after the last reply, for WINDOW
seconds of real time; a message's latency runs from the core taking it to the channel
being handed its last reply. In the second run one more sender writes FLOOD_RATE
messages per second for FLOOD_SECONDS, starting FLOOD_AFTER seconds into the window,
handed to the core one after another as an adapter does.

Figures: the calm officials' p99 in both runs and its ratio (target at most 2), the
"you are writing very fast" notices the flooder got (exactly one expected), and the
flooder's messages lost: every one must be answered or still waiting its turn in the
core when the section ends (the pace answers 2 per second: 250 messages take two
minutes, longer than the section may run, so the rest is counted waiting, in order).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bot.core.pace import Pace
from tests.bench_results import Results, percentile
from tests.bench_rig import ANSWERS, Rig, Tally, running_core, walk

SECTION = "flood"
FLOODER = "flooder"
FLOOD_TEXT = "/hilfe"  # a stuck key or a script: the same command again and again
RATIO_LIMIT = 2.0


@dataclass(frozen=True)
class Sizes:
    calm: int = 50
    pause: tuple[float, float] = (1.0, 4.0)  # most answers are a number or a button
    window: float = 12.0  # seconds of calm writing per run
    flood_rate: float = 50.0  # messages per second
    flood_seconds: float = 5.0
    flood_after: float = 2.0  # seconds into the window
    tail: float = 3.0  # seconds the flooder's answers are waited for after the window


@dataclass
class _Flood:
    sent: int = 0
    per_message: int = 0  # replies to one FLOOD_TEXT (learnt from a warm-up)
    answered: int = 0
    waiting: int = 0
    notices: int = 0


async def _flooder(rig: Rig, sizes: Sizes, flood: _Flood) -> None:
    await asyncio.sleep(sizes.flood_after)
    count = round(sizes.flood_rate * sizes.flood_seconds)
    started = time.monotonic()
    for number in range(count):
        await asyncio.sleep(max(0.0, started + number / sizes.flood_rate - time.monotonic()))
        await rig.say(FLOODER, FLOOD_TEXT, f"flood-{number}")
        flood.sent += 1


def _flood_answered(rig: Rig, flood: _Flood) -> int:
    chat = f"chat-{FLOODER}"
    notices = rig.sink.notices.get(chat, 0)
    return (rig.sink.counts.get(chat, 0) - notices) // max(1, flood.per_message)


async def _run(folder: Path, sizes: Sizes, flooding: bool) -> tuple[Tally, _Flood, int]:
    """One run: the calm officials' tally, the flood's, and the apologies."""
    async with running_core(folder) as rig:
        expected = await rig.replies_per_answer(ANSWERS)
        flood = _Flood()
        before = rig.sink.counts.get("chat-warm-up", 0)
        await rig.say("warm-up", FLOOD_TEXT, "warm-up-help")
        await rig.core.settle()
        flood.per_message = rig.sink.counts.get("chat-warm-up", 0) - before
        rig.core.pace = Pace()  # as `lotse run` sets it
        calm = Tally()
        until = time.monotonic() + sizes.window
        tasks = [
            asyncio.create_task(
                walk(rig, f"calm{i}", expected, calm, pause=sizes.pause, until=until)
            )
            for i in range(sizes.calm)
        ]
        if flooding:
            tasks.append(asyncio.create_task(_flooder(rig, sizes, flood)))
        await asyncio.gather(*tasks)
        if flooding:
            chat = f"chat-{FLOODER}"
            everything = flood.sent * flood.per_message + rig.sink.notices.get(chat, 0)
            await rig.sink.wait(chat, everything, sizes.tail)
            await rig.core.settle()
            flood.answered = _flood_answered(rig, flood)
            flood.notices = rig.sink.notices.get(f"chat-{FLOODER}", 0)
            # The calm officials are done: what the core still has in flight is the flooder's
            # messages waiting their turn (one task each, in order).
            flood.waiting = len(rig.core._in_flight)
        return calm, flood, rig.sink.apologies


def run(results: Results, sizes: Sizes = Sizes()) -> None:
    results.sizes[SECTION] = {
        "calm": sizes.calm,
        "pause": sizes.pause,
        "window": sizes.window,
        "flood_rate": sizes.flood_rate,
        "flood_seconds": sizes.flood_seconds,
    }
    with tempfile.TemporaryDirectory() as folder:
        normal, _, apologies = asyncio.run(_run(Path(folder), sizes, flooding=False))
    with tempfile.TemporaryDirectory() as folder:
        flooded, flood, more = asyncio.run(_run(Path(folder), sizes, flooding=True))
    p99_normal = percentile(normal.latencies, 0.99) * 1000
    p99_flooded = percentile(flooded.latencies, 0.99) * 1000
    ratio = p99_flooded / p99_normal if p99_normal else float("inf")
    lost = flood.sent - flood.answered - flood.waiting
    print(
        f"flood: {sizes.calm} calm officials (one message each {sizes.pause[0]:g}-"
        f"{sizes.pause[1]:g} s, {sizes.window:g} s), one sender at {sizes.flood_rate:g}/s for "
        f"{sizes.flood_seconds:g} s: calm p99 {p99_normal:.1f} ms -> {p99_flooded:.1f} ms "
        f"(ratio {ratio:.2f}); notices {flood.notices}; flooder sent {flood.sent}, answered "
        f"{flood.answered}, waiting {flood.waiting}, lost {lost}"
    )
    calm_note = f"{len(normal.latencies)} messages"
    flood_note = (
        f"{len(flooded.latencies)} messages; flooder {sizes.flood_rate:g}/s for "
        f"{sizes.flood_seconds:g} s"
    )
    for share in (0.50, 0.95):
        for label, tally in (("no flood", normal), ("one sender flooding", flooded)):
            value = percentile(tally.latencies, share) * 1000
            results.add(SECTION, f"calm p{round(share * 100)}, {label}", value, "ms")
    results.add(SECTION, "calm p99, no flood", p99_normal, "ms", calm_note)
    results.add(SECTION, "calm p99, one sender flooding", p99_flooded, "ms", flood_note)
    results.add(SECTION, "calm p99 ratio flood/normal", ratio, "x", f"target <= {RATIO_LIMIT:g}")
    results.add(SECTION, "calm p99 ratio over the target", float(ratio > RATIO_LIMIT), "failures")
    unanswered = normal.failures + flooded.failures
    results.add(SECTION, "calm unanswered or apologies", unanswered, "failures")
    results.add(SECTION, "slow-down notices to the flooder", flood.notices, "notices", "1 expected")
    results.add(SECTION, "slow-down notices not exactly 1", float(flood.notices != 1), "failures")
    results.add(SECTION, "flooder messages sent", flood.sent, "messages")
    within = f"within the window + {sizes.tail:g} s"
    results.add(SECTION, "flooder messages answered", flood.answered, "messages", within)
    paced = "paced at 2/s, in order"
    results.add(SECTION, "flooder messages waiting their turn", flood.waiting, "messages", paced)
    results.add(SECTION, "flooder messages lost", lost, "failures")
    results.add(SECTION, "apologies", apologies + more, "failures")


if __name__ == "__main__":
    run(Results())
