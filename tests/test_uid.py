"""Key periods, NTP time and the MIKEY-SAKKE UID (crypto/uid.py; 33.180 / 33.179 F.2.1)."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from datetime import UTC, datetime

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mcinterconnect.crypto.uid import (
    NTP_UNIX_OFFSET,
    UID_LENGTH,
    KeyPeriod,
    UidError,
    ntp_seconds,
    ntp_timestamp64,
    uid,
    uid_int,
    unix_from_ntp_seconds,
    unix_from_ntp_timestamp64,
)

IDENTIFIER = "sip:user@example.org"
KMS = "kms.example.org"

# spec/crypto.md §6.1: published with sw_mikey_sakke, reproduced there [verified].
UID_VECTORS = [
    (2592000, 0, 1, "74e2af803ab5d72841bbced0ce319ffe64f6fe23c88a2d258aabcf6ac5658ef4"),
    (10, 0, 10, "94fb1a697c15d7e9d6b7062066affebda2d9e346e0090d67525c0c3ce666eafa"),
    (25920000, 100, 1, "3c0ad8828cfae1ad1d08b27cc7b61258c6cfcd405081b68cd778f1e1c7f562a7"),
    (25920000, 100, 2048, "c88b3fa5e36a08985d10f7b31a631b0265e8249f0312435e4984dbc3765c7f0c"),
    (25920000, 45920000, 20393844, "8dc05540167345538475101514f4eabd384abd6ba665782abb312ecaf05934e1"),
]


def _unix(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


# --- UID ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("length", "offset", "number", "expected"), UID_VECTORS)
def test_uid_vectors(length: int, offset: int, number: int, expected: str) -> None:
    period = KeyPeriod(length, offset)
    value = uid(IDENTIFIER, KMS, period, number)
    assert value.hex() == expected
    assert len(value) == UID_LENGTH
    assert uid_int(IDENTIFIER, KMS, period, number) == int(expected, 16)


def test_uid_input_byte_by_byte() -> None:
    """Vector 1 rebuilt from raw octets: FC, P0..P5 each followed by a 2-octet length."""
    s = (
        b"\x00"
        + b"MIKEY-SAKKE-UID\x00\x0f"
        + b"sip:user@example.org\x00\x14"
        + b"kms.example.org\x00\x0f"
        + b"\x27\x8d\x00\x00\x03"  # 2592000 in 3 octets
        + b"\x00\x00\x01"  # offset 0 is one zero octet
        + b"\x01\x00\x01"  # period number 1
    )
    assert hashlib.sha256(s).hexdigest() == UID_VECTORS[0][3]


def test_33179_example_period_number_from_a_date() -> None:
    """33.179 F.2.1: KMS secgroup1.kms.example.org, 2592000 s periods, offset 0, period number 553.

    On the NTP time scale (seconds since 1900) period 553 runs from 1945-06-04 to 1945-07-04."""
    period = KeyPeriod(2592000, 0)
    assert period.number_at(ntp_seconds(_unix(1945, 6, 15, 12, 0, 0))) == 553
    assert period.start_of(553) == ntp_seconds(_unix(1945, 6, 4))
    assert period.end_of(553) == ntp_seconds(_unix(1945, 7, 4))
    # The same date in 2015 is period 1405 on the NTP scale; 553 would be the count from 1970,
    # which F.2.1 does not use (docs/PROFILE.md, P-CR-05).
    assert period.number_at(ntp_seconds(_unix(2015, 6, 15))) == 1405
    assert int(_unix(2015, 6, 15)) // 2592000 == 553

    number = period.number_at(ntp_seconds(_unix(1945, 6, 15)))
    kms = "secgroup1.kms.example.org"
    expected_s = (
        b"\x00MIKEY-SAKKE-UID\x00\x0f"
        + IDENTIFIER.encode()
        + b"\x00\x14"
        + kms.encode()
        + b"\x00\x19"
        + b"\x27\x8d\x00\x00\x03"
        + b"\x00\x00\x01"
        + b"\x02\x29\x00\x02"  # 553 = 0x0229
    )
    assert uid(IDENTIFIER, kms, period, number) == hashlib.sha256(expected_s).digest()


def test_uid_changes_with_every_input() -> None:
    period = KeyPeriod(2592000, 0)
    values = {
        uid(IDENTIFIER, KMS, period, 1),
        uid(IDENTIFIER, KMS, period, 2),
        uid("sip:other@example.org", KMS, period, 1),
        uid(IDENTIFIER, "kms2.example.org", period, 1),
        uid(IDENTIFIER, KMS, KeyPeriod(2592001, 0), 1),
        uid(IDENTIFIER, KMS, KeyPeriod(2592000, 1), 1),
    }
    assert len(values) == 6


def test_uid_non_ascii_identifier_is_utf8() -> None:
    period = KeyPeriod(10)
    name = "sip:zoë@example.org"
    p1 = name.encode("utf-8")
    s = (
        b"\x00MIKEY-SAKKE-UID\x00\x0f"
        + p1
        + len(p1).to_bytes(2, "big")
        + KMS.encode()
        + b"\x00\x0f"
        + b"\x0a\x00\x01\x00\x00\x01\x00\x00\x01"
    )
    assert uid(name, KMS, period, 0) == hashlib.sha256(s).digest()


@pytest.mark.parametrize(
    ("identifier", "kms", "reason"),
    [
        ("", KMS, "identifier is empty"),
        (IDENTIFIER, "", "KMS URI is empty"),
        (" " + IDENTIFIER, KMS, "identifier has leading or trailing whitespace"),
        (IDENTIFIER, KMS + "\n", "KMS URI has leading or trailing whitespace"),
        ("sip:\udc80@example.org", KMS, "identifier is not encodable as UTF-8"),
        ("s" * 65536, KMS, "P1 has 65536 octets"),
    ],
)
def test_uid_refuses_bad_identifiers(identifier: str, kms: str, reason: str) -> None:
    with pytest.raises(UidError, match=reason):
        uid(identifier, kms, KeyPeriod(10), 1)


def test_uid_refuses_bad_number_and_period() -> None:
    with pytest.raises(UidError, match="key period number -1 is negative"):
        uid(IDENTIFIER, KMS, KeyPeriod(10), -1)
    with pytest.raises(UidError, match="key period number must be an int"):
        uid(IDENTIFIER, KMS, KeyPeriod(10), True)
    with pytest.raises(UidError, match="period must be a KeyPeriod"):
        uid(IDENTIFIER, KMS, (10, 0), 1)  # type: ignore[arg-type]
    with pytest.raises(UidError, match="identifier must be str"):
        uid(b"sip:a@b", KMS, KeyPeriod(10), 1)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(identifier=st.text(max_size=40), kms=st.text(max_size=40), number=st.integers(-5, 2**40))
def test_uid_only_raises_uid_error(identifier: str, kms: str, number: int) -> None:
    try:
        value = uid(identifier, kms, KeyPeriod(2592000, 0), number)
    except UidError:
        return
    assert len(value) == 32


# --- KeyPeriod ------------------------------------------------------------------------------


def test_key_period_boundaries() -> None:
    period = KeyPeriod(length=100, offset=30)
    assert period.number_at(30) == 0
    assert period.number_at(129) == 0
    assert period.number_at(130) == 1
    assert period.number_at(30 + 100 * 7 - 1) == 6
    assert period.number_at(30 + 100 * 7) == 7
    assert (period.start_of(7), period.end_of(7)) == (730, 830)
    with pytest.raises(UidError, match="before the first key period"):
        period.number_at(29)


def test_key_period_offset_may_exceed_length() -> None:
    period = KeyPeriod(25920000, 45920000)
    assert period.number_at(45920000) == 0
    assert period.start_of(20393844) == 45920000 + 20393844 * 25920000


def test_key_period_default_offset_and_frozen() -> None:
    period = KeyPeriod(2592000)
    assert period.offset == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        period.length = 1  # type: ignore[misc]


def test_number_now_uses_the_clock() -> None:
    period = KeyPeriod(2592000, 0)
    start = period.start_of(1500) - NTP_UNIX_OFFSET
    assert period.number_now(clock=lambda: start) == 1500
    assert period.number_now(clock=lambda: start - 0.25) == 1499  # rounded down, not to nearest
    assert period.number_now(clock=lambda: start + 2592000 - 0.001) == 1500
    assert period.around_now(clock=lambda: start + 10.5) == (1499, 1500, 1501)


def test_number_now_real_clock_is_current() -> None:
    period = KeyPeriod(2592000, 0)
    number = period.number_now()
    assert period.start_of(number) <= ntp_seconds(datetime.now(UTC).timestamp()) + 1
    previous, current, following = period.around_now()
    assert following - previous == 2
    assert current in (number, number + 1)


def test_around() -> None:
    assert KeyPeriod(10).around(5) == (4, 5, 6)
    with pytest.raises(UidError, match="period 0 has no previous"):
        KeyPeriod(10).around(0)


@pytest.mark.parametrize(
    ("length", "offset", "reason"),
    [
        (0, 0, "key period length is 0 seconds"),
        (-10, 0, "key period length -10 is negative"),
        (10, -1, "key period offset -1 is negative"),
        (True, 0, "key period length must be an int"),
        (10.0, 0, "key period length must be an int"),
        (10, "0", "key period offset must be an int"),
    ],
)
def test_key_period_refuses(length: int, offset: int, reason: str) -> None:
    with pytest.raises(UidError, match=reason):
        KeyPeriod(length, offset)


def test_key_period_refuses_bad_arguments() -> None:
    period = KeyPeriod(10)
    with pytest.raises(UidError, match="NTP seconds -1 is negative"):
        period.number_at(-1)
    with pytest.raises(UidError, match="key period number -2 is negative"):
        period.start_of(-2)
    with pytest.raises(UidError, match="NTP seconds must be an int"):
        period.number_at(1.5)  # type: ignore[arg-type]


@given(
    length=st.integers(1, 2**32),
    offset=st.integers(0, 2**32),
    after=st.integers(0, 2**40),
)
def test_key_period_contains_its_instants(length: int, offset: int, after: int) -> None:
    period = KeyPeriod(length, offset)
    instant = offset + after
    number = period.number_at(instant)
    assert period.start_of(number) <= instant < period.end_of(number)
    assert period.number_at(period.start_of(number)) == number
    assert period.number_at(period.end_of(number)) == number + 1


# --- NTP time -------------------------------------------------------------------------------


def test_ntp_seconds() -> None:
    assert ntp_seconds(0) == NTP_UNIX_OFFSET == 2208988800
    assert ntp_seconds(0.999) == NTP_UNIX_OFFSET
    assert ntp_seconds(-0.5) == NTP_UNIX_OFFSET - 1
    assert ntp_seconds(-NTP_UNIX_OFFSET) == 0
    assert ntp_seconds(_unix(2036, 2, 7, 6, 28, 16)) == 2**32  # no wrap: a count, not a timestamp
    assert unix_from_ntp_seconds(NTP_UNIX_OFFSET + 5) == 5


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (-NTP_UNIX_OFFSET - 1, "before the NTP epoch"),
        (math.nan, "not finite"),
        (math.inf, "not finite"),
        ("0", "must be a number"),
        (True, "must be a number"),
    ],
)
def test_ntp_seconds_refuses(value: float, reason: str) -> None:
    with pytest.raises(UidError, match=reason):
        ntp_seconds(value)


@pytest.mark.parametrize(
    ("unix", "timestamp"),
    [
        (0, 0x83AA7E80_00000000),  # 1970-01-01: 2208988800 s since 1900
        (0.5, 0x83AA7E80_80000000),
        (0.25, 0x83AA7E80_40000000),
        (_unix(1968, 1, 20, 3, 14, 8), 0x80000000_00000000),  # first instant of the range
        (_unix(2036, 2, 7, 6, 28, 15), 0xFFFFFFFF_00000000),  # last second of era 0
        (_unix(2036, 2, 7, 6, 28, 16), 0x00000000_00000000),  # era 1 begins
        (_unix(2104, 2, 26, 9, 42, 23), 0x7FFFFFFF_00000000),  # last second of the range
    ],
)
def test_ntp_timestamp64_known_values(unix: float, timestamp: int) -> None:
    assert ntp_timestamp64(unix) == timestamp
    assert unix_from_ntp_timestamp64(timestamp) == unix


def test_ntp_timestamp64_rounding_carries_into_seconds() -> None:
    assert ntp_timestamp64(1 - 2**-40) == (NTP_UNIX_OFFSET + 1) << 32


@pytest.mark.parametrize("unix", [_unix(1968, 1, 20, 3, 14, 7), _unix(2104, 2, 26, 9, 42, 24), 1e12, -1e12])
def test_ntp_timestamp64_refuses_out_of_range(unix: float) -> None:
    with pytest.raises(UidError, match="outside the range"):
        ntp_timestamp64(unix)


def test_ntp_timestamp64_refuses_non_numbers() -> None:
    with pytest.raises(UidError, match="not finite"):
        ntp_timestamp64(math.nan)
    with pytest.raises(UidError, match="must be a number"):
        ntp_timestamp64(None)  # type: ignore[arg-type]
    with pytest.raises(UidError, match="more than 64 bits"):
        unix_from_ntp_timestamp64(1 << 64)
    with pytest.raises(UidError, match="negative"):
        unix_from_ntp_timestamp64(-1)


_IN_RANGE = st.floats(min_value=-61505152.0, max_value=4233462143.0, allow_nan=False)


@given(_IN_RANGE)
def test_ntp_timestamp64_round_trip_from_unix(unix: float) -> None:
    assert abs(unix_from_ntp_timestamp64(ntp_timestamp64(unix)) - unix) <= 2**-32


@given(st.integers(-61505152, 4233462143))
def test_ntp_timestamp64_round_trip_whole_seconds(unix: int) -> None:
    timestamp = ntp_timestamp64(unix)
    assert timestamp & 0xFFFFFFFF == 0
    assert unix_from_ntp_timestamp64(timestamp) == unix
    assert (timestamp >> 32) == (ntp_seconds(unix) % 2**32)


@given(st.integers(0, 2**64 - 1))
def test_ntp_timestamp64_round_trip_from_timestamp(timestamp: int) -> None:
    unix = unix_from_ntp_timestamp64(timestamp)
    # The last fraction of the last second rounds, as a double, to the first instant out of range.
    assume(unix < 4233462144.0)
    back = ntp_timestamp64(unix)
    # A double holds 53 bits: at up to 2^32 s the fraction keeps about 21 bits. The difference is
    # taken modulo 2^64 because the end of era 0 may round to the start of era 1 (seconds 0).
    difference = (back - timestamp + 2**63) % 2**64 - 2**63
    assert abs(difference) <= 2**12
