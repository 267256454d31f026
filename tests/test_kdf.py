"""TS 33.220 Annex B KDF and the TS 33.180 F.1.4 XML protection keys (crypto/kdf.py)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcinterconnect.crypto import kdf as kdf_module
from mcinterconnect.crypto.kdf import (
    FC_GUK_ID_SALT,
    FC_XML_CONFIDENTIALITY,
    FC_XML_INTEGRITY,
    MAX_PARAMETER_LENGTH,
    XPK_PURPOSE_TAGS,
    KdfError,
    XmlProtectionKeys,
    decode_uint,
    derive_xml_key,
    derive_xml_keys,
    encode_s,
    encode_uint,
    kdf,
)
from mcinterconnect.crypto.keyids import Purpose

CSK = bytes(range(16))
CSK_ID = 0x2ABCDEF0
ALICE = "sip:alice@a.mc.example"
SPK = bytes(range(16, 32))
SPK_ID = 0x3000000A


# --- encoding of S (33.220 B.1) -------------------------------------------------------------


def test_encode_s_byte_by_byte() -> None:
    s = encode_s(0x51, b"abc", b"\x01\x02")
    assert s == bytes([0x51, 0x61, 0x62, 0x63, 0x00, 0x03, 0x01, 0x02, 0x00, 0x02])


def test_encode_s_fc_only_and_empty_parameter() -> None:
    assert encode_s(0x00) == b"\x00"
    assert encode_s(0xFF, b"") == b"\xff\x00\x00"


def test_encode_s_lengths_are_two_octets_big_endian() -> None:
    s = encode_s(0x10, b"x" * 0x0123)
    assert s[0] == 0x10
    assert s[1:-2] == b"x" * 0x0123
    assert s[-2:] == b"\x01\x23"


def test_encode_s_uid_vector_prefix() -> None:
    """The prefix every UID input starts with (FC 0x00, "MIKEY-SAKKE-UID", 0x000F)."""
    assert encode_s(0x00, b"MIKEY-SAKKE-UID") == bytes.fromhex("004d494b45592d53414b4b452d554944000f")


def test_encode_s_accepts_bytearray_and_memoryview() -> None:
    assert encode_s(1, bytearray(b"ab"), memoryview(b"c")) == b"\x01ab\x00\x02c\x00\x01"


def test_encode_s_longest_parameter() -> None:
    s = encode_s(0x01, bytes(MAX_PARAMETER_LENGTH))
    assert len(s) == 1 + MAX_PARAMETER_LENGTH + 2
    assert s[-2:] == b"\xff\xff"


def test_encode_s_refuses_parameter_of_65536_octets() -> None:
    with pytest.raises(KdfError, match="P1 has 65536 octets"):
        encode_s(0x01, b"ok", bytes(MAX_PARAMETER_LENGTH + 1))


@pytest.mark.parametrize("fc", [-1, 256, 1000])
def test_encode_s_refuses_fc_out_of_range(fc: int) -> None:
    with pytest.raises(KdfError, match="not one octet"):
        encode_s(fc, b"x")


def test_encode_s_refuses_bool_fc() -> None:
    with pytest.raises(KdfError):
        encode_s(True, b"x")


def test_encode_s_refuses_text_parameter() -> None:
    with pytest.raises(TypeError, match="P0 must be bytes"):
        encode_s(0x01, "text")  # type: ignore[arg-type]


# --- integer parameters ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "octets"),
    [
        (0, b"\x00"),
        (1, b"\x01"),
        (255, b"\xff"),
        (256, b"\x01\x00"),
        (2592000, bytes.fromhex("278d00")),
        (25920000, bytes.fromhex("018b8200")),
        (20393844, bytes.fromhex("01372f74")),
        (2**32, bytes.fromhex("0100000000")),
    ],
)
def test_encode_uint_minimal(value: int, octets: bytes) -> None:
    assert encode_uint(value) == octets
    assert decode_uint(octets) == value


def test_encode_uint_refuses_negative_and_non_int() -> None:
    with pytest.raises(KdfError, match="negative"):
        encode_uint(-1)
    with pytest.raises(KdfError, match="must be an int"):
        encode_uint(True)
    with pytest.raises(KdfError, match="must be an int"):
        encode_uint(1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("octets", [b"", b"\x00\x00", b"\x00\x01"])
def test_decode_uint_refuses_empty_and_non_minimal(octets: bytes) -> None:
    with pytest.raises(KdfError):
        decode_uint(octets)


@given(st.integers(min_value=0, max_value=2**600))
def test_uint_round_trip(value: int) -> None:
    octets = encode_uint(value)
    assert decode_uint(octets) == value
    assert len(octets) == max(1, (value.bit_length() + 7) // 8)


@given(st.binary(max_size=12))
def test_decode_uint_only_raises_kdf_error(octets: bytes) -> None:
    try:
        value = decode_uint(octets)
    except KdfError:
        return
    assert encode_uint(value) == octets


# --- the KDF (33.220 B.2) -------------------------------------------------------------------


def test_kdf_is_hmac_sha256_of_s() -> None:
    key = bytes.fromhex("07d1a1677ac36d8e81620484689b3c2d")
    expected = hmac.new(key, b"\x50sip:alice@streamwide.com\x00\x18", hashlib.sha256).digest()
    assert kdf(key, FC_GUK_ID_SALT, b"sip:alice@streamwide.com") == expected


@given(
    key=st.binary(min_size=1, max_size=80),
    fc=st.integers(min_value=0, max_value=255),
    params=st.lists(st.binary(max_size=40), max_size=5),
)
def test_kdf_matches_stdlib_hmac(key: bytes, fc: int, params: list[bytes]) -> None:
    s = bytes([fc]) + b"".join(p + len(p).to_bytes(2, "big") for p in params)
    assert kdf(key, fc, *params) == hmac.new(key, s, hashlib.sha256).digest()


def test_kdf_refuses_empty_key_and_non_bytes_key() -> None:
    with pytest.raises(KdfError, match="empty"):
        kdf(b"", 0x51, b"x")
    with pytest.raises(TypeError):
        kdf("key", 0x51, b"x")  # type: ignore[arg-type]


# --- F.1.4 XML protection keys --------------------------------------------------------------


def _by_hand(xpk: bytes, fc: int, identity: str, key_id: int) -> bytes:
    p0 = identity.encode()
    s = bytes([fc]) + p0 + len(p0).to_bytes(2, "big") + key_id.to_bytes(4, "big") + b"\x00\x04"
    return hmac.new(xpk, s, hashlib.sha256).digest()[16:]


def test_derive_xml_keys_against_hand_built_s() -> None:
    keys = derive_xml_keys(CSK, CSK_ID, ALICE)
    assert keys.confidentiality == _by_hand(CSK, 0x51, ALICE, CSK_ID)
    assert keys.integrity == _by_hand(CSK, 0x52, ALICE, CSK_ID)
    assert len(keys.confidentiality) == len(keys.integrity) == 16


def test_derive_xml_keys_regression_values() -> None:
    """Values of this implementation (not spec vectors): a change here changes the wire."""
    confidentiality, integrity = derive_xml_keys(CSK, CSK_ID, ALICE)
    assert confidentiality.hex() == "7fdd22e45ab7fd2db41726a98e3b7c6a"
    assert integrity.hex() == "9dbfa03faafb576f737f4e418c4523fa"
    spk_keys = derive_xml_keys(SPK, SPK_ID, "b.mc.example")
    assert spk_keys == XmlProtectionKeys(
        bytes.fromhex("1606c60068d636d243eb8a3ca313a0e6"), bytes.fromhex("66c7999bf600140a60657ce8c72115d3")
    )


def test_derive_xml_keys_deterministic_and_tuple() -> None:
    first = derive_xml_keys(CSK, CSK_ID, ALICE)
    assert first == derive_xml_keys(bytearray(CSK), CSK_ID, ALICE)
    confidentiality, integrity = first
    assert (confidentiality, integrity) == (first.confidentiality, first.integrity)


def test_derive_xml_keys_domain_separated() -> None:
    base = derive_xml_keys(CSK, CSK_ID, ALICE)
    assert base.confidentiality != base.integrity
    variants = [
        derive_xml_keys(SPK, CSK_ID, ALICE),
        derive_xml_keys(CSK, CSK_ID ^ 1, ALICE),
        derive_xml_keys(CSK, CSK_ID, "sip:bob@a.mc.example"),
        derive_xml_keys(CSK, CSK_ID, ALICE + "x"),
    ]
    seen = {base.confidentiality, base.integrity}
    for keys in variants:
        seen.update(keys)
    assert len(seen) == 2 * (1 + len(variants))


def test_derive_xml_key_single() -> None:
    keys = derive_xml_keys(CSK, CSK_ID, ALICE)
    assert derive_xml_key(CSK, FC_XML_CONFIDENTIALITY, CSK_ID, ALICE) == keys.confidentiality
    assert derive_xml_key(CSK, FC_XML_INTEGRITY, CSK_ID, ALICE) == keys.integrity


@pytest.mark.parametrize("fc", [0x00, 0x50, 0x53])
def test_derive_xml_key_refuses_other_fc(fc: int) -> None:
    with pytest.raises(KdfError, match=r"not an F\.1\.4 FC"):
        derive_xml_key(CSK, fc, CSK_ID, ALICE)


def test_xpk_purpose_tags_match_keyids() -> None:
    assert {Purpose.CSK, Purpose.SPK} == XPK_PURPOSE_TAGS


@pytest.mark.parametrize("purpose", [Purpose.GMK, Purpose.PCK, Purpose.MKFC, Purpose.MSCCK, Purpose.MUSIK])
def test_derive_xml_keys_refuses_key_ids_of_other_purposes(purpose: Purpose) -> None:
    with pytest.raises(KdfError, match=f"purpose tag {int(purpose)}"):
        derive_xml_keys(CSK, (purpose << 28) | 0x123, ALICE)


def test_derive_xml_keys_refuses_unused_tag() -> None:
    with pytest.raises(KdfError, match="purpose tag 15"):
        derive_xml_keys(CSK, 0xF0000001, ALICE)


@pytest.mark.parametrize("length", [0, 15, 17, 32])
def test_derive_xml_keys_refuses_xpk_of_wrong_size(length: int) -> None:
    with pytest.raises(KdfError, match=f"XPK has {length} octets"):
        derive_xml_keys(bytes(length), CSK_ID, ALICE)


@pytest.mark.parametrize("key_id", [-1, 2**32, True])
def test_derive_xml_keys_refuses_key_id_out_of_range(key_id: int) -> None:
    with pytest.raises(KdfError, match="32-bit"):
        derive_xml_keys(CSK, key_id, ALICE)


@pytest.mark.parametrize(
    ("identity", "reason"), [("", "empty"), (" sip:a@b", "whitespace"), ("a\n", "whitespace")]
)
def test_derive_xml_keys_refuses_bad_identity(identity: str, reason: str) -> None:
    with pytest.raises(KdfError, match=reason):
        derive_xml_keys(CSK, CSK_ID, identity)


def test_derive_xml_keys_refuses_non_text_identity_and_key() -> None:
    with pytest.raises(TypeError):
        derive_xml_keys(CSK, CSK_ID, b"sip:a@b")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        derive_xml_keys("0123456789abcdef", CSK_ID, ALICE)  # type: ignore[arg-type]


def test_error_messages_hold_no_key_material() -> None:
    secret = bytes.fromhex("a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6")
    with pytest.raises(KdfError) as caught:
        derive_xml_keys(secret, 0x00000001, ALICE)
    assert secret.hex() not in str(caught.value)
    assert "a1b2" not in str(caught.value)


@settings(max_examples=200, deadline=None)
@given(
    xpk=st.binary(min_size=16, max_size=16),
    key_id=st.integers(min_value=0x20000000, max_value=0x3FFFFFFF),
    identity=st.text(min_size=1, max_size=60).filter(lambda t: t == t.strip() and bool(t)),
)
def test_derive_xml_keys_property(xpk: bytes, key_id: int, identity: str) -> None:
    keys = derive_xml_keys(xpk, key_id, identity)
    assert keys.confidentiality == _by_hand(xpk, 0x51, identity, key_id)
    assert keys.integrity == _by_hand(xpk, 0x52, identity, key_id)
    assert keys.confidentiality != keys.integrity


def test_module_exports_constants() -> None:
    assert (kdf_module.FC_GUK_ID_SALT, kdf_module.FC_XML_CONFIDENTIALITY, kdf_module.FC_XML_INTEGRITY) == (
        0x50,
        0x51,
        0x52,
    )
