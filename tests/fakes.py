"""A staff room that posts nowhere and lets nobody in: for tests whose subject is elsewhere."""

from __future__ import annotations

from bot.core.types import StaffMember


class NullRoom:
    end_to_end_encrypted = True

    async def check(self) -> list[str]:
        return []

    async def open_thread(self, reference: str, text: str, urgent: bool) -> str:
        return reference

    async def post(self, thread: str | None, text: str) -> None:
        return None

    def is_author(self, member: StaffMember, author: str) -> bool:
        return False

    def mention(self, member: StaffMember) -> str:
        return member.display_name
