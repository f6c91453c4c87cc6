"""Sealing: the on-disk format is pinned, and every kind of tampering is caught and named."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.sealing import (
    SEAL_VERSION,
    PrivateKey,
    PublicKey,
    SealError,
    context,
    open_sealed,
    seal,
)

VECTORS = Path(__file__).parent / "vectors"
KAT_KEY = PrivateKey.from_bytes(bytes([0x11]) * 64 + bytes([0x22]) * 32)
KAT_INFO = context("item", "L-2026-0001", 0, "intake")
KAT_PLAINTEXT = "Lotse Known-Answer-Test: Ärger im Rathaus".encode()
ENC_BYTES = 1120  # ML-KEM-768 ciphertext (1088) + X25519 share (32)
TAG_BYTES = 16


def test_known_answer_pins_the_format() -> None:
    """A blob written by version 1 must open forever; change the format only with a new version."""
    blob = bytes.fromhex((VECTORS / "sealed-item-v1.hex").read_text().strip())
    assert blob[0] == SEAL_VERSION == 1
    assert len(blob) == 1 + ENC_BYTES + len(KAT_PLAINTEXT) + TAG_BYTES
    assert open_sealed(KAT_KEY, blob, KAT_INFO) == KAT_PLAINTEXT
    assert KAT_KEY.public_key().fingerprint() == "4b96 8d54 0ba3 ced5"


def test_seal_and_open_round_trip_and_are_randomised() -> None:
    key = PrivateKey.generate()
    first = seal(key.public_key(), b"secret", KAT_INFO)
    second = seal(key.public_key(), b"secret", KAT_INFO)
    assert first != second
    assert open_sealed(key, first, KAT_INFO) == open_sealed(key, second, KAT_INFO) == b"secret"
    assert b"secret" not in first


@pytest.mark.parametrize("index", [0, 1, 500, ENC_BYTES, ENC_BYTES + 1, -1])
def test_one_flipped_byte_is_detected(index: int) -> None:
    blob = bytearray(bytes.fromhex((VECTORS / "sealed-item-v1.hex").read_text().strip()))
    blob[index] ^= 0x01
    with pytest.raises(SealError) as caught:
        open_sealed(KAT_KEY, bytes(blob), KAT_INFO)
    expected = "unknown sealed format version" if index == 0 else "was changed, moved"
    assert expected in str(caught.value)


@pytest.mark.parametrize(
    "elsewhere",
    [
        context("item", "L-2026-0002", 0, "intake"),  # another case
        context("item", "L-2026-0001", 1, "intake"),  # another position
        context("item", "L-2026-0001", 0, "note"),  # another kind
        context("file", "L-2026-0001", 0, "intake"),
    ],
)
def test_a_blob_moved_elsewhere_does_not_open(elsewhere: bytes) -> None:
    blob = bytes.fromhex((VECTORS / "sealed-item-v1.hex").read_text().strip())
    with pytest.raises(SealError):
        open_sealed(KAT_KEY, blob, elsewhere)


def test_another_key_does_not_open() -> None:
    blob = bytes.fromhex((VECTORS / "sealed-item-v1.hex").read_text().strip())
    with pytest.raises(SealError):
        open_sealed(PrivateKey.generate(), blob, KAT_INFO)


def test_context_parts_cannot_run_into_each_other() -> None:
    assert context("a|b", "c") != context("a", "b|c")
    assert context("item", 1, 2) != context("item", 12)


def test_keys_round_trip_and_reject_wrong_sizes() -> None:
    key = PrivateKey.generate()
    assert (
        PrivateKey.from_bytes(key.to_bytes()).public_key().to_bytes() == key.public_key().to_bytes()
    )
    assert (
        PublicKey.from_bytes(key.public_key().to_bytes()).fingerprint()
        == key.public_key().fingerprint()
    )
    with pytest.raises(ValueError, match="public key has"):
        PublicKey.from_bytes(b"\x00" * 10)
    with pytest.raises(ValueError, match="not a private key"):
        PrivateKey.from_bytes(b"\x00" * 10)
