"""A unit whose caller is cancelled at its end – a worker stopped at shutdown – still ends cleanly.

CI once saw `lotse demo` print SQLAlchemy's "Exception during reset or similar" traceback at
its end: the delivery worker was cancelled at the moment its connection went back to the pool
(the pool's rollback on return). The pool's own event puts the cancellation exactly there.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from sqlalchemy import event, func, select

from storage.models import ProcessedEvent
from storage.repository import Store

pytestmark = pytest.mark.timeout(60)


async def _marked(store: Store) -> int:
    async with store.unit() as unit:
        return int(await unit.session.scalar(select(func.count()).select_from(ProcessedEvent)) or 0)


@pytest.mark.parametrize("moment", ["commit", "reset"])
async def test_a_unit_cancelled_as_it_ends_commits_and_returns_its_connection(
    empty_store: Store, caplog: pytest.LogCaptureFixture, moment: str
) -> None:
    store = empty_store
    sync_engine = store.database.sync_engine
    target: list[asyncio.Task[Any]] = []
    cancelled_at: list[str] = []

    def cancel_the_caller(*_: object) -> None:
        if target and not cancelled_at:
            cancelled_at.append(moment)
            target[0].cancel()

    where = sync_engine if moment == "commit" else sync_engine.pool
    event.listen(where, moment, cancel_the_caller)

    async def write() -> None:
        async with store.unit() as unit:
            target.append(asyncio.current_task())  # type: ignore[arg-type]
            await unit.mark_seen("telegram:1")

    caplog.set_level(logging.DEBUG)
    task = asyncio.create_task(write())
    with pytest.raises(asyncio.CancelledError):
        await task
    event.remove(where, moment, cancel_the_caller)

    assert cancelled_at == [moment]  # the cancellation did arrive where it was meant to
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
    assert sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert await _marked(store) == 1  # the commit went through: the caller hears it was cut off
