"""Telegram drain: many officials write at once; how close to Telegram's limit do the replies go?

`lotse run` runs as its own process against the Bot API emulator (tests/telegram_emulator.py),
which enforces Telegram's flood limits and counts every violation. All officials' first
messages are queued at once; every tenth writes words of acute danger instead of /start.
Telegram lets a bot send 30 messages a second, so the floor for R replies is R / 30 s;
the figure is the time from the burst to the last reply as a multiple of that floor
(about 1.0 is the best possible: the first second's 30 may go at once). Urgent first:
where the officials in danger got their first reply in the order of all officials'
first replies (0 % = before everyone else).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from flows.engine import Engine
from tests.bench_results import Results
from tests.telegram_emulator import OVERALL_MAX, Emulator, Sent
from tests.telegram_harness import COUNSELLOR_ID, Lotse

SECTION = "telegram drain"
DANGER = "Er steht vor meiner Tür"
FIRST_USER = 100_001
QUIET_SECONDS = 3.0  # no reply for this long after everyone was answered: the drain is over


@dataclass(frozen=True)
class Sizes:
    officials: int = 1000


def _private(emulator: Emulator) -> list[Sent]:
    with emulator.lock:
        return [sent for sent in emulator.sent if sent.chat > 0]


def _wait(emulator: Emulator, users: set[int], seconds: float) -> list[Sent]:
    """Every reply, once everyone has one and nothing new came for QUIET_SECONDS (or time ran
    out)."""
    deadline = time.monotonic() + seconds
    seen, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        sent = _private(emulator)
        if len(sent) != seen:
            seen, quiet_since = len(sent), time.monotonic()
        answered = users <= {reply.chat for reply in sent}
        if answered and time.monotonic() - quiet_since >= QUIET_SECONDS:
            return sent
        time.sleep(0.2)
    return _private(emulator)


def drain(results: Results, folder: Path, officials: int) -> None:
    texts = Engine.from_files().texts
    apology = texts.get("technical_error", "de")
    emulator = Emulator().start()
    emulator.administrators = [COUNSELLOR_ID]
    service = Lotse(folder, emulator)
    try:
        service.setup()
        service.start()
        users = list(range(FIRST_USER, FIRST_USER + officials))
        urgent = {user for user in users if user % 10 == 5}
        started = time.time()
        for user in users:
            emulator.message(user, DANGER if user in urgent else "/start")
        budget = 120 + officials / OVERALL_MAX * 5
        sent = _wait(emulator, set(users), budget)
        violations = len(emulator.violations)
        service.assert_running()
    finally:
        if service.process is not None:
            service.stop()
        emulator.stop()
    answered = {reply.chat for reply in sent}
    floor = len(sent) / OVERALL_MAX
    last = max((reply.at for reply in sent), default=started) - started
    note = f"{officials:,} officials, {len(sent):,} replies, floor {floor:.1f} s"
    results.add(SECTION, "time to the last reply", last, "s", note)
    results.add(SECTION, "time to the last reply / floor", last / floor if floor else 0, "x")
    results.add(SECTION, "limit violations (emulator)", violations, "violations")
    unanswered = officials - len(answered & set(users))
    results.add(SECTION, "officials without a reply", unanswered, "failures")
    apologies = sum(reply.text == apology for reply in sent)
    results.add(SECTION, "'technical error' replies", apologies, "failures")
    rank: dict[int, int] = {}
    for reply in sent:  # the emulator records sends in the order they arrived
        rank.setdefault(reply.chat, len(rank))
    ranks = [rank[user] / len(rank) * 100 for user in urgent if user in rank]
    median = statistics.median(ranks) if ranks else 100
    note = f"{len(urgent)} in danger; 0 % = before all others, 50 % = no priority"
    results.add(SECTION, "urgent: median rank of first reply", median, "%", note)
    first = sum(rank[user] < len(urgent) for user in urgent if user in rank)
    note = f"of {len(urgent)}, among the first {len(urgent)} answered"
    results.add(SECTION, "urgent answered among the first", first, "officials", note)


def run(results: Results, sizes: Sizes = Sizes()) -> None:
    results.sizes[SECTION] = {"officials": sizes.officials}
    with tempfile.TemporaryDirectory() as folder:
        drain(results, Path(folder), sizes.officials)


if __name__ == "__main__":
    run(Results())
