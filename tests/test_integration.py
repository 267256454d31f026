"""Systems A and B over real loopback sockets and real mutual TLS (TS 33.180 11.1.1).

Each test writes a fresh deployment with ``init_deployment``, starts the SIP core, MCX server and
IS proxy of A and B with ``start_system`` inside its own ``asyncio.run`` (every await bounded),
and drives MC clients (``McClient``), TLS probes and ``openssl s_client`` against it.  The wire
tap of each IS proxy records the plaintext of every message it sends across SIP-3.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import shutil
import ssl
import warnings
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from mcinterconnect.border.isproxy import PEER_UNKNOWN
from mcinterconnect.deploy.config import DeploymentConfig, SystemConfig, load_deployment
from mcinterconnect.deploy.init import init_deployment
from mcinterconnect.deploy.pki import (
    issue_certificate,
    load_certificate,
    load_private_key,
    write_pem,
    write_private_key,
)
from mcinterconnect.deploy.probe import ProbeResult, probe, probe_request
from mcinterconnect.mcinfo import MCPTT_INFO_TYPE, McpttInfo, find_mcptt_info
from mcinterconnect.services.client import TEXT_TYPE, McClient, ReceivedMessage
from mcinterconnect.sip.message import Headers, SipRequest, SipResponse, make_response
from mcinterconnect.sip.multipart import BodyPart, build_multipart
from mcinterconnect.sip.parser import StreamFramer, parse_message
from mcinterconnect.sip.transport import Address
from mcinterconnect.tlsprofile import client_context
from ports import free_port
from system_helpers import STEP, audit_lines, client, running
from system_helpers import run as run_bounded

DEADLINE = 20.0

ALICE = "sip:alice@a.mc.example"
ALICE2 = "sip:alice2@a.mc.example"
BOB = "sip:bob@b.mc.example"


def run(scenario: Coroutine[Any, Any, None]) -> None:
    run_bounded(scenario, DEADLINE)


@pytest.fixture
def deployment(tmp_path: Path) -> DeploymentConfig:
    return load_deployment(init_deployment(tmp_path / "deployment"))


def both(deployment: DeploymentConfig) -> tuple[tuple[str, SystemConfig], tuple[str, SystemConfig]]:
    a, b = deployment.systems
    return ("A", a), ("B", b)


class ClaimingClient(McClient):
    """A registered client that lies: it claims another user in P-Asserted-Identity,
    P-Preferred-Identity and the ``mcptt-calling-user-id`` of its body."""

    claim = "sip:chief@a.mc.example"

    async def send_message(self, target: str, text: str) -> SipResponse:
        request = self._request("MESSAGE", self.mcx_psi, target)
        request.headers.add("P-Asserted-Identity", f"<{self.claim}>")
        request.headers.add("P-Preferred-Identity", f"<{self.claim}>")
        info = McpttInfo(request_uri=target, calling_user_id=self.claim).to_xml()
        content_type, body = build_multipart(
            [
                BodyPart(Headers([("Content-Type", MCPTT_INFO_TYPE)]), info),
                BodyPart(Headers([("Content-Type", TEXT_TYPE)]), text.encode()),
            ]
        )
        request.headers.add("Content-Type", content_type)
        request.body = body
        return await self._transact(request)


async def delivered(mc: McClient) -> ReceivedMessage:
    async with asyncio.timeout(STEP):
        return await mc.inbox.get()


def warning_of(response: SipResponse) -> str:
    return response.headers.get("Warning") or ""


# ------------------------------------------------------------------ MESSAGE flows


def test_message_both_ways_across_sip3(deployment: DeploymentConfig) -> None:
    a, b = deployment.systems

    async def scenario() -> None:
        async with (
            running(*both(deployment)) as state,
            client(ALICE, a) as alice,
            client(BOB, b) as bob,
        ):
            response = await alice.send_message(BOB, "A to B")
            assert response.status == 200
            got = await delivered(bob)
            assert (got.sender, got.target, got.text) == (ALICE, BOB, "A to B")
            # Delivered by B's servers: bob sees A's IS proxy asserted, never alice's client.
            assert got.asserted == f"<{a.is_proxy.uri}>"

            response = await bob.send_message(ALICE, "B to A, ünïcode")
            assert response.status == 200
            got = await delivered(alice)
            assert (got.sender, got.target, got.text) == (BOB, ALICE, "B to A, ünïcode")

            # Each IS proxy sent one request and one response across SIP-3.
            # (the exit point addresses the partner's PSI, TS 24.379 6.8.2)
            for name, partner in (("A", b), ("B", a)):
                starts = sorted(data.split(b"\r\n", 1)[0] for data in state.sip3[name])
                assert starts == [f"MESSAGE {partner.mcx_server.psi} SIP/2.0".encode(), b"SIP/2.0 200 OK"]
            for name in ("A", "B"):
                allowed = [e for e in state[name].audit.recent if e["decision"] == "allow"]
                assert {(e["direction"], e["method"]) for e in allowed} == {
                    ("outbound", "MESSAGE"),
                    ("inbound", "MESSAGE"),
                }

    run(scenario())


def test_local_message_never_crosses_sip3(deployment: DeploymentConfig) -> None:
    a, _ = deployment.systems

    async def scenario() -> None:
        async with (
            running(*both(deployment)) as state,
            client(ALICE, a) as alice,
            client(ALICE2, a) as alice2,
        ):
            response = await alice.send_message(ALICE2, "stays at home")
            assert response.status == 200
            got = await delivered(alice2)
            assert (got.sender, got.text) == (ALICE, "stays at home")
            assert got.asserted == f"<{ALICE}>"
            assert state.sip3 == {"A": [], "B": []}
            assert list(state["A"].audit.recent) == []
            assert list(state["B"].audit.recent) == []

    run(scenario())


def test_target_not_registered_in_b_gets_480_with_warning(deployment: DeploymentConfig) -> None:
    a, _ = deployment.systems

    async def scenario() -> None:
        async with running(*both(deployment)) as state, client(ALICE, a) as alice:
            response = await alice.send_message("sip:carol@b.mc.example", "anyone there?")
            assert response.status == 480
            warning = warning_of(response)
            assert warning.startswith("399 b.mc.example ")
            assert "sip:carol@b.mc.example is not registered" in warning
            # The refusal came from B's side, across SIP-3.
            assert [data.split(b"\r\n", 1)[0] for data in state.sip3["B"]] == [
                b"SIP/2.0 480 Temporarily Unavailable"
            ]

    run(scenario())


def test_target_in_unknown_domain_gets_404_from_mcx_a(deployment: DeploymentConfig) -> None:
    a, _ = deployment.systems

    async def scenario() -> None:
        async with running(*both(deployment)) as state, client(ALICE, a) as alice:
            response = await alice.send_message("sip:dave@c.mc.example", "hello?")
            assert response.status == 404
            warning = warning_of(response)
            assert warning.startswith("399 a.mc.example ")
            assert "no interconnected MC system serves c.mc.example" in warning
            assert state.sip3 == {"A": [], "B": []}
            assert list(state["A"].audit.recent) == []  # never reached the IS proxy

    run(scenario())


def test_register_with_a_domain_of_b_at_a_is_refused(deployment: DeploymentConfig) -> None:
    a, _ = deployment.systems

    async def scenario() -> None:
        async with (
            running(*both(deployment)) as state,
            client(BOB, a, register=False) as intruder,
        ):
            async with asyncio.timeout(STEP):
                response = await intruder.register()
            assert response.status == 403
            assert "this registrar serves only a.mc.example" in warning_of(response)
            assert state["A"].registrar.contacts_of(BOB) == []
            assert state.sip3 == {"A": [], "B": []}

    run(scenario())


def test_identity_claimed_by_the_client_is_replaced(deployment: DeploymentConfig) -> None:
    a, b = deployment.systems

    async def scenario() -> None:
        async with (
            running(*both(deployment)) as state,
            client(ALICE, a, cls=ClaimingClient) as alice,
            client(ALICE2, a) as alice2,
            client(BOB, b) as bob,
        ):
            claim = ClaimingClient.claim
            response = await alice.send_message(BOB, "signed, the chief")
            assert response.status == 200
            got = await delivered(bob)
            assert got.sender == ALICE and got.asserted == f"<{a.is_proxy.uri}>"
            crossing = b"".join(state.sip3["A"])
            assert claim.encode() not in crossing
            assert b"P-Preferred-Identity" not in crossing

            response = await alice.send_message(ALICE2, "signed, the chief")
            assert response.status == 200
            got = await delivered(alice2)
            assert (got.sender, got.asserted) == (ALICE, f"<{ALICE}>")

    run(scenario())


# ------------------------------------------------------------------ scale-out


async def read_sip(reader: asyncio.StreamReader) -> SipRequest | SipResponse:
    framer = StreamFramer()
    while (raw := framer.next_message()) is None:
        data = await reader.read(65536)
        assert data, "connection closed before a complete SIP message"
        framer.feed(data)
    message = parse_message(raw, stream=True)
    assert isinstance(message, SipRequest | SipResponse)
    return message


def test_second_is_proxy_instance_restores_a_response_to_what_the_first_forwarded(
    deployment: DeploymentConfig,
) -> None:
    """Instances of one border share the sealing keys and nothing else (ARCHITECTURE.md §4).

    B's PSI is routed to a stand-in MCX server that receives the request from IS proxy instance
    1 and hands its 200 to instance 2's internal listener: instance 2 unseals the Via stack that
    instance 1 sealed and sends the response back to A over a SIP-3 connection of its own.
    """
    a, b = deployment.systems
    host_b = b.mcx_server.listen.host
    sip3_host = b.is_proxy.sip3_listen.host
    mcx_stand_in = Address("tcp", host_b, free_port(host_b))
    psi = b.mcx_server.psi
    section = b.is_proxy.model_copy(update={"routes": {psi: mcx_stand_in}})
    instance1 = b.model_copy(update={"is_proxy": section})
    instance2 = b.model_copy(
        update={
            "is_proxy": section.model_copy(
                update={
                    "internal_listen": Address("tcp", host_b, free_port(host_b)),
                    "sip3_listen": Address("tls", sip3_host, free_port(sip3_host)),
                }
            ),
            "system": b.system.model_copy(
                update={"audit_log": b.system.audit_log.with_name("audit-2.jsonl")}
            ),
            # start_system runs a whole system: the SIP core and MCX server of this copy only
            # need ports of their own (they take no part in the exchange).
            "sip_core": b.sip_core.model_copy(
                update={
                    "client_listen": Address("tcp", host_b, free_port(host_b)),
                    "server_listen": Address("tcp", host_b, free_port(host_b)),
                }
            ),
            "mcx_server": b.mcx_server.model_copy(
                update={"listen": Address("tcp", host_b, free_port(host_b))}
            ),
            "kms": b.kms.model_copy(update={"listen": Address("tcp", host_b, free_port(host_b))})
            if b.kms is not None
            else None,
            # the HTTP-3 border and the GMS take no part here: not a second copy of them
            "http_proxy": None,
            "gms": None,
        }
    )

    async def scenario() -> None:
        received: asyncio.Queue[SipRequest] = asyncio.Queue()

        async def stand_in(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            message = await read_sip(reader)
            assert isinstance(message, SipRequest)
            await received.put(message)
            writer.close()
            # Answer through the other instance, as after a fail-over of instance 1.
            target = instance2.is_proxy.internal_listen
            _, out = await asyncio.open_connection(target.host, target.port)
            out.write(make_response(message, 200, to_tag="standin").to_bytes())
            await out.drain()
            out.close()

        server = await asyncio.start_server(stand_in, mcx_stand_in.host, mcx_stand_in.port)
        try:
            async with (
                running(("A", a), ("B1", instance1), ("B2", instance2)) as state,
                client(ALICE, a) as alice,
            ):
                response = await alice.send_message(BOB, "through instance 1, back through 2")
                assert response.status == 200
                async with asyncio.timeout(STEP):
                    forwarded = await received.get()
                # Instance 1 forwarded it: its sealed Via names instance 1's internal face.
                assert f"{host_b}:{b.is_proxy.internal_listen.port}" in forwarded.vias[0]
                info = find_mcptt_info(forwarded)
                assert info is not None and info.calling_user_id == ALICE
                # Only instance 2 sent anything across SIP-3: the 200.
                assert state.sip3["B1"] == []
                assert [data.split(b"\r\n", 1)[0] for data in state.sip3["B2"]] == [b"SIP/2.0 200 OK"]
                # (before the fix of restore_response, instance 2 wrote a "drop" line here)
                assert not [e for e in state["B2"].audit.recent if e["decision"] != "allow"]
        finally:
            server.close()
            await server.wait_closed()

    run(scenario())


# ------------------------------------------------------------------ SIP-3 TLS identity


async def new_audit_lines(path: Path, mark: int, *, wanted: str) -> list[dict[str, Any]]:
    """Audit lines written after ``mark``; waits (bounded) until one with reason ``wanted`` shows up,
    since the server may finish logging just after the client has given up."""
    for _ in range(100):
        lines = audit_lines(path)[mark:]
        if any(line["reason"] == wanted for line in lines):
            return lines
        await asyncio.sleep(0.02)
    return audit_lines(path)[mark:]


def issue(deployment_dir: Path, letter: str, name: str) -> tuple[Path, Path]:
    """A certificate from ``letter``'s CA for ``name``, written beside the deployment."""
    ca_cert = load_certificate(deployment_dir / letter / "pki" / "ca.crt")
    ca_key = load_private_key(deployment_dir / letter / "pki" / "ca.key")
    cert, key = issue_certificate(ca_cert, ca_key, [name], common_name=name, days=1)
    folder = deployment_dir / "intruders"
    folder.mkdir(exist_ok=True)
    stem = secrets.token_hex(4)
    write_pem(folder / f"{stem}.crt", cert)
    write_private_key(folder / f"{stem}.key", key)
    return folder / f"{stem}.crt", folder / f"{stem}.key"


def options_to_a(a: SystemConfig, b: SystemConfig) -> bytes:
    return probe_request(
        "OPTIONS",
        f"sip:{a.is_proxy.public_host}",
        source=b.is_proxy.uri,
        target=f"sip:{a.is_proxy.public_host}",
        via_host=f"{b.is_proxy.public_host}:{b.is_proxy.sip3_listen.port}",
    ).to_bytes()


def tls11_context(anchor: Path, cert: Path, key: Path) -> ssl.SSLContext:
    context = client_context(trust_anchors=[anchor], cert_file=cert, key_file=key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1_1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT@SECLEVEL=0")  # so that the client really offers TLS 1.1
    return context


#: (case, audit reason, what the audit detail says): the identity of each case is built by ``sip3_client``.
SIP3_REFUSALS = [
    (
        "other-name-from-b-ca",
        "tls-peer-refused",
        r"peer \(CN=gms\.b\.mc\.example\) is not a partner IS proxy",
    ),
    ("cert-from-a-ca", "tls-handshake-failed", r"CERTIFICATE_VERIFY_FAILED"),
    ("no-certificate", "tls-handshake-failed", r"PEER_DID_NOT_RETURN_A_CERTIFICATE"),
    ("tls-1.1", "tls-handshake-failed", r"UNSUPPORTED_PROTOCOL|VERSION"),
    ("plain-tcp", "tls-handshake-failed", r"WRONG_VERSION_NUMBER|HTTP_REQUEST|PACKET_LENGTH"),
]


def sip3_client(case: str, directory: Path, b: SystemConfig) -> ssl.SSLContext | None:
    anchor = directory / "a" / "pki" / "ca.crt"
    if case == "b-is-proxy":
        return client_context(
            trust_anchors=[anchor], cert_file=b.is_proxy.certificate, key_file=b.is_proxy.private_key
        )
    if case == "other-name-from-b-ca":
        cert, key = issue(directory, "b", "gms.b.mc.example")
        return client_context(trust_anchors=[anchor], cert_file=cert, key_file=key)
    if case == "cert-from-a-ca":
        cert, key = issue(directory, "a", b.is_proxy.public_host)  # right name, wrong CA
        return client_context(trust_anchors=[anchor], cert_file=cert, key_file=key)
    if case == "no-certificate":
        return client_context(trust_anchors=[anchor])
    if case == "tls-1.1":
        return tls11_context(anchor, b.is_proxy.certificate, b.is_proxy.private_key)
    assert case == "plain-tcp"
    return None


def test_sip3_accepts_the_partner_is_proxy_certificate(deployment: DeploymentConfig) -> None:
    a, b = deployment.systems
    directory = deployment.source.parent

    async def scenario() -> None:
        async with running(*both(deployment)):
            context = sip3_client("b-is-proxy", directory, b)
            mark = len(audit_lines(a.system.audit_log))
            result = await probe(
                a.is_proxy.sip3_listen,
                options_to_a(a, b),
                context=context,
                server_hostname=a.is_proxy.public_host,
                timeout=STEP,
            )
            assert result.response is not None, result.describe()
            assert result.response.status == 200
            lines = await new_audit_lines(a.system.audit_log, mark, wanted="allowed")
            assert [(line["decision"], line["partner"], line["local"]) for line in lines] == [
                ("allow", "B", "options")
            ]

    run(scenario())


@pytest.mark.parametrize(("case", "reason", "detail"), SIP3_REFUSALS)
def test_sip3_refuses_other_tls_peers_and_audits_it(
    deployment: DeploymentConfig, case: str, reason: str, detail: str
) -> None:
    a, b = deployment.systems
    directory = deployment.source.parent

    async def scenario() -> None:
        async with running(*both(deployment)) as state:
            context = sip3_client(case, directory, b)
            mark = len(audit_lines(a.system.audit_log))
            result: ProbeResult = await probe(
                a.is_proxy.sip3_listen,
                options_to_a(a, b),
                context=context,
                server_hostname=a.is_proxy.public_host,
                timeout=STEP,
            )
            assert result.response is None, result.describe()
            lines = await new_audit_lines(a.system.audit_log, mark, wanted=reason)
            refusals = [line for line in lines if line["reason"] == reason]
            assert len(refusals) == 1, lines
            (line,) = refusals
            assert line["decision"] == "refuse" and line["system"] == "A" and line["side"] == "external"
            assert line["remote"].startswith("127.0.0.1:")
            assert re.search(detail, line["detail"]), line
            assert all(entry["decision"] == "refuse" for entry in lines)
            if reason == "tls-peer-refused":
                # The peer check also names the refused subject.
                assert [entry["peer"] for entry in lines if entry["reason"] == PEER_UNKNOWN] == [
                    "CN=gms.b.mc.example"
                ]
            # Nothing reached the SIP layer, nothing was answered.
            assert state.sip3 == {"A": [], "B": []}
            assert not [e for e in state.events["A"] if e.get("event") == "sip-parse-error"]

    run(scenario())


# ------------------------------------------------------------------ openssl s_client (third-party peer)

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")


async def s_client(a: SystemConfig, b: SystemConfig, *options: str) -> tuple[int | None, bytes, bytes]:
    """Run ``openssl s_client`` against A's SIP-3 port, send an OPTIONS, return (rc, stdout, stderr)
    once a SIP response is complete or the server closed the connection."""
    directory = a.source.parent
    sip3 = a.is_proxy.sip3_listen
    process = await asyncio.create_subprocess_exec(
        "openssl",
        "s_client",
        "-connect",
        f"{sip3.host}:{sip3.port}",
        "-servername",
        a.is_proxy.public_host,
        "-verify_hostname",
        a.is_proxy.public_host,
        "-CAfile",
        str(directory / "pki" / "ca.crt"),
        "-verify_return_error",
        "-quiet",  # implies -ign_eof: s_client waits for the server, not for stdin
        *options,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    framer = StreamFramer()
    output = b""
    try:
        with contextlib.suppress(ConnectionError):
            process.stdin.write(options_to_a(a, b))
            await process.stdin.drain()
        async with asyncio.timeout(STEP):
            while chunk := await process.stdout.read(65536):
                output += chunk
                framer.feed(chunk)
                if framer.next_message() is not None:
                    break
    finally:
        if process.returncode is None:
            process.kill()
        async with asyncio.timeout(STEP):
            await process.wait()
            errors = await process.stderr.read()
    return process.returncode, output, errors


@needs_openssl
@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_openssl_s_client_with_b_certificate_gets_a_sip_answer(
    deployment: DeploymentConfig, version: str
) -> None:
    a, b = deployment.systems

    async def scenario() -> None:
        async with running(*both(deployment)):
            cert = ("-cert", str(b.is_proxy.certificate), "-key", str(b.is_proxy.private_key))
            _, output, errors = await s_client(a, b, version, *cert)
            response = parse_message(output, stream=True)
            assert isinstance(response, SipResponse), errors
            assert response.status == 200
            assert (response.headers.get("Via") or "").startswith(
                f"SIP/2.0/TLS {b.is_proxy.public_host}:{b.is_proxy.sip3_listen.port}"
            )

    run(scenario())


@needs_openssl
@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_openssl_s_client_without_certificate_gets_no_sip_answer(
    deployment: DeploymentConfig, version: str
) -> None:
    a, b = deployment.systems

    async def scenario() -> None:
        async with running(*both(deployment)) as state:
            _, output, _ = await s_client(a, b, version)
            assert b"SIP/2.0" not in output
            assert output == b""
            lines = await new_audit_lines(a.system.audit_log, 0, wanted="tls-handshake-failed")
            assert [line["reason"] for line in lines] == ["tls-handshake-failed"]
            assert state.sip3 == {"A": [], "B": []}

    run(scenario())
