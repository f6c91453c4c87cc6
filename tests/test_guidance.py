"""Guidance at the moment it helps: each piece said once, right after the answer it fits.

Scripted runs through `Engine.handle`: for every message the official sends, what the bot
answers; a piece of guidance must appear in the answer to its own step and nowhere else.
"""

from __future__ import annotations

import dataclasses

import pytest

from flows.engine import Engine
from flows.guidance import Guidance
from flows.offers import load_directory
from flows.questionnaire import Condition, load_questionnaire
from tests.test_engine import ANSWERS, Chat

# The first words of each piece, as the official reads them (texts.toml).
SCREENSHOT = "So wird ein Screenshot zu einem brauchbaren Beleg"
KEEP = "Bitte bewahren Sie alles auf"
ONLINE = "Bei Inhalten im Netz gilt: erst sichern, dann melden."
CALLS = "Bei drohenden Anrufen: Sagen Sie nichts"
ADDRESS = "Zum Schutz Ihrer Adresse"
POLICE = "Wenn Sie Anzeige erstatten möchten"
ALL = (SCREENSHOT, KEEP, ONLINE, CALLS, ADDRESS, POLICE)


Said = dict[str, list[str]]  # what the bot answered to each step's answer


def _run(engine: Engine, answers: dict[str, str], language: str = "de") -> tuple[Chat, Said]:
    """Answer every question up to the summary; what the bot said to each step's answer."""
    chat = Chat(engine)
    chat.say("Hallo")
    if language == "en":
        chat.say("/language en")
    chat.say("Einverstanden")
    given = {**ANSWERS, **answers}
    said: Said = {}
    for _ in range(40):
        if chat.step == "summary":
            return chat, said
        step = chat.step
        chat.say(given[step])
        said[step] = [reply.text for reply in chat.replies]
    raise AssertionError(f"stuck at {chat.step}")


def _where_said(said: Said, opening: str) -> list[str]:
    return [step for step, texts in said.items() if any(opening in text for text in texts)]


def _before_the_question(said: Said, step: str, opening: str) -> None:
    """The piece comes as its own message, after the answer and before the next question."""
    texts = said[step]
    assert len(texts) >= 2
    assert any(text.startswith(opening) for text in texts[:-1]), texts
    assert opening not in texts[-1]  # the question itself stays as it was


def test_a_doxxing_case_online_and_at_home_hears_each_piece_once_at_its_step(
    flow_engine: Engine,
) -> None:
    _, said = _run(
        flow_engine,
        {
            "categories": "Veröffentlichung privater Daten",
            "where": "Beides",
            "offline_place": "Zu Hause",  # a second reason for the address block: not repeated
            "police": "Noch nicht",
        },
    )
    assert _where_said(said, ADDRESS) == ["categories"]
    assert _where_said(said, ONLINE) == ["where"]
    # at the evidence step: reached by the answer before it, said before its question
    assert _where_said(said, SCREENSHOT) == ["family"]
    assert _where_said(said, KEEP) == ["family"]
    assert _where_said(said, POLICE) == ["police"]
    assert _where_said(said, CALLS) == []
    for step, opening in (("categories", ADDRESS), ("where", ONLINE), ("police", POLICE)):
        _before_the_question(said, step, opening)
    screenshot, keep = SCREENSHOT, KEEP
    evidence_turn = said["family"]
    assert evidence_turn[-1].startswith("Frage") and "Haben Sie Belege?" in evidence_turn[-1]
    # both pieces of one moment come as one message, not two
    assert [text for text in evidence_turn if screenshot in text or keep in text] == [
        next(text for text in evidence_turn if screenshot in text)
    ]


def test_an_offline_case_by_phone_hears_the_call_advice_and_no_online_advice(
    flow_engine: Engine,
) -> None:
    _, said = _run(
        flow_engine, {"where": "Persönlich", "offline_place": "Am Telefon", "police": "Nein"}
    )
    assert _where_said(said, CALLS) == ["offline_place"]
    _before_the_question(said, "offline_place", CALLS)
    assert _where_said(said, KEEP) == ["family"]
    for opening in (SCREENSHOT, ONLINE, ADDRESS, POLICE):
        assert _where_said(said, opening) == [], opening


@pytest.mark.parametrize(
    ("police", "heard"), [("1", False), ("2", True), ("3", False), ("4", True)]
)
def test_police_advice_follows_not_yet_and_unsure_only(
    flow_engine: Engine, police: str, heard: bool
) -> None:
    _, said = _run(flow_engine, {"police": police})
    assert _where_said(said, POLICE) == (["police"] if heard else [])


def test_the_advice_never_tells_to_record_a_call_and_the_address_block_may_apply(
    flow_engine: Engine,
) -> None:
    """Recording someone's words without consent is an offence (§ 201 StGB); an address block
    is something threats *can* be a reason for, not something they simply count for."""
    chat, said = _run(flow_engine, {"where": "Persönlich", "offline_place": "Am Telefon"})
    info = chat.say("/info")
    everything = "\n".join([*(text for texts in said.values() for text in texts), info])
    for wrong in ("aufzeichn", "Aufzeichn", "mitschneid", "zählen dafür"):
        assert wrong not in everything
    assert "Uhrzeit, Nummer und den genauen Wortlaut sofort notieren" in info
    assert "kann ein Grund dafür sein" in info
    english = flow_engine.texts.get("info", "en")
    assert "record" not in english.casefold()
    assert "can be a reason for it" in english
    address = flow_engine.texts.get("guidance_address_block", "de")
    assert "kann ein Grund dafür sein" in address and "zählen" not in address


def _summary_number(chat: Chat, label: str) -> str:
    """The number of an item of the summary shown last, by its label."""
    for line in reversed(chat.transcript[-1].splitlines()):
        number, _, rest = line.partition(". ")
        if number.isdigit() and rest.startswith(f"{label}:"):
            return number
    raise AssertionError(f"no summary item {label!r}")


def test_correcting_from_the_summary_does_not_repeat_a_piece(flow_engine: Engine) -> None:
    chat, said = _run(flow_engine, {"where": "Beides", "offline_place": "Zu Hause"})
    assert _where_said(said, ADDRESS) == ["offline_place"]
    # add doxxing to the categories: the home already gave the reason, nothing is said again
    chat.say(_summary_number(chat, "Art des Vorfalls"))
    assert chat.step == "categories"
    text = chat.say("Beleidigung, Veröffentlichung privater Daten")
    assert chat.step == "summary"
    assert ADDRESS not in text
    # the same answer once more: nothing new either
    chat.say(_summary_number(chat, "Wo"))
    assert chat.step == "where"
    assert ONLINE not in chat.say("Beides")


def test_a_correction_that_newly_fits_says_the_piece_then(flow_engine: Engine) -> None:
    chat, said = _run(flow_engine, {"where": "Persönlich", "offline_place": "Im Rathaus"})
    assert _where_said(said, ADDRESS) == []
    chat.say(_summary_number(chat, "Art des Vorfalls"))
    text = chat.say("Veröffentlichung privater Daten")
    assert chat.step == "summary"
    assert ADDRESS in text
    assert text.index(ADDRESS) < text.index("Bitte prüfen Sie Ihre Angaben")


def test_english_speakers_hear_it_in_english(flow_engine: Engine) -> None:
    _, said = _run(flow_engine, {"where": "1", "police": "4"}, language="en")
    turn = "\n".join(said["family"])
    assert "How a screenshot becomes usable evidence" in turn
    assert "Please keep everything" in turn
    assert "every German state's police also accepts reports online" in "\n".join(said["police"])
    assert not any(opening in turn for opening in ALL)


def test_every_shipped_piece_has_a_source_in_the_brief_and_a_text_in_both_languages(
    flow_engine: Engine,
) -> None:
    directory = load_directory(load_questionnaire())
    assert {entry.id for entry in directory.guidance} >= {
        "screenshot",
        "keep_originals",
        "online_report",
        "address_block",
        "police_online",
    }
    for entry in directory.guidance:
        assert entry.source.startswith("BRIEF.md, "), entry.id
        for language in ("de", "en"):
            assert flow_engine.texts.get(entry.text, language).strip()


def _danger_lane(engine: Engine) -> Chat:
    """The danger lane to the end: in danger, consent, Land, a sentence, "called the police?"."""
    chat = Chat(engine)
    for line in ("Hallo", "Ich bin in Gefahr", "Einverstanden", "Bremen"):
        chat.say(line)
    assert chat.step == "now"
    chat.say("Er steht vor dem Rathaus und schreit")
    chat.say("ja")
    assert chat.now.phase == "submitted"
    return chat


def test_the_danger_lane_hears_no_guidance(flow_engine: Engine) -> None:
    """Someone in acute danger reads the numbers and is asked only what matters."""
    chat = _danger_lane(flow_engine)
    everything = "\n".join(chat.transcript)
    assert "110" in everything
    for opening in ALL:
        assert opening not in everything


def test_no_guidance_on_the_danger_lane_even_where_the_offers_file_would_give_some(
    flow_engine: Engine,
) -> None:
    """Guidance an operator ties to the danger lane's steps (the Land, the sentence) is still
    not said there; on the report lane the same entries are."""
    render = flow_engine.render
    extra = (
        Guidance(id="at_now", text="guidance_screenshot", at="now", source="BRIEF.md, test"),
        Guidance(
            id="after_land",
            text="guidance_keep_originals",
            when_any=[Condition.model_validate({"answer": "land", "is": "hb"})],
            source="BRIEF.md, test",
        ),
    )
    directory = dataclasses.replace(render.directory, guidance=extra)
    engine = Engine(
        flow_engine.questionnaire,
        flow_engine.texts,
        dataclasses.replace(render, directory=directory),
        flow_engine.safety,
    )
    everything = "\n".join(_danger_lane(engine).transcript)
    assert SCREENSHOT not in everything and KEEP not in everything
    _, said = _run(engine, {})  # the report lane, in Bremen
    assert _where_said(said, KEEP) == ["land"]
