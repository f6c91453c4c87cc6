"""The acceptance table of the safety layer: messages and the class each must hit first.

Shared by tests/test_safety.py (the matcher alone) and tests/test_safety_phases.py
(the same messages in every phase of a conversation).
"""

from __future__ import annotations

SUICIDAL = "suicidal"
DANGER = "danger"
NONE = None

TABLE: list[tuple[str, str | None]] = [
    # suicidal statements: word forms, capitals, ae/oe/ue, one-letter typos, English
    ("Ich kann nicht mehr, ich denke daran mich umzubringen.", SUICIDAL),
    ("Ich habe Suizidgedanken", SUICIDAL),
    ("Manchmal will ich nicht mehr leben.", SUICIDAL),
    ("ich bin lebensmüde", SUICIDAL),
    ("ich bin lebensmuede", SUICIDAL),
    ("Ich bringe mich um.", SUICIDAL),
    ("ICH WILL MICH UMBRINGEN", SUICIDAL),
    ("Ich denke an Selbstmord", SUICIDAL),
    ("Ich habe an Suizd gedacht", SUICIDAL),
    ("ich will mich umbrignen", SUICIDAL),
    ("Ich denke an Selbstmrod", SUICIDAL),
    ("Ich möchte mir das Leben nehmen", SUICIDAL),
    ("Ich moechte nur noch sterben", SUICIDAL),
    ("Am liebsten wäre ich tot", SUICIDAL),
    ("Manchmal denke ich, ich tue mir etwas an", SUICIDAL),
    ("I want to kill myself", SUICIDAL),
    ("I have suicidal thoughts", SUICIDAL),
    ("I don't want to live anymore", SUICIDAL),
    ("I just want to end my life", SUICIDAL),
    ("I keep thinking about killing myslef", SUICIDAL),
    # acute danger
    ("Jetzt steht er vor meiner Tür mit einem Messer", DANGER),
    ("Er steht vor meiner Tuer", DANGER),
    ("Jemand hat eine Waffe", DANGER),
    ("ES BRENNT bei uns im Haus", DANGER),
    ("Da ist ein Mann mit einer Pistole", DANGER),
    ("Die verfolgen mich gerade", DANGER),
    ("Jemand ist in mein Haus eingedrungen", DANGER),
    ("Ich bin in Gefahr", DANGER),
    ("Er greift mich an", DANGER),
    ("Hilfe, ich blute", DANGER),
    ("Er schlaegt mich", DANGER),
    ("Vor meinem Haus stehen fünf Männer", DANGER),
    ("Er hat ein Messser dabei", DANGER),
    ("Bombendrohung gegen das Rathaus", DANGER),
    ("Er hat gedroht, mich umzubringen", DANGER),
    ("He is outside my door with a knife", DANGER),
    ("There is a man with a gun at my house", DANGER),
    ("My house is on fire", DANGER),
    ("I'm in danger", DANGER),
    ("They broke in last minute", DANGER),
    # neutral look-alikes
    ("Waffenstillstand im Gemeinderat? Schön wär's.", NONE),
    ("Umgebracht hat er niemanden, aber er beleidigt mich ständig.", NONE),
    ("Die Feuerwehr war bei der Sitzung", NONE),
    ("Der Beitrag war messerscharf formuliert", NONE),
    ("Auf dem Fest war eine Bombenstimmung", NONE),
    ("Das Thema brennt mir unter den Nägeln", NONE),
    ("Er hat mich als Selbstdarsteller beschimpft", NONE),
    ("Sie haben Plakate beschmiert und meine Tür fotografiert", NONE),
    ("Wir waren auf der Messe in Leipzig", NONE),
    ("Es geht mir schon besser", NONE),
    ("He wrote a killer comment about the council", NONE),
    ("Bürgermeisterin", NONE),
    ("Ich wurde im Internet beleidigt.", NONE),
]
