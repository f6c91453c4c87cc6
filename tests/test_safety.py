"""The safety layer's matcher on its own: the acceptance table, folding, typos, the file check."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.safety import SHIPPED_SAFETY, check_safety, fold, load_safety
from flows.texts import SHIPPED_TEXTS, load_texts
from tests.safety_table import TABLE

CHECK = load_safety()


def test_the_table_is_large_enough_and_covers_every_class() -> None:
    assert len(TABLE) >= 40
    assert {expected for _, expected in TABLE} == {"suicidal", "danger", None}


@pytest.mark.parametrize(("message", "expected"), TABLE)
def test_each_message_hits_its_class_first(message: str, expected: str | None) -> None:
    assert CHECK.check(message).first == expected


def test_folding_spells_umlauts_out_and_drops_apostrophes() -> None:
    assert fold("Tür, MÜDE, Straße – don't") == ["tuer", "muede", "strasse", "dont"]


def test_a_threat_to_kill_is_danger_and_leads_with_it_while_suicidal_words_stay_a_hit() -> None:
    verdict = CHECK.check("Er will mich umbringen")
    assert verdict.kinds == ("danger", "suicidal")


def test_short_words_never_match_with_a_typo() -> None:
    assert not CHECK.check("Er hat eine Waffel gegessen").kinds
    assert not CHECK.check("Wir messen die Zeit").kinds


def test_the_shipped_file_and_its_replies_pass_the_check() -> None:
    texts = load_texts(SHIPPED_TEXTS, ["de", "en"])
    _, problems = check_safety(SHIPPED_SAFETY, texts.messages)
    assert problems == []


def test_a_reply_showing_an_unsourced_number_is_named(tmp_path: Path) -> None:
    texts = load_texts(SHIPPED_TEXTS, ["de", "en"])
    messages = dict(texts.messages)
    messages["safety_danger"] = {"de": "Rufen Sie 0800 123 456 an.", "en": "Call 110."}
    _, problems = check_safety(SHIPPED_SAFETY, messages)
    assert [str(problem) for problem in problems] == [
        "classes.danger.reply: safety_danger.de shows 0800123456, which is not a fact with a "
        "source in this file"
    ]


def test_a_missing_class_an_empty_list_and_a_missing_source_are_named(tmp_path: Path) -> None:
    broken = tmp_path / "safety.toml"
    broken.write_text(
        '[[facts]]\nvalue = "110"\nmeaning = "police"\n\n'
        '[classes.danger]\nreply = "safety_danger"\npatterns.de = []\n',
        encoding="utf-8",
    )
    _, problems = check_safety(broken)
    assert {str(problem) for problem in problems} >= {
        "facts[0].source: is required but missing",
    }
    broken.write_text(
        '[[facts]]\nvalue = "110"\nmeaning = "police"\nsource = "BRIEF.md"\n\n'
        '[classes.danger]\nreply = "safety_danger"\npatterns.de = []\n',
        encoding="utf-8",
    )
    _, problems = check_safety(broken)
    assert {str(problem) for problem in problems} == {
        "classes.suicidal: is required but missing",
        "classes.danger.patterns.de: is empty",
    }
