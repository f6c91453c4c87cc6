"""The platform-neutral types every channel adapter speaks. No platform type crosses the core.

The contract between an adapter and the core:

- `Inbound.event_id` is unique per channel for as long as the platform may redeliver it:
  Telegram's `update_id` (its `message_id` is unique only within one chat, so two officials'
  messages could share it and one would be dropped as a repeat), Matrix's event id. The core
  remembers handled event ids (as an HMAC) and drops a repeat.
- `Inbound.user` is the platform's user id. The core turns it into a pseudonym at once
  (HMAC of `channel:user id`); the id itself is never stored or logged.
- `Inbound.chat` is where replies go (a chat or room id); it is stored encrypted.
- An adapter's `send` delivers one `Reply` and splits it at the platform's length limit
  itself. It reports a failure by raising `RetryAfter` (the platform asks to wait: the
  channel's worker waits exactly that long, only for this channel), `PermanentFailure`
  (the official blocked the bot or left: the message becomes a dead letter), `ChatBusy`
  (nothing was sent, that one chat is at its limit: only its messages wait) or anything
  else (temporary: tried again after a growing pause).
- An adapter may also implement `last_reachable()` (see `Reachable`): `lotse run`'s
  `/healthz` then reports the channel as failing when its platform has not answered
  within the last minute. An adapter without it is taken as reachable.
- An adapter may set `clears_chat = True` when it offers officials `/chat_leeren`
  (`/clear_chat`) itself, deleting or redacting the conversation on their phone: the help
  and the last message of an intake then mention the command. Without it (the terminal)
  they do not.
- An adapter imports from the core only this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from flows.messages import Attachment, Choice, Pick, Reply

__all__ = [
    "Adapter", "Attachment", "Channel", "ChatBusy", "Choice", "DeliveryFailure", "Inbound",
    "InboundSink", "PermanentFailure", "Pick", "Reachable", "Reply", "RetryAfter", "StaffInbound",
    "StaffMember", "StaffRoom", "ThreadCloser",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message from an official, as every channel delivers it to the core.

    A button press arrives as `pick`: the `Reply.prompt` the button was shown with and
    its key (for a multiple choice, the keys the official toggled, sent once); `text`
    is then not read. Choices are keyed per prompt and an outdated pick is refused by
    the core, so an adapter never turns a button into text.
    """

    channel: str
    user: str
    chat: str
    text: str
    event_id: str
    attachments: tuple[Attachment, ...] = ()
    pick: Pick | None = None
    language: str | None = None  # the official's app language ("de", "en"), if known


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


class DeliveryFailure(Exception):
    """A send that failed in a way the delivery worker must treat specially."""


class RetryAfter(DeliveryFailure):
    """The platform asks to wait this many seconds before sending again."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"retry after {seconds} s")
        self.seconds = max(0.0, float(seconds))


class ChatBusy(DeliveryFailure):
    """Nothing was sent: this one chat must wait `seconds` (the platform's per-chat limit).
    Only this message's stream waits; the channel's other chats go on, and it does not
    count as a failed attempt."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"chat busy for {seconds} s")
        self.seconds = max(0.0, float(seconds))


class PermanentFailure(DeliveryFailure):
    """This message can never be delivered (the official blocked the bot, left, or the chat
    is gone); `why` is a short, content-free reason for the operator log and the audit."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class Channel(Protocol):
    """A channel's official-facing side: the one place that sends to an official."""

    name: str

    async def send(self, chat: str, reply: Reply) -> None: ...


class InboundSink(Protocol):
    """What an adapter hands its messages to: the core."""

    async def handle(self, inbound: Inbound) -> None:
        """Take one official's message. Returns once it is handled and committed; replies
        are delivered by the channel's worker, not before this returns."""
        ...

    async def handle_staff(self, inbound: StaffInbound) -> None: ...

    async def settle(self) -> None:
        """Deliver now what is due (the demo waits for it, as a person waits for the answer)."""
        ...


class Adapter(Channel, Protocol):
    """A running channel: receives until it is cancelled (or its source ends: the console)."""

    async def receive(self, sink: InboundSink) -> None: ...


class Reachable(Protocol):
    """Optional for an adapter: when it last reached its platform, for the health check."""

    def last_reachable(self) -> float | None:
        """`time.monotonic()` of the last successful call to the platform (a poll, a sync, a
        send), or None before the first one."""
        ...


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


@runtime_checkable
class ThreadCloser(Protocol):
    """A staff room whose threads can be closed and reopened (Telegram's forum topics)."""

    async def set_thread_open(self, thread: str, open_: bool) -> None:
        """Close (`open_` False) or reopen a case's thread; never raises."""
        ...
