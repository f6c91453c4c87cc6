"""Opening a case with a counsellor's key: the counsellor side of sealing.

Every item is checked: it must open with the case key under its own reference,
position and kind, and the positions must run 0, 1, 2, … without a gap, so a
changed, moved, removed or reordered item is named rather than skipped.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from storage.keyfile import UnlockedKey
from storage.keyring import KeyringError, open_team
from storage.models import Case, CaseItem, StoredBlob
from storage.repository import Unit, aware, item_count_mac
from storage.sealing import (
    PrivateKey,
    SealError,
    case_key_info,
    file_info,
    item_info,
    open_sealed,
)


class CaseError(Exception):
    """The case cannot be opened; the message names the case and the part that failed."""


@dataclass(frozen=True)
class OpenedItem:
    position: int
    kind: str
    at: dt.datetime
    content: dict[str, Any]


@dataclass(frozen=True)
class OpenedFile:
    id: str
    name: str
    media_type: str
    data: bytes


@dataclass(frozen=True)
class OpenedCase:
    reference: str
    status: str
    urgent: bool
    channel: str
    created_at: dt.datetime
    closed_at: dt.datetime | None
    items: list[OpenedItem]
    files: list[OpenedFile]

    @property
    def intake(self) -> dict[str, Any]:
        return self.items[0].content if self.items and self.items[0].kind == "intake" else {}


async def open_case(unit: Unit, unlocked: UnlockedKey, reference: str) -> tuple[OpenedCase, str]:
    """The whole case, and the name of the counsellor who opened it."""
    case = await unit.case(reference)
    if case is None:
        raise CaseError(f"there is no case {reference} (see: lotse cases list)")
    try:
        opened = await open_team(unit.session, unlocked)
    except KeyringError as error:
        raise CaseError(str(error)) from error
    if case.wrapped_key is None or case.public_key is None:
        raise CaseError(f"{reference} was stored before cases were sealed and cannot be opened")
    if case.team_key_id != opened.team.id:
        raise CaseError(
            f"{reference} is sealed to a retired team key; its re-sealing did not complete"
        )
    try:
        case_key = PrivateKey.from_bytes(
            open_sealed(opened.private, case.wrapped_key, case_key_info(reference, opened.team.id))
        )
    except SealError as error:
        raise CaseError(f"the key of {reference} does not open: it was changed or moved") from error
    items = await _items(unit, case, case_key)
    expected = item_count_mac(unit.keys.audit_key, reference, case.item_count)
    if case.item_mac is None or not hmac.compare_digest(case.item_mac, expected):
        raise CaseError(f"{reference}: the record of how many items it has was changed")
    if len(items) != case.item_count:
        raise CaseError(
            f"{reference}: it should have {case.item_count} items but has {len(items)} "
            "(the newest were removed)"
        )
    files = await _files(unit, case, case_key, items)
    result = OpenedCase(
        reference=case.reference,
        status=case.status,
        urgent=case.urgent,
        channel=case.channel,
        created_at=aware(case.created_at),
        closed_at=aware(case.closed_at) if case.closed_at else None,
        items=items,
        files=files,
    )
    return result, opened.counsellor.name


async def _items(unit: Unit, case: Case, key: PrivateKey) -> list[OpenedItem]:
    rows = list(
        await unit.session.scalars(
            select(CaseItem).where(CaseItem.case_id == case.id).order_by(CaseItem.position)
        )
    )
    items = []
    for expected, row in enumerate(rows):
        if row.position != expected:
            raise CaseError(f"{case.reference}: item {expected} is missing (the record was cut)")
        try:
            plaintext = open_sealed(
                key, row.content, item_info(case.reference, row.position, row.kind)
            )
        except SealError as error:
            raise CaseError(
                f"{case.reference}: item {row.position} ({row.kind}) does not open: "
                "it was changed, or moved here from another case or position"
            ) from error
        items.append(
            OpenedItem(row.position, row.kind, aware(row.created_at), json.loads(plaintext))
        )
    if not items:
        raise CaseError(f"{case.reference}: the record is empty (its items were removed)")
    return items


async def _files(
    unit: Unit, case: Case, key: PrivateKey, items: list[OpenedItem]
) -> list[OpenedFile]:
    described = {
        entry["id"]: entry
        for item in items
        for entry in item.content.get("files", [])
        if isinstance(entry, dict) and "id" in entry
    }
    rows = list(await unit.session.scalars(select(StoredBlob).where(StoredBlob.case_id == case.id)))
    files = []
    for row in rows:
        try:
            data = open_sealed(key, row.content, file_info(case.reference, row.id))
        except SealError as error:
            raise CaseError(
                f"{case.reference}: attachment {row.id} does not open: it was changed"
            ) from error
        entry = described.get(row.id, {})
        files.append(
            OpenedFile(
                row.id,
                str(entry.get("name", row.id)),
                str(entry.get("media_type", "application/octet-stream")),
                data,
            )
        )
    missing = set(described) - {file.id for file in files}
    if missing:
        raise CaseError(
            f"{case.reference}: {len(missing)} attachment(s) named in the record are missing"
        )
    return sorted(
        files, key=lambda file: list(described).index(file.id) if file.id in described else 0
    )
