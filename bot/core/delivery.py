"""Sending what the outbox holds: one worker per channel, woken when a change commits.

Each worker drains its own channel (the staff room's worker also takes the staff-room
messages), so a platform that asks to wait stalls only itself. Within a channel,
messages of one stream (an official, a case thread) go out in the order they were
written; streams of urgent cases first.

A send ends in one of five ways: delivered (the message is deleted); `RetryAfter`
(the whole channel waits exactly that long, the message is not counted as failed);
`ChatBusy` (only that stream waits that long, not counted as failed either);
`PermanentFailure` (a dead letter: audited, a content-free notice in the staff room –
once a day per official –, and the stream goes on); anything else is temporary (a
growing pause for that message and its stream). Before anything about a case is
posted, the staff room is checked; when the check fails nothing is posted and the
operator log says why.

Replies to someone of whom nothing is stored – before consent, after a cancellation
or a deletion – do not go through the database (nothing is stored before consent, and
nothing remains after a deletion): they wait in memory, in the same worker and the
same stream order, and are lost with the process, as the unconsented state is.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from bot.core.metrics import NO_METRICS, Metrics
from bot.core.types import (
    Attachment,
    Channel,
    ChatBusy,
    PermanentFailure,
    Reply,
    RetryAfter,
    StaffRoom,
    ThreadCloser,
)
from bot.core.waits import until_set
from bot.logs import log_failure
from storage import outbox
from storage.audit import SYSTEM, Action
from storage.repository import Store

logger = logging.getLogger(__name__)
IDLE_SECONDS = 5.0  # a worker looks again this often even when nobody wakes it
FIRST_BACKOFF = 0.5  # after a failed pass; doubling up to IDLE_SECONDS while failures last
ROOM_RECHECK = dt.timedelta(seconds=30)  # a failed staff-room check is tried again after this
VOLATILE_ATTEMPTS = 5
# The staff room's content-free words for a situation ("dead": a dead letter; "held": a new
# case's details held back by a failed room check) about a case reference.
Notice = Callable[[str, str | None], str]


class _Gone(Exception):
    """The message's case no longer exists."""


@dataclass
class _Volatile:
    """A reply kept in memory only (see the module docstring)."""

    stream: str
    address: str
    reply: Reply
    attempts: int = 0
    due: float = 0.0  # loop time
    urgent: bool = False  # a safety hit before consent: its stream goes ahead of the others


@dataclass
class _Pass:
    delivered: int = 0
    pause: float = 0.0  # the platform asked the whole channel to wait this long
    # Everything the outbox held for the channel went out: nothing waits for a later time,
    # so the worker sleeps until woken (each commit that queues a message wakes it) instead
    # of looking again – at a few units per message, the cost of a quiet hour.
    drained: bool = False


@dataclass
class _Worker:
    name: str
    serves: frozenset[str]  # outbox channels this worker sends
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    volatile: deque[_Volatile] = field(default_factory=deque)
    # A pass that failed half-way (the database went away, the disk filled up) leaves what it
    # had taken leased for LEASE; the next pass takes it back at once instead.
    left_leased: bool = False


class Delivery:
    def __init__(
        self,
        store: Store,
        staff_room: StaffRoom,
        channels: Mapping[str, Channel],
        notice: Notice,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.staff_room = staff_room
        self.channels = channels
        self._notice = notice
        self._held: set[str] = set()  # new cases whose held-back details were announced
        self.room_recheck = ROOM_RECHECK
        # Whether this process may send now (the active instance's lease); checked before
        # every send, so a paused or cut-off former leader sends nothing more.
        self.may_send: Callable[[], bool] = lambda: True
        self._workers: dict[str, _Worker] = {}

    def _worker(self, name: str) -> _Worker:
        """The worker that sends for an outbox channel (the staff room's for staff posts)."""
        if name == outbox.STAFF_CHANNEL:
            name = self.staff_room.name
        worker = self._workers.get(name)
        if worker is None:
            serves = {name} | ({outbox.STAFF_CHANNEL} if name == self.staff_room.name else set())
            worker = self._workers[name] = _Worker(name, frozenset(serves))
        return worker

    def _all_workers(self) -> list[_Worker]:
        for name in [*self.channels, self.staff_room.name]:
            self._worker(name)
        return list(self._workers.values())

    def wake(self, channels: Iterable[str]) -> None:
        for name in channels:
            self._worker(name).wake.set()

    def send_volatile(
        self, channel: str, stream: str, address: str, replies: list[Reply], urgent: bool = False
    ) -> None:
        worker = self._worker(channel)
        worker.volatile.extend(_Volatile(stream, address, one, urgent=urgent) for one in replies)
        if urgent:  # ahead of the others in a burst, each stream still in its own order
            ahead = {item.stream for item in worker.volatile if item.urgent}
            worker.volatile = deque(sorted(worker.volatile, key=lambda i: i.stream not in ahead))
        worker.wake.set()

    async def flush(self) -> int:
        """Send everything that is due now on every channel; returns how many went out."""
        total = 0
        for worker in self._all_workers():
            while True:
                done = await self._pass(worker)
                total += done.delivered
                if not done.delivered or done.pause or done.drained:
                    break
        return total

    async def run(self) -> None:
        """The workers of every channel, until cancelled."""
        await self.recover()
        async with asyncio.TaskGroup() as group:
            for worker in self._all_workers():
                group.create_task(self._work(worker), name=f"delivery-{worker.name}")

    async def recover(self) -> None:
        """At start: what a killed process had taken for sending is due again at once.

        Only one process delivers at a time (SQLite: one process; PostgreSQL: the active
        instance), so a lease found at start belongs to a process that is gone.
        """
        serves = {name for worker in self._all_workers() for name in worker.serves}
        async with self.store.unit() as unit:
            await outbox.release_leases(unit, serves)

    async def _work(self, worker: _Worker) -> None:
        backoff = 0.0
        while True:
            worker.wake.clear()
            try:
                done = await self._pass(worker)
                backoff = 0.0
            except Exception as error:  # the database may be away for a moment (full, locked)
                worker.left_leased = True
                log_failure(logger, f"delivery on {worker.name}", error)
                self.metrics.failed(type(error).__name__)
                backoff = min(IDLE_SECONDS, max(FIRST_BACKOFF, backoff * 2))
                await asyncio.sleep(backoff)  # not a busy loop of failures while it lasts
                continue
            if done.pause:
                await asyncio.sleep(done.pause)
                continue
            if done.delivered and not done.drained:
                continue
            wait = await self._until_due(worker, ask_database=not done.drained)
            await until_set(worker.wake, wait)

    async def _until_due(self, worker: _Worker, ask_database: bool) -> float:
        waits = [IDLE_SECONDS]
        now = asyncio.get_running_loop().time()
        waits += [max(0.0, item.due - now) for item in worker.volatile]
        if not ask_database:
            return max(0.01, min(waits))
        try:
            async with self.store.unit() as unit:
                due = await outbox.next_due(unit, worker.serves)
                if due is not None:
                    waits.append(max(0.0, (due - unit.now).total_seconds()))
        except Exception as error:
            log_failure(logger, "looking for due messages", error)
        return max(0.01, min(waits))

    # -- one pass -------------------------------------------------------------------------------

    async def _pass(self, worker: _Worker) -> _Pass:
        async with worker.lock:
            done = _Pass()
            if not self.may_send():
                return done
            blocked = await self._send_volatile(worker, done)
            if done.pause:
                return done
            taken = await self._take(worker)
            worker.left_leased = False
            streams = taken.streams
            # set back by `_postpone`, wherever this pass leaves a message for later
            done.drained = not taken.more and not blocked
            room_problems: list[str] | None = None
            for index, stream in enumerate(streams):
                if stream[0].stream in blocked:
                    await self._postpone(done, stream, None)
                    continue
                if stream[0].kind != outbox.OFFICIAL:
                    if room_problems is None:
                        room_problems = await self._check_room()
                    if room_problems:
                        await self._announce_held(stream[0])
                        await self._postpone(done, stream, self.room_recheck)
                        continue
                for position, message in enumerate(stream):
                    if not self.may_send():
                        logger.error("not sending: this instance no longer holds the lease")
                        rest = [*stream[position:], *[m for s in streams[index + 1 :] for m in s]]
                        await self._postpone(done, rest, None)
                        return done
                    try:
                        sent = await self._send(message)
                    except RetryAfter as wait:
                        self.metrics.retried(message.channel)
                        await self._postpone(
                            done,
                            [*stream[position:], *[m for s in streams[index + 1 :] for m in s]],
                            dt.timedelta(seconds=wait.seconds),
                        )
                        logger.warning("%s asks to wait %.1f s", worker.name, wait.seconds)
                        done.pause = wait.seconds
                        return done
                    except ChatBusy as busy:  # only this stream waits, nothing failed
                        await self._postpone(
                            done, stream[position:], dt.timedelta(seconds=busy.seconds)
                        )
                        break
                    if sent:
                        done.delivered += 1
                        continue
                    await self._postpone(done, stream[position + 1 :], None)
                    break
            return done

    async def _take(self, worker: _Worker) -> outbox.Taken:
        hot = self.store.hot
        if hot.reads_outbox and not worker.left_leased:
            rows = await hot.due(sorted(worker.serves), outbox.TAKE_LIMIT)
            return outbox.arrange(self.store.keys, self.store.clock(), rows)
        async with self.store.unit() as unit:
            if worker.left_leased:  # only this process delivers (see `recover`)
                await outbox.release_leases(unit, worker.serves)
            return await outbox.take(unit, worker.serves)

    async def _send_volatile(self, worker: _Worker, done: _Pass) -> set[str]:
        """Send the in-memory replies that are due; returns the streams still waiting."""
        channel = self.channels.get(worker.name)
        now = asyncio.get_running_loop().time()
        waiting: set[str] = set()
        kept: deque[_Volatile] = deque()
        while worker.volatile:
            item = worker.volatile.popleft()
            if item.stream in waiting or item.due > now or channel is None or not self.may_send():
                waiting.add(item.stream)
                kept.append(item)
                continue
            try:
                await channel.send(item.address, item.reply)
                done.delivered += 1
                self.metrics.sent(worker.name, None)
            except RetryAfter as wait:
                self.metrics.retried(worker.name)
                item.due = now + wait.seconds
                kept.append(item)
                kept.extend(worker.volatile)
                worker.volatile.clear()
                done.pause = wait.seconds
                break
            except ChatBusy as busy:
                item.due = now + busy.seconds
                waiting.add(item.stream)
                kept.append(item)
            except PermanentFailure as failure:
                logger.warning("a reply on %s cannot be delivered: %s", worker.name, failure.why)
            except Exception as error:
                item.attempts += 1
                log_failure(logger, f"delivering a reply on {worker.name}", error)
                self.metrics.failed(type(error).__name__)
                self.metrics.retried(worker.name)
                if item.attempts < VOLATILE_ATTEMPTS:
                    item.due = now + 2.0**item.attempts
                    waiting.add(item.stream)
                    kept.append(item)
        worker.volatile = kept
        return waiting | {item.stream for item in kept}

    async def _announce_held(self, message: outbox.Queued) -> None:
        """A new case whose details are held back: the reference and an alert reach the room
        (content-free), once per case and process, so nobody waits for a post that cannot come."""
        reference = message.reference
        if message.kind != outbox.OPEN_THREAD or reference is None or reference in self._held:
            return
        try:
            await self.staff_room.post(None, self._notice("held", reference))
            self._held.add(reference)
        except Exception as error:  # the room may fail in any way: the next pass tries again
            log_failure(logger, "announcing a held-back case", error)

    async def _check_room(self) -> list[str]:
        problems = await self.staff_room.check()
        if problems:
            logger.error(
                "staff room check failed, case details are held back: %s", "; ".join(problems)
            )
        return problems

    async def _postpone(
        self, done: _Pass, messages: list[outbox.Queued], pause: dt.timedelta | None
    ) -> None:
        """Leave messages for later: this pass did not drain the outbox (nor did a failed
        send, whose message waits too, even when nothing follows it)."""
        done.drained = False
        if not messages:
            return
        async with self.store.unit() as unit:
            until = unit.now + (pause or dt.timedelta(0))
            await outbox.postpone(unit, [message.id for message in messages], until)

    async def _send(self, message: outbox.Queued) -> bool:
        """Deliver one message; False when it failed and waits (temporary)."""
        try:
            thread = await self._deliver(message)
        except _Gone:  # the case was deleted meanwhile: there is nothing left to post to
            thread = None
        except (RetryAfter, ChatBusy):
            raise
        except PermanentFailure as failure:
            await self._dead(message, failure.why)
            return True
        except Exception as error:  # a platform may fail in any way: try again later
            log_failure(logger, f"delivering a {message.kind} message", error)
            self.metrics.failed(type(error).__name__)
            self.metrics.retried(message.channel)
            async with self.store.unit() as unit:
                await outbox.failed(unit, message.id)
            return False
        opened = None
        if message.kind == outbox.OPEN_THREAD and message.reference and thread:
            opened = (message.reference, thread)  # the case keeps its thread
        await self.store.hot.delivered(message.id, message.file_id, opened)  # with others'
        written = message.written_at
        now = self.store.clock()
        self.metrics.sent(message.channel, (now - written).total_seconds() if written else None)
        return True

    async def _dead(self, message: outbox.Queued, why: str) -> None:
        logger.warning(
            "a %s message on %s cannot be delivered (%s): kept as a dead letter",
            message.kind,
            message.channel,
            why,
        )
        async with self.store.unit() as unit:
            first = await outbox.dead(unit, message.id)
            await unit.audit(
                Action.DELIVERY_FAILED,
                SYSTEM,
                message.reference,
                {"channel": message.channel, "kind": message.kind, "why": why[:80]},
            )
            if message.kind == outbox.OFFICIAL and first:
                notice = self._notice("dead", message.reference)
                await outbox.to_staff(unit, message.reference, notice)
        self.wake(unit.outbox_channels)

    async def _deliver(self, message: outbox.Queued) -> str | None:
        content = message.content
        if message.kind == outbox.OPEN_THREAD:
            return await self.staff_room.open_thread(
                message.reference or "", content["text"], bool(content.get("urgent"))
            )
        if message.kind == outbox.STAFF:
            thread = content.get("thread") or await self._thread_of(message.reference)
            if content.get("thread_open") is True and isinstance(self.staff_room, ThreadCloser):
                await self.staff_room.set_thread_open(thread or "", True)  # to post in it
            await self.staff_room.post(thread, content["text"])
            if content.get("thread_open") is False and isinstance(self.staff_room, ThreadCloser):
                await self.staff_room.set_thread_open(thread or "", False)
            return None
        channel = self.channels.get(message.channel)
        if channel is None:
            raise LookupError(f"the {message.channel} channel is not running")
        reply = message.reply
        if message.file_id is not None:
            async with self.store.unit() as unit:
                data = await outbox.transit_file(unit, message.file_id)
            if data is not None:
                file = content["file"]
                attachment = Attachment(file["name"], file["media_type"], data)
                reply = replace(reply, files=(attachment,))
        await channel.send(message.address, reply)
        return None

    async def _thread_of(self, reference: str | None) -> str | None:
        if reference is None:
            return None
        async with self.store.unit() as unit:
            case = await unit.case(reference)
        if case is None:
            raise _Gone
        if case.thread is None:
            raise LookupError("the case's thread is not open yet")
        return case.thread
