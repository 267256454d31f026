"""The MC client: registers with its home SIP core only, sends and receives short data (MESSAGE).

TS 33.180 11.1.1: an MC client connects only to MC servers of its own system; everything from a
partner reaches it through its own servers.  The client therefore knows one address, its SIP
core's SIP-1 face, and one PSI, its MCX server's (the Request-URI of what it sends, as for the
participating function of TS 24.379 Annex H); the target travels in ``mcptt-request-uri``.

The short-data body is ``multipart/mixed``: the ``application/vnd.3gpp.mcptt-info+xml`` part and
a ``text/plain; charset=utf-8`` payload.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass

from mcinterconnect.mcinfo import MCPTT_INFO_TYPE, McInfoError, McpttInfo, find_mcptt_info
from mcinterconnect.sip.message import Headers, SipMessage, SipRequest, SipResponse, make_response
from mcinterconnect.sip.multipart import BodyPart, MultipartError, build_multipart, parse_multipart
from mcinterconnect.sip.proxy import MAGIC_COOKIE, response_destination
from mcinterconnect.sip.transport import Address, PeerInfo, SipTransport, TransportError
from mcinterconnect.sip.uri import Via

TEXT_TYPE = "text/plain; charset=utf-8"


class ClientError(RuntimeError):
    """A client operation that did not succeed (one-line reason)."""


@dataclass(frozen=True)
class ReceivedMessage:
    """A short-data message delivered to this client."""

    sender: str | None
    target: str | None
    text: str
    asserted: str | None


def short_data_body(target: str, text: str) -> tuple[str, bytes]:
    """The multipart body of a short-data MESSAGE: (Content-Type, body)."""
    parts = [
        BodyPart(Headers([("Content-Type", MCPTT_INFO_TYPE)]), McpttInfo(request_uri=target).to_xml()),
        BodyPart(Headers([("Content-Type", TEXT_TYPE)]), text.encode("utf-8")),
    ]
    return build_multipart(parts)


def short_data_text(message: SipMessage) -> str:
    """The text payload of a short-data MESSAGE (empty when it has none)."""
    content_type = message.headers.get("Content-Type") or ""
    if message.content_type == "text/plain":
        return message.body.decode("utf-8", "replace")
    if message.content_type != "multipart/mixed":
        return ""
    try:
        parts = parse_multipart(message.body, content_type)
    except MultipartError:
        return ""
    return next((p.body.decode("utf-8", "replace") for p in parts if p.content_type == "text/plain"), "")


class McClient:
    """One MC user's client on loopback: a TCP listener for what its SIP core delivers."""

    def __init__(
        self,
        user: str,
        sip_core: Address,
        *,
        mcx_psi: str,
        listen_host: str = "127.0.0.1",
        timeout: float = 5.0,
    ) -> None:
        self.user = user
        self.sip_core = sip_core
        self.mcx_psi = mcx_psi
        self.timeout = timeout
        self.inbox: asyncio.Queue[ReceivedMessage] = asyncio.Queue()
        self._listen_host = listen_host
        self._transport = SipTransport(self._on_message, agent="mc-client")
        self._pending: dict[str, asyncio.Future[SipResponse]] = {}
        self._local: Address | None = None
        self._cseq = 0
        self._call_prefix = secrets.token_hex(6)

    async def start(self) -> Address:
        self._local = await self._transport.listen("client", Address("tcp", self._listen_host, 0))
        return self._local

    async def close(self) -> None:
        await self._transport.close()

    @property
    def contact(self) -> str:
        if self._local is None:
            raise ClientError("client not started")
        user = self.user.removeprefix("sip:").split("@")[0]
        return f"sip:{user}@{self._local.host}:{self._local.port};transport=tcp"

    async def register(self, expires: int = 3600) -> SipResponse:
        domain = self.user.rpartition("@")[2]
        request = self._request("REGISTER", f"sip:{domain}", self.user)
        request.headers.add("Contact", f"<{self.contact}>")
        request.headers.add("Expires", str(expires))
        return await self._transact(request)

    async def send_message(self, target: str, text: str) -> SipResponse:
        request = self._request("MESSAGE", self.mcx_psi, target)
        content_type, body = short_data_body(target, text)
        request.headers.add("Content-Type", content_type)
        request.body = body
        return await self._transact(request)

    def _request(self, method: str, uri: str, to: str) -> SipRequest:
        if self._local is None:
            raise ClientError("client not started")
        self._cseq += 1
        branch = MAGIC_COOKIE + secrets.token_hex(8)
        headers = Headers(
            [
                ("Via", f"SIP/2.0/TCP {self._local.host}:{self._local.port};branch={branch};rport"),
                ("Max-Forwards", "70"),
                ("From", f"<{self.user}>;tag={secrets.token_hex(4)}"),
                ("To", f"<{to}>"),
                ("Call-ID", f"{self._call_prefix}-{self._cseq}"),
                ("CSeq", f"{self._cseq} {method}"),
                ("User-Agent", "mcic-client"),
            ]
        )
        return SipRequest(headers=headers, method=method, uri=uri)

    async def _transact(self, request: SipRequest) -> SipResponse:
        branch = Via.parse(request.vias[0]).branch or ""
        future: asyncio.Future[SipResponse] = asyncio.get_running_loop().create_future()
        self._pending[branch] = future
        try:
            await self._transport.send(request, self.sip_core)
            async with asyncio.timeout(self.timeout):
                return await future
        except TransportError as error:
            raise ClientError(f"{request.method} not sent: {error}") from None
        except TimeoutError:
            raise ClientError(f"{request.method}: no final response within {self.timeout:g} s") from None
        finally:
            self._pending.pop(branch, None)

    async def _on_message(self, message: SipMessage, peer: PeerInfo) -> None:
        del peer
        if isinstance(message, SipResponse):
            if message.status < 200:
                return
            try:
                branch = Via.parse(message.vias[0]).branch or ""
            except (ValueError, IndexError):
                return
            future = self._pending.get(branch)
            if future is not None and not future.done():
                future.set_result(message)
            return
        assert isinstance(message, SipRequest)
        if message.method == "MESSAGE":
            try:
                info = find_mcptt_info(message)
            except McInfoError:
                await self._reply(message, 400)
                return
            asserted = message.headers.get("P-Asserted-Identity")
            await self.inbox.put(
                ReceivedMessage(
                    sender=info.calling_user_id if info else None,
                    target=info.request_uri if info else None,
                    text=short_data_text(message),
                    asserted=asserted,
                )
            )
            await self._reply(message, 200)
        elif message.method != "ACK":
            await self._reply(message, 200 if message.method == "OPTIONS" else 405)

    async def _reply(self, request: SipRequest, status: int) -> None:
        response = make_response(request, status, to_tag=secrets.token_hex(4))
        try:
            await self._transport.send(response, response_destination(response))
        except (TransportError, ValueError):
            return
