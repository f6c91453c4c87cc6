"""What a conversation waits for besides its current step, as part of the engine.

/abbrechen and /loeschen ask for a confirmation first; a request for a person offers
the talk lane; after a safety hit in the questions, sending at once is offered. Each
is a prompt of its own (flows/picks.py: `cancel-confirm.7`, `talk-offer.9`, …) whose
two buttons have keys no other prompt uses; typed yes/no words answer it too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flows import lanes
from flows.answers import match_one
from flows.messages import Choice, Effect, Outcome, Reply
from flows.picks import CONFIRMATION_KEYS, await_answer, prompt_id
from flows.questionnaire import Questionnaire, Step
from flows.state import IntakeState
from flows.texts import Texts


class Confirmations:
    """The engine's confirmations and offers (mixed into `flows.engine.Engine`)."""

    if TYPE_CHECKING:  # provided by the engine
        texts: Texts
        questionnaire: Questionnaire
        _yes_no: dict[str, str]

        def ask(self, state: IntakeState) -> Reply: ...
        def _say(self, state: IntakeState, key: str, **fields: object) -> Reply: ...
        def _send(self, state: IntakeState, replies: list[Reply]) -> Outcome: ...
        def _jump(self, state: IntakeState, step_id: str) -> None: ...
        def _forward(self, state: IntakeState, replies: list[Reply]) -> None: ...
        def _answer(
            self,
            state: IntakeState,
            step: Step,
            text: str,
            replies: list[Reply],
            chosen: list[str] | None = None,
        ) -> Outcome: ...

    def _offer_sending(self, state: IntakeState, replies: list[Reply]) -> list[Reply]:
        """After a safety hit in the questions: send now, or go on (the question is kept)."""
        if not state.safety or not lanes.may_send_now(self.questionnaire, state):
            return replies
        if replies and replies[-1].prompt is not None:
            replies = replies[:-1]  # asked again once the official chooses to go on
        await_answer(state, "send_now")
        return [*replies, self._confirmation_question(state)]

    def _cancel(self, state: IntakeState) -> Outcome:
        if not state.consented or state.phase != "intake":
            start = self.texts.command("start", state.language)
            return Outcome(state, [self._say(state, "nothing_to_cancel", command=start)])
        await_answer(state, "cancel")
        return Outcome(state, [self._confirmation_question(state)])

    def _delete(self, state: IntakeState) -> Outcome:
        # Always confirmed first, even when nothing may be stored: it cannot be undone.
        await_answer(state, "delete")
        return Outcome(state, [self._confirmation_question(state)])

    def _confirmation_choices(self, state: IntakeState) -> tuple[Choice, Choice]:
        """Yes and no for /abbrechen or /loeschen (or a lane's offer), with keys no other
        prompt uses."""
        assert state.pending is not None
        confirm, keep = CONFIRMATION_KEYS[state.pending]
        yes, no = lanes.CONFIRMATION_LABELS.get(state.pending, ("yes", "no"))
        language = state.language
        return (
            Choice(confirm, self.texts.get(yes, language)),
            Choice(keep, self.texts.get(no, language)),
        )

    def _confirmation_question(self, state: IntakeState) -> Reply:
        assert state.pending is not None
        text = self.texts.get(f"{state.pending}_confirm", state.language)
        return Reply(text, self._confirmation_choices(state), prompt=prompt_id(state))

    def _typed_confirmation(self, state: IntakeState, text: str) -> Outcome:
        """Typed yes/no words (or the number, or the label) answer a confirmation too."""
        choices = self._confirmation_choices(state)
        confirm, keep = (choice.key for choice in choices)
        aliases = {word: confirm if key == "yes" else keep for word, key in self._yes_no.items()}
        key = match_one(text, choices, aliases)
        if key is None and state.pending in lanes.OFFERS and text:
            state.pending = None  # not an answer to the offer: an answer to the question
            return self._answer(state, self.questionnaire.step(state.step), text, [])
        return self._confirm(state, key)

    def _confirm(self, state: IntakeState, key: str | None) -> Outcome:
        """The answer to a pending confirmation: only its own confirm key goes ahead."""
        pending = state.pending
        state.pending = None
        language = state.language
        if pending in lanes.OFFERS and key == CONFIRMATION_KEYS[pending][0]:
            if pending == "send_now":
                return self._send(state, [])
            replies: list[Reply] = []
            state.history.append(state.step)
            self._jump(state, lanes.switch_to_talk(self.questionnaire, state))
            self._forward(state, replies)
            return Outcome(state, replies)
        if pending in CONFIRMATION_KEYS and key == CONFIRMATION_KEYS[pending][0]:
            if pending == "cancel":
                start = self.texts.command("start", language)
                return Outcome(
                    None,
                    [Reply(self.texts.get("cancelled", language, command=start))],
                    Effect.DISCARD,
                )
            return Outcome(None, [Reply(self.texts.get("deleted", language))], Effect.DELETE_ALL)
        return Outcome(state, [Reply(self.texts.get(f"{pending}_kept", language)), self.ask(state)])
