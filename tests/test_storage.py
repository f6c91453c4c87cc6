"""The repository against both databases: encrypted state, references, dedupe, deletion."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import func, select, update

from flows.state import IntakeState
from storage.casefile import open_case
from storage.keyfile import UnlockedKey
from storage.models import Case, CaseItem, Conversation, StoredBlob
from storage.repository import Store, UnreadableConversation
from storage.server_secret import DecryptionError, ServerKeys


def _state(**answers: object) -> IntakeState:
    return IntakeState(language="de", step="role", consented=True, answers=answers)


async def _count(store: Store, model: type) -> int:
    async with store.unit() as unit:
        return int(await unit.session.scalar(select(func.count()).select_from(model)) or 0)


async def test_state_round_trips_and_is_stored_encrypted(store: Store) -> None:
    state = _state(description="CANARY-STATE")
    async with store.unit() as unit:
        await unit.save("sender-a", "console", "chat-a", state)
    async with store.unit() as unit:
        loaded = await unit.load("sender-a")
        raw = (await unit.session.scalars(select(Conversation))).one()
    assert loaded is not None
    assert loaded.state == state
    assert loaded.address == "chat-a"
    assert b"CANARY-STATE" not in raw.state
    assert b"chat-a" not in raw.address


async def test_state_does_not_open_with_another_secret(store: Store) -> None:
    async with store.unit() as unit:
        await unit.save("sender-a", "console", "chat-a", _state(description="x"))
    other = Store(store.database, ServerKeys.from_secret(b"\x08" * 32))
    with pytest.raises(UnreadableConversation) as raised:
        async with other.unit() as unit:
            await unit.load("sender-a")
    assert isinstance(raised.value.__cause__, DecryptionError)


async def test_state_moved_to_another_sender_does_not_open(store: Store) -> None:
    async with store.unit() as unit:
        await unit.save("sender-a", "console", "chat-a", _state(description="a"))
        await unit.save("sender-b", "console", "chat-b", _state(description="b"))
    async with store.unit() as unit:
        rows = {row.sender_key: row for row in await unit.session.scalars(select(Conversation))}
        stolen = rows["sender-a"].state
        await unit.session.execute(
            update(Conversation).where(Conversation.sender_key == "sender-b").values(state=stolen)
        )
    with pytest.raises(UnreadableConversation) as raised:
        async with store.unit() as unit:
            await unit.load("sender-b")
    assert isinstance(raised.value.__cause__, DecryptionError)


async def test_references_count_up_per_year(store: Store) -> None:
    moments = iter(
        [dt.datetime(2026, 12, 31, 23, 0, tzinfo=dt.UTC)] * 2
        + [dt.datetime(2027, 1, 1, 0, 5, tzinfo=dt.UTC)] * 2
    )
    dated = Store(store.database, store.keys, clock=lambda: next(moments))
    references = []
    for _ in range(4):
        async with dated.unit() as unit:
            references.append(await unit.create_case("s", "console", False, {"a": 1}, []))
    # One unit per case, so the clock is read once per case.
    assert references[:2] == ["L-2026-0001", "L-2026-0002"]
    assert references[2:] == ["L-2027-0001", "L-2027-0002"]


async def test_concurrent_submissions_get_distinct_references(store: Store) -> None:
    async def submit(index: int) -> str:
        async with store.unit() as unit:
            return await unit.create_case(f"s{index}", "console", False, {"n": index}, [])

    references = await asyncio.gather(*(submit(index) for index in range(12)))
    assert len(set(references)) == 12
    numbers = sorted(int(reference.rsplit("-", 1)[1]) for reference in references)
    assert numbers == list(range(1, 13))


async def test_case_record_is_sealed_so_the_server_cannot_read_it(
    store: Store, counsellor_key: UnlockedKey
) -> None:
    async with store.unit() as unit:
        reference = await unit.create_case("s", "console", True, {"description": "CANARY-CASE"}, [])
    async with store.unit() as unit:
        item = (await unit.session.scalars(select(CaseItem))).one()
        case = (await unit.session.scalars(select(Case))).one()
    assert case.reference == reference
    assert case.urgent is True
    assert b"CANARY-CASE" not in item.content
    with pytest.raises(DecryptionError):  # the server's own key does not open it
        store.keys.decrypt(item.content, f"case:{reference}:0")
    async with store.unit() as unit:
        opened, by = await open_case(unit, counsellor_key, reference)
    assert opened.intake == {"description": "CANARY-CASE"}
    assert by == "Berger"


async def test_processed_events_are_remembered(store: Store) -> None:
    async with store.unit() as unit:
        assert not await unit.seen("event-1")
        await unit.mark_seen("event-1")
    async with store.unit() as unit:
        assert await unit.seen("event-1")
        assert not await unit.seen("event-2")


async def test_files_are_encrypted_and_sealed_into_the_case(
    store: Store, counsellor_key: UnlockedKey
) -> None:
    async with store.unit() as unit:
        handle = await unit.store_file("s", "shot.png", "image/png", b"CANARY-FILE-BYTES")
    async with store.unit() as unit:
        before = (await unit.session.scalars(select(StoredBlob))).one().content
    assert b"CANARY-FILE-BYTES" not in before  # encrypted with the server key while in progress
    async with store.unit() as unit:
        reference = await unit.create_case(
            "s", "console", False, {"files": [handle.model_dump()]}, [handle]
        )
    async with store.unit() as unit:
        blob = (await unit.session.scalars(select(StoredBlob))).one()
        opened, _ = await open_case(unit, counsellor_key, reference)
    assert handle.size == len(b"CANARY-FILE-BYTES")
    assert b"CANARY-FILE-BYTES" not in blob.content
    assert blob.case_id is not None
    with pytest.raises(DecryptionError):  # re-sealed: the server key no longer opens it
        store.keys.decrypt(blob.content, f"file:{handle.id}")
    [file] = opened.files
    assert (file.name, file.data) == ("shot.png", b"CANARY-FILE-BYTES")


async def test_discard_keeps_submitted_cases(store: Store) -> None:
    async with store.unit() as unit:
        await unit.create_case("s", "console", False, {}, [])
        await unit.store_file("s", "loose.txt", "text/plain", b"not yet part of a case")
        await unit.save("s", "console", "chat", _state(description="in progress"))
    async with store.unit() as unit:
        await unit.discard("s")
    assert await _count(store, Conversation) == 0
    assert await _count(store, StoredBlob) == 0
    assert await _count(store, Case) == 1


async def test_delete_person_removes_everything_of_that_person_only(store: Store) -> None:
    async with store.unit() as unit:
        for sender in ("gone", "stays"):
            handle = await unit.store_file(sender, "f.txt", "text/plain", b"data")
            await unit.create_case(sender, "console", False, {"who": sender}, [handle])
            await unit.save(sender, "console", f"chat-{sender}", _state(description=sender))
    async with store.unit() as unit:
        assert await unit.delete_person("gone") == 1
    async with store.unit() as unit:
        assert await unit.load("gone") is None
        assert await unit.load("stays") is not None
        assert await unit.count_cases("gone") == 0
        assert await unit.count_cases("stays") == 1
    assert await _count(store, CaseItem) == 1
    assert await _count(store, StoredBlob) == 1


async def test_cases_list_shows_metadata_only(store: Store) -> None:
    async with store.unit() as unit:
        reference = await unit.create_case("s", "console", True, {"description": "secret"}, [])
    [summary] = await store.cases()
    assert (summary.reference, summary.status, summary.urgent, summary.channel) == (
        reference,
        "waiting",
        True,
        "console",
    )
    assert summary.created_at.tzinfo is not None
