"""The operations endpoint of `lotse run`: `GET /healthz` and `GET /metrics` on a local address.

A deliberately small HTTP/1.1 server on `asyncio.start_server`: it reads one request
line and its headers (at most `MAX_REQUEST` bytes, within `READ_SECONDS`), answers
`GET` only (405 otherwise), 404 for any other path, and closes the connection. It is
meant for 127.0.0.1 or a private network, scraped by Prometheus and a load balancer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from bot.config import ConfigError
from bot.health import HealthCheck
from bot.listen import parse_listen
from bot.logs import log_failure
from bot.metrics import CONTENT_TYPE, PrometheusMetrics
from bot.service import Service
from flows.problems import Problem
from storage.outbox import STAFF_CHANNEL
from storage.repository import Store

logger = logging.getLogger(__name__)
MAX_REQUEST = 8 * 1024
READ_SECONDS = 5.0
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           500: "Internal Server Error", 503: "Service Unavailable"}  # fmt: skip
TEXT = "text/plain; charset=utf-8"


class OpsServer:
    def __init__(
        self,
        host: str,
        port: int,
        store: Store,
        health: HealthCheck,
        metrics: PrometheusMetrics,
        *,
        leader: Callable[[], bool] = lambda: True,
    ) -> None:
        self.host, self.port = host, port  # port 0: any free one (tests)
        self.leader = leader
        self.store = store
        self.health = health
        self.metrics = metrics
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Bind now, so a taken port stops the start instead of failing in the background."""
        self._server = await asyncio.start_server(self._connection, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]  # the real one when 0 was asked
        logger.info("health and metrics on http://%s:%d/", self.host, self.port)

    async def serve(self) -> None:
        """A `Service` job: serves until cancelled, then closes."""
        if self._server is None:
            await self.start()
        assert self._server is not None
        try:
            await self._server.serve_forever()
        finally:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                async with asyncio.timeout(READ_SECONDS):
                    method, path = await _read_request(reader)
            except (
                ValueError,
                TimeoutError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
            ):
                await _respond(writer, 400, TEXT, b"bad request\n")
                return
            if path not in ("/healthz", "/metrics"):
                await _respond(writer, 404, TEXT, b"not found\n")
            elif method != "GET":
                await _respond(writer, 405, TEXT, b"only GET\n", {"Allow": "GET"})
            elif path == "/healthz":
                verdict = await self.health.verdict()
                status = 200 if verdict.healthy else 503
                await _respond(writer, status, TEXT, verdict.text().encode())
            else:
                await self._metrics(writer)
        except (ConnectionError, OSError):
            pass  # the client went away
        except Exception as error:  # never a traceback (it could quote anything) to the log
            log_failure(logger, "answering a health or metrics request", error)
            self.metrics.failed(type(error).__name__)
            with contextlib.suppress(Exception):
                await _respond(writer, 500, TEXT, b"internal error\n")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _metrics(self, writer: asyncio.StreamWriter) -> None:
        try:
            body = await self.metrics.render(self.store, self.leader())
        except Exception as error:  # the database is away: say so, the health check names it
            log_failure(logger, "reading the metrics", error)
            self.metrics.failed(type(error).__name__)
            await _respond(writer, 503, TEXT, b"metrics unavailable: see /healthz\n")
            return
        await _respond(writer, 200, CONTENT_TYPE, body)


@asynccontextmanager
async def serving_ops(
    listen: str, service: Service, metrics: PrometheusMetrics
) -> AsyncIterator[OpsServer | None]:
    """Serve `[service] listen` (nothing when empty) while the block runs, on a standby too.

    The address is bound before the block starts, so a taken port stops the start.
    """
    if not listen:
        yield None
        return
    host, port = parse_listen(listen)
    channels = service.adapters
    metrics.expect_channels([*(channel.name for channel in channels), STAFF_CHANNEL])
    store = service.core.store
    health = HealthCheck(store, service.core.staff_room, channels, active=service.active.is_set)
    server = OpsServer(host, port, store, health, metrics, leader=service.active.is_set)
    try:
        await server.start()
    except OSError as error:
        raise ConfigError(
            "configuration",
            [Problem("service.listen", f"cannot listen on {listen}: {error.strerror or error}")],
        ) from None
    serving = asyncio.create_task(server.serve(), name="ops")
    try:
        yield server
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str]:
    """The method and path of one request; its headers are read (bounded) and ignored."""
    head = await _read_head(reader)
    request_line = head.split(b"\n", 1)[0].rstrip(b"\r").decode("ascii")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ValueError("not an HTTP/1.x request line")
    method, target = parts[0], parts[1]
    path = target.split("?", 1)[0]
    if not method.isalpha() or not path.startswith("/"):
        raise ValueError("malformed request line")
    return method, path


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head and b"\n\n" not in head:
        chunk = await reader.read(MAX_REQUEST + 1 - len(head))
        if not chunk:
            raise ValueError("the request ended early")
        head += chunk
        if len(head) > MAX_REQUEST:
            raise ValueError("the request is too large")
    return head


async def _respond(
    writer: asyncio.StreamWriter,
    status: int,
    content_type: str,
    body: bytes,
    extra: dict[str, str] | None = None,
) -> None:
    headers = {
        "Content-Type": content_type,
        "Content-Length": str(len(body)),
        "Cache-Control": "no-store",
        "Connection": "close",
        **(extra or {}),
    }
    head = f"HTTP/1.1 {status} {REASONS[status]}\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()
    )
    writer.write(head.encode("ascii") + b"\r\n" + body)
    await writer.drain()
