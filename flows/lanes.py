"""The three lanes of the first message, and what the engine does differently for each.

*Gefahr* (danger): Land, one optional sentence, "110 called?" – then the intake is sent
at once, and the reply shows only 110/112, the Land's 24/7 line and the Telefonseelsorge.
*Sprechen* (talk): Land, role, how to get in touch, send. *Schildern* (report): the full
intake, much of it optional. Which steps each lane walks is data (intake.toml, its
`[lanes]` table and the steps' conditions); here is what follows from it: the progress
counter of a lane's path, the privacy notice's figures, the ways of contact the
directory offers, and the messages after sending that follow the lane and the chosen
way of contact.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from flows.offers import Directory, Offer
from flows.questionnaire import Questionnaire, Step
from flows.state import IntakeState
from flows.texts import Texts


@dataclass(frozen=True)
class Privacy:
    """What the privacy notice says about keeping data: the configured retention."""

    retention_days: int = 180  # closed cases are deleted after this
    intake_hours: int = 72  # unfinished intakes are deleted after this

    def fields(self) -> dict[str, int]:
        return {"retention_days": self.retention_days, "intake_hours": self.intake_hours}


DEFAULT_PRIVACY = Privacy()


@dataclass(frozen=True)
class Progress:
    number: int
    total: int
    approximate: bool  # answers still to come can change the path: "Frage 3 von etwa 8"


def progress(questionnaire: Questionnaire, state: IntakeState) -> Progress | None:
    """Where the official stands on their lane's path, counting only questions after consent.

    The path is the one the answers so far lead to; while a step still ahead (or the
    current one) branches on an answer not given yet, the total is "about".
    """
    path = questionnaire.path(state.answers)
    consent = max((index for index, step in enumerate(path) if step.kind == "consent"), default=-1)
    ahead = path[consent + 1 :]
    questions = [step.id for step in ahead if step.is_question]
    if state.step not in questions:
        return None
    here = next(index for index, step in enumerate(ahead) if step.id == state.step)
    approximate = any(_still_open(step, state.answers) for step in ahead[here:])
    return Progress(questions.index(state.step) + 1, len(questions), approximate)


def _still_open(step: Step, answers: dict[str, Any]) -> bool:
    """Whether where this step leads depends on an answer not given yet."""
    return any(condition.answer not in answers for rule in step.next for condition in rule.when)


def known_steps_only(questionnaire: Questionnaire, state: IntakeState) -> None:
    """An intake stored under an older questionnaire (before the lanes: at "danger" or
    "emergency_continue") goes on from the first question; its answers stay."""
    steps = questionnaire.steps
    state.history = [step for step in state.history if step in steps]
    if state.phase == "intake" and state.step not in steps:
        state.step = questionnaire.meta.first


def lane_of(questionnaire: Questionnaire, state: IntakeState) -> str | None:
    lanes = questionnaire.lanes
    if lanes is None:
        return None
    chosen = state.answers.get(lanes.step)
    return chosen if isinstance(chosen, str) else None


def in_danger_lane(questionnaire: Questionnaire, state: IntakeState) -> bool:
    lanes = questionnaire.lanes
    return lanes is not None and lane_of(questionnaire, state) == lanes.danger


def may_offer_talk(questionnaire: Questionnaire, state: IntakeState) -> bool:
    """Someone asking for a person, after consent, on another lane: offer to switch."""
    lanes = questionnaire.lanes
    if lanes is None or not state.consented or state.phase != "intake":
        return False
    return state.step != lanes.step and lane_of(questionnaire, state) not in (
        lanes.talk,
        lanes.danger,
    )


def may_choose_talk(questionnaire: Questionnaire, state: IntakeState) -> bool:
    """Before consent, asking for a person chooses the talk lane (unless in danger)."""
    lanes = questionnaire.lanes
    if lanes is None or lane_of(questionnaire, state) == lanes.danger:
        return False
    if lane_of(questionnaire, state) is not None:
        switch_to_talk(questionnaire, state)
    return lane_of(questionnaire, state) == lanes.talk


def talk_at(questionnaire: Questionnaire, step: Step) -> str | None:
    """At the lane question, a request for a person is the talk lane's choice."""
    lanes = questionnaire.lanes
    return lanes.talk if lanes is not None and step.id == lanes.step else None


def may_send_now(questionnaire: Questionnaire, state: IntakeState) -> bool:
    """After a safety hit in the questions, sending at once is offered (the danger lane
    sends after its next question anyway; the summary has its own button)."""
    if not state.consented or state.phase != "intake" or state.pending is not None:
        return False
    step = questionnaire.step(state.step)
    return step.kind not in ("summary", "consent") and not in_danger_lane(questionnaire, state)


# The lanes' own questions besides the steps, as `IntakeState.pending`, with their buttons.
OFFERS = ("talk", "send_now")
CONFIRMATION_LABELS = {
    "talk": ("talk_confirm_yes", "talk_confirm_no"),
    "send_now": ("send_now_confirm_yes", "send_now_confirm_no"),
}


def switch_to_talk(questionnaire: Questionnaire, state: IntakeState) -> str:
    """Record the talk lane as the official's choice; returns the lane step to go on from."""
    lanes = questionnaire.lanes
    assert lanes is not None
    state.answers[lanes.step] = lanes.talk
    return lanes.step


# -- ways of contact ------------------------------------------------------------------------------


def offered_ways(directory: Directory) -> frozenset[str]:
    """The ways of contact the contact point's own directory entry names (e-mail, video)."""
    own = [offer for offer in directory.offers if offer.always]
    return frozenset(way for offer in own for way in offer.contact_ways)


def with_ways(questionnaire: Questionnaire, ways: frozenset[str]) -> Questionnaire:
    """The questionnaire without the choices whose way of contact is not offered."""
    steps: dict[str, Step] = {}
    for step_id, step in questionnaire.steps.items():
        kept = [choice for choice in step.choices if choice.needs_way in (None, *ways)]
        steps[step_id] = (
            step if len(kept) == len(step.choices) else step.model_copy(update={"choices": kept})
        )
    return dataclasses.replace(questionnaire, steps=steps)


def contact_of(questionnaire: Questionnaire, state: IntakeState) -> str | None:
    step = questionnaire.profile.contact
    value = state.answers.get(step) if step else None
    return value if isinstance(value, str) else None


# The messages after sending that follow the chosen way of contact (chat is the default).
NEXT_STEPS = {
    "callback": "next_steps_callback",
    "email": "next_steps_email",
    "video": "next_steps_video",
    "anonymous": "next_steps_anonymous",
}
CLAIMED_NOTICES = {
    "callback": "claimed_notice_callback",
    "email": "claimed_notice_email",
    "video": "claimed_notice_video",
}


def next_steps_key(contact: str | None) -> str:
    return NEXT_STEPS.get(contact or "", "next_steps")


def claimed_notice_key(contact: str | None) -> str:
    return CLAIMED_NOTICES.get(contact or "", "claimed_notice")


# -- the danger lane's reply -----------------------------------------------------------------------


def emergency_lines(directory: Directory, land: str | None, texts: Texts, language: str) -> str:
    """110/112, the Land's line reachable around the clock where there is one, and the
    nationwide 24/7 lines (the Telefonseelsorge): nothing else."""
    land_lines = [
        offer
        for offer in directory.offers
        if offer.around_the_clock and offer.scope == "land" and land in offer.lands
    ]
    federal = [
        offer for offer in directory.offers if offer.around_the_clock and offer.scope == "federal"
    ]
    lines = [texts.get("danger_numbers", language)]
    lines += [_line(offer) for offer in [*land_lines, *federal]]
    return "\n".join(lines)


def _line(offer: Offer) -> str:
    return f"• {offer.name.split(' – ')[0]}: {offer.contact}"
