# ruff: noqa: N803, N806
# The RFC 6508 names (P, Z, R_b, K_b, H) are kept as written in the RFC, hence the case rules off.
"""SAKKE key encapsulation (RFC 6508) with parameter set 1 of RFC 6509 (n = 128, SHA-256).

What it holds, with the RFC 6508 clause each part implements:

* the public parameters of set 1 (§2.1, §2.3; values in spec/crypto.md §4.1): ``n``, ``p``,
  ``q``, ``P``, ``g`` = ⟨P,P⟩, and ``CURVE``, the supersingular E: y² = x³ − 3x over F_p whose
  point arithmetic is ``ec.py`` (E is an a = −3 curve, cofactor (p+1)/q = 4);
* the Tate-Lichtenbaum pairing ⟨R,Q⟩ = f_R([i]Q)^c in PF_p = F_p²*/F_p*, c = (p+1)/q = 4 (§3.2),
  by the projective Miller loop of spec/crypto.md §4.2 (Barreto's trick, Jacobian C, no inversion
  inside the loop; the final exponent is 4 and nothing else), and ``pf_power`` for g^r in PF_p
  (§2.1, §6.2.1 step 4a); an element t1 + i·t2 of PF_p is represented by t2/t1 mod p (§2.1, §4);
* ``hash_to_integer_range`` (§5.1) with SHA-256;
* KMS side (§6.1, §6.1.1, §6.1.2): ``generate_master_secret`` (z, Z = [z]P), ``kms_public_key``,
  ``issue_rsk`` (K_b = [(b + z)⁻¹ mod q]P) and ``validate_rsk`` (⟨[b]P + Z, K_b⟩ = g);
* sender (§6.2.1): ``encapsulate`` — r = HashToIntegerRange(SSV || b, q), R_(b,S) = [r]([b]P + Z_S),
  H = SSV XOR HashToIntegerRange(g^r, 2^n); the SAKKE data is 0x04 || x || y || H (§4: 2L + 1 + n/8
  = 273 octets);
* receiver (§6.2.2): ``decapsulate`` — w = ⟨R_(b,S), K_b⟩, SSV = H XOR HashToIntegerRange(w, 2^n),
  and the TEST check [r]([b]P + Z_S) = R_(b,S) before the SSV is handed out.

Identifiers (§2.2) are integers in [2, q − 1].  They are hashed as octets in SSV || b, so give
them as ``bytes`` whenever the octet string is defined elsewhere: the 32-octet MIKEY-SAKKE UID
of TS 33.180 F.2.1 (``uid.uid``) keeps a leading zero octet only in that form.  An ``int`` is
turned into its shortest big-endian octets (§4 "Integers"), as in the RFC's Appendix A, where
b = "2011-02\\0tel:+447700900123\\0" is 26 octets.

Side channels (spec/crypto.md §11): nothing here is constant time.  The secrets are z and
(b + z)⁻¹ (KMS), r (derived from the SSV, sender and receiver's TEST) and the RSK K_b.  Their
scalar multiplications go through ``ec.multiply`` (fixed window, not a ladder), and every
secret goes through Python/GMP big-integer arithmetic whose timing depends on the values.  The
pairing's control flow depends only on the bits of q − 1 (public), and K_b only enters the line
evaluations.  This residual risk is accepted and recorded: SAKKE runs on servers and clients
for key distribution, which is rare; the KMS code is the most exposed part.  Python cannot
zeroise memory, so secrets are dropped, not erased.  Exceptions never carry secret values.
"""

from __future__ import annotations

import hashlib
import hmac
import operator
import secrets
from typing import Final

from mcinterconnect.crypto import backend, ec
from mcinterconnect.crypto.ec import Curve, Point

__all__ = [
    "CURVE",
    "ENCAPSULATED_DATA_LENGTH",
    "FIELD_LENGTH",
    "PARAMETER_SET",
    "SSV_LENGTH",
    "Identifier",
    "P",
    "SakkeError",
    "decapsulate",
    "derive_r",
    "encapsulate",
    "g",
    "generate_master_secret",
    "hash_to_integer_range",
    "identifier_octets",
    "issue_rsk",
    "kms_public_key",
    "n",
    "p",
    "pairing",
    "parse_encapsulated_data",
    "pf_power",
    "q",
    "ssv_mask",
    "validate_rsk",
]


class SakkeError(ValueError):
    """A SAKKE input was refused. ``reason`` is a stable code for logs and policy:

    ``data-length``, ``point-encoding``, ``point-not-on-curve``, ``pairing-degenerate``,
    ``test-failed`` (decapsulation); ``ssv-length``, ``identifier-invalid``,
    ``kms-public-key-invalid``, ``identifier-degenerate`` (both sides); ``master-secret-invalid``,
    ``rsk-invalid``, ``rsk-mismatch`` (keys); ``point-invalid`` (pairing inputs).
    The message says what is wrong, never a secret value.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _hex(text: str) -> int:
    return int("".join(text.split()), 16)


# --- parameter set 1 (RFC 6509; RFC 6508 Appendix A) -------------------------------------------

#: The "SAKKE params" value of this set in the MIKEY SAKKE payload (spec/crypto.md §5).
PARAMETER_SET: Final = 1
#: n: bits of the SSV.
n: Final = 128
#: p ≡ 3 (mod 4), 1024 bits.
p: Final = _hex(
    """997ABB1F 0A563FDA 65C61198 DAD0657A 416C0CE1 9CB48261 BE9AE358 B3E01A2E
       F40AAB27 E2FC0F1B 228730D5 31A59CB0 E791B39F F7C88A19 356D27F4 A666A6D0
       E26C6487 326B4CD4 512AC5CD 65681CE1 B6AFF4A8 31852A82 A7CF3C52 1C3C09AA
       9F94D6AF 56971F1F FCE3E823 89857DB0 80C5DF10 AC7ACE87 666D807A FEA85FEB"""
)
#: q = (p + 1)/4, prime: the order of P.
q: Final = _hex(
    """265EAEC7 C2958FF6 99718466 36B4195E 905B0338 672D2098 6FA6B8D6 2CF8068B
       BD02AAC9 F8BF03C6 C8A1CC35 4C69672C 39E46CE7 FDF22286 4D5B49FD 2999A9B4
       389B1921 CC9AD335 144AB173 595A0738 6DABFD2A 0C614AA0 A9F3CF14 870F026A
       A7E535AB D5A5C7C7 FF38FA08 E2615F6C 203177C4 2B1EB3A1 D99B601E BFAA17FB"""
)
_PX = _hex(
    """53FC09EE 332C29AD 0A799005 3ED9B52A 2B1A2FD6 0AEC69C6 98B2F204 B6FF7CBF
       B5EDB6C0 F6CE2308 AB10DB90 30B09E10 43D5F22C DB9DFA55 718BD9E7 406CE890
       9760AF76 5DD5BCCB 337C8654 8B72F2E1 A702C339 7A60DE74 A7C1514D BA66910D
       D5CFB4CC 80728D87 EE9163A5 B63F73EC 80EC46C4 967E0979 880DC8AB EAE63895"""
)
_PY = _hex(
    """0A824906 3F6009F1 F9F1F053 3634A135 D3E82016 02990696 3D778D82 1E141178
       F5EA69F4 654EC2B9 E7F7F5E5 F0DE55F6 6B598CCF 9A140B2E 416CFF0C A9E032B9
       70DAE117 AD547C6C CAD696B5 B7652FE0 AC6F1E80 164AA989 492D979F C5A4D5F2
       13515AD7 E9CB99A9 80BDAD5A D5BB4636 ADB9B570 6A67DCDE 75573FD7 1BEF16D7"""
)
#: g = ⟨P,P⟩ as its PF_p representative (checked by the tests, not recomputed at import).
g: Final = _hex(
    """66FC2A43 2B6EA392 148F1586 7D623068 C6A87BD1 FB94C41E 27FABE65 8E015A87
       371E9474 4C96FEDA 449AE956 3F8BC446 CBFDA85D 5D00EF57 7072DA8F 541721BE
       EE0FAED1 828EAB90 B99DFB01 38C78433 55DF0460 B4A9FD74 B4F1A32B CAFA1FFA
       D682C033 A7942BCC E3720F20 B9B7B040 3C8CAE87 B7A0042A CDE0FAB3 6461EA46"""
)

#: E: y² = x³ − 3x over F_p with P of order q; #E(F_p) = p + 1 = 4q.
CURVE: Final = Curve(name="SAKKE parameter set 1", p=p, a=-3, b=0, q=q, gx=_PX, gy=_PY, cofactor=(p + 1) // q)
#: P, the generator of E(F_p)[q].
P: Final = CURVE.g

#: L = Ceiling(lg(p)/8): octets of an F_p or PF_p element (§4).
FIELD_LENGTH: Final = (p.bit_length() + 7) // 8
#: Octets of the SSV and of H (n/8).
SSV_LENGTH: Final = n // 8
#: The SAKKE data 0x04 || R_(b,S).x || R_(b,S).y || H: 2L + 1 + n/8 octets (§4).
ENCAPSULATED_DATA_LENGTH: Final = 1 + 2 * FIELD_LENGTH + SSV_LENGTH

_P_FIELD = backend.mpz(p)
#: The bits of q − 1 after the leading one, which drive the Miller loop (§3.2).
_MILLER_BITS = bin(q - 1)[3:]

#: An identifier: its octets as hashed (``bytes``) or the integer they encode (``int``).
Identifier = bytes | int


# --- HashToIntegerRange (§5.1) ------------------------------------------------------------------


def hash_to_integer_range(data: bytes, n: int) -> int:
    """HashToIntegerRange(s, n, SHA-256) of RFC 6508 §5.1: an integer in [0, n − 1].

    A = SHA-256(s); h_0 = 32 zero octets; l = Ceiling(lg(n)/256); for i in 1..l:
    h_i = SHA-256(h_(i−1)), v_i = SHA-256(h_i || A); result (v_1 || ... || v_l) mod n.
    """
    n = operator.index(n)
    if n < 2:
        raise ValueError("HashToIntegerRange needs n >= 2")
    a = hashlib.sha256(data).digest()
    # Ceiling(lg(n)/256): (n - 1).bit_length() is lg(n) for a power of two, Ceiling(lg(n)) otherwise.
    blocks = -(-(n - 1).bit_length() // 256)
    h = bytes(32)
    v = bytearray()
    for _ in range(blocks):
        h = hashlib.sha256(h).digest()
        v += hashlib.sha256(h + a).digest()
    return int.from_bytes(v, "big") % n


# --- identifiers and points ---------------------------------------------------------------------


def identifier_octets(identifier: Identifier) -> bytes:
    """The octets of identifier b as hashed in SSV || b (bytes as given; an int in fewest octets)."""
    return _identifier(identifier)[0]


def _identifier(identifier: Identifier) -> tuple[bytes, int]:
    """(octets, integer) of an identifier, which must lie in [2, q − 1] (§2.2)."""
    if isinstance(identifier, bytes | bytearray | memoryview):
        octets = bytes(identifier)
        value = int.from_bytes(octets, "big")
    else:
        if isinstance(identifier, bool):
            raise SakkeError("identifier-invalid", "an identifier is bytes or an integer, not a bool")
        try:
            value = operator.index(identifier)
        except TypeError:
            raise SakkeError(
                "identifier-invalid",
                f"an identifier is bytes or an integer, not {type(identifier).__name__}",
            ) from None
        if value < 0:
            raise SakkeError("identifier-invalid", "the identifier is negative")
        octets = value.to_bytes((value.bit_length() + 7) // 8, "big")
    if not 2 <= value < q:
        raise SakkeError("identifier-invalid", "the identifier is not an integer in [2, q - 1]")
    return octets, value


def _require_point(point: Point, reason: str, name: str) -> tuple[int, int]:
    if point is None or not ec.is_on_curve(CURVE, point):
        raise SakkeError(reason, f"{name} is not a finite point of the SAKKE curve")
    return point


def validate_kms_public_key(Z: Point) -> tuple[int, int]:
    """Z_S must be a point of the order-q subgroup (E(F_p) has cofactor 4, §2.1): a point of
    small order, such as (0, 0), would make every encapsulation to this KMS worthless."""
    point = _require_point(Z, "kms-public-key-invalid", "the KMS public key Z")
    if ec.multiply(CURVE, q, point) is not None:
        raise SakkeError("kms-public-key-invalid", "the KMS public key Z is not in the subgroup of order q")
    return point


def _receiver_point(b: int, Z: Point) -> Point:
    """[b]P + Z_S, the point both sides multiply by r (§6.2.1 step 3, §6.2.2 step 5)."""
    point = ec.add(CURVE, ec.multiply(CURVE, b, P), Z)
    if point is None:
        raise SakkeError("identifier-degenerate", "[b]P + Z is the point at infinity")
    return point


def _check_ssv(ssv: bytes) -> None:
    if not isinstance(ssv, bytes | bytearray) or len(ssv) != SSV_LENGTH:
        raise SakkeError("ssv-length", f"the SSV must be {SSV_LENGTH} octets (n = {n} bits)")


# --- the pairing (§3.2) and PF_p ----------------------------------------------------------------


def pairing(R: Point, Q: Point) -> int:
    """⟨R,Q⟩ = f_R([i]Q)^c in PF_p, as its representative t2/t1 in F_p (RFC 6508 §3.2).

    R and Q must be points of E(F_p)[q]; this is not checked (a scalar multiplication would cost
    a third of the pairing).  Another point of E gives a meaningless value or ``SakkeError``
    ``pairing-degenerate``, never another exception.  The Miller loop keeps C = (X, Y, Z) in
    Jacobian coordinates and scales each line by a factor in F_p, which PF_p ignores
    (spec/crypto.md §4.2):

    * tangent at C, times 2·Y·Z³: real 3(X² − Z⁴)(Qx·Z² + X) − 2Y², imag 2·Y·Z³·Qy;
    * chord through C and R, times Z³(Rx − Cx): real (Ry·Z³ − Y)(Qx + Rx) − Ry·Z·(Rx·Z² − X),
      imag Qy·Z·(Rx·Z² − X).
    """
    rx, ry = _require_point(R, "point-invalid", "R")
    qx_int, qy_int = _require_point(Q, "point-invalid", "Q")
    mod = _P_FIELD
    rx, ry = backend.mpz(rx), backend.mpz(ry)
    qx, qy = backend.mpz(qx_int), backend.mpz(qy_int)
    qx_plus_rx = (qx + rx) % mod
    X, Y, Z = rx, ry, backend.mpz(1)
    # v = t1 + i·t2, starting at 1.
    t1, t2 = backend.mpz(1), backend.mpz(0)
    for bit in _MILLER_BITS:
        # C = 2C (a = −3, EFD dbl-2001-b), with the tangent line from the same intermediates:
        # alpha = 3(X² − Z⁴), gamma = Y², delta = Z², new Z = 2YZ.
        delta = Z * Z % mod
        gamma = Y * Y % mod
        beta = X * gamma % mod
        alpha = 3 * (X - delta) * (X + delta) % mod
        Z = 2 * Y * Z % mod
        line_re = (alpha * (qx * delta + X) - 2 * gamma) % mod
        line_im = Z * delta % mod * qy % mod
        X = (alpha * alpha - 8 * beta) % mod
        Y = (alpha * (4 * beta - X) - 8 * gamma * gamma) % mod
        # v = v² · line
        s1 = (t1 + t2) * (t1 - t2) % mod
        s2 = 2 * t1 * t2 % mod
        t1 = (s1 * line_re - s2 * line_im) % mod
        t2 = (s1 * line_im + s2 * line_re) % mod
        if bit == "1":
            # C = C + R (mixed Jacobian-affine addition), with the chord through C and R:
            # h = Rx·Z² − X, rr = Ry·Z³ − Y, new Z = Z·h.
            zz = Z * Z % mod
            h = (rx * zz - X) % mod
            rr = (ry * zz % mod * Z - Y) % mod
            Z = Z * h % mod
            line_re = (rr * qx_plus_rx - ry * Z) % mod
            line_im = qy * Z % mod
            hh = h * h % mod
            hhh = hh * h % mod
            xhh = X * hh % mod
            X = (rr * rr - hhh - 2 * xhh) % mod
            Y = (rr * (xhh - X) - Y * hhh) % mod
            t1, t2 = (t1 * line_re - t2 * line_im) % mod, (t1 * line_im + t2 * line_re) % mod
    # t = v^c with c = 4 (checked by the tests): two squarings.  No (p − 1) power: in PF_p it
    # would turn v into v^−2 (spec/crypto.md §4.2, pitfall).
    for _ in range(2):
        t1, t2 = (t1 + t2) * (t1 - t2) % mod, 2 * t1 * t2 % mod
    if t1 == 0:
        # t2/t1 has no value: v was 0 or of order 2 in PF_p, impossible for R, Q in E(F_p)[q].
        raise SakkeError("pairing-degenerate", "the pairing has no value in PF_p[q]: R or Q is not in E[q]")
    return backend.to_int(t2 * backend.invert(t1, mod) % mod)


def pf_power(element: int, exponent: int) -> int:
    """element^exponent in PF_p, both ends as F_p representatives (RFC 6508 §2.1, §6.2.1 step 4a).

    The representative a stands for 1 + a·i; the power is a square-and-multiply in F_p², where a
    multiplication by 1 + a·i costs two products.  The exponent must be >= 0.
    """
    exponent = operator.index(exponent)
    if exponent < 0:
        raise ValueError("pf_power needs an exponent >= 0")
    if exponent == 0:
        return 0
    mod = _P_FIELD
    a = backend.mpz(element % p)
    t1, t2 = backend.mpz(1), a
    for bit in bin(exponent)[3:]:
        t1, t2 = (t1 + t2) * (t1 - t2) % mod, 2 * t1 * t2 % mod
        if bit == "1":
            t1, t2 = (t1 - t2 * a) % mod, (t1 * a + t2) % mod
    if t1 == 0:
        raise SakkeError("pairing-degenerate", "the power is the element of order 2 of PF_p")
    return backend.to_int(t2 * backend.invert(t1, mod) % mod)


# --- the SSV and its masks (§6.2.1, §6.2.2) -----------------------------------------------------


def derive_r(ssv: bytes, identifier: Identifier) -> int:
    """r = HashToIntegerRange(SSV || b, q) (§6.2.1 step 2, §6.2.2 step 4)."""
    _check_ssv(ssv)
    return hash_to_integer_range(bytes(ssv) + _identifier(identifier)[0], q)


def ssv_mask(w: int) -> bytes:
    """HashToIntegerRange(w, 2^n) as n/8 octets, w (= g^r) hashed as its L-octet PF_p form."""
    return hash_to_integer_range(backend.to_bytes(w, FIELD_LENGTH), 1 << n).to_bytes(SSV_LENGTH, "big")


def _xor(left: bytes, right: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(left, right, strict=True))


# --- KMS side (§6.1) ----------------------------------------------------------------------------


def kms_public_key(z: int) -> Point:
    """The KMS Public Key Z = [z]P of a master secret z in [2, q − 1] (§6.1)."""
    z = operator.index(z)
    if not 2 <= z < q:
        raise SakkeError("master-secret-invalid", "the master secret is not in [2, q - 1]")
    return ec.multiply(CURVE, z, P)


def generate_master_secret() -> tuple[int, Point]:
    """A fresh KMS master secret z, uniform in [2, q − 1], and its public key Z = [z]P (§6.1)."""
    z = secrets.randbelow(q - 2) + 2
    return z, kms_public_key(z)


def issue_rsk(z: int, identifier: Identifier) -> Point:
    """The Receiver Secret Key K_b = [(b + z)⁻¹ mod q]P of identifier b (§6.1.1)."""
    z = operator.index(z)
    if not 2 <= z < q:
        raise SakkeError("master-secret-invalid", "the master secret is not in [2, q - 1]")
    _, b = _identifier(identifier)
    total = (b + z) % q
    if total == 0:
        raise SakkeError("identifier-degenerate", "b + z = 0 mod q: no RSK exists for this identifier")
    return ec.multiply(CURVE, backend.to_int(backend.invert(total, q)), P)


def validate_rsk(rsk: Point, identifier: Identifier, Z: Point) -> None:
    """Check a provisioned RSK: ⟨[b]P + Z, K_b⟩ = g (§6.1.2); ``SakkeError`` if it does not hold."""
    K_b = _require_point(rsk, "rsk-invalid", "the RSK")
    _require_point(Z, "kms-public-key-invalid", "the KMS public key Z")
    _, b = _identifier(identifier)
    if pairing(_receiver_point(b, Z), K_b) != g:
        raise SakkeError("rsk-mismatch", "<[b]P + Z, K_b> != g: the RSK is not for this identifier and Z")


# --- sender (§6.2.1) ----------------------------------------------------------------------------


def encapsulate(ssv: bytes, identifier: Identifier, Z: Point) -> bytes:
    """The SAKKE data sending ``ssv`` to identifier b under the KMS public key Z_S (§6.2.1).

    ``ssv`` is the n-bit Shared Secret Value: in MC it is the key being sent (GMK, PCK, CSK...),
    drawn by the caller (``secrets.token_bytes(SSV_LENGTH)``).  r is derived from it as the RFC
    does, so a test reproduces Appendix A by passing its SSV.  Returns 0x04 || R_(b,S).x ||
    R_(b,S).y || H, ``ENCAPSULATED_DATA_LENGTH`` octets (§4).
    """
    _check_ssv(ssv)
    _, b = _identifier(identifier)
    _require_point(Z, "kms-public-key-invalid", "the KMS public key Z")
    r = derive_r(ssv, identifier)
    R_b = ec.multiply(CURVE, r, _receiver_point(b, Z))
    if R_b is None:  # r = 0: probability 2^-1021
        raise SakkeError("identifier-degenerate", "r = 0 for this SSV; draw another SSV")
    H = _xor(bytes(ssv), ssv_mask(pf_power(g, r)))
    return ec.encode_point(CURVE, R_b) + H


# --- receiver (§6.2.2) --------------------------------------------------------------------------


def parse_encapsulated_data(data: bytes) -> tuple[tuple[int, int], bytes]:
    """(R_(b,S), H) from the SAKKE data, R_(b,S) checked to be a point of E (§4, §6.2.2 step 1)."""
    data = bytes(data)
    if len(data) != ENCAPSULATED_DATA_LENGTH:
        raise SakkeError(
            "data-length",
            f"SAKKE data is {len(data)} octets, expected {ENCAPSULATED_DATA_LENGTH} (0x04 || x || y || H)",
        )
    if data[0] != 0x04:
        raise SakkeError("point-encoding", f"R_(b,S) prefix is 0x{data[0]:02x}, expected 0x04 (uncompressed)")
    x = int.from_bytes(data[1 : 1 + FIELD_LENGTH], "big")
    y = int.from_bytes(data[1 + FIELD_LENGTH : 1 + 2 * FIELD_LENGTH], "big")
    if x >= p or y >= p:
        raise SakkeError("point-encoding", "an R_(b,S) coordinate is not below p")
    R_b = (x, y)
    if not ec.is_on_curve(CURVE, R_b):
        raise SakkeError("point-not-on-curve", "R_(b,S) is not a point of the SAKKE curve")
    return R_b, data[1 + 2 * FIELD_LENGTH :]


def decapsulate(data: bytes, identifier: Identifier, rsk: Point, Z: Point) -> bytes:
    """The SSV carried by the SAKKE data, for identifier b holding RSK K_b under Z_S (§6.2.2).

    ``SakkeError`` with ``reason`` ``data-length``, ``point-encoding``, ``point-not-on-curve``
    (the data), ``pairing-degenerate`` (R_(b,S) of small order), ``test-failed`` (the recomputed
    [r]([b]P + Z_S) is not R_(b,S): tampered data, or another identifier, RSK or KMS), or an
    input error (``identifier-invalid``, ``rsk-invalid``, ``kms-public-key-invalid``).
    """
    data = bytes(data)
    R_b, H = parse_encapsulated_data(data)
    K_b = _require_point(rsk, "rsk-invalid", "the RSK")
    _require_point(Z, "kms-public-key-invalid", "the KMS public key Z")
    _, b = _identifier(identifier)
    w = pairing(R_b, K_b)
    ssv = _xor(H, ssv_mask(w))
    r = derive_r(ssv, identifier)
    TEST = ec.multiply(CURVE, r, _receiver_point(b, Z))
    # TEST is computed from the candidate SSV: compare in constant time, like a MAC.
    if TEST is None or not hmac.compare_digest(ec.encode_point(CURVE, TEST), data[: 1 + 2 * FIELD_LENGTH]):
        raise SakkeError(
            "test-failed",
            "TEST = [r]([b]P + Z) differs from R_(b,S): tampered data or wrong identifier, RSK or KMS key",
        )
    return ssv
