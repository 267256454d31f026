"""``mcic demo``: two MC systems interconnected through their IS proxies, then an attacker.

The demo writes a fresh two-system deployment (``init_deployment``) into a temporary folder,
starts systems A and B in one process on free loopback ports, registers alice@A and bob@B,
sends a MESSAGE alice → bob and checks its delivery, then plays the attacker against A's SIP-3
listener (TS 33.180 11.1.1: the border refuses direct client connections and authenticates the
partner), and reads a B-homed group and its GMK from alice's own GMS, while alice's client is
refused at B's HTTP proxy (``demo_groups.py``, issue 6).
A second phase runs the A↔B link with explicit authentication and SPK protection (a
second deployment, ``init --explicit --spk``, in the ``explicit/`` subfolder): MESSAGEs both ways
carry an EAR signed by the sending MCX server, cross SIP-3 with their identities encrypted and
their MC body signed under the link's SPK (TS 33.180 9.3), and are delivered in clear; then, as
B's IS proxy (its TLS certificate and its copy of the SPK), the attacker sends a forged EAR
(signed with the key of another identity), a replayed EAR (captured from B's traffic) and an
expired EAR, each refused by A's border (TS 33.180 9.6), and a tampered protected body, a body
protected under an unknown SPK-ID and an unprotected body, each refused too.  It prints a table
(scenario, expected, observed) and succeeds only if every row matches.  Every byte the IS proxies
send across SIP-3 is recorded (``DemoRun.sip3_bytes``, ``explicit_sip3_bytes``) for the leak test.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from mcinterconnect.crypto.uid import ntp_seconds
from mcinterconnect.deploy.config import DeploymentConfig, SystemConfig, load_deployment
from mcinterconnect.deploy.demo_groups import explicit_group_row, group_rows
from mcinterconnect.deploy.init import init_deployment
from mcinterconnect.deploy.pki import (
    issue_certificate,
    load_certificate,
    load_private_key,
    write_pem,
    write_private_key,
)
from mcinterconnect.deploy.probe import ProbeResult, probe, probe_request
from mcinterconnect.deploy.runner import RunningSystem, start_system
from mcinterconnect.mcinfo import MCPTT_INFO_TYPE, McpttInfo
from mcinterconnect.protect.ear import (
    EAR_HEADER,
    RequestPayload,
    RequestType,
    Role,
    new_payload,
    sign_ear_header,
)
from mcinterconnect.protect.spk import SpkRing
from mcinterconnect.protect.xmlprotect import is_protected, protect_message
from mcinterconnect.services.client import McClient, ReceivedMessage
from mcinterconnect.services.kms import read_kms
from mcinterconnect.sip.message import SipRequest, SipResponse
from mcinterconnect.sip.parser import SipParseError, StreamFramer, parse_message
from mcinterconnect.tlsprofile import client_context


@dataclass
class Row:
    scenario: str
    expected: str
    observed: str
    ok: bool


@dataclass
class DemoRun:
    """Everything the demo observed."""

    rows: list[Row] = field(default_factory=list)
    sip3_bytes: list[bytes] = field(default_factory=list)
    #: What the HTTP proxies sent across HTTP-3 in the first phase (issue 6 leak test).
    http3_bytes: list[bytes] = field(default_factory=list)
    transport_events: list[dict[str, object]] = field(default_factory=list)
    audit: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    deployment: DeploymentConfig | None = None
    seconds: float = 0.0
    #: The explicit phase (EAR and SPK): its deployment and what its IS proxies sent across SIP-3.
    explicit_deployment: DeploymentConfig | None = None
    explicit_sip3_bytes: list[bytes] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(row.ok for row in self.rows)

    def table(self) -> str:
        headers = ("scenario", "expected", "observed", "")
        lines = [(r.scenario, r.expected, r.observed, "ok" if r.ok else "MISMATCH") for r in self.rows]
        widths = [
            max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(headers)
        ]
        widths[2] = min(widths[2], 90)

        def fmt(cells: tuple[str, ...]) -> str:
            return " | ".join(cell[: widths[i]].ljust(widths[i]) for i, cell in enumerate(cells)).rstrip()

        rule = "-+-".join("-" * width for width in widths)
        return "\n".join([fmt(headers), rule, *(fmt(line) for line in lines)])


async def run_demo(directory: Path, *, timeout: float = 5.0) -> DemoRun:
    """Generate a deployment in ``directory`` (must be empty), run it, return what was observed."""
    started = time.monotonic()
    run = DemoRun()
    init_deployment(directory)
    deployment = load_deployment(directory)
    run.deployment = deployment
    system_a, system_b = deployment.systems
    systems: list[RunningSystem] = []
    clients: list[McClient] = []
    try:
        for config in (system_a, system_b):
            systems.append(
                await start_system(
                    config,
                    log=run.transport_events.append,
                    wire_tap=run.sip3_bytes.append,
                    http_wire_tap=run.http3_bytes.append,
                )
            )
        alice = McClient(
            "sip:alice@a.mc.example",
            system_a.sip_core.client_listen,
            mcx_psi=system_a.mcx_server.psi,
            listen_host=system_a.sip_core.client_listen.host,
            timeout=timeout,
        )
        bob = McClient(
            "sip:bob@b.mc.example",
            system_b.sip_core.client_listen,
            mcx_psi=system_b.mcx_server.psi,
            listen_host=system_b.sip_core.client_listen.host,
            timeout=timeout,
        )
        clients += [alice, bob]
        for client in clients:
            await client.start()
        for client, name in ((alice, "alice@A"), (bob, "bob@B")):
            response = await client.register()
            run.rows.append(
                Row(f"REGISTER {name} at its home SIP core", "200", _status(response), response.status == 200)
            )
        await _message_row(run, alice, bob, timeout)
        await _attacks(run, directory, system_a, system_b, timeout)
        run.rows += [Row(*row) for row in await group_rows(system_a, system_b, timeout=timeout)]
    finally:
        for client in clients:
            await client.close()
        for system in systems:
            run.audit[system.config.system.name] = list(system.audit.recent)
            await system.close()
    await _explicit_phase(run, directory / EXPLICIT_FOLDER, timeout)
    run.seconds = time.monotonic() - started
    return run


#: Where the explicit phase writes its deployment, inside the demo's folder.
EXPLICIT_FOLDER = "explicit"


async def _explicit_phase(run: DemoRun, directory: Path, timeout: float) -> None:
    """A and B with explicit authentication (EAR, TS 33.180 9.6) and SPK protection (9.3): valid
    both ways; forged, replayed, expired EARs; tampered, unknown-SPK and unprotected bodies."""
    init_deployment(directory, explicit=True, spk=True)
    deployment = load_deployment(directory)
    run.explicit_deployment = deployment
    system_a, system_b = deployment.systems
    systems: list[RunningSystem] = []
    clients: list[McClient] = []
    a_sent: list[bytes] = []
    b_sent: list[bytes] = []

    def tap_a(data: bytes) -> None:
        a_sent.append(data)
        run.explicit_sip3_bytes.append(data)

    def tap_b(data: bytes) -> None:
        b_sent.append(data)
        run.explicit_sip3_bytes.append(data)

    try:
        systems.append(await start_system(system_a, log=run.transport_events.append, wire_tap=tap_a))
        systems.append(await start_system(system_b, log=run.transport_events.append, wire_tap=tap_b))
        alice, bob = _client(ALICE, system_a, timeout), _client(BOB, system_b, timeout)
        clients += [alice, bob]
        for client in clients:
            await client.start()
            await client.register()
        scenario = "explicit: MESSAGE alice@A -> bob@B with an EAR of MCX A"
        mark = len(a_sent)
        row, delivered = await _delivery_row(
            scenario, alice, bob, "Evacuate sector 4", border=systems[1], timeout=timeout
        )
        run.rows.append(row)
        run.rows.append(_spk_row(a_sent[mark:], delivered, border=systems[1]))
        scenario = "explicit: MESSAGE bob@B -> alice@A with an EAR of MCX B"
        row, _ = await _delivery_row(
            scenario, bob, alice, "Sector 4 clear", border=systems[0], timeout=timeout
        )
        run.rows.append(row)
        await _ear_attacks(
            run, directory, system_a, system_b, captured=_captured_ear(b_sent), timeout=timeout
        )
        run.rows.append(Row(*await explicit_group_row(system_a, systems[1].http_audits[0], timeout=timeout)))
    finally:
        for client in clients:
            await client.close()
        for system in systems:
            run.audit[f"{system.config.system.name} (explicit)"] = list(system.audit.recent)
            await system.close()


ALICE = "sip:alice@a.mc.example"
BOB = "sip:bob@b.mc.example"


def _client(user: str, home: SystemConfig, timeout: float) -> McClient:
    return McClient(
        user,
        home.sip_core.client_listen,
        mcx_psi=home.mcx_server.psi,
        listen_host=home.sip_core.client_listen.host,
        timeout=timeout,
    )


async def _delivery_row(
    scenario: str, sender: McClient, receiver: McClient, text: str, *, border: RunningSystem, timeout: float
) -> tuple[Row, ReceivedMessage | None]:
    """A MESSAGE that must be delivered after the receiving ``border`` admitted its EAR."""
    mark = len(border.audit.recent)
    response = await sender.send_message(receiver.user, text)
    delivered = None
    with contextlib.suppress(TimeoutError):
        delivered = await asyncio.wait_for(receiver.inbox.get(), timeout)
    admitted = [
        str(line["ear"])
        for line in list(border.audit.recent)[mark:]
        if line.get("decision") == "allow" and line.get("direction") == "inbound" and line.get("ear")
    ]
    observed = _status(response)
    if admitted:
        observed += f"; EAR {admitted[0][:8]} verified"
    if delivered is not None:
        observed += f"; delivered {delivered.text!r} from {delivered.sender}"
    ok = (
        response.status == 200
        and len(admitted) == 1
        and delivered is not None
        and delivered.sender == sender.user
        and delivered.text == text
    )
    return Row(scenario, "200, EAR verified, delivered", observed, ok), delivered


def _spk_row(sent: list[bytes], delivered: ReceivedMessage | None, *, border: RunningSystem) -> Row:
    """The MESSAGE A's border sent across SIP-3 is protected and names nobody in clear; B's border
    verified and decrypted it, and bob read the identities in clear."""
    identities = (ALICE.encode(), BOB.encode())
    requests = [message for message in _messages(sent) if isinstance(message, SipRequest)]
    wire = requests[0] if requests else None
    protected = wire is not None and is_protected(wire) and b"EncryptedData" in wire.body
    hidden = wire is not None and not any(identity in wire.to_bytes().lower() for identity in identities)
    verified = [
        str(line["spk"])
        for line in list(border.audit.recent)
        if line.get("decision") == "allow" and line.get("direction") == "inbound" and line.get("spk")
    ]
    observed = []
    if wire is not None:
        encrypted = wire.body.count(b'type="Encrypted"')
        observed.append(f"{encrypted} IDs encrypted + signed" if protected else "in clear on SIP-3")
        observed.append("none in clear" if hidden else "an ID in clear")
    if verified:
        observed.append(f"SPK {verified[0]} verified")
    if delivered is not None and delivered.sender:
        observed.append(f"bob: {delivered.sender.removeprefix('sip:')}")
    ok = (
        protected
        and hidden
        and bool(verified)
        and delivered is not None
        and (delivered.sender, delivered.target) == (ALICE, BOB)
    )
    scenario = "SPK: that MESSAGE encrypted and signed on SIP-3, in clear at bob"
    return Row(scenario, "protected on SIP-3, verified, identities in clear at bob", "; ".join(observed), ok)


def _messages(sent: list[bytes]) -> list[SipRequest | SipResponse]:
    messages: list[SipRequest | SipResponse] = []
    for data in sent:
        framer = StreamFramer()
        framer.feed(data)
        raw = framer.next_message()
        if raw is None:
            continue
        try:
            message = parse_message(raw, stream=True)
        except SipParseError:
            continue
        if isinstance(message, SipRequest | SipResponse):
            messages.append(message)
    return messages


def _captured_ear(sent: list[bytes]) -> str | None:
    """The MC-EAR of the first request B's IS proxy sent across SIP-3 (what an eavesdropper
    or a faulty partner could replay)."""
    for message in _messages(sent):
        if isinstance(message, SipRequest) and message.headers.get(EAR_HEADER):
            return message.headers.get(EAR_HEADER)
    return None


def _ear_of_b(
    system_b: SystemConfig,
    *,
    target_id: str,
    signer: str,
    request: RequestPayload | None = None,
) -> str:
    """An EAR with B's MCX server as Source ID, signed with the key ``signer`` got from B's KMS
    (provisioned offline here: the attacker stands in for a compromised identity of B)."""
    assert system_b.kms is not None
    kms = read_kms(system_b.kms)
    payload = new_payload(
        source_role=Role.MCX_SERVER,
        source_id=system_b.mcx_server.psi,
        target_role=Role.MCX_SERVER,
        target_id=target_id,
        request=request,
    )
    certificate = kms.certificate
    number = certificate.key_period.number_at(ntp_seconds(payload.time))
    [keys] = kms.provision(signer, [number])
    return sign_ear_header(payload, keys, certificate)


async def _ear_attacks(
    run: DemoRun,
    directory: Path,
    system_a: SystemConfig,
    system_b: SystemConfig,
    *,
    captured: str | None,
    timeout: float,
) -> None:
    """As B's IS proxy (its certificate and its copy of the link's SPK), EARs and protected bodies
    that A's border must refuse; each request looks as B's border sends it (From/To masked, the MC
    body protected under the SPK)."""
    sip3 = system_a.is_proxy.sip3_listen
    host = system_a.is_proxy.public_host
    partner = client_context(
        trust_anchors=[directory / "a" / "pki" / "ca.crt"],
        cert_file=system_b.is_proxy.certificate,
        key_file=system_b.is_proxy.private_key,
    )
    target = system_a.mcx_server.psi
    spk = system_b.agreement(system_a.system.name).spk
    assert spk is not None
    link = SpkRing.load(spk.file, kdf_identity=spk.kdf_identity)

    def request(ear: str | None, info: McpttInfo) -> SipRequest:
        return probe_request(
            "MESSAGE",
            target,
            source=system_b.is_proxy.uri,
            target=target,
            via_host=f"{system_b.is_proxy.public_host}:{system_b.is_proxy.sip3_listen.port}",
            headers=[("P-Asserted-Identity", f"<{system_b.is_proxy.uri}>")]
            + ([(EAR_HEADER, ear)] if ear else []),
            body=info.to_xml(),
            content_type=MCPTT_INFO_TYPE,
        )

    def message(ear: str | None, info: McpttInfo, ring: SpkRing | None = link) -> bytes:
        sent = request(ear, info)
        if ring is not None:
            protect_message(sent, ring.current_keys())
        return sent.to_bytes()

    one_to_one = McpttInfo(request_uri=ALICE, calling_user_id=BOB)
    forged = _ear_of_b(system_b, target_id=target, signer="sip:mallory@b.mc.example")
    result = await probe(
        sip3, message(forged, one_to_one), context=partner, server_hostname=host, timeout=timeout
    )
    run.rows.append(
        _status_row(
            "(e) explicit: forged EAR (key of another identity) -> A's SIP-3", result, 403, "ear-signature"
        )
    )
    result = await probe(
        sip3, message(captured, one_to_one), context=partner, server_hostname=host, timeout=timeout
    )
    run.rows.append(
        _status_row(
            "(e) explicit: replayed EAR captured from B's traffic -> A's SIP-3", result, 403, "ear-replay"
        )
    )
    group = McpttInfo(request_uri=ALICE, calling_user_id=BOB, calling_group_id="sip:fire@b.mc.example")
    expired = _ear_of_b(
        system_b,
        target_id=target,
        signer=system_b.mcx_server.psi,
        request=RequestPayload(RequestType.GROUP, expiry=int(time.time()) - 60),
    )
    result = await probe(
        sip3, message(expired, group), context=partner, server_hostname=host, timeout=timeout
    )
    run.rows.append(
        _status_row(
            "(e) explicit: expired EAR (Request Expiry passed) -> A's SIP-3", result, 403, "ear-expired"
        )
    )
    # SPK (TS 33.180 9.3): each refused before its EAR is even looked at (verify, then decrypt).
    valid = _ear_of_b(system_b, target_id=target, signer=system_b.mcx_server.psi)
    result = await probe(
        sip3, _tampered(message(valid, one_to_one)), context=partner, server_hostname=host, timeout=timeout
    )
    run.rows.append(
        _status_row(
            "(f) SPK: tampered body (a CipherValue byte flipped) -> A's SIP-3", result, 403, "spk-integrity"
        )
    )
    stranger = SpkRing.generate(kdf_identity=link.kdf_identity)
    result = await probe(
        sip3, message(valid, one_to_one, stranger), context=partner, server_hostname=host, timeout=timeout
    )
    run.rows.append(
        _status_row(
            "(f) SPK: body protected under an unknown SPK-ID -> A's SIP-3", result, 403, "spk-unknown"
        )
    )
    result = await probe(
        sip3, message(valid, one_to_one, None), context=partner, server_hostname=host, timeout=timeout
    )
    run.rows.append(
        _status_row(
            "(f) SPK: unprotected MC body while the SPK is required -> A's SIP-3",
            result,
            403,
            "spk-unprotected",
        )
    )


def _tampered(data: bytes) -> bytes:
    """``data`` with one character of the first CipherValue changed (one byte of IV, ciphertext or
    tag): what an element on the path would do to the protected body."""
    start = data.index(b"<xenc:CipherValue>") + len(b"<xenc:CipherValue>") + 20
    flipped = b"B" if data[start : start + 1] != b"B" else b"C"
    return data[:start] + flipped + data[start + 1 :]


async def _message_row(run: DemoRun, alice: McClient, bob: McClient, timeout: float) -> None:
    response = await alice.send_message("sip:bob@b.mc.example", "Fire on level 3, need support")
    delivered = None
    with contextlib.suppress(TimeoutError):
        delivered = await asyncio.wait_for(bob.inbox.get(), timeout)
    observed = _status(response)
    if delivered is not None:
        observed += f"; bob got {delivered.text!r} from {delivered.sender}"
    ok = (
        response.status == 200
        and delivered is not None
        and delivered.sender == "sip:alice@a.mc.example"
        and delivered.text == "Fire on level 3, need support"
    )
    run.rows.append(Row("MESSAGE alice@A -> bob@B across SIP-3", "200, delivered from alice", observed, ok))


async def _attacks(
    run: DemoRun, directory: Path, system_a: SystemConfig, system_b: SystemConfig, timeout: float
) -> None:
    sip3 = system_a.is_proxy.sip3_listen
    host = system_a.is_proxy.public_host
    a_ca = directory / "a" / "pki" / "ca.crt"
    b_cert = system_b.is_proxy.certificate
    b_key = system_b.is_proxy.private_key
    via_b = f"{system_b.is_proxy.public_host}:{system_b.is_proxy.sip3_listen.port}"
    options = probe_request(
        "OPTIONS",
        f"sip:{host}",
        source="sip:intruder@a.mc.example",
        target=f"sip:{host}",
        via_host="10.9.9.9:5061",
        headers=[("P-Asserted-Identity", "<sip:intruder@a.mc.example>")],
    )

    # (a) a client without any certificate, and a client with a certificate of A's own PKI.
    no_cert = client_context(trust_anchors=[a_ca])
    mark = len(run.transport_events)
    result = await probe(sip3, options.to_bytes(), context=no_cert, server_hostname=host, timeout=timeout)
    run.rows.append(
        _refused_row(
            "(a) TLS client without a certificate -> A's SIP-3", result, await _events_since(run, mark)
        )
    )
    own_cert, own_key = _own_client_identity(directory)
    own_client = client_context(trust_anchors=[a_ca], cert_file=own_cert, key_file=own_key)
    mark = len(run.transport_events)
    result = await probe(sip3, options.to_bytes(), context=own_client, server_hostname=host, timeout=timeout)
    run.rows.append(
        _refused_row(
            "(a) MC client with a certificate of A's own CA -> A's SIP-3",
            result,
            await _events_since(run, mark),
        )
    )

    partner = client_context(trust_anchors=[a_ca], cert_file=b_cert, key_file=b_key)
    # (b) the partner's certificate, but a REGISTER: clients never register across the border.
    register = probe_request(
        "REGISTER",
        "sip:a.mc.example",
        source="sip:bob@b.mc.example",
        target="sip:bob@b.mc.example",
        via_host=via_b,
        headers=[("Contact", "<sip:bob@10.9.9.9:5061;transport=tls>"), ("Expires", "600")],
    )
    result = await probe(sip3, register.to_bytes(), context=partner, server_hostname=host, timeout=timeout)
    run.rows.append(
        _status_row("(b) partner certificate, REGISTER over SIP-3", result, 403, "register-refused")
    )

    # (c) a request from B whose source identity claims A's own domain.
    body = McpttInfo(
        request_uri="sip:alice@a.mc.example", calling_user_id="sip:mallory@b.mc.example"
    ).to_xml()
    spoofed = probe_request(
        "MESSAGE",
        system_a.mcx_server.psi,
        source="sip:mallory@a.mc.example",
        target="sip:alice@a.mc.example",
        via_host=via_b,
        headers=[("P-Asserted-Identity", "<sip:mallory@a.mc.example>")],
        body=body,
        content_type=MCPTT_INFO_TYPE,
    )
    result = await probe(sip3, spoofed.to_bytes(), context=partner, server_hostname=host, timeout=timeout)
    run.rows.append(
        _status_row(
            "(c) from B, source claims A's domain (P-Asserted-Identity)", result, 403, "source-spoofed"
        )
    )
    body = McpttInfo(request_uri="sip:alice@a.mc.example", calling_user_id="sip:bob@a.mc.example").to_xml()
    spoofed_body = probe_request(
        "MESSAGE",
        system_a.mcx_server.psi,
        source="sip:isproxy@b.mc.example",
        target="sip:alice@a.mc.example",
        via_host=via_b,
        headers=[("P-Asserted-Identity", "<sip:isproxy@b.mc.example>")],
        body=body,
        content_type=MCPTT_INFO_TYPE,
    )
    result = await probe(
        sip3, spoofed_body.to_bytes(), context=partner, server_hostname=host, timeout=timeout
    )
    run.rows.append(
        _status_row(
            "(c) from B, calling user claims A's domain (mcptt-info)", result, 403, "calling-user-spoofed"
        )
    )

    # (d) plain TCP to the SIP-3 port.
    mark = len(run.transport_events)
    result = await probe(sip3, options.to_bytes(), timeout=timeout)
    run.rows.append(
        _refused_row("(d) plain TCP (no TLS) -> A's SIP-3", result, await _events_since(run, mark))
    )


async def _events_since(run: DemoRun, mark: int) -> list[dict[str, object]]:
    """Transport events logged since ``mark`` (the server may log just after the client gives up)."""
    for _ in range(50):
        events = run.transport_events[mark:]
        if any(str(event.get("event", "")).startswith("tls-") for event in events):
            return events
        await asyncio.sleep(0.01)
    return run.transport_events[mark:]


def _own_client_identity(directory: Path) -> tuple[Path, Path]:
    """A certificate that A's own CA issued to one of A's clients (as a stolen device would hold)."""
    ca_cert = load_certificate(directory / "a" / "pki" / "ca.crt")
    ca_key = load_private_key(directory / "a" / "pki" / "ca.key")
    cert, key = issue_certificate(
        ca_cert,
        ca_key,
        ["alice-device.a.mc.example"],
        common_name="alice-device.a.mc.example",
        days=1,
        server=False,
        client=True,
    )
    folder = directory / "attacker"
    folder.mkdir(exist_ok=True)
    write_pem(folder / "client.crt", cert)
    write_private_key(folder / "client.key", key)
    return folder / "client.crt", folder / "client.key"


def _status(response: SipResponse) -> str:
    return f"{response.status} {response.reason}"


def _refused_row(scenario: str, result: ProbeResult, server_events: list[dict[str, object]]) -> Row:
    """A connection the border must refuse before any SIP: what the probe saw, and why the server refused."""
    refused = result.response is None
    reasons = [
        str(event.get("reason")) for event in server_events if str(event.get("event", "")).startswith("tls-")
    ]
    seen = "no SIP answer" if result.response is None else result.describe()
    observed = f"{seen}; server: {reasons[-1]}" if reasons else result.describe()
    return Row(scenario, "refused in the TLS handshake", observed, refused and bool(reasons))


_WARNING_RULE = re.compile(r'^399 \S+ "(?P<code>\d{3}) [^"(]*\((?P<rule>[a-z0-9-]+): ')


def _status_row(scenario: str, result: ProbeResult, status: int, reason: str) -> Row:
    """A refusal the border must answer: the status, and the rule named in the Warning."""
    response = result.response
    observed = result.describe()
    ok = False
    if response is not None:
        warning = response.headers.get("Warning") or ""
        match = _WARNING_RULE.match(warning)
        rule = match.group("rule") if match else "no rule named"
        code = f" {match.group('code')}" if match else ""
        observed = f"{response.status} {response.reason}; Warning {warning[:3]}{code} rule {rule}"
        ok = response.status == status and rule == reason
    return Row(scenario, f"{status} + Warning 399 ({reason})", observed, ok)


def demo_main(keep: Path | None = None, *, printer: Callable[[str], None] = print) -> int:
    """Run the demo, print the table; 0 when every row matches."""
    directory = keep or Path(tempfile.mkdtemp(prefix="mcic-demo-"))
    try:
        run = asyncio.run(_bounded(run_demo(directory), 60.0))
    finally:
        if keep is None:
            shutil.rmtree(directory, ignore_errors=True)
    printer(run.table())
    for name, entries in run.audit.items():
        refused = sum(1 for entry in entries if entry.get("decision") == "refuse")
        printer(f"audit {name}: {len(entries)} decisions, {refused} refusals")
    printer(
        f"{'all scenarios as expected' if run.ok else 'SOME SCENARIOS DID NOT MATCH'} in {run.seconds:.1f} s"
    )
    return 0 if run.ok else 1


async def _bounded(work: Awaitable[DemoRun], seconds: float) -> DemoRun:
    async with asyncio.timeout(seconds):
        return await work


__all__ = ["DemoRun", "Row", "demo_main", "run_demo"]
