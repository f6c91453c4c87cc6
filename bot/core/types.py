"""The platform-neutral types every channel adapter speaks. No platform type crosses the core."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from flows.messages import Attachment, Choice, Reply

__all__ = [
    "Attachment", "Channel", "Choice", "Inbound", "Reply",
    "StaffInbound", "StaffMember", "StaffRoom",
]  # fmt: skip


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


@dataclass(frozen=True, slots=True)
class StaffInbound:
    """One message in the staff room. `author` is the platform's id of whoever wrote it
    (checked against the counsellor list by the core); `thread` the case thread it was
    written in, or None for the room at large."""

    channel: str
    author: str
    thread: str | None
    text: str
    event_id: str
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class StaffMember:
    """A counsellor as a staff room needs them: to recognise what they write, to mention them.

    `handles` maps a channel's name to that platform's id for them; which one applies,
    and how, only the staff room knows.
    """

    display_name: str
    name: str
    handles: Mapping[str, str] = field(default_factory=dict)


class StaffRoom(Protocol):
    """Where counsellors see new cases and talk with officials: the one place that posts there."""

    name: str
    end_to_end_encrypted: bool

    async def check(self) -> list[str]:
        """What is wrong with the room for case details (empty: nothing). Never raises."""
        ...

    async def open_thread(self, reference: str, text: str, urgent: bool) -> str:
        """Post a new case and return the id of its thread."""
        ...

    async def post(self, thread: str | None, text: str) -> None:
        """Post in a case's thread, or in the room at large when `thread` is None."""
        ...

    def is_author(self, member: StaffMember, author: str) -> bool:
        """Whether `member` wrote a message whose `StaffInbound.author` is `author`."""
        ...

    def mention(self, member: StaffMember) -> str: ...
