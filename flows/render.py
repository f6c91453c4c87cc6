"""Turning a conversation's answers into text: the summary, the confirmation, the staff post."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from flows.answers import quoted
from flows.guidance import Guidance, said_after, said_at
from flows.messages import Choice, Reply
from flows.offers import Directory, Need, Offer
from flows.picks import prompt_id
from flows.questionnaire import Questionnaire, Step
from flows.safety import numbers_in
from flows.state import Answer, Evidence, IntakeState
from flows.texts import Texts


def _fits_all(offer: Offer, need: Need) -> bool:
    """For /hilfen: every nationwide offer, and the offers of the official's Land."""
    return offer.scope == "federal" or (need.land is not None and need.land in offer.lands)


SUMMARY_TEXT_LIMIT = 400  # a long description is cut in the summary list, never in the record
CHOICES_KEPT = 1024  # steps x languages: far more than a questionnaire has


@dataclass(frozen=True)
class Renderer:
    questionnaire: Questionnaire
    texts: Texts
    directory: Directory

    def choices(self, step: Step, language: str) -> tuple[Choice, ...]:
        """A step's choices as shown, made once per step and language (asked for a few
        times per message; the step, its labels and the texts never change)."""
        key = (id(step), language)
        kept = self._choices.get(key)
        if kept is not None and kept[0] is step:  # `is`: an id is reused only once freed
            return kept[1]
        made = self._made_choices(step, language)
        if len(self._choices) >= CHOICES_KEPT:
            self._choices.clear()
        self._choices[key] = (step, made)
        return made

    @cached_property
    def _choices(self) -> dict[tuple[int, str], tuple[Step, tuple[Choice, ...]]]:
        return {}

    def _made_choices(self, step: Step, language: str) -> tuple[Choice, ...]:
        if step.kind == "yesno" and not step.choices:
            return (
                Choice("yes", self.texts.get("yes", language)),
                Choice("no", self.texts.get("no", language)),
            )
        if step.kind == "evidence":
            return (
                Choice("done", self.texts.get("evidence_done", language)),
                Choice("later", self.texts.get("evidence_later", language)),
            )
        return tuple(Choice(choice.id, choice.label[language]) for choice in step.choices)

    def answer(
        self,
        step: Step,
        value: Answer,
        state: IntakeState,
        language: str,
        limit: int | None = SUMMARY_TEXT_LIMIT,
    ) -> str:
        """One answer as the official would say it, in their language."""
        if value is None:
            return self.texts.get("skipped_answer", language)
        if isinstance(value, Evidence):
            if not (value.links or value.notes or state.files):
                key = "evidence_answer_later" if value.later else "evidence_answer_none"
                return self.texts.get(key, language)
            if limit is None:  # the full record: every link and note, not just counts
                return quoted("; ".join([*value.links, *value.notes])) + (
                    f" · {self.texts.get('staff_files', language, count=len(state.files))}"
                    if state.files
                    else ""
                )
            text = self.texts.get(
                "evidence_answer",
                language,
                links=len(value.links),
                files=len(state.files),
                notes=len(value.notes),
            )
            if value.later:
                text += " · " + self.texts.get("evidence_answer_later", language)
            return text
        if step.kind in ("choice", "multi", "yesno", "consent"):
            labels = {choice.key: choice.label for choice in self.choices(step, language)}
            values = value if isinstance(value, list) else [value]
            return ", ".join(labels.get(item, item) for item in values)
        text = value if isinstance(value, str) else ", ".join(value)
        if limit is not None and len(text) > limit:
            text = text[:limit].rstrip() + " …"
        return quoted(text)  # the official's words: no line of them passes for a field

    def answered_questions(self, state: IntakeState) -> list[Step]:
        """The questions on the official's path that have an answer, in order."""
        return [
            step
            for step in self.questionnaire.path(state.answers)
            if step.is_question and step.id in state.answers
        ]

    def summary(self, state: IntakeState) -> Reply:
        language = state.language
        lines = [self.questionnaire.summary.prompt[language].strip(), ""]
        lines.append(self.texts.get("summary_header", language))
        for number, step in enumerate(self.answered_questions(state), start=1):
            shown = self.answer(step, state.answers[step.id], state, language)
            lines.append(f"{number}. {step.label[language]}: {shown}")
        lines += ["", self.texts.get("summary_footer", language)]
        return Reply(
            "\n".join(lines),
            self.summary_choices(language),
            numbered=False,
            prompt=prompt_id(state),
        )

    def summary_choices(self, language: str) -> tuple[Choice, ...]:
        """The summary's buttons; its items are corrected by typing their number."""
        return (Choice("submit", self.texts.get("submit", language)),)

    def offers(self, need: Need, language: str, said_nearby: str = "") -> str:
        """At most three offers, one line each; none whose numbers the official reads in the
        message before or after anyway (`said_nearby`); /hilfen for the rest."""
        nearby = set(numbers_in(said_nearby))
        chosen = [
            offer
            for offer in self.directory.select(need)
            if not (numbers_in(offer.contact) and set(numbers_in(offer.contact)) <= nearby)
        ]
        lines = [self.texts.get("offers_header", language)] if chosen else []
        lines += [self._offer_line(offer, language) for offer in chosen]
        note = self.directory.land_note(need.land)
        parts = ["\n".join(lines)] if lines else []
        if note is not None:
            parts.append(note.note[language])
        more = self.texts.command("offers", language)
        parts.append(self.texts.get("offers_more", language, command=more))
        return "\n\n".join(parts)

    def all_offers(self, need: Need, language: str) -> str:
        """Every offer that fits (/hilfen), with what it does, the motive-specific ones too."""
        lines = [self.texts.get("offers_all_header", language)]
        shown = [offer for offer in self.directory.offers if _fits_all(offer, need)]
        lines += [self._offer(offer, language) for offer in shown]
        note = self.directory.land_note(need.land)
        if note is not None:
            lines.append(note.note[language])
        return "\n\n".join(lines)

    def guidance_after(self, state: IntakeState, step_id: str, value: Answer) -> list[Reply]:
        """Advice the answer `value` (not stored yet) makes fit, said once, before the next
        question (flows/guidance.py)."""
        if self._in_danger_lane({**state.answers, step_id: value}):
            return []
        entries = said_after(self._guidance_reading(step_id), state.answers, step_id, value)
        return self._guidance(entries, state.language)

    def _guidance_reading(self, step_id: str) -> tuple[Guidance, ...]:
        """The entries with a condition on `step_id`, in file order: only those can fit
        after an answer to it that did not before (the rest read the same answers)."""
        found = self._reading.get(step_id)
        if found is None:
            if len(self._reading) >= CHOICES_KEPT:
                self._reading.clear()
            found = self._reading[step_id] = tuple(
                entry
                for entry in self.directory.guidance
                if any(condition.answer == step_id for condition in (*entry.when, *entry.when_any))
            )
        return found

    @cached_property
    def _reading(self) -> dict[str, tuple[Guidance, ...]]:
        return {}

    def guidance_at(self, state: IntakeState) -> list[Reply]:
        """Advice for the step reached now, when it is asked for the first time."""
        if self._in_danger_lane(state.answers):
            return []
        entries = said_at(self.directory.guidance, state.step, state.answers)
        return self._guidance(entries, state.language)

    def _in_danger_lane(self, answers: dict[str, Answer]) -> bool:
        """Someone in acute danger reads the emergency numbers and the few questions that
        send the case, no advice on evidence or reports: whatever guidance the offers file
        would make fit on that lane's steps."""
        lanes = self.questionnaire.lanes
        return lanes is not None and answers.get(lanes.step) == lanes.danger

    def _guidance(self, entries: list[Guidance], language: str) -> list[Reply]:
        """What fits at one moment, as one message: never a wall of every tip at the end."""
        if not entries:
            return []
        return [Reply("\n\n".join(self.texts.get(entry.text, language) for entry in entries))]

    def _offer_line(self, offer: Offer, language: str) -> str:
        name = offer.name.split(" – ")[0]
        hours = offer.hours.get(language)
        line = f"• {name}: {offer.contact}"
        return line + (f" ({hours})" if hours else "")

    def _headline(
        self, state: IntakeState, reference: str, need: Need, language: str, detail: str
    ) -> str:
        """The card's first line: urgency, reference, the headline answers, their language."""
        heading = self.texts.get("staff_new_case", language, reference=reference)
        if need.urgent:
            heading = self.texts.get("staff_urgent", language) + " " + heading
        profile = self.questionnaire.profile
        parts = [heading]
        lane = self._own_line(state, self.questionnaire.triage.lane, "staff_lane", language)
        if lane is not None and detail != "minimal":
            parts.append(lane)
        for step_id in self.questionnaire.triage.headline:
            if detail == "minimal" and step_id not in (profile.land, profile.categories):
                continue
            value = state.answers.get(step_id)
            if value is not None and step_id in self.questionnaire.steps:
                step = self.questionnaire.step(step_id)
                parts.append(self.answer(step, value, state, language))
        shown = self.texts.languages.get(state.language, state.language)
        parts.append(self.texts.get("staff_official_language", language, name=shown))
        return " · ".join(parts)

    def _own_line(self, state: IntakeState, step_id: str, prefix: str, language: str) -> str | None:
        """A choice the card words itself (`<prefix>_<choice>` in texts.toml): the lane, safe
        now. A choice it has no words for is shown as the questionnaire labels it (or as
        given), without the question's label: the card names each of them once, in its own
        words, and a second name ("Anliegen: …" beside "Weg: …") would read as another field."""
        value = state.answers.get(step_id)
        if not isinstance(value, str):
            return None
        key = f"{prefix}_{value}"
        if key in self.texts.messages:
            return self.texts.get(key, language)
        step = self.questionnaire.steps.get(step_id)
        if step is None:
            return value
        return self.answer(step, value, state, language)

    def _own_words(self, state: IntakeState, step_id: str, key: str, language: str) -> list[str]:
        """A free-text answer the card shows in its own place, marked as the official's words."""
        value = state.answers.get(step_id)
        if not isinstance(value, str) or not value.strip():
            return []
        words = self.texts.get("staff_quote", language, text=quoted(value))
        return [self.texts.get(key, language, text=words)]

    def _flags(self, state: IntakeState, language: str) -> list[str]:
        """Risk flags computed from the answers (one line), then notes for the counsellor."""
        triage = self.questionnaire.triage
        flags: list[str] = []
        for flag in triage.flags:
            label = flag.label[language]
            if label not in flags and all(rule.holds(state.answers) for rule in flag.when):
                flags.append(label)
        lines = [self.texts.get("staff_risks", language, flags=" · ".join(flags))] if flags else []
        for note in triage.notes:
            if all(rule.holds(state.answers) for rule in note.when):
                lines.append(
                    self.texts.get("staff_triage_note", language, note=note.label[language])
                )
        return lines

    def _offer(self, offer: Offer, language: str) -> str:
        text = f"• {offer.name}\n{offer.description[language]}\n{offer.contact}"
        hours = offer.hours.get(language)
        if hours:
            text += " · " + self.texts.get("offer_hours", language, hours=hours)
        return text

    def case_summary(
        self, state: IntakeState, reference: str, need: Need, language: str, detail: str = "full"
    ) -> str:
        """The post for the staff room: what a counsellor needs to decide who takes the case.

        `detail` is for staff rooms that are not end-to-end encrypted: "summary" leaves out
        free text (descriptions, notes, links, phone numbers), "minimal" keeps only what
        sorting the queue needs (Land and categories).
        """
        profile = self.questionnaire.profile
        triage = self.questionnaire.triage
        lines = [self._headline(state, reference, need, language, detail)]
        # Most important risk first: the safety layer's hits (what the person wrote), named
        # only where the room is encrypted; then what they said about being safe now.
        if state.safety:
            kinds = state.safety if detail == "full" else ["any"]
            lines += [self.texts.get(f"staff_safety_{kind}", language) for kind in kinds]
        safe_now = self._own_line(state, triage.safe_now, "staff_safe_now", language)
        if safe_now is not None and detail != "minimal":
            lines.append(safe_now)
        if detail != "minimal":
            lines += self._flags(state, language)
        # Free text that can identify the person: only where the room is encrypted.
        full = detail == "full"
        if full:
            lines += self._own_words(state, triage.municipality, "staff_municipality", language)
        file_number = (
            self._own_words(state, triage.police_file_number, "staff_police_file", language)
            if full
            else []
        )
        answered = self.answered_questions(state)
        if triage.police not in {step.id for step in answered}:
            lines += file_number  # no police status to stand beside
        for step in answered:
            if step.id in triage.own_place():
                continue
            if detail == "minimal" and step.id not in (profile.land, profile.categories):
                continue
            if detail == "summary" and step.kind == "text":
                continue
            limit = None if full else SUMMARY_TEXT_LIMIT
            shown = self.answer(step, state.answers[step.id], state, language, limit=limit)
            if step.kind == "text" and state.answers[step.id] is not None:
                shown = self.texts.get("staff_quote", language, text=shown)  # their own words
            lines.append(f"{step.label[language]}: {shown}")
            if step.id == triage.police:
                lines += file_number
        if detail == "minimal":
            return "\n".join(lines)
        if state.files:
            lines.append(self.texts.get("staff_files", language, count=len(state.files)))
        shown_to_them = self.directory.select(need)  # the offers the official was given
        offers = ", ".join(offer.name for offer in shown_to_them) or "–"
        lines.append(self.texts.get("staff_offers", language) + " " + offers)
        return "\n".join(lines)
