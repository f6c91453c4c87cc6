"""Counsellors' platform handles as the operator types them: `telegram:123456789`,
`matrix:@berger:example.org`. Checked here, so a typo is named before it reaches the keyring."""

from __future__ import annotations

import re
from collections.abc import Sequence

CHANNELS = ("console", "telegram", "matrix")
MAX_LENGTH = 255
# @localpart:server, the server a host name or an IP literal with an optional port.
MATRIX_USER_ID = re.compile(r"@[^\s:]+:(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?")


class HandleError(Exception):
    """A handle that cannot be right; the message names it and says what is expected."""


def checked(channel: str, handle: str, given: str) -> tuple[str, str]:
    """The handle in the form the platform reports its authors; `given` is what was typed."""
    if channel not in CHANNELS:
        raise HandleError(f"{given}: unknown channel {channel!r}; known: {', '.join(CHANNELS)}")
    if not handle or len(handle) > MAX_LENGTH:
        raise HandleError(f"{given}: the id must have 1 to {MAX_LENGTH} characters")
    if channel == "telegram":
        if not (handle.isascii() and handle.isdigit()) or int(handle) == 0:
            raise HandleError(
                f"{given}: {handle!r} is not a Telegram user id (a number such as 123456789)"
            )
        return channel, str(int(handle))
    if channel == "matrix" and not MATRIX_USER_ID.fullmatch(handle):
        raise HandleError(
            f"{given}: {handle!r} is not a Matrix user id (@name:server, such as "
            "@berger:example.org)"
        )
    return channel, handle


def parse(given: str) -> tuple[str, str]:
    """`CHANNEL:ID` as given to `--handle`."""
    channel, separator, handle = given.partition(":")
    if not separator:
        raise HandleError(
            f"--handle {given!r}: write CHANNEL:ID, such as telegram:123456789 or "
            "matrix:@berger:example.org"
        )
    return checked(channel.strip().lower(), handle.strip(), f"--handle {given!r}")


def from_arguments(
    handles: Sequence[str], *, telegram_id: str | None = None, matrix_id: str | None = None
) -> tuple[tuple[str, str], ...]:
    """Every handle of `--handle`, `--telegram-id` and `--matrix-id`, checked."""
    found = [parse(given) for given in handles]
    if telegram_id is not None:
        found.append(checked("telegram", telegram_id.strip(), f"--telegram-id {telegram_id!r}"))
    if matrix_id is not None:
        found.append(checked("matrix", matrix_id.strip(), f"--matrix-id {matrix_id!r}"))
    return tuple(dict.fromkeys(found))  # the same handle twice is said once
