"""The server secret and the keys derived from it.

32 random bytes kept outside the database: in a `0600` file beside the data, or in
an environment variable. Derived from it with HKDF-SHA256, one key per purpose:

- `state`: AES-256-GCM for in-progress intakes, chat addresses and files not yet
  part of a case;
- `pseudonym`: the HMAC pepper that turns `channel:user id` into a sender key;
- `audit`: the HMAC key of the audit chain, so the chain cannot be rewritten
  consistently by someone holding only the database;
- `binding`: the HMAC key that binds each stored public key to its place
  (storage/key_binding.py), so a key swapped in the database is refused;
- `check`: a check value stored in the database (storage/secret_check.py), so a
  missing or different secret is noticed at start instead of replacing the old one.

A stolen database without this secret reveals no intake in progress and no
platform identity.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SECRET_BYTES = 32
NONCE_BYTES = 12
FORMAT_VERSION = b"\x01"  # leads every blob this module writes, so the format can evolve
CHECK_LABEL = b"lotse server secret check v1"


class SecretError(Exception):
    """The server secret is missing, unreadable or malformed; the message says how to fix it."""


class DecryptionError(Exception):
    """A blob did not open: wrong secret, or the data was changed or moved."""


def _derive(secret: bytes, purpose: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"lotse server secret v1",
        info=purpose.encode("ascii"),
    ).derive(secret)


@dataclass(frozen=True)
class ServerKeys:
    """The keys the running server holds. Never logged, never written to the database."""

    _state: AESGCM
    _pepper: bytes
    audit_key: bytes  # keys the audit chain's HMACs
    binding_key: bytes  # keys the HMACs that bind stored public keys
    check_value: str  # stored in the database to recognise this secret; reveals nothing of it

    @classmethod
    def from_secret(cls, secret: bytes) -> ServerKeys:
        if len(secret) != SECRET_BYTES:
            raise SecretError(f"the server secret must be {SECRET_BYTES} bytes, got {len(secret)}")
        check = hmac.new(_derive(secret, "check"), CHECK_LABEL, hashlib.sha256).hexdigest()
        return cls(
            AESGCM(_derive(secret, "state")),
            _derive(secret, "pseudonym"),
            _derive(secret, "audit"),
            _derive(secret, "binding"),
            check,
        )

    def pseudonym(self, channel: str, user_id: str) -> str:
        """The sender key stored in place of a platform user id."""
        message = f"{channel}:{user_id}".encode()
        return hmac.new(self._pepper, message, hashlib.sha256).hexdigest()

    def encrypt(self, plaintext: bytes, context: str) -> bytes:
        """Encrypt bound to `context` (what the blob is and whose), so it cannot be moved."""
        nonce = os.urandom(NONCE_BYTES)
        aad = FORMAT_VERSION + context.encode()
        return FORMAT_VERSION + nonce + self._state.encrypt(nonce, plaintext, aad)

    def decrypt(self, blob: bytes, context: str) -> bytes:
        if blob[:1] != FORMAT_VERSION:
            raise DecryptionError("unknown format version")
        nonce, body = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
        try:
            return self._state.decrypt(nonce, body, FORMAT_VERSION + context.encode())
        except InvalidTag as error:
            raise DecryptionError("the data does not open with this server secret") from error


def load_or_create_secret(
    path: Path, from_environment: str | None = None, *, may_create: bool = True
) -> bytes:
    """The secret from the environment variable's value if given, else from `path`.

    A missing file is created with fresh random bytes (mode 0600) if `may_create`
    (the database holds nothing yet), else refused: a new secret would lock out
    everything written with the old one. A file that is readable by others is
    refused, because it would expose every intake in progress.
    """
    if from_environment:
        return _decode(from_environment.strip(), "the environment variable")
    if not path.exists() and not may_create:
        raise SecretError(
            f"the server secret {path} is missing, but the database already holds data "
            f"written with it: restore {path} from your backup (a new secret cannot open that data)"
        )
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise SecretError(
                f"{path} is readable by other users (mode {mode:o}); run: chmod 600 {path}"
            )
        try:
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as error:
            raise SecretError(
                f"{path} cannot be read as a server secret (one line of base64); "
                "restore it from your backup"
            ) from error
        return _decode(text.strip(), str(path))
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = secrets.token_bytes(SECRET_BYTES)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(base64.b64encode(secret).decode("ascii") + "\n")
    return secret


def _decode(text: str, source: str) -> bytes:
    try:
        secret = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise SecretError(
            f"{source}: the server secret must be base64 (32 random bytes)"
        ) from error
    if len(secret) != SECRET_BYTES:
        raise SecretError(
            f"{source}: the server secret must be {SECRET_BYTES} bytes, got {len(secret)}; "
            "create one with: head -c 32 /dev/urandom | base64"
        )
    return secret
