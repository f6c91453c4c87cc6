"""The signature chain: team keys signed by counsellors, counsellors endorsed by counsellors.

The HMAC bindings (storage/key_binding.py) stop someone who can write the database
but lacks the server secret. Someone holding both could recompute them; they cannot
make signatures, which only counsellors' key files can. With `[keys] anchor` set to
the signing fingerprint of the first counsellor (config outside the database),
before a case key is sealed to the team key the server checks: the team key is
signed by an active counsellor, whose endorsements lead back to the anchor. Without
an anchor a present signature is checked against its signer's stored key only,
which catches damage but not someone holding the database and the secret.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable
from typing import Protocol, cast

from sqlalchemy import Executable, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.key_binding import KeyBindingError, Team
from storage.models import COUNSELLORS, Counsellor, TeamKey
from storage.signing import (
    SignatureError,
    SigningKey,
    SigningPublicKey,
    counsellor_statement,
    team_statement,
)

logger = logging.getLogger(__name__)


class ChainError(KeyBindingError):
    """The team key's signature chain does not hold: nothing is sealed to it."""

    def __init__(self, message: str, check: str) -> None:
        super().__init__(message)
        self.check = check  # which check failed, in a few words


def normal_fingerprint(fingerprint: str) -> str:
    return "".join(fingerprint.split()).lower()


def sign_team(team: TeamKey, signer: Counsellor, signing: SigningKey) -> None:
    """Call once the team key has its id (after a flush)."""
    team.signature = signing.sign(team_statement(team.id, team.public_key))
    team.signed_by = signer.id


def endorse(counsellor: Counsellor, endorser: Counsellor, signing: SigningKey) -> None:
    assert counsellor.signing_key is not None
    counsellor.endorsement = signing.sign(
        counsellor_statement(counsellor.name, counsellor.public_key, counsellor.signing_key)
    )
    counsellor.endorsed_by = endorser.id


def _refuse(team: Team, check: str) -> ChainError:
    logger.critical(
        "team key %d: signature chain check failed: %s; refusing to seal to it", team.id, check
    )
    return _error(team, check)


def _error(team: Team, check: str) -> ChainError:
    return ChainError(
        f"the signature chain of team key {team.id} does not hold ({check}); nothing is sealed "
        "to it. Restore the database from a backup and run: lotse audit verify",
        check,
    )


def _utc(moment: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes (everything Lotse writes is UTC); a fresh row's are not."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


class _Signer(Protocol):
    """A counsellor as the chain reads them (a row: their handles play no part)."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def public_key(self) -> bytes: ...
    @property
    def added_at(self) -> dt.datetime: ...
    @property
    def revoked_at(self) -> dt.datetime | None: ...
    @property
    def signing_key(self) -> bytes | None: ...
    @property
    def endorsement(self) -> bytes | None: ...
    @property
    def endorsed_by(self) -> int | None: ...


@functools.cache
def _counsellor_query() -> Executable:
    return select(COUNSELLORS).where(COUNSELLORS.c.id == bindparam("counsellor_id"))  # built once


async def _counsellor(session: AsyncSession, counsellor_id: int | None) -> _Signer | None:
    if counsellor_id is None:
        return None
    found = await session.execute(_counsellor_query(), {"counsellor_id": counsellor_id})
    return cast(_Signer | None, found.first())


def _signing_key(counsellor: _Signer) -> SigningPublicKey | None:
    if counsellor.signing_key is None:
        return None
    try:
        return SigningPublicKey.from_bytes(counsellor.signing_key)
    except ValueError:
        return None


async def verify_team(
    session: AsyncSession, team: Team, anchor: str | None, *, alert: bool = True
) -> None:
    """Raise ChainError unless the team key's signature (and, with an anchor, chain) holds.

    `alert=False`: a check before a key change, whose refusal is the operator's answer.
    """
    refuse = _refuse if alert else _error
    if team.signature is None:
        if anchor:
            raise refuse(team, "the team key carries no signature")
        return
    await session.flush()  # the counsellors are read as rows: a change of this unit first
    signer = await _counsellor(session, team.signed_by)
    if signer is None:
        raise refuse(team, "its signer is not a counsellor")
    if signer.revoked_at is not None:
        raise refuse(team, "its signer was revoked")
    signer_key = _signing_key(signer)
    if signer_key is None:
        raise refuse(team, "its signer has no signing key")
    try:
        signer_key.verify(team.signature, team_statement(team.id, team.public_key))
    except SignatureError:
        raise refuse(team, "the team key signature does not verify") from None
    if anchor:
        await _walk_to_anchor(
            session, team, signer, signer_key, normal_fingerprint(anchor), refuse=refuse
        )


async def _walk_to_anchor(
    session: AsyncSession,
    team: Team,
    counsellor: _Signer,
    key: SigningPublicKey,
    anchor: str,
    *,
    refuse: Callable[[Team, str], ChainError],
) -> None:
    seen: set[int] = set()
    while normal_fingerprint(key.fingerprint()) != anchor:
        seen.add(counsellor.id)
        if counsellor.endorsement is None or counsellor.endorsed_by is None:
            raise refuse(team, "a counsellor in the chain is not endorsed and is not the anchor")
        endorser = await _counsellor(session, counsellor.endorsed_by)
        if endorser is None or endorser.id in seen:
            raise refuse(team, "an endorser is not a counsellor")
        if endorser.revoked_at is not None and _utc(endorser.revoked_at) < _utc(
            counsellor.added_at
        ):
            raise refuse(team, "an endorser was revoked before endorsing")
        endorser_key = _signing_key(endorser)
        if endorser_key is None:
            raise refuse(team, "an endorser has no signing key")
        assert counsellor.signing_key is not None
        try:
            endorser_key.verify(
                counsellor.endorsement,
                counsellor_statement(
                    counsellor.name, counsellor.public_key, counsellor.signing_key
                ),
            )
        except SignatureError:
            raise refuse(team, "an endorsement does not verify") from None
        counsellor, key = endorser, endorser_key
