"""Matrix round trip: an official's message to the bot's reply, in an encrypted direct chat.

A local Synapse (tests/synapse.py), `lotse run` as its own process with an encrypted
staff room, and one official (a matrix-nio client, tests/matrix_people.py) who goes
through the whole intake. Each round trip runs from the official's send (encrypting it
included) until the official's sync has the bot's first reply, decrypted; then the
official waits until the bot is quiet before the next answer (not measured).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nio import RoomCreateResponse, RoomMessageText

from tests.bench_results import Results, percentile
from tests.matrix_people import ENCRYPTION_STATE, Lotse, Person, environment
from tests.synapse import Synapse, free_port
from tests.test_demo_script import intake_steps
from tests.test_sealed_cases import lotse

SECTION = "matrix"
PASSPHRASE = "bench-passphrase"
QUIET_SECONDS = 0.8


@dataclass(frozen=True)
class Sizes:
    round_trips: int = 100  # at most the whole intake (about 20 answers)


def _config(folder: Path, synapse: Synapse, bot: str, room: str) -> Path:
    data_dir = folder / "lotse-data"
    config = folder / "lotse.toml"
    config.write_text(
        f'[storage]\nurl = "sqlite+aiosqlite:///{data_dir / "lotse.db"}"\n'
        f'data_dir = "{data_dir}"\n\n'
        f'[matrix]\nenabled = true\nhomeserver = "{synapse.url}"\nuser_id = "{bot}"\n'
        f'device_id = "LOTSEBOT"\nstore_dir = "{data_dir / "matrix-store"}"\n\n'
        f'[staff]\nchannel = "matrix"\nroom = "{room}"\nlanguage = "de"\n',
        encoding="utf-8",
    )
    return config


async def _staff_room(counsellor: Person, bot: str) -> str:
    made = await counsellor.client.room_create(
        name="Lotse staff", invite=[bot], initial_state=[ENCRYPTION_STATE]
    )
    assert isinstance(made, RoomCreateResponse), made
    return str(made.room_id)


async def _round_trips(official: Person, room: str, lines: list[str]) -> tuple[list[float], int]:
    latencies: list[float] = []
    failures = 0
    arrived = asyncio.Event()  # set after Person has recorded the message

    async def on_text(_room: Any, _event: Any) -> None:
        arrived.set()

    official.client.add_event_callback(on_text, RoomMessageText)
    for line in lines:
        before = len(official.texts(room))
        started = time.perf_counter()
        await official.say(room, line)
        deadline = time.monotonic() + 30
        while len(official.texts(room)) == before and time.monotonic() < deadline:
            arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), max(0.0, deadline - time.monotonic()))
        if len(official.texts(room)) == before:
            failures += 1
            continue
        latencies.append(time.perf_counter() - started)
        count = -1
        while count != len(official.texts(room)):  # the rest of this answer's replies
            count = len(official.texts(room))
            await asyncio.sleep(QUIET_SECONDS)
    return latencies, failures


async def _measure(folder: Path, synapse: Synapse, round_trips: int) -> tuple[list[float], int]:
    tag = secrets.token_hex(3)
    bot_password, counsellor_password, official_password = (secrets.token_hex(8) for _ in "abc")
    bot = synapse.register(f"lotse-{tag}", bot_password)
    counsellor_id = synapse.register(f"berger-{tag}", counsellor_password)
    official_id = synapse.register(f"official-{tag}", official_password)
    counsellor = Person(synapse.url, counsellor_id, folder / "counsellor")
    await counsellor.start(counsellor_password)
    room = await _staff_room(counsellor, bot)
    config = _config(folder, synapse, bot, room)
    secret, key = os.urandom(32), folder / "berger.key"
    for arguments in (
        ("keys", "generate", "--out", key, "--name", "berger"),
        ("db", "upgrade", "--config", config),
        ("counsellor", "add", "berger", "--public-key", f"{key}.pub", "--first",
         "--matrix-id", counsellor_id, "--config", config),
    ):  # fmt: skip
        done = lotse(*arguments, passphrase=PASSPHRASE, secret=secret)
        assert done.returncode == 0, done.stderr
    service = Lotse(config, environment(secret, bot_password, PASSPHRASE), folder / "lotse.log")
    service.start()
    official = Person(synapse.url, official_id, folder / "official")
    try:
        await official.start(official_password)
        chat = await official.direct_chat(bot)
        lines = [line for _, line in intake_steps()][:round_trips]
        return await _round_trips(official, chat, lines)
    finally:
        await official.stop()
        await counsellor.stop()
        service.stop()


def measure(results: Results, synapse: Synapse, sizes: Sizes = Sizes()) -> None:
    """The round trips against a running Synapse."""
    results.sizes[SECTION] = {"round_trips": sizes.round_trips}
    with tempfile.TemporaryDirectory() as folder:
        latencies, failures = asyncio.run(_measure(Path(folder), synapse, sizes.round_trips))
    note = f"{len(latencies)} round trips, encrypted direct chat, local Synapse"
    for share in (0.50, 0.95):
        value = percentile(latencies, share) * 1000
        results.add(SECTION, f"round trip p{round(share * 100)}", value, "ms", note)
    results.add(SECTION, "messages without a reply", failures, "failures")


def run(results: Results, sizes: Sizes = Sizes()) -> None:
    with tempfile.TemporaryDirectory() as folder:
        synapse = Synapse(Path(folder), free_port(), secrets.token_hex(16))
        synapse.start()
        try:
            measure(results, synapse, sizes)
        finally:
            synapse.stop()


if __name__ == "__main__":
    run(Results())
