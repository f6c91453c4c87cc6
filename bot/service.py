"""The composition root: one core, its channels, their delivery workers, the tick and the purge.

`lotse run` and `lotse demo` both run a `Service`. It owns signal handling: SIGTERM or
SIGINT stops the adapters from taking new messages, lets the steps in flight finish
and commit, delivers what is due within the remaining time, and returns – all within
`STOP_SECONDS`. What could not be delivered stays in the outbox for the next start.

With a `Leadership` (two instances on one PostgreSQL database), the service waits
as a standby until it holds the lease, is active while it renews it, and goes back
to standby – receiving, delivering, ticking and purging nothing – the moment it may
no longer act (see storage/lease.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

from bot.core.orchestrator import Core
from bot.core.types import Adapter
from bot.core.waits import until_set
from bot.logs import log_failure

logger = logging.getLogger(__name__)
STOP_SECONDS = 10.0
DRAIN_SHARE = 0.6  # of STOP_SECONDS for the steps in flight; the rest for delivery
TICK_SECONDS = 30.0
STANDBY_SECONDS = 2.0  # how often a standby asks for the lease


class Leadership(Protocol):
    seconds: float

    def valid(self) -> bool: ...

    async def acquire(self) -> bool: ...

    async def release(self) -> None: ...


class Service:
    def __init__(
        self,
        core: Core,
        adapters: Sequence[Adapter],
        *,
        tick_seconds: float = TICK_SECONDS,
        jobs: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
        stop_when_adapters_end: bool = False,
        leadership: Leadership | None = None,
    ) -> None:
        self.core = core
        self.adapters = list(adapters)
        self.tick_seconds = tick_seconds
        self.jobs = list(jobs)  # further background work, e.g. the daily purge
        self.stop_when_adapters_end = stop_when_adapters_end
        self.leadership = leadership
        self.stopping = asyncio.Event()
        self.active = asyncio.Event()  # set while this instance acts (for tests and health)
        for adapter in self.adapters:
            core.attach(adapter)
        if leadership is not None:
            core.delivery.may_send = leadership.valid

    async def run(self, handle_signals: bool = True) -> None:
        loop = asyncio.get_running_loop()
        if handle_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, self.stopping.set)
        try:
            while not self.stopping.is_set():
                if not await self._become_active():
                    return
                if not await self._run_active():
                    return
                logger.error("this instance lost the lease: it stands by and acts no more")
        finally:
            if self.leadership is not None:
                with contextlib.suppress(Exception):
                    await self.leadership.release()
            if handle_signals:
                for signum in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(signum)

    async def _become_active(self) -> bool:
        """Wait for the lease (standby); False when stopped meanwhile."""
        if self.leadership is None:
            return True
        announced = False
        while not self.stopping.is_set():
            try:
                if await self.leadership.acquire():
                    logger.warning("this instance is active (it holds the lease)")
                    return True
                if not announced:  # said once per standby period, not on every ask
                    logger.warning("standby: another instance is active")
                    announced = True
            except Exception as error:  # the database may be away: keep asking
                log_failure(logger, "asking for the lease", error)
            await until_set(self.stopping, STANDBY_SECONDS)
        return False

    async def _run_active(self) -> bool:
        """Receive, deliver, tick and run the jobs until stopped (False) or the lease is lost
        (True)."""
        self.active.set()
        lost = asyncio.Event()
        receiving = [
            asyncio.create_task(self._receive(adapter), name=f"receive-{adapter.name}")
            for adapter in self.adapters
        ]
        background = [
            asyncio.create_task(self.core.delivery.run(), name="delivery"),
            asyncio.create_task(self._tick(), name="tick"),
            *(asyncio.create_task(job(), name="job") for job in self.jobs),
        ]
        if self.leadership is not None:
            background.append(asyncio.create_task(self._keep(lost), name="lease"))
        try:
            await self._until_stopped(receiving, lost)
        finally:
            await self._stop(receiving, background, deliver=not lost.is_set())
            self.active.clear()
        return lost.is_set()

    async def _keep(self, lost: asyncio.Event) -> None:
        """Renew the lease a few times per lease length; signal when it can no longer be held."""
        assert self.leadership is not None
        every = self.leadership.seconds / 4
        while self.leadership.valid():
            await asyncio.sleep(every)
            try:
                if not await self.leadership.acquire():
                    break
            except Exception as error:  # renewal failed: try again while the lease lasts
                log_failure(logger, "renewing the lease", error)
        lost.set()

    async def _until_stopped(
        self, receiving: list[asyncio.Task[None]], lost: asyncio.Event
    ) -> None:
        stop = asyncio.create_task(self.stopping.wait())
        gone = asyncio.create_task(lost.wait())
        waiting: set[asyncio.Task[Any]] = {stop, gone, *receiving}
        try:
            while not self.stopping.is_set() and not lost.is_set():
                _, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                adapters_ended = not any(task in waiting for task in receiving)
                if self.stop_when_adapters_end and adapters_ended:
                    return
        finally:
            stop.cancel()
            gone.cancel()

    async def _receive(self, adapter: Adapter) -> None:
        try:
            await adapter.receive(self.core)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # one channel failing must not take the others down
            log_failure(logger, f"the {adapter.name} channel", error)

    async def _settle_within(self, seconds: float) -> None:
        """The last delivery before stopping, given up after `seconds` without waiting for it
        to wind down: a database call cut off by a cancellation can take the SQLite driver
        (aiosqlite under SQLAlchemy) much longer to close than the stop may last. What was
        not sent stays in the outbox for the next start."""
        settling = asyncio.ensure_future(self.core.settle())
        done, _ = await asyncio.wait({settling}, timeout=seconds)
        if not done:
            settling.cancel()
            settling.add_done_callback(_read_outcome)
            logger.warning("stopping: the undelivered rest waits in the outbox")
            return
        if not settling.cancelled() and (error := settling.exception()) is not None:
            log_failure(logger, "the last delivery before stopping", error)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.tick_seconds)
            await self.core.tick()

    async def _stop(
        self,
        receiving: list[asyncio.Task[None]],
        background: list[asyncio.Task[None]],
        deliver: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_SECONDS
        for task in receiving:
            task.cancel()
        if not await self.core.drain(STOP_SECONDS * DRAIN_SHARE):
            logger.warning(
                "stopping: a step did not finish in time (it is rolled back, or it waits for "
                "the database and the lease: its message stays unconfirmed)"
            )
        for task in background:
            task.cancel()
        for task in [*receiving, *background]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        # A SQLite connection whose call was cancelled twice can be left unclosed by the
        # driver (aiosqlite's close and stop race), still holding its write lock until the
        # garbage collector finds it; in a quiet process that can take minutes, and the last
        # delivery below would wait for the lock. Collecting now lets it go.
        gc.collect()
        remaining = deadline - loop.time()
        if deliver and remaining > 0:
            await self._settle_within(remaining)
        logger.info("stopped")


def _read_outcome(task: asyncio.Future[Any]) -> None:
    """A task given up on is read when it ends, so asyncio does not report it as unread."""
    if not task.cancelled():
        task.exception()
