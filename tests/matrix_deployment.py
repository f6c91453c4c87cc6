"""A configured Lotse for the Matrix tests: a bot account, a counsellor with a known device,
an encrypted staff room made before Lotse starts, and `lotse run` ready to start.

`deploy` is shared by test_matrix.py (Matrix alone) and test_matrix_mixed.py (with the
Telegram emulator and the health endpoint); `extra_config` and `extra_env` add those.
"""

from __future__ import annotations

import json
import os
import secrets
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.matrix_people import Lotse, Person, environment
from tests.synapse import Synapse
from tests.test_sealed_cases import lotse

PASSPHRASE = "matrix-test-passphrase"


def _http(url: str, body: dict[str, object], token: str | None = None) -> dict[str, object]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, json.dumps(body).encode(), headers)
    with urllib.request.urlopen(request, timeout=30) as answer:
        return dict(json.loads(answer.read()))


@dataclass
class Deployment:
    synapse: Synapse
    folder: Path
    data_dir: Path
    config: Path
    key: Path
    bot: str
    counsellor: str
    counsellor_device: tuple[str, str]
    counsellor_password: str
    staff_room: str
    lotse: Lotse
    secret: bytes

    def official(self, tag: str) -> tuple[Person, str]:
        name = f"official-{tag}-{uuid.uuid4().hex[:6]}"
        password = secrets.token_hex(8)
        user = self.synapse.register(name, password)
        return Person(self.synapse.url, user, self.folder / name), password

    def counsellor_person(self) -> Person:
        return Person(self.synapse.url, self.counsellor, self.folder / "counsellor-store")

    def cli(self, *arguments: str | Path):
        return lotse(*arguments, "--config", self.config, passphrase=PASSPHRASE,
                     secret=self.secret)  # fmt: skip


def deploy(
    synapse: Synapse, folder: Path, extra_config: str = "", extra_env: dict[str, str] | None = None
) -> Deployment:
    """Everything up to `deployment.lotse.start()`, which the caller does."""
    tag = uuid.uuid4().hex[:6]
    bot_password = secrets.token_hex(8)
    bot = synapse.register(f"lotse-{tag}", bot_password)
    counsellor_password = secrets.token_hex(8)
    counsellor = synapse.register(f"berger-{tag}", counsellor_password)
    login = _http(
        f"{synapse.url}/_matrix/client/v3/login",
        {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": counsellor},
         "password": counsellor_password, "device_id": "BERGERPHONE"},
    )  # fmt: skip
    token = str(login["access_token"])
    room = _http(
        f"{synapse.url}/_matrix/client/v3/createRoom",
        {"preset": "private_chat", "name": "Lotse staff", "invite": [bot],
         "initial_state": [{"type": "m.room.encryption", "state_key": "",
                            "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]},
        token,
    )  # fmt: skip
    data_dir = folder / "lotse-data"
    config = folder / "lotse.toml"
    config.write_text(
        f"""[storage]
url = "sqlite+aiosqlite:///{data_dir / "lotse.db"}"
data_dir = "{data_dir}"

[matrix]
enabled = true
homeserver = "{synapse.url}"
user_id = "{bot}"
device_id = "LOTSEBOT"
store_dir = "{data_dir / "matrix-store"}"
max_file_mb = 1

[staff]
channel = "matrix"
room = "{room["room_id"]}"
language = "de"
{extra_config}""",
        encoding="utf-8",
    )
    secret = os.urandom(32)
    key = folder / "berger.key"
    env = {**environment(secret, bot_password, PASSPHRASE), **(extra_env or {})}
    deployment = Deployment(
        synapse, folder, data_dir, config, key, bot, counsellor,
        (str(login["device_id"]), token), counsellor_password, str(room["room_id"]),
        Lotse(config, env, folder / "lotse.log"), secret,
    )  # fmt: skip
    for step in (
        lotse("keys", "generate", "--out", key, "--name", "berger", passphrase=PASSPHRASE),
        deployment.cli("db", "upgrade"),
        deployment.cli(
            "counsellor",
            "add",
            "berger",
            "--public-key",
            f"{key}.pub",
            "--first",
            "--matrix-id",
            counsellor,
        ),
    ):
        assert step.returncode == 0, step.stderr
    return deployment
