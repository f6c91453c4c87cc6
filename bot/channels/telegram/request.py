"""The HTTP client for the Bot API: a response that cannot be read is reported by the ids
of the updates in it, and is never written to the log.

python-telegram-bot logs an unreadable response in full (message texts included) and lets
a `RecursionError` from JSON nested too deep escape. Polling would then ask for the same
batch for ever; with the ids, the adapter can find the one update that cannot be read and
skip it alone.
"""

from __future__ import annotations

import json
import re
from typing import Any

from telegram import error as tg
from telegram.request import HTTPXRequest

UPDATE_ID = re.compile(rb'"update_id"\s*:\s*(\d+)')


class UnreadableResponse(tg.TelegramError):
    def __init__(self, update_ids: list[int]) -> None:
        super().__init__("the Bot API answered with JSON that cannot be read")
        self.update_ids = update_ids


class Request(HTTPXRequest):
    @staticmethod
    def parse_json_payload(payload: bytes) -> dict[str, Any]:
        try:
            parsed: dict[str, Any] = json.loads(payload.decode("utf-8", "replace"))
        except (ValueError, RecursionError):
            ids = [int(found) for found in UPDATE_ID.findall(payload)]
            raise UnreadableResponse(ids) from None
        return parsed
