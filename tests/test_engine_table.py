"""The engine's transition table moves a step exactly as the `transitions` machine it is read
from would (flows/engine.py: no model attached per message)."""

from __future__ import annotations

from typing import Any

from flows.engine import Engine
from flows.messages import UserInput
from flows.state import IntakeState
from tests.bench_rig import ANSWERS


class _Model:
    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers


def _states(engine: Engine) -> list[IntakeState]:
    seen: list[IntakeState] = []
    state: IntakeState | None = None
    for answer in ANSWERS:
        state = engine.handle(state, UserInput(answer)).state
        if state is not None:
            seen.append(state)
    return seen


def test_the_table_moves_as_the_machine_does(flow_engine: Engine) -> None:
    machine = flow_engine._compile()
    compared = 0
    for state in _states(flow_engine):
        for trigger in machine.events:
            if state.step not in machine.events[trigger].transitions:
                continue
            model = _Model(dict(state.answers))
            machine.add_model(model, initial=state.step)
            try:
                model.trigger(trigger)  # type: ignore[attr-defined]
            finally:
                machine.remove_model(model)
            moved = state.model_copy(deep=True)
            flow_engine._move(moved, trigger)
            assert moved.step == model.state, (state.step, trigger)  # type: ignore[attr-defined]
            compared += 1
    assert compared > 100
