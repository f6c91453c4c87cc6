"""Issue 11 (8/10 Hardening), item 19: tests for four one-line defects the suite let through.

(a) item sealing without its case and position (`item_info` reduced to the kind);
(b) `/loeschen` mid-intake leaving that intake's attachment rows;
(c) the official's or counsellor's words after submission logged at DEBUG;
(d) a key file written, or accepted, with a weaker Argon2id cost than intended.
Each test shows first that what it looks for went in, so it can fail.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from bot.app import demo_config, open_app
from bot.channels.console import ConsoleChannel
from bot.cli import main
from bot.demo import console_core, demo_counsellor
from bot.logs import quiet_libraries
from storage.casefile import CaseError, open_case
from storage.keyfile import KeyFileError, UnlockedKey, unlock
from storage.models import Conversation, StoredBlob
from storage.repository import Store
from tests.test_demo_script import Intake, intake_lines, official, staff_room, text_of

# -- (a) sealed items are bound to their case and position -----------------------------------


async def _case_with_messages(store: Store, official_key: str, *messages: str) -> str:
    async with store.unit() as unit:
        reference = await unit.create_case(official_key, "console", False, {"d": "x"}, [])
        for message in messages:
            await unit.add_item(reference, "message", {"from": "official", "text": message})
    return reference


async def _content(store: Store, reference: str, position: int) -> bytes:
    query = text(
        "SELECT i.content FROM case_items i JOIN cases c ON c.id = i.case_id "
        "WHERE c.reference = :reference AND i.position = :position"
    )
    async with store.database.connect() as connection:
        value = await connection.execute(query, {"reference": reference, "position": position})
        return bytes(value.scalar_one())


async def _put(store: Store, reference: str, position: int, content: bytes) -> None:
    update = text(
        "UPDATE case_items SET content = :content WHERE position = :position "
        "AND case_id = (SELECT id FROM cases WHERE reference = :reference)"
    )
    async with store.database.begin() as connection:
        await connection.execute(
            update, {"content": content, "position": position, "reference": reference}
        )


async def test_item_19a_two_messages_swapped_within_a_case_are_named(
    store: Store, counsellor_key: UnlockedKey
) -> None:
    reference = await _case_with_messages(store, "official-1", "Erste Nachricht", "Zweite")
    async with store.unit() as unit:  # as written, it opens
        opened, _ = await open_case(unit, counsellor_key, reference)
    assert [item.content.get("text") for item in opened.items[1:]] == ["Erste Nachricht", "Zweite"]

    first, second = await _content(store, reference, 1), await _content(store, reference, 2)
    await _put(store, reference, 1, second)
    await _put(store, reference, 2, first)
    with pytest.raises(CaseError, match=rf"{reference}: item 1 \(message\) does not open"):
        async with store.unit() as unit:
            await open_case(unit, counsellor_key, reference)


async def test_item_19a_a_message_copied_into_another_case_is_named(
    store: Store, counsellor_key: UnlockedKey
) -> None:
    source = await _case_with_messages(store, "official-1", "Aus dem ersten Fall")
    target = await _case_with_messages(store, "official-2", "Aus dem zweiten Fall")
    await _put(store, target, 1, await _content(store, source, 1))
    with pytest.raises(CaseError, match=rf"{target}: item 1 \(message\) does not open"):
        async with store.unit() as unit:
            await open_case(unit, counsellor_key, target)


# -- (b) /loeschen mid-intake takes that intake's files along -------------------------------------


async def test_item_19b_a_file_sent_mid_intake_goes_with_loeschen(tmp_path: Path) -> None:
    attachment = tmp_path / "drohbrief.txt"
    attachment.write_text("Kanarie-Datei-19b", encoding="utf-8")
    out = io.StringIO()
    async with open_app(demo_config(tmp_path / "data")) as app:
        await demo_counsellor(app)
        channel = ConsoleChannel(out)
        core = console_core(app, channel)
        for line in ("/start", "3", "1", f"file> {attachment}", "2"):
            await channel.feed(core, line)
        assert await _rows(app.store, StoredBlob) == 1  # the file is stored, with its intake
        assert await _rows(app.store, Conversation) == 1
        for line in ("/loeschen", "ja"):
            await channel.feed(core, line)
        assert await _rows(app.store, StoredBlob) == 0
        assert await _rows(app.store, Conversation) == 0
    assert "ist gelöscht" in text_of(official(out.getvalue()))


async def _rows(store: Store, model: type[StoredBlob] | type[Conversation]) -> int:
    async with store.unit() as unit:
        return int(await unit.session.scalar(select(func.count()).select_from(model)) or 0)


# -- (c) nothing said after submission reaches the log ------------------------------------------

WAITING = "Kanarie-Wartend-19c-T5QB: er stand wieder vor der Tür"
CLAIMED = "Kanarie-Uebernommen-19c-N8JD: heute Nacht kam ein Anruf"
COUNSELLOR = "Kanarie-Beraterin-19c-V3LS: Sind Sie jetzt in Sicherheit?"


async def test_item_19c_words_while_waiting_and_after_a_claim_stay_out_of_the_debug_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    quiet_libraries()
    lines = [
        *intake_lines(Intake()),
        WAITING,
        "staff> L-2026-0001 /uebernehmen",
        CLAIMED,
        f"staff> L-2026-0001 {COUNSELLOR}",
    ]
    out = io.StringIO()
    async with open_app(demo_config(tmp_path / "data")) as app:
        await demo_counsellor(app)
        channel = ConsoleChannel(out)
        core = console_core(app, channel)
        for line in lines:
            await channel.feed(core, line)

    staff = text_of(staff_room(out.getvalue()))
    assert WAITING in staff and CLAIMED in staff  # it all went through
    assert COUNSELLOR in text_of(official(out.getvalue()))
    assert any(
        record.name.startswith("bot.") and record.levelno == logging.DEBUG
        for record in caplog.records
    ), "nothing was logged at DEBUG: this check would prove nothing"
    for canary in (WAITING, CLAIMED, COUNSELLOR):
        assert canary not in caplog.text
        assert canary.split(":")[0] not in caplog.text
        for record in caplog.records:
            assert canary.split(":")[0] not in repr(record.args)


# -- (d) the Argon2id cost of key files -----------------------------------------------------------

RFC_9106_SECOND = {"memory_kib": 65536, "iterations": 3, "lanes": 4}  # written out, not imported


def test_item_19d_keys_generate_writes_the_intended_argon2id_cost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOTSE_PASSPHRASE", "eine lange Passphrase")
    out = tmp_path / "berger.key"
    assert main(["keys", "generate", "--out", str(out)]) == 0
    kdf = json.loads(out.read_text())["kdf"]
    assert kdf["name"] == "argon2id"
    assert {name: kdf[name] for name in RFC_9106_SECOND} == RFC_9106_SECOND
    assert len(base64.b64decode(kdf["salt"])) == 16


@pytest.mark.parametrize(
    "weaker",
    [{"memory_kib": 8}, {"iterations": 1}, {"lanes": 1}, {"memory_kib": 32768, "iterations": 2}],
)
def test_item_19d_a_key_file_below_the_minimum_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, weaker: dict[str, int]
) -> None:
    """Someone who can replace a counsellor's key file could re-encrypt it cheaply to make
    guessing the passphrase fast; a file below what `keys generate` writes does not open."""
    monkeypatch.setenv("LOTSE_PASSPHRASE", "eine lange Passphrase")
    out = tmp_path / "berger.key"
    assert main(["keys", "generate", "--out", str(out)]) == 0
    document = json.loads(out.read_text())
    document["kdf"].update(weaker)
    out.write_text(json.dumps(document))
    name = next(iter(weaker))
    with pytest.raises(KeyFileError, match=f"{out}: the key derivation setting {name} = "):
        unlock(out, "eine lange Passphrase")
