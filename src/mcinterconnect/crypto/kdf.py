"""The TS 33.220 Annex B key derivation function and the keys it derives for XML protection.

* TS 33.220 B.1 (encoding of the input string S) and B.2 (the KDF): ``S = FC || P0 || L0 || ... ||
  Pn || Ln`` with each ``Li`` the length of ``Pi`` in 2 octets big-endian, and
  ``derived key = HMAC-SHA-256(Key, S)`` (spec/crypto.md §6.1, §6.4).
* TS 33.180 F.1.4: the confidentiality (FC 0x51) and integrity (FC 0x52) keys of XML protection,
  derived from the XPK — the signalling key in use, CSK or SPK (spec/signalling-protection-and-ear.md
  §5.1). Where the clause is cut or silent the working assumptions WA-SP-04/05/06 (WA-CR-03) apply;
  each is named where it is used and listed in docs/PROFILE.md.

The same encoding of S is borrowed, without the HMAC, by the MIKEY-SAKKE UID (``uid.py``) and, with
it, by the GUK-ID salt (``keyids.py``). Nothing here logs or prints key material.
"""

from __future__ import annotations

import hmac
from typing import NamedTuple

#: TS 33.180 F.1.3: FC of the GUK-ID salt.
FC_GUK_ID_SALT = 0x50
#: TS 33.180 F.1.4: FC of the XML confidentiality (encryption) key.
FC_XML_CONFIDENTIALITY = 0x51
#: TS 33.180 F.1.4: FC of the XML integrity (signing) key.
FC_XML_INTEGRITY = 0x52

#: Largest parameter TS 33.220 B.1 can carry: its length Li has 2 octets.
MAX_PARAMETER_LENGTH = 0xFFFF
#: Octets of HMAC-SHA-256 output.
KDF_OUTPUT_LENGTH = 32
#: 33.180 F.1.4 / WA-SP-01: the XPK (CSK or SPK) and the keys derived from it have 128 bits.
XPK_LENGTH = 16
XML_KEY_LENGTH = 16
#: Purpose tags (keyids.Purpose) of the keys that may serve as XPK: CSK = 2, SPK = 3. Kept here as
#: plain numbers because keyids imports this module; a test pins them to keyids.Purpose.
XPK_PURPOSE_TAGS = frozenset({2, 3})
_KEY_ID_MAX = 0xFFFFFFFF

#: What the KDF takes as key and parameters; copied to ``bytes`` before use.
BytesLike = bytes | bytearray | memoryview


class KdfError(ValueError):
    """An input the KDF cannot encode or will not derive from (the message never holds key bytes)."""


def encode_uint(value: int) -> bytes:
    """An unsigned integer parameter in the fewest big-endian octets; 0 is one 0x00 octet.

    This is how 33.180 F.2.1 codes P3..P5 of the UID (spec/crypto.md §6.1)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise KdfError(f"integer parameter must be an int, not {type(value).__name__}")
    if value < 0:
        raise KdfError(f"integer parameter {value} is negative")
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def decode_uint(octets: bytes) -> int:
    """The inverse of :func:`encode_uint`; refuses an empty or non-minimal encoding."""
    if not octets:
        raise KdfError("integer parameter is empty")
    if len(octets) > 1 and octets[0] == 0:
        raise KdfError("integer parameter has a leading zero octet (not minimal)")
    return int.from_bytes(octets, "big")


def encode_s(fc: int, *params: BytesLike) -> bytes:
    """TS 33.220 B.1: ``FC || P0 || L0 || P1 || L1 ...``, each Li 2 octets big-endian."""
    if isinstance(fc, bool) or not isinstance(fc, int) or not 0 <= fc <= 0xFF:
        raise KdfError(f"FC {fc!r} is not one octet (0..255)")
    parts = [bytes((fc,))]
    for index, param in enumerate(params):
        if not isinstance(param, bytes | bytearray | memoryview):
            raise TypeError(f"P{index} must be bytes, not {type(param).__name__}")
        octets = bytes(param)
        if len(octets) > MAX_PARAMETER_LENGTH:
            raise KdfError(
                f"P{index} has {len(octets)} octets; TS 33.220 B.1 allows at most {MAX_PARAMETER_LENGTH}"
            )
        parts.append(octets)
        parts.append(len(octets).to_bytes(2, "big"))
    return b"".join(parts)


def kdf(key: BytesLike, fc: int, *params: BytesLike) -> bytes:
    """TS 33.220 B.2: HMAC-SHA-256(key, S) with S from :func:`encode_s`; 32 octets."""
    if not isinstance(key, bytes | bytearray | memoryview):
        raise TypeError(f"KDF key must be bytes, not {type(key).__name__}")
    if len(key) == 0:
        raise KdfError("KDF key is empty")
    return hmac.digest(bytes(key), encode_s(fc, *params), "sha256")


class XmlProtectionKeys(NamedTuple):
    """The two keys of TS 33.180 F.1.4 (a tuple: ``confidentiality, integrity = ...``)."""

    confidentiality: bytes
    integrity: bytes


def derive_xml_key(xpk: BytesLike, fc: int, key_id: int, identity: str) -> bytes:
    """One F.1.4 key: the last 16 octets of KDF(XPK, FC, P0 = identity, P1 = XPK-ID).

    ``fc`` is :data:`FC_XML_CONFIDENTIALITY` or :data:`FC_XML_INTEGRITY`. Assumptions:
    P0 is the identity in UTF-8 (WA-CR-03; for the SPK, the configured ``kdf_identity``, WA-SP-05);
    P1 is the key ID as 4 octets big-endian, L1 = 0x0004 (WA-SP-06); the key is the 128 least
    significant bits of the HMAC output (WA-SP-04)."""
    if fc not in (FC_XML_CONFIDENTIALITY, FC_XML_INTEGRITY):
        raise KdfError(f"FC {fc!r} is not an F.1.4 FC (0x51 confidentiality, 0x52 integrity)")
    if not isinstance(xpk, bytes | bytearray | memoryview):
        raise TypeError(f"XPK must be bytes, not {type(xpk).__name__}")
    if len(xpk) != XPK_LENGTH:
        # F.1.4 defines 128-bit output for a 128-bit XPK only; any other size is refused, not guessed.
        raise KdfError(f"XPK has {len(xpk)} octets; F.1.4 is defined for a 16-octet (128-bit) XPK")
    if isinstance(key_id, bool) or not isinstance(key_id, int) or not 0 <= key_id <= _KEY_ID_MAX:
        raise KdfError(f"XPK-ID {key_id!r} is not a 32-bit unsigned integer")
    if key_id >> 28 not in XPK_PURPOSE_TAGS:
        # WA-SP-03: a key whose purpose tag does not fit its use is refused.
        raise KdfError(
            f"XPK-ID {key_id:08x} has purpose tag {key_id >> 28}; an XPK is a CSK (2) or an SPK (3)"
        )
    if not isinstance(identity, str):
        raise TypeError(f"identity must be str, not {type(identity).__name__}")
    if not identity:
        raise KdfError("identity (P0) is empty")
    if identity != identity.strip():
        raise KdfError("identity (P0) has leading or trailing whitespace")
    try:
        p0 = identity.encode("utf-8")
    except UnicodeEncodeError:
        raise KdfError("identity (P0) is not encodable as UTF-8 (lone surrogate)") from None
    derived = kdf(bytes(xpk), fc, p0, key_id.to_bytes(4, "big"))
    return derived[KDF_OUTPUT_LENGTH - XML_KEY_LENGTH :]


def derive_xml_keys(xpk: BytesLike, key_id: int, identity: str) -> XmlProtectionKeys:
    """TS 33.180 F.1.4: the XML confidentiality key (FC 0x51) and integrity key (FC 0x52).

    ``xpk`` is the 16-octet CSK or SPK, ``key_id`` its 32-bit CSK-ID or SPK-ID (purpose tag 2 or
    3), ``identity`` the MC service user ID bound to the CSK, or, for the SPK, the ``kdf_identity``
    configured with it in both partners' agreements (WA-SP-05)."""
    return XmlProtectionKeys(
        confidentiality=derive_xml_key(xpk, FC_XML_CONFIDENTIALITY, key_id, identity),
        integrity=derive_xml_key(xpk, FC_XML_INTEGRITY, key_id, identity),
    )
