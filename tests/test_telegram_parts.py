"""The Telegram channel's pure parts: splitting, buttons, the flood limits, failures."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from telegram import error as tg

from bot.channels.telegram.adapter import language_of
from bot.channels.telegram.limits import ChatLimits
from bot.channels.telegram.request import Request, UnreadableResponse
from bot.channels.telegram.send import MAX_CALLBACK, Sender, keyboard, split_text, translated
from bot.core.types import ChatBusy, Choice, PermanentFailure, Reply, RetryAfter
from flows.engine import Engine
from flows.messages import UserInput
from flows.offers import SHIPPED_OFFERS
from flows.questionnaire import SHIPPED_QUESTIONNAIRE
from flows.texts import SHIPPED_TEXTS


def test_long_text_is_split_at_paragraphs_and_nothing_is_lost() -> None:
    paragraphs = [f"Absatz {n}: " + "wort " * 300 for n in range(6)]
    text = "\n\n".join(paragraphs)
    parts = split_text(text)
    assert len(parts) > 1
    assert all(len(part) <= 4096 for part in parts)
    assert all(part.startswith("Absatz") for part in parts)  # cut where a paragraph begins
    assert "".join(parts).replace("\n", "").replace(" ", "") == text.replace("\n", "").replace(
        " ", ""
    )
    assert split_text("x" * 9000) == ["x" * 4096, "x" * 4096, "x" * 808]
    assert split_text("kurz") == ["kurz"]


def test_buttons_carry_prompt_and_key_only_and_a_multiple_choice_has_done() -> None:
    reply = Reply(
        "Was ist passiert? Geheime Antwort",
        (Choice("threat", "Bedrohung"), Choice("insult", "Beleidigung")),
        multiple=True,
        prompt="categories.6",
    )
    markup = keyboard(reply, "✅ Fertig")
    assert markup is not None
    data = [button.callback_data for row in markup.inline_keyboard for button in row]
    assert data == ["categories.6|+threat", "categories.6|+insult", "categories.6|="]
    assert all(len(str(item).encode()) <= MAX_CALLBACK for item in data)
    assert keyboard(Reply("ohne Prompt", (Choice("a", "A"),)), "x") is None
    too_long = Reply("?", (Choice("k" * 70, "K"),), prompt="p.1")
    assert keyboard(too_long, "x") is None  # typed numbers still work


def test_a_private_chat_bursts_three_then_waits_and_a_group_twenty_a_minute() -> None:
    now = [0.0]
    limits = ChatLimits(clock=lambda: now[0])
    for _ in range(3):
        assert limits.delay(42) == 0
        limits.spend(42)
    assert limits.delay(42) > 0.9
    assert limits.delay(43) == 0  # another chat is not held up
    now[0] += 1.2
    assert limits.delay(42) == 0
    for _ in range(20):
        assert limits.delay(-100) == 0
        limits.spend(-100)
    assert limits.delay(-100) > 60
    now[0] += 67
    assert limits.delay(-100) == 0


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (lambda: tg.RetryAfter(7), RetryAfter),
        (lambda: tg.Forbidden("Forbidden: bot was blocked by the user"), PermanentFailure),
        (lambda: tg.BadRequest("Bad Request: chat not found"), PermanentFailure),
        (lambda: tg.NetworkError("connection reset"), tg.NetworkError),  # temporary: as it is
        (tg.TimedOut, tg.TimedOut),
    ],
)
@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
def test_telegram_failures_become_the_cores(
    raised: Callable[[], Exception], expected: type[Exception]
) -> None:
    with pytest.raises(expected) as caught, translated():
        raise raised()
    if isinstance(caught.value, RetryAfter):
        assert caught.value.seconds == 7
    assert not isinstance(caught.value, ChatBusy)


def test_a_new_conversation_starts_in_the_apps_language_when_the_texts_have_it() -> None:
    engine = Engine.from_files(SHIPPED_QUESTIONNAIRE, SHIPPED_OFFERS, SHIPPED_TEXTS)
    english = engine.handle(None, UserInput("/start", language="en"))
    assert english.state is not None and english.state.language == "en"
    assert english.replies[0].text.startswith("In danger? Call 110.")
    assert "Hello. This is Lotse" in english.replies[0].text
    for unknown in ("fr", None):
        german = engine.handle(None, UserInput("/start", language=unknown))
        assert german.state is not None and german.state.language == "de"
    # an existing conversation keeps its language
    again = engine.handle(german.state, UserInput("/hilfe", language="en"))
    assert again.state is not None and again.state.language == "de"
    assert language_of("de-AT") == "de" and language_of("en-GB") == "en"
    assert language_of(None) == "de" and language_of("uk") == "en"


@pytest.mark.parametrize("deep", [b"[" * 100_000 + b"]" * 100_000, b"[1,"])
def test_an_unreadable_bot_api_answer_names_its_updates_and_is_never_logged(
    deep: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    payload = (
        b'{"ok": true, "result": [{"update_id": 7, "message": {"text": "Geheim-Kanarie", '
        b'"entities": ' + deep + b'}}, {"update_id": 8}]}'
    )
    with pytest.raises(UnreadableResponse) as raised:
        Request.parse_json_payload(payload)
    assert raised.value.update_ids == [7, 8]
    assert "Geheim" not in caplog.text and "Geheim" not in str(raised.value)
    assert Request.parse_json_payload(b'{"ok": true, "result": []}') == {"ok": True, "result": []}


class _Bot:
    """Records send_message calls; what Sender needs of a Bot."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_message(self, chat_id: int, text: str, **_: object) -> object:
        self.sent.append(text)
        return type("Message", (), {"message_id": len(self.sent)})()


async def test_a_reply_in_two_parts_waits_for_room_for_both_instead_of_holding_the_channel() -> (
    None
):
    """The delivery worker sends for every chat of the channel: a later part that had to wait
    for the group's 20 a minute would hold up every official's answer meanwhile."""
    now = [0.0]
    limits = ChatLimits(clock=lambda: now[0])
    bot = _Bot()
    sender = Sender(bot, limits, lambda reply: "Fertig")  # type: ignore[arg-type]
    for _ in range(19):
        limits.spend(-100)
    two_parts = Reply(("Absatz. " * 300 + "\n\n") * 2)
    assert len(split_text(two_parts.text)) == 2
    with pytest.raises(ChatBusy) as busy:
        await asyncio.wait_for(sender.send("-100", two_parts), 1.0)
    assert busy.value.seconds > 60 and bot.sent == []  # nothing half sent
    now[0] += 67
    await asyncio.wait_for(sender.send("-100", two_parts), 1.0)
    assert len(bot.sent) == 2
    assert limits.delay(42, 3) == 0 and limits.delay(42, 4) == 0  # a burst is all a chat has
