"""Which instance is active: of several `lotse run` processes on one PostgreSQL database,
only the holder of the lease receives, delivers, raises escalations and purges.

The lease is one row, taken or renewed by one atomic statement and timed by the
database server's clock, so two machines whose clocks disagree still agree on who
holds it. A standby takes it only once it has expired. The holder also keeps, by
its own monotonic clock, the moment until which it may act: the lease's length
counted from *before* its last successful renewal was sent, less a margin. A
process that was paused or cut off from the database stops acting then – before
the lease expires in the database, so before a standby can have taken over.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import socket
import time
from collections.abc import Callable

from sqlalchemy import case, func, literal, update
from sqlalchemy.dialects.postgresql import insert

from storage.models import ServiceLease
from storage.repository import Store

logger = logging.getLogger(__name__)
LEASE_NAME = "active"
LEASE_SECONDS = 10.0
MARGIN_SECONDS = 1.0
# A transaction of the active instance waits for it no longer than this: a paused or
# cut-off process holds row and advisory locks (a conversation, the audit chain) in its
# open transaction, and the instance taking over would wait for them until the old one
# resumed. Lotse's transactions wait for their client milliseconds, never seconds.
IDLE_TRANSACTION_SECONDS = 5.0


def instance_name() -> str:
    """Who this process is, for the lease row and the operator (host and a random part)."""
    return f"{socket.gethostname()[:40]}-{secrets.token_hex(4)}"


class Lease:
    def __init__(
        self,
        store: Store,
        holder: str | None = None,
        seconds: float = LEASE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.holder = holder or instance_name()
        self.seconds = seconds
        self._monotonic = monotonic
        self._valid_until = 0.0

    def valid(self) -> bool:
        """Whether this process may act now (it holds a lease that has not run out)."""
        return self._monotonic() < self._valid_until

    async def acquire(self) -> bool:
        """Take the lease if it is free or expired, or renew it; True when held now."""
        asked_at = self._monotonic()
        ttl = dt.timedelta(seconds=self.seconds)
        values = insert(ServiceLease).values(
            name=LEASE_NAME, holder=self.holder, expires_at=func.now() + literal(ttl), generation=1
        )
        statement = values.on_conflict_do_update(
            index_elements=[ServiceLease.name],
            set_={
                "holder": values.excluded.holder,
                "expires_at": values.excluded.expires_at,
                "generation": ServiceLease.generation
                + case((ServiceLease.holder == values.excluded.holder, 0), else_=1),
            },
            where=(ServiceLease.holder == values.excluded.holder)
            | (ServiceLease.expires_at < func.now()),
        ).returning(ServiceLease.holder)
        async with self.store.unit() as unit:
            held = (await unit.session.execute(statement)).first() is not None
        if held:
            self._valid_until = asked_at + self.seconds - MARGIN_SECONDS
        return held

    async def release(self) -> None:
        """Give the lease up at once (a clean stop), so a standby need not wait it out."""
        self._valid_until = 0.0
        async with self.store.unit() as unit:
            await unit.session.execute(
                update(ServiceLease)
                .where(ServiceLease.name == LEASE_NAME, ServiceLease.holder == self.holder)
                .values(expires_at=func.now() - literal(dt.timedelta(seconds=1)))
            )
