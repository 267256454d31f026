"""The big-integer backend of the identity-based cryptography: Python ``int`` or gmpy2.

The mathematics of ECCSI and SAKKE is written once over plain integer operations; this module
decides, at import, whether those integers are Python ``int`` or ``gmpy2.mpz`` (5-6x faster for
SAKKE's 1024-bit field, spec/crypto.md §10).  ``MCIC_CRYPTO_BACKEND`` forces the choice:

* ``int``   — always Python integers;
* ``gmpy2`` — gmpy2, and an ``ImportError`` if it is not installed;
* ``auto`` (default) — gmpy2 when importable, else Python integers.

Values handed out by ``mpz`` behave like ``int`` for ``+ - * // % **``, comparisons and
``pow(b, e, m)``; ``to_int`` turns them back into ``int`` for encoding.  Python big-integer
arithmetic is not constant-time (spec/crypto.md §11): secret scalars on P-256 go to OpenSSL.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

_choice = os.environ.get("MCIC_CRYPTO_BACKEND", "auto").strip().lower()
if _choice not in ("auto", "int", "gmpy2"):
    raise ImportError(f"MCIC_CRYPTO_BACKEND={_choice!r}: expected auto, int or gmpy2")


def _load_gmpy2() -> Any:
    if _choice == "int":
        return None
    try:
        return importlib.import_module("gmpy2")
    except ImportError:
        if _choice == "gmpy2":
            raise ImportError("MCIC_CRYPTO_BACKEND=gmpy2 but gmpy2 is not installed") from None
        return None


_gmpy2: Any = _load_gmpy2()

#: "gmpy2" or "int": which backend this process uses.
NAME = "gmpy2" if _gmpy2 is not None else "int"

_mpz: Callable[[int], int] = _gmpy2.mpz if _gmpy2 is not None else int


def mpz(value: int) -> int:
    """``value`` as a backend integer (an ``mpz`` under gmpy2, typed as ``int``)."""
    return _mpz(value)


def to_int(value: int) -> int:
    """A backend integer as a Python ``int`` (for byte encoding and comparisons with ints)."""
    return int(value)


def invert(value: int, modulus: int) -> int:
    """The inverse of ``value`` modulo ``modulus``; ``ZeroDivisionError`` when none exists."""
    if _gmpy2 is not None:
        result = _gmpy2.invert(value, modulus)
        if result == 0 and modulus != 1:
            raise ZeroDivisionError("not invertible")
        return result  # type: ignore[no-any-return]
    return pow(value, -1, modulus)


def powmod(base: int, exponent: int, modulus: int) -> int:
    """``base ** exponent mod modulus`` in the backend."""
    if _gmpy2 is not None:
        return _gmpy2.powmod(base, exponent, modulus)  # type: ignore[no-any-return]
    return pow(base, exponent, modulus)


def from_bytes(data: bytes) -> int:
    """A big-endian unsigned integer as a backend integer."""
    return _mpz(int.from_bytes(data, "big"))


def to_bytes(value: int, length: int) -> bytes:
    """A non-negative integer as ``length`` big-endian octets (``OverflowError`` if too large)."""
    return int(value).to_bytes(length, "big")
