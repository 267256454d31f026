"""Group master keys (GMK) of the GMS: one per group, wrapped per receiver in MIKEY-SAKKE (sans-IO).

TS 33.180 5.7 (key management for group communications): the GMS creates a GMK (16 random
octets, the SAKKE SSV) and a GMK-ID (32 bits, purpose tag GMK, ``keyids.new_key_id``) per group,
and sends the GMK to each receiver in its own I_MESSAGE, encrypted to the receiver's UID under the
receiver's KMS and signed (ECCSI) under the GMS's own identity, its server URI (PSI).  The CSB ID of
every message is the receiver's GUK-ID (33.180 F.1.3, ``keyids.guk_id``), from which the receiver
recovers the GMK-ID with its own URI and the GMK (spec/crypto.md §6.4).

Across an interconnection (TS 33.180 11.1.1, 23.280 10.2.7 / 10.15.3.3.1, spec/interconnection.md
§9.5, **WA-IC-22** "GMK relay by re-wrapping"):

* the home GMS (B) wraps the GMK to the partner's GMS PSI under the partner's KMS certificate
  (imported by manual cross-certification, WA-IC-19), signed by GMS B under B's KMS;
* the partner GMS (A) opens it (``open_gmk``: B's PSI and B's KPAK expected), keeps the GMK and
  its GMK-ID unchanged, and wraps it again (``wrap_gmk``) for each of its own members, signed by
  GMS A with a per-user GUK-ID: B never learns A's members.

What is here:

* ``GroupKey`` (GMK, GMK-ID of one group) and ``GroupKeyRing`` (the own groups' keys, kept in
  memory: a restart creates new GMKs, which the members fetch again — docs/PROFILE.md);
* ``wrap_gmk`` — the I_MESSAGE for one receiver (HDR with CSB ID = GUK-ID and the GENERIC-ID map
  of CS-ID 4 with SPI = GMK-ID || GUK-ID, T, RAND, IDRi, IDRr, IDRkmsi, IDRkmsr, SAKKE, SIGN);
* ``open_gmk`` — the receiver's side: the identities expected (initiator = the GMS PSI, its KMS;
  responder = the receiver, its KMS) are checked, then the ECCSI signature under the initiator
  KMS's KPAK, and only then SAKKE decapsulation with the receiver's RSK (RFC 6509 §2.2.2);
* ``GmkError`` — every refusal, with a stable ``reason`` code (table below); messages never hold
  key material.

============================  =======================================================================
reason                        meaning
============================  =======================================================================
``malformed``                 not a parsable MIKEY-SAKKE I_MESSAGE
``initiator-mismatch``        IDRi is not the expected GMS PSI (or missing)
``initiator-kms-mismatch``    IDRkmsi is not the KMS of the expected initiator
``receiver-mismatch``         IDRr is not the receiver (or missing)
``receiver-kms-mismatch``     IDRkmsr is not the receiver's KMS
``not-a-gmk``                 the CSB ID is not tagged GMK
``stale``                     the T payload is too far from the local clock
``signature-invalid``         the ECCSI signature does not verify under the initiator's KPAK
``decapsulation-failed``      the SAKKE data does not open with the receiver's key (wrong key, tampered)
``gmk-id-mismatch``           the GENERIC-ID SPI disagrees with the GMK-ID recovered from the GUK-ID
``keys-unavailable``          no own key set (SSK/PVT or RSK) for the key period in question
``invalid``                   any other refusal of the message or of the inputs
============================  =======================================================================
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from mcinterconnect.crypto import keyids, mikey
from mcinterconnect.crypto.keyids import GMK_LENGTH, KeyIdError, Purpose
from mcinterconnect.crypto.kms import KmsCertificate
from mcinterconnect.crypto.mikey import GenericIdEntry, IdRole, MikeyError
from mcinterconnect.services.mcx_ear import SigningKeyError, SigningKeys

__all__ = [
    "GMK_CONTENT_TYPE",
    "GMK_CS_ID",
    "GmkError",
    "GroupKey",
    "GroupKeyRing",
    "ReceivedGmk",
    "open_gmk",
    "wrap_gmk",
]

#: Media type of the GMK resource: the binary I_MESSAGE (RFC 3830 ``application/mikey``).
GMK_CONTENT_TYPE: Final = "application/mikey"
#: CS-ID of the MCPTT group call (33.180 E.1.3), in the GENERIC-ID map of a GMK message.
GMK_CS_ID: Final = 4
#: Largest I_MESSAGE accepted from the wire (a GMK message is about 500 octets).
MAX_MESSAGE_BYTES: Final = 4096

_MIKEY_REASONS: Final = {
    "signature-invalid": "signature-invalid",
    "sakke-invalid": "decapsulation-failed",
    "timestamp-skew": "stale",
    "key-id": "not-a-gmk",
}


class GmkError(Exception):
    """A GMK refused (or one that cannot be wrapped): ``reason`` is a stable code (module docstring)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class GroupKey:
    """The GMK of one group and its GMK-ID (the key itself is left out of ``repr``)."""

    group_id: str
    gmk: bytes = field(repr=False)
    gmk_id: int

    def __post_init__(self) -> None:
        if not isinstance(self.gmk, bytes) or len(self.gmk) != GMK_LENGTH:
            raise GmkError("invalid", f"a GMK has {GMK_LENGTH} octets")
        try:
            keyids.check_purpose(self.gmk_id, Purpose.GMK)
        except KeyIdError as error:
            raise GmkError("invalid", f"GMK-ID: {error}") from None

    @classmethod
    def new(cls, group_id: str) -> GroupKey:
        """A fresh GMK (16 octets from ``secrets``) with a fresh GMK-ID (33.180 5.7)."""
        return cls(group_id, secrets.token_bytes(GMK_LENGTH), keyids.new_key_id(Purpose.GMK))


class GroupKeyRing:
    """The GMKs of this GMS's own groups, by group ID, in memory.

    ``ensure`` creates a group's key the first time it is asked for (group created by PUT or
    loaded at start) and keeps it afterwards; ``discard`` forgets it (group deleted)."""

    def __init__(self) -> None:
        self._keys: dict[str, GroupKey] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._keys))

    def get(self, group_id: str) -> GroupKey | None:
        return self._keys.get(group_id)

    def ensure(self, group_id: str) -> GroupKey:
        key = self._keys.get(group_id)
        if key is None:
            key = self._keys[group_id] = GroupKey.new(group_id)
        return key

    def discard(self, group_id: str) -> None:
        self._keys.pop(group_id, None)


@dataclass(frozen=True)
class ReceivedGmk:
    """What ``open_gmk`` hands out: the GMK, its GMK-ID, the GUK-ID it came under, who sent it."""

    gmk: bytes = field(repr=False)
    gmk_id: int
    guk_id: int
    initiator_uri: str
    timestamp: float


def _spi(gmk_id: int, guk: int) -> bytes:
    return keyids.key_id_to_bytes(gmk_id) + keyids.key_id_to_bytes(guk)


def wrap_gmk(
    key: GroupKey,
    *,
    receiver_uri: str,
    receiver_certificate: KmsCertificate,
    sender_uri: str,
    sender_keys: SigningKeys,
    now: float | None = None,
) -> bytes:
    """The I_MESSAGE carrying ``key`` to ``receiver_uri`` (its KMS: ``receiver_certificate``),
    signed by ``sender_uri`` (the GMS PSI) with its key set of the period holding ``now``.

    ``GmkError`` ``keys-unavailable`` when the sender holds no key set for that period,
    ``invalid`` when the inputs name no usable identity."""
    moment = time.time() if now is None else now
    try:
        key_set = sender_keys.for_time(moment)
    except SigningKeyError as error:
        raise GmkError("keys-unavailable", str(error)) from None
    if sender_keys.user_uri != sender_uri:
        raise GmkError("keys-unavailable", "the key sets held are not the sender's")
    certificate = sender_keys.certificate
    try:
        guk = keyids.guk_id(key.gmk, key.gmk_id, receiver_uri)
        return mikey.make_i_message(
            ssv=key.gmk,
            key_id=guk,
            initiator_uri=sender_uri,
            responder_uri=receiver_uri,
            initiator_kms_uri=certificate.kms_uri,
            responder_kms_uri=receiver_certificate.kms_uri,
            initiator_period=certificate.key_period,
            responder_period=receiver_certificate.key_period,
            ssk=key_set.ssk,
            pvt=key_set.pvt,
            kpak=certificate.pub_auth_key,
            responder_z=receiver_certificate.pub_enc_key,
            timestamp=moment,
            crypto_sessions=(GenericIdEntry(cs_id=GMK_CS_ID, spi=_spi(key.gmk_id, guk)),),
        )
    except (KeyIdError, MikeyError) as error:
        raise GmkError("invalid", f"cannot wrap the GMK: {error}") from None


def _idr(message: mikey.IMessage, role: IdRole) -> str | None:
    payload = message.idr(role)
    if payload is None:
        return None
    try:
        return payload.text()
    except MikeyError:
        return None


def open_gmk(
    data: bytes,
    *,
    receiver_uri: str,
    receiver_keys: SigningKeys,
    initiator_uri: str,
    initiator_certificate: KmsCertificate,
    now: float | None = None,
    max_skew: float | None = mikey.DEFAULT_MAX_SKEW,
) -> ReceivedGmk:
    """Check and open a GMK I_MESSAGE as ``receiver_uri`` (key sets ``receiver_keys`` under its own
    KMS certificate), sent by ``initiator_uri`` under ``initiator_certificate``'s KMS.

    Identities first (IDRi, IDRkmsi, IDRr, IDRkmsr), then the ECCSI signature with the initiator
    KMS's KPAK, then SAKKE decapsulation; ``GmkError`` says which step refused."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise GmkError("malformed", f"the I_MESSAGE exceeds {MAX_MESSAGE_BYTES} octets")
    try:
        message = mikey.parse_i_message(bytes(data))
        _, sent_at = message.timestamp.utc_seconds()
    except MikeyError as error:
        raise GmkError("malformed", f"not a MIKEY-SAKKE I_MESSAGE: {error}") from None
    own = receiver_keys.certificate
    if _idr(message, IdRole.IDRI) != initiator_uri:
        raise GmkError("initiator-mismatch", f"the GMK is not signed by {initiator_uri}")
    if _idr(message, IdRole.IDRKMSI) != initiator_certificate.kms_uri:
        raise GmkError(
            "initiator-kms-mismatch", f"the GMK is not from the KMS {initiator_certificate.kms_uri}"
        )
    if _idr(message, IdRole.IDRR) != receiver_uri:
        raise GmkError("receiver-mismatch", f"the GMK is not for {receiver_uri}")
    if _idr(message, IdRole.IDRKMSR) != own.kms_uri:
        raise GmkError("receiver-kms-mismatch", f"the GMK is not encrypted under the KMS {own.kms_uri}")
    try:
        key_set = receiver_keys.for_time(sent_at)
    except SigningKeyError as error:
        raise GmkError("keys-unavailable", str(error)) from None
    try:
        opened = mikey.open_i_message(
            bytes(data),
            initiator_kpak=initiator_certificate.pub_auth_key,
            initiator_period=initiator_certificate.key_period,
            responder_period=own.key_period,
            responder_rsk=key_set.rsk,
            responder_z=own.pub_enc_key,
            expected_responder_uri=receiver_uri,
            expected_initiator_uri=initiator_uri,
            expected_initiator_kms_uri=initiator_certificate.kms_uri,
            expected_responder_kms_uri=own.kms_uri,
            period_number=key_set.key_period_no,
            now=now,
            max_skew=max_skew,
        )
    except MikeyError as error:
        raise GmkError(_MIKEY_REASONS.get(error.reason, "invalid"), str(error)) from None
    if opened.purpose != Purpose.GMK or opened.gmk_id is None:
        raise GmkError("not-a-gmk", f"the CSB ID is tagged {opened.purpose.name}, not GMK")
    for entry in message.hdr.cs_id_map:
        if (
            isinstance(entry, GenericIdEntry)
            and entry.spi
            and entry.spi != _spi(opened.gmk_id, opened.key_id)
        ):
            raise GmkError("gmk-id-mismatch", "the GENERIC-ID SPI does not name GMK-ID || GUK-ID")
    return ReceivedGmk(
        gmk=opened.key,
        gmk_id=opened.gmk_id,
        guk_id=opened.key_id,
        initiator_uri=initiator_uri,
        timestamp=opened.timestamp,
    )
