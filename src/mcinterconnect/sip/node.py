"""A SIP element: a sans-IO core behind a ``SipTransport`` (the thin asyncio adapter).

The core decides (``handle_request`` / ``handle_response`` return ``Forward`` actions); the node
only sends what it is told.  A TLS send picks its client context by the peer name the core
names (``server_hostname``).  When a send fails and the core gave a ``fallback``, the message
goes there instead; otherwise the failure is logged and the message dropped (SIP retransmission
or the sender's timeout recovers).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Protocol

from mcinterconnect.sip.message import SipMessage, SipRequest, SipResponse
from mcinterconnect.sip.parser import DEFAULT_LIMITS, ParserLimits
from mcinterconnect.sip.proxy import Forward
from mcinterconnect.sip.transport import Address, LogSink, PeerCheck, PeerInfo, SipTransport, TransportError


class SipCore(Protocol):
    """What a node runs: pure decisions on messages."""

    def on_request(self, request: SipRequest, peer: PeerInfo) -> list[Forward]: ...

    def on_response(self, response: SipResponse, peer: PeerInfo) -> list[Forward]: ...


ClientContexts = Callable[[str], ssl.SSLContext | None]


class SipNode:
    """Runs one ``SipCore`` on its listeners."""

    def __init__(
        self,
        core: SipCore,
        *,
        agent: str,
        log: LogSink | None = None,
        client_contexts: ClientContexts | None = None,
        limits: ParserLimits = DEFAULT_LIMITS,
    ) -> None:
        self.core = core
        self.transport = SipTransport(self._on_message, agent=agent, log=log, limits=limits)
        self._client_contexts = client_contexts
        self._log = log
        #: Sees the plaintext of every message this node sends over TLS (leak tests, the demo).
        self.wire_tap: Callable[[bytes], None] | None = None

    async def listen(
        self,
        name: str,
        address: Address,
        *,
        ssl_context: ssl.SSLContext | None = None,
        peer_check: PeerCheck | None = None,
    ) -> Address:
        return await self.transport.listen(name, address, ssl_context=ssl_context, peer_check=peer_check)

    async def close(self) -> None:
        await self.transport.close()

    async def _on_message(self, message: SipMessage, peer: PeerInfo) -> None:
        if isinstance(message, SipRequest):
            actions = self.core.on_request(message, peer)
        elif isinstance(message, SipResponse):
            actions = self.core.on_response(message, peer)
        else:  # pragma: no cover - the parser only yields requests and responses
            return
        for action in actions:
            await self.execute(action)

    async def execute(self, action: Forward) -> None:
        """Send one action's message; use its fallback when the first choice is unreachable."""
        destination = action.destination
        if action.fallback is not None and not self.transport.has_connection(
            destination, action.server_hostname
        ):
            destination = action.fallback
        try:
            await self._send(action, destination)
        except TransportError as error:
            if action.fallback is None or destination == action.fallback:
                self._report(action, destination, str(error))
                return
            try:
                await self._send(action, action.fallback)
            except TransportError as second:
                self._report(action, action.fallback, str(second))

    async def _send(self, action: Forward, destination: Address) -> None:
        context = None
        if destination.transport == "tls":
            if self._client_contexts is None or action.server_hostname is None:
                raise TransportError(f"no TLS identity configured for {destination}")
            context = self._client_contexts(action.server_hostname)
            if context is None:
                raise TransportError(f"no TLS client context for {action.server_hostname}")
            if self.wire_tap is not None:
                self.wire_tap(action.message.to_bytes())
        await self.transport.send(
            action.message, destination, ssl_context=context, server_hostname=action.server_hostname
        )

    def _report(self, action: Forward, destination: Address, reason: str) -> None:
        if self._log is not None:
            message = action.message
            what = message.method if isinstance(message, SipRequest) else str(message.status)
            self._log(
                {"event": "send-failed", "message": what, "destination": str(destination), "reason": reason}
            )
