"""Telegram and Matrix in one `lotse run`: an official on the Bot API emulator, the staff
room on Synapse; and `/healthz` naming the Matrix channel while Synapse is down.

One Lotse for this module, with both channels and `[service] listen`. The health test
stops the session's Synapse and starts it again, so it comes last.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests import matrix_people as people
from tests.matrix_deployment import Deployment, deploy
from tests.matrix_people import REFERENCE
from tests.synapse import Synapse, free_port
from tests.telegram_emulator import TOKEN, Emulator
from tests.test_no_plaintext import findings
from tests.test_ops_run import _curl
from tests.test_telegram import answer_until, said_to

pytestmark = [pytest.mark.synapse, pytest.mark.slow]
OFFICIAL = 4343


@dataclass
class Mixed:
    deployment: Deployment
    emulator: Emulator
    health: str  # the /healthz URL


@pytest.fixture(scope="module")
def mixed(synapse: Synapse, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mixed]:
    emulator = Emulator().start()
    port = free_port()
    extra = (
        f'\n[telegram]\nenabled = true\napi_base_url = "{emulator.root}"\n'
        f'\n[service]\nlisten = "127.0.0.1:{port}"\n'
    )
    folder = tmp_path_factory.mktemp("mixed")
    deployment = deploy(synapse, folder, extra, {"LOTSE_TELEGRAM_TOKEN": TOKEN})
    deployment.lotse.start()
    try:
        emulator.wait(lambda: "getUpdates" in emulator.calls, 60, "Telegram polling")
        yield Mixed(deployment, emulator, f"http://127.0.0.1:{port}/healthz")
    finally:
        deployment.lotse.stop()
        emulator.stop()


async def test_an_official_on_telegram_is_handed_to_the_matrix_staff_room_and_back(
    mixed: Mixed,
) -> None:
    emulator, deployment = mixed.emulator, mixed.deployment
    canaries = {
        "description": "Kanarie-Gemischt-Beschreibung-R4TV",
        "relay in": "Kanarie-Gemischt-Amtstraeger-J7QP",
        "relay out": "Kanarie-Gemischt-Beraterin-W2HS",
    }
    counsellor = deployment.counsellor_person()
    await counsellor.start(device=deployment.counsellor_device)
    staff = deployment.staff_room
    try:
        emulator.message(OFFICIAL, "/start")
        said = await asyncio.to_thread(
            answer_until, emulator, OFFICIAL, "Aktenzeichen",
            {"Bitte beschreiben": canaries["description"]},
        )  # fmt: skip
        found = REFERENCE.search(" ".join(sent.text for sent in said))
        assert found is not None
        reference = found[0]

        summary = await counsellor.wait_for(
            lambda: people.case_root(counsellor, staff, reference), 60
        )
        assert canaries["description"] in summary.body  # the encrypted room gets the details
        thread = summary.event_id

        def in_thread() -> list[str]:
            return people.in_thread(counsellor, staff, thread)

        await counsellor.say(staff, "/uebernehmen", relates_to=thread)
        await asyncio.to_thread(said_to, emulator, OFFICIAL, "hat Ihren Fall übernommen")

        count = len(in_thread())
        emulator.message(OFFICIAL, canaries["relay in"])
        relayed = canaries["relay in"]
        await counsellor.wait_for(lambda: any(relayed in t for t in in_thread()[count:]))

        await counsellor.say(staff, canaries["relay out"], relates_to=thread)
        await asyncio.to_thread(said_to, emulator, OFFICIAL, canaries["relay out"])

        await counsellor.say(staff, "/abschliessen beraten", relates_to=thread)
        closed = f"Ihr Fall {reference} ist abgeschlossen"
        await asyncio.to_thread(said_to, emulator, OFFICIAL, closed)
        await counsellor.wait_for(lambda: any("abgeschlossen" in t for t in in_thread()))
    finally:
        await counsellor.stop()
    assert emulator.violations == []
    assert deployment.lotse.running()
    assert findings(deployment.data_dir, canaries) == []
    shown = deployment.cli("cases", "show", reference, "--key", deployment.key)
    assert shown.returncode == 0, shown.stderr
    assert all(canary in shown.stdout for canary in canaries.values())


async def _health_until(url: str, wanted: Callable[[int, str], bool], seconds: float) -> str:
    """The /healthz body once its status and body are as `wanted`."""
    deadline = time.monotonic() + seconds
    status, body = 0, ""
    while time.monotonic() < deadline:
        status, body = await asyncio.to_thread(_curl, url)
        if wanted(status, body):
            return body
        await asyncio.sleep(2)
    raise AssertionError(f"/healthz stayed {status}: {body}")


def _ok(status: int, body: str) -> bool:
    return status == 200 and body.startswith("ok\n")


def _matrix_failing(status: int, body: str) -> bool:
    return status == 503 and "channel matrix" in body.splitlines()[0]


async def test_healthz_names_matrix_while_synapse_is_down_and_recovers(
    mixed: Mixed, synapse: Synapse
) -> None:
    deployment = mixed.deployment
    await _health_until(mixed.health, _ok, 60)
    synapse.stop()
    try:
        down = await _health_until(mixed.health, _matrix_failing, 150)
        assert "channel matrix: has not reached its platform for" in down, down
        assert "channel telegram: ok" in down.splitlines(), down  # the other one is fine
        assert deployment.lotse.running()
    finally:
        synapse.start()
    await _health_until(mixed.health, _ok, 150)
    # and Matrix works again: the staff room answers a counsellor
    counsellor = deployment.counsellor_person()
    await counsellor.start(device=deployment.counsellor_device)
    try:
        staff = deployment.staff_room
        await counsellor.say(staff, "/hilfe")
        await counsellor.wait_for(lambda: any("/uebernehmen" in t for t in counsellor.texts(staff)))
    finally:
        await counsellor.stop()
    assert "Traceback" not in deployment.lotse.log.read_text()
