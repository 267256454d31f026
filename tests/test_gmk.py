"""GMK wrapping and opening (TS 33.180 5.7, F.1.3; WA-IC-22) with real KMS key material, no network.

Two KMSs stand for systems A and B.  The GMS signs under its PSI; a receiver checks the expected
initiator and its KMS's KPAK before decapsulating; the GUK-ID in the CSB ID gives back the GMK-ID.
"""

from __future__ import annotations

import time

import pytest

from mcinterconnect.crypto import keyids, mikey
from mcinterconnect.crypto.keyids import Purpose
from mcinterconnect.crypto.kms import Kms, KmsCertificate
from mcinterconnect.crypto.mikey import GenericIdEntry, Idr, IdRole
from mcinterconnect.crypto.uid import uid as uid_of
from mcinterconnect.services.gmk import GmkError, GroupKey, GroupKeyRing, open_gmk, wrap_gmk
from mcinterconnect.services.mcx_ear import SigningKeys

GMS_A = "sip:gms@a.mc.example"
GMS_B = "sip:gms@b.mc.example"
ALICE = "sip:alice@a.mc.example"
BOB = "sip:bob@a.mc.example"
MALLORY_B = "sip:mallory@b.mc.example"
FIRE = "sip:fire@b.mc.example"


@pytest.fixture(scope="module")
def kms_a() -> Kms:
    return Kms.create("kms.a.mc.example", issuer="MC system A")


@pytest.fixture(scope="module")
def kms_b() -> Kms:
    return Kms.create("kms.b.mc.example", issuer="MC system B")


def keys_of(kms: Kms, uri: str) -> SigningKeys:
    keys = SigningKeys(kms.certificate, uri)
    keys.add(kms.provision(uri, kms.periods_around_now()))
    return keys


def external(kms: Kms) -> KmsCertificate:
    return kms.certificate.as_role("External")


def test_round_trip_to_an_own_user_recovers_gmk_and_gmk_id(kms_a: Kms) -> None:
    key = GroupKey.new(FIRE)
    assert keyids.purpose_of(key.gmk_id) == Purpose.GMK and len(key.gmk) == 16
    data = wrap_gmk(
        key,
        receiver_uri=ALICE,
        receiver_certificate=kms_a.certificate,
        sender_uri=GMS_A,
        sender_keys=keys_of(kms_a, GMS_A),
    )
    message = mikey.parse_i_message(data)
    guk = keyids.guk_id(key.gmk, key.gmk_id, ALICE)
    assert message.hdr.csb_id == guk  # CSB ID = GUK-ID (33.180 F.1.3), not the GMK-ID
    [session] = message.hdr.cs_id_map
    assert isinstance(session, GenericIdEntry) and session.cs_id == 4
    assert session.spi == keyids.key_id_to_bytes(key.gmk_id) + keyids.key_id_to_bytes(guk)
    received = open_gmk(
        data,
        receiver_uri=ALICE,
        receiver_keys=keys_of(kms_a, ALICE),
        initiator_uri=GMS_A,
        initiator_certificate=kms_a.certificate,
    )
    assert received.gmk == key.gmk and received.gmk_id == key.gmk_id and received.guk_id == guk
    assert received.initiator_uri == GMS_A
    assert key.gmk.hex() not in repr(received) and key.gmk.hex() not in repr(key)
    # Another user gets another GUK-ID for the same GMK (end-point diversity).
    other = wrap_gmk(
        key,
        receiver_uri=BOB,
        receiver_certificate=kms_a.certificate,
        sender_uri=GMS_A,
        sender_keys=keys_of(kms_a, GMS_A),
    )
    assert mikey.parse_i_message(other).hdr.csb_id == keyids.guk_id(key.gmk, key.gmk_id, BOB) != guk


def test_cross_system_relay_b_to_gms_a(kms_a: Kms, kms_b: Kms) -> None:
    """WA-IC-22 step 1 and 2: B wraps to GMS A under A's KMS, A opens with B's KPAK."""
    key = GroupKey.new(FIRE)
    data = wrap_gmk(
        key,
        receiver_uri=GMS_A,
        receiver_certificate=external(kms_a),
        sender_uri=GMS_B,
        sender_keys=keys_of(kms_b, GMS_B),
    )
    received = open_gmk(
        data,
        receiver_uri=GMS_A,
        receiver_keys=keys_of(kms_a, GMS_A),
        initiator_uri=GMS_B,
        initiator_certificate=external(kms_b),
    )
    assert (received.gmk, received.gmk_id) == (key.gmk, key.gmk_id)
    # The wrong KMS for the initiator (A's instead of B's): refused before any decapsulation.
    with pytest.raises(GmkError) as refused:
        open_gmk(
            data,
            receiver_uri=GMS_A,
            receiver_keys=keys_of(kms_a, GMS_A),
            initiator_uri=GMS_B,
            initiator_certificate=kms_a.certificate,
        )
    assert refused.value.reason == "initiator-kms-mismatch"


@pytest.fixture(scope="module")
def wrapped(kms_a: Kms, kms_b: Kms) -> tuple[GroupKey, bytes]:
    key = GroupKey.new(FIRE)
    return key, wrap_gmk(
        key,
        receiver_uri=GMS_A,
        receiver_certificate=external(kms_a),
        sender_uri=GMS_B,
        sender_keys=keys_of(kms_b, GMS_B),
    )


def _open_at_a(data: bytes, kms_a: Kms, kms_b: Kms, **overrides: object) -> None:
    arguments: dict[str, object] = {
        "receiver_uri": GMS_A,
        "receiver_keys": keys_of(kms_a, GMS_A),
        "initiator_uri": GMS_B,
        "initiator_certificate": external(kms_b),
        **overrides,
    }
    open_gmk(data, **arguments)  # type: ignore[arg-type]


def _reason(data: bytes, kms_a: Kms, kms_b: Kms, **overrides: object) -> str:
    with pytest.raises(GmkError) as refused:
        _open_at_a(data, kms_a, kms_b, **overrides)
    assert "0x" not in str(refused.value)
    return refused.value.reason


def test_wrong_initiator_is_refused(wrapped: tuple[GroupKey, bytes], kms_a: Kms, kms_b: Kms) -> None:
    _, data = wrapped
    assert _reason(data, kms_a, kms_b, initiator_uri="sip:gms@c.mc.example") == "initiator-mismatch"
    # A genuine GMK signed by another identity of B's KMS (not the GMS): refused by name.
    key = GroupKey.new(FIRE)
    from_mallory = wrap_gmk(
        key,
        receiver_uri=GMS_A,
        receiver_certificate=external(kms_a),
        sender_uri=MALLORY_B,
        sender_keys=keys_of(kms_b, MALLORY_B),
    )
    assert _reason(from_mallory, kms_a, kms_b) == "initiator-mismatch"


def test_forged_initiator_and_tampered_signature_are_refused(
    wrapped: tuple[GroupKey, bytes], kms_a: Kms, kms_b: Kms
) -> None:
    _, data = wrapped
    # Mallory (a real user of B's KMS) names GMS B as IDRi but can only sign with her own key.
    message = mikey.parse_i_message(data)
    payloads = [
        Idr.uri(IdRole.IDRI, GMS_B) if isinstance(p, Idr) and p.role == IdRole.IDRI else p
        for p in message.payloads
    ]
    certificate = kms_b.certificate
    number = message.timestamp.utc_seconds()[0]
    period = certificate.key_period
    mallory_uid = uid_of(MALLORY_B, certificate.kms_uri, period, period.number_at(number))
    mallory = keys_of(kms_b, MALLORY_B).for_time(time.time())
    forged = mikey.encode_i_message(
        mikey.sign_i_message(
            message.hdr,
            payloads,
            identity=mallory_uid,
            ssk=mallory.ssk,
            pvt=mallory.pvt,
            kpak=certificate.pub_auth_key,
        )
    )
    assert _reason(forged, kms_a, kms_b) == "signature-invalid"
    tampered = bytearray(data)
    tampered[-1] ^= 0x01  # in the PVT of the signature
    assert _reason(bytes(tampered), kms_a, kms_b) == "signature-invalid"
    in_sakke = bytearray(data)
    in_sakke[len(data) // 2] ^= 0x40  # inside the SAKKE data: covered by the signature
    assert _reason(bytes(in_sakke), kms_a, kms_b) in {"signature-invalid", "malformed"}
    assert _reason(b"\x01\x1a\x00garbage", kms_a, kms_b) == "malformed"


def test_wrong_receiver_or_receiver_key_is_refused(
    wrapped: tuple[GroupKey, bytes], kms_a: Kms, kms_b: Kms
) -> None:
    _, data = wrapped
    assert (
        _reason(data, kms_a, kms_b, receiver_uri=ALICE, receiver_keys=keys_of(kms_a, ALICE))
        == "receiver-mismatch"
    )
    # Same KMS URI, other secrets: GMS A's key from an impostor KMS does not open the SAKKE data.
    impostor = Kms.create("kms.a.mc.example")
    assert _reason(data, kms_a, kms_b, receiver_keys=keys_of(impostor, GMS_A)) == "decapsulation-failed"
    other_kms = Kms.create("kms.x.mc.example")
    assert _reason(data, kms_a, kms_b, receiver_keys=keys_of(other_kms, GMS_A)) == "receiver-kms-mismatch"
    assert (
        _reason(data, kms_a, kms_b, receiver_keys=SigningKeys(kms_a.certificate, GMS_A)) == "keys-unavailable"
    )


def test_stale_not_a_gmk_and_no_sender_keys(wrapped: tuple[GroupKey, bytes], kms_a: Kms, kms_b: Kms) -> None:
    _, data = wrapped
    assert _reason(data, kms_a, kms_b, now=time.time() + 3600) == "stale"
    sender = keys_of(kms_b, GMS_B).for_time(time.time())
    certificate = kms_b.certificate
    pck = mikey.make_i_message(
        ssv=bytes(16),
        key_id=keyids.new_key_id(Purpose.PCK),
        initiator_uri=GMS_B,
        responder_uri=GMS_A,
        initiator_kms_uri=certificate.kms_uri,
        responder_kms_uri=kms_a.certificate.kms_uri,
        initiator_period=certificate.key_period,
        responder_period=kms_a.certificate.key_period,
        ssk=sender.ssk,
        pvt=sender.pvt,
        kpak=certificate.pub_auth_key,
        responder_z=kms_a.certificate.pub_enc_key,
    )
    assert _reason(pck, kms_a, kms_b) == "not-a-gmk"
    with pytest.raises(GmkError) as refused:
        wrap_gmk(
            GroupKey.new(FIRE),
            receiver_uri=GMS_A,
            receiver_certificate=external(kms_a),
            sender_uri=GMS_B,
            sender_keys=SigningKeys(kms_b.certificate, GMS_B),
        )
    assert refused.value.reason == "keys-unavailable"


def test_group_key_ring_keeps_one_key_per_group() -> None:
    ring = GroupKeyRing()
    first = ring.ensure(FIRE)
    assert ring.ensure(FIRE) is first and ring.get(FIRE) is first and list(ring) == [FIRE]
    ring.discard(FIRE)
    assert ring.get(FIRE) is None and ring.ensure(FIRE).gmk != first.gmk
    with pytest.raises(GmkError):
        GroupKey(FIRE, bytes(15), first.gmk_id)
    with pytest.raises(GmkError):
        GroupKey(FIRE, bytes(16), keyids.new_key_id(Purpose.PCK))
