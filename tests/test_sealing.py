"""Sealed topology hiding: key files and tokens (ARCHITECTURE.md §4)."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcinterconnect.border.sealing import (
    SEALING_KEY_LENGTH,
    Sealer,
    SealError,
    SealingKeyError,
    generate_sealing_key,
    load_sealing_keys,
    write_sealing_keys,
)

KEY_1 = bytes(range(64))
KEY_2 = bytes(range(64, 128))
SEALER = Sealer([(1, KEY_1)])


def test_generate_sealing_key() -> None:
    first, second = generate_sealing_key(), generate_sealing_key()
    assert len(first) == SEALING_KEY_LENGTH == 64
    assert first != second


@pytest.mark.parametrize(
    "plaintext", [b"", b"SIP/2.0/TCP 127.0.10.1:5060;branch=z9hG4bK1", bytes(range(256)) * 8]
)
def test_round_trip(plaintext: bytes) -> None:
    token = SEALER.seal("via", plaintext)
    assert SEALER.unseal("via", token) == plaintext
    assert SEALER.try_unseal("via", token) == plaintext


def test_token_is_url_safe_unpadded_and_carries_key_id() -> None:
    token = SEALER.seal("via", b"x" * 10)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert raw[0] == 1
    assert len(raw) == 1 + 16 + 10  # key id, SIV tag, ciphertext


def test_deterministic() -> None:
    assert SEALER.seal("call-id", b"abc@127.0.10.1") == SEALER.seal("call-id", b"abc@127.0.10.1")
    assert Sealer([(1, KEY_1)]).seal("call-id", b"abc") == SEALER.seal("call-id", b"abc")
    assert SEALER.seal("call-id", b"abc") != SEALER.seal("call-id", b"abd")


def test_kind_separation() -> None:
    token = SEALER.seal("via", b"secret")
    assert SEALER.seal("contact", b"secret") != token
    with pytest.raises(SealError, match="does not unseal as 'contact'"):
        SEALER.unseal("contact", token)
    assert SEALER.try_unseal("contact", token) is None


def test_tampered_token() -> None:
    token = SEALER.seal("via", b"secret")
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    for index in range(1, len(raw)):
        altered = bytearray(raw)
        altered[index] ^= 0x01
        forged = base64.urlsafe_b64encode(bytes(altered)).rstrip(b"=").decode()
        with pytest.raises(SealError, match="other kind, other key or altered"):
            SEALER.unseal("via", forged)


def test_other_key_same_id() -> None:
    token = Sealer([(1, KEY_2)]).seal("via", b"secret")
    with pytest.raises(SealError, match="altered"):
        SEALER.unseal("via", token)


def test_unknown_key_id() -> None:
    token = Sealer([(7, KEY_2)]).seal("via", b"secret")
    with pytest.raises(SealError) as info:
        SEALER.unseal("via", token)
    assert str(info.value) == "token sealed with unknown key id 7"


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("", "token is not base64url"),
        ("abc=", "token is not base64url"),
        ("ab+/cd", "token is not base64url"),
        ("abcde", "token is not base64url"),
        ("AQB", "token is not canonical base64url"),
        ("AQ", "token too short"),
    ],
)
def test_malformed_tokens(token: str, message: str) -> None:
    with pytest.raises(SealError) as info:
        SEALER.unseal("via", token)
    assert str(info.value) == message


def test_rotation() -> None:
    old = Sealer([(1, KEY_1)])
    rotated = Sealer([(2, KEY_2), (1, KEY_1)])
    old_token = old.seal("via", b"dialog of yesterday")
    assert rotated.unseal("via", old_token) == b"dialog of yesterday"
    new_token = rotated.seal("via", b"dialog of today")
    assert rotated.sealing_key_id == 2
    assert base64.urlsafe_b64decode(new_token + "=" * (-len(new_token) % 4))[0] == 2
    with pytest.raises(SealError, match="unknown key id 2"):
        old.unseal("via", new_token)


def test_messages_never_contain_key_bytes(tmp_path: Path) -> None:
    sealer = Sealer([(1, KEY_1)])
    assert base64.b64encode(KEY_1).decode() not in repr(sealer)
    path = tmp_path / "sealing.keys"
    encoded = base64.b64encode(KEY_1[:40]).decode()
    path.write_text(f"1 {encoded}\n")
    with pytest.raises(SealingKeyError) as info:
        load_sealing_keys(path)
    assert encoded not in str(info.value)


def test_sealer_refuses_bad_keys() -> None:
    with pytest.raises(SealingKeyError, match="no key"):
        Sealer([])
    with pytest.raises(SealingKeyError, match="wrong key length 32 bytes"):
        Sealer([(1, KEY_1[:32])])
    with pytest.raises(SealingKeyError, match="duplicate key id 1"):
        Sealer([(1, KEY_1), (1, KEY_2)])
    with pytest.raises(SealingKeyError, match=r"key id 256 is not in 0\.\.255"):
        Sealer([(256, KEY_1)])


def test_key_file_round_trip_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "sealing.keys"
    keys = [(2, KEY_2), (1, KEY_1)]
    write_sealing_keys(path, keys)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# ")
    assert lines[1] == f"2 {base64.b64encode(KEY_2).decode()}"
    assert load_sealing_keys(path) == keys
    path.chmod(0o644)
    write_sealing_keys(path, keys)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Sealer.from_file(path).sealing_key_id == 2


def test_write_refuses_bad_keys(tmp_path: Path) -> None:
    path = tmp_path / "sealing.keys"
    with pytest.raises(SealingKeyError) as info:
        write_sealing_keys(path, [])
    assert str(info.value) == f"{path}: no key"
    assert not path.exists()


def test_key_file_comments_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "sealing.keys"
    path.write_text(f"# keys\n\n  # indented comment\n5 {base64.b64encode(KEY_1).decode()}\n\n")
    assert load_sealing_keys(path) == [(5, KEY_1)]


KEY_1_B64 = base64.b64encode(KEY_1).decode()
KEY_2_B64 = base64.b64encode(KEY_2).decode()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("# only a comment\n", "no key"),
        ("", "no key"),
        (f"# c\n1 {KEY_1_B64} extra\n", "bad line 2: expected 'KEYID BASE64'"),
        (f"x {KEY_1_B64}\n", "bad line 1: expected 'KEYID BASE64'"),
        (f"-1 {KEY_1_B64}\n", "bad line 1: expected 'KEYID BASE64'"),
        (f"{KEY_1_B64}\n", "bad line 1: expected 'KEYID BASE64'"),
        (f"300 {KEY_1_B64}\n", "bad line 1: key id 300 is not in 0..255"),
        ("1 not*base64\n", "bad line 1: key is not valid base64"),
        (
            f"1 {base64.b64encode(KEY_1[:32]).decode()}\n",
            "line 1: wrong key length 32 bytes, expected 64 (AES-256-SIV)",
        ),
        (f"1 {KEY_1_B64}\n1 {KEY_2_B64}\n", "line 2: duplicate key id 1"),
        ("1 \xe9\n", "not an ASCII text file"),
    ],
)
def test_key_file_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "sealing.keys"
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(SealingKeyError) as info:
        load_sealing_keys(path)
    assert str(info.value) == f"{path}: {message}"


def test_key_file_missing(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.keys"
    with pytest.raises(SealingKeyError) as info:
        load_sealing_keys(path)
    assert str(info.value) == f"{path}: file not found"


@given(st.text())
def test_unseal_any_text_gives_bytes_or_seal_error(token: str) -> None:
    try:
        result = SEALER.unseal("via", token)
    except SealError:
        return
    assert isinstance(result, bytes)


@given(st.binary(max_size=64))
def test_unseal_any_key_id_and_bytes(raw: bytes) -> None:
    token = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    assert SEALER.try_unseal("via", token) is None


@given(st.text(min_size=1, max_size=20), st.binary(max_size=200))
def test_round_trip_property(kind: str, plaintext: bytes) -> None:
    token = SEALER.seal(kind, plaintext)
    assert SEALER.unseal(kind, token) == plaintext
