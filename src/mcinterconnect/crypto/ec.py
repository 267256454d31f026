"""Short-Weierstrass elliptic curves with a = -3 over the big-integer backend.

This is the point arithmetic under the identity-based cryptography:

* ECCSI (RFC 6507 §3) on NIST P-256 — the curve ``P256`` below — for the *public* multiplications
  of the reference path (Y = [HS]PVT + KPAK, J = [s]([HE]G + [r]Y));
* SAKKE (RFC 6508 §2.1) on its supersingular curve y² = x³ − 3x over a 1024-bit prime, whose
  ``Curve`` is defined by ``sakke.py`` (b = 0, cofactor 4).

Points are affine: ``Point = tuple[int, int] | None`` with ``None`` the point at infinity.
Coordinates handed out are plain ``int``; the arithmetic inside runs on ``backend`` integers
(``int`` or ``gmpy2.mpz``, chosen by ``MCIC_CRYPTO_BACKEND``).  Scalar multiplication works in
Jacobian coordinates with the a = -3 doubling formulas, a fixed window (4 bits for fields up to
256 bits, 5 bits above) and mixed Jacobian-affine additions; the scalar is used as given, never
reduced modulo an order, so it also suits points outside the prime-order subgroup.

Side channels (spec/crypto.md §11): nothing here is constant time — Python big integers and the
windowed loop leak timing.  Secret scalars on P-256 (KSAK, v, j) go to OpenSSL through
``cryptography`` instead (see ``eccsi.py``); this module is for public scalars and for SAKKE,
where the residual risk is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcinterconnect.crypto import backend

__all__ = [
    "P256",
    "Curve",
    "EcError",
    "Point",
    "add",
    "decode_point",
    "encode_point",
    "is_on_curve",
    "multiply",
    "negate",
]

#: An affine point ``(x, y)``, or ``None`` for the point at infinity.
Point = tuple[int, int] | None


class EcError(ValueError):
    """A point encoding or a curve point was refused; the message says why (never secret)."""


@dataclass(frozen=True)
class Curve:
    """y² = x³ + a·x + b over F_p with a ≡ -3 (mod p); G = (gx, gy) of prime order q.

    ``cofactor`` is the number of curve points divided by q (1 for P-256, 4 for SAKKE).
    """

    name: str
    p: int
    a: int
    b: int
    q: int
    gx: int
    gy: int
    cofactor: int = 1

    def __post_init__(self) -> None:
        # The doubling formulas below hard-wire a = -3 (3·(X − Z²)·(X + Z²)).
        if (self.a + 3) % self.p != 0:
            raise ValueError(f"curve {self.name}: a must be -3 modulo p")
        if not is_on_curve(self, (self.gx, self.gy)):
            raise ValueError(f"curve {self.name}: generator is not on the curve")

    @property
    def g(self) -> tuple[int, int]:
        """The generator G as an affine point."""
        return (self.gx, self.gy)

    @property
    def coordinate_length(self) -> int:
        """Octets of one encoded coordinate: the byte length of p (32 for P-256)."""
        return (self.p.bit_length() + 7) // 8


def is_on_curve(curve: Curve, point: Point) -> bool:
    """Whether ``point`` is a finite point of ``curve`` with coordinates in [0, p).

    The point at infinity gives ``False``: it has no affine coordinates and no wire encoding,
    and every protocol check using this function (PVT, KPAK, SAKKE's R_b) wants a finite point.
    Subgroup membership is not checked (it is implied when the cofactor is 1).
    """
    if point is None:
        return False
    x, y = point
    p = curve.p
    if not (0 <= x < p and 0 <= y < p):
        return False
    x = backend.mpz(x)
    y = backend.mpz(y)
    return (y * y - (x * x * x + curve.a * x + curve.b)) % p == 0


def negate(curve: Curve, point: Point) -> Point:
    """-point."""
    if point is None:
        return None
    x, y = point
    return (x, (-y) % curve.p)


def add(curve: Curve, p1: Point, p2: Point) -> Point:
    """p1 + p2 in affine coordinates (one modular inversion)."""
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    p = backend.mpz(curve.p)
    x1, y1 = backend.mpz(p1[0]), backend.mpz(p1[1])
    x2, y2 = backend.mpz(p2[0]), backend.mpz(p2[1])
    if (x1 - x2) % p == 0:
        if (y1 + y2) % p == 0:
            return None  # p2 = -p1, including the doubling of a point of order 2
        slope = (3 * x1 * x1 + curve.a) * backend.invert(2 * y1 % p, p) % p
    else:
        slope = (y2 - y1) * backend.invert((x2 - x1) % p, p) % p
    x3 = (slope * slope - x1 - x2) % p
    y3 = (slope * (x1 - x3) - y1) % p
    return (backend.to_int(x3), backend.to_int(y3))


# Jacobian coordinates (X, Y, Z) stand for the affine point (X/Z², Y/Z³); Z = 0 is infinity.
_Jacobian = tuple[int, int, int]


def _double(point: _Jacobian, p: int) -> _Jacobian:
    """2·point with a = -3 (EFD "dbl-2001-b"); a point with Y = 0 goes to Z = 0 by itself."""
    x, y, z = point
    delta = z * z % p
    gamma = y * y % p
    beta = x * gamma % p
    alpha = 3 * (x - delta) * (x + delta) % p
    x3 = (alpha * alpha - 8 * beta) % p
    z3 = 2 * y * z % p
    y3 = (alpha * (4 * beta - x3) - 8 * gamma * gamma) % p
    return (x3, y3, z3)


def _add_affine(point: _Jacobian, x2: int, y2: int, p: int) -> _Jacobian:
    """point (Jacobian) + (x2, y2) (affine, finite), every special case handled."""
    x1, y1, z1 = point
    if z1 == 0:
        return (x2, y2, backend.mpz(1))
    z1z1 = z1 * z1 % p
    h = (x2 * z1z1 - x1) % p
    r = (y2 * z1 * z1z1 - y1) % p
    if h == 0:
        if r == 0:
            return _double((x2, y2, backend.mpz(1)), p)
        return (backend.mpz(1), backend.mpz(1), backend.mpz(0))
    hh = h * h % p
    hhh = h * hh % p
    v = x1 * hh % p
    x3 = (r * r - hhh - 2 * v) % p
    y3 = (r * (v - x3) - y1 * hhh) % p
    z3 = z1 * h % p
    return (x3, y3, z3)


def _to_affine_batch(points: list[_Jacobian], p: int) -> list[Point]:
    """Many Jacobian points to affine with one inversion (Montgomery's trick); Z = 0 gives None."""
    finite = [i for i, pt in enumerate(points) if pt[2] % p != 0]
    out: list[Point] = [None] * len(points)
    if not finite:
        return out
    prefix = []
    acc = backend.mpz(1)
    for i in finite:
        acc = acc * points[i][2] % p
        prefix.append(acc)
    inv = backend.invert(acc, p)
    for n in range(len(finite) - 1, -1, -1):
        i = finite[n]
        z_inv = inv * prefix[n - 1] % p if n > 0 else inv
        inv = inv * points[i][2] % p
        z_inv2 = z_inv * z_inv % p
        x, y, _ = points[i]
        out[i] = (x * z_inv2 % p, y * z_inv2 * z_inv % p)
    return out


def multiply(curve: Curve, k: int, point: Point) -> Point:
    """[k]point for any integer k (k < 0 multiplies -point; k is not reduced modulo any order).

    Fixed window of 4 bits (5 above 256-bit fields), table of affine multiples, mixed additions.
    Not constant time: for public scalars, or for SAKKE with the risk recorded (module docstring).
    """
    if point is None or k == 0:
        return None
    k = int(k)
    if k < 0:
        return multiply(curve, -k, negate(curve, point))
    p = backend.mpz(curve.p)
    width = 4 if curve.p.bit_length() <= 256 else 5
    x0, y0 = backend.mpz(point[0]), backend.mpz(point[1])
    one = backend.mpz(1)

    # Table of [1..2^width - 1]point, affine (None where a small-order point hits infinity).
    size = 1 << width
    jacobian: list[_Jacobian] = [(x0, y0, one)]
    jacobian.append(_double(jacobian[0], p))
    for _ in range(3, size):
        jacobian.append(_add_affine(jacobian[-1], x0, y0, p))
    table: list[Point] = [None, *_to_affine_batch(jacobian, p)]

    digits = []
    mask = size - 1
    while k:
        digits.append(k & mask)
        k >>= width
    # The loop is _double and _add_affine written out, which saves a third of the time.
    x, y, z = one, one, backend.mpz(0)
    for digit in reversed(digits):
        if z != 0:
            for _ in range(width):
                delta = z * z % p
                gamma = y * y % p
                beta = x * gamma % p
                alpha = 3 * (x - delta) * (x + delta) % p
                z = 2 * y * z % p
                x = (alpha * alpha - 8 * beta) % p
                y = (alpha * (4 * beta - x) - 8 * gamma * gamma) % p
        entry = table[digit]
        if entry is None:
            continue
        x2, y2 = entry
        if z == 0:
            x, y, z = x2, y2, one
            continue
        z1z1 = z * z % p
        h = (x2 * z1z1 - x) % p
        r = (y2 * z * z1z1 - y) % p
        if h == 0:  # acc = ±entry: rare, let the general code handle it
            x, y, z = _add_affine((x, y, z), x2, y2, p)
            continue
        hh = h * h % p
        hhh = h * hh % p
        v = x * hh % p
        x = (r * r - hhh - 2 * v) % p
        y = (r * (v - x) - y * hhh) % p
        z = z * h % p
    return _finish((x, y, z), p)


def _finish(point: _Jacobian, p: int) -> Point:
    """A Jacobian point to affine ``int`` coordinates."""
    x, y, z = point
    if z % p == 0:
        return None
    z_inv = backend.invert(z % p, p)
    z_inv2 = z_inv * z_inv % p
    return (backend.to_int(x * z_inv2 % p), backend.to_int(y * z_inv2 * z_inv % p))


def encode_point(curve: Curve, point: Point) -> bytes:
    """SEC 1 uncompressed encoding 0x04 || X || Y, each coordinate the byte length of p.

    Only the coordinate range is checked (an off-curve point still encodes, for tests).
    """
    if point is None:
        raise EcError("the point at infinity has no uncompressed encoding")
    x, y = point
    if not (0 <= x < curve.p and 0 <= y < curve.p):
        raise EcError(f"point coordinates are not elements of the {curve.name} field")
    n = curve.coordinate_length
    return b"\x04" + backend.to_bytes(x, n) + backend.to_bytes(y, n)


def decode_point(curve: Curve, data: bytes) -> Point:
    """The finite point encoded as 0x04 || X || Y; ``EcError`` says precisely what is wrong."""
    n = curve.coordinate_length
    expected = 1 + 2 * n
    if data[:1] == b"\x00" and len(data) == 1:
        raise EcError("encoding of the point at infinity: a finite point is required")
    if len(data) != expected:
        raise EcError(f"{curve.name} point encoding is {len(data)} octets, expected {expected}")
    if data[0] != 0x04:
        if data[0] in (0x02, 0x03, 0x06, 0x07):
            raise EcError(f"prefix 0x{data[0]:02x}: only the uncompressed form 0x04 is accepted")
        raise EcError(f"prefix 0x{data[0]:02x} is not a point encoding; expected 0x04")
    x = int.from_bytes(data[1 : 1 + n], "big")
    y = int.from_bytes(data[1 + n :], "big")
    if x >= curve.p or y >= curve.p:
        raise EcError(f"a coordinate is not below the {curve.name} field prime")
    point = (x, y)
    if not is_on_curve(curve, point):
        raise EcError(f"the point is not on the curve {curve.name}")
    return point


#: NIST P-256 (FIPS 186-4 D.1.2.3), the ECCSI curve of RFC 6509 / TS 33.180.
P256 = Curve(
    name="P-256",
    p=0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF,
    a=-3,
    b=0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B,
    q=0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    gx=0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
    gy=0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
)
