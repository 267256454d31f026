"""X.509 material for the SIP-3 and HTTP-3 borders: a CA per system and leaf certificates.

TS 33.180 6.3.2 requires hop-by-hop protection of SIP between MC systems; the project meets it with
mutual TLS between IS proxies (WA-IC-13) and between HTTP proxies (WA-IC-14), with the 33.210 6.2
TLS profile (WA-IC-15, WA-IC-16).  Certificates follow WA-IC-17: X.509v3, each partner agreement
names its trust anchors, and the peer is identified by the subjectAltName dNSName of its IS proxy.

Everything is ECDSA P-256 with SHA-256 (secp256r1 / ecdsa_secp256r1_sha256 are the RFC 8446 9.1
mandatory group and signature scheme).  This module makes deployment material for tests, demos
and labs; operators of real systems bring certificates from their own PKI.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mcinterconnect.files import write_with_mode

#: Tolerated clock skew between systems: certificates start this much before "now".
CLOCK_SKEW = datetime.timedelta(minutes=5)

PRIVATE_KEY_MODE = 0o600
CERTIFICATE_MODE = 0o644


class PkiError(ValueError):
    """A problem with X.509 material, as one line naming the file (when there is one) and the reason."""


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _validity(days: int) -> tuple[datetime.datetime, datetime.datetime]:
    if days < 1:
        raise PkiError(f"validity must be at least one day, not {days}")
    now = datetime.datetime.now(datetime.UTC)
    return now - CLOCK_SKEW, now + datetime.timedelta(days=days)


def _name(common_name: str) -> x509.Name:
    if not common_name:
        raise PkiError("a certificate needs a non-empty common name")
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def create_ca(common_name: str, *, days: int) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA that issues the leaf certificates of one MC system (a partner's trust anchor)."""
    key = _new_key()
    name = _name(common_name)
    not_before, not_after = _validity(days)
    public_key = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        # path_length=0: this CA signs leaves only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False)
    )
    return builder.sign(key, hashes.SHA256()), key


def issue_certificate(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    dns_names: list[str],
    *,
    common_name: str,
    days: int,
    server: bool = True,
    client: bool = True,
    uris: list[str] | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A leaf certificate for a border element, named by its dNSNames (WA-IC-17).

    An IS proxy both accepts and opens SIP-3 connections, so it usually needs serverAuth and
    clientAuth (mutual TLS, WA-IC-13).  ``uris`` adds subjectAltName URIs: an MC client or server
    authenticates to its KMS with its MC service ID there (``sip:alice@a.mc.example``); such a
    certificate may have no dNSName.
    """
    if not dns_names and not uris:
        raise PkiError("a leaf certificate needs at least one dNSName (WA-IC-17)")
    if not (server or client):
        raise PkiError("a leaf certificate needs serverAuth, clientAuth or both")
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    key = _new_key()
    public_key = key.public_key()
    not_before, not_after = _validity(days)
    not_after = min(not_after, ca_cert.not_valid_after_utc)  # a leaf never outlives its issuer
    try:
        authority_key_id = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        )
    except x509.ExtensionNotFound:
        authority_key_id = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    try:
        subject_alt_name = x509.SubjectAlternativeName(
            [x509.DNSName(name) for name in dns_names]
            + [x509.UniformResourceIdentifier(uri) for uri in uris or []]
        )
    except ValueError as exc:
        raise PkiError(f"bad subjectAltName: {exc}") from None
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(subject_alt_name, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(authority_key_id, critical=False)
    )
    return builder.sign(ca_key, hashes.SHA256()), key


def write_pem(path: Path, cert: x509.Certificate) -> None:
    """Write one certificate as PEM (mode 0644: certificates are public)."""
    write_with_mode(path, cert.public_bytes(serialization.Encoding.PEM), CERTIFICATE_MODE)


def write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Write a private key as unencrypted PKCS#8 PEM, readable by its owner only (mode 0600)."""
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_with_mode(path, data, PRIVATE_KEY_MODE)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise PkiError(f"{path}: file not found") from None
    except OSError as exc:
        raise PkiError(f"{path}: cannot read: {exc.strerror}") from None


def load_certificate(path: Path) -> x509.Certificate:
    """Load the first PEM certificate of ``path``; any problem is a one-line ``PkiError``."""
    data = _read(path)
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise PkiError(f"{path}: no PEM certificate (no '-----BEGIN CERTIFICATE-----' line)")
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise PkiError(f"{path}: malformed PEM certificate") from None


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """Load an unencrypted PEM EC private key; the message never shows key bytes."""
    data = _read(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise PkiError(f"{path}: not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{path}: not an EC private key")
    return key
