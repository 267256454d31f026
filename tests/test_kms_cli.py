"""``mcic kms`` run as a subprocess: export, import (manual cross-certification, WA-IC-19) and
offline provisioning, with their error paths (one line on stderr, exit status 1)."""

from __future__ import annotations

import datetime
import json
import shutil
import stat
from pathlib import Path

import pytest

from mcic_helpers import assert_one_error_line, mcic
from mcinterconnect.cli.systemfile import set_partner_key
from mcinterconnect.crypto import ec, eccsi, sakke
from mcinterconnect.crypto.ec import P256
from mcinterconnect.crypto.kms import Kms, KmsCertificate, generate_storage_key
from mcinterconnect.crypto.uid import uid
from mcinterconnect.deploy.config import load_system
from mcinterconnect.deploy.init import init_deployment
from mcinterconnect.services.kms import read_certificate, write_storage_key

ALICE = "sip:alice@a.mc.example"
one_error_line = assert_one_error_line


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("generated") / "deployment"
    init_deployment(directory)
    return directory


@pytest.fixture
def deployment(generated: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "deployment"
    shutil.copytree(generated, copy)
    return copy


# --- init wrote the KMS material and the cross-import ---------------------------------------------


def test_init_writes_kms_material_and_cross_imports(generated: Path) -> None:
    for letter, other in (("a", "b"), ("b", "a")):
        folder = generated / letter
        for name in ("kms/secrets.sealed", "keys/kms-storage.key", "pki/kms.key"):
            assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
        own = read_certificate(folder / "kms" / "kms-cert.xml")
        assert own.role == "Root" and own.kms_uri == f"kms.{letter}.mc.example"
        imported = read_certificate(folder / "partners" / f"{other}-kms.xml")
        partner_own = read_certificate(generated / other / "kms" / "kms-cert.xml")
        assert imported == partner_own.as_role("External")
        config = load_system(folder / "system.toml")
        assert config.kms is not None
        assert config.kms.uri == own.kms_uri
        assert config.partner[0].kms_certificate == (folder / "partners" / f"{other}-kms.xml").resolve()
        # the KMS listens on the system's internal host, which never crosses the border
        assert config.kms.listen.host == {"a": "127.0.10.1", "b": "127.0.20.1"}[letter]
        assert f"{config.kms.listen.host}:{config.kms.listen.port}" in config.internal_markers()
        # the secrets are not readable without the storage key
        sealed = (folder / "kms" / "secrets.sealed").read_bytes()
        assert sealed.startswith(b"MCIC-KMS-SECRETS-1\n")


# --- export-cert ---------------------------------------------------------------------------------


def test_export_cert_to_stdout_and_to_a_file(deployment: Path, tmp_path: Path) -> None:
    result = mcic("kms", "export-cert", deployment, "--system", "A")
    assert result.returncode == 0, result.stderr
    certificate = KmsCertificate.from_xml(result.stdout.encode())
    assert certificate == read_certificate(deployment / "a" / "kms" / "kms-cert.xml")
    target = tmp_path / "a-kms.xml"
    result = mcic("kms", "export-cert", deployment, "--system", "a.mc.example", "-o", target)
    assert result.returncode == 0, result.stderr
    assert KmsCertificate.from_xml(target.read_bytes()) == certificate
    assert certificate.fingerprint() in result.stdout


def test_export_cert_errors(deployment: Path, tmp_path: Path) -> None:
    assert "no system named 'C'" in one_error_line(mcic("kms", "export-cert", deployment, "--system", "C"))
    (deployment / "a" / "kms" / "kms-cert.xml").write_text("<broken")
    line = one_error_line(mcic("kms", "export-cert", deployment, "--system", "A"))
    assert "kms-cert.xml: KMS document refused: malformed XML" in line
    line = one_error_line(
        mcic("kms", "export-cert", deployment, "--system", "B", "-o", tmp_path / "no" / "x.xml")
    )
    assert "cannot write" in line


# --- import-partner ------------------------------------------------------------------------------


def test_import_partner_replaces_the_certificate_and_keeps_the_file(deployment: Path, tmp_path: Path) -> None:
    system_file = deployment / "a" / "system.toml"
    before = system_file.read_text()
    new_b = Kms.create("kms.b.mc.example", issuer="MC system B, rekeyed")
    offered = tmp_path / "b-new.xml"
    offered.write_bytes(new_b.certificate.to_xml())
    result = mcic("kms", "import-partner", deployment, "--system", "A", "--partner", "B", "--cert", offered)
    assert result.returncode == 0, result.stderr
    assert new_b.certificate.fingerprint() in result.stdout
    stored = read_certificate(deployment / "a" / "partners" / "b-kms.xml")
    assert stored == new_b.certificate.as_role("External")
    # the line already said partners/b-kms.xml: the file is unchanged, comments and all
    assert system_file.read_text() == before
    load_system(system_file)


def test_import_partner_adds_the_key_when_missing(deployment: Path) -> None:
    system_file = deployment / "a" / "system.toml"
    text = system_file.read_text()
    line = 'kms_certificate = "partners/b-kms.xml"\n'
    system_file.write_text(text.replace(line, ""))
    system_file.chmod(0o640)
    assert load_system(system_file).partner[0].kms_certificate is None
    exported = deployment / "b" / "kms" / "kms-cert.xml"
    result = mcic("kms", "import-partner", deployment, "--system", "A", "--partner", "B", "--cert", exported)
    assert result.returncode == 0, result.stderr
    assert "kms_certificate set" in result.stdout
    config = load_system(system_file)
    assert config.partner[0].kms_certificate == (deployment / "a" / "partners" / "b-kms.xml").resolve()
    assert system_file.read_text().count("kms_certificate = ") == 2  # [kms] and [[partner]]
    assert stat.S_IMODE(system_file.stat().st_mode) == 0o640
    assert not list(system_file.parent.glob(".system.toml*"))


def test_import_partner_prints_the_line_when_the_layout_is_unknown(deployment: Path) -> None:
    system_file = deployment / "a" / "system.toml"
    text = system_file.read_text()
    start = text.index("[[partner]]")
    partner = load_system(system_file).partner[0]
    inline = (
        f'partner = [{{ name = "B", domains = ["b.mc.example"], is_proxy_host = "{partner.is_proxy_host}", '
        f'is_proxy_address = "{partner.is_proxy_address}", trust_anchors = ["partners/b-ca.crt"], '
        f'psis = {{ gms = "sip:gms@b.mc.example" }}, http_proxy_host = "{partner.http_proxy_host}", '
        f'http_proxy_address = "{partner.http_proxy_address}" }}]\n'
    )
    head = text[:start]
    top = head.index("[system]")  # a top-level key must come before the first table
    system_file.write_text(head[:top] + inline + head[top:])
    before = system_file.read_text()
    exported = deployment / "b" / "kms" / "kms-cert.xml"
    result = mcic("kms", "import-partner", deployment, "--system", "A", "--partner", "B", "--cert", exported)
    line = one_error_line(result)
    assert "layout not recognised; the file was not changed" in line
    assert 'kms_certificate = "partners/b-kms.xml"' in result.stdout
    assert system_file.read_text() == before


@pytest.mark.parametrize(
    ("prepare", "expected"),
    [
        (lambda d, t: t / "missing.xml", "cannot read"),
        (lambda d, t: _write(t / "junk.xml", b"<KmsCertificate/>"), "not a usable KMS certificate: expected"),
        (lambda d, t: d / "a" / "kms" / "kms-cert.xml", "this is system A's own KMS (kms.a.mc.example)"),
        (lambda d, t: _write(t / "old.xml", _expired()), "the certificate is not valid now"),
        (
            lambda d, t: _write(
                t / "revoked.xml",
                (d / "b" / "kms" / "kms-cert.xml").read_bytes().replace(b">false<", b">true<"),
            ),
            "is revoked",
        ),
    ],
)
def test_import_partner_refusals(deployment: Path, tmp_path: Path, prepare: object, expected: str) -> None:
    before = (deployment / "a" / "partners" / "b-kms.xml").read_bytes()
    offered = prepare(deployment, tmp_path)  # type: ignore[operator]
    line = one_error_line(
        mcic("kms", "import-partner", deployment, "--system", "A", "--partner", "B", "--cert", offered)
    )
    assert expected in line
    assert (deployment / "a" / "partners" / "b-kms.xml").read_bytes() == before


def test_import_partner_unknown_partner(deployment: Path) -> None:
    exported = deployment / "b" / "kms" / "kms-cert.xml"
    line = one_error_line(
        mcic("kms", "import-partner", deployment, "--system", "A", "--partner", "C", "--cert", exported)
    )
    assert line.endswith("no [[partner]] named 'C' (known: B)")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _expired() -> bytes:
    start = datetime.datetime(2001, 1, 1, tzinfo=datetime.UTC)
    return Kms.create("kms.b.mc.example", now=start, validity_days=30).certificate.to_xml()


def test_set_partner_key_edits_only_the_named_table() -> None:
    text = '[system]\nname = "A"\n\n[[partner]]\nname = "B"\nx = 1\n\n# next\n[[partner]]\nname = "C"\n'
    edited = set_partner_key(text, "C", "kms_certificate", 'kms_certificate = "c.xml"')
    assert edited == text + 'kms_certificate = "c.xml"\n'
    edited = set_partner_key(text, "B", "kms_certificate", 'kms_certificate = "b.xml"')
    assert edited is not None and edited.index('kms_certificate = "b.xml"') < edited.index("# next")
    assert set_partner_key(text, "D", "kms_certificate", "kms_certificate = 1") is None


# --- provision -------------------------------------------------------------------------------------


def test_provision_prints_valid_key_sets(deployment: Path) -> None:
    result = mcic("kms", "provision", deployment, "--system", "A", "--user", ALICE)
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    certificate = read_certificate(deployment / "a" / "kms" / "kms-cert.xml")
    assert output["kms_uri"] == "kms.a.mc.example" and output["user_uri"] == ALICE
    assert output["certificate_fingerprint"] == certificate.fingerprint()
    kpak = ec.decode_point(P256, bytes.fromhex(output["kpak"]))
    z = ec.decode_point(sakke.CURVE, bytes.fromhex(output["z"]))
    assert (kpak, z) == (certificate.pub_auth_key, certificate.pub_enc_key)
    numbers = [key_set["period_no"] for key_set in output["key_sets"]]
    assert len(numbers) == 3 and numbers == list(range(numbers[0], numbers[0] + 3))
    for key_set in output["key_sets"]:
        user_id = bytes.fromhex(key_set["user_id"])
        assert user_id == uid(ALICE, "kms.a.mc.example", certificate.key_period, key_set["period_no"])
        pvt = ec.decode_point(P256, bytes.fromhex(key_set["pvt"]))
        eccsi.validate_ssk(int(key_set["ssk"], 16), pvt, kpak, user_id)
        rsk = ec.decode_point(sakke.CURVE, bytes.fromhex(key_set["rsk"]))
        sakke.validate_rsk(rsk, int.from_bytes(user_id, "big"), z)
    result = mcic("kms", "provision", deployment, "--system", "A", "--user", ALICE, "--periods", "2")
    assert result.returncode == 0, result.stderr
    assert [ks["period_no"] for ks in json.loads(result.stdout)["key_sets"]] == numbers[1:]


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (("--user", "sip:bob@b.mc.example"), "is not a user of system A"),
        (("--user", "alice"), "--user: "),
        (("--user", "sip:alice@A.MC.EXAMPLE"), "write the MC service ID exactly as 'sip:alice@a.mc.example'"),
        (("--user", ALICE, "--periods", "0"), "--periods: 0 is not in 1..12"),
        (("--user", ALICE, "--periods", "13"), "--periods: 13 is not in 1..12"),
    ],
)
def test_provision_refusals(deployment: Path, arguments: tuple[str, ...], expected: str) -> None:
    line = one_error_line(mcic("kms", "provision", deployment, "--system", "A", *arguments))
    assert expected in line


def test_provision_with_a_wrong_or_exposed_storage_key(deployment: Path) -> None:
    key_file = deployment / "a" / "keys" / "kms-storage.key"
    original = key_file.read_text()
    wrong = generate_storage_key()
    write_storage_key(key_file, wrong)
    line = one_error_line(mcic("kms", "provision", deployment, "--system", "A", "--user", ALICE))
    assert "do not open: wrong storage key or altered file" in line
    assert wrong.hex() not in line
    key_file.write_text(original)
    key_file.chmod(0o644)
    line = one_error_line(mcic("kms", "provision", deployment, "--system", "A", "--user", ALICE))
    assert "readable by group or others (chmod 600)" in line
    key_file.chmod(0o600)
    sealed = deployment / "a" / "kms" / "secrets.sealed"
    data = bytearray(sealed.read_bytes())
    data[-1] ^= 1
    sealed.write_bytes(bytes(data))
    line = one_error_line(mcic("kms", "provision", deployment, "--system", "A", "--user", ALICE))
    assert "secrets.sealed: the KMS secrets do not open" in line


def test_provision_needs_a_kms_section(deployment: Path) -> None:
    system_file = deployment / "b" / "system.toml"
    text = system_file.read_text()
    start, end = text.index("[kms]"), text.index("# One [[partner]]")
    system_file.write_text(text[:start] + text[end:])
    line = one_error_line(
        mcic("kms", "provision", deployment, "--system", "B", "--user", "sip:bob@b.mc.example")
    )
    assert line.endswith("system B has no [kms] section")
