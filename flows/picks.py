"""Prompt ids and picks: a button counts only for the prompt it was shown with.

A chat keeps old messages, and their buttons with them. A button pressed now may
belong to a question asked an hour ago; taken as text ("ja") it would answer
whatever is asked at that moment – the danger question's "Ja" would confirm a
pending /loeschen. So every reply that asks something carries a prompt id, a button
sends it back together with its key (a `Pick`), and a pick is accepted only when its
id is the prompt asked now and its keys are among that prompt's choices. Anything
else is refused kindly and the current prompt is shown again; nothing changes.

The prompt id is derived from the state alone:

    <step id>.<serial>        a question, the consent or the summary   "danger.2", "summary.19"
    delete-confirm.<serial>   /loeschen waits for its confirmation      "delete-confirm.20"
    cancel-confirm.<serial>   /abbrechen waits for its confirmation     "cancel-confirm.7"
    return-choice.<serial>    a returning official: reopen, or report anew  "return-choice.24"
    talk-offer.<serial>       asked for a person: switch to the talk lane?  "talk-offer.9"
    send-now.<serial>         after a safety hit: send the intake at once?  "send-now.12"

`serial` is `IntakeState.prompt_serial`. It rises by one whenever the official is moved
to another prompt: a step is entered (an answer, /zurueck, a correction from the
summary, the submission) or a confirmation or the return choice is asked for. So a
second visit of a step gets another id than the first, and an id names one prompt of
one conversation's life; it stays while the same prompt is shown again (a nudge,
/hilfe, /sprache, a refused pick). The serial is carried into the submitted state and
into a new report begun after it. Only after a confirmed /abbrechen or /loeschen is
nothing kept, so counting starts again: a button from before can then at most answer
the very question, with the very choices, that is being asked at that moment (and a
pick that arrives before there is any state is refused).

Ids carry no answer content, are ASCII, and are short: step and choice ids have at most
`ID_MAX_LENGTH` (24) characters (checked when the questionnaire is loaded), so a prompt
id and one key fit into Telegram's 64 bytes of callback data with room to spare. The
confirmations have keys of their own ("delete_confirm"/"delete_keep",
"cancel_confirm"/"cancel_keep"); typed yes/no words still answer them.
"""

from __future__ import annotations

from flows.messages import Choice, Pick
from flows.state import Awaiting, IntakeState

AWAITING_PROMPTS: dict[Awaiting, str] = {
    "delete": "delete-confirm",
    "cancel": "cancel-confirm",
    "return": "return-choice",
    "talk": "talk-offer",
    "send_now": "send-now",
}
# The keys of the confirmations: (confirm, keep).
CONFIRMATION_KEYS: dict[Awaiting, tuple[str, str]] = {
    "delete": ("delete_confirm", "delete_keep"),
    "cancel": ("cancel_confirm", "cancel_keep"),
    "talk": ("talk_switch", "talk_stay"),
    "send_now": ("send_now", "send_later"),
}


def prompt_id(state: IntakeState) -> str | None:
    """The id of the prompt the conversation is asking now; None when it asks nothing."""
    if state.pending is not None:
        return f"{AWAITING_PROMPTS[state.pending]}.{state.prompt_serial}"
    if state.phase != "intake":
        return None
    return f"{state.step}.{state.prompt_serial}"


def new_prompt(state: IntakeState) -> None:
    """The official is moved to another prompt: buttons of every earlier one stop counting."""
    state.prompt_serial += 1


def await_answer(state: IntakeState, awaiting: Awaiting) -> None:
    """Ask for a confirmation (or the return choice) as a prompt of its own."""
    state.pending = awaiting
    new_prompt(state)


def picked(
    pick: Pick, prompt: str | None, choices: tuple[Choice, ...], multiple: bool
) -> list[str] | None:
    """The keys of `pick`, in the choices' order, if it answers `prompt`; None to refuse it.

    Refused: another prompt's id (an earlier question, a forged id), no keys, a key the
    prompt does not offer, or more than one key where only one may be chosen.
    """
    if prompt is None or pick.prompt != prompt:
        return None
    offered = [choice.key for choice in choices]
    wanted = set(pick.keys)
    if not wanted or not wanted <= set(offered):
        return None
    if not multiple and len(pick.keys) != 1:
        return None
    return [key for key in offered if key in wanted]
