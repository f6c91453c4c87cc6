"""Every sentence the bot says outside the questions, per language, loaded from `texts.toml`.

The engine asks for texts by key; this module checks that each key it needs is
there in every language with the same placeholders, so a missing or mistyped
translation is found by `lotse flow check`, not by an official at night.
"""

from __future__ import annotations

import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from flows.problems import Problem
from flows.tomlfile import read_toml

SHIPPED_TEXTS = Path(__file__).with_name("texts.toml")

# The commands the engine understands; their names live in texts.toml.
COMMANDS = (
    "start", "help", "back", "skip", "cancel", "language", "info", "delete", "new", "offers",
    "privacy",
)  # fmt: skip
STAFF_COMMANDS = (
    "claim", "release", "transfer", "note", "close", "reopen", "queue", "health", "help",
)  # fmt: skip
OUTCOMES = ("referred", "advised", "no_contact", "other")

# Keys the engine uses, each with the placeholders it fills in.
REQUIRED: dict[str, frozenset[str]] = {
    key: frozenset(fields)
    for key, fields in {
        "yes": (), "no": (), "progress": ("number", "total"), "previous_answer": ("answer",),
        "multi_hint": (), "optional_hint": ("command",), "choose_one": ("count",),
        "go_on_after_safety": (),
        "choose_many": ("items",), "empty_message": (), "too_long": ("length", "maximum"),
        "too_short": ("minimum",), "required": (), "skipped": (), "skipped_answer": (),
        "unknown_command": ("name",), "did_you_mean": ("command",),
        "bare_command": ("command",), "help": ("commands",), "info": (),
        "back_at_first": (), "cancel_confirm": (), "cancelled": ("command",),
        "cancel_kept": (), "nothing_to_cancel": ("command",), "delete_confirm": (),
        "deleted": (), "delete_kept": (), "language_switched": (),
        "language_unknown": (), "welcome_back": (), "files_before_consent": (),
        "files_received": ("count",), "evidence_received": ("links", "files", "notes"),
        "evidence_done": (), "evidence_later": (), "evidence_answer": ("links", "files", "notes"),
        "evidence_answer_later": (), "evidence_answer_none": (), "summary_header": (),
        "summary_footer": (),
        "submit": (), "summary_choose": ("count",), "missing_answer": (),
        "submitted": ("reference",),
        "urgent_submitted": (), "urgent_call_110": (), "offers_header": (),
        "offer_hours": ("hours",),
        "next_steps": ("hours",), "already_submitted": ("reference", "command"),
        "new_in_progress": ("command",), "technical_error": (),
        "safety_danger": (), "safety_suicidal": (), "safety_marked": (), "safety_raised": (),
        "staff_safety_alert": ("reference",), "talk_offer": (), "offers_more": ("command",),
        "offers_all_header": (), "staff_official_language": ("name",),
        "staff_risks": ("flags",), "staff_triage_note": ("note",), "staff_quote": ("text",),
        "hours_days": ("first", "last"), "hours_window": ("days", "start", "end"),
        "hours_moment": ("weekday", "time"), "hours_clock_whole": ("hour",),
        "hours_clock": ("hour", "minute"), "staff_safety_danger": (),
        "staff_safety_suicidal": (), "staff_safety_any": (),
        "state_unreadable": (), "state_unreadable_case": ("reference",),
        "staff_state_unreadable": (), "slow_down": (),
        "stale_pick": (), "stale_pick_gone": (),
        "staff_new_case": ("reference",),
        "staff_urgent": (), "staff_offers": (), "staff_files": ("count",),
        # after submitting: queue and handoff, official side
        "queue_position": ("position",), "hours_open": (),
        "hours_closed": ("hours", "next_opening"), "waiting_message_kept": ("position",),
        "hours_closed_short": ("next_opening",), "staff_note_needs_text": (),
        "lines_open": (), "lines_closed": (), "lines_above": (),
        "claimed_notice": ("name",), "transferred_notice": ("name",), "released_notice": (),
        "closed_notice": ("reference",), "return_choice": ("reference",),
        "return_too_old": ("reference",), "return_reopen": (), "return_new": (),
        "return_choose": (), "reopened_notice": ("reference",),
        # the staff room
        "staff_commands_hint": (), "staff_claimed": ("name",), "staff_waiting_messages": (),
        "staff_waiting_files": ("count",), "staff_official_says": ("text",),
        "staff_official_file": ("name", "size"), "staff_released": ("name", "reason"),
        "staff_transferred": ("source", "target"), "staff_note_saved": (),
        "staff_closed": ("name", "outcome"), "staff_reopened": ("actor",),
        "staff_official_returned": (), "staff_not_relayed": ("command",),
        "staff_claimed_by_other": ("reference", "holder"), "staff_already_yours": ("reference",),
        "staff_closed_cannot_claim": ("reference",), "staff_not_claimed": ("reference",),
        "staff_is_closed": ("reference",), "staff_release_needs_reason": (),
        "staff_unknown_counsellor": ("name",), "staff_unknown_outcome": (),
        "staff_not_closed": ("reference",), "staff_unknown_case": ("reference",),
        "staff_not_allowed": (), "staff_unknown_command": ("name", "command"),
        "staff_needs_case": ("command",), "staff_queue_empty": (), "staff_queue_header": ("count",),
        "staff_queue_line": ("position", "reference", "urgent", "minutes"),
        "staff_urgent_mark": (),
        "staff_delivery_failed": ("reference",), "staff_delivery_failed_intake": (),
        "staff_details_held": ("reference",),
        "staff_file_too_big": ("name", "limit"),
        "staff_health": ("waiting", "oldest", "urgent", "open", "claim", "reply"),
        "staff_escalation": ("reference", "minutes", "mentions"), "staff_help": ("commands",),
        "staff_nobody": (),
        # the Matrix channel (bot/channels/matrix)
        "matrix_encryption_on": (), "matrix_encryption_needed": (), "matrix_group_room": (),
        "matrix_undecryptable": (),
        "matrix_file_too_large": ("limit",), "matrix_staff_room_unsafe": (),
        "matrix_new_device": ("who",), "matrix_clear_confirm": (), "matrix_clear_done": (),
        "matrix_clear_kept": (), "matrix_device_keys_changed": ("who", "device"),
        "matrix_official_device_keys_changed": (),
        # hardening (issue 11)
        "file_too_big": ("limit",), "staff_holder_revoked": ("name",),
        "staff_taken_over": ("name", "holder"), "staff_take_over_needs_reason": (),
        "staff_case_deleted": ("reference",), "evidence_yes": (),
        # the Telegram channel's own notices
        "telegram_done": (), "telegram_file_too_big": ("limit",), "telegram_file_failed": (),
        "telegram_edited": (), "telegram_button_unknown": (),
        "telegram_forwarded": ("origin", "date"), "telegram_room_alert": ("problems",),
        "telegram_clear_confirm": (), "telegram_clear_yes": (), "telegram_clear_no": (),
        "telegram_clear_kept": (), "telegram_clear_done": ("count",),
        "telegram_clear_partly": ("count",), "telegram_clear_menu": (),
        # the three lanes, the privacy notice, contact as chosen (flows/lanes.py)
        "progress_about": ("number", "total"),
        "privacy_notice": ("retention_days", "intake_hours"),
        "privacy_full": ("retention_days", "intake_hours"), "talk_lane_chosen": (),
        "talk_confirm": (), "talk_confirm_yes": (), "talk_confirm_no": (), "talk_kept": (),
        "send_now_confirm": (), "send_now_confirm_yes": (), "send_now_confirm_no": (),
        "send_now_kept": (), "danger_numbers": (),
        "next_steps_callback": ("hours",), "next_steps_email": ("hours",),
        "next_steps_video": ("hours",), "next_steps_anonymous": ("hours",),
        "claimed_notice_callback": ("name",), "claimed_notice_email": ("name",),
        "claimed_notice_video": ("name",),
        # guidance at the moment it helps (flows/guidance.py; when and sources: offers.toml)
        "guidance_screenshot": (), "guidance_keep_originals": (), "guidance_online_report": (),
        "guidance_threatening_calls": (), "guidance_address_block": (),
        "guidance_police_online": (),
        # the triage card's fields from the lanes (flows/render.py)
        "staff_lane_danger": (), "staff_lane_talk": (), "staff_lane_report": (),
        "staff_safe_now_yes": (), "staff_safe_now_no": (), "staff_safe_now_unsure": (),
        "staff_municipality": ("text",), "staff_police_file": ("text",),
        # channels that clear the official's chat (/chat_leeren: Telegram, Matrix)
        "clear_chat_command": (), "clear_chat_hint": (),
    }.items()
}  # fmt: skip
WORD_LISTS = ("yes_words", "no_words", "submit_words", "done_words", "later_words", "weekdays")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CommandText(_Strict):
    names: list[str] = Field(min_length=1)
    shown: dict[str, str]
    description: dict[str, str]


class TextsFile(_Strict):
    languages: dict[str, str]  # code -> the language's own name, e.g. de = "Deutsch"
    commands: dict[str, CommandText]
    staff_commands: dict[str, CommandText]
    outcomes: dict[str, CommandText]
    words: dict[str, dict[str, list[str]]]
    messages: dict[str, dict[str, str]]


class TextsError(Exception):
    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s)")


@dataclass(frozen=True)
class Texts:
    languages: dict[str, str]
    commands: dict[str, CommandText]
    staff_commands: dict[str, CommandText]
    outcomes: dict[str, CommandText]
    words: dict[str, dict[str, list[str]]]
    messages: dict[str, dict[str, str]]

    def get(self, key: str, language: str, **fields: object) -> str:
        template = self.messages[key][language]
        return template.format(**fields) if fields else template

    def word_list(self, key: str) -> frozenset[str]:
        """Words accepted in any language: an official may answer 'yes' in a German chat."""
        return frozenset(word.casefold() for words in self.words[key].values() for word in words)

    def command(self, name: str, language: str) -> str:
        return self.commands[name].shown[language]

    def command_names(self, table: str = "commands") -> dict[str, str]:
        """Every spelling of every command (or staff command, or outcome), mapped to its name."""
        entries: dict[str, CommandText] = getattr(self, table)
        return {
            spelling.casefold(): command
            for command, text in entries.items()
            for spelling in text.names
        }


def load_texts(path: Path = SHIPPED_TEXTS, languages: Sequence[str] = ("de", "en")) -> Texts:
    texts, problems = check_texts(path, languages)
    if problems or texts is None:
        raise TextsError(str(path), problems)
    return texts


def check_texts(path: Path, languages: Sequence[str]) -> tuple[Texts | None, list[Problem]]:
    parsed, problems = read_toml(path, TextsFile)
    if parsed is None:
        return None, problems
    problems = list(_problems(parsed, languages))
    texts = Texts(
        parsed.languages,
        parsed.commands,
        parsed.staff_commands,
        parsed.outcomes,
        parsed.words,
        parsed.messages,
    )
    return texts, problems


def _problems(parsed: TextsFile, languages: Sequence[str]) -> Iterator[Problem]:
    for language in languages:
        if language not in parsed.languages:
            yield Problem("languages", f"missing the name of language '{language}'")
    for key, fields in REQUIRED.items():
        translations = parsed.messages.get(key)
        if translations is None:
            yield Problem(f"messages.{key}", "is required but missing")
            continue
        for language in languages:
            text = translations.get(language)
            if text is None or not text.strip():
                yield Problem(f"messages.{key}", f"missing the '{language}' translation")
                continue
            used = _placeholders(text)
            if used is None:
                yield Problem(f"messages.{key}.{language}", "has an unbalanced { or }")
            elif used != fields:
                yield Problem(
                    f"messages.{key}.{language}",
                    f"uses placeholders {sorted(used)}, expected {sorted(fields)}",
                )
    for key in parsed.messages:
        if key not in REQUIRED:
            yield Problem(f"messages.{key}", "is not a known message key")
    for key in WORD_LISTS:
        lists = parsed.words.get(key)
        if lists is None:
            yield Problem(f"words.{key}", "is required but missing")
            continue
        for language in languages:
            if not lists.get(language):
                yield Problem(f"words.{key}", f"missing the '{language}' words")
            elif key == "weekdays" and len(lists[language]) != 7:
                yield Problem(f"words.{key}.{language}", "needs the seven days, Monday first")
    for table, expected in (
        ("commands", COMMANDS),
        ("staff_commands", STAFF_COMMANDS),
        ("outcomes", OUTCOMES),
    ):
        yield from _command_problems(table, getattr(parsed, table), expected, languages)


def _command_problems(
    table: str, entries: dict[str, CommandText], expected: Sequence[str], languages: Sequence[str]
) -> Iterator[Problem]:
    spellings: dict[str, str] = {}
    for command in expected:
        entry = entries.get(command)
        if entry is None:
            yield Problem(f"{table}.{command}", "is required but missing")
            continue
        for language in languages:
            for field in ("shown", "description"):
                if not getattr(entry, field).get(language, "").strip():
                    yield Problem(f"{table}.{command}.{field}", f"missing the '{language}' text")
        for spelling in entry.names:
            other = spellings.setdefault(spelling.casefold(), command)
            if other != command:
                yield Problem(f"{table}.{command}.names", f"'{spelling}' also names '{other}'")
    for command in entries:
        if command not in expected:
            yield Problem(f"{table}.{command}", "is not one the bot knows")


def _placeholders(text: str) -> frozenset[str] | None:
    try:
        return frozenset(field for _, field, _, _ in string.Formatter().parse(text) if field)
    except ValueError:
        return None
