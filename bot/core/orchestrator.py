"""The core: the only place that turns an incoming message into stored state and replies.

For each message: drop it if its event was handled before, take the
conversation's lock, load the state, run one engine step (or its effect),
persist in the same transaction, then hand the replies to the channel.
Before the official consents nothing is written: that state lives in memory.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import OrderedDict
from dataclasses import dataclass, field

from sqlalchemy.exc import IntegrityError

from bot.core.locks import KeyedLocks
from bot.core.types import Channel, Inbound, Reply, StaffRoom
from bot.logs import log_failure
from flows.engine import Engine
from flows.messages import Effect, UserInput
from flows.state import IntakeState, StoredFile
from storage.repository import Store, Unit

logger = logging.getLogger(__name__)

UNSAVED_LIMIT = 10_000  # conversations held in memory before consent
RECENT_EVENTS_LIMIT = 10_000
MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024
ATTEMPTS = 3


@dataclass
class _Step:
    replies: list[Reply] = field(default_factory=list)
    staff_post: tuple[str, str, bool] | None = None  # reference, text, urgent
    deleted: bool = False  # something was deleted: compact the database afterwards


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
        counselling_hours: str,
        staff_language: str = "de",
    ) -> None:
        self.engine = engine
        self.store = store
        self.staff_room = staff_room
        self.counselling_hours = counselling_hours
        self.staff_language = staff_language
        self._channels: dict[str, Channel] = {}
        self._locks = KeyedLocks()
        self._unsaved = _Bounded()
        self._recent: OrderedDict[str, None] = OrderedDict()

    def attach(self, channel: Channel) -> None:
        self._channels[channel.name] = channel

    def pseudonym(self, channel: str, user_id: str) -> str:
        """What adapters put into `Inbound.sender` in place of the platform's user id."""
        return self.store.keys.pseudonym(channel, user_id)

    async def handle(self, inbound: Inbound) -> None:
        channel = self._channels[inbound.channel]
        event_key = self.store.keys.pseudonym(f"event:{inbound.channel}", inbound.event_id)
        if event_key in self._recent:
            return
        async with self._locks.hold(inbound.sender):
            try:
                step = await self._step_with_retry(inbound, event_key)
            except Exception as error:  # a generic apology; the details go to the log only
                log_failure(logger, "handling a message", error)
                language = self._language_of(inbound.sender)
                step = _Step([Reply(self.engine.texts.get("technical_error", language))])
            self._remember_event(event_key)
        if step.deleted:
            await self.store.compact()
        for reply in step.replies:
            await channel.send(inbound.chat, reply)
        if step.staff_post is not None:
            await self.staff_room.post_case(*step.staff_post)

    def _language_of(self, sender: str) -> str:
        unsaved = self._unsaved.get(sender)
        return unsaved.language if unsaved else self.engine.questionnaire.meta.default_language

    def _remember_event(self, event_key: str) -> None:
        self._recent[event_key] = None
        while len(self._recent) > RECENT_EVENTS_LIMIT:
            self._recent.popitem(last=False)

    async def _step_with_retry(self, inbound: Inbound, event_key: str) -> _Step:
        # Two processes may create the same conversation at once (PostgreSQL,
        # webhooks behind a load balancer): the loser retries against the winner's row.
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with self.store.unit() as unit:
                    return await self._step(unit, inbound, event_key)
            except IntegrityError:
                if attempt == ATTEMPTS:
                    raise
                logger.info("conversation written concurrently, retrying (attempt %d)", attempt)
        raise AssertionError("unreachable")

    async def _step(self, unit: Unit, inbound: Inbound, event_key: str) -> _Step:
        if await unit.seen(event_key):
            return _Step()
        sender = inbound.sender
        loaded = await unit.load(sender)
        state = loaded.state if loaded else self._unsaved.get(sender)

        files: list[StoredFile] = []
        dropped = 0
        for attachment in inbound.attachments:
            if state is None or not state.consented or len(attachment.data) > MAX_ATTACHMENT_BYTES:
                dropped += 1
                continue
            files.append(
                await unit.store_file(
                    sender, attachment.name, attachment.media_type, attachment.data
                )
            )

        outcome = self.engine.handle(state, UserInput(inbound.text, tuple(files), dropped))
        result = _Step(list(outcome.replies))
        new_state = outcome.state

        if outcome.effect is Effect.SUBMIT and new_state is not None:
            reference = await self._submit(unit, inbound, new_state)
            result.replies += self.engine.confirmation(new_state, reference, self.counselling_hours)
            summary = self.engine.case_summary(new_state, reference, self.staff_language)
            result.staff_post = (reference, summary, self.engine.is_urgent(new_state))
            new_state = self.engine.submitted_state(new_state, reference)
        elif outcome.effect is Effect.DISCARD:
            await unit.discard(sender)
            result.deleted = True
            logger.info("intake cancelled by the official")
        elif outcome.effect is Effect.DELETE_ALL:
            cases = await unit.delete_person(sender)
            result.deleted = True
            logger.info("deleted everything about one official on request (%d case(s))", cases)
        elif files and new_state is not None and new_state.case_reference:
            # After submitting, a file belongs to the case at once, sealed to its key.
            await unit.add_files(new_state.case_reference, sender, files)
            new_state = new_state.model_copy(update={"files": []})

        if new_state is not None and new_state.consented:
            await unit.save(sender, inbound.channel, inbound.chat, new_state)
            await unit.mark_seen(event_key)
            self._unsaved.pop(sender, None)
        elif new_state is not None:
            self._unsaved.remember(sender, new_state)
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

    async def _submit(self, unit: Unit, inbound: Inbound, state: IntakeState) -> str:
        urgent = self.engine.is_urgent(state)
        record = {
            "questionnaire": self.engine.questionnaire.meta.id,
            "questionnaire_version": self.engine.questionnaire.meta.version,
            "language": state.language,
            "urgent": urgent,
            "submitted_at": unit.now.astimezone(dt.UTC).isoformat(),
            "answers": state.model_dump(mode="json")["answers"],
            "files": [file.model_dump() for file in state.files],
        }
        reference = await unit.create_case(
            sender_key=inbound.sender,
            channel=inbound.channel,
            urgent=urgent,
            record=record,
            files=state.files,
        )
        logger.info("case %s submitted%s", reference, " (urgent)" if urgent else "")
        return reference
