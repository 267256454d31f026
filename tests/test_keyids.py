"""Key IDs with purpose tags and the GUK-ID (crypto/keyids.py; 33.180 5.2.2, F.1.3)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcinterconnect.crypto.keyids import (
    MAX_KEY_ID,
    KeyIdError,
    Purpose,
    check_purpose,
    format_key_id,
    gmk_id_from_guk_id,
    guk_id,
    key_id_from_bytes,
    key_id_to_bytes,
    new_key_id,
    parse_key_id,
    purpose_of,
)

# spec/crypto.md §6.4 [verified]
GMK = bytes.fromhex("07d1a1677ac36d8e81620484689b3c2d")
GMK_ID = 0x0DF9BC39
ALICE = "sip:alice@streamwide.com"
GUK_ID = 0x06A12AEA


# --- GUK-ID ---------------------------------------------------------------------------------


def test_guk_id_vector() -> None:
    assert guk_id(GMK, GMK_ID, ALICE) == GUK_ID
    assert format_key_id(guk_id(GMK, GMK_ID, ALICE)) == "06a12aea"


def test_guk_id_vector_by_hand() -> None:
    """F.1.3 spelled out with hmac: salt = 28 LSB of KDF(GMK, 0x50, URI); keep the GMK-ID's tag."""
    uri = ALICE.encode()
    s = b"\x50" + uri + len(uri).to_bytes(2, "big")
    salt = int.from_bytes(hmac.new(GMK, s, hashlib.sha256).digest(), "big") & 0x0FFFFFFF
    assert (GMK_ID & 0xF0000000) | ((GMK_ID ^ salt) & 0x0FFFFFFF) == GUK_ID


def test_gmk_id_recovered_from_guk_id() -> None:
    assert gmk_id_from_guk_id(GMK, GUK_ID, ALICE) == GMK_ID


def test_guk_id_differs_per_user_and_keeps_tag() -> None:
    bob = guk_id(GMK, GMK_ID, "sip:bob@streamwide.com")
    assert bob != GUK_ID
    assert purpose_of(bob) is Purpose.GMK
    assert gmk_id_from_guk_id(GMK, bob, "sip:bob@streamwide.com") == GMK_ID
    assert gmk_id_from_guk_id(GMK, bob, ALICE) != GMK_ID


@pytest.mark.parametrize(
    ("gmk", "gmk_id", "uri", "error", "reason"),
    [
        (GMK[:15], GMK_ID, ALICE, KeyIdError, "GMK has 15 octets"),
        (GMK + b"\x00", GMK_ID, ALICE, KeyIdError, "GMK has 17 octets"),
        (GMK, 0x1DF9BC39, ALICE, KeyIdError, "tagged PCK, expected GMK"),
        (GMK, 0xFDF9BC39, ALICE, KeyIdError, "unused purpose tag 15"),
        (GMK, 2**32, ALICE, KeyIdError, "not a 32-bit"),
        (GMK, GMK_ID, "", KeyIdError, "user URI is empty"),
        (GMK, GMK_ID, ALICE + " ", KeyIdError, "whitespace"),
        (GMK, GMK_ID, "sip:\ud800@x", KeyIdError, "UTF-8"),
        (GMK, GMK_ID, "s" * 65536, KeyIdError, "65536 octets"),
        (GMK.hex(), GMK_ID, ALICE, TypeError, "GMK must be bytes"),
        (GMK, GMK_ID, ALICE.encode(), TypeError, "user URI must be str"),
    ],
)
def test_guk_id_refuses(gmk: bytes, gmk_id: int, uri: str, error: type[Exception], reason: str) -> None:
    with pytest.raises(error, match=reason):
        guk_id(gmk, gmk_id, uri)


def test_gmk_id_from_guk_id_refuses_non_gmk_tag() -> None:
    with pytest.raises(KeyIdError, match="tagged CSK"):
        gmk_id_from_guk_id(GMK, 0x26A12AEA, ALICE)


@given(
    gmk=st.binary(min_size=16, max_size=16),
    random_bits=st.integers(0, 0x0FFFFFFF),
    uri=st.text(min_size=1, max_size=50).filter(lambda t: t == t.strip() and bool(t)),
)
def test_guk_id_round_trip(gmk: bytes, random_bits: int, uri: str) -> None:
    gmk_id = random_bits
    guk = guk_id(gmk, gmk_id, uri)
    assert guk >> 28 == Purpose.GMK
    assert gmk_id_from_guk_id(gmk, guk, uri) == gmk_id


# --- purpose tags ---------------------------------------------------------------------------


def test_purpose_table() -> None:
    assert [(p.name, int(p)) for p in Purpose] == [
        ("GMK", 0),
        ("PCK", 1),
        ("CSK", 2),
        ("SPK", 3),
        ("MKFC", 4),
        ("MSCCK", 5),
        ("MUSIK", 6),
    ]


@pytest.mark.parametrize("purpose", list(Purpose))
def test_new_key_id_carries_its_tag(purpose: Purpose) -> None:
    key_id = new_key_id(purpose)
    assert 0 <= key_id <= MAX_KEY_ID
    assert key_id >> 28 == purpose
    assert purpose_of(key_id) is purpose
    assert check_purpose(key_id, purpose) == key_id


def test_new_key_id_is_random() -> None:
    ids = {new_key_id(Purpose.CSK) for _ in range(64)}
    assert len(ids) > 60
    assert {key_id >> 28 for key_id in ids} == {2}


def test_new_key_id_refuses_unknown_purpose() -> None:
    for purpose in (7, -1, True, "CSK"):
        with pytest.raises(KeyIdError, match="is not a purpose tag"):
            new_key_id(purpose)  # type: ignore[arg-type]


def test_csk_tag_is_0010() -> None:
    """36.579-1 5.5.9: the 4 most significant bits of a CSK-ID are 0010b."""
    assert purpose_of(0b0010 << 28 | 0x0ABCDEF) is Purpose.CSK


@pytest.mark.parametrize("tag", range(7, 16))
def test_unused_tags_refused(tag: int) -> None:
    with pytest.raises(KeyIdError, match=f"unused purpose tag {tag}"):
        purpose_of(tag << 28 | 0x1234567)


@pytest.mark.parametrize("value", [-1, 2**32, 2**64, True])
def test_out_of_range_ids_refused(value: int) -> None:
    with pytest.raises(KeyIdError):
        purpose_of(value)
    with pytest.raises(KeyIdError):
        format_key_id(value)
    with pytest.raises(KeyIdError):
        key_id_to_bytes(value)


def test_non_int_ids_refused() -> None:
    with pytest.raises(KeyIdError, match="must be an int"):
        purpose_of("0df9bc39")  # type: ignore[arg-type]


def test_check_purpose_refuses_mismatch() -> None:
    with pytest.raises(KeyIdError, match="0df9bc39 is tagged GMK, expected SPK"):
        check_purpose(GMK_ID, Purpose.SPK)


# --- text and octets ------------------------------------------------------------------------


def test_format_key_id() -> None:
    assert format_key_id(GMK_ID) == "0df9bc39"
    assert format_key_id(0) == "00000000"
    assert format_key_id(MAX_KEY_ID) == "ffffffff"
    assert format_key_id(0xF0000000) == "f0000000"  # formatting does not judge the tag


@pytest.mark.parametrize("text", ["0df9bc39", "0DF9BC39", "0x0df9bc39", "0X0DF9bc39"])
def test_parse_key_id(text: str) -> None:
    assert parse_key_id(text) == GMK_ID


@pytest.mark.parametrize(
    "text",
    [
        "",
        "df9bc39",
        "00df9bc39",
        " 0df9bc39",
        "0df9bc39\n",
        "+df9bc39",
        "0df9_c39",
        "0xdf9bc39",
        "0df9bc3g",
        "０df9bc39",
    ],
)
def test_parse_key_id_refuses(text: str) -> None:
    with pytest.raises(KeyIdError, match="not 8 hexadecimal digits"):
        parse_key_id(text)


def test_parse_key_id_refuses_non_text() -> None:
    with pytest.raises(KeyIdError, match="must be str"):
        parse_key_id(b"0df9bc39")  # type: ignore[arg-type]


def test_key_id_octets() -> None:
    assert key_id_to_bytes(GMK_ID) == b"\x0d\xf9\xbc\x39"
    assert key_id_from_bytes(b"\x0d\xf9\xbc\x39") == GMK_ID
    for octets in (b"", b"\x00" * 3, b"\x00" * 5):
        with pytest.raises(KeyIdError, match="expected 4"):
            key_id_from_bytes(octets)


@given(st.integers(0, MAX_KEY_ID))
def test_text_and_octet_round_trips(key_id: int) -> None:
    assert parse_key_id(format_key_id(key_id)) == key_id
    assert parse_key_id("0x" + format_key_id(key_id).upper()) == key_id
    assert key_id_from_bytes(key_id_to_bytes(key_id)) == key_id


@given(st.integers(0, MAX_KEY_ID))
def test_purpose_of_any_id(key_id: int) -> None:
    tag = key_id >> 28
    if tag <= 6:
        assert purpose_of(key_id) == tag
    else:
        with pytest.raises(KeyIdError):
            purpose_of(key_id)


@given(st.text(max_size=12))
def test_parse_key_id_only_raises_key_id_error(text: str) -> None:
    try:
        value = parse_key_id(text)
    except KeyIdError:
        return
    assert format_key_id(value) == text.lower().removeprefix("0x")


@given(st.sampled_from(list(Purpose)))
def test_new_key_id_round_trips_through_text(purpose: Purpose) -> None:
    key_id = new_key_id(purpose)
    assert purpose_of(parse_key_id(format_key_id(key_id))) is purpose
