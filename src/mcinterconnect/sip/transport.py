"""SIP transports over UDP, TCP and TLS (RFC 3261 §18, RFC 5626 §3.5.1): the only asyncio module of ``sip``.

Everything about SIP syntax is delegated to the sans-IO parser (``parse_message``,
``StreamFramer``, ``error_response``); this module only moves bytes and decides which socket
carries them.

* **Receiving** (RFC 3261 §18.2.1, §18.3): a datagram is one message; a stream is cut by
  Content-Length.  Each complete message goes to the handler in its own task, so a slow handler
  never stops reading; tasks are started in arrival order, so the handlers of one connection are
  *entered* in message order.  A message that fails to parse is answered (400/505/513 with a
  Warning) when it can be addressed; a framing error also closes the stream, which cannot be
  re-synchronised.  CRLF keep-alives are ignored.
* **TLS** (33.180 6.3.2, WA-IC-13): the server handshake is driven here (``start_tls``) so that
  every failure is logged as ``tls-handshake-failed``; once authenticated, ``peer_check`` sees the
  peer (address, certificate) and may refuse it before a single SIP byte is read
  (``tls-peer-refused``).
* **Sending** (RFC 3261 §18.1, §18.2.2): a response to a request received on a stream goes back
  over that connection: sending to an address equal to the remote address of a live inbound
  connection of the same transport reuses it (the caller addresses responses by ``received`` and
  ``rport``).  Other stream sends reuse a pooled outbound connection keyed by (transport, host,
  port, TLS server name), or open one; outbound connections are read like inbound ones
  (listener ``"outbound"``), so responses and requests arriving on them reach the handler.
  Reusing a live connection writes before the first suspension point, so handlers that forward
  without awaiting keep their order on the wire.
* Connections without traffic for ``idle_timeout`` seconds are closed.

Logs are dicts passed to ``log`` (``event`` and ``reason`` keys), never message bodies or keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import itertools
import json
import logging
import re
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from cryptography import x509

from mcinterconnect.sip.message import SipMessage, SipRequest, SipResponse
from mcinterconnect.sip.parser import (
    DEFAULT_LIMITS,
    ParserLimits,
    SipParseError,
    StreamFramer,
    error_response,
    parse_message,
)
from mcinterconnect.tlsprofile import peer_certificate

TRANSPORTS = ("udp", "tcp", "tls")

#: Listener name given to the ``PeerInfo`` of connections this transport opened.
OUTBOUND = "outbound"

#: At most this many handler tasks run per connection (or UDP socket); beyond, a stream stops
#: being read (TCP back-pressure) and datagrams are dropped (SIP retransmits them).
MAX_HANDLERS_PER_CONNECTION = 256

_READ_SIZE = 65_536
#: How long a close waits for the peer (TLS close_notify) before the connection is dropped.
_CLOSE_WAIT = 1.0
_HOST_RE = re.compile(r"[A-Za-z0-9\-.]+")

_logger = logging.getLogger(__name__)


class TransportError(OSError):
    """A message could not be sent, or a listener could not be opened (one-line reason)."""


@dataclass(frozen=True)
class Address:
    """Where a SIP transport listens or sends: ``tls://127.0.0.1:5061``, ``udp://[::1]:5060``."""

    transport: str
    host: str
    port: int

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ValueError(f"unknown transport {self.transport!r} (expected udp, tcp or tls)")
        if not self.host:
            raise ValueError("empty host")
        if not _is_ip(self.host) and not _HOST_RE.fullmatch(self.host):
            raise ValueError(f"malformed host {self.host[:60]!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} out of range 0..65535")

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse ``transport://host:port`` (IPv6 hosts in brackets); ValueError names the problem."""
        shown = text[:60]
        scheme, separator, rest = text.strip().partition("://")
        if not separator:
            raise ValueError(f"address {shown!r} has no transport (expected udp://, tcp:// or tls://)")
        transport = scheme.lower()
        if transport not in TRANSPORTS:
            raise ValueError(f"unknown transport {scheme[:20]!r} in {shown!r} (expected udp, tcp or tls)")
        if any(char in rest for char in "/?;@ "):
            raise ValueError(f"address {shown!r} has more than host and port")
        if rest.startswith("["):
            end = rest.find("]")
            if end < 0:
                raise ValueError(f"unterminated IPv6 reference in {shown!r}")
            host, after = rest[1:end], rest[end + 1 :]
            if not _is_ipv6(host):
                raise ValueError(f"malformed IPv6 address [{host[:45]}] in {shown!r}")
            if after and not after.startswith(":"):
                raise ValueError(f"unexpected {after[:20]!r} after the host in {shown!r}")
            has_port, port_text = bool(after), after[1:]
        else:
            if rest.count(":") > 1:
                raise ValueError(f"IPv6 address must be in brackets in {shown!r}")
            host, colon, port_text = rest.partition(":")
            has_port = bool(colon)
            if not host:
                raise ValueError(f"address {shown!r} has no host")
            if not _is_ip(host) and not _HOST_RE.fullmatch(host):
                raise ValueError(f"malformed host {host[:40]!r} in {shown!r}")
        if not has_port:
            raise ValueError(f"address {shown!r} has no port")
        if not port_text.isdigit() or len(port_text) > 5:
            raise ValueError(f"malformed port {port_text[:10]!r} in {shown!r}")
        port = int(port_text)
        if port > 65535:
            raise ValueError(f"port {port} out of range 0..65535 in {shown!r}")
        return cls(transport, host, port)

    @property
    def hostport(self) -> str:
        """``host:port``, an IPv6 host in brackets (as URLs and SIP URIs write it)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.transport}://{self.hostport}"


@dataclass(frozen=True)
class PeerInfo:
    """Where a message came from: the remote and local addresses, the listener and, on TLS,
    the certificate the peer authenticated with.  ``connection_id`` is None for UDP."""

    transport: str
    remote: tuple[str, int]
    local: tuple[str, int]
    listener: str
    certificate: x509.Certificate | None
    connection_id: int | None


MessageHandler = Callable[[SipMessage, PeerInfo], Awaitable[None]]
#: Returns a refusal reason, or None to accept the peer.
PeerCheck = Callable[[PeerInfo], str | None]
LogSink = Callable[[dict[str, object]], None]


def _default_log(event: dict[str, object]) -> None:
    _logger.info(json.dumps(event, default=str, sort_keys=True))


@functools.lru_cache(maxsize=4096)
def _ip_of(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``host`` as an IP address, or None for a name.  Cached (bounded): the same few peers are
    looked up for every message sent or received."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _is_ip(host: str) -> bool:
    return _ip_of(host) is not None


def _is_ipv6(host: str) -> bool:
    return isinstance(_ip_of(host), ipaddress.IPv6Address)


def _normal_host(host: str) -> str:
    """One spelling per IP address (``::0001`` and ``::1`` are the same peer); names lower-cased."""
    address = _ip_of(host)
    return str(address) if address is not None else host.lower()


def _endpoint(raw: Any) -> tuple[str, int]:
    if isinstance(raw, tuple) and len(raw) >= 2:
        return str(raw[0]), int(raw[1])
    return ("", 0)


def _text(endpoint: tuple[str, int]) -> str:
    host, port = endpoint
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _reason(exc: BaseException) -> str:
    """A one-line description of an exception, without tracebacks."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        detail = getattr(exc, "verify_message", None)
        return f"{exc.reason}: {detail}" if detail else str(exc.reason)
    if isinstance(exc, TimeoutError) and not str(exc):
        return "timed out"
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _summary(message: SipMessage) -> str:
    if isinstance(message, SipRequest):
        return message.method
    if isinstance(message, SipResponse):
        return str(message.status)
    return type(message).__name__


_PoolKey = tuple[str, str, int, str | None]


@dataclass(frozen=True)
class _Listener:
    name: str
    transport: str
    ssl_context: ssl.SSLContext | None
    peer_check: PeerCheck | None


class _Connection:
    """One TCP or TLS connection, inbound or outbound, with its reader task."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: PeerInfo,
        *,
        pool_key: _PoolKey | None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.peer = peer
        self.pool_key = pool_key
        self.last_activity = asyncio.get_running_loop().time()
        self.handler_slots = asyncio.Semaphore(MAX_HANDLERS_PER_CONNECTION)
        self.task: asyncio.Task[None] | None = None
        #: The idle watchdog (one timer per connection, re-armed from ``last_activity``).
        self.idle_timer: asyncio.TimerHandle | None = None

    @property
    def remote_key(self) -> tuple[str, str, int]:
        return (self.peer.transport, _normal_host(self.peer.remote[0]), self.peer.remote[1])

    def is_open(self) -> bool:
        return not self.writer.is_closing()

    def write(self, data: bytes) -> None:
        self.writer.write(data)  # one write per message
        self.last_activity = asyncio.get_running_loop().time()

    def abort(self) -> None:
        self.writer.close()


class _DatagramEndpoint(asyncio.DatagramProtocol):
    """One UDP socket: a listener, or the ephemeral socket used when there is none."""

    def __init__(self, owner: SipTransport, name: str, peer_check: PeerCheck | None) -> None:
        self.owner = owner
        self.name = name
        self.peer_check = peer_check
        self.transport: asyncio.DatagramTransport | None = None
        self.local: tuple[str, int] = ("", 0)
        self.in_flight = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector's datagram transport does not subclass asyncio.DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.local = _endpoint(transport.get_extra_info("sockname"))

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.owner._on_datagram(self, data, _endpoint(addr))

    def error_received(self, exc: Exception) -> None:
        # ICMP errors of earlier sendto() calls (port unreachable...): nothing to retry here.
        self.owner._log({"event": "sip-udp-error", "listener": self.name, "reason": _reason(exc)})

    def sendto(self, data: bytes, destination: tuple[str, int]) -> None:
        if self.transport is None or self.transport.is_closing():
            raise TransportError(f"UDP socket of listener {self.name!r} is closed")
        self.transport.sendto(data, destination)


class SipTransport:
    """UDP, TCP and TLS listeners and connections for one SIP element (RFC 3261 §18)."""

    def __init__(
        self,
        handler: MessageHandler,
        *,
        limits: ParserLimits = DEFAULT_LIMITS,
        agent: str = "mcic",
        log: LogSink | None = None,
        idle_timeout: float = 300.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self._handler = handler
        self._limits = limits
        self._agent = agent
        self._log_sink = log or _default_log
        self._idle_timeout = idle_timeout
        self._connect_timeout = connect_timeout
        self._udp: dict[str, _DatagramEndpoint] = {}
        self._ephemeral_udp: _DatagramEndpoint | None = None
        self._servers: dict[str, asyncio.Server] = {}
        self._listeners: dict[str, Address] = {}
        self._connections: set[_Connection] = set()
        self._inbound: dict[tuple[str, str, int], _Connection] = {}
        self._outbound_by_remote: dict[tuple[str, str, int], _Connection] = {}
        self._pool: dict[_PoolKey, _Connection] = {}
        self._connect_locks: dict[_PoolKey, asyncio.Lock] = {}
        self._inbound_tasks: set[asyncio.Task[None]] = set()
        self._handler_tasks: set[asyncio.Task[None]] = set()
        self._connection_ids = itertools.count(1)
        self._closed = False

    # ------------------------------------------------------------------ listeners

    @property
    def listeners(self) -> dict[str, Address]:
        """The bound address of every listener, by name."""
        return dict(self._listeners)

    async def listen(
        self,
        name: str,
        address: Address,
        *,
        ssl_context: ssl.SSLContext | None = None,
        peer_check: PeerCheck | None = None,
        reuse_port: bool = False,
    ) -> Address:
        """Open a listener; returns the address actually bound (port 0 gives the real port).

        ``peer_check`` is called for every inbound connection (on TLS after the handshake, with
        the peer certificate) and, on UDP, for every datagram; a returned reason refuses it.
        ``reuse_port`` sets ``SO_REUSEPORT`` (Linux, BSD): processes of the same user that all set
        it bind the same address and the kernel spreads connections (and datagram flows) over
        them -- the IS proxy workers of issue 7 (``deploy/workers.py``).
        """
        if self._closed:
            raise TransportError("transport is closed")
        if not name or name == OUTBOUND or name in self._listeners:
            raise ValueError(f"listener name {name!r} is reserved or already used")
        if address.transport == "tls" and ssl_context is None:
            raise ValueError(f"listener {name!r}: tls needs an ssl_context")
        if address.transport != "tls" and ssl_context is not None:
            raise ValueError(f"listener {name!r}: ssl_context given for {address.transport}")
        if ssl_context is not None and not _is_server_context(ssl_context):
            raise ValueError(f"listener {name!r}: ssl_context is not a server-side context")
        loop = asyncio.get_running_loop()
        try:
            if address.transport == "udp":
                endpoint = _DatagramEndpoint(self, name, peer_check)
                await loop.create_datagram_endpoint(
                    lambda: endpoint, local_addr=(address.host, address.port), reuse_port=reuse_port or None
                )
                self._udp[name] = endpoint
                local = endpoint.local
            else:
                spec = _Listener(name, address.transport, ssl_context, peer_check)

                def protocol(spec: _Listener = spec) -> asyncio.BaseProtocol:
                    if spec.ssl_context is not None:
                        return _TlsAcceptor(self, spec)
                    reader = asyncio.StreamReader(limit=_READ_SIZE, loop=loop)

                    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                        # Python 3.11 logs a cancelled connection callback as an error: end quietly.
                        with contextlib.suppress(asyncio.CancelledError):
                            await self._accept(spec, reader, writer)

                    return asyncio.StreamReaderProtocol(reader, accepted, loop=loop)

                server = await loop.create_server(
                    protocol, address.host, address.port, reuse_port=reuse_port or None
                )
                self._servers[name] = server
                local = _endpoint(server.sockets[0].getsockname())
        except OSError as exc:
            raise TransportError(f"cannot listen on {address} ({name}): {_reason(exc)}") from None
        bound = Address(address.transport, local[0], local[1])
        self._listeners[name] = bound
        self._log({"event": "sip-listening", "listener": name, "address": str(bound)})
        return bound

    async def _accept(
        self,
        listener: _Listener,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        certificate: x509.Certificate | None = None,
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._inbound_tasks.add(task)
        try:
            await self._accept_connection(listener, reader, writer, certificate)
        finally:
            self._inbound_tasks.discard(task)

    async def _accept_tls(self, listener: _Listener, acceptor: _TlsAcceptor, raw: asyncio.Transport) -> None:
        """The server TLS handshake of one inbound connection, driven here (not by
        ``create_server(ssl=...)``) so that every failure is logged as ``tls-handshake-failed``;
        then the connection is served as any stream.  Reading was paused when the connection was
        made (``_TlsAcceptor``), so the ClientHello is still unread when ``start_tls`` takes the
        socket over."""
        task = asyncio.current_task()
        assert task is not None
        self._inbound_tasks.add(task)
        try:
            remote = _endpoint(raw.get_extra_info("peername"))
            if self._closed:
                raw.abort()
                return
            assert listener.ssl_context is not None
            loop = asyncio.get_running_loop()
            try:
                tls = await loop.start_tls(
                    raw,
                    acceptor,
                    listener.ssl_context,
                    server_side=True,
                    ssl_handshake_timeout=self._connect_timeout,
                )
            except (OSError, ValueError, TimeoutError, ssl.SSLError) as exc:
                raw.abort()
                self._log(
                    {
                        "event": "tls-handshake-failed",
                        "listener": listener.name,
                        "remote": _text(remote),
                        "reason": _reason(exc),
                    }
                )
                return
            if tls is None or acceptor.lost:
                return
            reader = asyncio.StreamReader(limit=_READ_SIZE, loop=loop)
            stream = asyncio.StreamReaderProtocol(reader, loop=loop)
            tls.set_protocol(stream)
            stream.connection_made(tls)
            acceptor.hand_over(stream)
            writer = asyncio.StreamWriter(tls, stream, reader, loop)
            certificate = peer_certificate(writer.get_extra_info("ssl_object"))
            with contextlib.suppress(asyncio.CancelledError):
                await self._accept_connection(listener, reader, writer, certificate)
        finally:
            self._inbound_tasks.discard(task)

    async def _accept_connection(
        self,
        listener: _Listener,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        certificate: x509.Certificate | None,
    ) -> None:
        name, transport = listener.name, listener.transport
        remote = _endpoint(writer.get_extra_info("peername"))
        local = _endpoint(writer.get_extra_info("sockname"))
        if self._closed:
            await _close_writer(writer)
            return
        peer = PeerInfo(transport, remote, local, name, certificate, next(self._connection_ids))
        if listener.peer_check is not None:
            refusal = self._checked(listener.peer_check, peer)
            if refusal is not None:
                event = "tls-peer-refused" if transport == "tls" else "sip-peer-refused"
                self._log({"event": event, "listener": name, "remote": _text(remote), "reason": refusal})
                await _close_writer(writer)
                return
        connection = _Connection(reader, writer, peer, pool_key=None)
        self._register(connection)
        await self._serve(connection)

    def _checked(self, peer_check: PeerCheck, peer: PeerInfo) -> str | None:
        try:
            return peer_check(peer)
        except Exception as exc:  # a broken check refuses (fail closed)
            return f"peer check failed: {_reason(exc)}"

    # ------------------------------------------------------------------ receiving

    def _register(self, connection: _Connection) -> None:
        self._connections.add(connection)
        if connection.pool_key is None:
            self._inbound[connection.remote_key] = connection
        else:
            self._pool[connection.pool_key] = connection
            self._outbound_by_remote[connection.remote_key] = connection

    def _forget(self, connection: _Connection) -> None:
        self._connections.discard(connection)
        for index in (self._inbound, self._outbound_by_remote):
            if index.get(connection.remote_key) is connection:
                del index[connection.remote_key]
        if connection.pool_key is not None and self._pool.get(connection.pool_key) is connection:
            del self._pool[connection.pool_key]

    async def _serve(self, connection: _Connection) -> None:
        """Read one stream until EOF, idle timeout, framing error or close()."""
        framer = StreamFramer(self._limits)
        peer = connection.peer
        try:
            while True:
                data = await self._read(connection)
                if not data:
                    return
                framer.feed(data)
                while True:
                    try:
                        raw = framer.next_message()
                    except SipParseError as error:
                        self._answer_parse_error(error, peer, connection.write, closing=True)
                        return
                    if raw is None:
                        break
                    try:
                        message = parse_message(raw, self._limits, stream=True)
                    except SipParseError as error:
                        self._answer_parse_error(error, peer, connection.write, closing=False)
                        continue
                    await connection.handler_slots.acquire()
                    self._dispatch(message, peer, connection.handler_slots.release)
        except (OSError, EOFError) as exc:
            self._log(
                {
                    "event": "sip-connection-error",
                    "listener": peer.listener,
                    "remote": _text(peer.remote),
                    "reason": _reason(exc),
                }
            )
        finally:
            if connection.idle_timer is not None:
                connection.idle_timer.cancel()
            self._forget(connection)
            await _close_writer(connection.writer)

    async def _read(self, connection: _Connection) -> bytes:
        """The next bytes of the stream, or ``b""`` at EOF or once the idle watchdog closed it."""
        if connection.idle_timer is None:
            self._watch_idle(connection)
        data = await connection.reader.read(_READ_SIZE)
        connection.last_activity = asyncio.get_running_loop().time()
        return data

    def _watch_idle(self, connection: _Connection) -> None:
        """Close a connection without traffic (read or write) for ``idle_timeout`` seconds.

        One timer per connection, re-armed from ``last_activity`` when it fires, rather than a
        timeout around every read: reads are per message, the timer fires once per idle period.
        """
        loop = asyncio.get_running_loop()
        remaining = connection.last_activity + self._idle_timeout - loop.time()
        if remaining > 0:
            connection.idle_timer = loop.call_later(remaining, self._watch_idle, connection)
            return
        self._log(
            {
                "event": "sip-connection-idle",
                "listener": connection.peer.listener,
                "remote": _text(connection.peer.remote),
                "reason": f"no traffic for {self._idle_timeout:g} s",
            }
        )
        # The pending read ends at EOF, then _serve forgets the connection.  A TLS close waits for
        # the peer's close_notify: bounded here as _close_writer bounds it.
        connection.writer.close()
        connection.idle_timer = loop.call_later(_CLOSE_WAIT, connection.writer.transport.abort)

    def _on_datagram(self, endpoint: _DatagramEndpoint, data: bytes, remote: tuple[str, int]) -> None:
        if not data.strip(b"\r\n\t "):
            return  # keep-alive (RFC 5626 §4.4.1 uses STUN; bare CRLFs are seen in the field too)
        peer = PeerInfo("udp", remote, endpoint.local, endpoint.name, None, None)
        if endpoint.peer_check is not None:
            refusal = self._checked(endpoint.peer_check, peer)
            if refusal is not None:
                self._log(
                    {
                        "event": "sip-peer-refused",
                        "listener": endpoint.name,
                        "remote": _text(remote),
                        "reason": refusal,
                    }
                )
                return
        try:
            message = parse_message(data, self._limits)
        except SipParseError as error:

            def reply(payload: bytes) -> None:
                endpoint.sendto(payload, remote)

            self._answer_parse_error(error, peer, reply, closing=False)
            return
        if endpoint.in_flight >= MAX_HANDLERS_PER_CONNECTION:
            self._log(
                {
                    "event": "sip-overload",
                    "listener": endpoint.name,
                    "remote": _text(remote),
                    "reason": f"{endpoint.in_flight} messages in progress on this socket, datagram dropped",
                }
            )
            return
        endpoint.in_flight += 1

        def release() -> None:
            endpoint.in_flight -= 1

        self._dispatch(message, peer, release)

    def _answer_parse_error(
        self, error: SipParseError, peer: PeerInfo, reply: Callable[[bytes], None], *, closing: bool
    ) -> None:
        response = error_response(error, self._agent)
        event: dict[str, object] = {
            "event": "sip-parse-error",
            "reason": error.reason,
            "status": error.status,
            "remote": _text(peer.remote),
            "transport": peer.transport,
            "listener": peer.listener,
            "answered": response is not None,
        }
        if closing:
            event["closed"] = True
        self._log(event)
        if response is not None:
            try:
                reply(response.to_bytes())
            except (OSError, RuntimeError) as exc:
                self._log({"event": "sip-send-failed", "remote": _text(peer.remote), "reason": _reason(exc)})

    def _dispatch(self, message: SipMessage, peer: PeerInfo, release: Callable[[], None]) -> None:
        # Tasks start in creation order: handlers are entered in the order messages arrived.
        task = asyncio.get_running_loop().create_task(self._run_handler(message, peer, release))
        self._handler_tasks.add(task)
        task.add_done_callback(self._handler_tasks.discard)

    async def _run_handler(self, message: SipMessage, peer: PeerInfo, release: Callable[[], None]) -> None:
        try:
            await self._handler(message, peer)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._log(
                {
                    "event": "sip-handler-error",
                    "listener": peer.listener,
                    "remote": _text(peer.remote),
                    "message": _summary(message),
                    "reason": f"{type(exc).__name__}: {_reason(exc)}",
                }
            )
            _logger.debug("handler failure", exc_info=True)
        finally:
            release()

    # ------------------------------------------------------------------ sending

    async def send(
        self,
        message: SipMessage,
        destination: Address,
        *,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        source_listener: str | None = None,
    ) -> None:
        """Send one message; TransportError if it cannot be handed to the network.

        UDP goes out of ``source_listener``'s socket, or the first UDP listener's, or an ephemeral
        one.  TCP/TLS reuse a live inbound connection from ``destination`` (responses, RFC 3261
        §18.2.2), else a pooled outbound connection, else connect (TLS: ``ssl_context`` and
        ``server_hostname``, which defaults to the destination host and is checked).
        """
        if self._closed:
            raise TransportError("transport is closed")
        data = message.to_bytes()
        if destination.transport == "udp":
            await self._send_datagram(data, destination, source_listener)
            return
        connection = self._live_connection(destination, server_hostname)
        if connection is None:
            connection = await self._connect(destination, ssl_context, server_hostname)
        try:
            connection.write(data)
            transport = connection.writer.transport
            # Most writes leave nothing buffered: then there is nothing to wait for, and no timer
            # to set (drain() waits only while writing is paused, that is with data buffered).
            if transport.get_write_buffer_size() or transport.is_closing():
                async with asyncio.timeout(self._connect_timeout):
                    await connection.writer.drain()
        except (OSError, RuntimeError, TimeoutError) as exc:
            connection.abort()
            raise TransportError(f"cannot send to {destination}: {_reason(exc)}") from None

    def has_connection(self, destination: Address, server_hostname: str | None = None) -> bool:
        """Whether ``send`` to ``destination`` would go out without opening a connection: a live
        connection would be reused (stream), or the transport is UDP (connectionless, always true)."""
        if destination.transport == "udp":
            return True
        return self._live_connection(destination, server_hostname) is not None

    def _live_connection(self, destination: Address, server_hostname: str | None) -> _Connection | None:
        remote = (destination.transport, _normal_host(destination.host), destination.port)
        candidates = [self._inbound.get(remote), self._pool.get(self._pool_key(destination, server_hostname))]
        if server_hostname is None:
            # Answering a request that came over a connection this side opened (RFC 3261 §18.2.2).
            candidates.append(self._outbound_by_remote.get(remote))
        return next((c for c in candidates if c is not None and c.is_open()), None)

    @staticmethod
    def _pool_key(destination: Address, server_hostname: str | None) -> _PoolKey:
        name = None
        if destination.transport == "tls":
            name = (server_hostname or destination.host).lower()
        return (destination.transport, _normal_host(destination.host), destination.port, name)

    async def _connect(
        self, destination: Address, ssl_context: ssl.SSLContext | None, server_hostname: str | None
    ) -> _Connection:
        key = self._pool_key(destination, server_hostname)
        if destination.transport == "tls" and ssl_context is None:
            raise TransportError(f"cannot send to {destination}: no connection open and no ssl_context given")
        lock = self._connect_locks.setdefault(key, asyncio.Lock())
        async with lock:
            # Another send may have connected while this one waited.
            existing = self._live_connection(destination, server_hostname)
            if existing is not None:
                return existing
            try:
                async with asyncio.timeout(self._connect_timeout):
                    if destination.transport == "tls":
                        reader, writer = await asyncio.open_connection(
                            destination.host,
                            destination.port,
                            ssl=ssl_context,
                            server_hostname=server_hostname or destination.host,
                            ssl_handshake_timeout=self._connect_timeout,
                            limit=_READ_SIZE,
                        )
                    else:
                        reader, writer = await asyncio.open_connection(
                            destination.host, destination.port, limit=_READ_SIZE
                        )
            except (OSError, ValueError, TimeoutError) as exc:
                raise TransportError(f"cannot connect to {destination}: {_reason(exc)}") from None
            if self._closed:
                await _close_writer(writer)
                raise TransportError("transport is closed")
            peer = PeerInfo(
                destination.transport,
                _endpoint(writer.get_extra_info("peername")),
                _endpoint(writer.get_extra_info("sockname")),
                OUTBOUND,
                peer_certificate(writer.get_extra_info("ssl_object")),
                next(self._connection_ids),
            )
            connection = _Connection(reader, writer, peer, pool_key=key)
            self._register(connection)
            connection.task = asyncio.get_running_loop().create_task(self._serve(connection))
            self._log(
                {
                    "event": "sip-connected",
                    "destination": str(destination),
                    "local": _text(peer.local),
                    "connection_id": peer.connection_id,
                }
            )
            return connection

    async def _send_datagram(self, data: bytes, destination: Address, source_listener: str | None) -> None:
        if source_listener is not None:
            endpoint = self._udp.get(source_listener)
            if endpoint is None:
                raise TransportError(
                    f"cannot send to {destination}: no UDP listener named {source_listener!r}"
                )
        elif self._udp:
            endpoint = next(iter(self._udp.values()))
        else:
            endpoint = await self._ephemeral_endpoint(destination)
        target = (destination.host, destination.port)
        if not _is_ip(destination.host):
            target = await self._resolve(destination)
        try:
            endpoint.sendto(data, target)
        except (OSError, ValueError, RuntimeError) as exc:
            raise TransportError(f"cannot send to {destination}: {_reason(exc)}") from None

    async def _ephemeral_endpoint(self, destination: Address) -> _DatagramEndpoint:
        if self._ephemeral_udp is None or self._ephemeral_udp.transport is None:
            endpoint = _DatagramEndpoint(self, OUTBOUND, None)
            family = socket.AF_INET6 if _is_ipv6(destination.host) else socket.AF_INET
            try:
                await asyncio.get_running_loop().create_datagram_endpoint(lambda: endpoint, family=family)
            except OSError as exc:
                raise TransportError(
                    f"cannot send to {destination}: no UDP socket ({_reason(exc)})"
                ) from None
            self._ephemeral_udp = endpoint
        return self._ephemeral_udp

    async def _resolve(self, destination: Address) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                infos = await loop.getaddrinfo(destination.host, destination.port, type=socket.SOCK_DGRAM)
        except (OSError, TimeoutError) as exc:
            raise TransportError(f"cannot resolve {destination}: {_reason(exc)}") from None
        if not infos:
            raise TransportError(f"cannot resolve {destination}: no address")
        return _endpoint(infos[0][4])

    # ------------------------------------------------------------------ shutdown

    async def close(self) -> None:
        """Close listeners and connections, cancel handlers still running."""
        if self._closed:
            return
        self._closed = True
        for server in self._servers.values():
            server.close()
        for endpoint in [*self._udp.values(), self._ephemeral_udp]:
            if endpoint is not None and endpoint.transport is not None:
                endpoint.transport.close()
        pending: list[asyncio.Task[Any]] = [*self._inbound_tasks, *self._handler_tasks]
        for connection in list(self._connections):
            connection.abort()
            if connection.task is not None:
                pending.append(connection.task)
        current = asyncio.current_task()
        for task in pending:
            if task is not current:
                task.cancel()
        pending = [task for task in pending if task is not current]
        if pending:
            await asyncio.wait(pending, timeout=self._connect_timeout)
        for server in self._servers.values():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), self._connect_timeout)
        self._servers.clear()
        self._udp.clear()
        self._connections.clear()
        self._inbound.clear()
        self._outbound_by_remote.clear()
        self._pool.clear()

    def _log(self, event: dict[str, object]) -> None:
        try:
            self._log_sink(event)
        except Exception:  # a broken log sink must not break the transport
            _logger.exception("log sink failed")


class _TlsAcceptor(asyncio.Protocol):
    """The first protocol of an inbound TLS connection: stops reading at once (the handshake must
    find the ClientHello unread), starts the handshake task, and keeps what might arrive before
    the stream protocol takes over."""

    def __init__(self, owner: SipTransport, listener: _Listener) -> None:
        self._owner = owner
        self._listener = listener
        self._pending: list[bytes] = []
        self._eof = False
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        raw = cast(asyncio.Transport, transport)  # a stream transport (create_server)
        raw.pause_reading()
        asyncio.get_running_loop().create_task(self._owner._accept_tls(self._listener, self, raw))

    def data_received(self, data: bytes) -> None:  # plaintext after the handshake, before hand-over
        self._pending.append(data)

    def eof_received(self) -> bool | None:
        self._eof = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True

    def hand_over(self, stream: asyncio.StreamReaderProtocol) -> None:
        """Give the stream protocol what arrived in between."""
        for data in self._pending:
            stream.data_received(data)
        self._pending.clear()
        if self._eof:
            stream.eof_received()


def _is_server_context(context: ssl.SSLContext) -> bool:
    return context.protocol != ssl.PROTOCOL_TLS_CLIENT


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError, RuntimeError):
        async with asyncio.timeout(_CLOSE_WAIT):
            await writer.wait_closed()
