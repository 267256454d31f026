"""The EAR codec and signature of protect/ear.py (TS 33.180 9.6, Annex J; WA-SP-16..30).

The byte layout of spec/signalling-protection-and-ear.md §7.8 is checked against a vector written
out by hand; every malformed case is refused with ``ear-malformed`` and a message naming the
fault; hypothesis drives round trips and the "only EarError" property of every decoder.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import re
import uuid
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcinterconnect.crypto import ec, eccsi
from mcinterconnect.crypto.uid import KeyPeriod, ntp_seconds, uid
from mcinterconnect.protect import ear
from mcinterconnect.protect.ear import (
    DEFAULT_CODE_POINTS,
    EAR_HEADER,
    MAX_HEADER_VALUE_LENGTH,
    SIGNATURE_LENGTH,
    EarCodePoints,
    EarError,
    EarPayload,
    RequestPayload,
    RequestType,
    Role,
    SignedEar,
    decode_header_value,
    encode_header_value,
    new_payload,
    parse_signed_ear,
    sign_ear,
    verify_ear_signature,
)

MCX_A = "sip:mcx@a.mc.example"
B = "sip:b.mc.example"
KMS_A = "kms.a.mc.example"
PERIOD = KeyPeriod(2_592_000, 0)
EAR_ID = uuid.UUID("00112233-4455-4677-8899-aabbccddeeff")
T = 1_700_000_000  # 0x6553F100

#: §7.8 by hand: message ID, Date and time, EAR ID, Source Role, Source ID, Target Role, Target ID,
#: Request IE (0x78, length 10: GROUP, Request ID 0x1234, Request Expiry T + 60).
VECTOR = bytes.fromhex(
    "01"  # EAR message ID (WA-SP-17)
    "00 6553F100"  # Date and time: 40-bit big-endian Unix seconds (WA-SP-29)
    "00112233 44554677 8899AABB CCDDEEFF"  # EAR ID (WA-SP-19)
    "02"  # Source Role: MCX server (WA-SP-20)
    "0014 7369703a 6d637840 612e6d63 2e657861 6d706c65"  # LV-E "sip:mcx@a.mc.example"
    "05"  # Target Role: IS proxy
    "0010 7369703a 622e6d63 2e657861 6d706c65"  # LV-E "sip:b.mc.example"
    "78 000A"  # Request IE (WA-SP-16), TLV-E
    "03"  # Request type: GROUP SIGNALLING
    "25 1234"  # Request ID (TV)
    "26 006553F13C"  # Request Expiry (TV), T + 60
)
#: Offset of the Request IE in VECTOR: cutting there leaves a complete payload without Request.
REQUEST_AT = 1 + 5 + 16 + 1 + 2 + 20 + 1 + 2 + 16

PAYLOAD = EarPayload(
    time=T,
    ear_id=EAR_ID,
    source_role=Role.MCX_SERVER,
    source_id=MCX_A,
    target_role=Role.IS_PROXY,
    target_id=B,
    request=RequestPayload(RequestType.GROUP, 0x1234, T + 60),
)


def refused(data: bytes, codes: EarCodePoints = DEFAULT_CODE_POINTS) -> str:
    with pytest.raises(EarError) as caught:
        EarPayload.decode(data, codes)
    assert caught.value.reason == "ear-malformed"
    message = str(caught.value)
    assert "\n" not in message
    return message


def with_request(value: bytes) -> bytes:
    """VECTOR with the Request IE value replaced."""
    return VECTOR[:REQUEST_AT] + b"\x78" + len(value).to_bytes(2, "big") + value


# --- exact layout ------------------------------------------------------------------------------


def test_encoding_matches_the_hand_written_vector() -> None:
    assert REQUEST_AT == 64
    assert PAYLOAD.encode() == VECTOR
    assert EarPayload.decode(VECTOR) == PAYLOAD


def test_offsets_of_the_fixed_part() -> None:
    octets = PAYLOAD.encode()
    assert octets[0] == 0x01
    assert int.from_bytes(octets[1:6], "big") == T
    assert octets[6:22] == EAR_ID.bytes
    assert octets[22] == Role.MCX_SERVER
    assert int.from_bytes(octets[23:25], "big") == len(MCX_A)
    assert octets[REQUEST_AT] == 0x78


def test_request_absent_ends_after_target_id() -> None:
    payload = dataclasses.replace(PAYLOAD, request=None)
    assert payload.encode() == VECTOR[:REQUEST_AT]
    assert EarPayload.decode(VECTOR[:REQUEST_AT]) == payload


@pytest.mark.parametrize(
    ("request_id", "expiry", "value"),
    [
        (None, None, "03"),
        (0, None, "03 25 0000"),
        (None, 0, "03 26 0000000000"),
        (0xFFFF, (1 << 40) - 1, "03 25 FFFF 26 FFFFFFFFFF"),
    ],
)
def test_request_payload_combinations(request_id: int | None, expiry: int | None, value: str) -> None:
    request = RequestPayload(RequestType.GROUP, request_id, expiry)
    encoded = dataclasses.replace(PAYLOAD, request=request).encode()
    assert encoded == with_request(bytes.fromhex(value))
    assert EarPayload.decode(encoded).request == request


@pytest.mark.parametrize("request_type", list(RequestType))
@pytest.mark.parametrize("source_role", list(Role))
def test_every_request_type_and_role_round_trips(request_type: RequestType, source_role: Role) -> None:
    payload = dataclasses.replace(
        PAYLOAD, source_role=source_role, target_role=source_role, request=RequestPayload(request_type)
    )
    decoded = EarPayload.decode(payload.encode())
    assert decoded == payload
    assert isinstance(decoded.request, RequestPayload)
    assert decoded.request.request_type is request_type


def test_every_field_combination_round_trips() -> None:
    ids = [MCX_A, B, "sip:ålice@b.mc.example", "x" * 300]
    requests = [None] + [
        RequestPayload(RequestType.MIGRATION, request_id, expiry)
        for request_id, expiry in itertools.product([None, 7], [None, T + 1])
    ]
    for source_id, target_id, request in itertools.product(ids, ids, requests):
        payload = dataclasses.replace(PAYLOAD, source_id=source_id, target_id=target_id, request=request)
        assert EarPayload.decode(payload.encode()) == payload


def test_time_boundaries() -> None:
    for seconds in (0, 1, (1 << 32) - 1, 1 << 32, (1 << 40) - 1):
        payload = dataclasses.replace(PAYLOAD, time=seconds)
        assert EarPayload.decode(payload.encode()).time == seconds


def test_request_type_from_int_is_coerced_and_reserved_refused() -> None:
    assert RequestPayload(3).request_type is RequestType.GROUP  # type: ignore[arg-type]
    for value in (0x00, 0x04, 0x07, 0xFF):
        with pytest.raises(EarError, match=f"Request type 0x{value:02x} is reserved"):
            RequestPayload(value)  # type: ignore[arg-type]
    for value in (-1, 256):
        with pytest.raises(EarError, match=f"Request type {value} is not an octet"):
            RequestPayload(value)  # type: ignore[arg-type]


# --- configurable code points --------------------------------------------------------------------


def test_code_points_are_configurable() -> None:
    codes = EarCodePoints(message_id=0x42, request_iei=0x7A, request_id_iei=0x31, request_expiry_iei=0x32)
    octets = PAYLOAD.encode(codes)
    assert octets[0] == 0x42
    assert octets[REQUEST_AT : REQUEST_AT + 4] == bytes.fromhex("7A 000A 03")
    assert octets[REQUEST_AT + 4] == 0x31
    assert octets[REQUEST_AT + 7] == 0x32
    assert EarPayload.decode(octets, codes) == PAYLOAD
    assert "EAR message ID 0x42 at offset 0, expected 0x01" in refused(octets)
    assert "EAR message ID 0x01" in refused(VECTOR, codes)


def test_little_endian_time_knob() -> None:
    codes = EarCodePoints(time_byte_order="little")
    octets = PAYLOAD.encode(codes)
    assert octets[1:6] == T.to_bytes(5, "little")
    assert octets[-5:] == (T + 60).to_bytes(5, "little")
    assert EarPayload.decode(octets, codes) == PAYLOAD


def test_known_roles_are_configurable() -> None:
    codes = EarCodePoints(known_roles=frozenset({2, 5, 0x20}))
    payload = dataclasses.replace(PAYLOAD, target_role=0x20)
    assert EarPayload.decode(payload.encode(codes), codes) == payload
    assert "Target Role 0x20 at offset 45 is not a known Role ID" in refused(payload.encode(codes))
    with pytest.raises(EarError, match="Target Role 0x20 is not a known Role ID"):
        payload.encode()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"message_id": 256},
        {"request_iei": -1},
        {"request_id_iei": 0x26},
        {"known_roles": frozenset()},
        {"known_roles": frozenset({0, 1})},
        {"known_roles": {1, 2}},
        {"time_byte_order": "middle"},
    ],
)
def test_bad_code_points_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        EarCodePoints(**kwargs)  # type: ignore[arg-type]


def test_lenient_mode_skips_unknown_ies() -> None:
    codes = EarCodePoints(skip_unknown_ies=True)
    # type 1/2 (bit 8 set), TLV-E (0x7X), TLV (others): before the Request, inside it, after it.
    extra = bytes.fromhex("A1 7F 0002 ABCD 11 01 EE")
    data = VECTOR[:REQUEST_AT] + extra + with_request(bytes.fromhex("03 90 25 1234"))[REQUEST_AT:] + extra
    decoded = EarPayload.decode(data, codes)
    assert decoded.request == RequestPayload(RequestType.GROUP, 0x1234)
    assert "unknown IEI 0xa1 at offset 64" in refused(data)
    assert "length runs past the end" in refused(VECTOR[:REQUEST_AT] + bytes.fromhex("7F 0005 00"), codes)
    assert "truncated" in refused(VECTOR[:REQUEST_AT] + bytes.fromhex("11"), codes)
    assert "truncated" in refused(VECTOR[:REQUEST_AT] + bytes.fromhex("7F 00"), codes)


# --- malformed: each case with its message ---------------------------------------------------------


@pytest.mark.parametrize("value", [0x00, 0x04, 0x07, 0x08, 0x80, 0xFF])
def test_reserved_request_types_refused(value: int) -> None:
    message = refused(with_request(bytes([value])))
    assert message == f"Request type 0x{value:02x} at offset 67 is reserved (Table J.2.3-1)"


@pytest.mark.parametrize(("offset", "name"), [(22, "Source Role"), (45, "Target Role")])
def test_reserved_role_zero_refused(offset: int, name: str) -> None:
    data = bytearray(VECTOR)
    data[offset] = 0
    assert refused(bytes(data)) == f"{name} 0x00 at offset {offset} is reserved (WA-SP-20)"


def test_unknown_role_refused() -> None:
    data = bytearray(VECTOR)
    data[22] = 0x0A
    assert refused(bytes(data)) == "Source Role 0x0a at offset 22 is not a known Role ID (WA-SP-20)"


def test_unknown_iei_refused() -> None:
    assert refused(VECTOR[:REQUEST_AT] + b"\x79\x00\x00") == "unknown IEI 0x79 at offset 64"
    assert (
        refused(with_request(bytes.fromhex("03 27 00"))) == "unknown IEI 0x27 at offset 68 in the Request IE"
    )


def test_request_ies_out_of_order_or_repeated_refused() -> None:
    swapped = bytes.fromhex("03 26 006553F13C 25 1234")
    assert "IEI 0x25 at offset 74 repeated or out of order" in refused(with_request(swapped))
    twice = bytes.fromhex("03 25 1234 25 1234")
    assert "IEI 0x25 at offset 71 repeated or out of order" in refused(with_request(twice))
    assert refused(VECTOR + VECTOR[REQUEST_AT:]) == f"Request IE repeated at offset {len(VECTOR)}"


def test_empty_request_refused() -> None:
    assert refused(with_request(b"")) == "Request IE at offset 64 is empty (Request type is mandatory)"


def test_truncation_at_every_offset() -> None:
    for cut in range(len(VECTOR)):
        if cut == REQUEST_AT:
            continue  # a complete payload without the optional Request IE
        message = refused(VECTOR[:cut])
        assert re.search(r"empty|truncat|runs past the end|is cut|missing", message), (cut, message)


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        (0, "EAR PAYLOAD is empty"),
        (10, "EAR PAYLOAD truncated at offset 10: the fixed part needs 25 octets"),
        (30, "Source ID at offset 23: length 20 runs past the end (5 octets left)"),
        (45, "EAR PAYLOAD truncated at offset 45: Target Role missing"),
        (47, "EAR PAYLOAD truncated at offset 47: the length of Target ID is cut"),
        (66, "Request IE at offset 64 truncated: its 2-octet length is cut"),
        (71, "Request IE at offset 64: length 10 runs past the end (4 octets left)"),
    ],
)
def test_truncation_messages(cut: int, message: str) -> None:
    assert refused(VECTOR[:cut]) == message


def test_truncated_tv_inside_request_refused() -> None:
    assert refused(with_request(bytes.fromhex("03 25 12"))) == (
        "Request ID at offset 68 is truncated: needs 2 octets, 1 left in the Request IE"
    )
    assert "Request Expiry at offset 68 is truncated" in refused(with_request(bytes.fromhex("03 26 0000")))


@pytest.mark.parametrize("garbage", [b"\x00", b"\x78", b"\xff" * 10])
def test_trailing_garbage_refused(garbage: bytes) -> None:
    if garbage == b"\x78":
        assert refused(VECTOR + garbage) == f"Request IE repeated at offset {len(VECTOR)}"
    else:
        assert (
            refused(VECTOR + garbage)
            == f"{len(garbage)} trailing octets at offset {len(VECTOR)} after the Request IE"
        )


@pytest.mark.parametrize(("offset", "name"), [(23, "Source ID"), (46, "Target ID")])
def test_empty_ids_refused(offset: int, name: str) -> None:
    length = int.from_bytes(VECTOR[offset : offset + 2], "big")
    emptied = VECTOR[:offset] + b"\x00\x00" + VECTOR[offset + 2 + length :]
    assert refused(emptied) == f"{name} at offset {offset} is empty (WA-SP-18)"


def test_bad_utf8_refused() -> None:
    data = bytearray(VECTOR)
    data[25 + 4] = 0xC3  # "sip:" then a lone lead byte
    assert refused(bytes(data)) == "Source ID at offset 23 is not UTF-8 (octet 4 of the ID)"
    data = bytearray(VECTOR)
    data[48] = 0xFF
    assert refused(bytes(data)) == "Target ID at offset 46 is not UTF-8 (octet 0 of the ID)"


@pytest.mark.parametrize("text", ["sip:a b@x", "sip:a\tb@x", "sip:a@x\x00", "sip:a@x\u2028", " sip:a@x"])
def test_ids_with_whitespace_or_controls_refused(text: str) -> None:
    octets = text.encode()
    data = VECTOR[:23] + len(octets).to_bytes(2, "big") + octets + VECTOR[45:]
    assert refused(data) == "Source ID holds whitespace or non-printable characters"


def test_lv_e_length_past_the_end_refused() -> None:
    data = bytearray(VECTOR)
    data[46:48] = b"\xff\xff"
    assert refused(bytes(data)) == "Target ID at offset 46: length 65535 runs past the end (29 octets left)"
    data = bytearray(VECTOR)
    data[REQUEST_AT + 1 : REQUEST_AT + 3] = b"\x00\x0b"
    assert refused(bytes(data)) == "Request IE at offset 64: length 11 runs past the end (10 octets left)"


def test_non_bytes_refused() -> None:
    with pytest.raises(EarError, match="an EAR PAYLOAD is bytes, not str"):
        EarPayload.decode("01")  # type: ignore[arg-type]
    assert EarPayload.decode(bytearray(VECTOR)) == PAYLOAD
    assert EarPayload.decode(memoryview(VECTOR)) == PAYLOAD


# --- construction refuses what cannot be encoded ---------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"time": -1}, "Date and time must be whole Unix seconds"),
        ({"time": 1 << 40}, "Date and time must be whole Unix seconds"),
        ({"time": 1.5}, "Date and time must be whole Unix seconds"),
        ({"ear_id": EAR_ID.bytes}, "EAR ID must be a uuid.UUID"),
        ({"source_role": 256}, "source_role must be a Role ID octet"),
        ({"target_role": True}, "target_role must be a Role ID octet"),
        ({"source_id": ""}, "Source ID is empty"),
        ({"target_id": "sip:\udc80@x"}, "Target ID is not encodable as UTF-8"),
        ({"target_id": "x" * 65536}, "more than an LV-E holds"),
        ({"source_id": b"sip:a@b"}, "Source ID must be a str"),
        ({"request": 3}, "request must be a RequestPayload"),
    ],
)
def test_construction_refuses_unencodable_values(change: dict[str, object], message: str) -> None:
    with pytest.raises(EarError, match=re.escape(message)) as caught:
        dataclasses.replace(PAYLOAD, **change)
    assert caught.value.reason == "ear-malformed"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"request_id": 65536}, "Request ID must be an int in 0..65535"),
        ({"request_id": -1}, "Request ID must be an int in 0..65535"),
        ({"expiry": 1 << 40}, "Request Expiry must be whole Unix seconds"),
        ({"request_type": "GROUP"}, "Request type must be a RequestType"),
    ],
)
def test_request_construction_refused(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"request_type": RequestType.GROUP, **kwargs}
    with pytest.raises(EarError, match=re.escape(message)):
        RequestPayload(**arguments)  # type: ignore[arg-type]


def test_new_payload_is_fresh() -> None:
    first = new_payload(source_role=Role.GMS, source_id=MCX_A, target_role=Role.GMS, target_id=B, now=T + 0.9)
    second = new_payload(source_role=Role.GMS, source_id=MCX_A, target_role=Role.GMS, target_id=B)
    assert first.time == T
    assert first.ear_id.version == 4
    assert first.ear_id != second.ear_id
    assert abs(second.time - first.time) > 1_000  # the real clock, not T
    with pytest.raises(EarError, match="now must be finite"):
        new_payload(source_role=1, source_id=MCX_A, target_role=1, target_id=B, now=float("nan"))


# --- signature (WA-SP-24) ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kms() -> tuple[int, ec.Point]:
    return eccsi.generate_kms_keys()


def keys_for(kms: tuple[int, ec.Point], source_id: str, time: int) -> tuple[int, ec.Point]:
    ksak, kpak = kms
    identity = uid(source_id, KMS_A, PERIOD, PERIOD.number_at(ntp_seconds(time)))
    ssk, pvt = eccsi.issue_ssk(ksak, kpak, identity)
    assert pvt is not None
    return ssk, pvt


def test_sign_parse_verify(kms: tuple[int, ec.Point]) -> None:
    ssk, pvt = keys_for(kms, MCX_A, T)
    signed = sign_ear(PAYLOAD, ssk=ssk, pvt=pvt, kpak=kms[1], kms_uri=KMS_A, key_period=PERIOD)
    assert signed.payload_octets == VECTOR
    assert len(signed.signature) == SIGNATURE_LENGTH == 129
    data = signed.to_bytes()
    assert data == VECTOR + signed.signature
    assert data[-65] == 0x04  # r || s || PVT (04 || x || y)
    parsed = parse_signed_ear(data)
    assert parsed == signed
    verify_ear_signature(parsed, kpak=kms[1], kms_uri=KMS_A, key_period=PERIOD)
    verifier = eccsi.Verifier()
    verify_ear_signature(parsed, kpak=kms[1], kms_uri=KMS_A, key_period=PERIOD, verifier=verifier)
    assert len(verifier) == 1
    # The identity is the UID of the Source ID in the period holding the EAR time.
    assert ear.ear_signer_identity(MCX_A, T, kms_uri=KMS_A, key_period=PERIOD) == uid(
        MCX_A, KMS_A, PERIOD, PERIOD.number_at(ntp_seconds(T))
    )


def signature_refusal(signed: SignedEar, kms: tuple[int, ec.Point], **kwargs: object) -> str:
    arguments: dict[str, object] = {"kpak": kms[1], "kms_uri": KMS_A, "key_period": PERIOD, **kwargs}
    with pytest.raises(EarError) as caught:
        verify_ear_signature(signed, **arguments)  # type: ignore[arg-type]
    assert caught.value.reason == "ear-signature"
    return str(caught.value)


def test_signature_refusals(kms: tuple[int, ec.Point]) -> None:
    ssk, pvt = keys_for(kms, MCX_A, T)
    signed = sign_ear(PAYLOAD, ssk=ssk, pvt=pvt, kpak=kms[1], kms_uri=KMS_A, key_period=PERIOD)
    # Any payload octet changed (here the Request ID) breaks the signature.
    tampered = bytearray(signed.to_bytes())
    tampered[REQUEST_AT + 5] ^= 1
    assert "signature-mismatch" in signature_refusal(parse_signed_ear(bytes(tampered)), kms)
    # Another KMS, another KMS URI, another key period scheme, another time (another period).
    other_kpak = eccsi.generate_kms_keys()[1]
    assert "signature-mismatch" in signature_refusal(signed, kms, kpak=other_kpak)
    assert "signature-mismatch" in signature_refusal(signed, kms, kms_uri="kms.b.mc.example")
    assert "signature-mismatch" in signature_refusal(signed, kms, key_period=KeyPeriod(86_400, 0))
    moved = dataclasses.replace(signed, payload=dataclasses.replace(PAYLOAD, time=T + PERIOD.length))
    assert "signature-mismatch" in signature_refusal(moved, kms)
    # Before the first key period: no identity at all.
    late = KeyPeriod(2_592_000, ntp_seconds(T) + 1)
    assert "no signer identity" in signature_refusal(signed, kms, key_period=late)
    # Signature octets out of range.
    zeros = dataclasses.replace(signed, signature=bytes(SIGNATURE_LENGTH))
    assert "r-out-of-range" in signature_refusal(zeros, kms)


def test_signature_by_another_identity_refused(kms: tuple[int, ec.Point]) -> None:
    ssk, pvt = keys_for(kms, "sip:intruder@a.mc.example", T)
    signed = sign_ear(PAYLOAD, ssk=ssk, pvt=pvt, kpak=kms[1], kms_uri=KMS_A, key_period=PERIOD)
    assert "signature-mismatch" in signature_refusal(signed, kms)


def test_sign_refusals(kms: tuple[int, ec.Point]) -> None:
    ssk, pvt = keys_for(kms, MCX_A, T)
    with pytest.raises(EarError, match="no signer identity") as caught:
        sign_ear(PAYLOAD, ssk=ssk, pvt=pvt, kpak=kms[1], kms_uri=KMS_A, key_period=KeyPeriod(10, 1 << 40))
    assert caught.value.reason == "ear-signing"
    with pytest.raises(EarError, match="cannot sign the EAR: ssk-invalid") as caught:
        sign_ear(PAYLOAD, ssk=0, pvt=pvt, kpak=kms[1], kms_uri=KMS_A, key_period=PERIOD)
    assert caught.value.reason == "ear-signing"
    assert hex(ssk)[2:] not in str(caught.value)


def test_parse_signed_ear_refusals() -> None:
    short = VECTOR[: ear.MIN_PAYLOAD_LENGTH - 1] + bytes(SIGNATURE_LENGTH)
    with pytest.raises(EarError, match="shorter than the smallest payload and signature") as caught:
        parse_signed_ear(short)
    assert caught.value.reason == "ear-malformed"
    with pytest.raises(EarError, match="trailing octets"):
        parse_signed_ear(VECTOR + b"\x00" + bytes(SIGNATURE_LENGTH))
    with pytest.raises(EarError, match="is bytes, not str"):
        parse_signed_ear("x")  # type: ignore[arg-type]
    with pytest.raises(EarError, match="signature is 128 octets"):
        SignedEar(PAYLOAD, VECTOR, bytes(128))


# --- carriage (WA-SP-25) -----------------------------------------------------------------------------


def test_header_value_round_trip() -> None:
    assert EAR_HEADER == "MC-EAR"
    data = VECTOR + bytes(range(129))
    text = encode_header_value(data)
    assert text == base64.b64encode(data).decode()
    assert decode_header_value(text) == data
    assert decode_header_value(f" \t{text} ") == data
    signed = SignedEar(PAYLOAD, VECTOR, bytes(range(129)))
    assert encode_header_value(signed) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("  ", "empty"),
        ("QUJD!", "not standard base64"),
        ("QUI", "not standard base64"),  # padding missing
        ("QU-_", "not standard base64"),  # URL-safe alphabet
        ("QUJD\nRA==", "not standard base64"),
        ("QUJDRA==é", "not standard base64"),
        ("QR==", "not canonical base64"),
        ("A" * (MAX_HEADER_VALUE_LENGTH + 4), "longer than 4096"),
        ("A" * 100_000, "longer than 4096"),
    ],
)
def test_header_value_refusals(text: str, message: str) -> None:
    with pytest.raises(EarError, match=message) as caught:
        decode_header_value(text)
    assert caught.value.reason == "ear-malformed"


def test_header_value_too_long_to_encode() -> None:
    with pytest.raises(EarError, match="more than 4096"):
        encode_header_value(bytes(3073))


# --- properties ---------------------------------------------------------------------------------------

_ID_TEXT = st.text(
    alphabet=st.characters(categories=("L", "M", "N", "P", "S")), min_size=1, max_size=40
).filter(lambda text: text.isprintable() and not any(char.isspace() for char in text))
_REQUESTS = st.none() | st.builds(
    RequestPayload,
    st.sampled_from(list(RequestType)),
    st.none() | st.integers(0, 0xFFFF),
    st.none() | st.integers(0, (1 << 40) - 1),
)
PAYLOADS = st.builds(
    EarPayload,
    time=st.integers(0, (1 << 40) - 1),
    ear_id=st.binary(min_size=16, max_size=16).map(lambda octets: uuid.UUID(bytes=octets)),
    source_role=st.sampled_from(list(Role)),
    source_id=_ID_TEXT,
    target_role=st.sampled_from(list(Role)),
    target_id=_ID_TEXT,
    request=_REQUESTS,
)


@settings(max_examples=300, deadline=None)
@given(PAYLOADS)
def test_property_round_trip(payload: EarPayload) -> None:
    octets = payload.encode()
    assert EarPayload.decode(octets) == payload
    assert EarPayload.decode(octets).encode() == octets


def _only_ear_error(function: Callable[[], object]) -> None:
    try:
        function()
    except EarError as error:
        assert error.reason == "ear-malformed"
        assert "\n" not in str(error)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_property_any_bytes_decode_or_ear_error(data: bytes) -> None:
    _only_ear_error(lambda: EarPayload.decode(data))
    _only_ear_error(lambda: EarPayload.decode(data, EarCodePoints(skip_unknown_ies=True)))
    _only_ear_error(lambda: parse_signed_ear(data))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid payload with a few octets replaced, inserted or deleted (reaches the deep branches)."""
    data = bytearray(draw(PAYLOADS).encode())
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["replace", "insert", "delete"]))
        at = draw(st.integers(0, len(data)))
        if kind == "insert":
            data.insert(at, draw(st.integers(0, 255)))
        elif data and at < len(data):
            if kind == "replace":
                data[at] = draw(st.integers(0, 255))
            else:
                del data[at]
    return bytes(data)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(), st.booleans())
def test_property_mutated_payloads_decode_or_ear_error(data: bytes, lenient: bool) -> None:
    codes = EarCodePoints(skip_unknown_ies=lenient)
    _only_ear_error(lambda: EarPayload.decode(data, codes))
    _only_ear_error(lambda: parse_signed_ear(data + bytes(SIGNATURE_LENGTH), codes))


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=300) | st.binary(max_size=200).map(lambda octets: base64.b64encode(octets).decode()))
def test_property_any_text_header_or_ear_error(text: str) -> None:
    _only_ear_error(lambda: decode_header_value(text))


@pytest.fixture(scope="module")
def mcx_keys(kms: tuple[int, ec.Point]) -> tuple[int, ec.Point]:
    return keys_for(kms, MCX_A, T)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(PAYLOADS)
def test_property_sign_header_verify(
    kms: tuple[int, ec.Point], mcx_keys: tuple[int, ec.Point], generated: EarPayload
) -> None:
    payload = dataclasses.replace(generated, source_id=MCX_A, time=T)
    ssk, pvt = mcx_keys
    signed = sign_ear(payload, ssk=ssk, pvt=pvt, kpak=kms[1], kms_uri=KMS_A, key_period=PERIOD)
    received = parse_signed_ear(decode_header_value(encode_header_value(signed)))
    assert received == signed
    verify_ear_signature(received, kpak=kms[1], kms_uri=KMS_A, key_period=PERIOD)
