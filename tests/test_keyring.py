"""Who can open what: adding counsellors, revoking them, and what their keys open afterwards."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from storage.casefile import CaseError, open_case
from storage.keyfile import UnlockedKey
from storage.keyring import (
    CounsellorEntry,
    KeyringError,
    active_counsellors,
    add,
    bootstrap,
    open_team,
    revoke,
)
from storage.models import Case, CaseItem, TeamKey, TeamKeyWrap
from storage.repository import Store
from storage.sealing import PrivateKey, SealError, case_key_info, item_info, open_sealed


def _key(name: str) -> UnlockedKey:
    return UnlockedKey(name, PrivateKey.generate())


async def _case(store: Store, text: str) -> str:
    async with store.unit() as unit:
        return await unit.create_case("sender", "console", False, {"description": text}, [])


async def _opens(store: Store, key: UnlockedKey, reference: str) -> str:
    async with store.unit() as unit:
        case, _ = await open_case(unit, key, reference)
    return str(case.intake["description"])


async def test_first_counsellor_only_once(empty_store: Store) -> None:
    first = _key("Berger")
    async with empty_store.unit() as unit:
        await bootstrap(unit, CounsellorEntry("Berger", "A. Berger"), first.public)
    with pytest.raises(KeyringError, match="counsellors exist already"):
        async with empty_store.unit() as unit:
            await bootstrap(unit, CounsellorEntry("Mallory", "M"), _key("Mallory").public)


async def test_no_case_can_be_sealed_before_the_first_counsellor(empty_store: Store) -> None:
    with pytest.raises(KeyringError, match="lotse counsellor add NAME --public-key FILE --first"):
        await _case(empty_store, "x")


async def test_a_new_counsellor_opens_old_and_new_cases(
    store: Store, counsellor_key: UnlockedKey
) -> None:
    old = await _case(store, "before Kaya joined")
    kaya = _key("Kaya")
    async with store.unit() as unit:
        await add(unit, counsellor_key, CounsellorEntry("Kaya", "K."), kaya.public)
    new = await _case(store, "after Kaya joined")
    assert await _opens(store, kaya, old) == "before Kaya joined"
    assert await _opens(store, kaya, new) == "after Kaya joined"
    assert await _opens(store, counsellor_key, new) == "after Kaya joined"


async def test_only_a_counsellor_can_add_one(store: Store) -> None:
    stranger = _key("Stranger")
    with pytest.raises(KeyringError, match="belongs to no counsellor"):
        async with store.unit() as unit:
            await add(unit, stranger, CounsellorEntry("Friend", "F"), _key("Friend").public)
    async with store.unit() as unit:
        assert [c.name for c in await active_counsellors(unit.session)] == ["Berger"]


async def test_names_and_keys_are_unique(store: Store, counsellor_key: UnlockedKey) -> None:
    with pytest.raises(KeyringError, match="exists already"):
        async with store.unit() as unit:
            await add(unit, counsellor_key, CounsellorEntry("Berger", "B"), _key("B2").public)
    with pytest.raises(KeyringError, match="belongs to 'Berger' already"):
        async with store.unit() as unit:
            await add(unit, counsellor_key, CounsellorEntry("Twin", "T"), counsellor_key.public)


async def test_revocation_locks_the_revoked_key_out_of_every_case(
    store: Store, counsellor_key: UnlockedKey
) -> None:
    kaya = _key("Kaya")
    async with store.unit() as unit:
        await add(unit, counsellor_key, CounsellorEntry("Kaya", "K."), kaya.public)
    before = await _case(store, "known to Kaya")
    assert await _opens(store, kaya, before) == "known to Kaya"

    async with store.unit() as unit:
        resealed = await revoke(unit, counsellor_key, "Kaya")
    assert resealed == 1
    after = await _case(store, "after Kaya left")

    for reference in (before, after):
        with pytest.raises(CaseError, match="was revoked"):
            await _opens(store, kaya, reference)
        assert await _opens(store, counsellor_key, reference) in (
            "known to Kaya",
            "after Kaya left",
        )

    async with store.unit() as unit:
        teams = list(await unit.session.scalars(select(TeamKey).order_by(TeamKey.id)))
        wraps = list(await unit.session.scalars(select(TeamKeyWrap)))
        cases = list(await unit.session.scalars(select(Case)))
    assert [team.retired_at is not None for team in teams] == [True, False]
    # Nothing in the database leads to the old team key any more: the revoked one's wrap is gone.
    assert {wrap.team_key_id for wrap in wraps} == {teams[1].id}
    assert {case.team_key_id for case in cases} == {teams[1].id}


async def test_a_revoked_key_that_kept_its_old_wrap_still_opens_nothing_new(
    store: Store, counsellor_key: UnlockedKey
) -> None:
    """Even with a copy of the old database, the old team key opens no case created afterwards."""
    kaya = _key("Kaya")
    async with store.unit() as unit:
        await add(unit, counsellor_key, CounsellorEntry("Kaya", "K."), kaya.public)
        opened_by_kaya = await _open_team_private(unit, kaya)
    async with store.unit() as unit:
        await revoke(unit, counsellor_key, "Kaya")
    after = await _case(store, "after")
    async with store.unit() as unit:
        case = await unit.case(after)
    assert case is not None and case.wrapped_key is not None and case.team_key_id is not None
    with pytest.raises(SealError):
        open_sealed(opened_by_kaya, case.wrapped_key, case_key_info(after, case.team_key_id))
    assert isinstance(opened_by_kaya, PrivateKey)


async def _open_team_private(unit, key: UnlockedKey):
    return (await open_team(unit.session, key)).private


async def test_revocation_needs_another_counsellor(
    store: Store, counsellor_key: UnlockedKey
) -> None:
    with pytest.raises(KeyringError, match="cannot revoke the last counsellor"):
        async with store.unit() as unit:
            await revoke(unit, counsellor_key, "Berger")
    with pytest.raises(KeyringError, match="no active counsellor named 'Nobody'"):
        async with store.unit() as unit:
            await revoke(unit, counsellor_key, "Nobody")


async def test_a_revoked_name_cannot_come_back_silently(
    store: Store, counsellor_key: UnlockedKey
) -> None:
    kaya = _key("Kaya")
    async with store.unit() as unit:
        await add(unit, counsellor_key, CounsellorEntry("Kaya", "K."), kaya.public)
    async with store.unit() as unit:
        await revoke(unit, counsellor_key, "Kaya")
    with pytest.raises(KeyringError, match="was revoked"):
        async with store.unit() as unit:
            await add(unit, counsellor_key, CounsellorEntry("Kaya", "K."), _key("Kaya2").public)


async def test_what_is_added_to_an_old_case_after_a_revocation_is_out_of_the_old_keys_reach(
    store: Store, counsellor_key: UnlockedKey
) -> None:
    """A revoked counsellor who kept the old team key and a copy of the old database learns
    the old case key; revocation re-keys every case, so later items do not open with it."""
    kaya = _key("Kaya")
    async with store.unit() as unit:
        await add(unit, counsellor_key, CounsellorEntry("Kaya", "K."), kaya.public)
        old_team = await _open_team_private(unit, kaya)
    reference = await _case(store, "before")
    async with store.unit() as unit:
        case = await unit.case(reference)
        assert case is not None and case.wrapped_key is not None and case.team_key_id is not None
        stolen = PrivateKey.from_bytes(
            open_sealed(old_team, case.wrapped_key, case_key_info(reference, case.team_key_id))
        )
    async with store.unit() as unit:
        await revoke(unit, counsellor_key, "Kaya")
    async with store.unit() as unit:
        position = await unit.add_item(reference, "message", {"text": "after the revocation"})
        row = (
            await unit.session.scalars(select(CaseItem).where(CaseItem.position == position))
        ).one()
    with pytest.raises(SealError):
        open_sealed(stolen, row.content, item_info(reference, position, "message"))
    assert await _opens(store, counsellor_key, reference) == "before"  # the record itself survives
