"""The project's TLS profile for SIP-3 and HTTP-3 (TS 33.180 6.1.3, 6.3.2; spec WA-IC-13..17).

33.180 points to the TLS profile of TS 33.310 Annex E, which could not be read; the project applies
the general 3GPP profile of TS 33.210 clause 6.2 instead (WA-IC-15):

* TLS 1.2 (RFC 5246) and TLS 1.3 (RFC 8446) only; SSL, TLS 1.0 and TLS 1.1 are refused;
* TLS 1.2 suites: ECDHE key exchange with AES-GCM only (WA-IC-16, ``TLS12_CIPHERS``);
  TLS 1.3 suites are OpenSSL's defaults, the RFC 8446 §9.1 set (TLS_AES_128_GCM_SHA256,
  TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256); key-exchange groups are OpenSSL's
  default list (X25519, secp256r1 and secp384r1 among others such as x448, secp521r1 and the
  ffdhe groups): Python 3.11's ``ssl`` cannot restrict them (no ``set_groups``), so the profile
  does not claim a narrower list;
* no TLS compression (CRIME), no renegotiation;
* certificates are X.509v3 chained to the trust anchors named by a partner agreement (WA-IC-17),
  verified strictly (RFC 5280 checks of OpenSSL's ``X509_V_FLAG_X509_STRICT``); mutual
  authentication on SIP-3 and HTTP-3 (WA-IC-13, WA-IC-14).

The helpers ``peer_certificate``, ``dns_names`` and ``issued_by`` let the border compare the
authenticated peer with the agreement (expected subjectAltName dNSName, expected trust anchor),
which is stronger than the host-name check alone.  Loading problems raise ``TlsConfigError``
with a one-line message naming the file and the reason; key material is never put in a message.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

#: TLS 1.2 cipher suites allowed by the profile (WA-IC-16), OpenSSL names, in preference order.
TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"
)

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
MAXIMUM_VERSION = ssl.TLSVersion.TLSv1_3


class TlsConfigError(ValueError):
    """A certificate, key or trust anchor that cannot be used (file named, secret never shown)."""


class _EncryptedKeyError(Exception):
    """Raised from the password callback: the product never prompts on a terminal."""


def server_context(
    cert_file: Path,
    key_file: Path,
    *,
    trust_anchors: list[Path] | None,
    require_client_cert: bool,
    ciphers: str = TLS12_CIPHERS,
) -> ssl.SSLContext:
    """A server-side context of the profile.

    With ``trust_anchors`` the client certificate is verified against them: it is mandatory
    (``CERT_REQUIRED``) when ``require_client_cert`` is true (SIP-3, HTTP-3), and verified only if
    presented (``CERT_OPTIONAL``) otherwise.  Requiring a client certificate without trust anchors
    is a configuration error.
    """
    if require_client_cert and not trust_anchors:
        raise TlsConfigError(
            f"{cert_file}: a client certificate is required but no trust anchor is configured"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _apply_profile(context, ciphers)
    # The server's order of the TLS 1.2 suites wins (33.210 6.2: the strongest common suite).
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    _load_identity(context, cert_file, key_file)
    if trust_anchors:
        _load_anchors(context, trust_anchors)
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


def client_context(
    *,
    trust_anchors: list[Path],
    cert_file: Path | None = None,
    key_file: Path | None = None,
    ciphers: str = TLS12_CIPHERS,
) -> ssl.SSLContext:
    """A client-side context of the profile: the server is always verified against
    ``trust_anchors`` only (never the system store) and its name checked (``check_hostname``);
    ``cert_file``/``key_file`` give the client certificate for mutual TLS."""
    if not trust_anchors:
        raise TlsConfigError("client context: at least one trust anchor is required")
    if (cert_file is None) != (key_file is None):
        named = cert_file if cert_file is not None else key_file
        raise TlsConfigError(f"{named}: a client certificate needs both a certificate file and a key file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _apply_profile(context, ciphers)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    _load_anchors(context, trust_anchors)
    if cert_file is not None and key_file is not None:
        _load_identity(context, cert_file, key_file)
    return context


def _apply_profile(context: ssl.SSLContext, ciphers: str) -> None:
    context.minimum_version = MINIMUM_VERSION
    context.maximum_version = MAXIMUM_VERSION
    try:
        context.set_ciphers(ciphers)
    except ssl.SSLError:
        raise TlsConfigError(f"no usable TLS 1.2 cipher suite in {ciphers!r}") from None
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.verify_flags |= ssl.VERIFY_X509_STRICT


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate of a PEM file (a trust anchor file may hold several)."""
    data = _read(path)
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise TlsConfigError(f"{path}: no valid PEM certificate") from None
    return certificates


def _load_identity(context: ssl.SSLContext, cert_file: Path, key_file: Path) -> None:
    chain = load_certificates(cert_file)
    key_data = _read(key_file)
    try:
        key = load_pem_private_key(key_data, password=None)
    except TypeError:
        raise TlsConfigError(f"{key_file}: the private key is encrypted (not supported)") from None
    except ValueError:
        raise TlsConfigError(f"{key_file}: no valid PEM private key") from None
    except Exception as exc:  # unsupported algorithms and the like
        raise TlsConfigError(f"{key_file}: unusable private key ({type(exc).__name__})") from None
    if not isinstance(
        key,
        ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey,
    ):
        raise TlsConfigError(f"{key_file}: private key type {type(key).__name__} cannot be used for TLS")
    if _public_bytes(key.public_key()) != _public_bytes(chain[0].public_key()):
        raise TlsConfigError(f"{key_file}: the private key does not match the certificate in {cert_file}")

    def no_prompt() -> bytes:
        raise _EncryptedKeyError

    try:
        context.load_cert_chain(str(cert_file), str(key_file), password=no_prompt)
    except _EncryptedKeyError:
        raise TlsConfigError(f"{key_file}: the private key is encrypted (not supported)") from None
    except (OSError, ValueError) as exc:
        raise TlsConfigError(f"{cert_file}: rejected by the TLS library ({_one_line(exc)})") from None


def _load_anchors(context: ssl.SSLContext, trust_anchors: list[Path]) -> None:
    for anchor in trust_anchors:
        load_certificates(anchor)  # precise error for a missing or non-PEM file
        try:
            context.load_verify_locations(cafile=str(anchor))
        except (OSError, ValueError) as exc:
            raise TlsConfigError(
                f"{anchor}: trust anchor rejected by the TLS library ({_one_line(exc)})"
            ) from None


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None


def _public_bytes(key: object) -> bytes:
    if isinstance(
        key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
    ):
        return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return b""


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def peer_certificate(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> x509.Certificate | None:
    """The certificate the peer authenticated with, or None (no TLS, or no certificate sent)."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    return x509.load_der_x509_certificate(der)


def dns_names(cert: x509.Certificate) -> list[str]:
    """The subjectAltName dNSName values of ``cert`` (WA-IC-17 names the peer by them)."""
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return extension.value.get_values_for_type(x509.DNSName)


def issued_by(cert: x509.Certificate, anchor_cert: x509.Certificate) -> bool:
    """Whether ``anchor_cert`` directly issued ``cert`` (names match and signature verifies)."""
    try:
        cert.verify_directly_issued_by(anchor_cert)
    except Exception:  # InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm: all mean "no"
        return False
    return True
