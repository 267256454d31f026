"""Deployment configuration: the files written by ``init`` and every kind of configuration error."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest
from cryptography import x509

from mcinterconnect.border.sealing import Sealer, load_sealing_keys
from mcinterconnect.deploy.config import ConfigError, load_deployment, load_system
from mcinterconnect.deploy.init import PORT_KEYS, InitError, init_deployment
from mcinterconnect.deploy.pki import load_certificate
from mcinterconnect.sip.transport import Address

#: Fixed ports: nothing is bound, the files are only written and read.
PORTS = {key: 41000 + number for number, key in enumerate(PORT_KEYS)}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("generated") / "deployment"
    init_deployment(directory, ports=PORTS)
    return directory


@pytest.fixture
def deployment(generated: Path, tmp_path: Path) -> Path:
    """A private copy of the generated deployment, for one test to edit."""
    copy = tmp_path / "deployment"
    shutil.copytree(generated, copy)
    return copy


def _edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))
    return path


def _error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_system(path)
    text = str(info.value)
    assert "\n" not in text
    return text


# --- the generated deployment ------------------------------------------------------------------


def test_generated_deployment_round_trip(generated: Path) -> None:
    config = load_deployment(generated)
    assert config.name == "loopback"
    assert config.source == generated / "deployment.toml"
    assert [system.system.name for system in config.systems] == ["A", "B"]
    a, b = config.systems
    assert config.system("b.mc.example") is b
    assert a.source == generated / "a" / "system.toml"
    assert a.system.domains == ["a.mc.example"]
    assert a.domain == "a.mc.example"
    assert a.system.internal_hosts == []
    assert a.system.audit_log == generated / "a" / "audit.jsonl"
    assert a.sip_core.client_listen == Address("tcp", "127.0.10.1", PORTS["a.sip_core.client_listen"])
    assert a.sip_core.server_listen == Address("tcp", "127.0.10.1", PORTS["a.sip_core.server_listen"])
    assert a.mcx_server.listen == Address("tcp", "127.0.10.1", PORTS["a.mcx_server.listen"])
    assert a.mcx_server.psi == "sip:mcptt-server@a.mc.example"
    proxy = a.is_proxy
    assert proxy.internal_listen == Address("tcp", "127.0.10.1", PORTS["a.is_proxy.internal_listen"])
    assert proxy.sip3_listen == Address("tls", "127.0.0.1", PORTS["a.is_proxy.sip3_listen"])
    assert proxy.public_host == "isproxy.a.mc.example"
    assert proxy.uri == "sip:isproxy@a.mc.example"
    assert proxy.certificate == (generated / "a" / "pki" / "isproxy.crt").resolve()
    assert proxy.private_key == (generated / "a" / "pki" / "isproxy.key").resolve()
    assert proxy.sealing_keys == (generated / "a" / "keys" / "sealing.keys").resolve()
    assert proxy.routes == {"sip:mcptt-server@a.mc.example": a.mcx_server.listen}
    assert proxy.warning_code == 179
    [partner] = a.partner
    assert a.agreement("B") is partner
    assert partner.domains == ["b.mc.example"]
    assert partner.is_proxy_host == "isproxy.b.mc.example"
    assert partner.is_proxy_address == b.is_proxy.sip3_listen
    assert b.partner[0].is_proxy_address == a.is_proxy.sip3_listen
    assert partner.trust_anchors == [(generated / "a" / "partners" / "b-ca.crt").resolve()]
    assert (partner.authentication.inbound, partner.authentication.outbound) == ("implicit", "implicit")
    assert "REGISTER" not in partner.allowed_methods
    assert "INVITE" in partner.allowed_methods
    assert partner.psis == {"mcptt": "sip:mcptt-server@b.mc.example", "gms": "sip:gms@b.mc.example"}
    # HTTP-3 border and GMS (issue 6): the partner's HTTP proxy by name and address, the allow-list
    assert partner.http_proxy_host == "httpproxy.b.mc.example"
    assert b.http_proxy is not None and a.http_proxy is not None and a.gms is not None
    assert partner.http_proxy_address == b.http_proxy.http3_listen
    assert partner.http_rules == (
        ("GET", "/org.openmobilealliance.groups/groups/"),
        ("GET", "/org.openmobilealliance.groups/gmk/"),
    )
    assert a.http_proxy.http3_listen.host == "127.0.0.1"
    assert a.http_proxy.routes == {"/org.openmobilealliance.groups/": a.gms.listen}
    assert a.gms.psi == "sip:gms@a.mc.example"
    assert a.gms.partner_groups == ["sip:rescue@b.mc.example"]
    assert a.gms.groups == (generated / "a" / "groups").resolve()
    assert {"127.0.10.1", f"127.0.10.1:{a.gms.listen.port}"} <= set(a.internal_markers())
    # internal services of A and B on distinct loopback hosts, for the leak test
    assert {address.host for address in a.internal_addresses()} == {"127.0.10.1"}
    assert {address.host for address in b.internal_addresses()} == {"127.0.20.1"}


def test_generated_files(generated: Path) -> None:
    for letter, other in (("a", "b"), ("b", "a")):
        folder = generated / letter
        for name in ("pki/ca.key", "pki/isproxy.key", "keys/sealing.keys"):
            assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
        ca = load_certificate(folder / "pki" / "ca.crt")
        leaf = load_certificate(folder / "pki" / "isproxy.crt")
        leaf.verify_directly_issued_by(ca)
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == [f"isproxy.{letter}.mc.example"]
        # the trust anchor is the partner's CA certificate
        assert (folder / "partners" / f"{other}-ca.crt").read_bytes() == (
            generated / other / "pki" / "ca.crt"
        ).read_bytes()
        # HTTP proxy (dNSName, server and client), GMS and demo user (URI, client only)
        user = {"a": "alice", "b": "bob"}[letter]
        for name, dns, uri in (
            ("pki/httpproxy", [f"httpproxy.{letter}.mc.example"], []),
            ("pki/gms", [], [f"sip:gms@{letter}.mc.example"]),
            (f"users/{user}", [], [f"sip:{user}@{letter}.mc.example"]),
        ):
            assert stat.S_IMODE((folder / f"{name}.key").stat().st_mode) == 0o600, name
            cert = load_certificate(folder / f"{name}.crt")
            cert.verify_directly_issued_by(ca)
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert names.get_values_for_type(x509.DNSName) == dns
            assert names.get_values_for_type(x509.UniformResourceIdentifier) == uri
        [(key_id, key)] = load_sealing_keys(folder / "keys" / "sealing.keys")
        assert key_id == 1 and len(key) == 64
        Sealer.from_file(folder / "keys" / "sealing.keys")
    assert load_sealing_keys(generated / "a" / "keys" / "sealing.keys") != load_sealing_keys(
        generated / "b" / "keys" / "sealing.keys"
    )
    readme = (generated / "README.txt").read_text().splitlines()
    assert len(readme) == 17
    assert "SIP-3 listeners and both" in readme[-3] and "HTTP-3 listeners on 127.0.0.1" in readme[-2]


def test_generated_toml_is_commented(generated: Path) -> None:
    text = (generated / "a" / "system.toml").read_text()
    for fragment in ("WA-IC-13", "WA-IC-17", "TS 24.379 6.8.2", "TS 33.180 6.3.2", "ARCHITECTURE.md"):
        assert fragment in text


def test_free_ports_are_distinct_and_on_the_right_hosts(tmp_path: Path) -> None:
    config = load_deployment(init_deployment(tmp_path / "d"))
    addresses = [address for system in config.systems for address in system.internal_addresses()]
    addresses += [system.is_proxy.sip3_listen for system in config.systems]
    assert len({address.port for address in addresses}) == 10
    assert all(address.port > 0 for address in addresses)
    assert {system.is_proxy.sip3_listen.host for system in config.systems} == {"127.0.0.1"}


def test_partial_ports_and_other_hosts(tmp_path: Path) -> None:
    path = init_deployment(
        tmp_path / "d",
        host_a="127.0.30.1",
        host_b="127.0.40.1",
        border_host="127.0.50.1",
        ports={"a.is_proxy.sip3_listen": 45061},
    )
    a, b = load_deployment(path).systems
    assert a.is_proxy.sip3_listen == Address("tls", "127.0.50.1", 45061)
    assert b.partner[0].is_proxy_address == Address("tls", "127.0.50.1", 45061)
    assert a.sip_core.client_listen.host == "127.0.30.1"
    assert b.mcx_server.listen.host == "127.0.40.1"


def test_init_refuses_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "something").write_text("x")
    with pytest.raises(InitError) as info:
        init_deployment(tmp_path, ports=PORTS)
    assert str(info.value) == f"{tmp_path}: directory is not empty (choose an empty one or overwrite)"
    assert not (tmp_path / "deployment.toml").exists()
    path = init_deployment(tmp_path, ports=PORTS, overwrite=True)
    assert path == tmp_path / "deployment.toml"
    assert (tmp_path / "something").read_text() == "x"
    first = (tmp_path / "a" / "pki" / "ca.crt").read_bytes()
    init_deployment(tmp_path, ports=PORTS, overwrite=True)
    assert (tmp_path / "a" / "pki" / "ca.crt").read_bytes() != first  # fresh material
    load_deployment(tmp_path)


def test_init_refuses_a_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(InitError, match="exists and is not a directory"):
        init_deployment(target, ports=PORTS)


@pytest.mark.parametrize(
    ("ports", "message"),
    [
        (
            {"c.mcx_server.listen": 5060},
            "ports: unknown key 'c.mcx_server.listen' (expected one of a.sip_core",
        ),
        ({"a.mcx_server.listen": 0}, "ports: a.mcx_server.listen: 0 is not a port number 1..65535"),
        ({"a.mcx_server.listen": 70000}, "ports: a.mcx_server.listen: 70000 is not a port number 1..65535"),
        (
            {"a.mcx_server.listen": 5060, "b.mcx_server.listen": 5060},
            "ports: a.mcx_server.listen and b.mcx_server.listen both use port 5060",
        ),
    ],
)
def test_init_refuses_bad_ports(tmp_path: Path, ports: dict[str, int], message: str) -> None:
    with pytest.raises(InitError) as info:
        init_deployment(tmp_path / "d", ports=ports)
    assert str(info.value).startswith(message)
    assert not (tmp_path / "d").exists()


def test_init_refuses_bad_host(tmp_path: Path) -> None:
    with pytest.raises(InitError) as info:
        init_deployment(tmp_path / "d", host_a="bad host!", ports=PORTS)
    assert str(info.value) == "host_a: malformed host 'bad host!'"


# --- errors: each names the file, the key and the reason ---------------------------------------


def test_invalid_toml(deployment: Path) -> None:
    path = _edit(deployment / "a" / "system.toml", 'name = "A"', 'name = "A')
    assert _error(path).startswith(f"{path}: invalid TOML: ")


def test_unknown_key(deployment: Path) -> None:
    path = _edit(deployment / "a" / "system.toml", "[system]\n", '[system]\ncolour = "red"\n')
    assert _error(path) == f"{path}: system.colour: unknown key"


def test_unknown_key_in_partner(deployment: Path) -> None:
    path = _edit(deployment / "a" / "system.toml", "[[partner]]\n", '[[partner]]\nfavourite = "x"\n')
    assert _error(path) == f"{path}: partner[0].favourite: unknown key"


def test_missing_key(deployment: Path) -> None:
    path = _edit(deployment / "a" / "system.toml", 'psi = "sip:mcptt-server@a.mc.example"\n', "")
    assert _error(path) == f"{path}: mcx_server.psi: missing key"


def test_missing_section(deployment: Path) -> None:
    path = deployment / "a" / "system.toml"
    text = path.read_text()
    start, end = text.index("[sip_core]"), text.index("[mcx_server]")
    path.write_text(text[:start] + text[end:])
    assert _error(path) == f"{path}: sip_core: missing key"


def test_bad_address(deployment: Path) -> None:
    port = PORTS["a.sip_core.client_listen"]
    path = _edit(
        deployment / "a" / "system.toml",
        f'client_listen = "tcp://127.0.10.1:{port}"',
        'client_listen = "tcp://127.0.10.1"',
    )
    assert _error(path) == f"{path}: sip_core.client_listen: address 'tcp://127.0.10.1' has no port"


def test_bad_transport(deployment: Path) -> None:
    port = PORTS["a.mcx_server.listen"]
    path = _edit(
        deployment / "a" / "system.toml",
        f'listen = "tcp://127.0.10.1:{port}"',
        f'listen = "sctp://127.0.10.1:{port}"',
    )
    message = _error(path)
    assert message.startswith(f"{path}: mcx_server.listen: unknown transport 'sctp'")


def test_sip3_listen_must_be_tls(deployment: Path) -> None:
    path = _edit(deployment / "a" / "system.toml", 'sip3_listen = "tls://', 'sip3_listen = "tcp://')
    assert _error(path) == (
        f"{path}: is_proxy.sip3_listen: SIP-3 must use TLS (TS 33.180 6.3.2, WA-IC-13): use tls://host:port"
    )


def test_partner_address_must_be_tls(deployment: Path) -> None:
    path = _edit(deployment / "a" / "system.toml", 'is_proxy_address = "tls://', 'is_proxy_address = "tcp://')
    assert _error(path) == (
        f"{path}: partner[0].is_proxy_address: a partner IS proxy is reached over TLS only (SIP-3): "
        "use tls://host:port"
    )


def test_missing_certificate_file(deployment: Path) -> None:
    missing = deployment / "a" / "pki" / "isproxy.crt"
    missing.unlink()
    path = deployment / "a" / "system.toml"
    assert _error(path) == f"{path}: is_proxy.certificate: file not found: {missing.resolve()}"


def test_missing_trust_anchor_file(deployment: Path) -> None:
    missing = deployment / "a" / "partners" / "b-ca.crt"
    missing.unlink()
    path = deployment / "a" / "system.toml"
    assert _error(path) == f"{path}: partner[0].trust_anchors[0]: file not found: {missing.resolve()}"


def test_partner_domain_equal_to_own_domain(deployment: Path) -> None:
    path = _edit(deployment / "a" / "system.toml", 'domains = ["b.mc.example"]', 'domains = ["A.mc.example"]')
    assert _error(path) == f"{path}: partner[0].domains: a.mc.example is one of this system's own domains"


def test_duplicate_partner_domain(deployment: Path) -> None:
    path = deployment / "a" / "system.toml"
    text = path.read_text()
    second = text[text.index("\n[[partner]]") :].replace('name = "B"', 'name = "C"')
    path.write_text(text + "\n" + second)
    assert _error(path) == f"{path}: partner[1].domains: b.mc.example is already a domain of B"


def test_register_in_allowed_methods(deployment: Path) -> None:
    path = _edit(
        deployment / "a" / "system.toml",
        'authentication = "implicit"\n',
        'authentication = "implicit"\nallowed_methods = ["INVITE", "register"]\n',
    )
    assert _error(path) == (
        f"{path}: partner[0].allowed_methods: "
        "REGISTER never crosses the border (clients register at home only)"
    )


def test_unknown_method(deployment: Path) -> None:
    path = _edit(
        deployment / "a" / "system.toml",
        'authentication = "implicit"\n',
        'authentication = "implicit"\nallowed_methods = ["INVITE", "FETCH"]\n',
    )
    assert _error(path) == f"{path}: partner[0].allowed_methods: unknown SIP method(s): FETCH"


def test_route_psi_not_in_own_domain(deployment: Path) -> None:
    path = _edit(
        deployment / "a" / "system.toml",
        'routes = { "sip:mcptt-server@a.mc.example"',
        'routes = { "sip:mcptt-server@b.mc.example"',
    )
    assert _error(path) == (
        f"{path}: is_proxy.routes: sip:mcptt-server@b.mc.example is not in this system's domains"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"explicit"', ("explicit", "explicit")),
        ('{ inbound = "implicit", outbound = "explicit" }', ("implicit", "explicit")),
        ('{ inbound = "explicit" }', ("explicit", "implicit")),
    ],
)
def test_explicit_authentication_per_direction(
    deployment: Path, value: str, expected: tuple[str, str]
) -> None:
    path = _edit(deployment / "a" / "system.toml", 'authentication = "implicit"', f"authentication = {value}")
    [partner] = load_system(path).partner
    assert (partner.authentication.inbound, partner.authentication.outbound) == expected
    assert (partner.explicit_inbound, partner.explicit_outbound) == (
        expected[0] == "explicit",
        expected[1] == "explicit",
    )


def test_explicit_inbound_needs_the_partner_kms_certificate(deployment: Path) -> None:
    path = deployment / "a" / "system.toml"
    _edit(path, 'authentication = "implicit"', 'authentication = { inbound = "explicit" }')
    _edit(path, 'kms_certificate = "partners/b-kms.xml"\n', "")
    assert _error(path) == (
        f"{path}: partner[0]: kms_certificate: missing key: explicit inbound authentication verifies "
        "the partner's EARs under its KMS certificate (import it with mcic kms import-partner)"
    )
    # implicit inbound (explicit outbound) does not need it
    _edit(path, '{ inbound = "explicit" }', '{ outbound = "explicit" }')
    assert load_system(path).partner[0].kms_certificate is None


@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        (
            'certificate = "pki/mcx.crt"\n',
            "",
            "mcx_server.certificate: missing key: explicit outbound "
            "authentication toward B needs the MCX server's KMS client identity",
        ),
        (
            'private_key = "pki/mcx.key"\n',
            "",
            "mcx_server.private_key: missing key: explicit outbound "
            "authentication toward B needs the MCX server's KMS client identity",
        ),
        (
            'kms_trust_anchors = ["pki/ca.crt"]\n',
            "",
            "mcx_server.kms_trust_anchors: missing key: "
            "explicit outbound authentication toward B needs the KMS's CA",
        ),
        (
            'psis = { mcptt = "sip:mcptt-server@b.mc.example", gms = "sip:gms@b.mc.example" }\n',
            'psis = { gms = "sip:gms@b.mc.example" }\n',
            "partner[0].psis: explicit outbound "
            "authentication toward B needs the partner's mcptt PSI (EAR Target ID)",
        ),
    ],
)
def test_explicit_outbound_needs_the_mcx_signing_identity(
    deployment: Path, old: str, new: str, error: str
) -> None:
    path = deployment / "a" / "system.toml"
    _edit(path, 'authentication = "implicit"', 'authentication = { outbound = "explicit" }')
    load_system(path)
    _edit(path, old, new)
    assert _error(path) == f"{path}: {error}"


def test_explicit_outbound_needs_a_kms(deployment: Path) -> None:
    path = deployment / "a" / "system.toml"
    text = path.read_text()
    start, end = text.index("[kms]"), text.index("# One [[partner]] table")
    path.write_text(text[:start] + text[end:])
    load_system(path)  # implicit: no KMS needed
    _edit(path, 'authentication = "implicit"', 'authentication = "explicit"')
    assert _error(path) == (
        f"{path}: kms: missing table: explicit outbound authentication toward B needs this system's KMS "
        "(EAR signing keys)"
    )


def test_explicit_knobs_defaults(generated: Path) -> None:
    a = load_system(generated / "a" / "system.toml")
    assert a.is_proxy.replay_store == "sqlite:replay.db"
    assert a.is_proxy.ear_skew == 30
    assert a.mcx_server.verify_ear is False
    assert a.mcx_server.certificate == (generated / "a" / "pki" / "mcx.crt").resolve()
    assert a.mcx_server.kms_trust_anchors == [(generated / "a" / "pki" / "ca.crt").resolve()]
    assert a.partner[0].allowed_request_types == ["GROUP", "none"]
    # the MCX server's certificate names its PSI as subjectAltName URI, for the KMS (P-KMS-04)
    mcx = load_certificate(generated / "a" / "pki" / "mcx.crt")
    san = mcx.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [a.mcx_server.psi]
    assert stat.S_IMODE((generated / "a" / "pki" / "mcx.key").stat().st_mode) == 0o600


def test_explicit_init_writes_explicit_agreements(tmp_path: Path) -> None:
    config = load_deployment(init_deployment(tmp_path / "d", ports=PORTS, explicit=True))
    for system in config.systems:
        [partner] = system.partner
        assert (partner.authentication.inbound, partner.authentication.outbound) == ("explicit", "explicit")
        assert partner.kms_certificate is not None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('["group", "None", "MIGRATION", "GROUP"]', ["GROUP", "none", "MIGRATION"]),
        ('["PRIVILEGED", "INTERWORKING"]', ["PRIVILEGED", "INTERWORKING"]),
        ("[]", []),
    ],
)
def test_allowed_request_types(deployment: Path, value: str, expected: list[str]) -> None:
    path = _edit(
        deployment / "a" / "system.toml",
        'allowed_request_types = ["GROUP", "none"]',
        f"allowed_request_types = {value}",
    )
    assert load_system(path).partner[0].allowed_request_types == expected


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (
            '["OFF_NETWORK"]',
            "OFF_NETWORK signalling is never valid on the interconnection interface (WA-SP-27)",
        ),
        (
            '["off-network"]',
            "OFF_NETWORK signalling is never valid on the interconnection interface (WA-SP-27)",
        ),
        (
            '["GROUP", "CHAT"]',
            "unknown request type 'CHAT' (expected PRIVILEGED, INTERWORKING, GROUP, MIGRATION, none)",
        ),
    ],
)
def test_allowed_request_types_refused(deployment: Path, value: str, error: str) -> None:
    path = _edit(
        deployment / "a" / "system.toml",
        'allowed_request_types = ["GROUP", "none"]',
        f"allowed_request_types = {value}",
    )
    assert _error(path) == f"{path}: partner[0].allowed_request_types: {error}"


@pytest.mark.parametrize(
    "value",
    ["memory", "sqlite:/var/lib/mcic/replay.db", "sqlite:state/replay.db", "redis://127.0.0.1:6379/2"],
)
def test_replay_store_accepted(deployment: Path, value: str) -> None:
    path = _edit(
        deployment / "a" / "system.toml", 'replay_store = "sqlite:replay.db"', f'replay_store = "{value}"'
    )
    assert load_system(path).is_proxy.replay_store == value


@pytest.mark.parametrize("value", ["sqlite:", "sqlite://x", "postgres://db", "file.db", ""])
def test_replay_store_refused(deployment: Path, value: str) -> None:
    path = _edit(
        deployment / "a" / "system.toml", 'replay_store = "sqlite:replay.db"', f'replay_store = "{value}"'
    )
    assert _error(path) == (
        f"{path}: is_proxy.replay_store: expected 'memory', 'sqlite:PATH' or 'redis://host:port/db'"
    )


@pytest.mark.parametrize("value", ["-1", "3601", '"soon"'])
def test_ear_skew_refused(deployment: Path, value: str) -> None:
    path = _edit(deployment / "a" / "system.toml", "ear_skew = 30", f"ear_skew = {value}")
    assert _error(path).startswith(f"{path}: is_proxy.ear_skew: ")


def test_error_in_second_system_names_its_file(deployment: Path) -> None:
    path = _edit(deployment / "b" / "system.toml", 'sip3_listen = "tls://', 'sip3_listen = "udp://')
    with pytest.raises(ConfigError) as info:
        load_deployment(deployment)
    assert str(info.value).startswith(f"{path}: is_proxy.sip3_listen: SIP-3 must use TLS")


def test_deployment_without_deployment_table(deployment: Path) -> None:
    path = deployment / "deployment.toml"
    path.write_text('[deploy]\nsystems = ["a/system.toml"]\n')
    with pytest.raises(ConfigError) as info:
        load_deployment(path)
    assert str(info.value) == f"{path}: deployment: missing table [deployment]"


def test_deployment_systems_empty(deployment: Path) -> None:
    path = _edit(
        deployment / "deployment.toml", 'systems = ["a/system.toml", "b/system.toml"]', "systems = []"
    )
    with pytest.raises(ConfigError) as info:
        load_deployment(deployment)
    assert str(info.value) == f"{path}: deployment.systems: must be a non-empty list of file paths"


def test_deployment_unknown_key(deployment: Path) -> None:
    path = _edit(deployment / "deployment.toml", "[deployment]\n", "[deployment]\nowner = 1\n")
    with pytest.raises(ConfigError) as info:
        load_deployment(path)
    assert str(info.value) == f"{path}: deployment.owner: unknown key"


def test_deployment_two_systems_share_a_name(deployment: Path) -> None:
    path = _edit(deployment / "deployment.toml", '"b/system.toml"', '"a/system.toml"')
    with pytest.raises(ConfigError) as info:
        load_deployment(path)
    assert str(info.value) == f"{path}: deployment.systems: two systems share a name"


def test_deployment_names_missing_system_file(deployment: Path) -> None:
    _edit(deployment / "deployment.toml", '"b/system.toml"', '"c/system.toml"')
    with pytest.raises(ConfigError) as info:
        load_deployment(deployment)
    assert str(info.value) == f"{deployment / 'c' / 'system.toml'}: file not found"


@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        (
            'http_proxy_host = "httpproxy.b.mc.example"\n',
            "",
            "partner[0]: http_proxy_host, http_proxy_address: give both (the partner's HTTP proxy "
            "name and address on HTTP-3) or neither",
        ),
        (
            'http_allowed = ["GET /org.openmobilealliance.groups/groups/"',
            'http_allowed = ["FETCH /org.openmobilealliance.groups/groups/"',
            "partner[0].http_allowed: unknown HTTP method 'FETCH' "
            "(expected one of DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT)",
        ),
        (
            'http_allowed = ["GET /org.openmobilealliance.groups/groups/"',
            'http_allowed = ["GET /org.openmobilealliance.groups/../kms/"',
            "partner[0].http_allowed: path prefix '/org.openmobilealliance.groups/../kms/' must start "
            "with '/' and hold no '?', '#', '%', '\\' or dot segments",
        ),
        (
            'http_allowed = ["GET /org.openmobilealliance.groups/groups/"',
            'http_allowed = ["GET"',
            "partner[0].http_allowed: expected 'METHOD /path/prefix', got 'GET'",
        ),
        (
            'routes = { "/org.openmobilealliance.groups/"',
            'routes = { "/org.openmobilealliance.groups"',
            "http_proxy.routes: route prefix '/org.openmobilealliance.groups' must start and end "
            "with '/' (no '?' or '%')",
        ),
        (
            'http3_listen = "127.0.0.1:',
            'http3_listen = "udp://127.0.0.1:',
            "http_proxy.http3_listen: HTTPS only: write host:port",
        ),
        (
            'partner_groups = ["sip:rescue@b.mc.example"]',
            'partner_groups = ["sip:rescue@c.mc.example"]',
            "gms.partner_groups: sip:rescue@c.mc.example is not in a partner's domains",
        ),
        (
            'psis = { mcptt = "sip:mcptt-server@b.mc.example", gms = "sip:gms@b.mc.example" }',
            'psis = { mcptt = "sip:mcptt-server@b.mc.example" }',
            "gms.partner_groups: sip:rescue@b.mc.example: partner B has no psis.gms "
            "(the partner GMS that signs the group's GMK)",
        ),
        (
            'psi = "sip:gms@a.mc.example"',
            'psi = "sip:gms@b.mc.example"',
            "gms.psi: not in this system's domains",
        ),
        (
            'groups = "groups"',
            'groups = "no-such-folder"',
            "gms.groups: folder not found: {folder}/no-such-folder",
        ),
    ],
)
def test_http_proxy_and_gms_errors_name_the_key(deployment: Path, old: str, new: str, error: str) -> None:
    """Issue 6 configuration: each mistake is one line naming the file and the key."""
    path = deployment / "a" / "system.toml"
    _edit(path, old, new)
    assert _error(path) == f"{path}: {error.format(folder=path.parent.resolve())}"


def test_partner_groups_need_the_http_proxy(deployment: Path) -> None:
    path = deployment / "a" / "system.toml"
    text = path.read_text()
    start, end = text.index("[http_proxy]"), text.index("[gms]")
    path.write_text(text[:start] + text[end:])
    assert _error(path) == f"{path}: http_proxy: missing table: gms.partner_groups are fetched over HTTP-3"
