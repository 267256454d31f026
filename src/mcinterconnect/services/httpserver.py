"""The HTTP listener every aiohttp service of the project runs on (KMS, GMS).

One place for what each service needs the same way: a bounded TLS handshake, no access log,
a short shutdown, and refusals of malformed requests (before any route runs) answered with a
one-line reason code and the service's own ``Server`` name instead of aiohttp's error page, which
quotes the request and names the server software.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import ClassVar, Final

from aiohttp import web

#: Bound of the TLS handshake on a listener (as for SIP, docs/PROFILE.md §6).
HANDSHAKE_TIMEOUT: Final = 5.0
#: Seconds ``close`` gives requests in progress.
SHUTDOWN_TIMEOUT: Final = 1.0


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

    @property
    def started(self) -> bool:
        return self._runner is not None

    async def start(
        self, app: web.Application, host: str, port: int, ssl_context: ssl.SSLContext | None
    ) -> None:
        """Listen on ``host:port`` (0: any free port, see ``address``), with TLS when given."""
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

        try:
            self._server = await asyncio.get_running_loop().create_server(
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
        if runner is not None:
            await runner.cleanup()
        if server is not None:
            await server.wait_closed()
