"""A Bot API server for the tests: enough of Telegram that python-telegram-bot cannot tell.

It runs in a thread of the test process on 127.0.0.1 (a free port); `lotse run` is
pointed at it with `telegram.api_base_url`. The test injects what officials and
counsellors do (`message`, `press`, `photo`, `document`, `forward`, `edit`, …) and
reads what the bot did (`messages_to`, `topics`, `answers`, …). It enforces Telegram's
flood limits – about one message a second in a private chat with bursts of three,
twenty a minute in a group, thirty a second overall – and counts every violation
instead of hiding it; `fail_next(method, retry_after)` answers the next call with 429.

Once the bot sets a webhook, updates are posted to it as Telegram does: several at a
time (one per chat), with the secret token, each again until it is answered with 200;
`getUpdates` is then refused with 409.

Several `lotse run` processes may share one emulator (a leader and its standby). Give
their process ids to `watch` and every call is attributed to the process whose socket
made it (`Call.caller`, `Sent.caller`): the client's port is looked up in the kernel's
socket table and matched to the process holding that socket, so the processes can run
with the same configuration and token. A process in `holding` waits for the answer to
its sendMessage (as over a slow network) until it is taken out again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import tornado.httpclient
import tornado.httpserver
import tornado.web

TOKEN = "123456:TEST-token"
BOT_ID = 123456
STAFF_GROUP = -1001234567890
PRIVATE_BURST, PRIVATE_PER_SECOND = 3, 1.0
GROUP_WINDOW, GROUP_MAX = 60.0, 20
OVERALL_WINDOW, OVERALL_MAX = 1.0, 30
SLACK = 0.05  # network jitter a real server would forgive
TEXT_FIELDS = frozenset({"text", "caption", "name", "title", "description"})
WEBHOOK_CONNECTIONS = 40  # setWebhook's max_connections default
WEBHOOK_RETRY = 0.5  # seconds before an update the webhook did not take is posted again


@dataclass
class Sent:
    chat: int
    message_id: int
    text: str
    at: float
    thread: int | None = None
    markup: dict[str, Any] | None = None
    document: bytes | None = None
    deleted: bool = False
    caller: int | None = None  # the process that sent it, when watched (see `Emulator.watch`)


@dataclass(frozen=True)
class Call:
    method: str
    caller: int | None
    at: float  # time.monotonic() when the request arrived


class RawUpdate(dict[str, Any]):
    """An update sent as its raw JSON text (see `Emulator.inject_raw`)."""

    def json(self) -> str:
        return f'{{"update_id": {self["update_id"]}, {self["raw"]}}}'


def _encode(body: dict[str, Any]) -> str:
    result = body.get("result")
    if not isinstance(result, list) or not any(isinstance(u, RawUpdate) for u in result):
        return json.dumps(body)
    updates = ", ".join(u.json() if isinstance(u, RawUpdate) else json.dumps(u) for u in result)
    return f'{{"ok": true, "result": [{updates}]}}'


@dataclass
class _Bucket:
    tokens: float = float(PRIVATE_BURST)
    at: float = field(default_factory=time.monotonic)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Emulator:
    def __init__(self) -> None:
        self.port = free_port()
        self.root = f"http://127.0.0.1:{self.port}"
        self.lock = threading.RLock()
        self.updates: list[dict[str, Any]] = []
        self.history: dict[int, dict[str, Any]] = {}
        self.redeliver: list[dict[str, Any]] = []
        self.confirmed = 0  # every update below this id was confirmed by an offset
        self._update_ids = itertools.count(1)
        self._message_ids: dict[int, itertools.count[int]] = {}
        self.messages: dict[tuple[int, int], Sent] = {}
        self.sent: list[Sent] = []
        self.calls: list[str] = []
        self.calls_by: list[Call] = []  # every call with its process, when `watch`ed
        self.watch: set[int] = set()
        self.holding: set[int] = set()  # watched processes whose sendMessage is not answered yet
        self.held: list[int] = []  # which process each held sendMessage came from
        self._polls = 0  # getUpdates calls so far; only the latest may wait for updates
        self._caller: int | None = None
        self._owners: weakref.WeakKeyDictionary[object, int | None] = weakref.WeakKeyDictionary()
        self.answers: list[tuple[str, str | None]] = []
        self.commands: dict[str | None, list[str]] = {}
        self.files: dict[str, bytes] = {}
        self.topics: dict[int, dict[str, Any]] = {}  # thread id -> name, closed
        self.left: list[int] = []
        self.deleted: list[tuple[int, int]] = []
        self.violations: list[str] = []
        self.rejected_429 = 0
        self.fail: dict[str, list[float]] = {}
        self.blocked: set[int] = set()
        self.can_read_all_group_messages = True
        self.forum = True
        self.administrators: list[int] = []
        self.member_count = 2
        self.token_valid = True
        self.webhook: dict[str, Any] | None = None  # url, secret_token
        self.webhook_acked: set[int] = set()
        self.webhook_refused = 0  # posts the webhook did not answer with 200 (or at all)
        self._buckets: dict[int, _Bucket] = {}
        self._group_sends: dict[int, deque[float]] = {}
        self._overall: deque[float] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._new_update: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="telegram-emulator")

    # -- running -----------------------------------------------------------------------------------

    def start(self) -> Emulator:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._new_update = asyncio.Event()
        app = tornado.web.Application(
            [
                (r"/bot(?P<token>[^/]+)/(?P<method>\w+)", _Method, {"emulator": self}),
                (r"/file/bot(?P<token>[^/]+)/(?P<path>.+)", _Download, {"emulator": self}),
            ]
        )
        server = tornado.httpserver.HTTPServer(app, max_body_size=200 * 1024 * 1024)
        server.listen(self.port, "127.0.0.1")
        loop.call_soon(self._ready.set)
        loop.run_forever()

    def _notify(self) -> None:
        loop, event = self._loop, self._new_update
        if loop is not None and event is not None:
            loop.call_soon_threadsafe(event.set)

    # -- what people do ----------------------------------------------------------------------------

    def user(self, user_id: int, language: str = "de") -> dict[str, Any]:
        return {
            "id": user_id,
            "is_bot": False,
            "first_name": f"User{user_id}",
            "language_code": language,
        }

    def _chat(self, chat: int) -> dict[str, Any]:
        if chat == STAFF_GROUP:
            return {"id": chat, "type": "supergroup", "title": "Beratung", "is_forum": self.forum}
        if chat < 0:
            return {"id": chat, "type": "group", "title": "Elsewhere"}
        return {"id": chat, "type": "private", "first_name": f"User{chat}"}

    def _next_message_id(self, chat: int) -> int:
        return next(self._message_ids.setdefault(chat, itertools.count(1)))

    def inject(self, update: dict[str, Any]) -> int:
        with self.lock:
            update_id = next(self._update_ids)
            self.updates.append({"update_id": update_id, **update})
            self.history[update_id] = self.updates[-1]
        self._notify()
        return update_id

    def inject_raw(self, body: str) -> int:
        """An update whose JSON text is given as is (after `"update_id": N,`): for bodies no
        well-behaved encoder writes, such as nesting ten thousand levels deep."""
        with self.lock:
            update_id = next(self._update_ids)
            self.updates.append(RawUpdate(update_id=update_id, raw=body))
            self.history[update_id] = self.updates[-1]
        self._notify()
        return update_id

    def reinject(self, update_id: int) -> None:
        """Deliver an update again (as after a restart before its offset was confirmed)."""
        with self.lock:
            self.redeliver.append(self.history[update_id])
        self._notify()

    def _message(self, user: int, chat: int | None = None, **content: Any) -> dict[str, Any]:
        chat = user if chat is None else chat
        with self.lock:
            message_id = self._next_message_id(chat)
            self.messages[(chat, message_id)] = Sent(
                chat, message_id, content.get("text", ""), time.time()
            )
        return {
            "message_id": message_id,
            "from": self.user(user, content.pop("language", "de")),
            "chat": self._chat(chat),
            "date": int(time.time()),
            **content,
        }

    def message(self, user: int, text: str, language: str = "de", **extra: Any) -> int:
        return self.inject({"message": self._message(user, text=text, language=language, **extra)})

    def staff_message(
        self, user: int, text: str, thread: int | None = None, reply_to: Sent | None = None
    ) -> int:
        extra: dict[str, Any] = {}
        if thread is not None:
            extra |= {"message_thread_id": thread, "is_topic_message": True}
        if reply_to is not None:
            if thread is None and not self.forum:  # a reply thread, not a topic
                extra["message_thread_id"] = reply_to.message_id
            extra["reply_to_message"] = {
                "message_id": reply_to.message_id,
                "from": {"id": BOT_ID, "is_bot": True, "first_name": "Lotse"},
                "chat": self._chat(reply_to.chat),
                "date": int(reply_to.at),
                "text": reply_to.text,
            }
        return self.inject({"message": self._message(user, STAFF_GROUP, text=text, **extra)})

    def add_file(self, data: bytes, size: int | None = None) -> dict[str, Any]:
        with self.lock:
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = data
        return {"file_id": file_id, "file_unique_id": f"u{file_id}", "file_size": size or len(data)}

    def photo(self, user: int, data: bytes, caption: str | None = None) -> int:
        small = self.add_file(data[: len(data) // 4] or b"x")
        large = self.add_file(data)
        sizes = [small | {"width": 90, "height": 90}, large | {"width": 1280, "height": 960}]
        extra: dict[str, Any] = {"caption": caption} if caption else {}
        return self.inject({"message": self._message(user, photo=sizes, **extra)})

    def document(self, user: int, data: bytes, name: str, size: int | None = None) -> int:
        document = self.add_file(data, size) | {"file_name": name, "mime_type": "application/pdf"}
        return self.inject({"message": self._message(user, document=document)})

    def forward(self, user: int, text: str, origin_name: str, origin_date: int) -> int:
        origin = {
            "type": "user",
            "date": origin_date,
            "sender_user": {"id": 777, "is_bot": False, "first_name": origin_name},
        }
        return self.inject({"message": self._message(user, text=text, forward_origin=origin)})

    def sticker(self, user: int) -> int:
        sticker = {
            "file_id": "sticker-1", "file_unique_id": "s1", "type": "regular", "width": 512,
            "height": 512, "is_animated": False, "is_video": False,
        }  # fmt: skip
        return self.inject({"message": self._message(user, sticker=sticker)})

    def edit(self, user: int, message_id: int, text: str) -> int:
        edited = {
            "message_id": message_id, "from": self.user(user), "chat": self._chat(user),
            "date": int(time.time()) - 5, "edit_date": int(time.time()), "text": text,
        }  # fmt: skip
        return self.inject({"edited_message": edited})

    def press(self, user: int, sent: Sent, data: str) -> int:
        message: dict[str, Any] = {
            "message_id": sent.message_id,
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "Lotse"},
            "chat": self._chat(sent.chat),
            "date": int(sent.at),
            "text": sent.text,
        }
        if sent.markup:
            message["reply_markup"] = sent.markup
        query = {
            "id": f"q{time.monotonic_ns()}",
            "from": self.user(user),
            "chat_instance": "ci",
            "data": data,
            "message": message,
        }
        return self.inject({"callback_query": query})

    # -- what the bot did --------------------------------------------------------------------------

    def messages_to(self, chat: int) -> list[Sent]:
        with self.lock:
            return [sent for sent in self.sent if sent.chat == chat]

    def current(self, chat: int, message_id: int) -> Sent:
        with self.lock:
            return self.messages[(chat, message_id)]

    def wait(self, condition: Any, timeout: float = 30.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if condition():
                    return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what or condition}")

    def fail_next(self, method: str, retry_after: float) -> None:
        with self.lock:
            self.fail.setdefault(method, []).append(retry_after)

    # -- the limits --------------------------------------------------------------------------------

    def _count(self, chat: int, method: str) -> None:
        now = time.monotonic()
        self._overall.append(now)
        while self._overall and self._overall[0] <= now - OVERALL_WINDOW:
            self._overall.popleft()
        if len(self._overall) > OVERALL_MAX:
            self.violations.append(
                f"overall: {len(self._overall)} in {OVERALL_WINDOW} s ({method})"
            )
        if chat < 0:
            sends = self._group_sends.setdefault(chat, deque())
            sends.append(now)
            while sends and sends[0] <= now - GROUP_WINDOW:
                sends.popleft()
            if len(sends) > GROUP_MAX:
                self.violations.append(f"group {chat}: {len(sends)} in a minute ({method})")
            return
        bucket = self._buckets.setdefault(chat, _Bucket(at=now))
        bucket.tokens = min(PRIVATE_BURST, bucket.tokens + (now - bucket.at) * PRIVATE_PER_SECOND)
        bucket.at = now
        if bucket.tokens < 1.0 - SLACK:
            self.violations.append(f"private chat: too fast ({method})")
        bucket.tokens -= 1.0

    # -- the methods -------------------------------------------------------------------------------

    def caller_of(self, connection: object, peer_port: int) -> int | None:
        """Which watched process holds the client end of `connection` (None: none)."""
        if not self.watch:
            return None
        if connection not in self._owners:
            self._owners[connection] = _socket_owner(peer_port, self.port, set(self.watch))
        return self._owners[connection]

    def calls_from(self, caller: int, method: str | None = None, since: float = 0.0) -> list[Call]:
        with self.lock:
            return [
                call
                for call in self.calls_by
                if call.caller == caller and call.at >= since and method in (None, call.method)
            ]

    async def call(
        self,
        method: str,
        params: dict[str, Any],
        files: dict[str, bytes],
        caller: int | None = None,
    ) -> tuple[int, dict[str, Any]]:
        if not self.token_valid:
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        with self.lock:
            self.calls.append(method)
            self.calls_by.append(Call(method, caller, time.monotonic()))
            waits = self.fail.get(method)
            if waits:
                retry_after = waits.pop(0)
                self.rejected_429 += 1
                return 429, {
                    "ok": False,
                    "error_code": 429,
                    "description": f"Too Many Requests: retry after {retry_after}",
                    "parameters": {"retry_after": retry_after},
                }
        if method == "sendMessage" and caller is not None and caller in self.holding:
            self.held.append(caller)  # answered (and carried out) once `holding` lets it go
            while caller in self.holding:  # noqa: ASYNC110 (set from the test's thread)
                await asyncio.sleep(0.02)
        if method == "getUpdates":
            if self.webhook is not None:
                return 409, {
                    "ok": False,
                    "error_code": 409,
                    "description": "Conflict: can't use getUpdates method while webhook is active",
                }
            updates = await self._get_updates(params)
            if updates is None:
                return 409, {
                    "ok": False,
                    "error_code": 409,
                    "description": "Conflict: terminated by other getUpdates request; "
                    "make sure that only one bot instance is running",
                }
            return 200, {"ok": True, "result": updates}
        with self.lock:
            handler = getattr(self, f"_m_{method}", None)
            if handler is None:
                return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
            self._caller = caller
            try:
                return 200, {"ok": True, "result": handler(params, files)}
            except _ApiError as error:
                return error.code, {
                    "ok": False,
                    "error_code": error.code,
                    "description": error.description,
                }

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]] | None:
        """The updates for one getUpdates call; None when a newer call ended this one (as
        Telegram does: only one long poll per bot, the older one gets 409 Conflict)."""
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        deadline = time.monotonic() + timeout
        assert self._new_update is not None
        with self.lock:
            self._polls += 1
            mine = self._polls
        self._new_update.set()  # wakes an older poll, which then ends
        while True:
            with self.lock:
                if self._polls != mine:
                    return None
                if offset:
                    self.confirmed = max(self.confirmed, offset)
                    self.updates = [u for u in self.updates if u["update_id"] >= offset]
                limit = int(params.get("limit") or 100)
                fresh = [u for u in self.updates if u["update_id"] >= self.confirmed][:limit]
                pending = (self.redeliver + fresh)[:limit]
                self.redeliver = self.redeliver[limit:]
                self._new_update.clear()
            remaining = deadline - time.monotonic()
            if pending or remaining <= 0:
                return pending
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_update.wait(), min(remaining, 1.0))

    def _bot_user(self) -> dict[str, Any]:
        return {
            "id": BOT_ID, "is_bot": True, "first_name": "Lotse", "username": "LotseTestBot",
            "can_join_groups": True, "supports_inline_queries": False,
            "can_read_all_group_messages": self.can_read_all_group_messages,
        }  # fmt: skip

    def _m_getMe(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return self._bot_user()

    def _m_deleteWebhook(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        self.webhook = None
        return True

    def _m_setWebhook(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        pushing = self.webhook is not None
        self.webhook = {"url": params["url"], "secret_token": params.get("secret_token")}
        if not pushing and self._loop is not None:
            self._loop.create_task(self._push())
        return True

    def _m_getWebhookInfo(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        pending = [u for u in self.updates if u["update_id"] not in self.webhook_acked]
        return {
            "url": self.webhook["url"] if self.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(pending),
        }

    async def _push(self) -> None:
        """Post pending updates to the webhook until it is deleted (runs in the server loop)."""
        client = tornado.httpclient.AsyncHTTPClient(
            force_instance=True, max_clients=WEBHOOK_CONNECTIONS
        )
        posting: dict[int, asyncio.Task[None]] = {}  # update id -> its post
        while self.webhook is not None:
            with self.lock:
                again, self.redeliver = self.redeliver, []
                chats = {_chat_of(self.history[i]) for i in posting}
                for index, update in enumerate(
                    again + [u for u in self.updates if u["update_id"] not in self.webhook_acked]
                ):
                    update_id, chat = update["update_id"], _chat_of(update)
                    busy = update_id in posting or (chat is not None and chat in chats)
                    if busy or len(posting) >= WEBHOOK_CONNECTIONS:
                        if index < len(again):
                            self.redeliver.append(update)  # a repeat waits its turn
                        continue
                    chats.add(chat)
                    posting[update_id] = asyncio.ensure_future(self._post_update(client, update))
            await asyncio.sleep(0.02)
            for update_id in [i for i, task in posting.items() if task.done()]:
                del posting[update_id]
        client.close()

    async def _post_update(
        self, client: tornado.httpclient.AsyncHTTPClient, update: dict[str, Any]
    ) -> None:
        hook = self.webhook
        if hook is None:
            return
        headers = {"Content-Type": "application/json"}
        if hook["secret_token"]:
            headers["X-Telegram-Bot-Api-Secret-Token"] = hook["secret_token"]
        try:
            response = await client.fetch(
                hook["url"],
                method="POST",
                body=json.dumps(update),
                headers=headers,
                raise_error=False,
                request_timeout=60,
            )
            code = response.code
        except OSError:  # nobody listens (yet, or any more)
            code = 0
        with self.lock:
            if code == 200:
                self.webhook_acked.add(update["update_id"])
                return
            self.webhook_refused += 1
        await asyncio.sleep(WEBHOOK_RETRY)

    def _m_setMyCommands(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        commands = [entry["command"] for entry in params["commands"]]
        self.commands[params.get("language_code")] = commands
        return True

    def _post(
        self, params: dict[str, Any], method: str, text: str, document: bytes | None = None
    ) -> dict[str, Any]:
        chat = int(params["chat_id"])
        if chat in self.blocked:
            raise _ApiError(403, "Forbidden: bot was blocked by the user")
        if chat > 0 and chat > 10**12:
            raise _ApiError(400, "Bad Request: chat not found")
        if len(text) > 4096:
            raise _ApiError(400, "Bad Request: message is too long")
        thread = params.get("message_thread_id")
        thread = int(thread) if thread is not None else None
        self._count(chat, method)
        markup = params.get("reply_markup")
        sent = Sent(chat, self._next_message_id(chat), text, time.time(), thread, markup, document)
        sent.caller = self._caller
        self.sent.append(sent)
        self.messages[(chat, sent.message_id)] = sent
        result: dict[str, Any] = {
            "message_id": sent.message_id,
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "Lotse"},
            "chat": self._chat(chat),
            "date": int(sent.at),
            "text": text,
        }
        if thread is not None:
            result |= {"message_thread_id": thread, "is_topic_message": True}
        if markup:
            result["reply_markup"] = markup
        return result

    def _m_sendMessage(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return self._post(params, "sendMessage", str(params["text"]))

    def _m_sendDocument(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        data = files.get("document", b"")
        return self._post(params, "sendDocument", str(params.get("caption") or ""), data)

    def _stored(self, params: dict[str, Any]) -> Sent:
        key = (int(params["chat_id"]), int(params["message_id"]))
        sent = self.messages.get(key)
        if sent is None or sent.deleted:
            raise _ApiError(400, "Bad Request: message to edit not found")
        return sent

    def _m_editMessageText(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        sent = self._stored(params)
        sent.text = str(params["text"])
        sent.markup = params.get("reply_markup")
        return {
            "message_id": sent.message_id,
            "chat": self._chat(sent.chat),
            "date": int(sent.at),
            "text": sent.text,
        }

    def _m_editMessageReplyMarkup(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        sent = self._stored(params)
        markup = params.get("reply_markup")
        if markup == sent.markup or (not markup and not sent.markup):
            raise _ApiError(400, "Bad Request: message is not modified")
        sent.markup = markup or None
        result = {
            "message_id": sent.message_id,
            "chat": self._chat(sent.chat),
            "date": int(sent.at),
            "text": sent.text,
        }
        if markup:
            result["reply_markup"] = markup
        return result

    def _m_answerCallbackQuery(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        self.answers.append((str(params["callback_query_id"]), params.get("text")))
        return True

    def _m_getFile(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        file_id = str(params["file_id"])
        data = self.files.get(file_id)
        if data is None:
            raise _ApiError(400, "Bad Request: invalid file_id")
        if len(data) > 20 * 1024 * 1024:
            raise _ApiError(400, "Bad Request: file is too big")
        return {
            "file_id": file_id,
            "file_unique_id": f"u{file_id}",
            "file_size": len(data),
            "file_path": f"files/{file_id}",
        }

    def _m_deleteMessages(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        chat = int(params["chat_id"])
        for message_id in params["message_ids"]:
            sent = self.messages.get((chat, int(message_id)))
            if sent is not None and not sent.deleted and time.time() - sent.at < 48 * 3600:
                sent.deleted = True
                self.deleted.append((chat, int(message_id)))
        return True

    def _m_createForumTopic(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        chat = int(params["chat_id"])
        if chat != STAFF_GROUP or not self.forum:
            raise _ApiError(400, "Bad Request: the chat is not a forum")
        thread = 1000 + len(self.topics)
        self.topics[thread] = {"name": params["name"], "closed": False}
        return {"message_thread_id": thread, "name": params["name"], "icon_color": 7322096}

    def _m_closeForumTopic(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        self.topics[int(params["message_thread_id"])]["closed"] = True
        return True

    def _m_reopenForumTopic(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        self.topics[int(params["message_thread_id"])]["closed"] = False
        return True

    def _m_getChat(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return self._chat(int(params["chat_id"])) | {
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }

    def _m_getChatAdministrators(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        members = [{"status": "creator", "user": self._bot_user(), "is_anonymous": False}]
        rights = {
            name: True
            for name in (
                "can_be_edited", "can_manage_chat", "can_delete_messages", "can_manage_video_chats",
                "can_restrict_members", "can_promote_members", "can_change_info",
                "can_invite_users",
                "can_post_stories", "can_edit_stories", "can_delete_stories", "can_manage_topics",
            )
        }  # fmt: skip
        members += [
            {"status": "administrator", "user": self.user(user), "is_anonymous": False, **rights}
            for user in self.administrators
        ]
        return members

    def _m_getChatMemberCount(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return self.member_count

    def _m_leaveChat(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        self.left.append(int(params["chat_id"]))
        return True


def _chat_of(update: dict[str, Any]) -> int | None:
    for kind in ("message", "edited_message", "callback_query"):
        content = update.get(kind)
        if isinstance(content, dict):
            message = content.get("message", content) if kind == "callback_query" else content
            return int(message["chat"]["id"])
    return None


def _socket_owner(client_port: int, server_port: int, pids: set[int]) -> int | None:
    """The process among `pids` that holds the TCP socket 127.0.0.1:client_port → server_port."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                local, remote = fields[1], fields[2]
                if (
                    int(local.rsplit(":", 1)[1], 16) == client_port
                    and int(remote.rsplit(":", 1)[1], 16) == server_port
                ):
                    inode = fields[9]
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        return pid
    return None


class _ApiError(Exception):
    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


def _value(name: str, raw: bytes) -> Any:
    """A form field as the Bot API reads it: objects and lists are JSON, words are words
    (a message's text may well start with "[")."""
    text = raw.decode()
    if name not in TEXT_FIELDS and text[:1] in "[{":
        return json.loads(text)
    return text


class _Method(tornado.web.RequestHandler):
    def initialize(self, emulator: Emulator) -> None:
        self.emulator = emulator

    async def post(self, token: str, method: str) -> None:
        if token != TOKEN:
            self.set_status(401)
            self.finish({"ok": False, "error_code": 401, "description": "Unauthorized"})
            return
        params: dict[str, Any] = {}
        if self.request.headers.get("Content-Type", "").startswith("application/json"):
            params = json.loads(self.request.body or b"{}")
        else:
            fields = self.request.body_arguments.items()
            params = {name: _value(name, values[-1]) for name, values in fields}
        files = {name: parts[0].body for name, parts in self.request.files.items()}
        caller = None
        if self.emulator.watch:
            stream: Any = getattr(self.request.connection, "stream", None)
            sock = getattr(stream, "socket", None)
            if sock is not None:
                caller = self.emulator.caller_of(stream, int(sock.getpeername()[1]))
        status, body = await self.emulator.call(method, params, files, caller)
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(_encode(body))

    get = post


class _Download(tornado.web.RequestHandler):
    def initialize(self, emulator: Emulator) -> None:
        self.emulator = emulator

    def get(self, token: str, path: str) -> None:
        file_id = path.rsplit("/", 1)[-1]
        data = self.emulator.files.get(file_id)
        if token != TOKEN or data is None:
            self.set_status(404)
            self.finish()
            return
        self.finish(data)
