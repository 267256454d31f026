"""Decoding command-line values shared by the ``mcic`` command groups: each failure is one line
naming the option (``CliError``), never a traceback."""

from __future__ import annotations

import argparse
import math

from mcinterconnect.cli.common import CliError
from mcinterconnect.crypto import ec
from mcinterconnect.crypto.ec import Curve, Point
from mcinterconnect.crypto.uid import KeyPeriod, UidError

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def hex_octets(option: str, text: str) -> bytes:
    """An even number of hexadecimal digits (an optional ``0x`` prefix is allowed)."""
    value = text.strip()
    if value[:2].lower() == "0x":
        value = value[2:]
    if not value or len(value) % 2 or any(c not in _HEX_DIGITS for c in value):
        raise CliError(f"{option}: not an even number of hexadecimal digits")
    return bytes.fromhex(value)


def curve_point(option: str, text: str, curve: Curve = ec.P256) -> Point:
    """A point of ``curve`` in hex (``04 || x || y``), checked to lie on the curve."""
    try:
        return ec.decode_point(curve, hex_octets(option, text))
    except ec.EcError as error:
        raise CliError(f"{option}: {error}") from None


def whole_number(option: str, text: str, maximum: int | None = None) -> int:
    """A non-negative integer, decimal or ``0x`` hexadecimal, at most ``maximum``."""
    value = text.strip()
    if value[:2].lower() == "0x" and len(value) > 2 and all(c in _HEX_DIGITS for c in value[2:]):
        number = int(value, 16)
    elif value.isascii() and value.isdigit():
        number = int(value)
    else:
        raise CliError(f"{option}: {text[:20]!r} is not a whole number of 0 or more")
    if maximum is not None and number > maximum:
        raise CliError(f"{option}: {number} is more than {maximum}")
    return number


def seconds(option: str, text: str) -> float:
    """A finite number of seconds (or a Unix time)."""
    try:
        value = float(text)
    except ValueError:
        raise CliError(f"{option}: {text[:20]!r} is not a number") from None
    if not math.isfinite(value):
        raise CliError(f"{option}: must be finite")
    return value


def key_period(args: argparse.Namespace) -> KeyPeriod:
    """``--key-period`` / ``--key-offset`` as a KMS key period (33.180 F.2.1)."""
    try:
        return KeyPeriod(
            whole_number("--key-period", args.key_period), whole_number("--key-offset", args.key_offset)
        )
    except UidError as error:
        raise CliError(f"--key-period/--key-offset: {error}") from None
