"""The event loop every `lotse` command runs on: uvloop's (libuv) where it is installed,
asyncio's own otherwise (uvloop does not exist on Windows).

The same code answers about a tenth more messages a second on it (`make bench`'s pipeline,
paired runs), because every awaited database call and every reply passes through the
loop's scheduling. The tests and the benchmarks run on the same loop (tests/conftest.py),
so the service never runs on a loop its tests did not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from importlib.metadata import version
from typing import Any, TypeVar

try:
    import uvloop
except ImportError:  # pragma: no cover - where uvloop cannot be installed
    uvloop = None  # type: ignore[assignment]

T = TypeVar("T")


def policy() -> asyncio.AbstractEventLoopPolicy:
    """The policy that makes uvloop's loops (for code that creates its own loops: tests)."""
    if uvloop is None:
        return asyncio.DefaultEventLoopPolicy()
    made: asyncio.AbstractEventLoopPolicy = uvloop.EventLoopPolicy()
    return made


def name() -> str:
    """Which loop, for the benchmarks' record."""
    return "asyncio" if uvloop is None else f"uvloop {version('uvloop')}"


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, on uvloop's loop where it is installed."""
    if uvloop is None:
        return asyncio.run(main)
    return uvloop.run(main)
