"""The repository against both databases: encrypted state, references, dedupe, deletion."""

from __future__ import annotations

from flows.state import IntakeState
from storage.repository import Store


async def test_state_round_trips_encrypted(store: Store) -> None:
    state = IntakeState(
        language="de", step="role", consented=True, answers={"description": "CANARY-STATE"}
    )
    async with store.unit() as unit:
        await unit.save("sender-a", "console", "chat-a", state)
    async with store.unit() as unit:
        loaded = await unit.load("sender-a")
    assert loaded is not None
    assert loaded.state == state
    assert loaded.address == "chat-a"
