"""X.509 material for mutual TLS on SIP-3 (TS 33.180 6.3.2, WA-IC-13..17)."""

from __future__ import annotations

import datetime
import ssl
import stat
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mcinterconnect.deploy.pki import (
    PkiError,
    create_ca,
    issue_certificate,
    load_certificate,
    load_private_key,
    write_pem,
    write_private_key,
)

T = TypeVar("T", bound=x509.ExtensionType)


@pytest.fixture(scope="module")
def ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    return create_ca("A test CA", days=30)


def _extension(cert: x509.Certificate, kind: type[T]) -> x509.Extension[T]:
    return cert.extensions.get_extension_for_class(kind)


def test_ca_is_self_signed_p256_ca(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> None:
    cert, key = ca
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "A test CA"
    assert cert.issuer == cert.subject
    assert cert.version is x509.Version.v3
    assert isinstance(key.curve, ec.SECP256R1)
    assert cert.signature_hash_algorithm is not None
    assert cert.signature_hash_algorithm.name == "sha256"
    constraints = _extension(cert, x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = _extension(cert, x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    cert.verify_directly_issued_by(cert)
    ski = _extension(cert, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(key.public_key())


def test_ca_validity(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> None:
    cert, _ = ca
    now = datetime.datetime.now(datetime.UTC)
    assert cert.not_valid_before_utc <= now < cert.not_valid_after_utc
    lifetime = cert.not_valid_after_utc - now
    assert datetime.timedelta(days=29) < lifetime <= datetime.timedelta(days=30)


def test_leaf_properties(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> None:
    ca_cert, ca_key = ca
    cert, key = issue_certificate(
        ca_cert, ca_key, ["isproxy.a.mc.example", "alt.a.mc.example"], common_name="isproxy A", days=10
    )
    cert.verify_directly_issued_by(ca_cert)
    assert cert.issuer == ca_cert.subject
    assert cert.public_key() == key.public_key()
    assert isinstance(key.curve, ec.SECP256R1)
    assert cert.signature_hash_algorithm is not None
    assert cert.signature_hash_algorithm.name == "sha256"
    san = _extension(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["isproxy.a.mc.example", "alt.a.mc.example"]
    constraints = _extension(cert, x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    usage = _extension(cert, x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    assert list(_extension(cert, x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ]
    aki = _extension(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == _extension(ca_cert, x509.SubjectKeyIdentifier).value.digest
    now = datetime.datetime.now(datetime.UTC)
    assert cert.not_valid_before_utc <= now < cert.not_valid_after_utc <= now + datetime.timedelta(days=10)


@pytest.mark.parametrize(
    ("server", "client", "expected"),
    [
        (True, False, [ExtendedKeyUsageOID.SERVER_AUTH]),
        (False, True, [ExtendedKeyUsageOID.CLIENT_AUTH]),
    ],
)
def test_leaf_extended_key_usage_as_requested(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    server: bool,
    client: bool,
    expected: list[x509.ObjectIdentifier],
) -> None:
    cert, _ = issue_certificate(*ca, ["x.mc.example"], common_name="x", days=1, server=server, client=client)
    assert list(_extension(cert, x509.ExtendedKeyUsage).value) == expected


def test_leaf_never_outlives_its_ca(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> None:
    cert, _ = issue_certificate(*ca, ["x.mc.example"], common_name="x", days=3650)
    assert cert.not_valid_after_utc == ca[0].not_valid_after_utc


def test_leaf_from_other_ca_does_not_verify(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> None:
    other_cert, other_key = create_ca("B test CA", days=30)
    cert, _ = issue_certificate(other_cert, other_key, ["isproxy.b.mc.example"], common_name="B", days=1)
    with pytest.raises((ValueError, TypeError)):
        cert.verify_directly_issued_by(ca[0])


def test_bad_requests(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> None:
    with pytest.raises(PkiError, match="at least one dNSName"):
        issue_certificate(*ca, [], common_name="x", days=1)
    with pytest.raises(PkiError, match="serverAuth, clientAuth or both"):
        issue_certificate(*ca, ["x.mc.example"], common_name="x", days=1, server=False, client=False)
    with pytest.raises(PkiError, match="at least one day"):
        create_ca("x", days=0)
    with pytest.raises(PkiError, match="non-empty common name"):
        create_ca("", days=1)


def test_write_and_load_round_trip(
    tmp_path: Path, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
) -> None:
    cert, key = ca
    write_pem(tmp_path / "ca.crt", cert)
    write_private_key(tmp_path / "ca.key", key)
    assert load_certificate(tmp_path / "ca.crt") == cert
    assert load_private_key(tmp_path / "ca.key").private_numbers() == key.private_numbers()
    text = (tmp_path / "ca.key").read_text()
    assert text.startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted


def test_private_key_mode_is_0600(
    tmp_path: Path, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
) -> None:
    path = tmp_path / "k.key"
    write_private_key(path, ca[1])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o666)  # an existing file with a wide mode is narrowed on rewrite
    write_private_key(path, ca[1])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_load_certificate_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.crt"
    with pytest.raises(PkiError) as info:
        load_certificate(missing)
    assert str(info.value) == f"{missing}: file not found"

    garbage = tmp_path / "garbage.crt"
    garbage.write_bytes(b"\x00\x01 not a certificate\n")
    with pytest.raises(PkiError) as info:
        load_certificate(garbage)
    assert str(info.value) == f"{garbage}: no PEM certificate (no '-----BEGIN CERTIFICATE-----' line)"

    broken = tmp_path / "broken.crt"
    broken.write_text("-----BEGIN CERTIFICATE-----\nAAAA!!!!\n-----END CERTIFICATE-----\n")
    with pytest.raises(PkiError) as info:
        load_certificate(broken)
    assert str(info.value) == f"{broken}: malformed PEM certificate"
    assert "\n" not in str(info.value)


def test_load_private_key_errors(tmp_path: Path) -> None:
    path = tmp_path / "x.key"
    path.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(PkiError) as info:
        load_private_key(path)
    assert str(info.value) == f"{path}: not an unencrypted PEM private key"


def _handshake(client: ssl.SSLContext, server: ssl.SSLContext, server_name: str) -> ssl.SSLObject:
    """Drive a TLS handshake in memory (no sockets) and return the server side."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client_side = client.wrap_bio(c_in, c_out, server_hostname=server_name)
    server_side = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, side, outgoing, peer_in in (
            ("client", client_side, c_out, s_in),
            ("server", server_side, s_out, c_in),
        ):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
            peer_in.write(outgoing.read())
        if all(done.values()):
            return server_side
    raise AssertionError("handshake did not finish")


def test_mutual_tls_with_strict_verification(tmp_path: Path) -> None:
    """The material works for SIP-3 mutual TLS with OpenSSL's strict X.509 checks (WA-IC-13, WA-IC-17)."""
    files: dict[str, Path] = {}
    for system in ("a", "b"):
        ca_cert, ca_key = create_ca(f"{system} CA", days=30)
        cert, key = issue_certificate(
            ca_cert, ca_key, [f"isproxy.{system}.mc.example"], common_name=system, days=30
        )
        for name, item in ((f"{system}-ca.crt", ca_cert), (f"{system}.crt", cert)):
            files[name] = tmp_path / name
            write_pem(files[name], item)
        files[f"{system}.key"] = tmp_path / f"{system}.key"
        write_private_key(files[f"{system}.key"], key)

    def context(purpose: int, own: str, anchor: str) -> ssl.SSLContext:
        side = ssl.PROTOCOL_TLS_SERVER if purpose == 0 else ssl.PROTOCOL_TLS_CLIENT
        ctx = ssl.SSLContext(side)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_cert_chain(files[f"{own}.crt"], files[f"{own}.key"])
        ctx.load_verify_locations(files[f"{anchor}-ca.crt"])
        return ctx

    server_side = _handshake(context(1, "a", "b"), context(0, "b", "a"), "isproxy.b.mc.example")
    peer = server_side.getpeercert(binary_form=True)
    assert peer is not None
    assert x509.load_der_x509_certificate(peer).subject.rfc4514_string() == "CN=a"
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(context(1, "a", "b"), context(0, "b", "a"), "isproxy.c.mc.example")
