"""The operator's and counsellors' commands: keys, counsellors, cases, retention, audit."""

from __future__ import annotations

import datetime as dt
import getpass
import os
import sys
from pathlib import Path

from bot import casebook
from bot.app import App, settings_from_config
from bot.core.revocation import revoke_and_release
from bot.housekeeping import purge_once
from storage import queue
from storage.audit import Action, chain_started, load_chain, verify
from storage.casefile import open_case
from storage.keyfile import (
    MINIMUM_PASSPHRASE,
    KeyFileError,
    public_path,
    read_public_key,
    unlock,
    write_key_pair,
)
from storage.keyring import (
    CounsellorEntry,
    KeyringError,
    add,
    all_counsellors,
    bootstrap,
    current_team,
)
from storage.repository import Store


class CommandError(Exception):
    """A command given with arguments that do not fit; the message says which."""


PASSPHRASE_ENV = "LOTSE_PASSPHRASE"  # noqa: S105  (the variable's name, not a passphrase)


def passphrase(prompt: str, confirm: bool = False) -> str:
    """From LOTSE_PASSPHRASE (for scripts), else asked without echo."""
    given = os.environ.get(PASSPHRASE_ENV)
    if given is not None:
        return given
    if not sys.stdin.isatty():
        raise KeyFileError(f"no terminal to ask for the passphrase: set {PASSPHRASE_ENV}")
    first = getpass.getpass(prompt)
    if confirm and getpass.getpass("Repeat the passphrase: ") != first:
        raise KeyFileError("the two passphrases differ; nothing was written")
    return first


def generate_keys(out: Path, name: str) -> int:
    secret = passphrase(f"Passphrase for {out}: ", confirm=True)
    if len(secret) < MINIMUM_PASSPHRASE:
        raise KeyFileError(f"the passphrase needs at least {MINIMUM_PASSPHRASE} characters")
    public = write_key_pair(out, name, secret)
    print(f"private key: {out} (keep it on this machine; it is encrypted with your passphrase)")
    print(f"public key:  {out}.pub (hand this to the operator)")
    print(f"fingerprint: {public.fingerprint()}")
    signing = read_public_key(public_path(out)).signing
    assert signing is not None
    print(f"signing fingerprint: {signing.fingerprint()}")
    return 0


async def add_counsellor(
    app: App,
    name: str,
    public_key: Path,
    *,
    display_name: str | None,
    handles: tuple[tuple[str, str], ...] = (),
    by: Path | None,
    first: bool,
) -> int:
    public = read_public_key(public_key)
    entry = CounsellorEntry(name, display_name or name, handles)
    if not first and by is None:
        raise KeyringError(
            "name --by KEYFILE (an existing counsellor) or --first (with --by THEIR.key, "
            "optional, to sign the team key at once)"
        )
    unlocked = unlock(by, passphrase(f"Passphrase for {by}: ")) if by is not None else None
    async with app.store.unit() as unit:
        if first:
            await bootstrap(unit, entry, public.key, signing=public.signing, own=unlocked)
        else:
            assert unlocked is not None
            await add(unit, unlocked, entry, public.key, signing=public.signing)
    print(f"added {name} (fingerprint {public.key.fingerprint()})")
    if first and public.signing is not None:
        print("the signature chain's anchor; put these lines into the configuration:")
        print("[keys]")
        print(f'anchor = "{public.signing.fingerprint()}"')
    elif public.signing is None:
        print(
            f"{public_key} is a version 1 key file: {name} can open cases but cannot sign; "
            "a new key from lotse keys generate can"
        )
    return 0


async def list_counsellors(app: App) -> int:
    async with app.store.unit() as unit:
        counsellors = await all_counsellors(unit.session)
    if not counsellors:
        print("no counsellors yet: lotse counsellor add NAME --public-key FILE --first")
        return 0
    for counsellor in counsellors:
        state = f"revoked {counsellor.revoked_at:%Y-%m-%d}" if counsellor.revoked_at else "active"
        handles = ", ".join(f"{held.channel}:{held.handle}" for held in counsellor.handles)
        signs = (
            "cannot sign"
            if counsellor.signing_key is None
            else "endorsed"
            if counsellor.endorsement is not None
            else "signs"
        )
        print(
            f"{counsellor.name:<24} {state:<18} shown as {counsellor.display_name!r:<20} "
            f"{counsellor.fingerprint}  {signs:<11}  {handles}"
        )
    return 0


async def revoke_counsellor(app: App, name: str, by: Path) -> int:
    unlocked = unlock(by, passphrase(f"Passphrase for {by}: "))
    async with app.store.unit() as unit:
        settings = settings_from_config(app.config)
        resealed, released = await revoke_and_release(
            unit, app.engine.texts, settings, unlocked, name
        )
    print(f"revoked {name}; new team key; {resealed} case key(s) re-sealed")
    if released:
        print(f"{len(released)} case(s) {name} held are back in the queue: {', '.join(released)}")
    return 0


async def list_cases(store: Store) -> int:
    cases = await store.cases()
    if not cases:
        print("no cases")
    for case in cases:
        urgent = "URGENT" if case.urgent else ""
        created = f"{case.created_at:%Y-%m-%d %H:%M} UTC"
        print(f"{case.reference}  {case.status:<10} {urgent:<6} {case.channel:<9} {created}")
    return 0


async def case_stats(app: App, since: dt.date | None, until: dt.date | None) -> int:
    """Times to claim and to first reply for cases submitted in a period (metadata only)."""
    until = until or app.store.clock().date()
    since = since or until - dt.timedelta(days=30)
    if since > until:
        raise CommandError(f"--since {since} lies after --until {until}")
    start = dt.datetime.combine(since, dt.time(), tzinfo=dt.UTC)
    end = dt.datetime.combine(until + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    async with app.store.unit() as unit:
        found = await queue.stats(unit, start, end)

    def minutes(value: float | None) -> str:
        return "–" if value is None else f"{value} min"

    outcomes = ", ".join(f"{name} {count}" for name, count in sorted(found.outcomes.items()))
    print(f"cases submitted {since} to {until} (UTC): {found.submitted}, urgent: {found.urgent}")
    print(f"claimed: {found.claimed}, closed: {found.closed}, outcomes: {outcomes or '–'}")
    print(
        f"time to claim: median {minutes(found.median_minutes_to_claim)}, "
        f"longest {minutes(found.longest_minutes_to_claim)}"
    )
    print(f"time to first counsellor reply: median {minutes(found.median_minutes_to_first_reply)}")
    return 0


async def show_case(app: App, reference: str, key: Path) -> int:
    unlocked = unlock(key, passphrase(f"Passphrase for {key}: "))
    async with app.store.unit() as unit:
        case, counsellor = await open_case(unit, unlocked, reference)
        await unit.audit(Action.CASE_VIEWED, counsellor, reference)
    print(casebook.as_text(app.engine, case, app.config.staff.language), end="")
    return 0


async def export_case(app: App, reference: str, key: Path, out: Path) -> int:
    unlocked = unlock(key, passphrase(f"Passphrase for {key}: "))
    async with app.store.unit() as unit:
        case, counsellor = await open_case(unit, unlocked, reference)
        target = casebook.export(app.engine, case, out, app.config.staff.language)
        await unit.audit(Action.CASE_EXPORTED, counsellor, reference, {"files": len(case.files)})
    print(f"exported {reference} to {target}")
    print(f"check it with: cd {target} && sha256sum -c {casebook.MANIFEST}")
    return 0


async def purge(app: App) -> int:
    report = await purge_once(app.store, app.config.counselling)
    print(
        f"deleted {report.cases} closed case(s) past retention, {report.intakes} abandoned "
        f"intake(s), {report.files} loose file(s), {report.events} old delivery record(s)"
    )
    return 0


async def verify_audit(store: Store) -> int:
    async with store.unit() as unit:
        chain, head = await load_chain(unit.session)
        begun = await current_team(unit.session) is not None or await chain_started(unit.session)
    problem = verify(store.keys.audit_key, chain, head, counsellors_exist=begun)
    if problem is not None:
        print(f"audit chain BROKEN at {problem}", file=sys.stderr)
        return 1
    print(f"audit chain intact: {len(chain)} entries")
    return 0
