"""SIP over UDP, TCP and TLS on loopback sockets (RFC 3261 §18; mutual TLS per WA-IC-13..17).

Every scenario runs in its own ``asyncio.run`` under a deadline; peers are this transport,
raw asyncio sockets, and ``openssl s_client`` as a third-party TLS client.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest

from mcinterconnect.sip.message import SipMessage, SipRequest, SipResponse, make_response
from mcinterconnect.sip.parser import StreamFramer, parse_message
from mcinterconnect.sip.transport import (
    Address,
    PeerCheck,
    PeerInfo,
    SipTransport,
    TransportError,
)
from mcinterconnect.tlsprofile import client_context, dns_names, server_context
from pki_helpers import Issued, make_ca, make_leaf

SERVER_NAME = "is-proxy.b.mc.example"
CLIENT_NAME = "is-proxy.a.mc.example"
DEADLINE = 10.0


def run(scenario: Coroutine[Any, Any, None], deadline: float = DEADLINE) -> None:
    asyncio.run(asyncio.wait_for(scenario, deadline))


def sip_request(call_id: str, transport: str = "UDP", method: str = "OPTIONS") -> SipRequest:
    request = SipRequest(method=method, uri=f"sip:{SERVER_NAME}")
    request.headers.add("Via", f"SIP/2.0/{transport} 127.0.0.1:5999;branch=z9hG4bK-{call_id}")
    request.headers.add("Max-Forwards", "70")
    request.headers.add("From", f"<sip:{CLIENT_NAME}>;tag=a1")
    request.headers.add("To", f"<sip:{SERVER_NAME}>")
    request.headers.add("Call-ID", call_id)
    request.headers.add("CSeq", f"1 {method}")
    return request


def raw_request(call_id: str, *, max_forwards: str = "70", content_length: bool = True) -> bytes:
    lines = [
        f"OPTIONS sip:{SERVER_NAME} SIP/2.0",
        f"Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK-{call_id}",
        f"From: <sip:{CLIENT_NAME}>;tag=a1",
        f"To: <sip:{SERVER_NAME}>",
        f"Call-ID: {call_id}",
        "CSeq: 1 OPTIONS",
        f"Max-Forwards: {max_forwards}",
    ]
    if content_length:
        lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_message(reader: asyncio.StreamReader, framer: StreamFramer | None = None) -> SipMessage:
    framer = framer or StreamFramer()
    while (raw := framer.next_message()) is None:
        data = await reader.read(4096)
        assert data, "connection closed before a complete message"
        framer.feed(data)
    return parse_message(raw, stream=True)


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything until EOF; a reset or TLS alert also counts as closed."""
    received = b""
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        while data := await reader.read(4096):
            received += data
    return received


def events_named(events: list[dict[str, object]], name: str) -> list[dict[str, object]]:
    return [event for event in events if event["event"] == name]


@dataclass
class Element:
    """A SipTransport with what it received and logged."""

    transport: SipTransport
    address: Address | None
    events: list[dict[str, object]] = field(default_factory=list)
    received: asyncio.Queue[tuple[SipMessage, PeerInfo]] = field(default_factory=asyncio.Queue)

    async def next(self) -> tuple[SipMessage, PeerInfo]:
        return await asyncio.wait_for(self.received.get(), 5)


@contextlib.asynccontextmanager
async def element(
    kind: str | None,
    *,
    answer: bool = True,
    ssl_context: ssl.SSLContext | None = None,
    peer_check: PeerCheck | None = None,
    on_message: Callable[[SipMessage, PeerInfo], Awaitable[None]] | None = None,
    idle_timeout: float = 300.0,
) -> AsyncIterator[Element]:
    """An element listening on ``kind`` (none if None) that answers requests with 200 over
    the address they came from (like ``received``/``rport``, RFC 3261 §18.2.2)."""
    holder: list[Element] = []

    async def handler(message: SipMessage, peer: PeerInfo) -> None:
        this = holder[0]
        this.received.put_nowait((message, peer))
        if on_message is not None:
            await on_message(message, peer)
        if answer and isinstance(message, SipRequest):
            source = peer.listener if peer.transport == "udp" and peer.listener != "outbound" else None
            await this.transport.send(
                make_response(message, 200), Address(peer.transport, *peer.remote), source_listener=source
            )

    events: list[dict[str, object]] = []
    transport = SipTransport(handler, log=events.append, idle_timeout=idle_timeout, connect_timeout=2.0)
    address = None
    if kind is not None:
        address = await transport.listen(
            "sip3", Address(kind, "127.0.0.1", 0), ssl_context=ssl_context, peer_check=peer_check
        )
    holder.append(Element(transport, address, events))
    try:
        yield holder[0]
    finally:
        await transport.close()


# ---------------------------------------------------------------- PKI


@dataclass(frozen=True)
class Pki:
    ca_a: Issued
    ca_b: Issued
    client: Issued
    server: Issued
    rogue_client: Issued
    intruder: Issued

    def server_context(self) -> ssl.SSLContext:
        return server_context(
            self.server.cert_path,
            self.server.key_path,
            trust_anchors=[self.ca_a.cert_path],
            require_client_cert=True,
        )

    def client_context(self, leaf: Issued | None = None) -> ssl.SSLContext:
        return client_context(
            trust_anchors=[self.ca_b.cert_path],
            cert_file=leaf.cert_path if leaf else None,
            key_file=leaf.key_path if leaf else None,
        )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca_a = make_ca("CA A", directory)
    ca_b = make_ca("CA B", directory)
    rogue = make_ca("Rogue", directory)
    return Pki(
        ca_a=ca_a,
        ca_b=ca_b,
        client=make_leaf(ca_a, CLIENT_NAME),
        server=make_leaf(ca_b, SERVER_NAME),
        rogue_client=make_leaf(rogue, CLIENT_NAME),
        intruder=make_leaf(ca_a, "intruder.a.mc.example"),
    )


def only_partner(peer: PeerInfo) -> str | None:
    """A peer check as the border does it: the certificate must name the partner (WA-IC-17)."""
    if peer.certificate is None or CLIENT_NAME not in dns_names(peer.certificate):
        return f"certificate does not name {CLIENT_NAME}"
    return None


# ---------------------------------------------------------------- Address


def test_address_round_trip() -> None:
    for text in ("tls://127.0.0.1:5061", "udp://[::1]:5060", "tcp://is-proxy.b.mc.example:0"):
        assert str(Address.parse(text)) == text
    assert Address.parse("TLS://[::1]:5061") == Address("tls", "::1", 5061)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("127.0.0.1:5060", "no transport"),
        ("sctp://127.0.0.1:5060", "unknown transport"),
        ("udp://:5060", "no host"),
        ("udp://127.0.0.1", "no port"),
        ("udp://127.0.0.1:", "malformed port"),
        ("udp://127.0.0.1:70000", "out of range"),
        ("udp://::1:5060", "brackets"),
        ("udp://[zz]:5060", "malformed IPv6"),
        ("udp://host_name:5060", "malformed host"),
        ("tls://127.0.0.1:5061/path", "more than host and port"),
    ],
)
def test_address_errors_name_the_problem(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Address.parse(text)


# ---------------------------------------------------------------- round trips


def test_udp_request_response() -> None:
    async def scenario() -> None:
        async with element("udp") as server, element("udp", answer=False) as client:
            assert server.address is not None and server.address.port != 0
            await client.transport.send(sip_request("udp-1"), server.address)
            request, peer = await server.next()
            assert isinstance(request, SipRequest) and request.call_id == "udp-1"
            assert peer.transport == "udp" and peer.listener == "sip3" and peer.connection_id is None
            assert client.address is not None and peer.remote == (client.address.host, client.address.port)
            response, client_peer = await client.next()
            assert isinstance(response, SipResponse) and response.status == 200
            assert client_peer.listener == "sip3"

    run(scenario())


def test_udp_without_listener_uses_an_ephemeral_socket() -> None:
    async def scenario() -> None:
        async with element("udp") as server, element(None, answer=False) as client:
            assert server.address is not None
            await client.transport.send(sip_request("udp-2"), server.address)
            response, peer = await client.next()
            assert isinstance(response, SipResponse) and peer.listener == "outbound"

    run(scenario())


def test_tcp_response_goes_back_over_the_inbound_connection() -> None:
    async def scenario() -> None:
        # The client has no listener: the response can only come back on its own connection.
        async with element("tcp") as server, element(None, answer=False) as client:
            assert server.address is not None
            await client.transport.send(sip_request("tcp-1", "TCP"), server.address)
            _, server_peer = await server.next()
            response, client_peer = await client.next()
            assert isinstance(response, SipResponse) and response.status == 200
            assert client_peer.listener == "outbound" and client_peer.transport == "tcp"
            assert client_peer.local == server_peer.remote
            assert not events_named(server.events, "sip-connected")  # the server opened nothing
            assert server.transport.has_connection(Address("tcp", *server_peer.remote))
            assert client.transport.has_connection(server.address)
            assert not client.transport.has_connection(Address("tcp", "127.0.0.1", 9))
            assert client.transport.has_connection(Address("udp", "127.0.0.1", 9))

    run(scenario())


def test_tls_mutual_round_trip_and_requests_on_an_outbound_connection(pki: Pki) -> None:
    checked: list[PeerInfo] = []

    def check(peer: PeerInfo) -> str | None:
        checked.append(peer)
        return only_partner(peer)

    async def scenario() -> None:
        async def call_back(message: SipMessage, peer: PeerInfo) -> None:
            # A request from B to A over the connection A opened (listener "outbound" at A).
            if isinstance(message, SipRequest) and message.call_id == "tls-1":
                await server.transport.send(sip_request("from-b", "TLS"), Address("tls", *peer.remote))

        async with (
            element(
                "tls", ssl_context=pki.server_context(), peer_check=check, on_message=call_back
            ) as server,
            element(None) as client,
        ):
            assert server.address is not None
            await client.transport.send(
                sip_request("tls-1", "TLS"),
                server.address,
                ssl_context=pki.client_context(pki.client),
                server_hostname=SERVER_NAME,
            )
            _, server_peer = await server.next()
            assert server_peer.certificate is not None
            assert dns_names(server_peer.certificate) == [CLIENT_NAME]
            assert checked == [server_peer]
            received = {}
            for _ in range(2):
                message, peer = await client.next()
                received[type(message).__name__] = (message, peer)
            request, request_peer = received["SipRequest"]
            assert request.call_id == "from-b" and request_peer.listener == "outbound"
            assert request_peer.certificate is not None and dns_names(request_peer.certificate) == [
                SERVER_NAME
            ]
            response, _ = received["SipResponse"]
            assert isinstance(response, SipResponse) and response.status == 200
            # The client answered B's request over the same connection: B got a response.
            answer, _ = await server.next()
            assert isinstance(answer, SipResponse) and answer.call_id == "from-b"

    run(scenario())


# ---------------------------------------------------------------- stream framing and errors


def test_message_split_across_tcp_segments_and_keepalives() -> None:
    async def scenario() -> None:
        async with element("tcp") as server:
            assert server.address is not None
            reader, writer = await asyncio.open_connection(server.address.host, server.address.port)
            first = raw_request("split-1")
            for index in range(0, len(first), 7):
                writer.write(first[index : index + 7])
                await writer.drain()
                await asyncio.sleep(0.001)
            writer.write(b"\r\n\r\n" + raw_request("split-2") + raw_request("split-3"))
            await writer.drain()
            framer = StreamFramer()
            call_ids = [(await server.next())[0].call_id for _ in range(3)]
            assert call_ids == ["split-1", "split-2", "split-3"]
            responses = [await read_message(reader, framer) for _ in range(3)]
            assert [r.call_id for r in responses] == call_ids
            writer.close()

    run(scenario())


def test_malformed_request_over_udp_gets_400_with_warning() -> None:
    class Client(asyncio.DatagramProtocol):
        def __init__(self) -> None:
            self.datagrams: asyncio.Queue[bytes] = asyncio.Queue()

        def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
            self.datagrams.put_nowait(data)

    async def scenario() -> None:
        async with element("udp") as server:
            assert server.address is not None
            loop = asyncio.get_running_loop()
            socket, protocol = await loop.create_datagram_endpoint(
                Client, remote_addr=(server.address.host, server.address.port)
            )
            socket.sendto(raw_request("bad-udp", max_forwards="lots"))
            answer = parse_message(await asyncio.wait_for(protocol.datagrams.get(), 5))
            socket.close()
            assert isinstance(answer, SipResponse) and answer.status == 400
            warning = answer.headers.get("Warning") or ""
            assert warning.startswith("399 mcic ") and "Max-Forwards" in warning
            assert server.received.empty()
            (event,) = events_named(server.events, "sip-parse-error")
            assert "Max-Forwards" in str(event["reason"]) and event["remote"]

    run(scenario())


def test_malformed_request_over_tcp_gets_400_and_the_connection_survives() -> None:
    async def scenario() -> None:
        async with element("tcp") as server:
            assert server.address is not None
            reader, writer = await asyncio.open_connection(server.address.host, server.address.port)
            writer.write(raw_request("bad-tcp", max_forwards="lots"))
            framer = StreamFramer()
            answer = await read_message(reader, framer)
            assert isinstance(answer, SipResponse) and answer.status == 400
            assert "Max-Forwards" in (answer.headers.get("Warning") or "")
            writer.write(raw_request("good-tcp"))
            message, _ = await server.next()
            assert message.call_id == "good-tcp"
            assert isinstance(await read_message(reader, framer), SipResponse)
            writer.close()

    run(scenario())


def test_stream_without_content_length_is_answered_then_closed() -> None:
    async def scenario() -> None:
        async with element("tcp") as server:
            assert server.address is not None
            reader, writer = await asyncio.open_connection(server.address.host, server.address.port)
            writer.write(raw_request("no-length", content_length=False))
            # RFC 3261 §18.3: the stream cannot be re-synchronised, but the request can still be
            # addressed: a 400 naming the fault, then the connection is closed.
            rest = await asyncio.wait_for(read_until_closed(reader), 5)
            answer = parse_message(rest, stream=True)
            assert isinstance(answer, SipResponse) and answer.status == 400
            assert answer.call_id == "no-length"
            assert "Content-Length is mandatory" in (answer.headers.get("Warning") or "")
            (event,) = events_named(server.events, "sip-parse-error")
            assert event["closed"] is True and "Content-Length" in str(event["reason"])
            assert server.received.empty()
            writer.close()

    run(scenario())


def test_handler_errors_and_slow_handlers_do_not_stop_the_connection() -> None:
    entered: list[str] = []

    async def scenario() -> None:
        released = asyncio.Event()

        async def behave(message: SipMessage, peer: PeerInfo) -> None:
            entered.append(message.call_id)
            if message.call_id == "boom":
                raise RuntimeError("handler bug")
            if message.call_id == "slow":
                await released.wait()  # only the next message can release it
            if message.call_id == "fast":
                released.set()

        async with element("tcp", answer=False, on_message=behave) as server:
            assert server.address is not None
            _, writer = await asyncio.open_connection(server.address.host, server.address.port)
            writer.write(raw_request("boom") + raw_request("slow") + raw_request("fast"))
            for _ in range(3):
                await server.next()
            await asyncio.wait_for(released.wait(), 5)
            await asyncio.sleep(0.05)
            (error,) = events_named(server.events, "sip-handler-error")
            assert "handler bug" in str(error["reason"])
            writer.close()

    run(scenario())
    assert entered == ["boom", "slow", "fast"]


# ---------------------------------------------------------------- connection reuse


def test_outbound_connections_are_reused() -> None:
    accepted = 0
    messages: list[str] = []

    async def scenario() -> None:
        async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal accepted
            accepted += 1
            framer = StreamFramer()
            with contextlib.suppress(AssertionError, ConnectionError):
                while True:
                    messages.append((await read_message(reader, framer)).call_id)

        raw_server = await asyncio.start_server(peer, "127.0.0.1", 0)
        port = raw_server.sockets[0].getsockname()[1]
        async with element(None) as client:
            destination = Address("tcp", "127.0.0.1", port)
            await client.transport.send(sip_request("reuse-1", "TCP"), destination)
            await client.transport.send(sip_request("reuse-2", "TCP"), destination)
            await asyncio.gather(
                *(client.transport.send(sip_request(f"c{n}", "TCP"), destination) for n in range(3))
            )
            for _ in range(100):
                if len(messages) == 5:
                    break
                await asyncio.sleep(0.01)
            assert len(events_named(client.events, "sip-connected")) == 1
        raw_server.close()
        await raw_server.wait_closed()

    run(scenario())
    assert accepted == 1
    assert messages[:2] == ["reuse-1", "reuse-2"] and sorted(messages[2:]) == ["c0", "c1", "c2"]


# ---------------------------------------------------------------- mutual TLS refusals


async def _tls_attempt(server: Element, context: ssl.SSLContext, *, hostname: str = SERVER_NAME) -> bytes:
    """Open a TLS connection, send a request, return what came back before the close."""
    assert server.address is not None
    try:
        reader, writer = await asyncio.open_connection(
            server.address.host, server.address.port, ssl=context, server_hostname=hostname
        )
    except (ssl.SSLError, ConnectionError):
        return b""
    try:
        writer.write(raw_request("tls-attempt"))
        return await asyncio.wait_for(read_until_closed(reader), 5)
    finally:
        writer.close()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_client_without_certificate_is_refused(pki: Pki, version: ssl.TLSVersion) -> None:
    async def scenario() -> None:
        async with element("tls", ssl_context=pki.server_context()) as server:
            context = pki.client_context(None)
            context.maximum_version = version
            assert await _tls_attempt(server, context) == b""
            await asyncio.sleep(0.05)
            (event,) = events_named(server.events, "tls-handshake-failed")
            assert "CERTIFICATE" in str(event["reason"]).upper()
            assert server.received.empty()

    run(scenario())


def test_tls_client_of_another_ca_is_refused(pki: Pki) -> None:
    async def scenario() -> None:
        async with element("tls", ssl_context=pki.server_context()) as server:
            assert await _tls_attempt(server, pki.client_context(pki.rogue_client)) == b""
            await asyncio.sleep(0.05)
            (event,) = events_named(server.events, "tls-handshake-failed")
            assert "unable to get local issuer certificate" in str(event["reason"])
            assert server.received.empty()

    run(scenario())


def test_tls_peer_check_refusal_closes_before_reading(pki: Pki) -> None:
    async def scenario() -> None:
        async with element("tls", ssl_context=pki.server_context(), peer_check=only_partner) as server:
            # Right CA, wrong name: the handshake succeeds, the peer check refuses.
            assert await _tls_attempt(server, pki.client_context(pki.intruder)) == b""
            (event,) = events_named(server.events, "tls-peer-refused")
            assert event["reason"] == f"certificate does not name {CLIENT_NAME}"
            assert not events_named(server.events, "tls-handshake-failed")
            assert server.received.empty()

    run(scenario())


def test_tls11_client_is_refused(pki: Pki) -> None:
    async def scenario() -> None:
        async with element("tls", ssl_context=pki.server_context()) as server:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                context = pki.client_context(pki.client)
                context.minimum_version = ssl.TLSVersion.TLSv1_1
                context.maximum_version = ssl.TLSVersion.TLSv1_1
                context.set_ciphers("DEFAULT@SECLEVEL=0")  # so that the client really offers TLS 1.1
            assert server.address is not None
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await asyncio.open_connection(
                    server.address.host, server.address.port, ssl=context, server_hostname=SERVER_NAME
                )
            await asyncio.sleep(0.05)
            assert events_named(server.events, "tls-handshake-failed")
            assert server.received.empty()

    run(scenario())


def test_plain_tcp_to_the_tls_port_is_refused(pki: Pki) -> None:
    async def scenario() -> None:
        async with element("tls", ssl_context=pki.server_context()) as server:
            assert server.address is not None
            reader, writer = await asyncio.open_connection(server.address.host, server.address.port)
            writer.write(raw_request("plain"))
            assert await asyncio.wait_for(read_until_closed(reader), 5) == b""
            writer.close()
            await asyncio.sleep(0.05)
            (event,) = events_named(server.events, "tls-handshake-failed")
            assert event["reason"]
            assert server.received.empty()

    run(scenario())


# ---------------------------------------------------------------- openssl s_client (third-party peer)

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")


async def _s_client(address: Address, pki: Pki, *options: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "openssl",
        "s_client",
        "-connect",
        f"{address.host}:{address.port}",
        "-servername",
        SERVER_NAME,
        "-verify_hostname",
        SERVER_NAME,
        "-CAfile",
        str(pki.ca_b.cert_path),
        "-verify_return_error",
        "-cert",
        str(pki.client.cert_path),
        "-key",
        str(pki.client.key_path),
        *options,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
    await process.wait()


@needs_openssl
@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_openssl_s_client_gets_a_sip_response(pki: Pki, version: str) -> None:
    async def scenario() -> None:
        async with element("tls", ssl_context=pki.server_context(), peer_check=only_partner) as server:
            assert server.address is not None
            # -quiet implies -ign_eof: s_client stays until the response is read and it is killed.
            process = await _s_client(server.address, pki, version, "-quiet")
            try:
                assert process.stdin is not None and process.stdout is not None
                process.stdin.write(raw_request(f"openssl{version}"))
                await process.stdin.drain()
                response = await asyncio.wait_for(read_message(process.stdout), 5)
            finally:
                await _stop(process)
            assert isinstance(response, SipResponse) and response.status == 200
            assert response.call_id == f"openssl{version}"
            _, peer = await server.next()
            assert peer.certificate is not None and dns_names(peer.certificate) == [CLIENT_NAME]

    run(scenario())


@needs_openssl
def test_openssl_s_client_tls11_fails(pki: Pki) -> None:
    async def scenario() -> None:
        async with element("tls", ssl_context=pki.server_context()) as server:
            assert server.address is not None
            process = await _s_client(server.address, pki, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
            try:
                assert process.stdin is not None
                process.stdin.close()
                returncode = await asyncio.wait_for(process.wait(), 5)
            finally:
                await _stop(process)
            assert returncode != 0
            await asyncio.sleep(0.05)
            assert events_named(server.events, "tls-handshake-failed")
            assert server.received.empty()

    run(scenario())


# ---------------------------------------------------------------- failures, timeouts, shutdown


def test_send_failures_raise_transport_error(pki: Pki) -> None:
    async def scenario() -> None:
        async with element("tls", ssl_context=pki.server_context()) as server, element(None) as client:
            assert server.address is not None
            closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
            closed_port = closed.sockets[0].getsockname()[1]
            closed.close()
            await closed.wait_closed()
            with pytest.raises(TransportError, match=r"cannot connect to tcp://127\.0\.0\.1"):
                await client.transport.send(sip_request("x", "TCP"), Address("tcp", "127.0.0.1", closed_port))
            with pytest.raises(TransportError, match="no ssl_context"):
                await client.transport.send(sip_request("x", "TLS"), server.address)
            with pytest.raises(
                TransportError, match="CERTIFICATE_VERIFY_FAILED: Hostname mismatch"
            ) as excinfo:
                await client.transport.send(
                    sip_request("x", "TLS"),
                    server.address,
                    ssl_context=pki.client_context(pki.client),
                    server_hostname="other.b.mc.example",
                )
            assert "\n" not in str(excinfo.value) and isinstance(excinfo.value, OSError)
            with pytest.raises(TransportError, match="no UDP listener named 'nope'"):
                await client.transport.send(
                    sip_request("x"), Address("udp", "127.0.0.1", 9), source_listener="nope"
                )

    run(scenario())


def test_idle_connections_are_closed() -> None:
    async def scenario() -> None:
        async with element("tcp", idle_timeout=0.2) as server:
            assert server.address is not None
            reader, writer = await asyncio.open_connection(server.address.host, server.address.port)
            assert await asyncio.wait_for(read_until_closed(reader), 3) == b""
            writer.close()
            assert events_named(server.events, "sip-connection-idle")

    run(scenario())


def test_idle_tls_connection_is_dropped_when_the_peer_never_answers_the_close(pki: Pki) -> None:
    """The idle close of a TLS connection waits for the peer's close_notify, but not for ever:
    a peer that reads nothing any more is dropped after the close wait (1 s)."""

    async def scenario() -> None:
        async with element("tls", ssl_context=pki.server_context(), idle_timeout=0.2) as server:
            assert server.address is not None
            reader, writer = await asyncio.open_connection(
                server.address.host,
                server.address.port,
                ssl=pki.client_context(pki.client),
                server_hostname=SERVER_NAME,
            )
            writer.transport.pause_reading()  # deaf: the server's close_notify is never read
            await asyncio.sleep(0.2 + 1.0 + 0.5)
            assert events_named(server.events, "sip-connection-idle")
            assert not server.transport._connections  # forgotten, not waiting 30 s for the peer
            writer.transport.resume_reading()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                assert await asyncio.wait_for(read_until_closed(reader), 3) == b""
            writer.close()

    run(scenario())


def test_send_to_a_peer_that_reads_nothing_fails_in_bounded_time() -> None:
    """Sends return at once while the kernel takes the bytes; once they back up, send waits for
    the buffer to drain, at most ``connect_timeout``, then fails: memory stays bounded."""

    async def scenario() -> None:
        accepted: list[asyncio.StreamWriter] = []

        async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.transport.pause_reading()
            accepted.append(writer)

        server = await asyncio.start_server(deaf, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with element(None) as client:
                request = sip_request("deaf", "TCP", method="MESSAGE")
                request.headers.add("Content-Type", "text/plain")
                request.body = b"x" * 30_000
                started = asyncio.get_running_loop().time()
                with pytest.raises(TransportError, match=rf"cannot send to tcp://127\.0\.0\.1:{port}"):
                    for _ in range(2_000):  # 60 MB: far more than the socket buffers hold
                        await client.transport.send(request, Address("tcp", "127.0.0.1", port))
                assert asyncio.get_running_loop().time() - started < 10
        finally:
            for writer in accepted:
                writer.close()
            server.close()

    run(scenario())


def test_listen_errors() -> None:
    async def scenario() -> None:
        async with element("tcp") as first, element(None) as second:
            assert first.address is not None
            with pytest.raises(ValueError, match="tls needs an ssl_context"):
                await second.transport.listen("x", Address("tls", "127.0.0.1", 0))
            with pytest.raises(TransportError, match=r"cannot listen on tcp://127\.0\.0\.1"):
                await second.transport.listen("x", first.address)
            await second.transport.listen("y", Address("udp", "127.0.0.1", 0))
            with pytest.raises(ValueError, match="already used"):
                await second.transport.listen("y", Address("udp", "127.0.0.1", 0))

    run(scenario())


def test_close_ends_connections_and_sending() -> None:
    async def scenario() -> None:
        async with element("tcp") as server:
            assert server.address is not None
            reader, writer = await asyncio.open_connection(server.address.host, server.address.port)
            writer.write(raw_request("before-close"))
            await server.next()
            await read_message(reader)
            await server.transport.close()
            assert await asyncio.wait_for(read_until_closed(reader), 3) == b""
            writer.close()
            with pytest.raises(TransportError, match="closed"):
                await server.transport.send(sip_request("after"), Address("udp", "127.0.0.1", 9))

    run(scenario())


def test_tls_listener_needs_a_server_context(pki: Pki) -> None:
    async def scenario() -> None:
        async with element(None) as lonely:
            with pytest.raises(ValueError, match="server-side"):
                await lonely.transport.listen(
                    "t", Address("tls", "127.0.0.1", 0), ssl_context=pki.client_context()
                )

    run(scenario())


def test_udp_and_tcp_peer_checks_refuse_without_a_handler_call() -> None:
    def refuse(peer: PeerInfo) -> str | None:
        return f"source {peer.remote[0]} is not an allowed internal address"

    async def scenario() -> None:
        async with (
            element("udp", peer_check=refuse) as udp_server,
            element("tcp", peer_check=refuse) as tcp_server,
            element(None) as client,
        ):
            assert udp_server.address is not None and tcp_server.address is not None
            await client.transport.send(sip_request("refused-udp"), udp_server.address)
            reader, writer = await asyncio.open_connection(tcp_server.address.host, tcp_server.address.port)
            writer.write(raw_request("refused-tcp"))
            assert await asyncio.wait_for(read_until_closed(reader), 3) == b""
            writer.close()
            for _ in range(100):
                if udp_server.events and events_named(udp_server.events, "sip-peer-refused"):
                    break
                await asyncio.sleep(0.01)
            for server in (udp_server, tcp_server):
                (event,) = events_named(server.events, "sip-peer-refused")
                assert event["reason"] == "source 127.0.0.1 is not an allowed internal address"
                assert server.received.empty()

    run(scenario())
