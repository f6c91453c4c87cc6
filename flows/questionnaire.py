"""The questionnaire as data: its schema, loading, and the checks behind `lotse flow check`.

An operator edits `intake.toml`; nothing here knows a question's wording. Loading
never raises on a bad file: it collects every problem it finds, so one run of
`lotse flow check` names all of them at once.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flows.problems import Problem
from flows.tomlfile import read_toml

SHIPPED_QUESTIONNAIRE = Path(__file__).with_name("intake.toml")

StepKind = Literal["consent", "choice", "multi", "yesno", "text", "evidence", "info", "summary"]

# Kinds that ask the official something and are counted in "Frage 3 von 11".
QUESTION_KINDS: frozenset[str] = frozenset({"choice", "multi", "yesno", "text", "evidence"})
# Kinds whose answer is one or more of a fixed set of choice ids.
CHOICE_KINDS: frozenset[str] = frozenset({"consent", "choice", "multi", "yesno"})
YESNO_IDS = ("yes", "no")
CONSENT_IDS = ("agree", "decline")

Translated = dict[str, str]
ContactWay = Literal["email", "video"]

# The triage card's fields that name a step (see Triage).
TRIAGE_STEPS = frozenset({"lane", "safe_now", "municipality", "police", "police_file_number"})

# Paths kept per questionnaire, by what of the answers decides them (see Questionnaire.path):
# enough for every combination of lanes and branches many times over, and a bound.
PATHS_KEPT = 1024
_ABSENT = object()  # in a signature: a step not answered at all (None: skipped)
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def kept(cache: dict[K, V], key: K, make: Callable[[], V]) -> V:
    """`cache[key]`, made once; the cache is emptied when it holds PATHS_KEPT entries (a bound,
    not a policy: the entries are cheap to make again). One lookup, so a clear() beside it
    cannot make it raise."""
    try:
        return cache[key]
    except KeyError:
        pass
    if len(cache) >= PATHS_KEPT:
        cache.clear()
    found = cache[key] = make()
    return found


# Step and choice ids travel in buttons' callback data (a prompt id plus a key, at most
# 64 bytes on Telegram; see flows/picks.py), so they are kept short.
ID_MAX_LENGTH = 24


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ChoiceSpec(_Strict):
    """One choice of a step as the questionnaire file defines it (shown as a messages.Choice)."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=ID_MAX_LENGTH)]
    label: Translated
    # Offered only when the contact point's directory entry lists this way of contact.
    needs_way: ContactWay | None = None


class Condition(_Strict):
    """One test on an earlier answer. Exactly one of the comparisons is given."""

    answer: str
    is_: str | None = Field(default=None, alias="is")
    one_of: list[str] | None = None
    includes: str | None = None
    includes_any: list[str] | None = None
    answered: bool | None = None

    @model_validator(mode="after")
    def _exactly_one_test(self) -> Condition:
        given = [
            name
            for name in ("is_", "one_of", "includes", "includes_any", "answered")
            if getattr(self, name) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "a condition needs exactly one of: is, one_of, includes, includes_any, answered"
            )
        return self

    def values(self) -> list[str]:
        """The choice ids this condition names, for cross-checking."""
        if self.is_ is not None:
            return [self.is_]
        if self.includes is not None:
            return [self.includes]
        return list(self.one_of or self.includes_any or [])

    def holds(self, answers: dict[str, Any]) -> bool:
        if self.answered is not None:
            return (answers.get(self.answer) is not None) == self.answered
        value = answers.get(self.answer)
        if value is None:
            return False
        if self.is_ is not None:
            return bool(value == self.is_)
        if self.one_of is not None:
            return value in self.one_of
        chosen = value if isinstance(value, list) else [value]
        if self.includes is not None:
            return self.includes in chosen
        return any(item in chosen for item in self.includes_any or [])

    def describe(self) -> str:
        if self.answered is not None:
            return f"{self.answer} {'answered' if self.answered else 'skipped'}"
        if self.is_ is not None:
            return f"{self.answer} = {self.is_}"
        if self.one_of is not None:
            return f"{self.answer} in {', '.join(self.one_of)}"
        if self.includes is not None:
            return f"{self.answer} has {self.includes}"
        return f"{self.answer} has any of {', '.join(self.includes_any or [])}"


class Rule(_Strict):
    """Go to `goto` when every condition in `when` holds; a rule without `when` always holds."""

    goto: str
    when: list[Condition] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _single_condition(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("when"), dict):
            return {**data, "when": [data["when"]]}
        return data

    def holds(self, answers: dict[str, Any]) -> bool:
        return all(condition.holds(answers) for condition in self.when)


class Step(_Strict):
    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=ID_MAX_LENGTH)]
    kind: StepKind
    prompt: Translated
    label: Translated = Field(default_factory=dict)
    required: bool = True
    choices: list[ChoiceSpec] = Field(default_factory=list)
    next: list[Rule] = Field(default_factory=list)
    min_length: int = Field(default=1, ge=0)
    max_length: int = Field(default=4000, ge=1)
    declined: Translated = Field(default_factory=dict)
    marks_urgent: bool = False
    sends: bool = False  # answering it sends the intake at once, without the summary

    @model_validator(mode="before")
    @classmethod
    def _plain_next(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("next"), str):
            return {**data, "next": [{"goto": data["next"]}]}
        return data

    @property
    def is_question(self) -> bool:
        return self.kind in QUESTION_KINDS

    def choice_ids(self) -> list[str]:
        """The ids an answer to this step can hold (yes/no steps have theirs built in)."""
        if self.kind == "yesno" and not self.choices:
            return list(YESNO_IDS)
        return [choice.id for choice in self.choices]

    def next_step(self, answers: dict[str, Any]) -> str | None:
        for rule in self.next:
            if rule.holds(answers):
                return rule.goto
        return None


class Profile(_Strict):
    """Which steps hold what the offer matching needs."""

    land: str
    categories: str
    venue: str
    help: str
    contact: str | None = None  # how the official wants to be reached (messages follow it)
    online_values: list[str] = Field(default_factory=lambda: ["online", "both"])
    offline_values: list[str] = Field(default_factory=lambda: ["offline", "both"])


class Flag(_Strict):
    """A line of the staff room's triage card, shown when every condition holds."""

    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=ID_MAX_LENGTH)]
    label: Translated
    when: list[Condition] = Field(min_length=1)
    source: str | None = None  # where in the brief a fact in the label comes from

    @model_validator(mode="before")
    @classmethod
    def _single_condition(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("when"), dict):
            return {**data, "when": [data["when"]]}
        return data


class Triage(_Strict):
    """The triage card: which answers head it, which risk flags and notes follow."""

    headline: list[str] = Field(default_factory=list)  # step ids after urgency and reference
    flags: list[Flag] = Field(default_factory=list)  # risk flags, on the second line
    notes: list[Flag] = Field(default_factory=list)  # hints for the counsellor, after them
    # Steps the card shows in a place of their own (flows/render.py), not in the list of
    # answers. A step that is not there, or not answered, is simply left out.
    lane: str = "lane"  # on the first line
    safe_now: str = "safe_now"  # right below it
    municipality: str = "municipality"  # after the risk flags, quoted
    police: str = "police"  # the police status, followed by the file number
    police_file_number: str = "police_file_number"

    def own_place(self) -> frozenset[str]:
        return frozenset({self.lane, self.safe_now, self.municipality, self.police_file_number})


class Lanes(_Strict):
    """The lanes the first question offers (see flows/lanes.py)."""

    step: str  # the choice step that picks the lane
    talk: str  # the lane offered to someone asking for a person
    danger: str  # the lane whose confirmation shows only the emergency lines
    max_required: dict[str, int] = Field(default_factory=dict)  # per lane, checked


class Meta(_Strict):
    id: str
    version: int
    languages: list[Literal["de", "en"]] = Field(min_length=1)
    default_language: Literal["de", "en"] = "de"
    first: str


class QuestionnaireFile(_Strict):
    meta: Meta
    profile: Profile
    triage: Triage = Field(default_factory=Triage)
    lanes: Lanes | None = None
    steps: list[Step] = Field(min_length=1)


@dataclass(frozen=True)
class Questionnaire:
    """A questionnaire that passed every check."""

    meta: Meta
    profile: Profile
    steps: dict[str, Step]
    triage: Triage
    lanes: Lanes | None = None

    @property
    def first(self) -> Step:
        return self.steps[self.meta.first]

    @property
    def summary(self) -> Step:
        return next(step for step in self.steps.values() if step.kind == "summary")

    def step(self, step_id: str) -> Step:
        return self.steps[step_id]

    def path(self, answers: dict[str, Any], start: str | None = None) -> list[Step]:
        """The steps an official walks from `start`, given the answers so far.

        Unanswered conditions are false, so the path beyond the current step is the
        default route; it grows or shrinks as answers arrive. A path depends only on the
        answers the rules read, so it is kept by their signature and walked once.
        """
        signature = self.signature(answers)
        if signature is None:
            return self._walk(answers, start)
        found = kept(self._paths, (start, signature), lambda: tuple(self._walk(answers, start)))
        return list(found)

    def signature(self, answers: dict[str, Any]) -> Hashable | None:
        """What the steps' rules read of the answers, as a key: equal signatures, equal
        rule outcomes, and the same answers given or not (absent, skipped, answered).

        Answers compared by value are in it as the choice ids they are (a list as a
        tuple); answers only tested for being given, as that alone: no free text ever
        is. None when a compared answer is not its step's choice ids (nothing is kept).
        """
        compared, tested = self._read_by_rules
        key: list[Hashable] = []
        for answer, ids in compared:
            value = answers.get(answer, _ABSENT)
            if value is None or value is _ABSENT or (isinstance(value, str) and value in ids):
                key.append(value)
            elif isinstance(value, list) and all(
                isinstance(item, str) and item in ids for item in value
            ):
                key.append(tuple(value))
            else:
                return None
        for answer in tested:
            value = answers.get(answer, _ABSENT)
            key.append(0 if value is _ABSENT else 1 if value is None else 2)
        return tuple(key)

    @cached_property
    def _read_by_rules(self) -> tuple[tuple[tuple[str, frozenset[str]], ...], tuple[str, ...]]:
        """The answers the steps' conditions compare by value (with their steps' choice
        ids), and those they only test for being given (`answered`)."""
        conditions = [
            condition
            for step in self.steps.values()
            for rule in step.next
            for condition in rule.when
        ]
        compared = {condition.answer for condition in conditions if condition.answered is None}
        tested = {condition.answer for condition in conditions} - compared
        return (
            tuple(
                (answer, frozenset(self.steps[answer].choice_ids() if answer in self.steps else ()))
                for answer in sorted(compared)
            ),
            tuple(sorted(tested)),
        )

    @cached_property
    def _paths(self) -> dict[tuple[str | None, Hashable], tuple[Step, ...]]:
        return {}

    def _walk(self, answers: dict[str, Any], start: str | None) -> list[Step]:
        path: list[Step] = []
        seen: set[str] = set()
        current: str | None = start or self.meta.first
        while current is not None and current not in seen:
            seen.add(current)
            step = self.steps[current]
            path.append(step)
            current = step.next_step(answers)
        return path


class QuestionnaireError(Exception):
    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s)")


def load_questionnaire(path: Path = SHIPPED_QUESTIONNAIRE) -> Questionnaire:
    """Load and check a questionnaire; raise QuestionnaireError listing every problem."""
    questionnaire, problems = check_questionnaire(path)
    if problems or questionnaire is None:
        raise QuestionnaireError(str(path), problems)
    return questionnaire


def check_questionnaire(path: Path) -> tuple[Questionnaire | None, list[Problem]]:
    parsed, problems = read_toml(path, QuestionnaireFile)
    if parsed is None:
        return None, problems
    problems = list(_semantic_problems(parsed))
    steps = {step.id: step for step in parsed.steps}
    return Questionnaire(parsed.meta, parsed.profile, steps, parsed.triage, parsed.lanes), problems


def _semantic_problems(parsed: QuestionnaireFile) -> Iterator[Problem]:
    languages = parsed.meta.languages
    steps: dict[str, Step] = {}
    for step in parsed.steps:
        if step.id in steps:
            yield Problem(f"steps.{step.id}", "the step id is used twice")
        steps[step.id] = step

    if parsed.meta.first not in steps:
        yield Problem("meta.first", f"names unknown step '{parsed.meta.first}'")
    if parsed.meta.default_language not in languages:
        yield Problem("meta.default_language", "is not one of meta.languages")

    summaries = [step.id for step in parsed.steps if step.kind == "summary"]
    if len(summaries) != 1:
        yield Problem("steps", f"needs exactly one step of kind 'summary', found {len(summaries)}")

    for step in parsed.steps:
        yield from _step_problems(step, steps, languages)

    for field in ("land", "categories", "venue", "help", "contact"):
        target = getattr(parsed.profile, field)
        if target is not None and target not in steps:
            yield Problem(f"profile.{field}", f"names unknown step '{target}'")
    venue = steps.get(parsed.profile.venue)
    if venue is not None:
        for field in ("online_values", "offline_values"):
            for value in getattr(parsed.profile, field):
                if value not in venue.choice_ids():
                    yield Problem(
                        f"profile.{field}", f"'{value}' is not a choice of step '{venue.id}'"
                    )

    for index, target in enumerate(parsed.triage.headline):
        if target not in steps:
            yield Problem(f"triage.headline[{index}]", f"names unknown step '{target}'")
    for field in sorted(parsed.triage.model_fields_set & TRIAGE_STEPS):
        target = getattr(parsed.triage, field)
        if target not in steps:  # only when named: the defaults may be absent
            yield Problem(f"triage.{field}", f"names unknown step '{target}'")
    for kind in ("flags", "notes"):
        for flag in getattr(parsed.triage, kind):
            where = f"triage.{kind}.{flag.id}"
            yield from _translation_problems(f"{where}.label", flag.label, languages)
            if "§" in "".join(flag.label.values()) and not flag.source:
                yield Problem(f"{where}.source", "a label citing a law needs its source")
            for condition in flag.when:
                yield from _condition_problems(where, condition, steps)

    if parsed.meta.first in steps:
        yield from _graph_problems(parsed.meta.first, steps)
        if parsed.lanes is not None:
            yield from _lane_problems(parsed.lanes, steps)


def _step_problems(
    step: Step, steps: dict[str, Step], languages: Sequence[str]
) -> Iterator[Problem]:
    where = f"steps.{step.id}"
    yield from _translation_problems(f"{where}.prompt", step.prompt, languages)
    if step.is_question:
        yield from _translation_problems(f"{where}.label", step.label, languages)
    if step.kind == "consent":
        yield from _translation_problems(f"{where}.declined", step.declined, languages)

    ids = [choice.id for choice in step.choices]
    if step.kind in ("choice", "multi") and len(ids) < 2:
        yield Problem(f"{where}.choices", "a choice step needs at least two choices")
    if step.kind == "yesno" and ids and sorted(ids) != sorted(YESNO_IDS):
        yield Problem(f"{where}.choices", "a yes/no step has the choices 'yes' and 'no' only")
    if step.kind == "consent" and sorted(ids) != sorted(CONSENT_IDS):
        yield Problem(f"{where}.choices", "a consent step needs the choices 'agree' and 'decline'")
    if step.kind not in CHOICE_KINDS and ids:
        yield Problem(f"{where}.choices", f"a step of kind '{step.kind}' takes no choices")
    if len(set(ids)) != len(ids):
        yield Problem(f"{where}.choices", "a choice id is used twice")
    for choice in step.choices:
        yield from _translation_problems(
            f"{where}.choices.{choice.id}.label", choice.label, languages
        )
    if step.min_length > step.max_length:
        yield Problem(f"{where}.min_length", "is larger than max_length")
    if step.kind == "consent" and not step.required:
        yield Problem(f"{where}.required", "consent cannot be optional")
    if step.sends and not step.is_question:
        yield Problem(f"{where}.sends", "only a question can send the intake when answered")
    if step.kind != "choice" and any(choice.needs_way for choice in step.choices):
        yield Problem(f"{where}.choices", "only a choice step can offer a way of contact")

    for index, rule in enumerate(step.next):
        if rule.goto not in steps:
            yield Problem(f"{where}.next[{index}].goto", f"names unknown step '{rule.goto}'")
        for condition in rule.when:
            yield from _condition_problems(f"{where}.next[{index}]", condition, steps)

    if step.kind == "summary":
        if step.next:
            yield Problem(f"{where}.next", "the summary is the last step and has no next")
        return
    if not step.next:
        yield Problem(f"{where}.next", "the step leads nowhere: it has no next step")
        return
    if any(not rule.when for rule in step.next[:-1]):
        yield Problem(f"{where}.next", "a rule without 'when' must come last, it hides the rest")
    if step.next[-1].when:
        yield from _dead_ends(step, steps)


def _dead_ends(step: Step, steps: dict[str, Step]) -> Iterator[Problem]:
    """A step whose last rule has a condition: every possible own answer must find a rule."""
    where = f"steps.{step.id}.next"
    own_conditions = all(
        condition.answer == step.id for rule in step.next for condition in rule.when
    )
    if step.kind in ("choice", "yesno", "consent") and own_conditions:
        for choice_id in step.choice_ids():
            if step.next_step({step.id: choice_id}) is None:
                yield Problem(where, f"choice '{choice_id}' leads nowhere: no rule matches it")
        if not step.required and step.next_step({}) is None:
            yield Problem(
                where, "skipping this optional step leads nowhere: add a rule without 'when'"
            )
        return
    yield Problem(
        where,
        "the last rule has a condition, so some answers lead nowhere: "
        "end with a rule without 'when'",
    )


def _condition_problems(
    where: str, condition: Condition, steps: dict[str, Step]
) -> Iterator[Problem]:
    target = steps.get(condition.answer)
    if target is None:
        yield Problem(where, f"the condition names unknown step '{condition.answer}'")
        return
    if condition.answered is not None:
        return
    if target.kind not in CHOICE_KINDS:
        yield Problem(where, f"the condition compares '{condition.answer}', which has no choices")
        return
    known = target.choice_ids()
    for value in condition.values():
        if value not in known:
            yield Problem(where, f"'{value}' is not a choice of step '{condition.answer}'")
    if (
        condition.includes is not None or condition.includes_any is not None
    ) and target.kind != "multi":
        yield Problem(
            where, f"'includes' needs a multiple-choice step, '{condition.answer}' is not"
        )


def _translation_problems(
    where: str, text: Translated, languages: Iterable[str]
) -> Iterator[Problem]:
    for language in languages:
        if not text.get(language, "").strip():
            yield Problem(where, f"missing the '{language}' translation")
    for language in text:
        if language not in languages:
            yield Problem(f"{where}.{language}", "is not one of meta.languages")


def _graph_problems(first: str, steps: dict[str, Step]) -> Iterator[Problem]:
    reachable: set[str] = set()
    stack = [first]
    while stack:
        current = stack.pop()
        if current in reachable or current not in steps:
            continue
        reachable.add(current)
        stack.extend(rule.goto for rule in steps[current].next)
    for step_id in steps:
        if step_id not in reachable:
            yield Problem(f"steps.{step_id}", "is unreachable: no path from meta.first leads to it")
    cycle = _find_cycle(first, steps)
    if cycle:
        yield Problem("steps", "the steps form a loop: " + " -> ".join(cycle))


def _find_cycle(first: str, steps: dict[str, Step]) -> list[str]:
    on_path: list[str] = []
    done: set[str] = set()

    def visit(step_id: str) -> list[str]:
        if step_id in on_path:
            return [*on_path[on_path.index(step_id) :], step_id]
        if step_id in done or step_id not in steps:
            return []
        on_path.append(step_id)
        for rule in steps[step_id].next:
            found = visit(rule.goto)
            if found:
                return found
        on_path.pop()
        done.add(step_id)
        return []

    return visit(first)


def _lane_problems(lanes: Lanes, steps: dict[str, Step]) -> Iterator[Problem]:
    """The lane question exists and offers every lane named; no lane asks too much."""
    step = steps.get(lanes.step)
    if step is None or step.kind != "choice":
        yield Problem("lanes.step", f"'{lanes.step}' is not a choice step")
        return
    offered = step.choice_ids()
    named = [("talk", lanes.talk), ("danger", lanes.danger)]
    named += [(f"max_required.{lane}", lane) for lane in lanes.max_required]
    for field, lane in named:
        if lane not in offered:
            yield Problem(f"lanes.{field}", f"'{lane}' is not a choice of step '{lanes.step}'")
    for lane, most in lanes.max_required.items():
        if lane not in offered:
            continue
        counted = required_answers(steps, lanes.step, lane)
        if counted > most:
            yield Problem(
                f"lanes.max_required.{lane}",
                f"the lane asks up to {counted} required answers, more than {most}",
            )


def required_answers(steps: dict[str, Step], lane_step: str, lane: str) -> int:
    """The most required answers any path of one lane asks, the lane's own choice included.

    Conditions on the lane are decided; every other condition may go either way."""
    answers = {lane_step: lane}

    def most(step_id: str, seen: frozenset[str]) -> int:
        step = steps.get(step_id)
        if step is None or step_id in seen or step.kind == "summary":
            return 0
        own = 1 if step.is_question and step.required else 0
        if step.sends:
            return own
        branches = []
        for rule in step.next:
            decided = all(condition.answer == lane_step for condition in rule.when)
            if decided and not rule.holds(answers):
                continue
            branches.append(most(rule.goto, seen | {step_id}))
            if decided:
                break
        return own + max(branches, default=0)

    return most(lane_step, frozenset())
