"""Strict, sans-IO SIP parsing (RFC 3261 §7, §18.3, §25) with size limits.

``parse_message`` turns one complete message (a datagram, or what ``StreamFramer`` cut from a
stream) into a ``SipRequest`` or ``SipResponse``.  Every problem raises ``SipParseError``, whose
``status`` and ``reason`` say how to answer (400 with a Warning naming the fault, 505 for another
SIP version, 513 for an oversized message).  No other exception leaves this module for any input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mcinterconnect.sip.message import (
    Headers,
    SipMessage,
    SipRequest,
    SipResponse,
    canonical_name,
    make_response,
    warning_value,
)


@dataclass(frozen=True)
class ParserLimits:
    """Bounds on what the parser accepts; a border proxy must not buffer without limit."""

    max_message_size: int = 65_535
    max_header_count: int = 100
    max_line_length: int = 8_192


DEFAULT_LIMITS = ParserLimits()


class SipParseError(ValueError):
    """A message that cannot be accepted, with the status to answer it with."""

    def __init__(self, reason: str, status: int = 400, partial: Headers | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        #: Header fields read before the fault, used to build an error response when possible.
        self.partial = partial
        #: Whether the message was a request (only requests are answered).
        self.is_request = False


_TCHARS = r"[A-Za-z0-9\-.!%*_+`'~]+"  # RFC 7230 tchar, the SIP token (RFC 3261 §25.1)
_METHOD_RE = re.compile(_TCHARS)
_HEADER_NAME_RE = re.compile(_TCHARS)
_STATUS_LINE_RE = re.compile(r"SIP/([0-9]+\.[0-9]+) ([0-9]{3}) ([^\r\n]*)")
_VERSION_RE = re.compile(r"SIP/([0-9]+\.[0-9]+)", re.IGNORECASE)
#: A Request-URI: scheme ":" then visible ASCII (RFC 3261 §25.1 absoluteURI / SIP-URI).
_URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:[\x21-\x7e]+")
_DIGITS_RE = re.compile(r"[0-9]{1,10}")
_CSEQ_RE = re.compile(r"([0-9]{1,10})[ \t]+(" + _TCHARS + r")")
#: Control characters (HTAB aside) have no place in a start line (RFC 3261 §25.1 Reason-Phrase).
_START_LINE_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_REQUIRED_REQUEST_HEADERS = ("Via", "From", "To", "Call-ID", "CSeq")
_REQUIRED_RESPONSE_HEADERS = ("Via", "From", "To", "Call-ID", "CSeq")
_SINGLE_HEADERS = ("From", "To", "Call-ID", "CSeq", "Content-Length", "Max-Forwards", "Content-Type")
#: Headers whose values are name-addr or addr-spec (RFC 3261 §20); Contact may also be "*".
_ADDRESS_HEADERS = ("From", "To", "Contact", "Route", "Record-Route")


def parse_message(data: bytes, limits: ParserLimits = DEFAULT_LIMITS, *, stream: bool = False) -> SipMessage:
    """Parse one complete SIP message.

    On a datagram (``stream=False``) bytes beyond Content-Length are discarded (RFC 3261 §18.3);
    on a stream the framer has already cut the message to its exact length.
    """
    # RFC 3261 §7.5: CRLFs before the start line are ignored.
    offset = 0
    while data.startswith(b"\r\n", offset):
        offset += 2
    try:
        return _parse(data, offset, limits, stream=stream)
    except SipParseError as error:
        error.is_request = not data.startswith(b"SIP/", offset)
        raise


def _parse(data: bytes, offset: int, limits: ParserLimits, *, stream: bool) -> SipMessage:
    if len(data) > limits.max_message_size:
        raise SipParseError(
            f"message of {len(data)} bytes exceeds the limit of {limits.max_message_size}", 513
        )
    if offset == len(data):
        raise SipParseError("empty message")
    head_end = data.find(b"\r\n\r\n", offset)
    if head_end < 0:
        raise SipParseError("no empty line ends the header section")
    try:
        head = data[offset:head_end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError(f"header section is not valid UTF-8 (byte {offset + exc.start})") from None
    body = data[head_end + 4 :]
    start, *header_lines = head.split("\r\n")
    if len(start) > limits.max_line_length:
        raise SipParseError(f"start line longer than {limits.max_line_length} bytes")
    headers = _parse_headers(header_lines, limits)
    message = _parse_start_line(start, headers)
    _check_mandatory(message)
    _check_syntax(message)
    message.body = _frame_body(headers, body, stream=stream)
    return message


def _parse_headers(lines: list[str], limits: ParserLimits) -> Headers:
    unfolded: list[str] = []
    for line in lines:
        if len(line) > limits.max_line_length:
            raise SipParseError(f"header line longer than {limits.max_line_length} bytes")
        if "\n" in line or "\r" in line or "\x00" in line:
            raise SipParseError("bare CR, LF or NUL inside the header section")
        if line[:1] in (" ", "\t"):
            if not unfolded:
                raise SipParseError("continuation line before the first header field")
            unfolded[-1] = unfolded[-1].rstrip(" \t") + " " + line.strip(" \t")
            if len(unfolded[-1]) > limits.max_line_length:
                raise SipParseError(f"folded header field longer than {limits.max_line_length} bytes")
        else:
            unfolded.append(line)
    if len(unfolded) > limits.max_header_count:
        raise SipParseError(f"more than {limits.max_header_count} header fields")
    headers = Headers()
    for line in unfolded:
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not _HEADER_NAME_RE.fullmatch(name):
            raise SipParseError(f"malformed header field {_excerpt(line)!r}", partial=headers)
        headers.add(name, value.strip(" \t"))
    if len(headers) > limits.max_header_count:
        raise SipParseError(f"more than {limits.max_header_count} header values")
    return headers


def _parse_start_line(start: str, headers: Headers) -> SipMessage:
    if _START_LINE_CONTROL_RE.search(start):
        raise SipParseError(f"control character in the start line {_excerpt(start)!r}", partial=headers)
    if start.startswith("SIP/"):
        match = _STATUS_LINE_RE.fullmatch(start)
        if not match:
            raise SipParseError(f"malformed status line {_excerpt(start)!r}", partial=headers)
        if match.group(1) != "2.0":
            raise SipParseError(f"SIP version {match.group(1)} is not supported", 505, partial=headers)
        status = int(match.group(2))
        if not 100 <= status <= 699:
            raise SipParseError(f"status code {status} out of range", partial=headers)
        return SipResponse(headers=headers, status=status, reason=match.group(3))
    parts = start.split(" ")
    if len(parts) != 3:
        raise SipParseError(f"malformed request line {_excerpt(start)!r}", partial=headers)
    method, uri, version = parts
    if not _METHOD_RE.fullmatch(method):
        raise SipParseError(f"malformed method {_excerpt(method)!r}", partial=headers)
    version_match = _VERSION_RE.fullmatch(version)
    if not version_match:
        raise SipParseError(f"malformed request line {_excerpt(start)!r}", partial=headers)
    if version_match.group(1) != "2.0":
        raise SipParseError(f"SIP version {version_match.group(1)} is not supported", 505, partial=headers)
    if not _URI_RE.fullmatch(uri):
        raise SipParseError(f"malformed Request-URI {_excerpt(uri)!r}", partial=headers)
    return SipRequest(headers=headers, method=method, uri=uri)


def _check_mandatory(message: SipMessage) -> None:
    headers = message.headers
    required = _REQUIRED_REQUEST_HEADERS if isinstance(message, SipRequest) else _REQUIRED_RESPONSE_HEADERS
    for name in required:
        if not headers.get(name):
            raise SipParseError(f"missing mandatory header {name}", partial=headers)
    for name in _SINGLE_HEADERS:
        if len(headers.get_all(name)) > 1:
            raise SipParseError(f"header {name} appears more than once", partial=headers)
    cseq = _CSEQ_RE.fullmatch(headers.get("CSeq") or "")
    if not cseq or int(cseq.group(1)) >= 2**31:
        raise SipParseError(f"malformed CSeq {_excerpt(headers.get('CSeq') or '')!r}", partial=headers)
    if isinstance(message, SipRequest) and cseq.group(2) != message.method:
        raise SipParseError(
            f"CSeq method {cseq.group(2)} does not match request method {message.method}", partial=headers
        )
    max_forwards = headers.get("Max-Forwards")
    if max_forwards is not None and (not _DIGITS_RE.fullmatch(max_forwards) or int(max_forwards) > 255):
        raise SipParseError(f"malformed Max-Forwards {_excerpt(max_forwards)!r}", partial=headers)


def _check_syntax(message: SipMessage) -> None:
    """Refuse values a proxy routes on that break the RFC 3261 §25.1 grammar (RFC 4475 §3.1.2)."""
    # uri.py builds on this module (SipSyntaxError is a SipParseError): import it when used.
    from mcinterconnect.sip.uri import NameAddr, SipSyntaxError, SipUri, Via

    headers = message.headers
    for name in ("Via", *_ADDRESS_HEADERS):
        for value in headers.get_all(name):
            if name == "Contact" and value == "*":
                continue
            try:
                if name == "Via":
                    Via.parse(value)
                else:
                    NameAddr.parse(value)
            except SipSyntaxError as exc:
                raise SipParseError(f"invalid {name} header: {exc.reason}", partial=headers) from None
    if isinstance(message, SipRequest) and message.uri.partition(":")[0].lower() in ("sip", "sips"):
        try:
            uri = SipUri.parse(message.uri)
        except SipSyntaxError as exc:
            raise SipParseError(f"malformed Request-URI: {exc.reason}", partial=headers) from None
        if uri.headers:
            # RFC 3261 §19.1.1 table 1: headers are not allowed in a Request-URI.
            raise SipParseError(f"Request-URI {_excerpt(message.uri)!r} carries URI headers", partial=headers)


def _frame_body(headers: Headers, body: bytes, *, stream: bool) -> bytes:
    declared = headers.get("Content-Length")
    if declared is None:
        if stream:
            raise SipParseError("Content-Length is mandatory on a stream transport", partial=headers)
        return body
    if not _DIGITS_RE.fullmatch(declared):
        raise SipParseError(f"malformed Content-Length {_excerpt(declared)!r}", partial=headers)
    length = int(declared)
    if length > len(body):
        raise SipParseError(
            f"Content-Length {length} is larger than the {len(body)} bytes of body received", partial=headers
        )
    return body[:length]


#: A Content-Length field (long or compact name) at the start of a header line: the framer's fast path.
_CONTENT_LENGTH_LINE_RE = re.compile(rb"\r\n(?:content-length|l)[ \t]*:([^\r\n]*)", re.IGNORECASE)


def content_length_of(head: bytes) -> int | None:
    """The Content-Length of a raw header section, or ``None`` when absent (for stream framing).

    Folded lines are joined first, so that the framer reads the value ``parse_message`` reads.
    Fast path: without folded lines, exactly one Content-Length line is read directly; anything
    else (folding, none, several) takes the general path below, which decides the same way.
    """
    if b"\r\n " not in head and b"\r\n\t" not in head:
        found = _CONTENT_LENGTH_LINE_RE.findall(head)
        if len(found) == 1:
            text = found[0].strip(b" \t").decode("latin-1")
            if not _DIGITS_RE.fullmatch(text):
                raise SipParseError(f"malformed Content-Length {_excerpt(text)!r}")
            return int(text)
    fields: list[bytes] = []
    for line in head.split(b"\r\n")[1:]:
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] = fields[-1].rstrip(b" \t") + b" " + line.strip(b" \t")
        else:
            fields.append(line)
    for line in fields:
        name, colon, value = line.partition(b":")
        if colon and canonical_name(name.rstrip(b" \t").decode("latin-1")) == "Content-Length":
            text = value.strip(b" \t").decode("latin-1")
            if not _DIGITS_RE.fullmatch(text):
                raise SipParseError(f"malformed Content-Length {_excerpt(text)!r}")
            return int(text)
    return None


class StreamFramer:
    """Cuts a TCP/TLS byte stream into complete messages by Content-Length (RFC 3261 §18.3).

    Keep-alive CRLFs between messages (RFC 5626 §3.5.1) are skipped.  A message without
    Content-Length, or larger than the limit, raises ``SipParseError``: the stream cannot be
    re-synchronised after that and the connection must be closed.
    """

    def __init__(self, limits: ParserLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._buffer = bytearray()
        self.keepalives = 0
        # Bytes are searched once only, however small the pieces they arrive in: where the
        # search for the end of the header section resumes, and the size of the message once known.
        self._scanned = 0
        self._expected: int | None = None

    def feed(self, data: bytes) -> None:
        self._buffer += data

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def next_message(self) -> bytes | None:
        """Return the next complete message, or ``None`` if more bytes are needed."""
        if self._expected is None:
            self._expected = self._message_size()
            if self._expected is None:
                return None
        if len(self._buffer) < self._expected:
            return None
        message = bytes(self._buffer[: self._expected])
        del self._buffer[: self._expected]
        self._expected = None
        self._scanned = 0
        return message

    def _message_size(self) -> int | None:
        while self._buffer[:2] == b"\r\n":
            self._scanned = 0
            if self._buffer[:4] == b"\r\n\r\n":
                del self._buffer[:4]
                self.keepalives += 1
            elif len(self._buffer) >= 4 or (len(self._buffer) == 3 and self._buffer[2] != 0x0D):
                del self._buffer[:2]
            else:
                return None
        head_end = self._buffer.find(b"\r\n\r\n", self._scanned)
        if head_end < 0:
            self._scanned = max(0, len(self._buffer) - 3)
            if len(self._buffer) > self.limits.max_message_size:
                raise SipParseError(
                    f"header section exceeds the limit of {self.limits.max_message_size}", 513
                )
            return None
        head = bytes(self._buffer[:head_end])
        length = content_length_of(head)
        if length is None:
            raise self._addressed(SipParseError("Content-Length is mandatory on a stream transport"), head)
        total = head_end + 4 + length
        if total > self.limits.max_message_size:
            error = SipParseError(
                f"message of {total} bytes exceeds the limit of {self.limits.max_message_size}", 513
            )
            raise self._addressed(error, head)
        return total

    def _addressed(self, error: SipParseError, head: bytes) -> SipParseError:
        """Attach what is needed to answer a framing error before the stream is closed."""
        lines = head.decode("utf-8", "replace").split("\r\n")
        while lines and not lines[0]:
            lines.pop(0)
        if lines:
            error.is_request = not lines[0].startswith("SIP/")
            try:
                error.partial = _parse_headers(lines[1:], self.limits)
            except SipParseError:
                error.partial = None
        return error


def error_response(error: SipParseError, agent: str) -> SipResponse | None:
    """The response that answers a request that failed to parse, when it can be addressed.

    The headers read before the fault must hold the Via, From, To, Call-ID and CSeq needed to
    address a response (RFC 3261 §8.2.6); otherwise ``None`` (the message is dropped).
    """
    partial = error.partial
    if not error.is_request or partial is None:
        return None
    if not all(partial.get(name) for name in _REQUIRED_REQUEST_HEADERS):
        return None
    cseq = _CSEQ_RE.fullmatch(partial.get("CSeq") or "")
    if not cseq or cseq.group(2) == "ACK":
        return None  # never answer an ACK (RFC 3261 §17.2.1)
    request = SipRequest(headers=partial, method=cseq.group(2), uri="sip:invalid")
    return make_response(request, error.status, warning=warning_value(agent, error.reason))


def _excerpt(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
