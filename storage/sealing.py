"""Sealing to a public key: HPKE (RFC 9180) with ML-KEM-768 + X25519, HKDF-SHA256, AES-256-GCM.

The server holds only public keys for cases, so it can seal every answer,
message, attachment and note as it arrives but cannot open any of them. Every
sealed blob starts with a format version byte; HPKE's `info` binds it to what it
is and where it belongs (case reference and position), so a blob moved to
another case or place does not open.

On-disk format, version 1:  0x01 || HPKE enc (1120 bytes) || AES-256-GCM ciphertext
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

SEAL_VERSION = 1
_SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
_MLKEM_PUBLIC_BYTES = 1184
_X25519_BYTES = 32
_MLKEM_SEED_BYTES = 64


class SealError(Exception):
    """A sealed blob did not open: wrong key, changed bytes, or moved to another place."""


@dataclass(frozen=True)
class PublicKey:
    mlkem: mlkem.MLKEM768PublicKey
    x25519: x25519.X25519PublicKey

    def to_bytes(self) -> bytes:
        return self.mlkem.public_bytes_raw() + self.x25519.public_bytes_raw()

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicKey:
        if len(data) != _MLKEM_PUBLIC_BYTES + _X25519_BYTES:
            raise ValueError(
                f"a public key has {_MLKEM_PUBLIC_BYTES + _X25519_BYTES} bytes, not {len(data)}"
            )
        return cls(
            mlkem.MLKEM768PublicKey.from_public_bytes(data[:_MLKEM_PUBLIC_BYTES]),
            x25519.X25519PublicKey.from_public_bytes(data[_MLKEM_PUBLIC_BYTES:]),
        )

    def fingerprint(self) -> str:
        """A short, stable name for the key, to compare by eye: 16 hex digits in four groups."""
        digest = hashlib.sha256(b"lotse public key v1|" + self.to_bytes()).hexdigest()[:16]
        return " ".join(digest[index : index + 4] for index in range(0, 16, 4))

    def _hpke(self) -> hpke.MLKEM768X25519PublicKey:
        return hpke.MLKEM768X25519PublicKey(self.mlkem, self.x25519)


@dataclass(frozen=True)
class PrivateKey:
    mlkem: mlkem.MLKEM768PrivateKey
    x25519: x25519.X25519PrivateKey

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(mlkem.MLKEM768PrivateKey.generate(), x25519.X25519PrivateKey.generate())

    def public_key(self) -> PublicKey:
        return PublicKey(self.mlkem.public_key(), self.x25519.public_key())

    def to_bytes(self) -> bytes:
        """The private key's seeds: 64 bytes of ML-KEM seed and the 32-byte X25519 scalar."""
        return self.mlkem.private_bytes_raw() + self.x25519.private_bytes_raw()

    @classmethod
    def from_bytes(cls, data: bytes) -> PrivateKey:
        if len(data) != _MLKEM_SEED_BYTES + _X25519_BYTES:
            raise ValueError("not a private key")
        return cls(
            mlkem.MLKEM768PrivateKey.from_seed_bytes(data[:_MLKEM_SEED_BYTES]),
            x25519.X25519PrivateKey.from_private_bytes(data[_MLKEM_SEED_BYTES:]),
        )

    def _hpke(self) -> hpke.MLKEM768X25519PrivateKey:
        return hpke.MLKEM768X25519PrivateKey(self.mlkem, self.x25519)


def context(*parts: str | int) -> bytes:
    """The HPKE `info` for one blob: what it is and where it belongs, unambiguously joined."""
    return b"lotse/v1|" + b"|".join(str(part).replace("|", "||").encode() for part in parts)


def case_key_info(reference: str, team_id: int) -> bytes:
    """A case's private key, sealed to one generation of the team key."""
    return context("case-key", reference, team_id)


def item_info(reference: str, position: int, kind: str) -> bytes:
    """One item of a case's record: its place and kind are part of what opens it."""
    return context("item", reference, position, kind)


def file_info(reference: str, file_id: str) -> bytes:
    return context("file", reference, file_id)


def seal(public_key: PublicKey, plaintext: bytes, info: bytes) -> bytes:
    return bytes([SEAL_VERSION]) + _SUITE.encrypt(plaintext, public_key._hpke(), info=info)


def open_sealed(private_key: PrivateKey, blob: bytes, info: bytes) -> bytes:
    if not blob or blob[0] != SEAL_VERSION:
        raise SealError(f"unknown sealed format version {blob[:1].hex() or '(empty)'}")
    try:
        return _SUITE.decrypt(blob[1:], private_key._hpke(), info=info)
    except (InvalidTag, ValueError) as error:
        raise SealError("the sealed data was changed, moved, or belongs to another key") from error


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)
