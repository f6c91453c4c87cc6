"""`/healthz` and `/metrics` of a running service, in-process on both databases.

The health check names the failing part (the database, the staff room, a channel that
has not reached its platform within a minute) and turns healthy again when it is back;
the metrics parse with Prometheus' own parser, hold every family the README alerts on,
and carry no content, reference, pseudonym or platform id.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.config import ConfigError, config_from_dict
from bot.core.orchestrator import Core
from bot.core.settings import Settings
from bot.core.types import Attachment, Inbound, InboundSink
from bot.health import HealthCheck
from bot.metrics import FAMILIES, PrometheusMetrics
from bot.ops import MAX_REQUEST, OpsServer, serving_ops
from bot.service import Leadership, Service
from flows.engine import Engine
from storage.db import open_database, upgrade
from storage.keyfile import UnlockedKey
from storage.keyring import CounsellorEntry, bootstrap
from storage.repository import Store
from storage.server_secret import ServerKeys
from tests.conftest import ROOT, _async_url, _create_database, _drop_database
from tests.test_core import Recorder
from tests.test_demo_script import Intake, intake_lines
from tests.test_imports import module_graph
from tests.test_no_plaintext import Canaries

REFERENCE = re.compile(r"L-\d{4}-\d{4,}")


@dataclass
class Fake(Recorder):
    """A channel (and staff room) whose platform was last reached at `reached`."""

    reached: float | None = None

    def last_reachable(self) -> float | None:
        return self.reached

    async def receive(self, sink: InboundSink) -> None:
        await asyncio.Event().wait()


@dataclass
class Running:
    core: Core
    channel: Fake
    metrics: PrometheusMetrics
    server: OpsServer

    async def wait_active(self) -> None:
        for _ in range(100):
            _, body = await self.get("/healthz")
            if "role: active" in body:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(body)

    async def get(self, path: str, method: str = "GET") -> tuple[int, str]:
        return await request(self.server.port, f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n")

    async def say(
        self, text: str, user: str = "4711", attachment: Attachment | None = None
    ) -> None:
        self.count = getattr(self, "count", 0) + 1
        await self.core.handle(
            Inbound(
                self.channel.name, user, f"chat-{user}", text, f"{user}-{self.count}",
                attachments=(attachment,) if attachment else (),
            )
        )  # fmt: skip
        await self.core.settle()


async def request(port: int, raw: str | bytes) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw.encode() if isinstance(raw, str) else raw)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    head, _, body = answer.decode().partition("\r\n\r\n")
    return int(head.split(" ")[1]), body


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def run_service(
    store: Store, flow_engine: Engine, leadership: Leadership | None = None
) -> AsyncIterator[Running]:
    channel = Fake(reached=time.monotonic())
    metrics = PrometheusMetrics()
    core = Core(flow_engine, store, channel, Settings.defaults(), metrics)
    service = Service(core, [channel], leadership=leadership)
    async with serving_ops(f"127.0.0.1:{free_port()}", service, metrics) as server:
        assert server is not None
        task = asyncio.create_task(service.run(handle_signals=False))
        yield Running(core, channel, metrics, server)
        service.stopping.set()
        await asyncio.wait_for(task, 30)


@pytest.fixture
async def running(store: Store, flow_engine: Engine) -> AsyncIterator[Running]:
    async with run_service(store, flow_engine) as running:
        await running.wait_active()
        yield running


async def test_healthz_is_ok_when_database_staff_room_and_channels_answer(
    running: Running,
) -> None:
    status, body = await running.get("/healthz")
    assert status == 200, body
    assert body.splitlines()[0] == "ok"
    assert {"database: ok", "staff room: ok", "channel test: ok", "role: active"} <= set(
        body.splitlines()
    )


async def test_healthz_names_a_channel_unreachable_for_a_minute_and_recovers(
    running: Running,
) -> None:
    running.channel.reached = time.monotonic() - 61
    status, body = await running.get("/healthz")
    assert status == 503
    assert body.splitlines()[0] == "unhealthy: channel test"
    assert re.search(r"^channel test: has not reached its platform for 6\d s$", body, re.M), body
    running.channel.reached = None
    status, body = await running.get("/healthz")
    assert (status, body.splitlines()[0]) == (503, "unhealthy: channel test")
    running.channel.reached = time.monotonic()
    status, body = await running.get("/healthz")
    assert status == 200, body


class NeverLeader:
    """Another instance holds the lease."""

    seconds = 10.0

    def valid(self) -> bool:
        return False

    async def acquire(self) -> bool:
        return False

    async def release(self) -> None:
        return None


async def test_a_standby_answers_too_and_says_it_is_not_the_leader(
    store: Store, flow_engine: Engine
) -> None:
    async with run_service(store, flow_engine, NeverLeader()) as standby:
        standby.channel.reached = None  # a standby polls nothing
        status, body = await standby.get("/healthz")
        assert status == 200, body
        assert {"role: standby", "channel test: not polled (standby)"} <= set(body.splitlines())
        families = _families((await standby.get("/metrics"))[1])
        assert _value(families, "lotse_leader") == 0


async def test_healthz_names_the_staff_room_when_its_check_fails(running: Running) -> None:
    running.channel.problems = ["the room is not end-to-end encrypted"]
    status, body = await running.get("/healthz")
    assert status == 503
    assert body.splitlines()[0] == "unhealthy: staff room"
    assert "staff room: the room is not end-to-end encrypted" in body
    running.channel.problems = []
    assert (await running.get("/healthz"))[0] == 200


@pytest.mark.postgres
async def test_healthz_names_the_database_while_postgres_refuses_and_recovers(
    postgres_admin_url: str, server_keys: ServerKeys, counsellor_key: UnlockedKey
) -> None:
    name = await _create_database(postgres_admin_url)
    admin = await asyncpg.connect(postgres_admin_url)
    database = open_database(_async_url(postgres_admin_url, name))
    try:
        await upgrade(database)
        store = Store(database, server_keys)
        async with store.unit() as unit:
            await bootstrap(unit, CounsellorEntry("Berger", "A. Berger"), counsellor_key.public)
        channel = Fake(reached=time.monotonic())
        metrics = PrometheusMetrics()
        server = OpsServer("127.0.0.1", 0, store, HealthCheck(store, channel, [channel]), metrics)
        await server.start()
        serving = asyncio.create_task(server.serve())
        assert (await request(server.port, "GET /healthz HTTP/1.1\r\n\r\n"))[0] == 200

        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        status, body = await request(server.port, "GET /healthz HTTP/1.1\r\n\r\n")
        assert status == 503
        assert body.splitlines()[0] == "unhealthy: database"
        assert body.splitlines()[1].startswith("database: unreachable (")
        assert "channel test: ok" in body
        status, body = await request(server.port, "GET /metrics HTTP/1.1\r\n\r\n")
        assert status == 503

        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        status, body = await request(server.port, "GET /healthz HTTP/1.1\r\n\r\n")
        assert status == 200, body
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving
    finally:
        await database.dispose()
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
        await _drop_database(postgres_admin_url, name)


def _families(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    return {
        family.name: [(s.name, s.labels, s.value) for s in family.samples]
        for family in text_string_to_metric_families(text)
    }


def _value(families: dict[str, list[tuple[str, dict[str, str], float]]], sample: str,
           **labels: str) -> float:  # fmt: skip
    family = sample.removesuffix("_total").removesuffix("_count").removesuffix("_sum")
    return sum(
        value
        for name, found, value in families[family]
        if name == sample and all(found.get(k) == v for k, v in labels.items())
    )


async def test_metrics_parse_and_hold_every_family_with_the_figures_of_an_intake(
    running: Running,
) -> None:
    status, body = await running.get("/metrics")
    assert status == 200
    families = _families(body)
    assert set(FAMILIES) <= set(families), set(FAMILIES) - set(families)
    assert _value(families, "lotse_cases_waiting") == 0
    assert _value(families, "lotse_leader") == 1
    assert _value(families, "lotse_escalate_urgent_after_seconds") == 300

    for line in intake_lines(Intake(urgent=True)):
        await running.say(line)
    await running.say("/start", user="4712")
    await running.say("1", user="4712")

    families = _families((await running.get("/metrics"))[1])
    assert _value(families, "lotse_cases_waiting") == 1
    assert _value(families, "lotse_urgent_unclaimed") == 1
    assert _value(families, "lotse_oldest_urgent_wait_seconds") >= 0
    assert _value(families, "lotse_cases_open", state="waiting") == 1
    assert _value(families, "lotse_cases_open", state="claimed") == 0
    said = len(intake_lines(Intake(urgent=True))) + 2
    assert _value(families, "lotse_messages_in_total", channel="test") == said
    assert _value(families, "lotse_messages_out_total", channel="test") == len(running.channel.sent)
    staff_posts = len(running.channel.posts) + len(running.channel.room)
    assert staff_posts >= 1
    assert _value(families, "lotse_messages_out_total", channel="staff") == staff_posts
    assert _value(families, "lotse_step_seconds_count") == said
    assert _value(families, "lotse_delivery_seconds_count", channel="test") > 0
    assert _value(families, "lotse_outbox_dead_letters") == 0
    assert _value(families, "lotse_leader") == 1


async def test_errors_and_retries_are_counted_by_type_and_channel(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    await running.say("/start")
    await running.say("3")  # the report lane
    await running.say("1")  # consented: replies now go through the outbox

    async def refuse(chat: str, reply: object) -> None:
        raise ConnectionResetError("platform away")

    monkeypatch.setattr(running.channel, "send", refuse)
    await running.say("2")
    families = _families((await running.get("/metrics"))[1])
    assert _value(families, "lotse_errors_total", kind="ConnectionResetError") >= 1
    assert _value(families, "lotse_delivery_retries_total", channel="test") >= 1
    assert _value(families, "lotse_outbox_pending", channel="test") >= 1
    assert _value(families, "lotse_outbox_oldest_pending_seconds") >= 0
    assert "platform away" not in (await running.get("/metrics"))[1]


async def test_the_metrics_carry_no_canary_reference_pseudonym_or_user_id(
    running: Running,
) -> None:
    canaries = Canaries.for_language("de")
    lines = intake_lines(
        Intake(
            description=canaries.description,
            evidence=(canaries.link, canaries.note),
            callback=canaries.callback,
        )
    )
    user = "platform-user-93817"
    evidence = lines.index(canaries.note) + 1
    for index, line in enumerate(lines):
        if index == evidence:  # a file, too, at the evidence step
            data = canaries.file_content.encode()
            await running.say("", user, Attachment(canaries.file_name, "text/plain", data))
        await running.say(line, user)
    references = {reference for reference, _, _ in running.channel.posts}
    assert len(references) == 1, "the intake did not reach a case: the scan would prove nothing"
    assert canaries.description in running.channel.posts[0][1]
    text = (await running.get("/metrics"))[1]
    forbidden = {
        **canaries.all(),
        "platform user id": user,
        "chat": f"chat-{user}",
        "pseudonym": running.core.pseudonym("test", user),
        **{f"reference {reference}": reference for reference in references},
    }
    assert not [what for what, value in forbidden.items() if value in text]
    assert not REFERENCE.search(text)
    assert "L-" not in text
    labels = {
        (key, value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        for key, value in sample.labels.items()
        if key not in ("le", "quantile")
    }
    assert labels <= {
        ("channel", "test"), ("channel", "staff"), ("state", "waiting"), ("state", "claimed"),
    }, labels  # fmt: skip


async def test_the_server_answers_only_get_on_its_two_paths(running: Running) -> None:
    assert (await running.get("/"))[0] == 404
    assert (await running.get("/metrics/../etc"))[0] == 404
    assert (await running.get("/healthz", method="POST"))[0] == 405
    assert (await running.get("/healthz?verbose=1"))[0] == 200
    assert (await request(running.server.port, "nonsense\r\n\r\n"))[0] == 400
    status, _ = await request(
        running.server.port, b"GET /healthz HTTP/1.1\r\nX: " + b"a" * MAX_REQUEST
    )
    assert status == 400
    assert (await request(running.server.port, b"\xff\xfe /healthz HTTP/1.1\r\n\r\n"))[0] == 400


async def test_a_silent_client_is_dropped_and_does_not_block_others(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bot.ops.READ_SECONDS", 0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", running.server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\n")  # and never the end of the headers
    assert (await running.get("/healthz"))[0] == 200
    answer = await asyncio.wait_for(reader.read(), 10)
    assert answer.startswith(b"HTTP/1.1 400")
    writer.close()


@pytest.mark.parametrize(
    ("listen", "problem"),
    [
        ("9464", "use host:port"),
        ("127.0.0.1:", "the port must be a number"),
        ("127.0.0.1:70000", "the port must be a number"),
        ("http://x:9464", "is not a host name"),
    ],
)
def test_the_listen_address_is_checked(listen: str, problem: str) -> None:
    raw: dict[str, object] = {"storage": {"url": "sqlite+aiosqlite:///x.db", "data_dir": "d"}}
    with pytest.raises(ConfigError) as error:
        config_from_dict({**raw, "service": {"listen": listen}}, ROOT)
    assert "service.listen" in str(error.value)
    assert problem in str(error.value)
    assert config_from_dict({**raw, "service": {"listen": "[::1]:9464"}}, ROOT)
    assert config_from_dict(raw, ROOT).service.listen == ""


def test_the_readme_alerts_use_metrics_that_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    operations = readme.split("## Operations", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"\blotse_[a-z_]+", operations))
    assert named, "the Operations section names no metric"
    suffixes = ("_total", "_bucket", "_count", "_sum")
    unknown = {
        name for name in named
        if name not in FAMILIES and not any(name.removesuffix(s) in FAMILIES for s in suffixes)
    }  # fmt: skip
    assert not unknown
    assert {"lotse_oldest_urgent_wait_seconds", "lotse_outbox_oldest_pending_seconds"} <= named


def test_the_core_reports_metrics_without_knowing_prometheus() -> None:
    graph = module_graph(ROOT, ("bot",))
    core = {module for module in graph if module.startswith("bot.core")}
    assert core
    assert not {
        (module, target)
        for module in core
        for target in graph[module]
        if target in ("bot.metrics", "bot.ops", "bot.health")
    }
    for path in (ROOT / "bot" / "core").glob("*.py"):
        assert "prometheus" not in path.read_text(encoding="utf-8"), path
