"""A counsellor's key pair on their own machine: `lotse keys generate --out FILE`.

The private key is encrypted with a key derived from the counsellor's passphrase
by Argon2id (64 MiB of memory, 3 passes, 4 lanes: RFC 9106's second recommended
setting; a file asking for less, or for more than a machine can do, is refused),
and AES-256-GCM whose associated data is the public key, so a key file
cannot be spliced together from two. The public half is written beside it as
`FILE.pub`, to hand to the operator. The server never sees the private file;
a private file others may read is refused (chmod 600).

Version 2 adds a signing key (storage/signing.py: ML-DSA-65 + Ed25519) whose
seeds are sealed in the same blob after the KEM seeds; the associated data is
then both public keys. Version 1 files still open: they open cases but cannot
sign (adding or revoking with them leaves no signature).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from storage.sealing import PrivateKey, PublicKey, b64, unb64
from storage.signing import SEED_BYTES, SigningKey, SigningPublicKey

PRIVATE_FORMAT = "lotse-counsellor-key"
PUBLIC_FORMAT = "lotse-counsellor-public-key"
VERSION = 2
READABLE_VERSIONS = (1, 2)
_KEM_SEED_BYTES = 96
ARGON2 = {"memory_kib": 65536, "iterations": 3, "lanes": 4}
# What a key file may ask of Argon2id: at least what `keys generate` writes (a file
# below it was weakened), at most what a counsellor's machine can do in seconds.
ARGON2_BOUNDS = {"memory_kib": (65536, 1048576), "iterations": (3, 16), "lanes": (4, 16)}
MINIMUM_PASSPHRASE = 8
MAXIMUM_FILE_BYTES = 65536  # a key file has about 5 KB; anything far larger is something else


class KeyFileError(Exception):
    """A key file is missing, malformed, or the passphrase does not open it."""


@dataclass(frozen=True)
class CounsellorPublicKey:
    name: str
    key: PublicKey
    signing: SigningPublicKey | None = None  # None: a version 1 file


@dataclass(frozen=True)
class UnlockedKey:
    name: str
    key: PrivateKey
    signing: SigningKey | None = None  # None: a version 1 file, which cannot sign

    @property
    def public(self) -> PublicKey:
        return self.key.public_key()

    def signer(self, path: Path | str = "this key file") -> SigningKey:
        """The signing key, or an error that says how to get one."""
        if self.signing is None:
            raise KeyFileError(
                f"{path} is a version 1 key file and cannot sign; make a new key with "
                "lotse keys generate and have a colleague add it"
            )
        return self.signing


def public_path(path: Path) -> Path:
    return path.with_name(path.name + ".pub")


def _derive(passphrase: str, salt: bytes, params: dict[str, int]) -> bytes:
    return Argon2id(
        salt=salt,
        length=32,
        iterations=params["iterations"],
        lanes=params["lanes"],
        memory_cost=params["memory_kib"],
    ).derive(passphrase.encode("utf-8"))


def write_key_pair(
    path: Path,
    name: str,
    passphrase: str,
    key: PrivateKey | None = None,
    signing: SigningKey | None = None,
) -> PublicKey:
    """Write `path` (private, 0600) and `path.pub`; never overwrites either."""
    key = key or PrivateKey.generate()
    signing = signing or SigningKey.generate()
    public, signing_public = key.public_key(), signing.public_key()
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    sealed = AESGCM(_derive(passphrase, salt, ARGON2)).encrypt(
        nonce, key.to_bytes() + signing.to_bytes(), public.to_bytes() + signing_public.to_bytes()
    )
    signing_fields = {
        "signing_key": b64(signing_public.to_bytes()),
        "signing_fingerprint": signing_public.fingerprint(),
    }
    private_document = {
        "format": PRIVATE_FORMAT,
        "version": VERSION,
        "name": name,
        "public_key": b64(public.to_bytes()),
        "fingerprint": public.fingerprint(),
        **signing_fields,
        "kdf": {"name": "argon2id", "salt": b64(salt), **ARGON2},
        "cipher": "aes-256-gcm",
        "nonce": b64(nonce),
        "private_key": b64(sealed),
    }
    public_document = {
        "format": PUBLIC_FORMAT,
        "version": VERSION,
        "name": name,
        "public_key": b64(public.to_bytes()),
        "fingerprint": public.fingerprint(),
        **signing_fields,
    }
    _create(path, json.dumps(private_document, indent=2) + "\n", 0o600)
    _create(public_path(path), json.dumps(public_document, indent=2) + "\n", 0o644)
    return public


def private_folder(folder: Path) -> None:
    """Make `folder` and any missing parent 0700, whatever the umask; existing ones stay."""
    missing = [folder, *folder.parents]
    for path in reversed(missing):
        if not path.exists():
            path.mkdir(mode=0o700)
            path.chmod(0o700)


def _create(path: Path, text: str, mode: int) -> None:
    private_folder(path.parent)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError as error:
        raise KeyFileError(
            f"{path} already exists; choose another --out or move it away"
        ) from error
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)


def _read(path: Path, expected: str) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAXIMUM_FILE_BYTES + 1)
    except FileNotFoundError as error:
        raise KeyFileError(f"{path} does not exist") from error
    except OSError as error:
        raise KeyFileError(f"{path} cannot be read: {error.strerror}") from error
    try:
        if len(data) > MAXIMUM_FILE_BYTES:
            raise ValueError("too large")
        document = json.loads(data.decode("utf-8"))
    except ValueError as error:
        raise KeyFileError(f"{path} is not a Lotse key file") from error
    if not isinstance(document, dict) or document.get("format") != expected:
        kind = "public key (.pub)" if expected == PUBLIC_FORMAT else "private key"
        raise KeyFileError(f"{path} is not a Lotse counsellor {kind} file")
    if document.get("version") not in READABLE_VERSIONS:
        raise KeyFileError(
            f"{path} has key file version {document.get('version')}, this Lotse reads "
            f"{' and '.join(map(str, READABLE_VERSIONS))}"
        )
    return document


def read_public_key(path: Path) -> CounsellorPublicKey:
    document = _read(path, PUBLIC_FORMAT)
    try:
        key = PublicKey.from_bytes(unb64(document["public_key"]))
        name = str(document["name"])
        signing = _signing_public(document)
    except (KeyError, ValueError, TypeError) as error:
        raise KeyFileError(f"{path} is damaged: the public key does not read") from error
    return CounsellorPublicKey(name, key, signing)


def _signing_public(document: dict[str, Any]) -> SigningPublicKey | None:
    if document["version"] == 1:
        return None
    return SigningPublicKey.from_bytes(unb64(document["signing_key"]))


def _refuse_readable_by_others(path: Path) -> None:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise KeyFileError(
            f"{path} is readable by other users (mode {mode:o}); run: chmod 600 {path}"
        )


def _bounded(path: Path, params: dict[str, int]) -> dict[str, int]:
    for name, (lowest, highest) in ARGON2_BOUNDS.items():
        if not lowest <= params[name] <= highest:
            raise KeyFileError(
                f"{path}: the key derivation setting {name} = {params[name]} lies outside "
                f"{lowest}..{highest}; the file was changed or not written by lotse keys generate: "
                "use your own copy of the key file, or make a new one with lotse keys generate"
            )
    return params


def unlock(path: Path, passphrase: str) -> UnlockedKey:
    document = _read(path, PRIVATE_FORMAT)
    try:
        public = PublicKey.from_bytes(unb64(document["public_key"]))
        signing_public = _signing_public(document)
        kdf = document["kdf"]
        params = {name: int(kdf[name]) for name in ("memory_kib", "iterations", "lanes")}
        salt, nonce = unb64(kdf["salt"]), unb64(document["nonce"])
        sealed = unb64(document["private_key"])
    except (KeyError, ValueError, TypeError) as error:
        raise KeyFileError(f"{path} is damaged: a field is missing or malformed") from error
    if kdf.get("name") != "argon2id" or len(salt) < 16:
        raise KeyFileError(f"{path} is damaged: its key derivation is not argon2id with a salt")
    _refuse_readable_by_others(path)
    params = _bounded(path, params)
    associated = public.to_bytes() + (signing_public.to_bytes() if signing_public else b"")
    try:
        seeds = AESGCM(_derive(passphrase, salt, params)).decrypt(nonce, sealed, associated)
    except InvalidTag as error:
        raise KeyFileError(f"wrong passphrase for {path} (or the file was changed)") from error
    expected = _KEM_SEED_BYTES + (SEED_BYTES if signing_public else 0)
    if len(seeds) != expected:
        raise KeyFileError(f"{path} is damaged: its sealed seeds have the wrong length")
    key = PrivateKey.from_bytes(seeds[:_KEM_SEED_BYTES])
    signing = SigningKey.from_bytes(seeds[_KEM_SEED_BYTES:]) if signing_public else None
    if key.public_key().to_bytes() != public.to_bytes() or (
        signing is not None
        and signing_public is not None
        and signing.public_key().to_bytes() != signing_public.to_bytes()
    ):
        raise KeyFileError(f"{path} is damaged: its private and public halves do not match")
    return UnlockedKey(str(document.get("name", "")), key, signing)
