"""Reading what an official typed: cleaning it, and matching it to the choices of a step.

People answer a choice with its number, its label, the start of its label, or a
button; several choices as "1, 3" or "Beleidigung und Stalking". All of it is
accepted here, and anything that fits nothing is reported back, never guessed.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

from flows.messages import Choice

_CONTROL = {"Cc", "Cf", "Cs", "Co", "Cn"}
_KEEP = {"\n", "\t", "\u200d"}  # newlines, tabs, and the joiner that holds emoji together
_SPLIT_MANY = re.compile(r"\s*(?:[,;/+&]|\bund\b|\band\b|\boder\b|\bor\b)\s*", re.IGNORECASE)
_URL = re.compile(r"(?:https?://|www\.)[^\s<>\"']+", re.IGNORECASE)
_TRAILING = ".,;:!?)]}>\"'"
_NUMBER = re.compile(r"[0-9]{1,4}")
PREFIX_MINIMUM = 3


_NEWLINES = re.compile("\r\n|[\r\v\f\x1c-\x1e\x85\u2028\u2029]")
QUOTE = "│ "  # starts every further line of someone's words inside a rendering


def clean(text: str) -> str:
    """Normalise what arrived: NFC, every kind of line break a newline, no control or
    bidirectional formatting characters, no surrounding blanks.

    The one normalisation for everything that enters: intake answers, messages after
    submitting, counsellors' lines, file names."""
    if text.isprintable() and unicodedata.is_normalized("NFC", text):
        # Most messages: no line break, no control or format character (none of them is
        # printable) and normalised already, so only the blanks go. The same as below.
        return text.strip()
    normal = unicodedata.normalize("NFC", _NEWLINES.sub("\n", text))
    kept = "".join(
        char for char in normal if char in _KEEP or unicodedata.category(char) not in _CONTROL
    )
    return kept.strip()


def quoted(text: str) -> str:
    """Someone's words inside a rendering (a staff post, a transcript, a summary): cleaned,
    and every line after the first begins with a bar, so no line of theirs can pass for a
    heading, a field or a line of the bot's."""
    return clean(text).replace("\n", "\n" + QUOTE)


def one_line(text: str, fallback: str = "file") -> str:
    """A name to show (an attachment's): cleaned, on one line, at most 200 characters."""
    return " ".join(clean(text).split())[:200] or fallback


def parse_command(text: str, names: dict[str, str]) -> tuple[str | None, str, str | None]:
    """(command, argument, name as typed) for '/name argument'; (None, '', None) otherwise.

    `names` maps every accepted spelling to its command; Telegram's '@botname' suffix
    is dropped. A name that is not a command gives (None, argument, name).
    """
    if not text.startswith("/") or len(text) < 2 or text[1].isspace():
        return None, "", None
    head, _, argument = text[1:].partition(" ")
    name = head.split("@", 1)[0].casefold()
    return names.get(name), argument.strip(), name


def is_number(text: str) -> bool:
    """A choice number as people type it: ASCII digits, not '²' or a 5000-digit string."""
    return _NUMBER.fullmatch(text) is not None


def _key(text: str) -> str:
    return " ".join(text.casefold().strip().strip(_TRAILING).split())


@functools.lru_cache(maxsize=4096)
def _label_key(label: str) -> str:
    """`_key` of a choice's label, made once: labels come from the questionnaire and the
    texts, a fixed few (never what an official typed)."""
    return _key(label)


def match_one(text: str, choices: tuple[Choice, ...], aliases: dict[str, str]) -> str | None:
    """The key of the one choice `text` names, or None.

    `aliases` maps extra spellings (yes/no words, other languages' labels) to keys.
    """
    wanted = _key(text)
    if not wanted:
        return None
    if is_number(wanted):
        index = int(wanted)
        return choices[index - 1].key if 1 <= index <= len(choices) else None
    for choice in choices:
        if wanted in (choice.key.casefold(), _label_key(choice.label)):
            return choice.key
    if wanted in aliases:
        return aliases[wanted]
    if len(wanted) >= PREFIX_MINIMUM:
        starts = {choice.key for choice in choices if _label_key(choice.label).startswith(wanted)}
        starts |= {key for alias, key in aliases.items() if alias.startswith(wanted)}
        if len(starts) == 1:
            return starts.pop()
    return None


@dataclass(frozen=True, slots=True)
class ManyMatch:
    keys: list[str]
    unknown: list[str]


def match_many(text: str, choices: tuple[Choice, ...], aliases: dict[str, str]) -> ManyMatch:
    """Several choices in one message; keeps the choices' own order and drops repeats."""
    whole = match_one(text, choices, aliases)
    if whole is not None:
        return ManyMatch([whole], [])
    found: set[str] = set()
    rest = text
    for choice in sorted(choices, key=lambda choice: len(choice.label), reverse=True):
        pattern = re.compile(rf"(?<!\w){re.escape(choice.label)}(?!\w)", re.IGNORECASE)
        if pattern.search(rest):
            found.add(choice.key)
            rest = pattern.sub(" , ", rest)
    parts = [part for part in _SPLIT_MANY.split(rest) if part.strip()]
    if len(parts) == 1 and all(is_number(piece) for piece in parts[0].split()):
        parts = parts[0].split()
    unknown: list[str] = []
    for part in parts:
        key = match_one(part, choices, aliases)
        if key is None:
            unknown.append(part.strip())
        else:
            found.add(key)
    ordered = [choice.key for choice in choices if choice.key in found]
    return ManyMatch(ordered, unknown)


def split_links(text: str) -> tuple[list[str], str]:
    """The links in a message, and what is left of it once they are taken out."""
    links = [link.rstrip(_TRAILING) for link in _URL.findall(text)]
    rest = _URL.sub(" ", text)
    return links, " ".join(rest.split())
