from __future__ import annotations

import datetime as dt

import pytest

from bot.core.hours import OpeningHours


def test_weekday_window() -> None:
    hours = OpeningHours.parse("Mo-Fr 09:00-16:00")
    assert hours.is_open(dt.datetime(2026, 11, 25, 9, 0))  # a Wednesday
    assert hours.is_open(dt.datetime(2026, 11, 25, 15, 59))
    assert not hours.is_open(dt.datetime(2026, 11, 25, 16, 0))
    assert not hours.is_open(dt.datetime(2026, 11, 28, 10, 0))  # Saturday


def test_several_windows_and_english_days() -> None:
    hours = OpeningHours.parse("Mo-Th 09:00-16:00; Fr 09:00-13:00, Sa-Su 10:00-12:00")
    assert hours.is_open(dt.datetime(2026, 11, 27, 12, 0))  # Friday
    assert not hours.is_open(dt.datetime(2026, 11, 27, 14, 0))
    assert hours.is_open(dt.datetime(2026, 11, 29, 11, 0))  # Sunday


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no hours given"),
        ("Mo-Fr", "cannot read"),
        ("Xy 09:00-10:00", "unknown day"),
        ("Mo 10:00-09:00", "end is not after the start"),
        ("Mo 25:00-26:00", "not a time of day"),
    ],
)
def test_unreadable_hours_say_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OpeningHours.parse(text)
