"""The KMS logic of crypto/kms.py (TS 33.180 Annex D, sans-IO): documents, sealed secrets,
provisioning, validation on receipt (spec/crypto.md §7) and the key ring (WA-CR-07)."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import re
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcinterconnect.crypto import ec, eccsi, sakke, uid
from mcinterconnect.crypto.ec import P256
from mcinterconnect.crypto.kms import (
    NAMESPACE,
    KeyRing,
    KeySet,
    Kms,
    KmsCertificate,
    KmsError,
    KmsResponse,
    KmsSecrets,
    generate_storage_key,
    validate_key_set,
)

ALICE = "sip:alice@a.mc.example"
BOB = "sip:bob@a.mc.example"
KMS_A = "kms.a.mc.example"
PERIOD = 2_592_000
#: 2025-06-15T12:00:00Z: inside key period 1527 of 30 days counted from 1900 (P-CR-05).
NOW = 1_749_988_800.0
START = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)


def clock() -> float:
    return NOW


@pytest.fixture(scope="module")
def kms() -> Kms:
    return Kms.create(KMS_A, issuer="MC system A", now=START, validity_days=3650)


@pytest.fixture(scope="module")
def other_kms() -> Kms:
    return Kms.create("kms.b.mc.example", now=START)


@pytest.fixture(scope="module")
def periods(kms: Kms) -> tuple[int, int, int]:
    return kms.periods_around_now(clock)


@pytest.fixture(scope="module")
def alice_sets(kms: Kms, periods: tuple[int, int, int]) -> list[KeySet]:
    return kms.provision(ALICE, periods)


def reason_of(action: Callable[[], object]) -> str:
    with pytest.raises(KmsError) as info:
        action()
    text = str(info.value)
    assert "\n" not in text
    return info.value.reason


# --- the certificate ----------------------------------------------------------------------------


def test_certificate_round_trip(kms: Kms) -> None:
    certificate = kms.certificate
    data = certificate.to_xml()
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    assert f'xmlns="{NAMESPACE}"'.encode() in data
    assert b'Version="1.0.0"' in data and b'Role="Root"' in data
    for element in (
        b"<UserIdFormat>2</",
        b"<ParameterSet>1</",
        b"<Revoked>false</",
        b"<UserKeyPeriod>2592000<",
    ):
        assert element in data
    parsed = KmsCertificate.from_xml(data)
    assert parsed == certificate
    assert parsed.key_period == uid.KeyPeriod(PERIOD, 0)
    assert parsed.valid_from == START
    assert parsed.valid_to == START + datetime.timedelta(days=3650)
    external = certificate.as_role("External")
    assert KmsCertificate.from_xml(external.to_xml()) == external
    assert external.fingerprint() == certificate.fingerprint()
    assert certificate.is_valid_at(START) and not certificate.is_valid_at(certificate.valid_to)


def test_fingerprints_differ_between_kmss(kms: Kms, other_kms: Kms) -> None:
    assert kms.certificate.fingerprint() != other_kms.certificate.fingerprint()
    assert re.fullmatch(r"[0-9a-f]{64}", kms.certificate.fingerprint())


def test_certificate_without_optional_elements_is_accepted(kms: Kms) -> None:
    text = kms.certificate.to_xml().decode()
    text = re.sub(r"\s*<CertUri>[^<]*</CertUri>", "", text)
    text = re.sub(r"\s*<Revoked>[^<]*</Revoked>", "", text)
    parsed = KmsCertificate.from_xml(text.encode())
    assert parsed.cert_uri == KMS_A


def _edit(data: bytes, pattern: str, replacement: str) -> bytes:
    text, count = re.subn(pattern, replacement, data.decode(), count=1)
    assert count == 1, pattern
    return text.encode()


def _point_hex(curve: ec.Curve, point: tuple[int, int]) -> str:
    return ec.encode_point(curve, point).hex()


#: A point of order 2 of the SAKKE curve y² = x³ − 3x: on the curve, outside the subgroup of order q.
ORDER_TWO = "04" + "00" * (2 * sakke.FIELD_LENGTH)


@pytest.mark.parametrize(
    ("pattern", "replacement", "reason"),
    [
        (r"<KmsUri>[^<]*</KmsUri>", "", "element-missing"),
        (r"<PubAuthKey>[^<]*</PubAuthKey>", "", "element-missing"),
        (r"<Issuer>[^<]*</Issuer>", "<Issuer> </Issuer>", "element-missing"),
        (r"(<KmsUri>[^<]*</KmsUri>)", r"\1\1", "element-duplicate"),
        (r"<PubAuthKey>[^<]*<", "<PubAuthKey>zz<", "hex-invalid"),
        (r"<PubAuthKey>([^<]*)<", r"<PubAuthKey>\g<1>0<", "hex-invalid"),
        (r"<PubAuthKey>([^<]*)<", r"<PubAuthKey>\g<1>00<", "hex-invalid"),
        (r"<PubAuthKey>04([^<]*)<", r"<PubAuthKey>02\1<", "point-invalid"),
        (r"<PubAuthKey>([^<]*)..<", r"<PubAuthKey>\g<1>00<", "point-invalid"),
        (r"<PubEncKey>([^<]*)..<", r"<PubEncKey>\g<1>00<", "point-invalid"),
        (r"<PubEncKey>[^<]*<", f"<PubEncKey>{ORDER_TWO}<", "point-invalid"),
        (r"<UserIdFormat>2<", "<UserIdFormat>1<", "user-id-format"),
        (r"<ParameterSet>1<", "<ParameterSet>2<", "parameter-set"),
        (r"<ValidTo>[^<]*<", "<ValidTo>2023-12-31T00:00:00Z<", "validity-invalid"),
        (r"<ValidTo>[^<]*<", "<ValidTo>2024-01-01T00:00:00Z<", "validity-invalid"),
        (r"<Revoked>false<", "<Revoked>true<", "revoked"),
        (r"<Revoked>false<", "<Revoked>1<", "revoked"),
        (r"<Revoked>false<", "<Revoked>maybe<", "value-invalid"),
        (r'Version="1.0.0"', 'Version="2.0.0"', "version-unsupported"),
        (r' Version="1.0.0"', "", "version-unsupported"),
        (r'Role="Root"', 'Role="Partner"', "role-unknown"),
        (r"urn:3gpp:ns:mcsecKMSInterface:1.0", "urn:example:other", "root-unexpected"),
        (r"<UserKeyPeriod>[^<]*<", "<UserKeyPeriod>0<", "value-invalid"),
        (r"<UserKeyPeriod>[^<]*<", "<UserKeyPeriod>-5<", "value-invalid"),
        (r"<UserKeyOffset>[^<]*<", "<UserKeyOffset>99999999999999999999<", "value-invalid"),
        (r"<ValidFrom>[^<]*<", "<ValidFrom>2024-01-01T00:00:00<", "value-invalid"),
        (r"<ValidFrom>[^<]*<", "<ValidFrom>yesterday<", "value-invalid"),
        (r"<ValidTo>[^<]*<", "<ValidTo>9999-12-31T23:59:59-01:00<", "value-invalid"),
        (r"<KmsUri>[^<]*<", "<KmsUri>kms a<", "value-invalid"),
        (r"<\?xml[^>]*>", "<!DOCTYPE x [<!ENTITY e 'x'>]>", "xml-unreadable"),
    ],
)
def test_certificate_refusals(kms: Kms, pattern: str, replacement: str, reason: str) -> None:
    data = _edit(kms.certificate.to_xml(), pattern, replacement)
    assert reason_of(lambda: KmsCertificate.from_xml(data)) == reason


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "xml-unreadable"),
        (b"not xml", "xml-unreadable"),
        (b"<KmsCertificate/>", "root-unexpected"),
        (f'<KmsKeySet xmlns="{NAMESPACE}"/>'.encode(), "root-unexpected"),
    ],
)
def test_certificate_refusals_of_other_documents(data: bytes, reason: str) -> None:
    assert reason_of(lambda: KmsCertificate.from_xml(data)) == reason


def test_certificate_constructor_checks(kms: Kms) -> None:
    certificate = kms.certificate
    assert reason_of(lambda: dataclasses.replace(certificate, valid_to=certificate.valid_from)) == (
        "validity-invalid"
    )
    assert reason_of(lambda: dataclasses.replace(certificate, pub_auth_key=(1, 2))) == "point-invalid"
    assert reason_of(lambda: dataclasses.replace(certificate, user_key_period=0)) == "value-invalid"
    assert reason_of(lambda: dataclasses.replace(certificate, kms_uri="")) == "value-invalid"
    naive = datetime.datetime(2030, 1, 1)  # no time zone: the fault under test
    assert reason_of(lambda: dataclasses.replace(certificate, valid_to=naive)) == "value-invalid"


# --- key sets and responses ---------------------------------------------------------------------


def test_key_set_round_trip(alice_sets: list[KeySet]) -> None:
    key_set = alice_sets[1]
    data = key_set.to_xml()
    assert KeySet.from_xml(data) == key_set
    assert base64.b64encode(key_set.user_id) in data
    assert f"{key_set.ssk:064x}".encode() in data
    # the secrets stay out of repr
    shown = repr(key_set)
    assert f"{key_set.ssk:x}" not in shown and str(key_set.ssk) not in shown
    assert str(key_set.rsk[0]) not in shown


@pytest.mark.parametrize(
    ("pattern", "replacement", "reason"),
    [
        (r"<UserID>[^<]*<", "<UserID>***<", "value-invalid"),
        (r"<UserID>[^<]*<", "<UserID>AAAA<", "value-invalid"),
        (r"<UserSigningKeySSK>[^<]*<", "<UserSigningKeySSK>" + "00" * 32 + "<", "value-invalid"),
        (r"<UserSigningKeySSK>[^<]*<", "<UserSigningKeySSK>" + "ff" * 32 + "<", "value-invalid"),
        (r"<UserSigningKeySSK>[^<]*<", "<UserSigningKeySSK>abc<", "hex-invalid"),
        (r"<UserDecryptKey>([^<]*)..<", r"<UserDecryptKey>\g<1>00<", "point-invalid"),
        (r"<UserPubTokenPVT>([^<]*)..<", r"<UserPubTokenPVT>\g<1>00<", "point-invalid"),
        (r"<KeyPeriodNo>[^<]*<", "<KeyPeriodNo>x<", "value-invalid"),
        (r"<UserUri>[^<]*</UserUri>", "", "element-missing"),
        (r"<Revoked>false<", "<Revoked>true<", "revoked"),
        (r"<ValidTo>[^<]*<", "<ValidTo>2000-01-01T00:00:00Z<", "validity-invalid"),
    ],
)
def test_key_set_refusals(alice_sets: list[KeySet], pattern: str, replacement: str, reason: str) -> None:
    data = _edit(alice_sets[0].to_xml(), pattern, replacement)
    assert reason_of(lambda: KeySet.from_xml(data)) == reason


def _response(kind: str, **fields: object) -> KmsResponse:
    arguments: dict[str, object] = {
        "kind": kind,
        "kms_uri": KMS_A,
        "user_uri": ALICE,
        "time": START,
        "client_req_url": f"https://{KMS_A}/keymanagement/identity/v1/{kind}",
    }
    arguments.update(fields)
    return KmsResponse(**arguments)  # type: ignore[arg-type]


def test_responses_round_trip(kms: Kms, other_kms: Kms, alice_sets: list[KeySet]) -> None:
    responses = [
        _response("init", certificates=(kms.certificate,), kms_id="kms-1"),
        _response("keyprov", key_sets=tuple(alice_sets)),
        _response("certcache", certificates=(other_kms.certificate.as_role("External"),)),
        _response("certcache"),
    ]
    for response in responses:
        data = response.to_xml()
        assert data.startswith(b"<?xml") and b"<KmsMessage>" in data
        assert KmsResponse.from_xml(data) == response
    assert b"<KmsInit " in responses[0].to_xml() and b"<KmsKeyProv " in responses[1].to_xml()


def test_response_refusals(kms: Kms, alice_sets: list[KeySet]) -> None:
    assert reason_of(lambda: _response("init")) == "message-invalid"
    assert reason_of(lambda: _response("keyprov", certificates=(kms.certificate,))) == "message-invalid"
    assert reason_of(lambda: _response("certcache", key_sets=tuple(alice_sets))) == "message-invalid"
    assert reason_of(lambda: _response("other")) == "message-invalid"
    data = _response("init", certificates=(kms.certificate,)).to_xml()
    two_bodies = _edit(data, r"(</KmsMessage>)", f'<KmsCertCache xmlns="{NAMESPACE}" Version="1.0.0"/>\\1')
    assert reason_of(lambda: KmsResponse.from_xml(two_bodies)) == "message-invalid"
    no_message = re.sub(rb"<KmsMessage>[\s\S]*</KmsMessage>", b"", data)
    assert reason_of(lambda: KmsResponse.from_xml(no_message)) == "element-missing"
    no_time = _edit(data, r"<Time>[^<]*</Time>", "")
    assert reason_of(lambda: KmsResponse.from_xml(no_time)) == "element-missing"


# --- sealed secrets ------------------------------------------------------------------------------


def test_secrets_seal_and_unseal(kms: Kms) -> None:
    key = generate_storage_key()
    sealed = kms.secrets.seal(key)
    assert KmsSecrets.unseal(sealed, key) == kms.secrets
    # a random nonce: sealing twice gives two different files
    assert kms.secrets.seal(key) != sealed
    # the secrets appear nowhere in clear
    assert kms.secrets.ksak.to_bytes(32, "big") not in sealed
    assert kms.secrets.z.to_bytes(sakke.FIELD_LENGTH, "big")[-32:] not in sealed
    assert str(kms.secrets.ksak) not in repr(kms.secrets) and str(kms.secrets.z) not in repr(kms.secrets)


def test_wrong_storage_key_is_refused(kms: Kms) -> None:
    key = generate_storage_key()
    sealed = kms.secrets.seal(key)
    other = generate_storage_key()
    with pytest.raises(KmsError) as info:
        KmsSecrets.unseal(sealed, other)
    assert info.value.reason == "secrets-unsealable"
    for secret in (key, other):
        assert secret.hex() not in str(info.value) and repr(secret) not in str(info.value)
    assert reason_of(lambda: KmsSecrets.unseal(sealed, key[:16])) == "storage-key-invalid"
    assert reason_of(lambda: kms.secrets.seal(b"short")) == "storage-key-invalid"


@pytest.mark.parametrize("offset", [0, 5, 19, 20, 31, 40, 100, -17, -1])
def test_tampered_secrets_are_refused(kms: Kms, offset: int) -> None:
    key = generate_storage_key()
    sealed = bytearray(kms.secrets.seal(key))
    sealed[offset] ^= 0x01
    reason = reason_of(lambda: KmsSecrets.unseal(bytes(sealed), key))
    # the prefix names the format; nonce, ciphertext and tag are covered by AES-GCM
    assert reason == ("secrets-format" if 0 <= offset < 19 else "secrets-unsealable")


def test_truncated_or_foreign_secrets_are_refused(kms: Kms) -> None:
    key = generate_storage_key()
    sealed = kms.secrets.seal(key)
    assert reason_of(lambda: KmsSecrets.unseal(sealed[:-1], key)) == "secrets-format"
    assert reason_of(lambda: KmsSecrets.unseal(sealed + b"\x00", key)) == "secrets-format"
    assert reason_of(lambda: KmsSecrets.unseal(b"KSAK=1\n", key)) == "secrets-format"


def test_secrets_ranges() -> None:
    assert reason_of(lambda: KmsSecrets(ksak=0, z=5)) == "secrets-invalid"
    assert reason_of(lambda: KmsSecrets(ksak=5, z=sakke.q)) == "secrets-invalid"


def test_kms_refuses_secrets_of_another_certificate(kms: Kms, other_kms: Kms) -> None:
    assert reason_of(lambda: Kms(other_kms.secrets, kms.certificate)) == "secrets-mismatch"
    assert reason_of(lambda: Kms(kms.secrets, kms.certificate.as_role("External"))) == "role-unknown"
    again = Kms(kms.secrets, KmsCertificate.from_xml(kms.certificate.to_xml()))
    assert again.certificate == kms.certificate


# --- provisioning and validation on receipt ------------------------------------------------------


def test_provision_and_validate_three_periods(
    kms: Kms, periods: tuple[int, int, int], alice_sets: list[KeySet]
) -> None:
    assert periods == (1526, 1527, 1528)
    assert [key_set.key_period_no for key_set in alice_sets] == list(periods)
    period = kms.certificate.key_period
    for key_set, number in zip(alice_sets, periods, strict=True):
        assert key_set.user_uri == ALICE and key_set.kms_uri == KMS_A
        assert key_set.user_id == uid.uid(ALICE, KMS_A, period, number)
        start = datetime.datetime.fromtimestamp(
            uid.unix_from_ntp_seconds(period.start_of(number)), datetime.UTC
        )
        assert key_set.valid_from == start
        assert key_set.valid_to - key_set.valid_from == datetime.timedelta(seconds=PERIOD)
        validate_key_set(key_set, kms.certificate, ALICE)
        validate_key_set(KeySet.from_xml(key_set.to_xml()), kms.certificate, ALICE, period=number)
    # the keys work: sign with ECCSI, and SAKKE to the UID opens with the RSK
    key_set = alice_sets[1]
    signature = eccsi.sign(b"hello", key_set.user_id, key_set.ssk, key_set.pvt, kms.certificate.pub_auth_key)
    eccsi.verify(b"hello", signature, key_set.user_id, kms.certificate.pub_auth_key)
    ssv = bytes(range(16))
    data = sakke.encapsulate(ssv, key_set.user_id, kms.certificate.pub_enc_key)
    assert sakke.decapsulate(data, key_set.user_id, key_set.rsk, kms.certificate.pub_enc_key) == ssv


def test_provision_refusals(kms: Kms) -> None:
    assert reason_of(lambda: kms.provision("sip:alice @a.mc.example", [1527])) == "value-invalid"
    assert reason_of(lambda: kms.provision(ALICE, [-1])) == "period-invalid"
    assert reason_of(lambda: kms.provision(ALICE, ["1527"])) == "period-invalid"  # type: ignore[list-item]
    # a period beginning after the certificate expires (2034)
    assert reason_of(lambda: kms.provision(ALICE, [2000])) == "period-outside-certificate"
    assert kms.provision(ALICE, []) == []
    assert [ks.key_period_no for ks in kms.provision(ALICE, [1527, 1527])] == [1527]


def test_validate_refuses_a_key_set_of_another_user(kms: Kms, alice_sets: list[KeySet]) -> None:
    bob_set = kms.provision(BOB, [1527])[0]
    assert reason_of(lambda: validate_key_set(bob_set, kms.certificate, ALICE)) == "user-mismatch"
    # the same keys relabelled as Alice's: the UID gives them away
    relabelled = dataclasses.replace(bob_set, user_uri=ALICE)
    assert reason_of(lambda: validate_key_set(relabelled, kms.certificate, ALICE)) == "user-id-mismatch"
    # relabelled with Alice's UID too: the keys themselves do not verify
    disguised = dataclasses.replace(relabelled, user_id=alice_sets[1].user_id)
    assert reason_of(lambda: validate_key_set(disguised, kms.certificate, ALICE)) == "ssk-invalid"


def test_validate_refuses_a_wrong_period(kms: Kms, alice_sets: list[KeySet]) -> None:
    current = alice_sets[1]
    assert (
        reason_of(lambda: validate_key_set(current, kms.certificate, ALICE, period=1528)) == "period-mismatch"
    )
    moved = dataclasses.replace(current, key_period_no=1528)
    assert reason_of(lambda: validate_key_set(moved, kms.certificate, ALICE)) == "user-id-mismatch"
    # the next period's UID and dates, the current period's keys
    following = alice_sets[2]
    forged = dataclasses.replace(
        current,
        key_period_no=1528,
        user_id=following.user_id,
        valid_from=following.valid_from,
        valid_to=following.valid_to,
    )
    assert reason_of(lambda: validate_key_set(forged, kms.certificate, ALICE)) == "ssk-invalid"
    shifted = dataclasses.replace(current, valid_to=current.valid_to + datetime.timedelta(days=1))
    assert reason_of(lambda: validate_key_set(shifted, kms.certificate, ALICE)) == "period-mismatch"


def test_validate_refuses_tampered_keys(kms: Kms, alice_sets: list[KeySet]) -> None:
    current, other = alice_sets[1], alice_sets[2]
    cert = kms.certificate
    assert reason_of(
        lambda: validate_key_set(dataclasses.replace(current, ssk=current.ssk ^ 1), cert, ALICE)
    ) == ("ssk-invalid")
    assert reason_of(lambda: validate_key_set(dataclasses.replace(current, pvt=other.pvt), cert, ALICE)) == (
        "ssk-invalid"
    )
    assert reason_of(lambda: validate_key_set(dataclasses.replace(current, rsk=other.rsk), cert, ALICE)) == (
        "rsk-invalid"
    )
    doubled = ec.add(sakke.CURVE, current.rsk, current.rsk)
    assert doubled is not None
    assert reason_of(lambda: validate_key_set(dataclasses.replace(current, rsk=doubled), cert, ALICE)) == (
        "rsk-invalid"
    )
    # tampered in transit: one hex digit of the SSK in the XML
    data = current.to_xml()
    ssk_hex = f"{current.ssk:064x}"
    flipped = ssk_hex[:-1] + ("0" if ssk_hex[-1] != "0" else "1")
    tampered = KeySet.from_xml(data.replace(ssk_hex.encode(), flipped.encode()))
    assert reason_of(lambda: validate_key_set(tampered, cert, ALICE)) == "ssk-invalid"


def test_validate_refuses_another_kms(kms: Kms, other_kms: Kms, alice_sets: list[KeySet]) -> None:
    assert reason_of(lambda: validate_key_set(alice_sets[1], other_kms.certificate, ALICE)) == "kms-mismatch"
    # an impostor KMS with the same URI but its own keys
    impostor = Kms.create(KMS_A, now=START)
    assert reason_of(lambda: validate_key_set(alice_sets[1], impostor.certificate, ALICE)) == "ssk-invalid"
    forged = impostor.provision(ALICE, [1527])[0]
    assert reason_of(lambda: validate_key_set(forged, kms.certificate, ALICE)) == "ssk-invalid"


# --- the key ring --------------------------------------------------------------------------------


def test_key_ring_holds_previous_current_next(kms: Kms, alice_sets: list[KeySet]) -> None:
    now = [NOW]
    ring = KeyRing(kms.certificate, ALICE, clock=lambda: now[0])
    assert ring.missing() == [1526, 1527, 1528]
    for key_set in alice_sets:
        ring.add(key_set)
    assert ring.periods == (1526, 1527, 1528) and len(ring) == 3
    assert ring.missing() == []
    assert ring.current() == alice_sets[1]
    assert ring.hs(1527) == eccsi.validate_ssk(
        alice_sets[1].ssk, alice_sets[1].pvt, kms.certificate.pub_auth_key, alice_sets[1].user_id
    )
    assert reason_of(lambda: ring.get(1600)) == "period-missing"
    # one period later: the oldest goes, the new next one is missing
    now[0] = NOW + PERIOD
    assert ring.missing() == [1529]
    assert ring.prune() == [1526]
    assert ring.periods == (1527, 1528)
    assert ALICE in repr(ring) and str(alice_sets[0].ssk) not in repr(ring)


def test_key_ring_validates_what_it_adds(kms: Kms, alice_sets: list[KeySet]) -> None:
    ring = KeyRing(kms.certificate, BOB, clock=clock)
    assert reason_of(lambda: ring.add(alice_sets[1])) == "user-mismatch"
    ring = KeyRing(kms.certificate, ALICE, clock=clock)
    assert reason_of(lambda: ring.add(dataclasses.replace(alice_sets[1], ssk=5))) == "ssk-invalid"
    assert len(ring) == 0


# --- any input gives a document or KmsError --------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_give_a_document_or_kms_error(data: bytes) -> None:
    for parse in (KmsCertificate.from_xml, KeySet.from_xml, KmsResponse.from_xml):
        with contextlib.suppress(KmsError):
            parse(data)


@st.composite
def _mutated(draw: st.DrawFn, document: bytes) -> bytes:
    text = document.decode()
    start = draw(st.integers(0, len(text)))
    end = draw(st.integers(start, min(len(text), start + 80)))
    filler = draw(st.text(alphabet=st.sampled_from("<>/=\"' 0123456789abcdefxyz:-TZ\n&;"), max_size=40))
    return (text[:start] + filler + text[end:]).encode("utf-8")


_FIXED = Kms.create(KMS_A, now=START)
_CERTIFICATE_XML = _FIXED.certificate.to_xml()
_RESPONSE_XML = KmsResponse(
    kind="keyprov",
    kms_uri=KMS_A,
    user_uri=ALICE,
    time=START,
    client_req_url="https://kms.a.mc.example/keymanagement/identity/v1/keyprov",
    key_sets=tuple(_FIXED.provision(ALICE, [1527])),
).to_xml()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated(_CERTIFICATE_XML))
def test_mutated_certificates_give_a_certificate_or_kms_error(data: bytes) -> None:
    try:
        certificate = KmsCertificate.from_xml(data)
    except KmsError:
        return
    assert KmsCertificate.from_xml(certificate.to_xml()) == certificate


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated(_RESPONSE_XML))
def test_mutated_responses_give_a_response_or_kms_error(data: bytes) -> None:
    try:
        response = KmsResponse.from_xml(data)
    except KmsError:
        return
    assert KmsResponse.from_xml(response.to_xml()) == response


def test_point_helpers_agree_with_the_documents(kms: Kms) -> None:
    data = kms.certificate.to_xml().decode()
    assert _point_hex(P256, kms.certificate.pub_auth_key) in data
    assert _point_hex(sakke.CURVE, kms.certificate.pub_enc_key) in data
