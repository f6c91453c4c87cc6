"""The intake engine: one shared `transitions` machine, compiled from the questionnaire.

`Engine.handle(state, input)` is pure: it copies the state, moves it along the
machine's transitions, and returns the new state, the replies and at most one
effect for the core to carry out. The machine is built once; its transitions are
read into a table (trigger, step) -> [(destination, conditions)], which each step
walks the way the machine's trigger would, without attaching a model per message.

Every reply that asks something carries the prompt's id; a button press
(`UserInput.pick`) counts only for the prompt asked now and otherwise changes
nothing (the id scheme is described in flows/picks.py).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from transitions import Machine, MachineError

from flows import lanes
from flows.answers import clean, is_number, match_many, match_one, parse_command, split_links
from flows.confirmations import Confirmations
from flows.messages import Choice, Effect, Outcome, Pick, Reply, UserInput
from flows.offers import SHIPPED_OFFERS, Need, load_directory
from flows.picks import CONFIRMATION_KEYS, await_answer, new_prompt, picked, prompt_id
from flows.questionnaire import (
    SHIPPED_QUESTIONNAIRE,
    Questionnaire,
    Rule,
    Step,
    kept,
    load_questionnaire,
)
from flows.render import Renderer
from flows.safety import SHIPPED_SAFETY, SafetyCheck, Verdict, load_safety
from flows.state import SUBMITTED, Evidence, IntakeState
from flows.texts import SHIPPED_TEXTS, Texts, load_texts

UNKNOWN_SHOWN = 5  # unmatched items echoed back at most
UNKNOWN_CHARS = 40  # and each cut to this length: a pasted page is not sent back whole


class _Cursor:
    """What the conditions read: the answers (as `event.model.answers`, as the machine passes)."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers


class _Event:
    def __init__(self, model: _Cursor) -> None:
        self.model = model


# (destination, ((condition, the result it must give), ...)), in the machine's order
_Options = tuple[tuple[str, tuple[tuple[Any, bool], ...]], ...]  # conditions are callables here


def _table(machine: Machine) -> dict[tuple[str, str], _Options]:
    """The machine's transitions per (trigger, source step), as its trigger would try them."""
    return {
        (name, source): tuple(
            (
                transition.dest or source,  # None: an internal transition, it stays
                tuple((condition.func, condition.target) for condition in transition.conditions),
            )
            for transition in transitions
        )
        for name, event in machine.events.items()
        for source, transitions in event.transitions.items()
    }


def _condition(rule: Rule) -> Callable[[Any], bool]:
    def holds(event: Any) -> bool:
        return rule.holds(event.model.answers)

    return holds


class Engine(Confirmations):
    def __init__(
        self,
        questionnaire: Questionnaire,
        texts: Texts,
        renderer: Renderer,
        safety: SafetyCheck | None = None,
        privacy: lanes.Privacy = lanes.DEFAULT_PRIVACY,
    ) -> None:
        self.questionnaire = questionnaire
        self.texts = texts
        self.render = renderer
        self.safety = safety if safety is not None else load_safety()
        self.privacy = privacy
        self._transitions = _table(self._compile())
        self._commands = texts.command_names()
        yes, no = texts.word_list("yes_words"), texts.word_list("no_words")
        self._yes_no = {word: "yes" for word in yes} | {word: "no" for word in no}
        # The yes/no words a step's choices take, by whether 'yes' and 'no' are among them.
        self._yes_no_by = {
            (has_yes, has_no): {
                word: key
                for word, key in self._yes_no.items()
                if (key == "yes" and has_yes) or (key == "no" and has_no)
            }
            for has_yes in (False, True)
            for has_no in (False, True)
        }
        self._consent = {word: "agree" for word in yes} | {word: "decline" for word in no}
        self._evidence_words = {word: "done" for word in texts.word_list("done_words")} | {
            word: "later" for word in texts.word_list("later_words")
        }
        self._submit_words = texts.word_list("submit_words")
        self._yes_words = set(texts.word_list("yes_words"))
        self._progress: dict[tuple[Hashable, str], lanes.Progress | None] = {}

    @classmethod
    def from_files(
        cls,
        questionnaire: Path = SHIPPED_QUESTIONNAIRE,
        offers: Path = SHIPPED_OFFERS,
        texts: Path = SHIPPED_TEXTS,
        safety: Path = SHIPPED_SAFETY,
        privacy: lanes.Privacy = lanes.DEFAULT_PRIVACY,
    ) -> Engine:
        loaded = load_questionnaire(questionnaire)
        phrases = load_texts(texts, loaded.meta.languages)
        directory = load_directory(loaded, offers)
        loaded = lanes.with_ways(loaded, lanes.offered_ways(directory))
        renderer = Renderer(loaded, phrases, directory)
        return cls(loaded, phrases, renderer, load_safety(safety), privacy)

    def _compile(self) -> Machine:
        steps = self.questionnaire.steps
        machine = Machine(
            model=None,
            states=[*steps, SUBMITTED],
            initial=self.questionnaire.meta.first,
            auto_transitions=True,  # to_<step>: the jumps for /zurueck and corrections
            send_event=True,
        )
        for step in steps.values():
            for rule in step.next:
                conditions: list[str | Callable[..., bool | None]] = (
                    [_condition(rule)] if rule.when else []
                )
                machine.add_transition("advance", step.id, rule.goto, conditions=conditions)
        machine.add_transition("submit", "*", SUBMITTED)  # the summary, or a step that sends
        return machine

    def _move(self, state: IntakeState, trigger: str) -> None:
        """The first transition whose conditions hold moves the step; none: it stays."""
        options = self._transitions.get((trigger, state.step))
        if options is None:  # as the machine says it
            raise MachineError(f"Can't trigger event {trigger} from state {state.step}!")
        event = _Event(_Cursor(state.answers))
        for destination, conditions in options:
            if all(bool(check(event)) == target for check, target in conditions):
                state.step = destination
                break
        new_prompt(state)

    # -- state ------------------------------------------------------------------------------

    def new_state(self, language: str | None = None) -> IntakeState:
        return IntakeState(
            language=language or self.questionnaire.meta.default_language,
            step=self.questionnaire.meta.first,
        )

    def is_urgent(self, state: IntakeState) -> bool:
        """An urgent step on the path, or a message that hit the safety layer."""
        return bool(state.safety) or any(
            step.marks_urgent for step in self.questionnaire.path(state.answers)
        )

    def safety_reply(self, verdict: Verdict, language: str) -> str:
        """What a safety hit says first: the right numbers, most urgent class first."""
        return "\n\n".join(
            self.texts.get(self.safety.reply_key(kind), language) for kind in verdict.kinds
        )

    def need(self, state: IntakeState) -> Need:
        profile = self.questionnaire.profile
        answers = state.answers
        land = answers.get(profile.land)
        venue = answers.get(profile.venue)
        venues = set()
        if venue in profile.online_values:
            venues.add("online")
        if venue in profile.offline_values:
            venues.add("offline")
        return Need(
            land=land if isinstance(land, str) else None,
            categories=frozenset(_as_list(answers.get(profile.categories))),
            venues=frozenset(venues),
            help=frozenset(_as_list(answers.get(profile.help))),
            urgent=self.is_urgent(state),
        )

    def progress(self, state: IntakeState) -> lanes.Progress | None:
        """Where the official stands (lanes.progress), kept per step and answers signature:
        it reads only the path, the step and which answers the rules read are given."""
        signature = self.questionnaire.signature(state.answers)
        if signature is None:
            return lanes.progress(self.questionnaire, state)
        return kept(
            self._progress,
            (signature, state.step),
            lambda: lanes.progress(self.questionnaire, state),
        )

    def begin_again(self, state: IntakeState, previous_reference: str | None) -> IntakeState:
        """A new report from someone who agreed to the privacy notice before: the first
        question, and the notice is passed over."""
        fresh = self.new_state(state.language)
        fresh.consented = True
        fresh.previous_reference = previous_reference
        fresh.prompt_serial = state.prompt_serial  # the earlier report's buttons stay refused
        for step in self.questionnaire.steps.values():
            if step.kind == "consent":
                fresh.answers[step.id] = "agree"
        if self.questionnaire.first.kind == "consent":
            fresh.history.append(fresh.step)
            self._forward(fresh, [])
        return fresh

    def is_command(self, text: str) -> bool:
        """Whether a message is a command (known or not) rather than words for a counsellor."""
        return self._command(clean(text))[2] is not None

    def confirmation(self, state: IntakeState, reference: str, hours: str) -> list[Reply]:
        """What the official reads right after submitting."""
        language = state.language
        need = self.need(state)
        first = self.texts.get("submitted", language, reference=reference)
        if need.urgent:
            first += "\n\n" + self.texts.get("urgent_submitted", language)
        if lanes.in_danger_lane(self.questionnaire, state):  # only the lines open right now
            lines = lanes.emergency_lines(self.render.directory, need.land, self.texts, language)
            return [Reply(first), Reply(lines)]  # 110 once: in the lines, first
        if need.urgent:
            first += " " + self.texts.get("urgent_call_110", language)
        contact = lanes.contact_of(self.questionnaire, state)
        after = self.texts.get(lanes.next_steps_key(contact), language, hours=hours)
        return [
            Reply(first),
            Reply(self.render.offers(need, language, said_nearby=f"{first}\n{after}")),
            Reply(after),
        ]

    def case_summary(
        self, state: IntakeState, reference: str, language: str, detail: str = "full"
    ) -> str:
        return self.render.case_summary(state, reference, self.need(state), language, detail)

    # -- one message ------------------------------------------------------------------------

    def handle(self, state: IntakeState | None, given: UserInput) -> Outcome:
        fresh = state is None
        if state is None:
            known = given.language in self.texts.languages
            current = self.new_state(given.language if known else None)
        else:
            current = state.copied()
            lanes.known_steps_only(self.questionnaire, current)
        text = "" if given.pick is not None else clean(given.text)  # a button says only its pick
        command, argument, spelled = self._command(text)
        at_evidence = (
            current.phase == "intake"
            and spelled is None
            and current.pending is None
            and self.questionnaire.step(current.step).kind == "evidence"
        )

        # Said first, whatever the message is: the safety layer's numbers when the words
        # sound like danger or a wish to die, refused files, kept files.
        notes: list[Reply] = []
        if spelled is None:
            notes += self._safety_hit(current, text)
        if given.dropped_files:
            notes.append(self._say(current, "files_before_consent"))
        if given.too_big_files:
            notes.append(self._say(current, "file_too_big", limit=given.file_limit_mb))
        if given.files:
            current.files.extend(given.files)
            if not at_evidence:
                notes.append(self._say(current, "files_received", count=len(current.files)))

        outcome = self._dispatch(
            current,
            text,
            command=command,
            argument=argument,
            spelled=spelled,
            fresh=fresh,
            with_files=bool(given.files),
            refused_files=bool(given.dropped_files or given.too_big_files),
            pick=given.pick,
            clears_chat=given.clears_chat,
        )
        replies = outcome.replies
        if notes and spelled is None and outcome.effect is None and outcome.state is not None:
            replies = self._offer_sending(outcome.state, replies)
        return Outcome(outcome.state, [*notes, *replies], outcome.effect)

    def _dispatch(
        self,
        current: IntakeState,
        text: str,
        *,
        command: str | None,
        argument: str,
        spelled: str | None,
        fresh: bool,
        with_files: bool,
        pick: Pick | None,
        refused_files: bool = False,
        clears_chat: bool = False,
    ) -> Outcome:
        if pick is not None:
            return self._pick(current, pick, fresh)
        if current.pending == "return" and spelled is None:
            return Outcome(current, [self.ask(current)])  # the handoff's; never confirms here
        if current.pending is not None and spelled is None:
            return self._typed_confirmation(current, text)
        current.pending = None
        if command is not None:
            return self._run(command, argument, current, fresh, clears_chat)
        if spelled is not None:
            return self._unknown_command(current, spelled)
        if fresh:
            return Outcome(current, [self.ask(current)])
        if current.phase != "intake":
            return Outcome(current, [self.ask(current)])
        step = self.questionnaire.step(current.step)
        if not text and not (with_files and step.kind == "evidence"):
            if with_files or refused_files:  # a file alone: its note said it, ask again
                return Outcome(current, [self.ask(current)])
            return Outcome(current, [self._nudge(current, "empty_message")])
        return self._answer(current, step, text, [])

    def _pick(self, state: IntakeState, pick: Pick, fresh: bool) -> Outcome:
        """A button: answers exactly like its typed equivalent, or is refused, changing nothing.

        A pick before there is any state cannot belong to a prompt of this conversation.
        """
        step = self.questionnaire.step(state.step) if state.phase == "intake" else None
        multiple = state.pending is None and step is not None and step.kind == "multi"
        keys = None if fresh else picked(pick, prompt_id(state), self._offered(state), multiple)
        if keys is None:
            return Outcome(state, [self._say(state, "stale_pick"), self._current(state)])
        if state.pending is not None:
            return self._confirm(state, keys[0])
        assert step is not None  # a prompt without a pending confirmation is a step's
        return self._answer(state, step, "", [], chosen=keys)

    def _offered(self, state: IntakeState) -> tuple[Choice, ...]:
        """The choices of the prompt asked now: what a pick may name."""
        language = state.language
        if state.pending in CONFIRMATION_KEYS:
            return self._confirmation_choices(state)
        if state.pending is not None or state.phase != "intake":
            return ()
        step = self.questionnaire.step(state.step)
        if step.kind == "summary":
            return self.render.summary_choices(language)
        return self.render.choices(step, language)

    def _current(self, state: IntakeState) -> Reply:
        """The prompt asked now, once more, with the same id."""
        if state.pending in CONFIRMATION_KEYS:
            return self._confirmation_question(state)
        return self.ask(state)

    def _answer(
        self,
        state: IntakeState,
        step: Step,
        text: str,
        replies: list[Reply],
        chosen: list[str] | None = None,
    ) -> Outcome:
        """An answer to the step asked now: typed `text`, or the keys of a valid pick."""
        language = state.language
        choices = self.render.choices(step, language)
        if step.kind == "consent":
            key = chosen[0] if chosen else match_one(text, choices, self._consent)
            if key == "agree":
                state.consented = True
                return self._accept(state, step, key, replies)
            if key == "decline":
                replies.append(Reply(step.declined[language]))
                return Outcome(state, replies)
            if self.safety.wants_a_person(text):
                talk = lanes.may_choose_talk(self.questionnaire, state)
                replies.append(self._say(state, "talk_lane_chosen" if talk else "talk_offer"))
            replies.append(self.ask(state))
            return Outcome(state, replies)

        if step.kind == "summary":
            return self._summary_answer(state, text, replies, chosen)

        if step.kind == "evidence":
            return self._evidence(state, step, text, replies, chosen)

        bare = self._bare_command(text)
        if step.kind in ("choice", "yesno"):
            key = chosen[0] if chosen else match_one(text, choices, self._yes_no_for(choices))
            if key is None and self.safety.wants_a_person(text):
                key = lanes.talk_at(self.questionnaire, step)  # the first question: that lane
            if key is not None:
                return self._accept(state, step, key, replies)
            if bare:
                replies.append(self._bare_nudge(state, bare))
            else:
                replies.append(self._unmatched(state, text, "choose_one", count=len(choices)))
            return Outcome(state, replies)

        if step.kind == "multi":
            if chosen:
                return self._accept(state, step, chosen, replies)
            found = match_many(text, choices, {})
            if found.keys and not found.unknown:
                return self._accept(state, step, found.keys, replies)
            if bare:
                replies.append(self._bare_nudge(state, bare))
            elif found.unknown and not self.safety.wants_a_person(text):
                items = ", ".join(
                    f"„{item[:UNKNOWN_CHARS]}{'…' if len(item) > UNKNOWN_CHARS else ''}“"
                    for item in found.unknown[:UNKNOWN_SHOWN]
                )
                if len(found.unknown) > UNKNOWN_SHOWN:  # "1,2,…,500": not 489 items echoed
                    items += f" … (+{len(found.unknown) - UNKNOWN_SHOWN})"
                replies.append(self._nudge(state, "choose_many", items=items))
            else:
                replies.append(self._unmatched(state, text, "choose_one", count=len(choices)))
            return Outcome(state, replies)

        if step.kind == "text":
            if bare:
                replies.append(self._bare_nudge(state, bare))
                return Outcome(state, replies)
            problem = self._length_problem(step, text, language)
            if problem is not None:
                replies.append(problem)
                return Outcome(state, replies)
            return self._accept(state, step, text, replies)

        # An info step is never waited on; if a changed questionnaire left someone on one, move on.
        self._forward(state, replies)
        return Outcome(state, replies)

    def _yes_no_for(self, choices: tuple[Choice, ...]) -> dict[str, str]:
        """Yes/no words answer any step whose choices include the ids 'yes' and 'no'."""
        keys = {choice.key for choice in choices}
        return self._yes_no_by["yes" in keys, "no" in keys]  # read only: shared

    def _accept(self, state: IntakeState, step: Step, value: Any, replies: list[Reply]) -> Outcome:
        replies += self.render.guidance_after(state, step.id, value)  # read before it is stored
        state.answers[step.id] = value
        state.history.append(step.id)
        if step.sends:
            return self._send(state, replies)
        self._forward(state, replies)
        return Outcome(state, replies)

    def _send(self, state: IntakeState, replies: list[Reply]) -> Outcome:
        """The intake becomes a case: only the answers on the official's path are kept."""
        kept = {step.id for step in self.questionnaire.path(state.answers)}
        state.answers = {key: value for key, value in state.answers.items() if key in kept}
        state.contact = lanes.contact_of(self.questionnaire, state)
        state.pending = None
        self._move(state, "submit")
        state.phase = "submitted"
        return Outcome(state, replies, Effect.SUBMIT)

    def _forward(self, state: IntakeState, replies: list[Reply]) -> None:
        """Advance to the next step that needs the official, showing info steps on the way.

        Steps answered before (the official went back, or corrects from the summary)
        are passed over, so a correction returns to where they were.
        """
        for _ in range(len(self.questionnaire.steps) + 1):
            before = state.step
            self._move(state, "advance")
            if state.step == before:  # no rule fits: the file is broken; the summary is safe
                state.step = self.questionnaire.summary.id
            step = self.questionnaire.step(state.step)
            if step.kind == "info":
                replies.append(Reply(step.prompt[state.language].strip()))
                continue
            if step.kind == "summary" or step.id not in state.answers:
                replies += self.render.guidance_at(state)
                replies.append(self.ask(state))
                return
        state.step = self.questionnaire.summary.id
        replies.append(self.ask(state))

    def _jump(self, state: IntakeState, step_id: str) -> None:
        cursor_step = state.step
        if cursor_step == step_id:
            return
        self._move(state, f"to_{step_id}")

    # -- asking -------------------------------------------------------------------------------

    def ask(self, state: IntakeState) -> Reply:
        """The current question, with progress, hints and its choices."""
        language = state.language
        if state.phase == "submitted":
            reference = state.case_reference or ""
            command = self.texts.command("new", language)
            return Reply(
                self.texts.get("already_submitted", language, reference=reference, command=command)
            )
        step = self.questionnaire.step(state.step)
        if step.kind == "summary":
            return self.render.summary(state)
        parts = []
        position = self.progress(state)
        if position is not None:
            key = "progress_about" if position.approximate else "progress"
            parts.append(
                self.texts.get(key, language, number=position.number, total=position.total)
            )
        if step.kind == "consent":
            parts.append(self.texts.get("privacy_notice", language, **self.privacy.fields()))
        parts.append(step.prompt[language].strip())
        hints = []
        if step.kind == "multi":
            hints.append(self.texts.get("multi_hint", language))
        if step.is_question and not step.required:
            hints.append(
                self.texts.get(
                    "optional_hint", language, command=self.texts.command("skip", language)
                )
            )
        if hints:
            parts.append(" ".join(hints))
        if step.is_question and step.id in state.answers:
            shown = self.render.answer(step, state.answers[step.id], state, language)
            parts.append(self.texts.get("previous_answer", language, answer=shown))
        choices = self.render.choices(step, language)
        return Reply(
            "\n\n".join(parts), choices, multiple=step.kind == "multi", prompt=prompt_id(state)
        )

    def _nudge(self, state: IntakeState, key: str, **fields: object) -> Reply:
        return self._nudge_text(state, self.texts.get(key, state.language, **fields))

    def _nudge_text(self, state: IntakeState, text: str) -> Reply:
        """A short correction that keeps the current choices at hand."""
        if state.phase != "intake":
            return Reply(text)
        step = self.questionnaire.step(state.step)
        prompt = prompt_id(state)
        if step.kind == "summary":
            choices = self.render.summary_choices(state.language)
            return Reply(text, choices, numbered=False, prompt=prompt)
        choices = self.render.choices(step, state.language)
        return Reply(text, choices, multiple=step.kind == "multi", prompt=prompt)

    def _unmatched(self, state: IntakeState, text: str, key: str, **fields: object) -> Reply:
        """No answer matched: say how to reach a person when that is what they asked for;
        after words the safety layer answered, no "could not match" – just the way on."""
        if self.safety.check(text):
            return self._nudge(state, "go_on_after_safety")
        if self.safety.wants_a_person(text):
            if lanes.may_offer_talk(self.questionnaire, state):
                await_answer(state, "talk")
                return self._confirmation_question(state)
            return self._nudge(state, "talk_offer")
        return self._nudge(state, key, **fields)

    def _bare_nudge(self, state: IntakeState, command: str) -> Reply:
        shown = self.texts.command(command, state.language)
        return self._nudge(state, "bare_command", command=shown)

    def _length_problem(self, step: Step, text: str, language: str) -> Reply | None:
        if len(text) > step.max_length:
            return Reply(
                self.texts.get("too_long", language, length=len(text), maximum=step.max_length)
            )
        if len(text) < step.min_length:
            return Reply(self.texts.get("too_short", language, minimum=step.min_length))
        return None

    def _safety_hit(self, state: IntakeState, text: str) -> list[Reply]:
        """The safety layer, in every phase the engine sees: before consent, in the questions,
        at the summary. A hit leads with the numbers and marks the intake urgent (kept once
        the privacy notice is accepted: nothing is stored before)."""
        verdict = self.safety.check(text)
        if not verdict:
            return []
        for kind in verdict.kinds:
            if kind not in state.safety:
                state.safety.append(kind)
        said = self.safety_reply(verdict, state.language)
        if state.phase == "intake" and state.consented:
            said += "\n\n" + self.texts.get("safety_marked", state.language)
        return [Reply(said)]

    # -- special steps ----------------------------------------------------------------------

    def _evidence(
        self,
        state: IntakeState,
        step: Step,
        text: str,
        replies: list[Reply],
        chosen: list[str] | None = None,
    ) -> Outcome:
        language = state.language
        collected = state.answers.get(step.id)
        evidence = collected.copied() if isinstance(collected, Evidence) else Evidence()
        if chosen:
            key: str | None = chosen[0]
        elif text.casefold() in self._yes_words:  # "Do you have evidence?" "Yes": not a note
            replies.append(
                Reply(
                    self.texts.get("evidence_yes", language),
                    self.render.choices(step, language),
                    prompt=prompt_id(state),
                )
            )
            return Outcome(state, replies)
        elif text:
            words = self._evidence_words | dict.fromkeys(self._submit_words, "done")
            key = match_one(text, self.render.choices(step, language), words)
        else:
            key = None
        if key is not None:
            evidence.later = evidence.later or key == "later"
            return self._accept(state, step, evidence, replies)
        if text:
            bare = self._bare_command(text)
            if bare:
                replies.append(self._bare_nudge(state, bare))
                return Outcome(state, replies)
            links, rest = split_links(text)
            if rest:
                problem = self._length_problem(step, rest, language)
                if problem is not None:
                    replies.append(problem)
                    return Outcome(state, replies)
                evidence.notes.append(rest)
            evidence.links.extend(links)
        state.answers[step.id] = evidence
        received = self.texts.get(
            "evidence_received",
            language,
            links=len(evidence.links),
            files=len(state.files),
            notes=len(evidence.notes),
        )
        replies.append(
            Reply(received, self.render.choices(step, language), prompt=prompt_id(state))
        )
        return Outcome(state, replies)

    def _summary_answer(
        self, state: IntakeState, text: str, replies: list[Reply], chosen: list[str] | None = None
    ) -> Outcome:
        folded = text.casefold().strip(" .!")
        submit = self.texts.get("submit", state.language).casefold()
        if chosen == ["submit"] or folded in self._submit_words or folded in ("submit", submit):
            path = self.questionnaire.path(state.answers)
            missing = [
                step
                for step in path
                if step.is_question and step.required and step.id not in state.answers
            ]
            if missing:  # e.g. a call-back chosen, then left with /zurueck before the number
                state.history.append(state.step)
                self._jump(state, missing[0].id)
                return Outcome(
                    state, [*replies, self._say(state, "missing_answer"), self.ask(state)]
                )
            return self._send(state, replies)
        items = self.render.answered_questions(state)
        if is_number(folded) and 1 <= int(folded) <= len(items):
            state.history.append(state.step)
            self._jump(state, items[int(folded) - 1].id)
            replies.append(self.ask(state))
            return Outcome(state, replies)
        bare = self._bare_command(text)
        if bare:
            replies.append(self._bare_nudge(state, bare))
        else:
            replies.append(self._nudge(state, "summary_choose", count=len(items)))
        return Outcome(state, replies)

    # -- commands -------------------------------------------------------------------------------

    def _command(self, text: str) -> tuple[str | None, str, str | None]:
        return parse_command(text, self._commands)

    def _bare_command(self, text: str) -> str | None:
        word = text.casefold().strip(" .!?")
        return self._commands.get(word) if " " not in word else None

    def _unknown_command(self, state: IntakeState, spelled: str) -> Outcome:
        language = state.language
        text = self.texts.get("unknown_command", language, name=spelled)
        close = difflib.get_close_matches(spelled, list(self._commands), n=1, cutoff=0.6)
        if close:
            shown = self.texts.command(self._commands[close[0]], language)
            text += " " + self.texts.get("did_you_mean", language, command=shown)
        help_command = self.texts.command("help", language)
        text += f" ({help_command})"
        return Outcome(state, [self._nudge_text(state, text)])

    def _run(
        self, command: str, argument: str, state: IntakeState, fresh: bool, clears_chat: bool
    ) -> Outcome:
        handlers = {
            "language": lambda: self._language(state, argument),
            "help": lambda: self._help(state, clears_chat),
            "info": lambda: Outcome(state, [self._say(state, "info"), self.ask(state)]),
            "privacy": lambda: Outcome(
                state,
                [self._say(state, "privacy_full", **self.privacy.fields()), self._current(state)],
            ),
            "offers": lambda: Outcome(
                state,
                [Reply(self.render.all_offers(self.need(state), state.language)), self.ask(state)],
            ),
            "start": lambda: self._start(state, fresh),
            "new": lambda: self._new(state),
            "back": lambda: self._back(state),
            "skip": lambda: self._skip(state),
            "cancel": lambda: self._cancel(state),
            "delete": lambda: self._delete(state),
        }
        return handlers[command]()

    def _say(self, state: IntakeState, key: str, **fields: object) -> Reply:
        return Reply(self.texts.get(key, state.language, **fields))

    def _help(self, state: IntakeState, clears_chat: bool) -> Outcome:
        language = state.language
        lines = [
            f"{text.shown[language]} – {text.description[language]}"
            for text in self.texts.commands.values()
        ]
        if clears_chat:  # the channel's own command, only where the channel has it
            lines.append(self.texts.get("clear_chat_command", language))
        return Outcome(
            state, [self._say(state, "help", commands="\n".join(lines)), self.ask(state)]
        )

    def _start(self, state: IntakeState, fresh: bool) -> Outcome:
        if state.consented and state.phase == "intake" and not fresh:
            return Outcome(state, [self._say(state, "welcome_back"), self.ask(state)])
        return Outcome(state, [self.ask(state)])

    def _new(self, state: IntakeState) -> Outcome:
        if state.phase == "submitted":
            fresh = self.begin_again(state, state.case_reference)
            return Outcome(fresh, [self.ask(fresh)])
        if state.consented:
            cancel = self.texts.command("cancel", state.language)
            return Outcome(
                state, [self._say(state, "new_in_progress", command=cancel), self.ask(state)]
            )
        return Outcome(state, [self.ask(state)])

    def _language(self, state: IntakeState, argument: str) -> Outcome:
        languages: list[str] = list(self.questionnaire.meta.languages)
        wanted = argument.casefold().strip()
        if not wanted:
            chosen = languages[(languages.index(state.language) + 1) % len(languages)]
        else:
            names = {code: code for code in languages} | {
                self.texts.languages[code].casefold(): code for code in languages
            }
            found = names.get(wanted)
            if found is None:
                return Outcome(state, [Reply(self.texts.get("language_unknown", state.language))])
            chosen = found
        state.language = chosen
        return Outcome(state, [Reply(self.texts.get("language_switched", chosen)), self.ask(state)])

    def _back(self, state: IntakeState) -> Outcome:
        if state.phase != "intake":
            return Outcome(state, [self.ask(state)])
        history = state.history
        while history and self.questionnaire.step(history[-1]).kind == "consent":
            history.pop()  # back over the privacy notice: it was answered, once
        if not history:
            return Outcome(
                state, [Reply(self.texts.get("back_at_first", state.language)), self.ask(state)]
            )
        self._jump(state, history.pop())
        return Outcome(state, [self.ask(state)])

    def _skip(self, state: IntakeState) -> Outcome:
        if state.phase != "intake" or not state.consented:
            return Outcome(state, [self.ask(state)])
        step = self.questionnaire.step(state.step)
        if not step.is_question:
            return Outcome(state, [self.ask(state)])
        if step.required:
            return Outcome(state, [self._nudge(state, "required")])
        collected = state.answers.get(step.id)
        if isinstance(collected, Evidence) and (collected.links or collected.notes):
            return self._accept(state, step, collected, [])  # keep what was sent already
        replies = [Reply(self.texts.get("skipped", state.language))]
        return self._accept(state, step, None, replies)


def _as_list(value: object) -> list[str]:
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return [value] if isinstance(value, str) else []
