"""Hybrid signatures for the key chain: ML-DSA-65 and Ed25519, valid only if both verify.

Counsellor keys for sealing are KEM keys and cannot sign, so each v2 key file also
holds a signing key. What is signed are domain-separated statements of
length-prefixed fields (never JSON): a counsellor's keys when another counsellor
adds them, and a team public key when a counsellor creates or rotates it
(storage/chain.py checks the chain).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa

_MLDSA_PUBLIC_BYTES = 1952
_MLDSA_SEED_BYTES = 32
_ED25519_BYTES = 32
_MLDSA_SIGNATURE_BYTES = 3309
_ED25519_SIGNATURE_BYTES = 64
SEED_BYTES = _MLDSA_SEED_BYTES + _ED25519_BYTES

COUNSELLOR_STATEMENT = "lotse/counsellor/v1"
TEAM_KEY_STATEMENT = "lotse/team-key/v1"


class SignatureError(Exception):
    """A signature does not verify, or a signing key does not read."""


def statement(kind: str, *fields: bytes) -> bytes:
    """`kind` and each field, every one preceded by its length (4 bytes, big-endian)."""
    parts = [kind.encode("utf-8"), *fields]
    return b"".join(len(part).to_bytes(4, "big") + part for part in parts)


def counsellor_statement(name: str, kem_public: bytes, signing_public: bytes) -> bytes:
    return statement(
        COUNSELLOR_STATEMENT,
        name.encode("utf-8"),
        hashlib.sha256(kem_public).digest(),
        hashlib.sha256(signing_public).digest(),
    )


def team_statement(team_id: int, team_public: bytes) -> bytes:
    return statement(
        TEAM_KEY_STATEMENT, str(team_id).encode("ascii"), hashlib.sha256(team_public).digest()
    )


@dataclass(frozen=True)
class SigningPublicKey:
    mldsa: mldsa.MLDSA65PublicKey
    ed25519: ed25519.Ed25519PublicKey

    def to_bytes(self) -> bytes:
        return self.mldsa.public_bytes_raw() + self.ed25519.public_bytes_raw()

    @classmethod
    def from_bytes(cls, data: bytes) -> SigningPublicKey:
        if len(data) != _MLDSA_PUBLIC_BYTES + _ED25519_BYTES:
            raise ValueError(
                f"a signing key has {_MLDSA_PUBLIC_BYTES + _ED25519_BYTES} bytes, not {len(data)}"
            )
        return cls(
            mldsa.MLDSA65PublicKey.from_public_bytes(data[:_MLDSA_PUBLIC_BYTES]),
            ed25519.Ed25519PublicKey.from_public_bytes(data[_MLDSA_PUBLIC_BYTES:]),
        )

    def fingerprint(self) -> str:
        """The anchor's spelling: 32 hex digits in eight groups of four."""
        digest = hashlib.sha256(b"lotse signing key v1|" + self.to_bytes()).hexdigest()[:32]
        return " ".join(digest[index : index + 4] for index in range(0, 32, 4))

    def verify(self, signature: bytes, message: bytes) -> None:
        """Raises SignatureError unless both halves verify."""
        if len(signature) != _MLDSA_SIGNATURE_BYTES + _ED25519_SIGNATURE_BYTES:
            raise SignatureError("a signature of the wrong length")
        if not _both_verify(self.to_bytes(), signature, message):
            raise SignatureError("the signature does not verify")


@functools.lru_cache(maxsize=64)
def _both_verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """The check itself, remembered by its bytes – the answer for the same three never
    changes: every submission checks the team key's signature again, ~0.4 ms each here."""
    key = SigningPublicKey.from_bytes(public_key)
    try:
        key.mldsa.verify(signature[:_MLDSA_SIGNATURE_BYTES], message)
        key.ed25519.verify(signature[_MLDSA_SIGNATURE_BYTES:], message)
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class SigningKey:
    mldsa: mldsa.MLDSA65PrivateKey
    ed25519: ed25519.Ed25519PrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(mldsa.MLDSA65PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate())

    def public_key(self) -> SigningPublicKey:
        return SigningPublicKey(self.mldsa.public_key(), self.ed25519.public_key())

    def to_bytes(self) -> bytes:
        """The seeds: 32 bytes of ML-DSA-65 seed and the 32-byte Ed25519 key."""
        return self.mldsa.private_bytes_raw() + self.ed25519.private_bytes_raw()

    @classmethod
    def from_bytes(cls, data: bytes) -> SigningKey:
        if len(data) != SEED_BYTES:
            raise ValueError("not a signing key")
        return cls(
            mldsa.MLDSA65PrivateKey.from_seed_bytes(data[:_MLDSA_SEED_BYTES]),
            ed25519.Ed25519PrivateKey.from_private_bytes(data[_MLDSA_SEED_BYTES:]),
        )

    def sign(self, message: bytes) -> bytes:
        return self.mldsa.sign(message) + self.ed25519.sign(message)
