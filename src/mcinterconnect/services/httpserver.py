"""The HTTP listener every aiohttp service of the project runs on (KMS, GMS).

One place for what each service needs the same way: a bounded TLS handshake, no access log,
a short shutdown, and refusals of malformed requests (before any route runs) answered with a
one-line reason code and the service's own ``Server`` name instead of aiohttp's error page, which
quotes the request and names the server software.

A listener that must see TLS failures (the HTTP proxy's faces, TS 33.180 11.1.1 / WA-IC-14:
every refused peer is audited) passes ``on_handshake_failure``: the handshake is then driven here
(``loop.start_tls``), as the SIP transport does, and each failure is reported with the peer's
address and a one-line reason.  ``tap`` sees the plaintext of everything written on such a TLS
connection (leak tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Final, cast

from aiohttp import web

#: Bound of the TLS handshake on a listener (as for SIP, docs/PROFILE.md §6).
HANDSHAKE_TIMEOUT: Final = 5.0
#: Seconds ``close`` gives requests in progress.
SHUTDOWN_TIMEOUT: Final = 1.0

#: ``(peer host, peer port), one-line reason`` of a refused TLS handshake.
HandshakeFailure = Callable[[tuple[str, int], str], None]


class _ShortErrorRequestHandler(web.RequestHandler):
    """aiohttp's connection handler with a short ``handle_error`` (same slots, same layout)."""

    __slots__ = ()
    server_name: ClassVar[str] = "mcic"

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # as aiohttp: a response already started cannot be replaced
            raise ConnectionError("response already started")
        reason = {413: "body-too-large"}.get(status, "bad-request" if status < 500 else "internal-error")
        response = web.Response(status=status, text=f"{reason}\n", content_type="text/plain")
        response.headers["Server"] = self.server_name
        response.force_close()
        return response


class HttpListener:
    """One aiohttp application on one address; ``start`` then ``close``."""

    def __init__(self, server_name: str) -> None:
        self.server_name = server_name
        self._handler_class = type(
            f"_ShortErrorRequestHandler_{server_name}",
            (_ShortErrorRequestHandler,),
            {"__slots__": (), "server_name": server_name},
        )
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        #: Handshakes in progress (driven TLS only), cancelled by ``close``.
        self._handshakes: set[asyncio.Task[None]] = set()

    @property
    def started(self) -> bool:
        return self._runner is not None

    async def start(
        self,
        app: web.Application,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        *,
        on_handshake_failure: HandshakeFailure | None = None,
        tap: Callable[[bytes], None] | None = None,
    ) -> None:
        """Listen on ``host:port`` (0: any free port, see ``address``), with TLS when given.

        With TLS, ``on_handshake_failure`` hears of every refused handshake and ``tap`` gets the
        plaintext of every write (module docstring)."""
        if self._runner is not None:
            raise RuntimeError(f"the {self.server_name} service is already started")
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        web_server = runner.server
        assert web_server is not None
        handler_class = self._handler_class

        def connection() -> web.RequestHandler:
            handler = web_server()
            handler.__class__ = handler_class  # same layout (no new slots): only handle_error differs
            return handler

        loop = asyncio.get_running_loop()
        try:
            if ssl_context is not None and (on_handshake_failure is not None or tap is not None):
                driven = ssl_context

                def acceptor() -> asyncio.Protocol:
                    return _TlsAcceptor(self, connection, driven, on_handshake_failure, tap)

                self._server = await loop.create_server(acceptor, host, port, reuse_address=True)
            else:
                self._server = await loop.create_server(
                    connection,
                    host,
                    port,
                    ssl=ssl_context,
                    ssl_handshake_timeout=HANDSHAKE_TIMEOUT if ssl_context is not None else None,
                    reuse_address=True,
                )
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the service listens on."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError(f"the {self.server_name} service is not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def close(self) -> None:
        """Stop listening and close every connection."""
        server, runner = self._server, self._runner
        self._server = self._runner = None
        if server is not None:
            server.close()
        for task in list(self._handshakes):
            task.cancel()
        if runner is not None:
            await runner.cleanup()
        if server is not None:
            await server.wait_closed()


class _TlsAcceptor(asyncio.Protocol):
    """Accepts TCP, drives the server TLS handshake, then hands the connection to aiohttp.

    Reading is paused until ``start_tls`` takes the socket over, so no ClientHello byte is lost;
    anything that arrives after the handshake and before aiohttp's handler is installed is kept
    and replayed to it."""

    def __init__(
        self,
        listener: HttpListener,
        make_handler: Callable[[], web.RequestHandler],
        context: ssl.SSLContext,
        on_failure: HandshakeFailure | None,
        tap: Callable[[bytes], None] | None,
    ) -> None:
        self._listener = listener
        self._make_handler = make_handler
        self._context = context
        self._on_failure = on_failure
        self._tap = tap
        self._pending: list[bytes] = []
        self._eof = False
        self._lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (asyncio's, or uvloop's, which does not subclass asyncio.Transport).
        stream = cast(asyncio.Transport, transport)
        stream.pause_reading()
        task = asyncio.get_running_loop().create_task(self._handshake(stream))
        self._listener._handshakes.add(task)
        task.add_done_callback(self._listener._handshakes.discard)

    async def _handshake(self, transport: asyncio.Transport) -> None:
        peer = transport.get_extra_info("peername") or ("?", 0)
        remote = (str(peer[0]), int(peer[1]))
        try:
            tls = await asyncio.get_running_loop().start_tls(
                transport, self, self._context, server_side=True, ssl_handshake_timeout=HANDSHAKE_TIMEOUT
            )
        except asyncio.CancelledError:
            transport.abort()
            raise
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError, RuntimeError) as error:
            transport.abort()
            if self._on_failure is not None:
                self._on_failure(remote, _one_line(error))
            return
        if tls is None or self._lost:
            return
        handler = self._make_handler()
        app_transport: asyncio.Transport = tls if self._tap is None else _TappedTransport(tls, self._tap)
        tls.set_protocol(handler)
        handler.connection_made(app_transport)
        for data in self._pending:
            handler.data_received(data)
        self._pending.clear()
        if self._eof:
            handler.eof_received()

    def data_received(self, data: bytes) -> None:
        self._pending.append(data)

    def eof_received(self) -> bool | None:
        self._eof = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class _TappedTransport(asyncio.Transport):
    """The TLS transport of one connection, with every plaintext write shown to ``tap`` first."""

    def __init__(self, inner: asyncio.Transport, tap: Callable[[bytes], None]) -> None:
        super().__init__()
        self._inner = inner
        self._tap = tap

    def write(self, data: bytes | bytearray | memoryview) -> None:
        with contextlib.suppress(Exception):  # a tap must never break the connection
            self._tap(bytes(data))
        self._inner.write(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        data = b"".join(bytes(chunk) for chunk in list_of_data)
        self.write(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._inner.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._inner.is_closing()

    def close(self) -> None:
        self._inner.close()

    def abort(self) -> None:
        self._inner.abort()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._inner.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._inner.get_protocol()

    def is_reading(self) -> bool:
        return self._inner.is_reading()

    def pause_reading(self) -> None:
        self._inner.pause_reading()

    def resume_reading(self) -> None:
        self._inner.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._inner.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._inner.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._inner.get_write_buffer_limits()

    def write_eof(self) -> None:
        self._inner.write_eof()

    def can_write_eof(self) -> bool:
        return self._inner.can_write_eof()
