"""The core: the only place that turns an incoming message into stored state and replies.

For each message from an official: drop it if its event was handled before, take
the conversation's lock, load the state, run one engine step (or, once the intake
is a case, the handoff), and write the new state together with every message it
causes – to the official, to the staff room – to the outbox in one transaction.
Nothing is sent from here: the channels' delivery workers are woken once the change
is committed. Before the official consents nothing is written: that state, and the
replies to it, live in memory.

Staff-room messages go the same way through `handle_staff`; `tick` raises urgent
cases nobody claimed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError

from bot.core.delivery import Delivery
from bot.core.handoff import Handoff
from bot.core.hours import describe
from bot.core.locks import KeyedLocks
from bot.core.metrics import NO_METRICS, Metrics
from bot.core.outage import until_stored
from bot.core.pace import Pace
from bot.core.relay import staff_member
from bot.core.settings import Settings
from bot.core.types import Channel, Inbound, Reply, StaffInbound, StaffRoom
from bot.core.waits import until_set
from bot.logs import log_failure
from flows.answers import clean, one_line
from flows.engine import Engine
from flows.messages import Effect, UserInput
from flows.state import IntakeState, StoredFile
from storage import outbox, queue
from storage.keyring import active_counsellors
from storage.repository import (
    Store,
    Unit,
    UnreadableConversation,
    open_conversation,
    seal_conversation,
)
from storage.sqlite_batch import AlreadySeen, Overtaken

logger = logging.getLogger(__name__)

UNSAVED_LIMIT = 10_000  # conversations held in memory before consent
RECENT_EVENTS_LIMIT = 10_000
ATTEMPTS = 3


@dataclass
class _Step:
    replies: list[Reply] = field(default_factory=list)
    deleted: bool = False  # something was deleted: compact the database afterwards
    durable: bool = False  # the replies went into the outbox with the state
    channels: set[str] = field(default_factory=set)  # outbox channels to wake
    urgent: bool = False  # not stored (before consent) yet urgent: its replies go first


class _Bounded(OrderedDict[str, IntakeState]):
    """The in-memory states of conversations that have not consented yet (oldest dropped)."""

    def remember(self, key: str, state: IntakeState) -> None:
        self[key] = state
        self.move_to_end(key)
        while len(self) > UNSAVED_LIMIT:
            self.popitem(last=False)


class Core:
    def __init__(
        self,
        engine: Engine,
        store: Store,
        staff_room: StaffRoom,
        settings: Settings,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.store = store
        self.staff_room = staff_room
        self.settings = settings
        self._channels: dict[str, Channel] = {}
        self.handoff = Handoff(engine, settings, staff_room)
        self.delivery = Delivery(store, staff_room, self._channels, self._notice, metrics)
        self._locks = KeyedLocks()
        self._unsaved = _Bounded()
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._slowed: dict[str, asyncio.Task[None]] = {}  # a slowed sender's latest message
        # Pacing of very fast senders: set by `lotse run` (the demo's one local user and the
        # tests' scripted officials are not paced). A paced message is taken in the background
        # (`handle` returns at once), so it is confirmed to the platform before it is committed;
        # when the process stops (`drain`), what pacing still holds back is taken at once.
        self.pace: Pace | None = None
        self._hurry = asyncio.Event()

    def attach(self, channel: Channel) -> None:
        self._channels[channel.name] = channel

    def pseudonym(self, channel: str, user_id: str) -> str:
        """The pseudonym the core keeps for a platform user id (an HMAC of `channel:user id`)."""
        return self.store.keys.pseudonym(channel, user_id)

    def _notice(self, situation: str, reference: str | None) -> str:
        """The staff room's content-free words for a delivery situation ("dead", "held")."""
        language = self.settings.staff_language
        if situation == "held":
            return self.engine.texts.get("staff_details_held", language, reference=reference)
        if reference is None:
            return self.engine.texts.get("staff_delivery_failed_intake", language)
        return self.engine.texts.get("staff_delivery_failed", language, reference=reference)

    async def _finish(self, work: Coroutine[Any, Any, None]) -> None:
        """Run a step to its commit even when the adapter that asked is cancelled (shutdown)."""
        task = asyncio.ensure_future(work)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        await asyncio.shield(task)

    async def drain(self, seconds: float) -> bool:
        """Wait for the steps in flight; False when some did not finish in time.

        Messages pacing still holds back are taken now, without their wait: they were
        confirmed to the platform already, and a stopping process must not lose them."""
        self._hurry.set()
        if not self._in_flight:
            return True
        _, pending = await asyncio.wait(set(self._in_flight), timeout=seconds)
        return not pending

    async def settle(self) -> None:
        await self.delivery.flush()

    # -- officials ---------------------------------------------------------------------------

    async def handle(self, inbound: Inbound) -> None:
        sender = self.pseudonym(inbound.channel, inbound.user)
        wait, notice = self.pace.take(sender) if self.pace else (0.0, False)
        if notice:  # one polite word, then this sender's messages are answered more slowly
            logger.warning("one sender writes very fast: slowed down")
            text = self.engine.texts.get("slow_down", self._language_of(sender))
            stream = outbox.official_stream(sender)
            self.delivery.send_volatile(inbound.channel, stream, inbound.chat, [Reply(text)])
        earlier = self._slowed.get(sender)
        if wait or earlier is not None:
            # Adapters hand messages over one after another: a sender being slowed down must
            # not hold up everyone behind them, so their message waits its turn here instead.
            due = asyncio.get_running_loop().time() + wait
            task = asyncio.ensure_future(self._handle_later(inbound, sender, due, earlier))
            self._slowed[sender] = task
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            task.add_done_callback(lambda done: self._done_slowing(sender, done))
            return
        await self._finish(self._handle(inbound, sender))

    async def _handle_later(
        self, inbound: Inbound, sender: str, due: float, earlier: asyncio.Task[None] | None
    ) -> None:
        if earlier is not None:  # the same sender's messages stay in order
            await asyncio.wait([earlier])
        delay = max(0.0, due - asyncio.get_running_loop().time())
        if delay and not self._hurry.is_set():
            await until_set(self._hurry, delay)
        await self._handle(inbound, sender)

    def _done_slowing(self, sender: str, task: asyncio.Task[None]) -> None:
        if self._slowed.get(sender) is task:
            del self._slowed[sender]

    async def _handle(self, inbound: Inbound, sender: str) -> None:
        event_key = self.store.keys.pseudonym(f"event:{inbound.channel}", inbound.event_id)
        if event_key in self._recent:
            return
        self.metrics.received(inbound.channel)
        async with self._locks.hold(sender):
            started = time.monotonic()
            try:
                step = await until_stored(
                    lambda: self._step_with_retry(inbound, sender, event_key),
                    self.delivery.may_send,
                )
            except Exception as error:  # a generic apology; the details go to the log only
                log_failure(logger, "handling a message", error)
                self.metrics.failed(type(error).__name__)
                language = self._language_of(sender)
                step = _Step([Reply(self.engine.texts.get("technical_error", language))])
            self._remember_event(event_key)
            if step.deleted:  # before the reply that says so can go out
                await self.store.compact()
            if not step.durable and step.replies:
                stream = outbox.official_stream(sender)
                self.delivery.send_volatile(
                    inbound.channel, stream, inbound.chat, step.replies, urgent=step.urgent
                )
        self.metrics.stepped(time.monotonic() - started)
        self.delivery.wake(step.channels)

    def _language_of(self, sender: str) -> str:
        unsaved = self._unsaved.get(sender)
        return unsaved.language if unsaved else self.engine.questionnaire.meta.default_language

    def _remember_event(self, event_key: str) -> None:
        self._recent[event_key] = None
        while len(self._recent) > RECENT_EVENTS_LIMIT:
            self._recent.popitem(last=False)

    async def _step_with_retry(self, inbound: Inbound, sender: str, event_key: str) -> _Step:
        # Two processes may create the same conversation at once (PostgreSQL,
        # webhooks behind a load balancer): the loser retries against the winner's row.
        for attempt in range(1, ATTEMPTS + 1):
            try:
                hot = await self._hot_step(inbound, sender, event_key)
                if hot is not None:
                    return hot
                self.store.hot.forget(sender)
                async with self.store.unit() as unit:
                    step = await self._step(unit, inbound, sender, event_key)
                    if step.durable:
                        await outbox.replies_to_official(
                            unit,
                            sender_key=sender,
                            channel=inbound.channel,
                            address=inbound.chat,
                            replies=step.replies,
                        )
                    step.channels = unit.outbox_channels
                    return step
            except (IntegrityError, Overtaken):
                if attempt == ATTEMPTS:
                    raise
                logger.info("conversation written concurrently, retrying (attempt %d)", attempt)
        raise AssertionError("unreachable")

    async def _hot_step(self, inbound: Inbound, sender: str, event_key: str) -> _Step | None:
        """An ordinary step (no files, no effect, no handoff) in a few Core statements
        (storage/hotpath.py); None: it needs the full unit, and nothing was written."""
        if inbound.attachments:
            return None
        try:
            return await self._hot_stepped(inbound, sender, event_key)
        except AlreadySeen:
            return _Step()

    async def _hot_stepped(self, inbound: Inbound, sender: str, event_key: str) -> _Step | None:
        keys, now = self.store.keys, self.store.clock()
        async with self.store.hot.step(event_key, sender, now) as hot:
            if hot.seen:
                return _Step()
            if hot.row is not None:
                row = hot.row
                try:
                    loaded = open_conversation(keys, sender, row.state, row.address, row.channel)
                except UnreadableConversation:
                    return None  # the unit sets it aside
                current: IntakeState | None = loaded.state
            else:
                current = self._unsaved.get(sender)
            if current is not None and self._for_the_handoff(current, inbound.text):
                return None
            outcome = self.engine.handle(current, self._given(inbound))
            new_state = outcome.state
            if outcome.effect is not None or new_state is None:
                return None
            replies = list(outcome.replies)
            if not new_state.consented:  # nothing is stored before consent: rolled back
                self._unsaved.remember(sender, new_state)
                return _Step(replies, urgent=self.engine.is_urgent(new_state))
            sealed_state, sealed_address = seal_conversation(keys, sender, new_state, inbound.chat)
            conversation = {
                "sender_key": sender,
                "channel": inbound.channel,
                "address": sealed_address,
                "state": sealed_state,
                "created_at": now,
                "updated_at": now,
            }
            hot.save(
                conversation,
                [
                    outbox.official_values(
                        keys,
                        now,
                        sender_key=sender,
                        channel=inbound.channel,
                        address=inbound.chat,
                        reply=reply,
                    )
                    for reply in replies
                ],
            )
        self._unsaved.pop(sender, None)  # committed
        return _Step(replies, durable=True, channels={inbound.channel} if replies else set())

    def _given(
        self,
        inbound: Inbound,
        files: tuple[StoredFile, ...] = (),
        dropped: int = 0,
        too_big: int = 0,
    ) -> UserInput:
        return UserInput(
            inbound.text,
            files,
            dropped,
            inbound.pick,
            too_big_files=too_big,
            file_limit_mb=self.settings.max_file_bytes // (1024 * 1024),
            language=inbound.language,
            clears_chat=self._clears_chat(inbound.channel),
        )

    async def _step(self, unit: Unit, inbound: Inbound, sender: str, event_key: str) -> _Step:
        if await unit.seen(event_key):
            return _Step()
        notes: list[Reply] = []
        try:
            loaded = await unit.load(sender)
            state = loaded.state if loaded else self._unsaved.get(sender)
        except UnreadableConversation:
            state, notes = await self._set_aside(unit, sender)

        files: list[StoredFile] = []
        dropped = too_big = 0
        for attachment in inbound.attachments:
            if len(attachment.data) > self.settings.max_file_bytes:
                too_big += 1
                continue
            if state is None or not state.consented:
                dropped += 1
                continue
            files.append(
                await unit.store_file(
                    sender, one_line(attachment.name), attachment.media_type, attachment.data
                )
            )

        if state is not None and self._for_the_handoff(state, inbound.text):
            turn = await self.handoff.official_writes(
                unit, sender, state, clean(inbound.text), files, pick=inbound.pick
            )
            await unit.save(sender, inbound.channel, inbound.chat, turn.state)
            await unit.mark_seen(event_key)
            logger.debug("message on %s handled by the handoff", inbound.channel)
            refused = [self._too_big(state.language)] if too_big else []
            return _Step([*notes, *refused, *turn.replies], durable=True)

        outcome = self.engine.handle(state, self._given(inbound, tuple(files), dropped, too_big))
        result = _Step([*notes, *outcome.replies])
        new_state = outcome.state

        if outcome.effect is Effect.SUBMIT and new_state is not None:
            reference = await self._submit(unit, inbound, sender, new_state)
            hours = describe(self.settings.hours, self.engine.texts, new_state.language)
            confirmation = self.engine.confirmation(new_state, reference, hours)
            result.replies += confirmation
            position = await queue.position(unit, reference)
            note = self.handoff.waiting_note(
                position, new_state.language, unit.now, said_before=confirmation[-1].text
            )
            # the last thing said: someone else may see the phone
            if self._clears_chat(inbound.channel):
                note += "\n\n" + self.engine.texts.get("clear_chat_hint", new_state.language)
            result.replies.append(Reply(note))
            new_state = IntakeState.submitted(new_state, reference)
        elif outcome.effect is Effect.DISCARD:
            await unit.discard(sender)
            result.deleted = True
            logger.info("intake cancelled by the official")
        elif outcome.effect is Effect.DELETE_ALL:
            threads = await self.handoff.threads_of(unit, sender)
            cases = await unit.delete_person(sender)
            await self.handoff.announce_deleted(unit, threads)
            await outbox.forget_stream(unit, outbox.official_stream(sender))
            result.deleted = True
            logger.info("deleted everything about one official on request (%d case(s))", cases)

        if new_state is not None and new_state.consented:
            await unit.save(sender, inbound.channel, inbound.chat, new_state)
            await unit.mark_seen(event_key)
            self._unsaved.pop(sender, None)
            result.durable = True
        elif new_state is not None:
            self._unsaved.remember(sender, new_state)
            result.urgent = self.engine.is_urgent(new_state)
        else:
            self._unsaved.pop(sender, None)
        logger.debug(
            "message handled on %s: now at %s, %d repl(ies)%s",
            inbound.channel,
            new_state.step if new_state else "(forgotten)",
            len(result.replies),
            f", {outcome.effect.value}" if outcome.effect else "",
        )
        return result

    def _clears_chat(self, channel: str) -> bool:
        """Whether the channel offers /chat_leeren (the optional `clears_chat` of an adapter)."""
        return bool(getattr(self._channels.get(channel), "clears_chat", False))

    def _too_big(self, language: str) -> Reply:
        limit = self.settings.max_file_bytes // (1024 * 1024)
        return Reply(self.engine.texts.get("file_too_big", language, limit=limit))

    async def _set_aside(self, unit: Unit, sender: str) -> tuple[IntakeState | None, list[Reply]]:
        """A conversation that cannot be read: quarantine it instead of failing every later
        message; the official goes on with their open case, or starts again."""
        case = await unit.quarantine(sender)
        language = self.engine.questionnaire.meta.default_language
        texts = self.engine.texts
        logger.error("a conversation could not be read and was set aside (quarantined)")
        alert = texts.get("staff_state_unreadable", self.settings.staff_language)
        await outbox.to_staff(unit, case.reference if case else None, alert)
        if case is None:
            return None, [Reply(texts.get("state_unreadable", language))]
        state = IntakeState.submitted(self.engine.new_state(language), case.reference)
        note = texts.get("state_unreadable_case", language, reference=case.reference)
        return state, [Reply(note)]

    def _for_the_handoff(self, state: IntakeState, text: str) -> bool:
        """Once the intake is a case, words go to the handoff; commands and confirmations
        (a /loeschen's "ja") stay with the engine."""
        return (
            state.phase == "submitted"
            and state.pending in (None, "return")
            and not self.engine.is_command(text)
        )

    async def _submit(self, unit: Unit, inbound: Inbound, sender: str, state: IntakeState) -> str:
        urgent = self.engine.is_urgent(state)
        record = {
            "questionnaire": self.engine.questionnaire.meta.id,
            "questionnaire_version": self.engine.questionnaire.meta.version,
            "language": state.language,
            "urgent": urgent,
            "safety": list(state.safety),  # the safety layer's hits during the intake
            "submitted_at": unit.now.astimezone(dt.UTC).isoformat(),
            "answers": state.model_dump(mode="json")["answers"],
            "files": [file.model_dump() for file in state.files],
            "previous_case": state.previous_reference,
        }
        reference = await unit.create_case(
            sender_key=sender,
            channel=inbound.channel,
            urgent=urgent,
            record=record,
            files=state.files,
            previous_reference=state.previous_reference,
        )
        detail = (
            "full" if self.staff_room.end_to_end_encrypted else self.settings.unencrypted_detail
        )
        summary = self.engine.case_summary(state, reference, self.settings.staff_language, detail)
        await self.handoff.case_submitted(unit, reference, summary, urgent)
        logger.info("case %s submitted%s", reference, " (urgent)" if urgent else "")
        return reference

    # -- the staff room ------------------------------------------------------------------------

    async def handle_staff(self, inbound: StaffInbound) -> None:
        await self._finish(self._handle_staff(inbound))

    async def _handle_staff(self, inbound: StaffInbound) -> None:
        event_key = self.store.keys.pseudonym(f"event:staff:{inbound.channel}", inbound.event_id)
        if event_key in self._recent:
            return
        channels: set[str] = set()
        self.metrics.received(outbox.STAFF_CHANNEL)

        async def step() -> set[str]:
            async with self.store.unit() as unit:
                if await unit.seen(event_key):
                    return set()
                await self.handoff.staff_writes(unit, inbound)
                await unit.mark_seen(event_key)
                return unit.outbox_channels

        try:
            channels = await until_stored(step, self.delivery.may_send)
        except Exception as error:
            log_failure(logger, "handling a staff-room message", error)
            self.metrics.failed(type(error).__name__)
        self._remember_event(event_key)
        self.delivery.wake(channels)

    async def tick(self) -> None:
        """Raise urgent cases nobody claimed in time."""
        try:
            async with self.store.unit() as unit:
                members = [
                    staff_member(counsellor)
                    for counsellor in await active_counsellors(unit.session)
                ]
                mentions = " ".join(self.staff_room.mention(member) for member in members)
                await self.handoff.escalate(unit, mentions)
            self.delivery.wake(unit.outbox_channels)
        except Exception as error:  # the next tick tries again
            log_failure(logger, "raising urgent cases", error)
            self.metrics.failed(type(error).__name__)
