"""A user of one system as ``mcic init`` writes it: her client certificate and what it opens.

``users/<name>.crt`` and ``.key`` in the system's folder carry the user's MC service ID as
subjectAltName URI; with them a client authenticates to its own HTTP proxy's client side
(WA-IC-06, mutual TLS) and to its own KMS (TS 33.180 Annex D), and nothing else: a partner's
proxies refuse it (TS 33.180 11.1.1).  Used by the demo and by ``mcic group``.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from mcinterconnect.deploy.config import SystemConfig
from mcinterconnect.deploy.pki import PkiError, load_certificate
from mcinterconnect.deploy.runner import https_url
from mcinterconnect.identity import certificate_ids
from mcinterconnect.services.mcx_ear import KmsAccess, SigningKeys, fetch_signing_keys
from mcinterconnect.tlsprofile import client_context


class UserError(ValueError):
    """The user's files are missing or unusable, as one line."""


def user_files(home: SystemConfig, user: str) -> tuple[Path, Path]:
    """``users/<user>.crt`` and ``.key`` of ``home`` (``UserError`` when either is missing)."""
    folder = home.source.parent / "users"
    cert, key = folder / f"{user}.crt", folder / f"{user}.key"
    for path in (cert, key):
        if not path.is_file():
            raise UserError(
                f"{path}: file not found (users of system {home.system.name}: mcic init writes them)"
            )
    return cert, key


def user_uri(cert_file: Path) -> str:
    """The MC service ID a user certificate names (its one ``identity.certificate_ids`` entry)."""
    try:
        certificate = load_certificate(cert_file)
    except PkiError as error:
        raise UserError(str(error)) from None
    identities = certificate_ids(certificate)
    if len(identities) != 1:
        raise UserError(f"{cert_file}: a user certificate names one MC service ID, not {len(identities)}")
    return identities[0]


def user_context(home: SystemConfig, user: str, *, also_trust: SystemConfig | None = None) -> ssl.SSLContext:
    """The TLS client context of ``user`` of ``home``: own CA as trust anchor, own certificate.

    ``also_trust``: accept that system's servers too, so that a refusal can only come from them
    (the demo's direct attempts at a partner)."""
    cert, key = user_files(home, user)
    anchors = [home.source.parent / "pki" / "ca.crt"]
    if also_trust is not None:
        anchors.append(also_trust.source.parent / "pki" / "ca.crt")
    return client_context(trust_anchors=anchors, cert_file=cert, key_file=key)


async def user_keys(home: SystemConfig, user: str) -> SigningKeys:
    """The user's key sets (previous, current, next) from her own KMS over mutual TLS, validated."""
    if home.kms is None:
        raise UserError(f"{home.source}: kms: missing table: the user's keys come from this system's KMS")
    cert, _ = user_files(home, user)
    access = KmsAccess(https_url(home.kms.listen), user_context(home, user), home.kms.uri)
    return await fetch_signing_keys(access, user_uri(cert))


def proxy_url(home: SystemConfig) -> tuple[str, str]:
    """``https://host:port`` of the client side of ``home``'s HTTP proxy, and its TLS name."""
    if home.http_proxy is None:
        raise UserError(f"{home.source}: http_proxy: missing table: clients read groups through it")
    return https_url(home.http_proxy.client_listen), home.http_proxy.public_host
