"""The platform-neutral types every channel adapter speaks. No platform type crosses the core."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from flows.messages import Attachment, Choice, Pick, Reply

__all__ = [
    "Attachment", "Channel", "Choice", "Inbound", "Pick", "Reply",
    "StaffInbound", "StaffMember", "StaffRoom",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message from an official, as every channel delivers it to the core.

    `sender` is already a pseudonym (the core's HMAC of `channel:user id`); the
    platform's own id never enters the core. `chat` is where replies go.

    A button press arrives as `pick`: the `Reply.prompt` the button was shown with and
    its key (for a multiple choice, the keys the official toggled, sent once); `text`
    is then not read. Choices are keyed per prompt and an outdated pick is refused by
    the core, so an adapter never turns a button into text.
    """

    channel: str
    sender: str
    chat: str
    text: str
    event_id: str
    attachments: tuple[Attachment, ...] = ()
    pick: Pick | None = None


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
    """A counsellor as a staff room needs them: to mention them."""

    display_name: str
    matrix_id: str | None
    telegram_id: int | None


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

    def mention(self, member: StaffMember) -> str: ...
