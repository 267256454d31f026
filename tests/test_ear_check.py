"""The receiver checks of protect/ear_check.py (WA-SP-26): each check with its reason code and
Warning text, the order between them, and the replay TTL.

System A (a.mc.example, KMS kms.a.mc.example) signs; system B (b.mc.example) receives.  Keys come
from ``eccsi.issue_ssk`` for the exact signer identity, and once from ``Kms.provision``.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcinterconnect.crypto import ec, eccsi
from mcinterconnect.crypto.kms import Kms
from mcinterconnect.crypto.uid import KeyPeriod
from mcinterconnect.protect import ear_check
from mcinterconnect.protect.ear import (
    EarPayload,
    RequestPayload,
    RequestType,
    Role,
    ear_signer_identity,
    encode_header_value,
    new_payload,
    sign_ear,
)
from mcinterconnect.protect.ear_check import (
    DEFAULT_WARNINGS,
    EarPolicy,
    EarVerdict,
    check_ear,
    entity_host,
    refused,
    replay_ttl,
)

KMS_A = "kms.a.mc.example"
PERIOD = KeyPeriod(2_592_000, 0)
MCX_A = "sip:mcx@a.mc.example"
MCX_B = "sip:mcx@b.mc.example"
#: 2025-06-15T12:00:00Z.
NOW = 1_749_988_800
POLICY = EarPolicy()


@dataclasses.dataclass(frozen=True)
class Authority:
    """A KMS as the checks see it: KSAK to issue keys, KPAK, URI and key periods."""

    ksak: int
    kpak: ec.Point
    uri: str = KMS_A
    period: KeyPeriod = PERIOD

    def keys(self, source_id: str, time: int) -> tuple[int, ec.Point]:
        identity = ear_signer_identity(source_id, time, kms_uri=self.uri, key_period=self.period)
        return eccsi.issue_ssk(self.ksak, self.kpak, identity)


@pytest.fixture(scope="module")
def kms_a() -> Authority:
    return Authority(*eccsi.generate_kms_keys())


def payload(**changes: Any) -> EarPayload:
    base = EarPayload(
        time=NOW,
        ear_id=new_payload(source_role=1, source_id=MCX_A, target_role=1, target_id=MCX_B).ear_id,
        source_role=Role.MCX_SERVER,
        source_id=MCX_A,
        target_role=Role.MCX_SERVER,
        target_id=MCX_B,
        request=RequestPayload(RequestType.GROUP, 1, NOW + 600),
    )
    return dataclasses.replace(base, **changes)


def signed(authority: Authority, value: EarPayload, *, signer: str | None = None) -> str:
    """The header value of ``value`` signed with the keys of ``signer`` (default: its Source ID)."""
    ssk, pvt = authority.keys(signer or value.source_id, value.time)
    return encode_header_value(
        sign_ear(
            value, ssk=ssk, pvt=pvt, kpak=authority.kpak, kms_uri=authority.uri, key_period=authority.period
        )
    )


def check(header: str | None, authority: Authority, **overrides: Any) -> EarVerdict:
    arguments: dict[str, Any] = {
        "now": float(NOW),
        "policy": POLICY,
        "source_domains": ["a.mc.example"],
        "target_domains": ["b.mc.example"],
        "allowed_request_types": lambda request_type: True,
        "kms_uri": authority.uri,
        "kpak": authority.kpak,
        "key_period": authority.period,
        **overrides,
    }
    verdict = check_ear(header, **arguments)
    if verdict.ok:
        assert verdict.reason == "ear-ok"
        assert verdict.warning == ""
    else:
        assert verdict.warning == POLICY.warning(verdict.reason) or "policy" in overrides
        assert "\n" not in verdict.detail
    return verdict


def assert_refused(verdict: EarVerdict, reason: str, warning: str | None = None) -> None:
    assert not verdict.ok
    assert verdict.reason == reason, verdict
    if warning is not None:
        assert verdict.warning == warning


# --- a pass -------------------------------------------------------------------------------------------


def test_valid_ear_passes(kms_a: Authority) -> None:
    value = payload()
    verdict = check(signed(kms_a, value), kms_a)
    assert verdict.ok, verdict
    assert verdict.ear is not None
    assert verdict.ear.payload == value
    assert verdict.ear_id == value.ear_id.bytes
    assert verdict.expiry == NOW + 600
    assert str(value.ear_id) in verdict.detail


def test_pass_without_request(kms_a: Authority) -> None:
    seen: list[RequestType | None] = []

    def allowed(request_type: RequestType | None) -> bool:
        seen.append(request_type)
        return True

    verdict = check(signed(kms_a, payload(request=None)), kms_a, allowed_request_types=allowed)
    assert verdict.ok
    assert verdict.expiry is None
    assert seen == [None]


def test_keys_from_kms_provision() -> None:
    kms = Kms.create(KMS_A, now=datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC))
    certificate = kms.certificate
    value = payload()
    number = certificate.key_period.number_at(int(NOW) + 2_208_988_800)
    (key_set,) = kms.provision(MCX_A, [number])
    signed_ear = sign_ear(
        value,
        ssk=key_set.ssk,
        pvt=key_set.pvt,
        kpak=certificate.pub_auth_key,
        kms_uri=certificate.kms_uri,
        key_period=certificate.key_period,
    )
    authority = Authority(0, certificate.pub_auth_key, certificate.kms_uri, certificate.key_period)
    assert check(encode_header_value(signed_ear), authority).ok
    # The key set of the previous period signs for another UID: refused.
    (old,) = kms.provision(MCX_A, [number - 1])
    stale_key = sign_ear(
        value,
        ssk=old.ssk,
        pvt=old.pvt,
        kpak=certificate.pub_auth_key,
        kms_uri=certificate.kms_uri,
        key_period=certificate.key_period,
    )
    assert_refused(check(encode_header_value(stale_key), authority), "ear-signature")


def test_cached_verifier(kms_a: Authority) -> None:
    verifier = eccsi.Verifier()
    header = signed(kms_a, payload())
    assert check(header, kms_a, verifier=verifier).ok
    assert check(header, kms_a, verifier=verifier).ok
    assert len(verifier) == 1


# --- each check ------------------------------------------------------------------------------------------


def test_1_missing(kms_a: Authority) -> None:
    verdict = check(None, kms_a)
    assert_refused(verdict, "ear-missing", "901 EAR missing")
    assert verdict.ear is None
    assert verdict.ear_id is None


@pytest.mark.parametrize("header", ["", "!!", "AAAA", "QR==", "A" * 5000])
def test_2_malformed(kms_a: Authority, header: str) -> None:
    verdict = check(header, kms_a)
    assert_refused(verdict, "ear-malformed", "902 EAR malformed")
    assert verdict.ear is None


def test_2_malformed_payload_names_the_fault(kms_a: Authority) -> None:
    verdict = check(encode_header_value(bytes(200)), kms_a)  # message ID 0x00
    assert_refused(verdict, "ear-malformed")
    assert verdict.detail == "EAR message ID 0x00 at offset 0, expected 0x01"


@pytest.mark.parametrize(("offset", "ok"), [(-31, False), (-30, True), (0, True), (30, True), (31, False)])
def test_3_stale(kms_a: Authority, offset: int, ok: bool) -> None:
    verdict = check(signed(kms_a, payload(time=NOW + offset)), kms_a)
    if ok:
        assert verdict.ok, verdict
    else:
        assert_refused(verdict, "ear-stale", "906 EAR outside time window")
        assert f"{offset:+d} s from now (skew 30 s)" in verdict.detail


def test_3_skew_is_a_knob(kms_a: Authority) -> None:
    header = signed(kms_a, payload(time=NOW - 100))
    assert_refused(check(header, kms_a), "ear-stale")
    assert check(header, kms_a, policy=EarPolicy(skew=100)).ok
    assert_refused(
        check(signed(kms_a, payload()), kms_a, now=NOW + 0.5, policy=EarPolicy(skew=0)), "ear-stale"
    )


@pytest.mark.parametrize(
    ("source_id", "detail"),
    [
        ("sip:mcx@c.mc.example", "is not in the partner's domains"),
        ("sip:mcx@b.mc.example", "is not in the partner's domains"),
        ("sip:a.mc.example.evil", "is not in the partner's domains"),
        ("tel:+4912345", "not a sip: URI"),
        ("sips:mcx@a.mc.example", "not a sip: URI"),
        ("sip:mcx@a.mc.example:5061", "has a password, port, parameters or headers"),
        ("sip:mcx@a.mc.example;user=phone", "has a password, port, parameters or headers"),
        ("sip:mcx@a.mc.example?x=y", "has a password, port, parameters or headers"),
        ("sip:mcx:pw@a.mc.example", "has a password, port, parameters or headers"),
        ("sip:mcx@[2001:db8::1]", "host is an IP address literal"),
        ("sip:mcx@a.mc.example@x", "not a SIP URI"),
        ("sip:", "not a SIP URI"),
    ],
)
def test_4_source(kms_a: Authority, source_id: str, detail: str) -> None:
    verdict = check(signed(kms_a, payload(source_id=source_id)), kms_a)
    assert_refused(verdict, "ear-source", "904 EAR source not allowed")
    assert detail in verdict.detail


@pytest.mark.parametrize("source_id", ["sip:a.mc.example", "sip:mcx@A.MC.Example", "sip:g%20x@a.mc.example"])
def test_4_source_accepted_forms(kms_a: Authority, source_id: str) -> None:
    assert check(signed(kms_a, payload(source_id=source_id)), kms_a).ok
    assert check(signed(kms_a, payload()), kms_a, source_domains=["A.MC.EXAMPLE"]).ok


def test_4_source_detail_is_bounded(kms_a: Authority) -> None:
    long_id = "sip:" + "u" * 500 + "@c.mc.example"
    verdict = check(signed(kms_a, payload(source_id=long_id)), kms_a)
    assert_refused(verdict, "ear-source")
    assert len(verdict.detail) < 200


def test_5_target(kms_a: Authority) -> None:
    verdict = check(signed(kms_a, payload(target_id="sip:mcx@c.mc.example")), kms_a)
    assert_refused(verdict, "ear-target", "905 EAR target mismatch")
    assert "is not in this system" in verdict.detail
    verdict = check(signed(kms_a, payload(target_id="urn:x")), kms_a)
    assert_refused(verdict, "ear-target")
    assert "not a sip: URI" in verdict.detail
    header = signed(kms_a, payload())
    assert check(header, kms_a, target_id=MCX_B).ok
    verdict = check(header, kms_a, target_id="sip:gms@b.mc.example")
    assert_refused(verdict, "ear-target")
    assert "is not the receiving entity 'sip:gms@b.mc.example'" in verdict.detail
    # Exact match: another case of the same host is another Target ID.
    assert_refused(check(header, kms_a, target_id="sip:mcx@B.mc.example"), "ear-target")
    assert check(header, kms_a, target_roles={Role.MCX_SERVER}).ok
    verdict = check(header, kms_a, target_roles={Role.GMS})
    assert_refused(verdict, "ear-target")
    assert "Target Role 2" in verdict.detail


def test_6_request_type(kms_a: Authority) -> None:
    seen: list[RequestType | None] = []

    def only_migration(request_type: RequestType | None) -> bool:
        seen.append(request_type)
        return request_type is RequestType.MIGRATION

    verdict = check(signed(kms_a, payload()), kms_a, allowed_request_types=only_migration)
    assert_refused(verdict, "ear-request-type", "908 EAR request type not allowed")
    assert verdict.detail == "Request type GROUP (0x03) does not fit this request"
    assert seen == [RequestType.GROUP]
    migration = payload(request=RequestPayload(RequestType.MIGRATION))
    assert check(signed(kms_a, migration), kms_a, allowed_request_types=only_migration).ok
    verdict = check(signed(kms_a, payload(request=None)), kms_a, allowed_request_types=only_migration)
    assert_refused(verdict, "ear-request-type")
    assert verdict.detail == "Request type absent does not fit this request"


def test_6_off_network_always_refused(kms_a: Authority) -> None:
    called: list[object] = []
    header = signed(kms_a, payload(request=RequestPayload(RequestType.OFF_NETWORK)))
    verdict = check(header, kms_a, allowed_request_types=lambda t: called.append(t) or True)
    assert_refused(verdict, "ear-request-type")
    assert "OFF-NETWORK" in verdict.detail
    assert called == []


@pytest.mark.parametrize(("expiry", "ok"), [(NOW - 1, False), (NOW, False), (NOW + 1, True)])
def test_7_expired(kms_a: Authority, expiry: int, ok: bool) -> None:
    header = signed(kms_a, payload(request=RequestPayload(RequestType.GROUP, expiry=expiry)))
    verdict = check(header, kms_a)
    if ok:
        assert verdict.ok
        assert verdict.expiry == expiry
    else:
        assert_refused(verdict, "ear-expired", "909 EAR expired")


def test_8_signature_of_another_identity(kms_a: Authority) -> None:
    header = signed(kms_a, payload(), signer="sip:other@a.mc.example")
    verdict = check(header, kms_a)
    assert_refused(verdict, "ear-signature", "903 EAR signature invalid")
    assert verdict.detail == "ECCSI signature refused (signature-mismatch)"
    assert verdict.ear is not None  # decoded, for the audit log


def test_8_signature_of_another_kms(kms_a: Authority) -> None:
    other = Authority(*eccsi.generate_kms_keys())
    assert_refused(check(signed(other, payload()), kms_a), "ear-signature")
    # Same keys, but the receiver knows the partner KMS under another URI or key period.
    header = signed(kms_a, payload())
    assert_refused(check(header, kms_a, kms_uri="kms.c.mc.example"), "ear-signature")
    assert_refused(check(header, kms_a, key_period=KeyPeriod(86_400, 0)), "ear-signature")


def test_8_signature_over_tampered_octets(kms_a: Authority) -> None:
    header = signed(kms_a, payload())
    data = bytearray(base64.b64decode(header))
    data[29] = ord("j")  # Source ID "sip:mcx@..." becomes "sip:jcx@...": a partner ID, not signed
    assert_refused(check(encode_header_value(bytes(data)), kms_a), "ear-signature")
    data = bytearray(base64.b64decode(header))
    data[-100] ^= 0x01  # inside s
    assert_refused(check(encode_header_value(bytes(data)), kms_a), "ear-signature")


# --- the order -------------------------------------------------------------------------------------------


def test_order_stale_before_signature(kms_a: Authority) -> None:
    header = signed(kms_a, payload(time=NOW - 3600), signer="sip:other@a.mc.example")
    assert_refused(check(header, kms_a), "ear-stale")


def test_order_stale_before_source(kms_a: Authority) -> None:
    header = signed(kms_a, payload(time=NOW + 3600, source_id="sip:x@c.mc.example"))
    assert_refused(check(header, kms_a), "ear-stale")


def test_order_source_before_target(kms_a: Authority) -> None:
    header = signed(kms_a, payload(source_id="sip:x@c.mc.example", target_id="sip:y@c.mc.example"))
    assert_refused(check(header, kms_a), "ear-source")


def test_order_target_before_request_type(kms_a: Authority) -> None:
    header = signed(kms_a, payload(target_id="sip:y@c.mc.example"))
    assert_refused(check(header, kms_a, allowed_request_types=lambda t: False), "ear-target")


def test_order_request_type_before_expired(kms_a: Authority) -> None:
    header = signed(kms_a, payload(request=RequestPayload(RequestType.OFF_NETWORK, expiry=NOW - 5)))
    assert_refused(check(header, kms_a), "ear-request-type")


def test_order_expired_before_signature(kms_a: Authority) -> None:
    value = payload(request=RequestPayload(RequestType.GROUP, expiry=NOW - 5))
    header = signed(kms_a, value, signer="sip:other@a.mc.example")
    assert_refused(check(header, kms_a), "ear-expired")


def test_signature_not_computed_before_cheap_checks(
    kms_a: Authority, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []
    monkeypatch.setattr(ear_check, "verify_ear_signature", lambda *a, **k: calls.append(a))
    for header in (None, "!!", signed(kms_a, payload(time=NOW - 99))):
        check(header, kms_a)
    assert calls == []


# --- policy, replay step, helpers ------------------------------------------------------------------------


def test_warning_texts_default_and_override(kms_a: Authority) -> None:
    assert DEFAULT_WARNINGS[ear_check.REPLAY] == "907 EAR replayed"
    assert DEFAULT_WARNINGS[ear_check.UNAVAILABLE] == "910 EAR replay store unavailable"
    assert len(set(DEFAULT_WARNINGS.values())) == len(DEFAULT_WARNINGS)
    overrides = {"ear-missing": "951 Explicit authentication required"}
    policy = EarPolicy(warning_codes=overrides)
    overrides["ear-missing"] = "952 changed later"
    assert policy.warning_codes["ear-stale"] == "906 EAR outside time window"
    assert policy.warning("ear-missing") == "951 Explicit authentication required"
    assert policy.warning("ear-stale") == "906 EAR outside time window"
    verdict = check(None, kms_a, policy=policy)
    assert verdict.warning == "951 Explicit authentication required"


@pytest.mark.parametrize(
    "warnings",
    [
        {"ear-missing": 'missing "quote"'},
        {"ear-missing": '901 has "quote"'},
        {"ear-missing": "901 line\nbreak"},
        {"ear-missing": "9010 text"},
        {"ear.missing": "901 EAR missing"},
    ],
)
def test_bad_warning_texts_refused(warnings: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="warning_codes"):
        EarPolicy(warning_codes=warnings)


@pytest.mark.parametrize("skew", [-1.0, float("nan"), float("inf"), True])
def test_bad_skew_refused(skew: float) -> None:
    with pytest.raises(ValueError, match="skew"):
        EarPolicy(skew=skew)


def test_replay_step_verdicts() -> None:
    verdict = refused(ear_check.REPLAY, "EAR ID seen before", POLICY)
    assert (verdict.ok, verdict.reason, verdict.warning) == (False, "ear-replay", "907 EAR replayed")
    verdict = refused(ear_check.UNAVAILABLE, "store down", POLICY)
    assert verdict.warning == "910 EAR replay store unavailable"


@pytest.mark.parametrize(("skew", "ttl"), [(0.0, 60.0), (10.0, 60.0), (30.0, 61.0), (100.0, 201.0)])
def test_replay_ttl(skew: float, ttl: float) -> None:
    assert replay_ttl(EarPolicy(skew=skew)) == ttl


def test_replay_ttl_covers_the_acceptance_window(kms_a: Authority) -> None:
    """An EAR first accepted at the earliest instant is still accepted until 2 × skew later."""
    header = signed(kms_a, payload(request=None))
    first = NOW - POLICY.skew
    last = NOW + POLICY.skew
    assert check(header, kms_a, now=first).ok
    assert check(header, kms_a, now=last).ok
    assert not check(header, kms_a, now=last + 1).ok
    assert first + replay_ttl(POLICY) > last


def test_now_must_be_finite(kms_a: Authority) -> None:
    with pytest.raises(ValueError, match="now"):
        check(None, kms_a, now=float("nan"))


@pytest.mark.parametrize(
    ("entity", "host"),
    [("sip:mcx@A.mc.example", "a.mc.example"), ("sip:b.mc.example", "b.mc.example")],
)
def test_entity_host(entity: str, host: str) -> None:
    assert entity_host(entity) == host


@settings(max_examples=200, deadline=None)
@given(st.none() | st.text(max_size=400))
def test_property_any_header_gives_a_verdict(header: str | None) -> None:
    authority = Authority(1, ec.P256.g)
    verdict = check(header, authority)
    assert not verdict.ok
    assert verdict.reason in {"ear-missing", "ear-malformed"}


def test_domains_as_one_string_refused(kms_a: Authority) -> None:
    with pytest.raises(ValueError, match="not one str"):
        check(None, kms_a, source_domains="a.mc.example")
