"""The paths and progress kept per answers signature: the same as walking the rules each
time, whatever the answers, and bounded; no free text in a signature."""

from __future__ import annotations

import functools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from flows import lanes
from flows.engine import Engine
from flows.questionnaire import PATHS_KEPT, Questionnaire, Step
from flows.state import Evidence, IntakeState

ABSENT = object()


@functools.cache
def _engine() -> Engine:
    return Engine.from_files()


def _walked(questionnaire: Questionnaire, answers: dict[str, Any], start: str | None) -> list[Step]:
    """The path as the rules give it, step by step, nothing kept."""
    path: list[Step] = []
    seen: set[str] = set()
    current: str | None = start or questionnaire.meta.first
    while current is not None and current not in seen:
        seen.add(current)
        path.append(questionnaire.steps[current])
        current = questionnaire.steps[current].next_step(answers)
    return path


@functools.cache
def _answers() -> st.SearchStrategy[dict[str, Any]]:
    """Answers to any steps: their choice ids, lists of them, None, text, Evidence, junk."""
    questionnaire = _engine().questionnaire
    per_step = {}
    for step in questionnaire.steps.values():
        ids = step.choice_ids() or ["x"]
        per_step[step.id] = st.one_of(
            st.just(ABSENT),
            st.none(),
            st.sampled_from(ids),
            st.lists(st.sampled_from(ids), max_size=3),
            st.text(max_size=8),
            st.builds(Evidence, links=st.lists(st.text(max_size=4), max_size=2)),
            st.sampled_from([3, ("a",), {"a": 1}]),
        )
    return st.fixed_dictionaries(per_step).map(
        lambda drawn: {key: value for key, value in drawn.items() if value is not ABSENT}
    )


@settings(max_examples=400, deadline=None)
@given(_answers(), st.data())
def test_a_kept_path_and_progress_are_what_the_rules_give(
    answers: dict[str, Any], data: st.DataObject
) -> None:
    engine = _engine()
    questionnaire = engine.questionnaire
    start = data.draw(st.sampled_from([None, *questionnaire.steps]))
    for _ in range(2):  # the first call walks and keeps, the second finds it kept
        assert questionnaire.path(answers, start) == _walked(questionnaire, answers, start)
    step = data.draw(st.sampled_from(list(questionnaire.steps)))
    state = IntakeState.model_construct(language="de", step=step, answers=answers)
    for _ in range(2):
        assert engine.progress(state) == lanes.progress(questionnaire, state)


def test_a_returned_path_can_be_changed_without_changing_the_kept_one() -> None:
    questionnaire = _engine().questionnaire
    path = questionnaire.path({})
    path.clear()
    assert questionnaire.path({}) == _walked(questionnaire, {}, None)


def test_a_signature_holds_no_free_text() -> None:
    questionnaire = _engine().questionnaire
    secret = "Mein Name ist Erika Mustermann"
    answers: dict[str, Any] = {step: secret for step in questionnaire.steps}
    assert secret not in repr(questionnaire.signature(answers))


def test_the_kept_paths_stay_bounded() -> None:
    questionnaire = Engine.from_files().questionnaire
    compared = next(
        condition.answer
        for step in questionnaire.steps.values()
        for rule in step.next
        for condition in rule.when
        if condition.answered is None
    )
    ids = sorted(questionnaire.steps[compared].choice_ids())
    for number in range(PATHS_KEPT * 2 + 5):  # lists of different lengths: distinct keys
        questionnaire.path({compared: ids[:1] * number})
    assert 0 < len(questionnaire._paths) <= PATHS_KEPT


def test_kept_choices_are_the_ones_the_step_gives() -> None:
    engine = Engine.from_files()
    for step in engine.questionnaire.steps.values():
        for language in engine.questionnaire.meta.languages:
            first = engine.render.choices(step, language)
            assert engine.render.choices(step, language) is first
            assert first == engine.render._made_choices(step, language)
            changed = step.model_copy(update={"choices": step.choices[:1]})  # another step
            assert engine.render.choices(changed, language) == engine.render._made_choices(
                changed, language
            )
