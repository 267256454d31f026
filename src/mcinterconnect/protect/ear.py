"""The EAR (Element for Authenticating Requests): codec and signature, sans-IO.

TS 33.180 9.6, 8.5.5 and Annex J, with the working assumptions of
spec/signalling-protection-and-ear.md §7-§10 (recorded in docs/PROFILE.md, Part 3):

* ``EarPayload`` — the EAR PAYLOAD of Table J.1.2-1 in MONP encoding (24.379 Annex I):
  message ID (V 1, WA-SP-17), Date and time (V 5, WA-SP-29), EAR ID (V 16, WA-SP-19), Source
  Role (V 1, WA-SP-20), Source ID (LV-E, WA-SP-21), Target Role, Target ID, then the optional
  Request IE (TLV-E, IEI WA-SP-16) holding the REQUEST PAYLOAD of Table J.2.2-1
  (``RequestPayload``: Request type V 1, Request ID TV 3 (WA-SP-23), Request Expiry TV 6
  (WA-SP-22));
* ``sign_ear`` / ``verify_ear_signature`` — ECCSI (RFC 6507) over the payload octets, the signer's
  identity being the UID (33.180 F.2.1) of the Source ID in the key period that holds the EAR's
  Date and time; the signed EAR is ``payload octets || r || s || PVT`` (129 octets, WA-SP-24);
* ``encode_header_value`` / ``decode_header_value`` — the ``MC-EAR`` header value, standard base64
  with padding (WA-SP-25).

Decoding is strict (WA-SP-30): reserved values, unknown IEIs, truncation, lengths running past
the end, trailing octets, empty or non-UTF-8 IDs are all refused with ``EarError`` (reason
``ear-malformed``) whose one-line message names the field and the offset.  The code points the
spec leaves open are an ``EarCodePoints`` value, so a partner that differs is configuration.
Messages never hold key bytes.
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import time as _time
import uuid
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal

from mcinterconnect.crypto import eccsi
from mcinterconnect.crypto.ec import Point
from mcinterconnect.crypto.kms import KeySet, KmsCertificate
from mcinterconnect.crypto.uid import KeyPeriod, UidError, ntp_seconds, uid

__all__ = [
    "DEFAULT_CODE_POINTS",
    "EAR_HEADER",
    "MAX_HEADER_VALUE_LENGTH",
    "SIGNATURE_LENGTH",
    "TIME_LENGTH",
    "EarCodePoints",
    "EarError",
    "EarPayload",
    "RequestPayload",
    "RequestType",
    "Role",
    "SignedEar",
    "decode_date_time",
    "decode_header_value",
    "ear_signer_identity",
    "encode_date_time",
    "encode_header_value",
    "new_payload",
    "parse_signed_ear",
    "sign_ear",
    "sign_ear_header",
    "verify_ear_signature",
]

#: Reason of every decoding refusal.
MALFORMED = "ear-malformed"
#: Reason of a signature that does not verify (or whose signer identity cannot be built).
SIGNATURE = "ear-signature"
#: Reason of a signing attempt that cannot succeed (bad key material, no key period at the time).
SIGNING = "ear-signing"

#: The header that carries the EAR in SIP and HTTP requests (WA-SP-25).
EAR_HEADER = "MC-EAR"
#: Longest header value read (base64 characters): about 3 kB of EAR, far above any real one.
MAX_HEADER_VALUE_LENGTH = 4096
#: Octets of the ECCSI signature trailer (r || s || PVT on P-256, RFC 6507 §3.3).
SIGNATURE_LENGTH = eccsi.SIGNATURE_LENGTH
#: Octets of Date and time and of Request Expiry (24.282 15.2.8, WA-SP-29, WA-SP-22).
TIME_LENGTH = 5
#: Octets of the EAR ID (J.1.3, WA-SP-19).
EAR_ID_LENGTH = 16
#: Largest value of an LV-E / TLV-E length (2 octets).
MAX_EXTENDED_LENGTH = 0xFFFF

_MAX_TIME = (1 << (8 * TIME_LENGTH)) - 1
_MAX_REQUEST_ID = 0xFFFF
#: message ID, Date and time, EAR ID, Source Role, Source ID length (the fixed head).
_HEAD_LENGTH = 1 + TIME_LENGTH + EAR_ID_LENGTH + 1 + 2
#: Shortest EAR PAYLOAD: the head, a one-octet Source ID, Target Role, Target ID length, one octet.
MIN_PAYLOAD_LENGTH = _HEAD_LENGTH + 1 + 1 + 2 + 1


class EarError(ValueError):
    """An EAR was refused or cannot be made. ``reason`` is a stable code for logs and policy:

    ``ear-malformed`` (decoding, values outside their coding), ``ear-signature`` (verification),
    ``ear-signing`` (signing impossible with the given keys or time).  The message is one line,
    names the field, and never holds key bytes.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _malformed(message: str) -> EarError:
    return EarError(MALFORMED, message)


class RequestType(IntEnum):
    """Request type (Table J.2.3-1). 0x00, 0x04 and 0x07-0xFF are reserved and refused."""

    PRIVILEGED = 0x01  # "PRIVILEDGED SIGNALLING" in the spec text
    INTERWORKING = 0x02
    GROUP = 0x03
    MIGRATION = 0x05
    OFF_NETWORK = 0x06


class Role(IntEnum):
    """Role ID (J.1.4): the project table of WA-SP-20 (not interoperable until J.1.4 is known).

    0x00 is reserved; the set a decoder accepts is ``EarCodePoints.known_roles``."""

    CLIENT = 1
    MCX_SERVER = 2
    GMS = 3
    CMS = 4
    IS_PROXY = 5
    HTTP_PROXY = 6
    IWF = 7
    KMS = 8
    IDMS = 9


def _check_octet(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFF:
        raise ValueError(f"{name} must be an int in 0..255, not {value!r}")
    return value


@dataclass(frozen=True)
class EarCodePoints:
    """The code points the available spec text leaves open, one value per deployment or partner.

    ``message_id`` (WA-SP-17), the IEIs of Request (TLV-E), Request ID (TV) and Request Expiry
    (TV) (WA-SP-16), the Role IDs a decoder accepts (WA-SP-20), the byte order of Date and time
    and Request Expiry (WA-SP-29: big-endian; a 2018 Wireshark dissector reads little-endian) and
    the lenient skipping of unknown optional IEs (WA-SP-30, off by default).
    """

    message_id: int = 0x01
    request_iei: int = 0x78
    request_id_iei: int = 0x25
    request_expiry_iei: int = 0x26
    known_roles: frozenset[int] = field(default_factory=lambda: frozenset(int(role) for role in Role))
    time_byte_order: Literal["big", "little"] = "big"
    skip_unknown_ies: bool = False

    def __post_init__(self) -> None:
        for name in ("message_id", "request_iei", "request_id_iei", "request_expiry_iei"):
            _check_octet(name, getattr(self, name))
        if self.request_id_iei == self.request_expiry_iei:
            raise ValueError("request_id_iei and request_expiry_iei must differ")
        if not isinstance(self.known_roles, frozenset) or not self.known_roles:
            raise ValueError("known_roles must be a non-empty frozenset of ints in 1..255")
        for role in self.known_roles:
            if _check_octet("a known role", role) == 0:
                raise ValueError("role 0 is reserved (WA-SP-20)")
        if self.time_byte_order not in ("big", "little"):
            raise ValueError("time_byte_order must be 'big' or 'little'")


DEFAULT_CODE_POINTS = EarCodePoints()


# --- Date and time (24.282 15.2.8, WA-SP-29) ---------------------------------------------------


def encode_date_time(seconds: int, codes: EarCodePoints = DEFAULT_CODE_POINTS) -> bytes:
    """Unix seconds as the 5-octet Date and time (40-bit unsigned, ``codes.time_byte_order``)."""
    return seconds.to_bytes(TIME_LENGTH, codes.time_byte_order)


def decode_date_time(octets: bytes, codes: EarCodePoints = DEFAULT_CODE_POINTS) -> int:
    """The Unix seconds of a 5-octet Date and time."""
    return int.from_bytes(octets, codes.time_byte_order)


# --- values ------------------------------------------------------------------------------------


def _check_time(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_TIME:
        raise _malformed(f"{name} must be whole Unix seconds in 0..2^40-1, not {value!r:.40}")
    return value


def _check_entity_id(name: str, value: object) -> bytes:
    """An Entity ID (J.1.5): a non-empty UTF-8 URI without whitespace or controls (WA-SP-18/21)."""
    if not isinstance(value, str):
        raise _malformed(f"{name} must be a str, not {type(value).__name__}")
    if not value:
        raise _malformed(f"{name} is empty (WA-SP-18)")
    try:
        octets = value.encode("utf-8")
    except UnicodeEncodeError:
        raise _malformed(f"{name} is not encodable as UTF-8 (lone surrogate)") from None
    if len(octets) > MAX_EXTENDED_LENGTH:
        raise _malformed(f"{name} is {len(octets)} octets, more than an LV-E holds ({MAX_EXTENDED_LENGTH})")
    # A URI holds neither whitespace nor controls; they would also name another UID than it seems.
    # Every whitespace character but U+0020 is non-printable (Zs, Zl, Zp, Cc): two C-speed tests.
    if not value.isprintable() or " " in value:
        raise _malformed(f"{name} holds whitespace or non-printable characters")
    return octets


@dataclass(frozen=True)
class RequestPayload:
    """REQUEST PAYLOAD (Table J.2.2-1): what the EAR vouches for.

    ``request_id`` is opaque 16-bit (WA-SP-23); ``expiry`` Unix seconds (WA-SP-22): at that
    instant whatever the request set up must end (J.2.4)."""

    request_type: RequestType
    request_id: int | None = None
    expiry: int | None = None

    def __post_init__(self) -> None:
        value = self.request_type
        if isinstance(value, bool) or not isinstance(value, int):
            raise _malformed(f"Request type must be a RequestType, not {type(value).__name__}")
        if not isinstance(value, RequestType):
            if not 0 <= value <= 0xFF:
                raise _malformed(f"Request type {value} is not an octet")
            if value not in RequestType._value2member_map_:
                raise _malformed(f"Request type 0x{value:02x} is reserved (Table J.2.3-1)")
            object.__setattr__(self, "request_type", RequestType(value))
        if self.request_id is not None and (
            isinstance(self.request_id, bool)
            or not isinstance(self.request_id, int)
            or not 0 <= self.request_id <= _MAX_REQUEST_ID
        ):
            raise _malformed(f"Request ID must be an int in 0..65535, not {self.request_id!r:.40}")
        if self.expiry is not None:
            _check_time("Request Expiry", self.expiry)

    def encode(self, codes: EarCodePoints = DEFAULT_CODE_POINTS) -> bytes:
        """The value of the Request IE: Request type, then Request ID and Request Expiry if set."""
        out = bytearray((self.request_type,))
        if self.request_id is not None:
            out.append(codes.request_id_iei)
            out += self.request_id.to_bytes(2, "big")
        if self.expiry is not None:
            out.append(codes.request_expiry_iei)
            out += encode_date_time(self.expiry, codes)
        return bytes(out)

    @classmethod
    def decode(
        cls, data: bytes, codes: EarCodePoints = DEFAULT_CODE_POINTS, *, base: int = 0
    ) -> RequestPayload:
        """Decode the value of a Request IE (``base``: its offset in the EAR, for messages)."""
        if not data:
            raise _malformed(f"Request IE at offset {base - 3} is empty (Request type is mandatory)")
        value = data[0]
        if value not in RequestType._value2member_map_:
            raise _malformed(f"Request type 0x{value:02x} at offset {base} is reserved (Table J.2.3-1)")
        request_id: int | None = None
        expiry: int | None = None
        # Optional IEs in table order, each at most once (encoders write table order only).
        expected = [(codes.request_id_iei, "Request ID", 2), (codes.request_expiry_iei, "Request Expiry", 5)]
        at = 1
        while at < len(data):
            iei = data[at]
            index = next((i for i, (known, _, _) in enumerate(expected) if known == iei), None)
            if index is None:
                if any(iei == known for known in (codes.request_id_iei, codes.request_expiry_iei)):
                    raise _malformed(
                        f"IEI 0x{iei:02x} at offset {base + at} repeated or out of order in the Request IE"
                    )
                if codes.skip_unknown_ies:
                    at = _skip_unknown(data, at, base)
                    continue
                raise _malformed(f"unknown IEI 0x{iei:02x} at offset {base + at} in the Request IE")
            _, name, length = expected[index]
            del expected[: index + 1]
            if at + 1 + length > len(data):
                raise _malformed(
                    f"{name} at offset {base + at} is truncated: needs {length} octets, "
                    f"{len(data) - at - 1} left in the Request IE"
                )
            octets = data[at + 1 : at + 1 + length]
            if name == "Request ID":
                request_id = int.from_bytes(octets, "big")
            else:
                expiry = decode_date_time(octets, codes)
            at += 1 + length
        return cls(RequestType(value), request_id, expiry)


def _skip_unknown(data: bytes, at: int, base: int) -> int:
    """Lenient mode (WA-SP-30): the offset after the unknown IE at ``at``."""
    iei = data[at]
    if iei & 0x80:  # type 1 or 2: one octet
        return at + 1
    if 0x70 <= iei <= 0x7F:  # TLV-E
        if at + 3 > len(data):
            raise _malformed(f"unknown TLV-E IE 0x{iei:02x} at offset {base + at} is truncated")
        end = at + 3 + int.from_bytes(data[at + 1 : at + 3], "big")
    else:  # TLV
        if at + 2 > len(data):
            raise _malformed(f"unknown TLV IE 0x{iei:02x} at offset {base + at} is truncated")
        end = at + 2 + data[at + 1]
    if end > len(data):
        raise _malformed(f"unknown IE 0x{iei:02x} at offset {base + at}: length runs past the end")
    return end


@dataclass(frozen=True)
class EarPayload:
    """EAR PAYLOAD (Table J.1.2-1).

    ``time`` is the Date and time in Unix seconds (40-bit, WA-SP-29); ``ear_id`` a UUID (any
    version is accepted on receipt; ``new_payload`` makes version 4, WA-SP-19); roles are Role ID
    octets (``Role`` values by default); IDs are URIs (the Source ID is the signer's identity,
    WA-SP-24).  Construction checks every value that the encoding cannot hold."""

    time: int
    ear_id: uuid.UUID
    source_role: int
    source_id: str
    target_role: int
    target_id: str
    request: RequestPayload | None = None

    def __post_init__(self) -> None:
        _check_time("Date and time", self.time)
        if not isinstance(self.ear_id, uuid.UUID):
            raise _malformed(f"EAR ID must be a uuid.UUID, not {type(self.ear_id).__name__}")
        for name in ("source_role", "target_role"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFF:
                raise _malformed(f"{name} must be a Role ID octet, not {value!r:.40}")
        _check_entity_id("Source ID", self.source_id)
        _check_entity_id("Target ID", self.target_id)
        if self.request is not None and not isinstance(self.request, RequestPayload):
            raise _malformed(f"request must be a RequestPayload, not {type(self.request).__name__}")

    def encode(self, codes: EarCodePoints = DEFAULT_CODE_POINTS) -> bytes:
        """The EAR PAYLOAD octets (IEs in table order). Roles outside ``codes.known_roles`` are refused."""
        for name, role in (("Source Role", self.source_role), ("Target Role", self.target_role)):
            if role not in codes.known_roles:
                raise _malformed(f"{name} 0x{role:02x} is not a known Role ID (WA-SP-20)")
        source = self.source_id.encode("utf-8")
        target = self.target_id.encode("utf-8")
        out = bytearray((codes.message_id,))
        out += encode_date_time(self.time, codes)
        out += self.ear_id.bytes
        out.append(self.source_role)
        out += len(source).to_bytes(2, "big") + source
        out.append(self.target_role)
        out += len(target).to_bytes(2, "big") + target
        if self.request is not None:
            value = self.request.encode(codes)
            out.append(codes.request_iei)
            out += len(value).to_bytes(2, "big") + value
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes, codes: EarCodePoints = DEFAULT_CODE_POINTS) -> EarPayload:
        """Decode EAR PAYLOAD octets strictly (module docstring); ``EarError`` ``ear-malformed``."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise _malformed(f"an EAR PAYLOAD is bytes, not {type(data).__name__}")
        data = bytes(data)
        size = len(data)
        if size < 1:
            raise _malformed("EAR PAYLOAD is empty")
        if data[0] != codes.message_id:
            raise _malformed(f"EAR message ID 0x{data[0]:02x} at offset 0, expected 0x{codes.message_id:02x}")
        if size < _HEAD_LENGTH:
            raise _malformed(
                f"EAR PAYLOAD truncated at offset {size}: the fixed part needs {_HEAD_LENGTH} octets"
            )
        at = 1
        seconds = decode_date_time(data[at : at + TIME_LENGTH], codes)
        at += TIME_LENGTH
        ear_id = uuid.UUID(bytes=data[at : at + EAR_ID_LENGTH])
        at += EAR_ID_LENGTH
        source_role = _role(data, at, "Source Role", codes)
        source_id, at = _entity_id(data, at + 1, "Source ID")
        if at >= size:
            raise _malformed(f"EAR PAYLOAD truncated at offset {at}: Target Role missing")
        target_role = _role(data, at, "Target Role", codes)
        target_id, at = _entity_id(data, at + 1, "Target ID")
        request: RequestPayload | None = None
        while at < size:
            iei = data[at]
            if iei == codes.request_iei:
                if request is not None:
                    raise _malformed(f"Request IE repeated at offset {at}")
                if at + 3 > size:
                    raise _malformed(f"Request IE at offset {at} truncated: its 2-octet length is cut")
                length = int.from_bytes(data[at + 1 : at + 3], "big")
                end = at + 3 + length
                if end > size:
                    raise _malformed(
                        f"Request IE at offset {at}: length {length} runs past the end "
                        f"({size - at - 3} octets left)"
                    )
                request = RequestPayload.decode(data[at + 3 : end], codes, base=at + 3)
                at = end
            elif request is not None and not codes.skip_unknown_ies:
                raise _malformed(f"{size - at} trailing octets at offset {at} after the Request IE")
            elif codes.skip_unknown_ies:
                at = _skip_unknown(data, at, 0)
            else:
                raise _malformed(f"unknown IEI 0x{iei:02x} at offset {at}")
        return cls(seconds, ear_id, source_role, source_id, target_role, target_id, request)


def _role(data: bytes, at: int, name: str, codes: EarCodePoints) -> int:
    value = data[at]
    if value == 0:
        raise _malformed(f"{name} 0x00 at offset {at} is reserved (WA-SP-20)")
    if value not in codes.known_roles:
        raise _malformed(f"{name} 0x{value:02x} at offset {at} is not a known Role ID (WA-SP-20)")
    return value


def _entity_id(data: bytes, at: int, name: str) -> tuple[str, int]:
    """An LV-E Entity ID at ``at``: (the ID, the offset after it)."""
    if at + 2 > len(data):
        raise _malformed(f"EAR PAYLOAD truncated at offset {len(data)}: the length of {name} is cut")
    length = int.from_bytes(data[at : at + 2], "big")
    if length == 0:
        raise _malformed(f"{name} at offset {at} is empty (WA-SP-18)")
    end = at + 2 + length
    if end > len(data):
        raise _malformed(
            f"{name} at offset {at}: length {length} runs past the end ({len(data) - at - 2} octets left)"
        )
    try:
        text = data[at + 2 : end].decode("utf-8")
    except UnicodeDecodeError as error:
        raise _malformed(f"{name} at offset {at} is not UTF-8 (octet {error.start} of the ID)") from None
    return text, end  # the rest of _check_entity_id runs when the EarPayload is built


def new_payload(
    *,
    source_role: int,
    source_id: str,
    target_role: int,
    target_id: str,
    request: RequestPayload | None = None,
    now: float | None = None,
) -> EarPayload:
    """A fresh EAR PAYLOAD: EAR ID a random UUID (version 4), Date and time ``now`` (default: the
    current time), rounded down to whole seconds."""
    when = _time.time() if now is None else now
    if isinstance(when, bool) or not isinstance(when, int | float) or not math.isfinite(when):
        raise _malformed(f"now must be finite Unix seconds, not {when!r:.40}")
    return EarPayload(
        time=math.floor(when),
        ear_id=uuid.uuid4(),
        source_role=source_role,
        source_id=source_id,
        target_role=target_role,
        target_id=target_id,
        request=request,
    )


# --- the signed EAR (8.5.5, WA-SP-24) ----------------------------------------------------------


@dataclass(frozen=True)
class SignedEar:
    """A decoded EAR with the octets it was signed over (kept as received) and the signature."""

    payload: EarPayload
    payload_octets: bytes
    signature: bytes

    def __post_init__(self) -> None:
        if len(self.signature) != SIGNATURE_LENGTH:
            raise _malformed(
                f"the EAR signature is {len(self.signature)} octets, expected {SIGNATURE_LENGTH}"
            )

    def to_bytes(self) -> bytes:
        """payload octets || r || s || PVT."""
        return self.payload_octets + self.signature


#: UIDs of recent signers (public values; a UID costs a few tens of µs, a cached one nothing).
_cached_uid = functools.lru_cache(maxsize=1024)(uid)


def ear_signer_identity(source_id: str, time: int, *, kms_uri: str, key_period: KeyPeriod) -> bytes:
    """The ECCSI identity of an EAR (WA-SP-24): the UID of ``source_id`` under ``kms_uri`` in the
    key period that holds ``time`` (Unix seconds).  ``UidError`` when no period holds it."""
    return _cached_uid(source_id, kms_uri, key_period, key_period.number_at(ntp_seconds(time)))


def sign_ear(
    payload: EarPayload,
    *,
    ssk: int,
    pvt: Point,
    kpak: Point,
    kms_uri: str,
    key_period: KeyPeriod,
    codes: EarCodePoints = DEFAULT_CODE_POINTS,
) -> SignedEar:
    """Encode ``payload`` and sign it with ECCSI (WA-SP-24).

    ``ssk``/``pvt`` must be the key set of the Source ID for the key period holding
    ``payload.time``; they are not re-validated here (``kms.validate_key_set`` does that on
    receipt), so a wrong key set gives an EAR that the receiver refuses."""
    octets = payload.encode(codes)
    try:
        identity = ear_signer_identity(
            payload.source_id, payload.time, kms_uri=kms_uri, key_period=key_period
        )
        signature = eccsi.sign(octets, identity, ssk, pvt, kpak)
    except UidError as error:
        raise EarError(SIGNING, f"no signer identity for this EAR: {error}") from None
    except eccsi.EccsiError as error:
        raise EarError(SIGNING, f"cannot sign the EAR: {error.reason}") from None
    return SignedEar(payload, octets, signature)


def sign_ear_header(payload: EarPayload, key_set: KeySet, certificate: KmsCertificate) -> str:
    """The ``MC-EAR`` header value of ``payload`` signed with a KMS ``key_set`` of its Source ID
    under the ``certificate`` of the KMS that issued it (``sign_ear`` + ``encode_header_value``)."""
    signed = sign_ear(
        payload,
        ssk=key_set.ssk,
        pvt=key_set.pvt,
        kpak=certificate.pub_auth_key,
        kms_uri=certificate.kms_uri,
        key_period=certificate.key_period,
    )
    return encode_header_value(signed)


def parse_signed_ear(data: bytes, codes: EarCodePoints = DEFAULT_CODE_POINTS) -> SignedEar:
    """Split ``payload || signature`` (the last 129 octets) and decode the payload strictly."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise _malformed(f"an EAR is bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) < MIN_PAYLOAD_LENGTH + SIGNATURE_LENGTH:
        raise _malformed(
            f"EAR is {len(data)} octets, shorter than the smallest payload and signature "
            f"({MIN_PAYLOAD_LENGTH + SIGNATURE_LENGTH})"
        )
    octets = data[:-SIGNATURE_LENGTH]
    return SignedEar(EarPayload.decode(octets, codes), octets, data[-SIGNATURE_LENGTH:])


def verify_ear_signature(
    ear: SignedEar,
    *,
    kpak: Point,
    kms_uri: str,
    key_period: KeyPeriod,
    verifier: eccsi.Verifier | None = None,
) -> None:
    """Verify the ECCSI signature over the payload octets as received, under the Source ID's UID
    and the source KMS's KPAK (WA-SP-24 step 5); ``EarError`` ``ear-signature`` if refused."""
    try:
        identity = ear_signer_identity(
            ear.payload.source_id, ear.payload.time, kms_uri=kms_uri, key_period=key_period
        )
    except UidError as error:
        raise EarError(SIGNATURE, f"no signer identity for this EAR: {error}") from None
    try:
        if verifier is None:
            eccsi.verify(ear.payload_octets, ear.signature, identity, kpak)
        else:
            verifier.verify(ear.payload_octets, ear.signature, identity, kpak)
    except eccsi.EccsiError as error:
        raise EarError(SIGNATURE, f"ECCSI signature refused ({error.reason})") from None


# --- carriage (WA-SP-25) -----------------------------------------------------------------------


def encode_header_value(ear: SignedEar | bytes) -> str:
    """The ``MC-EAR`` header value: standard base64 with padding of the signed EAR."""
    octets = ear.to_bytes() if isinstance(ear, SignedEar) else bytes(ear)
    text = base64.b64encode(octets).decode("ascii")
    if len(text) > MAX_HEADER_VALUE_LENGTH:
        raise _malformed(f"the EAR needs {len(text)} base64 characters, more than {MAX_HEADER_VALUE_LENGTH}")
    return text


def decode_header_value(text: str) -> bytes:
    """The EAR octets of an ``MC-EAR`` header value: canonical standard base64 with padding, at
    most ``MAX_HEADER_VALUE_LENGTH`` characters, surrounding blanks ignored."""
    if not isinstance(text, str):
        raise _malformed(f"an MC-EAR header value is str, not {type(text).__name__}")
    if len(text) > MAX_HEADER_VALUE_LENGTH + 64:
        raise _malformed(f"MC-EAR header value longer than {MAX_HEADER_VALUE_LENGTH} characters")
    value = text.strip(" \t")
    if not value:
        raise _malformed("MC-EAR header value is empty")
    if len(value) > MAX_HEADER_VALUE_LENGTH:
        raise _malformed(f"MC-EAR header value longer than {MAX_HEADER_VALUE_LENGTH} characters")
    try:
        raw = value.encode("ascii")
        octets = base64.b64decode(raw, validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise _malformed("MC-EAR header value is not standard base64 with padding") from None
    # One text per EAR: refuse non-zero pad bits, which b64decode tolerates.
    if base64.b64encode(octets) != raw:
        raise _malformed("MC-EAR header value is not canonical base64 (non-zero pad bits)")
    return octets
