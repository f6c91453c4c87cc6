"""Issue 11 item 4: the signature chain from the counsellors' keys to the team key.

The attacker of these tests holds the database and the server secret: they recompute
the HMAC bindings. Only the signatures, checked against `[keys] anchor`, stop them.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.app import open_app
from bot.cli import main
from bot.config import config_from_dict, load_config
from bot.doctor import anchor_check
from flows.engine import Engine
from storage.casefile import open_case
from storage.chain import ChainError
from storage.key_binding import bind_team
from storage.keyfile import UnlockedKey, read_public_key, unlock
from storage.keyring import CounsellorEntry, KeyringError, add, bootstrap, current_team, revoke
from storage.models import Counsellor
from storage.repository import Store
from storage.sealing import PrivateKey
from storage.signing import SigningKey, counsellor_statement, team_statement
from tests.test_core import NORMAL_INTAKE
from tests.test_handoff import SETTINGS, WEDNESDAY_10, Bench
from tests.test_queue import Clock

VECTORS = Path(__file__).parent / "vectors"
CONTENT = "Kontakt zur Beratungsstelle"


def _v2(name: str) -> UnlockedKey:
    return UnlockedKey(name, PrivateKey.generate(), SigningKey.generate())


def _anchor(key: UnlockedKey) -> str:
    assert key.signing is not None
    return key.signing.public_key().fingerprint()


def _anchored(store: Store, anchor: str) -> Store:
    return Store(store.database, store.keys, anchor=anchor)


async def _new_case(store: Store, official: str = "official-1") -> str:
    async with store.unit() as unit:
        return await unit.create_case(official, "console", False, {"description": CONTENT}, [])


async def _first(store: Store, key: UnlockedKey, *, signed: bool = True) -> None:
    assert key.signing is not None
    async with store.unit() as unit:
        await bootstrap(
            unit,
            CounsellorEntry(key.name, key.name),
            key.public,
            signing=key.signing.public_key(),
            own=key if signed else None,
        )


async def _add(store: Store, by: UnlockedKey, key: UnlockedKey) -> None:
    assert key.signing is not None
    async with store.unit() as unit:
        await add(
            unit,
            by,
            CounsellorEntry(key.name, key.name),
            key.public,
            signing=key.signing.public_key(),
        )


async def test_an_anchored_chain_seals_and_survives_adding_and_revoking(
    empty_store: Store,
) -> None:
    berger, schmidt = _v2("Berger"), _v2("Schmidt")
    await _first(empty_store, berger)
    await _add(empty_store, berger, schmidt)
    store = _anchored(empty_store, _anchor(berger))
    await _new_case(store)
    async with store.unit() as unit:  # Schmidt rotates; Schmidt's endorser goes afterwards
        await revoke(unit, schmidt, "Berger")
    reference = await _new_case(store, "official-2")
    async with store.unit() as unit:
        opened, _ = await open_case(unit, schmidt, reference)
    assert opened.intake == {"description": CONTENT}
    # the anchor may be written as `keys generate` prints it, or without spaces, any case
    await _new_case(_anchored(empty_store, _anchor(berger).replace(" ", "").upper()), "o-3")


async def _swap_team_key(store: Store, *, signature: bytes | None) -> None:
    """What someone holding the database and the server secret can do."""
    async with store.unit() as unit:
        team = await current_team(unit.session)
        assert team is not None
        team.public_key = PrivateKey.generate().public_key().to_bytes()
        bind_team(store.keys, team)  # the HMAC recomputed with the stolen secret
        team.signature = signature


async def test_a_swapped_team_key_with_a_recomputed_binding_is_refused_with_an_anchor(
    empty_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    berger = _v2("Berger")
    await _first(empty_store, berger)
    store = _anchored(empty_store, _anchor(berger))
    await _new_case(store)
    await _swap_team_key(store, signature=None)
    with pytest.raises(ChainError, match="carries no signature"):
        await _new_case(store, "official-2")
    assert len(await store.cases()) == 1
    alerts = [r.getMessage() for r in caplog.records if r.levelno >= logging.CRITICAL]
    assert any("signature chain check failed" in alert for alert in alerts)
    assert not any(CONTENT in alert for alert in alerts)
    # Without an anchor an unsigned key passes: what README's Security model says.
    await _new_case(empty_store, "official-3")


async def test_a_swapped_team_key_keeping_the_old_signature_is_refused_even_without_anchor(
    empty_store: Store,
) -> None:
    berger = _v2("Berger")
    await _first(empty_store, berger)
    async with empty_store.unit() as unit:
        team = await current_team(unit.session)
        assert team is not None and team.signature is not None
        old_signature = team.signature
    await _swap_team_key(empty_store, signature=old_signature)
    with pytest.raises(ChainError, match="does not verify"):
        await _new_case(empty_store)


async def test_an_unsigned_team_key_is_refused_with_an_anchor_until_a_counsellor_signs_it(
    empty_store: Store,
) -> None:
    berger, schmidt = _v2("Berger"), _v2("Schmidt")
    await _first(empty_store, berger, signed=False)  # --first without the private key
    store = _anchored(empty_store, _anchor(berger))
    with pytest.raises(ChainError, match="carries no signature"):
        await _new_case(store)
    await _add(store, berger, schmidt)  # Berger's first --by action signs it
    await _new_case(store)


async def test_a_forged_endorsement_is_refused(empty_store: Store) -> None:
    berger = _v2("Berger")
    await _first(empty_store, berger)
    store = _anchored(empty_store, _anchor(berger))
    mallory, forger = _v2("Mallory"), SigningKey.generate()
    assert mallory.signing is not None
    async with store.unit() as unit:  # a counsellor row of the attacker's, "endorsed" by Berger
        first = (await unit.session.scalars(select(Counsellor))).one()
        kem, signing = mallory.public.to_bytes(), mallory.signing.public_key().to_bytes()
        fake = Counsellor(
            name="Mallory",
            display_name="Mallory",
            public_key=kem,
            fingerprint=mallory.public.fingerprint(),
            signing_key=signing,
            endorsement=forger.sign(counsellor_statement("Mallory", kem, signing)),
            endorsed_by=first.id,
            added_at=unit.now,
        )
        unit.session.add(fake)
        await unit.session.flush()
        team = await current_team(unit.session)
        assert team is not None
        team.public_key = PrivateKey.generate().public_key().to_bytes()
        bind_team(store.keys, team)
        team.signature = mallory.signing.sign(team_statement(team.id, team.public_key))
        team.signed_by = fake.id
    with pytest.raises(ChainError, match="an endorsement does not verify"):
        await _new_case(store)


async def test_a_team_key_signed_by_a_counsellor_off_the_chain_is_refused(
    empty_store: Store,
) -> None:
    """A version 1 colleague adds a v2 one: no endorsement, so their signature leads nowhere."""
    berger, old, newer = _v2("Berger"), UnlockedKey("Alt", PrivateKey.generate()), _v2("Neu")
    await _first(empty_store, berger)
    async with empty_store.unit() as unit:
        await add(unit, berger, CounsellorEntry("Alt", "Alt"), old.public)
    await _add(empty_store, old, newer)  # Alt cannot sign: Neu stays unendorsed
    async with empty_store.unit() as unit:
        await revoke(unit, newer, "Alt")  # Neu signs the new team key
    await _new_case(empty_store)  # no anchor: a valid signature by an active counsellor
    with pytest.raises(ChainError, match="not endorsed and is not the anchor"):
        await _new_case(_anchored(empty_store, _anchor(berger)), "official-2")


async def test_a_version_1_key_file_still_opens_cases(empty_store: Store, tmp_path: Path) -> None:
    key = tmp_path / "counsellor-v1.key"
    shutil.copy(VECTORS / "counsellor-v1.key", key)
    key.chmod(0o600)
    old = unlock(key, "correct horse battery staple")
    assert old.signing is None
    async with empty_store.unit() as unit:
        await bootstrap(unit, CounsellorEntry("KAT", "KAT"), old.public, own=old)
    reference = await _new_case(empty_store)  # no anchor: an unsigned team key is accepted
    async with empty_store.unit() as unit:
        opened, _ = await open_case(unit, old, reference)
    assert opened.intake == {"description": CONTENT}


def test_first_counsellor_with_own_key_signs_and_gets_the_anchor_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOTSE_PASSPHRASE", "passphrase-123")
    monkeypatch.delenv("LOTSE_SERVER_SECRET", raising=False)
    berger, kaya = tmp_path / "berger.key", tmp_path / "kaya.key"
    for path in (berger, kaya):
        assert main(["keys", "generate", "--out", str(path), "--name", path.stem]) == 0
    generated = capsys.readouterr().out
    fingerprint = read_public_key(Path(f"{berger}.pub")).signing
    assert fingerprint is not None
    assert f"signing fingerprint: {fingerprint.fingerprint()}" in generated

    config = tmp_path / "lotse.toml"
    config.write_text(
        f'[storage]\nurl = "sqlite+aiosqlite:///{tmp_path}/lotse.db"\ndata_dir = "{tmp_path}/d"\n'
    )
    add_first = ["counsellor", "add", "Berger", "--public-key", f"{berger}.pub", "--first"]
    assert main([*add_first, "--by", str(berger), "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f'[keys]\nanchor = "{fingerprint.fingerprint()}"' in out
    anchor_lines = out[out.index("[keys]") :]
    with config.open("a") as handle:
        handle.write(anchor_lines)
    add_kaya = ["counsellor", "add", "Kaya", "--public-key", f"{kaya}.pub", "--by", str(berger)]
    assert main([*add_kaya, "--config", str(config)]) == 0
    capsys.readouterr()
    assert main(["counsellor", "list", "--config", str(config)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == ["Berger", "Kaya"]
    assert " signs " in listed[0] and " endorsed " in listed[1]
    loaded = load_config(config)
    assert loaded.keys.anchor == fingerprint.fingerprint()
    assert anchor_check(loaded).line().startswith("ok")
    assert anchor_check(load_config(config)).ok

    async def seal_one() -> None:
        async with open_app(loaded) as app:
            assert app.store.anchor == fingerprint.fingerprint()
            await _new_case(app.store)

    asyncio.run(seal_one())


def test_doctor_warns_without_an_anchor(tmp_path: Path) -> None:
    storage = {"url": "sqlite+aiosqlite:///x.db", "data_dir": "d"}
    config = config_from_dict({"storage": storage}, tmp_path)
    check = anchor_check(config)
    assert check.ok and check.warning
    assert check.line().startswith("WARN  signature anchor: no [keys] anchor")


async def test_an_official_whose_case_cannot_be_sealed_is_told_to_try_again_later(
    empty_store: Store, flow_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    berger = _v2("Berger")
    await _first(empty_store, berger, signed=False)
    clock = Clock(WEDNESDAY_10)
    bench = Bench(flow_engine, empty_store, clock, SETTINGS)
    bench.store.anchor = _anchor(berger)  # what open_app does with [keys] anchor
    person = bench.person()
    for line in NORMAL_INTAKE:
        await person.say(line)
    replies = await person.say("absenden")
    assert await bench.store.cases() == []
    assert "in ein paar Minuten noch einmal" in replies[-1]
    alerts = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(
        "signature chain check failed: the team key carries no signature" in a for a in alerts
    )
    assert not any("CANARY" in alert for alert in alerts)
    await _add(bench.store, berger, _v2("Schmidt"))  # Berger's first --by action signs the key
    replies = await person.say("absenden")
    assert any("L-" in reply for reply in replies)
    assert len(await bench.store.cases()) == 1


async def test_with_an_anchor_a_key_change_that_cannot_be_signed_is_refused(
    empty_store: Store,
) -> None:
    """Else a revocation by a version 1 key would leave an unsigned team key: no new case."""
    berger, old = _v2("Berger"), UnlockedKey("Alt", PrivateKey.generate())
    await _first(empty_store, berger)
    async with empty_store.unit() as unit:
        await add(unit, berger, CounsellorEntry("Alt", "Alt"), old.public)
    newer = _v2("Neu")
    await _add(empty_store, old, newer)  # before the anchor: Neu is not endorsed
    store = _anchored(empty_store, _anchor(berger))
    with pytest.raises(KeyringError, match=r"would leave a team key .*\(a counsellor in the"):
        async with store.unit() as unit:
            await revoke(unit, newer, "Alt")  # Neu signs, but the chain does not reach Berger
    with pytest.raises(KeyringError, match=r"\[keys\] anchor is set, so the new team key must"):
        async with store.unit() as unit:
            await revoke(unit, old, "Berger")
    with pytest.raises(KeyringError, match="so adding a counsellor must be signed"):
        await _add(store, old, _v2("Neu2"))
    await _new_case(store)  # nothing changed: Berger's signed team key still seals
    async with store.unit() as unit:
        await revoke(unit, berger, "Alt")
    await _new_case(store, "official-2")
