"""A real Synapse homeserver for the Matrix tests: SQLite, a free port, no federation.

Installed from the package registry as a dev dependency (matrix-synapse). One server
per test session (the `synapse` fixture in tests/test_matrix.py); users are registered
with the shared secret through the admin API. If it cannot start, the tests fail and
say why: nothing is skipped.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

START_SECONDS = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(folder: Path, port: int, shared_secret: str) -> str:
    lots = {"per_second": 1000, "burst_count": 1000}
    config = {
        "server_name": "localhost",
        "public_baseurl": f"http://127.0.0.1:{port}/",
        "pid_file": str(folder / "homeserver.pid"),
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": str(folder / "homeserver.db")}},
        "media_store_path": str(folder / "media"),
        "signing_key_path": str(folder / "signing.key"),
        "log_config": str(folder / "log.yaml"),
        "registration_shared_secret": shared_secret,
        "macaroon_secret_key": secrets.token_hex(16),
        "form_secret": secrets.token_hex(16),
        "report_stats": False,
        "suppress_key_server_warning": True,
        "trusted_key_servers": [],
        "federation_domain_whitelist": [],
        "enable_registration": False,
        "rc_message": lots,
        "rc_registration": lots,
        "rc_login": {"address": lots, "account": lots, "failed_attempts": lots},
        "rc_joins": {"local": lots, "remote": lots},
        "rc_joins_per_room": lots,
        "rc_invites": {"per_room": lots, "per_user": lots, "per_issuer": lots},
        "rc_3pid_validation": lots,
        "rc_admin_redaction": lots,
        "rc_key_requests": lots,
        "rc_media_create": lots,
        "rc_delayed_event_mgmt": lots,
        "max_upload_size": "50M",
        "url_preview_enabled": False,
        "presence": {"enabled": False},
    }
    return json.dumps(config, indent=1)  # JSON is YAML


LOG_CONFIG = """version: 1
formatters: {plain: {format: '%(asctime)s %(levelname)s %(name)s %(message)s'}}
handlers: {file: {class: logging.FileHandler, formatter: plain, filename: LOGFILE}}
root: {level: WARNING, handlers: [file]}
disable_existing_loggers: false
"""


@dataclass
class Synapse:
    folder: Path
    port: int
    shared_secret: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "homeserver.yaml"
        if not config.exists():  # a restart keeps its secrets
            config.write_text(_config(self.folder, self.port, self.shared_secret), encoding="utf-8")
        log = self.folder / "homeserver.log"
        (self.folder / "log.yaml").write_text(LOG_CONFIG.replace("LOGFILE", str(log)))
        generate = subprocess.run(
            [sys.executable, "-m", "synapse.app.homeserver", "-c", str(config),
             "--generate-keys"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if generate.returncode != 0:
            raise RuntimeError(f"Synapse could not make its keys: {generate.stderr[-2000:]}")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "synapse.app.homeserver", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=(self.folder / "stderr.log").open("wb"),
        )
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    "Synapse stopped at start: "
                    + (self.folder / "stderr.log").read_text(errors="replace")[-3000:]
                )
            try:
                with urllib.request.urlopen(f"{self.url}/_matrix/client/versions", timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"Synapse did not answer within {START_SECONDS:.0f} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def _post(self, path: str, body: dict[str, object]) -> dict[str, object]:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return dict(json.loads(answer.read()))

    def register(self, name: str, password: str, admin: bool = False) -> str:
        """Register `name` with the shared secret; returns the Matrix id."""
        with urllib.request.urlopen(f"{self.url}/_synapse/admin/v1/register", timeout=30) as got:
            nonce = json.loads(got.read())["nonce"]
        mac_hex = hmac.new(
            self.shared_secret.encode(),
            b"\x00".join(
                part.encode() for part in (nonce, name, password, "admin" if admin else "notadmin")
            ),
            hashlib.sha1,
        ).hexdigest()
        answer = self._post(
            "/_synapse/admin/v1/register",
            {"nonce": nonce, "username": name, "password": password, "admin": admin,
             "mac": mac_hex},
        )  # fmt: skip
        return str(answer["user_id"])
