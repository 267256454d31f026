"""SPK protection of SIP-3 at the IS proxies (TS 33.180 9.1, 9.3; WA-SP-13/14), over real sockets.

Each test writes a fresh ``init_deployment(..., spk=True)`` (implicit authentication, one SPK
shared by A and B, required both ways) and starts systems with ``start_system`` inside its own
bounded ``asyncio.run``.  Attacks are played as B's IS proxy (its TLS certificate and its copy of
the SPK file), so every refusal crosses real TLS and leaves one audit line; a MESSAGE that A
admits is answered 480 (alice is not registered), which proves it was forwarded inside.  The
response paths and the exit-point refusals are exercised on the sans-IO core, where a response
can be fed directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import secrets
import time
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import pytest

from mcic_helpers import mcic
from mcinterconnect.border.audit import AuditLog
from mcinterconnect.border.isproxy import Arrival, IsProxy
from mcinterconnect.border.sealing import Sealer
from mcinterconnect.border.spkprotection import DETAIL_WITHHELD
from mcinterconnect.border.topology import Side
from mcinterconnect.crypto.keyids import Purpose, new_key_id
from mcinterconnect.deploy.config import ConfigError, DeploymentConfig, SystemConfig, load_deployment
from mcinterconnect.deploy.init import init_deployment
from mcinterconnect.deploy.probe import probe, probe_request
from mcinterconnect.deploy.runner import RunningSystem, StartError, build_border, start_system
from mcinterconnect.mcinfo import MCPTT_INFO_TYPE, McpttInfo, find_mcptt_info
from mcinterconnect.protect.spk import SpkRing
from mcinterconnect.protect.xmlprotect import SIGNED_TYPE, XmlKeys, is_protected, protect_message
from mcinterconnect.services.client import McClient
from mcinterconnect.sip.message import SipMessage, SipRequest, SipResponse, make_response
from mcinterconnect.sip.parser import StreamFramer, parse_message
from mcinterconnect.sip.proxy import response_destination
from mcinterconnect.sip.transport import TransportError
from mcinterconnect.tlsprofile import client_context
from system_helpers import STEP, client
from system_helpers import run as run_bounded

DEADLINE = 25.0
ALICE = "sip:alice@a.mc.example"
BOB = "sip:bob@b.mc.example"
ONE_TO_ONE = McpttInfo(request_uri=ALICE, calling_user_id=BOB)
#: To a user of A who never registers: an admitted MESSAGE is answered 480 at once.
TO_CAROL = McpttInfo(request_uri="sip:carol@a.mc.example", calling_user_id=BOB)


def run(scenario: Coroutine[Any, Any, None]) -> None:
    run_bounded(scenario, DEADLINE)


@pytest.fixture
def deployment(tmp_path: Path) -> DeploymentConfig:
    return load_deployment(init_deployment(tmp_path / "deployment", spk=True))


@contextlib.asynccontextmanager
async def running(
    *configs: SystemConfig, log: list[dict[str, object]] | None = None
) -> AsyncIterator[list[RunningSystem]]:
    systems: list[RunningSystem] = []
    try:
        for config in configs:
            async with asyncio.timeout(STEP):
                systems.append(await start_system(config, log=None if log is None else log.append))
        yield systems
    finally:
        for system in systems:
            async with asyncio.timeout(STEP):
                await system.close()


def ring_of(config: SystemConfig, partner: str) -> SpkRing:
    settings = config.agreement(partner).spk
    assert settings is not None
    return SpkRing.load(settings.file, kdf_identity=settings.kdf_identity)


# ------------------------------------------------------------------ requests as B's IS proxy sends them


def from_b(a: SystemConfig, b: SystemConfig, info: McpttInfo = ONE_TO_ONE) -> SipRequest:
    """A MESSAGE as B's exit point sends it: B's asserted identity, From/To masked, body in clear."""
    return probe_request(
        "MESSAGE",
        a.mcx_server.psi,
        source=b.is_proxy.uri,
        target=a.mcx_server.psi,
        via_host=f"{b.is_proxy.public_host}:{b.is_proxy.sip3_listen.port}",
        headers=[("P-Asserted-Identity", f"<{b.is_proxy.uri}>")],
        body=info.to_xml(),
        content_type=MCPTT_INFO_TYPE,
    )


def protected(request: SipRequest, keys: XmlKeys, **options: bool) -> SipRequest:
    protect_message(request, keys, **options)
    return request


async def send_as_b(a: SystemConfig, b: SystemConfig, payload: bytes) -> SipResponse:
    context = client_context(
        trust_anchors=[a.source.parent / "pki" / "ca.crt"],
        cert_file=b.is_proxy.certificate,
        key_file=b.is_proxy.private_key,
    )
    result = await probe(
        a.is_proxy.sip3_listen, payload, context=context, server_hostname=a.is_proxy.public_host, timeout=STEP
    )
    assert result.response is not None, result.describe()
    return result.response


def flip_cipher_value(data: bytes) -> bytes:
    start = data.index(b"<xenc:CipherValue>") + len(b"<xenc:CipherValue>") + 17
    return data[:start] + (b"A" if data[start : start + 1] != b"A" else b"B") + data[start + 1 :]


def refusal_case(case: str, a: SystemConfig, b: SystemConfig) -> bytes:
    """The bytes B's IS proxy sends for each refusal case."""
    ring = ring_of(b, "A")
    keys = ring.current_keys()
    if case == "unprotected":
        return from_b(a, b).to_bytes()
    if case == "encrypted-not-signed":
        return protected(from_b(a, b), keys, sign=False).to_bytes()
    if case == "tampered":
        return flip_cipher_value(protected(from_b(a, b), keys).to_bytes())
    if case == "unknown-spk-id":
        return protected(from_b(a, b), SpkRing.generate(ring.kdf_identity).current_keys()).to_bytes()
    if case == "csk-key-id":  # right key bytes, but a key ID tagged CSK (2)
        wrong = XmlKeys.derive(ring.current.key, new_key_id(Purpose.CSK), ring.kdf_identity)
        return protected(from_b(a, b), wrong).to_bytes()
    if case == "other-kdf-identity":  # same SPK and SPK-ID, another P0: the signature fails
        other = XmlKeys.derive(ring.current.key, ring.current.key_id, "b.mc.example")
        return protected(from_b(a, b), other).to_bytes()
    if case == "wrong-confidentiality-key":  # a valid signature over content nobody can decrypt
        mixed = XmlKeys(keys.key_id, secrets.token_bytes(16), keys.integrity)
        return protected(from_b(a, b), mixed).to_bytes()
    assert case == "malformed-signature-body"  # same length, so Content-Length still holds
    data = protected(from_b(a, b), keys).to_bytes()
    return data.replace(b"<ds:SignedInfo><ds:Canon", b"<ds:SignedInfo><ds:Bogus", 1)


#: (case, status, reason, Warning code and text)
REFUSALS = [
    ("unprotected", 403, "spk-unprotected", "925 SPK protection required"),
    ("encrypted-not-signed", 403, "spk-unprotected", "925 SPK protection required"),
    ("tampered", 403, "spk-integrity", "921 SPK integrity check failed"),
    ("unknown-spk-id", 403, "spk-unknown", "923 SPK-ID unknown"),
    ("csk-key-id", 403, "spk-key-purpose", "926 key ID is not an SPK-ID"),
    ("other-kdf-identity", 403, "spk-integrity", "921 SPK integrity check failed"),
    ("wrong-confidentiality-key", 403, "spk-decrypt", "922 SPK decryption failed"),
    ("malformed-signature-body", 400, "spk-malformed", "920 SPK protection malformed"),
]


@pytest.mark.parametrize(("case", "status", "reason", "text"), REFUSALS)
def test_every_refusal_over_tls_leaves_one_audit_line_and_forwards_nothing(
    deployment: DeploymentConfig, case: str, status: int, reason: str, text: str
) -> None:
    a, b = deployment.systems

    async def scenario() -> None:
        async with running(a) as (system_a,):
            mark = len(system_a.audit.recent)
            response = await send_as_b(a, b, refusal_case(case, a, b))
            assert response.status == status
            warning = response.headers.get("Warning") or ""
            assert warning.startswith(f'399 isproxy.a.mc.example "{text} ({reason}: '), warning
            lines = list(system_a.audit.recent)[mark:]
            [line] = lines  # one line, a refusal: nothing was forwarded inside
            assert (line["decision"], line["reason"], line["partner"], line["direction"], line["status"]) == (
                "refuse",
                reason,
                "B",
                "inbound",
                status,
            )
            assert str(line["detail"]) in warning
            assert ALICE not in warning and BOB not in warning

    run(scenario())


def test_admitted_protected_request_names_its_spk_id(deployment: DeploymentConfig) -> None:
    a, b = deployment.systems
    ring = ring_of(b, "A")

    async def scenario() -> None:
        async with running(a) as (system_a,):
            mark = len(system_a.audit.recent)
            response = await send_as_b(a, b, protected(from_b(a, b), ring.current_keys()).to_bytes())
            assert response.status == 480  # admitted and forwarded: alice is not registered
            [line] = [x for x in list(system_a.audit.recent)[mark:] if x["decision"] == "allow"]
            assert line["spk"] == ring.current.name

    run(scenario())


def test_optional_spk_admits_unprotected_and_still_checks_protected(deployment: DeploymentConfig) -> None:
    a, b = deployment.systems
    agreement = a.agreement("B")
    assert agreement.spk is not None
    optional = agreement.model_copy(update={"spk": agreement.spk.model_copy(update={"required": False})})
    a = a.model_copy(update={"partner": [optional]})
    ring = ring_of(b, "A")

    async def scenario() -> None:
        async with running(a) as (system_a,):
            mark = len(system_a.audit.recent)
            assert (await send_as_b(a, b, from_b(a, b).to_bytes())).status == 480
            good = protected(from_b(a, b), ring.current_keys()).to_bytes()
            assert (await send_as_b(a, b, good)).status == 480
            assert (await send_as_b(a, b, flip_cipher_value(good))).status == 403
            lines = list(system_a.audit.recent)[mark:]
            assert [(x["decision"], x.get("spk")) for x in lines] == [
                ("allow", None),
                ("allow", ring.current.name),
                ("refuse", None),
            ]
            assert lines[-1]["reason"] == "spk-integrity"

    run(scenario())


def test_policy_refusal_toward_an_spk_partner_withholds_the_detail(deployment: DeploymentConfig) -> None:
    """The detail of a policy check quotes identities the SPK hides: the partner gets the rule only."""
    a, b = deployment.systems
    ring = ring_of(b, "A")
    spoofed = McpttInfo(request_uri=ALICE, calling_user_id="sip:mallory@a.mc.example")

    async def scenario() -> None:
        async with running(a) as (system_a,):
            mark = len(system_a.audit.recent)
            response = await send_as_b(a, b, protected(from_b(a, b, spoofed), ring.current_keys()).to_bytes())
            assert response.status == 403
            warning = response.headers.get("Warning") or ""
            assert f"(calling-user-spoofed: {DETAIL_WITHHELD})" in warning
            assert "mallory" not in warning
            [line] = list(system_a.audit.recent)[mark:]
            assert line["reason"] == "calling-user-spoofed" and "sip:mallory@a.mc.example" in str(
                line["detail"]
            )

    run(scenario())


# ------------------------------------------------------------------ clients, rotation, reload


class AnsweringClient(McClient):
    """A client whose 200 to a MESSAGE carries an mcptt-info body naming itself."""

    async def _reply(self, request: SipRequest, status: int) -> None:
        response = make_response(request, status, to_tag=secrets.token_hex(4))
        if status == 200 and request.method == "MESSAGE":
            response.body = McpttInfo(calling_user_id=self.user, called_party_id=self.user).to_xml()
            response.headers.add("Content-Type", MCPTT_INFO_TYPE)
        with contextlib.suppress(TransportError, ValueError):
            await self._transport.send(response, response_destination(response))


def wire(captured: list[bytes]) -> list[SipMessage]:
    messages: list[SipMessage] = []
    for data in captured:
        framer = StreamFramer()
        framer.feed(data)
        raw = framer.next_message()
        assert raw is not None
        messages.append(parse_message(raw, stream=True))
    return messages


def test_response_bodies_are_protected_across_and_delivered_in_clear(deployment: DeploymentConfig) -> None:
    a, b = deployment.systems
    captured: list[bytes] = []

    async def scenario() -> None:
        systems: list[RunningSystem] = []
        try:
            for config in (a, b):
                systems.append(await start_system(config, wire_tap=captured.append))
            async with client(ALICE, a) as alice, client(BOB, b, cls=AnsweringClient) as bob:
                response = await alice.send_message(BOB, "status?")
                assert response.status == 200
                # alice reads bob's answer in clear: verified, decrypted, the signature body gone.
                assert find_mcptt_info(response) == McpttInfo(calling_user_id=BOB, called_party_id=BOB)
                assert SIGNED_TYPE.encode() not in response.body
                async with asyncio.timeout(STEP):
                    assert (await bob.inbox.get()).sender == ALICE
        finally:
            for system in systems:
                await system.close()

    run(scenario())
    [request, answer] = wire(captured)
    assert isinstance(request, SipRequest) and isinstance(answer, SipResponse) and answer.status == 200
    assert is_protected(request) and is_protected(answer)
    for message in (request, answer):
        assert ALICE.encode() not in message.to_bytes() and BOB.encode() not in message.to_bytes()


async def wait_until(condition: Any, what: str) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_rotation_keeps_the_previous_spk_id_for_the_grace_period_only(deployment: DeploymentConfig) -> None:
    a, b = deployment.systems
    old = ring_of(b, "A")
    directory = a.source.parent.parent

    async def scenario() -> None:
        async with running(a, b) as (system_a, system_b):
            result = await asyncio.to_thread(
                mcic, "spk", "rotate", directory, "--system", "A", "--partner", "B", "--grace", "2"
            )
            assert result.returncode == 0, result.stderr
            new = ring_of(b, "A")
            assert new.current.key_id != old.current.key_id
            [previous] = new.previous
            for system, partner in ((system_a, "B"), (system_b, "A")):
                rings = system.border.spk.rings
                await wait_until(
                    lambda rings=rings, partner=partner: rings[partner].current == new.current,
                    "the rotated SPK file to be used",
                )
            # Real traffic now uses the new SPK, both ways.
            async with client(ALICE, a) as alice, client(BOB, b) as bob:
                assert (await alice.send_message(BOB, "after rotation")).status == 200
                async with asyncio.timeout(STEP):
                    assert (await bob.inbox.get()).text == "after rotation"
                inbound = [x for x in system_b.audit.recent if x.get("direction") == "inbound"]
                assert inbound[-1]["spk"] == new.current.name
            # Within the grace period, a message B protected with the previous SPK is admitted...
            late = protected(from_b(a, b, TO_CAROL), old.current_keys()).to_bytes()
            assert time.time() < previous.until
            assert (await send_as_b(a, b, late)).status == 480
            assert list(system_a.audit.recent)[-1]["spk"] == old.current.name
            # ... and after it, refused with its own reason and one audit line.
            await asyncio.sleep(max(0.0, previous.until - time.time()) + 0.05)
            mark = len(system_a.audit.recent)
            response = await send_as_b(a, b, protected(from_b(a, b, TO_CAROL), old.current_keys()).to_bytes())
            assert response.status == 403
            warning = response.headers.get("Warning") or ""
            assert warning.startswith(
                f'399 isproxy.a.mc.example "924 SPK-ID expired (spk-expired: SPK-ID {old.current.name} '
            )
            [line] = list(system_a.audit.recent)[mark:]
            assert (line["decision"], line["reason"]) == ("refuse", "spk-expired")
            # The new SPK still works.
            assert (
                await send_as_b(a, b, protected(from_b(a, b, TO_CAROL), new.current_keys()).to_bytes())
            ).status == 480

    run(scenario())


def test_an_unreadable_rotated_file_keeps_the_ring_in_use(deployment: DeploymentConfig) -> None:
    a, b = deployment.systems
    ring = ring_of(b, "A")
    settings = a.agreement("B").spk
    assert settings is not None
    events: list[dict[str, object]] = []

    async def scenario() -> None:
        async with running(a, log=events) as (system_a,):
            settings.file.write_text("MCIC-SPK-1\nnot an SPK file\n")
            os.chmod(settings.file, 0o600)
            await wait_until(
                lambda: any(e.get("event") == "spk-reload-failed" for e in events), "the reload to fail"
            )
            [event] = [e for e in events if e.get("event") == "spk-reload-failed"]
            assert event["partner"] == "B" and event["reason"] == "spk-file-format"
            response = await send_as_b(a, b, protected(from_b(a, b), ring.current_keys()).to_bytes())
            assert response.status == 480
            assert system_a.border.spk.rings["B"].current == ring.current

    run(scenario())


def test_start_and_load_refuse_a_missing_or_bad_spk_file(deployment: DeploymentConfig) -> None:
    a, _ = deployment.systems
    settings = a.agreement("B").spk
    assert settings is not None
    settings.file.write_text("MCIC-SPK-1\nkdf-identity a\ncurrent 21223344 AAECAwQFBgcICQoLDA0ODw==\n")
    os.chmod(settings.file, 0o600)

    async def start() -> None:
        with pytest.raises(StartError) as raised:
            await start_system(a, audit_path=a.source.parent / "start.jsonl")
        message = str(raised.value)
        assert message.startswith(f"{a.source}: partner[0].spk: {settings.file}: line 3: ")
        assert "wrong purpose tag" in message and "\n" not in message

    run(start())
    settings.file.unlink()
    with pytest.raises(ConfigError) as raised:
        load_deployment(a.source.parent.parent)
    assert str(raised.value) == f"{a.source}: partner[0].spk.file: file not found: {settings.file}"


# ------------------------------------------------------------------ the sans-IO core: responses, exit


def border_of(config: SystemConfig, audit: io.StringIO) -> IsProxy:
    return build_border(
        config,
        Sealer.from_file(config.is_proxy.sealing_keys),
        AuditLog(audit, system="A", component="is-proxy"),
    )


def internal_message(config: SystemConfig, body: bytes | None = None) -> SipRequest:
    """A MESSAGE from A's MCX server to bob, as it reaches the exit point."""
    host = config.mcx_server.listen
    return probe_request(
        "MESSAGE",
        BOB,
        source=ALICE,
        target=BOB,
        via_host=f"{host.host}:{host.port}",
        transport="TCP",
        headers=[("P-Asserted-Identity", f"<{ALICE}>")],
        body=body if body is not None else McpttInfo(request_uri=BOB, calling_user_id=ALICE).to_xml(),
        content_type=MCPTT_INFO_TYPE,
    )


INSIDE = Arrival(Side.INTERNAL, ("127.0.10.1", 40000))
FROM_B = Arrival(Side.EXTERNAL, ("127.0.0.1", 40001), partner="B")


def test_exit_protects_masks_and_a_failing_response_is_dropped(deployment: DeploymentConfig) -> None:
    a, b = deployment.systems
    audit = io.StringIO()
    border = border_of(a, audit)
    [forward] = border.handle_request(internal_message(a), INSIDE)
    sent = forward.message
    assert isinstance(sent, SipRequest) and is_protected(sent)
    assert (sent.headers.get("From") or "").startswith("<sip:isproxy@a.mc.example>;tag=")
    assert sent.headers.get("To") == "<sip:mcptt-server@b.mc.example>"
    assert ALICE.encode() not in sent.to_bytes() and BOB.encode() not in sent.to_bytes()
    ring = ring_of(b, "A")

    def answer(keys: XmlKeys | None) -> SipResponse:
        response = make_response(sent, 200, to_tag="bt")
        response.body = McpttInfo(calling_user_id=BOB).to_xml()
        response.headers.add("Content-Type", MCPTT_INFO_TYPE)
        if keys is not None:
            protect_message(response, keys)
        return response

    # A protected answer is verified, decrypted and routed inside.
    [back] = border.handle_response(answer(ring.current_keys()), FROM_B)
    assert isinstance(back.message, SipResponse)
    assert find_mcptt_info(back.message) == McpttInfo(calling_user_id=BOB)
    # One under an unknown SPK, a tampered one, and an unprotected one are dropped, each with a line.
    before = len(border.audit.recent)
    assert border.handle_response(answer(SpkRing.generate("a.mc.example").current_keys()), FROM_B) == []
    tampered = answer(ring.current_keys())
    tampered.body = tampered.body.replace(b"<xenc:CipherValue>", b"<xenc:CipherValue>AAAA", 1)
    assert border.handle_response(tampered, FROM_B) == []
    assert border.handle_response(answer(None), FROM_B) == []
    lines = list(border.audit.recent)[before:]
    assert [(x["decision"], x["reason"], x["partner"], x["status"]) for x in lines] == [
        ("drop", "spk-unknown", "B", 200),
        ("drop", "spk-integrity", "B", 200),
        ("drop", "spk-unprotected", "B", 200),
    ]
    assert audit.getvalue().count('"decision":"drop"') == 3


def test_entry_decrypts_for_the_inside_and_protects_the_answer_toward_b(deployment: DeploymentConfig) -> None:
    a, b = deployment.systems
    border = border_of(a, io.StringIO())
    ring = ring_of(b, "A")
    [forward] = border.handle_request(protected(from_b(a, b), ring.current_keys()), FROM_B)
    inside = forward.message
    assert isinstance(inside, SipRequest)
    assert find_mcptt_info(inside) == ONE_TO_ONE and not is_protected(inside)
    response = make_response(inside, 200, to_tag="at")
    response.body = McpttInfo(calling_user_id=ALICE).to_xml()
    response.headers.add("Content-Type", MCPTT_INFO_TYPE)
    [toward_b] = border.handle_response(response, INSIDE)
    assert isinstance(toward_b.message, SipResponse) and is_protected(toward_b.message)
    assert ALICE.encode() not in toward_b.message.body


def test_exit_refuses_what_it_cannot_protect(deployment: DeploymentConfig) -> None:
    a, _ = deployment.systems
    border = border_of(a, io.StringIO())
    request = internal_message(a)
    boundary = "x"
    part = McpttInfo(request_uri=BOB, calling_user_id=ALICE).to_xml()
    request.headers.set("Content-Type", f"multipart/mixed;boundary={boundary}")
    request.body = (
        f"--{boundary}\r\nContent-Type: {MCPTT_INFO_TYPE}\r\n\r\n".encode()
        + part
        + f"\r\n--{boundary}\r\nContent-Type: {SIGNED_TYPE}\r\n\r\n<signatures/>\r\n".encode()
        + f"--{boundary}--\r\n".encode()
    )
    [refusal] = border.handle_request(request, INSIDE)
    response = refusal.message
    assert isinstance(response, SipResponse) and response.status == 400
    warning = response.headers.get("Warning") or ""
    assert '"920 SPK protection malformed (spk-malformed: cannot protect toward B: ' in warning
    [line] = list(border.audit.recent)
    assert (line["decision"], line["reason"], line["direction"]) == ("refuse", "spk-malformed", "outbound")
