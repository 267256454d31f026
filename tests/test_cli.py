"""The ``mcic`` command, run as a subprocess: exit codes, one-line errors, a deployment end to end."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcic_helpers import BOUND, MCIC, assert_one_error_line, mcic
from mcinterconnect import __version__
from mcinterconnect.deploy.config import load_deployment
from mcinterconnect.sip.transport import Address


def test_version() -> None:
    result = mcic("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"mcic {__version__}"


def test_init_into_an_empty_directory(tmp_path: Path) -> None:
    target = tmp_path / "deployment"
    target.mkdir()
    result = mcic("init", target)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"deployment written: {target / 'deployment.toml'}"
    assert result.stderr == ""
    deployment = load_deployment(target)
    assert [system.system.name for system in deployment.systems] == ["A", "B"]
    for letter in "ab":
        assert (target / letter / "pki" / "isproxy.key").stat().st_mode & 0o077 == 0


def test_init_explicit_writes_explicit_agreements(tmp_path: Path) -> None:
    target = tmp_path / "deployment"
    result = mcic("init", target, "--explicit")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"deployment written: {target / 'deployment.toml'} (explicit authentication: EAR both ways)"
    )
    for system in load_deployment(target).systems:
        [partner] = system.partner
        assert partner.explicit_inbound and partner.explicit_outbound
        assert system.mcx_server.certificate is not None


def test_init_into_a_non_empty_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n", encoding="utf-8")
    result = mcic("init", tmp_path)
    line = assert_one_error_line(result)
    assert str(tmp_path) in line and "not empty" in line
    assert result.stdout == ""
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('sip3_listen = "tls://', 'sip3_listen = "tcp://', "is_proxy.sip3_listen"),
        (
            'trust_anchors = ["partners/b-ca.crt"]',
            'trust_anchors = ["partners/gone.crt"]',
            "trust_anchors[0]",
        ),
        ("[mcx_server]\n", "[mcx_server]\ncolour = 'blue'\n", "mcx_server.colour"),
    ],
    ids=["sip3-without-tls", "missing-trust-anchor", "unknown-key"],
)
def test_run_with_a_broken_config_names_file_and_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    assert mcic("init", tmp_path).returncode == 0
    system = tmp_path / "a" / "system.toml"
    text = system.read_text(encoding="utf-8")
    assert old in text
    system.write_text(text.replace(old, new, 1), encoding="utf-8")
    line = assert_one_error_line(mcic("run", tmp_path))
    assert str(system) in line
    assert key in line


# ------------------------------------------------------------------ a deployment run by `mcic run`


def accepts(address: Address) -> bool:
    try:
        with socket.create_connection((address.host, address.port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def deployment_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "deployment"
    assert mcic("init", directory).returncode == 0
    return directory


@pytest.fixture
def running(deployment_dir: Path) -> Iterator[subprocess.Popen[str]]:
    """``mcic run DIR`` until its listeners accept; stopped with SIGTERM by the test."""
    deployment = load_deployment(deployment_dir)
    process = subprocess.Popen(
        [str(MCIC), "run", str(deployment_dir)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        listeners = [
            address
            for system in deployment.systems
            for address in (
                system.sip_core.client_listen,
                system.sip_core.server_listen,
                system.mcx_server.listen,
                system.is_proxy.internal_listen,
                system.is_proxy.sip3_listen,
            )
        ]
        deadline = time.monotonic() + BOUND
        while not all(accepts(address) for address in listeners):
            assert process.poll() is None, process.communicate(timeout=BOUND)
            assert time.monotonic() < deadline, "mcic run: listeners not accepting"
            time.sleep(0.05)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(BOUND)


def events(output: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.splitlines()]


def test_client_registers_and_sends_across_a_running_deployment(
    deployment_dir: Path, running: subprocess.Popen[str]
) -> None:
    bob_command = [
        str(MCIC),
        "client",
        str(deployment_dir),
        "--system",
        "B",
        "--user",
        "sip:bob@b.mc.example",
    ]
    bob = subprocess.Popen(
        [*bob_command, "--wait", "4"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert bob.stdout is not None
        first = bob.stdout.readline()  # printed once bob is registered
        assert events(first) == [{"event": "register", "status": 200, "reason": "OK"}]

        alice = mcic(
            "client",
            deployment_dir,
            "--system",
            "a.mc.example",
            "--user",
            "sip:alice@a.mc.example",
            "--to",
            "sip:bob@b.mc.example",
            "--text",
            "Fire on level 3",
        )
        assert alice.returncode == 0, alice.stderr
        assert events(alice.stdout) == [
            {"event": "register", "status": 200, "reason": "OK"},
            {"event": "message-sent", "to": "sip:bob@b.mc.example", "status": 200, "warning": None},
        ]
        rest, errors = bob.communicate(timeout=BOUND)
    finally:
        if bob.poll() is None:
            bob.kill()
            bob.wait(BOUND)
    assert bob.returncode == 0, errors
    assert events(rest) == [
        {"event": "message-received", "from": "sip:alice@a.mc.example", "text": "Fire on level 3"}
    ]

    # A refused MESSAGE is a failure of the command, reported on one line.
    refused = mcic(
        "client",
        deployment_dir,
        "--system",
        "A",
        "--user",
        "sip:alice@a.mc.example",
        "--to",
        "sip:carol@b.mc.example",
        "--text",
        "anyone?",
    )
    line = assert_one_error_line(refused)
    assert line.startswith("mcic: error: MESSAGE refused: 480")
    sent = events(refused.stdout)[-1]
    assert sent["status"] == 480 and "not registered" in str(sent["warning"])

    # SIGTERM stops the deployment cleanly.
    running.send_signal(signal.SIGTERM)
    out, err = running.communicate(timeout=BOUND)
    assert running.returncode == 0, err
    assert "Traceback" not in err
    assert [line.split(" (")[0] for line in out.splitlines()] == ["system A", "system B"]
    deployment = load_deployment(deployment_dir)
    assert not any(accepts(system.sip_core.client_listen) for system in deployment.systems)


def _group(deployment_dir: Path, system: str, user: str, group: str, *extra: str) -> dict[str, Any]:
    """``mcic group get`` until the own GMS holds ``group`` (GMS A polls GMS B after both start)."""
    deadline = time.monotonic() + BOUND
    while True:
        result = mcic("group", "get", deployment_dir, "--system", system, "--user", user, group, *extra)
        if result.returncode == 0:
            parsed: dict[str, Any] = json.loads(result.stdout)
            return parsed
        assert time.monotonic() < deadline, result.stderr
        time.sleep(0.2)


def test_group_get_reads_a_partner_group_and_its_gmk_from_the_own_gms(
    deployment_dir: Path, running: subprocess.Popen[str]
) -> None:
    """Issue 6 from the command line: alice@A reads the B-homed group through her own HTTP proxy;
    its GMK is signed by GMS A; bob@B, at home in B, opens a GMK with the same GMK-ID."""
    alice = _group(deployment_dir, "A", "alice", "sip:rescue@b.mc.example", "--gmk")
    assert alice["user"] == "sip:alice@a.mc.example"
    assert alice["members"] == ["sip:alice@a.mc.example"]  # only A-homed members (WA-IC-12)
    assert alice["display_name"] == "Rescue B" and alice["etag"].startswith('"')
    assert alice["gmk_signed_by"] == "sip:gms@a.mc.example"
    bob = _group(deployment_dir, "B", "bob", "sip:rescue@b.mc.example", "--gmk")
    assert bob["members"] == ["sip:bob@b.mc.example", "sip:dispatch@b.mc.example", "sip:alice@a.mc.example"]
    assert bob["gmk_signed_by"] == "sip:gms@b.mc.example"
    assert bob["gmk_id"] == alice["gmk_id"] and len(alice["gmk_id"]) == 8
    # the key itself is never printed
    assert set(alice) == {
        "user",
        "group",
        "etag",
        "display_name",
        "members",
        "services",
        "gmk_id",
        "gmk_signed_by",
    }
    # refusals: one line each, exit 1
    line = assert_one_error_line(
        mcic("group", "get", deployment_dir, "--system", "A", "--user", "alice", "sip:nothing@b.mc.example")
    )
    assert line.endswith("sip:nothing@b.mc.example: the server answered 404 (not-found)")
    line = assert_one_error_line(
        mcic("group", "get", deployment_dir, "--system", "A", "--user", "carol", "sip:rescue@b.mc.example")
    )
    assert "users/carol.crt: file not found" in line
    line = assert_one_error_line(
        mcic("group", "get", deployment_dir, "--system", "A", "--user", "alice", "not-an-id")
    )
    assert "group ID 'not-an-id': not an MC service ID" in line
    running.terminate()
    running.wait(BOUND)
