"""Counsellors, the team key and the case keys: who can open what.

    counsellor key (their machine) ──opens──▶ team key wrap ──opens──▶ case key ──opens──▶ items

The server stores only public keys and sealed private keys. Adding a counsellor
is done by an existing one (their key opens the team key, which is then sealed to
the newcomer); revoking one rotates the team key and re-seals every case key to
the new one, in one transaction, so the revoked key opens nothing afterwards.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Protocol, cast

from sqlalchemy import Executable, delete, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from storage.audit import Action
from storage.chain import ChainError, endorse, sign_team, verify_team
from storage.key_binding import Team, bind_case, bind_team, key_pin, pinned_counsellor_key
from storage.keyfile import UnlockedKey
from storage.models import (
    TEAM_KEYS,
    Case,
    CaseItem,
    Counsellor,
    CounsellorHandle,
    StoredBlob,
    TeamKey,
    TeamKeyWrap,
)
from storage.sealing import (
    PrivateKey,
    PublicKey,
    SealError,
    case_key_info,
    context,
    file_info,
    item_info,
    open_sealed,
    seal,
)
from storage.server_secret import ServerKeys
from storage.signing import SigningKey, SigningPublicKey

# PostgreSQL advisory lock: key changes exclusive, sealing new cases shared, so no
# case is ever sealed to a team key that a concurrent revocation is retiring.
KEYRING_LOCK = 0x4C4F5453  # "LOTS"


class KeyringError(Exception):
    """A key operation that cannot be done; the message says why and what to do."""


class Transaction(Protocol):
    """What a key change needs from its transaction (a `storage.repository.Unit`)."""

    session: AsyncSession
    now: dt.datetime
    keys: ServerKeys
    anchor: str | None  # `[keys] anchor`: set, key changes must be signed

    async def audit(
        self,
        action: Action,
        actor: str,
        case_reference: str | None = None,
        detail: dict[str, str | int] | None = None,
    ) -> None: ...


@dataclass(frozen=True)
class CounsellorEntry:
    name: str
    display_name: str
    # (channel, the platform's id for them): how each staff room knows them, one per channel
    handles: tuple[tuple[str, str], ...] = ()


async def lock_keyring(session: AsyncSession, shared: bool) -> None:
    """Serialise key changes against each other and against new cases (PostgreSQL).

    SQLite needs nothing: every Lotse transaction there takes the write lock up front.
    """
    if session.get_bind().dialect.name == "postgresql":
        function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        await session.execute(text(f"SELECT {function}({KEYRING_LOCK})"))


async def current_team(session: AsyncSession) -> TeamKey | None:
    query = select(TeamKey).where(TeamKey.retired_at.is_(None)).order_by(TeamKey.id.desc()).limit(1)
    return (await session.scalars(query)).first()


@functools.cache
def _sealing_team_query() -> Executable:
    newest = TEAM_KEYS.c.id.desc()
    return select(TEAM_KEYS).where(TEAM_KEYS.c.retired_at.is_(None)).order_by(newest).limit(1)


async def sealing_team(session: AsyncSession) -> Team | None:
    """The team key a new case key is sealed to, as a row (read for every submission)."""
    await session.flush()  # a key change of this unit first
    return cast(Team | None, (await session.execute(_sealing_team_query())).first())


async def active_counsellors(session: AsyncSession) -> list[Counsellor]:
    query = select(Counsellor).where(Counsellor.revoked_at.is_(None)).order_by(Counsellor.name)
    return list(await session.scalars(query))


async def all_counsellors(session: AsyncSession) -> list[Counsellor]:
    return list(
        await session.scalars(select(Counsellor).order_by(Counsellor.added_at, Counsellor.id))
    )


def _wrap_info(team: TeamKey, counsellor: Counsellor) -> bytes:
    return context("team-key", team.id, counsellor.id)


def own_signing_key(counsellor: Counsellor, unlocked: UnlockedKey) -> SigningKey | None:
    """The acting counsellor's signing key, if their key file has one and it is the one stored.

    A version 1 key file, or a counsellor stored before signing keys existed, signs nothing.
    """
    signing = unlocked.signing
    if signing is None or counsellor.signing_key != signing.public_key().to_bytes():
        return None
    return signing


def _must_sign(unit: Transaction, signing: SigningKey | None, what: str) -> None:
    """With an anchor, an unsigned key change would stop new cases being sealed: refuse it."""
    if unit.anchor and signing is None:
        raise KeyringError(
            f"[keys] anchor is set, so {what} must be signed, and this key file cannot sign "
            "(a version 1 file, or a key stored without its signing key): act with another "
            "counsellor's key file, or make a new key with lotse keys generate and have a "
            "colleague add it"
        )


async def _must_reach_anchor(unit: Transaction, team: TeamKey) -> None:
    """With an anchor, a team key whose chain fails would stop new cases: refuse the change."""
    if not unit.anchor:
        return
    try:
        await verify_team(unit.session, team, unit.anchor, alert=False)
    except ChainError as error:
        raise KeyringError(
            "this change would leave a team key that new cases cannot be sealed to "
            f"({error.check}); act with the key file of a counsellor endorsed on the way "
            "to [keys] anchor"
        ) from error


async def _add_counsellor_row(
    session: AsyncSession,
    entry: CounsellorEntry,
    public: PublicKey,
    now: dt.datetime,
    signing: SigningPublicKey | None = None,
) -> Counsellor:
    for other in await active_counsellors(session):
        if other.name == entry.name:
            raise KeyringError(f"a counsellor named {entry.name!r} exists already")
        if other.public_key == public.to_bytes():
            raise KeyringError(f"this public key belongs to {other.name!r} already")
    revoked = (
        await session.scalars(select(Counsellor).where(Counsellor.name == entry.name))
    ).first()
    if revoked is not None:
        raise KeyringError(f"{entry.name!r} was revoked; add them again under a new name")
    await _check_handles(session, entry)
    counsellor = Counsellor(
        name=entry.name,
        display_name=entry.display_name,
        handles=[
            CounsellorHandle(channel=channel, handle=handle) for channel, handle in entry.handles
        ],
        public_key=public.to_bytes(),
        fingerprint=public.fingerprint(),
        signing_key=signing.to_bytes() if signing else None,
        added_at=now,
    )
    session.add(counsellor)
    await session.flush()
    return counsellor


async def _check_handles(session: AsyncSession, entry: CounsellorEntry) -> None:
    """One handle per channel, and none that another counsellor holds (revoked ones hold none)."""
    per_channel: dict[str, str] = {}
    for channel, handle in entry.handles:
        if channel in per_channel:
            raise KeyringError(
                f"two {channel} handles given ({per_channel[channel]}, {handle}); "
                "a counsellor has one per channel"
            )
        per_channel[channel] = handle
        holder = await session.scalar(
            select(Counsellor.name)
            .join(CounsellorHandle, CounsellorHandle.counsellor_id == Counsellor.id)
            .where(CounsellorHandle.channel == channel, CounsellorHandle.handle == handle)
        )
        if holder is not None:
            raise KeyringError(f"the handle {channel}:{handle} belongs to {holder!r} already")


async def bootstrap(
    unit: Transaction,
    entry: CounsellorEntry,
    public: PublicKey,
    *,
    signing: SigningPublicKey | None = None,
    own: UnlockedKey | None = None,
) -> Counsellor:
    """The first counsellor: creates the team key and seals it to them.

    `signing` is their signing key (from a version 2 .pub); `own`, their unlocked key
    file when at hand, signs the team key at once (else their first --by action does).
    """
    session, now = unit.session, unit.now
    await lock_keyring(session, shared=False)
    if await active_counsellors(session):
        raise KeyringError(
            "counsellors exist already; an existing counsellor adds new ones with --by KEYFILE"
        )
    if own is not None and own.public.to_bytes() != public.to_bytes():
        raise KeyringError("--by with --first must be the first counsellor's own key file")
    counsellor = await _add_counsellor_row(session, entry, public, now, signing)
    team_private = PrivateKey.generate()
    team = TeamKey(public_key=team_private.public_key().to_bytes(), created_at=now)
    session.add(team)
    await session.flush()
    bind_team(unit.keys, team)
    own_signing = own_signing_key(counsellor, own) if own is not None else None
    if own_signing is not None:
        sign_team(team, counsellor, own_signing)
    session.add(
        TeamKeyWrap(
            team_key_id=team.id,
            counsellor_id=counsellor.id,
            wrapped=seal(public, team_private.to_bytes(), _wrap_info(team, counsellor)),
        )
    )
    await unit.audit(
        Action.COUNSELLOR_ADDED,
        entry.name,
        detail={"counsellor": entry.name, **key_pin(public)},
    )
    await unit.audit(Action.TEAM_KEY_CREATED, entry.name, detail={"team_key": team.id})
    return counsellor


@dataclass(frozen=True)
class OpenTeam:
    counsellor: Counsellor
    team: TeamKey
    private: PrivateKey


async def open_team(session: AsyncSession, unlocked: UnlockedKey) -> OpenTeam:
    """The team private key, opened with a counsellor's unlocked key."""
    public = unlocked.public.to_bytes()
    counsellor = (
        await session.scalars(select(Counsellor).where(Counsellor.public_key == public))
    ).first()
    if counsellor is None:
        raise KeyringError("this key belongs to no counsellor of this Lotse")
    if counsellor.revoked_at is not None:
        raise KeyringError(f"the key of {counsellor.name!r} was revoked and opens nothing any more")
    team = await current_team(session)
    if team is None:
        raise KeyringError("there is no team key yet; add the first counsellor with --first")
    wrap = (
        await session.scalars(
            select(TeamKeyWrap).where(
                TeamKeyWrap.team_key_id == team.id, TeamKeyWrap.counsellor_id == counsellor.id
            )
        )
    ).first()
    if wrap is None:
        raise KeyringError(
            f"the team key is not sealed to {counsellor.name!r}; ask a colleague to re-add you"
        )
    try:
        private = PrivateKey.from_bytes(
            open_sealed(unlocked.key, wrap.wrapped, _wrap_info(team, counsellor))
        )
    except SealError as error:
        raise KeyringError(
            "the team key does not open with this key: the stored wrap was changed"
        ) from error
    return OpenTeam(counsellor, team, private)


async def add(
    unit: Transaction,
    by: UnlockedKey,
    entry: CounsellorEntry,
    public: PublicKey,
    *,
    signing: SigningPublicKey | None = None,
) -> Counsellor:
    session, now = unit.session, unit.now
    await lock_keyring(session, shared=False)
    opened = await open_team(session, by)
    counsellor = await _add_counsellor_row(session, entry, public, now, signing)
    by_signing = own_signing_key(opened.counsellor, by)
    _must_sign(unit, by_signing, "adding a counsellor")
    if by_signing is not None:
        if signing is not None:
            endorse(counsellor, opened.counsellor, by_signing)
        if opened.team.signature is None:  # made at --first without the private key at hand
            sign_team(opened.team, opened.counsellor, by_signing)
            await _must_reach_anchor(unit, opened.team)
    session.add(
        TeamKeyWrap(
            team_key_id=opened.team.id,
            counsellor_id=counsellor.id,
            wrapped=seal(public, opened.private.to_bytes(), _wrap_info(opened.team, counsellor)),
        )
    )
    await unit.audit(
        Action.COUNSELLOR_ADDED,
        opened.counsellor.name,
        detail={"counsellor": entry.name, **key_pin(public)},
    )
    return counsellor


async def _rekey_case(
    session: AsyncSession,
    case: Case,
    *,
    old_team: PrivateKey,
    old_team_id: int,
    new_team: PublicKey,
    new_team_id: int,
) -> None:
    """Give a case a new key pair and re-seal its whole record and files to it.

    Re-wrapping the old case key alone would leave it known to whoever held the old
    team key: with a copy of the database they could read what is added later.
    """
    assert case.wrapped_key is not None
    old_key = PrivateKey.from_bytes(
        open_sealed(old_team, case.wrapped_key, case_key_info(case.reference, old_team_id))
    )
    new_key = PrivateKey.generate()
    new_public = new_key.public_key()
    for item in await session.scalars(select(CaseItem).where(CaseItem.case_id == case.id)):
        info = item_info(case.reference, item.position, item.kind)
        item.content = seal(new_public, open_sealed(old_key, item.content, info), info)
    for blob in await session.scalars(select(StoredBlob).where(StoredBlob.case_id == case.id)):
        info = file_info(case.reference, blob.id)
        blob.content = seal(new_public, open_sealed(old_key, blob.content, info), info)
    case.public_key = new_public.to_bytes()
    case.wrapped_key = seal(
        new_team, new_key.to_bytes(), case_key_info(case.reference, new_team_id)
    )
    case.team_key_id = new_team_id


async def revoke(unit: Transaction, by: UnlockedKey, name: str) -> int:
    """Revoke `name`: a new team key, and every case re-keyed under it. Returns the case count."""
    session, now = unit.session, unit.now
    await lock_keyring(session, shared=False)
    opened = await open_team(session, by)
    active = await active_counsellors(session)
    target = next((counsellor for counsellor in active if counsellor.name == name), None)
    if target is None:
        raise KeyringError(
            f"there is no active counsellor named {name!r} (see: lotse counsellor list)"
        )
    remaining = [counsellor for counsellor in active if counsellor.id != target.id]
    if not remaining:
        raise KeyringError(
            "cannot revoke the last counsellor: nobody could open any case afterwards"
        )
    target.revoked_at = now
    target.handles.clear()  # they may no longer act in any staff room; the account is free

    new_private = PrivateKey.generate()
    new_team = TeamKey(public_key=new_private.public_key().to_bytes(), created_at=now)
    session.add(new_team)
    await session.flush()
    bind_team(unit.keys, new_team)
    by_signing = own_signing_key(opened.counsellor, by)
    _must_sign(unit, by_signing, "the new team key")
    if by_signing is not None:
        sign_team(new_team, opened.counsellor, by_signing)
        await _must_reach_anchor(unit, new_team)
    for counsellor in remaining:
        session.add(
            TeamKeyWrap(
                team_key_id=new_team.id,
                counsellor_id=counsellor.id,
                wrapped=seal(
                    await pinned_counsellor_key(session, counsellor),
                    new_private.to_bytes(),
                    _wrap_info(new_team, counsellor),
                ),
            )
        )
    new_public = new_private.public_key()
    cases = list(await session.scalars(select(Case).where(Case.team_key_id == opened.team.id)))
    for case in cases:
        await _rekey_case(
            session,
            case,
            old_team=opened.private,
            old_team_id=opened.team.id,
            new_team=new_public,
            new_team_id=new_team.id,
        )
        bind_case(unit.keys, case)
    opened.team.retired_at = now
    # Nobody keeps a way to the old team key: its wraps go, and with them the revoked one's.
    await session.execute(delete(TeamKeyWrap).where(TeamKeyWrap.team_key_id == opened.team.id))
    await unit.audit(Action.COUNSELLOR_REVOKED, opened.counsellor.name, detail={"counsellor": name})
    await unit.audit(
        Action.TEAM_KEY_ROTATED,
        opened.counsellor.name,
        detail={"team_key": new_team.id, "cases_resealed": len(cases)},
    )
    return len(cases)
