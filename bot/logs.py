"""Logging that never carries what officials write.

Lotse's own log lines name events, references and counts only. Libraries that
could log message bodies or request URLs with tokens are held at WARNING, and a
failure is logged by its type and code location, never by its message (an
exception text can quote user input).

`--log-format json` writes the same events as one JSON object per line (time,
level, logger, message) for log collectors; an exception a library attaches to a
record is given by its type name only.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import traceback

QUIET_LIBRARIES = (
    "aiosqlite", "asyncio", "transitions", "sqlalchemy", "alembic", "httpx", "httpcore",
    "telegram", "nio", "aiohttp", "asyncpg",
)  # fmt: skip


FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            line["exception"] = record.exc_info[0].__name__
        return json.dumps(line, ensure_ascii=False)


def configure(level: int = logging.INFO, log_format: str = "text") -> None:
    if log_format == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logging.basicConfig(level=level, handlers=[handler])
    else:
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
