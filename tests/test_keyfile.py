"""Counsellor key files: the format is pinned; wrong passphrases and damage are clear errors."""

from __future__ import annotations

import base64
import json
import shutil
import stat
from pathlib import Path

import pytest

from bot.cli import main
from storage.keyfile import KeyFileError, public_path, read_public_key, unlock, write_key_pair
from storage.sealing import PrivateKey
from storage.signing import SignatureError, SigningKey, counsellor_statement, team_statement

VECTORS = Path(__file__).parent / "vectors"
KAT_PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def kat_key(tmp_path: Path) -> Path:
    """The known-answer key file as a counsellor keeps it: readable by its owner only.

    (A checkout gives it the umask's mode, and a private key file others may read is refused.)
    """
    key = tmp_path / "counsellor-v1.key"
    shutil.copy(VECTORS / "counsellor-v1.key", key)
    key.chmod(0o600)
    return key


def test_known_key_file_opens_with_its_passphrase(kat_key: Path) -> None:
    unlocked = unlock(kat_key, KAT_PASSPHRASE)
    expected = PrivateKey.from_bytes(bytes([0x11]) * 64 + bytes([0x22]) * 32)
    assert unlocked.name == "KAT"
    assert unlocked.key.to_bytes() == expected.to_bytes()


def test_wrong_passphrase_is_a_clear_error(kat_key: Path) -> None:
    with pytest.raises(KeyFileError, match=r"wrong passphrase for .*counsellor-v1\.key"):
        unlock(kat_key, "correct horse battery stapler")


def test_changed_public_half_is_refused(tmp_path: Path) -> None:
    document = json.loads((VECTORS / "counsellor-v1.key").read_text())
    other = PrivateKey.generate().public_key().to_bytes()
    document["public_key"] = base64.b64encode(other).decode()
    spliced = tmp_path / "spliced.key"
    spliced.write_text(json.dumps(document))
    spliced.chmod(0o600)
    with pytest.raises(KeyFileError, match=r"wrong passphrase .* \(or the file was changed\)"):
        unlock(spliced, KAT_PASSPHRASE)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "is not a Lotse key file"),
        ('{"format": "something else"}', "is not a Lotse counsellor private key file"),
        ('{"format": "lotse-counsellor-key", "version": 9}', "version 9"),
        ('{"format": "lotse-counsellor-key", "version": 1}', "is damaged"),
    ],
)
def test_malformed_files_are_named(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "broken.key"
    path.write_text(content)
    with pytest.raises(KeyFileError, match=message):
        unlock(path, "whatever")


def test_write_creates_private_0600_and_public_beside_it_and_never_overwrites(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keys" / "berger.key"
    public = write_key_pair(path, "Berger", "a long passphrase")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_public_key(public_path(path)).key.to_bytes() == public.to_bytes()
    assert read_public_key(public_path(path)).name == "Berger"
    assert unlock(path, "a long passphrase").public.to_bytes() == public.to_bytes()
    with pytest.raises(KeyFileError, match="already exists"):
        write_key_pair(path, "Berger", "a long passphrase")
    with pytest.raises(KeyFileError, match=r"public key \(\.pub\)"):
        read_public_key(path)  # the private file given where the public one belongs


def test_cli_generates_with_passphrase_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOTSE_PASSPHRASE", "eine lange Passphrase")
    out = tmp_path / "berger.key"
    assert main(["keys", "generate", "--out", str(out), "--name", "A. Berger"]) == 0
    printed = capsys.readouterr().out
    assert "fingerprint:" in printed
    assert unlock(out, "eine lange Passphrase").name == "A. Berger"
    monkeypatch.setenv("LOTSE_PASSPHRASE", "short")
    assert main(["keys", "generate", "--out", str(tmp_path / "x.key")]) == 1
    assert "at least 8 characters" in capsys.readouterr().err


def test_cli_wrong_passphrase_is_one_line_without_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "kat.key"
    shutil.copy(VECTORS / "counsellor-v1.key", key)
    key.chmod(0o600)
    assert main(["db", "upgrade", "--data-dir", str(tmp_path / "d")]) == 0  # read commands
    monkeypatch.setenv("LOTSE_PASSPHRASE", "nope")  # refuse a data folder that does not exist
    assert (
        main(["cases", "show", "L-2026-0001", "--key", str(key), "--data-dir", str(tmp_path / "d")])
        == 1
    )
    error = capsys.readouterr().err
    assert error.strip() == f"lotse: wrong passphrase for {key} (or the file was changed)"


# -- version 2: a signing key beside the KEM key (issue 11 item 4) ------------------------------

KAT_SIGNING_SEEDS = bytes([0x33]) * 32 + bytes([0x44]) * 32
KAT_SIGNING_FINGERPRINT = "5866 650c 7767 63de cd02 50ec 2c8b e206"


def test_known_v2_key_file_opens_with_both_keys(tmp_path: Path) -> None:
    key = tmp_path / "counsellor-v2.key"
    shutil.copy(VECTORS / "counsellor-v2.key", key)
    key.chmod(0o600)
    unlocked = unlock(key, KAT_PASSPHRASE)
    assert unlocked.key.to_bytes() == bytes([0x11]) * 64 + bytes([0x22]) * 32
    assert unlocked.signing is not None
    assert unlocked.signing.to_bytes() == KAT_SIGNING_SEEDS
    assert unlocked.signing.public_key().fingerprint() == KAT_SIGNING_FINGERPRINT
    public = read_public_key(VECTORS / "counsellor-v2.key.pub")
    assert public.signing is not None
    expected = SigningKey.from_bytes(KAT_SIGNING_SEEDS).public_key()
    assert public.signing.to_bytes() == expected.to_bytes()
    document = json.loads((VECTORS / "counsellor-v2.key.pub").read_text())
    assert (document["version"], document["signing_fingerprint"]) == (2, KAT_SIGNING_FINGERPRINT)


def test_v1_key_file_still_opens_but_cannot_sign(kat_key: Path) -> None:
    unlocked = unlock(kat_key, KAT_PASSPHRASE)
    assert unlocked.signing is None
    with pytest.raises(KeyFileError, match=r"version 1 key file and cannot sign.*keys generate"):
        unlocked.signer(kat_key)


def test_a_swapped_signing_key_in_a_v2_file_is_refused(tmp_path: Path) -> None:
    document = json.loads((VECTORS / "counsellor-v2.key").read_text())
    other = SigningKey.generate().public_key().to_bytes()
    document["signing_key"] = base64.b64encode(other).decode()
    spliced = tmp_path / "spliced.key"
    spliced.write_text(json.dumps(document))
    spliced.chmod(0o600)
    with pytest.raises(KeyFileError, match=r"wrong passphrase .* \(or the file was changed\)"):
        unlock(spliced, KAT_PASSPHRASE)


def test_signed_statements_are_length_prefixed_bytes() -> None:
    assert team_statement(7, b"") == (
        b"\x00\x00\x00\x11lotse/team-key/v1"
        + b"\x00\x00\x00\x017"
        + b"\x00\x00\x00\x20"
        + bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    )
    signing = SigningKey.from_bytes(KAT_SIGNING_SEEDS)
    message = counsellor_statement("Kaya", b"kem", b"sign")
    signature = signing.sign(message)
    signing.public_key().verify(signature, message)
    with pytest.raises(SignatureError):  # both halves must verify: a bad Ed25519 half fails
        signing.public_key().verify(signature[:-64] + bytes(64), message)
    with pytest.raises(SignatureError):  # and a bad ML-DSA half
        signing.public_key().verify(bytes(3309) + signature[-64:], message)
