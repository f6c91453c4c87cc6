"""The Matrix channel's own rules, without a homeserver: send failures, never in the clear,
malformed relations, the login file."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from nio import MatrixRoom, RoomSendError, RoomSendResponse

from bot.channels.matrix import Login, MatrixChannel
from bot.channels.matrix import content as read
from bot.channels.matrix.session import SESSION_FILE, SessionFiles
from bot.core.types import PermanentFailure, Reply, RetryAfter
from storage.server_secret import DecryptionError, ServerKeys

ROOM = "!dm:example.org"


def _channel(tmp_path: Path) -> tuple[MatrixChannel, list[dict[str, Any]]]:
    login = Login("http://127.0.0.1:9", "@lotse:example.org", "LOTSEBOT", tmp_path, "X", "k")
    channel = MatrixChannel(
        login,
        ServerKeys.from_secret(os.urandom(32)),
        texts=lambda key, language: key,
        counsellors=_nobody,
        staff_room=None,
        staff_language="de",
        max_file_bytes=1024,
    )
    channel._ready.set()
    sent: list[dict[str, Any]] = []
    channel.client.rooms[ROOM] = MatrixRoom(ROOM, "@lotse:example.org", encrypted=True)
    return channel, sent


async def _nobody() -> set[str]:
    return set()


def _answering(sent: list[dict[str, Any]], answer: object):
    async def room_send(room_id: str, kind: str, content: dict[str, Any], **_: object) -> object:
        sent.append(content)
        return answer

    return room_send


async def test_a_rate_limit_becomes_retry_after_with_the_servers_wait(tmp_path: Path) -> None:
    channel, sent = _channel(tmp_path)
    limited = RoomSendError("slow down", "M_LIMIT_EXCEEDED", retry_after_ms=2500)
    channel.client.room_send = _answering(sent, limited)
    with pytest.raises(RetryAfter) as wait:
        await channel.send(ROOM, Reply("Hallo"))
    assert wait.value.seconds == 2.5


async def test_a_forbidden_room_is_a_permanent_failure(tmp_path: Path) -> None:
    channel, sent = _channel(tmp_path)
    forbidden = RoomSendError("not in room", "M_FORBIDDEN")
    channel.client.room_send = _answering(sent, forbidden)
    with pytest.raises(PermanentFailure):
        await channel.send(ROOM, Reply("Hallo"))


async def test_nothing_is_sent_into_an_unencrypted_room(tmp_path: Path) -> None:
    channel, sent = _channel(tmp_path)
    channel.client.rooms[ROOM].encrypted = False
    channel.client.room_send = _answering(sent, RoomSendResponse("$x", ROOM))
    with pytest.raises(RuntimeError):
        await channel.send(ROOM, Reply("Ihre Angaben"))
    assert sent == []


async def test_choices_go_out_as_a_numbered_list(tmp_path: Path) -> None:
    from flows.messages import Choice

    channel, sent = _channel(tmp_path)
    channel.client.room_send = _answering(sent, RoomSendResponse("$x", ROOM))
    await channel.send(ROOM, Reply("Wer?", choices=(Choice("a", "Ich"), Choice("b", "Andere"))))
    assert sent[0]["body"].splitlines()[-2:] == ["  1. Ich", "  2. Andere"]


@pytest.mark.parametrize(
    "relation",
    ["kaputt", 5, {"rel_type": "m.thread"}, {"rel_type": "m.thread", "event_id": 7},
     {"rel_type": 5, "event_id": "$a"}, {"rel_type": "m.thread", "event_id": "no-dollar"}],
)  # fmt: skip
def test_a_malformed_relation_reads_as_no_thread(relation: object) -> None:
    event = SimpleNamespace(source={"content": {"body": "x", "m.relates_to": relation}})
    assert read.thread_of(event) is None


def test_the_login_is_kept_encrypted_and_opens_only_with_the_server_secret(tmp_path: Path) -> None:
    keys = ServerKeys.from_secret(os.urandom(32))
    SessionFiles(tmp_path, keys, "@lotse:example.org").save_token("LOTSEBOT", "syt_geheim_123")
    raw = (tmp_path / SESSION_FILE).read_bytes()
    assert b"syt_geheim_123" not in raw and b"LOTSEBOT" not in raw
    assert (tmp_path / SESSION_FILE).stat().st_mode & 0o077 == 0
    assert SessionFiles(tmp_path, keys, "@lotse:example.org").load_token() == (
        "LOTSEBOT", "syt_geheim_123",
    )  # fmt: skip
    other = ServerKeys.from_secret(os.urandom(32))
    with pytest.raises(DecryptionError):
        SessionFiles(tmp_path, other, "@lotse:example.org").load_token()
