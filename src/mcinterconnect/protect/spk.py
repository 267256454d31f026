"""Signalling Protection Keys (SPK) of one partner link (TS 33.180 9.1, 5.5; WA-SP-01/02/05).

Two interconnected systems protect the MC XML bodies they exchange on SIP-3 with one shared SPK
(``xmlprotect.py``, keys derived per F.1.4).  33.180 distributes the SPK by manual configuration
only (5.5, unreadable): here both partners hold the same **SPK file**, written by
``mcic spk new`` / ``mcic spk rotate`` (or ``mcic init --spk``) with mode 0600.

The file (UTF-8 text, ``#`` comments)::

    MCIC-SPK-1
    kdf-identity a.mc.example
    current 3a1b2c3d <base64 of the 16 SPK octets>
    previous 31122334 <base64 of 16 octets> until 2026-12-04T10:00:00Z
    retired 30aabbcc until 2026-12-03T10:00:00Z

* ``current``: the SPK used to protect what this side sends, and accepted on receipt (one);
* ``previous``: an SPK replaced by a rotation, **accepted on receipt until** the instant given
  (the grace period, WA-SP-01), never used to send; zero or more;
* ``retired``: the ID (no key) of an SPK whose grace ended at a rotation, kept so that a late
  message gets ``spk-expired`` rather than ``spk-unknown`` (the last ``MAX_RETIRED``);
* ``kdf-identity``: P0 of the F.1.4 derivation (WA-SP-05), by default the domain of the system
  that generated the SPK; the agreement's ``spk.kdf_identity`` overrides it.

An SPK is 16 random octets (WA-SP-01); its SPK-ID carries purpose tag 3 (WA-SP-02, ``keyids``),
written as 8 hex digits (P-CR-11).  Instants are UTC, whole seconds (a grace ends on the second
after ``now + grace``).  Errors are ``SpkError`` with a reason code and one line that names the
file and line, never key octets; ``repr`` never shows a key.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import math
import os
import secrets
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Final

from mcinterconnect.crypto.keyids import (
    KeyIdError,
    Purpose,
    check_purpose,
    format_key_id,
    new_key_id,
    parse_key_id,
)
from mcinterconnect.files import PRIVATE_MODE, write_with_mode
from mcinterconnect.protect.xmlprotect import KeyResolver, XmlKeys

#: WA-SP-01: 128-bit SPK.
SPK_LENGTH: Final = 16
#: Default grace period of a rotation, seconds (the agreement's ``spk.grace``).
DEFAULT_GRACE: Final = 3600.0
#: Longest grace accepted (30 days): a previous SPK is not a second key for ever.
MAX_GRACE: Final = 30 * 86400.0
#: SPKs accepted at once (current + previous); a rotation beyond retires the oldest at once.
MAX_ACCEPTED: Final = 8
#: Retired SPK-IDs remembered (for ``spk-expired``).
MAX_RETIRED: Final = 16
FILE_MAGIC: Final = "MCIC-SPK-1"

# Reason codes (docs/PROFILE.md "SPK protection of SIP-3").
SPK_FILE_MISSING: Final = "spk-file-missing"
SPK_FILE_FORMAT: Final = "spk-file-format"
SPK_FILE_MODE: Final = "spk-file-mode"
SPK_KEY_PURPOSE: Final = "spk-key-purpose"
SPK_UNKNOWN: Final = "spk-unknown"
SPK_EXPIRED: Final = "spk-expired"

_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"


class SpkError(ValueError):
    """An unusable SPK file or SPK-ID, as one line; ``reason`` is a stable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Spk:
    """One SPK and its SPK-ID (purpose tag 3)."""

    key_id: int
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        try:
            check_purpose(self.key_id, Purpose.SPK)
        except KeyIdError as error:
            raise SpkError(SPK_KEY_PURPOSE, f"SPK-ID: {error}") from None
        if len(self.key) != SPK_LENGTH:
            raise SpkError(
                SPK_FILE_FORMAT, f"SPK {self.name} has {len(self.key)} octets, expected {SPK_LENGTH}"
            )

    @classmethod
    def generate(cls, avoid: Sequence[int] = ()) -> Spk:
        """16 random octets and a fresh SPK-ID different from every ID in ``avoid``."""
        while True:
            key_id = new_key_id(Purpose.SPK)
            if key_id not in avoid:
                return cls(key_id, secrets.token_bytes(SPK_LENGTH))

    @property
    def name(self) -> str:
        """The SPK-ID as 8 hex digits."""
        return format_key_id(self.key_id)

    def check_value(self) -> str:
        """8 hex digits that two operators can compare aloud to see they hold the same SPK
        (HMAC-SHA-256 of a fixed label; reveals nothing usable about the key)."""
        return hmac.new(self.key, b"mcinterconnect SPK check value", hashlib.sha256).hexdigest()[:8]


@dataclass(frozen=True)
class PreviousSpk:
    """An SPK replaced by a rotation, accepted on receipt until ``until`` (Unix seconds)."""

    spk: Spk
    until: float


@dataclass(frozen=True)
class RetiredSpk:
    """The ID of an SPK whose grace ended (``until``); its key is gone."""

    key_id: int
    until: float


class SpkState(Enum):
    """What an SPK-ID is to a ring at one instant."""

    CURRENT = "current"
    PREVIOUS = "previous"  # within its grace period
    EXPIRED = "expired"  # past its grace period
    UNKNOWN = "unknown"
    WRONG_PURPOSE = "wrong-purpose"


class SpkRing:
    """The SPKs of one partner link: the current one and those still (or no longer) accepted."""

    def __init__(
        self,
        current: Spk,
        *,
        kdf_identity: str,
        previous: Sequence[PreviousSpk] = (),
        retired: Sequence[RetiredSpk] = (),
    ) -> None:
        _check_identity(kdf_identity)
        ids = [current.key_id, *(p.spk.key_id for p in previous), *(r.key_id for r in retired)]
        if len(set(ids)) != len(ids):
            raise SpkError(SPK_FILE_FORMAT, "an SPK-ID appears twice in the ring")
        self.current = current
        self.kdf_identity = kdf_identity
        self.previous = tuple(previous)
        self.retired = tuple(retired)
        self._keys: dict[int, XmlKeys] = {}

    def __repr__(self) -> str:
        return (
            f"SpkRing(current={self.current.name}, previous={[p.spk.name for p in self.previous]}, "
            f"kdf_identity={self.kdf_identity!r})"
        )

    # ---------------------------------------------------------------- making
    @classmethod
    def generate(cls, kdf_identity: str) -> SpkRing:
        """A new link: one fresh SPK, nothing previous."""
        return cls(Spk.generate(), kdf_identity=kdf_identity)

    def rotated(self, *, now: float, grace: float) -> SpkRing:
        """A new current SPK; the old current stays accepted until ``now + grace`` (rounded up to
        the second); previous SPKs past their grace become retired IDs."""
        if not math.isfinite(grace) or not 0 <= grace <= MAX_GRACE:
            raise SpkError(SPK_FILE_FORMAT, f"grace {grace!r} is not in 0..{MAX_GRACE:.0f} seconds")
        live = [p for p in self.previous if p.until > now]
        ended = [RetiredSpk(p.spk.key_id, p.until) for p in self.previous if p.until <= now]
        previous = [PreviousSpk(self.current, float(math.ceil(now + grace))), *live]
        while len(previous) + 1 > MAX_ACCEPTED:
            oldest = previous.pop()
            ended.append(RetiredSpk(oldest.spk.key_id, float(math.floor(now))))
        retired = [*ended, *self.retired][:MAX_RETIRED]
        avoid = [self.current.key_id, *(p.spk.key_id for p in self.previous), *(r.key_id for r in retired)]
        return SpkRing(
            Spk.generate(avoid), kdf_identity=self.kdf_identity, previous=previous, retired=retired
        )

    def with_kdf_identity(self, kdf_identity: str | None) -> SpkRing:
        """The same keys derived with another P0 (the agreement's ``spk.kdf_identity``)."""
        if kdf_identity is None or kdf_identity == self.kdf_identity:
            return self
        return SpkRing(self.current, kdf_identity=kdf_identity, previous=self.previous, retired=self.retired)

    # -------------------------------------------------------------- looking up
    def state(self, key_id: int, now: float) -> SpkState:
        """What ``key_id`` is at ``now``: current, previous in grace, expired, unknown, not an SPK-ID."""
        try:
            check_purpose(key_id, Purpose.SPK)
        except KeyIdError:
            return SpkState.WRONG_PURPOSE
        if key_id == self.current.key_id:
            return SpkState.CURRENT
        for previous in self.previous:
            if previous.spk.key_id == key_id:
                return SpkState.PREVIOUS if now < previous.until else SpkState.EXPIRED
        if any(retired.key_id == key_id for retired in self.retired):
            return SpkState.EXPIRED
        return SpkState.UNKNOWN

    def keys(self, key_id: int, now: float) -> XmlKeys:
        """The F.1.4 keys of ``key_id`` if it is accepted at ``now``; else ``SpkError`` with
        ``spk-unknown``, ``spk-expired`` or ``spk-key-purpose``."""
        state = self.state(key_id, now)
        if state is SpkState.CURRENT:
            spk = self.current
        elif state is SpkState.PREVIOUS:
            spk = next(p.spk for p in self.previous if p.spk.key_id == key_id)
        else:
            raise SpkError(*self.refusal(key_id, now))
        cached = self._keys.get(key_id)
        if cached is None:
            cached = self._keys[key_id] = XmlKeys.derive(spk.key, key_id, self.kdf_identity)
        return cached

    def current_keys(self) -> XmlKeys:
        """The keys that protect what this side sends."""
        return self.keys(self.current.key_id, -math.inf)

    def resolve(self, key_id: int, now: float) -> XmlKeys | None:
        """``keys`` or ``None``: the shape of ``xmlprotect.KeyResolver`` once ``now`` is bound."""
        try:
            return self.keys(key_id, now)
        except SpkError:
            return None

    def resolver(self, now: float, asked: list[int] | None = None) -> KeyResolver:
        """A ``KeyResolver`` at ``now``; every SPK-ID it is asked for is appended to ``asked``."""

        def resolve(key_id: int) -> XmlKeys | None:
            if asked is not None:
                asked.append(key_id)
            return self.resolve(key_id, now)

        return resolve

    def refusal(self, key_id: int, now: float) -> tuple[str, str]:
        """The reason code and one-line detail for an SPK-ID not accepted at ``now``."""
        try:
            name = format_key_id(key_id)
        except KeyIdError:
            return SPK_UNKNOWN, f"key ID {key_id!r} is not a 32-bit key ID"
        state = self.state(key_id, now)
        if state is SpkState.WRONG_PURPOSE:
            return SPK_KEY_PURPOSE, f"key ID {name} does not carry the SPK purpose tag (3)"
        if state is SpkState.EXPIRED:
            until = next(
                (p.until for p in self.previous if p.spk.key_id == key_id),
                next((r.until for r in self.retired if r.key_id == key_id), now),
            )
            return SPK_EXPIRED, f"SPK-ID {name} stopped being accepted at {_format_time(until)}"
        if state is SpkState.UNKNOWN:
            return SPK_UNKNOWN, f"SPK-ID {name} is not configured for this link"
        return "", ""

    def accepted(self, now: float) -> list[int]:
        """The SPK-IDs accepted at ``now``, current first."""
        return [self.current.key_id, *(p.spk.key_id for p in self.previous if now < p.until)]

    # --------------------------------------------------------------- the file
    def to_text(self, comment: str = "") -> str:
        lines = [f"# {line}" for line in comment.splitlines()]
        lines += [
            "# SPK file of one partner link (TS 33.180 5.5, 9.1); SECRET, mode 0600. Written by mcic spk.",
            FILE_MAGIC,
            f"kdf-identity {self.kdf_identity}",
            f"current {self.current.name} {_b64(self.current.key)}",
        ]
        lines += [
            f"previous {p.spk.name} {_b64(p.spk.key)} until {_format_time(p.until)}" for p in self.previous
        ]
        lines += [f"retired {format_key_id(r.key_id)} until {_format_time(r.until)}" for r in self.retired]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_text(cls, text: str, where: str = "SPK file") -> SpkRing:
        magic_seen = False
        identity: str | None = None
        current: Spk | None = None
        previous: list[PreviousSpk] = []
        retired: list[RetiredSpk] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            here = f"{where}: line {number}"
            words = line.split()
            if not magic_seen:
                if words != [FILE_MAGIC]:
                    raise SpkError(SPK_FILE_FORMAT, f"{here}: expected {FILE_MAGIC} first")
                magic_seen = True
                continue
            keyword = words[0]
            if keyword == "kdf-identity" and len(words) == 2 and identity is None:
                identity = words[1]
            elif keyword == "current" and len(words) == 3 and current is None:
                current = Spk(_key_id(words[1], here), _key(words[2], here))
            elif keyword == "previous" and len(words) == 5 and words[3] == "until":
                spk = Spk(_key_id(words[1], here), _key(words[2], here))
                previous.append(PreviousSpk(spk, _parse_time(words[4], here)))
            elif keyword == "retired" and len(words) == 4 and words[2] == "until":
                retired.append(RetiredSpk(_key_id(words[1], here), _parse_time(words[3], here)))
            else:
                raise SpkError(SPK_FILE_FORMAT, f"{here}: unexpected {keyword[:20]!r} line")
        if not magic_seen:
            raise SpkError(SPK_FILE_FORMAT, f"{where}: empty (expected {FILE_MAGIC})")
        if identity is None:
            raise SpkError(SPK_FILE_FORMAT, f"{where}: no kdf-identity line")
        if current is None:
            raise SpkError(SPK_FILE_FORMAT, f"{where}: no current SPK")
        try:
            return cls(current, kdf_identity=identity, previous=previous, retired=retired)
        except SpkError as error:
            raise SpkError(error.reason, f"{where}: {error}") from None

    @classmethod
    def load(cls, path: Path, *, kdf_identity: str | None = None) -> SpkRing:
        """Read an SPK file (refused when group or others may read it)."""
        try:
            mode = path.stat().st_mode
            data = path.read_bytes()
        except FileNotFoundError:
            raise SpkError(SPK_FILE_MISSING, f"{path}: SPK file not found") from None
        except OSError as error:
            raise SpkError(SPK_FILE_MISSING, f"{path}: cannot read: {error.strerror}") from None
        if not stat.S_ISREG(mode):
            raise SpkError(SPK_FILE_MISSING, f"{path}: not a regular file")
        if mode & 0o077:
            raise SpkError(SPK_FILE_MODE, f"{path}: readable by group or others (chmod 600)")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise SpkError(SPK_FILE_FORMAT, f"{path}: not UTF-8 text") from None
        ring = cls.from_text(text, str(path))
        try:
            return ring.with_kdf_identity(kdf_identity)
        except SpkError as error:
            raise SpkError(error.reason, f"kdf_identity: {error}") from None

    def save(self, path: Path, comment: str = "") -> None:
        """Write the file with mode 0600, atomically (a reader sees the old or the new ring)."""
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            write_with_mode(temporary, self.to_text(comment).encode("utf-8"), PRIVATE_MODE)
            os.replace(temporary, path)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            raise SpkError(SPK_FILE_MISSING, f"{path}: cannot write: {error.strerror}") from None


def _check_identity(value: str) -> None:
    if not value or value != value.strip() or any(char.isspace() for char in value):
        raise SpkError(SPK_FILE_FORMAT, f"kdf identity {value[:40]!r} is empty or holds whitespace")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise SpkError(SPK_FILE_FORMAT, "kdf identity holds a control character")


def _key_id(text: str, here: str) -> int:
    try:
        key_id = parse_key_id(text)
    except KeyIdError as error:
        raise SpkError(SPK_FILE_FORMAT, f"{here}: {error}") from None
    try:
        return check_purpose(key_id, Purpose.SPK)
    except KeyIdError as error:
        raise SpkError(SPK_KEY_PURPOSE, f"{here}: {error} (wrong purpose tag)") from None


def _key(text: str, here: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SpkError(SPK_FILE_FORMAT, f"{here}: the SPK is not base64") from None
    if len(key) != SPK_LENGTH or _b64(key) != text:
        raise SpkError(SPK_FILE_FORMAT, f"{here}: the SPK must be {SPK_LENGTH} octets in canonical base64")
    return key


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def _format_time(moment: float) -> str:
    if not math.isfinite(moment):
        return "never"
    return datetime.datetime.fromtimestamp(math.ceil(moment), datetime.UTC).strftime(_TIME_FORMAT)


def _parse_time(text: str, here: str) -> float:
    try:
        parsed = datetime.datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=datetime.UTC)
    except ValueError:
        raise SpkError(
            SPK_FILE_FORMAT, f"{here}: {text[:30]!r} is not a UTC time like 2026-12-04T10:00:00Z"
        ) from None
    return parsed.timestamp()
