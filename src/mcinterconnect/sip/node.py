"""A SIP element: a sans-IO core behind a ``SipTransport`` (the thin asyncio adapter).

The core decides (``handle_request`` / ``handle_response`` return ``Forward`` actions); the node
only sends what it is told.  A TLS send picks its client context by the peer name the core
names (``server_hostname``).  When a send fails and the core gave a ``fallback``, the message
goes there instead; otherwise the failure is logged and the message dropped (SIP retransmission
or the sender's timeout recovers).

A ``Forward`` with a ``Claim`` (the replay step of explicit authentication) is sent only after
the node's claim store said its key is new; the store is the only asynchronous step the core
cannot take itself.  Any failure of the store, or no store at all, takes the claim's
fail-closed branch.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from mcinterconnect.sip.message import SipMessage, SipRequest, SipResponse
from mcinterconnect.sip.parser import DEFAULT_LIMITS, ParserLimits
from mcinterconnect.sip.proxy import Claim, Forward
from mcinterconnect.sip.transport import Address, LogSink, PeerCheck, PeerInfo, SipTransport, TransportError


class SipCore(Protocol):
    """What a node runs: pure decisions on messages."""

    def on_request(self, request: SipRequest, peer: PeerInfo) -> list[Forward]: ...

    def on_response(self, response: SipResponse, peer: PeerInfo) -> list[Forward]: ...


class ClaimStore(Protocol):
    """Answers atomically whether a key is new (``protect.replay.ReplayStore`` fits).

    Raises on unavailability; the node then fails closed."""

    async def add_if_absent(self, key: bytes, ttl: float) -> bool: ...


ClientContexts = Callable[[str], ssl.SSLContext | None]


@dataclass(frozen=True)
class _Instead:
    message: Forward | None


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
        claim_store: ClaimStore | None = None,
    ) -> None:
        self.core = core
        #: Where ``Claim`` keys are recorded (the EAR replay store); owned by whoever opened it.
        self.claim_store = claim_store
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
        reuse_port: bool = False,
    ) -> Address:
        return await self.transport.listen(
            name, address, ssl_context=ssl_context, peer_check=peer_check, reuse_port=reuse_port
        )

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
        """Send one action's message (after its claim, if any); use its fallback when the first
        choice is unreachable."""
        if action.claim is not None:
            chosen = await self._settle(action.claim)
            if chosen is None:
                await self._deliver(action)
            elif chosen.message is not None:
                await self._deliver(chosen.message)
            return
        await self._deliver(action)

    async def _settle(self, claim: Claim) -> _Instead | None:
        """Run the claim: ``None`` to send the guarded forward, else what to send instead."""
        if self.claim_store is None:
            claim.on_unavailable("no replay store is configured on this node")
            return _Instead(claim.if_unavailable)
        try:
            new = await self.claim_store.add_if_absent(claim.key, claim.ttl)
        except Exception as error:  # any store failure: fail closed (ARCHITECTURE.md §4)
            claim.on_unavailable(" ".join(str(error).split()) or type(error).__name__)
            return _Instead(claim.if_unavailable)
        if new:
            claim.on_claimed()
            return None
        claim.on_seen()
        return _Instead(claim.if_seen)

    async def _deliver(self, action: Forward) -> None:
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
