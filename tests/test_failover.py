"""Two `lotse run` processes on one PostgreSQL database and one Bot API: the acceptance test of
failover.

Officials write without pause while the active process is killed (SIGKILL) or paused past
its lease (SIGSTOP); the standby takes over within 15 s, every message is answered, and
the emulator attributes each call to the process that made it (by the client's socket,
see tests/telegram_emulator.py), so the test sees that the standby never polled while the
other was active and that a resumed former leader sends nothing. The leader is paused in
the middle of a send, and resumes while replies wait in the outbox, due and untaken (the
new leader's sends are held up meanwhile): what a former leader could send, if it did.

Exactly once has one limit that no program can lift: the Bot API has no idempotency key,
so a message that reached Telegram just before the sender was killed, but whose removal
from the outbox did not commit, is sent again by the new leader. Delivery is sequential
per channel, so that is at most the one message under way at the kill; the test allows
that one, and only as a copy the killed process sent first.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import _async_url, _create_database, _drop_database
from tests.tcp_proxy import TcpProxy
from tests.telegram_emulator import Emulator, Sent
from tests.telegram_harness import COUNSELLOR_ID, Lotse, lotse
from tests.test_telegram import _consented, answer_until, said_to

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
TAKEOVER_SECONDS = 15.0  # the promise
SENDS = frozenset(
    {
        "sendMessage", "sendDocument", "editMessageText", "editMessageReplyMarkup",
        "answerCallbackQuery", "createForumTopic", "closeForumTopic", "reopenForumTopic",
        "deleteMessages",
    }
)  # fmt: skip
ANSWERS = ("1", "/zurueck")  # the role question answered, then back to it: one reply each
REPLY_TO = {"1": "Frage 3 von", "/zurueck": "Frage 2 von"}


class Officials:
    """Officials who each write again as soon as their last message was answered."""

    def __init__(self, emulator: Emulator, users: list[int]) -> None:
        self.emulator = emulator
        self.users = users
        self.base = {user: len(emulator.messages_to(user)) for user in users}
        self.written: dict[int, list[str]] = {user: [] for user in users}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, daemon=True, name="officials")

    def __enter__(self) -> Officials:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def replies(self, user: int) -> list[Sent]:
        return self.emulator.messages_to(user)[self.base[user] :]

    def answered(self) -> int:
        return sum(len(self.replies(user)) for user in self.users)

    def all_answered(self) -> bool:
        return all(len(self.replies(u)) >= len(self.written[u]) for u in self.users)

    def _write(self) -> None:
        while not self._stop.is_set():
            for user in self.users:
                written = self.written[user]
                if len(self.replies(user)) >= len(written):
                    text = ANSWERS[len(written) % 2]
                    written.append(text)
                    self.emulator.message(user, text)
            self._stop.wait(0.3)

    def doubles(self) -> list[tuple[Sent, Sent]]:
        """Replies sent twice in a row (in a ping-pong the same question never comes twice),
        after checking that apart from those every message got its one expected reply."""
        found: list[tuple[Sent, Sent]] = []
        for user in self.users:
            replies = self.replies(user)
            twice = _in_a_row(replies)
            found += twice
            repeated = {id(again) for _, again in twice}
            once = [reply for reply in replies if id(reply) not in repeated]
            expected = [REPLY_TO[text] for text in self.written[user]]
            assert [r.text[: len(e)] for r, e in zip(once, expected, strict=False)] == expected
            assert len(once) == len(expected), (user, len(once), len(expected))
        return found


@dataclass
class Pair:
    """Two `lotse run` processes with one configuration, one database and one Bot API."""

    lotse: Lotse
    emulator: Emulator
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    def start(self, config: Path | None = None) -> subprocess.Popen[str]:
        process = self.lotse.start(polling=False, config=config)
        self.emulator.watch.add(process.pid)  # before it can make its first call
        self.processes.append(process)
        return process

    def start_both(self, leader_config: Path | None = None) -> tuple[int, int]:
        """The first becomes active, the second waits as its standby."""
        leader = self.start(leader_config).pid
        self.emulator.wait(lambda: self.emulator.calls_from(leader, "getUpdates"), 60, "polling")
        standby = self.start().pid
        self.wait_log(1, "standby: another instance is active")
        return leader, standby

    def log(self, index: int) -> str:
        return Path(self.lotse.logs[index]).read_text(encoding="utf-8")

    def wait_log(self, index: int, words: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while words not in self.log(index):
            assert self.processes[index].poll() is None, self.log(index)[-3000:]
            assert time.monotonic() < deadline, f"{words!r} not in the log of process {index}"
            time.sleep(0.1)

    def takeover(self, standby: int, since: float) -> float:
        """Seconds from `since` until the standby polls Telegram."""
        self.emulator.wait(
            lambda: self.emulator.calls_from(standby, "getUpdates", since), 60, "the takeover"
        )
        return self.emulator.calls_from(standby, "getUpdates", since)[0].at - since

    def sends(self, caller: int, since: float = 0.0) -> list[str]:
        return [
            c.method for c in self.emulator.calls_from(caller, since=since) if c.method in SENDS
        ]


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    running = Emulator().start()
    running.administrators = [COUNSELLOR_ID]
    running.member_count = 2
    yield running
    running.stop()


@pytest.fixture
def database(postgres_admin_url: str) -> Iterator[str]:
    name = asyncio.run(_create_database(postgres_admin_url))
    yield _async_url(postgres_admin_url, name)
    asyncio.run(_drop_database(postgres_admin_url, name))


def _pair(folder: Path, emulator: Emulator, url: str, sections: str = "") -> Iterator[Pair]:
    configured = Lotse(folder, emulator, url=url, sections=sections)
    configured.setup()
    pair = Pair(configured, emulator)
    try:
        yield pair
    finally:
        for process in pair.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
            process.wait(30)


@pytest.fixture
def pair(tmp_path: Path, emulator: Emulator, database: str) -> Iterator[Pair]:
    """With the shipped lease length (10 s), to show the promised takeover time."""
    yield from _pair(tmp_path, emulator, database)


@pytest.fixture
def short_pair(tmp_path: Path, emulator: Emulator, database: str) -> Iterator[Pair]:
    """With a short lease (configured), so pausing past it takes seconds."""
    yield from _pair(tmp_path, emulator, database, "[service]\nlease_seconds = 4\n")


def _at_the_role_question(emulator: Emulator, users: list[int]) -> None:
    _consented(emulator, users)
    for user in users:
        land = said_to(emulator, user, "In welchem Bundesland")
        emulator.press(user, land, "land.2|by")
    for user in users:
        said_to(emulator, user, "Rolle", 60)


def _audit_verifies(configured: Lotse) -> str:
    verified = lotse("audit", "verify", "--config", configured.config)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "intact" in verified.stdout
    return verified.stdout


def test_the_standby_takes_over_a_killed_leader_and_every_message_is_answered_once(
    pair: Pair, emulator: Emulator
) -> None:
    leader, standby = pair.start_both()
    users = list(range(30_001, 30_011))
    _at_the_role_question(emulator, users)
    reporters = [31_001, 31_002]  # they submit whole cases meanwhile: audited, posted

    def report(user: int) -> None:
        emulator.message(user, "/start")
        answer_until(emulator, user, "Aktenzeichen", {"Bitte beschreiben": "Es kam ein Brief."})

    intakes = [threading.Thread(target=report, args=(user,), daemon=True) for user in reporters]
    with Officials(emulator, users) as officials:
        for intake in intakes:
            intake.start()
        emulator.wait(lambda: officials.answered() >= 30, 60, "traffic before the kill")
        emulator.wait(lambda: all(len(emulator.messages_to(u)) >= 6 for u in reporters), 60)
        killed_at = time.monotonic()
        pair.processes[0].kill()
        assert pair.processes[0].wait(10) == -signal.SIGKILL
        answered_at_kill = officials.answered()

        took = pair.takeover(standby, killed_at)
        assert took < TAKEOVER_SECONDS
        print(f"takeover after SIGKILL: {took:.1f} s (lease 10 s)")
        emulator.wait(lambda: officials.answered() >= answered_at_kill + 30, 60, "traffic after")
    emulator.wait(officials.all_answered, 60, "every message answered")
    for intake in intakes:
        intake.join(120)
        assert not intake.is_alive(), "an intake did not end"
    time.sleep(2)  # anything late would show now

    # The standby never polled nor sent while the other was active.
    assert emulator.calls_from(standby, "getUpdates")[0].at > killed_at
    assert [c for c in emulator.calls_from(standby) if c.at < killed_at and c.method in SENDS] == []
    # Every message of the bot came from one of the two, and was answered once.
    assert all(sent.caller in (leader, standby) for sent in emulator.sent)
    doubles = officials.doubles()
    assert len(doubles) <= 1, doubles  # at most the one under way at the kill
    assert all((first.caller, again.caller) == (leader, standby) for first, again in doubles)
    assert {sent.caller for sent in emulator.sent} == {leader, standby}
    # The two cases: their questions once each, one topic each, the audit chain intact.
    for user in reporters:
        doubles += _in_a_row(emulator.messages_to(user))
    assert len(doubles) <= 1, doubles
    assert all((first.caller, again.caller) == (leader, standby) for first, again in doubles)
    print(_figures(emulator, leader, standby, doubles))
    references = {re.findall(r"L-\d{4}-\d{4,}", t["name"])[0] for t in emulator.topics.values()}
    assert len(references) == len(emulator.topics) == len(reporters)
    assert emulator.violations == []
    _audit_verifies(pair.lotse)
    assert pair.processes[1].poll() is None, pair.log(1)[-3000:]


def _figures(emulator: Emulator, first: int, second: int, doubles: list[tuple[Sent, Sent]]) -> str:
    by_first = sum(sent.caller == first for sent in emulator.sent)
    return (
        f"{len(emulator.sent)} messages sent: {by_first} by the first process, "
        f"{len(emulator.sent) - by_first} by the second; {len(doubles)} sent twice"
    )


def _in_a_row(said: list[Sent]) -> list[tuple[Sent, Sent]]:
    """Messages sent twice in a row (no question of the intake comes twice in a row)."""
    return [(first, again) for first, again in itertools.pairwise(said) if first.text == again.text]


def test_a_leader_paused_past_its_lease_sends_nothing_when_it_resumes(
    short_pair: Pair, emulator: Emulator
) -> None:
    pair = short_pair
    leader, standby = pair.start_both()
    users = list(range(32_001, 32_011))
    _at_the_role_question(emulator, users)
    with Officials(emulator, users) as officials:
        emulator.wait(lambda: officials.answered() >= 20, 60, "traffic before the pause")
        # Paused in the middle of a send: the answer reaches it only when it resumes.
        emulator.holding.add(leader)
        emulator.wait(lambda: leader in emulator.held, 30, "a send of the leader under way")
        paused_at = time.monotonic()
        pair.processes[0].send_signal(signal.SIGSTOP)
        emulator.holding.discard(leader)
        took = pair.takeover(standby, paused_at)
        assert took < TAKEOVER_SECONDS
        print(f"takeover after SIGSTOP: {took:.1f} s (lease 4 s)")
        answered = officials.answered()
        emulator.wait(lambda: officials.answered() >= answered + 20, 60, "traffic after")
        # The new leader's sends are slow while the old one resumes, so replies wait in the
        # outbox, due and taken by nobody: a former leader that did not check its lease
        # before each delivery would send them.
        emulator.holding.add(standby)
        emulator.wait(lambda: standby in emulator.held, 30, "a send of the new leader under way")
        time.sleep(1.5)
        resumed_at, resumed_wall = time.monotonic(), time.time()
        pair.processes[0].send_signal(signal.SIGCONT)
        pair.wait_log(0, "this instance lost the lease")
        time.sleep(1)
        emulator.holding.discard(standby)
        answered = officials.answered()
        emulator.wait(lambda: officials.answered() >= answered + 20, 60, "traffic after resuming")
    emulator.wait(officials.all_answered, 60, "every message answered")
    time.sleep(2)

    # The resumed former leader neither polls nor sends; it waits as the standby now.
    assert pair.sends(leader, resumed_at) == []
    assert emulator.calls_from(leader, "getUpdates", resumed_at) == []
    assert pair.processes[0].poll() is None, pair.log(0)[-3000:]
    assert "standby: another instance is active" in pair.log(0).split("lost the lease", 1)[1]
    # Before the pause, the standby neither polled nor sent.
    assert [c for c in emulator.calls_from(standby) if c.at < paused_at and c.method in SENDS] == []
    assert emulator.calls_from(standby, "getUpdates")[0].at > paused_at
    assert all(sent.caller in (leader, standby) for sent in emulator.sent)
    doubles = officials.doubles()
    assert len(doubles) <= 1, doubles  # at most the one under way when it was paused
    assert all(first.caller == leader and first.at < resumed_wall for first, _ in doubles)
    print(_figures(emulator, leader, standby, doubles))
    assert emulator.violations == []
    _audit_verifies(pair.lotse)


def test_a_leader_cut_off_from_the_database_stops_and_the_standby_takes_over(
    short_pair: Pair, emulator: Emulator, postgres_admin_url: str
) -> None:
    """The active machine loses the database (its connections reset, new ones refused) while
    the standby still reaches it; the standby connects directly, the leader through a proxy
    the test cuts – otherwise one configuration."""
    pair = short_pair
    config = pair.lotse.config.read_text(encoding="utf-8")
    server = urlsplit(postgres_admin_url)
    with TcpProxy(server.hostname or "127.0.0.1", server.port or 5432) as proxy:
        proxied = pair.lotse.folder / "lotse-proxied.toml"
        proxied.write_text(
            config.replace(f"@{server.hostname}:{server.port}/", f"@127.0.0.1:{proxy.port}/"),
            encoding="utf-8",
        )
        assert proxied.read_text(encoding="utf-8") != config
        leader, standby = pair.start_both(proxied)
        users = list(range(33_001, 33_011))
        _at_the_role_question(emulator, users)
        with Officials(emulator, users) as officials:
            emulator.wait(lambda: officials.answered() >= 20, 60, "traffic before the cut")
            cut_at = time.monotonic()
            proxy.cut()
            took = pair.takeover(standby, cut_at)
            assert took < TAKEOVER_SECONDS
            print(f"takeover after the leader lost the database: {took:.1f} s (lease 4 s)")
            took_at = cut_at + took
            answered = officials.answered()
            emulator.wait(lambda: officials.answered() >= answered + 20, 60, "traffic after")
        emulator.wait(officials.all_answered, 60, "every message answered")
        time.sleep(2)

        pair.wait_log(0, "this instance lost the lease")
        assert pair.sends(leader, took_at) == []
        assert emulator.calls_from(leader, "getUpdates", took_at) == []
        assert pair.processes[0].poll() is None, pair.log(0)[-3000:]  # it waits, it did not die
    assert emulator.calls_from(standby, "getUpdates")[0].at > cut_at
    assert all(sent.caller in (leader, standby) for sent in emulator.sent)
    doubles = officials.doubles()
    assert len(doubles) <= 1, doubles
    print(_figures(emulator, leader, standby, doubles))
    _audit_verifies(pair.lotse)
