"""What goes into the engine and what comes out of it: plain data, no platform types."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

from flows.state import IntakeState, StoredFile


@dataclass(frozen=True, slots=True)
class Choice:
    """One answer the official can pick; `key` is what a button sends back."""

    key: str
    label: str


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file as it travels between a platform and the core: name, type and bytes."""

    name: str
    media_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Reply:
    """One message to the official. A channel renders `choices` as buttons or as a list."""

    text: str
    choices: tuple[Choice, ...] = ()
    multiple: bool = False
    numbered: bool = True  # False where numbers mean something else (the summary's items)
    files: tuple[Attachment, ...] = ()  # relayed from a counsellor
    # The id of the prompt this reply asks (see flows/picks.py); a button sends it back in
    # its `Pick`. None for replies that ask nothing.
    prompt: str | None = None


@dataclass(frozen=True, slots=True)
class Pick:
    """A button press: the prompt it was shown with and the key(s) chosen.

    One key for a single choice, a yes/no, a confirmation or the summary's action;
    several for a multiple choice (the adapter collects the toggles and sends one pick).
    The engine accepts a pick only for the prompt it is asking now (flows/picks.py).
    """

    prompt: str
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UserInput:
    """One message from the official: typed `text`, or a button's `pick` (then text is not read)."""

    text: str
    files: tuple[StoredFile, ...] = ()  # already stored encrypted by the core; handles only
    dropped_files: int = 0  # files the core refused to store (no consent yet)
    pick: Pick | None = None
    too_big_files: int = 0  # files the core refused because they exceed the limit
    file_limit_mb: int = 20  # that limit, to name it
    # The language the official's app is set to, if the platform says: the language a new
    # conversation starts in (when the texts have it). Ignored once a conversation exists.
    language: str | None = None
    # The channel lets the official clear this chat from their phone (/chat_leeren): the
    # help lists the command. Channels without it (the terminal) never mention it.
    clears_chat: bool = False


class Effect(Enum):
    """What the core must do beyond saving the new state."""

    SUBMIT = "submit"  # turn the intake into a case
    DISCARD = "discard"  # forget the intake in progress (cancel)
    DELETE_ALL = "delete_all"  # forget everything about this person


@dataclass(frozen=True, slots=True)
class Outcome:
    state: IntakeState | None  # None: nothing is kept about this conversation
    replies: list[Reply] = field(default_factory=list)
    effect: Effect | None = None


def reply_to_data(reply: Reply) -> dict[str, Any]:
    """A reply as JSON-ready data, for the outbox; files travel apart (see storage/outbox.py)."""
    data = {item.name: getattr(reply, item.name) for item in fields(Reply) if item.name != "files"}
    data["choices"] = [[choice.key, choice.label] for choice in reply.choices]
    return data


def reply_from_data(data: dict[str, Any]) -> Reply:
    known = {item.name for item in fields(Reply)} - {"files", "choices"}
    values = {name: value for name, value in data.items() if name in known}
    choices = tuple(Choice(str(key), str(label)) for key, label in data.get("choices", ()))
    return Reply(**values, choices=choices)
