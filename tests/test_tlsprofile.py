"""The TLS profile (33.210 6.2 as WA-IC-15, WA-IC-16 suites, WA-IC-17 certificates), in memory."""

from __future__ import annotations

import ssl
import warnings
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from mcinterconnect.tlsprofile import (
    TLS12_CIPHERS,
    TlsConfigError,
    client_context,
    dns_names,
    issued_by,
    load_certificates,
    peer_certificate,
    server_context,
)
from pki_helpers import Issued, make_ca, make_leaf

SERVER_NAME = "is-proxy.b.mc.example"
CLIENT_NAME = "is-proxy.a.mc.example"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Issued]:
    directory = tmp_path_factory.mktemp("pki")
    ca_a = make_ca("CA A", directory)
    ca_b = make_ca("CA B", directory)
    rogue = make_ca("Rogue CA", directory)
    return {
        "ca_a": ca_a,
        "ca_b": ca_b,
        "rogue": rogue,
        "client": make_leaf(ca_a, CLIENT_NAME),
        "server": make_leaf(ca_b, SERVER_NAME),
        "rogue_client": make_leaf(rogue, CLIENT_NAME),
    }


def _handshake(
    server: ssl.SSLContext, client: ssl.SSLContext, server_hostname: str = SERVER_NAME
) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """Run a handshake between two SSLObjects over memory BIOs; SSLError on failure."""
    server_in, server_out, client_in, client_out = (ssl.MemoryBIO() for _ in range(4))
    server_side = server.wrap_bio(server_in, server_out, server_side=True)
    client_side = client.wrap_bio(client_in, client_out, server_hostname=server_hostname)
    client_done = server_done = False
    for _ in range(20):
        if not client_done:
            try:
                client_side.do_handshake()
                client_done = True
            except ssl.SSLWantReadError:
                pass
        server_in.write(client_out.read())
        if not server_done:
            try:
                server_side.do_handshake()
                server_done = True
            except ssl.SSLWantReadError:
                pass
        client_in.write(server_out.read())
        if client_done and server_done:
            return server_side, client_side
    raise AssertionError("handshake did not finish")


def _server(
    pki: dict[str, Issued], *, anchors: list[Path] | None = None, require: bool = True
) -> ssl.SSLContext:
    return server_context(
        pki["server"].cert_path,
        pki["server"].key_path,
        trust_anchors=[pki["ca_a"].cert_path] if anchors is None else anchors,
        require_client_cert=require,
    )


def _client(pki: dict[str, Issued], leaf: str | None = "client") -> ssl.SSLContext:
    issued = pki[leaf] if leaf else None
    return client_context(
        trust_anchors=[pki["ca_b"].cert_path],
        cert_file=issued.cert_path if issued else None,
        key_file=issued.key_path if issued else None,
    )


def _tls12_only(context: ssl.SSLContext) -> ssl.SSLContext:
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


# ---------------------------------------------------------------- context settings


def test_server_context_applies_the_profile(pki: dict[str, Issued]) -> None:
    context = _server(pki)
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.maximum_version is ssl.TLSVersion.TLSv1_3
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.options & ssl.OP_NO_RENEGOTIATION
    assert context.verify_flags & ssl.VERIFY_X509_STRICT
    tls12 = [cipher["name"] for cipher in context.get_ciphers() if cipher["protocol"] == "TLSv1.2"]
    assert tls12 and set(tls12) == set(TLS12_CIPHERS.split(":"))


def test_server_verify_mode_follows_anchors_and_requirement(pki: dict[str, Issued]) -> None:
    assert _server(pki, anchors=[], require=False).verify_mode is ssl.CERT_NONE
    assert _server(pki, require=False).verify_mode is ssl.CERT_OPTIONAL
    with pytest.raises(TlsConfigError, match="no trust anchor"):
        _server(pki, anchors=[], require=True)


def test_client_context_checks_hostname_against_the_anchors_only(pki: dict[str, Issued]) -> None:
    context = _client(pki)
    assert context.check_hostname
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_RENEGOTIATION
    assert context.cert_store_stats()["x509_ca"] == 1  # no system store


def test_cipher_list_is_configurable(pki: dict[str, Issued]) -> None:
    context = client_context(trust_anchors=[pki["ca_b"].cert_path], ciphers="ECDHE-ECDSA-AES256-GCM-SHA384")
    assert [c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"] == [
        "ECDHE-ECDSA-AES256-GCM-SHA384"
    ]
    with pytest.raises(TlsConfigError, match=r"no usable TLS 1\.2 cipher suite"):
        client_context(trust_anchors=[pki["ca_b"].cert_path], ciphers="NO-SUCH-SUITE")


# ---------------------------------------------------------------- handshakes


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_mutual_handshake_and_peer_certificates(pki: dict[str, Issued], version: ssl.TLSVersion) -> None:
    client = _client(pki)
    client.maximum_version = version
    server_side, client_side = _handshake(_server(pki), client)
    assert server_side.version() == version.name.replace("_", ".")
    cipher = server_side.cipher()
    assert cipher is not None
    if version is ssl.TLSVersion.TLSv1_2:
        assert cipher[0] in TLS12_CIPHERS.split(":")
    else:
        assert cipher[0].startswith("TLS_")
    seen_by_server = peer_certificate(server_side)
    seen_by_client = peer_certificate(client_side)
    assert seen_by_server is not None and seen_by_client is not None
    assert dns_names(seen_by_server) == [CLIENT_NAME]
    assert dns_names(seen_by_client) == [SERVER_NAME]
    assert issued_by(seen_by_server, pki["ca_a"].cert)
    assert not issued_by(seen_by_server, pki["rogue"].cert)


def test_no_client_certificate_gives_no_peer_certificate(pki: dict[str, Issued]) -> None:
    server_side, _ = _handshake(_server(pki, anchors=[], require=False), _client(pki, leaf=None))
    assert peer_certificate(server_side) is None
    assert peer_certificate(None) is None


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_client_without_certificate_is_refused(pki: dict[str, Issued], version: ssl.TLSVersion) -> None:
    client = _client(pki, leaf=None)
    client.maximum_version = version
    with pytest.raises(ssl.SSLError):
        _handshake(_server(pki), client)


def test_client_of_another_ca_is_refused(pki: dict[str, Issued]) -> None:
    with pytest.raises(ssl.SSLError):
        _handshake(_server(pki), _client(pki, leaf="rogue_client"))


def test_server_with_wrong_name_is_refused(pki: dict[str, Issued]) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(_server(pki), _client(pki), server_hostname="other.b.mc.example")


def test_tls12_suite_outside_the_profile_is_refused(pki: dict[str, Issued]) -> None:
    legacy = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    legacy.check_hostname = False
    legacy.verify_mode = ssl.CERT_NONE
    legacy.maximum_version = ssl.TLSVersion.TLSv1_2
    legacy.set_ciphers("ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-SHA:AES128-GCM-SHA256")
    with pytest.raises(ssl.SSLError):
        _handshake(_server(pki, anchors=[], require=False), legacy)


def test_tls11_is_refused(pki: dict[str, Issued]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        legacy = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        legacy.check_hostname = False
        legacy.verify_mode = ssl.CERT_NONE
        legacy.minimum_version = ssl.TLSVersion.TLSv1_1
        legacy.maximum_version = ssl.TLSVersion.TLSv1_1
        legacy.set_ciphers("DEFAULT@SECLEVEL=0")
        with pytest.raises(ssl.SSLError) as excinfo:
            _handshake(_server(pki, anchors=[], require=False), legacy)
    # Refused by the server; or, if the local OpenSSL will not even offer TLS 1.1, by the client.
    assert excinfo.value.reason in ("UNSUPPORTED_PROTOCOL", "NO_PROTOCOLS_AVAILABLE")


# ---------------------------------------------------------------- certificate helpers


def test_issued_by_and_dns_names(pki: dict[str, Issued]) -> None:
    leaf, ca_a = pki["client"].cert, pki["ca_a"].cert
    assert issued_by(leaf, ca_a)
    assert not issued_by(leaf, pki["ca_b"].cert)
    assert not issued_by(leaf, pki["server"].cert)
    assert issued_by(ca_a, ca_a)  # self-signed
    assert dns_names(ca_a) == []
    assert load_certificates(pki["ca_a"].cert_path) == [ca_a]


# ---------------------------------------------------------------- loading errors


def _one_line_error(excinfo: pytest.ExceptionInfo[TlsConfigError], path: Path, reason: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(path) in message
    assert reason in message
    assert "PRIVATE KEY" not in message


def test_missing_certificate_file(pki: dict[str, Issued], tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(TlsConfigError) as excinfo:
        server_context(missing, pki["server"].key_path, trust_anchors=None, require_client_cert=False)
    _one_line_error(excinfo, missing, "cannot read")
    assert isinstance(excinfo.value, ValueError)


def test_certificate_file_without_pem(pki: dict[str, Issued], tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(TlsConfigError) as excinfo:
        server_context(bad, pki["server"].key_path, trust_anchors=None, require_client_cert=False)
    _one_line_error(excinfo, bad, "no valid PEM certificate")


def test_key_not_matching_the_certificate(pki: dict[str, Issued]) -> None:
    with pytest.raises(TlsConfigError) as excinfo:
        server_context(
            pki["server"].cert_path, pki["client"].key_path, trust_anchors=None, require_client_cert=False
        )
    _one_line_error(excinfo, pki["client"].key_path, "does not match")


def test_key_file_without_a_key(pki: dict[str, Issued]) -> None:
    with pytest.raises(TlsConfigError) as excinfo:
        server_context(
            pki["server"].cert_path, pki["server"].cert_path, trust_anchors=None, require_client_cert=False
        )
    _one_line_error(excinfo, pki["server"].cert_path, "no valid PEM private key")


def test_encrypted_key_is_refused_without_prompting(pki: dict[str, Issued], tmp_path: Path) -> None:
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        pki["server"].key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(TlsConfigError) as excinfo:
        server_context(pki["server"].cert_path, encrypted, trust_anchors=None, require_client_cert=False)
    _one_line_error(excinfo, encrypted, "encrypted")


def test_bad_trust_anchors(pki: dict[str, Issued], tmp_path: Path) -> None:
    missing = tmp_path / "anchor-missing.pem"
    with pytest.raises(TlsConfigError) as excinfo:
        client_context(trust_anchors=[missing])
    _one_line_error(excinfo, missing, "cannot read")
    with pytest.raises(TlsConfigError) as excinfo:
        _server(pki, anchors=[pki["ca_a"].key_path])
    _one_line_error(excinfo, pki["ca_a"].key_path, "no valid PEM certificate")
    with pytest.raises(TlsConfigError, match="at least one trust anchor"):
        client_context(trust_anchors=[])


def test_client_certificate_needs_both_files(pki: dict[str, Issued]) -> None:
    with pytest.raises(TlsConfigError) as excinfo:
        client_context(trust_anchors=[pki["ca_b"].cert_path], cert_file=pki["client"].cert_path)
    _one_line_error(excinfo, pki["client"].cert_path, "both a certificate file and a key file")
