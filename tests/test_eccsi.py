"""ECCSI (RFC 6507) on P-256: RFC Appendix A vectors, fast (OpenSSL) vs reference paths, refusals.

Every test runs under both integer backends (``MCIC_CRYPTO_BACKEND=int`` and ``gmpy2``); the
vectors are those of spec/crypto.md §2.5, the dispatch rules those of spec/crypto.md §3.2.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend_helpers import reloaded_under
from mcinterconnect.crypto import backend, ec, eccsi

Q = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF


def _h(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


def _point(text: str) -> tuple[int, int]:
    data = _h(text)
    assert len(data) == 65
    assert data[0] == 4
    return (int.from_bytes(data[1:33], "big"), int.from_bytes(data[33:], "big"))


# RFC 6507 Appendix A (spec/crypto.md §2.5); integers in hexadecimal.
KSAK = 0x12345
KPAK = _point("""04
    50D4670B DE75244F 28D2838A 0D25558A 7A72686D 4522D4C8 273FB644 2AEBFA93
    DBDD3755 1AFD263B 5DFD617F 3960C65A 8C298850 FF99F203 66DCE7D4 367217F4""")
ID = _h("32303131 2D303200 74656C3A 2B343437 37303039 30303132 3300")
V = 0x23456
PVT = _point("""04
    758A1427 79BE89E8 29E71984 CB40EF75 8CC4AD77 5FC5B9A3 E1C8ED52 F6FA36D9
    A79D2476 92F4EDA3 A6BDAB77 D6AA6474 A464AE49 34663C52 65BA7018 BA091F79""")
HS = _h("490F3FEB BC1C902F 6289723D 7F8CBF79 DB889308 49D19F38 F0295B5C 276C14D1")
SSK = 0x23F374AE1F4033F3E9DBDDAAEF20F4CF0B86BBD5A138A5AE9E7E006B34489A0D
M = _h("6D657373 61676500")
J_SCALAR = 0x34567
J = _point("""04
    269D4C8F DEB66A74 E4EF8C0D 5DCC597D DFE6029C 2AFFC493 6008CD2C C1045D81
    6DDA6A13 10F4B067 BD5DABDA D741B7CE F36457E1 96B1BFA9 7FD5F8FB B3926ADB""")
R = 0x269D4C8FDEB66A74E4EF8C0D5DCC597DDFE6029C2AFFC4936008CD2CC1045D81
HE = _h("111F90EA E8271C96 DF9B3D67 26768D9E E9B18145 D7EC152C FA9C23D1 C4F02285")
S = 0xE09B528D0EF8D6DF1AA3ECBF80110CFCEC9FC68252CEBB679F4134846940CCFD
Y = _point("""04
    833898D9 39C0013B B0502728 6F95CCE0 37C11BD2 5799423C 76E48362 A4959978
    95D0473A 1CD6186E E9F0C104 B472499E 1A24D6CE 3D85173F 02EBBD94 5C25F604""")
PVT_ENCODED = b"\x04" + PVT[0].to_bytes(32, "big") + PVT[1].to_bytes(32, "big")
SIGNATURE = R.to_bytes(32, "big") + S.to_bytes(32, "big") + PVT_ENCODED

SIGNERS = {"fast": "sign", "reference": "sign_reference"}
VERIFIERS = {"fast": "verify", "reference": "verify_reference", "verifier": "Verifier"}


@pytest.fixture(scope="module", params=["int", "gmpy2"], autouse=True)
def crypto_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Reload backend, ec and eccsi with MCIC_CRYPTO_BACKEND set; restore the original modules after."""
    with reloaded_under(request.param, [backend, ec, eccsi]) as name:
        yield name


def _signer(kind: str) -> Callable[..., bytes]:
    function: Callable[..., bytes] = getattr(eccsi, SIGNERS[kind])
    return function


def _verifier(kind: str) -> Callable[[bytes, bytes, bytes, ec.Point], None]:
    if kind == "verifier":
        return eccsi.Verifier().verify
    function: Callable[[bytes, bytes, bytes, ec.Point], None] = getattr(eccsi, VERIFIERS[kind])
    return function


def _reason(verify: Callable[[bytes, bytes, bytes, ec.Point], None], *args: object) -> str | None:
    try:
        verify(*args)  # type: ignore[arg-type]
    except eccsi.EccsiError as exc:
        return exc.reason
    return None


def test_backend_really_in_use(crypto_backend: str) -> None:
    assert crypto_backend == backend.NAME
    assert type(backend.mpz(7)).__name__ == ("mpz" if crypto_backend == "gmpy2" else "int")
    # eccsi's reference path runs on the reloaded ec, which runs on the reloaded backend.
    assert eccsi.ec is ec
    assert ec.backend is backend


# --- RFC 6507 Appendix A -----------------------------------------------------------------------


def test_rfc_kpak() -> None:
    assert ec.multiply(ec.P256, KSAK, ec.P256.g) == KPAK
    assert eccsi._fixed_base_openssl(KSAK) == KPAK


def test_rfc_issue_ssk() -> None:
    ssk, pvt = eccsi.issue_ssk(KSAK, KPAK, ID, v=V)
    assert (ssk, pvt) == (SSK, PVT)
    assert ec.multiply(ec.P256, V, ec.P256.g) == PVT


def test_rfc_hs_and_ssk_validation() -> None:
    assert eccsi.compute_hs(KPAK, ID, PVT) == HS
    assert eccsi.validate_ssk(SSK, PVT, KPAK, ID) == HS
    # [SSK]G = KPAK + [HS]PVT = Y, in both arithmetics.
    assert eccsi._public_key_y(HS, PVT, KPAK) == Y
    assert ec.multiply(ec.P256, SSK, ec.P256.g) == Y
    assert eccsi._fixed_base_openssl(SSK) == Y


def test_rfc_j_r_he() -> None:
    assert eccsi._fixed_base_openssl(J_SCALAR) == J
    assert eccsi._fixed_base_reference(J_SCALAR) == J
    assert J[0] == R
    assert eccsi.compute_he(HS, R, M) == HE


@pytest.mark.parametrize("kind", sorted(SIGNERS))
@pytest.mark.parametrize("given_hs", [True, False])
def test_rfc_signature(kind: str, given_hs: bool) -> None:
    signature = _signer(kind)(M, ID, SSK, PVT, KPAK, j=J_SCALAR, hs=HS if given_hs else None)
    assert len(signature) == eccsi.SIGNATURE_LENGTH == 129
    assert signature[:32] == R.to_bytes(32, "big")
    assert signature[32:64] == S.to_bytes(32, "big")
    assert signature[64:] == PVT_ENCODED
    assert signature == SIGNATURE


@pytest.mark.parametrize("kind", sorted(VERIFIERS))
def test_rfc_verification(kind: str) -> None:
    _verifier(kind)(M, SIGNATURE, ID, KPAK)


def test_rfc_verification_reconstructs_j() -> None:
    # RFC 6507 §5.2.2 steps 4-5: J = [s]([HE]G + [r]Y) is the signer's J.
    he = int.from_bytes(HE, "big")
    inner = ec.add(ec.P256, ec.multiply(ec.P256, he, ec.P256.g), ec.multiply(ec.P256, R, Y))
    assert ec.multiply(ec.P256, S, inner) == J
    # spec/crypto.md §3.1: the same J as [HE·s]G + [r·s]Y.
    assert (
        ec.add(ec.P256, ec.multiply(ec.P256, he * S % Q, ec.P256.g), ec.multiply(ec.P256, R * S % Q, Y)) == J
    )


# --- fast vs reference ------------------------------------------------------------------------

_SCALARS = st.integers(min_value=1, max_value=Q - 1)


@settings(max_examples=50, deadline=None)
@given(
    ksak=_SCALARS,
    v=_SCALARS,
    j=_SCALARS,
    identifier=st.binary(max_size=64),
    message=st.binary(max_size=200),
    tamper=st.integers(min_value=0, max_value=129 * 8 - 1),
)
def test_fast_and_reference_agree(
    ksak: int, v: int, j: int, identifier: bytes, message: bytes, tamper: int
) -> None:
    kpak = ec.multiply(ec.P256, ksak, ec.P256.g)
    ssk, pvt = eccsi.issue_ssk(ksak, kpak, identifier, v=v)
    hs = eccsi.validate_ssk(ssk, pvt, kpak, identifier)
    signature = eccsi.sign(message, identifier, ssk, pvt, kpak, j=j, hs=hs)
    assert signature == eccsi.sign_reference(message, identifier, ssk, pvt, kpak, j=j)
    eccsi.verify(message, signature, identifier, kpak)
    eccsi.verify_reference(message, signature, identifier, kpak)
    # One bit flipped anywhere: both paths refuse, for the same reason.
    damaged = bytearray(signature)
    damaged[tamper // 8] ^= 1 << (tamper % 8)
    fast = _reason(eccsi.verify, message, bytes(damaged), identifier, kpak)
    assert fast is not None
    assert fast == _reason(eccsi.verify_reference, message, bytes(damaged), identifier, kpak)
    other_message = message + b"\x00"
    assert _reason(eccsi.verify, other_message, signature, identifier, kpak) == "signature-mismatch"
    assert _reason(eccsi.verify_reference, other_message, signature, identifier, kpak) == "signature-mismatch"


def test_random_keys_and_j() -> None:
    ksak, kpak = eccsi.generate_kms_keys()
    assert 0 < ksak < Q
    assert kpak == ec.multiply(ec.P256, ksak, ec.P256.g)
    ssk, pvt = eccsi.issue_ssk(ksak, kpak, ID)
    hs = eccsi.validate_ssk(ssk, pvt, kpak, ID)
    first = eccsi.sign(M, ID, ssk, pvt, kpak, hs=hs)
    second = eccsi.sign(M, ID, ssk, pvt, kpak, hs=hs)
    assert first != second  # a fresh j each time
    for signature in (first, second, eccsi.sign_reference(M, ID, ssk, pvt, kpak)):
        eccsi.verify(M, signature, ID, kpak)
        eccsi.verify_reference(M, signature, ID, kpak)


# --- refusals ---------------------------------------------------------------------------------


def _with(r: int | None = None, s: int | None = None, pvt: bytes | None = None) -> bytes:
    return (
        (R if r is None else r).to_bytes(32, "big")
        + (S if s is None else s).to_bytes(32, "big")
        + (PVT_ENCODED if pvt is None else pvt)
    )


_OTHER_PVT = eccsi._fixed_base_openssl(0x777)
_OTHER_PVT_ENCODED = b"\x04" + _OTHER_PVT[0].to_bytes(32, "big") + _OTHER_PVT[1].to_bytes(32, "big")
_OFF_CURVE = PVT_ENCODED[:-1] + bytes([PVT_ENCODED[-1] ^ 1])

NEGATIVE_CASES = {
    "r modified": (M, _with(r=R ^ 1), ID, KPAK, "signature-mismatch"),
    "s modified": (M, _with(s=S ^ (1 << 100)), ID, KPAK, "signature-mismatch"),
    "PVT of another key": (M, _with(pvt=_OTHER_PVT_ENCODED), ID, KPAK, "signature-mismatch"),
    "PVT off the curve": (M, _with(pvt=_OFF_CURVE), ID, KPAK, "pvt-invalid"),
    "PVT compressed": (M, _with(pvt=b"\x02" + PVT_ENCODED[1:]), ID, KPAK, "pvt-invalid"),
    "PVT x >= p": (M, _with(pvt=b"\x04" + b"\xff" * 64), ID, KPAK, "pvt-invalid"),
    "message modified": (b"message\x01", SIGNATURE, ID, KPAK, "signature-mismatch"),
    "wrong identifier": (M, SIGNATURE, ID[:-1] + b"4\x00", KPAK, "signature-mismatch"),
    "wrong KPAK": (M, SIGNATURE, ID, _OTHER_PVT, "signature-mismatch"),
    "KPAK off the curve": (M, SIGNATURE, ID, (KPAK[0], KPAK[1] ^ 1), "kpak-invalid"),
    "KPAK at infinity": (M, SIGNATURE, ID, None, "kpak-invalid"),
    "truncated": (M, SIGNATURE[:-1], ID, KPAK, "signature-length"),
    "extended": (M, SIGNATURE + b"\x00", ID, KPAK, "signature-length"),
    "empty": (M, b"", ID, KPAK, "signature-length"),
    "r = 0": (M, _with(r=0), ID, KPAK, "r-out-of-range"),
    "r = p": (M, _with(r=P), ID, KPAK, "r-out-of-range"),
    "r = 2^256 - 1": (M, _with(r=2**256 - 1), ID, KPAK, "r-out-of-range"),
    "s = 0": (M, _with(s=0), ID, KPAK, "s-out-of-range"),
    "s = q": (M, _with(s=Q), ID, KPAK, "s-out-of-range"),
    "s = 2^256 - 1": (M, _with(s=2**256 - 1), ID, KPAK, "s-out-of-range"),
}


@pytest.mark.parametrize("kind", sorted(VERIFIERS))
@pytest.mark.parametrize("case", sorted(NEGATIVE_CASES))
def test_refusals(kind: str, case: str) -> None:
    message, signature, identifier, kpak, reason = NEGATIVE_CASES[case]
    with pytest.raises(eccsi.EccsiError) as caught:
        _verifier(kind)(message, signature, identifier, kpak)  # type: ignore[arg-type]
    assert caught.value.reason == reason
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("kind", sorted(VERIFIERS))
def test_negated_s_also_verifies(kind: str) -> None:
    # [q - s](...) = -J has the x-coordinate of J: ECCSI signatures are malleable in s, and RFC 6507
    # §5.2.1 step 6 lets a signer send either.  Replay caches must not key on signature octets.
    _verifier(kind)(M, _with(s=Q - S), ID, KPAK)


def test_error_messages_are_precise() -> None:
    with pytest.raises(eccsi.EccsiError, match="128 octets, expected 129"):
        eccsi.verify(M, SIGNATURE[:-1], ID, KPAK)
    with pytest.raises(eccsi.EccsiError, match="PVT refused: the point is not on the curve"):
        eccsi.verify(M, _with(pvt=_OFF_CURVE), ID, KPAK)
    with pytest.raises(eccsi.EccsiError, match=r"s must lie in \[1, q - 1\]"):
        eccsi.verify(M, _with(s=Q), ID, KPAK)


# --- dispatch between the paths (spec/crypto.md §3.2) ------------------------------------------


@pytest.fixture
def reference_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records r each time a Verifier falls back to the reference arithmetic."""
    calls: list[int] = []
    original = eccsi._verify_with_y

    def spy(message: bytes, r: int, s: int, hs: bytes, y: ec.Point) -> None:
        calls.append(r)
        original(message, r, s, hs, y)

    monkeypatch.setattr(eccsi, "_verify_with_y", spy)
    return calls


def test_normal_signature_uses_openssl(reference_calls: list[int]) -> None:
    eccsi.Verifier().verify(M, SIGNATURE, ID, KPAK)
    assert reference_calls == []


@pytest.mark.parametrize("r", [Q, Q + 1, P - 1, 1, P - Q - 1])
def test_r_outside_ecdsa_domain_goes_to_reference(reference_calls: list[int], r: int) -> None:
    # r ≥ q: OpenSSL refuses it.  r < p − q: x mod q = r would also accept x = r + q.
    verifier = eccsi.Verifier()
    with pytest.raises(eccsi.EccsiError) as caught:
        verifier.verify(M, _with(r=r), ID, KPAK)
    assert caught.value.reason == "signature-mismatch"
    assert reference_calls == [r]


def test_r_at_lower_edge_of_fast_domain_uses_openssl(reference_calls: list[int]) -> None:
    with pytest.raises(eccsi.EccsiError):
        eccsi.Verifier().verify(M, _with(r=P - Q), ID, KPAK)
    assert reference_calls == []


def test_y_at_infinity_goes_to_reference(monkeypatch: pytest.MonkeyPatch, reference_calls: list[int]) -> None:
    # Y = [HS]PVT + KPAK = O cannot be reached on purpose; pretend it was.  With Y = O,
    # J = [s·HE]G, so s = j·HE⁻¹ signs with r = x([j]G).
    monkeypatch.setattr(eccsi, "_public_key_y", lambda hs, pvt, kpak: None)
    r = J[0]
    he = int.from_bytes(eccsi.compute_he(HS, r, M), "big")
    forged = _with(r=r, s=J_SCALAR * pow(he, -1, Q) % Q)
    eccsi.Verifier().verify(M, forged, ID, KPAK)
    eccsi.verify_reference(M, forged, ID, KPAK)
    assert reference_calls == [r, r]
    with pytest.raises(eccsi.EccsiError, match="does not verify"):
        eccsi.Verifier().verify(M, _with(r=r, s=1), ID, KPAK)


# --- the cache of Y (spec/crypto.md §3.3) -------------------------------------------------------


def test_verifier_caches_y_per_signer(monkeypatch: pytest.MonkeyPatch) -> None:
    computed: list[bytes] = []
    original = eccsi._public_key_y

    def counting(hs: bytes, pvt: ec.Point, kpak: ec.Point) -> ec.Point:
        computed.append(hs)
        return original(hs, pvt, kpak)

    monkeypatch.setattr(eccsi, "_public_key_y", counting)
    verifier = eccsi.Verifier(max_entries=2)
    for _ in range(3):
        verifier.verify(M, SIGNATURE, ID, KPAK)
    assert computed == [HS]
    assert len(verifier) == 1
    # A refused signature under the same signer still uses the cached Y.
    with pytest.raises(eccsi.EccsiError):
        verifier.verify(b"other", SIGNATURE, ID, KPAK)
    assert len(computed) == 1
    # Another identifier is another entry; the same signature does not verify under it.
    with pytest.raises(eccsi.EccsiError):
        verifier.verify(M, SIGNATURE, b"someone else", KPAK)
    assert len(verifier) == 2
    # A third signer evicts the least recently used one (the RFC signer was used before "someone else").
    with pytest.raises(eccsi.EccsiError):
        verifier.verify(M, SIGNATURE, b"third", KPAK)
    assert len(verifier) == 2
    verifier.verify(M, SIGNATURE, ID, KPAK)
    assert len(computed) == 4
    verifier.clear()
    assert len(verifier) == 0


def test_verifier_cache_keyed_by_kpak() -> None:
    verifier = eccsi.Verifier()
    verifier.verify(M, SIGNATURE, ID, KPAK)
    with pytest.raises(eccsi.EccsiError, match="does not verify"):
        verifier.verify(M, SIGNATURE, ID, _OTHER_PVT)
    with pytest.raises(eccsi.EccsiError) as caught:
        verifier.verify(M, SIGNATURE, ID, None)
    assert caught.value.reason == "kpak-invalid"
    with pytest.raises(ValueError, match="at least 1"):
        eccsi.Verifier(max_entries=0)


# --- KMS and holder side ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ((SSK + 1, PVT, KPAK, ID), "ssk-mismatch"),
        ((SSK, PVT, KPAK, ID + b"x"), "ssk-mismatch"),
        ((SSK, _OTHER_PVT, KPAK, ID), "ssk-mismatch"),
        ((SSK, (PVT[0], PVT[1] ^ 1), KPAK, ID), "pvt-invalid"),
        ((SSK, None, KPAK, ID), "pvt-invalid"),
        ((SSK, PVT, (KPAK[0], KPAK[1] ^ 1), ID), "kpak-invalid"),
        ((0, PVT, KPAK, ID), "ssk-invalid"),
        ((Q, PVT, KPAK, ID), "ssk-invalid"),
    ],
)
def test_validate_ssk_refusals(args: tuple[int, ec.Point, ec.Point, bytes], reason: str) -> None:
    with pytest.raises(eccsi.EccsiError) as caught:
        eccsi.validate_ssk(*args)
    assert caught.value.reason == reason


def test_issue_ssk_refusals() -> None:
    with pytest.raises(eccsi.EccsiError, match="KPAK is not"):
        eccsi.issue_ssk(KSAK + 1, KPAK, ID, v=V)
    with pytest.raises(eccsi.EccsiError, match="KSAK must lie"):
        eccsi.issue_ssk(0, KPAK, ID)
    with pytest.raises(eccsi.EccsiError, match="v must lie"):
        eccsi.issue_ssk(KSAK, KPAK, ID, v=Q)
    with pytest.raises(eccsi.EccsiError) as caught:
        eccsi.issue_ssk(KSAK, None, ID)
    assert caught.value.reason == "kpak-invalid"


@pytest.mark.parametrize("kind", sorted(SIGNERS))
def test_sign_refusals(kind: str) -> None:
    sign = _signer(kind)
    with pytest.raises(eccsi.EccsiError, match="j must lie"):
        sign(M, ID, SSK, PVT, KPAK, j=0)
    with pytest.raises(eccsi.EccsiError, match="j must lie"):
        sign(M, ID, SSK, PVT, KPAK, j=Q)
    with pytest.raises(eccsi.EccsiError, match="SSK must lie"):
        sign(M, ID, 0, PVT, KPAK)
    with pytest.raises(eccsi.EccsiError, match="HS is 31 octets"):
        sign(M, ID, SSK, PVT, KPAK, hs=HS[:-1])
    with pytest.raises(eccsi.EccsiError, match="PVT is not a point"):
        sign(M, ID, SSK, (PVT[0], PVT[1] ^ 1), KPAK)


@pytest.mark.parametrize("kind", sorted(SIGNERS))
def test_sign_retries_when_he_plus_r_ssk_is_zero(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # RFC 6507 §5.2.1 step 4: choose an SSK for which the RFC's j gives HE + r·SSK ≡ 0 (mod q).
    bad_ssk = -int.from_bytes(HE, "big") * pow(R, -1, Q) % Q
    with pytest.raises(eccsi.EccsiError, match="choose another"):
        _signer(kind)(M, ID, bad_ssk, PVT, KPAK, j=J_SCALAR, hs=HS)
    drawn = iter([J_SCALAR, 0x777])
    monkeypatch.setattr(eccsi, "_random_scalar", lambda: next(drawn))
    signature = _signer(kind)(M, ID, bad_ssk, PVT, KPAK, hs=HS)
    assert signature[:32] == _OTHER_PVT[0].to_bytes(32, "big")  # r of the second j
