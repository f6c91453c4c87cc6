"""Guidance at the moment it helps: a few lines of advice, said right after the answer they fit.

The entries are data (`[[guidance]]` in offers.toml, beside the offers they complement), each
with its source in the domain brief; the words are messages in texts.toml (`text` names
one). An entry is said once:

- `at` a step: when that question is reached for the first time, just before it is asked;
- otherwise right after the answer that makes it fit: one of `when_any` holds (and every
  condition in `when`), where it did not fit before that answer. Going back, correcting
  from the summary or answering the same again does not repeat it.

Pure functions over the answers: no state of its own, nothing stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flows.problems import Problem
from flows.questionnaire import Condition, Questionnaire, _condition_problems
from flows.texts import REQUIRED

BRIEF = "BRIEF.md"  # every source points into the domain brief


class Guidance(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    text: str  # a message key in texts.toml, said in the official's language
    at: str | None = None  # a step: said when it is first asked
    when_any: list[Condition] = Field(default_factory=list)  # said after the answer that fits
    when: list[Condition] = Field(default_factory=list)  # and only if all of these hold
    source: str = ""  # where in the brief the advice comes from; checked, never empty

    @model_validator(mode="before")
    @classmethod
    def _single_conditions(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in ("when_any", "when"):
                if isinstance(data.get(key), dict):
                    data = {**data, key: [data[key]]}
        return data

    def fits(self, answers: Mapping[str, Any]) -> bool:
        given = answers if isinstance(answers, dict) else dict(answers)
        return all(condition.holds(given) for condition in self.when) and (
            not self.when_any or any(condition.holds(given) for condition in self.when_any)
        )


def said_after(
    guidance: Iterable[Guidance], before: Mapping[str, Any], step_id: str, value: Any
) -> list[Guidance]:
    """The entries the answer `value` to `step_id` makes fit, that did not fit before it."""
    after = {**before, step_id: value}
    return [
        entry
        for entry in guidance
        if entry.at is None and entry.fits(after) and not entry.fits(before)
    ]


def said_at(
    guidance: Iterable[Guidance], step_id: str, answers: Mapping[str, Any]
) -> list[Guidance]:
    """The entries for a step reached for the first time (not answered yet)."""
    if step_id in answers:
        return []
    return [entry for entry in guidance if entry.at == step_id and entry.fits(answers)]


def guidance_problems(
    entries: Iterable[Guidance], questionnaire: Questionnaire | None
) -> Iterator[Problem]:
    """What `lotse flow check` names: a missing source, an unknown text or step, bad conditions."""
    steps = questionnaire.steps if questionnaire else None
    seen: set[str] = set()
    for entry in entries:
        where = f"guidance.{entry.id}"
        if entry.id in seen:
            yield Problem(where, "the guidance id is used twice")
        seen.add(entry.id)
        if BRIEF not in entry.source:
            yield Problem(
                f"{where}.source",
                f"every piece of guidance needs its source in the domain brief ({BRIEF}, …); "
                "advice without one is left out",
            )
        if entry.text not in REQUIRED:
            yield Problem(f"{where}.text", f"'{entry.text}' is not a message key the bot knows")
        if (entry.at is None) == (not entry.when_any):
            yield Problem(where, "needs exactly one of: at (a step), when_any (answers)")
        if steps is None:
            continue
        if entry.at is not None and entry.at not in steps:
            yield Problem(f"{where}.at", f"names unknown step '{entry.at}'")
        for condition in [*entry.when_any, *entry.when]:
            yield from _condition_problems(where, condition, steps)
