"""Oversized and malformed platform payloads at every step of the intake, through the Bot API
emulator: each is ignored, nothing is stored that should not be, and `lotse run` goes on
answering everyone.

At every step: an update nested ten thousand levels deep (python-telegram-bot cannot read
the batch it is in: the adapter finds that one update and skips it), and an update of a kind
that does not exist; at every fourth step of each of four officials, and once after the
case is sent: a 100 KB text (Telegram itself caps a message at 4,096 characters; a
self-hosted or forged Bot API need not). Whether the engine would answer one is tested in
test_engine.py.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.telegram_emulator import Emulator
from tests.telegram_harness import PASSPHRASE, Lotse, lotse
from tests.test_core import NORMAL_INTAKE

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

OFFICIALS = [40_001, 40_002, 40_003, 40_004]
LINES = [*NORMAL_INTAKE, "absenden", "Noch etwas zum Fall."]
CANARY = "Kanarie-100KB-"
DEPTH = 10_000


def _nested(emulator: Emulator, user: int) -> None:
    """A message whose entities nest DEPTH levels deep, and an unknown kind nested as deep."""
    message = emulator._message(user, text="/start")
    head = json.dumps(message)[:-1]  # without the closing brace
    deep = "[" * DEPTH + "]" * DEPTH
    emulator.inject_raw(f'"message": {head}, "entities": {deep}}}')
    emulator.inject_raw(f'"future_kind": {{"deep": {deep}}}')


def _texts(emulator: Emulator, user: int) -> list[str]:
    return [sent.text for sent in emulator.messages_to(user)]


def test_oversized_and_malformed_updates_at_every_step_are_answered_or_ignored(
    emulator: Emulator, service: Lotse
) -> None:
    service.start()
    for index, line in enumerate(LINES):
        for number, user in enumerate(OFFICIALS):
            if index % len(OFFICIALS) == number:
                emulator.message(user, CANARY + "x" * 100_000)
            emulator.inject({"some_future_update": {"id": index, "nested": {"a": [1, {"b": 2}]}}})
            emulator.message(user, line)
        _nested(emulator, OFFICIALS[index % len(OFFICIALS)])

    def done(user: int) -> bool:
        return any("bei Ihrem Fall gespeichert" in text for text in _texts(emulator, user))

    try:
        emulator.wait(lambda: all(done(user) for user in OFFICIALS), 120, "the intakes")
    except AssertionError:
        last = {user: [text[:60] for text in _texts(emulator, user)[-4:]] for user in OFFICIALS}
        raise AssertionError(f"not every intake ended; last messages: {last}") from None
    service.assert_running()
    references = {}
    for user in OFFICIALS:
        said = " ".join(_texts(emulator, user))
        found = re.search(r"L-\d{4}-\d{4}", said)
        assert found is not None, user
        references[user] = found.group(0)
    assert len(set(references.values())) == len(OFFICIALS)
    assert all(len(sent.text) <= 4096 for sent in emulator.sent)
    for user in OFFICIALS:  # the oversized texts and the deep updates got no answer
        replies = _texts(emulator, user)
        assert not any("Zeichen, hier passen" in text or "xxxxx" in text for text in replies)
        # the deep "/start"s: one welcome (the official's own /start), never a welcome back
        assert sum("Guten Tag, hier ist Lotse" in text for text in replies) == 1
        assert not any("Willkommen zurück" in text for text in replies)
    assert emulator.violations == []
    assert service.stop() == 0
    log = service.log()
    assert "Traceback" not in log and CANARY not in log
    assert log.count("an update that cannot be read was skipped") == 2 * len(LINES)
    assert log.count("a message longer than Telegram allows was ignored") == len(LINES)

    env = {"LOTSE_PASSPHRASE": PASSPHRASE}
    for user, reference in references.items():
        shown = lotse(
            "cases", "show", reference, "--key", service.key, "--config", service.config, env=env
        )
        assert shown.returncode == 0, shown.stderr
        assert CANARY not in shown.stdout, user  # never taken as an answer
        assert "Noch etwas zum Fall." in shown.stdout  # the relayed word after it, once
        assert shown.stdout.count("Noch etwas zum Fall.") == 1
