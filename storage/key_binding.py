"""Stored public keys are bound to their place with an HMAC under the server secret.

The server seals to public keys it reads from the database: the team key (for
each new case key) and each case key (for every answer, message, file and note).
Someone who can write to the database but does not hold the server secret could
put their own public key there and read everything sealed afterwards. So every
such key carries a binding – HMAC-SHA256 over what the key is, where it belongs
and the key's bytes – and the server refuses to seal to a key whose binding is
missing or wrong. Bindings are written where the keys are made; keys from before
bindings existed are bound once, at the first start after the upgrade
(storage/secret_check.py).

Counsellor public keys are pinned in the audit chain instead: adding a counsellor
records the SHA-256 of their key in an HMAC'd entry, and before the team key is
sealed to a stored counsellor key (when the team key is rotated) that key must
match its pin.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.audit import Action
from storage.models import AuditEntry, Case, Counsellor, TeamKey
from storage.sealing import PublicKey
from storage.server_secret import ServerKeys

logger = logging.getLogger(__name__)


class Team(Protocol):
    """A team key as the checks read it: a stored object or a row."""

    @property
    def id(self) -> int: ...
    @property
    def public_key(self) -> bytes: ...
    @property
    def binding(self) -> str | None: ...
    @property
    def signature(self) -> bytes | None: ...
    @property
    def signed_by(self) -> int | None: ...


class KeyBindingError(Exception):
    """A stored public key does not carry a valid binding: it was changed in the database."""


def _binding(keys: ServerKeys, what: str, where: str | int, public_key: bytes) -> str:
    message = f"{what}|{where}|".encode() + hashlib.sha256(public_key).digest()
    return hmac.new(keys.binding_key, message, hashlib.sha256).hexdigest()


def bind_team(keys: ServerKeys, team: TeamKey) -> None:
    """Call once the team key has its id (after a flush)."""
    team.binding = _binding(keys, "team-key", team.id, team.public_key)


def bind_case(keys: ServerKeys, case: Case) -> None:
    assert case.public_key is not None
    case.key_binding = case_binding(keys, case.reference, case.public_key)


def case_binding(keys: ServerKeys, reference: str, public_key: bytes) -> str:
    return _binding(keys, "case-key", reference, public_key)


def team_public_key(keys: ServerKeys, team: Team) -> PublicKey:
    """The team's public key, if its binding holds."""
    expected = _binding(keys, "team-key", team.id, team.public_key)
    if team.binding is None or not hmac.compare_digest(team.binding, expected):
        logger.critical(
            "team key %d: its public key does not match its binding (changed in the database?); "
            "refusing to seal to it",
            team.id,
        )
        raise KeyBindingError(
            f"the stored public key of team key {team.id} was changed in the database; nothing "
            "is sealed to it. Restore the database from a backup and run: lotse audit verify"
        )
    return PublicKey.from_bytes(team.public_key)


def case_public_key(keys: ServerKeys, case: Case) -> PublicKey:
    """A case's public key, if its binding holds."""
    if case.public_key is None:
        raise KeyBindingError(f"{case.reference} has no case key (stored before sealing existed)")
    expected = _binding(keys, "case-key", case.reference, case.public_key)
    if case.key_binding is None or not hmac.compare_digest(case.key_binding, expected):
        logger.critical(
            "case %s: its public key does not match its binding (changed in the database?); "
            "refusing to seal to it",
            case.reference,
        )
        raise KeyBindingError(
            f"the stored public key of {case.reference} was changed in the database; nothing "
            "is sealed to it. Restore the database from a backup and run: lotse audit verify"
        )
    return PublicKey.from_bytes(case.public_key)


async def bind_unbound(session: AsyncSession, keys: ServerKeys) -> int:
    """Bind the keys written before bindings existed; only at the first start after upgrading."""
    count = 0
    for team in await session.scalars(select(TeamKey).where(TeamKey.binding.is_(None))):
        bind_team(keys, team)
        count += 1
    unbound = select(Case).where(Case.key_binding.is_(None), Case.public_key.is_not(None))
    for case in await session.scalars(unbound):
        bind_case(keys, case)
        count += 1
    return count


def key_pin(public: PublicKey) -> dict[str, str | int]:
    """What the audit entry of an added counsellor records about their key."""
    return {"fingerprint": public.fingerprint(), "key_sha256": _key_hash(public.to_bytes())}


def _key_hash(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()


async def pinned_counsellor_key(session: AsyncSession, counsellor: Counsellor) -> PublicKey:
    """A counsellor's stored public key, if it is the one the audit chain pinned at adding.

    Entries written before pins existed carry none; such a counsellor's key is taken as it is.
    """
    added = await session.scalars(
        select(AuditEntry).where(AuditEntry.action == Action.COUNSELLOR_ADDED.value)
    )
    pins = [json.loads(entry.detail) for entry in added]
    mine = [pin for pin in pins if pin.get("counsellor") == counsellor.name]
    hashes = {pin["key_sha256"] for pin in mine if "key_sha256" in pin}
    if not mine or (hashes and _key_hash(counsellor.public_key) not in hashes):
        logger.critical(
            "counsellor %d: the stored public key is not the one pinned in the audit log; "
            "refusing to seal to it",
            counsellor.id,
        )
        raise KeyBindingError(
            "the stored public key of a counsellor is not the one recorded when they were added "
            "(changed in the database?); nothing was sealed. Restore the database from a backup "
            "and run: lotse audit verify"
        )
    return PublicKey.from_bytes(counsellor.public_key)
