"""Point arithmetic on a = -3 curves (crypto/ec.py), under both integer backends.

Known P-256 multiples come from the NIST point-multiplication test data and RFC 6507 Appendix A
(spec/crypto.md §2.5), and random ones are checked against OpenSSL through ``cryptography``; a toy
SAKKE-shaped curve (b = 0, cofactor 4) is checked exhaustively against naive affine addition.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ec as openssl_ec
from hypothesis import given, settings
from hypothesis import strategies as st

from backend_helpers import reloaded_under
from mcinterconnect.crypto import backend, ec

Q = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
G = (
    0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
    0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
)

# k -> [k]G: NIST P-256 point-multiplication test data (k = 2, 3, 112233445566778899) and the
# RFC 6507 Appendix A points KPAK = [KSAK]G, PVT = [v]G, J = [j]G (spec/crypto.md §2.5).
KNOWN_MULTIPLES = {
    2: (
        0x7CF27B188D034F7E8A52380304B51AC3C08969E277F21B35A60B48FC47669978,
        0x07775510DB8ED040293D9AC69F7430DBBA7DADE63CE982299E04B79D227873D1,
    ),
    3: (
        0x5ECBE4D1A6330A44C8F7EF951D4BF165E6C6B721EFADA985FB41661BC6E7FD6C,
        0x8734640C4998FF7E374B06CE1A64A2ECD82AB036384FB83D9A79B127A27D5032,
    ),
    112233445566778899: (
        0x339150844EC15234807FE862A86BE77977DBFB3AE3D96F4C22795513AEAAB82F,
        0xB1C14DDFDC8EC1B2583F51E85A5EB3A155840F2034730E9B5ADA38B674336A21,
    ),
    0x12345: (
        0x50D4670BDE75244F28D2838A0D25558A7A72686D4522D4C8273FB6442AEBFA93,
        0xDBDD37551AFD263B5DFD617F3960C65A8C298850FF99F20366DCE7D4367217F4,
    ),
    0x23456: (
        0x758A142779BE89E829E71984CB40EF758CC4AD775FC5B9A3E1C8ED52F6FA36D9,
        0xA79D247692F4EDA3A6BDAB77D6AA6474A464AE4934663C5265BA7018BA091F79,
    ),
    0x34567: (
        0x269D4C8FDEB66A74E4EF8C0D5DCC597DDFE6029C2AFFC4936008CD2CC1045D81,
        0x6DDA6A1310F4B067BD5DABDAD741B7CEF36457E196B1BFA97FD5F8FBB3926ADB,
    ),
}

# A toy curve shaped like SAKKE's (y² = x³ − 3x, p ≡ 3 mod 4, #E = p + 1 = 4q): small enough to
# list every point, with points of order 2 and 4 that exercise the infinity cases of multiply.
TOY_P = 211
TOY_Q = 53


def _openssl_multiple(k: int) -> tuple[int, int]:
    numbers = openssl_ec.derive_private_key(k, openssl_ec.SECP256R1()).public_key().public_numbers()
    return (numbers.x, numbers.y)


@pytest.fixture(scope="module", params=["int", "gmpy2"], autouse=True)
def crypto_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Reload backend and ec with MCIC_CRYPTO_BACKEND set; restore the original modules after."""
    with reloaded_under(request.param, [backend, ec]) as name:
        yield name


def test_backend_really_in_use(crypto_backend: str) -> None:
    assert crypto_backend == backend.NAME
    assert type(backend.mpz(7)).__name__ == ("mpz" if crypto_backend == "gmpy2" else "int")
    # Results are plain int whatever the backend.
    point = ec.multiply(ec.P256, 5, ec.P256.g)
    assert point is not None
    assert type(point[0]) is int
    assert type(point[1]) is int


def test_p256_parameters() -> None:
    curve = ec.P256
    assert (curve.p, curve.q, curve.g, curve.a, curve.cofactor) == (P, Q, G, -3, 1)
    assert curve.coordinate_length == 32
    assert ec.is_on_curve(curve, curve.g)
    generator = openssl_ec.derive_private_key(1, openssl_ec.SECP256R1()).public_key().public_numbers()
    assert (generator.x, generator.y) == curve.g


def test_generator_order() -> None:
    curve = ec.P256
    assert ec.multiply(curve, Q, curve.g) is None
    assert ec.multiply(curve, Q - 1, curve.g) == ec.negate(curve, curve.g)
    assert ec.multiply(curve, Q + 1, curve.g) == curve.g
    # k is used as given, never reduced: 2q + 3 and 3 are the same multiple of G.
    assert ec.multiply(curve, 2 * Q + 3, curve.g) == KNOWN_MULTIPLES[3]
    assert ec.multiply(curve, 0, curve.g) is None
    assert ec.multiply(curve, 5, None) is None


@pytest.mark.parametrize("k", sorted(KNOWN_MULTIPLES))
def test_known_multiples(k: int) -> None:
    assert ec.multiply(ec.P256, k, ec.P256.g) == KNOWN_MULTIPLES[k]
    assert _openssl_multiple(k) == KNOWN_MULTIPLES[k]


def test_negative_scalar() -> None:
    assert ec.multiply(ec.P256, -3, ec.P256.g) == ec.negate(ec.P256, KNOWN_MULTIPLES[3])


def test_add_special_cases() -> None:
    curve = ec.P256
    g = curve.g
    assert ec.add(curve, g, None) == g
    assert ec.add(curve, None, g) == g
    assert ec.add(curve, None, None) is None
    assert ec.add(curve, g, ec.negate(curve, g)) is None
    assert ec.add(curve, g, g) == KNOWN_MULTIPLES[2]
    assert ec.add(curve, g, KNOWN_MULTIPLES[2]) == KNOWN_MULTIPLES[3]
    assert ec.negate(curve, None) is None


@settings(max_examples=60, deadline=None)
@given(k=st.integers(min_value=1, max_value=Q - 1))
def test_multiply_agrees_with_openssl(k: int) -> None:
    assert ec.multiply(ec.P256, k, ec.P256.g) == _openssl_multiple(k)


@settings(max_examples=20, deadline=None)
@given(a=st.integers(min_value=0, max_value=2**300), b=st.integers(min_value=0, max_value=2**300))
def test_multiply_is_linear(a: int, b: int) -> None:
    curve = ec.P256
    point = KNOWN_MULTIPLES[112233445566778899]
    assert ec.multiply(curve, a + b, point) == ec.add(
        curve, ec.multiply(curve, a, point), ec.multiply(curve, b, point)
    )
    expected = _openssl_multiple((a * 112233445566778899) % Q) if a % Q else None
    assert ec.multiply(curve, a, point) == expected


def _toy_points(curve: ec.Curve) -> list[tuple[int, int]]:
    squares: dict[int, list[int]] = {}
    for y in range(curve.p):
        squares.setdefault(y * y % curve.p, []).append(y)
    return [(x, y) for x in range(curve.p) for y in squares.get((x**3 + curve.a * x + curve.b) % curve.p, [])]


def _naive_add(p: int, p1: ec.Point, p2: ec.Point) -> ec.Point:
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2 and (y1 + y2) % p == 0:
        return None
    tangent = p1 == p2
    numerator, denominator = (3 * x1 * x1 - 3, 2 * y1) if tangent else (y2 - y1, x2 - x1)
    slope = numerator * pow(denominator, -1, p) % p
    x3 = (slope * slope - x1 - x2) % p
    return (x3, (slope * (x1 - x3) - y1) % p)


def test_toy_sakke_shaped_curve_exhaustively() -> None:
    # G: a point of order q, i.e. [4]P for any P of order > 4.
    generator = next(
        multiple
        for x in range(TOY_P)
        if (point := _find_point(x)) is not None
        and (multiple := _naive_multiple(TOY_P, 4, point)) is not None
    )
    curve = ec.Curve("toy", TOY_P, -3, 0, TOY_Q, generator[0], generator[1], cofactor=4)
    every_point = _toy_points(curve)
    assert len(every_point) + 1 == TOY_P + 1 == 4 * TOY_Q  # supersingular: #E = p + 1
    assert (0, 0) in every_point  # a point of order 2
    assert ec.multiply(curve, TOY_Q, curve.g) is None
    for point in every_point:
        assert ec.is_on_curve(curve, point)
        multiple: ec.Point = None
        for k in range(0, 45):
            assert ec.multiply(curve, k, point) == multiple, (point, k)
            multiple = _naive_add(TOY_P, multiple, point)
        # Scalars far beyond the order, never reduced: [k]P = [k mod 4q]P.
        for k in (4 * TOY_Q, 4 * TOY_Q + 1, 2**70 + 3):
            assert ec.multiply(curve, k, point) == ec.multiply(curve, k % (4 * TOY_Q), point)
        other = every_point[(every_point.index(point) * 7 + 3) % len(every_point)]
        assert ec.add(curve, point, other) == _naive_add(TOY_P, point, other)


def _find_point(x: int) -> tuple[int, int] | None:
    rhs = (x**3 - 3 * x) % TOY_P
    for y in range(1, TOY_P):
        if y * y % TOY_P == rhs:
            return (x, y)
    return None


def _naive_multiple(p: int, k: int, point: ec.Point) -> ec.Point:
    result: ec.Point = None
    for _ in range(k):
        result = _naive_add(p, result, point)
    return result


def test_curve_validation() -> None:
    with pytest.raises(ValueError, match="a must be -3"):
        ec.Curve("bad", P, 1, ec.P256.b, Q, *G)
    with pytest.raises(ValueError, match="generator is not on the curve"):
        ec.Curve("bad", P, -3, ec.P256.b, Q, G[0], G[1] + 1)


def test_is_on_curve() -> None:
    curve = ec.P256
    assert not ec.is_on_curve(curve, None)
    assert not ec.is_on_curve(curve, (G[0], G[1] + 1))
    assert not ec.is_on_curve(curve, (G[0] + P, G[1]))
    assert not ec.is_on_curve(curve, (-1, G[1]))


ENCODED_G = bytes.fromhex(
    "04"
    "6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296"
    "4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5"
)


def test_encode_decode_round_trip() -> None:
    assert ec.encode_point(ec.P256, G) == ENCODED_G
    assert ec.decode_point(ec.P256, ENCODED_G) == G
    for point in KNOWN_MULTIPLES.values():
        encoded = ec.encode_point(ec.P256, point)
        assert len(encoded) == 65
        assert ec.decode_point(ec.P256, encoded) == point


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "0 octets, expected 65"),
        (ENCODED_G[:-1], "64 octets, expected 65"),
        (ENCODED_G + b"\x00", "66 octets, expected 65"),
        (b"\x00", "point at infinity"),
        (b"\x02" + ENCODED_G[1:], "only the uncompressed form"),
        (b"\x05" + ENCODED_G[1:], "prefix 0x05 is not a point encoding"),
        (ENCODED_G[:-1] + bytes([ENCODED_G[-1] ^ 1]), "not on the curve"),
        (b"\x04" + b"\xff" * 64, "not below the P-256 field prime"),
        (b"\x04" + (G[0] + P).to_bytes(33, "big")[1:] + G[1].to_bytes(32, "big"), "not on the curve"),
    ],
)
def test_decode_errors(data: bytes, reason: str) -> None:
    with pytest.raises(ec.EcError, match=reason):
        ec.decode_point(ec.P256, data)


def test_encode_errors() -> None:
    with pytest.raises(ec.EcError, match="point at infinity"):
        ec.encode_point(ec.P256, None)
    with pytest.raises(ec.EcError, match="not elements"):
        ec.encode_point(ec.P256, (P, 1))
    assert issubclass(ec.EcError, ValueError)


@settings(max_examples=200, deadline=None)
@given(data=st.one_of(st.binary(max_size=80), st.binary(min_size=64, max_size=64).map(b"\x04".__add__)))
def test_decode_arbitrary_bytes(data: bytes) -> None:
    try:
        point = ec.decode_point(ec.P256, data)
    except ec.EcError:
        return
    assert ec.is_on_curve(ec.P256, point)
    assert ec.encode_point(ec.P256, point) == data
