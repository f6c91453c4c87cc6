"""Logging that never carries what officials write.

Lotse's own log lines name events, references and counts only. Libraries that
could log message bodies or request URLs with tokens are held at WARNING, and a
failure is logged by its type and code location, never by its message (an
exception text can quote user input).
"""

from __future__ import annotations

import logging
import traceback

QUIET_LIBRARIES = (
    "aiosqlite", "asyncio", "transitions", "sqlalchemy", "alembic", "httpx", "httpcore",
    "telegram", "nio", "aiohttp", "asyncpg",
)  # fmt: skip


def configure(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_libraries()


def quiet_libraries() -> None:
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)


def log_failure(logger: logging.Logger, what: str, error: BaseException) -> None:
    """Log where a failure happened without its message."""
    frames = traceback.extract_tb(error.__traceback__)
    where = " <- ".join(
        f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}" for frame in frames[-6:][::-1]
    )
    logger.error("%s failed: %s at %s", what, type(error).__name__, where or "?")
