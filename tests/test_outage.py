"""A step waits out an unreachable database (bot/core/outage.py); other errors are not
waited for, and an instance that may not act does not retry at all."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError

from bot.core import outage
from storage.db import unreachable


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outage, "RETRY_SECONDS", 0.01)


class Flaky:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "stored"


def test_what_counts_as_an_unreachable_database() -> None:
    assert unreachable(ConnectionRefusedError())
    assert unreachable(TimeoutError())
    assert unreachable(InterfaceError("SELECT 1", {}, Exception("connection is closed")))
    lost = OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    lost.connection_invalidated = True
    assert unreachable(lost)
    assert not unreachable(IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not unreachable(OperationalError("SELECT", {}, Exception("database is locked")))
    assert not unreachable(ValueError("a bug"))


async def test_the_step_is_retried_until_the_database_answers() -> None:
    work = Flaky([ConnectionRefusedError(), TimeoutError()])
    assert await outage.until_stored(work, lambda: True) == "stored"
    assert work.calls == 3


async def test_other_errors_are_not_waited_for() -> None:
    work = Flaky([ValueError("a bug")])
    with pytest.raises(ValueError):
        await outage.until_stored(work, lambda: True)
    assert work.calls == 1


async def test_an_instance_that_may_not_act_waits_without_retrying() -> None:
    allowed = False
    work = Flaky([ConnectionRefusedError()])
    step = asyncio.create_task(outage.until_stored(work, lambda: allowed))
    await asyncio.sleep(0.2)
    assert not step.done() and work.calls == 1  # no retry while the lease is lost
    allowed = True  # it holds the lease again
    assert await asyncio.wait_for(step, 5) == "stored"
    assert work.calls == 2


async def test_a_long_outage_on_an_instance_that_may_act_ends_in_the_apology(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outage, "GIVE_UP_SECONDS", 0.05)
    work = Flaky([ConnectionRefusedError()] * 1000)
    with pytest.raises(ConnectionRefusedError):
        await outage.until_stored(work, lambda: True)
    assert 1 < work.calls < 1000
