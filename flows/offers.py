"""The support-offer directory and the matching that picks offers for one official.

The directory is data (`offers.toml`), seeded from public sources; every entry
records its source and the day it was checked. A Land without a verified offer
has an explicit "no entry yet" record, so the bot never guesses.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from flows.guidance import Guidance, guidance_problems
from flows.problems import Problem
from flows.questionnaire import Questionnaire
from flows.tomlfile import read_toml

SHIPPED_OFFERS = Path(__file__).with_name("offers.toml")
LAENDER = (
    "bw", "by", "be", "bb", "hb", "hh", "he", "mv", "ni", "nw", "rp", "sl", "sn", "st", "sh", "th",
)  # fmt: skip
Venue = Literal["online", "offline"]
Translated = dict[str, str]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Offer(_Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    name: str = Field(min_length=1)
    scope: Literal["federal", "land"]
    lands: list[str] = Field(default_factory=list)
    description: Translated
    contact: str = Field(min_length=1)
    hours: Translated = Field(default_factory=dict)
    # Empty lists mean "any": an offer for every category, venue or kind of help.
    categories: list[str] = Field(default_factory=list)
    venues: list[Venue] = Field(default_factory=list)
    help: list[str] = Field(default_factory=list)
    always: bool = False  # the contact point itself: in every list, never as an "other" offer
    # The contact point's ways of contact besides chat and phone: the intake offers them.
    contact_ways: list[Literal["email", "video"]] = Field(default_factory=list)
    # Motive-specific (e.g. victims of right-wing violence): only on request (/hilfen) as long
    # as the intake asks nothing that points there.
    on_request: bool = False
    around_the_clock: bool = False  # reachable 24/7: shown first, and to every urgent case
    source: str = Field(min_length=1)
    checked: dt.date


class LandNote(_Strict):
    """What the directory knows about one Land beyond its offers."""

    id: str
    note: Translated


class DirectoryFile(_Strict):
    offers: list[Offer] = Field(min_length=1)
    lands: list[LandNote] = Field(default_factory=list)
    guidance: list[Guidance] = Field(default_factory=list)  # advice at its moment (guidance.py)


@dataclass(frozen=True, slots=True)
class Need:
    """What the official told us that matters for choosing offers."""

    land: str | None
    categories: frozenset[str]
    venues: frozenset[str]
    help: frozenset[str]
    urgent: bool


@dataclass(frozen=True)
class Directory:
    offers: tuple[Offer, ...]
    land_notes: dict[str, LandNote]
    guidance: tuple[Guidance, ...] = ()

    def match(self, need: Need) -> list[Offer]:
        """Offers for this official: their Land's first, then nationwide ones.

        Within each group, offers reachable around the clock come first when the
        case is urgent.
        """
        chosen = [offer for offer in self.offers if _fits(offer, need)]
        return sorted(
            chosen,
            key=lambda offer: (
                offer.scope != "land",
                not (need.urgent and offer.around_the_clock),
            ),
        )

    def select(self, need: Need, limit: int = 3) -> list[Offer]:
        """The few offers shown after submitting: the Land's 24/7 line first when urgent, then
        those fitting the most of what the official told (Land, categories, venue, help).
        Never the contact point itself, never a motive-specific offer, and an offer meant for
        some kinds of incident only where the official named one of them (the short lanes
        ask no categories: an online-hate service would be a guess there; /hilfen has it)."""
        fitting = [
            offer
            for offer in self.offers
            if not offer.always
            and not offer.on_request
            and _fits(offer, need)
            and (_named(offer, need) or (need.urgent and offer.around_the_clock))
        ]

        def rank(offer: Offer) -> tuple[bool, bool, int]:
            land_line = need.urgent and offer.around_the_clock and offer.scope == "land"
            return (not land_line, offer.scope != "land", -_specific(offer, need))

        return sorted(fitting, key=rank)[:limit]

    def land_note(self, land: str | None) -> LandNote | None:
        return self.land_notes.get(land) if land else None


def _fits(offer: Offer, need: Need) -> bool:
    if offer.scope == "land" and need.land not in offer.lands:
        return False
    if offer.always or (need.urgent and offer.around_the_clock):
        return True
    return (
        _overlaps(offer.categories, need.categories)
        and _overlaps(offer.venues, need.venues)
        and _overlaps(offer.help, need.help)
    )


def _named(offer: Offer, need: Need) -> bool:
    """Every restriction of the offer met by something the official said, not by silence."""
    return all(not accepted or set(accepted) & given for accepted, given in _pairs(offer, need))


def _pairs(offer: Offer, need: Need) -> tuple[tuple[list[str], frozenset[str]], ...]:
    return (
        (offer.categories, need.categories),
        (list(offer.venues), need.venues),
        (offer.help, need.help),
    )


def _specific(offer: Offer, need: Need) -> int:
    """How many of the official's answers the offer names itself (not by accepting any)."""
    return sum(1 for accepted, given in _pairs(offer, need) if set(accepted) & given)


def _overlaps(accepted: Sequence[str], given: frozenset[str]) -> bool:
    return not accepted or not given or bool(given.intersection(accepted))


class DirectoryError(Exception):
    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s)")


def load_directory(questionnaire: Questionnaire, path: Path = SHIPPED_OFFERS) -> Directory:
    directory, problems = check_directory(path, questionnaire)
    if problems or directory is None:
        raise DirectoryError(str(path), problems)
    return directory


def check_directory(
    path: Path, questionnaire: Questionnaire | None, today: dt.date | None = None
) -> tuple[Directory | None, list[Problem]]:
    parsed, problems = read_toml(path, DirectoryFile)
    if parsed is None:
        return None, problems
    problems = list(_directory_problems(parsed, questionnaire, today or dt.date.today()))
    directory = Directory(
        tuple(parsed.offers), {note.id: note for note in parsed.lands}, tuple(parsed.guidance)
    )
    return directory, problems


def _directory_problems(
    parsed: DirectoryFile, questionnaire: Questionnaire | None, today: dt.date
) -> Iterator[Problem]:
    languages = questionnaire.meta.languages if questionnaire else ["de", "en"]
    known = _known_ids(questionnaire)
    seen: set[str] = set()
    for offer in parsed.offers:
        where = f"offers.{offer.id}"
        if offer.id in seen:
            yield Problem(where, "the offer id is used twice")
        seen.add(offer.id)
        for language in languages:
            if not offer.description.get(language, "").strip():
                yield Problem(f"{where}.description", f"missing the '{language}' translation")
        if offer.scope == "land" and not offer.lands:
            yield Problem(f"{where}.lands", "a Land offer must name its Land")
        if offer.scope == "federal" and offer.lands:
            yield Problem(f"{where}.lands", "a nationwide offer names no Land")
        for land in offer.lands:
            if land not in LAENDER:
                yield Problem(f"{where}.lands", f"'{land}' is not a Land code")
        for field in ("categories", "help"):
            for value in getattr(offer, field):
                if known and value not in known[field]:
                    yield Problem(
                        f"{where}.{field}", f"'{value}' is not a choice in the questionnaire"
                    )
        if offer.checked > today:
            yield Problem(f"{where}.checked", "lies in the future")

    noted: set[str] = set()
    for note in parsed.lands:
        where = f"lands.{note.id}"
        if note.id not in LAENDER:
            yield Problem(where, f"'{note.id}' is not a Land code")
        if note.id in noted:
            yield Problem(where, "the Land is listed twice")
        noted.add(note.id)
        for language in languages:
            if not note.note.get(language, "").strip():
                yield Problem(f"{where}.note", f"missing the '{language}' translation")

    yield from guidance_problems(parsed.guidance, questionnaire)

    covered = {land for offer in parsed.offers for land in offer.lands} | noted
    for land in LAENDER:
        if land not in covered:
            yield Problem(
                "lands",
                f"Land '{land}' has neither an offer nor a note: add a [[lands]] entry "
                "saying that no verified offer is known yet",
            )
    if known:
        for land in known["lands"] - set(LAENDER):
            if land not in ("none", "other", "abroad", "unknown"):
                yield Problem(
                    "lands", f"the questionnaire's Land choice '{land}' is not a Land code"
                )


def _known_ids(questionnaire: Questionnaire | None) -> dict[str, set[str]]:
    if questionnaire is None:
        return {}
    profile = questionnaire.profile
    return {
        field: set(questionnaire.steps[step_id].choice_ids())
        if step_id in questionnaire.steps
        else set()
        for field, step_id in (
            ("categories", profile.categories),
            ("help", profile.help),
            ("lands", profile.land),
        )
    }
