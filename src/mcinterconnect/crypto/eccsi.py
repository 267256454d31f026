"""ECCSI signatures (RFC 6507) on NIST P-256 with SHA-256, as RFC 6509 and TS 33.180 profile them.

What it holds, with the RFC 6507 clause each part implements:

* KMS side (§5.1.1): ``generate_kms_keys`` (KSAK, KPAK = [KSAK]G) and ``issue_ssk`` (PVT = [v]G,
  HS = hash(G || KPAK || ID || PVT), SSK = (KSAK + HS·v) mod q);
* holder side (§5.1.2): ``validate_ssk`` ([SSK]G = KPAK + [HS]PVT);
* signing (§5.2.1): ``sign`` (J = [j]G in OpenSSL) and ``sign_reference`` (J = [j]G with ``ec.py``);
* verifying (§5.2.2): ``verify`` (fast path, spec/crypto.md §3) and ``verify_reference`` (J =
  [s]([HE]G + [r]Y) with ``ec.py``), and ``Verifier``, which caches Y per (KPAK, ID, PVT) (§3.3).

The fast verification is an ECDSA P-256 verification in disguise (spec/crypto.md §3.1): with public
key Y = [HS]PVT + KPAK, digest HE and signature (r, s⁻¹ mod q), OpenSSL computes
X = [HE·s]G + [r·s]Y = J and accepts iff x(X) mod q = r.  ECCSI accepts iff x(J) = r (r < p).  The
two differ only when x(J) = r + q, possible only for r < p − q (≈ 2⁻¹²⁹ of honest signatures), so
such r — and r ≥ q, which OpenSSL refuses, and Y at infinity — go to the reference path: the fast
path accepts exactly what the reference path accepts (stricter than WA-CR-08 requires).

Canonical encodings only: r must lie in [1, p − 1] and s in [1, q − 1]; RFC 6507 would let r be
reduced modulo p and s modulo q, which only adds malleability.  One malleability is inherent and
stays: (r, q − s) verifies whenever (r, s) does (−J has the x-coordinate of J, and §5.2.1 step 6
lets a signer send either), so a replay cache must key on the signed content, never on the
signature octets.

Side channels (spec/crypto.md §11): every multiplication of G by a secret scalar (KSAK, v, j) is
done by OpenSSL.  The secret SSK still enters Python integer arithmetic in s = (HE + r·SSK)⁻¹·j
and the KMS's SSK = KSAK + HS·v, which are not constant time; j is dropped after use, but Python
cannot zeroise memory.  Exceptions never carry secrets.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec as openssl_ec
from cryptography.hazmat.primitives.asymmetric import utils as openssl_utils

from mcinterconnect.crypto import backend, ec
from mcinterconnect.crypto.ec import P256, Point

__all__ = [
    "POINT_LENGTH",
    "SIGNATURE_LENGTH",
    "EccsiError",
    "N",
    "Verifier",
    "compute_he",
    "compute_hs",
    "generate_kms_keys",
    "issue_ssk",
    "sign",
    "sign_reference",
    "validate_ssk",
    "verify",
    "verify_reference",
]

#: N of RFC 6507 §3: octets of r, s and of a SHA-256 hash.
N = 32
#: Octets of an encoded point (RFC 6507 §3: 0x04 || x || y).
POINT_LENGTH = 1 + 2 * N
#: r (N) || s (N) || PVT (2N + 1): RFC 6507 §3.3.
SIGNATURE_LENGTH = 2 * N + POINT_LENGTH

_Q = P256.q
_P = P256.p
_G_ENCODED = ec.encode_point(P256, P256.g)
_PREHASHED_SHA256 = openssl_ec.ECDSA(openssl_utils.Prehashed(hashes.SHA256()))


class EccsiError(ValueError):
    """A key or signature was refused. ``reason`` is a stable code for logs and policy:

    ``signature-length``, ``pvt-invalid``, ``kpak-invalid``, ``r-out-of-range``,
    ``s-out-of-range``, ``signature-mismatch`` (verification); ``ksak-invalid``, ``ssk-invalid``,
    ``hs-invalid``, ``scalar-invalid``, ``ssk-mismatch`` (keys and signing inputs).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# --- hashes (RFC 6507 §5.1.1 step 3, §5.2.1 step 3) ----------------------------------------------


def compute_hs(kpak: Point, identifier: bytes, pvt: Point) -> bytes:
    """HS = SHA-256(G || KPAK || ID || PVT), the points in 65-octet uncompressed form."""
    return hashlib.sha256(
        _G_ENCODED + ec.encode_point(P256, kpak) + identifier + ec.encode_point(P256, pvt)
    ).digest()


def compute_he(hs: bytes, r: int, message: bytes) -> bytes:
    """HE = SHA-256(HS || r || M), r as an N-octet integer."""
    return hashlib.sha256(hs + r.to_bytes(N, "big") + message).digest()


# --- [k]G --------------------------------------------------------------------------------------


def _fixed_base_openssl(k: int) -> Point:
    """[k]G for a secret k in [1, q − 1], by OpenSSL (constant time, spec/crypto.md §3.4)."""
    numbers = openssl_ec.derive_private_key(k, openssl_ec.SECP256R1()).public_key().public_numbers()
    return (numbers.x, numbers.y)


def _fixed_base_reference(k: int) -> Point:
    """[k]G with the pure-Python arithmetic (not constant time; tests and benchmarks)."""
    return ec.multiply(P256, k, P256.g)


def _random_scalar() -> int:
    """Uniform in [1, q − 1]."""
    return secrets.randbelow(_Q - 1) + 1


def _require_point(point: Point, reason: str, name: str) -> tuple[int, int]:
    if point is None or not ec.is_on_curve(P256, point):
        raise EccsiError(reason, f"{name} is not a point of P-256")
    return point


# --- KMS side (RFC 6507 §5.1.1) ----------------------------------------------------------------


def generate_kms_keys() -> tuple[int, Point]:
    """A fresh KMS key pair (KSAK, KPAK = [KSAK]G), KSAK uniform in [1, q − 1]."""
    ksak = _random_scalar()
    return ksak, _fixed_base_openssl(ksak)


def issue_ssk(ksak: int, kpak: Point, identifier: bytes, v: int | None = None) -> tuple[int, Point]:
    """(SSK, PVT) for ``identifier``: PVT = [v]G, HS = hash(G||KPAK||ID||PVT), SSK = KSAK + HS·v mod q.

    v is drawn uniformly in [1, q − 1] unless given (tests); should SSK or HS be 0 mod q, a new v
    is drawn (a given v then raises ``EccsiError``).  KPAK must be [KSAK]G.
    """
    if not 0 < ksak < _Q:
        raise EccsiError("ksak-invalid", "KSAK must lie in [1, q - 1]")
    kpak = _require_point(kpak, "kpak-invalid", "KPAK")
    if _fixed_base_openssl(ksak) != kpak:
        raise EccsiError("kpak-invalid", "KPAK is not [KSAK]G")
    if v is not None and not 0 < v < _Q:
        raise EccsiError("scalar-invalid", "v must lie in [1, q - 1]")
    while True:
        v_used = v if v is not None else _random_scalar()
        pvt = _fixed_base_openssl(v_used)
        hs = int.from_bytes(compute_hs(kpak, identifier, pvt), "big")
        ssk = (ksak + hs * v_used) % _Q
        del v_used
        if ssk != 0 and hs % _Q != 0:
            return ssk, pvt
        if v is not None:
            raise EccsiError("scalar-invalid", "this v gives SSK or HS equal to 0; choose another")


# --- holder side (RFC 6507 §5.1.2) -------------------------------------------------------------


def _public_key_y(hs: bytes, pvt: Point, kpak: Point) -> Point:
    """Y = [HS]PVT + KPAK (public values: the reference arithmetic is fine)."""
    return ec.add(P256, ec.multiply(P256, int.from_bytes(hs, "big"), pvt), kpak)


def validate_ssk(ssk: int, pvt: Point, kpak: Point, identifier: bytes) -> bytes:
    """Check a received (SSK, PVT) and return HS, to be stored with the SSK.

    PVT and KPAK must be points of P-256, SSK in [1, q − 1], and [SSK]G = KPAK + [HS]PVT
    ([SSK]G by OpenSSL, since SSK is secret).
    """
    pvt = _require_point(pvt, "pvt-invalid", "PVT")
    kpak = _require_point(kpak, "kpak-invalid", "KPAK")
    if not 0 < ssk < _Q:
        raise EccsiError("ssk-invalid", "SSK must lie in [1, q - 1]")
    hs = compute_hs(kpak, identifier, pvt)
    if _fixed_base_openssl(ssk) != _public_key_y(hs, pvt, kpak):
        raise EccsiError("ssk-mismatch", "[SSK]G differs from KPAK + [HS]PVT")
    return hs


# --- signing (RFC 6507 §5.2.1) -----------------------------------------------------------------


def _sign(
    message: bytes,
    identifier: bytes,
    ssk: int,
    pvt: Point,
    kpak: Point,
    *,
    j: int | None,
    hs: bytes | None,
    fixed_base: Callable[[int], Point],
) -> bytes:
    pvt = _require_point(pvt, "pvt-invalid", "PVT")
    if not 0 < ssk < _Q:
        raise EccsiError("ssk-invalid", "SSK must lie in [1, q - 1]")
    if hs is None:
        hs = compute_hs(kpak, identifier, pvt)
    elif len(hs) != N:
        raise EccsiError("hs-invalid", f"HS is {len(hs)} octets, expected {N}")
    if j is not None and not 0 < j < _Q:
        raise EccsiError("scalar-invalid", "j must lie in [1, q - 1]")
    while True:
        # Step 1: a fresh non-zero j (or the one given by a test).
        j_used = j if j is not None else _random_scalar()
        # Step 2: J = [j]G, r = Jx as an N-octet integer, not reduced modulo q.
        big_j = fixed_base(j_used)
        assert big_j is not None  # 0 < j < q
        r = big_j[0]
        # Step 3: HE = hash(HS || r || M).
        he = int.from_bytes(compute_he(hs, r, message), "big")
        # Step 4: HE + r·SSK must not be 0 mod q, else start again.
        t = (he + r * ssk) % _Q
        if t == 0:
            del j_used
            if j is not None:
                raise EccsiError("scalar-invalid", "this j gives HE + r·SSK = 0; choose another")
            continue
        # Step 5: s' = (HE + r·SSK)^-1 · j mod q.  Step 6: s' < q < 2^256 always fits N octets.
        s = backend.to_int(backend.invert(backend.mpz(t), backend.mpz(_Q))) * j_used % _Q
        del j_used  # RFC 6507 §5.2.1 step 5: j is destroyed (as far as Python allows)
        # Step 7: Sigma = r || s || PVT.
        return r.to_bytes(N, "big") + s.to_bytes(N, "big") + ec.encode_point(P256, pvt)


def sign(
    message: bytes,
    identifier: bytes,
    ssk: int,
    pvt: Point,
    kpak: Point,
    *,
    j: int | None = None,
    hs: bytes | None = None,
) -> bytes:
    """The 129-octet ECCSI signature r || s || PVT of ``message``, J = [j]G computed by OpenSSL.

    ``hs`` is the HS returned by ``validate_ssk`` (recomputed when omitted); ``j`` is random in
    [1, q − 1] unless a test gives it.
    """
    return _sign(message, identifier, ssk, pvt, kpak, j=j, hs=hs, fixed_base=_fixed_base_openssl)


def sign_reference(
    message: bytes,
    identifier: bytes,
    ssk: int,
    pvt: Point,
    kpak: Point,
    *,
    j: int | None = None,
    hs: bytes | None = None,
) -> bytes:
    """``sign`` with J = [j]G from ``ec.py`` (not constant time: a reference for tests and benchmarks)."""
    return _sign(message, identifier, ssk, pvt, kpak, j=j, hs=hs, fixed_base=_fixed_base_reference)


# --- verifying (RFC 6507 §5.2.2) ---------------------------------------------------------------


def _parse(signature: bytes) -> tuple[int, int, bytes]:
    """(r, s, encoded PVT) with the length and the ranges of r and s checked."""
    if len(signature) != SIGNATURE_LENGTH:
        raise EccsiError(
            "signature-length", f"signature is {len(signature)} octets, expected {SIGNATURE_LENGTH}"
        )
    r = int.from_bytes(signature[:N], "big")
    s = int.from_bytes(signature[N : 2 * N], "big")
    # r is an x-coordinate and J_x = 0 never verifies (§5.2.2 step 6); r ≥ p is non-canonical.
    if not 0 < r < _P:
        raise EccsiError("r-out-of-range", "r must lie in [1, p - 1]")
    # s ≡ 0 makes J the point at infinity; s ≥ q is a non-canonical duplicate of s − q.
    if not 0 < s < _Q:
        raise EccsiError("s-out-of-range", "s must lie in [1, q - 1]")
    return r, s, signature[2 * N :]


def _decode_pvt(encoded: bytes) -> tuple[int, int]:
    """§5.2.2 step 1: PVT must be a point of the curve."""
    try:
        pvt = ec.decode_point(P256, encoded)
    except ec.EcError as exc:
        raise EccsiError("pvt-invalid", f"PVT refused: {exc}") from None
    assert pvt is not None
    return pvt


def _check_j(big_j: Point, r: int) -> None:
    """§5.2.2 step 6: J_x = r (mod p) and J_x ≠ 0."""
    if big_j is None or big_j[0] != r or big_j[0] == 0:
        raise EccsiError("signature-mismatch", "signature does not verify")


def _verify_with_y(message: bytes, r: int, s: int, hs: bytes, y: Point) -> None:
    """Steps 3-6 with Y known, in the reference arithmetic: J = [s]([HE]G + [r]Y)."""
    he = int.from_bytes(compute_he(hs, r, message), "big")
    inner = ec.add(P256, ec.multiply(P256, he, P256.g), ec.multiply(P256, r, y))
    _check_j(ec.multiply(P256, s, inner), r)


def verify_reference(message: bytes, signature: bytes, identifier: bytes, kpak: Point) -> None:
    """RFC 6507 §5.2.2 literally, with ``ec.py``; ``EccsiError`` says why a signature is refused."""
    r, s, pvt_encoded = _parse(signature)
    pvt = _decode_pvt(pvt_encoded)
    kpak = _require_point(kpak, "kpak-invalid", "KPAK")
    hs = compute_hs(kpak, identifier, pvt)
    _verify_with_y(message, r, s, hs, _public_key_y(hs, pvt, kpak))


class _Signer:
    """What a ``Verifier`` caches per (KPAK, ID, PVT): HS, Y and Y loaded into OpenSSL."""

    __slots__ = ("hs", "y", "y_key")

    def __init__(self, hs: bytes, y: Point) -> None:
        self.hs = hs
        self.y = y
        # Y at infinity (practically unreachable) cannot be an OpenSSL public key.
        self.y_key = (
            None
            if y is None
            else openssl_ec.EllipticCurvePublicNumbers(y[0], y[1], openssl_ec.SECP256R1()).public_key()
        )


class Verifier:
    """ECCSI verification through OpenSSL with Y = [HS]PVT + KPAK cached (spec/crypto.md §3.3).

    The cache key is (KPAK, ID, encoded PVT): one entry per signer and key period in practice.
    Once an entry exists, a verification costs one SHA-256, one inversion modulo q and one
    OpenSSL ECDSA verification.  At most ``max_entries`` entries are kept (least recently used
    evicted), so signatures with ever-new PVTs cannot grow memory.  Only public values are cached.
    Safe to share between threads.
    """

    def __init__(self, max_entries: int = 1024) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._entries: OrderedDict[tuple[Point, bytes, bytes], _Signer] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget every cached Y."""
        with self._lock:
            self._entries.clear()

    def _signer(self, kpak: Point, identifier: bytes, pvt_encoded: bytes) -> _Signer:
        key = (kpak, identifier, pvt_encoded)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry
        # Only validated inputs reach the cache: PVT decoded and on the curve, KPAK on the curve.
        pvt = _decode_pvt(pvt_encoded)
        kpak = _require_point(kpak, "kpak-invalid", "KPAK")
        hs = compute_hs(kpak, identifier, pvt)
        entry = _Signer(hs, _public_key_y(hs, pvt, kpak))
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return entry

    def verify(self, message: bytes, signature: bytes, identifier: bytes, kpak: Point) -> None:
        """Verify as RFC 6507 §5.2.2; ``EccsiError`` (reason ``signature-mismatch`` etc.) if refused."""
        r, s, pvt_encoded = _parse(signature)
        signer = self._signer(kpak, identifier, pvt_encoded)
        # Outside ECDSA's domain, or where x mod q = r could differ from x = r: reference path.
        if signer.y_key is None or r >= _Q or r < _P - _Q:
            _verify_with_y(message, r, s, signer.hs, signer.y)
            return
        he = compute_he(signer.hs, r, message)
        ecdsa_signature = openssl_utils.encode_dss_signature(
            r, backend.to_int(backend.invert(backend.mpz(s), _Q))
        )
        try:
            signer.y_key.verify(ecdsa_signature, he, _PREHASHED_SHA256)
        except InvalidSignature:
            raise EccsiError("signature-mismatch", "signature does not verify") from None


_DEFAULT_VERIFIER = Verifier(max_entries=256)


def verify(message: bytes, signature: bytes, identifier: bytes, kpak: Point) -> None:
    """Verify an ECCSI signature (RFC 6507 §5.2.2) by the OpenSSL fast path, Y cached per signer.

    ``EccsiError.reason`` says why a signature is refused: ``signature-length``, ``pvt-invalid``,
    ``kpak-invalid``, ``r-out-of-range``, ``s-out-of-range`` or ``signature-mismatch``.  Uses a
    module-wide ``Verifier`` of 256 entries; hold your own ``Verifier`` to size or clear it.
    """
    _DEFAULT_VERIFIER.verify(message, signature, identifier, kpak)
