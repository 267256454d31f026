# ruff: noqa: N806
# RFC 6508 names (P, Z, K_b, R_b) are kept as the RFC writes them.
"""SAKKE, RFC 6508 with parameter set 1 (crypto/sakke.py; spec/crypto.md §4).

Every value of RFC 6508 Appendix A (spec/crypto.md §4.7) is reproduced under both big-integer
backends, ``int`` and ``gmpy2``; so are the parameter self-checks.  Round trips and refusals run
mostly under gmpy2 (a pairing costs ~100 ms in pure Python, ~15 ms with gmpy2).

Each backend gets its own copy of ``backend``, ``ec`` and ``sakke``, imported afresh with
``MCIC_CRYPTO_BACKEND`` set (the backend is chosen at import).  ``sys.modules`` and the package
attributes are restored straight after, so the rest of the test session keeps the modules and
exception classes it imported; only the copies in the fixtures see the forced backend.
"""

from __future__ import annotations

import hashlib
import importlib
import secrets
import sys
import types
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

BACKENDS = ("int", "gmpy2")
_CRYPTO = "mcinterconnect.crypto"


def _import_under(backend_name: str) -> types.ModuleType:
    """A fresh ``sakke`` (with fresh ``backend`` and ``ec``) under MCIC_CRYPTO_BACKEND=backend_name."""
    if backend_name == "gmpy2":
        pytest.importorskip("gmpy2")
    package = importlib.import_module(_CRYPTO)
    prefix = _CRYPTO + "."
    saved_modules = {name: module for name, module in sys.modules.items() if name.startswith(prefix)}
    saved_attributes = dict(vars(package))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MCIC_CRYPTO_BACKEND", backend_name)
        for name in saved_modules:
            del sys.modules[name]
        # ``from mcinterconnect.crypto import ec`` would take the package attribute: drop those too.
        for name, value in saved_attributes.items():
            if isinstance(value, types.ModuleType) and value.__name__.startswith(prefix):
                delattr(package, name)
        try:
            module = importlib.import_module(prefix + "sakke")
        finally:
            for name in [name for name in sys.modules if name.startswith(prefix)]:
                del sys.modules[name]
            sys.modules.update(saved_modules)
            for name in [name for name in vars(package) if name not in saved_attributes]:
                delattr(package, name)
            for name, value in saved_attributes.items():
                setattr(package, name, value)
    assert backend_name == module.backend.NAME
    return module


@pytest.fixture(scope="module", params=BACKENDS)
def sakke(request: pytest.FixtureRequest) -> Iterator[types.ModuleType]:
    """sakke under each backend in turn."""
    yield _import_under(request.param)


@pytest.fixture(scope="module")
def fast() -> types.ModuleType:
    """sakke under gmpy2, for the tests that need many pairings."""
    return _import_under("gmpy2")


def _hex(text: str) -> int:
    return int("".join(text.split()), 16)


def _hex_bytes(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# --- RFC 6508 Appendix A (spec/crypto.md §4.7) --------------------------------------------------

B = b"2011-02\x00tel:+447700900123\x00"
B_HEX = "32303131 2D303200 74656C3A 2B343437 37303039 30303132 3300"
Z_SECRET = _hex("AFF429D3 5F84B110 D094803B 3595A6E2 998BC99F")
ZX = _hex(
    """5958EF1B 1679BF09 9B3A030D F255AA6A 23C1D8F1 43D4D23F 753E69BD 27A832F3
       8CB4AD53 DDEF4260 B0FE8BB4 5C4C1FF5 10EFFE30 0367A37B 61F701D9 14AEF097
       24825FA0 707D61A6 DFF4FBD7 273566CD DE352A0B 04B7C16A 78309BE6 40697DE7
       47613A5F C195E8B9 F328852A 579DB8F9 9B1D0034 479EA9C5 595F47C4 B2F54FF2"""
)
ZY = _hex(
    """1508D375 14DCF7A8 E143A605 8C09A6BF 2C9858CA 37C25806 5AE6BF75 32BC8B5B
       63383866 E0753C5A C0E72709 F8445F2E 6178E065 857E0EDA 10F68206 B63505ED
       87E534FB 2831FF95 7FB7DC61 9DAE6130 1EEACC2F DA3680EA 4999258A 833CEA8F
       C67C6D19 487FB449 059F26CC 8AAB655A B58B7CC7 96E24E9A 39409575 4F5F8BAE"""
)
SSV = _hex_bytes("12345678 9ABCDEF0 12345678 9ABCDEF0")
R = _hex(
    """13EE3E1B 8DAC5DB1 68B1CEB3 2F0566A4 C273693F 78BAFFA2 A2EE6A68 6E6BD90F
       8206CCAB 84E7F42E D39BD4FB 131012EC CA2ECD21 19414560 C17CAB46 B956A80F
       58A3302E B3E2C9A2 28FBA7ED 34D8ACA2 392DA1FF B0B17B23 20AE09AA EDFD0235
       F6FE0EB6 5337A63F 9CC97728 B8E5AD04 60FADE14 4369AA5B 21662132 47712096"""
)
RBX = _hex(
    """44E8AD44 AB8592A6 A5A3DDCA 5CF896C7 18043606 A01D650D EF37A01F 37C228C3
       32FC3173 54E2C274 D4DAF8AD 001054C7 6CE57971 C6F4486D 57230432 61C506EB
       F5BE438F 53DE04F0 67C776E0 DD3B71A6 29013328 3725A532 F21AF145 126DC1D7
       77ECC27B E50835BD 28098B8A 73D9F801 D893793A 41FF5C49 B87E79F2 BE4D56CE"""
)
RBY = _hex(
    """557E134A D85BB1D4 B9CE4F8B E4B08A12 BABF55B1 D6F1D7A6 38019EA2 8E15AB1C
       9F76375F DD1210D4 F4351B9A 009486B7 F3ED46C9 65DED2D8 0DADE4F3 8C6721D5
       2C3AD103 A10EBD29 59248B4E F006836B F097448E 6107C9ED EE9FB704 823DF199
       F832C905 AE45F8A2 47A072D8 EF729EAB C5E27574 B07739B3 4BE74A53 2F747B86"""
)
G_R = _hex(
    """7D2A8438 E6291C64 9B6579EB 3B79EAE9 48B1DE9E 5F7D1F40 70A08F8D B6B3C515
       6F2201AF FBB5CB9D 82AA3EC0 D0398B89 ABC78A13 A760C0BF 3F77E63D 0DF3F1A3
       41A41B88 11DF197F D6CD0F00 3125606F 4F109F40 0F7292A1 0D255E3C 0EBCCB42
       53FB182C 68F09CF6 CD9C4A53 DA6C74AD 007AF36B 8BCA979D 5895E282 F483FCD6"""
)
MASK = _hex_bytes("9BD4EA1E 801D37E6 2AD2FAB0 D4F5BBF7")
H = _hex_bytes("89E0BC66 1AA1E916 38E6ACC8 4E496507")
KBX = _hex(
    """93AF67E5 007BA6E6 A80DA793 DA300FA4 B52D0A74 E25E6E7B 2B3D6EE9 D18A9B5C
       5023597B D82D8062 D3401956 3BA1D25C 0DC56B7B 979D74AA 50F29FBF 11CC2C93
       F5DFCA61 5E609279 F6175CEA DB00B58C 6BEE1E7A 2A47C4F0 C456F052 59A6FA94
       A634A40D AE1DF593 D4FECF68 8D5FC678 BE7EFC6D F3D68353 25B83B2C 6E69036B"""
)
KBY = _hex(
    """155F0A27 241094B0 4BFB0BDF AC6C670A 65C325D3 9A069F03 659D44CA 27D3BE8D
       F311172B 55416018 1CBE94A2 A783320C ED590BC4 2644702C F371271E 496BF20F
       588B78A1 BC01ECBB 6559934B DD2FB65D 2884318A 33D1A42A DF5E33CC 5800280B
       28356497 F87135BA B9612A17 26042440 9AC15FEE 996B744C 33215123 5DECB0F5"""
)
# Intermediate values of HashToIntegerRange(SSV || b, q) (spec/crypto.md §4.7).
HASH_A = "E04D4EF6 9DF86893 22B39AE3 80284617 4A93BEDB 1E3D2A2C 5F2C7EA0 05513EBA"
HASH_H = [
    "66687AAD F862BD77 6C8FC18B 8E9F8E20 08971485 6EE233B3 902A591D 0D5F2925",
    "2B32DB6C 2C0A6235 FB1397E8 225EA85E 0F0E6E8C 7B126D00 16CCBDE0 E667151E",
    "12771355 E46CD47C 71ED1721 FD5319B3 83CCA3A1 F9FCE3AA 1C8CD3BD 37AF20D7",
    "FE15C0D3 EBE314FA D720A08B 839A004C 2E6386F5 AECC19EC 74807D19 20CB6AEB",
]
HASH_V = [
    "FA2656CA 1D2DBD79 015AE918 773DFEDC 24957C91 E3C9C335 40D6BF6D 7C3C0055",
    "F016CD67 59620AD7 87669E3A DD887DF6 25895A91 0CEE1486 91A06735 B2F0A248",
    "AC45C6F9 7F83BCE0 A2BBD0A1 4CF4D7F4 CB3590FB FAF93AE7 1C64E426 185710B5",
    "E65D50BD 551A54EF 981F535E 072DE98D 2223ACAD 4621E026 3B0A61EA C56DB078",
]
ENCAPSULATED = b"\x04" + RBX.to_bytes(128, "big") + RBY.to_bytes(128, "big") + H


# --- parameter set 1 (spec/crypto.md §4.1) ------------------------------------------------------


def _probably_prime(value: int) -> bool:
    """Miller-Rabin with 20 fixed bases (enough to catch any transcription error)."""
    if value < 2 or value % 2 == 0:
        return value == 2
    d, s = value - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for base in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71):
        x = pow(base, d, value)
        if x in (1, value - 1):
            continue
        for _ in range(s - 1):
            x = x * x % value
            if x == value - 1:
                break
        else:
            return False
    return True


def test_backend_is_the_one_asked_for(sakke: types.ModuleType) -> None:
    name = sakke.backend.NAME
    assert name in BACKENDS
    assert type(sakke.backend.mpz(1)).__name__ == ("mpz" if name == "gmpy2" else "int")
    assert sakke.ec.backend is sakke.backend


def test_the_test_copies_do_not_leak_into_the_session(sakke: types.ModuleType) -> None:
    import mcinterconnect.crypto as package
    import mcinterconnect.crypto.backend as session_backend
    import mcinterconnect.crypto.ec as session_ec
    import mcinterconnect.crypto.sakke as session_sakke

    assert session_sakke is not sakke
    assert session_ec is not sakke.ec
    assert session_backend is not sakke.backend
    assert getattr(session_sakke, "ec") is session_ec  # noqa: B009 - not re-exported, mypy
    assert getattr(session_ec, "backend") is session_backend  # noqa: B009
    assert package.sakke is session_sakke
    assert session_ec.EcError is not sakke.ec.EcError


def test_parameter_set_1_numbers(sakke: types.ModuleType) -> None:
    p, q = sakke.p, sakke.q
    assert sakke.PARAMETER_SET == 1
    assert sakke.n == 128
    assert p.bit_length() == 1024
    assert p % 4 == 3
    assert _probably_prime(p)
    assert _probably_prime(q)
    assert (p + 1) % q == 0
    assert (p + 1) // q == 4  # c of §3.2: the pairing's final exponent is two squarings
    assert q.bit_length() == 1022
    assert q.bit_length() - 1 > 2 * sakke.n  # lg(q) > 2n (§2.1)
    assert pow(p - 1, (p - 1) // 2, p) == p - 1  # −1 is not a square: F_p[i] is F_p²
    assert sakke.FIELD_LENGTH == 128
    assert sakke.SSV_LENGTH == 16
    assert sakke.ENCAPSULATED_DATA_LENGTH == 273


def test_parameter_set_1_curve_and_generator(sakke: types.ModuleType) -> None:
    ec, curve, P, q = sakke.ec, sakke.CURVE, sakke.P, sakke.q
    assert (curve.p, curve.a % curve.p, curve.b, curve.q, curve.cofactor) == (sakke.p, sakke.p - 3, 0, q, 4)
    assert ec.is_on_curve(curve, P)
    assert ec.multiply(curve, q, P) is None  # P ≠ 0 and [q]P = 0 with q prime: P has order q
    assert ec.multiply(curve, q - 1, P) == ec.negate(curve, P)
    assert 0 < sakke.g < sakke.p


def test_g_is_the_pairing_of_P_with_itself(sakke: types.ModuleType) -> None:
    assert sakke.pairing(sakke.P, sakke.P) == sakke.g


# --- RFC 6508 Appendix A ------------------------------------------------------------------------


def test_rfc_identifier(sakke: types.ModuleType) -> None:
    assert _hex_bytes(B_HEX) == B
    b = int.from_bytes(B, "big")
    assert sakke.identifier_octets(B) == B
    assert sakke.identifier_octets(b) == B  # the shortest octets of the integer: 26 here


def test_rfc_hash_to_integer_range_example(sakke: types.ModuleType) -> None:
    """The intermediate values of HashToIntegerRange(SSV || b, q) and its result r."""
    s = SSV + B
    a = hashlib.sha256(s).digest()
    assert a == _hex_bytes(HASH_A)
    h = bytes(32)
    v = b""
    for expected_h, expected_v in zip(HASH_H, HASH_V, strict=True):
        h = hashlib.sha256(h).digest()
        assert h == _hex_bytes(expected_h)
        v_i = hashlib.sha256(h + a).digest()
        assert v_i == _hex_bytes(expected_v)
        v += v_i
    assert int.from_bytes(v, "big") % sakke.q == R
    assert sakke.hash_to_integer_range(s, sakke.q) == R
    assert sakke.derive_r(SSV, B) == R
    assert sakke.derive_r(SSV, int.from_bytes(B, "big")) == R


def test_rfc_kms_public_key_and_rsk(sakke: types.ModuleType) -> None:
    Z = sakke.kms_public_key(Z_SECRET)
    assert Z == (ZX, ZY)
    assert sakke.ec.is_on_curve(sakke.CURVE, Z)
    K_b = sakke.issue_rsk(Z_SECRET, B)
    assert K_b == (KBX, KBY)
    assert sakke.issue_rsk(Z_SECRET, int.from_bytes(B, "big")) == K_b
    assert sakke.ec.is_on_curve(sakke.CURVE, K_b)
    sakke.validate_rsk(K_b, B, Z)


def test_rfc_encapsulation(sakke: types.ModuleType) -> None:
    ec, curve = sakke.ec, sakke.CURVE
    Z = (ZX, ZY)
    b = int.from_bytes(B, "big")
    R_b = ec.multiply(curve, R, ec.add(curve, ec.multiply(curve, b, sakke.P), Z))
    assert R_b == (RBX, RBY)
    assert ec.is_on_curve(curve, R_b)
    g_r = sakke.pf_power(sakke.g, R)
    assert g_r == G_R
    assert sakke.ssv_mask(g_r) == MASK
    assert bytes(x ^ y for x, y in zip(SSV, MASK, strict=True)) == H
    data = sakke.encapsulate(SSV, B, Z)
    assert data == ENCAPSULATED
    assert len(data) == 273
    assert sakke.encapsulate(SSV, b, Z) == ENCAPSULATED


def test_rfc_decapsulation(sakke: types.ModuleType) -> None:
    K_b = (KBX, KBY)
    w = sakke.pairing((RBX, RBY), K_b)
    assert w == G_R  # w = g^r by bilinearity
    assert sakke.ssv_mask(w) == MASK
    assert sakke.parse_encapsulated_data(ENCAPSULATED) == ((RBX, RBY), H)
    assert sakke.decapsulate(ENCAPSULATED, B, K_b, (ZX, ZY)) == SSV
    assert sakke.decapsulate(ENCAPSULATED, int.from_bytes(B, "big"), K_b, (ZX, ZY)) == SSV


def test_round_trip_with_fresh_keys(sakke: types.ModuleType) -> None:
    z, Z = sakke.generate_master_secret()
    assert 2 <= z < sakke.q
    assert sakke.kms_public_key(z) == Z
    identifier = secrets.token_bytes(32)
    K_b = sakke.issue_rsk(z, identifier)
    sakke.validate_rsk(K_b, identifier, Z)
    ssv = secrets.token_bytes(16)
    assert sakke.decapsulate(sakke.encapsulate(ssv, identifier, Z), identifier, K_b, Z) == ssv


# --- the pairing and PF_p -----------------------------------------------------------------------


def test_pairing_is_bilinear(fast: types.ModuleType) -> None:
    ec, curve, P, q = fast.ec, fast.CURVE, fast.P, fast.q
    for _ in range(2):
        x = secrets.randbelow(q - 1) + 1
        y = secrets.randbelow(q - 1) + 1
        expected = fast.pf_power(fast.g, x * y % q)
        assert fast.pairing(ec.multiply(curve, x, P), ec.multiply(curve, y, P)) == expected
    # ⟨[x]P, P⟩ = ⟨P, [x]P⟩ = g^x, and ⟨−P, P⟩ = g^−1 = g^(q−1)
    x = secrets.randbelow(q - 1) + 1
    assert fast.pairing(ec.multiply(curve, x, P), P) == fast.pairing(P, ec.multiply(curve, x, P))
    assert fast.pairing(ec.negate(curve, P), P) == fast.pf_power(fast.g, q - 1)


def test_pf_power_edges(fast: types.ModuleType) -> None:
    g, q, p = fast.g, fast.q, fast.p
    assert fast.pf_power(g, 0) == 0  # 1 + 0·i: the identity
    assert fast.pf_power(g, 1) == g
    assert fast.pf_power(g, q) == 0  # g has order q
    assert fast.pf_power(g, q + 5) == fast.pf_power(g, 5)
    # RFC 6508 §2.1: A·B is represented by (a + b)/(1 − a·b)
    a, b = fast.pf_power(g, 2), fast.pf_power(g, 3)
    assert fast.pf_power(g, 5) == (a + b) * pow(1 - a * b, -1, p) % p
    with pytest.raises(ValueError, match="exponent"):
        fast.pf_power(g, -1)


def test_pairing_refuses_points_off_the_curve(fast: types.ModuleType) -> None:
    P = fast.P
    for bad in (None, (P[0], (P[1] + 1) % fast.p), (fast.p, P[1])):
        with pytest.raises(fast.SakkeError) as refusal:
            fast.pairing(bad, P)
        assert refusal.value.reason == "point-invalid"
        with pytest.raises(fast.SakkeError):
            fast.pairing(P, bad)


def test_pairing_of_the_point_of_order_2_is_degenerate(fast: types.ModuleType) -> None:
    # (0, 0) lies on y² = x³ − 3x and has order 2: its Miller loop collapses to v = 0.
    with pytest.raises(fast.SakkeError) as refusal:
        fast.pairing((0, 0), fast.P)
    assert refusal.value.reason == "pairing-degenerate"


# --- HashToIntegerRange (§5.1) ------------------------------------------------------------------


def test_hash_to_integer_range_for_2_to_the_n_takes_one_block(fast: types.ModuleType) -> None:
    data = b"any octets"
    a = hashlib.sha256(data).digest()
    v1 = hashlib.sha256(hashlib.sha256(bytes(32)).digest() + a).digest()
    assert fast.hash_to_integer_range(data, 1 << 128) == int.from_bytes(v1[16:], "big")
    assert fast.hash_to_integer_range(data, 1 << 256) == int.from_bytes(v1, "big")


def test_hash_to_integer_range_block_count(fast: types.ModuleType) -> None:
    data = b"x"
    a = hashlib.sha256(data).digest()
    h1 = hashlib.sha256(bytes(32)).digest()
    h2 = hashlib.sha256(h1).digest()
    two_blocks = hashlib.sha256(h1 + a).digest() + hashlib.sha256(h2 + a).digest()
    n = (1 << 256) + 1  # lg(n) just above 256: two blocks
    assert fast.hash_to_integer_range(data, n) == int.from_bytes(two_blocks, "big") % n
    assert fast.hash_to_integer_range(data, 2) in (0, 1)
    for bad in (1, 0, -5):
        with pytest.raises(ValueError, match="n >= 2"):
            fast.hash_to_integer_range(data, bad)


@settings(max_examples=50, deadline=None)
@given(data=st.binary(max_size=64), n=st.integers(min_value=2, max_value=1 << 1100))
def test_hash_to_integer_range_stays_in_range(fast: types.ModuleType, data: bytes, n: int) -> None:
    assert 0 <= fast.hash_to_integer_range(data, n) < n


# --- round trips --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kms(fast: types.ModuleType) -> tuple[int, tuple[int, int]]:
    return fast.generate_master_secret()  # type: ignore[no-any-return]


def test_round_trips_with_random_identities_and_ssvs(
    fast: types.ModuleType, kms: tuple[int, tuple[int, int]]
) -> None:
    z, Z = kms
    identities: list[bytes | int] = [
        secrets.token_bytes(32),
        b"\x00" + secrets.token_bytes(31),  # a UID with a leading zero octet, kept as bytes
        secrets.randbelow(1 << 256) | (1 << 255),
        B,
    ]
    for identifier in identities:
        K_b = fast.issue_rsk(z, identifier)
        fast.validate_rsk(K_b, identifier, Z)
        for ssv in (secrets.token_bytes(16), bytes(16), b"\xff" * 16):
            data = fast.encapsulate(ssv, identifier, Z)
            assert len(data) == fast.ENCAPSULATED_DATA_LENGTH
            assert fast.decapsulate(data, identifier, K_b, Z) == ssv


def test_encapsulation_is_deterministic_in_the_ssv(
    fast: types.ModuleType, kms: tuple[int, tuple[int, int]]
) -> None:
    _, Z = kms
    ssv = secrets.token_bytes(16)
    assert fast.encapsulate(ssv, B, Z) == fast.encapsulate(bytearray(ssv), B, Z)
    assert fast.encapsulate(ssv, B, Z) != fast.encapsulate(secrets.token_bytes(16), B, Z)


def test_identifier_octets_decide_r(fast: types.ModuleType) -> None:
    """bytes keep a leading zero octet (as a UID must); an int is hashed in its fewest octets."""
    uid = b"\x00" + bytes(range(1, 32))
    as_int = int.from_bytes(uid, "big")
    assert fast.identifier_octets(uid) == uid
    assert fast.identifier_octets(as_int) == uid[1:]
    assert fast.derive_r(SSV, uid) != fast.derive_r(SSV, as_int)
    assert fast.issue_rsk(Z_SECRET, uid) == fast.issue_rsk(Z_SECRET, as_int)  # same integer b


# --- refusals: the SAKKE data -------------------------------------------------------------------


def _refusal(module: types.ModuleType, reason: str, call: object, *args: object) -> str:
    assert callable(call)
    with pytest.raises(module.SakkeError) as refusal:
        call(*args)
    assert refusal.value.reason == reason, str(refusal.value)
    return str(refusal.value)


RFC_KEYS = (B, (KBX, KBY), (ZX, ZY))


@pytest.mark.parametrize(
    "data",
    [b"", ENCAPSULATED[:-1], ENCAPSULATED + b"\x00", ENCAPSULATED[:257], b"\x00", ENCAPSULATED * 2],
    ids=["empty", "truncated", "extended", "point-only", "infinity", "doubled"],
)
def test_wrong_length_is_refused(sakke: types.ModuleType, data: bytes) -> None:
    message = _refusal(sakke, "data-length", sakke.decapsulate, data, *RFC_KEYS)
    assert f"{len(data)} octets" in message


@pytest.mark.parametrize("prefix", [0x00, 0x02, 0x03, 0x06, 0xFF])
def test_other_point_forms_are_refused(sakke: types.ModuleType, prefix: int) -> None:
    data = bytes([prefix]) + ENCAPSULATED[1:]
    _refusal(sakke, "point-encoding", sakke.decapsulate, data, *RFC_KEYS)


def test_coordinates_not_below_p_are_refused(sakke: types.ModuleType) -> None:
    big_x = b"\x04" + (RBX + sakke.p).to_bytes(128, "big") + ENCAPSULATED[129:]
    assert len(big_x) == 273
    _refusal(sakke, "point-encoding", sakke.decapsulate, big_x, *RFC_KEYS)
    big_y = ENCAPSULATED[:129] + (RBY + sakke.p).to_bytes(128, "big") + H
    _refusal(sakke, "point-encoding", sakke.decapsulate, big_y, *RFC_KEYS)


def test_R_b_off_the_curve_is_refused(sakke: types.ModuleType) -> None:
    for x, y in ((RBX, RBY + 1), (RBX ^ 1, RBY), (0, 1)):
        data = b"\x04" + x.to_bytes(128, "big") + y.to_bytes(128, "big") + H
        _refusal(sakke, "point-not-on-curve", sakke.decapsulate, data, *RFC_KEYS)


def _with_R_b(point: tuple[int, int], h: bytes = H) -> bytes:
    return b"\x04" + point[0].to_bytes(128, "big") + point[1].to_bytes(128, "big") + h


@pytest.mark.parametrize("position", [0, 7, 15])
def test_tampered_H_is_caught_by_TEST(fast: types.ModuleType, position: int) -> None:
    tampered = bytearray(ENCAPSULATED)
    tampered[1 + 256 + position] ^= 0x01
    message = _refusal(fast, "test-failed", fast.decapsulate, bytes(tampered), *RFC_KEYS)
    assert SSV.hex() not in message.lower()


def test_another_R_b_in_the_subgroup_is_caught_by_TEST(fast: types.ModuleType) -> None:
    other = fast.ec.multiply(fast.CURVE, 2, (RBX, RBY))
    _refusal(fast, "test-failed", fast.decapsulate, _with_R_b(other), *RFC_KEYS)
    negated = fast.ec.negate(fast.CURVE, (RBX, RBY))
    _refusal(fast, "test-failed", fast.decapsulate, _with_R_b(negated), *RFC_KEYS)


def test_R_b_outside_the_subgroup_is_refused(fast: types.ModuleType) -> None:
    # (0, 0) has order 2; R_b + (0, 0) has order 2q: both on E, neither in E[q].
    _refusal(fast, "pairing-degenerate", fast.decapsulate, _with_R_b((0, 0)), *RFC_KEYS)
    shifted = fast.ec.add(fast.CURVE, (RBX, RBY), (0, 0))
    assert fast.ec.is_on_curve(fast.CURVE, shifted)
    with pytest.raises(fast.SakkeError) as refusal:
        fast.decapsulate(_with_R_b(shifted), *RFC_KEYS)
    assert refusal.value.reason in ("test-failed", "pairing-degenerate")


def _random_curve_point(module: types.ModuleType, x: int) -> tuple[int, int] | None:
    p = module.p
    rhs = (x * x * x - 3 * x) % p
    y = pow(rhs, (p + 1) // 4, p)  # p ≡ 3 (mod 4)
    return (x, y) if y * y % p == rhs else None


@settings(max_examples=8, deadline=None)
@given(x=st.integers(min_value=0, max_value=(1 << 1024) - 1), h=st.binary(min_size=16, max_size=16))
def test_random_points_of_E_never_decapsulate(fast: types.ModuleType, x: int, h: bytes) -> None:
    module = fast
    point = _random_curve_point(module, x % module.p)
    if point is None:
        return
    with pytest.raises(module.SakkeError) as refusal:
        module.decapsulate(_with_R_b(point, h), *RFC_KEYS)
    assert refusal.value.reason in ("test-failed", "pairing-degenerate")


@settings(max_examples=200, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.binary(min_size=273, max_size=273),
        st.binary(min_size=272, max_size=272).map(lambda rest: b"\x04" + rest),
    )
)
def test_decapsulate_raises_only_sakke_error(fast: types.ModuleType, data: bytes) -> None:
    module = fast
    try:
        module.decapsulate(data, *RFC_KEYS)
    except module.SakkeError as error:
        # (0, 0), all zeros after 0x04, is a point of E (of order 2): hypothesis finds it.
        assert error.reason in (
            "data-length",
            "point-encoding",
            "point-not-on-curve",
            "pairing-degenerate",
            "test-failed",
        )
    else:  # pragma: no cover - would need a valid encapsulation by chance
        pytest.fail("random data decapsulated")


# --- refusals: keys and identities --------------------------------------------------------------


def test_wrong_identifier_is_caught_by_TEST(fast: types.ModuleType) -> None:
    other = b"2011-02\x00tel:+447700900124\x00"
    K_other = fast.issue_rsk(Z_SECRET, other)
    # the receiver "other" with its own, valid RSK cannot open data for b ...
    _refusal(fast, "test-failed", fast.decapsulate, ENCAPSULATED, other, K_other, (ZX, ZY))
    # ... nor can b's RSK be used under another identifier
    _refusal(fast, "test-failed", fast.decapsulate, ENCAPSULATED, other, (KBX, KBY), (ZX, ZY))


def test_wrong_rsk_is_caught_by_TEST(fast: types.ModuleType) -> None:
    K_other = fast.issue_rsk(Z_SECRET, B + b"x")
    _refusal(fast, "test-failed", fast.decapsulate, ENCAPSULATED, B, K_other, (ZX, ZY))
    _, Z_other = fast.generate_master_secret()
    _refusal(fast, "test-failed", fast.decapsulate, ENCAPSULATED, B, (KBX, KBY), Z_other)


def test_invalid_inputs_to_decapsulate(fast: types.ModuleType) -> None:
    off_curve = (KBX, (KBY + 1) % fast.p)
    _refusal(fast, "rsk-invalid", fast.decapsulate, ENCAPSULATED, B, off_curve, (ZX, ZY))
    _refusal(fast, "rsk-invalid", fast.decapsulate, ENCAPSULATED, B, None, (ZX, ZY))
    _refusal(fast, "kms-public-key-invalid", fast.decapsulate, ENCAPSULATED, B, (KBX, KBY), None)
    _refusal(fast, "identifier-invalid", fast.decapsulate, ENCAPSULATED, 1, (KBX, KBY), (ZX, ZY))


def test_validate_rsk_rejects_wrong_keys(fast: types.ModuleType) -> None:
    Z = (ZX, ZY)
    K_b = (KBX, KBY)
    _refusal(fast, "rsk-mismatch", fast.validate_rsk, K_b, B + b"x", Z)  # another identifier
    _refusal(fast, "rsk-mismatch", fast.validate_rsk, fast.issue_rsk(Z_SECRET, B + b"x"), B, Z)
    z_other, Z_other = fast.generate_master_secret()
    _refusal(fast, "rsk-mismatch", fast.validate_rsk, fast.issue_rsk(z_other, B), B, Z)
    _refusal(fast, "rsk-mismatch", fast.validate_rsk, K_b, B, Z_other)
    _refusal(fast, "rsk-mismatch", fast.validate_rsk, fast.ec.negate(fast.CURVE, K_b), B, Z)
    _refusal(fast, "rsk-mismatch", fast.validate_rsk, fast.P, B, Z)
    _refusal(fast, "rsk-invalid", fast.validate_rsk, (KBX, (KBY + 1) % fast.p), B, Z)
    _refusal(fast, "rsk-invalid", fast.validate_rsk, None, B, Z)
    _refusal(fast, "kms-public-key-invalid", fast.validate_rsk, K_b, B, (ZX, ZY + 1))


@pytest.mark.parametrize("bad", [0, 1, -1, "q", True, b"", b"\x01"])
def test_invalid_identifiers(fast: types.ModuleType, bad: object) -> None:
    for call, args in (
        (fast.encapsulate, (SSV, bad, (ZX, ZY))),
        (fast.issue_rsk, (Z_SECRET, bad)),
        (fast.derive_r, (SSV, bad)),
    ):
        _refusal(fast, "identifier-invalid", call, *args)


def test_identifier_must_be_below_q(fast: types.ModuleType) -> None:
    _refusal(fast, "identifier-invalid", fast.identifier_octets, fast.q)
    _refusal(fast, "identifier-invalid", fast.identifier_octets, fast.q.to_bytes(128, "big"))
    assert fast.identifier_octets(fast.q - 1) == (fast.q - 1).to_bytes(128, "big")
    assert fast.identifier_octets(2) == b"\x02"


@pytest.mark.parametrize("ssv", [b"", bytes(15), bytes(17), "0123456789abcdef"])
def test_ssv_must_be_16_octets(fast: types.ModuleType, ssv: object) -> None:
    _refusal(fast, "ssv-length", fast.encapsulate, ssv, B, (ZX, ZY))


def test_encapsulate_refuses_a_bad_kms_public_key(fast: types.ModuleType) -> None:
    for Z in (None, (ZX, ZY + 1), (fast.p, ZY)):
        _refusal(fast, "kms-public-key-invalid", fast.encapsulate, SSV, B, Z)


def test_kms_public_key_must_lie_in_the_order_q_subgroup(fast: types.ModuleType) -> None:
    assert fast.validate_kms_public_key((ZX, ZY)) == (ZX, ZY)
    # (0, 0) is on E (b = 0) with order 2; [q]Z is then (0, 0), not the point at infinity.
    assert fast.ec.is_on_curve(fast.CURVE, (0, 0))
    _refusal(fast, "kms-public-key-invalid", fast.validate_kms_public_key, (0, 0))
    for Z in (None, (ZX, ZY + 1)):
        _refusal(fast, "kms-public-key-invalid", fast.validate_kms_public_key, Z)


def test_master_secret_range(fast: types.ModuleType) -> None:
    for z in (0, 1, fast.q, -3):
        _refusal(fast, "master-secret-invalid", fast.kms_public_key, z)
        _refusal(fast, "master-secret-invalid", fast.issue_rsk, z, B)
    assert fast.kms_public_key(2) == fast.ec.multiply(fast.CURVE, 2, fast.P)


def test_identifier_that_cancels_the_master_secret(fast: types.ModuleType) -> None:
    z = 12345
    b = fast.q - z  # b + z = 0 mod q: no RSK, and [b]P + Z is the point at infinity
    _refusal(fast, "identifier-degenerate", fast.issue_rsk, z, b)
    _refusal(fast, "identifier-degenerate", fast.encapsulate, SSV, b, fast.kms_public_key(z))
