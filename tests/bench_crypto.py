"""Crypto share: what sealing and the server key cost per item, and their share of the pipeline.

Per item: HPKE seal and open (ML-KEM-768 + X25519, storage/sealing.py) of an intake
record of realistic size, a case key pair, and the server key's AES-GCM encrypt and
decrypt of a conversation state. Share: the same functions, timed in place while
officials complete whole intakes through the real core (tests/bench_rig.py); their
summed time over the pipeline's CPU time.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import storage.repository
from flows.engine import Engine
from flows.messages import UserInput
from flows.state import IntakeState
from storage.sealing import PrivateKey, item_info, open_sealed, seal
from storage.server_secret import ServerKeys
from tests.bench_results import Results
from tests.bench_rig import ANSWERS, running_core

SECTION = "crypto"


@dataclass(frozen=True)
class Sizes:
    rounds: int = 300  # per-item timings
    officials: int = 30  # whole intakes for the share


def _per_item(operation: Callable[[], object], rounds: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        operation()
    return (time.perf_counter() - started) / rounds


def _intake_state() -> IntakeState:
    engine = Engine.from_files()
    state: IntakeState | None = None
    for answer in ANSWERS[:-1]:  # everything but the final "absenden"
        state = engine.handle(state, UserInput(answer)).state
    assert state is not None
    return state


def per_item(results: Results, rounds: int) -> None:
    state = _intake_state()
    record = json.dumps(state.model_dump(mode="json"), ensure_ascii=False).encode()
    private = PrivateKey.generate()
    public = private.public_key()
    info = item_info("L-2026-0001", 0, "intake")
    sealed = seal(public, record, info)
    keys = ServerKeys.from_secret(b"\x01" * 32)
    plain = state.to_bytes()
    blob = keys.encrypt(plain, "x")
    timings: list[tuple[str, Callable[[], object], int, str]] = [
        ("seal (HPKE) per item", lambda: seal(public, record, info), rounds, "record"),
        ("open (HPKE) per item", lambda: open_sealed(private, sealed, info), rounds, "record"),
        ("case key pair per case", PrivateKey.generate, rounds, ""),
        ("server key encrypt per item", lambda: keys.encrypt(plain, "x"), rounds * 10, "state"),
        ("server key decrypt per item", lambda: keys.decrypt(blob, "x"), rounds * 10, "state"),
    ]
    sizes = {"record": f"{len(record):,} B record", "state": f"{len(plain):,} B state", "": ""}
    for name, operation, times, size in timings:
        results.add(SECTION, name, _per_item(operation, times) * 1e6, "µs", sizes[size])


@contextmanager
def _timed(spent: dict[str, float]) -> Iterator[None]:
    """Wrap the crypto the pipeline calls so its time is summed (restored afterwards)."""
    patches: list[tuple[Any, str, Any]] = [
        (ServerKeys, "encrypt", ServerKeys.encrypt),
        (ServerKeys, "decrypt", ServerKeys.decrypt),
        (storage.repository, "seal", seal),
        (PrivateKey, "generate", PrivateKey.__dict__["generate"]),
    ]

    def wrap(label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*arguments: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*arguments)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - started

        return timed

    ServerKeys.encrypt = wrap("server key", ServerKeys.encrypt)  # type: ignore[method-assign]
    ServerKeys.decrypt = wrap("server key", ServerKeys.decrypt)  # type: ignore[method-assign]
    setattr(storage.repository, "seal", wrap("sealing", seal))  # noqa: B010 (not exported)
    PrivateKey.generate = staticmethod(wrap("sealing", PrivateKey.generate))  # type: ignore[method-assign]
    try:
        yield
    finally:
        for owner, name, original in patches:
            setattr(owner, name, original)


async def _share(results: Results, folder: Path, officials: int) -> None:
    spent: dict[str, float] = {}
    async with running_core(folder) as rig:

        async def official(index: int) -> None:
            for number, answer in enumerate(ANSWERS):
                await rig.say(f"o{index}", answer, f"o{index}-{number}")

        cpu = time.process_time()
        with _timed(spent):
            await asyncio.gather(*(official(index) for index in range(officials)))
            await rig.core.settle()
        cpu = time.process_time() - cpu
        messages = officials * len(ANSWERS)
    each = cpu / messages * 1000
    note = f"{officials} whole intakes, {messages} messages, {each:.1f} ms CPU each"
    for label in ("server key", "sealing"):
        share = spent.get(label, 0.0) / cpu * 100
        results.add(SECTION, f"{label}: share of pipeline CPU", share, "%", note)
    results.add(SECTION, "apologies in the pipeline", rig.sink.apologies, "failures")


def run(results: Results, sizes: Sizes = Sizes()) -> None:
    results.sizes[SECTION] = {"rounds": sizes.rounds, "officials": sizes.officials}
    per_item(results, sizes.rounds)
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(_share(results, Path(folder), sizes.officials))


if __name__ == "__main__":
    run(Results())
