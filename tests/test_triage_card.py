"""The triage card a counsellor sees in the staff room: headline, risk flags, notes, quotes."""

from __future__ import annotations

from flows.engine import Engine
from flows.state import IntakeState
from tests.test_engine import Chat

DOXXING_AT_HOME = {
    "role": "1",
    "land": "Sachsen",
    "categories": "Veröffentlichung privater Daten, Bedrohung",
    "description": "Meine Adresse steht in einer Telegram-Gruppe.",
    "when": "ongoing",
    "where": "Beides",
    "online_platforms": "Telegram",
    "offline_place": "home",
    "perpetrator": "1",
    "perpetrator_count": "group",
    "family": "ja",
}


def _card(engine: Engine, answers: dict[str, str], detail: str = "full") -> list[str]:
    chat = Chat(engine)
    chat.say("Hallo")
    chat.say("Einverstanden")
    chat.answer_until("summary", answers)
    return engine.case_summary(chat.now, "L-2026-0042", "de", detail).splitlines()


def test_a_doxxing_at_home_case_with_family_shows_its_risks_on_the_first_lines(
    flow_engine: Engine,
) -> None:
    card = _card(flow_engine, DOXXING_AT_HOME)
    assert card[0] == (
        "Neuer Fall L-2026-0042 · Weg: Schilderung · Sachsen · "
        "Bürgermeister/in oder Oberbürgermeister/in (hauptamtlich) · "
        "Bedrohung oder Nötigung, Veröffentlichung privater Daten, Feindeslisten · "
        "Sprache: Deutsch"
    )
    assert card[1] == "Nach eigener Angabe jetzt in Sicherheit"  # the report lane asks
    assert card[2] == (
        "⚠️ Risiken: Private Daten veröffentlicht · Vorfall am Wohnort · Angehörige betroffen · "
        "Täter/in bekannt · Mehrere Täter/innen oder Gruppe · Hält an oder wiederholt sich"
    )
    # the official's own words are marked as theirs
    assert "Beschreibung: „Meine Adresse steht in einer Telegram-Gruppe.“" in card


def test_an_english_speaking_official_and_the_complaint_deadline_note(
    flow_engine: Engine,
) -> None:
    chat = Chat(flow_engine)
    chat.say("/sprache en")
    chat.say("I agree")
    chat.answer_until("summary", {"danger": "no", "family": "no", "land": "Bremen"})
    card = flow_engine.case_summary(chat.now, "L-1", "de").splitlines()
    assert card[0].endswith(" · Sprache: English")
    # insult: the brief's own wording on the complaint deadline, nothing more
    assert (
        "Hinweis: Für manche Taten gilt eine Antragsfrist von drei Monaten – "
        "die Beratung klärt das mit Ihnen."
    ) in card
    assert not any(line.startswith("⚠️ Risiken") for line in card)  # nothing flagged


def test_a_minimal_card_keeps_only_land_and_categories(flow_engine: Engine) -> None:
    card = _card(flow_engine, DOXXING_AT_HOME, detail="minimal")
    assert card[0] == (
        "Neuer Fall L-2026-0042 · Sachsen · "
        "Bedrohung oder Nötigung, Veröffentlichung privater Daten, Feindeslisten · "
        "Sprache: Deutsch"
    )
    assert not any("Risiken" in line or "Adresse" in line for line in card)


# -- the lanes' fields, set directly on top of a finished report-lane intake


def _built(engine: Engine, **answers: object) -> IntakeState:
    """A finished report-lane intake: the doxxing-at-home answers, changed by `answers`."""
    chat = Chat(engine)
    chat.say("Hallo")
    chat.say("Einverstanden")
    chat.answer_until("summary", DOXXING_AT_HOME)
    state = chat.now.model_copy(deep=True)
    state.answers.update(answers)  # type: ignore[arg-type]  # the lanes' answers are plain text
    return state


LANES = {
    "lane": "report",
    "safe_now": "no",  # not safe now: urgent
    "municipality": "Gemeinde Musterdorf, Landkreis Beispiel",
    "police_file_number": "ST/1234/26",
}


def test_the_lane_safe_now_municipality_and_file_number_have_their_places(
    flow_engine: Engine,
) -> None:
    state = _built(flow_engine, police="yes", **LANES)
    card = flow_engine.case_summary(state, "L-2026-0042", "de").splitlines()
    assert card[0].startswith("‼️ DRINGEND – Neuer Fall L-2026-0042 · Weg: Schilderung · Sachsen · ")
    assert card[1] == "⚠️ Nach eigener Angabe jetzt NICHT in Sicherheit"
    assert card[2].startswith("⚠️ Risiken: Private Daten veröffentlicht · Vorfall am Wohnort")
    assert "Angehörige betroffen" in card[2]
    # the official's own words, marked as theirs
    municipality = "Gemeinde oder Kreis (eigene Angabe): „Gemeinde Musterdorf, Landkreis Beispiel“"
    assert card[3] == municipality
    police = card.index("Anzeige bei der Polizei: Ja, schon angezeigt")
    assert card[police + 1] == "Aktenzeichen der Polizei (eigene Angabe): „ST/1234/26“"
    # each once: not again in the list of answers
    assert sum("Musterdorf" in line for line in card) == 1
    assert sum("ST/1234/26" in line for line in card) == 1


def test_the_card_in_english_and_the_other_lanes(flow_engine: Engine) -> None:
    for lane, safe, urgent, first, second in (
        ("talk", "yes", False, "Lane: talk", "Says they are safe now"),
        ("report", "unsure", True, "Lane: report", "⚠️ Not sure whether they are safe now"),
        ("danger", "no", True, "Lane: danger", "⚠️ Says they are NOT safe now"),
    ):
        state = _built(flow_engine, lane=lane, safe_now=safe)
        card = flow_engine.case_summary(state, "L-7", "en").splitlines()
        heading = ("‼️ URGENT – " if urgent else "") + "New case L-7 · "
        assert card[0].startswith(f"{heading}{first} · Saxony (Sachsen) · ")
        assert sum(line.count(first) for line in card) == 1  # the lane once, on the first line
        assert not any(line.startswith(("Request:", "Anliegen:")) for line in card)
        assert card[1] == second


def test_a_file_number_without_a_police_answer_stands_below_the_flags(
    flow_engine: Engine,
) -> None:
    state = _built(flow_engine, police_file_number="4711\nzweite Zeile")
    del state.answers["police"]
    del state.answers["municipality"]  # it would stand between them
    card = flow_engine.case_summary(state, "L-1", "de").splitlines()
    flags = next(i for i, line in enumerate(card) if line.startswith("⚠️ Risiken: "))
    assert flags <= 2  # after the headline and safe-now
    at = next(i for i, line in enumerate(card) if line.startswith("Aktenzeichen der Polizei"))
    assert at == flags + 1
    # a second line of theirs cannot pass for a field of the card
    assert not card[at + 1].startswith(("Zeitpunkt", "zweite Zeile"))


def test_without_the_lanes_answers_the_card_is_as_before(flow_engine: Engine) -> None:
    """An intake without them (a questionnaire that has no such questions) leaves them out."""
    state = _built(flow_engine)
    for step_id in ("lane", "safe_now", "municipality", "police_file_number"):
        state.answers.pop(step_id, None)
    card = flow_engine.case_summary(state, "L-2026-0042", "de").splitlines()
    assert card[0].startswith("Neuer Fall L-2026-0042 · Sachsen · ")
    assert card[1].startswith("⚠️ Risiken: ")
    assert not any("in Sicherheit" in line or "Aktenzeichen" in line for line in card)
    assert not any(line.startswith("Gemeinde oder Kreis") for line in card)


def test_an_unencrypted_room_gets_no_free_text_of_the_lanes(flow_engine: Engine) -> None:
    """`staff.unencrypted_detail`: "summary" keeps the lane and safe-now (choices, no words of
    the official), "minimal" keeps only Land and categories."""
    state = _built(flow_engine, **LANES)
    summary = flow_engine.case_summary(state, "L-1", "de", "summary")
    assert " · Weg: Schilderung · " in summary.splitlines()[0]
    assert "NICHT in Sicherheit" in summary
    assert "Musterdorf" not in summary and "ST/1234" not in summary
    minimal = flow_engine.case_summary(state, "L-1", "de", "minimal")
    assert "Weg:" not in minimal and "in Sicherheit" not in minimal
    assert "Musterdorf" not in minimal and "ST/1234" not in minimal


def test_a_lane_the_card_has_no_words_for_is_shown_as_given(flow_engine: Engine) -> None:
    state = _built(flow_engine, lane="callback", safe_now="maybe")
    card = flow_engine.case_summary(state, "L-1", "de").splitlines()
    assert card[0].startswith("Neuer Fall L-1 · callback · Sachsen")
    assert card[1] == "maybe"


def test_a_skipped_question_is_not_passed_off_as_the_officials_words(flow_engine: Engine) -> None:
    chat = Chat(flow_engine)
    for line in ("Hallo", "Ich bin in Gefahr", "Einverstanden", "Bremen", "/ueberspringen", "ja"):
        chat.say(line)
    card = flow_engine.case_summary(chat.now, "L-1", "de").splitlines()
    assert card[0].startswith("‼️ DRINGEND – Neuer Fall L-1 · Weg: Gefahr · Bremen · ")
    assert "Was gerade passiert: (ausgelassen)" in card  # not „(ausgelassen)“
