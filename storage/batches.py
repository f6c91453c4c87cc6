"""Calls that share one transaction: the hot path's group commit, for either database.

A call joins the queue and waits. One task at a time takes up to `limit` queued calls as
a batch, once it has its turn (the store's slots), and runs them together; calls that
arrive meanwhile wait for the next batch. The busier the database, the larger the
batches: one transaction's fixed cost (a BEGIN and COMMIT, on SQLite an fsync, on
PostgreSQL a pool checkout and a round trip each) is shared by more callers.

What a write is and how a batch of them runs is the database's own (storage/
sqlite_batch.py, storage/pg_batch.py); this module only queues and tells. A caller returns
once its batch's outcome is known – committed, or the error its write or the whole batch
met – and nobody waits for ever: a batch that raises tells every caller in it, and a
cancelled batcher tells those still queued as well.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

W = TypeVar("W")
Outcomes = Sequence[BaseException | None]  # per write: None (committed) or its error
_Waiting = tuple[W, "asyncio.Future[None]"]


class Batches(Generic[W]):
    """Runs queued writes `limit` at a time with `run`, one batch after the other."""

    def __init__(
        self, run: Callable[[list[W]], Awaitable[Outcomes]], turns: asyncio.Semaphore, limit: int
    ) -> None:
        self._run = run
        self._turns = turns
        self._limit = limit
        self.queue: list[_Waiting[W]] = []  # waiting for the next batch
        self._batcher: asyncio.Task[None] | None = None

    async def join(self, write: W) -> None:
        """Until `write` is committed as part of a batch (or the error it, or its batch, met).

        A caller cancelled meanwhile does not take its write out: it may be running already.
        (Its `done` is cancelled with it; the batch runs the write all the same and `_tell`
        passes over a future that is done.)"""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # read, so that a write whose waiter went away does not warn when it fails
        done.add_done_callback(lambda future: future.cancelled() or future.exception())
        self.queue.append((write, done))
        if self._batcher is None or self._batcher.done():
            self._batcher = asyncio.ensure_future(self._run_batches())
        await done

    async def _run_batches(self) -> None:
        while self.queue:
            batch: list[_Waiting[W]] = []
            try:
                async with self._turns:  # what queues meanwhile joins this batch
                    batch, self.queue = self.queue[: self._limit], self.queue[self._limit :]
                    outcomes = await self._run([write for write, _ in batch])
            except Exception as error:  # the whole batch failed: each of its callers hears so
                _tell(batch, [error] * len(batch))
                continue
            except BaseException as error:  # cancelled: nobody may wait for ever
                waiting, self.queue = batch + self.queue, []
                _tell(waiting, [error] * len(waiting))
                raise
            _tell(batch, outcomes)


def _tell(batch: Sequence[_Waiting[W]], outcomes: Outcomes) -> None:
    for (_, done), outcome in zip(batch, outcomes, strict=True):
        if done.done():
            continue
        if outcome is None:
            done.set_result(None)
        else:
            done.set_exception(outcome)
