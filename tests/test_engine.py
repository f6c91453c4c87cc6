"""The intake conversation, as the official experiences it, through `Engine.handle` only.

Each test plays a short chat and checks what the official would read, where the
conversation stands, what has been recorded, and which effect the core is asked
to carry out. `Directory.match` is tested directly at the end.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

import pytest

from flows.engine import Engine
from flows.lanes import Privacy
from flows.messages import Effect, Outcome, Reply, UserInput
from flows.offers import Directory, LandNote, Need, Offer
from flows.state import SUBMITTED, Evidence, IntakeState, StoredFile

# Valid answers for every question, as an official would type them (German chat).
# `where` = online; `contact` = chat: the common path through the questionnaire.
ANSWERS = {
    "lane": "3",  # the report lane: every question
    "welcome": "Einverstanden",
    "now": "Jemand schreit vor dem Rathaus",
    "called_110": "ja",
    "land": "Bremen",
    "role": "1",
    "safe_now": "1",
    "categories": "1, 3",
    "description": "Seit Wochen bekomme ich beleidigende Nachrichten.",
    "when": "2",
    "where": "1",
    "online_platforms": "Facebook",
    "offline_place": "1",
    "municipality": "Bremerhaven",
    "office_link": "ja",
    "perpetrator": "3",
    "perpetrator_count": "1",
    "family": "nein",
    "evidence": "fertig",
    "police": "3",
    "police_file_number": "BR-1234/26",
    "help": "1, 4",
    "contact": "1",
    "callback_details": "0151 2345678, nach Frau Muster fragen",
    "callback_time": "2",
    "callback_ok": "1, 2",
    "email_details": "buero@example.org",
}


def photo(number: int = 1) -> StoredFile:
    return StoredFile(
        id=f"file-{number}", name=f"bild{number}.jpg", media_type="image/jpeg", size=1234
    )


@dataclass
class Chat:
    """One official talking to the engine; keeps the state the core would keep."""

    engine: Engine
    state: IntakeState | None = None
    outcome: Outcome | None = None
    transcript: list[str] = field(default_factory=list)

    def say(self, text: str, files: tuple[StoredFile, ...] = (), dropped: int = 0) -> str:
        """Send one message; return everything the bot answered, as one text."""
        self.outcome = self.engine.handle(self.state, UserInput(text, files, dropped))
        self.state = self.outcome.state
        texts = [reply.text for reply in self.outcome.replies]
        self.transcript.extend(texts)
        return "\n\n".join(texts)

    @property
    def replies(self) -> list[Reply]:
        assert self.outcome is not None
        return self.outcome.replies

    @property
    def effect(self) -> Effect | None:
        assert self.outcome is not None
        return self.outcome.effect

    @property
    def now(self) -> IntakeState:
        assert self.state is not None
        return self.state

    @property
    def step(self) -> str:
        return self.now.step

    @property
    def answers(self) -> dict[str, object]:
        return dict(self.now.answers)

    def choice_labels(self) -> list[str]:
        return [choice.label for reply in self.replies for choice in reply.choices]

    def answer_until(self, stop: str, answers: dict[str, str] | None = None) -> str:
        """Answer each question validly until the conversation stands at step `stop`."""
        given = {**ANSWERS, **(answers or {})}
        text = ""
        for _ in range(60):
            if self.step == stop:
                return text
            text = self.say(given[self.step])
        raise AssertionError(f"never reached {stop}; stuck at {self.step}")


def progress(text: str, language: str = "de") -> tuple[int, int]:
    pattern = (
        r"Frage (\d+) von (?:etwa )?(\d+)"
        if language == "de"
        else r"Question (\d+) of (?:about )?(\d+)"
    )
    found = re.search(pattern, text)
    assert found, f"no progress in {text!r}"
    return int(found.group(1)), int(found.group(2))


def summary_number(text: str, label: str) -> str:
    """The number the summary shows in front of `label`."""
    found = re.search(rf"^(\d+)\. {re.escape(label)}:", text, flags=re.MULTILINE)
    assert found, f"{label!r} not in the summary:\n{text}"
    return found.group(1)


@pytest.fixture
def chat(flow_engine: Engine) -> Chat:
    return Chat(flow_engine)


@pytest.fixture
def consented(flow_engine: Engine) -> Chat:
    """On the report lane, privacy notice accepted: at the first question."""
    chat = Chat(flow_engine)
    chat.say("Hallo")
    chat.say("Ich möchte schildern, was passiert ist")
    chat.say("Einverstanden")
    return chat


@pytest.fixture
def at_summary(consented: Chat) -> Chat:
    consented.answer_until("summary")
    return consented


# -- welcome and consent --------------------------------------------------------------------------


def test_first_message_shows_the_lanes_and_stores_nothing(chat):
    text = chat.say("Hallo, ich brauche Hilfe")
    assert text.startswith("In Gefahr? Rufen Sie 110.\nEnglish: /language en")
    assert "hier ist Lotse" in text
    assert chat.choice_labels() == [
        "Ich bin in Gefahr",
        "Ich möchte mit jemandem sprechen",
        "Ich möchte schildern, was passiert ist",
    ]
    assert chat.step == "lane"
    assert chat.now.consented is False
    assert chat.answers == {}
    assert chat.effect is None


def test_the_privacy_notice_is_five_lines_with_the_configured_retention(flow_engine):
    engine = Engine(
        flow_engine.questionnaire,
        flow_engine.texts,
        flow_engine.render,
        flow_engine.safety,
        Privacy(retention_days=90, intake_hours=48),
    )
    chat = Chat(engine)
    chat.say("Hallo")
    text = chat.say("3")
    notice = chat.replies[-1].text.split("\n\n")[0]
    lines = notice.splitlines()
    assert len(lines) <= 5
    assert "Beraterinnen und Berater" in lines[0]  # who reads it
    assert "verschlüsselt" in notice
    assert "nach 90 Tagen" in notice and "nach 48 Stunden" in notice
    assert "Telegram" in notice and "Ende-zu-Ende" in notice
    assert "/loeschen" in notice and "/datenschutz" in notice
    assert text.endswith("Sind Sie einverstanden, dass Ihre Antworten so gespeichert werden?")
    assert chat.choice_labels() == ["Einverstanden", "Nicht einverstanden"]
    assert chat.now.consented is False
    full = chat.say("/datenschutz")
    assert "90 Tage nach dem Abschluss" in full and "nach 48 Stunden" in full
    assert chat.step == "welcome" and not chat.now.consented
    chat.say("/sprache en")
    assert "deleted after 90 days" in chat.replies[-1].text
    assert "closed cases are deleted 90 days" in chat.say("/privacy")


def test_a_yes_as_first_message_is_not_consent(chat):
    text = chat.say("ja")
    assert "Was möchten Sie tun?" in text
    chat.say("3")
    chat.say("Wer sind Sie?")
    assert chat.now.consented is False


def test_declining_consent_keeps_nothing(chat):
    chat.say("Hallo")
    chat.say("3")
    text = chat.say("Nicht einverstanden")
    assert "Es wurde nichts gespeichert" in text
    assert "0800 300 99 44" in text
    assert "110" in text
    assert chat.now.consented is False
    assert chat.step == "welcome"
    chat.say("nein")
    assert chat.now.consented is False
    # They can change their mind.
    text = chat.say("Einverstanden")
    assert chat.now.consented is True
    assert "In welchem Bundesland" in text


def test_unclear_consent_answer_asks_again(chat):
    chat.say("Hallo")
    chat.say("3")
    text = chat.say("Wer sind Sie?")
    assert "Sind Sie einverstanden" in text
    assert chat.now.consented is False


@pytest.mark.parametrize("agree", ["ja", "Einverstanden", "1", "I agree", "ok", "agree"])
def test_consent_words(chat, agree):
    chat.say("Hallo")
    chat.say("3")
    chat.say(agree)
    assert chat.now.consented is True
    assert chat.step == "land"


def test_back_from_the_first_question_returns_to_the_lanes(consented):
    text = consented.say("/zurueck")
    assert consented.step == "lane"
    assert "Was möchten Sie tun?" in text
    consented.say("2")  # another lane; the privacy notice is not asked again
    assert consented.step == "land"
    assert consented.answers["lane"] == "talk"


# -- progress -------------------------------------------------------------------------------------


def test_progress_starts_at_question_one_and_counts_up(consented):
    number, total = progress(consented.transcript[-1])
    assert number == 1
    assert total > 10
    assert "von etwa" in consented.transcript[-1]  # the report lane's path can still change
    assert progress(consented.say("1")) == (2, total)
    assert progress(consented.say("1")) == (3, total)


def test_progress_counts_each_lanes_own_path(chat):
    chat.say("Hallo")
    chat.say("Ich bin in Gefahr")
    text = chat.say("Einverstanden")
    assert "Frage 1 von 3" in text  # nothing on the danger lane can change its path
    assert "Frage 2 von 3" in chat.say("Rheinland-Pfalz")
    talk = Chat(chat.engine)
    talk.say("Hallo")
    talk.say("Ich möchte mit jemandem sprechen")
    assert "Frage 1 von etwa 3" in talk.say("ja")  # a call-back adds its questions
    talk.say("1")
    assert "Frage 3 von etwa 3" in talk.say("1")
    assert "Frage 4 von 6" in talk.say("Telefonischer Rückruf")


def test_progress_never_goes_backwards_while_answering(consented):
    seen = [progress(consented.transcript[-1])[0]]
    for _ in range(40):
        if consented.step == "summary":
            break
        text = consented.say({**ANSWERS, "where": "3", "police": "1"}[consented.step])
        if "Frage" in text:
            seen.append(progress(text)[0])
    assert seen == sorted(seen)
    assert seen == list(range(1, len(seen) + 1))


def test_progress_grows_with_optional_branches(consented):
    text = consented.answer_until("where")
    number, normal = progress(text)
    # "both" asks for platforms and for the place
    text = consented.say("Beides")
    assert progress(text) == (number + 1, normal + 1)
    text = consented.say("1")
    assert progress(text) == (number + 2, normal + 1)
    text = consented.answer_until("contact")
    _, before = progress(text)
    text = consented.say("Telefonischer Rückruf")
    assert "Unter welcher Telefonnummer" in text
    assert progress(text) == (before + 1, before + 3)


# -- acute danger ---------------------------------------------------------------------------------


def test_danger_lane_shows_emergency_guidance_at_once(chat, flow_engine):
    chat.say("Hallo")
    text = chat.say("1")
    assert chat.replies[0].text.startswith("Rufen Sie jetzt die Polizei: 110")
    assert "112" in text
    assert flow_engine.is_urgent(chat.now) is True
    assert chat.step == "welcome"  # the privacy notice still comes before anything is stored
    assert not chat.now.consented


def test_danger_lane_sends_at_once_after_three_questions(chat, flow_engine):
    for line in ("/start", "1", "ja", "Rheinland-Pfalz"):
        chat.say(line)
    assert chat.step == "now"
    text = chat.say("/ueberspringen")
    assert "Haben Sie die Polizei schon angerufen?" in text
    chat.say("nein")
    assert chat.effect is Effect.SUBMIT
    assert chat.now.phase == "submitted"
    assert chat.answers == {"lane": "danger", "welcome": "agree", "land": "rp", "now": None,
                            "called_110": "no"}  # fmt: skip
    assert flow_engine.is_urgent(chat.now) is True
    said = "\n\n".join(reply.text for reply in flow_engine.confirmation(chat.now, "L-1", "Mo"))
    assert "110" in said and "112" in said
    assert "06131 65-65250" in said  # the Land's line, around the clock
    assert "0800 111 0 111" in said  # Telefonseelsorge
    assert "HateAid" not in said and "0800 300 99 44" not in said  # nothing else
    summary = flow_engine.case_summary(chat.now, "L-2026-0001", "de")
    assert summary.startswith("‼️ DRINGEND – Neuer Fall L-2026-0001")


def test_danger_lane_without_a_24_7_line_in_the_land(chat, flow_engine):
    for line in ("/start", "1", "ja", "Bremen", "Er tritt gegen die Tür", "ja"):
        chat.say(line)
    assert chat.effect is Effect.SUBMIT
    assert chat.answers["now"] == "Er tritt gegen die Tür"
    said = "\n".join(reply.text for reply in flow_engine.confirmation(chat.now, "L-1", "Mo"))
    assert "Polizei: 110" in said and "Telefonseelsorge" in said
    assert "ZAMAT" not in said


def test_no_danger_is_not_urgent(consented, flow_engine):
    consented.answer_until("summary")
    consented.say("absenden")
    assert flow_engine.is_urgent(consented.now) is False
    summary = flow_engine.case_summary(consented.now, "L-2026-0002", "de")
    assert summary.startswith("Neuer Fall L-2026-0002")
    assert "DRINGEND" not in summary


@pytest.mark.parametrize("answer", ["Nein", "Ich weiß es nicht"])
def test_not_safe_now_is_urgent_and_the_intake_goes_on(consented, flow_engine, answer):
    consented.answer_until("safe_now")
    text = consented.say(answer)
    assert "Rufen Sie jetzt die 110" in text
    assert consented.step == "categories"
    consented.answer_until("summary")
    assert flow_engine.is_urgent(consented.now) is True


# -- choices --------------------------------------------------------------------------------------


def test_bad_choice_asks_again_and_keeps_earlier_answers(consented):
    consented.answer_until("land")
    before = consented.answers
    text = consented.say("Atlantis")
    assert "Das konnte ich keiner Antwort zuordnen" in text
    assert "1 bis 17" in text
    assert consented.step == "land"
    assert consented.answers == before
    labels = consented.choice_labels()
    assert "Baden-Württemberg" in labels
    assert "Thüringen" in labels


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("1", "mayor_full"),
        ("9", "other"),
        ("Landrat oder Landrätin", "district_head"),
        ("  landrat oder landrätin!", "district_head"),
        ("Landrat", "district_head"),  # the start of a label
        ("Kandidat", "candidate"),
        ("council", "council"),  # the id a button sends
        ("relative", "relative"),
    ],
)
def test_choice_accepted_by_number_label_prefix_and_id(consented, typed, expected):
    consented.answer_until("role")
    consented.say(typed)
    assert consented.answers["role"] == expected
    assert consented.step == "safe_now"


@pytest.mark.parametrize("typed", ["0", "18", "Sach", "Ba", "Sachsen-Bayern"])
def test_ambiguous_or_out_of_range_choice_is_not_guessed(consented, typed):
    consented.answer_until("land")
    text = consented.say(typed)
    assert "land" not in consented.answers
    assert "Das konnte ich keiner Antwort zuordnen" in text


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("ja", "yes"),
        ("Ja", "yes"),
        ("j", "yes"),
        ("yes", "yes"),
        ("Yes!", "yes"),
        ("y", "yes"),
        ("1", "yes"),
        ("nein", "no"),
        ("Nö", "no"),
        ("no", "no"),
        ("nope", "no"),
        ("2", "no"),
    ],
)
def test_yes_no_words_in_either_language(consented, typed, expected):
    consented.answer_until("family")
    consented.say(typed)
    assert consented.answers["family"] == expected
    assert consented.step == "evidence"


def test_english_no_in_german_chat_at_the_safety_question(consented, flow_engine):
    consented.answer_until("safe_now")
    consented.say("no")
    assert flow_engine.is_urgent(consented.now)


def test_ja_answers_a_choice_whose_first_answer_is_ja(consented):
    consented.answer_until("police")
    consented.say("ja")
    assert consented.answers.get("police") == "yes"


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("1, 3", ["insult", "threat"]),
        ("3,1", ["insult", "threat"]),
        ("1 3", ["insult", "threat"]),
        ("Beleidigung und Stalking", ["insult", "stalking"]),
        ("Stalking; Diskriminierung", ["stalking", "discrimination"]),
        ("insult, doxxing", ["insult", "doxxing"]),
        ("Verleumdung, üble Nachrede", ["defamation"]),  # one label with a comma in it
        ("2", ["defamation"]),
    ],
)
def test_multi_choice(consented, typed, expected):
    consented.answer_until("categories")
    consented.say(typed)
    assert consented.answers["categories"] == expected
    assert consented.step == "description"


def test_multi_choice_names_what_it_could_not_match(consented):
    consented.answer_until("categories")
    before = consented.answers
    text = consented.say("Beleidigung und Quatsch, Unsinn")
    assert "„Quatsch“" in text
    assert "„Unsinn“" in text
    assert "Beleidigung" not in text.split("zuordnen:")[1].split(".")[0]
    assert consented.step == "categories"
    assert consented.answers == before
    assert consented.replies[-1].multiple is True
    assert "Beleidigung" in consented.choice_labels()


def test_multi_choice_with_labels_containing_separators(consented):
    consented.answer_until("categories")
    consented.say("Bedrohung oder Nötigung und Stalking")
    assert consented.answers.get("categories") == ["threat", "stalking"]


# -- free text ------------------------------------------------------------------------------------


def test_text_too_short(consented):
    consented.answer_until("description")
    text = consented.say("ab")
    assert "mindestens 3 Zeichen" in text
    assert consented.step == "description"
    assert "description" not in consented.answers


def test_text_too_long_is_not_stored(consented):
    consented.answer_until("description")
    text = consented.say("x" * 8001)
    assert "8001 Zeichen" in text
    assert "höchstens 8000" in text
    assert "nicht gespeichert" in text
    assert consented.step == "description"
    assert "description" not in consented.answers
    consented.say("y" * 8000)
    assert consented.answers["description"] == "y" * 8000
    assert consented.step == "when"


def test_text_is_cleaned_but_kept_in_the_officials_words(consented):
    consented.answer_until("description")
    consented.say("  Er schrieb:\r\nDu wirst es bereuen.\x00  ")
    assert consented.answers["description"] == "Er schrieb:\nDu wirst es bereuen."


def test_long_description_is_shortened_in_the_summary_not_in_the_record(consented, flow_engine):
    long = "Beleidigung " * 100
    consented.answer_until("summary", {"description": long})
    text = consented.transcript[-1]
    assert long.strip() not in text
    assert " …" in text
    assert long.strip() in flow_engine.case_summary(consented.now, "L-1", "de")


def test_empty_message_is_answered(consented):
    text = consented.say("   ")
    assert "Ihre Nachricht war leer" in text
    assert consented.step == "land"


# -- going back -----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["/zurueck", "/back", "/zurück"])
def test_back_shows_the_previous_question_and_answer(consented, command):
    consented.answer_until("safe_now")
    text = consented.say(command)
    assert consented.step == "role"
    assert "Welche Rolle trifft auf Sie zu?" in text
    assert "Ihre bisherige Antwort: Bürgermeister/in oder Oberbürgermeister/in" in text
    assert progress(text)[0] == 2
    assert consented.answers["role"] == "mayor_full"


def test_back_at_the_first_question_says_so(consented):
    consented.say("/zurueck")  # over the privacy notice to the lanes
    text = consented.say("/zurueck")
    assert "Das ist schon die erste Frage." in text
    assert "Was möchten Sie tun?" in text
    assert consented.step == "lane"
    assert consented.now.consented is True


def test_back_before_consent_says_it_is_the_first(chat):
    chat.say("Hallo")
    text = chat.say("/zurueck")
    assert "Das ist schon die erste Frage." in text
    assert chat.now.consented is False


def test_changing_an_earlier_answer_returns_to_where_the_official_was(consented):
    consented.answer_until("description")
    consented.say("/zurueck")
    consented.say("/zurueck")
    consented.say("/zurueck")
    assert consented.step == "role"
    text = consented.say("Kandidat")
    assert consented.answers["role"] == "candidate"
    assert consented.answers["land"] == "hb"  # kept
    # land and categories, answered, are passed over: back where the official was
    assert consented.step == "description"
    assert "Bitte beschreiben Sie" in text
    assert "Ihre bisherige Antwort" not in text
    assert consented.answers["categories"] == ["insult", "threat"]


# -- skipping -------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["/ueberspringen", "/skip", "/überspringen"])
def test_skip_an_optional_question(consented, command):
    text = consented.answer_until("online_platforms")
    assert "Diese Frage ist freiwillig: /ueberspringen lässt sie aus." in text
    text = consented.say(command)
    assert "In Ordnung, ausgelassen." in text
    assert "online_platforms" in consented.answers
    assert consented.answers["online_platforms"] is None
    assert consented.step == "municipality"
    text = consented.answer_until("summary")
    assert "Plattformen: (ausgelassen)" in text


def test_skip_a_required_question_is_refused(consented):
    consented.answer_until("role")
    text = consented.say("/ueberspringen")
    assert "Diese Frage brauchen wir" in text
    assert consented.step == "role"
    assert "role" not in consented.answers
    assert "Bürgermeister/in oder Oberbürgermeister/in (hauptamtlich)" in consented.choice_labels()


# -- the summary ----------------------------------------------------------------------------------


def test_summary_lists_every_answer(at_summary):
    text = at_summary.transcript[-1]
    assert "Bitte prüfen Sie Ihre Angaben." in text
    assert "1. Anliegen: Ich möchte schildern, was passiert ist" in text
    assert "2. Bundesland: Bremen" in text
    assert "Art des Vorfalls: Beleidigung, Bedrohung oder Nötigung" in text
    assert "Plattformen: Facebook" in text
    assert "Ort:" not in text  # not asked on this path
    assert [choice.label for choice in at_summary.replies[-1].choices] == ["Absenden"]


def test_correction_from_the_summary(at_summary):
    number = summary_number(at_summary.transcript[-1], "Bundesland")
    text = at_summary.say(number)
    assert at_summary.step == "land"
    assert "Ihre bisherige Antwort: Bremen" in text
    text = at_summary.say("Bayern")
    assert at_summary.step == "summary"
    assert "Bundesland: Bayern" in text
    assert at_summary.answers["land"] == "by"
    assert at_summary.answers["description"] == ANSWERS["description"]


def test_correction_that_changes_the_path_asks_the_new_question_first(at_summary):
    number = summary_number(at_summary.transcript[-1], "Wo")
    at_summary.say(number)
    text = at_summary.say("Persönlich, am Telefon oder per Brief")
    assert at_summary.step == "offline_place"
    assert "Wo oder wie ist es vor allem passiert?" in text
    text = at_summary.say("Zu Hause")
    assert at_summary.step == "summary"
    assert "Ort: Zu Hause oder in der Nähe" in text
    assert "Plattformen" not in text


def test_summary_with_an_unknown_number(at_summary):
    text = at_summary.say("99")
    assert "Bitte tippen Sie auf „Absenden“" in text
    assert at_summary.step == "summary"
    assert at_summary.effect is None
    assert [choice.label for choice in at_summary.replies[-1].choices] == ["Absenden"]


@pytest.mark.parametrize("word", ["absenden", "Absenden!", "senden", "submit", "ja"])
def test_submitting(at_summary, word):
    at_summary.say(word)
    assert at_summary.effect is Effect.SUBMIT
    assert at_summary.now.phase == "submitted"
    assert at_summary.step == SUBMITTED
    assert at_summary.answers["land"] == "hb"


def test_submitted_answers_are_only_those_on_the_path(at_summary, flow_engine):
    number = summary_number(at_summary.transcript[-1], "Wo")
    at_summary.say(number)
    at_summary.say("2")  # offline now: the platforms answer no longer applies
    at_summary.say("1")
    assert "online_platforms" in at_summary.answers  # kept while the official may change back
    at_summary.say("absenden")
    assert at_summary.effect is Effect.SUBMIT
    path = {step.id for step in flow_engine.questionnaire.path(at_summary.now.answers)}
    assert "online_platforms" not in at_summary.answers
    assert set(at_summary.answers) <= path
    assert at_summary.answers["offline_place"] == "home"
    assert "online_platforms" not in flow_engine.case_summary(at_summary.now, "L-1", "de")
    assert "Plattformen" not in flow_engine.case_summary(at_summary.now, "L-1", "de")


def test_cannot_submit_with_a_required_question_unanswered(at_summary, flow_engine):
    at_summary.say(summary_number(at_summary.transcript[-1], "Kontaktweg"))
    at_summary.say("Telefonischer Rückruf")
    assert at_summary.step == "callback_details"
    at_summary.say("/zurueck")
    at_summary.say("/zurueck")
    at_summary.say("absenden")
    required = [
        step.id
        for step in flow_engine.questionnaire.path(at_summary.now.answers)
        if step.is_question and step.required
    ]
    missing = [step_id for step_id in required if step_id not in at_summary.now.answers]
    assert at_summary.effect is not Effect.SUBMIT or not missing, f"submitted without {missing}"


# -- cancel, delete -------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["/abbrechen", "/cancel", "/stop"])
def test_cancel_asks_first_and_no_keeps_everything(consented, command):
    consented.answer_until("description")
    before = consented.answers
    text = consented.say(command)
    assert "wirklich abbrechen" in text
    assert [choice.label for choice in consented.replies[-1].choices] == ["Ja", "Nein"]
    assert consented.effect is None
    text = consented.say("nein")
    assert "Nichts wurde gelöscht" in text
    assert "Bitte beschreiben Sie" in text  # the question again
    assert consented.effect is None
    assert consented.answers == before
    assert consented.step == "description"
    assert consented.now.pending is None


def test_cancel_confirmed_discards(consented):
    consented.answer_until("description")
    consented.say("/abbrechen")
    text = consented.say("ja")
    assert consented.effect is Effect.DISCARD
    assert consented.state is None
    assert "Die Meldung ist abgebrochen" in text
    assert "/start" in text
    # What comes next is a fresh start.
    text = consented.say("Hallo")
    assert "hier ist Lotse" in text and "Was möchten Sie tun?" in text


def test_cancel_before_consent_has_nothing_to_cancel(chat):
    chat.say("Hallo")
    text = chat.say("/abbrechen")
    assert "Gerade läuft keine Meldung" in text
    assert chat.effect is None


def test_a_command_while_asked_to_confirm_is_run_and_nothing_is_cancelled(consented):
    consented.answer_until("role")
    consented.say("/abbrechen")
    text = consented.say("/hilfe")
    assert "Befehle:" in text
    assert consented.now.pending is None
    consented.say("ja")  # now just an answer: yes/no is not a role
    assert consented.effect is None
    assert consented.state is not None


@pytest.mark.parametrize("command", ["/loeschen", "/delete", "/löschen"])
def test_delete_everything(consented, command):
    consented.answer_until("description")
    text = consented.say(command)
    assert "alles löschen" in text
    assert "nicht rückgängig" in text
    assert consented.effect is None
    text = consented.say("ja")
    assert consented.effect is Effect.DELETE_ALL
    assert consented.state is None
    assert "ist gelöscht" in text


def test_delete_declined_keeps_everything(consented):
    consented.answer_until("when")
    before = consented.answers
    consented.say("/loeschen")
    text = consented.say("nein")
    assert "es wurde nichts gelöscht" in text
    assert consented.effect is None
    assert consented.answers == before


def test_delete_is_confirmed_even_after_submission(at_summary, flow_engine):
    at_summary.say("absenden")
    chat = Chat(flow_engine, IntakeState.submitted(at_summary.now, "L-2026-0003"))
    chat.say("/loeschen")
    assert chat.effect is None
    chat.say("yes")
    assert chat.effect is Effect.DELETE_ALL


# -- language -------------------------------------------------------------------------------------


def test_language_switch_asks_again_in_english_and_back(consented):
    consented.answer_until("role")
    text = consented.say("/sprache")
    assert consented.now.language == "en"
    assert "The language is now English" in text
    assert "Which role describes you?" in text
    assert progress(text, "en") == (2, progress(consented.transcript[-4])[1])
    assert "Full-time mayor or lord mayor" in consented.choice_labels()
    text = consented.say("/language de")
    assert consented.now.language == "de"
    assert "Die Sprache ist jetzt Deutsch" in text
    assert "Welche Rolle trifft auf Sie zu?" in text


@pytest.mark.parametrize("argument", ["en", "EN", "English", "english"])
def test_language_by_name_or_code(consented, argument):
    consented.say(f"/sprache {argument}")
    assert consented.now.language == "en"


def test_unknown_language_is_explained(consented):
    text = consented.say("/sprache klingonisch")
    assert "Diese Sprache kenne ich nicht" in text
    assert "Deutsch (de)" in text
    assert "English (en)" in text
    assert consented.now.language == "de"


def test_language_switch_before_consent_shows_the_english_welcome(chat):
    text = chat.say("/language")
    assert text.startswith("The language is now English.")
    assert "In danger? Call 110.\nDeutsch: /sprache de" in text
    assert "This is Lotse" in text
    assert chat.now.consented is False
    text = chat.say("I would like to describe what happened")
    assert "Only the counsellors of the starke Stelle read your answers." in text
    assert "/privacy" in text
    chat.say("I agree")
    assert chat.now.consented is True


# -- help, info, unknown commands -----------------------------------------------------------------


def test_help_lists_the_commands(consented):
    consented.answer_until("role")
    text = consented.say("/hilfe")
    for command in ("/hilfe", "/zurueck", "/ueberspringen", "/abbrechen", "/sprache", "/info"):
        assert command in text
    assert "/loeschen" in text
    assert "110" in text
    assert "Welche Rolle trifft auf Sie zu?" in consented.replies[-1].text
    assert consented.step == "role"


def test_help_in_english(consented):
    consented.say("/language en")
    text = consented.say("/help")
    for command in ("/help", "/back", "/skip", "/cancel", "/language", "/delete"):
        assert command in text


def test_help_with_telegram_bot_suffix(consented):
    text = consented.say("/hilfe@LotseBot")
    assert "Befehle:" in text


def test_info_has_the_guidance_and_numbers(consented):
    text = consented.say("/info")
    assert "§ 51" in text
    assert "Auskunftssperre" in text
    assert "110" in text
    for number in ("0800 111 0 111", "0800 111 0 222", "116 123"):
        assert number in text
    assert consented.step == "land"
    assert "In welchem Bundesland" in consented.replies[-1].text


def test_unknown_command_suggests_the_close_one(consented):
    consented.answer_until("land")
    before = consented.now.model_dump()
    text = consented.say("/zurük")
    assert "Den Befehl „/zurük“ kenne ich nicht." in text
    assert "Meinten Sie /zurueck?" in text
    assert "/hilfe" in text
    assert consented.now.model_dump() == before
    assert "Bremen" in consented.choice_labels()


def test_unknown_command_without_a_close_one(consented):
    text = consented.say("/xyzzy")
    assert "Den Befehl „/xyzzy“ kenne ich nicht." in text
    assert "Meinten Sie" not in text


def test_bare_command_word_at_a_choice_step(consented):
    consented.answer_until("role")
    text = consented.say("hilfe")
    assert "Meinten Sie den Befehl /hilfe?" in text
    assert "role" not in consented.answers
    assert consented.step == "role"


def test_bare_command_word_at_a_text_step_is_not_stored(consented):
    consented.answer_until("description")
    text = consented.say("zurück")
    assert "Meinten Sie den Befehl /zurueck?" in text
    assert "description" not in consented.answers


def test_start_while_in_progress_welcomes_back(consented):
    consented.answer_until("land")
    text = consented.say("/start")
    assert "Willkommen zurück" in text
    assert consented.step == "land"


def test_new_while_in_progress_points_to_cancel(consented):
    consented.answer_until("safe_now")
    text = consented.say("/neu")
    assert "mitten in einer Meldung" in text
    assert "/abbrechen" in text
    assert consented.answers["role"] == "mayor_full"


# -- danger words in free text --------------------------------------------------------------------


def test_emergency_words_in_a_description_add_the_danger_hint(consented):
    # The safety layer's reply (flows/safety.toml) replaced the questionnaire's keyword hint.
    consented.answer_until("description")
    text = consented.say("Er steht gerade mit einem Messer vor meiner Tür")
    assert text.startswith("Rufen Sie jetzt die 110 (Polizei) an.")
    assert consented.answers["description"] == "Er steht gerade mit einem Messer vor meiner Tür"
    assert consented.step == "when"


def test_no_danger_hint_for_an_ordinary_description(consented):
    consented.answer_until("description")
    text = consented.say("Auf Facebook wurde ich als Volksverräter beschimpft.")
    assert "Rufen Sie jetzt die 110" not in text


def test_emergency_words_at_a_choice_step_add_the_danger_hint(consented):
    consented.answer_until("role")
    text = consented.say("Er steht mit einem Messer vor meiner Tür")
    assert "110" in text


# -- evidence and files ---------------------------------------------------------------------------


def test_evidence_accumulates_until_done(consented):
    consented.answer_until("evidence")
    text = consented.say("https://example.org/post/1 https://example.org/profil/troll")
    assert "bisher 2 Link(s), 0 Datei(en), 0 Notiz(en)" in text
    assert consented.step == "evidence"
    text = consented.say("Der Brief liegt bei mir zu Hause.")
    assert "bisher 2 Link(s), 0 Datei(en), 1 Notiz(en)" in text
    text = consented.say("", files=(photo(1), photo(2)))
    assert "bisher 2 Link(s), 2 Datei(en), 1 Notiz(en)" in text
    assert [choice.label for choice in consented.replies[-1].choices] == [
        "Fertig",
        "Später nachreichen",
    ]
    text = consented.say("fertig")
    assert consented.step == "police"
    assert "Haben Sie den Vorfall bei der Polizei angezeigt?" in text
    evidence = consented.answers["evidence"]
    assert isinstance(evidence, Evidence)
    assert evidence.links == ["https://example.org/post/1", "https://example.org/profil/troll"]
    assert evidence.notes == ["Der Brief liegt bei mir zu Hause."]
    assert evidence.later is False
    assert [file.id for file in consented.now.files] == ["file-1", "file-2"]
    text = consented.answer_until("summary")
    assert "Belege: 2 Link(s), 2 Datei(en), 1 Notiz(en)" in text


def test_evidence_later(consented):
    consented.answer_until("evidence")
    consented.say("später")
    evidence = consented.answers["evidence"]
    assert isinstance(evidence, Evidence)
    assert evidence.later is True
    text = consented.answer_until("summary")
    assert "Belege: reiche ich später nach" in text


def test_evidence_note_with_emergency_words_adds_the_hint(consented):
    consented.answer_until("evidence")
    text = consented.say("Er hat geschrieben, dass er eine Waffe hat")
    assert "Rufen Sie jetzt die 110" in text


def test_files_outside_the_evidence_step_are_counted(consented):
    consented.answer_until("role")
    text = consented.say("", files=(photo(1),))
    assert "Datei erhalten und verschlüsselt gespeichert (bisher 1)" in text
    assert "Welche Rolle trifft auf Sie zu?" in text
    text = consented.say("1", files=(photo(2),))
    assert "(bisher 2)" in text
    assert consented.answers["role"] == "mayor_full"
    assert len(consented.now.files) == 2


def test_dropped_files_before_consent_are_explained(chat):
    text = chat.say("", dropped=1)
    assert "Dateien kann ich erst annehmen, wenn Sie der Speicherung zugestimmt haben" in text
    assert "hier ist Lotse" in text
    text = chat.say("Hier ein Foto", dropped=1)
    assert "Dateien kann ich erst annehmen" in text
    assert chat.now.files == []
    assert chat.now.consented is False


@pytest.mark.parametrize(
    "messages", [["/abbrechen", ""], ["/hilfe"], ["/zurueck"]], ids=["confirming", "help", "back"]
)
def test_file_sent_with_a_command_is_kept(consented, messages):
    consented.answer_until("land")
    for text in messages[:-1]:
        consented.say(text)
    consented.say(messages[-1], files=(photo(1),))
    assert [file.id for file in consented.now.files] == ["file-1"]


# -- after submission -----------------------------------------------------------------------------


def test_after_submission_any_message_shows_the_reference(at_summary, flow_engine):
    at_summary.say("absenden")
    chat = Chat(flow_engine, IntakeState.submitted(at_summary.now, "L-2026-0042"))
    text = chat.say("Hallo, gibt es etwas Neues?")
    assert "Ihre Meldung L-2026-0042 ist angekommen" in text
    assert "/neu" in text
    assert chat.effect is None
    text = chat.say("/zurueck")
    assert "L-2026-0042" in text
    assert chat.step == SUBMITTED
    text = chat.say("/neu")
    assert chat.now.phase == "intake"
    assert chat.now.case_reference is None
    # the lanes again; consent given for the first report carries over
    assert chat.now.consented
    assert chat.now.answers == {"welcome": "agree"}
    assert chat.step == "lane"
    assert "Was möchten Sie tun?" in text
    text = chat.say("2")
    assert chat.step == "land"  # the privacy notice is not asked again
    assert "Frage 1 von etwa 3" in text


def test_submitted_state_keeps_no_answers(at_summary, flow_engine):
    at_summary.say("absenden")
    kept = IntakeState.submitted(at_summary.now, "L-2026-0042")
    assert kept.answers == {}
    assert kept.case_reference == "L-2026-0042"
    assert kept.language == "de"


def test_confirmation_lists_offers_and_the_land_note(at_summary, flow_engine):
    at_summary.say("absenden")
    replies = flow_engine.confirmation(at_summary.now, "L-2026-0007", "Mo–Fr 9–16 Uhr")
    texts = [reply.text for reply in replies]
    assert "Ihr Aktenzeichen: L-2026-0007" in texts[0]
    assert "dringend" not in texts[0]
    assert "• starke Stelle" not in texts[1]  # the contact point is not "another" offer
    assert "Meldestelle REspect!" in texts[1]  # insult and threat online
    assert "Für Bremen ist uns noch kein eigenes Landesangebot bekannt" in texts[1]
    assert "/hilfen" in texts[1]
    assert "Beratungszeiten: Mo–Fr 9–16 Uhr" in texts[2]
    assert "0800 300 99 44" in texts[2]


def test_confirmation_for_a_land_with_offers_lists_them_first(consented, flow_engine):
    consented.answer_until("summary", {"land": "Baden-Württemberg"})
    consented.say("absenden")
    offers = flow_engine.confirmation(consented.now, "L-1", "Mo–Fr")[1].text
    assert "ZAMAT" in offers
    assert offers.index("ZAMAT") < offers.index("REspect")
    assert "Bremen" not in offers


def test_confirmation_of_an_urgent_case(consented, flow_engine):
    consented.answer_until("summary", {"safe_now": "Nein"})
    consented.say("absenden")
    first = flow_engine.confirmation(consented.now, "L-9", "Mo–Fr")[0].text
    assert "als dringend markiert" in first
    assert "110" in first


@pytest.mark.parametrize(
    ("contact", "said"),
    [
        ("Hier in diesem Chat", "meldet sich hier im Chat"),
        ("Telefonischer Rückruf", "ruft Sie unter der angegebenen Nummer zurück"),
        ("Per E-Mail", "schreibt Ihnen an die angegebene E-Mail-Adresse"),
        ("Videogespräch", "Termin für das Videogespräch"),
        ("Anonym", "Sie bleiben anonym"),
    ],
)
def test_what_happens_next_follows_the_chosen_contact(consented, flow_engine, contact, said):
    consented.answer_until("summary", {"contact": contact})
    consented.say("absenden")
    assert consented.effect is Effect.SUBMIT
    after = flow_engine.confirmation(consented.now, "L-9", "Mo–Fr")[-1].text
    assert said in after
    if contact != "Hier in diesem Chat":
        assert "meldet sich hier im Chat, in den" not in after or contact == "Anonym"
    kept = IntakeState.submitted(consented.now, "L-9")
    assert kept.contact == consented.answers["contact"]  # for the claim notice later


# -- English, end to end --------------------------------------------------------------------------


def test_full_intake_in_english(chat, flow_engine):
    text = chat.say("/language")
    assert "This is Lotse" in text
    chat.say("3")
    text = chat.say("I agree")
    assert progress(text, "en")[0] == 1
    script = [
        ("Bremen", "role"),
        ("Other role", "safe_now"),
        ("Yes", "categories"),
        ("Insult and Stalking", "description"),
        ("Someone keeps insulting me online.", "when"),
        ("Today", "where"),
        ("Online", "online_platforms"),
        ("Facebook, Instagram", "municipality"),
        ("Bremerhaven", "office_link"),
        ("I am not sure", "perpetrator"),
        ("No, unknown or anonymous", "perpetrator_count"),
        ("One person", "family"),
        ("no", "evidence"),
        ("https://example.org/post/1", "evidence"),
        ("done", "police"),
        ("No", "help"),
        ("Just talk first", "contact"),
        ("A phone call back", "callback_details"),
        ("0151 2345678, ask for Ms Muster", "callback_time"),
        ("In the afternoon", "callback_ok"),
        ("A call from a withheld number, a voicemail message", "summary"),
    ]
    for typed, step in script:
        text = chat.say(typed)
        assert chat.step == step, (typed, text)
        assert "Frage" not in text
        assert "Ihre" not in text
    assert "Almost done. Please check your answers." in text
    assert "Type of incident: Insult, Stalking" in text
    assert "Platforms: Facebook, Instagram" in text
    assert "Evidence: 1 link(s), 0 file(s), 0 note(s)" in text
    assert "Call back: 0151 2345678, ask for Ms Muster" in text
    assert "Call back when: In the afternoon" in text
    assert "All right when calling back: A call from a withheld number, A voicemail message" in text
    chat.say("submit")
    assert chat.effect is Effect.SUBMIT
    assert chat.now.answers["categories"] == ["insult", "stalking"]
    assert chat.now.answers["online_platforms"] == ["facebook", "instagram"]
    confirmation = [reply.text for reply in flow_engine.confirmation(chat.now, "L-5", "Mon–Fri")]
    assert "Your reference: L-5" in confirmation[0]
    assert "We do not know of a dedicated offer in Bremen yet" in confirmation[1]
    assert "calls you back on the number you gave" in confirmation[2]
    staff = flow_engine.case_summary(chat.now, "L-5", "de")
    assert "Art des Vorfalls: Beleidigung, Stalking (Nachstellung)" in staff


# -- known crashes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stop", "typed"),
    [("welcome", "²"), ("role", "③"), ("categories", "1, ²"), ("summary", "²")],
)
def test_unusual_digits_are_not_a_crash(flow_engine, stop, typed):
    chat = Chat(flow_engine)
    chat.say("Hallo")
    if stop != "welcome":
        chat.say("3")
        chat.say("ja")
        chat.answer_until(stop)
    before = chat.now.model_dump()
    chat.say(typed)
    assert chat.now.model_dump()["answers"] == before["answers"]
    assert chat.replies


@pytest.mark.parametrize("stop", ["role", "summary"])
def test_a_huge_number_is_not_a_crash(consented, stop):
    consented.answer_until(stop)
    text = consented.say("1" * 5000)
    assert consented.step == stop
    assert text


# -- the offer directory --------------------------------------------------------------------------


def _offer(offer_id: str, **fields: object) -> Offer:
    base: dict[str, object] = {
        "id": offer_id,
        "name": offer_id.upper(),
        "scope": "federal",
        "description": {"de": "Beschreibung", "en": "Description"},
        "contact": "0800 000",
        "source": "example.org",
        "checked": dt.date(2026, 11, 1),
    }
    return Offer.model_validate(base | fields)


DIRECTORY = Directory(
    offers=(
        _offer("contact-point", always=True, help=["legal"], venues=["offline"]),
        _offer("online-hate", categories=["insult", "threat"], venues=["online"]),
        _offer("violence", categories=["physical_attack"], venues=["offline"]),
        _offer("legal", help=["legal"]),
        _offer("crisis-line", help=["psychosocial", "talk"], around_the_clock=True),
        _offer("bw-police", scope="land", lands=["bw"], around_the_clock=True),
        _offer("bw-advice", scope="land", lands=["bw"], help=["psychosocial"]),
        _offer("by-report", scope="land", lands=["by"], venues=["online"]),
    ),
    land_notes={"hb": LandNote(id="hb", note={"de": "Nichts in Bremen", "en": "Nothing"})},
)


def need(
    land: str | None = None,
    categories: tuple[str, ...] = (),
    venues: tuple[str, ...] = (),
    help: tuple[str, ...] = (),
    urgent: bool = False,
) -> Need:
    return Need(land, frozenset(categories), frozenset(venues), frozenset(help), urgent)


def ids(found: list[Offer]) -> list[str]:
    return [offer.id for offer in found]


def test_land_offers_only_for_their_land_and_first():
    found = ids(DIRECTORY.match(need(land="bw")))
    assert found[:2] == ["bw-police", "bw-advice"]
    assert "by-report" not in found
    found = ids(DIRECTORY.match(need(land="by")))
    assert found[0] == "by-report"
    assert "bw-police" not in found
    assert "bw-advice" not in found
    assert not [offer for offer in ids(DIRECTORY.match(need(land="hb"))) if "-" in offer[:3]]


def test_no_land_gets_no_land_offers():
    found = ids(DIRECTORY.match(need()))
    assert not {"bw-police", "bw-advice", "by-report"} & set(found)


def test_empty_answers_match_everything_nationwide():
    assert ids(DIRECTORY.match(need())) == [
        "contact-point",
        "online-hate",
        "violence",
        "legal",
        "crisis-line",
    ]


def test_category_filter():
    found = ids(DIRECTORY.match(need(categories=("physical_attack",))))
    assert "violence" in found
    assert "online-hate" not in found
    found = ids(DIRECTORY.match(need(categories=("insult", "stalking"))))
    assert "online-hate" in found
    assert "violence" not in found


def test_venue_filter():
    assert "online-hate" not in ids(
        DIRECTORY.match(need(categories=("insult",), venues=("offline",)))
    )
    assert "online-hate" in ids(DIRECTORY.match(need(categories=("insult",), venues=("online",))))
    both = ids(DIRECTORY.match(need(land="by", venues=("online", "offline"))))
    assert "by-report" in both


def test_help_filter():
    found = ids(DIRECTORY.match(need(help=("talk",))))
    assert "crisis-line" in found
    assert "legal" not in found
    found = ids(DIRECTORY.match(need(help=("legal",))))
    assert "legal" in found
    assert "crisis-line" not in found
    assert "bw-advice" not in ids(DIRECTORY.match(need(land="bw", help=("legal",))))


def test_urgent_cases_get_around_the_clock_offers_first():
    calm = ids(DIRECTORY.match(need(land="bw", help=("legal",))))
    assert "crisis-line" not in calm
    urgent = ids(DIRECTORY.match(need(land="bw", help=("legal",), urgent=True)))
    assert urgent[0] == "bw-police"  # the Land's 24/7 offer first
    assert urgent.index("crisis-line") < urgent.index("contact-point")
    assert urgent.index("crisis-line") < urgent.index("legal")


def test_urgent_land_ordering_keeps_land_offers_before_nationwide():
    urgent = ids(DIRECTORY.match(need(land="bw", urgent=True)))
    assert urgent[:2] == ["bw-police", "bw-advice"]
    assert urgent[2] == "crisis-line"


def test_always_offers_are_always_there():
    for case in (
        need(),
        need(land="sh", categories=("stalking",), venues=("online",), help=("talk",)),
        need(land="bw", help=("psychosocial",), urgent=True),
        need(categories=("other",), venues=("online",), help=("other",)),
    ):
        assert "contact-point" in ids(DIRECTORY.match(case))


def test_land_note():
    assert DIRECTORY.land_note("hb") is not None
    assert DIRECTORY.land_note("bw") is None
    assert DIRECTORY.land_note(None) is None


def test_shipped_directory_always_offers_the_contact_point(flow_engine):
    directory = flow_engine.render.directory
    for land in ("bw", "hb", "th", None):
        found = ids(directory.match(need(land=land, categories=("stalking",), help=("other",))))
        assert "starke-stelle" in found
    urgent = ids(directory.match(need(land="bw", urgent=True)))
    assert urgent[0] == "bw-zamat"
    assert "telefonseelsorge" in urgent


def test_a_pasted_page_at_any_step_is_refused_without_being_sent_back(
    flow_engine: Engine,
) -> None:
    """100 KB at every step (a self-hosted Bot API need not keep Telegram's 4,096 limit):
    a short reply each time, nothing taken, and the intake goes on."""
    from tests.test_core import NORMAL_INTAKE  # the lines that make a whole intake

    page = "Seite " + "x" * 100_000
    state: IntakeState | None = None
    for line in [*NORMAL_INTAKE, "absenden"]:
        for text in (page, line):
            outcome = flow_engine.handle(state, UserInput(text, language="de"))
            assert all(len(reply.text) < 2000 for reply in outcome.replies), state
            state = outcome.state or state
    assert outcome.effect is Effect.SUBMIT
    assert state is not None and "x" * 100 not in state.model_dump_json()
