"""A Lotse process for the kill test: `python -m tests.deliver_once DATA_DIR kill|restart`.

`kill`: an official sends /start, chooses the report lane and consents; the channel
SIGKILLs its own process on the first send of a stored reply – after the step was
committed, before anything was delivered. `kill-after-send`: the same, but killed just
after the platform took the message, before its delivery was recorded. `restart`: a new
process on the same data delivers what waits, sends nothing else, and stops. Every reply
the channel did send is appended to DATA_DIR/sent.jsonl.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from bot.app import demo_config, open_app
from bot.core.orchestrator import Core
from bot.core.settings import Settings
from bot.core.types import Inbound, Reply
from bot.demo import demo_counsellor
from tests.fakes import NullRoom

CHANNEL = "file"


class FileChannel(NullRoom):
    name = CHANNEL

    def __init__(self, log: Path, kill_on: str | None, after_send: bool = False) -> None:
        self.log = log
        self.kill_on = kill_on
        self.after_send = after_send  # killed once the platform has the message

    async def send(self, chat: str, reply: Reply) -> None:
        kill = self.kill_on is not None and self.kill_on in reply.text
        if kill and not self.after_send:
            os.kill(os.getpid(), signal.SIGKILL)
        with self.log.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"chat": chat, "text": reply.text}) + "\n")
        if kill:
            os.kill(os.getpid(), signal.SIGKILL)


async def main(data_dir: Path, mode: str) -> None:
    async with open_app(demo_config(data_dir)) as app:
        await demo_counsellor(app)
        killing = mode in ("kill", "kill-after-send")
        channel = FileChannel(
            data_dir / "sent.jsonl", "Frage 1 von" if killing else None, mode == "kill-after-send"
        )
        core = Core(app.engine, app.store, channel, Settings.defaults())
        core.attach(channel)
        if killing:
            for number, text in enumerate(["/start", "3", "1"]):  # lane, consent
                await core.handle(Inbound(CHANNEL, "official", "chat-1", text, f"event-{number}"))
                await core.settle()
        else:
            await core.delivery.recover()  # what `lotse run` does when it starts
            await core.settle()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))
