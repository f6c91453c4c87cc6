"""Counselling hours as operators write them: `Mo-Fr 09:00-16:00; Sa 10:00-12:00`,
and as an official reads them, in their language: "Montag–Freitag 9–16 Uhr"."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from flows.texts import Texts

_DAYS = {
    name: index
    for index, names in enumerate(
        (("mo",), ("di", "tu"), ("mi", "we"), ("do", "th"), ("fr",), ("sa",), ("so", "su"))
    )
    for name in names
}
_PART = re.compile(
    r"^(?P<first>[A-Za-z]{2})(?:\s*-\s*(?P<last>[A-Za-z]{2}))?\s+"
    r"(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})$"
)


@dataclass(frozen=True, slots=True)
class Window:
    days: frozenset[int]  # Monday is 0
    start: dt.time
    end: dt.time


@dataclass(frozen=True)
class OpeningHours:
    windows: tuple[Window, ...]
    text: str

    @classmethod
    def parse(cls, text: str) -> OpeningHours:
        windows = []
        for part in (piece.strip() for piece in re.split(r"[;,]", text)):
            if not part:
                continue
            found = _PART.match(part)
            if found is None:
                raise ValueError(
                    f"cannot read {part!r}; write e.g. 'Mo-Fr 09:00-16:00; Sa 10:00-12:00'"
                )
            first, last = found["first"].casefold(), (found["last"] or found["first"]).casefold()
            if first not in _DAYS or last not in _DAYS:
                raise ValueError(
                    f"unknown day in {part!r}; use Mo Di Mi Do Fr Sa So or Mo Tu We Th Fr Sa Su"
                )
            start, end = _time(found["start"], part), _time(found["end"], part)
            if end <= start:
                raise ValueError(f"in {part!r} the end is not after the start")
            span = (
                range(_DAYS[first], _DAYS[last] + 1)
                if _DAYS[first] <= _DAYS[last]
                else [*range(_DAYS[first], 7), *range(0, _DAYS[last] + 1)]
            )
            windows.append(Window(frozenset(span), start, end))
        if not windows:
            raise ValueError("no hours given; write e.g. 'Mo-Fr 09:00-16:00'")
        return cls(tuple(windows), text)

    def next_opening(self, local: dt.datetime) -> dt.datetime:
        """When the hours next begin after `local` (same time zone, naive or aware)."""
        day = local.replace(second=0, microsecond=0)
        for offset in range(8):
            date = (day + dt.timedelta(days=offset)).date()
            starts = sorted(
                window.start for window in self.windows if date.weekday() in window.days
            )
            for start in starts:
                moment = dt.datetime.combine(date, start, tzinfo=local.tzinfo)
                if moment > local:
                    return moment
        raise ValueError("the hours have no window")  # parse() never allows that

    def is_open(self, local: dt.datetime) -> bool:
        """Whether `local` (already in the counselling time zone) falls within the hours."""
        moment = local.time()
        return any(
            local.weekday() in window.days and window.start <= moment < window.end
            for window in self.windows
        )


def describe(hours: OpeningHours, texts: Texts, language: str) -> str:
    """The hours in the official's language, never the raw configuration string."""
    names = texts.words["weekdays"][language]
    parts = []
    for window in hours.windows:
        days = sorted(window.days)
        # parse() makes each window one run of days, possibly across Sunday: start after a gap
        first = next(day for day in days if (day - 1) % 7 not in window.days or len(days) == 7)
        last = (first + len(days) - 1) % 7
        shown = (
            names[first]
            if first == last
            else texts.get("hours_days", language, first=names[first], last=names[last])
        )
        start, end = _clock(window.start, texts, language), _clock(window.end, texts, language)
        parts.append(texts.get("hours_window", language, days=shown, start=start, end=end))
    return "; ".join(parts)


def describe_moment(moment: dt.datetime, texts: Texts, language: str) -> str:
    """A moment such as the next opening, e.g. "Dienstag, 9 Uhr" or "Tuesday, 9:00"."""
    weekday = texts.words["weekdays"][language][moment.weekday()]
    return texts.get(
        "hours_moment", language, weekday=weekday, time=_clock(moment.time(), texts, language)
    )


def _clock(moment: dt.time, texts: Texts, language: str) -> str:
    if moment >= dt.time(23, 59, 59):
        # written as 24:00
        return texts.get("hours_clock_whole", language, hour=24)
    if moment.minute == 0:
        return texts.get("hours_clock_whole", language, hour=moment.hour)
    return texts.get("hours_clock", language, hour=moment.hour, minute=f"{moment.minute:02d}")


def _time(text: str, part: str) -> dt.time:
    hours, minutes = (int(piece) for piece in text.split(":"))
    if hours == 24 and minutes == 0:
        return dt.time(23, 59, 59)
    try:
        return dt.time(hours, minutes)
    except ValueError as error:
        raise ValueError(f"{text!r} in {part!r} is not a time of day") from error
