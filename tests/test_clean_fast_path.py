"""`clean` returns at once for text that is printable and NFC already: the same as the
full normalisation, whatever the text."""

from __future__ import annotations

import re
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from flows.answers import clean

_NEWLINES = re.compile("\r\n|[\r\v\f\x1c-\x1e\x85\u2028\u2029]")
_CONTROL = {"Cc", "Cf", "Cs", "Co", "Cn"}
_KEEP = {"\n", "\t", "\u200d"}


def _full(text: str) -> str:
    """The normalisation without the shortcut (as flows/answers.py had it)."""
    normal = unicodedata.normalize("NFC", _NEWLINES.sub("\n", text))
    kept = "".join(
        char for char in normal if char in _KEEP or unicodedata.category(char) not in _CONTROL
    )
    return kept.strip()


TRICKY = [
    "Tür",
    "Tu\u0308r",  # decomposed: normalised
    " 1 ",
    "a\u00a0b\u00a0",  # no-break spaces
    "\u3000ja\u3000",
    "a\u200db",
    "a\u200eb",
    "x\r\ny\u2028z",
    "\x85",
    "\ufeffhallo",
    "👨\u200d👩\u200d👧",
    "\U000e0001",
]


def test_the_shortcut_gives_what_the_full_normalisation_gives_on_tricky_text() -> None:
    for text in TRICKY:
        assert clean(text) == _full(text), repr(text)


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet=st.characters(codec=None)))
def test_the_shortcut_gives_what_the_full_normalisation_gives(text: str) -> None:
    assert clean(text) == _full(text)
