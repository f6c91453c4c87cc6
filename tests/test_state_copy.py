"""`IntakeState.copied`, the engine's per-message copy: the same as a deep copy, sharing
nothing that can change, and naming every field of the state."""

from __future__ import annotations

import copy

from flows.state import COPIED_FIELDS, SHARED_FIELDS, Evidence, IntakeState, StoredFile


def _full() -> IntakeState:
    return IntakeState(
        language="de",
        step="summary",
        consented=True,
        answers={
            "lane": "report",
            "categories": ["insult", "threat"],
            "evidence": Evidence(links=["https://example.org/1"], notes=["a note"], later=True),
            "skipped": None,
        },
        history=["lane", "categories"],
        files=[StoredFile(id="f1", name="f.png", media_type="image/png", size=3)],
        pending="send_now",
        prompt_serial=7,
        case_reference="L-2026-0001",
        previous_reference="L-2025-0002",
        relay_backlog=["later words"],
        safety=["danger"],
        contact="callback",
    )


def test_every_field_is_either_copied_or_shared() -> None:
    assert set(IntakeState.model_fields) == COPIED_FIELDS | SHARED_FIELDS
    assert not COPIED_FIELDS & SHARED_FIELDS


def test_the_copy_equals_a_deep_copy_and_serialises_the_same() -> None:
    for state in (_full(), IntakeState(language="en", step="lane")):
        copied = state.copied()
        deep = state.model_copy(deep=True)
        assert copied == deep == state
        assert copied.to_bytes() == state.to_bytes()
        assert copied.model_fields_set == state.model_fields_set
        assert IntakeState.from_bytes(copied.to_bytes()) == state


def test_changing_the_copy_leaves_the_original_as_it_was() -> None:
    state = _full()
    before = copy.deepcopy(state.model_dump())
    copied = state.copied()
    for name in COPIED_FIELDS:
        assert getattr(copied, name) is not getattr(state, name), name
    copied.answers["lane"] = "talk"
    categories = copied.answers["categories"]
    assert isinstance(categories, list)
    categories.append("other")
    evidence = copied.answers["evidence"]
    assert isinstance(evidence, Evidence)
    evidence.links.append("https://example.org/2")
    evidence.notes.clear()
    evidence.later = False
    copied.history.append("summary")
    copied.files.clear()
    copied.relay_backlog.clear()
    copied.safety.append("suicidal")
    copied.step = "lane"
    assert state.model_dump() == before


def test_an_evidence_copy_shares_no_list() -> None:
    evidence = Evidence(links=["a"], notes=["b"])
    copied = evidence.copied()
    assert copied == evidence
    assert copied.links is not evidence.links
    assert copied.notes is not evidence.notes
