"""`lotse demo` scripted on standard input, as a separate process: what the official reads.

The helpers here (`Intake`, `intake_steps`, `intake_lines`, the output readers) are
shared with test_restart.py and test_no_plaintext.py.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import run_demo

pytestmark = pytest.mark.slow

REFERENCE = r"L-\d{4}-\d{4}"
PROGRESS = re.compile(r"^(?:Frage|Question) \d+ (?:von|of) (?:etwa |about )?\d+$")
SUMMARY_START = ("Ihre Angaben:", "Your answers:")
SUMMARY_END = ("Stimmt alles?", "Is everything right?")


# -- what the official types ------------------------------------------------------------------


@dataclass(frozen=True)
class Intake:
    """One official's answers. Choices are typed as their numbers, so any language works.

    The lane: `urgent` is the danger lane (Land Rheinland-Pfalz, no sentence, 110 not yet
    called: sent at once), `talk` the talk lane; otherwise the report lane, every question.
    """

    language: str = "de"
    urgent: bool = False
    talk: bool = False
    description: str = "Seit dem Ratsbeschluss bekomme ich anonyme Drohbriefe."
    evidence: tuple[str, ...] = ()  # lines sent at the evidence step before "Fertig"/"Done"
    callback: str | None = None  # asks for a phone call back with these details; None: chat


# What the normal path answers with, and how the German summary shows it.
NORMAL_DE = {
    "Anliegen": "Ich möchte schildern, was passiert ist",
    "Bundesland": "Bayern",
    "Rolle": "Ehrenamtliche/r Bürgermeister/in oder Ortsbürgermeister/in",
    "Jetzt in Sicherheit": "Ja",
    "Art des Vorfalls": "Beleidigung, Bedrohung oder Nötigung",
    "Zeitpunkt": "In den letzten 7 Tagen",
    "Wo": "Online (soziale Medien, E-Mail, Messenger)",
    "Plattformen": "Facebook, TikTok",
    "Gemeinde oder Kreis": "Landkreis Musterland",
    "Bezug zum Amt": "Ja",
    "Wer es war": "Nein, unbekannt oder anonym",
    "Anzahl": "Mehrere Personen",
    "Angehörige betroffen": "Nein",
    "Anzeige bei der Polizei": "Noch nicht, aber ich habe es vor",
    "Gewünschte Hilfe": "Sicherheitsberatung, Schutz, Rechtliche Orientierung, Anzeige",
    "Kontaktweg": "Hier in diesem Chat",
}


def intake_steps(intake: Intake = Intake(), again: bool = False) -> list[tuple[str, str]]:
    """(the step the bot is asking, the line the official types), for a whole intake.

    `again`: a second report after /neu – no /start, and the privacy notice is not asked."""
    steps = [] if again else [("lane", "/start")]
    if intake.language == "en":
        steps.append(("lane", "/language en"))
    lane = "1" if intake.urgent else "2" if intake.talk else "3"
    steps.append(("lane", lane))
    if not again:
        steps.append(("welcome", "1"))  # I agree
    if intake.urgent:  # sent at once
        return [*steps, ("land", "11"), ("now", "/ueberspringen"), ("called_110", "2")]
    steps += [("land", "2"), ("role", "2")]
    if not intake.talk:
        steps += [
            ("safe_now", "1"),
            ("categories", "1, 3"),
            ("description", intake.description),
            ("when", "2"),
            ("where", "1"),
            ("online_platforms", "1, 4"),
            ("municipality", "Landkreis Musterland"),
            ("office_link", "1"),
            ("perpetrator", "3"),
            ("perpetrator_count", "2"),
            ("family", "2"),
            *(("evidence", line) for line in intake.evidence),
            ("evidence", "1"),
            ("police", "2"),
            ("help", "1, 2"),
        ]
    if intake.callback is None:
        steps.append(("contact", "1"))
    else:
        steps += [
            ("contact", "2"),
            ("callback_details", intake.callback),
            ("callback_time", "2"),
            ("callback_ok", "1, 2"),
        ]
    steps.append(("summary", "absenden" if intake.language == "de" else "submit"))
    return steps


def intake_lines(
    intake: Intake = Intake(),
    *,
    at: Mapping[str, Sequence[str]] | None = None,
    start: bool = True,
    again: bool = False,
) -> list[str]:
    """The lines for a whole intake; `at[step]` is typed first when that step is asked.

    `start=False` leaves out the /start; `again` is a second report after /neu."""
    extra = dict(at or {})
    lines: list[str] = []
    for step, line in intake_steps(intake, again):
        lines += extra.pop(step, ())
        lines.append(line)
    assert not extra, f"steps not on this path: {sorted(extra)}"
    return lines if start or again else lines[1:]


# -- what the official reads ------------------------------------------------------------------


def official(stdout: str) -> list[str]:
    return [line.removeprefix("bot> ") for line in stdout.splitlines() if line.startswith("bot> ")]


def staff_room(stdout: str) -> list[str]:
    """What was posted in the staff room, without the "[L-…]" thread tags."""
    prefix = "staff-room> "
    return [
        re.sub(r"^\[L-\d{4}-\d{4,}\] ", "", line.removeprefix(prefix))
        for line in stdout.splitlines()
        if line.startswith(prefix)
    ]


def summaries(lines: Sequence[str]) -> list[list[str]]:
    """Every summary the official was shown, as its numbered lines."""
    found: list[list[str]] = []
    current: list[str] | None = None
    for line in lines:
        if line in SUMMARY_START:
            current = []
        elif current is not None and line.startswith(SUMMARY_END):
            found.append(current)
            current = None
        elif current is not None and line:
            current.append(line)
    return found


def summary_entries(summary: Sequence[str]) -> dict[str, str]:
    """{label: shown answer} of one summary ("3. Bundesland: Bayern")."""
    entries = {}
    for line in summary:
        match = re.fullmatch(r"\d+\. ([^:]+): (.*)", line)
        assert match, f"not a summary line: {line!r}"
        entries[match[1]] = match[2]
    return entries


def ok(result) -> list[str]:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return official(result.stdout)


def text_of(lines: Sequence[str]) -> str:
    return "\n".join(lines)


def count_rows(data_dir: Path, table: str) -> int:
    connection = sqlite3.connect(f"file:{data_dir / 'lotse.db'}?mode=ro", uri=True)
    try:
        return int(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        connection.close()


# -- German ---------------------------------------------------------------------------------


def test_german_intake_with_back_and_a_correction_reaches_a_case(demo_dir: Path) -> None:
    description = "Auf Facebook schreiben Leute, man solle mich aus dem Amt jagen."
    lines = intake_lines(
        Intake(description=description),
        # at the safety question: go back and answer the role differently
        at={"safe_now": ["/zurueck", "4"], "summary": ["2", "3"]},  # then: Bundesland → Berlin
    )
    result = run_demo(demo_dir, lines)
    said = ok(result)
    text = text_of(said)
    # On its first run the demo says (on stderr, beside the scripted output) which
    # counsellor key it created; nothing else.
    assert result.stderr.startswith("A demo counsellor key was created: ")
    assert 'Its passphrase is "demo". FOR TRYING ONLY' in result.stderr
    assert "Traceback" not in result.stderr

    # /zurueck asks the role again, showing what was answered before
    role_asked = [i for i, line in enumerate(said) if line == "Welche Rolle trifft auf Sie zu?"]
    assert len(role_asked) == 2
    assert said[role_asked[0] - 2] == said[role_asked[1] - 2] == "Frage 2 von etwa 17"
    again = said[role_asked[1] : role_asked[1] + 4]
    assert f"Ihre bisherige Antwort: {NORMAL_DE['Rolle']}" in again

    # the correction by number: the Land question comes back, the summary shows the new value
    first, *_, last = summaries(said)
    assert "2. Bundesland: Bayern" in first
    assert "Ihre bisherige Antwort: Bayern" in said
    assert "2. Bundesland: Berlin" in last
    assert not any("Bayern" in line for line in last)
    shown = summary_entries(last)
    assert shown == NORMAL_DE | {
        "Rolle": "Mitglied in Gemeinderat, Stadtrat oder Kreistag",
        "Bundesland": "Berlin",
        "Beschreibung": description,
        "Belege": "keine",
    }
    assert list(shown)[:3] == ["Anliegen", "Bundesland", "Rolle"]  # in the asked order

    # the confirmation: reference, offers that fit the corrected answers, hours
    assert re.search(r"Ihr Aktenzeichen: L-\d{4}-0001\b", text)
    assert "Diese Stellen können Ihnen außerdem helfen:" in said
    # at most three, one line each; the contact point itself is not listed as another offer
    assert not any(line.startswith("• starke Stelle") for line in said)
    assert "Weitere Stellen und was sie tun: /hilfen" in said
    assert any("Landeskriminalamt Berlin" in line for line in said)
    assert "Konsequent gegen Hass" not in text  # the Bavarian offer went with the correction
    assert "Beratungszeiten: Montag–Freitag 9–16 Uhr" in text
    assert "dringend" not in text.split("Ihr Aktenzeichen")[1]

    # the staff room gets the case with the answers
    posted = staff_room(result.stdout)
    assert re.match(rf"Neuer Fall {REFERENCE} · Weg: Schilderung · Berlin · ", posted[0])
    assert re.search(r"-0001 · ", posted[0])
    assert posted[0].endswith(" · Sprache: Deutsch")
    assert f"Beschreibung: „{description}“" in posted
    assert "Bundesland: Berlin" in posted
    assert "Rolle: Mitglied in Gemeinderat, Stadtrat oder Kreistag" in posted
    assert any(line.startswith("Passende Angebote: ") for line in posted)
    assert posted[-1].startswith("Im Fall: /uebernehmen")  # the commands, under every new case


def test_german_urgent_branch(demo_dir: Path) -> None:
    lines = intake_lines(Intake(urgent=True))
    assert len(lines) <= 6  # from /start: the danger lane sends in at most six messages
    result = run_demo(demo_dir, lines)
    said = ok(result)
    text = text_of(said)

    # the first message leads with 110; choosing the danger lane, the emergency guidance
    assert said[0] == "In Gefahr? Rufen Sie 110."
    asked = said.index("Was möchten Sie tun?")
    after_choices = asked + said[asked:].index("  3. Ich möchte schildern, was passiert ist") + 1
    assert said[after_choices] == "Rufen Sie jetzt die Polizei: 110. Bei Verletzungen: 112."
    assert "Haben Sie die Polizei schon angerufen? Mit Ihrer Antwort geht die Meldung sofort als " \
        "dringend an unser Team." in said  # fmt: skip
    assert "Welche Rolle trifft auf Sie zu?" not in said  # the short way
    assert summaries(said) == []  # sent at once
    assert re.search(rf"Ihr Aktenzeichen: {REFERENCE}", text)
    assert "Ihre Meldung ist als dringend markiert" in text
    after = text.split("Ihr Aktenzeichen")[1]
    # only 110/112, the Land's line around the clock and the Telefonseelsorge
    assert "Polizei: 110 · Rettungsdienst und Feuerwehr: 112" in after
    assert "06131 65-65250" in after  # Rheinland-Pfalz, around the clock
    assert "0800 111 0 111" in after
    assert "HateAid" not in after and "Wie es weitergeht" not in after

    posted = staff_room(result.stdout)
    heading = rf"‼️ DRINGEND – Neuer Fall {REFERENCE} · Weg: Gefahr · Rheinland-Pfalz"
    assert re.match(heading, posted[0])
    assert "Polizei angerufen: Nein" in posted


# -- English --------------------------------------------------------------------------------


def test_english_intake(demo_dir: Path) -> None:
    description = "People keep posting my home address next to threats."
    callback = "+49 30 1234567, weekdays after 6 pm"
    lines = intake_lines(Intake(language="en", description=description, callback=callback))
    result = run_demo(demo_dir, lines)
    said = ok(result)
    text = text_of(said)

    switched = said.index("The language is now English. (Auf Deutsch wechseln: /sprache)")
    after = said[switched:]
    assert after[1] == "In danger? Call 110."
    assert any(line.startswith("Hello. This is Lotse") for line in after)
    assert "Question 1 of about 17" in after
    assert "Which role describes you?" in after
    assert "Question 18 of 20" in after  # the call-back questions were added
    assert not any(line.startswith("Frage ") for line in said)
    assert not any(line.startswith("Welche ") for line in after)

    (summary,) = summaries(said)
    shown = summary_entries(summary)
    assert shown["Role"] == "Honorary (volunteer) mayor or local mayor"
    assert shown["State (Land)"] == "Bavaria (Bayern)"
    assert shown["Description"] == description
    assert shown["Call back"] == callback
    assert shown["Call back when"] == "In the afternoon"
    assert (
        shown["All right when calling back"] == "A call from a withheld number, A voicemail message"
    )
    assert re.search(r"Your reference: L-\d{4}-0001\b", text)
    assert "These services can also help you (most of them in German):" in said
    assert "counselling hours: Monday–Friday 9:00–16:00" in text
    assert "calls you back on the number you gave" in text  # as they chose
    assert "Ihr Aktenzeichen" not in text

    posted = staff_room(result.stdout)
    assert re.match(rf"Neuer Fall {REFERENCE} · ", posted[0])  # the staff room speaks German
    assert posted[0].endswith(" · Sprache: English")  # and says which language the person uses
    assert f"Beschreibung: „{description}“" in posted
    assert f"Rückruf: „{callback}“" in posted


def test_english_urgent_branch(demo_dir: Path) -> None:
    lines = intake_lines(Intake(language="en", urgent=True))
    lines[1] = "/sprache en"  # the German command name works in any language
    result = run_demo(demo_dir, lines)
    said = ok(result)
    text = text_of(said)

    asked = said.index("What would you like to do?")
    after_choices = asked + said[asked:].index("  3. I would like to describe what happened") + 1
    assert said[after_choices] == "Call the police now: 110. If someone is injured: 112."
    assert summaries(said) == []
    assert re.search(rf"Your reference: {REFERENCE}", text)
    assert "Your report is marked urgent and is at the front of our queue." in text
    assert "Police: 110 · Ambulance and fire brigade: 112" in text
    assert re.match(rf"‼️ DRINGEND – Neuer Fall {REFERENCE} · ", staff_room(result.stdout)[0])


# -- mistakes on the way --------------------------------------------------------------------


def test_bad_input_gets_a_kind_message_and_keeps_the_answers(demo_dir: Path) -> None:
    description = "Ein Mann hat mich nach der Sitzung auf dem Parkplatz beschimpft."
    lines = intake_lines(
        Intake(description=description),
        at={
            "safe_now": [""],  # an empty message
            "role": ["99"],  # out of range
            "land": ["/sprche"],  # a typo of a command
            "categories": ["1, 42"],  # one of several out of range
            "description": ["/foo"],  # an unknown command
            "summary": ["99", "weiß nicht"],
        },
    )
    result = run_demo(demo_dir, lines)
    said = ok(result)
    text = text_of(said)

    assert "Ihre Nachricht war leer. Bitte antworten Sie auf die Frage oben." in said
    assert (
        "Das konnte ich keiner Antwort zuordnen. Bitte wählen Sie eine Antwort aus oder "
        "schreiben Sie ihre Nummer (1 bis 10)."
    ) in said
    assert "Den Befehl „/sprche“ kenne ich nicht. Meinten Sie /sprache? (/hilfe)" in said
    assert any(line.startswith("Diese Angaben konnte ich nicht zuordnen: „42“.") for line in said)
    assert "Den Befehl „/foo“ kenne ich nicht. (/hilfe)" in said
    choose = (
        "Bitte tippen Sie auf „Absenden“ oder schicken Sie die Nummer der Angabe, die Sie "
        "ändern möchten (1 bis 18)."
    )
    assert said.count(choose) == 2
    assert "Entschuldigung" not in text  # no technical error

    # every question was asked again until answered, and nothing was lost on the way
    (summary,) = summaries(said)
    assert summary_entries(summary) == NORMAL_DE | {
        "Beschreibung": description,
        "Belege": "keine",
    }
    assert re.search(r"Ihr Aktenzeichen: L-\d{4}-0001\b", text)
    assert "/foo" not in text_of(staff_room(result.stdout))


# -- a second visit -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def submitted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory in which the demo official has submitted one case."""
    data_dir = tmp_path_factory.mktemp("submitted") / "demo-data"
    said = ok(run_demo(data_dir, intake_lines()))
    assert re.search(r"Ihr Aktenzeichen: L-\d{4}-0001\b", text_of(said))
    return data_dir


def test_second_visit_after_submitting_says_it_has_arrived(submitted: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "copy"
    shutil.copytree(submitted, data_dir)
    said = ok(run_demo(data_dir, ["/start", "Hallo?"]))
    arrived = [line for line in said if line.startswith("Ihre Meldung L-")]
    assert len(arrived) == 1  # the /start
    assert re.fullmatch(
        r"Ihre Meldung L-\d{4}-0001 ist angekommen; eine Beraterin oder ein Berater meldet sich "
        r"hier\. Eine weitere Meldung beginnen Sie mit /neu\. In akuter Gefahr: 110\.",
        arrived[0],
    )
    # Words while the case waits are kept with the case, and the official learns their place.
    kept = [line for line in said if line.startswith("Danke, Ihre Nachricht ist bei Ihrem Fall")]
    assert len(kept) == 1
    assert "Sie sind jetzt auf Platz 1." in kept[0]
    assert "Willkommen zurück" not in text_of(said)


def test_new_starts_a_second_case(submitted: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "copy"
    shutil.copytree(submitted, data_dir)
    description = "Jetzt wird auch meine Familie bedroht, per Brief an unsere Adresse."
    # /neu skips the privacy notice they agreed to before and asks the first question.
    lines = ["/start", "/neu", *intake_lines(Intake(description=description), again=True)]
    said = ok(run_demo(data_dir, lines))
    text = text_of(said)
    assert "Sind Sie einverstanden, dass Ihre Antworten so gespeichert werden?" not in said
    assert "Frage 1 von etwa 17" in said
    # only the /start gets the "has arrived" answer
    assert sum(line.startswith("Ihre Meldung L-") for line in said) == 1
    (summary,) = summaries(said)
    assert summary_entries(summary)["Beschreibung"] == description
    assert re.search(r"Ihr Aktenzeichen: L-\d{4}-0002\b", text)


# -- files ----------------------------------------------------------------------------------


@pytest.fixture
def evidence_file(tmp_path: Path) -> Path:
    path = tmp_path / "drohbrief-scan.txt"
    path.write_bytes(b"DATEI-INHALT-8c1f: Wir wissen, wo du wohnst.\n")
    return path


def test_file_at_the_evidence_step_is_counted(demo_dir: Path, evidence_file: Path) -> None:
    lines = intake_lines(Intake(evidence=(f"file> {evidence_file}",)))
    result = run_demo(demo_dir, lines)
    said = ok(result)
    assert any(
        line.startswith("Erhalten – bisher 0 Link(s), 1 Datei(en), 0 Notiz(en).") for line in said
    )
    (summary,) = summaries(said)
    assert summary_entries(summary)["Belege"] == "0 Link(s), 1 Datei(en), 0 Notiz(en)"
    assert "Dateien: 1" in staff_room(result.stdout)
    assert count_rows(demo_dir, "files") == 1
    assert count_rows(demo_dir, "cases") == 1


def _no_file_stored(data_dir: Path, content: bytes) -> None:
    assert count_rows(data_dir, "files") == 0
    for path in data_dir.iterdir():
        assert content not in path.read_bytes(), path.name


def test_file_before_consent_is_refused_and_not_stored(demo_dir: Path, evidence_file: Path) -> None:
    lines = ["/start", f"file> {evidence_file}", "3", "1", "2"]  # lane, consent, one answer
    said = ok(run_demo(demo_dir, lines))
    refused = [line for line in said if re.search(r"erst .*zugestimmt", line)]
    assert refused == [
        "Dateien kann ich erst annehmen, wenn Sie der Speicherung zugestimmt haben. "
        "Diese Datei habe ich nicht gespeichert."
    ]
    assert "Datei erhalten" not in text_of(said)
    assert "Frage 2 von etwa 17" in said  # the intake goes on
    _no_file_stored(demo_dir, evidence_file.read_bytes())
    assert count_rows(demo_dir, "conversations") == 1


def test_file_as_the_first_message_is_refused(demo_dir: Path, evidence_file: Path) -> None:
    said = ok(run_demo(demo_dir, [f"file> {evidence_file}"]))
    assert re.search(r"erst .*zugestimmt", said[0])
    assert "Was möchten Sie tun?" in said  # the welcome, with the lanes
    _no_file_stored(demo_dir, evidence_file.read_bytes())
    assert count_rows(demo_dir, "conversations") == 0
