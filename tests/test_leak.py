"""The leak test (ARCHITECTURE.md §5): nothing internal crosses SIP-3.

Every byte the IS proxies send across SIP-3 is recorded (the plaintext inside TLS, by the wire
tap) and searched for what topology hiding must remove (TS 33.180 11.1.1, WA-IC-12): internal
addresses and ports of A and B, internal host names, the clients' Via sent-by, Contact URIs and
Call-IDs, and the client software (User-Agent).  Once over the demo's traffic, once over traffic
generated here by clients that put all of these into their messages.  With SPK protection on the
link (TS 33.180 9.3), the MC identities the SPK hides (calling user, request URI, called party)
must not cross in clear either, while the receiving client reads them in clear.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

from mcinterconnect.deploy.config import DeploymentConfig, SystemConfig, load_deployment
from mcinterconnect.deploy.demo import DemoRun, run_demo
from mcinterconnect.deploy.init import init_deployment
from mcinterconnect.deploy.runner import RunningSystem, start_system
from mcinterconnect.mcinfo import MCPTT_INFO_TYPE, McpttInfo, find_mcptt_info
from mcinterconnect.protect.xmlprotect import is_protected
from mcinterconnect.services.client import McClient
from mcinterconnect.sip.message import SipMessage, SipRequest, SipResponse, make_response
from mcinterconnect.sip.parser import StreamFramer, parse_message
from mcinterconnect.sip.proxy import response_destination
from mcinterconnect.sip.transport import PeerInfo, TransportError
from mcinterconnect.sip.uri import Via

STEP = 5.0
USER_AGENT = "mcic-client"
ALICE = "sip:alice@a.mc.example"
BOB = "sip:bob@b.mc.example"
DISPATCH = "sip:dispatch-7@b.mc.example"


@dataclass(frozen=True)
class Marker:
    """Something that must never cross the border, and why."""

    what: str
    pattern: re.Pattern[bytes]


def literal(what: str, text: str) -> Marker:
    return Marker(what, re.compile(re.escape(text.encode()), re.IGNORECASE))


def port_marker(what: str, port: int) -> Marker:
    # ":5060" but not the start of ":50601".
    return Marker(what, re.compile(rb":" + str(port).encode() + rb"(?!\d)"))


def system_markers(config: SystemConfig) -> list[Marker]:
    """Internal addresses, ports (host:port and :port) and host names of one system."""
    name = config.system.name
    listeners = {
        "sip_core.client_listen": config.sip_core.client_listen,
        "sip_core.server_listen": config.sip_core.server_listen,
        "mcx_server.listen": config.mcx_server.listen,
        "is_proxy.internal_listen": config.is_proxy.internal_listen,
    }
    markers: list[Marker] = []
    for key, address in listeners.items():
        markers += [
            literal(f"{name} {key} host", address.host),
            literal(f"{name} {key} host:port", f"{address.host}:{address.port}"),
            port_marker(f"{name} {key} port", address.port),
        ]
    for address in config.is_proxy.routes.values():
        markers.append(literal(f"{name} is_proxy.routes destination", f"{address.host}:{address.port}"))
    markers += [literal(f"{name} internal host name", host) for host in config.system.internal_hosts]
    return markers


def identity_markers(*identities: str) -> list[Marker]:
    """MC service IDs in clear, with or without the scheme (neither ':' nor '@' is a base64 character,
    so a match can never be a chance inside a CipherValue)."""
    markers: list[Marker] = []
    for identity in identities:
        markers += [literal(f"identity {identity}", identity), literal(f"identity {identity}", identity[4:])]
    return markers


def deployment_markers(deployment: DeploymentConfig) -> list[Marker]:
    markers = [literal("client software (User-Agent)", USER_AGENT)]
    for config in deployment.systems:
        markers += system_markers(config)
    return markers


def leaks(captured: Iterable[bytes], markers: Iterable[Marker]) -> list[str]:
    """Each marker found, with the message and the text around it."""
    found = []
    for index, data in enumerate(captured):
        for marker in markers:
            match = marker.pattern.search(data)
            if match is not None:
                around = data[max(0, match.start() - 60) : match.end() + 60]
                found.append(f"{marker.what} in SIP-3 message {index}: ...{around!r}...")
    return found


def found(captured: Iterable[bytes], markers: Iterable[Marker]) -> set[str]:
    return {marker.what for marker in markers for data in captured if marker.pattern.search(data)}


def parsed(captured: Iterable[bytes]) -> list[SipRequest | SipResponse]:
    """Every captured send is exactly one complete SIP message."""
    messages: list[SipRequest | SipResponse] = []
    for data in captured:
        framer = StreamFramer()
        framer.feed(data)
        raw = framer.next_message()
        assert raw == data, "a wire-tap record is not exactly one message"
        message = parse_message(raw, stream=True)
        assert isinstance(message, SipRequest | SipResponse)
        messages.append(message)
    return messages


def assert_routing_names_only_border(
    messages: list[SipRequest | SipResponse], deployment: DeploymentConfig
) -> None:
    """Requests leave with one Via, of the sending IS proxy's public host; Contacts name a border."""
    public = {config.is_proxy.public_host for config in deployment.systems}
    for message in messages:
        if isinstance(message, SipRequest):
            (via,) = message.vias
            assert Via.parse(via).host in public, via
        for contact in message.headers.get_all("Contact"):
            assert any(f"sip:{host}:" in contact for host in public), contact
        for name in ("Record-Route", "Route"):
            for value in message.headers.get_all(name):
                assert any(f"sip:{host}:" in value for host in public), value
        assert message.headers.get("User-Agent") is None and message.headers.get("Server") is None


# ------------------------------------------------------------------ the demo's traffic


def test_demo_sip3_traffic_leaks_nothing_internal(tmp_path: Path) -> None:
    async def bounded() -> DemoRun:
        async with asyncio.timeout(30):
            return await run_demo(tmp_path / "demo")

    run = asyncio.run(bounded())
    assert run.ok, run.table()
    assert run.deployment is not None
    captured = run.sip3_bytes
    assert captured and all(captured)
    everything = b"".join(captured)
    # What is public does cross: the IS proxies' names and the MESSAGE with its MC body.
    assert b"isproxy.a.mc.example" in everything
    assert b"isproxy.b.mc.example" in everything
    assert re.search(rb"^MESSAGE sip:mcptt-server@b\.mc\.example SIP/2\.0\r\n", everything, re.MULTILINE)
    assert b"Fire on level 3, need support" in everything
    assert b'<mcptt-calling-user-id type="Normal"><mcpttURI>sip:alice@a.mc.example</mcpttURI>' in everything
    assert leaks(captured, deployment_markers(run.deployment)) == []
    assert b"127.0.10." not in everything and b"127.0.20." not in everything
    assert_routing_names_only_border(parsed(captured), run.deployment)
    # The explicit phase (EARs in MC-EAR headers) hides as much.
    assert run.explicit_deployment is not None
    explicit = run.explicit_sip3_bytes
    assert explicit and b"\r\nMC-EAR: " in b"".join(explicit)
    assert leaks(explicit, deployment_markers(run.explicit_deployment)) == []
    assert b"127.0.10." not in b"".join(explicit) and b"127.0.20." not in b"".join(explicit)
    assert_routing_names_only_border(parsed(explicit), run.explicit_deployment)
    # ... and it runs with SPK protection: no user identity crosses in clear, in bodies or headers.
    assert b"EncryptedData" in b"".join(explicit)
    assert leaks(explicit, identity_markers(ALICE, BOB)) == []
    # HTTP-3 (issue 6): the GMSs' requests and answers name no internal address either, and A's
    # requests never name alice (GMS B must not learn A's members).
    http3 = run.http3_bytes
    assert http3 and b"GET /org.openmobilealliance.groups/groups/" in b"".join(http3)
    assert leaks(http3, deployment_markers(run.deployment)) == []
    assert b"127.0.10." not in b"".join(http3) and b"127.0.20." not in b"".join(http3)
    requests = [data for data in http3 if data.startswith(b"GET ")]
    assert requests and not any(b"alice" in data for data in requests)


# ------------------------------------------------------------------ traffic generated here

INTERNAL_HOSTS = {"A": "core-7.a.internal", "B": "mcx-2.b.internal"}


class RevealingClient(McClient):
    """A client that puts everything internal it has into its messages, and remembers it:
    a Contact on its MESSAGEs and 200s, its host name in Call-Info, Server on its responses."""

    def __init__(self, user: str, home: SystemConfig, *, internal_host: str) -> None:
        super().__init__(
            user,
            home.sip_core.client_listen,
            mcx_psi=home.mcx_server.psi,
            listen_host=home.sip_core.client_listen.host,
            timeout=STEP,
        )
        self.internal_host = internal_host
        self.call_ids: list[str] = []
        self.vias: list[str] = []
        self.sent: list[bytes] = []

    def _request(self, method: str, uri: str, to: str) -> SipRequest:
        request = super()._request(method, uri, to)
        self.call_ids.append(request.call_id)
        self.vias.append(request.vias[0])
        if method == "MESSAGE":
            request.headers.add("Contact", f"<{self.contact}>")
            request.headers.add("Call-Info", f"<http://{self.internal_host}/photo.png>;purpose=icon")
        return request

    async def _transact(self, request: SipRequest) -> SipResponse:
        self.sent.append(request.to_bytes())
        return await super()._transact(request)

    async def _reply(self, request: SipRequest, status: int) -> None:
        response = make_response(request, status, to_tag="rv")
        response.headers.add("Contact", f"<{self.contact}>")
        response.headers.add("Server", USER_AGENT)
        response.headers.add("Call-Info", f"<http://{self.internal_host}/photo.png>;purpose=icon")
        with contextlib.suppress(TransportError, ValueError):
            await self._transport.send(response, response_destination(response))

    def markers(self) -> list[Marker]:
        user = self.user
        sent_by = {Via.parse(via).host + f":{Via.parse(via).port}" for via in self.vias}
        return [
            literal(f"{user} Contact URI", self.contact),
            *(literal(f"{user} Via sent-by", value) for value in sent_by),
            *(literal(f"{user} Call-ID", call_id) for call_id in self.call_ids),
        ]


@contextlib.asynccontextmanager
async def revealing(user: str, home: SystemConfig) -> AsyncIterator[RevealingClient]:
    mc = RevealingClient(user, home, internal_host=INTERNAL_HOSTS[home.system.name])
    try:
        async with asyncio.timeout(STEP):
            await mc.start()
            assert (await mc.register()).status == 200
        yield mc
    finally:
        async with asyncio.timeout(STEP):
            await mc.close()


def test_generated_traffic_leaks_no_client_or_internal_detail(tmp_path: Path) -> None:
    deployment = load_deployment(init_deployment(tmp_path / "deployment"))
    a, b = (
        config.model_copy(
            update={
                "system": config.system.model_copy(
                    update={"internal_hosts": [INTERNAL_HOSTS[config.system.name]]}
                )
            }
        )
        for config in deployment.systems
    )
    deployment = deployment.model_copy(update={"systems": [a, b]})
    captured: list[bytes] = []

    async def scenario() -> list[RevealingClient]:
        systems: list[RunningSystem] = []
        try:
            async with asyncio.timeout(30):
                for config in (a, b):
                    systems.append(await start_system(config, wire_tap=captured.append))
                async with (
                    revealing("sip:alice@a.mc.example", a) as alice,
                    revealing("sip:bob@b.mc.example", b) as bob,
                ):
                    for sender, receiver in ((alice, bob), (bob, alice), (alice, bob)):
                        response = await sender.send_message(receiver.user, f"to {receiver.user}")
                        assert response.status == 200, response
                        async with asyncio.timeout(STEP):
                            got = await receiver.inbox.get()
                        assert got.sender == sender.user
                    # Errors come back across too: B's 480 for a user not registered there.
                    response = await alice.send_message("sip:carol@b.mc.example", "anyone?")
                    assert response.status == 480
                    # What the clients sent across went through the scrub, not a refusal.
                    assert all(
                        entry["decision"] == "allow" for system in systems for entry in system.audit.recent
                    )
                    return [alice, bob]
        finally:
            for system in systems:
                await system.close()

    clients = asyncio.run(scenario())
    # 3 MESSAGEs and their 200s, then the MESSAGE to carol and B's 480.
    messages = parsed(captured)
    assert len(messages) == 8
    assert sorted(m.method for m in messages if isinstance(m, SipRequest)) == ["MESSAGE"] * 4
    assert sorted(m.status for m in messages if isinstance(m, SipResponse)) == [200, 200, 200, 480]
    everything = b"".join(captured)
    assert b"isproxy.a.mc.example" in everything and b"isproxy.b.mc.example" in everything
    markers = deployment_markers(deployment)
    assert [len(mc.call_ids) for mc in clients] == [4, 2]  # REGISTER and the MESSAGEs of each
    for mc in clients:
        markers += mc.markers()
    assert leaks(captured, markers) == []
    # The markers do find what they look for: what each client itself sent has all of its own.
    for mc, home in zip(clients, "AB", strict=True):
        assert found(mc.sent, mc.markers()) == {marker.what for marker in mc.markers()}
        assert {
            "client software (User-Agent)",
            f"{home} internal host name",
            f"{home} sip_core.client_listen host",
        } <= found(mc.sent, markers)
    assert_routing_names_only_border(messages, deployment)
    # The clients' Contacts and Call-Infos reached the border: Contacts crossed sealed, Call-Info not at all.
    ok = [m for m in messages if isinstance(m, SipRequest) or m.status == 200]
    assert all(m.headers.get("Contact") for m in ok)
    assert not [m for m in messages if m.headers.get("Call-Info")]


# ------------------------------------------------------------------ SPK protection on the link


class RecordingClient(McClient):
    """A client that keeps every request delivered to it, and can name a called party."""

    def __init__(self, user: str, home: SystemConfig) -> None:
        super().__init__(
            user,
            home.sip_core.client_listen,
            mcx_psi=home.mcx_server.psi,
            listen_host=home.sip_core.client_listen.host,
            timeout=STEP,
        )
        self.delivered: list[SipRequest] = []

    async def _on_message(self, message: SipMessage, peer: PeerInfo) -> None:
        if isinstance(message, SipRequest) and message.method == "MESSAGE":
            self.delivered.append(message.copy())
        await super()._on_message(message, peer)

    async def send_to_called_party(self, target: str, called_party: str, text: str) -> SipResponse:
        """A MESSAGE whose mcptt-info also names a called party (24.379 F.1), the text beside it."""
        request = self._request("MESSAGE", self.mcx_psi, target)
        info = McpttInfo(request_uri=target, called_party_id=called_party).to_xml()
        boundary = "leak-test-boundary"
        request.headers.add("Content-Type", f"multipart/mixed;boundary={boundary}")
        request.body = (
            f"--{boundary}\r\nContent-Type: {MCPTT_INFO_TYPE}\r\n\r\n".encode()
            + info
            + f"\r\n--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
            f"--{boundary}--\r\n".encode()
        )
        return await self._transact(request)


def test_spk_link_carries_no_identity_in_clear(tmp_path: Path) -> None:
    deployment = load_deployment(init_deployment(tmp_path / "deployment", spk=True))
    a, b = deployment.systems
    captured: list[bytes] = []

    async def scenario() -> tuple[RecordingClient, RecordingClient]:
        systems: list[RunningSystem] = []
        clients: list[RecordingClient] = []
        try:
            async with asyncio.timeout(30):
                for config in (a, b):
                    systems.append(await start_system(config, wire_tap=captured.append))
                alice, bob = RecordingClient(ALICE, a), RecordingClient(BOB, b)
                clients += [alice, bob]
                for client in clients:
                    await client.start()
                    assert (await client.register()).status == 200
                response = await alice.send_to_called_party(BOB, DISPATCH, "Evacuate sector 4")
                assert response.status == 200, response
                async with asyncio.timeout(STEP):
                    got = await bob.inbox.get()
                assert (got.sender, got.target) == (ALICE, BOB)
                response = await bob.send_message(ALICE, "Sector 4 clear")
                assert response.status == 200, response
                async with asyncio.timeout(STEP):
                    got = await alice.inbox.get()
                assert (got.sender, got.target) == (BOB, ALICE)
                assert all(
                    entry["decision"] == "allow" and entry.get("spk")
                    for system in systems
                    for entry in system.audit.recent
                    if entry.get("direction") == "inbound"
                )
                return alice, bob
        finally:
            for client in clients:
                await client.close()
            for system in systems:
                await system.close()

    alice, bob = asyncio.run(scenario())
    messages = parsed(captured)
    requests = [m for m in messages if isinstance(m, SipRequest)]
    assert [m.method for m in requests] == ["MESSAGE", "MESSAGE"]
    assert all(is_protected(m) for m in requests)
    everything = b"".join(captured)
    assert everything.count(b'type="Encrypted"') == 5  # request URI, calling user, called party; then 2
    assert leaks(captured, identity_markers(ALICE, BOB, DISPATCH)) == []
    assert leaks(captured, deployment_markers(deployment)) == []
    # What the clients themselves sent and what they were delivered has the identities in clear.
    [at_bob] = bob.delivered
    info = find_mcptt_info(at_bob)
    assert info is not None
    assert (info.request_uri, info.calling_user_id, info.called_party_id) == (BOB, ALICE, DISPATCH)
    assert b"EncryptedData" not in at_bob.body and b"mcptt-signed+xml" not in at_bob.body
    assert found([at_bob.to_bytes()], identity_markers(ALICE, BOB, DISPATCH)) == {
        f"identity {identity}" for identity in (ALICE, BOB, DISPATCH)
    }
    [at_alice] = alice.delivered
    assert find_mcptt_info(at_alice) == McpttInfo(request_uri=ALICE, calling_user_id=BOB)
