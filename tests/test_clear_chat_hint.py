"""/chat_leeren is mentioned only where the channel has it: in the help and in the last
message of an intake on Telegram (and Matrix), never in the terminal demo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.core.orchestrator import Core
from bot.core.settings import Settings
from flows.engine import Engine
from flows.messages import UserInput
from storage.repository import Store
from tests.conftest import run_demo
from tests.test_core import NORMAL_INTAKE, Official, Recorder

HINT_DE = "Falls andere Ihr Telefon sehen können: Mit /chat_leeren"


@dataclass
class ClearingRecorder(Recorder):
    """A channel that offers /chat_leeren, as Telegram's does."""

    clears_chat: bool = True


def _official(store: Store, engine: Engine, recorder: Recorder) -> Official:
    core = Core(engine, store, staff_room=recorder, settings=Settings.defaults())
    core.attach(recorder)
    return Official(core, recorder)


def test_the_help_lists_the_channels_clear_command_only_when_it_has_one(
    flow_engine: Engine,
) -> None:
    plain = flow_engine.handle(None, UserInput("/hilfe"))
    clearing = flow_engine.handle(None, UserInput("/hilfe", clears_chat=True))
    english = flow_engine.handle(None, UserInput("/help", clears_chat=True, language="en"))
    assert "/chat_leeren" not in plain.replies[0].text
    assert "/chat_leeren – " in clearing.replies[0].text
    assert "/clear_chat – " in english.replies[0].text
    # the rest of the help is the same
    assert plain.replies[0].text in clearing.replies[0].text.replace(
        "\n" + flow_engine.texts.get("clear_chat_command", "de"), ""
    )


@pytest.mark.parametrize("clears", [True, False])
async def test_the_last_message_of_an_intake_mentions_clearing_where_the_channel_can(
    store: Store, flow_engine: Engine, clears: bool
) -> None:
    recorder = ClearingRecorder() if clears else Recorder()
    official = _official(store, flow_engine, recorder)
    for line in NORMAL_INTAKE:
        await official.say(line)
    replies = await official.say("absenden")
    assert any("Ihr Aktenzeichen: L-" in reply for reply in replies)
    assert replies[-1].endswith(flow_engine.texts.get("clear_chat_hint", "de")) is clears
    assert sum(HINT_DE in reply for reply in replies) == int(clears)
    help_text = (await official.say("/hilfe"))[0]
    assert ("/chat_leeren" in help_text) is clears


@pytest.mark.slow
def test_the_demo_never_mentions_a_clear_command_it_does_not_have(demo_dir: Path) -> None:
    # the talk lane: consent, Land (Bayern), role, contact in this chat, send
    talk = ["2", "1", "2", "2", "1", "absenden"]
    result = run_demo(demo_dir, ["/start", "/hilfe", *talk, "/help"])
    assert result.returncode == 0, result.stderr
    assert "Ihr Aktenzeichen" in result.stdout and "/zurueck" in result.stdout
    assert "chat_leeren" not in result.stdout and "clear_chat" not in result.stdout
