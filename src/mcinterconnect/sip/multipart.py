"""multipart/mixed bodies of SIP messages (RFC 2046 §5.1, §5.1.1 and §5.1.3).

3GPP MC SIP requests (TS 24.379, TS 24.282) carry several bodies at once (SDP, mcptt-info,
resource-lists, location, signed or protected XML) as one multipart/mixed body.  This module cuts
such a body into its parts and builds one from parts.

Syntax (RFC 2046 §5.1.1): the boundary is the ``boundary`` parameter of the Content-Type; each
part starts after a line ``--boundary`` (optional white space, then CRLF), the last part ends
at ``CRLF--boundary--``; the preamble before the first delimiter and the epilogue after the
closing one are ignored.  A part is a header section, parsed with the SIP header rules of
``parser.py`` (folding, compact forms), an empty line, then the part body.  Lines end in CRLF.

Every fault raises ``MultipartError`` (a ``SipParseError``, so it answers 400 like any other
malformed message) whose reason names it.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from mcinterconnect.sip.message import Headers
from mcinterconnect.sip.parser import DEFAULT_LIMITS, ParserLimits, SipParseError, _parse_headers
from mcinterconnect.sip.uri import SipSyntaxError, get_param, parse_params

#: Parts accepted in one body unless the caller says otherwise.
DEFAULT_MAX_PARTS = 16

#: boundary := 0*69<bchars> bcharsnospace (RFC 2046 §5.1.1).
_BOUNDARY_RE = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
#: Characters that need the boundary quoted in the Content-Type (RFC 2045 §5.1 tspecials, space).
_NEEDS_QUOTES_RE = re.compile(r"[()<>@,;:\\\"/\[\]?= ]")
_MEDIA_TYPE_RE = re.compile(r"[A-Za-z0-9!#$&\-^_.+]+/[A-Za-z0-9!#$&\-^_.+]+")


class MultipartError(SipParseError):
    """A multipart body that cannot be taken apart (or parts that cannot be put together)."""


@dataclass
class BodyPart:
    """One part of a multipart body: its header fields and its bytes."""

    headers: Headers
    body: bytes

    @property
    def content_type(self) -> str:
        """The media type in lower case, without parameters; ``""`` when the part has none."""
        return (self.headers.get("Content-Type") or "").split(";", 1)[0].strip(" \t").lower()

    @property
    def content_id(self) -> str | None:
        """The Content-ID without its angle brackets (what a ``cid:`` URL names, RFC 2392)."""
        value = self.headers.get("Content-ID")
        if value is None:
            return None
        value = value.strip(" \t")
        if value.startswith("<") and value.endswith(">"):
            return value[1:-1]
        return value


def boundary_of(content_type_header: str) -> str:
    """The boundary parameter of a multipart Content-Type value, unquoted and checked."""
    media_type, _, param_text = content_type_header.partition(";")
    media_type = media_type.strip(" \t")
    if not _MEDIA_TYPE_RE.fullmatch(media_type) or not media_type.lower().startswith("multipart/"):
        raise MultipartError(f"Content-Type {media_type[:60]!r} is not a multipart type")
    try:
        params = parse_params(";" + param_text) if param_text.strip(" \t") else []
    except SipSyntaxError as exc:
        raise MultipartError(f"malformed Content-Type parameters: {exc.reason}") from None
    value = get_param(params, "boundary")
    if value is None:
        raise MultipartError("Content-Type has no boundary parameter")
    boundary = _unquote(value)
    if not _BOUNDARY_RE.fullmatch(boundary):
        raise MultipartError(f"malformed boundary {boundary[:80]!r} (RFC 2046 §5.1.1)")
    return boundary


def parse_multipart(
    body: bytes,
    content_type_header: str,
    *,
    max_parts: int = DEFAULT_MAX_PARTS,
    limits: ParserLimits = DEFAULT_LIMITS,
) -> list[BodyPart]:
    """Cut a multipart body into its parts (RFC 2046 §5.1.1)."""
    dash_boundary = b"--" + boundary_of(content_type_header).encode("ascii")
    delimiter = b"\r\n" + dash_boundary
    # The first delimiter line may open the body; otherwise it follows a CRLF ending the preamble.
    if body.startswith(dash_boundary):
        position = 0
    else:
        found = body.find(delimiter)
        if found < 0:
            raise MultipartError(f"no delimiter line {dash_boundary[:80].decode('ascii')!r} in the body")
        position = found + 2
    parts: list[BodyPart] = []
    while True:
        line_end = position + len(dash_boundary)
        if body.startswith(b"--", line_end):
            if not parts:
                raise MultipartError("multipart body has no part before its closing delimiter")
            return parts  # the epilogue after the closing delimiter is ignored
        content_start = _end_of_delimiter_line(body, line_end, len(parts))
        if len(parts) == max_parts:
            raise MultipartError(f"more than {max_parts} parts in the multipart body")
        next_delimiter = body.find(delimiter, content_start)
        if next_delimiter < 0:
            raise MultipartError(f"no closing delimiter after part {len(parts) + 1}")
        parts.append(_parse_part(body[content_start:next_delimiter], len(parts) + 1, limits))
        position = next_delimiter + 2


def _end_of_delimiter_line(body: bytes, index: int, count: int) -> int:
    """Skip the transport padding and CRLF after a delimiter; where the next part starts."""
    while body[index : index + 1] in (b" ", b"\t"):
        index += 1
    if not body.startswith(b"\r\n", index):
        raise MultipartError(f"delimiter line before part {count + 1} does not end in CRLF")
    return index + 2


def _parse_part(content: bytes, number: int, limits: ParserLimits) -> BodyPart:
    # body-part := MIME-part-headers [CRLF *OCTET]: an empty header section starts with CRLF.
    if content.startswith(b"\r\n"):
        return BodyPart(Headers(), content[2:])
    head_end = content.find(b"\r\n\r\n")
    if head_end >= 0:
        head, payload = content[:head_end], content[head_end + 4 :]
    else:
        head, payload = content.removesuffix(b"\r\n"), b""
    if not head:
        return BodyPart(Headers(), payload)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MultipartError(
            f"header section of part {number} is not valid UTF-8 (byte {exc.start})"
        ) from None
    try:
        headers = _parse_headers(text.split("\r\n"), limits)
    except SipParseError as exc:
        raise MultipartError(f"malformed header in part {number}: {exc.reason}") from None
    return BodyPart(headers, payload)


def build_multipart(parts: list[BodyPart], boundary: str | None = None) -> tuple[str, bytes]:
    """Build a multipart/mixed body; return ``(Content-Type value, body)``.

    Without ``boundary`` a random one is drawn that occurs in no part.  A given boundary must
    follow RFC 2046 §5.1.1 and occur in no part, or ``ValueError`` is raised.
    """
    if not parts:
        raise ValueError("a multipart body needs at least one part (RFC 2046 §5.1.1)")
    encoded = [_encode_part(part) for part in parts]
    if boundary is None:
        boundary = secrets.token_hex(16)
        while any(boundary.encode("ascii") in item for item in encoded):
            boundary = secrets.token_hex(16)
    elif not _BOUNDARY_RE.fullmatch(boundary):
        raise ValueError(f"malformed boundary {boundary[:80]!r} (RFC 2046 §5.1.1)")
    elif any(boundary.encode("ascii") in item for item in encoded):
        raise ValueError("the boundary occurs inside a part")
    dash_boundary = b"--" + boundary.encode("ascii")
    body = b"".join(dash_boundary + b"\r\n" + item + b"\r\n" for item in encoded) + dash_boundary + b"--\r\n"
    quoted = f'"{boundary}"' if _NEEDS_QUOTES_RE.search(boundary) else boundary
    return f"multipart/mixed;boundary={quoted}", body


def _encode_part(part: BodyPart) -> bytes:
    lines = []
    for name, value in part.headers:
        if any(char in name or char in value for char in "\r\n\x00"):
            raise ValueError(f"header {name[:40]!r} of a part holds CR, LF or NUL")
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("utf-8") + b"\r\n" + part.body


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1], flags=re.DOTALL)
    return value
