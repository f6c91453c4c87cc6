"""Telegram's flood limits, kept on our side so the Bot API never has to say 429.

About one message per second in a private chat (short bursts of three), twenty per
minute in a group, thirty per second overall. A send that would break a chat's limit
is not made: the sender learns how long that chat must wait (and postpones only that
chat's messages); the overall limit is short enough to simply wait for.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

PRIVATE_BURST = 3
PRIVATE_PER_SECOND = 1.0
GROUP_WINDOW = 60.0
GROUP_MAX = 20
OVERALL_WINDOW = 1.0
OVERALL_MAX = 30
MARGIN = 1.1  # stay this much below each limit: clocks and networks are not exact


@dataclass
class _Bucket:
    tokens: float
    at: float


class ChatLimits:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._private: dict[int, _Bucket] = {}
        self._groups: dict[int, deque[float]] = {}
        self._overall: deque[float] = deque()

    def delay(self, chat: int, count: int = 1) -> float:
        """Seconds until `count` more messages may go to `chat` (0: now). A reply in several
        parts waits for room for all of them (as far as a burst allows), so its later parts
        need not wait while the sender holds up every other chat."""
        now = self._clock()
        if chat < 0:
            sent = self._window(self._groups.setdefault(chat, deque()), now, GROUP_WINDOW)
            over = len(sent) + min(count, GROUP_MAX) - GROUP_MAX  # sends that must age out
            if over <= 0:
                return 0.0
            return max(0.0, sent[over - 1] + GROUP_WINDOW * MARGIN - now)
        bucket = self._refilled(chat, now)
        needed = float(min(count, PRIVATE_BURST))
        if bucket.tokens >= needed:
            return 0.0
        return (needed - bucket.tokens) / PRIVATE_PER_SECOND * MARGIN

    def spend(self, chat: int) -> None:
        now = self._clock()
        self._overall.append(now)
        if chat < 0:
            self._groups.setdefault(chat, deque()).append(now)
            return
        self._refilled(chat, now).tokens -= 1.0

    async def overall(self) -> None:
        """Wait until one more message may go out at all."""
        while True:
            now = self._clock()
            sent = self._window(self._overall, now, OVERALL_WINDOW * MARGIN)
            if len(sent) < OVERALL_MAX - 2:
                return
            await asyncio.sleep(max(0.01, sent[0] + OVERALL_WINDOW * MARGIN - now))

    def _refilled(self, chat: int, now: float) -> _Bucket:
        bucket = self._private.get(chat)
        if bucket is None:
            bucket = self._private[chat] = _Bucket(float(PRIVATE_BURST), now)
            if len(self._private) > 100_000:  # forget the quietest half now and then
                for key in list(self._private)[: len(self._private) // 2]:
                    del self._private[key]
        gained = (now - bucket.at) * PRIVATE_PER_SECOND / MARGIN
        bucket.tokens = min(float(PRIVATE_BURST), bucket.tokens + gained)
        bucket.at = now
        return bucket

    @staticmethod
    def _window(sent: deque[float], now: float, seconds: float) -> deque[float]:
        while sent and sent[0] <= now - seconds:
            sent.popleft()
        return sent
