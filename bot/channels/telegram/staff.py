"""The staff group on Telegram: a forum topic per case, or one root post per case.

In a forum supergroup each case gets a topic named with its reference (and "dringend"
where it applies); a case's thread id is the topic's id. In a group without topics the
thread id is the reference itself: every post of the case starts with it, and a
counsellor acts on a case by replying to any of its posts.

Telegram groups are not end-to-end encrypted. The guard (`check`) asks the Bot API what
it can tell: whether the bot can read the group, whether every administrator is a
counsellor (or the bot), whether more people are in it than counsellors and the bot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from telegram import Bot
from telegram import error as tg

from bot.channels.telegram.send import Sender
from bot.core.types import ChatBusy, Reply, StaffMember

logger = logging.getLogger(__name__)
CHECK_SECONDS = 5.0  # a passed or failed check is believed this long
TOPIC_NAME_MAX = 128
CounsellorIds = Callable[[], Awaitable[set[str]]]  # the Telegram ids of active counsellors


class TelegramStaffRoom:
    name = "telegram"
    end_to_end_encrypted = False

    def __init__(
        self,
        bot: Bot,
        sender: Sender,
        chat: int,
        counsellor_ids: CounsellorIds,
        *,
        urgent_mark: str,
        alert: Callable[[str], str],
    ) -> None:
        self.bot = bot
        self.sender = sender
        self.chat = chat
        self._counsellor_ids = counsellor_ids
        self._urgent_mark = urgent_mark
        self._alert = alert
        self._forum: bool | None = None
        self._topics: dict[str, str] = {}  # reference -> topic id, so a retry makes no second one
        self._checked: tuple[float, list[str]] | None = None
        self._alerted: tuple[str, ...] = ()

    async def is_forum(self) -> bool:
        if self._forum is None:
            chat = await self.bot.get_chat(self.chat)
            self._forum = bool(chat.is_forum)
        return self._forum

    async def check(self) -> list[str]:
        now = asyncio.get_running_loop().time()
        if self._checked is not None and now - self._checked[0] < CHECK_SECONDS:
            return self._checked[1]
        try:
            problems = await self._problems()
        except (tg.TelegramError, OSError) as error:
            problems = [f"the staff group could not be checked ({type(error).__name__})"]
        self._checked = (now, problems)
        if problems and tuple(problems) != self._alerted:
            self._alerted = tuple(problems)
            await self._raise_alert(problems)
        elif not problems:
            self._alerted = ()
        return problems

    async def _problems(self) -> list[str]:
        problems = []
        me = await self.bot.get_me()
        counsellors = await self._counsellor_ids()
        admins = await self.bot.get_chat_administrators(self.chat)
        admin_ids = {admin.user.id for admin in admins}
        if not me.can_read_all_group_messages and me.id not in admin_ids:
            problems.append(
                "the bot cannot read the group (turn privacy mode off with BotFather's "
                "/setprivacy, or make the bot an administrator)"
            )
        strangers = admin_ids - {me.id} - {int(i) for i in counsellors if i.lstrip("-").isdigit()}
        if strangers:
            problems.append(f"{len(strangers)} administrator(s) of the group are not counsellors")
        members = await self.bot.get_chat_member_count(self.chat)
        if members > len(counsellors) + 1:
            problems.append(
                f"the group has {members} members, more than the {len(counsellors)} "
                "counsellor(s) with a Telegram id and the bot"
            )
        return problems

    async def _raise_alert(self, problems: list[str]) -> None:
        """A content-free alert in the group itself; the details go to the operator log."""
        try:
            await self.sender.send(str(self.chat), Reply(self._alert("; ".join(problems))))
        except Exception as error:  # the log has it already
            logger.warning(
                "telegram: the staff-group alert was not posted (%s)", type(error).__name__
            )

    async def open_thread(self, reference: str, text: str, urgent: bool) -> str:
        if not await self.is_forum():
            await self.sender.send(str(self.chat), Reply(text), head=_head(reference))
            return reference
        topic = self._topics.get(reference)
        if topic is None:
            busy = self.sender.limits.delay(self.chat)
            if busy > 0:
                raise ChatBusy(busy)
            name = (reference + (self._urgent_mark if urgent else ""))[:TOPIC_NAME_MAX]
            created = await self.bot.create_forum_topic(self.chat, name)
            self.sender.limits.spend(self.chat)
            topic = self._topics[reference] = str(created.message_thread_id)
        await self.sender.send(str(self.chat), Reply(text), thread=int(topic))
        return topic

    async def post(self, thread: str | None, text: str) -> None:
        if thread is not None and thread.isdigit():
            await self.sender.send(str(self.chat), Reply(text), thread=int(thread))
        elif thread is not None:
            await self.sender.send(str(self.chat), Reply(text), head=_head(thread))
        else:
            await self.sender.send(str(self.chat), Reply(text))

    async def set_thread_open(self, thread: str, open_: bool) -> None:
        """Close (or reopen) a case's topic; nothing to do in a group without topics."""
        if not thread.isdigit():
            return
        try:
            if not open_:
                await self.bot.close_forum_topic(self.chat, int(thread))
            else:
                await self.bot.reopen_forum_topic(self.chat, int(thread))
        except tg.TelegramError as error:
            logger.warning(
                "telegram: a topic could not be closed/reopened (%s)", type(error).__name__
            )

    def is_author(self, member: StaffMember, author: str) -> bool:
        return member.handles.get("telegram") == author

    def mention(self, member: StaffMember) -> str:
        return member.display_name


def _head(reference: str) -> str:
    """What starts every post of a case in a group without topics (each part of a long one)."""
    return f"[{reference}] "
