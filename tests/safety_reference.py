"""The safety matcher as it was before it was made faster (main at e1c4338), kept apart
as the reference that tests/test_safety_equivalence.py compares the live one with.

Deliberately slow and plain: every pattern tried on every message. Change it only
when the matching rules themselves change (and the live matcher with them).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from flows.safety import KINDS, Kind, SafetyFile

_FOLD = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "'": "", "’": ""})
_WORD_BREAK = re.compile(r"[^0-9a-z*|]+")


def fold(text: str) -> list[str]:
    folded = text.casefold().translate(_FOLD)
    return [word for word in _WORD_BREAK.split(folded.replace("*", " ").replace("|", " ")) if word]


def _fold_pattern(pattern: str) -> list[str]:
    folded = pattern.casefold().translate(_FOLD)
    return [word for word in _WORD_BREAK.split(folded) if word]


def _one_edit(a: str, b: str) -> bool:
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diffs = [index for index, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        if len(diffs) == 1:
            return True
        first, *rest = diffs
        return (
            len(diffs) == 2
            and rest[0] == first + 1
            and a[first] == b[first + 1]
            and a[first + 1] == b[first]
        )
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return any(long[:index] + long[index + 1 :] == short for index in range(len(long)))


@dataclass(frozen=True)
class _Word:
    options: tuple[tuple[str, bool], ...]

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
        for stem, prefix in self.options:
            if word == stem or (prefix and word.startswith(stem)):
                return True
            if typo_min is None or len(stem) < typo_min or word[:1] != stem[:1]:
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

    def spans(self, words: Sequence[str], gap: int, typo_min: int | None) -> Iterator[list[int]]:
        def extend(found: list[int], index: int) -> Iterator[list[int]]:
            if index == len(self.words):
                yield found
                return
            start = found[-1] + 1
            stop = min(len(words), start + gap + 1)
            for position in range(start, stop):
                if words[position] and self.words[index].matches(words[position], typo_min):
                    yield from extend([*found, position], index + 1)

        for position, word in enumerate(words):
            if word and self.words and self.words[0].matches(word, typo_min):
                yield from extend([position], 1)


class ReferenceCheck:
    def __init__(self, loaded: SafetyFile) -> None:
        self._gap = loaded.settings.gap
        self._typo_min = loaded.settings.typo_min
        self._neutral = [
            _Pattern.parse(phrase) for phrases in loaded.neutral.values() for phrase in phrases
        ]
        self._classes = {
            kind: [
                _Pattern.parse(pattern)
                for patterns in loaded.classes[kind].patterns.values()
                for pattern in patterns
            ]
            for kind in KINDS
            if kind in loaded.classes
        }
        self._talk = [
            _Pattern.parse(pattern) for patterns in loaded.talk.values() for pattern in patterns
        ]

    def wants_a_person(self, text: str) -> bool:
        words = fold(text)
        return any(self._hits(pattern, words) for pattern in self._talk)

    def check(self, text: str) -> tuple[Kind, ...]:
        words = fold(text)
        if not words:
            return ()
        for neutral in self._neutral:
            for span in list(neutral.spans(words, 0, None)):
                for position in span:
                    words[position] = ""
        return tuple(
            kind
            for kind, patterns in self._classes.items()
            if any(self._hits(pattern, words) for pattern in patterns)
        )

    def _hits(self, pattern: _Pattern, words: list[str]) -> bool:
        return next(pattern.spans(words, self._gap, self._typo_min), None) is not None
