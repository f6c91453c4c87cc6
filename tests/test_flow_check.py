"""`lotse flow check` and `lotse flow graph`, as an operator who edits the TOML files sees them.

Every broken file is a copy of the shipped one with one small edit, the kind of
slip an operator makes; the check must exit 1 and say where and what.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bot.cli import main
from flows.offers import SHIPPED_OFFERS
from flows.questionnaire import SHIPPED_QUESTIONNAIRE
from flows.safety import SHIPPED_SAFETY
from flows.texts import SHIPPED_TEXTS

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = {
    "intake": SHIPPED_QUESTIONNAIRE,
    "texts": SHIPPED_TEXTS,
    "offers": SHIPPED_OFFERS,
    "safety": SHIPPED_SAFETY,
}


def _copies(tmp_path: Path) -> dict[str, Path]:
    """Unchanged copies of the three shipped files."""
    paths = {}
    for name, shipped in SHIPPED.items():
        paths[name] = tmp_path / shipped.name
        paths[name].write_bytes(shipped.read_bytes())
    return paths


def _edited(tmp_path: Path, which: str, old: str, new: str) -> dict[str, Path]:
    """Copies of the shipped files, with the first `old` replaced by `new` in one of them."""
    paths = _copies(tmp_path)
    text = paths[which].read_text(encoding="utf-8")
    assert old in text, f"the shipped {which} file no longer contains {old!r}"
    edited = text.replace(old, new, 1)
    tomllib.loads(edited)  # still valid TOML: the check itself must find the problem
    paths[which].write_text(edited, encoding="utf-8")
    return paths


def _check(paths: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(
        [
            "flow",
            "check",
            str(paths["intake"]),
            "--offers",
            str(paths["offers"]),
            "--texts",
            str(paths["texts"]),
            "--safety",
            str(paths["safety"]),
        ]
    )
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _problem_lines(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.startswith("  ")]


def _assert_reports(output: str, where: str, *words: str) -> None:
    """One problem line names `where` and contains every word of `words`."""
    lines = [line for line in _problem_lines(output) if line.startswith(f"{where}: ")]
    assert lines, f"no problem reported at {where!r}; output was:\n{output}"
    assert any(all(word in line for word in words) for line in lines), (
        f"no problem at {where!r} mentions {words}; output was:\n{output}"
    )


# -- the shipped files ----------------------------------------------------------------------------


def test_shipped_files_pass(capsys):
    code = main(["flow", "check"])
    output = capsys.readouterr().out
    assert code == 0
    assert f"{SHIPPED_QUESTIONNAIRE}: ok" in output
    assert f"{SHIPPED_TEXTS}: ok" in output
    assert f"{SHIPPED_OFFERS}: ok" in output
    assert f"{SHIPPED_SAFETY}: ok" in output
    assert _problem_lines(output) == []


def test_unchanged_copies_pass(tmp_path, capsys):
    code, output = _check(_copies(tmp_path), capsys)
    assert code == 0, output
    assert output.count(": ok") == 4


def test_entry_point_runs_as_a_module():
    result = subprocess.run(
        [sys.executable, "-m", "bot", "flow", "check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "intake.toml: ok" in result.stdout
    assert "texts.toml: ok" in result.stdout
    assert "offers.toml: ok" in result.stdout


def test_entry_point_fails_on_a_broken_file(tmp_path):
    paths = _edited(tmp_path, "intake", 'next = "land"', 'next = "lnad"')
    result = subprocess.run(
        [sys.executable, "-m", "bot", "flow", "check", str(paths["intake"])],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "steps.welcome.next[0].goto: names unknown step 'lnad'" in result.stdout


# -- a broken questionnaire -----------------------------------------------------------------------


def test_unknown_step_in_next(tmp_path, capsys):
    code, output = _check(_edited(tmp_path, "intake", 'next = "land"', 'next = "lnad"'), capsys)
    assert code == 1
    _assert_reports(output, "steps.welcome.next[0].goto", "unknown step", "'lnad'")
    assert f"{tmp_path / 'intake.toml'}: " in output  # the file is named too


def test_unknown_step_in_conditional_goto(tmp_path, capsys):
    paths = _edited(tmp_path, "intake", '{ goto = "emergency", when', '{ goto = "emergancy", when')
    code, output = _check(paths, capsys)
    assert code == 1
    _assert_reports(output, "steps.lane.next[0].goto", "unknown step", "'emergancy'")


def test_a_choice_id_too_long_for_a_button(tmp_path, capsys):
    """Ids travel in buttons (prompt id and key share Telegram's 64 bytes of callback data)."""
    long_id = "other_and_something_much_longer"
    other = '{ id = "other", label = { de = "Etwas anderes"'
    paths = _edited(tmp_path, "intake", other, other.replace('"other"', f'"{long_id}"'))
    code, output = _check(paths, capsys)
    assert code == 1
    _assert_reports(output, f"steps.categories.choices.{long_id}.id", "at most 24 characters")


def test_unreachable_step(tmp_path, capsys):
    # perpetrator now skips perpetrator_count, which nothing else leads to
    paths = _edited(tmp_path, "intake", 'next = "perpetrator_count"', 'next = "family"')
    code, output = _check(paths, capsys)
    assert code == 1
    _assert_reports(output, "steps.perpetrator_count", "unreachable")


def test_missing_english_prompt(tmp_path, capsys):
    paths = _edited(tmp_path, "intake", 'prompt.en = "Which role describes you?"\n', "")
    code, output = _check(paths, capsys)
    assert code == 1
    _assert_reports(output, "steps.role.prompt", "missing", "'en'")


def test_missing_english_choice_label(tmp_path, capsys):
    paths = _edited(tmp_path, "intake", ', en = "Full-time mayor or lord mayor"', "")
    code, output = _check(paths, capsys)
    assert code == 1
    _assert_reports(output, "steps.role.choices.mayor_full.label", "missing", "'en'")


def test_choice_leading_nowhere(tmp_path, capsys):
    # safe_now: only "no" and "unsure" have a rule once the default rule is gone
    rule = '{ goto = "not_safe", when = { answer = "safe_now", one_of = ["no", "unsure"] } },\n'
    old, new = rule + '  { goto = "categories" },\n', rule
    code, output = _check(_edited(tmp_path, "intake", old, new), capsys)
    assert code == 1
    _assert_reports(output, "steps.safe_now.next", "'yes'", "leads nowhere")


def test_loop_between_steps(tmp_path, capsys):
    # perpetrator_count leads back to perpetrator
    paths = _edited(tmp_path, "intake", 'next = "family"', 'next = "perpetrator"')
    code, output = _check(paths, capsys)
    assert code == 1
    _assert_reports(output, "steps", "loop", "perpetrator -> perpetrator_count -> perpetrator")


def test_condition_names_unknown_choice(tmp_path, capsys):
    old = 'when = { answer = "lane", is = "danger" }'
    code, output = _check(
        _edited(tmp_path, "intake", old, 'when = { answer = "lane", is = "maybe" }'), capsys
    )
    assert code == 1
    _assert_reports(output, "steps.lane.next[0]", "'maybe'", "not a choice", "'lane'")


def test_condition_names_unknown_step(tmp_path, capsys):
    old = 'when = { answer = "contact", is = "callback" }'
    new = 'when = { answer = "kontakt", is = "callback" }'
    code, output = _check(_edited(tmp_path, "intake", old, new), capsys)
    assert code == 1
    _assert_reports(output, "steps.contact.next[0]", "unknown step", "'kontakt'")


def test_typo_in_a_step_key(tmp_path, capsys):
    code, output = _check(
        _edited(tmp_path, "intake", 'label.de = "Rolle"', 'lable.de = "Rolle"'), capsys
    )
    assert code == 1
    _assert_reports(output, "steps.role.lable", "not a known key")


def test_two_summary_steps(tmp_path, capsys):
    text = SHIPPED_QUESTIONNAIRE.read_text(encoding="utf-8")
    extra = (
        '\n[[steps]]\nid = "summary_again"\nkind = "summary"\n'
        'prompt.de = "Noch einmal prüfen"\nprompt.en = "Check again"\n'
    )
    code, output = _check(_edited(tmp_path, "intake", text, text + extra), capsys)
    assert code == 1
    _assert_reports(output, "steps", "exactly one step of kind 'summary'", "found 2")


def test_duplicate_step_id(tmp_path, capsys):
    paths = _edited(tmp_path, "intake", 'id = "perpetrator_count"', 'id = "perpetrator"')
    code, output = _check(paths, capsys)
    assert code == 1
    _assert_reports(output, "steps.perpetrator", "used twice")


def test_invalid_toml_is_named(tmp_path, capsys):
    paths = _copies(tmp_path)
    paths["intake"].write_text('[meta\nid = "x"\n', encoding="utf-8")
    code, output = _check(paths, capsys)
    assert code == 1
    _assert_reports(output, "file", "not valid TOML")


def test_every_problem_is_reported_at_once(tmp_path, capsys):
    text = SHIPPED_QUESTIONNAIRE.read_text(encoding="utf-8")
    edited = text.replace('prompt.en = "Which role describes you?"\n', "").replace(
        'next = "land"', 'next = "lnad"'
    )
    code, output = _check(_edited(tmp_path, "intake", text, edited), capsys)
    assert code == 1
    _assert_reports(output, "steps.role.prompt", "missing", "'en'")
    _assert_reports(output, "steps.welcome.next[0].goto", "'lnad'")


# -- broken texts ---------------------------------------------------------------------------------


def test_texts_missing_message_key(tmp_path, capsys):
    block = (
        '[messages.safety_marked]\nde = "Ihre Meldung ist jetzt als dringend markiert."\n'
        'en = "Your report is now marked urgent."\n'
    )
    code, output = _check(_edited(tmp_path, "texts", block, ""), capsys)
    assert code == 1
    _assert_reports(output, "messages.safety_marked", "required but missing")


# -- broken safety file -----------------------------------------------------------------------


def test_a_safety_reply_with_an_unsourced_number_is_named(tmp_path, capsys):
    old = "Bei Verletzten oder Feuer: 112."
    paths = _edited(tmp_path, "texts", old, "Bei Verletzten oder Feuer: 112 oder 0800 300 99 44.")
    code, output = _check(paths, capsys)
    assert code == 1
    _assert_reports(output, "classes.danger.reply", "safety_danger.de", "08003009944", "source")


def test_a_safety_fact_without_a_source_is_named(tmp_path, capsys):
    text = SHIPPED_SAFETY.read_text(encoding="utf-8")
    start = text.index("source = ", text.index("[[facts]]"))
    old = text[start : text.index("\n", start) + 1]
    code, output = _check(_edited(tmp_path, "safety", old, ""), capsys)
    assert code == 1
    _assert_reports(output, "facts[0].source", "required but missing")


def test_a_safety_class_without_patterns_is_named(tmp_path, capsys):
    text = SHIPPED_SAFETY.read_text(encoding="utf-8")
    start = text.index("patterns.en = [", text.index("[classes.suicidal]"))
    end = text.index("]", text.index('"self harm"', start)) + 1
    paths = _edited(tmp_path, "safety", text[start:end], "patterns.en = []")
    code, output = _check(paths, capsys)
    assert code == 1
    _assert_reports(output, "classes.suicidal.patterns.en", "is empty")


def test_texts_placeholder_mismatch(tmp_path, capsys):
    old = 'en = "Question {number} of {total}"'
    paths = _edited(tmp_path, "texts", old, old.replace("{total}", "{all}"))
    code, output = _check(paths, capsys)
    assert code == 1
    _assert_reports(output, "messages.progress.en", "placeholders", "'all'", "'total'")
    assert not any(line.startswith("messages.progress.de") for line in _problem_lines(output))


def test_texts_missing_english_translation(tmp_path, capsys):
    paths = _edited(tmp_path, "texts", 'en = "This is already the first question."\n', "")
    code, output = _check(paths, capsys)
    assert code == 1
    _assert_reports(output, "messages.back_at_first", "missing", "'en'")


# -- a broken offer directory ---------------------------------------------------------------------


def test_offer_without_source(tmp_path, capsys):
    code, output = _check(_edited(tmp_path, "offers", 'source = "hateaid.org"\n', ""), capsys)
    assert code == 1
    _assert_reports(output, "offers.hateaid.source", "required but missing")


def test_offer_with_bad_land_code(tmp_path, capsys):
    code, output = _check(_edited(tmp_path, "offers", 'lands = ["bw"]', 'lands = ["bx"]'), capsys)
    assert code == 1
    _assert_reports(output, "offers.bw-zamat.lands", "'bx'", "not a Land code")
    _assert_reports(output, "lands", "'bw'", "neither an offer nor a note")


def test_offer_category_not_in_questionnaire(tmp_path, capsys):
    # the first offer with categories is HateAid
    old = 'categories = ["insult", "defamation",'
    code, output = _check(
        _edited(tmp_path, "offers", old, old.replace("insult", "insults")), capsys
    )
    assert code == 1
    _assert_reports(output, "offers.hateaid.categories", "'insults'", "not a choice")


def test_land_with_neither_offer_nor_note(tmp_path, capsys):
    text = SHIPPED_OFFERS.read_text(encoding="utf-8")
    start = text.index('[[lands]]\nid = "hb"')
    end = text.index("[[lands]]", start + 1)
    code, output = _check(_edited(tmp_path, "offers", text[start:end], ""), capsys)
    assert code == 1
    _assert_reports(output, "lands", "'hb'", "neither an offer nor a note")


def test_offer_missing_english_description(tmp_path, capsys):
    line = (
        'description.en = "Nationwide phone line for victims of crime – '
        'free of charge and anonymous."\n'
    )
    code, output = _check(_edited(tmp_path, "offers", line, ""), capsys)
    assert code == 1
    _assert_reports(output, "offers.weisser-ring.description", "missing", "'en'")


def test_offer_checked_in_the_future(tmp_path, capsys):
    paths = _edited(tmp_path, "offers", "checked = 2026-11-01", "checked = 2999-01-01")
    code, output = _check(paths, capsys)
    assert code == 1
    _assert_reports(output, "offers.starke-stelle.checked", "in the future")


# -- the diagram ----------------------------------------------------------------------------------


def test_graph_is_a_mermaid_flowchart_with_every_step(capsys):
    assert main(["flow", "graph"]) == 0
    output = capsys.readouterr().out
    assert output.splitlines()[0] == "flowchart TD"
    raw = tomllib.loads(SHIPPED_QUESTIONNAIRE.read_text(encoding="utf-8"))
    step_ids = [step["id"] for step in raw["steps"]]
    node_ids = set(re.findall(r"^    (\w+)", output, flags=re.MULTILINE))
    for step_id in step_ids:
        assert step_id in node_ids, f"step {step_id} missing from the graph"
    assert '    lane -->|"lane = danger"| emergency' in output.splitlines()
    assert "    lane --> welcome" in output.splitlines()


def test_graph_in_english_uses_english_labels(capsys):
    assert main(["flow", "graph", "--language", "en"]) == 0
    output = capsys.readouterr().out
    assert "Safe now" in output
    assert "Jetzt in Sicherheit" not in output


def test_graph_of_a_broken_file_names_the_problem(tmp_path, capsys):
    paths = _edited(tmp_path, "intake", 'next = "land"', 'next = "lnad"')
    assert main(["flow", "graph", str(paths["intake"])]) == 1
    captured = capsys.readouterr()
    assert "steps.welcome.next[0].goto: names unknown step 'lnad'" in captured.err
    assert "flowchart" not in captured.out


# -- the triage card --------------------------------------------------------------------------


def test_a_triage_flag_on_an_unknown_choice_is_named(tmp_path, capsys):
    old = 'when = { answer = "offline_place", is = "home" }'
    paths = _edited(tmp_path, "intake", old, old.replace('"home"', '"hoem"'))
    code, output = _check(paths, capsys)
    assert code == 1
    _assert_reports(output, "triage.flags.home", "'hoem' is not a choice of step")


def test_a_triage_note_citing_a_law_without_source_is_named(tmp_path, capsys):
    text = SHIPPED_QUESTIONNAIRE.read_text(encoding="utf-8")
    start = text.index("source = ", text.index('id = "complaint_deadline"'))
    old = text[start : text.index("\n", start) + 1]
    edited = _edited(tmp_path, "intake", old, "")
    text = edited["intake"].read_text(encoding="utf-8")
    edited["intake"].write_text(
        text.replace("eine Antragsfrist von drei Monaten", "eine Antragsfrist (§ 77b StGB)"),
        encoding="utf-8",
    )
    code, output = _check(edited, capsys)
    assert code == 1
    _assert_reports(output, "triage.notes.complaint_deadline.source", "needs its source")


# -- the lanes ------------------------------------------------------------------------------------


def test_a_lane_asking_too_many_required_answers_is_named(tmp_path, capsys):
    # the municipality made required: the report lane asks 11 on its longest path
    old = 'id = "municipality"\nkind = "text"\nrequired = false\n'
    paths = _edited(tmp_path, "intake", old, 'id = "municipality"\nkind = "text"\n')
    code, output = _check(paths, capsys)
    assert code == 1
    _assert_reports(output, "lanes.max_required.report", "up to 11 required answers", "10")


def test_a_lane_that_is_not_a_choice_of_the_lane_step_is_named(tmp_path, capsys):
    paths = _edited(tmp_path, "intake", 'talk = "talk"', 'talk = "tlak"')
    code, output = _check(paths, capsys)
    assert code == 1
    _assert_reports(output, "lanes.talk", "'tlak' is not a choice of step 'lane'")


def test_an_unknown_way_of_contact_is_named(tmp_path, capsys):
    paths = _edited(tmp_path, "intake", 'needs_way = "video"', 'needs_way = "fax"')
    code, output = _check(paths, capsys)
    assert code == 1
    _assert_reports(output, "steps.contact.choices.video.needs_way", "'email' or 'video'")


def test_sending_from_a_step_that_asks_nothing_is_named(tmp_path, capsys):
    old = 'id = "not_safe"\nkind = "info"\n'
    paths = _edited(tmp_path, "intake", old, old + "sends = true\n")
    code, output = _check(paths, capsys)
    assert code == 1
    _assert_reports(output, "steps.not_safe.sends", "only a question")


def test_a_triage_field_naming_an_unknown_step_is_named(tmp_path, capsys):
    """The lane, safe-now and the other card fields default to the lanes' step ids and may be
    absent; one the file names itself must exist."""
    old = 'headline = ["land", "role", "categories"]'
    code, output = _check(_edited(tmp_path, "intake", old, old + '\nlane = "lnae"'), capsys)
    assert code == 1
    _assert_reports(output, "triage.lane", "names unknown step 'lnae'")


# -- guidance at the moment it helps (offers.toml [[guidance]]) -------------------------------


def _guidance_line(entry: str, key: str) -> str:
    """The line `key = …` of the [[guidance]] entry `entry` in the shipped offers file."""
    text = SHIPPED_OFFERS.read_text(encoding="utf-8")
    start = text.index(f"{key} = ", text.index(f'[[guidance]]\nid = "{entry}"'))
    return text[start : text.index("\n", start) + 1]


def test_a_piece_of_guidance_without_a_source_is_named(tmp_path, capsys):
    paths = _edited(tmp_path, "offers", _guidance_line("police_online", "source"), "")
    code, output = _check(paths, capsys)
    assert code == 1
    _assert_reports(output, "guidance.police_online.source", "needs its source", "BRIEF.md")


def test_a_piece_of_guidance_whose_source_is_not_in_the_brief_is_named(tmp_path, capsys):
    old = _guidance_line("address_block", "source")
    new = 'source = "kommunal-edv.de/wissen/meldewesen/auskunftssperren"\n'
    code, output = _check(_edited(tmp_path, "offers", old, new), capsys)
    assert code == 1
    _assert_reports(output, "guidance.address_block.source", "needs its source")


def test_guidance_at_an_unknown_step_is_named(tmp_path, capsys):
    paths = _edited(tmp_path, "offers", 'at = "evidence"', 'at = "evidnce"')
    code, output = _check(paths, capsys)
    assert code == 1
    _assert_reports(output, "guidance.screenshot.at", "unknown step 'evidnce'")


def test_guidance_on_an_unknown_choice_is_named(tmp_path, capsys):
    old = 'when_any = { answer = "offline_place", is = "phone" }'
    paths = _edited(tmp_path, "offers", old, old.replace('"phone"', '"phnoe"'))
    code, output = _check(paths, capsys)
    assert code == 1
    _assert_reports(output, "guidance.threatening_calls", "'phnoe' is not a choice of step")


def test_guidance_with_an_unknown_text_is_named(tmp_path, capsys):
    old = 'text = "guidance_screenshot"'
    paths = _edited(tmp_path, "offers", old, 'text = "guidance_screenshots"')
    code, output = _check(paths, capsys)
    assert code == 1
    _assert_reports(output, "guidance.screenshot.text", "'guidance_screenshots'", "not a message")


def test_guidance_said_neither_at_a_step_nor_after_an_answer_is_named(tmp_path, capsys):
    old = _guidance_line("online_report", "when_any")
    code, output = _check(_edited(tmp_path, "offers", old, ""), capsys)
    assert code == 1
    _assert_reports(output, "guidance.online_report", "exactly one of")
