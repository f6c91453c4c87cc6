"""The Prometheus side of `bot.core.metrics`: counters the core feeds, gauges read at scrape.

Each `PrometheusMetrics` has its own registry (no module-level global), so two services
in one process – the tests – do not mix their figures. Labels are only channel names,
case states and exception type names: never content, a reference, a pseudonym or a
platform id.
"""

from __future__ import annotations

import datetime as dt

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select

from storage import outbox, queue
from storage.models import Case
from storage.repository import Store

PREFIX = "lotse"
CONTENT_TYPE = CONTENT_TYPE_LATEST
STEP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
DELIVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
OPEN_STATES = (queue.WAITING, queue.CLAIMED)

# Every family /metrics serves (without the _total/_bucket suffixes); the README uses these.
FAMILIES = (
    "lotse_cases_waiting",
    "lotse_oldest_wait_seconds",
    "lotse_urgent_unclaimed",
    "lotse_oldest_urgent_wait_seconds",
    "lotse_escalate_urgent_after_seconds",
    "lotse_cases_open",
    "lotse_messages_in",
    "lotse_messages_out",
    "lotse_outbox_pending",
    "lotse_outbox_oldest_pending_seconds",
    "lotse_outbox_dead_letters",
    "lotse_delivery_retries",
    "lotse_step_seconds",
    "lotse_delivery_seconds",
    "lotse_errors",
    "lotse_leader",
)


class PrometheusMetrics:
    """Implements `bot.core.metrics.Metrics`; `render` refreshes the gauges and returns the text."""

    def __init__(self, escalate_after: dt.timedelta = dt.timedelta(minutes=5)) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.waiting = Gauge(
            f"{PREFIX}_cases_waiting", "Cases waiting for a counsellor", registry=r
        )
        self.oldest_wait = Gauge(
            f"{PREFIX}_oldest_wait_seconds", "How long the longest-waiting case waits", registry=r
        )
        self.urgent = Gauge(
            f"{PREFIX}_urgent_unclaimed", "Urgent cases nobody has claimed", registry=r
        )
        self.oldest_urgent = Gauge(
            f"{PREFIX}_oldest_urgent_wait_seconds",
            "How long the longest-waiting urgent unclaimed case waits (0: none)",
            registry=r,
        )
        self.escalate_after = Gauge(
            f"{PREFIX}_escalate_urgent_after_seconds",
            "counselling.escalate_urgent_after_minutes, in seconds",
            registry=r,
        )
        self.escalate_after.set(escalate_after.total_seconds())
        self.open = Gauge(f"{PREFIX}_cases_open", "Open cases per state", ["state"], registry=r)
        self.messages_in = Counter(
            f"{PREFIX}_messages_in", "Messages received per channel", ["channel"], registry=r
        )
        self.messages_out = Counter(
            f"{PREFIX}_messages_out", "Messages delivered per channel", ["channel"], registry=r
        )
        self.pending = Gauge(
            f"{PREFIX}_outbox_pending", "Messages waiting in the outbox", ["channel"], registry=r
        )
        self.oldest_pending = Gauge(
            f"{PREFIX}_outbox_oldest_pending_seconds",
            "Age of the oldest message waiting in the outbox (0: none)",
            registry=r,
        )
        self.dead = Gauge(
            f"{PREFIX}_outbox_dead_letters", "Messages that can never be delivered", registry=r
        )
        self.retries = Counter(
            f"{PREFIX}_delivery_retries",
            "Sends that failed for now or were asked to wait, per channel",
            ["channel"],
            registry=r,
        )
        self.steps = Histogram(
            f"{PREFIX}_step_seconds",
            "Time to handle and commit one incoming message",
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.delivery = Histogram(
            f"{PREFIX}_delivery_seconds",
            "Time from a message written to the outbox until it was delivered",
            ["channel"],
            buckets=DELIVERY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            f"{PREFIX}_errors", "Failures by exception type", ["kind"], registry=r
        )
        self.leader = Gauge(
            f"{PREFIX}_leader", "1 when this instance is the active one", registry=r
        )
        for state in OPEN_STATES:
            self.open.labels(state=state)

    # -- bot.core.metrics.Metrics ----------------------------------------------------------------

    def received(self, channel: str) -> None:
        self.messages_in.labels(channel=channel).inc()

    def stepped(self, seconds: float) -> None:
        self.steps.observe(seconds)

    def sent(self, channel: str, waited: float | None) -> None:
        self.messages_out.labels(channel=channel).inc()
        if waited is not None:
            self.delivery.labels(channel=channel).observe(max(0.0, waited))

    def retried(self, channel: str) -> None:
        self.retries.labels(channel=channel).inc()

    def failed(self, kind: str) -> None:
        self.errors.labels(kind=kind).inc()

    # -- the scrape ------------------------------------------------------------------------------

    def expect_channels(self, channels: list[str]) -> None:
        """Show a channel's counters as 0 before its first message (so rates work at once)."""
        for channel in channels:
            self.messages_in.labels(channel=channel)
            self.messages_out.labels(channel=channel)
            self.retries.labels(channel=channel)

    async def refresh(self, store: Store) -> None:
        """Read the queue and the outbox into the gauges (metadata only)."""
        async with store.unit() as unit:
            waiting = await queue.waiting(unit)
            counts = dict(
                (
                    await unit.session.execute(
                        select(Case.status, func.count())
                        .where(Case.status.in_(OPEN_STATES))
                        .group_by(Case.status)
                    )
                ).all()
            )
            pending = await outbox.pending(unit)
            dead = await outbox.dead_letters(unit)
            now = unit.now
        waits = [now - queue.waiting_since(case) for case in waiting]
        urgent = [now - queue.waiting_since(case) for case in waiting if case.urgent]
        self.waiting.set(len(waiting))
        self.oldest_wait.set(max(waits).total_seconds() if waits else 0)
        self.urgent.set(len(urgent))
        self.oldest_urgent.set(max(urgent).total_seconds() if urgent else 0)
        for state in OPEN_STATES:
            self.open.labels(state=state).set(int(counts.get(state, 0)))
        self.pending.clear()
        for row in pending:
            self.pending.labels(channel=row.channel).set(row.count)
        oldest = [now - row.oldest for row in pending]
        self.oldest_pending.set(max(oldest).total_seconds() if oldest else 0)
        self.dead.set(dead)

    async def render(self, store: Store, leader: bool = True) -> bytes:
        self.leader.set(1 if leader else 0)
        await self.refresh(store)
        return generate_latest(self.registry)
