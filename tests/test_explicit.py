"""Explicit authentication over real sockets: EARs across SIP-3 with mutual TLS (TS 33.180 9.6).

Each test writes a fresh ``init_deployment(..., explicit=True)`` and starts systems with
``start_system`` inside its own bounded ``asyncio.run``: the MCX servers fetch their ECCSI keys
from their running KMS over HTTPS and sign every request to the partner; the IS proxies verify
and record EAR IDs in the configured replay store (SQLite by default, Redis for the shared
cases, with a real ``redis-server``).  Attacks are played as the partner's IS proxy would send
them (its own TLS certificate) with EARs signed from keys provisioned offline
(``ear_helpers``), so every refusal rule is exercised on the wire and in the audit log.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from ear_helpers import sign_as
from mcinterconnect.deploy.config import DeploymentConfig, SystemConfig, load_deployment
from mcinterconnect.deploy.init import init_deployment
from mcinterconnect.deploy.probe import probe, probe_request
from mcinterconnect.deploy.runner import StartError, start_system
from mcinterconnect.mcinfo import MCPTT_INFO_TYPE, McpttInfo
from mcinterconnect.protect.ear import EAR_HEADER, RequestType
from mcinterconnect.sip.message import Headers, SipRequest, SipResponse, make_response
from mcinterconnect.sip.parser import StreamFramer, parse_message
from mcinterconnect.sip.proxy import MAGIC_COOKIE
from mcinterconnect.sip.transport import Address
from mcinterconnect.sip.uri import NameAddr
from mcinterconnect.tlsprofile import client_context
from ports import free_port
from redis_helpers import needs_redis_server, redis_server
from system_helpers import STEP, Running, audit_lines, client, running
from system_helpers import run as run_bounded

__all__ = ["redis_server"]  # the session fixture, imported for the Redis tests

DEADLINE = 25.0
ALICE = "sip:alice@a.mc.example"
BOB = "sip:bob@b.mc.example"


def run(scenario: Coroutine[Any, Any, None]) -> None:
    run_bounded(scenario, DEADLINE)


@pytest.fixture
def deployment(tmp_path: Path) -> DeploymentConfig:
    return load_deployment(init_deployment(tmp_path / "deployment", explicit=True))


async def wait_for_line(path: Path, mark: int, reason: str) -> dict[str, Any]:
    """The first audit line with ``reason`` written after ``mark`` (bounded wait)."""
    for _ in range(250):
        for line in audit_lines(path)[mark:]:
            if line["reason"] == reason:
                return line
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {reason!r} line in {audit_lines(path)[mark:]}")


async def wait_for_count(path: Path, reason: str, count: int) -> list[dict[str, Any]]:
    for _ in range(250):
        lines = [line for line in audit_lines(path) if line["reason"] == reason]
        if len(lines) >= count:
            return lines
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {count} {reason!r} lines")


# ------------------------------------------------------------------ requests as B's IS proxy sends them


def from_b(a: SystemConfig, b: SystemConfig, *, ear: str | None, info: McpttInfo | None = None) -> bytes:
    """A MESSAGE as B's exit point sends it to A's SIP-3 listener (B's asserted identity)."""
    headers = [("P-Asserted-Identity", f"<{b.is_proxy.uri}>")]
    if ear is not None:
        headers.append((EAR_HEADER, ear))
    body = (info or McpttInfo(request_uri=ALICE, calling_user_id=BOB)).to_xml()
    return probe_request(
        "MESSAGE",
        a.mcx_server.psi,
        source=BOB,
        target=ALICE,
        via_host=f"{b.is_proxy.public_host}:{b.is_proxy.sip3_listen.port}",
        headers=headers,
        body=body,
        content_type=MCPTT_INFO_TYPE,
    ).to_bytes()


async def send_as_b(
    a: SystemConfig, b: SystemConfig, payload: bytes, *, to: Address | None = None
) -> SipResponse:
    context = client_context(
        trust_anchors=[a.source.parent / "pki" / "ca.crt"],
        cert_file=b.is_proxy.certificate,
        key_file=b.is_proxy.private_key,
    )
    result = await probe(
        to or a.is_proxy.sip3_listen,
        payload,
        context=context,
        server_hostname=a.is_proxy.public_host,
        timeout=STEP,
    )
    assert result.response is not None, result.describe()
    return result.response


def ear_from_b(a: SystemConfig, b: SystemConfig, **arguments: Any) -> str:
    values: dict[str, Any] = {"target_id": a.mcx_server.psi}
    values.update(arguments)
    return sign_as(b, **values)


GROUP_OF_B = McpttInfo(request_uri=ALICE, calling_user_id=BOB, calling_group_id="sip:fire@b.mc.example")

#: (case, reason, Warning code and text): each refusal rule of WA-SP-26, built by ``attack``.
RULES = [
    ("missing", "ear-missing", "901 EAR missing"),
    ("malformed", "ear-malformed", "902 EAR malformed"),
    ("stale", "ear-stale", "906 EAR outside time window"),
    ("source-of-another-domain", "ear-source", "904 EAR source not allowed"),
    ("target-of-another-system", "ear-target", "905 EAR target mismatch"),
    ("request-type-inconsistent", "ear-request-type", "908 EAR request type not allowed"),
    ("expired", "ear-expired", "909 EAR expired"),
    ("bad-signature", "ear-signature", "903 EAR signature invalid"),
    ("replay", "ear-replay", "907 EAR replayed"),
]


def attack(case: str, a: SystemConfig, b: SystemConfig) -> tuple[str | None, McpttInfo | None]:
    now = time.time()
    if case == "missing":
        return None, None
    if case == "malformed":
        return "bm90IGFuIEVBUg==", None
    if case == "stale":
        return ear_from_b(a, b, now=now - 120), None
    if case == "source-of-another-domain":
        return ear_from_b(a, b, source_id="sip:mcptt-server@c.mc.example"), None
    if case == "target-of-another-system":
        return ear_from_b(a, b, target_id="sip:mcptt-server@c.mc.example"), None
    if case == "request-type-inconsistent":  # GROUP on one-to-one short data
        return ear_from_b(a, b, request_type=RequestType.GROUP), None
    if case == "expired":
        return ear_from_b(a, b, request_type=RequestType.GROUP, expiry=int(now) - 5), GROUP_OF_B
    if case == "bad-signature":  # signed with the key of another identity of B
        return ear_from_b(a, b, signer_uri="sip:mallory@b.mc.example"), None
    assert case == "replay"
    return ear_from_b(a, b), None


@pytest.mark.parametrize(("case", "reason", "text"), RULES)
def test_every_refusal_rule_over_tls(deployment: DeploymentConfig, case: str, reason: str, text: str) -> None:
    a, b = deployment.systems

    async def scenario() -> None:
        async with running(("A", a)) as state:
            ear, info = attack(case, a, b)
            if case == "replay":
                first = await send_as_b(a, b, from_b(a, b, ear=ear, info=info))
                assert first.status == 480  # admitted: alice is simply not registered
                await wait_for_line(a.system.audit_log, 0, "allowed")
            mark = len(audit_lines(a.system.audit_log))
            response = await send_as_b(a, b, from_b(a, b, ear=ear, info=info))
            assert response.status == 403
            warning = response.headers.get("Warning") or ""
            assert warning.startswith(f'399 isproxy.a.mc.example "{text} ({reason}: '), warning
            line = await wait_for_line(a.system.audit_log, mark, reason)
            assert (line["decision"], line["partner"], line["direction"], line["status"]) == (
                "refuse",
                "B",
                "inbound",
                403,
            )
            assert line["detail"] in warning
            # Nothing refused reached A's inside: no allow line after the mark.
            assert not [x for x in audit_lines(a.system.audit_log)[mark:] if x["decision"] == "allow"]
            assert state.sip3["A"] and all(
                b"MESSAGE" not in data.split(b"\r\n", 1)[0] for data in state.sip3["A"]
            )

    run(scenario())


# ------------------------------------------------------------------ admitted end to end


def test_valid_ear_admitted_end_to_end(deployment: DeploymentConfig) -> None:
    a, b = deployment.systems

    async def scenario() -> None:
        async with running(("A", a), ("B", b)) as state, client(ALICE, a) as alice, client(BOB, b) as bob:
            response = await alice.send_message(BOB, "signed by MCX A")
            assert response.status == 200, response
            async with asyncio.timeout(STEP):
                got = await bob.inbox.get()
            assert (got.sender, got.text) == (ALICE, "signed by MCX A")
            response = await bob.send_message(ALICE, "signed by MCX B")
            assert response.status == 200, response
            async with asyncio.timeout(STEP):
                got = await alice.inbox.get()
            assert (got.sender, got.text) == (BOB, "signed by MCX B")
            # Each request crossed SIP-3 with an EAR; each border admitted it after the replay step.
            for name in ("A", "B"):
                [request] = [data for data in state.sip3[name] if data.startswith(b"MESSAGE ")]
                assert b"\r\nMC-EAR: " in request
                [inbound] = [line for line in state[name].audit.recent if line.get("direction") == "inbound"]
                assert (inbound["decision"], inbound["reason"]) == ("allow", "allowed")
                assert len(str(inbound["ear"])) == 36

    run(scenario())


# ------------------------------------------------------------------ replay stores


def test_replay_after_is_proxy_restart_with_sqlite_store(deployment: DeploymentConfig) -> None:
    a, b = deployment.systems
    assert a.is_proxy.replay_store == "sqlite:replay.db"
    ear = ear_from_b(a, b)

    async def scenario() -> None:
        state = Running()
        try:
            await state.start("A", a)
            assert (await send_as_b(a, b, from_b(a, b, ear=ear))).status == 480
            await state.stop("A")
            assert (a.source.parent / "replay.db").is_file()
            mark = len(audit_lines(a.system.audit_log))
            await state.start("A", a)
            response = await send_as_b(a, b, from_b(a, b, ear=ear))
            assert response.status == 403
            assert "907 EAR replayed (ear-replay: " in (response.headers.get("Warning") or "")
            await wait_for_line(a.system.audit_log, mark, "ear-replay")
        finally:
            for system in state.systems.values():
                await system.close()

    run(scenario())


def second_instance(a: SystemConfig, replay_store: str) -> SystemConfig:
    """Another instance of A's border (same keys and certificates, own listeners and audit log)."""
    host = a.mcx_server.listen.host
    sip3_host = a.is_proxy.sip3_listen.host
    assert a.kms is not None
    return a.model_copy(
        update={
            "is_proxy": a.is_proxy.model_copy(
                update={
                    "replay_store": replay_store,
                    "internal_listen": Address("tcp", host, free_port(host)),
                    "sip3_listen": Address("tls", sip3_host, free_port(sip3_host)),
                }
            ),
            "system": a.system.model_copy(
                update={"audit_log": a.system.audit_log.with_name("audit-2.jsonl")}
            ),
            "sip_core": a.sip_core.model_copy(
                update={
                    "client_listen": Address("tcp", host, free_port(host)),
                    "server_listen": Address("tcp", host, free_port(host)),
                }
            ),
            "mcx_server": a.mcx_server.model_copy(update={"listen": Address("tcp", host, free_port(host))}),
            "kms": a.kms.model_copy(update={"listen": Address("tcp", host, free_port(host))}),
            # the HTTP-3 border and the GMS take no part here: not a second copy of them
            "http_proxy": None,
            "gms": None,
        }
    )


@needs_redis_server
def test_replay_to_a_second_instance_sharing_the_redis_store(
    deployment: DeploymentConfig, redis_server: Any
) -> None:
    a, b = deployment.systems
    first = a.model_copy(
        update={"is_proxy": a.is_proxy.model_copy(update={"replay_store": redis_server.url})}
    )
    second = second_instance(a, redis_server.url)
    ear = ear_from_b(a, b)

    async def scenario() -> None:
        async with running(("A1", first), ("A2", second)):
            assert (await send_as_b(a, b, from_b(a, b, ear=ear))).status == 480
            response = await send_as_b(a, b, from_b(a, b, ear=ear), to=second.is_proxy.sip3_listen)
            assert response.status == 403
            assert "907 EAR replayed (ear-replay: " in (response.headers.get("Warning") or "")
            line = await wait_for_line(second.system.audit_log, 0, "ear-replay")
            assert line["system"] == "A"
            assert not (a.source.parent / "replay.db").exists()  # Redis only

    run(scenario())


def test_redis_unreachable_fails_closed(deployment: DeploymentConfig) -> None:
    a, b = deployment.systems
    url = f"redis://127.0.0.1:{free_port('127.0.0.1')}/0"  # nothing listens there
    unreachable = a.model_copy(update={"is_proxy": a.is_proxy.model_copy(update={"replay_store": url})})

    async def scenario() -> None:
        async with running(("A", unreachable)) as state:
            response = await send_as_b(a, b, from_b(a, b, ear=ear_from_b(a, b)))
            assert response.status == 403
            warning = response.headers.get("Warning") or ""
            assert warning.startswith(
                '399 isproxy.a.mc.example "910 EAR replay store unavailable (ear-replay-store-unavailable: '
            ), warning
            line = await wait_for_line(a.system.audit_log, 0, "ear-replay-store-unavailable")
            assert line["detail"].startswith(f"redis unreachable: {url}")
            assert line["decision"] == "refuse"
            # Fail closed: nothing was forwarded inside, nothing allowed.
            assert not [x for x in state["A"].audit.recent if x["decision"] == "allow"]

    run(scenario())


# ------------------------------------------------------------------ Request Expiry: BYE both ways


class SipPeer:
    """A bare SIP UA over TCP for the expiry test: every message it receives is queued with the
    writer of the connection it came on."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.port = free_port(host)
        self.received: asyncio.Queue[tuple[SipRequest | SipResponse, asyncio.StreamWriter]] = asyncio.Queue()
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)

    async def connect(self, address: Address) -> asyncio.StreamWriter:
        reader, writer = await asyncio.open_connection(address.host, address.port)
        self._tasks.append(asyncio.create_task(self._read(reader, writer)))
        return writer

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._read(reader, writer)

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        framer = StreamFramer()
        while data := await reader.read(65536):
            framer.feed(data)
            while (raw := framer.next_message()) is not None:
                message = parse_message(raw, stream=True)
                assert isinstance(message, SipRequest | SipResponse)
                await self.received.put((message, writer))

    async def next(self, kind: str) -> tuple[Any, asyncio.StreamWriter]:
        async with asyncio.timeout(STEP + 5):
            while True:
                message, writer = await self.received.get()
                name = message.method if isinstance(message, SipRequest) else str(message.status)
                if name == kind:
                    return message, writer

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def test_request_expiry_releases_the_dialog_both_ways(deployment: DeploymentConfig) -> None:
    a, b = deployment.systems
    host_a, host_b = a.mcx_server.listen.host, b.mcx_server.listen.host

    async def scenario() -> None:
        caller, callee = SipPeer(host_a), SipPeer(host_b)
        await caller.start()
        await callee.start()
        # B's PSI is routed to the stand-in callee (an MC client would sit behind B's servers).
        routes = {b.mcx_server.psi: Address("tcp", host_b, callee.port)}
        b_routed = b.model_copy(update={"is_proxy": b.is_proxy.model_copy(update={"routes": routes})})
        try:
            async with running(("A", a), ("B", b_routed)) as state:
                expiry = int(time.time()) + 3
                ear = sign_as(a, target_id=b.mcx_server.psi, request_type=RequestType.GROUP, expiry=expiry)
                info = McpttInfo(
                    request_uri=BOB, calling_user_id=ALICE, calling_group_id="sip:fire@a.mc.example"
                )
                call_id = f"{secrets.token_hex(8)}@caller"
                invite = SipRequest(
                    headers=Headers(
                        [
                            ("Via", f"SIP/2.0/TCP {host_a}:{caller.port};branch={MAGIC_COOKIE}c1;rport"),
                            ("Max-Forwards", "70"),
                            ("From", f"<{ALICE}>;tag=caller1"),
                            ("To", f"<{BOB}>"),
                            ("Call-ID", call_id),
                            ("CSeq", "7 INVITE"),
                            ("P-Asserted-Identity", f"<{ALICE}>"),
                            ("Contact", f"<sip:alice@{host_a}:{caller.port};transport=tcp>"),
                            (EAR_HEADER, ear),
                            ("Content-Type", MCPTT_INFO_TYPE),
                        ]
                    ),
                    body=info.to_xml(),
                    method="INVITE",
                    uri=BOB,
                )
                out = await caller.connect(a.is_proxy.internal_listen)
                out.write(invite.to_bytes())
                await out.drain()
                received, to_border = await callee.next("INVITE")
                ok = make_response(received, 200, to_tag="callee1")
                ok.headers.add("Contact", f"<sip:bob@{host_b}:{callee.port};transport=tcp>")
                for value in received.headers.get_all("Record-Route"):
                    ok.headers.add("Record-Route", value)
                to_border.write(ok.to_bytes())
                await to_border.drain()
                answer, _ = await caller.next("200")
                assert answer.call_id == call_id
                assert time.time() < expiry  # the call is up before its expiry...
                bye_callee, writer_b = await callee.next("BYE")
                bye_caller, writer_a = await caller.next("BYE")
                assert time.time() >= expiry  # ...and released once it passed
                # Inside B: the callee's own dialog, as it knows it.
                assert bye_callee.call_id == received.call_id != call_id
                assert bye_callee.uri == f"sip:bob@{host_b}:{callee.port};transport=tcp"
                assert NameAddr.parse(bye_callee.headers.get("From")).tag == "caller1"
                assert NameAddr.parse(bye_callee.headers.get("To")).tag == "callee1"
                # Inside A: the caller's own dialog, routed back through both borders.
                assert bye_caller.call_id == call_id
                assert bye_caller.uri == f"sip:alice@{host_a}:{caller.port};transport=tcp"
                assert NameAddr.parse(bye_caller.headers.get("From")).tag == "callee1"
                assert NameAddr.parse(bye_caller.headers.get("To")).tag == "caller1"
                # The BYE toward A crossed SIP-3 with the partner-side Call-ID only.
                [crossing] = [data for data in state.sip3["B"] if data.startswith(b"BYE ")]
                assert received.call_id.encode() not in crossing and call_id.encode() not in crossing
                release = await wait_for_line(b.system.audit_log, 0, "ear-expired")
                assert (release["decision"], release["partner"], release["method"]) == ("release", "A", "BYE")
                assert "BYE toward inside and A" in release["detail"]
                for bye, writer in ((bye_callee, writer_b), (bye_caller, writer_a)):
                    writer.write(make_response(bye, 200).to_bytes())
                    await writer.drain()
                answered = await wait_for_count(b.system.audit_log, "release-answered", 2)
                assert [line["status"] for line in answered] == [200, 200]
        finally:
            await caller.close()
            await callee.close()

    run(scenario())


# ------------------------------------------------------------------ the receiving MCX server verifies too


@pytest.mark.parametrize(("target", "status"), [("sip:gms@a.mc.example", 403), (None, 480)])
def test_mcx_verify_ear_refuses_a_wrong_target(
    deployment: DeploymentConfig, target: str | None, status: int
) -> None:
    a, b = deployment.systems
    verifying = a.model_copy(update={"mcx_server": a.mcx_server.model_copy(update={"verify_ear": True})})

    async def scenario() -> None:
        async with running(("A", verifying)):
            ear = ear_from_b(a, b, target_id=target or a.mcx_server.psi)
            response = await send_as_b(a, b, from_b(a, b, ear=ear))
            assert response.status == status
            # The border admitted it either way (its target rule is the domain).
            await wait_for_line(a.system.audit_log, 0, "allowed")
            if status == 403:
                assert (response.headers.get("Warning") or "").startswith(
                    '399 a.mc.example "905 EAR target mismatch (ear-target: Target ID '
                    "'sip:gms@a.mc.example' is not the receiving entity 'sip:mcptt-server@a.mc.example')"
                )

    run(scenario())


# ------------------------------------------------------------------ start-up fails loudly


def test_start_fails_when_the_replay_store_cannot_be_opened(deployment: DeploymentConfig) -> None:
    a, _ = deployment.systems
    broken = a.model_copy(
        update={
            "is_proxy": a.is_proxy.model_copy(update={"replay_store": "sqlite:/proc/mcic-none/replay.db"})
        }
    )

    async def scenario() -> None:
        with pytest.raises(StartError, match=r"system\.toml: is_proxy\.replay_store: sqlite:/proc/mcic-none"):
            await start_system(broken)
        # nothing is left listening
        with pytest.raises(OSError):
            await asyncio.open_connection(a.is_proxy.internal_listen.host, a.is_proxy.internal_listen.port)

    run(scenario())


def test_start_fails_without_the_mcx_signing_keys(deployment: DeploymentConfig) -> None:
    a, _ = deployment.systems
    # A certificate of A's CA without the MCX server's PSI as subjectAltName URI: the KMS refuses.
    wrong = a.model_copy(
        update={
            "mcx_server": a.mcx_server.model_copy(
                update={"certificate": a.is_proxy.certificate, "private_key": a.is_proxy.private_key}
            )
        }
    )

    async def scenario() -> None:
        with pytest.raises(
            StartError, match=r"mcx_server: cannot fetch the EAR signing keys from the KMS: .*403"
        ):
            await start_system(wrong)
        assert a.kms is not None
        for address in (a.mcx_server.listen, a.kms.listen):
            with pytest.raises(OSError):
                await asyncio.open_connection(address.host, address.port)

    run(scenario())
