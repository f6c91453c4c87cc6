"""When a counsellor's access is revoked, the cases they held go back to the queue.

Runs in the revocation's transaction (`lotse counsellor revoke`): each released case
is announced in its thread (who is gone, nothing of the content) and its official is
told the case waits for someone new; urgent cases are raised again at the next tick.
"""

from __future__ import annotations

from sqlalchemy import select

from bot.core.settings import Settings
from flows.texts import Texts
from storage import outbox, queue
from storage.keyfile import UnlockedKey
from storage.keyring import revoke
from storage.models import Counsellor
from storage.repository import Unit


async def revoke_and_release(
    unit: Unit, texts: Texts, settings: Settings, by: UnlockedKey, name: str
) -> tuple[int, list[str]]:
    """Revoke `name` (see storage.keyring.revoke) and release their cases, in one transaction.

    Returns the number of re-sealed cases and the references now back in the queue.
    """
    resealed = await revoke(unit, by, name)
    revoked = await unit.session.scalar(select(Counsellor).where(Counsellor.name == name))
    assert revoked is not None  # revoke() found them
    return resealed, await release_cases_of(unit, texts, settings, revoked, by.name)


async def release_cases_of(
    unit: Unit, texts: Texts, settings: Settings, revoked: Counsellor, by: str
) -> list[str]:
    """Release what `revoked` held; returns the references."""
    cases = await queue.release_held_by(unit, revoked, by, settings.escalate_after)
    for case in cases:
        text = texts.get("staff_holder_revoked", settings.staff_language, name=revoked.display_name)
        await outbox.to_staff(unit, case.reference, text, urgent=case.urgent)
        await outbox.to_official_of(
            unit, case, lambda language: texts.get("released_notice", language)
        )
    return [case.reference for case in cases]
