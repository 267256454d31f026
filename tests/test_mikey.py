"""MIKEY-SAKKE I_MESSAGE (crypto/mikey.py; spec/crypto.md §5, §6, §7).

Codec: a known-answer encoding of every payload, round trips of every payload type, hypothesis on
arbitrary octets and on mutated messages (only ``MikeyError``; whatever parses encodes back to the
same octets), every truncation, every refusal reason.  Profile: make → open with keys issued in
process by two KMSs (ECCSI ``issue_ssk``, SAKKE ``issue_rsk``), in both directions, a GMK under a
GUK-ID, the signature coverage (SIGN header included), the order "signature before
decapsulation", and the negative cases of spec/crypto.md §7.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcinterconnect.crypto import ec, eccsi, keyids, mikey, sakke, uid
from mcinterconnect.crypto.keyids import Purpose
from mcinterconnect.crypto.mikey import (
    CsIdMapType,
    ExtensionType,
    GeneralExtension,
    GenericIdEntry,
    Hdr,
    Idr,
    IdRole,
    IdType,
    IMessage,
    MikeyError,
    PolicyParam,
    Rand,
    Sakke,
    SecurityPolicy,
    Sign,
    SrtpIdEntry,
    Timestamp,
    TsType,
)
from mcinterconnect.crypto.uid import KeyPeriod

NOW = 1_750_000_000.0  # 2025-06-15T15:06:40Z
PERIOD_A = KeyPeriod(2_592_000, 0)  # 30 days
PERIOD_B = KeyPeriod(604_800, 3_600)  # 7 days, shifted by an hour
ALICE = "sip:alice@a.mc.example"
BOB = "sip:bob@b.mc.example"
KMS_A = "kms.a.mc.example"
KMS_B = "kms.b.mc.example"
SSV = bytes.fromhex("00112233445566778899aabbccddeeff")
PCK_ID = 0x1234ABCD  # purpose tag 1 (PCK)
DUMMY_SIGNATURE = bytes(range(129))


def _number(period: KeyPeriod, unix: float = NOW) -> int:
    return period.number_at(uid.ntp_seconds(unix))


@dataclasses.dataclass(frozen=True)
class Kms:
    uri: str
    period: KeyPeriod
    ksak: int
    kpak: ec.Point
    z: int
    Z: ec.Point

    def uid(self, user: str, number: int | None = None) -> bytes:
        return uid.uid(user, self.uri, self.period, _number(self.period) if number is None else number)

    def ssk(self, user: str, number: int | None = None) -> tuple[int, ec.Point]:
        return eccsi.issue_ssk(self.ksak, self.kpak, self.uid(user, number))

    def rsk(self, user: str, number: int | None = None) -> ec.Point:
        return sakke.issue_rsk(self.z, self.uid(user, number))


def _kms(uri: str, period: KeyPeriod) -> Kms:
    ksak, kpak = eccsi.generate_kms_keys()
    z, big_z = sakke.generate_master_secret()
    return Kms(uri, period, ksak, kpak, z, big_z)


@pytest.fixture(scope="module")
def kms_a() -> Kms:
    return _kms(KMS_A, PERIOD_A)


@pytest.fixture(scope="module")
def kms_b() -> Kms:
    return _kms(KMS_B, PERIOD_B)


@dataclasses.dataclass(frozen=True)
class Pair:
    """Alice (KMS A) sends to Bob (KMS B): the keys of both for the period of NOW."""

    a: Kms
    b: Kms
    ssk: int
    pvt: ec.Point
    rsk: ec.Point

    def make(self, **overrides: Any) -> bytes:
        arguments: dict[str, Any] = {
            "ssv": SSV,
            "key_id": PCK_ID,
            "initiator_uri": ALICE,
            "responder_uri": BOB,
            "initiator_kms_uri": self.a.uri,
            "responder_kms_uri": self.b.uri,
            "initiator_period": self.a.period,
            "responder_period": self.b.period,
            "ssk": self.ssk,
            "pvt": self.pvt,
            "kpak": self.a.kpak,
            "responder_z": self.b.Z,
            "timestamp": NOW,
            "rand": bytes(16),
        }
        arguments.update(overrides)
        return mikey.make_i_message(**arguments)

    def open(self, data: bytes, **overrides: Any) -> mikey.OpenedKey:
        arguments: dict[str, Any] = {
            "initiator_kpak": self.a.kpak,
            "initiator_period": self.a.period,
            "responder_period": self.b.period,
            "responder_rsk": self.rsk,
            "responder_z": self.b.Z,
            "expected_responder_uri": BOB,
            "now": NOW,
        }
        arguments.update(overrides)
        return mikey.open_i_message(data, **arguments)

    def resign(self, message: IMessage, payloads: tuple[mikey.Payload, ...] | None = None) -> bytes:
        """``message`` with other payloads, signed again by Alice (a valid signature)."""
        signed = mikey.sign_i_message(
            message.hdr,
            message.payloads if payloads is None else payloads,
            identity=self.a.uid(ALICE),
            ssk=self.ssk,
            pvt=self.pvt,
            kpak=self.a.kpak,
        )
        return mikey.encode_i_message(signed)


@pytest.fixture(scope="module")
def pair(kms_a: Kms, kms_b: Kms) -> Pair:
    ssk, pvt = kms_a.ssk(ALICE)
    return Pair(kms_a, kms_b, ssk, pvt, kms_b.rsk(BOB))


@pytest.fixture(scope="module")
def valid(pair: Pair) -> bytes:
    return pair.make()


def _reason(call: Callable[[], object]) -> str:
    with pytest.raises(MikeyError) as caught:
        call()
    message = str(caught.value)
    assert message and "\n" not in message
    return caught.value.reason


def _replace(message: IMessage, kind: type, new: mikey.Payload | None) -> tuple[mikey.Payload, ...]:
    out = []
    for payload in message.payloads:
        if type(payload) is kind:
            if new is not None:
                out.append(new)
        else:
            out.append(payload)
    return tuple(out)


def _flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    return data[:index] + bytes((data[index] ^ mask,)) + data[index + 1 :]


# --- the codec: known answers --------------------------------------------------------------------


def _sakke_data() -> bytes:
    return b"\x04" + bytes(range(256)) + bytes(16)


def test_known_answer_encoding_of_every_payload() -> None:
    sakke_data = _sakke_data()
    message = IMessage(
        Hdr(csb_id=0x0DF9BC39),
        (
            Timestamp(0x0102030405060708),
            Rand(bytes(range(16))),
            Idr.uri(IdRole.IDRI, "sip:a"),
            SecurityPolicy(0, 0, (PolicyParam(1, b"\x10"),)),
            Sakke(sakke_data),
            GeneralExtension(ExtensionType.KEY_PARAMETERS, b"\xaa\xbb"),
        ),
        Sign(DUMMY_SIGNATURE),
    )
    expected = (
        # HDR: version 1, data type 26, next T (5), V 0 | PRF 1, CSB ID, #CS 0, empty map (1)
        bytes.fromhex("011a0501")
        + bytes.fromhex("0df9bc39")
        + bytes.fromhex("0001")
        # T: next RAND (11), NTP-UTC (0), 64-bit value
        + bytes.fromhex("0b00")
        + bytes.fromhex("0102030405060708")
        # RAND: next IDR (14), length 16
        + bytes.fromhex("0e10")
        + bytes(range(16))
        # IDR: next SP (10), role IDRi 1, type URI 1, length 5
        + bytes.fromhex("0a01010005")
        + b"sip:a"
        # SP: next SAKKE (26), policy 0, SRTP 0, params length 3, (type 1, length 1, 0x10)
        + bytes.fromhex("1a00000003")
        + bytes.fromhex("010110")
        # SAKKE: next general extension (21), params 1, ID scheme 2, length 273
        + bytes.fromhex("1501020111")
        + sakke_data
        # general extension: next SIGN (4), type 7, length 2
        + bytes.fromhex("04070002aabb")
        # SIGN: S type 2 (ECCSI) in the top 4 bits, length 129 in 12 bits
        + bytes.fromhex("2081")
        + DUMMY_SIGNATURE
    )
    assert mikey.encode_i_message(message) == expected
    assert mikey.parse_i_message(expected) == message
    assert mikey.to_be_signed(message.hdr, message.payloads) == expected[: -len(DUMMY_SIGNATURE)]


def test_generic_id_and_srtp_id_maps_encode_as_rfc_6043_and_3830() -> None:
    generic = GenericIdEntry(4, 0, True, (0, 7), b"\x01\x02\x03\x04", b"\x0d\xf9\xbc\x39\x06\xa1\x2a\xea")
    hdr = Hdr(csb_id=1, cs_id_map_type=CsIdMapType.GENERIC_ID, cs_id_map=(generic,))
    body = mikey.to_be_signed(hdr, (Timestamp(0), Rand(bytes(16)), Sakke(_sakke_data())))
    # CS ID 4, prot type 0, S=1 #P=2, policies 0 7, session data length 4 + data, SPI length 8 + SPI
    assert body[8:10] == bytes((1, 2))
    assert body[10:].startswith(bytes.fromhex("04 00 82 00 07 0004 01020304 08 0df9bc3906a12aea"))
    srtp = Hdr(csb_id=1, cs_id_map_type=CsIdMapType.SRTP_ID, cs_id_map=(SrtpIdEntry(3, 0xAABBCCDD, 5),))
    body = mikey.to_be_signed(srtp, (Timestamp(0), Rand(bytes(16)), Sakke(_sakke_data())))
    assert body[8:19] == bytes.fromhex("0100 03 aabbccdd 00000005")


# --- the codec: round trips ------------------------------------------------------------------------


ALL_PAYLOADS_MESSAGES = [
    IMessage(
        Hdr(csb_id=0, cs_id_map_type=CsIdMapType.EMPTY, cs_count=3, prf=0),
        (
            Timestamp(0xFFFFFFFF, TsType.COUNTER),
            Rand(bytes(255)),
            Sakke(_sakke_data()),
        ),
        Sign(DUMMY_SIGNATURE),
    ),
    IMessage(
        Hdr(
            csb_id=0xFFFFFFFF,
            cs_id_map_type=CsIdMapType.GENERIC_ID,
            cs_id_map=(GenericIdEntry(4, 0, False, (), b"", b"12345678"), GenericIdEntry(6, 2, True, (1,))),
        ),
        (
            Idr(IdRole.UID_I, bytes(32), IdType.BYTE_STRING),
            Timestamp(12345, TsType.NTP_UTC_32),
            Idr.uri(IdRole.IDRI, ALICE),
            Idr.uri(IdRole.IDRR, BOB),
            Idr.uri(IdRole.IDRKMSI, KMS_A),
            Idr.uri(IdRole.IDRKMSR, KMS_B),
            Idr(IdRole.UID_R, bytes(range(32)), IdType.BYTE_STRING),
            Idr(IdRole.IDRKMS, b"nai@realm", IdType.NAI),
            SecurityPolicy(1, 0, (PolicyParam(0, b"\x06"), PolicyParam(20, b"\x10"), PolicyParam(3, b""))),
            SecurityPolicy(2, 1, ()),
            Rand(bytes(range(16))),
            Sakke(_sakke_data()),
            GeneralExtension(ExtensionType.SAKKE_TO_SELF, b"\x00" * 278),
            GeneralExtension(ExtensionType.KEY_PARAMETERS, b"opaque"),
            GeneralExtension(0, b""),
        ),
        Sign(DUMMY_SIGNATURE),
    ),
    IMessage(
        Hdr(
            csb_id=7,
            cs_id_map_type=CsIdMapType.SRTP_ID,
            cs_id_map=(SrtpIdEntry(0, 1, 2), SrtpIdEntry(255, 0, 0)),
        ),
        (Sakke(_sakke_data()), Rand(bytes(16)), Timestamp(1 << 63, TsType.NTP)),
        Sign(DUMMY_SIGNATURE),
    ),
]


@pytest.mark.parametrize("message", ALL_PAYLOADS_MESSAGES)
def test_every_payload_type_round_trips(message: IMessage) -> None:
    data = mikey.encode_i_message(message)
    assert mikey.parse_i_message(data) == message
    assert mikey.encode_i_message(mikey.parse_i_message(data)) == data


def test_a_made_message_round_trips_and_holds_the_3gpp_payloads(valid: bytes) -> None:
    message = mikey.parse_i_message(valid)
    assert mikey.encode_i_message(message) == valid
    assert [type(p).__name__ for p in message.payloads] == [
        "Timestamp", "Rand", "Idr", "Idr", "Idr", "Idr", "Sakke",
    ]  # fmt: skip
    assert [(p.role, p.text()) for p in message.idrs] == [
        (IdRole.IDRI, ALICE), (IdRole.IDRR, BOB), (IdRole.IDRKMSI, KMS_A), (IdRole.IDRKMSR, KMS_B),
    ]  # fmt: skip
    hdr = message.hdr
    assert (hdr.version, hdr.data_type, hdr.v, hdr.prf, hdr.csb_id) == (1, 26, False, 1, PCK_ID)
    assert (hdr.cs_count, hdr.cs_id_map_type) == (0, CsIdMapType.EMPTY)
    assert message.timestamp.ts_type == TsType.NTP_UTC
    assert message.timestamp.utc_seconds()[1] == pytest.approx(NOW, abs=1e-6)
    assert (message.sakke.params, message.sakke.id_scheme, len(message.sakke.data)) == (1, 2, 273)
    assert message.rand.value == bytes(16)


_octets = st.binary(max_size=40)
_payloads = st.one_of(
    st.builds(Timestamp, st.integers(0, 2**32 - 1), st.sampled_from(list(TsType))),
    st.builds(
        Idr,
        st.sampled_from(list(IdRole)),
        _octets,
        st.sampled_from(list(IdType)),
    ),
    st.builds(
        SecurityPolicy,
        st.integers(0, 255),
        st.integers(0, 255),
        st.lists(st.builds(PolicyParam, st.integers(0, 255), _octets), max_size=3).map(tuple),
    ),
    st.builds(GeneralExtension, st.integers(0, 255), _octets),
)
_hdrs = st.one_of(
    st.builds(
        Hdr,
        st.integers(0, 2**32 - 1),
        st.just(1),
        st.just(()),
        st.integers(0, 255),
        prf=st.sampled_from([0, 1]),
    ),
    st.builds(
        Hdr,
        st.integers(0, 2**32 - 1),
        st.just(2),
        st.lists(
            st.builds(
                GenericIdEntry,
                st.integers(0, 255),
                st.integers(0, 255),
                st.booleans(),
                st.lists(st.integers(0, 255), max_size=4).map(tuple),
                _octets,
                _octets,
            ),
            max_size=3,
        ).map(tuple),
    ),
    st.builds(
        Hdr,
        st.integers(0, 2**32 - 1),
        st.just(0),
        st.lists(
            st.builds(SrtpIdEntry, st.integers(0, 255), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
            max_size=3,
        ).map(tuple),
    ),
)


@st.composite
def _messages(draw: st.DrawFn) -> IMessage:
    extra = draw(st.lists(_payloads, max_size=6))
    seen: set[int] = set()
    payloads: list[mikey.Payload] = []
    for payload in extra:
        if isinstance(payload, Timestamp) or (isinstance(payload, Idr) and payload.role in seen):
            continue
        if isinstance(payload, Idr):
            seen.add(payload.role)
        payloads.append(payload)
    mandatory = [
        draw(st.builds(Timestamp, st.integers(0, 2**64 - 1))),
        Rand(draw(st.binary(min_size=16, max_size=32))),
        Sakke(draw(st.binary(min_size=273, max_size=273))),
    ]
    for item in mandatory:
        payloads.insert(draw(st.integers(0, len(payloads))), item)
    return IMessage(draw(_hdrs), tuple(payloads), Sign(draw(st.binary(min_size=129, max_size=129))))


@given(_messages())
@settings(max_examples=150, deadline=None)
def test_structured_messages_round_trip(message: IMessage) -> None:
    data = mikey.encode_i_message(message)
    assert mikey.parse_i_message(data) == message


@given(st.binary(max_size=700))
@settings(max_examples=400, deadline=None)
def test_any_octets_give_an_imessage_or_mikey_error(data: bytes) -> None:
    try:
        message = mikey.parse_i_message(data)
    except MikeyError as error:
        assert error.reason and "\n" not in str(error)
        return
    assert mikey.encode_i_message(message) == data


@given(st.data())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_mutated_messages_give_an_imessage_or_mikey_error(valid: bytes, data: st.DataObject) -> None:
    mutated = bytearray(valid)
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(mutated) - 1))
        mutated[index] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(mutated)))
        mutated = mutated[:cut] + bytearray(data.draw(st.binary(max_size=8)))
    try:
        message = mikey.parse_i_message(bytes(mutated))
    except MikeyError:
        return
    assert mikey.encode_i_message(message) == bytes(mutated)


def test_every_truncation_is_refused(valid: bytes) -> None:
    reasons = set()
    for end in range(len(valid)):
        reasons.add(_reason(lambda end=end: mikey.parse_i_message(valid[:end])))
    assert reasons == {"truncated"}


def test_trailing_octets_after_sign_are_refused(valid: bytes) -> None:
    assert _reason(lambda: mikey.parse_i_message(valid + b"\x00")) == "trailing-octets"


# --- the codec: refusals -----------------------------------------------------------------------------


def _chain(parts: list[tuple[int, bytes]], *, hdr_tail: bytes = bytes.fromhex("01 00000001 00 01")) -> bytes:
    """HDR + payload bodies linked by their next payload octets: [(type, body without next)]."""
    out = bytearray(bytes((1, 26, parts[0][0] if parts else 0)) + hdr_tail)
    for index, (kind, body) in enumerate(parts):
        if kind == mikey.PayloadType.SIGN:
            out += body
            continue
        following = parts[index + 1][0] if index + 1 < len(parts) else 0
        out += bytes((following,)) + body
    return bytes(out)


T_BODY = bytes.fromhex("00 0102030405060708")
RAND_BODY = bytes((16,)) + bytes(16)
SAKKE_BODY = bytes.fromhex("01 02 0111") + _sakke_data()
SIGN_BODY = bytes.fromhex("2081") + DUMMY_SIGNATURE
PT = mikey.PayloadType


def _base(*middle: tuple[int, bytes]) -> list[tuple[int, bytes]]:
    return [(PT.T, T_BODY), (PT.RAND, RAND_BODY), *middle, (PT.SAKKE, SAKKE_BODY), (PT.SIGN, SIGN_BODY)]


def test_the_chain_helper_builds_a_parsable_message() -> None:
    message = mikey.parse_i_message(_chain(_base()))
    assert message.hdr.csb_id == 1


@pytest.mark.parametrize(
    ("data", "reason", "words"),
    [
        (b"", "truncated", "HDR"),
        (_chain(_base())[:9], "truncated", "HDR"),
        (bytes((2,)) + _chain(_base())[1:], "version", "version 2"),
        (bytes((1, 0)) + _chain(_base())[2:], "data-type", "wrong data type 0"),
        (_chain(_base())[:3] + bytes((0x81,)) + _chain(_base())[4:], "v-bit", "V bit"),
        (_chain(_base())[:3] + bytes((0x02,)) + _chain(_base())[4:], "prf", "PRF"),
        (_chain(_base(), hdr_tail=bytes.fromhex("01 00000001 00 03")), "cs-id-map", "map type 3"),
        (_chain(_base(), hdr_tail=bytes.fromhex("01 00000001 01 02")), "truncated", "HDR"),
        (_chain([(99, b""), *_base()]), "unknown-payload", "unknown next payload type 99"),
        (_chain([(7, b""), *_base()]), "unknown-payload", "CERT"),
        (_chain([(PT.T, bytes.fromhex("04 01020304")), *_base()[1:]]), "ts-type", "TS type 4"),
        (_chain([(PT.T, T_BODY), (PT.RAND, bytes((15,)) + bytes(15)), *_base()[2:]]), "rand-length", "RAND"),
        (_chain(_base((PT.IDR, bytes.fromhex("0a 01 0000")))), "idr-role", "role 10"),
        (_chain(_base((PT.IDR, bytes.fromhex("01 03 0000")))), "idr-type", "type 3"),
        (
            _chain(_base((PT.IDR, bytes.fromhex("01 01 0000")), (PT.IDR, bytes.fromhex("01 01 0001 61")))),
            "duplicate-idr",
            "(IDRi) appears twice",
        ),
        (_chain([*_base()[:1], *_base()]), "duplicate-payload", "T"),
        (_chain([(PT.T, T_BODY), (PT.SAKKE, SAKKE_BODY), (PT.SIGN, SIGN_BODY)]), "missing-payload", "RAND"),
        (_chain(_base()[:-1]), "missing-payload", "SIGN"),
        (
            _chain([*_base()[:2], (PT.SAKKE, bytes.fromhex("02 02 0111") + _sakke_data()), _base()[-1]]),
            "sakke-params",
            "params 2",
        ),
        (
            _chain([*_base()[:2], (PT.SAKKE, bytes.fromhex("01 01 0111") + _sakke_data()), _base()[-1]]),
            "sakke-id-scheme",
            "ID scheme 1",
        ),
        (
            _chain([*_base()[:2], (PT.SAKKE, bytes.fromhex("01 02 0110") + _sakke_data()[:-1]), _base()[-1]]),
            "sakke-length",
            "272",
        ),
        (
            _chain([*_base()[:-1], (PT.SIGN, bytes.fromhex("1081") + DUMMY_SIGNATURE)]),
            "sign-type",
            "S type 1",
        ),
        (
            _chain([*_base()[:-1], (PT.SIGN, bytes.fromhex("2080") + DUMMY_SIGNATURE[:-1])]),
            "sign-length",
            "128",
        ),
        (
            _chain([*_base()[:-1], (PT.SIGN, bytes.fromhex("2082") + DUMMY_SIGNATURE + b"\x00")]),
            "sign-length",
            "130",
        ),
        (_chain(_base((PT.SP, bytes.fromhex("00 00 0003 01 05 00")))), "truncated", "SP"),
        (
            _chain(_base((PT.GENERAL_EXTENSION, bytes.fromhex("07 ffff 00")))),
            "truncated",
            "general extension",
        ),
        (_chain(_base()) + b"\x00\x00", "trailing-octets", "after SIGN"),
    ],
)
def test_codec_refusals_name_the_payload_and_the_fault(data: bytes, reason: str, words: str) -> None:
    with pytest.raises(MikeyError) as caught:
        mikey.parse_i_message(data)
    assert caught.value.reason == reason
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "build",
    [
        lambda: Sign(bytes(128)),
        lambda: Sign(DUMMY_SIGNATURE, s_type=1),
        lambda: Sakke(_sakke_data(), id_scheme=1),
        lambda: Sakke(_sakke_data(), params=2),
        lambda: Sakke(bytes(272)),
        lambda: Rand(bytes(15)),
        lambda: Idr(10, b""),
        lambda: Hdr(csb_id=1 << 32),
        lambda: Hdr(csb_id=1, v=True),
        lambda: Hdr(csb_id=1, data_type=27),
        lambda: Hdr(csb_id=1, cs_id_map_type=2, cs_id_map=(SrtpIdEntry(0, 0, 0),)),
        lambda: Hdr(csb_id=1, cs_id_map_type=1, cs_id_map=(GenericIdEntry(0),)),
        lambda: Timestamp(1 << 32, TsType.COUNTER),
        lambda: IMessage(Hdr(csb_id=1), (Timestamp(0), Rand(bytes(16))), Sign(DUMMY_SIGNATURE)),
        lambda: IMessage(
            Hdr(csb_id=1),
            (Timestamp(0), Rand(bytes(16)), Sakke(_sakke_data()), Idr(1, b"a"), Idr(1, b"b")),
            Sign(DUMMY_SIGNATURE),
        ),
    ],
)
def test_payload_objects_refuse_what_cannot_be_sent(build: Callable[[], object]) -> None:
    _reason(build)


# --- SDP ---------------------------------------------------------------------------------------------


def test_sdp_key_mgmt_round_trip(valid: bytes) -> None:
    text = mikey.to_sdp_key_mgmt(valid)
    assert text == "mikey " + base64.b64encode(valid).decode()
    assert mikey.from_sdp_key_mgmt(text) == valid
    assert mikey.from_sdp_key_mgmt(f"a=key-mgmt:{text}\r\n") == valid


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("mikey !!!!", "base64"),
        ("mikey AAA", "base64"),
        ("mikey ", "sdp-format"),
        ("zrtp AAAA", "sdp-format"),
        ("a=key-mgmt:mikey AAAA extra", "sdp-format"),
        ("mikey ====", "base64"),
    ],
)
def test_sdp_key_mgmt_refusals(text: str, reason: str) -> None:
    assert _reason(lambda: mikey.from_sdp_key_mgmt(text)) == reason


# --- make → open ----------------------------------------------------------------------------------


def test_make_then_open_gives_back_the_key(pair: Pair, valid: bytes) -> None:
    opened = pair.open(valid)
    assert opened.key == SSV
    assert (opened.key_id, opened.purpose) == (PCK_ID, Purpose.PCK)
    assert (opened.initiator_uri, opened.responder_uri) == (ALICE, BOB)
    assert opened.initiator_uid == pair.a.uid(ALICE)
    assert opened.responder_uid == pair.b.uid(BOB)
    assert opened.timestamp == pytest.approx(NOW, abs=1e-6)
    assert opened.period_number == _number(PERIOD_B)
    assert opened.gmk_id is None
    assert SSV.hex() not in repr(opened) and repr(SSV) not in repr(opened)


def test_both_directions_between_two_kms(kms_a: Kms, kms_b: Kms) -> None:
    for sender, receiver, initiator, responder in ((kms_b, kms_a, BOB, ALICE), (kms_a, kms_b, ALICE, BOB)):
        ssk, pvt = sender.ssk(initiator)
        data = mikey.make_i_message(
            ssv=SSV[::-1],
            key_id=keyids.new_key_id(Purpose.CSK),
            initiator_uri=initiator,
            responder_uri=responder,
            initiator_kms_uri=sender.uri,
            responder_kms_uri=receiver.uri,
            initiator_period=sender.period,
            responder_period=receiver.period,
            ssk=ssk,
            pvt=pvt,
            kpak=sender.kpak,
            responder_z=receiver.Z,
            timestamp=NOW,
        )
        opened = mikey.open_i_message(
            data,
            initiator_kpak=sender.kpak,
            initiator_period=sender.period,
            responder_period=receiver.period,
            responder_rsk=receiver.rsk(responder),
            responder_z=receiver.Z,
            now=NOW + 10,
            verifier=eccsi.Verifier(),
        )
        assert (opened.key, opened.purpose) == (SSV[::-1], Purpose.CSK)


def test_gmk_under_a_guk_id(pair: Pair) -> None:
    gmk = bytes.fromhex("07d1a1677ac36d8e81620484689b3c2d")
    gmk_id = 0x0DF9BC39
    guk = keyids.guk_id(gmk, gmk_id, BOB)
    session = GenericIdEntry(4, 0, False, (), b"", gmk_id.to_bytes(4, "big") + guk.to_bytes(4, "big"))
    data = pair.make(ssv=gmk, key_id=guk, crypto_sessions=(session,))
    opened = pair.open(data)
    assert opened.key == gmk
    assert opened.key_id == guk
    assert opened.purpose == Purpose.GMK
    assert opened.gmk_id == gmk_id
    assert opened.message.hdr.cs_id_map == (session,)


def test_gmk_id_vector_of_spec_6_4() -> None:
    gmk = bytes.fromhex("07d1a1677ac36d8e81620484689b3c2d")
    assert keyids.guk_id(gmk, 0x0DF9BC39, "sip:alice@streamwide.com") == 0x06A12AEA


def test_policies_and_extensions_travel_signed(pair: Pair) -> None:
    policy = SecurityPolicy(0, 0, (PolicyParam(0, b"\x06"), PolicyParam(1, b"\x10")))
    extension = GeneralExtension(ExtensionType.KEY_PARAMETERS, b"protected payload")
    opened = pair.open(pair.make(policies=(policy,), extensions=(extension,)))
    assert opened.message.policies == (policy,)
    assert opened.message.extensions == (extension,)


def test_ntp_utc_32_timestamp_is_accepted(pair: Pair, valid: bytes) -> None:
    message = mikey.parse_i_message(valid)
    t32 = Timestamp(uid.ntp_seconds(NOW) & 0xFFFFFFFF, TsType.NTP_UTC_32)
    opened = pair.open(pair.resign(message, _replace(message, Timestamp, t32)))
    assert opened.key == SSV
    assert opened.timestamp == float(int(NOW))


# --- the signature ---------------------------------------------------------------------------------


def test_signature_covers_the_sign_header(pair: Pair, valid: bytes) -> None:
    signature = valid[-129:]
    identity = pair.a.uid(ALICE)
    signed = valid[:-129]
    assert signed[-2:] == bytes.fromhex("2081")
    eccsi.verify(signed, signature, identity, pair.a.kpak)
    # Signing only the octets before the SIGN payload does not give this signature.
    with pytest.raises(eccsi.EccsiError):
        eccsi.verify(signed[:-2], signature, identity, pair.a.kpak)
    # Any bit of the two header octets is covered.
    for bit in range(16):
        altered = _flip(signed, len(signed) - 2 + bit // 8, 1 << (bit % 8))
        with pytest.raises(eccsi.EccsiError) as caught:
            eccsi.verify(altered, signature, identity, pair.a.kpak)
        assert caught.value.reason == "signature-mismatch"
        # Through the message: the altered header is refused, by the parser or the signature.
        assert _reason(lambda altered=altered: pair.open(altered + signature)) in {
            "sign-type", "sign-length", "truncated", "signature-invalid", "trailing-octets",
        }  # fmt: skip


@pytest.mark.parametrize("index", [0, 31, 32, 63, 64, 100, 128])
def test_tampered_signature_is_refused(pair: Pair, valid: bytes, index: int) -> None:
    tampered = _flip(valid, len(valid) - 129 + index)
    assert _reason(lambda: pair.open(tampered)) == "signature-invalid"


def test_every_signed_octet_is_covered(pair: Pair, valid: bytes) -> None:
    # A sample of positions across every payload; each flip is refused one way or another.
    for index in range(0, len(valid) - 129, 7):
        assert _reason(lambda index=index: pair.open(_flip(valid, index))) != ""


def test_signature_is_checked_before_decapsulation(
    pair: Pair, valid: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bytes] = []
    real = sakke.decapsulate

    def spy(data: bytes, identifier: sakke.Identifier, rsk: ec.Point, big_z: ec.Point) -> bytes:
        calls.append(data)
        return real(data, identifier, rsk, big_z)

    monkeypatch.setattr(sakke, "decapsulate", spy)
    message = mikey.parse_i_message(valid)
    sakke_data = message.sakke.data
    tampered_sakke = valid.replace(sakke_data, _flip(sakke_data, 200))
    for bad in (_flip(valid, len(valid) - 1), _flip(valid, len(valid) - 129), tampered_sakke):
        assert _reason(lambda bad=bad: pair.open(bad)) == "signature-invalid"
    assert _reason(lambda: pair.open(valid, initiator_kpak=pair.b.kpak)) == "signature-invalid"
    assert calls == []
    assert pair.open(valid).key == SSV
    assert calls == [sakke_data]


def test_wrong_initiator_kpak_is_refused(pair: Pair, valid: bytes) -> None:
    with pytest.raises(MikeyError) as caught:
        pair.open(valid, initiator_kpak=pair.b.kpak)
    assert str(caught.value) == "signature invalid: signature-mismatch"


def test_wrong_key_period_is_refused(pair: Pair, valid: bytes) -> None:
    number = _number(PERIOD_B)
    assert pair.open(valid, period_number=number).key == SSV
    for wrong in (number - 1, number + 1):
        assert _reason(lambda wrong=wrong: pair.open(valid, period_number=wrong)) == "key-period"
    # The initiator's UID of another period (another period length) does not verify.
    assert _reason(lambda: pair.open(valid, initiator_period=KeyPeriod(2_592_001, 0))) == "signature-invalid"
    # An SSK of the next period signs, but under another UID: refused at make time.
    ssk, pvt = pair.a.ssk(ALICE, _number(PERIOD_A) + 1)
    assert _reason(lambda: pair.make(ssk=ssk, pvt=pvt)) == "signing-key"


def test_a_timestamp_before_the_first_key_period_is_refused(pair: Pair, valid: bytes) -> None:
    late_start = KeyPeriod(1000, uid.ntp_seconds(NOW) + 10)
    assert _reason(lambda: pair.open(valid, responder_period=late_start)) == "key-period"


# --- SAKKE -------------------------------------------------------------------------------------------


def test_tampered_sakke_data_fails_the_test_check(pair: Pair, valid: bytes) -> None:
    message = mikey.parse_i_message(valid)
    data = message.sakke.data
    for index in (1, 200, 272):  # R_b x, R_b y, H
        resigned = pair.resign(message, _replace(message, Sakke, Sakke(_flip(data, index))))
        reason = _reason(lambda resigned=resigned: pair.open(resigned))
        assert reason == "sakke-invalid"
    resigned = pair.resign(message, _replace(message, Sakke, Sakke(_flip(data, 272))))
    with pytest.raises(MikeyError) as caught:
        pair.open(resigned)
    assert str(caught.value) == "SAKKE data refused: test-failed"


def test_r_b_off_the_curve_is_refused(pair: Pair, valid: bytes) -> None:
    message = mikey.parse_i_message(valid)
    data = message.sakke.data
    length = sakke.FIELD_LENGTH
    y = int.from_bytes(data[1 + length : 1 + 2 * length], "big")
    off = data[: 1 + length] + ((y + 1) % sakke.p).to_bytes(length, "big") + data[1 + 2 * length :]
    resigned = pair.resign(message, _replace(message, Sakke, Sakke(off)))
    with pytest.raises(MikeyError) as caught:
        pair.open(resigned)
    assert (caught.value.reason, str(caught.value)) == (
        "sakke-invalid",
        "SAKKE data refused: point-not-on-curve",
    )


def test_wrong_responder_rsk_is_refused(pair: Pair, valid: bytes) -> None:
    other = pair.b.rsk("sip:carol@b.mc.example")
    with pytest.raises(MikeyError) as caught:
        pair.open(valid, responder_rsk=other)
    assert str(caught.value) == "SAKKE data refused: test-failed"
    next_period = pair.b.rsk(BOB, _number(PERIOD_B) + 1)
    assert _reason(lambda: pair.open(valid, responder_rsk=next_period)) == "sakke-invalid"


# --- identities, time, key IDs --------------------------------------------------------------------


def test_expected_identities_must_match(pair: Pair, valid: bytes) -> None:
    assert pair.open(valid, expected_initiator_uri=ALICE, expected_initiator_kms_uri=KMS_A).key == SSV
    for overrides in (
        {"expected_responder_uri": "sip:carol@b.mc.example"},
        {"expected_initiator_uri": "sip:mallory@a.mc.example"},
        {"expected_initiator_kms_uri": KMS_B},
        {"expected_responder_kms_uri": KMS_A},
    ):
        assert _reason(lambda overrides=overrides: pair.open(valid, **overrides)) == "identity-mismatch"


@pytest.mark.parametrize("role", [IdRole.IDRI, IdRole.IDRKMSI, IdRole.IDRKMSR])
def test_missing_mandatory_idr_is_refused(pair: Pair, valid: bytes, role: IdRole) -> None:
    message = mikey.parse_i_message(valid)
    payloads = tuple(p for p in message.payloads if not (isinstance(p, Idr) and p.role == role))
    with pytest.raises(MikeyError) as caught:
        pair.open(pair.resign(message, payloads))
    assert caught.value.reason == "missing-payload"
    assert role.name.lower() in str(caught.value).lower()


def test_missing_idrr_is_accepted_only_with_the_responder_uri_given(pair: Pair, valid: bytes) -> None:
    message = mikey.parse_i_message(valid)
    payloads = tuple(p for p in message.payloads if not (isinstance(p, Idr) and p.role == IdRole.IDRR))
    data = pair.resign(message, payloads)
    assert pair.open(data).responder_uri == BOB
    assert _reason(lambda: pair.open(data, expected_responder_uri=None)) == "missing-payload"


def test_idr_that_is_not_a_uri_is_refused(pair: Pair, valid: bytes) -> None:
    message = mikey.parse_i_message(valid)
    for bad in (
        Idr(IdRole.IDRI, b"\xff\xfe"),
        Idr(IdRole.IDRI, ALICE.encode(), IdType.NAI),
        Idr(IdRole.IDRI, b""),
    ):
        payloads = tuple(bad if isinstance(p, Idr) and p.role == IdRole.IDRI else p for p in message.payloads)
        data = pair.resign(message, payloads)
        assert _reason(lambda data=data: pair.open(data)) == "identity"


def test_uid_roles_8_and_9(pair: Pair, valid: bytes) -> None:
    message = mikey.parse_i_message(valid)
    uid_i = Idr(IdRole.UID_I, pair.a.uid(ALICE), IdType.BYTE_STRING)
    uid_r = Idr(IdRole.UID_R, pair.b.uid(BOB), IdType.BYTE_STRING)
    # Next to the URIs: accepted when they match.
    assert pair.open(pair.resign(message, (*message.payloads, uid_i, uid_r))).key == SSV
    # A role 8 UID alone stands for a hidden initiator.
    hidden = tuple(p for p in message.payloads if not (isinstance(p, Idr) and p.role == IdRole.IDRI))
    opened = pair.open(pair.resign(message, (*hidden, uid_i)))
    assert (opened.key, opened.initiator_uri, opened.initiator_uid) == (SSV, None, pair.a.uid(ALICE))
    assert (
        pair.open(pair.resign(message, (*hidden, uid_i)), expected_initiator_uri=ALICE).initiator_uri == ALICE
    )
    # Mismatches and wrong sizes.
    wrong = Idr(IdRole.UID_I, bytes(32), IdType.BYTE_STRING)
    assert _reason(lambda: pair.open(pair.resign(message, (*message.payloads, wrong)))) == "uid-mismatch"
    assert _reason(
        lambda: pair.open(pair.resign(message, (*hidden, wrong)), expected_initiator_uri=ALICE)
    ) == ("uid-mismatch")
    wrong_r = Idr(IdRole.UID_R, pair.b.uid(BOB, _number(PERIOD_B) + 1), IdType.BYTE_STRING)
    assert _reason(lambda: pair.open(pair.resign(message, (*message.payloads, wrong_r)))) == "uid-mismatch"
    short = Idr(IdRole.UID_I, bytes(31), IdType.BYTE_STRING)
    assert _reason(lambda: pair.open(pair.resign(message, (*message.payloads, short)))) == "identity"


def test_timestamp_skew(pair: Pair, valid: bytes) -> None:
    assert pair.open(valid, now=NOW + 300).key == SSV
    assert pair.open(valid, now=NOW - 300).key == SSV
    assert _reason(lambda: pair.open(valid, now=NOW + 301)) == "timestamp-skew"
    assert _reason(lambda: pair.open(valid, now=NOW - 301)) == "timestamp-skew"
    assert _reason(lambda: pair.open(valid, now=NOW + 3600, max_skew=60.0)) == "timestamp-skew"
    assert pair.open(valid, now=NOW + 86_400 * 20, max_skew=None).key == SSV


@pytest.mark.parametrize("ts_type", [TsType.NTP, TsType.COUNTER])
def test_a_timestamp_without_utc_time_is_refused(pair: Pair, valid: bytes, ts_type: TsType) -> None:
    message = mikey.parse_i_message(valid)
    t = Timestamp(message.timestamp.value if ts_type == TsType.NTP else 5, ts_type)
    assert _reason(lambda: pair.open(pair.resign(message, _replace(message, Timestamp, t)))) == "timestamp"


def test_csb_id_without_a_purpose_tag(pair: Pair, valid: bytes) -> None:
    assert _reason(lambda: pair.make(key_id=0x7000_0001)) == "key-id"
    message = mikey.parse_i_message(valid)
    hdr = dataclasses.replace(message.hdr, csb_id=0xF000_0001)
    signed = mikey.sign_i_message(
        hdr, message.payloads, identity=pair.a.uid(ALICE), ssk=pair.ssk, pvt=pair.pvt, kpak=pair.a.kpak
    )
    assert _reason(lambda: pair.open(mikey.encode_i_message(signed))) == "key-id"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"ssv": bytes(15)}, "ssv"),
        ({"key_id": 1 << 32}, "key-id"),
        ({"initiator_uri": ""}, "identity"),
        ({"responder_kms_uri": " kms"}, "identity"),
        ({"timestamp": 1e12}, "timestamp"),
        ({"rand": bytes(8)}, "rand-length"),
        ({"ssk": 0}, "signing-key"),
        ({"initiator_period": "30 days"}, "key-period"),
    ],
)
def test_make_refusals(pair: Pair, overrides: dict[str, Any], reason: str) -> None:
    assert _reason(lambda: pair.make(**overrides)) == reason


def test_make_default_time_and_rand(pair: Pair) -> None:
    # Keys for the periods of the real clock: the message is stamped now and opened now.
    number_a, number_b = PERIOD_A.number_now(), PERIOD_B.number_now()
    ssk, pvt = pair.a.ssk(ALICE, number_a)
    data = pair.make(timestamp=None, rand=None, ssk=ssk, pvt=pvt)
    message = mikey.parse_i_message(data)
    assert message.rand.value != bytes(16)
    rsk = pair.b.rsk(BOB, number_b)
    try:
        opened = pair.open(data, now=None, responder_rsk=rsk)
    except MikeyError as error:  # pragma: no cover - a period boundary between make and open
        assert error.reason in {"signature-invalid", "sakke-invalid"}
        return
    assert opened.key == SSV
