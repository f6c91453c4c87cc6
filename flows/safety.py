"""The safety layer: does a message say that someone may be in danger right now?

Pure and small: `SafetyCheck.check(text)` returns the classes a message hits
("danger", "suicidal"), read from `safety.toml`. It runs on every message an
official writes, in every phase (before consent, during the intake, at the
summary, while the case waits, during relay), and errs on the side of a hint:
a false alarm costs a line, a miss can cost a life.

Matching, on words rather than characters:
- text and patterns are folded the same way: lower case, ä/ö/ü/ß as ae/oe/ue/ss,
  apostrophes dropped ("don't" = "dont"), everything else not a letter or digit
  a word break;
- a pattern is a few words in order, at most `gap` other words between them;
  a word ending in `*` matches every word that starts with it ("suizid*":
  "Suizidgedanken"), `a|b` matches either;
- words of at least `typo_min` letters also match with one letter wrong, missing,
  extra or two swapped (the first letter must be right);
- `neutral` phrases (look-alikes such as "Waffenstillstand") are blanked out
  before the patterns are tried; they match exactly, never with a typo.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from flows.problems import Problem
from flows.tomlfile import read_toml

SHIPPED_SAFETY = Path(__file__).with_name("safety.toml")

Kind = Literal["danger", "suicidal"]
KINDS: tuple[Kind, ...] = ("danger", "suicidal")  # the order replies lead with

_FOLD = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "'": "", "’": ""})
_WORD_BREAK = re.compile(r"[^0-9a-z*|]+")
_NUMBER = re.compile(r"\+?\d[\d ]*\d|\d")


def fold(text: str) -> list[str]:
    """The words of a text as the patterns see them."""
    folded = text.casefold().translate(_FOLD)
    return [word for word in _WORD_BREAK.split(folded.replace("*", " ").replace("|", " ")) if word]


def _fold_pattern(pattern: str) -> list[str]:
    folded = pattern.casefold().translate(_FOLD)
    return [word for word in _WORD_BREAK.split(folded) if word]


def _one_edit(a: str, b: str) -> bool:
    """Whether a and b differ by at most one letter changed, missing, extra or two swapped."""
    if a == b:
        return True
    if len(a) == len(b):
        first = 0
        while a[first] == b[first]:  # they differ somewhere
            first += 1
        after = first + 1
        if a[after:] == b[after:]:
            return True  # one letter changed
        return (  # or the first difference and the next letter swapped, the rest the same
            a[first] == b[after] and a[after] == b[first] and a[after + 1 :] == b[after + 1 :]
        )
    if abs(len(a) - len(b)) != 1:
        return False
    short, long = (a, b) if len(a) < len(b) else (b, a)
    first = 0
    while first < len(short) and short[first] == long[first]:
        first += 1
    return short[first:] == long[first + 1 :]  # the letter at the first difference is extra


@dataclass(frozen=True)
class _Word:
    """One word of a pattern: alternatives, each exact or a prefix."""

    options: tuple[tuple[str, bool], ...]  # (stem, is_prefix)
    # Made from the options: the exact stems and the prefixes, each found by one lookup;
    # a word matches only where its first letter is a stem's (exact, prefix and typo alike)
    # and only with a length from `shortest` to `longest` (a stem's, one letter missing or
    # extra; any length from a prefix on): checked before `matches`, which is slower.
    exact: frozenset[str] = field(init=False)
    prefixes: tuple[str, ...] = field(init=False)
    initials: frozenset[str] = field(init=False)
    shortest: int = field(init=False)
    longest: int = field(init=False)

    def __post_init__(self) -> None:
        options = self.options
        made = {
            "exact": frozenset(stem for stem, prefix in options if not prefix),
            "prefixes": tuple(stem for stem, prefix in options if prefix),
            "initials": frozenset(stem[0] for stem, _ in options),
            "shortest": min((len(stem) - 1 for stem, _ in options), default=0),
            "longest": max(
                (sys.maxsize if prefix else len(stem) + 1 for stem, prefix in options),
                default=sys.maxsize,
            ),
        }
        for name, value in made.items():
            object.__setattr__(self, name, value)

    @classmethod
    def parse(cls, text: str) -> _Word:
        options = []
        for option in text.split("|"):
            prefix = option.endswith("*")
            stem = option.rstrip("*")
            if stem:
                options.append((stem, prefix))
        return cls(tuple(options))

    def matches(self, word: str, typo_min: int | None) -> bool:
        if word in self.exact or word.startswith(self.prefixes):
            return True
        if typo_min is None:
            return False
        for stem, prefix in self.options:
            if len(stem) < typo_min or word[:1] != stem[:1]:
                continue
            if not prefix:
                if _one_edit(word, stem):
                    return True
                continue
            lengths = (len(stem) - 1, len(stem), len(stem) + 1)
            if any(len(word) >= length and _one_edit(word[:length], stem) for length in lengths):
                return True
        return False


@dataclass(frozen=True)
class _Pattern:
    words: tuple[_Word, ...]

    @classmethod
    def parse(cls, text: str) -> _Pattern:
        return cls(tuple(_Word.parse(word) for word in _fold_pattern(text)))

    def occurs(self, text: _Text, gap: int, typo_min: int | None) -> bool:
        """Whether the pattern's words occur in order, each at most `gap` words after the
        one before (masked words are ''). Searched from the words with a first letter
        the pattern starts with; a word is tried only at a length it can match. (The
        plain search it must agree with is kept in tests/safety_reference.py.)"""
        if not self.words:
            return False
        first = self.words[0]
        shortest, longest = first.shortest, first.longest
        words, memo = text.words, text.memo
        for initial in first.initials:
            for position in text.where.get(initial, ()):
                word = words[position]
                if not shortest <= len(word) <= longest:
                    continue
                key = (id(first), word)
                hit = memo.get(key)
                if hit is None:
                    hit = memo[key] = first.matches(word, typo_min)
                if hit and self._goes_on(text, position, 1, gap, typo_min):
                    return True
        return False

    def _goes_on(self, text: _Text, last: int, index: int, gap: int, typo_min: int | None) -> bool:
        """Whether the pattern's words from `index` on follow the one matched at `last`."""
        if index == len(self.words):
            return True
        wanted = self.words[index]
        initials, shortest, longest = wanted.initials, wanted.shortest, wanted.longest
        words, memo = text.words, text.memo
        for position in range(last + 1, min(len(words), last + gap + 2)):
            word = words[position]
            if not (word and word[0] in initials and shortest <= len(word) <= longest):
                continue
            key = (id(wanted), word)
            hit = memo.get(key)
            if hit is None:
                hit = memo[key] = wanted.matches(word, typo_min)
            if hit and self._goes_on(text, position, index + 1, gap, typo_min):
                return True
        return False

    def consecutive(self, text: _Text) -> list[range]:
        """Every place the pattern occurs with no gap and no typo (the look-alikes: each
        word right after the one before, exact or as a prefix), as ranges of positions.
        Words masked since `text` was made are '' in its words and never match."""
        count = len(self.words)
        if not count:
            return []
        found = []
        words = text.words
        first = self.words[0]
        for initial in first.initials:
            for position in text.where.get(initial, ()):
                word = words[position]
                if (
                    position + count <= len(words)
                    and word
                    and first.matches(word, None)
                    and all(
                        words[position + index]
                        and self.words[index].matches(words[position + index], None)
                        for index in range(1, count)
                    )
                ):
                    found.append(range(position, position + count))
        return found


@dataclass
class _Text:
    """A message's words as the patterns are tried on them: where each first letter is,
    and what each pattern word (interned: one object per spelling) made of each word."""

    words: list[str]
    where: dict[str, list[int]]
    initials: frozenset[str]
    memo: dict[tuple[int, str], bool]

    @classmethod
    def of(cls, words: list[str]) -> _Text:
        where: dict[str, list[int]] = {}
        for position, word in enumerate(words):
            if word:  # masked look-alikes are ''
                where.setdefault(word[0], []).append(position)
        return cls(words, where, frozenset(where), {})


# -- the file ------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Settings(_Strict):
    gap: int = Field(default=2, ge=0, le=5)
    typo_min: int = Field(default=6, ge=4)


class Fact(_Strict):
    """A number the safety replies may show, and where in the brief it comes from."""

    value: str = Field(min_length=1)
    meaning: str = Field(min_length=1)
    source: str = Field(min_length=1)


class SafetyClass(_Strict):
    reply: str = Field(min_length=1)  # the texts.toml key of the reply that leads
    patterns: dict[str, list[str]] = Field(min_length=1)


class SafetyFile(_Strict):
    settings: Settings = Field(default_factory=Settings)
    facts: list[Fact] = Field(min_length=1)
    classes: dict[Kind, SafetyClass]
    neutral: dict[str, list[str]] = Field(default_factory=dict)
    # Words asking for a person rather than a form ("mit einem Menschen sprechen").
    talk: dict[str, list[str]] = Field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """The classes a message hit, most urgent first; empty when it sounds safe."""

    kinds: tuple[Kind, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.kinds)

    @property
    def first(self) -> Kind | None:
        return self.kinds[0] if self.kinds else None


NOTHING = Verdict()  # (frozen: one for every message that hits nothing)


class _Patterns:
    """Patterns in their file's order, found by the first letter of their first word.

    A pattern matches only from a word that starts with a first letter of its first word
    (exact, prefix and typo alike), so for a message only the patterns under its words'
    first letters are tried: the same hits, a few patterns' work instead of all of them."""

    def __init__(self, patterns: Sequence[_Pattern]) -> None:
        self.patterns = tuple(patterns)
        numbers: dict[str, list[int]] = {}
        for number, pattern in enumerate(self.patterns):
            for initial in pattern.words[0].initials if pattern.words else ():
                numbers.setdefault(initial, []).append(number)
        self._numbers = {initial: tuple(found) for initial, found in numbers.items()}
        self.initials = frozenset(self._numbers)
        # Per pattern, the first letters each of its further words can have: a message
        # without one of them for every word cannot hold the pattern.
        self._further = tuple(
            tuple(word.initials for word in pattern.words[1:]) for pattern in self.patterns
        )

    def any_occurs(self, text: _Text, gap: int, typo_min: int | None) -> bool:
        """Whether any of the patterns occurs in the text (the order does not matter)."""
        present = text.initials
        tried: set[int] = set()
        for initial in present:
            for number in self._numbers.get(initial, ()):
                if number in tried:
                    continue
                tried.add(number)
                if all(not letters.isdisjoint(present) for letters in self._further[number]) and (
                    self.patterns[number].occurs(text, gap, typo_min)
                ):
                    return True
        return False

    def tried(self, initials: Iterable[str]) -> list[_Pattern]:
        """The patterns that may match in words with these first letters, in file order."""
        numbers: set[int] = set()
        for initial in initials:
            found = self._numbers.get(initial)
            if found:
                numbers.update(found)
        return [self.patterns[number] for number in sorted(numbers)]


class SafetyCheck:
    def __init__(self, loaded: SafetyFile) -> None:
        self.file = loaded
        self._gap = loaded.settings.gap
        self._typo_min = loaded.settings.typo_min
        # Equal pattern words are one object: what one made of a message's word is kept
        # for every pattern that has it (_Text.memo, by the word object's id).
        interned: dict[_Word, _Word] = {}

        def parsed(text: str) -> _Pattern:
            pattern = _Pattern.parse(text)
            return _Pattern(tuple(interned.setdefault(word, word) for word in pattern.words))

        self._neutral = _Patterns(
            [parsed(phrase) for phrases in loaded.neutral.values() for phrase in phrases]
        )
        self._classes = {
            kind: _Patterns(
                [
                    parsed(pattern)
                    for patterns in loaded.classes[kind].patterns.values()
                    for pattern in patterns
                ]
            )
            for kind in KINDS
            if kind in loaded.classes
        }
        self._talk = _Patterns(
            [parsed(pattern) for patterns in loaded.talk.values() for pattern in patterns]
        )
        # The first letters any class pattern starts with: a message with none of them
        # (a number, "ja") cannot hit, look-alikes or not.
        self._initials = frozenset(
            initial for patterns in self._classes.values() for initial in patterns.initials
        )

    def wants_a_person(self, text: str) -> bool:
        """Whether a message asks to talk to a person (same matching, no look-alikes)."""
        return self._talk.any_occurs(_Text.of(fold(text)), self._gap, self._typo_min)

    def reply_key(self, kind: Kind) -> str:
        return self.file.classes[kind].reply

    def check(self, text: str) -> Verdict:
        words = fold(text)
        if not words:
            return NOTHING
        found = _Text.of(words)
        if self._initials.isdisjoint(found.initials):
            return NOTHING
        # Look-alikes: exact, consecutive, never a typo; in file order, as each masks words.
        masked = False
        for neutral in self._neutral.tried(found.initials):
            for span in neutral.consecutive(found):
                for position in span:
                    words[position] = ""
                    masked = True
        if masked:
            found = _Text.of(words)
        return Verdict(
            tuple(
                kind
                for kind, patterns in self._classes.items()
                if patterns.any_occurs(found, self._gap, self._typo_min)
            )
        )


def load_safety(path: Path = SHIPPED_SAFETY) -> SafetyCheck:
    checked, problems = check_safety(path)
    if checked is None or problems:
        raise ValueError("; ".join(str(problem) for problem in problems))
    return checked


def numbers_in(text: str) -> list[str]:
    """Phone-number-like runs of digits in a text, spaces removed ("0800 111 0 111")."""
    return [match.group().replace(" ", "") for match in _NUMBER.finditer(text)]


def check_safety(
    path: Path, replies: dict[str, dict[str, str]] | None = None
) -> tuple[SafetyCheck | None, list[Problem]]:
    """The safety file checked; with `replies` (texts by key, then language) also that each
    reply exists and shows only numbers listed as facts with a source."""
    parsed, problems = read_toml(path, SafetyFile)
    if parsed is None:
        return None, problems
    for kind in KINDS:
        if kind not in parsed.classes:
            problems.append(Problem(f"classes.{kind}", "is required but missing"))
    for kind, entry in parsed.classes.items():
        for language, patterns in entry.patterns.items():
            if not patterns:
                problems.append(Problem(f"classes.{kind}.patterns.{language}", "is empty"))
            for pattern in patterns:
                if not _fold_pattern(pattern) or any(
                    not _Word.parse(word).options for word in _fold_pattern(pattern)
                ):
                    problems.append(
                        Problem(f"classes.{kind}.patterns.{language}", f"{pattern!r} has no word")
                    )
    for language, phrases in parsed.neutral.items():
        for phrase in phrases:
            if not _fold_pattern(phrase):
                problems.append(Problem(f"neutral.{language}", f"{phrase!r} has no word"))
    if replies is not None:
        known = {fact.value.replace(" ", "") for fact in parsed.facts}
        for kind, entry in parsed.classes.items():
            texts = replies.get(entry.reply)
            if texts is None:
                problems.append(
                    Problem(f"classes.{kind}.reply", f"{entry.reply!r} is not in the texts file")
                )
                continue
            for language, text in texts.items():
                for number in numbers_in(text):
                    if number not in known:
                        problems.append(
                            Problem(
                                f"classes.{kind}.reply",
                                f"{entry.reply}.{language} shows {number}, which is not a fact "
                                "with a source in this file",
                            )
                        )
    return SafetyCheck(parsed), problems
