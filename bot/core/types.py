"""The platform-neutral types every channel adapter speaks. No platform type crosses the core."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from flows.messages import Choice, Reply

__all__ = ["Attachment", "Channel", "Choice", "Inbound", "Reply", "StaffRoom"]


@dataclass(frozen=True, slots=True)
class Attachment:
    name: str
    media_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message from an official, as every channel delivers it to the core.

    `sender` is already a pseudonym (the core's HMAC of `channel:user id`); the
    platform's own id never enters the core. `chat` is where replies go.
    """

    channel: str
    sender: str
    chat: str
    text: str
    event_id: str
    attachments: tuple[Attachment, ...] = ()


class Channel(Protocol):
    """A channel's official-facing side: the one place that sends to an official."""

    name: str

    async def send(self, chat: str, reply: Reply) -> None: ...


class StaffRoom(Protocol):
    """Where counsellors see new cases."""

    async def post_case(self, reference: str, text: str, urgent: bool) -> None: ...
