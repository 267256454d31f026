"""Key material and tokens of sealed topology hiding.

ARCHITECTURE.md §4, "Topology hiding is stateless and sealed": what the border removes from a
SIP message (Via stack, Record-Route set, Contact, Call-ID, internal hosts) travels inside sealed
tokens under a key shared by every instance of one border, so any instance can restore any dialog
and nothing is stored per dialog (interconnection.md §10.2, WA-IC-12 minimum disclosure).

A token is ``base64url-no-padding(key id (1 byte) || AES-SIV(key).encrypt(plaintext, [kind]))``
with a 64-byte AES-256-SIV key (RFC 5297).  The ``kind`` ("via", "call-id", ...) is associated
data, so a token made for one header never opens as another.

Keys live in a text file, one ``KEYID BASE64`` a line; the first key seals, every key unseals, so a
key is rotated by putting a new line first and deleting the old line once no dialog needs it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from mcinterconnect.files import write_with_mode

#: AES-256-SIV takes two 256-bit keys (RFC 5297: S2V key and CTR key).
SEALING_KEY_LENGTH = 64
MAX_KEY_ID = 255
KEY_FILE_MODE = 0o600
_TAG_LENGTH = 16
_TOKEN_ALPHABET = re.compile(r"[A-Za-z0-9_-]+")


class SealingKeyError(ValueError):
    """Unusable sealing key material, as one line (never containing key bytes)."""


class SealError(ValueError):
    """A token that does not unseal: malformed, sealed with an unknown key, for another kind, or altered."""


def generate_sealing_key() -> bytes:
    """A fresh random AES-256-SIV key (64 bytes)."""
    return AESSIV.generate_key(8 * SEALING_KEY_LENGTH)


def _check_keys(keys: Sequence[tuple[int, bytes]], where: str = "") -> None:
    prefix = f"{where}: " if where else ""
    if not keys:
        raise SealingKeyError(f"{prefix}no key")
    seen: set[int] = set()
    for key_id, key in keys:
        if not 0 <= key_id <= MAX_KEY_ID:
            raise SealingKeyError(f"{prefix}key id {key_id} is not in 0..{MAX_KEY_ID}")
        if len(key) != SEALING_KEY_LENGTH:
            raise SealingKeyError(
                f"{prefix}key id {key_id}: wrong key length {len(key)} bytes, "
                f"expected {SEALING_KEY_LENGTH} (AES-256-SIV)"
            )
        if key_id in seen:
            raise SealingKeyError(f"{prefix}duplicate key id {key_id}")
        seen.add(key_id)


def write_sealing_keys(path: Path, keys: list[tuple[int, bytes]]) -> None:
    """Write the key file (mode 0600): a comment line, then ``KEYID BASE64`` per key, sealing key first."""
    _check_keys(keys, str(path))
    lines = ["# Sealing keys of one border (AES-256-SIV). First line seals, every line unseals."]
    lines += [f"{key_id} {base64.b64encode(key).decode('ascii')}" for key_id, key in keys]
    data = ("\n".join(lines) + "\n").encode("ascii")
    write_with_mode(path, data, KEY_FILE_MODE)


def load_sealing_keys(path: Path) -> list[tuple[int, bytes]]:
    """Read a key file; blank lines and ``#`` comments are skipped, order is kept (first seals)."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise SealingKeyError(f"{path}: file not found") from None
    except UnicodeDecodeError:
        raise SealingKeyError(f"{path}: not an ASCII text file") from None
    except OSError as exc:
        raise SealingKeyError(f"{path}: cannot read: {exc.strerror}") from None
    keys: list[tuple[int, bytes]] = []
    seen: set[int] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        # Messages never quote the line: it holds key bytes.
        fields = line.split()
        if len(fields) != 2 or not fields[0].isdigit():
            raise SealingKeyError(f"{path}: bad line {number}: expected 'KEYID BASE64'")
        key_id = int(fields[0])
        if key_id > MAX_KEY_ID:
            raise SealingKeyError(f"{path}: bad line {number}: key id {key_id} is not in 0..{MAX_KEY_ID}")
        try:
            key = base64.b64decode(fields[1], validate=True)
        except binascii.Error:
            raise SealingKeyError(f"{path}: bad line {number}: key is not valid base64") from None
        if len(key) != SEALING_KEY_LENGTH:
            raise SealingKeyError(
                f"{path}: line {number}: wrong key length {len(key)} bytes, "
                f"expected {SEALING_KEY_LENGTH} (AES-256-SIV)"
            )
        if key_id in seen:
            raise SealingKeyError(f"{path}: line {number}: duplicate key id {key_id}")
        seen.add(key_id)
        keys.append((key_id, key))
    if not keys:
        raise SealingKeyError(f"{path}: no key")
    return keys


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Sealer:
    """Seals and unseals topology-hiding tokens with a list of ``(key id, key)``; the first seals.

    Sealing is deterministic on purpose: the same kind and plaintext always give the same token,
    so the sealed Via branch of a CANCEL or ACK matches the one of its INVITE and a sealed Call-ID
    stays stable for the whole dialog, on any instance and with no state.  AES-SIV is a
    misuse-resistant deterministic AEAD: a token reveals only whether two plaintexts of the same
    kind are equal, nothing else, and any change to it is detected.
    """

    def __init__(self, keys: Sequence[tuple[int, bytes]]) -> None:
        _check_keys(keys)
        self._ciphers = {key_id: AESSIV(key) for key_id, key in keys}
        self._sealing_key_id = keys[0][0]
        # Separate keys for fingerprints, derived so that no key serves two algorithms.
        self._fingerprint_keys = {
            key_id: hashlib.sha256(b"mcinterconnect fingerprint\x00" + key).digest() for key_id, key in keys
        }

    @classmethod
    def from_file(cls, path: Path) -> Sealer:
        return cls(load_sealing_keys(path))

    @property
    def sealing_key_id(self) -> int:
        return self._sealing_key_id

    def __repr__(self) -> str:
        return f"Sealer(key ids={sorted(self._ciphers)}, sealing={self._sealing_key_id})"

    def _key_id(self, key_id: int | None) -> int:
        """``key_id`` when it is still listed (a dialog keeps its key), else the sealing key."""
        return key_id if key_id is not None and key_id in self._ciphers else self._sealing_key_id

    def seal(self, kind: str, plaintext: bytes, key_id: int | None = None) -> str:
        """A URL-safe token (usable in a SIP token, URI parameter or Call-ID) holding ``plaintext``.

        ``key_id`` selects a listed key other than the first: during a key rotation a dialog
        keeps sealing with the key its first message was sealed with, so its tokens and its
        Call-ID do not change in the middle of the dialog.
        """
        chosen = self._key_id(key_id)
        sealed = self._ciphers[chosen].encrypt(plaintext, [kind.encode("utf-8")])
        return _encode(bytes([chosen]) + sealed)

    def unseal(self, kind: str, token: str) -> bytes:
        """The plaintext of a token made by ``seal(kind, ...)`` under any listed key, else ``SealError``."""
        return self.unseal_with_key_id(kind, token)[0]

    def unseal_with_key_id(self, kind: str, token: str) -> tuple[bytes, int]:
        """Like ``unseal``, also giving the id of the key that sealed the token."""
        if not _TOKEN_ALPHABET.fullmatch(token) or len(token) % 4 == 1:
            raise SealError("token is not base64url")
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        if _encode(raw) != token:
            raise SealError("token is not canonical base64url")  # one plaintext, one token
        if len(raw) < 1 + _TAG_LENGTH:
            raise SealError("token too short")
        cipher = self._ciphers.get(raw[0])
        if cipher is None:
            raise SealError(f"token sealed with unknown key id {raw[0]}")
        try:
            return cipher.decrypt(raw[1:], [kind.encode("utf-8")]), raw[0]
        except InvalidTag:
            raise SealError(f"token does not unseal as {kind!r} (other kind, other key or altered)") from None

    def fingerprint(self, kind: str, data: bytes, key_id: int | None = None) -> str:
        """A keyed 128-bit fingerprint (HMAC-SHA-256) of ``data``, URL-safe: stable for equal input
        and unlinkable to it without the key (used for SIP-3 Via branches)."""
        key = self._fingerprint_keys[self._key_id(key_id)]
        mac = hmac.new(key, kind.encode("utf-8") + b"\x00" + data, hashlib.sha256)
        return _encode(mac.digest()[:16])

    def try_unseal(self, kind: str, token: str) -> bytes | None:
        """Like ``unseal`` but ``None`` instead of ``SealError`` (for parameters that may not be ours)."""
        try:
            return self.unseal(kind, token)
        except SealError:
            return None

    def try_unseal_with_key_id(self, kind: str, token: str) -> tuple[bytes, int] | None:
        """Like ``unseal_with_key_id`` but ``None`` instead of ``SealError``."""
        try:
            return self.unseal_with_key_id(kind, token)
        except SealError:
            return None
