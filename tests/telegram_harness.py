"""`lotse run` against the Bot API emulator, for the Telegram tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import ROOT
from tests.telegram_emulator import STAFF_GROUP, TOKEN, Emulator, Sent

PASSPHRASE = "passphrase-123"
COUNSELLOR_ID = 501
LOTSE_ENVIRONMENT = (
    "LOTSE_PASSPHRASE",
    "LOTSE_CONFIG",
    "LOTSE_SERVER_SECRET",
    "LOTSE_TELEGRAM_TOKEN",
)


def lotse(
    *arguments: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in LOTSE_ENVIRONMENT}
    return subprocess.run(
        [sys.executable, "-m", "bot", *map(str, arguments)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
        env={**environment, **(env or {})},
    )


@dataclass
class Lotse:
    """A configured Lotse with one counsellor (Telegram id `COUNSELLOR_ID`), not yet running."""

    folder: Path
    emulator: Emulator
    process: subprocess.Popen[str] | None = None
    logs: list[str] = field(default_factory=list)
    url: str = "sqlite+aiosqlite:///data/lotse.db"  # or a PostgreSQL database's
    sections: str = ""  # further configuration, e.g. a [service] section

    @property
    def config(self) -> Path:
        return self.folder / "lotse.toml"

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def key(self) -> Path:
        return self.folder / "counsellor.key"

    def write_config(self, extra: str = "", staff: bool = True) -> None:
        staff_section = (
            f'[staff]\nchannel = "telegram"\nroom = "{STAFF_GROUP}"\n'
            'unencrypted_detail = "summary"\n'
            if staff
            else ""
        )
        self.config.write_text(
            f'[storage]\nurl = "{self.url}"\ndata_dir = "data"\n'
            f'[telegram]\nenabled = true\napi_base_url = "{self.emulator.root}"\n{extra}\n'
            f"{staff_section}"
            '[counselling]\nhours = "Mo-So 00:00-23:59"\n'
            f"{self.sections}",
            encoding="utf-8",
        )

    def setup(self) -> None:
        self.write_config()
        env = {"LOTSE_PASSPHRASE": PASSPHRASE}
        made = lotse("keys", "generate", "--out", self.key, env=env)
        assert made.returncode == 0, made.stderr
        added = lotse(
            "counsellor", "add", "Berta", "--public-key", f"{self.key}.pub", "--first",
            "--telegram-id", str(COUNSELLOR_ID), "--config", self.config,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr

    def start(
        self,
        token: str = TOKEN,
        extra_env: dict[str, str] | None = None,
        polling: bool = True,
        config: Path | None = None,
    ) -> subprocess.Popen[str]:
        environment = {k: v for k, v in os.environ.items() if k not in LOTSE_ENVIRONMENT}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot", "-v", "run", "--config", str(config or self.config)],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.folder / f"run-{len(self.logs)}.log", "w"),  # noqa: SIM115
            text=True,
            env={**environment, "LOTSE_TELEGRAM_TOKEN": token, **(extra_env or {})},
        )
        self.logs.append(str(self.folder / f"run-{len(self.logs)}.log"))
        if polling:
            self.emulator.wait(lambda: "getUpdates" in self.emulator.calls[-5:], what="polling")
        return self.process

    def log(self) -> str:
        return "".join(Path(path).read_text() for path in self.logs)

    def stop(self, kill: bool = False) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self.process = None
        self.emulator.calls.clear()
        return code

    def assert_running(self) -> None:
        assert self.process is not None and self.process.poll() is None, self.log()[-3000:]


def last_with_buttons(emulator: Emulator, chat: int) -> Sent | None:
    for sent in reversed(emulator.messages_to(chat)):
        if sent.markup:
            return sent
    return None


def buttons(sent: Sent) -> list[tuple[str, str]]:
    """(label, callback data) of every button of a message."""
    assert sent.markup is not None
    return [
        (button["text"], button["callback_data"])
        for row in sent.markup["inline_keyboard"]
        for button in row
    ]


def wait_for_new(emulator: Emulator, chat: int, before: int, timeout: float = 30.0) -> list[Sent]:
    """The bot's messages to `chat` after the first `before`, once they stop coming."""
    emulator.wait(lambda: len(emulator.messages_to(chat)) > before, timeout, f"a reply in {chat}")
    settled = len(emulator.messages_to(chat))
    while True:
        time.sleep(0.6)
        now = len(emulator.messages_to(chat))
        if now == settled:
            return emulator.messages_to(chat)[before:]
        settled = now
