"""32-bit MC key identifiers with purpose tags, and the GUK-ID (TS 33.180 5.2.2, E.6.11, F.1.3).

Every MC key ID has 32 bits: a 4-bit **purpose tag** in the most significant bits and 28 random bits
(CSK = ``0010``b read in TS 36.579-1 5.5.9; PCK = 1 read in 33.180 7.4.1; the rest of the table from
an implementation citing 33.180 — WA-SP-02/03, WA-CR-02, spec/signalling-protection-and-ear.md §4).
Tags 7..15 are unused and refused.

The GUK-ID (33.180 F.1.3) diversifies a GMK-ID per receiving user: salt = the 28 least significant
bits of KDF(GMK, FC 0x50, P0 = the user's MC service ID URI); GUK-ID = the GMK-ID's tag followed
by the 28 low bits of GMK-ID XOR salt (spec/crypto.md §6.4). It is the CSB ID of a GMK's MIKEY
message, and the receiver gets the GMK-ID back with the same XOR.
"""

from __future__ import annotations

import re
import secrets
from enum import IntEnum

from mcinterconnect.crypto.kdf import FC_GUK_ID_SALT, BytesLike, KdfError, kdf

KEY_ID_BITS = 32
KEY_ID_LENGTH = 4
PURPOSE_SHIFT = 28
RANDOM_BITS = 28
RANDOM_MASK = (1 << RANDOM_BITS) - 1
MAX_KEY_ID = (1 << KEY_ID_BITS) - 1
#: TS 33.179 / 33.180 E.1: every distributed key (GMK, PCK, CSK, MuSiK...) has 16 octets.
GMK_LENGTH = 16

_HEX_KEY_ID = re.compile(r"(?:0[xX])?([0-9A-Fa-f]{8})")


class KeyIdError(ValueError):
    """A key ID that is out of range, badly written, or whose purpose tag is unused or wrong."""


class Purpose(IntEnum):
    """Purpose tags: the 4 most significant bits of a key ID (WA-SP-02/03)."""

    GMK = 0  # group master key
    PCK = 1  # private call key
    CSK = 2  # client-server key
    SPK = 3  # signalling protection key (tag from an implementation, WA-SP-02)
    MKFC = 4  # multicast key for floor control
    MSCCK = 5  # multicast signalling control channel key
    MUSIK = 6  # multicast signalling key


_PURPOSE_VALUES = frozenset(int(purpose) for purpose in Purpose)


def _require_key_id(key_id: object) -> int:
    if isinstance(key_id, bool) or not isinstance(key_id, int):
        raise KeyIdError(f"key ID must be an int, not {type(key_id).__name__}")
    if not 0 <= key_id <= MAX_KEY_ID:
        raise KeyIdError(f"key ID {key_id} is not a 32-bit unsigned integer")
    return key_id


def new_key_id(purpose: Purpose) -> int:
    """A fresh key ID: ``purpose`` in the top 4 bits, 28 bits from ``secrets``."""
    if isinstance(purpose, bool) or not isinstance(purpose, int) or purpose not in _PURPOSE_VALUES:
        raise KeyIdError(f"purpose {purpose!r} is not a purpose tag (0..6)")
    return (Purpose(purpose) << PURPOSE_SHIFT) | secrets.randbits(RANDOM_BITS)


def purpose_of(key_id: int) -> Purpose:
    """The purpose tag of ``key_id``; :class:`KeyIdError` for tags 7..15 and out-of-range IDs."""
    tag = _require_key_id(key_id) >> PURPOSE_SHIFT
    try:
        return Purpose(tag)
    except ValueError:
        raise KeyIdError(f"key ID {key_id:08x} has unused purpose tag {tag}") from None


def check_purpose(key_id: int, purpose: Purpose) -> int:
    """``key_id`` itself if its tag is ``purpose``; else :class:`KeyIdError` (WA-SP-03)."""
    found = purpose_of(key_id)
    if found != purpose:
        raise KeyIdError(f"key ID {key_id:08x} is tagged {found.name}, expected {Purpose(purpose).name}")
    return key_id


def format_key_id(key_id: int) -> str:
    """``key_id`` as 8 lowercase hexadecimal digits."""
    return f"{_require_key_id(key_id):08x}"


def parse_key_id(text: str) -> int:
    """A key ID from exactly 8 hexadecimal digits (either case, optional ``0x``); no tag check."""
    if not isinstance(text, str):
        raise KeyIdError(f"key ID text must be str, not {type(text).__name__}")
    match = _HEX_KEY_ID.fullmatch(text)
    if match is None:
        raise KeyIdError(f"key ID {text[:20]!r} is not 8 hexadecimal digits")
    return int(match.group(1), 16)


def key_id_to_bytes(key_id: int) -> bytes:
    """``key_id`` as 4 octets big-endian (the MIKEY CSB ID, the F.1.4 P1)."""
    return _require_key_id(key_id).to_bytes(KEY_ID_LENGTH, "big")


def key_id_from_bytes(octets: bytes) -> int:
    """A key ID from exactly 4 octets big-endian."""
    if len(octets) != KEY_ID_LENGTH:
        raise KeyIdError(f"key ID has {len(octets)} octets, expected {KEY_ID_LENGTH}")
    return int.from_bytes(octets, "big")


def _guk_salt(gmk: BytesLike, user_uri: str) -> int:
    if not isinstance(gmk, bytes | bytearray | memoryview):
        raise TypeError(f"GMK must be bytes, not {type(gmk).__name__}")
    if len(gmk) != GMK_LENGTH:
        raise KeyIdError(f"GMK has {len(gmk)} octets, expected {GMK_LENGTH}")
    if not isinstance(user_uri, str):
        raise TypeError(f"user URI must be str, not {type(user_uri).__name__}")
    if not user_uri:
        raise KeyIdError("user URI is empty")
    if user_uri != user_uri.strip():
        raise KeyIdError("user URI has leading or trailing whitespace")
    try:
        derived = kdf(bytes(gmk), FC_GUK_ID_SALT, user_uri.encode("utf-8"))
    except UnicodeEncodeError:
        raise KeyIdError("user URI is not encodable as UTF-8 (lone surrogate)") from None
    except KdfError as error:
        raise KeyIdError(str(error)) from None
    return int.from_bytes(derived, "big") & RANDOM_MASK


def guk_id(gmk: BytesLike, gmk_id: int, user_uri: str) -> int:
    """TS 33.180 F.1.3: the GUK-ID of the GMK ``gmk`` / ``gmk_id`` for the user ``user_uri``.

    ``gmk_id`` must carry the GMK purpose tag, which the GUK-ID keeps."""
    check_purpose(gmk_id, Purpose.GMK)
    salt = _guk_salt(gmk, user_uri)
    return (gmk_id & ~RANDOM_MASK & MAX_KEY_ID) | ((gmk_id ^ salt) & RANDOM_MASK)


def gmk_id_from_guk_id(gmk: BytesLike, guk: int, user_uri: str) -> int:
    """The GMK-ID that a receiver recovers from the GUK-ID (CSB ID) with its own URI and the GMK."""
    check_purpose(guk, Purpose.GMK)
    salt = _guk_salt(gmk, user_uri)
    return (guk & ~RANDOM_MASK & MAX_KEY_ID) | ((guk ^ salt) & RANDOM_MASK)
