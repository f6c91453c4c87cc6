"""Matrix end to end: a real Synapse, `lotse run` as a process, an official and a counsellor.

One Synapse and one Lotse for this module (they take seconds to start); each test
brings its own official in a new direct chat. The staff room is encrypted and made by
the counsellor before Lotse starts, so its invitation is one that waited for the bot.
The guard test comes last: it lets a stranger into the staff room.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sqlite3
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.channels.matrix.session import SessionFiles
from storage.server_secret import ServerKeys
from tests import matrix_people as people
from tests.matrix_deployment import PASSPHRASE, Deployment, deploy
from tests.matrix_people import ENCRYPTION_STATE, REFERENCE, Lotse, Person, environment
from tests.synapse import Synapse
from tests.test_demo_script import Intake, intake_steps
from tests.test_no_plaintext import findings

pytestmark = [pytest.mark.synapse, pytest.mark.slow]
PNG = bytes.fromhex("89504e470d0a1a0a")  # a PNG's signature, then the canary as its "data"


@pytest.fixture(scope="module")
def deployment(synapse: Synapse, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    deployment = deploy(synapse, tmp_path_factory.mktemp("matrix"))
    deployment.lotse.start()
    yield deployment
    deployment.lotse.stop()


async def _intake(
    official: Person, room: str, intake: Intake, image: tuple[str, bytes]
) -> list[str]:
    said: list[str] = []
    for _step, line in intake_steps(intake):
        if line == "IMAGE":
            said += await official.answer(
                room, official.send_file(room, image[0], "image/png", image[1])
            )
        else:
            said += await official.answer(room, official.say(room, line))
    return said


async def test_an_official_on_matrix_reaches_a_counsellor_in_the_encrypted_staff_room(
    deployment: Deployment,
) -> None:
    description = "Kanarie-Matrix-Beschreibung-Z7QK: Drohanruf nach der Sitzung"
    image_name = "kanarie-bild-P3WD.png"
    image = PNG + b"KANARIE-BILDINHALT-V5TR"
    relay_out = "Kanarie-Beratung-an-Person-H2NM"
    relay_in = "Kanarie-Antwort-der-Person-L9XC"
    note = "Kanarie-interne-Notiz-B4JF"
    official, password = deployment.official("e2e")
    counsellor = deployment.counsellor_person()
    await official.start(password)
    await counsellor.start(device=deployment.counsellor_device)
    try:
        room = await official.direct_chat(deployment.bot)
        intake = Intake(description=description, evidence=("IMAGE",))
        said = await _intake(official, room, intake, (image_name, image))
        assert any(REFERENCE.search(text) for text in said), said[-3:]
        reference = next(m[0] for t in reversed(said) if (m := REFERENCE.search(t)))
        staff = deployment.staff_room

        summary = await counsellor.wait_for(lambda: people.case_root(counsellor, staff, reference))
        assert description in summary.body  # the encrypted room gets the full details
        thread = summary.event_id

        def in_thread() -> list[str]:
            return people.in_thread(counsellor, staff, thread)

        before = len(official.texts(room))
        await counsellor.say(staff, "/uebernehmen", relates_to=thread)
        await counsellor.wait_for(lambda: len(in_thread()) >= 1)
        await official.wait_for(lambda: len(official.texts(room)) > before)
        await counsellor.say(staff, relay_out, relates_to=thread)
        await official.wait_for(lambda: any(relay_out in t for t in official.texts(room)))
        count = len(in_thread())
        await official.say(room, relay_in)
        await counsellor.wait_for(lambda: any(relay_in in t for t in in_thread()[count:]))
        await counsellor.say(staff, f"/notiz {note}", relates_to=thread)
        await counsellor.say(staff, "/abschliessen beraten", relates_to=thread)
        await asyncio.sleep(3)
        assert not any(note in text for text in official.texts(room))  # a note stays internal
        assert not any(description in getattr(e, "body", "") for r, e in official.seen if r != room)
    finally:
        await official.stop()
        await counsellor.stop()
    assert deployment.lotse.running()
    canaries = {
        "description": description, "image name": image_name,
        "image content": "KANARIE-BILDINHALT-V5TR", "relay out": relay_out,
        "relay in": relay_in, "note": note,
    }  # fmt: skip
    assert findings(deployment.data_dir, canaries) == []
    assert any((deployment.data_dir / "matrix-store").iterdir())  # the crypto store was scanned
    shown = deployment.cli("cases", "show", reference, "--key", deployment.key)
    assert shown.returncode == 0, shown.stderr
    for what in ("description", "image name", "relay in", "note"):
        assert canaries[what] in shown.stdout, what


async def test_an_official_in_an_unencrypted_chat_gets_encryption_before_any_question(
    deployment: Deployment,
) -> None:
    official, password = deployment.official("plain")
    await official.start(password)
    try:
        room = await official.direct_chat(deployment.bot, encrypted=False)
        assert not official.client.rooms[room].encrypted
        said = await official.answer(room, official.say(room, "/start"))
        assert "Ende-zu-Ende-Verschlüsselung eingeschaltet" in said[0], said
        assert official.client.rooms[room].encrypted
        from_bot = [e for r, e in official.seen if r == room]
        assert from_bot and all(event.decrypted for event in from_bot)  # none in the clear
        assert len(said) >= 2  # and then the welcome, encrypted
    finally:
        await official.stop()
    assert deployment.lotse.running()


async def test_where_the_bot_may_not_switch_on_encryption_it_asks_and_reads_nothing(
    deployment: Deployment,
) -> None:
    official, password = deployment.official("plain-forbidden")
    await official.start(password)
    try:
        room = await official.direct_chat(deployment.bot, encrypted=False, bot_admin=False)
        said = await official.answer(room, official.say(room, "/start"))
        assert len(said) == 1 and "Bis dahin lese ich hier nichts" in said[0], said
        assert not official.client.rooms[room].encrypted
        # the official switches it on and writes again: now the bot listens, encrypted
        await official.client.room_put_state(room, "m.room.encryption", ENCRYPTION_STATE["content"])
        await official.wait_for(lambda: official.client.rooms[room].encrypted)
        bot = deployment.bot
        await official.wait_for(lambda: list(official.client.device_store.active_user_devices(bot)))
        again = await official.answer(room, official.say(room, "/start"))
        assert again and "Bis dahin" not in again[0]
        assert all(event.decrypted for _room, event in official.seen[-len(again) :])
    finally:
        await official.stop()


async def test_bad_input_gets_a_clear_reply_or_is_ignored_and_the_bot_keeps_running(
    deployment: Deployment,
) -> None:
    official, password = deployment.official("bad")
    await official.start(password)
    try:
        room = await official.direct_chat(deployment.bot)
        await official.answer(room, official.say(room, "/start"))
        # as long a message as the homeserver takes once encrypted (its events end at 64 KB)
        long = await official.answer(room, official.say(room, "x" * 40_000))
        assert long, "a reply to an overlong message"
        await official.send(room, {"whatever": True}, kind="org.example.unknown")
        await official.send(room, {"msgtype": "m.text", "body": "hm", "m.relates_to": "kaputt"})
        await official.send(
            room, {"msgtype": "m.text", "body": "hm", "m.relates_to": {"rel_type": 5}}
        )
        big = bytes(1024 * 1024 + 10)  # max_file_mb = 1
        said = await official.answer(
            room, official.send_file(room, "gross.bin", "application/octet-stream", big)
        )
        assert any("größer als 1 MB" in text for text in said), said
        assert deployment.lotse.running()
        again = await official.answer(room, official.say(room, "/hilfe"))
        assert again  # still answering
    finally:
        await official.stop()
    assert deployment.lotse.running()


async def test_after_sigkill_mid_intake_the_official_goes_on_in_the_same_room(
    deployment: Deployment,
) -> None:
    official, password = deployment.official("restart")
    await official.start(password)
    steps = [line for _step, line in intake_steps(Intake())]
    try:
        room = await official.direct_chat(deployment.bot)
        for line in steps[:4]:  # /start, the report lane, agree, the Land
            await official.answer(room, official.say(room, line))
        before = len(official.texts(room))
        await official.say(room, steps[4])  # the role, and at once:
        deployment.lotse.stop(kill=True)
        deployment.lotse.start()
        await official.wait_for(lambda: len(official.texts(room)) > before, 60)
        await asyncio.sleep(3)  # a replay would answer twice by now
        after_kill = official.texts(room)[before:]
        said = after_kill[:]
        for line in steps[5:]:
            said += await official.answer(room, official.say(room, line))
        assert any(REFERENCE.search(text) for text in said), said[-3:]
        question = after_kill[-1]
        assert official.texts(room).count(question) == 1, "an event was handled twice"
        assert official.undecryptable == 0
    finally:
        await official.stop()
    assert deployment.lotse.running()


async def test_clear_chat_redacts_the_bots_messages_after_a_yes_and_explains_leaving(
    deployment: Deployment,
) -> None:
    official, password = deployment.official("clear")
    await official.start(password)
    try:
        room = await official.direct_chat(deployment.bot)
        await official.answer(room, official.say(room, "/start"))
        earlier = [event.event_id for r, event in official.seen if r == room]
        asked = await official.answer(room, official.say(room, "/chat_leeren"))
        assert "Soll ich alle meine Nachrichten in diesem Chat löschen?" in asked[0], asked
        done = await official.answer(room, official.say(room, "ja"))
        assert "„Raum verlassen“" in done[-1], done
        for event_id in earlier:
            got = await official.client.room_get_event(room, event_id)
            assert got.event.source.get("unsigned", {}).get("redacted_because"), event_id
        kept = await official.answer(room, official.say(room, "/clear_chat"))
        assert kept
        said = await official.answer(room, official.say(room, "no"))
        assert "I delete nothing" in said[-1], said
        assert official.texts(room)[-1] == said[-1]  # and "no" was not taken as an answer
    finally:
        await official.stop()
    assert deployment.lotse.running()


async def _send_encrypted(
    deployment: Deployment, official: Person, room: str, encrypted: dict[str, object]
) -> None:
    """An m.room.encrypted event exactly as given, past nio's own encryption."""
    url = (
        f"{deployment.synapse.url}/_matrix/client/v3/rooms/{room}/send/m.room.encrypted/"
        f"{uuid.uuid4().hex}"
    )
    request = urllib.request.Request(
        url, json.dumps(encrypted).encode(), method="PUT",
        headers={"Authorization": f"Bearer {official.client.access_token}",
                 "Content-Type": "application/json"},
    )  # fmt: skip
    await asyncio.to_thread(urllib.request.urlopen, request, timeout=30)


async def test_a_message_that_cannot_be_decrypted_is_not_dropped_the_official_is_asked_again(
    deployment: Deployment,
) -> None:
    official, password = deployment.official("undecryptable")
    await official.start(password)
    try:
        room = await official.direct_chat(deployment.bot)
        await official.answer(room, official.say(room, "/start"))
        # an encrypted event whose key the bot never got (a session nobody shared)
        forged = {
            "algorithm": "m.megolm.v1.aes-sha2",
            "sender_key": official.client.olm.account.identity_keys["curve25519"],
            "device_id": official.client.device_id,
            "session_id": "nie-geteilt-" + uuid.uuid4().hex,
            "ciphertext": "AwgAEnAQ",
        }
        await _send_encrypted(deployment, official, room, forged)
        asked = "Bitte schicken Sie sie noch einmal"
        await official.wait_for(lambda: any(asked in t for t in official.texts(room)), 60)
        assert deployment.lotse.running()
    finally:
        await official.stop()


async def test_a_message_whose_room_key_comes_late_is_kept_and_answered_once_it_arrives(
    deployment: Deployment,
) -> None:
    official, password = deployment.official("late-key")
    await official.start(password)
    try:
        room = await official.direct_chat(deployment.bot)
        olm = official.client.olm
        olm.create_outbound_group_session(room)
        session = olm.outbound_group_sessions[room]
        # a copy encrypts the message, so the session itself is shared later from message 0
        copy = type(session).from_pickle(session.pickle("k"), "k")
        copy.mark_as_shared()
        plain = {"type": "m.room.message", "room_id": room,
                 "content": {"msgtype": "m.text", "body": "/start"}}  # fmt: skip
        await _send_encrypted(deployment, official, room, {
            "algorithm": "m.megolm.v1.aes-sha2",
            "sender_key": olm.account.identity_keys["curve25519"],
            "device_id": official.client.device_id,
            "session_id": session.id,
            "ciphertext": copy.encrypt(json.dumps(plain)),
        })  # fmt: skip
        await asyncio.sleep(4)
        assert official.texts(room) == []  # the bot has the event, but not its key
        # now the room key, Olm-encrypted to the bot's device as a to-device message
        answer = await official.client.share_group_session(room, ignore_unverified_devices=True)
        assert type(answer).__name__ == "ShareGroupSessionResponse", answer
        said = await official.answer(room, asyncio.sleep(0))
        assert any("Guten Tag" in text for text in said), said  # /start was read
        assert not any("Bitte schicken Sie sie noch einmal" in text for text in said)
        assert official.undecryptable == 0
    finally:
        await official.stop()
    assert deployment.lotse.running()


def _variant(deployment: Deployment, name: str, **matrix: str) -> Path:
    """The deployment's configuration with its own Matrix store and a copy of its database
    (SQLite serves one process: the running deployment keeps its own)."""
    text = deployment.config.read_text(encoding="utf-8")
    text = text.replace(str(deployment.data_dir / "matrix-store"), str(deployment.folder / name))
    data = deployment.folder / f"{name}-data"
    data.mkdir(mode=0o700)
    os.close(os.open(data / "lotse.db", os.O_WRONLY | os.O_CREAT, 0o600))  # private, as Lotse's
    with (
        sqlite3.connect(deployment.data_dir / "lotse.db") as source,
        sqlite3.connect(data / "lotse.db") as copy,
    ):
        source.backup(copy)
    text = text.replace(str(deployment.data_dir), str(data))
    for key, value in matrix.items():
        text = "\n".join(
            f'{key} = "{value}"' if line.startswith(f"{key} =") else line
            for line in text.splitlines()
        )
    path = deployment.folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("name", "password", "matrix", "says"),
    [
        ("wrong-password", "falsch", {}, "wrong password or unknown user"),
        ("no-server", "x", {"homeserver": "http://127.0.0.1:9"}, "cannot be reached"),
        ("lost-device", "x", {}, "login of"),
    ],
)
def test_a_failed_first_login_stops_start_up_with_one_clear_line(
    deployment: Deployment, name: str, password: str, matrix: dict[str, str], says: str
) -> None:
    config = _variant(deployment, name, **matrix)
    if name == "lost-device":  # a kept login whose device was logged out meanwhile
        keys = ServerKeys.from_secret(deployment.secret)
        store = deployment.folder / name
        store.mkdir()
        SessionFiles(store, keys, deployment.bot).save_token("LOTSEBOT", "syt_logged_out")
    env = environment(deployment.secret, password, PASSPHRASE)
    run = Lotse(config, env, deployment.folder / f"{name}.log")
    run.start()
    assert run.process is not None
    assert run.process.wait(60) == 2
    lines = (deployment.folder / f"{name}.log").read_text().strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in lines[0], lines


async def _urgent_case(deployment: Deployment, counsellor: Person) -> str:
    """An urgent intake by a new official; returns its reference once the staff room has it."""
    official, password = deployment.official("urgent")
    await official.start(password)
    try:
        room = await official.direct_chat(deployment.bot)
        said = await _intake(official, room, Intake(urgent=True), ("x", b""))
        reference = next(m[0] for t in reversed(said) if (m := REFERENCE.search(t)))
        staff = deployment.staff_room
        await counsellor.wait_for(lambda: any(reference in t for t in counsellor.texts(staff)))
        return reference
    finally:
        await official.stop()


async def test_a_counsellors_new_device_is_reported_in_the_staff_room(
    deployment: Deployment,
) -> None:
    counsellor = deployment.counsellor_person()
    second = Person(deployment.synapse.url, deployment.counsellor, deployment.folder / "tablet")
    await counsellor.start(device=deployment.counsellor_device)
    staff = deployment.staff_room
    try:
        await _urgent_case(deployment, counsellor)  # the phone is trusted on first use by now
        await second.start(deployment.counsellor_password)  # a new device, new keys
        reference = await _urgent_case(deployment, counsellor)
        note = f"{deployment.counsellor} hat ein neues Gerät"
        assert any(note in text for text in counsellor.texts(staff))
        await second.wait_for(lambda: any(reference in t for t in second.texts(staff)))
    finally:
        await second.stop()
        await counsellor.stop()


async def test_a_counsellors_device_whose_keys_change_is_reported_and_gets_no_more_keys(
    deployment: Deployment,
) -> None:
    """The same device id logs in again with a new store: new identity keys, which Synapse
    takes and announces. (A thief with the password could do just this.)"""
    counsellor = deployment.counsellor_person()
    url, user, folder = deployment.synapse.url, deployment.counsellor, deployment.folder
    laptop = Person(url, user, folder / "laptop", device_id="BERGERLAPTOP")
    staff = deployment.staff_room
    await counsellor.start(device=deployment.counsellor_device)
    await laptop.start(deployment.counsellor_password)
    try:
        first = await _urgent_case(deployment, counsellor)
        await laptop.wait_for(lambda: any(first in t for t in laptop.texts(staff)))  # trusted
    finally:
        await laptop.stop()
    replaced = Person(url, user, folder / "laptop-replaced", device_id="BERGERLAPTOP")
    await replaced.start(deployment.counsellor_password)
    try:
        note = f"Das Gerät BERGERLAPTOP von {user} hat plötzlich andere Schlüssel"
        await counsellor.wait_for(lambda: any(note in t for t in counsellor.texts(staff)), 60)
        reference = await _urgent_case(deployment, counsellor)
        await replaced.wait_for(lambda: replaced.undecryptable > 0)  # it sees the posts ...
        await asyncio.sleep(3)
        assert not any(reference in text for text in replaced.texts(staff))  # ... unreadable
        assert sum(note in text for text in counsellor.texts(staff)) == 1
    finally:
        await replaced.stop()
        await counsellor.stop()
    assert deployment.lotse.running()


async def test_a_stranger_in_the_staff_room_gets_no_case_details_only_an_alert(
    deployment: Deployment,
) -> None:
    password = secrets.token_hex(8)
    stranger = deployment.synapse.register(f"fremd-{uuid.uuid4().hex[:6]}", password)
    intruder = Person(deployment.synapse.url, stranger, deployment.folder / "stranger")
    counsellor = deployment.counsellor_person()
    official, official_password = deployment.official("guard")
    await counsellor.start(device=deployment.counsellor_device)
    await intruder.start(password)
    await official.start(official_password)
    staff = deployment.staff_room
    try:
        await counsellor.client.room_invite(staff, stranger)
        await intruder.client.join(staff)
        room = await official.direct_chat(deployment.bot)
        description = "Kanarie-Waechter-Beschreibung-T8RM"
        said = await _intake(official, room, Intake(description=description), ("x", b""))
        reference = next(m[0] for t in reversed(said) if (m := REFERENCE.search(t)))
        alert = "Dieser Raum ist nicht sicher"
        await counsellor.wait_for(lambda: any(alert in t for t in counsellor.texts(staff)), 60)
        await asyncio.sleep(3)
        held = f"‼️ Neuer Fall {reference}. Die Details werden zurückgehalten"
        await counsellor.wait_for(lambda: any(held in t for t in counsellor.texts(staff)), 60)
        for person in (counsellor, intruder):
            assert not any(description in text for text in person.texts(staff))
            # the reference only in the content-free alert that the details are held back
            assert all(held in text for text in person.texts(staff) if reference in text)
        log = deployment.lotse.log.read_text()
        assert f"{stranger} is in the staff room but not a counsellor" in log
    finally:
        for person in (official, intruder, counsellor):
            await person.stop()
    assert deployment.lotse.running()
