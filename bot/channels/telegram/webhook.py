"""Webhook mode: our own small web server that Telegram posts updates to.

Telegram treats an update as delivered once the webhook answers 200, and retries one
that was not answered. So the answer is given only after the core has committed the
update (or given up on it, as polling's offset does): a kill at any moment loses
nothing, and what Telegram posts again is dropped by the core, which remembers
`update_id`s. python-telegram-bot's own webhook server answers as soon as an update is
queued, which would lose the queue at a kill (and it logs update bodies at debug level).

The server runs on tornado (which `python-telegram-bot[webhooks]` brings) in our loop.
It answers POST on the configured path only, and only with Telegram's secret token
(`X-Telegram-Bot-Api-Secret-Token`, compared in constant time): without it anyone who
knows the address could post forged updates, even as a counsellor.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import tornado.httpserver
import tornado.web

logger = logging.getLogger(__name__)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105  (a header name)
MAX_BODY = 2 * 1024 * 1024  # an update is a few kilobytes; files are fetched apart
CLOSE_SECONDS = 5.0  # at a stop, open connections get this long to finish
Take = Callable[[dict[str, Any]], Awaitable[None]]  # returns once the update is handled


@dataclass(frozen=True)
class Webhook:
    listen: str
    port: int
    path: str
    public_url: str
    secret_token: str

    @property
    def url(self) -> str:
        return f"{self.public_url.rstrip('/')}/{self.path.strip('/')}"


class WebhookServer:
    def __init__(self, hook: Webhook, take: Take) -> None:
        self.hook = hook
        self._take = take
        self._server: tornado.httpserver.HTTPServer | None = None
        self.closing = False  # stopping: updates not yet begun are left to Telegram's retry
        self._turn = asyncio.Lock()  # one update at a time, in the order they came, as polling

    def start(self) -> None:
        """Bind now (in the running loop), before Telegram is told the address."""
        app = tornado.web.Application(
            [(f"/{re.escape(self.hook.path.strip('/'))}", _Updates, {"server": self})],
            log_function=_quiet,
        )
        server = tornado.httpserver.HTTPServer(app, max_body_size=MAX_BODY)
        try:
            server.listen(self.hook.port, self.hook.listen)
        except OSError as error:
            logger.error(
                "telegram: cannot listen on %s:%d for the webhook (%s); no updates arrive",
                self.hook.listen,
                self.hook.port,
                error.strerror or type(error).__name__,
            )
            raise
        self._server = server
        logger.info(
            "telegram: webhook server on %s:%d/%s",
            self.hook.listen,
            self.hook.port,
            self.hook.path.strip("/"),
        )

    async def stop(self) -> None:
        self.closing = True
        if self._server is not None:
            self._server.stop()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_SECONDS):
                    await self._server.close_all_connections()
            self._server = None

    async def take(self, data: dict[str, Any]) -> bool:
        """Hand one update on; False (not taken) once the server is stopping."""
        async with self._turn:
            if self.closing:
                return False
            await self._take(data)
            return True

    def authentic(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(
            given.encode(), self.hook.secret_token.encode()
        )


class _Updates(tornado.web.RequestHandler):
    def initialize(self, server: WebhookServer) -> None:
        self.server = server

    async def post(self) -> None:
        if not self.server.authentic(self.request.headers.get(SECRET_HEADER)):
            logger.warning("telegram: a webhook request without the right secret token was refused")
            self.set_status(403)
            return
        try:
            data = json.loads(self.request.body)
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            self.set_status(400)
            return
        # Handled and committed: only now the 200. Stopping: 503, Telegram posts it again.
        self.set_status(200 if await self.server.take(data) else 503)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.finish()  # no traceback, no page: a status only


def _quiet(handler: tornado.web.RequestHandler) -> None:
    """Tornado's access log would name every request; the operator log needs none of it."""
    if handler.get_status() >= 500:
        logger.warning("telegram: the webhook answered %d", handler.get_status())
