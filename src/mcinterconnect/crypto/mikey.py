"""The MIKEY-SAKKE I_MESSAGE: payload codec, signing envelope, make and open (RFC 3830, RFC 6043,
RFC 6509; TS 33.180 Annex E and F.2; spec/crypto.md §5, §6).

What it holds:

* one frozen dataclass per payload — ``Hdr`` (RFC 3830 §6.1, RFC 6043 §6.1 and §6.1.1: CS ID map
  types SRTP-ID 0, empty 1, GENERIC-ID 2), ``Timestamp`` (T, RFC 3830 §6.6, RFC 6043 §6.3),
  ``Rand`` (RFC 3830 §6.11), ``Idr`` (RFC 6043 §6.6, roles of RFC 6509 §4.4 and TS 33.180 E.7),
  ``SecurityPolicy`` (SP, RFC 3830 §6.10), ``Sakke`` (RFC 6509 §4.2), ``GeneralExtension``
  (RFC 3830 §6.15; TS 33.180 types 6 "SAKKE-to-self" and 7 "key parameters" kept as opaque
  octets, WA-CR-05) and ``Sign`` (RFC 3830 §6.5, S type 2 = ECCSI, RFC 6509 §4.3) — and
  ``IMessage``, which holds them in wire order;
* ``encode_i_message`` / ``parse_i_message``: exact inverses (every message that parses encodes
  back to the same octets), with ``MikeyError`` naming the payload and the fault;
* ``sign_i_message``: the ECCSI envelope.  The signature covers every octet before the signature
  value, the 2-octet SIGN payload header included (spec/crypto.md §5, RFC 3830 §5.2);
* ``make_i_message`` / ``open_i_message``: the 3GPP profile — the initiator signs with the UID of
  IDRi under IDRkmsi, the key is SAKKE-encapsulated to the UID of IDRr under IDRkmsr, both UIDs
  for the key period in force at the T payload time (TS 33.180 F.2.1).  The responder checks the
  ECCSI signature before it decapsulates anything (RFC 6509 §2.1, §2.2.2);
* ``to_sdp_key_mgmt`` / ``from_sdp_key_mgmt``: the SDP ``a=key-mgmt:mikey <base64>`` form
  (RFC 4567).

Choices where the specifications are silent are listed in docs/PROFILE.md, section
"MIKEY-SAKKE I_MESSAGE".  Nothing here logs; no error message holds key material.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

from mcinterconnect.crypto import eccsi, keyids, sakke
from mcinterconnect.crypto import uid as uid_module
from mcinterconnect.crypto.ec import Point
from mcinterconnect.crypto.keyids import KeyIdError, Purpose
from mcinterconnect.crypto.uid import KeyPeriod, UidError

__all__ = [
    "DATA_TYPE_SAKKE",
    "DEFAULT_MAX_SKEW",
    "MIKEY_VERSION",
    "RAND_LENGTH",
    "CsIdMapType",
    "ExtensionType",
    "GeneralExtension",
    "GenericIdEntry",
    "Hdr",
    "IMessage",
    "IdRole",
    "IdType",
    "Idr",
    "MikeyError",
    "OpenedKey",
    "PayloadType",
    "PolicyParam",
    "Rand",
    "Sakke",
    "SecurityPolicy",
    "Sign",
    "SrtpIdEntry",
    "Timestamp",
    "TsType",
    "encode_i_message",
    "from_sdp_key_mgmt",
    "make_i_message",
    "open_i_message",
    "parse_i_message",
    "sign_i_message",
    "to_be_signed",
    "to_sdp_key_mgmt",
]

#: HDR version (RFC 3830 §6.1).
MIKEY_VERSION: Final = 1
#: HDR data type of a SAKKE I_MESSAGE (RFC 6509 §4.1).
DATA_TYPE_SAKKE: Final = 26
#: HDR PRF func: PRF-HMAC-SHA-256 (RFC 6043 §6.1), the one TS 33.180 E.1 uses.
PRF_HMAC_SHA_256: Final = 1
#: RAND octets sent, and the fewest accepted (RFC 3830 §4.1.1: at least 128 bits).
RAND_LENGTH: Final = 16
#: SIGN S type of ECCSI (RFC 6509 §4.3).
SIGN_TYPE_ECCSI: Final = 2
#: SAKKE payload ID scheme of the 3GPP hashed UID (spec/crypto.md §6.1, WA-CR-04).
SAKKE_ID_SCHEME_UID: Final = 2
#: Seconds a T payload may differ from the receiver's clock, either way (docs/PROFILE.md).
DEFAULT_MAX_SKEW: Final = 300.0
#: Octets of a UID carried in IDR roles 8 and 9.
UID_LENGTH: Final = uid_module.UID_LENGTH


class MikeyError(ValueError):
    """An I_MESSAGE (or an input to build one) was refused.  ``reason`` is a stable code:

    codec: ``truncated``, ``unknown-payload``, ``version``, ``data-type``, ``v-bit``, ``prf``,
    ``cs-id-map``, ``ts-type``, ``rand-length``, ``idr-role``, ``idr-type``, ``duplicate-idr``,
    ``duplicate-payload``, ``missing-payload``, ``sakke-params``, ``sakke-id-scheme``,
    ``sakke-length``, ``sign-type``, ``sign-length``, ``trailing-octets``, ``field-range``;
    SDP: ``sdp-format``, ``base64``;
    open/make: ``identity`` (an IDR or URI that names no usable identity), ``identity-mismatch``,
    ``uid-mismatch`` (role 8/9 UID differs from the computed one), ``timestamp`` (T gives no UTC
    time), ``timestamp-skew``, ``key-period``, ``key-id`` (CSB ID without a purpose tag),
    ``signature-invalid``, ``sakke-invalid``, ``signing-key`` (make: SSK/PVT refused), ``ssv``.
    The message names the payload and the fault in one line and never holds key material.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class PayloadType(IntEnum):
    """Next payload values (RFC 3830 §6.1, RFC 6043 §6.1, RFC 6509 §4.2) handled here."""

    LAST = 0
    SIGN = 4
    T = 5
    SP = 10
    RAND = 11
    IDR = 14
    GENERAL_EXTENSION = 21
    SAKKE = 26


#: Payload types MIKEY defines that an I_MESSAGE of this profile never carries: refused by name.
_UNSUPPORTED_PAYLOADS: Final = {
    1: "KEMAC",
    2: "PKE",
    3: "DH",
    6: "ID",
    7: "CERT",
    8: "CHASH",
    9: "V",
    12: "ERR",
    13: "TR",
    15: "RANDR",
    16: "TP",
    17: "TICKET",
    20: "Key data",
}


class CsIdMapType(IntEnum):
    """HDR CS ID map type: SRTP-ID (RFC 3830), empty map (33.180 E.1.2), GENERIC-ID (RFC 6043)."""

    SRTP_ID = 0
    EMPTY = 1
    GENERIC_ID = 2


class TsType(IntEnum):
    """T payload TS type (RFC 3830 §6.6, RFC 6043 §6.3)."""

    NTP_UTC = 0
    NTP = 1
    COUNTER = 2
    NTP_UTC_32 = 3


_TS_LENGTH: Final = {TsType.NTP_UTC: 8, TsType.NTP: 8, TsType.COUNTER: 4, TsType.NTP_UTC_32: 4}


class IdRole(IntEnum):
    """IDR ID Role (RFC 6043 §6.6, RFC 6509 §4.4; 8 and 9 from TS 33.180 E.7, WA-CR-04)."""

    IDRI = 1
    IDRR = 2
    IDRKMS = 3
    IDRPSK = 4
    IDRAPP = 5
    IDRKMSI = 6
    IDRKMSR = 7
    UID_I = 8
    UID_R = 9


#: How the messages name each role (the spellings of RFC 6043 and RFC 6509).
_ROLE_NAMES: Final = {
    1: "IDRi",
    2: "IDRr",
    3: "IDRkms",
    4: "IDRpsk",
    5: "IDRapp",
    6: "IDRkmsi",
    7: "IDRkmsr",
    8: "UID of the initiator (role 8)",
    9: "UID of the responder (role 9)",
}


class IdType(IntEnum):
    """IDR ID Type (RFC 3830 §6.7, RFC 6043 §6.5)."""

    NAI = 0
    URI = 1
    BYTE_STRING = 2


_ID_ROLES: Final = frozenset(int(role) for role in IdRole)
_ID_TYPES: Final = frozenset(int(kind) for kind in IdType)


class ExtensionType(IntEnum):
    """General extension types TS 33.180 adds (E.1, E.6); others are carried as they come."""

    SAKKE_TO_SELF = 6
    KEY_PARAMETERS = 7


def _check_uint(payload: str, name: str, value: object, bits: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise MikeyError(
            "field-range", f"{payload} payload: {name} {value!r} is not a {bits}-bit unsigned value"
        )


def _check_octets(payload: str, name: str, value: object, max_length: int) -> None:
    if not isinstance(value, bytes):
        raise MikeyError(
            "field-range", f"{payload} payload: {name} must be bytes, not {type(value).__name__}"
        )
    if len(value) > max_length:
        raise MikeyError(
            "field-range", f"{payload} payload: {name} has {len(value)} octets, at most {max_length} fit"
        )


# --- payloads --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SrtpIdEntry:
    """One crypto session of the SRTP-ID map (RFC 3830 §6.1.1): policy no, SSRC, ROC."""

    policy_no: int
    ssrc: int
    roc: int

    def __post_init__(self) -> None:
        _check_uint("HDR", "SRTP-ID policy no", self.policy_no, 8)
        _check_uint("HDR", "SRTP-ID SSRC", self.ssrc, 32)
        _check_uint("HDR", "SRTP-ID ROC", self.roc, 32)


@dataclass(frozen=True)
class GenericIdEntry:
    """One crypto session of the GENERIC-ID map (RFC 6043 §6.1.1).

    For a GMK, TS 33.180 uses CS ID 4 with the SPI (MKI) GMK-ID || GUK-ID (spec/crypto.md §6.4)."""

    cs_id: int
    prot_type: int = 0
    s_flag: bool = False
    policies: tuple[int, ...] = ()
    session_data: bytes = b""
    spi: bytes = b""

    def __post_init__(self) -> None:
        _check_uint("HDR", "GENERIC-ID CS ID", self.cs_id, 8)
        _check_uint("HDR", "GENERIC-ID prot type", self.prot_type, 8)
        if not isinstance(self.s_flag, bool):
            raise MikeyError("field-range", "HDR payload: GENERIC-ID S flag must be a bool")
        if not isinstance(self.policies, tuple) or len(self.policies) > 0x7F:
            raise MikeyError("field-range", "HDR payload: GENERIC-ID policies must be a tuple of at most 127")
        for policy in self.policies:
            _check_uint("HDR", "GENERIC-ID policy no", policy, 8)
        _check_octets("HDR", "GENERIC-ID session data", self.session_data, 0xFFFF)
        _check_octets("HDR", "GENERIC-ID SPI", self.spi, 0xFF)


CsIdMapEntry = SrtpIdEntry | GenericIdEntry


@dataclass(frozen=True)
class Hdr:
    """The common header (RFC 3830 §6.1).  ``cs_count`` is #CS: it defaults to the number of map
    entries; with the empty map it may be given (the map info is then empty whatever #CS says)."""

    csb_id: int
    cs_id_map_type: int = CsIdMapType.EMPTY
    cs_id_map: tuple[CsIdMapEntry, ...] = ()
    cs_count: int | None = None
    version: int = MIKEY_VERSION
    data_type: int = DATA_TYPE_SAKKE
    v: bool = False
    prf: int = PRF_HMAC_SHA_256

    def __post_init__(self) -> None:
        if self.version != MIKEY_VERSION:
            raise MikeyError("version", f"HDR payload: version {self.version!r}, expected {MIKEY_VERSION}")
        if self.data_type != DATA_TYPE_SAKKE:
            raise MikeyError(
                "data-type", f"HDR payload: data type {self.data_type!r} is not {DATA_TYPE_SAKKE} (SAKKE msg)"
            )
        if not isinstance(self.v, bool) or self.v:
            raise MikeyError("v-bit", "HDR payload: V bit set, but an I_MESSAGE expects no answer")
        if self.prf not in (0, PRF_HMAC_SHA_256):
            raise MikeyError("prf", f"HDR payload: PRF func {self.prf!r} is unknown (0 or 1)")
        _check_uint("HDR", "CSB ID", self.csb_id, 32)
        if not isinstance(self.cs_id_map, tuple):
            raise MikeyError("field-range", "HDR payload: the CS ID map must be a tuple")
        map_type = self.cs_id_map_type
        count = len(self.cs_id_map) if self.cs_count is None else self.cs_count
        _check_uint("HDR", "#CS", count, 8)
        object.__setattr__(self, "cs_count", count)
        if map_type == CsIdMapType.EMPTY:
            if self.cs_id_map:
                raise MikeyError("cs-id-map", "HDR payload: the empty CS ID map has no entries")
        elif map_type in (CsIdMapType.SRTP_ID, CsIdMapType.GENERIC_ID):
            entry_type = SrtpIdEntry if map_type == CsIdMapType.SRTP_ID else GenericIdEntry
            if count != len(self.cs_id_map):
                raise MikeyError(
                    "cs-id-map", f"HDR payload: #CS {count} but {len(self.cs_id_map)} CS ID map entries"
                )
            if not all(isinstance(entry, entry_type) for entry in self.cs_id_map):
                raise MikeyError(
                    "cs-id-map", f"HDR payload: CS ID map type {map_type} needs {entry_type.__name__} entries"
                )
        else:
            raise MikeyError("cs-id-map", f"HDR payload: CS ID map type {map_type!r} is unknown (0, 1 or 2)")


@dataclass(frozen=True)
class Timestamp:
    """The T payload (RFC 3830 §6.6): TS type and value (64 bits for NTP types 0 and 1,
    32 bits for COUNTER 2 and NTP-UTC-32 3)."""

    value: int
    ts_type: int = TsType.NTP_UTC

    def __post_init__(self) -> None:
        if self.ts_type not in _TS_LENGTH:
            raise MikeyError("ts-type", f"T payload: TS type {self.ts_type!r} is unknown (0..3)")
        _check_uint("T", "TS value", self.value, 8 * _TS_LENGTH[TsType(self.ts_type)])

    @classmethod
    def ntp_utc(cls, unix: float) -> Timestamp:
        """A type-0 (NTP-UTC, 64-bit) timestamp of Unix time ``unix``."""
        try:
            return cls(uid_module.ntp_timestamp64(unix), TsType.NTP_UTC)
        except UidError as error:
            raise MikeyError("timestamp", f"T payload: {error}") from None

    def utc_seconds(self) -> tuple[int, float]:
        """(whole NTP seconds, Unix time) of a UTC timestamp (types 0 and 3); era per RFC 4330.

        Types 1 (NTP, not said to be UTC) and 2 (COUNTER) give no UTC time: ``MikeyError``."""
        if self.ts_type == TsType.NTP_UTC:
            timestamp64 = self.value
        elif self.ts_type == TsType.NTP_UTC_32:
            timestamp64 = self.value << 32  # RFC 6043 §6.3: padded with a zero fraction
        else:
            name = TsType(self.ts_type).name
            raise MikeyError("timestamp", f"T payload: TS type {self.ts_type} ({name}) gives no UTC time")
        # The whole seconds from the integer part alone: a float would round a fraction of
        # 0.9999999998 s up into the next second, and possibly the next key period.
        whole_unix = uid_module.unix_from_ntp_timestamp64(timestamp64 & ~0xFFFFFFFF)
        return int(whole_unix) + uid_module.NTP_UNIX_OFFSET, uid_module.unix_from_ntp_timestamp64(timestamp64)


@dataclass(frozen=True)
class Rand:
    """The RAND payload (RFC 3830 §6.11): at least 16 octets, at most 255."""

    value: bytes

    def __post_init__(self) -> None:
        _check_octets("RAND", "RAND", self.value, 0xFF)
        if len(self.value) < RAND_LENGTH:
            raise MikeyError(
                "rand-length", f"RAND payload: {len(self.value)} octets, at least {RAND_LENGTH} required"
            )


@dataclass(frozen=True)
class Idr:
    """An IDR payload (RFC 6043 §6.6): ID role, ID type, ID data."""

    role: int
    data: bytes
    id_type: int = IdType.URI

    def __post_init__(self) -> None:
        if self.role not in _ID_ROLES:
            raise MikeyError("idr-role", f"IDR payload: ID role {self.role!r} is unknown (1..9)")
        if self.id_type not in _ID_TYPES:
            raise MikeyError("idr-type", f"IDR payload: ID type {self.id_type!r} is unknown (0..2)")
        _check_octets("IDR", "ID data", self.data, 0xFFFF)

    @classmethod
    def uri(cls, role: IdRole, text: str) -> Idr:
        """An IDR of type URI holding ``text`` in UTF-8."""
        try:
            return cls(role, text.encode("utf-8"), IdType.URI)
        except UnicodeEncodeError:
            raise MikeyError(
                "identity", f"IDR payload: {_ROLE_NAMES[role]} is not encodable as UTF-8"
            ) from None

    def text(self) -> str:
        """The ID data as text: only for type URI, in UTF-8, non-empty, without outer whitespace."""
        name = _ROLE_NAMES[self.role]
        if self.id_type != IdType.URI:
            raise MikeyError("identity", f"IDR payload: {name} has ID type {self.id_type}, expected 1 (URI)")
        try:
            text = self.data.decode("utf-8")
        except UnicodeDecodeError:
            raise MikeyError("identity", f"IDR payload: {name} is not UTF-8") from None
        if not text or text != text.strip():
            raise MikeyError("identity", f"IDR payload: {name} is empty or has outer whitespace")
        return text


@dataclass(frozen=True)
class PolicyParam:
    """One security policy parameter (RFC 3830 §6.10): type, value (at most 255 octets)."""

    type: int
    value: bytes

    def __post_init__(self) -> None:
        _check_uint("SP", "parameter type", self.type, 8)
        _check_octets("SP", "parameter value", self.value, 0xFF)


@dataclass(frozen=True)
class SecurityPolicy:
    """The SP payload (RFC 3830 §6.10): policy no, prot type (0 = SRTP), parameters."""

    policy_no: int
    prot_type: int = 0
    params: tuple[PolicyParam, ...] = ()

    def __post_init__(self) -> None:
        _check_uint("SP", "policy no", self.policy_no, 8)
        _check_uint("SP", "prot type", self.prot_type, 8)
        if not isinstance(self.params, tuple) or not all(isinstance(p, PolicyParam) for p in self.params):
            raise MikeyError("field-range", "SP payload: params must be a tuple of PolicyParam")
        if sum(2 + len(p.value) for p in self.params) > 0xFFFF:
            raise MikeyError("field-range", "SP payload: the parameters exceed 65535 octets")


@dataclass(frozen=True)
class Sakke:
    """The SAKKE payload (RFC 6509 §4.2): params 1, ID scheme 2, 273 octets of SAKKE data."""

    data: bytes
    params: int = sakke.PARAMETER_SET
    id_scheme: int = SAKKE_ID_SCHEME_UID

    def __post_init__(self) -> None:
        _check_sakke_header(
            self.params, self.id_scheme, len(self.data) if isinstance(self.data, bytes) else -1
        )
        _check_octets("SAKKE", "SAKKE data", self.data, 0xFFFF)


def _check_sakke_header(params: object, id_scheme: object, length: int) -> None:
    if params != sakke.PARAMETER_SET:
        raise MikeyError("sakke-params", f"SAKKE payload: SAKKE params {params!r} unknown (only 1)")
    if id_scheme != SAKKE_ID_SCHEME_UID:
        raise MikeyError("sakke-id-scheme", f"SAKKE payload: ID scheme {id_scheme!r} unknown (only 2, UID)")
    if length != sakke.ENCAPSULATED_DATA_LENGTH:
        raise MikeyError(
            "sakke-length",
            f"SAKKE payload: data length {length}, expected {sakke.ENCAPSULATED_DATA_LENGTH}",
        )


@dataclass(frozen=True)
class GeneralExtension:
    """A General extension payload (RFC 3830 §6.15): type, data (opaque here, WA-CR-05)."""

    type: int
    data: bytes

    def __post_init__(self) -> None:
        _check_uint("general extension", "type", self.type, 8)
        _check_octets("general extension", "data", self.data, 0xFFFF)


@dataclass(frozen=True)
class Sign:
    """The SIGN payload (RFC 3830 §6.5): S type 2 (ECCSI) and the 129-octet r || s || PVT."""

    signature: bytes
    s_type: int = SIGN_TYPE_ECCSI

    def __post_init__(self) -> None:
        _check_sign_header(self.s_type, len(self.signature) if isinstance(self.signature, bytes) else -1)


def _check_sign_header(s_type: int, length: int) -> None:
    if s_type != SIGN_TYPE_ECCSI:
        raise MikeyError("sign-type", f"SIGN payload: S type {s_type!r}, expected 2 (ECCSI)")
    if length != eccsi.SIGNATURE_LENGTH:
        raise MikeyError(
            "sign-length", f"SIGN payload: signature length {length}, expected {eccsi.SIGNATURE_LENGTH}"
        )


Payload = Timestamp | Rand | Idr | SecurityPolicy | Sakke | GeneralExtension

_TYPE_OF: Final[dict[type, PayloadType]] = {
    Timestamp: PayloadType.T,
    Rand: PayloadType.RAND,
    Idr: PayloadType.IDR,
    SecurityPolicy: PayloadType.SP,
    Sakke: PayloadType.SAKKE,
    GeneralExtension: PayloadType.GENERAL_EXTENSION,
}
_NAME_OF: Final = {
    PayloadType.T: "T",
    PayloadType.RAND: "RAND",
    PayloadType.IDR: "IDR",
    PayloadType.SP: "SP",
    PayloadType.SAKKE: "SAKKE",
    PayloadType.GENERAL_EXTENSION: "general extension",
    PayloadType.SIGN: "SIGN",
}


def _check_structure(payloads: object) -> None:
    """HDR, T, RAND, SAKKE and SIGN once each (RFC 6509 §2.1, Figure 1); each IDR role at most once."""
    if not isinstance(payloads, tuple) or not all(type(p) in _TYPE_OF for p in payloads):
        raise MikeyError("field-range", "I_MESSAGE: payloads must be a tuple of payload objects")
    for kind in (Timestamp, Rand, Sakke):
        count = sum(1 for p in payloads if type(p) is kind)
        name = _NAME_OF[_TYPE_OF[kind]]
        if count == 0:
            raise MikeyError("missing-payload", f"I_MESSAGE: mandatory {name} payload missing")
        if count > 1:
            raise MikeyError("duplicate-payload", f"I_MESSAGE: {count} {name} payloads, one allowed")
    roles = [p.role for p in payloads if isinstance(p, Idr)]
    for role in set(roles):
        if roles.count(role) > 1:
            raise MikeyError("duplicate-idr", f"IDR payload: role {role} ({_ROLE_NAMES[role]}) appears twice")


@dataclass(frozen=True)
class IMessage:
    """An I_MESSAGE: HDR, the payloads between HDR and SIGN in wire order, SIGN."""

    hdr: Hdr
    payloads: tuple[Payload, ...]
    sign: Sign

    def __post_init__(self) -> None:
        if not isinstance(self.hdr, Hdr) or not isinstance(self.sign, Sign):
            raise MikeyError("field-range", "I_MESSAGE: hdr must be a Hdr and sign a Sign")
        _check_structure(self.payloads)

    def _only(self, kind: type[Timestamp] | type[Rand] | type[Sakke]) -> Payload:
        return next(p for p in self.payloads if type(p) is kind)

    @property
    def timestamp(self) -> Timestamp:
        found = self._only(Timestamp)
        assert isinstance(found, Timestamp)
        return found

    @property
    def rand(self) -> Rand:
        found = self._only(Rand)
        assert isinstance(found, Rand)
        return found

    @property
    def sakke(self) -> Sakke:
        found = self._only(Sakke)
        assert isinstance(found, Sakke)
        return found

    @property
    def idrs(self) -> tuple[Idr, ...]:
        return tuple(p for p in self.payloads if isinstance(p, Idr))

    @property
    def policies(self) -> tuple[SecurityPolicy, ...]:
        return tuple(p for p in self.payloads if isinstance(p, SecurityPolicy))

    @property
    def extensions(self) -> tuple[GeneralExtension, ...]:
        return tuple(p for p in self.payloads if isinstance(p, GeneralExtension))

    def idr(self, role: IdRole) -> Idr | None:
        """The IDR payload of ``role``, if present."""
        return next((p for p in self.idrs if p.role == role), None)


# --- encoding ----------------------------------------------------------------------------------------


def _encode_hdr(hdr: Hdr, next_payload: int) -> bytes:
    assert hdr.cs_count is not None  # set by __post_init__
    out = bytearray((hdr.version, hdr.data_type, next_payload, (0x80 if hdr.v else 0) | hdr.prf))
    out += hdr.csb_id.to_bytes(4, "big")
    out += bytes((hdr.cs_count, hdr.cs_id_map_type))
    for entry in hdr.cs_id_map:
        if isinstance(entry, SrtpIdEntry):
            out.append(entry.policy_no)
            out += entry.ssrc.to_bytes(4, "big") + entry.roc.to_bytes(4, "big")
        else:
            out += bytes((entry.cs_id, entry.prot_type, (0x80 if entry.s_flag else 0) | len(entry.policies)))
            out += bytes(entry.policies)
            out += len(entry.session_data).to_bytes(2, "big") + entry.session_data
            out += bytes((len(entry.spi),)) + entry.spi
    return bytes(out)


def _encode_payload(payload: Payload, next_payload: int) -> bytes:
    if isinstance(payload, Timestamp):
        length = _TS_LENGTH[TsType(payload.ts_type)]
        return bytes((next_payload, payload.ts_type)) + payload.value.to_bytes(length, "big")
    if isinstance(payload, Rand):
        return bytes((next_payload, len(payload.value))) + payload.value
    if isinstance(payload, Idr):
        return (
            bytes((next_payload, payload.role, payload.id_type))
            + len(payload.data).to_bytes(2, "big")
            + payload.data
        )
    if isinstance(payload, SecurityPolicy):
        params = b"".join(bytes((p.type, len(p.value))) + p.value for p in payload.params)
        return (
            bytes((next_payload, payload.policy_no, payload.prot_type))
            + len(params).to_bytes(2, "big")
            + params
        )
    if isinstance(payload, Sakke):
        return (
            bytes((next_payload, payload.params, payload.id_scheme))
            + len(payload.data).to_bytes(2, "big")
            + payload.data
        )
    return bytes((next_payload, payload.type)) + len(payload.data).to_bytes(2, "big") + payload.data


def _sign_header() -> bytes:
    return bytes(((SIGN_TYPE_ECCSI << 4) | (eccsi.SIGNATURE_LENGTH >> 8), eccsi.SIGNATURE_LENGTH & 0xFF))


def to_be_signed(hdr: Hdr, payloads: Sequence[Payload]) -> bytes:
    """The octets the ECCSI signature covers: HDR, the payloads, and the 2-octet SIGN header
    (S type 2, length 129) — everything before the signature value (spec/crypto.md §5)."""
    payloads = tuple(payloads)
    if not isinstance(hdr, Hdr):
        raise MikeyError("field-range", "I_MESSAGE: hdr must be a Hdr")
    _check_structure(payloads)
    kinds = [_TYPE_OF[type(p)] for p in payloads] + [PayloadType.SIGN]
    out = [_encode_hdr(hdr, kinds[0])]
    out += [_encode_payload(p, kinds[i + 1]) for i, p in enumerate(payloads)]
    out.append(_sign_header())
    return b"".join(out)


def encode_i_message(message: IMessage) -> bytes:
    """The octets of ``message`` (the exact inverse of ``parse_i_message``)."""
    if not isinstance(message, IMessage):
        raise MikeyError("field-range", f"expected an IMessage, not {type(message).__name__}")
    return to_be_signed(message.hdr, message.payloads) + message.sign.signature


# --- parsing -----------------------------------------------------------------------------------------


class _Reader:
    __slots__ = ("data", "offset")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, count: int, payload: str, what: str) -> bytes:
        end = self.offset + count
        if end > len(self.data):
            left = len(self.data) - self.offset
            raise MikeyError(
                "truncated",
                f"truncated {payload} payload at offset {self.offset}: "
                f"{what} needs {count} octets, {left} left",
            )
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def u8(self, payload: str, what: str) -> int:
        return self.take(1, payload, what)[0]

    def u16(self, payload: str, what: str) -> int:
        return int.from_bytes(self.take(2, payload, what), "big")


def _parse_hdr(reader: _Reader) -> tuple[Hdr, int]:
    head = reader.take(10, "HDR", "the fixed part")
    version, data_type, next_payload, v_prf = head[0], head[1], head[2], head[3]
    if version != MIKEY_VERSION:
        raise MikeyError("version", f"HDR payload: version {version}, expected {MIKEY_VERSION}")
    if data_type != DATA_TYPE_SAKKE:
        raise MikeyError("data-type", f"HDR payload: wrong data type {data_type}, expected 26 (SAKKE msg)")
    if v_prf & 0x80:
        raise MikeyError("v-bit", "HDR payload: V bit set, but an I_MESSAGE expects no answer")
    csb_id = int.from_bytes(head[4:8], "big")
    count, map_type = head[8], head[9]
    entries: list[CsIdMapEntry] = []
    if map_type == CsIdMapType.SRTP_ID:
        for _ in range(count):
            block = reader.take(9, "HDR", "an SRTP-ID map entry")
            entries.append(
                SrtpIdEntry(block[0], int.from_bytes(block[1:5], "big"), int.from_bytes(block[5:9], "big"))
            )
    elif map_type == CsIdMapType.GENERIC_ID:
        for _ in range(count):
            cs_id = reader.u8("HDR", "a GENERIC-ID CS ID")
            prot_type = reader.u8("HDR", "a GENERIC-ID prot type")
            s_and_count = reader.u8("HDR", "a GENERIC-ID S/#P")
            policies = tuple(reader.take(s_and_count & 0x7F, "HDR", "GENERIC-ID policies"))
            session_data = reader.take(reader.u16("HDR", "a session data length"), "HDR", "session data")
            spi = reader.take(reader.u8("HDR", "an SPI length"), "HDR", "an SPI")
            entries.append(
                GenericIdEntry(cs_id, prot_type, bool(s_and_count & 0x80), policies, session_data, spi)
            )
    elif map_type != CsIdMapType.EMPTY:
        raise MikeyError("cs-id-map", f"HDR payload: CS ID map type {map_type} is unknown (0, 1 or 2)")
    hdr = Hdr(
        csb_id=csb_id,
        cs_id_map_type=map_type,
        cs_id_map=tuple(entries),
        cs_count=count,
        version=version,
        data_type=data_type,
        v=False,
        prf=v_prf & 0x7F,
    )
    return hdr, next_payload


def _parse_payload(reader: _Reader, kind: PayloadType) -> tuple[Payload, int]:
    name = _NAME_OF[kind]
    next_payload = reader.u8(name, "the next payload field")
    payload: Payload
    if kind == PayloadType.T:
        ts_type = reader.u8(name, "the TS type")
        if ts_type not in _TS_LENGTH:
            raise MikeyError("ts-type", f"T payload: TS type {ts_type} is unknown (0..3)")
        length = _TS_LENGTH[TsType(ts_type)]
        payload = Timestamp(int.from_bytes(reader.take(length, name, "the TS value"), "big"), ts_type)
    elif kind == PayloadType.RAND:
        payload = Rand(reader.take(reader.u8(name, "the RAND length"), name, "the RAND"))
    elif kind == PayloadType.IDR:
        role = reader.u8(name, "the ID role")
        id_type = reader.u8(name, "the ID type")
        payload = Idr(role, reader.take(reader.u16(name, "the ID length"), name, "the ID data"), id_type)
    elif kind == PayloadType.SP:
        policy_no = reader.u8(name, "the policy no")
        prot_type = reader.u8(name, "the prot type")
        body = _Reader(reader.take(reader.u16(name, "the parameter length"), name, "the parameters"))
        params: list[PolicyParam] = []
        while body.offset < len(body.data):
            param_type = body.u8(name, "a parameter type")
            params.append(
                PolicyParam(param_type, body.take(body.u8(name, "a parameter length"), name, "a value"))
            )
        payload = SecurityPolicy(policy_no, prot_type, tuple(params))
    elif kind == PayloadType.SAKKE:
        params_value = reader.u8(name, "the SAKKE params")
        id_scheme = reader.u8(name, "the ID scheme")
        length = reader.u16(name, "the SAKKE data length")
        _check_sakke_header(params_value, id_scheme, length)
        payload = Sakke(reader.take(length, name, "the SAKKE data"), params_value, id_scheme)
    else:
        ext_type = reader.u8(name, "the type")
        payload = GeneralExtension(ext_type, reader.take(reader.u16(name, "the length"), name, "the data"))
    return payload, next_payload


def parse_i_message(data: bytes) -> IMessage:
    """Parse a MIKEY-SAKKE I_MESSAGE.  Refuses, with ``MikeyError``: a truncated payload, a payload
    type this profile does not carry, a wrong HDR, unknown SAKKE params or ID scheme, a SIGN that is
    not ECCSI with 129 octets, octets after SIGN, a missing or repeated T, RAND, SAKKE or SIGN, and
    a repeated IDR role.  The signature is not checked here (``open_i_message`` does)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MikeyError("field-range", f"an I_MESSAGE is bytes, not {type(data).__name__}")
    reader = _Reader(bytes(data))
    hdr, next_payload = _parse_hdr(reader)
    payloads: list[Payload] = []
    previous = "HDR"
    seen_roles: set[int] = set()
    while True:
        if next_payload == PayloadType.SIGN:
            head = reader.take(2, "SIGN", "the S type and length")
            _check_sign_header(head[0] >> 4, ((head[0] & 0x0F) << 8) | head[1])
            sign = Sign(reader.take(eccsi.SIGNATURE_LENGTH, "SIGN", "the signature"))
            break
        if next_payload == PayloadType.LAST:
            raise MikeyError(
                "missing-payload",
                f"I_MESSAGE: the payload chain ends after {previous} without a SIGN payload",
            )
        if next_payload not in _NAME_OF:
            known = _UNSUPPORTED_PAYLOADS.get(next_payload)
            what = f" ({known}, not used in a MIKEY-SAKKE I_MESSAGE)" if known else ""
            raise MikeyError(
                "unknown-payload", f"unknown next payload type {next_payload}{what} after {previous}"
            )
        kind = PayloadType(next_payload)
        payload, next_payload = _parse_payload(reader, kind)
        if isinstance(payload, Idr):
            if payload.role in seen_roles:
                raise MikeyError(
                    "duplicate-idr",
                    f"IDR payload: role {payload.role} ({_ROLE_NAMES[payload.role]}) appears twice",
                )
            seen_roles.add(payload.role)
        elif isinstance(payload, Timestamp | Rand | Sakke) and any(
            type(p) is type(payload) for p in payloads
        ):
            raise MikeyError("duplicate-payload", f"I_MESSAGE: second {_NAME_OF[kind]} payload")
        payloads.append(payload)
        previous = _NAME_OF[kind]
    if reader.offset != len(reader.data):
        raise MikeyError(
            "trailing-octets", f"I_MESSAGE: trailing octets after SIGN ({len(reader.data) - reader.offset})"
        )
    return IMessage(hdr, tuple(payloads), sign)


# --- signing -----------------------------------------------------------------------------------------


def sign_i_message(
    hdr: Hdr,
    payloads: Sequence[Payload],
    *,
    identity: bytes,
    ssk: int,
    pvt: Point,
    kpak: Point,
    hs: bytes | None = None,
) -> IMessage:
    """Sign HDR + payloads + SIGN header with ECCSI as ``identity`` (the initiator's UID)."""
    payloads = tuple(payloads)
    message = to_be_signed(hdr, payloads)
    try:
        signature = eccsi.sign(message, identity, ssk, pvt, kpak, hs=hs)
    except eccsi.EccsiError as error:
        raise MikeyError("signing-key", f"initiator SSK/PVT refused: {error.reason}") from None
    return IMessage(hdr, payloads, Sign(signature))


# --- the 3GPP profile: make and open -----------------------------------------------------------------


def _uid(name: str, uri: str, kms_uri: str, period: KeyPeriod, number: int) -> bytes:
    try:
        return uid_module.uid(uri, kms_uri, period, number)
    except UidError as error:
        raise MikeyError("identity", f"{name} UID: {error}") from None


def _period_number(name: str, period: KeyPeriod, ntp_seconds: int) -> int:
    if not isinstance(period, KeyPeriod):
        raise MikeyError("key-period", f"{name} key period must be a KeyPeriod, not {type(period).__name__}")
    try:
        return period.number_at(ntp_seconds)
    except UidError as error:
        raise MikeyError("key-period", f"{name} key period: {error}") from None


def make_i_message(
    *,
    ssv: bytes,
    key_id: int,
    initiator_uri: str,
    responder_uri: str,
    initiator_kms_uri: str,
    responder_kms_uri: str,
    initiator_period: KeyPeriod,
    responder_period: KeyPeriod,
    ssk: int,
    pvt: Point,
    kpak: Point,
    responder_z: Point,
    timestamp: float | None = None,
    rand: bytes | None = None,
    policies: Sequence[SecurityPolicy] = (),
    extensions: Sequence[GeneralExtension] = (),
    crypto_sessions: Sequence[GenericIdEntry] = (),
) -> bytes:
    """A signed I_MESSAGE carrying the key ``ssv`` (16 octets) with CSB ID ``key_id``.

    Payloads: HDR (empty CS ID map, or GENERIC-ID when ``crypto_sessions`` are given), T
    (NTP-UTC at ``timestamp``, default now), RAND (16 random octets unless given), IDRi, IDRr,
    IDRkmsi, IDRkmsr, the SPs, SAKKE, the general extensions, SIGN.  The ECCSI identity is the UID
    of ``initiator_uri`` under ``initiator_kms_uri`` for the key period of ``initiator_period`` at
    the T time; the SAKKE identifier is the UID of ``responder_uri`` under ``responder_kms_uri``
    for the period of ``responder_period`` at that time.  ``ssk``/``pvt`` are checked against the
    initiator UID and ``kpak`` before signing (``MikeyError`` ``signing-key``).  For a GMK,
    ``key_id`` is the GUK-ID (``keyids.guk_id``).
    """
    if not isinstance(ssv, bytes) or len(ssv) != sakke.SSV_LENGTH:
        raise MikeyError("ssv", f"the key (SSV) must be {sakke.SSV_LENGTH} octets")
    try:
        keyids.purpose_of(key_id)
    except KeyIdError as error:
        raise MikeyError("key-id", f"HDR payload: CSB ID: {error}") from None
    t_payload = Timestamp.ntp_utc(time.time() if timestamp is None else timestamp)
    ntp_seconds, _ = t_payload.utc_seconds()
    initiator_number = _period_number("initiator", initiator_period, ntp_seconds)
    responder_number = _period_number("responder", responder_period, ntp_seconds)
    initiator_uid = _uid("initiator", initiator_uri, initiator_kms_uri, initiator_period, initiator_number)
    responder_uid = _uid("responder", responder_uri, responder_kms_uri, responder_period, responder_number)
    try:
        hs = eccsi.validate_ssk(ssk, pvt, kpak, initiator_uid)
    except eccsi.EccsiError as error:
        raise MikeyError(
            "signing-key",
            f"initiator SSK/PVT refused for its UID in key period {initiator_number}: {error.reason}",
        ) from None
    try:
        sakke_data = sakke.encapsulate(ssv, responder_uid, responder_z)
    except sakke.SakkeError as error:
        raise MikeyError("sakke-invalid", f"SAKKE encapsulation failed: {error.reason}") from None
    sessions = tuple(crypto_sessions)
    hdr = Hdr(
        csb_id=key_id,
        cs_id_map_type=CsIdMapType.GENERIC_ID if sessions else CsIdMapType.EMPTY,
        cs_id_map=sessions,
    )
    payloads: list[Payload] = [
        t_payload,
        Rand(secrets.token_bytes(RAND_LENGTH) if rand is None else rand),
        Idr.uri(IdRole.IDRI, initiator_uri),
        Idr.uri(IdRole.IDRR, responder_uri),
        Idr.uri(IdRole.IDRKMSI, initiator_kms_uri),
        Idr.uri(IdRole.IDRKMSR, responder_kms_uri),
        *policies,
        Sakke(sakke_data),
        *extensions,
    ]
    message = sign_i_message(hdr, payloads, identity=initiator_uid, ssk=ssk, pvt=pvt, kpak=kpak, hs=hs)
    return encode_i_message(message)


@dataclass(frozen=True)
class OpenedKey:
    """What ``open_i_message`` hands out.  ``key`` is left out of ``repr``.

    ``initiator_uri`` is None when the initiator was hidden (only an IDR role 8 UID was sent);
    ``gmk_id`` is the GMK-ID recovered from the GUK-ID (CSB ID) for a GMK, else None;
    ``timestamp`` is the T payload time (Unix seconds); ``period_number`` the responder's key
    period at that time."""

    key: bytes = field(repr=False)
    key_id: int
    purpose: Purpose
    initiator_uri: str | None
    responder_uri: str
    initiator_uid: bytes
    responder_uid: bytes
    timestamp: float
    period_number: int
    gmk_id: int | None
    message: IMessage = field(repr=False)


def _expect(name: str, found: str, expected: str | None) -> None:
    if expected is not None and found != expected:
        # The URIs are identities, not secrets: naming both helps the operator.
        raise MikeyError("identity-mismatch", f"IDR payload: {name} is {found!r}, expected {expected!r}")


def _kms_uri(message: IMessage, role: IdRole, expected: str | None) -> str:
    payload = message.idr(role)
    if payload is None:
        raise MikeyError("missing-payload", f"I_MESSAGE: mandatory IDR payload {_ROLE_NAMES[role]} missing")
    found = payload.text()
    _expect(_ROLE_NAMES[role], found, expected)
    return found


def _carried_uid(message: IMessage, role: IdRole) -> bytes | None:
    payload = message.idr(role)
    if payload is None:
        return None
    if len(payload.data) != UID_LENGTH:
        raise MikeyError(
            "identity", f"IDR payload: {_ROLE_NAMES[role]} has {len(payload.data)} octets, a UID has 32"
        )
    return payload.data


def open_i_message(
    data: bytes,
    *,
    initiator_kpak: Point,
    initiator_period: KeyPeriod,
    responder_period: KeyPeriod,
    responder_rsk: Point,
    responder_z: Point,
    expected_responder_uri: str | None = None,
    expected_initiator_uri: str | None = None,
    expected_initiator_kms_uri: str | None = None,
    expected_responder_kms_uri: str | None = None,
    period_number: int | None = None,
    now: float | None = None,
    max_skew: float | None = DEFAULT_MAX_SKEW,
    verifier: eccsi.Verifier | None = None,
) -> OpenedKey:
    """Check and open an I_MESSAGE as its responder; ``MikeyError`` says what failed.

    Steps, in this order (RFC 6509 §2.1, §2.2.2: signature before decapsulation):

    1. parse (``parse_i_message``);
    2. the T payload: a UTC time (type 0 or 3) within ``max_skew`` seconds of ``now`` (default
       the host clock; ``max_skew=None`` skips this check, e.g. for a GMK read from a stored
       group document); its key period numbers under ``initiator_period`` and
       ``responder_period``; with ``period_number`` given, the responder's must equal it (the
       period of ``responder_rsk``);
    3. identities: IDRkmsi, IDRkmsr and IDRi are mandatory, except that an IDR role 8 UID stands
       for a hidden IDRi (TS 33.180 E.7); IDRr is mandatory unless ``expected_responder_uri`` is
       given.  Each ``expected_*`` argument must match its IDR.  Role 8/9 UIDs, when sent next to
       the URIs, must equal the UIDs computed from them;
    4. the ECCSI signature over every octet before the signature value, with the initiator UID and
       ``initiator_kpak`` (``verifier`` or the module-wide cache);
    5. the CSB ID must carry a purpose tag (``keyids.purpose_of``);
    6. only then, SAKKE decapsulation with the responder UID, ``responder_rsk`` and ``responder_z``
       (including the TEST check of RFC 6508 §6.2.2).
    """
    data = bytes(data) if isinstance(data, bytearray | memoryview) else data
    message = parse_i_message(data)

    ntp_seconds, unix_time = message.timestamp.utc_seconds()
    if max_skew is not None:
        clock = time.time() if now is None else now
        if abs(unix_time - clock) > max_skew:
            raise MikeyError(
                "timestamp-skew",
                f"T payload: time differs from the local clock by {unix_time - clock:+.0f} s "
                f"(at most {max_skew:.0f} s allowed)",
            )
    initiator_number = _period_number("initiator", initiator_period, ntp_seconds)
    responder_number = _period_number("responder", responder_period, ntp_seconds)
    if period_number is not None and responder_number != period_number:
        raise MikeyError(
            "key-period",
            f"T payload: time {unix_time:.0f} (Unix) is in key period {responder_number}, "
            f"not in period {period_number}",
        )

    # Initiator: IDRi + IDRkmsi give the UID; a role 8 UID alone stands for a hidden initiator.
    initiator_kms = _kms_uri(message, IdRole.IDRKMSI, expected_initiator_kms_uri)
    carried_initiator_uid = _carried_uid(message, IdRole.UID_I)
    idri = message.idr(IdRole.IDRI)
    initiator_uri: str | None
    if idri is not None:
        initiator_uri = idri.text()
        _expect("IDRi", initiator_uri, expected_initiator_uri)
        initiator_uid = _uid("initiator", initiator_uri, initiator_kms, initiator_period, initiator_number)
        if carried_initiator_uid is not None and carried_initiator_uid != initiator_uid:
            raise MikeyError("uid-mismatch", "IDR payload: the role 8 UID is not the UID of IDRi")
    elif carried_initiator_uid is not None and expected_initiator_uri is None:
        initiator_uri, initiator_uid = None, carried_initiator_uid
    elif carried_initiator_uid is not None:
        assert expected_initiator_uri is not None
        initiator_uri = expected_initiator_uri
        initiator_uid = _uid("initiator", initiator_uri, initiator_kms, initiator_period, initiator_number)
        if carried_initiator_uid != initiator_uid:
            raise MikeyError(
                "uid-mismatch", "IDR payload: the role 8 UID is not the UID of the expected initiator"
            )
    else:
        raise MikeyError("missing-payload", "I_MESSAGE: mandatory IDR payload IDRi missing")

    # Responder: IDRr (or the caller's own URI when IDRr is hidden) + IDRkmsr.
    responder_kms = _kms_uri(message, IdRole.IDRKMSR, expected_responder_kms_uri)
    idrr = message.idr(IdRole.IDRR)
    if idrr is not None:
        responder_uri = idrr.text()
        _expect("IDRr", responder_uri, expected_responder_uri)
    elif expected_responder_uri is not None:
        responder_uri = expected_responder_uri
    else:
        raise MikeyError("missing-payload", "I_MESSAGE: mandatory IDR payload IDRr missing")
    responder_uid = _uid("responder", responder_uri, responder_kms, responder_period, responder_number)
    carried_responder_uid = _carried_uid(message, IdRole.UID_R)
    if carried_responder_uid is not None and carried_responder_uid != responder_uid:
        raise MikeyError("uid-mismatch", "IDR payload: the role 9 UID is not the UID of the responder")

    # The signature covers everything before the signature value, SIGN header included.
    signed = data[: len(data) - eccsi.SIGNATURE_LENGTH]
    try:
        if verifier is None:
            eccsi.verify(signed, message.sign.signature, initiator_uid, initiator_kpak)
        else:
            verifier.verify(signed, message.sign.signature, initiator_uid, initiator_kpak)
    except eccsi.EccsiError as error:
        raise MikeyError("signature-invalid", f"signature invalid: {error.reason}") from None

    key_id = message.hdr.csb_id
    try:
        purpose = keyids.purpose_of(key_id)
    except KeyIdError as error:
        raise MikeyError("key-id", f"HDR payload: CSB ID: {error}") from None

    try:
        key = sakke.decapsulate(message.sakke.data, responder_uid, responder_rsk, responder_z)
    except sakke.SakkeError as error:
        raise MikeyError("sakke-invalid", f"SAKKE data refused: {error.reason}") from None

    gmk_id = keyids.gmk_id_from_guk_id(key, key_id, responder_uri) if purpose == Purpose.GMK else None
    return OpenedKey(
        key=key,
        key_id=key_id,
        purpose=purpose,
        initiator_uri=initiator_uri,
        responder_uri=responder_uri,
        initiator_uid=initiator_uid,
        responder_uid=responder_uid,
        timestamp=unix_time,
        period_number=responder_number,
        gmk_id=gmk_id,
        message=message,
    )


# --- SDP (RFC 4567) ----------------------------------------------------------------------------------

_SDP_ATTRIBUTE = "a=key-mgmt:"
_SDP_PROTOCOL = "mikey"


def to_sdp_key_mgmt(data: bytes) -> str:
    """``mikey <base64>``: the value of an SDP ``a=key-mgmt`` attribute (RFC 4567)."""
    return f"{_SDP_PROTOCOL} {base64.b64encode(bytes(data)).decode('ascii')}"


def from_sdp_key_mgmt(text: str) -> bytes:
    """The MIKEY octets of ``mikey <base64>``, with or without the ``a=key-mgmt:`` prefix."""
    if not isinstance(text, str):
        raise MikeyError("sdp-format", f"key-mgmt value must be str, not {type(text).__name__}")
    value = text.strip()
    if value.startswith(_SDP_ATTRIBUTE):
        value = value[len(_SDP_ATTRIBUTE) :]
    parts = value.split()
    if len(parts) != 2 or parts[0].lower() != _SDP_PROTOCOL:
        raise MikeyError("sdp-format", "key-mgmt value is not 'mikey <base64>'")
    try:
        decoded = base64.b64decode(parts[1].encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise MikeyError("base64", "key-mgmt value: the MIKEY message is not valid base64") from None
    if not decoded:
        raise MikeyError("base64", "key-mgmt value: the MIKEY message is empty")
    return decoded
