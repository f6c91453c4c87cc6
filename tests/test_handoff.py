"""The handoff through the core, in-process, on both databases: from a submitted case to a
counsellor talking with the official, as the official, the staff room and an attacker with
the database would observe it.

Time is a stopped clock the tests move (`Store(clock=…)`), so opening hours, the reopen
window, escalation and delivery back-off are checked at exact moments.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import json
import logging
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from sqlalchemy import MetaData, func, select

from bot.channels.console import ConsoleChannel
from bot.core.handoff import Handoff
from bot.core.orchestrator import Core
from bot.core.settings import Settings
from bot.core.types import Attachment, Reply, StaffInbound, StaffMember
from flows.engine import Engine
from storage import queue
from storage.audit import Action, load_chain, verify
from storage.casefile import open_case
from storage.keyfile import UnlockedKey
from storage.keyring import CounsellorEntry, add, revoke
from storage.models import AuditEntry, Case, OutboxMessage, TransitFile
from storage.repository import Store
from storage.sealing import PrivateKey
from tests.test_core import NORMAL_INTAKE, Official, Recorder
from tests.test_queue import Clock

WEDNESDAY_10 = dt.datetime(2025, 3, 5, 9, 0, tzinfo=dt.UTC)  # 10:00 in Berlin, within hours
SATURDAY_11 = dt.datetime(2025, 3, 8, 10, 0, tzinfo=dt.UTC)  # 11:00 in Berlin
NEXT_WEDNESDAY_10 = dt.datetime(2025, 3, 12, 9, 0, tzinfo=dt.UTC)
# The danger lane: in danger, consent, Land (Bremen), no sentence, "110 called?" – sent at once.
URGENT_INTAKE = ["/start", "1", "1", "5", "/ueberspringen", "ja"]
NOT_ALLOWED = "Sie stehen nicht auf der Liste der Beratenden; das wurde protokolliert."


@dataclass
class FlakyRecorder(Recorder):
    """The test channel and staff room, which can be told to fail the next few calls."""

    failing_sends: int = 0
    failing_posts: int = 0

    async def send(self, chat: str, reply: Reply) -> None:
        if self.failing_sends:
            self.failing_sends -= 1
            raise ConnectionError("the platform is down")
        await super().send(chat, reply)

    async def open_thread(self, reference: str, text: str, urgent: bool) -> str:
        if self.failing_posts:
            self.failing_posts -= 1
            raise ConnectionError("the platform is down")
        return await super().open_thread(reference, text, urgent)

    async def post(self, thread: str | None, text: str) -> None:
        if self.failing_posts:
            self.failing_posts -= 1
            raise ConnectionError("the platform is down")
        await super().post(thread, text)


@dataclass
class Person:
    """One official, as their chat shows it."""

    bench: Bench
    user_id: str
    count: int = 0
    submitted: list[str] = field(default_factory=list)  # the replies to "absenden"

    @property
    def chat(self) -> str:
        return f"chat-{self.user_id}"

    async def say(self, text: str) -> list[str]:
        """What this official got back while the core handled `text` (their chat only)."""
        before = len(self.bench.recorder.sent)
        self.count += 1
        official = Official(self.bench.core, self.bench.recorder, self.user_id, self.count + 1000)
        await official.say(text)
        return [
            reply.text for chat, reply in self.bench.recorder.sent[before:] if chat == self.chat
        ]

    async def submit(self, lines: list[str] = NORMAL_INTAKE) -> str:
        for line in lines:
            replies = await self.say(line)
        sent = any(word.startswith("L-") for reply in replies for word in reply.split())
        if not sent and lines[-1] not in ("absenden", "submit"):
            replies = await self.say("absenden")
        self.submitted = replies
        [reference] = [
            word for reply in replies for word in reply.split() if word.startswith("L-")
        ][:1]
        return reference

    def received(self) -> list[str]:
        return [reply.text for chat, reply in self.bench.recorder.sent if chat == self.chat]

    def choices(self) -> tuple[str, ...]:
        [*_, (_, last)] = [item for item in self.bench.recorder.sent if item[0] == self.chat]
        return tuple(choice.key for choice in last.choices)


@dataclass
class Bench:
    """A core on a clocked store, with the recorder as channel and staff room."""

    engine: Engine
    store: Store
    clock: Clock
    settings: Settings
    recorder: FlakyRecorder = field(default_factory=FlakyRecorder)
    core: Core = field(init=False)
    events: int = 0
    people: int = 0

    def __post_init__(self) -> None:
        self.restart()

    def restart(self, recorder: FlakyRecorder | None = None) -> None:
        """A new core (and staff room connection) on the same database: a restart."""
        self.recorder = recorder or FlakyRecorder(
            end_to_end_encrypted=self.recorder.end_to_end_encrypted
        )
        self.store = Store(self.store.database, self.store.keys, clock=self.clock)
        self.core = Core(self.engine, self.store, self.recorder, self.settings)
        self.core.attach(self.recorder)

    def person(self) -> Person:
        self.people += 1
        return Person(self, f"official-{self.people}")

    async def staff(
        self,
        text: str,
        reference: str | None = None,
        author: str = "Berger",
        channel: str = "console",
        *,
        files: tuple[Attachment, ...] = (),
        event_id: str | None = None,
    ) -> list[tuple[str | None, str]]:
        """A staff-room message; returns what the bot posted in the room meanwhile."""
        self.events += 1
        before = len(self.recorder.room)
        thread = f"thread-{reference}" if reference else None
        event_id = event_id or f"staff-event-{self.events}"
        # The staff room is on the platform the message comes from.
        self.recorder.staff_platform = None if channel == "console" else channel
        await self.core.handle_staff(
            StaffInbound(channel, author, thread, text, event_id, attachments=files)
        )
        await self.core.settle()
        return self.recorder.room[before:]

    async def said(self, text: str, reference: str | None = None, author: str = "Berger") -> str:
        """The one post the bot answered a staff message with."""
        [(_, post)] = await self.staff(text, reference, author)
        return post

    async def tick(self) -> None:
        await self.core.tick()
        await self.core.settle()

    async def hire(self, by: UnlockedKey, entry: CounsellorEntry) -> None:
        async with self.store.unit() as unit:
            await add(unit, by, entry, PrivateKey.generate().public_key())

    async def case(self, reference: str) -> Case:
        async with self.store.unit() as unit:
            case = await unit.case(reference)
        assert case is not None
        return case

    async def audited(self, action: Action) -> list[AuditEntry]:
        async with self.store.unit() as unit:
            chain, head = await load_chain(unit.session)
        assert verify(self.store.keys.audit_key, chain, head) is None
        return [entry for entry in chain if entry.action == action.value]

    async def outbox(self) -> int:
        async with self.store.unit() as unit:
            return int(await unit.session.scalar(select(func.count(OutboxMessage.id))) or 0)

    def thread(self, reference: str) -> list[str]:
        return [text for thread, text in self.recorder.room if thread == f"thread-{reference}"]

    def room_at_large(self) -> list[str]:
        return [text for thread, text in self.recorder.room if thread is None]


@pytest.fixture
def clock() -> Clock:
    return Clock(WEDNESDAY_10)


@pytest.fixture
def bench(store: Store, flow_engine: Engine, clock: Clock) -> Bench:
    return Bench(flow_engine, Store(store.database, store.keys, clock=clock), clock, SETTINGS)


SETTINGS = Settings.defaults()


# -- who may act in the staff room ----------------------------------------------------------------


async def test_strangers_and_revoked_counsellors_are_refused_and_audited(
    bench: Bench, counsellor_key: UnlockedKey
) -> None:
    person = bench.person()
    reference = await person.submit()
    await bench.hire(
        counsellor_key, CounsellorEntry("Lutz", "L. Lutz", (("matrix", "@lutz:example.org"),))
    )
    async with bench.store.unit() as unit:
        await revoke(unit, counsellor_key, "Lutz")
    before = len(person.received())

    attempts = [
        ("console", "Mallory", "/uebernehmen", reference, "claim"),
        ("console", "Mallory", "Ich übernehme das mal", reference, "message"),
        ("console", "Mallory", "/warteschlange", None, "queue"),
        ("console", "Lutz", "/claim", reference, "claim"),
        ("console", "L. Lutz", "Hallo, ich bin es", reference, "message"),
        ("matrix", "@lutz:example.org", "/uebernehmen", reference, "claim"),
        ("matrix", "@mallory:evil.example", "/abschliessen beraten", reference, "close"),
        ("matrix", "Berger", "/uebernehmen", reference, "claim"),  # a console name on Matrix
    ]
    for channel, author, text, thread_of, _ in attempts:
        posted = await bench.staff(text, thread_of, author=author, channel=channel)
        assert posted == [(f"thread-{thread_of}" if thread_of else None, NOT_ALLOWED)], text
    refusals = await bench.audited(Action.COMMAND_REFUSED)
    assert len(refusals) == len(attempts)
    for entry, (_, author, _, thread_of, command) in zip(refusals, attempts, strict=True):
        assert entry.actor.startswith("unknown:")
        assert author.casefold() not in entry.actor.casefold()
        assert "mallory" not in entry.actor.casefold() and "lutz" not in entry.actor.casefold()
        assert entry.case_reference == thread_of
        assert json.loads(entry.detail) == {"command": command}
    # The same stranger is the same pseudonym each time: the log can tell repeated attempts.
    assert refusals[0].actor == refusals[1].actor == refusals[2].actor != refusals[3].actor

    case = await bench.case(reference)
    assert (case.status, case.claimed_by) == (queue.WAITING, None)
    assert person.received()[before:] == []  # nothing reached the official
    # Small talk in the room at large by someone not on the list is not a command: ignored.
    assert await bench.staff("Guten Morgen", author="Mallory") == []


async def test_the_staff_room_decides_who_an_author_is(
    bench: Bench, counsellor_key: UnlockedKey
) -> None:
    handles = (("matrix", "@lutz:example.org"), ("telegram", "4711"))
    await bench.hire(counsellor_key, CounsellorEntry("Lutz", "L. Lutz", handles))
    reference = await bench.person().submit()
    # In a Matrix room Lutz is his Matrix id; his names, or his Telegram id, are nobody there.
    for author in ("Lutz", "L. Lutz", "4711", "@LUTZ:example.org"):
        posted = await bench.staff("/uebernehmen", reference, author, "matrix")
        assert posted == [(f"thread-{reference}", NOT_ALLOWED)], author
    # In the terminal a counsellor writes under a name; a platform id is nobody there.
    posted = await bench.staff("/uebernehmen", reference, "@lutz:example.org", "console")
    assert posted == [(f"thread-{reference}", NOT_ALLOWED)]
    [(_, claimed)] = await bench.staff("/uebernehmen", reference, "4711", "telegram")
    assert claimed.startswith("L. Lutz hat den Fall übernommen.")


def test_the_terminal_knows_counsellors_by_name() -> None:
    room = ConsoleChannel(io.StringIO())
    member = StaffMember("A. Berger", "Berger", {"matrix": "@berger:example.org"})
    assert room.is_author(member, "berger") and room.is_author(member, "A. BERGER")
    assert not room.is_author(member, "@berger:example.org")
    assert not room.is_author(member, "Berge")


async def test_unknown_commands_are_named_and_case_commands_need_a_thread(bench: Bench) -> None:
    reference = await bench.person().submit()
    assert await bench.said("/tanzen jetzt", reference) == (
        "Den Befehl /tanzen kenne ich nicht (/hilfe zeigt die Befehle)."
    )
    assert await bench.staff("/uebernehmen") == [
        (None, "/uebernehmen gilt in einem Fall: schreiben Sie es im Thread des Falls.")
    ]
    assert await bench.staff("/abschliessen beraten") == [
        (None, "/abschliessen ERGEBNIS gilt in einem Fall: schreiben Sie es im Thread des Falls.")
    ]
    assert (await bench.case(reference)).status == queue.WAITING
    help_text = await bench.said("/hilfe")
    assert "/uebernehmen – den Fall übernehmen" in help_text
    assert "/notiz TEXT – interne Notiz, wird nie weitergeleitet" in help_text
    queue_text = await bench.said("/warteschlange")
    assert queue_text == f"Warteschlange (1):\n1. {reference} – wartet seit 0 min"
    # A note needs words; an unknown outcome is explained.
    assert "/notiz" in await bench.said("/notiz", reference)
    await bench.said("/uebernehmen", reference)
    assert await bench.said("/abschliessen gelöst", reference) == (
        "Bitte ein Ergebnis angeben: vermittelt, beraten, kein_kontakt oder sonstiges."
    )
    assert await bench.said("/freigeben", reference) == (
        "Bitte einen Grund angeben: /freigeben GRUND."
    )


async def test_two_counsellors_claiming_at_once_through_the_core(
    bench: Bench, counsellor_key: UnlockedKey
) -> None:
    await bench.hire(counsellor_key, CounsellorEntry("Koch", "K. Koch"))
    person = bench.person()
    reference = await person.submit(URGENT_INTAKE)
    await asyncio.gather(
        bench.staff("/uebernehmen", reference, "Berger"),
        bench.staff("/claim", reference, "Koch"),
    )
    await bench.tick()
    posts = bench.thread(reference)
    won = [post for post in posts if "hat den Fall übernommen" in post]
    lost = [post for post in posts if post.startswith("Nicht möglich")]
    assert len(won) == 1 and len(lost) == 1, posts
    winner = "A. Berger" if "A. Berger" in won[0] else "K. Koch"
    assert lost == [f"Nicht möglich: {reference} ist von {winner} übernommen."]
    assert [text for text in person.received() if "übernommen" in text] == [
        f"{winner} hat Ihren Fall übernommen und schreibt Ihnen hier. "
        "Sie können ab jetzt direkt antworten."
    ]
    assert len(await bench.audited(Action.CASE_CLAIMED)) == 1


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_message_and_a_claim_at_the_same_moment_both_go_through(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    person = bench.person()
    reference = await person.submit(URGENT_INTAKE)
    await person.say("Ich warte.")  # a backlog, which the claim relays
    # Only the timing is steered here: each side waits (briefly) for the other to be where
    # a real race puts it; the code paths and the locks they take are the real ones.
    official_in, claim_in = asyncio.Event(), asyncio.Event()
    official_writes, claim = Handoff.official_writes, queue.claim

    async def meet(mine: asyncio.Event, theirs: asyncio.Event) -> None:
        mine.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(theirs.wait(), timeout=1)

    async def official_side(self: Handoff, *arguments: Any, **keywords: Any) -> Any:
        await meet(official_in, claim_in)  # holds the conversation's row lock here
        return await official_writes(self, *arguments, **keywords)

    async def claim_side(*arguments: Any) -> Any:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(official_in.wait(), timeout=1)
        case = await claim(*arguments)  # holds the case's row lock from here
        claim_in.set()
        return case

    monkeypatch.setattr(Handoff, "official_writes", official_side)
    monkeypatch.setattr(queue, "claim", claim_side)
    before = len(person.received())
    await asyncio.gather(person.say("Genau jetzt."), bench.staff("/uebernehmen", reference))
    monkeypatch.undo()
    await bench.tick()

    case = await bench.case(reference)
    assert case.status == queue.CLAIMED
    assert not any("schiefgegangen" in text for text in person.received()[before:])
    assert "Genau jetzt." in "\n".join(bench.thread(reference))


# -- the official while waiting -------------------------------------------------------------------


async def test_the_waiting_official_learns_their_position(bench: Bench) -> None:
    first, second = bench.person(), bench.person()
    one = await first.submit()
    assert "Ihr Fall ist auf Platz 1 der Warteschlange." in first.submitted[-1]
    bench.clock.advance(minutes=1)
    await second.submit()
    assert "Ihr Fall ist auf Platz 2 der Warteschlange." in second.submitted[-1]
    [reply] = await second.say("Ist schon jemand da?")
    assert reply.startswith("Danke, Ihre Nachricht ist bei Ihrem Fall gespeichert")
    assert "Platz 2" in reply
    await bench.staff("/uebernehmen", one)
    [reply] = await second.say("Und jetzt?")
    assert "Sie sind jetzt auf Platz 1." in reply
    assert "nicht erreichbar" not in reply  # Wednesday 10:00: within counselling hours


async def test_outside_hours_the_official_gets_the_next_opening_and_the_hotline(
    bench: Bench,
) -> None:
    bench.clock.now = SATURDAY_11
    person = bench.person()
    await person.submit(URGENT_INTAKE)
    note = person.submitted[-1]
    # Honest about time: the hours in words (not the configuration string), the real next
    # opening, 110 and the Telefonseelsorge - not a hotline that is closed just as well.
    assert note.startswith(
        "Ihr Fall ist auf Platz 1 der Warteschlange. Unser Team ist gerade nicht erreichbar; "
        "wir melden uns ab Montag, 9 Uhr (Beratungszeiten: Montag–Freitag 9–16 Uhr)."
    )
    # the danger lane's lines came right before: pointed to, not repeated
    lines = person.submitted[-2]
    assert "0800 111 0 111" in lines and "110" in lines
    assert note.endswith(" Die Nummern oben erreichen Sie rund um die Uhr.")
    [reply] = await person.say("Hallo?")
    assert "wir melden uns ab Montag, 9 Uhr" in reply and "110" in reply

    bench.clock.now = NEXT_WEDNESDAY_10  # still waiting on Wednesday morning: within hours
    [reply] = await person.say("Und jetzt?")
    assert "nicht erreichbar" not in reply and "Platz 1" in reply

    on_duty = bench.person()
    await on_duty.submit(URGENT_INTAKE)
    assert on_duty.submitted[-1] == (
        "Ihr Fall ist auf Platz 2 der Warteschlange. "
        "Unser Team ist gerade erreichbar; in der Regel meldet sich bald jemand. "
        "Die Nummern oben erreichen Sie rund um die Uhr."
    )
    normal = bench.person()  # no lines before its note: the note gives the numbers
    await normal.submit()
    assert normal.submitted[-1] == (
        "Ihr Fall ist auf Platz 3 der Warteschlange. "
        "Unser Team ist gerade erreichbar; in der Regel meldet sich bald jemand. "
        "In akuter Gefahr: 110, Telefonseelsorge rund um die Uhr: 0800 111 0 111, "
        "0800 111 0 222, 116 123."
    )

    english = bench.person()
    bench.clock.now = SATURDAY_11
    await english.submit(["/start", "/sprache en", "1", "1", "5", "/skip", "yes"])
    note = english.submitted[-1]
    assert (
        "Our team is not available right now; we will be in touch from Monday, 9:00 "
        "(counselling hours: Monday–Friday 9:00–16:00)."
    ) in note
    assert "0800 111 0 111" in english.submitted[-2] and "110" in english.submitted[-2]
    assert note.endswith(" The numbers above can be reached around the clock.")
    [reply] = await english.say("Anyone there?")
    assert "from Monday, 9:00" in reply and "call 110" in reply
    bench.clock.now = NEXT_WEDNESDAY_10
    english_on_duty = bench.person()
    await english_on_duty.submit(["/start", "/sprache en", "1", "1", "5", "/skip", "yes"])
    assert (
        "Our team is on duty now; usually someone replies soon." in (english_on_duty.submitted[-1])
    )


@pytest.mark.parametrize(
    ("utc", "expected"),
    [
        (dt.datetime(2025, 3, 7, 14, 59, tzinfo=dt.UTC), None),  # Friday 15:59: open
        (dt.datetime(2025, 3, 7, 15, 0, tzinfo=dt.UTC), "Montag, 9 Uhr"),  # Friday 16:00
        (dt.datetime(2025, 3, 9, 23, 30, tzinfo=dt.UTC), "Montag, 9 Uhr"),  # Monday 00:30
        (dt.datetime(2025, 3, 11, 7, 59, tzinfo=dt.UTC), "Dienstag, 9 Uhr"),  # Tuesday 08:59
        (dt.datetime(2025, 7, 5, 9, 0, tzinfo=dt.UTC), "Montag, 9 Uhr"),  # a summer Saturday
        (dt.datetime(2025, 7, 7, 7, 0, tzinfo=dt.UTC), None),  # summer Monday 09:00
    ],
)
def test_the_next_opening_in_berlin_time(flow_engine: Engine, utc, expected) -> None:
    note = Handoff(flow_engine, SETTINGS, Recorder()).waiting_note(None, "de", utc)
    if expected is None:
        assert note.startswith(
            "Unser Team ist gerade erreichbar; in der Regel meldet sich bald jemand."
        )
    else:
        assert f"wir melden uns ab {expected} (" in note


# -- the relay ------------------------------------------------------------------------------------

FILE_CANARY = b"%PDF FILE-CANARY Verhaltenstipps"
SCHULZ = CounsellorEntry("Schulz", "Beraterin P.", (("matrix", "@pschulz:example.org"),))
KOCH = CounsellorEntry("Koch", "Berater K.", (("matrix", "@koch:example.org"),))
FORBIDDEN_FOR_THE_OFFICIAL = (
    "@pschulz:example.org", "pschulz", "Schulz", "@koch:example.org", "Koch",
    "NOTE-CANARY", "EARLY-CANARY", "INTRUDER-CANARY", "STALE-CANARY", "RELEASE-CANARY",
)  # fmt: skip


async def exchange(bench: Bench, key: UnlockedKey) -> tuple[Person, str]:
    """A whole conversation through the bot, written by counsellors on Matrix."""
    await bench.hire(key, SCHULZ)
    await bench.hire(key, KOCH)
    person = bench.person()
    reference = await person.submit()
    assert await person.say("WAITING-CANARY noch eine Sache") != []

    async def matrix(text: str, author: str) -> list[str]:
        return [post for _, post in await bench.staff(text, reference, author, "matrix")]

    before = len(person.received())
    assert await matrix("EARLY-CANARY Hallo?", "@pschulz:example.org") == [
        "Nicht weitergeleitet: Der Fall ist noch nicht übernommen (/uebernehmen)."
    ]
    assert person.received()[before:] == []  # nothing reaches the official before a claim

    await matrix("/uebernehmen", "@pschulz:example.org")
    await bench.tick()
    assert person.received()[-1].startswith("Beraterin P. hat Ihren Fall übernommen")
    assert bench.thread(reference)[-3:] == [  # the waiting words were posted at once
        "Person: WAITING-CANARY noch eine Sache",
        "Nicht weitergeleitet: Der Fall ist noch nicht übernommen (/uebernehmen).",
        "Beraterin P. hat den Fall übernommen. Nachrichten von Beraterin P. in diesem Fall "
        "gehen jetzt an die Person.",
    ]
    assert await matrix("INTRUDER-CANARY ich antworte mal", "@koch:example.org") == [
        f"Nicht möglich: {reference} ist von Beraterin P. übernommen."
    ]
    await matrix("REPLY-CANARY Guten Tag, ich bin für Sie da.", "@pschulz:example.org")
    assert person.received()[-1] == "Beraterin P.: REPLY-CANARY Guten Tag, ich bin für Sie da."
    assert await person.say("OFFICIAL-CANARY Danke, es war gestern Abend.") == []
    assert bench.thread(reference)[-1] == "Person: OFFICIAL-CANARY Danke, es war gestern Abend."
    assert await matrix("/notiz NOTE-CANARY wirkt gefasst", "@pschulz:example.org") == [
        "Notiz gespeichert – sie wird nicht weitergeleitet."
    ]
    assert await matrix("/uebergeben Berater K.", "@pschulz:example.org") == [
        "Beraterin P. hat den Fall an Berater K. übergeben."
    ]
    assert person.received()[-1] == "Ihr Fall wird ab jetzt von Berater K. betreut."
    assert await matrix("STALE-CANARY noch eins", "@pschulz:example.org") == [
        f"Nicht möglich: {reference} ist von Berater K. übernommen."
    ]
    await matrix("KOCH-CANARY Ich übernehme ab hier.", "@koch:example.org")
    assert person.received()[-1] == "Berater K.: KOCH-CANARY Ich übernehme ab hier."
    leaflet = Attachment("merkblatt.pdf", "application/pdf", FILE_CANARY)
    await bench.staff("", reference, "@koch:example.org", "matrix", files=(leaflet,))
    [(_, sent)] = bench.recorder.sent[-1:]
    assert (sent.text, sent.files) == ("Berater K.: merkblatt.pdf", (leaflet,))
    await matrix("/freigeben RELEASE-CANARY Urlaub", "@koch:example.org")
    assert person.received()[-1].startswith("Ihr Fall wartet wieder auf eine Beraterin")
    return person, reference


async def test_relay_only_the_holder_reaches_the_official_and_everything_is_sealed(
    bench: Bench, counsellor_key: UnlockedKey
) -> None:
    person, reference = await exchange(bench, counsellor_key)
    relayed = [text for text in person.received() if "-CANARY" in text]
    assert relayed == [
        "Beraterin P.: REPLY-CANARY Guten Tag, ich bin für Sie da.",
        "Berater K.: KOCH-CANARY Ich übernehme ab hier.",
    ]
    for text in person.received():
        for forbidden in FORBIDDEN_FOR_THE_OFFICIAL:
            assert forbidden not in text, (forbidden, text)

    # Berger takes it from the queue and closes: the official is told, and may come back.
    await bench.staff("/uebernehmen", reference)
    await bench.staff("/abschliessen beraten", reference)
    assert person.received()[-1] == (
        f"Ihr Fall {reference} ist abgeschlossen. Wenn Sie wieder schreiben, können Sie ihn "
        "wieder öffnen oder eine neue Meldung beginnen. In akuter Gefahr: 110."
    )
    assert bench.thread(reference)[-1] == "A. Berger hat den Fall abgeschlossen: beraten."
    assert await bench.said("Noch ein Gruß", reference) == (
        f"{reference} ist abgeschlossen; erst /wiedereroeffnen."
    )
    assert "Noch ein Gruß" not in " ".join(person.received())

    # Everything relayed, noted and given as a reason is sealed in the case, in order;
    # no database row holds any of it in plain text.
    async with bench.store.unit() as unit:
        opened, _ = await open_case(unit, counsellor_key, reference)
    kinds = [(item.kind, item.content.get("text", "")) for item in opened.items]
    assert kinds == [
        ("intake", ""),
        ("message", "WAITING-CANARY noch eine Sache"),
        ("reply", "REPLY-CANARY Guten Tag, ich bin für Sie da."),
        ("message", "OFFICIAL-CANARY Danke, es war gestern Abend."),
        ("note", "NOTE-CANARY wirkt gefasst"),
        ("reply", "KOCH-CANARY Ich übernehme ab hier."),
        ("attachment", ""),
        ("release", "RELEASE-CANARY Urlaub"),
    ]
    assert opened.items[6].content["from"] == "Berater K."
    assert [(file.name, file.data) for file in opened.files] == [("merkblatt.pdf", FILE_CANARY)]
    assert opened.items[0].content["answers"]["description"].startswith("CANARY-DESCRIPTION")
    assert opened.items[2].content["from"] == "Beraterin P."
    assert opened.items[4].content["by"] == "Schulz"

    canaries = [
        "CANARY-DESCRIPTION", "WAITING-CANARY", "REPLY-CANARY", "OFFICIAL-CANARY",
        "NOTE-CANARY", "KOCH-CANARY", "RELEASE-CANARY", "EARLY-CANARY", "INTRUDER-CANARY",
        "STALE-CANARY", "FILE-CANARY", "platform-user", "official-1",
    ]  # fmt: skip
    found = await plaintext_in_rows(bench.store, canaries)
    assert found == []
    assert await plaintext_in_rows(bench.store, [reference]), "the search finds what is there"


async def plaintext_in_rows(store: Store, canaries: list[str]) -> list[str]:
    """Every value of every row of every table, searched for the canaries."""
    metadata = MetaData()
    async with store.database.connect() as connection:
        await connection.run_sync(metadata.reflect)
        hits = []
        for table in metadata.sorted_tables:
            for row in (await connection.execute(table.select())).all():
                for value in row:
                    if isinstance(value, str | bytes | memoryview):
                        data = bytes(value) if not isinstance(value, str) else value.encode()
                        hits += [
                            f"{canary} in {table.name}"
                            for canary in canaries
                            if any(
                                canary.encode(encoding) in data
                                for encoding in ("utf-8", "utf-16-le")
                            )
                        ]
    return hits


async def test_a_staff_event_delivered_twice_is_relayed_once(
    bench: Bench, counsellor_key: UnlockedKey
) -> None:
    person = bench.person()
    reference = await person.submit(URGENT_INTAKE)
    await bench.staff("/uebernehmen", reference)
    await bench.staff("Einmal bitte.", reference, event_id="$event-1")
    await bench.staff("Einmal bitte.", reference, event_id="$event-1")
    assert [text for text in person.received() if "Einmal" in text] == ["A. Berger: Einmal bitte."]
    bench.restart()  # and once more after a restart, when only the database remembers
    await bench.staff("Einmal bitte.", reference, event_id="$event-1")
    assert bench.recorder.sent == [] and bench.recorder.room == []
    async with bench.store.unit() as unit:
        opened, _ = await open_case(unit, counsellor_key, reference)
    assert [item.kind for item in opened.items] == ["intake", "reply"]


async def test_an_empty_staff_message_is_not_a_first_reply(bench: Bench) -> None:
    person = bench.person()
    reference = await person.submit(URGENT_INTAKE)
    await bench.staff("/uebernehmen", reference)
    before = len(person.received())
    await bench.staff("   ", reference)
    assert person.received()[before:] == []
    assert (await bench.case(reference)).first_reply_at is None


# -- closing and coming back ----------------------------------------------------------------------


async def test_reopen_within_the_window_and_a_new_linked_report_after_it(bench: Bench) -> None:
    person = bench.person()
    reference = await person.submit()
    await bench.staff("/uebernehmen", reference)
    await bench.staff("/abschliessen vermittelt", reference)
    assert f"Ihr Fall {reference} ist abgeschlossen." in person.received()[-1]

    bench.clock.advance(days=29)
    [offer] = await person.say("Es geht wieder los.")
    assert offer == (
        f"Willkommen zurück. Ihr Fall {reference} ist abgeschlossen. "
        "Möchten Sie ihn wieder öffnen oder eine neue Meldung beginnen?"
    )
    assert person.choices() == ("reopen", "new")
    [reopened] = await person.say("1")
    assert reopened.startswith(f"Ihr Fall {reference} ist wieder offen.")
    assert "Platz 1" in reopened
    case = await bench.case(reference)
    assert (case.status, case.closed_at, case.claimed_by) == (queue.WAITING, None, None)
    assert bench.thread(reference)[-1] == (
        "Fall wieder geöffnet (die Person); er steht wieder in der Warteschlange."
    )
    [entry] = await bench.audited(Action.CASE_REOPENED)
    assert (entry.actor, entry.case_reference) == ("official", reference)
    [reply] = await person.say("Danke.")
    assert reply.startswith("Danke, Ihre Nachricht ist bei Ihrem Fall gespeichert")
    # What they wrote on coming back is in the thread at once (issue 11, items 7 and 14).
    assert bench.thread(reference)[-3:] == [
        "Person: Es geht wieder los.",
        "Fall wieder geöffnet (die Person); er steht wieder in der Warteschlange.",
        "Person: Danke.",
    ]

    await bench.staff("/uebernehmen", reference)
    await bench.staff("/abschliessen kein_kontakt", reference)
    bench.clock.advance(days=30, seconds=1)  # one second beyond the reopen window
    [offer] = await person.say("Hallo, ich bin es wieder.")
    assert offer == (
        f"Willkommen zurück. Ihr Fall {reference} wurde vor längerer Zeit abgeschlossen. "
        "Sie können eine neue Meldung beginnen; wir verknüpfen sie mit dem früheren Fall."
    )
    assert person.choices() == ("new",)
    [question] = await person.say("1")
    assert "Was möchten Sie tun?" in question  # the lanes; consent is not asked again
    assert (await bench.case(reference)).status == queue.CLOSED
    newer = await person.submit(["3", *NORMAL_INTAKE[3:]])
    assert newer != reference
    old, new = await bench.case(reference), await bench.case(newer)
    assert new.previous_case_id == old.id
    assert (new.status, old.status) == (queue.WAITING, queue.CLOSED)


# -- escalation -----------------------------------------------------------------------------------


async def test_an_unclaimed_urgent_case_is_raised_again_at_each_interval(
    bench: Bench, counsellor_key: UnlockedKey
) -> None:
    await bench.hire(counsellor_key, CounsellorEntry("Koch", "K. Koch"))
    await bench.hire(counsellor_key, CounsellorEntry("Lutz", "L. Lutz"))
    async with bench.store.unit() as unit:
        await revoke(unit, counsellor_key, "Lutz")
    start = bench.clock.now
    await bench.person().submit()  # not urgent: never raised
    urgent = await bench.person().submit(URGENT_INTAKE)
    assert bench.recorder.posts[-1][2] is True

    def raised() -> list[str]:
        return [text for text in bench.room_at_large() if text.startswith("‼️")]

    bench.clock.now = start + dt.timedelta(minutes=4, seconds=59)
    await bench.tick()
    assert raised() == []
    bench.clock.now = start + dt.timedelta(minutes=5)
    await bench.tick()
    assert raised() == [
        f"‼️ Dringender Fall {urgent} wartet seit 5 min auf Übernahme. @A. Berger @K. Koch"
    ]
    await bench.tick()  # the same moment again: not twice
    bench.clock.now = start + dt.timedelta(minutes=9)
    await bench.tick()
    assert len(raised()) == 1
    bench.clock.now = start + dt.timedelta(minutes=10)
    await bench.tick()
    assert raised()[1:] == [
        f"‼️ Dringender Fall {urgent} wartet seit 10 min auf Übernahme. @A. Berger @K. Koch"
    ]
    bench.clock.now = start + dt.timedelta(minutes=12)
    await bench.staff("/uebernehmen", urgent, "Koch")
    for minutes in (15, 20, 60):
        bench.clock.now = start + dt.timedelta(minutes=minutes)
        await bench.tick()
    assert len(raised()) == 2


async def test_escalation_survives_a_restart(bench: Bench) -> None:
    start = bench.clock.now
    urgent = await bench.person().submit(URGENT_INTAKE)
    bench.clock.now = start + dt.timedelta(minutes=5)
    await bench.tick()
    assert len([text for text in bench.room_at_large() if urgent in text]) == 1

    bench.restart()  # a new process: nothing of the timer lives in memory
    bench.clock.now = start + dt.timedelta(minutes=7)
    await bench.tick()
    assert bench.recorder.room == []
    bench.clock.now = start + dt.timedelta(minutes=10)
    await bench.tick()
    assert bench.room_at_large() == [
        f"‼️ Dringender Fall {urgent} wartet seit 10 min auf Übernahme. @A. Berger"
    ]


# -- the staff room guard -------------------------------------------------------------------------


async def test_only_the_reference_and_an_alert_reach_a_room_that_fails_its_check(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    bench.recorder.problems = ["room is not encrypted"]
    person = bench.person()
    with caplog.at_level(logging.DEBUG):
        reference = await person.submit()
    assert bench.recorder.posts == []
    [(thread, alert)] = bench.recorder.room  # once, in the room at large, no detail
    assert thread is None and alert.startswith(f"‼️ Neuer Fall {reference}. Die Details werden")
    assert "CANARY" not in alert
    assert any("Ihr Aktenzeichen" in text for text in person.submitted)  # the official is told
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors and all("room is not encrypted" in record.getMessage() for record in errors)
    assert "CANARY-DESCRIPTION" not in caplog.text
    assert await bench.outbox() == 1

    bench.clock.advance(minutes=1)
    await bench.tick()  # still failing: still held, and not announced twice
    assert bench.recorder.posts == [] and len(bench.recorder.room) == 1
    bench.recorder.problems = []
    bench.clock.advance(minutes=1)
    await bench.tick()
    [(posted, text, _)] = bench.recorder.posts
    # An end-to-end encrypted room gets everything, whatever `unencrypted_detail` says.
    assert SETTINGS.unencrypted_detail != "full"
    assert posted == reference and "CANARY-DESCRIPTION" in text
    assert await bench.outbox() == 0
    assert (await bench.case(reference)).thread == f"thread-{reference}"


async def test_after_a_long_room_outage_the_case_is_posted_on_the_next_tick(bench: Bench) -> None:
    bench.recorder.problems = ["room is not encrypted"]
    reference = await bench.person().submit(URGENT_INTAKE)
    for _ in range(10):  # five minutes of ticks every 30 s
        bench.clock.advance(seconds=30)
        await bench.tick()
    assert bench.recorder.posts == []
    bench.recorder.problems = []
    bench.clock.advance(seconds=30)
    await bench.tick()
    assert [posted for posted, _, _ in bench.recorder.posts] == [reference]


@pytest.mark.parametrize("detail", ["minimal", "summary", "full"])
async def test_what_an_unencrypted_staff_room_is_shown(
    store: Store, flow_engine: Engine, clock: Clock, detail: str
) -> None:
    bench = Bench(
        flow_engine,
        Store(store.database, store.keys, clock=clock),
        clock,
        replace(SETTINGS, unencrypted_detail=detail),
        FlakyRecorder(end_to_end_encrypted=False),
    )
    await bench.person().submit()
    [(reference, text, _)] = bench.recorder.posts
    summary = text.split("\n\n")[0].splitlines()
    assert summary[0].startswith(f"Neuer Fall {reference} · ")
    shown = {line.split(": ", 1)[0] for line in summary[1:]}
    if detail == "minimal":
        assert shown == {"Bundesland", "Art des Vorfalls"}
        assert "Bundesland: Bayern" in summary
    elif detail == "summary":
        assert {"Bundesland", "Art des Vorfalls", "Rolle", "Passende Angebote"} <= shown
        assert "Beschreibung" not in shown
        assert "CANARY-DESCRIPTION" not in text
    else:
        assert "CANARY-DESCRIPTION wrote threats" in text
    if detail != "full":
        assert "CANARY-DESCRIPTION" not in text


# -- delivery -------------------------------------------------------------------------------------


async def test_a_failed_send_is_retried_in_order(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    person = bench.person()
    reference = await person.submit(URGENT_INTAKE)
    await bench.staff("/uebernehmen", reference)
    await bench.tick()
    bench.recorder.failing_sends = 1
    with caplog.at_level(logging.DEBUG):
        await bench.staff("EINS-CANARY", reference)
        await bench.staff("ZWEI-CANARY", reference)
        await bench.tick()
    assert not any("-CANARY" in text for text in person.received())  # held, not lost
    assert "ConnectionError" in caplog.text and "-CANARY" not in caplog.text
    assert await bench.outbox() == 2

    bench.clock.advance(seconds=11)  # past the first pause
    for _ in range(3):
        await bench.tick()
    assert [text for text in person.received() if "-CANARY" in text] == [
        "A. Berger: EINS-CANARY",
        "A. Berger: ZWEI-CANARY",
    ]
    assert await bench.outbox() == 0


async def test_a_failed_post_is_retried_in_order(bench: Bench) -> None:
    person = bench.person()
    reference = await person.submit(URGENT_INTAKE)
    await bench.staff("/uebernehmen", reference)
    await bench.tick()
    bench.recorder.failing_posts = 1
    await person.say("EINS-CANARY")
    await person.say("ZWEI-CANARY")
    await bench.tick()
    assert not any("CANARY" in post for post in bench.thread(reference))
    bench.clock.advance(seconds=11)
    for _ in range(3):
        await bench.tick()
    assert [post for post in bench.thread(reference) if "CANARY" in post] == [
        "Person: EINS-CANARY",
        "Person: ZWEI-CANARY",
    ]


async def test_a_failed_thread_opening_is_retried(bench: Bench) -> None:
    bench.recorder.failing_posts = 1
    reference = await bench.person().submit(URGENT_INTAKE)
    assert bench.recorder.posts == []
    assert (await bench.case(reference)).thread is None
    await bench.tick()  # within the pause: not yet
    assert bench.recorder.posts == []
    bench.clock.advance(seconds=11)
    await bench.tick()
    assert [posted for posted, _, _ in bench.recorder.posts] == [reference]
    assert (await bench.case(reference)).thread == f"thread-{reference}"
    await bench.staff("/uebernehmen", reference)
    assert bench.thread(reference)[0].startswith("A. Berger hat den Fall übernommen")


async def test_the_waiting_messages_reach_the_thread_at_once(bench: Bench) -> None:
    person = bench.person()
    reference = await person.submit(URGENT_INTAKE)
    await person.say("Bitte melden Sie sich bald.")
    assert bench.thread(reference) == ["Person: Bitte melden Sie sich bald."]
    await bench.staff("/uebernehmen", reference)
    assert bench.thread(reference) == [
        "Person: Bitte melden Sie sich bald.",
        "A. Berger hat den Fall übernommen. Nachrichten von A. Berger in diesem Fall gehen "
        "jetzt an die Person.",
    ]
    assert await bench.outbox() == 0


# -- the numbers the staff room asks for ----------------------------------------------------------


async def test_health_in_the_room_uses_claim_and_first_reply_times(bench: Bench) -> None:
    start = bench.clock.now
    person = bench.person()
    reference = await person.submit()
    waiting = await bench.person().submit()
    bench.clock.now = start + dt.timedelta(minutes=12)
    await bench.staff("/uebernehmen", reference)
    bench.clock.now = start + dt.timedelta(minutes=20)
    await bench.staff("Guten Tag!", reference)
    await bench.staff("Noch etwas.", reference)  # only the first reply counts
    bench.clock.now = start + dt.timedelta(minutes=45)
    assert await bench.said("/lage") == (
        "Lage: 1 wartend, längste Wartezeit 45 min, 0 dringend und nicht übernommen.\n"
        "Offene Fälle je Person: A. Berger 1\n"
        "Median bis zur Übernahme (30 Tage): 12.0 min · bis zur ersten Antwort: 20.0 min"
    )
    assert await bench.said("/warteschlange") == (
        f"Warteschlange (1):\n1. {waiting} – wartet seit 45 min"
    )
    case = await bench.case(reference)
    assert case.first_reply_at is not None
    assert case.first_reply_at.replace(tzinfo=dt.UTC) == start + dt.timedelta(minutes=20)


async def test_a_counsellors_file_travels_once_within_the_limit(
    store: Store, flow_engine: Engine, clock: Clock
) -> None:
    limited = replace(SETTINGS, max_file_bytes=1000)
    bench = Bench(flow_engine, Store(store.database, store.keys, clock=clock), clock, limited)
    person = bench.person()
    reference = await person.submit()
    await bench.staff("/uebernehmen", reference)
    too_big = Attachment("gross.pdf", "application/pdf", b"B" * 1001)
    posted = await bench.staff("", reference, files=(too_big,))
    assert posted == [
        (f"thread-{reference}", "Nicht weitergeleitet: gross.pdf ist größer als 0 MB.")
    ]
    assert not any(reply.files for _, reply in bench.recorder.sent)

    leaflet = Attachment("merkblatt.pdf", "application/pdf", b"TRANSIT-CANARY" * 50)
    await bench.core.handle_staff(
        StaffInbound("console", "Berger", f"thread-{reference}", "", "file-1", (leaflet,))
    )
    async with bench.store.unit() as unit:  # committed, not yet delivered: stored once
        [content] = await unit.session.scalars(select(OutboxMessage.content))
        [transit] = await unit.session.scalars(select(TransitFile.content))
    assert b"TRANSIT-CANARY" not in content and leaflet.data.hex().encode() not in content
    assert b"TRANSIT-CANARY" not in transit
    await bench.core.settle()
    [(_, sent)] = bench.recorder.sent[-1:]
    assert sent.files == (leaflet,)
    async with bench.store.unit() as unit:  # delivered: the transit copy is gone
        assert await unit.session.scalar(select(func.count()).select_from(TransitFile)) == 0
        assert await unit.session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
