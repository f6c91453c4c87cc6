"""The live safety matcher against the plain reference it was made faster from
(tests/safety_reference.py): the same classes and the same "wants a person" for every
message of a large corpus – the acceptance table, every pattern of the shipped file
written out in its word forms, with typos, gaps, look-alikes and noise around it.

A difference here means a phrase caught before may be missed now: never "fix" it by
changing the reference, unless the matching rules themselves were changed on purpose.
"""

from __future__ import annotations

import functools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from flows.safety import SHIPPED_SAFETY, SafetyFile, _one_edit, load_safety
from flows.tomlfile import read_toml
from tests.safety_reference import ReferenceCheck
from tests.safety_reference import _one_edit as reference_one_edit
from tests.safety_table import TABLE

LIVE = load_safety()
CORPUS_SIZE = 6_000
FILLER = [
    "ich", "er", "sie", "und", "heute", "der", "mann", "mit", "vor", "meiner", "the", "a",
    "is", "Rathaus", "Gemeinderat", "bitte", "jetzt", "nicht", "mehr", "Facebook", "Brief",
    "1", "3", "ja", "nein", "https://example.org/x", "–", "!", "…", "don't", "Tür",
]  # fmt: skip
SUFFIXES = ["", "", "en", "e", "s", "gedanken", "ung", "t", "st"]
LETTERS = "abcdefghijklmnopqrstuvwxyzäöüß"


@functools.cache
def _file() -> SafetyFile:
    parsed, problems = read_toml(SHIPPED_SAFETY, SafetyFile)
    assert parsed is not None and not problems
    return parsed


@functools.cache
def _reference() -> ReferenceCheck:
    return ReferenceCheck(_file())


def _patterns() -> list[str]:
    loaded = _file()
    found = [p for entry in loaded.classes.values() for ps in entry.patterns.values() for p in ps]
    found += [p for ps in loaded.neutral.values() for p in ps]
    found += [p for ps in loaded.talk.values() for p in ps]
    return found


def _written_out(pattern: str, rng: random.Random) -> list[str]:
    """One way to write a pattern's words: an alternative each, a prefix with an ending."""
    words = []
    for word in pattern.split():
        option = rng.choice([option for option in word.split("|") if option.strip("*")] or [word])
        if option.endswith("*"):
            option = option.rstrip("*") + rng.choice(SUFFIXES)
        words.append(option)
    return words


def _typo(word: str, rng: random.Random) -> str:
    if not word:
        return word
    chars = list(word)
    index = rng.randrange(len(chars)) if rng.random() < 0.8 else 0  # the first letter, too
    operation = rng.randrange(4)
    if operation == 0:
        chars[index] = rng.choice(LETTERS)
    elif operation == 1 and len(chars) > 1:
        del chars[index]
    elif operation == 2:
        chars.insert(index, rng.choice(LETTERS))
    elif index + 1 < len(chars):
        chars[index], chars[index + 1] = chars[index + 1], chars[index]
    return "".join(chars)


def _message(rng: random.Random, patterns: list[str]) -> str:
    kind = rng.random()
    if kind < 0.1:
        return rng.choice(TABLE)[0]
    words: list[str] = []
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):  # one pattern or several, look-alikes too
        written = _written_out(rng.choice(patterns), rng)
        for number in range(len(written) - 1, 0, -1):  # up to gap + 1 words in between
            gap = rng.choice([0, 0, 0, 1, 2, 3])
            written[number:number] = rng.sample(FILLER, gap)
        words += written
        words += rng.sample(FILLER, rng.choice([0, 0, 1, 2]))
    for _ in range(rng.choice([0, 0, 1, 1, 2])):
        index = rng.randrange(len(words))
        words[index] = _typo(words[index], rng)
    if rng.random() < 0.2:
        rng.shuffle(words)
    if rng.random() < 0.2:
        words = [word.upper() for word in words]
    return rng.choice([" ", " ", ", ", "\n"]).join(words)


def test_the_live_matcher_answers_like_the_reference_on_a_large_corpus() -> None:
    rng = random.Random(4711)
    patterns = _patterns()
    messages = [text for text, _ in TABLE] + [" ".join(_written_out(p, rng)) for p in patterns]
    messages += [_message(rng, patterns) for _ in range(CORPUS_SIZE)]
    reference = _reference()
    hits = {"danger": 0, "suicidal": 0, "talk": 0, "none": 0}
    for text in messages:
        expected = reference.check(text)
        assert LIVE.check(text).kinds == expected, text
        wants = reference.wants_a_person(text)
        assert LIVE.wants_a_person(text) == wants, text
        for kind in expected:
            hits[kind] += 1
        hits["talk"] += wants
        hits["none"] += not expected
    # The corpus exercises every outcome often, misses near a hit included.
    assert min(hits.values()) > CORPUS_SIZE // 20, hits


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(sorted({w for p in _patterns() for w in p.replace("|", " ").split()})),
            st.sampled_from(FILLER),
            st.text(alphabet=LETTERS + "*| '’-", max_size=12),
        ),
        max_size=12,
    ).map(" ".join)
)
def test_the_live_matcher_answers_like_the_reference_on_any_words(text: str) -> None:
    assert LIVE.check(text).kinds == _reference().check(text)
    assert LIVE.wants_a_person(text) == _reference().wants_a_person(text)


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="abcde", max_size=9), st.text(alphabet="abcde", max_size=9))
def test_one_edit_answers_like_the_reference(first: str, second: str) -> None:
    assert _one_edit(first, second) == reference_one_edit(first, second)
    assert _one_edit(second, first) == reference_one_edit(second, first)


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet="abcde", min_size=1, max_size=9), st.data())
def test_one_edit_finds_every_single_edit(word: str, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(word) - 1))
    letter = data.draw(st.sampled_from("abcdef"))
    edits = [
        word[:index] + letter + word[index + 1 :],  # changed
        word[:index] + word[index + 1 :],  # missing
        word[:index] + letter + word[index:],  # extra
    ]
    if index + 1 < len(word):
        edits.append(word[:index] + word[index + 1] + word[index] + word[index + 2 :])  # swapped
    for edit in edits:
        assert _one_edit(word, edit)
        assert _one_edit(edit, word)
