"""Recognising the server secret a database was written with.

Without this, a missing `server.secret` is silently replaced by a new one at the
next start: officials are greeted as strangers, nothing in progress opens, and
the audit chain no longer verifies. So the database keeps a check value derived
from the secret (an HMAC of a fixed label under a key derived from it; it reveals
nothing about the secret), and a start is refused when the database holds data
but the secret is missing or does not produce that value.

The check value is written at the server's first start on a database: a fresh
one, or one from before check values existed. For the latter, the secret is
first tested against what the database already holds (the audit entries' HMACs,
an intake in progress), and the public keys written before bindings existed are
bound (storage/key_binding.py). Writing the check value is audited, so from then
on the audit log is never empty (storage/audit.py refuses to start it again), and
a check value emptied later is noticed by the entry that recorded it. If the
audit log does not verify, nothing is recorded until it is restored.
"""

from __future__ import annotations

import hmac
import logging

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from storage.audit import SYSTEM, Action, entry_holds, load_chain, verify
from storage.key_binding import bind_unbound
from storage.models import (
    AuditEntry,
    AuditHead,
    Case,
    Conversation,
    Counsellor,
    OutboxMessage,
    ServerCheck,
    StoredBlob,
    TeamKey,
)
from storage.repository import Store
from storage.server_secret import DecryptionError, SecretError

logger = logging.getLogger(__name__)
_DATA = (Conversation, StoredBlob, Case, Counsellor, TeamKey, AuditEntry, AuditHead, OutboxMessage)


async def holds_data(engine: AsyncEngine) -> bool:
    """Whether anything was ever written with a server secret (or its check value is set)."""
    async with engine.connect() as connection:
        for table in _DATA:
            if await connection.scalar(select(exists().select_from(table))):
                return True
        check = await connection.scalar(select(ServerCheck.secret_check).where(ServerCheck.id == 1))
        return check is not None


def _mismatch(source: str) -> SecretError:
    return SecretError(
        f"{source} does not belong to this database (the database was written with another "
        "server secret): restore the right secret from your backup; a new one cannot open the data"
    )


async def confirm(store: Store, source: str) -> None:
    """Refuse a secret the database was not written with; on a first start, record it."""
    async with store.unit() as unit:
        session, keys = unit.session, unit.keys
        check = await session.get(ServerCheck, 1)
        if check is not None and check.secret_check is not None:
            if not hmac.compare_digest(check.secret_check, keys.check_value):
                raise _mismatch(source)
            return
        if not await _fits_data(session, store, source):
            return
        bound = await bind_unbound(session, keys)
        await unit.audit(Action.SERVER_CHECK_SET, SYSTEM, detail={"keys_bound": bound})
        if check is None:
            check = ServerCheck(id=1)
            session.add(check)
        check.secret_check = keys.check_value


async def _fits_data(session: AsyncSession, store: Store, source: str) -> bool:
    """A database without a check value: may this secret's check value be recorded now?

    Raises if the secret does not open what the database holds. Returns False (and
    records nothing) if the audit log was tampered with: `lotse audit verify` then
    says where, and every command that would add to the log refuses.
    """
    entries, head = await load_chain(session)
    if entries and not any(entry_holds(store.keys.audit_key, entry) for entry in entries):
        raise _mismatch(source)
    conversation = (await session.scalars(select(Conversation).limit(1))).first()
    if conversation is not None:
        try:
            store.keys.decrypt(conversation.state, f"state:{conversation.sender_key}")
        except DecryptionError as error:
            raise _mismatch(source) from error
    counsellors = await session.scalar(select(exists().select_from(Counsellor)))
    broken = verify(store.keys.audit_key, entries, head, counsellors_exist=bool(counsellors))
    if broken is not None or any(entry.action == Action.SERVER_CHECK_SET for entry in entries):
        # The check value was removed, or the log was changed: leave it to be restored.
        logger.info("audit log does not verify; the server secret's check value is not recorded")
        return False
    return True
