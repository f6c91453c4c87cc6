"""The triage card a counsellor sees in the staff room: headline, risk flags, notes, quotes."""

from __future__ import annotations

from flows.engine import Engine
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
        "Neuer Fall L-2026-0042 · Sachsen · "
        "Bürgermeister/in oder Oberbürgermeister/in (hauptamtlich) · "
        "Bedrohung oder Nötigung, Veröffentlichung privater Daten, Feindeslisten · "
        "Sprache: Deutsch"
    )
    assert card[1] == (
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
