"""The Matrix login: made once with the password, restored on every later start.

The access token and the sync token live in `store_dir`, encrypted with a key derived
from the server secret (the `Sealer` the composition root passes in); the crypto store
next to them is pickled with `pickle_key`, derived from the same secret. Nothing here
is logged but the fact that a login was made or restored.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aiohttp import ClientError
from nio import AsyncClient, AsyncClientConfig, LoginResponse, WhoamiResponse

from bot.channels.matrix.trust import KeyWatchingClient
from bot.config import StartupError

logger = logging.getLogger(__name__)
SESSION_FILE = "session.bin"
SYNC_FILE = "sync.bin"


class MatrixStartError(StartupError):
    """Start-up stops with this one line (wrong password, unknown server, lost device)."""


class Sealer(Protocol):
    """Encryption with the server secret (storage's ServerKeys fits)."""

    def encrypt(self, plaintext: bytes, context: str) -> bytes: ...

    def decrypt(self, blob: bytes, context: str) -> bytes: ...


@dataclass(frozen=True)
class Login:
    homeserver: str
    user_id: str
    device_id: str
    store_dir: Path
    password_env: str
    pickle_key: str


def _private_write(path: Path, data: bytes) -> None:
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    temporary.replace(path)


class SessionFiles:
    """The encrypted access token and sync token in `store_dir`."""

    def __init__(self, folder: Path, sealer: Sealer, user_id: str) -> None:
        self.folder = folder
        self.sealer = sealer
        self.context = f"matrix session {user_id}"

    def load_token(self) -> tuple[str, str] | None:
        path = self.folder / SESSION_FILE
        if not path.exists():
            return None
        data = json.loads(self.sealer.decrypt(path.read_bytes(), self.context))
        return str(data["device_id"]), str(data["access_token"])

    def save_token(self, device_id: str, access_token: str) -> None:
        data = json.dumps({"device_id": device_id, "access_token": access_token}).encode()
        _private_write(self.folder / SESSION_FILE, self.sealer.encrypt(data, self.context))

    def load_sync(self) -> str | None:
        path = self.folder / SYNC_FILE
        if not path.exists():
            return None
        return self.sealer.decrypt(path.read_bytes(), self.context + " sync").decode()

    def save_sync(self, token: str) -> None:
        _private_write(
            self.folder / SYNC_FILE, self.sealer.encrypt(token.encode(), self.context + " sync")
        )


def make_client(login: Login) -> AsyncClient:
    login.store_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        login.store_dir.chmod(0o700)
    config = AsyncClientConfig(
        encryption_enabled=True,
        store_sync_tokens=False,  # kept by us, and only after the events were handled
        pickle_key=login.pickle_key,
        max_limit_exceeded=0,  # a 429 comes back to us, to be honoured as RetryAfter
        max_timeouts=2,
        request_timeout=30,
    )
    return KeyWatchingClient(
        login.homeserver, login.user_id, login.device_id, str(login.store_dir), config
    )


async def connect(client: AsyncClient, login: Login, files: SessionFiles) -> None:
    """Restore the login, or log in with the password the first time."""
    try:
        stored = files.load_token()
    except Exception as error:
        raise MatrixStartError(
            f"the Matrix session in {login.store_dir} does not open with this server secret"
        ) from error
    try:
        if stored is not None:
            device_id, token = stored
            client.restore_login(login.user_id, device_id, token)
            answer = await client.whoami()
            if not isinstance(answer, WhoamiResponse):
                raise MatrixStartError(
                    f"the Matrix login of {login.user_id} was lost (device logged out or "
                    f"deleted); remove {login.store_dir} and start again with the password"
                )
            logger.info("matrix: login restored")
            return
        password = os.environ.get(login.password_env, "")
        if not password:
            raise MatrixStartError(
                f"the first Matrix login needs the password in ${login.password_env}"
            )
        response = await client.login(password, device_name="Lotse")
        if not isinstance(response, LoginResponse):
            raise MatrixStartError(
                f"Matrix login as {login.user_id} at {login.homeserver} failed: "
                "wrong password or unknown user"
            )
        files.save_token(response.device_id, response.access_token)
        logger.info("matrix: logged in, device kept for later starts")
    except (ClientError, OSError, TimeoutError) as error:
        raise MatrixStartError(
            f"the Matrix homeserver {login.homeserver} cannot be reached "
            f"({type(error).__name__}); check matrix.homeserver"
        ) from error
