"""The composition root: one core, its channels, their delivery workers, the tick and the purge.

`lotse run` and `lotse demo` both run a `Service`. It owns signal handling: SIGTERM or
SIGINT stops the adapters from taking new messages, lets the steps in flight finish
and commit, delivers what is due within the remaining time, and returns – all within
`STOP_SECONDS`. What could not be delivered stays in the outbox for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from bot.core.orchestrator import Core
from bot.core.types import Adapter
from bot.logs import log_failure

logger = logging.getLogger(__name__)
STOP_SECONDS = 10.0
DRAIN_SHARE = 0.6  # of STOP_SECONDS for the steps in flight; the rest for delivery
TICK_SECONDS = 30.0


class Service:
    def __init__(
        self,
        core: Core,
        adapters: Sequence[Adapter],
        *,
        tick_seconds: float = TICK_SECONDS,
        jobs: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
        stop_when_adapters_end: bool = False,
    ) -> None:
        self.core = core
        self.adapters = list(adapters)
        self.tick_seconds = tick_seconds
        self.jobs = list(jobs)  # further background work, e.g. the daily purge
        self.stop_when_adapters_end = stop_when_adapters_end
        self.stopping = asyncio.Event()
        for adapter in self.adapters:
            core.attach(adapter)

    async def run(self, handle_signals: bool = True) -> None:
        loop = asyncio.get_running_loop()
        if handle_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, self.stopping.set)
        receiving = [
            asyncio.create_task(self._receive(adapter), name=f"receive-{adapter.name}")
            for adapter in self.adapters
        ]
        background = [
            asyncio.create_task(self.core.delivery.run(), name="delivery"),
            asyncio.create_task(self._tick(), name="tick"),
            *(asyncio.create_task(job(), name="job") for job in self.jobs),
        ]
        try:
            await self._until_stopped(receiving)
        finally:
            await self._stop(receiving, background)
            if handle_signals:
                for signum in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(signum)

    async def _until_stopped(self, receiving: list[asyncio.Task[None]]) -> None:
        stop = asyncio.create_task(self.stopping.wait())
        waiting: set[asyncio.Task[object]] = {stop, *receiving}
        try:
            while not self.stopping.is_set():
                done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                ended = [task for task in done if task is not stop]
                if (
                    ended
                    and self.stop_when_adapters_end
                    and not any(task in waiting for task in receiving)
                ):
                    return
        finally:
            stop.cancel()

    async def _receive(self, adapter: Adapter) -> None:
        try:
            await adapter.receive(self.core)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # one channel failing must not take the others down
            log_failure(logger, f"the {adapter.name} channel", error)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.tick_seconds)
            await self.core.tick()

    async def _stop(
        self, receiving: list[asyncio.Task[None]], background: list[asyncio.Task[None]]
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_SECONDS
        for task in receiving:
            task.cancel()
        if not await self.core.drain(STOP_SECONDS * DRAIN_SHARE):
            logger.warning("stopping: a step did not finish in time and was rolled back")
        for task in background:
            task.cancel()
        for task in [*receiving, *background]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        remaining = deadline - loop.time()
        if remaining > 0:
            try:
                await asyncio.wait_for(self.core.settle(), remaining)
            except TimeoutError:
                logger.warning("stopping: the undelivered rest waits in the outbox")
            except Exception as error:
                log_failure(logger, "the last delivery before stopping", error)
        logger.info("stopped")
