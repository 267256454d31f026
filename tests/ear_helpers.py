"""EARs for tests: signed with keys provisioned offline from a system's own KMS secrets.

``sign_as`` plays a server of ``system`` (by default its MCX server) and returns the ``MC-EAR``
header value; ``signer_uri`` signs with the key of another identity than the Source ID (a
forgery), ``tamper`` flips one payload octet after signing.
"""

from __future__ import annotations

import base64
import time

from mcinterconnect.crypto.kms import KeySet, Kms
from mcinterconnect.crypto.uid import ntp_seconds
from mcinterconnect.deploy.config import SystemConfig
from mcinterconnect.protect.ear import (
    RequestPayload,
    RequestType,
    Role,
    SignedEar,
    encode_header_value,
    new_payload,
    sign_ear,
)
from mcinterconnect.services.kms import read_kms

_KMS_CACHE: dict[str, Kms] = {}


def kms_of(system: SystemConfig) -> Kms:
    assert system.kms is not None
    key = str(system.kms.secrets)
    if key not in _KMS_CACHE:
        _KMS_CACHE[key] = read_kms(system.kms)
    return _KMS_CACHE[key]


def key_set(system: SystemConfig, user_uri: str, at: float) -> KeySet:
    kms = kms_of(system)
    number = kms.certificate.key_period.number_at(ntp_seconds(at))
    [provisioned] = kms.provision(user_uri, [number])
    return provisioned


def signed_ear(
    system: SystemConfig,
    *,
    target_id: str,
    source_id: str | None = None,
    request_type: RequestType | int | None = None,
    expiry: int | None = None,
    now: float | None = None,
    signer_uri: str | None = None,
    source_role: int = Role.MCX_SERVER,
    target_role: int = Role.MCX_SERVER,
) -> SignedEar:
    at = time.time() if now is None else now
    source = source_id or system.mcx_server.psi
    request = None
    if request_type is not None or expiry is not None:
        request = RequestPayload(RequestType(request_type or RequestType.GROUP), expiry=expiry)
    payload = new_payload(
        source_role=source_role,
        source_id=source,
        target_role=target_role,
        target_id=target_id,
        request=request,
        now=at,
    )
    keys = key_set(system, signer_uri or source, at)
    certificate = kms_of(system).certificate
    return sign_ear(
        payload,
        ssk=keys.ssk,
        pvt=keys.pvt,
        kpak=certificate.pub_auth_key,
        kms_uri=certificate.kms_uri,
        key_period=certificate.key_period,
    )


def sign_as(system: SystemConfig, *, tamper: bool = False, **arguments: object) -> str:
    """The MC-EAR header value of an EAR signed as ``system``'s MCX server (see ``signed_ear``)."""
    ear = signed_ear(system, **arguments)  # type: ignore[arg-type]
    octets = bytearray(ear.to_bytes())
    if tamper:
        octets[30] ^= 0x01  # inside the Source ID: still decodes, no longer verifies
    return encode_header_value(bytes(octets))


def ear_id_of(header_value: str) -> bytes:
    """The EAR ID octets of a header value (bytes 6..21 of the payload)."""
    return base64.b64decode(header_value)[6:22]
