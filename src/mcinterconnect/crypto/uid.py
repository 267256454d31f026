"""Key periods and the MIKEY-SAKKE UID (TS 33.180 F.2.1, its Rel-13 predecessor TS 33.179 F.2.1).

A KMS cuts time into key periods of ``UserKeyPeriod`` seconds, shifted by ``UserKeyOffset`` seconds
from 0h UTC on 1 January 1900 (the NTP epoch); both come from the KMS certificate. For each period a
user (or server) has a different identifier, the UID::

    UID = SHA-256(S),  S = 0x00 || "MIKEY-SAKKE-UID" || L0 || identifier || L1 || KMS URI || L2
                           || period length || L3 || period offset || L4 || period number || L5

with S coded as in TS 33.220 B.1 (``kdf.encode_s``; FC 0x00 is a dummy, no HMAC is applied) and the
three integers in the fewest big-endian octets (spec/crypto.md §6.1). The UID is the ECCSI ``ID``
and the SAKKE identifier. Also here: the NTP time scale of key periods and the 64-bit NTP timestamp
of the MIKEY T payload (RFC 3830 §6.6, type 0 NTP-UTC).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from mcinterconnect.crypto.kdf import KdfError, encode_s, encode_uint

#: Seconds from the NTP epoch (1900-01-01T00:00:00Z) to the Unix epoch (1970-01-01T00:00:00Z).
NTP_UNIX_OFFSET = 2208988800
#: P0 of the UID (15 octets, L0 = 0x000F).
UID_LABEL = b"MIKEY-SAKKE-UID"
#: FC of S for the UID: "a dummy value", only the encoding of S is borrowed from TS 33.220.
UID_FC = 0x00
UID_LENGTH = 32

_ERA = 1 << 32
#: RFC 4330 §3: a 64-bit timestamp whose seconds have the top bit clear belongs to NTP era 1
#: (from 2036-02-07T06:28:16Z), so the format covers 1968-01-20T03:14:08Z .. 2104-02-26T09:42:24Z.
_TIMESTAMP64_FIRST_UNIX = (1 << 31) - NTP_UNIX_OFFSET
_TIMESTAMP64_END_UNIX = _TIMESTAMP64_FIRST_UNIX + _ERA


class UidError(ValueError):
    """An input that gives no key period, timestamp or UID; the message says which and why."""


def _require_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UidError(f"{name} must be an int, not {type(value).__name__}")
    if value < 0:
        raise UidError(f"{name} {value} is negative")
    return value


@dataclass(frozen=True)
class KeyPeriod:
    """The key period segmentation of one KMS (KMS certificate UserKeyPeriod and UserKeyOffset).

    ``length`` is the period in seconds (> 0); ``offset`` the shift of the first period from the NTP
    epoch in seconds (>= 0). The offset is not required to be smaller than the length: the published
    UID vectors use an offset of 45920000 s with a 25920000 s period."""

    length: int
    offset: int = 0

    def __post_init__(self) -> None:
        _require_count("key period length", self.length)
        _require_count("key period offset", self.offset)
        if self.length == 0:
            raise UidError("key period length is 0 seconds")

    def number_at(self, ntp_seconds: int) -> int:
        """The key period number at ``ntp_seconds``: floor((seconds − offset) / length)."""
        _require_count("NTP seconds", ntp_seconds)
        if ntp_seconds < self.offset:
            raise UidError(f"NTP time {ntp_seconds} is before the first key period (offset {self.offset})")
        return (ntp_seconds - self.offset) // self.length

    def number_now(self, clock: Callable[[], float] = time.time) -> int:
        """The current key period number by ``clock`` (Unix seconds, ``time.time`` by default)."""
        return self.number_at(ntp_seconds(clock()))

    def start_of(self, number: int) -> int:
        """NTP seconds at which period ``number`` begins (inclusive)."""
        _require_count("key period number", number)
        return self.offset + number * self.length

    def end_of(self, number: int) -> int:
        """NTP seconds at which period ``number`` ends (exclusive: the start of the next one)."""
        return self.start_of(number) + self.length

    def around(self, number: int) -> tuple[int, int, int]:
        """(previous, ``number``, next): the periods whose keys a user holds (WA-CR-07)."""
        _require_count("key period number", number)
        if number == 0:
            raise UidError("key period 0 has no previous period")
        return number - 1, number, number + 1

    def around_now(self, clock: Callable[[], float] = time.time) -> tuple[int, int, int]:
        """(previous, current, next) key period numbers by ``clock``."""
        return self.around(self.number_now(clock))


def ntp_seconds(unix: float) -> int:
    """Whole seconds since the NTP epoch at Unix time ``unix`` (rounded down)."""
    if isinstance(unix, bool) or not isinstance(unix, int | float):
        raise UidError(f"Unix time must be a number, not {type(unix).__name__}")
    if not math.isfinite(unix):
        raise UidError(f"Unix time {unix} is not finite")
    seconds = math.floor(unix) + NTP_UNIX_OFFSET
    if seconds < 0:
        raise UidError(f"Unix time {unix} is before the NTP epoch (1900-01-01T00:00:00Z)")
    return seconds


def unix_from_ntp_seconds(seconds: int) -> int:
    """Unix seconds at ``seconds`` since the NTP epoch (the inverse of :func:`ntp_seconds`)."""
    return _require_count("NTP seconds", seconds) - NTP_UNIX_OFFSET


def ntp_timestamp64(unix: float) -> int:
    """The 64-bit NTP timestamp (32-bit seconds of the era, 32-bit fraction) of Unix time ``unix``.

    This is the value of the MIKEY T payload, type 0 (NTP-UTC). The fraction is rounded to the
    nearest 2^-32 s. Times outside 1968-01-20T03:14:08Z .. 2104-02-26T09:42:24Z have no unambiguous
    timestamp (RFC 4330 §3) and are refused."""
    if isinstance(unix, bool) or not isinstance(unix, int | float):
        raise UidError(f"Unix time must be a number, not {type(unix).__name__}")
    if not math.isfinite(unix):
        raise UidError(f"Unix time {unix} is not finite")
    whole = math.floor(unix)
    fraction = round((unix - whole) * _ERA)
    if fraction == _ERA:  # rounding carried into the seconds
        whole, fraction = whole + 1, 0
    if not _TIMESTAMP64_FIRST_UNIX <= whole < _TIMESTAMP64_END_UNIX:
        raise UidError(f"Unix time {unix} is outside the range of the 64-bit NTP timestamp (1968..2104)")
    return ((whole + NTP_UNIX_OFFSET) % _ERA) << 32 | fraction


def unix_from_ntp_timestamp64(timestamp: int) -> float:
    """Unix time of a 64-bit NTP timestamp; the era follows RFC 4330 §3 (top bit clear: era 1)."""
    _require_count("NTP timestamp", timestamp)
    if timestamp >= 1 << 64:
        raise UidError(f"NTP timestamp {timestamp:#x} has more than 64 bits")
    seconds, fraction = timestamp >> 32, timestamp & (_ERA - 1)
    if seconds < 1 << 31:
        seconds += _ERA
    return (seconds - NTP_UNIX_OFFSET) + fraction / _ERA


def _require_uri(name: str, value: object) -> bytes:
    if not isinstance(value, str):
        raise UidError(f"{name} must be str, not {type(value).__name__}")
    if not value:
        raise UidError(f"{name} is empty")
    if value != value.strip():
        # The UID hashes exact octets: a stray space would silently name another identity.
        raise UidError(f"{name} has leading or trailing whitespace")
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise UidError(f"{name} is not encodable as UTF-8 (lone surrogate)") from None


def uid(identifier: str, kms_uri: str, period: KeyPeriod, number: int) -> bytes:
    """The 32-octet MIKEY-SAKKE UID of ``identifier`` under the KMS ``kms_uri`` for period ``number``.

    ``identifier`` is the MC service ID (or the URI of a GMS / MC server); ``kms_uri`` the KMS URI of
    the KMS certificate; both are hashed as UTF-8 exactly as given."""
    if not isinstance(period, KeyPeriod):
        raise UidError(f"period must be a KeyPeriod, not {type(period).__name__}")
    p1 = _require_uri("identifier", identifier)
    p2 = _require_uri("KMS URI", kms_uri)
    _require_count("key period number", number)
    try:
        s = encode_s(
            UID_FC,
            UID_LABEL,
            p1,
            p2,
            encode_uint(period.length),
            encode_uint(period.offset),
            encode_uint(number),
        )
    except KdfError as error:
        raise UidError(str(error)) from None
    return hashlib.sha256(s).digest()


def uid_int(identifier: str, kms_uri: str, period: KeyPeriod, number: int) -> int:
    """The UID as a 256-bit integer (big-endian), as ECCSI and SAKKE use it."""
    return int.from_bytes(uid(identifier, kms_uri, period, number), "big")
