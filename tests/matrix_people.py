"""The people of the Matrix tests: nio clients for an official and a counsellor, and `lotse run`.

Each person syncs in the background and records what others wrote (decrypted), so a
test can send and then wait for the bot's answer as a person would.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from nio import (
    AsyncClient,
    AsyncClientConfig,
    MegolmEvent,
    RoomCreateResponse,
    RoomEncryptedMedia,
    RoomMessageText,
    RoomPreset,
    RoomSendResponse,
    UploadResponse,
)

from tests.conftest import ROOT

ENCRYPTION_STATE = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}
REFERENCE = re.compile(r"L-\d{4}-\d{4}")


class Person:
    def __init__(self, homeserver: str, user_id: str, store: Path, device_id: str = "") -> None:
        """`device_id`: log in as this device (a new store there means new keys for it)."""
        store.mkdir(parents=True, exist_ok=True)
        config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)
        self.client = AsyncClient(
            homeserver, user_id, device_id, store_path=str(store), config=config
        )
        self.seen: list[tuple[str, Any]] = []  # (room id, event) written by others
        self.undecryptable = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self, password: str | None = None, device: tuple[str, str] | None = None):
        if device is not None:
            self.client.restore_login(self.client.user, *device)
        else:
            assert password is not None
            answer = await self.client.login(password)
            assert hasattr(answer, "access_token"), answer
        self.client.add_event_callback(self._on_event, (RoomMessageText, RoomEncryptedMedia))
        self.client.add_event_callback(self._on_undecryptable, MegolmEvent)
        await self.client.sync(timeout=0, full_state=True)
        self._task = asyncio.create_task(self.client.sync_forever(timeout=1000))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.client.close()

    async def _on_event(self, room: Any, event: Any) -> None:
        if event.sender != self.client.user_id:
            self.seen.append((room.room_id, event))

    async def _on_undecryptable(self, room: Any, event: Any) -> None:
        self.undecryptable += 1

    def texts(self, room_id: str) -> list[str]:
        return [e.body for r, e in self.seen if r == room_id and isinstance(e, RoomMessageText)]

    async def wait_for(self, check: Any, seconds: float = 40.0) -> Any:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            await asyncio.sleep(0.1)
        raise AssertionError(f"{self.client.user_id} waited {seconds} s in vain")

    async def answer(self, room_id: str, send: Any, quiet: float = 0.8) -> list[str]:
        """Send, then what the bot said until it was quiet for `quiet` seconds."""
        before = len(self.texts(room_id))
        await send
        try:
            await self.wait_for(lambda: len(self.texts(room_id)) > before)
        except AssertionError:
            raise AssertionError(f"no answer; the last: {self.texts(room_id)[-2:]}") from None
        count = -1
        while count != len(self.texts(room_id)):
            count = len(self.texts(room_id))
            await asyncio.sleep(quiet)
        return self.texts(room_id)[before:]

    async def say(self, room_id: str, text: str, relates_to: str | None = None) -> str:
        content: dict[str, Any] = {"msgtype": "m.text", "body": text}
        if relates_to is not None:
            content["m.relates_to"] = {"rel_type": "m.thread", "event_id": relates_to}
        return await self.send(room_id, content)

    async def send(
        self, room_id: str, content: dict[str, Any], kind: str = "m.room.message"
    ) -> str:
        answer = await self.client.room_send(room_id, kind, content, ignore_unverified_devices=True)
        assert isinstance(answer, RoomSendResponse), answer
        return str(answer.event_id)

    async def send_file(self, room_id: str, name: str, media: str, data: bytes) -> str:
        upload, keys = await self.client.upload(
            lambda *_: data, content_type=media, filename=name, encrypt=True, filesize=len(data)
        )
        assert isinstance(upload, UploadResponse), upload
        content = {
            "msgtype": "m.image" if media.startswith("image/") else "m.file",
            "body": name,
            "info": {"mimetype": media, "size": len(data)},
            "file": {**keys, "url": upload.content_uri},
        }
        return await self.send(room_id, content)

    async def direct_chat(self, bot: str, encrypted: bool = True, bot_admin: bool = True) -> str:
        """A direct chat as Element makes it (the invited bot may change the room's settings)."""
        state = [ENCRYPTION_STATE] if encrypted else []
        preset = RoomPreset.trusted_private_chat if bot_admin else RoomPreset.private_chat
        answer = await self.client.room_create(
            is_direct=True, invite=[bot], initial_state=state, preset=preset
        )
        assert isinstance(answer, RoomCreateResponse), answer
        room_id = str(answer.room_id)
        await self.wait_for(
            lambda: room_id in self.client.rooms and bot in self.client.rooms[room_id].users
        )
        if encrypted:  # the bot's device keys, or the first message had no key for it
            await self.wait_for(lambda: list(self.client.device_store.active_user_devices(bot)))
        return room_id


def thread_of(event: Any) -> str | None:
    relation = event.source.get("content", {}).get("m.relates_to") or {}
    return relation.get("event_id") if relation.get("rel_type") == "m.thread" else None


def case_root(person: Person, room_id: str, reference: str) -> Any:
    """The staff-room post that opened case `reference` (its thread's root), or None yet."""
    return next(
        (e for r, e in person.seen
         if r == room_id and reference in getattr(e, "body", "") and not thread_of(e)),
        None,
    )  # fmt: skip


def in_thread(person: Person, room_id: str, root: str) -> list[str]:
    """What others wrote in the thread rooted at `root`, oldest first."""
    return [e.body for r, e in person.seen if r == room_id and thread_of(e) == root]


class Lotse:
    """`lotse run` as a separate process."""

    def __init__(self, config: Path, environment: dict[str, str], log: Path) -> None:
        self.config = config
        self.environment = environment
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot", "run", "--config", str(self.config)],
            cwd=ROOT,
            env=self.environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("ab"),
        )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, kill: bool = False) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        return self.process.wait(30)


def environment(secret: bytes, password: str, passphrase: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOTSE_")}
    env["LOTSE_SERVER_SECRET"] = base64.b64encode(secret).decode()
    env["LOTSE_MATRIX_PASSWORD"] = password
    env["LOTSE_PASSPHRASE"] = passphrase
    return env
