"""The Telegram channel end to end: `lotse run` as a process against the Bot API emulator."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.app import open_app
from bot.config import load_config
from bot.core.types import Reply
from storage import outbox
from tests.telegram_emulator import STAFF_GROUP, TOKEN, Emulator, Sent, free_port
from tests.telegram_harness import (
    COUNSELLOR_ID,
    PASSPHRASE,
    Lotse,
    buttons,
    last_with_buttons,
    lotse,
    wait_for_new,
)
from tests.test_no_plaintext import findings
from tests.test_ops_run import _curl

OFFICIAL = 4242
CANARIES = {
    "description": "Kanarie-Beschreibung-T3L",
    "photo": "Kanarie-Foto-Bytes-9QX",
    "forward_text": "Kanarie-Weiterleitung-Drohung-5ZK",
    "forward_origin": "Kanarienvogel Absender",
    "official_relay": "Kanarie-Amtstraeger-schreibt-2PL",
    "staff_relay": "Kanarie-Beraterin-antwortet-8MM",
    "note": "Kanarie-interne-Notiz-4RT",
}
PREFERRED = {
    "lane": "report",
    "family": "no",
    "evidence": "done",
    "police": "planned",
    "contact": "chat",
}


def answer_until(
    emulator: Emulator, user: int, stop: str, on_text: dict[str, str], evidence: object = None
) -> list[Sent]:
    """Answer every question with buttons (typed text where none) until `stop` is said."""
    seen = 0
    said: list[Sent] = []
    for _ in range(40):
        new = wait_for_new(emulator, user, seen)
        seen += len(new)
        said += new
        if any(stop in sent.text for sent in new):
            return said
        last = new[-1]
        if not last.markup:  # a text question: the given words, or left out if optional
            step = next((key for key in on_text if key in last.text), None)
            if step is None and not last.text.startswith("Frage "):
                continue  # a note ("In Ordnung, ausgelassen."): its question follows
            emulator.message(user, on_text[step] if step else "/ueberspringen")
            continue
        choices = buttons(last)
        step = choices[0][1].split(".")[0]
        if step == "evidence" and callable(evidence):
            evidence()
        keys = {data.split("|", 1)[1]: data for _, data in choices}
        if any(key.startswith("+") for key in keys):
            question = last.message_id
            for ticked, data in enumerate(list(keys.values())[:2], start=1):
                emulator.press(user, emulator.current(user, question), data)
                emulator.wait(
                    lambda q=question, n=ticked: (
                        str(emulator.current(user, q).markup).count("✓") == n
                    )
                )
            emulator.press(user, emulator.current(user, last.message_id), keys["="])
        else:
            chosen = keys.get(PREFERRED.get(step, ""), choices[0][1])
            emulator.press(user, last, chosen)
    raise AssertionError("the intake did not end")


def said_to(emulator: Emulator, chat: int, words: str, timeout: float = 30.0) -> Sent:
    """The bot's first message to `chat` that contains `words`, once it is there."""
    emulator.wait(
        lambda: any(words in sent.text for sent in emulator.messages_to(chat)), timeout, words
    )
    return next(sent for sent in emulator.messages_to(chat) if words in sent.text)


@pytest.mark.slow
def test_an_official_reports_on_telegram_and_a_counsellor_answers_in_the_case_topic(
    emulator: Emulator, service: Lotse
) -> None:
    service.start()
    assert emulator.commands["de"][:2] == ["start", "hilfe"]
    assert "help" in emulator.commands["en"]
    emulator.message(OFFICIAL, "/start")

    def evidence() -> None:
        before = len(emulator.messages_to(OFFICIAL))
        emulator.photo(OFFICIAL, b"\xff\xd8" + CANARIES["photo"].encode() * 50)
        wait_for_new(emulator, OFFICIAL, before)
        before = len(emulator.messages_to(OFFICIAL))
        emulator.forward(OFFICIAL, CANARIES["forward_text"], CANARIES["forward_origin"], 1700000000)
        wait_for_new(emulator, OFFICIAL, before)

    said = answer_until(
        emulator, OFFICIAL, "Aktenzeichen",
        {"Bitte beschreiben": f"Es kam ein Brief. {CANARIES['description']}"},
        evidence,
    )  # fmt: skip
    reference = re.search(r"L-\d{4}-\d{4}", said[-1].text or said[-2].text)
    reference = reference or re.search(r"L-\d{4}-\d{4}", " ".join(s.text for s in said))
    assert reference is not None
    reference_text = reference.group(0)
    # every answered question lost its buttons; callbacks were all answered
    assert all(emulator.current(OFFICIAL, s.message_id).markup is None for s in said[:-6])
    callbacks = [call for call in emulator.calls if call == "answerCallbackQuery"]
    assert len(callbacks) >= 15

    # the case opened a topic named with its reference; its details are there
    emulator.wait(lambda: emulator.topics, what="a forum topic")
    [(topic, info)] = emulator.topics.items()
    assert info["name"].startswith(reference_text)
    emulator.wait(lambda: emulator.messages_to(STAFF_GROUP), what="the case in the topic")
    posted = emulator.messages_to(STAFF_GROUP)
    assert all(sent.thread == topic for sent in posted)
    assert reference_text in posted[0].text
    assert CANARIES["description"] not in posted[0].text  # summary detail: no free text

    # the counsellor claims; the official hears it
    emulator.staff_message(COUNSELLOR_ID, "/uebernehmen", thread=topic)
    said_to(emulator, OFFICIAL, "Berta")
    # both ways
    emulator.message(OFFICIAL, CANARIES["official_relay"])
    emulator.wait(
        lambda: any(
            CANARIES["official_relay"] in s.text for s in emulator.messages_to(STAFF_GROUP)
        ),
        what="the official's words in the topic",
    )
    emulator.staff_message(COUNSELLOR_ID, CANARIES["staff_relay"], thread=topic)
    said_to(emulator, OFFICIAL, CANARIES["staff_relay"])
    # a note stays in the staff room
    emulator.staff_message(COUNSELLOR_ID, f"/notiz {CANARIES['note']}", thread=topic)
    said_to(emulator, STAFF_GROUP, "Notiz")
    # closing the case closes the topic
    emulator.staff_message(COUNSELLOR_ID, "/abschliessen beraten", thread=topic)
    emulator.wait(lambda: emulator.topics[topic]["closed"], what="the topic closed")
    time.sleep(1.5)
    to_official = " ".join(s.text for s in emulator.messages_to(OFFICIAL))
    assert CANARIES["note"] not in to_official
    assert emulator.violations == []
    assert service.stop() == 0

    # nothing of the conversation is readable in the data directory
    assert findings(service.data_dir, CANARIES) == []
    shown = lotse(
        "cases", "show", reference_text, "--key", service.key, "--config", service.config,
        env={"LOTSE_PASSPHRASE": PASSPHRASE},
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    for what in (
        "description",
        "forward_text",
        "forward_origin",
        "official_relay",
        "staff_relay",
        "note",
    ):
        assert CANARIES[what] in shown.stdout, what
    order = [
        shown.stdout.index(CANARIES[w]) for w in ("description", "official_relay", "staff_relay")
    ]
    assert order == sorted(order)
    assert "photo-" in shown.stdout and "image/jpeg" in shown.stdout
    log = service.log()
    assert all(canary not in log for canary in CANARIES.values())
    assert str(OFFICIAL) not in log


def _report(emulator: Emulator) -> str:
    """OFFICIAL reports (buttons, the canary as description); the case's reference."""
    emulator.message(OFFICIAL, "/start")
    said = answer_until(
        emulator, OFFICIAL, "Aktenzeichen", {"Bitte beschreiben": CANARIES["description"]}
    )
    found = re.search(r"L-\d{4}-\d{4}", " ".join(sent.text for sent in said))
    assert found is not None
    return found.group(0)


@pytest.mark.slow
def test_in_a_group_without_topics_a_counsellor_acts_on_a_case_by_replying_to_its_posts(
    emulator: Emulator, service: Lotse
) -> None:
    emulator.forum = False
    service.start()
    reference = _report(emulator)
    # the intake's last message tells how to clear the phone (Telegram has /chat_leeren)
    final = said_to(emulator, OFFICIAL, "Falls andere Ihr Telefon sehen können: Mit /chat_leeren")
    assert "Warteschlange" in final.text and final == emulator.messages_to(OFFICIAL)[-1]
    emulator.wait(lambda: emulator.messages_to(STAFF_GROUP), what="the case's first post")
    root = emulator.messages_to(STAFF_GROUP)[0]
    assert root.text.startswith(f"[{reference}]") and root.thread is None
    assert emulator.topics == {} and "createForumTopic" not in emulator.calls

    # a claim by replying to the case's first post
    emulator.staff_message(COUNSELLOR_ID, "/uebernehmen", reply_to=root)
    said_to(emulator, OFFICIAL, "Berta")
    # the official's words arrive headed with the reference; a reply to them answers
    emulator.message(OFFICIAL, CANARIES["official_relay"])
    relayed = said_to(emulator, STAFF_GROUP, CANARIES["official_relay"])
    assert relayed.text.startswith(f"[{reference}]")
    emulator.staff_message(COUNSELLOR_ID, CANARIES["staff_relay"], reply_to=relayed)
    said_to(emulator, OFFICIAL, CANARIES["staff_relay"])
    # a long message comes in two posts, each headed: a reply to the second one works too
    emulator.message(OFFICIAL, "Erster Teil. " * 180 + "\n\n" + "Zweiter-Teil. " * 125)
    second = said_to(emulator, STAFF_GROUP, "Zweiter-Teil.")
    assert second.text.startswith(f"[{reference}] ") and "Erster Teil" not in second.text
    emulator.staff_message(COUNSELLOR_ID, "Kanarie-auf-Teil-zwei-3HW", reply_to=second)
    said_to(emulator, OFFICIAL, "Kanarie-auf-Teil-zwei-3HW")
    # a note by reply stays in the group; words that reply to nothing reach nobody
    emulator.staff_message(COUNSELLOR_ID, f"/notiz {CANARIES['note']}", reply_to=root)
    said_to(emulator, STAFF_GROUP, "Notiz")
    emulator.staff_message(COUNSELLOR_ID, "Kanarie-an-niemanden-6VB")
    # closing by reply
    emulator.staff_message(COUNSELLOR_ID, "/abschliessen beraten", reply_to=relayed)
    closed = said_to(emulator, OFFICIAL, "abgeschlossen")
    time.sleep(1.5)
    to_official = [sent.text for sent in emulator.messages_to(OFFICIAL)]
    assert CANARIES["note"] not in " ".join(to_official)
    assert "Kanarie-an-niemanden-6VB" not in " ".join(to_official)
    assert closed.text == to_official[-1]
    posts = emulator.messages_to(STAFF_GROUP)
    assert all(sent.text.startswith(f"[{reference}] ") for sent in posts), posts
    assert "abgeschlossen" in posts[-1].text
    assert emulator.violations == []
    assert "Traceback" not in service.log()


def test_a_missing_or_rejected_token_stops_start_up_with_one_line_and_code_2(
    emulator: Emulator, service: Lotse
) -> None:
    missing = lotse("run", "--config", service.config)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        "lotse: the environment variable LOTSE_TELEGRAM_TOKEN (telegram.token_env) "
        "holds no bot token"
    ]
    rejected = lotse("run", "--config", service.config, env={"LOTSE_TELEGRAM_TOKEN": "1:wrong"})
    assert rejected.returncode == 2
    assert len(rejected.stderr.strip().splitlines()) == 1
    assert "rejected the bot token in LOTSE_TELEGRAM_TOKEN" in rejected.stderr
    assert "1:wrong" not in rejected.stderr and "Traceback" not in rejected.stderr


@pytest.mark.slow
def test_bad_input_gets_a_clear_reply_or_is_ignored_and_the_process_keeps_running(
    emulator: Emulator, service: Lotse
) -> None:
    service.start()
    emulator.message(OFFICIAL, "/start")
    welcome = said_to(emulator, OFFICIAL, "Guten Tag")
    emulator.press(OFFICIAL, welcome, "lane.0|report")
    emulator.press(
        OFFICIAL, said_to(emulator, OFFICIAL, "Sind Sie einverstanden"), "welcome.1|agree"
    )
    said_to(emulator, OFFICIAL, "In welchem Bundesland")
    # garbage callback data: answered with a short text, nothing else changes
    count = len(emulator.messages_to(OFFICIAL))
    emulator.press(OFFICIAL, welcome, "garbage-without-separator")
    emulator.wait(lambda: any(text for _, text in emulator.answers), what="the callback answer")
    assert [text for _, text in emulator.answers if text] == ["Diese Schaltfläche kenne ich nicht."]
    # an update of a kind Lotse does not handle, and an unknown sticker
    emulator.inject({"poll": {"id": "p1", "question": "?", "options": [], "total_voter_count": 0,
                           "is_closed": False, "is_anonymous": True, "type": "regular",
                           "allows_multiple_answers": False}})  # fmt: skip
    emulator.inject({"some_future_update": {"whatever": 1}})
    emulator.sticker(OFFICIAL)
    # a 50 MB document: refused before it is downloaded, with the limit
    emulator.document(OFFICIAL, b"%PDF-1.4 small", "gross.pdf", size=50 * 1024 * 1024)
    said_to(emulator, OFFICIAL, "bis 20 MB")
    # a message of 4,096 characters and an edited message
    emulator.message(OFFICIAL, "ja " + "x" * 4093)
    emulator.edit(OFFICIAL, 1, "/start")
    said_to(emulator, OFFICIAL, "bearbeitet")
    # a group that is not the staff group: left, nothing processed
    emulator.inject({"message": emulator._message(OFFICIAL, -555, text="/start")})
    emulator.wait(lambda: -555 in emulator.left, what="leaving a stranger's group")
    emulator.wait(lambda: len(emulator.messages_to(OFFICIAL)) >= count + 4)
    time.sleep(1.0)
    service.assert_running()
    assert emulator.messages_to(-555) == []
    assert "getFile" not in emulator.calls  # the 50 MB file was never fetched
    assert all(len(sent.text) <= 4096 for sent in emulator.sent)
    assert emulator.violations == []
    # and the intake still goes on
    before = len(emulator.messages_to(OFFICIAL))
    question = last_with_buttons(emulator, OFFICIAL)
    assert question is not None
    emulator.press(OFFICIAL, question, buttons(question)[1][1])
    wait_for_new(emulator, OFFICIAL, before)
    assert "Traceback" not in service.log()


@pytest.mark.slow
def test_the_guard_holds_case_details_back_from_a_group_with_strangers(
    emulator: Emulator, service: Lotse
) -> None:
    emulator.administrators = [COUNSELLOR_ID, 999]  # 999 is no counsellor
    emulator.member_count = 5  # and more members than counsellors and the bot
    service.start()
    reference = _report(emulator)
    alert = said_to(emulator, STAFF_GROUP, "⚠️")
    assert "1 administrator(s) of the group are not counsellors" in alert.text
    assert "5 members" in alert.text
    time.sleep(2)
    assert emulator.topics == {}
    posts = [sent.text for sent in emulator.messages_to(STAFF_GROUP)]
    assert CANARIES["description"] not in " ".join(posts)
    # the room's alert once, and the case's reference with a content-free alert once
    assert len(posts) == 2
    [held] = [text for text in posts if reference in text]
    assert held.startswith(f"‼️ Neuer Fall {reference}. Die Details werden")
    assert "staff room check failed" in service.log()
    assert "are not counsellors" in service.log()


@pytest.mark.slow
def test_an_update_delivered_twice_is_handled_once_also_after_a_restart(
    emulator: Emulator, service: Lotse
) -> None:
    service.start()
    emulator.message(OFFICIAL, "/start")
    welcome = said_to(emulator, OFFICIAL, "Guten Tag")
    emulator.press(OFFICIAL, welcome, "lane.0|report")  # held in memory: nothing to redeliver
    privacy = said_to(emulator, OFFICIAL, "Sind Sie einverstanden")
    agree = emulator.press(OFFICIAL, privacy, "welcome.1|agree")
    land = said_to(emulator, OFFICIAL, "In welchem Bundesland")
    answered = emulator.press(OFFICIAL, land, "land.2|by")
    said_to(emulator, OFFICIAL, "Rolle")
    emulator.reinject(answered)
    time.sleep(2)
    assert service.stop() == 0
    count = len(emulator.messages_to(OFFICIAL))
    service.start()
    emulator.reinject(agree)
    emulator.reinject(answered)
    time.sleep(3)
    assert len(emulator.messages_to(OFFICIAL)) == count  # nothing handled twice
    emulator.message(OFFICIAL, "1")  # the role question is still the one asked
    said_to(emulator, OFFICIAL, "Sind Sie gerade in Sicherheit?")
    emulator.message(OFFICIAL + 1, "/start", language="en-GB")  # an English app
    said_to(emulator, OFFICIAL + 1, "Hello. This is Lotse")
    assert emulator.violations == []


def _consented(emulator: Emulator, users: list[int]) -> None:
    """Each of `users` chose the report lane, agreed and was asked for their Land."""
    for user in users:
        emulator.message(user, "/start")
    for user in users:
        emulator.press(user, said_to(emulator, user, "Guten Tag", 60), "lane.0|report")
    for user in users:
        privacy = said_to(emulator, user, "Sind Sie einverstanden", 60)
        emulator.press(user, privacy, "welcome.1|agree")
    for user in users:
        said_to(emulator, user, "In welchem Bundesland", 60)


@pytest.mark.slow
def test_a_burst_of_300_officials_stays_within_the_limits_and_everyone_is_answered(
    emulator: Emulator, service: Lotse
) -> None:
    service.start()
    users = list(range(10_001, 10_301))
    started = time.monotonic()
    for user in users:
        emulator.message(user, "/start")
    assert time.monotonic() - started < 1.0
    emulator.wait(lambda: all(emulator.messages_to(user) for user in users), 90, "every welcome")
    assert emulator.violations == []
    assert all(len(emulator.messages_to(user)) == 1 for user in users)
    # a 429 the server asks for is honoured, not lost
    emulator.fail_next("sendMessage", 2)
    emulator.message(users[0], "/hilfe")
    said_to(emulator, users[0], "/zurueck")
    assert emulator.rejected_429 == 1
    service.assert_running()


@pytest.mark.slow
def test_a_kill_during_a_burst_loses_no_reply_and_repeats_at_most_one(
    emulator: Emulator, service: Lotse
) -> None:
    service.start()
    users = list(range(20_001, 20_101))
    _consented(emulator, users)
    _kill_amid_answers(emulator, service, users, restart=service.start)


def _kill_amid_answers(
    emulator: Emulator,
    service: Lotse,
    users: list[int],
    restart: Callable[[], object],
    while_down: Callable[[], None] = lambda: None,
) -> None:
    """`users` (each asked for their Land) answer at once; `lotse run` is killed amid
    the answers and restarted: each gets the next question once (at most one reply twice,
    the send under way at the kill)."""
    before = {user: len(emulator.messages_to(user)) for user in users}
    for user in users:
        question = last_with_buttons(emulator, user)
        assert question is not None
        emulator.press(user, question, buttons(question)[1][1])  # Bayern
    emulator.wait(lambda: sum(len(emulator.messages_to(u)) > before[u] for u in users) >= 5, 60)
    assert service.stop(kill=True) == -9
    answered_at_kill = sum(len(emulator.messages_to(u)) > before[u] for u in users)
    assert answered_at_kill < len(users)  # the kill came in the middle of the burst
    while_down()
    restart()
    emulator.wait(
        lambda: all(len(emulator.messages_to(u)) > before[u] for u in users), 90, "every answer"
    )
    time.sleep(2)
    replies = [sent.text for user in users for sent in emulator.messages_to(user)[before[user] :]]
    assert all("Rolle" in text for text in replies)
    assert len(replies) - len(users) <= 1  # at most the one under way at the kill
    assert emulator.violations == []


@pytest.mark.slow
def test_webhook_mode_takes_updates_posted_with_the_secret_token(
    emulator: Emulator, service: Lotse
) -> None:
    port = free_port()
    service.write_config(
        f'mode = "webhook"\nlisten = "127.0.0.1"\nport = {port}\npath = "hook"\n'
        f'public_url = "http://127.0.0.1:{port}"\n'
    )
    service.start(extra_env={"LOTSE_TELEGRAM_WEBHOOK_SECRET": "s3cret-hook"}, polling=False)
    emulator.wait(lambda: "setWebhook" in emulator.calls, what="setWebhook")
    update = {"update_id": 77, "message": emulator._message(OFFICIAL, text="/start")}
    url = f"http://127.0.0.1:{port}/hook"

    def post(secret: str) -> int:
        request = urllib.request.Request(
            url,
            data=json.dumps(update).encode(),
            headers={"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": secret},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return error.code

    deadline = time.monotonic() + 20
    while True:  # the web server may still be starting
        try:
            assert post("wrong") == 403
            break
        except urllib.error.URLError:
            assert time.monotonic() < deadline
            time.sleep(0.3)
    assert post("s3cret-hook") == 200
    said_to(emulator, OFFICIAL, "Guten Tag")
    assert post("s3cret-hook") == 200  # Telegram retries: handled once
    time.sleep(1.5)
    assert len(emulator.messages_to(OFFICIAL)) == 1
    assert service.stop() == 0


def _webhook_mode(service: Lotse) -> str:
    """Configure webhook mode on a free port; the secret token's environment variable."""
    port = free_port()
    service.write_config(
        f'mode = "webhook"\nlisten = "127.0.0.1"\nport = {port}\npath = "hook"\n'
        f'public_url = "http://127.0.0.1:{port}"\n'
    )
    return "LOTSE_TELEGRAM_WEBHOOK_SECRET"


@pytest.mark.slow
def test_webhook_mode_loses_no_update_at_a_kill_and_handles_each_once(
    emulator: Emulator, service: Lotse
) -> None:
    secret = {_webhook_mode(service): "s3cret-hook"}
    service.start(extra_env=secret, polling=False)
    emulator.wait(lambda: emulator.webhook is not None, what="setWebhook")
    users = list(range(40_001, 40_061))
    _consented(emulator, users)
    assert emulator.webhook["secret_token"] == "s3cret-hook"  # type: ignore[index]

    def while_down() -> None:
        time.sleep(1.5)  # Telegram keeps posting meanwhile, and nobody answers
        assert emulator.webhook_refused > 0

    _kill_amid_answers(
        emulator,
        service,
        users,
        restart=lambda: service.start(extra_env=secret, polling=False),
        while_down=while_down,
    )
    assert "getUpdates" not in emulator.calls
    assert service.stop() == 0


def test_webhook_mode_without_a_secret_token_does_not_start(
    emulator: Emulator, service: Lotse
) -> None:
    _webhook_mode(service)
    result = lotse(
        "run", "--config", service.config, env={"LOTSE_TELEGRAM_TOKEN": TOKEN}
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "lotse: webhook mode needs a secret token in the environment variable "
        "LOTSE_TELEGRAM_WEBHOOK_SECRET (telegram.secret_token_env): 1 to 256 characters "
        "of A-Z, a-z, 0-9, _ and -"
    ]


@pytest.mark.slow
def test_healthz_names_telegram_once_the_bot_api_refuses_the_token(
    emulator: Emulator, service: Lotse
) -> None:
    port = free_port()
    service.write_config(f'\n[service]\nlisten = "127.0.0.1:{port}"\n')
    service.start()
    status, body = _curl(f"http://127.0.0.1:{port}/healthz")
    assert status == 200, body
    assert "channel telegram: ok" in body.splitlines()
    emulator.token_valid = False  # the token was revoked: every call is answered 401
    emulator.inject({"some_future_update": {}})  # ends the long poll under way
    deadline = time.monotonic() + 90  # the health check allows a minute without an answer
    while "channel telegram" not in body.splitlines()[0]:
        assert time.monotonic() < deadline, body
        time.sleep(2)
        status, body = _curl(f"http://127.0.0.1:{port}/healthz")
    assert status == 503
    assert re.search(r"^channel telegram: has not reached its platform for \d+ s$", body, re.M)
    service.assert_running()
    assert service.stop() == 0


@pytest.mark.slow
def test_clearing_the_chat_deletes_both_sides_also_after_a_restart_and_keeps_the_intake(
    emulator: Emulator, service: Lotse
) -> None:
    service.start()
    emulator.message(OFFICIAL, "/start")
    emulator.press(OFFICIAL, said_to(emulator, OFFICIAL, "Guten Tag"), "lane.0|report")
    emulator.press(
        OFFICIAL, said_to(emulator, OFFICIAL, "Sind Sie einverstanden"), "welcome.1|agree"
    )
    emulator.press(OFFICIAL, said_to(emulator, OFFICIAL, "In welchem Bundesland"), "land.2|by")
    said_to(emulator, OFFICIAL, "Rolle")
    assert service.stop() == 0
    service.start()  # the ids are kept (sealed) across a restart
    emulator.message(OFFICIAL, "/hilfe")
    said_to(emulator, OFFICIAL, "\n/chat_leeren – die Nachrichten dieses Chats löschen")
    emulator.message(OFFICIAL, "/chat_leeren")
    question = said_to(emulator, OFFICIAL, "48 Stunden")
    assert [data for _, data in buttons(question)] == ["clear|yes", "clear|no"]
    before = len(emulator.messages_to(OFFICIAL))
    emulator.press(OFFICIAL, question, "clear|yes")
    # the reply to the press (the help has "gelöscht" too: /datenschutz's line)
    done = wait_for_new(emulator, OFFICIAL, before)[-1]
    assert done.text.startswith("Ich habe"), done.text  # not "Ich konnte nur ..."
    ours = {(OFFICIAL, sent.message_id) for sent in emulator.messages_to(OFFICIAL)}
    official = {key for key in emulator.messages if key[0] == OFFICIAL} - ours
    assert official and official <= set(emulator.deleted)  # the official's own messages
    assert ours - {(OFFICIAL, done.message_id)} <= set(emulator.deleted)
    assert str(len(ours) + len(official) - 1) in done.text
    # the intake is untouched: the role question still answers
    emulator.message(OFFICIAL, "1")
    said_to(emulator, OFFICIAL, "Sind Sie gerade in Sicherheit?")
    assert "chat_leeren" in emulator.commands["de"] and "clear_chat" in emulator.commands["en"]


@pytest.mark.slow
def test_an_unreachable_bot_api_at_start_is_waited_for_not_a_crash(tmp_path: Path) -> None:
    emulator = Emulator()  # its port is chosen, but nothing listens yet
    service = Lotse(tmp_path, emulator)
    service.setup()
    try:
        service.start(polling=False)
        waiting = "cannot reach the Bot API (NetworkError), again in"
        deadline = time.monotonic() + 60  # a loaded machine starts `lotse run` slowly
        while waiting not in service.log() and time.monotonic() < deadline:
            service.assert_running()
            time.sleep(0.2)
        assert waiting in service.log()
        service.assert_running()
        emulator.start()
        emulator.wait(lambda: "getUpdates" in emulator.calls, 60, "polling once reachable")
        emulator.message(OFFICIAL, "/start")
        said_to(emulator, OFFICIAL, "Guten Tag", 60)
        assert "Traceback" not in service.log()
        assert service.stop() == 0
    finally:
        if service.process is not None:
            service.stop(kill=True)
        emulator.stop()


async def _queue_backlog(config: Path, chats: list[tuple[int, bool]]) -> None:
    """Replies waiting in the outbox (as after a restart): one per chat, some urgent."""
    async with open_app(load_config(config)) as app, app.store.unit() as unit:
        for chat, urgent in chats:
            await outbox.to_official(
                unit,
                sender_key=f"sender-{chat}",
                channel="telegram",
                address=str(chat),
                reply=Reply(f"Antwort {chat}"),
                urgent=urgent,
            )


@pytest.mark.slow
def test_a_backlog_goes_out_urgent_first_within_the_limits(
    emulator: Emulator, service: Lotse
) -> None:
    chats = [(30_000 + n, n % 3 == 2) for n in range(90)]  # every third urgent, interleaved
    asyncio.run(_queue_backlog(service.config, chats))
    service.start()
    emulator.wait(lambda: len(emulator.sent) >= len(chats), 60, "the backlog")
    order = [sent.chat for sent in emulator.sent]
    urgent = {chat for chat, is_urgent in chats if is_urgent}
    last_urgent = max(order.index(chat) for chat in urgent)
    first_other = min(order.index(chat) for chat, is_urgent in chats if not is_urgent)
    assert last_urgent < first_other
    assert sorted(order) == sorted(chat for chat, _ in chats)  # each once
    assert emulator.violations == []
