"""Device trust with real matrix-nio Olm accounts, without a homeserver.

What the homeserver would answer to a key query is built from real Olm accounts (the
counsellor's phone before and after its keys changed) and handed to the bot's client
as nio's own `keys_query` would. This shows what the bot decides with such an answer;
that Synapse delivers such an answer after a device re-uploads its keys is not shown
here (see test_matrix.py for the devices a real homeserver reports).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from nio import AsyncClient, AsyncClientConfig, KeysClaimResponse, KeysQueryResponse, MatrixRoom

from bot.channels.matrix import Login, MatrixChannel
from storage.server_secret import ServerKeys

BOT = "@lotse:example.org"
BERGER = "@berger:example.org"
OFFICIAL = "@amt:example.org"
STAFF = "!staff:example.org"
DIRECT = "!dm:example.org"


def _person(folder: Path, user: str, device: str) -> AsyncClient:
    """An offline nio client with its own Olm account (a phone, as far as keys go)."""
    folder.mkdir(parents=True)
    config = AsyncClientConfig(encryption_enabled=True)
    client = AsyncClient("http://127.0.0.1:9", user, device, str(folder), config)
    client.restore_login(user, device, "token")  # loads the store: a new Olm account
    return client


def _payload(person: AsyncClient) -> dict[str, Any]:
    return dict(person.olm.share_keys()["device_keys"])


def _query(*people: tuple[str, str, dict[str, Any]]) -> KeysQueryResponse:
    answer: dict[str, dict[str, Any]] = {}
    for user, device, payload in people:
        answer.setdefault(user, {})[device] = payload
    return KeysQueryResponse.from_dict({"device_keys": answer, "failures": {}})


def _texts(key: str, language: str) -> str:
    shown = {
        "matrix_device_keys_changed": "changed {who} {device}",
        "matrix_new_device": "new {who}",
    }
    return shown.get(key, key)


async def _nobody_but_berger() -> set[str]:
    return {BERGER}


def _channel(tmp_path: Path) -> tuple[MatrixChannel, list[tuple[str, str]]]:
    login = Login("http://127.0.0.1:9", BOT, "LOTSEBOT", tmp_path / "bot", "X", "pickle")
    channel = MatrixChannel(
        login,
        ServerKeys.from_secret(os.urandom(32)),
        texts=_texts,
        counsellors=_nobody_but_berger,
        staff_room=STAFF,
        staff_language="de",
        max_file_bytes=1024,
    )
    client = channel.client
    client.restore_login(BOT, "LOTSEBOT", "token")
    for room_id, users in ((STAFF, (BOT, BERGER)), (DIRECT, (BOT, OFFICIAL))):
        room = MatrixRoom(room_id, BOT, encrypted=True)
        for user in users:
            room.add_member(user, None, None)
        client.rooms[room_id] = room
    said: list[tuple[str, str]] = []

    async def room_send(room_id: str, kind: str, content: dict[str, Any], **_: object) -> None:
        said.append((room_id, content["body"]))

    client.room_send = room_send
    return channel, said


async def _knows(channel: MatrixChannel, person: AsyncClient) -> None:
    """The bot learns the person's device and trusts it on first use, as before a send."""
    await channel.client.receive_response(_query((person.user_id, person.device_id,
                                                   _payload(person))))  # fmt: skip
    await channel.trust.trust_room(STAFF if person.user_id == BERGER else DIRECT, report=True)


async def _olm_session(channel: MatrixChannel, person: AsyncClient) -> None:
    """An Olm session from the bot to the person's device, from one of its one-time keys."""
    keys = person.olm.share_keys()["one_time_keys"]
    key_id, key = next(iter(keys.items()))
    claim = {"one_time_keys": {person.user_id: {person.device_id: {key_id: key}}}, "failures": {}}
    await channel.client.receive_response(KeysClaimResponse.from_dict(claim, {}))


def _room_key_goes_to(channel: MatrixChannel, room_id: str, user: str) -> set[str]:
    """The devices a new room key of `room_id` would be sent to."""
    shared_with, _ = channel.client.olm.share_group_session(
        room_id, [user], ignore_missing_sessions=True, ignore_unverified_devices=True
    )
    return {device for _user, device in shared_with}


async def test_a_counsellors_device_with_a_new_identity_key_is_blacklisted_and_reported(
    tmp_path: Path,
) -> None:
    channel, said = _channel(tmp_path)
    phone = _person(tmp_path / "phone", BERGER, "BERGERPHONE")
    await _knows(channel, phone)
    await _olm_session(channel, phone)
    assert channel.client.device_store[BERGER]["BERGERPHONE"].verified
    assert _room_key_goes_to(channel, "!before:example.org", BERGER) == {"BERGERPHONE"}
    said.clear()

    # the same device id, set up anew (or taken over): other keys, signed with the new ones
    again = _person(tmp_path / "phone-again", BERGER, "BERGERPHONE")
    await channel.client.receive_response(_query((BERGER, "BERGERPHONE", _payload(again))))
    device = channel.client.device_store[BERGER]["BERGERPHONE"]
    assert device.blacklisted
    assert _room_key_goes_to(channel, "!after:example.org", BERGER) == set()  # no key for it

    await channel.trust.query_keys()  # where the sync loop reports what it found
    assert said == [(STAFF, f"changed {BERGER} BERGERPHONE")]
    await channel.trust.trust_room(STAFF, report=True)  # and it is not trusted again
    assert channel.client.device_store[BERGER]["BERGERPHONE"].blacklisted
    await channel.client.receive_response(_query((BERGER, "BERGERPHONE", _payload(again))))
    await channel.trust.query_keys()
    assert len(said) == 1  # told once, not at every later key query


async def test_a_new_curve_key_under_a_known_signing_key_is_caught_too(tmp_path: Path) -> None:
    """nio alone would take the new curve25519 key and keep the device trusted."""
    channel, said = _channel(tmp_path)
    phone = _person(tmp_path / "phone", BERGER, "BERGERPHONE")
    await _knows(channel, phone)
    other = _person(tmp_path / "other", BERGER, "OTHER")
    payload = _payload(phone)
    payload["keys"]["curve25519:BERGERPHONE"] = other.olm.account.identity_keys["curve25519"]
    del payload["signatures"]
    payload["signatures"] = {BERGER: {"ed25519:BERGERPHONE": phone.olm.sign_json(payload)}}
    await channel.client.receive_response(_query((BERGER, "BERGERPHONE", payload)))
    assert channel.client.device_store[BERGER]["BERGERPHONE"].blacklisted
    await channel.trust.query_keys()
    assert said == [(STAFF, f"changed {BERGER} BERGERPHONE")]


async def test_an_officials_changed_device_is_reported_without_naming_them(tmp_path: Path) -> None:
    channel, said = _channel(tmp_path)
    phone = _person(tmp_path / "phone", OFFICIAL, "AMTPHONE")
    await _knows(channel, phone)
    again = _person(tmp_path / "again", OFFICIAL, "AMTPHONE")
    await channel.client.receive_response(_query((OFFICIAL, "AMTPHONE", _payload(again))))
    await channel.trust.query_keys()
    assert said == [(STAFF, "matrix_official_device_keys_changed")]
    assert channel.client.device_store[OFFICIAL]["AMTPHONE"].blacklisted


async def test_the_same_keys_again_a_new_device_or_a_forged_payload_change_nothing(
    tmp_path: Path,
) -> None:
    channel, said = _channel(tmp_path)
    phone = _person(tmp_path / "phone", BERGER, "BERGERPHONE")
    await _knows(channel, phone)
    said.clear()
    await channel.client.receive_response(_query((BERGER, "BERGERPHONE", _payload(phone))))
    forged = _payload(_person(tmp_path / "forger", BERGER, "BERGERPHONE"))
    forged["signatures"] = _payload(phone)["signatures"]  # not signed by the keys it carries
    await channel.client.receive_response(_query((BERGER, "BERGERPHONE", forged)))
    tablet = _person(tmp_path / "tablet", BERGER, "TABLET")
    await channel.client.receive_response(
        _query((BERGER, "BERGERPHONE", _payload(phone)), (BERGER, "TABLET", _payload(tablet)))
    )
    await channel.trust.trust_room(STAFF, report=True)
    devices = channel.client.device_store[BERGER]
    assert devices["BERGERPHONE"].verified and devices["TABLET"].verified
    assert said == [(STAFF, f"new {BERGER}")]  # the tablet: new, trusted, reported


async def test_a_change_is_never_told_in_the_clear_and_a_failed_send_tells_it_later(
    tmp_path: Path,
) -> None:
    channel, said = _channel(tmp_path)
    phone = _person(tmp_path / "phone", BERGER, "BERGERPHONE")
    await _knows(channel, phone)
    again = _person(tmp_path / "again", BERGER, "BERGERPHONE")
    await channel.client.receive_response(_query((BERGER, "BERGERPHONE", _payload(again))))
    sending = channel.client.room_send

    async def offline(*_: object, **__: object) -> None:
        raise OSError("the homeserver is away")

    channel.client.room_send = offline
    with pytest.raises(OSError):
        await channel.trust.query_keys()
    channel.client.room_send = sending
    assert said == []
    await channel.trust.query_keys()  # the next sync tells it
    assert said == [(STAFF, f"changed {BERGER} BERGERPHONE")]
    channel.client.rooms[STAFF].encrypted = False  # the guard would fail now
    tablet = _person(tmp_path / "tablet", BERGER, "TABLET")
    await _knows(channel, tablet)
    tablet_again = _person(tmp_path / "tablet-again", BERGER, "TABLET")
    await channel.client.receive_response(_query((BERGER, "TABLET", _payload(tablet_again))))
    assert channel.client.device_store[BERGER]["TABLET"].blacklisted
    await channel.trust.query_keys()
    assert len(said) == 1  # nothing about it in an unencrypted room
