"""Pacing: one sender who writes very fast (a script, a stuck key, an attack) is slowed down,
with one polite notice, so that every other official is still answered at once.

A token bucket per sender, in memory: `burst` messages at once (forwarding several
pieces of evidence in a row is normal), then `per_second`. Nothing is dropped: a
message over the rate waits for its turn.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

BURST = 10
PER_SECOND = 2.0
NOTICE_EVERY = 60.0  # seconds: at most one notice per sender in this time
REMEMBERED = 10_000  # senders whose buckets are kept (the least recent are forgotten)


@dataclass
class _Bucket:
    tokens: float
    at: float
    noticed_at: float = float("-inf")


class Pace:
    def __init__(
        self,
        burst: int = BURST,
        per_second: float = PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.per_second = per_second
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, sender: str) -> tuple[float, bool]:
        """Take one message's token: (seconds to wait first, whether to send the notice)."""
        now = self._clock()
        bucket = self._buckets.pop(sender, None) or _Bucket(float(self.burst), now)
        self._buckets[sender] = bucket
        while len(self._buckets) > REMEMBERED:
            self._buckets.popitem(last=False)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.per_second)
        bucket.at = now
        bucket.tokens -= 1
        if bucket.tokens >= 0:
            return 0.0, False
        notice = now - bucket.noticed_at >= NOTICE_EVERY
        if notice:
            bucket.noticed_at = now
        return -bucket.tokens / self.per_second, notice
