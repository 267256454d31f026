"""Probing a SIP listener as an outsider would: one request over TCP or TLS, one answer or an error.

Used by ``mcic demo`` to play the attacker against the SIP-3 border, and by the tests.  Every
probe is bounded in time and reports what it observed as text, never raises for network errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
from dataclasses import dataclass

from mcinterconnect.sip.message import Headers, SipRequest, SipResponse
from mcinterconnect.sip.parser import SipParseError, StreamFramer, parse_message
from mcinterconnect.sip.proxy import MAGIC_COOKIE
from mcinterconnect.sip.transport import Address


@dataclass(frozen=True)
class ProbeResult:
    """What a probe saw: a response, or the error that ended the attempt."""

    response: SipResponse | None = None
    error: str | None = None
    handshake_completed: bool = False

    def describe(self) -> str:
        if self.response is not None:
            warning = self.response.headers.get("Warning")
            text = f"{self.response.status} {self.response.reason}"
            return f"{text}; Warning: {warning}" if warning else text
        return self.error or "no answer"


def probe_request(
    method: str,
    uri: str,
    *,
    source: str,
    target: str,
    via_host: str,
    transport: str = "TLS",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    content_type: str | None = None,
) -> SipRequest:
    """A well-formed out-of-dialog request as a probe sends it."""
    fields = Headers(
        [
            ("Via", f"SIP/2.0/{transport} {via_host};branch={MAGIC_COOKIE}{secrets.token_hex(8)};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<{source}>;tag={secrets.token_hex(4)}"),
            ("To", f"<{target}>"),
            ("Call-ID", secrets.token_hex(10)),
            ("CSeq", f"1 {method}"),
        ]
    )
    for name, value in headers or []:
        fields.add(name, value)
    if content_type is not None:
        fields.add("Content-Type", content_type)
    return SipRequest(headers=fields, body=body, method=method, uri=uri)


async def probe(
    address: Address,
    payload: bytes,
    *,
    context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    timeout: float = 3.0,
) -> ProbeResult:
    """Connect (TLS when ``context`` is given), send ``payload``, return the first final response."""
    handshake = False
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                address.host, address.port, ssl=context, server_hostname=server_hostname if context else None
            )
            handshake = True
            try:
                writer.write(payload)
                await writer.drain()
                framer = StreamFramer()
                while True:
                    chunk = await reader.read(65536)
                    if not chunk:
                        return ProbeResult(
                            error="connection closed by the peer without a SIP answer",
                            handshake_completed=handshake,
                        )
                    framer.feed(chunk)
                    while (raw := framer.next_message()) is not None:
                        message = parse_message(raw, stream=True)
                        if isinstance(message, SipResponse) and message.status >= 200:
                            return ProbeResult(response=message, handshake_completed=handshake)
            finally:
                writer.close()
                with contextlib.suppress(OSError, ssl.SSLError):
                    await writer.wait_closed()
    except TimeoutError:
        return ProbeResult(error=f"no answer within {timeout:g} s", handshake_completed=handshake)
    except ssl.SSLError as error:
        return ProbeResult(error=f"TLS refused: {error.reason or error}", handshake_completed=handshake)
    except (ConnectionError, OSError) as error:
        return ProbeResult(
            error=f"connection refused or reset: {error.strerror or error}", handshake_completed=handshake
        )
    except SipParseError as error:
        return ProbeResult(error=f"unparseable answer: {error.reason}", handshake_completed=handshake)
