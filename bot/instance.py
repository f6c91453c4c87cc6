"""One active instance: on SQLite a lock file in the data folder, on PostgreSQL a lease.

SQLite serves one process: a second `lotse run` or `lotse demo` on the same data folder
is refused with a clear message. On PostgreSQL two instances may run; the lease in
the database (storage/lease.py) decides which one acts.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = "lotse.lock"


class InstanceError(Exception):
    """Another instance is using the same SQLite data; the message says what to do."""


@contextmanager
def only_instance(data_dir: Path) -> Iterator[None]:
    """Hold the data folder's lock for as long as the block runs (released when the process
    ends in any way, a kill included)."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = data_dir / LOCK_FILE
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InstanceError(
                f"another Lotse (lotse run or lotse demo) is already using {data_dir}; "
                "stop it first. SQLite serves one instance: for a standby, use PostgreSQL"
            ) from None
        yield
    finally:
        os.close(descriptor)
