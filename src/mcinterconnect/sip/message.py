"""SIP message model: requests, responses and their ordered header fields (RFC 3261 §7, §20).

Header fields keep the order in which they were received; unknown headers are kept untouched.
The multi-value headers Via, Route, Record-Route and Contact are stored one value per entry
(comma-separated values are split on parsing, RFC 3261 §7.3.1), so that proxies can push, pop
and replace single values without re-parsing.  Compact forms (RFC 3261 §7.3.3, §20) are expanded
to their long names on parsing; messages are always serialized with long names.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

#: Compact header forms (RFC 3261 §7.3.3 and the RFCs that define the others).
COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_KNOWN_NAMES = (
    "Accept",
    "Accept-Contact",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-ID",
    "Content-Language",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Error-Info",
    "Event",
    "Expires",
    "From",
    "In-Reply-To",
    "Max-Forwards",
    "MIME-Version",
    "Min-Expires",
    "Organization",
    "P-Asserted-Identity",
    "P-Preferred-Identity",
    "Path",
    "Priority",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "Record-Route",
    "Refer-To",
    "Referred-By",
    "Reject-Contact",
    "Reply-To",
    "Request-Disposition",
    "Require",
    "Resource-Priority",
    "Retry-After",
    "Route",
    "RSeq",
    "RAck",
    "Server",
    "Service-Route",
    "Session-Expires",
    "Subject",
    "Subscription-State",
    "Supported",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "Warning",
    "WWW-Authenticate",
)
_CANONICAL: dict[str, str] = {name.lower(): name for name in _KNOWN_NAMES}

#: Headers whose comma-separated values are split into one entry per value (RFC 3261 §7.3.1).
MULTI_VALUE_HEADERS = frozenset({"via", "route", "record-route", "contact"})


def canonical_name(name: str) -> str:
    """Return the canonical spelling of a header name; compact forms give their long name."""
    return _name_key(name)[0]


@functools.lru_cache(maxsize=1024)
def _name_key(name: str) -> tuple[str, str, bool]:
    """``(canonical spelling, lower case, known)`` of a header name.

    Every stored field name went through ``canonical_name`` (``Headers.add``), so a *known* name is
    stored in exactly its canonical spelling and matches by plain string equality; only unknown
    names need the case-insensitive comparison.  Cached: header lookups are the hot path of the
    proxies (bounded, since wire names are attacker-chosen)."""
    lower = name.lower()
    if len(lower) == 1 and lower in COMPACT_FORMS:
        canonical = COMPACT_FORMS[lower]
        return canonical, canonical.lower(), True
    known = _CANONICAL.get(lower)
    if known is not None:
        return known, lower, True
    return name, lower, False


def split_header_values(value: str) -> list[str]:
    """Split a header value on commas that are outside quoted strings and angle brackets."""
    if '"' not in value and "<" not in value:
        # Fast path (most values, and every long sealed token): nothing can hide a comma.
        return [item for item in (part.strip() for part in value.split(",")) if item]
    values: list[str] = []
    start = 0
    in_quotes = False
    in_angle = False
    escaped = False
    for index, char in enumerate(value):
        if in_quotes:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_quotes = False
        elif char == '"':
            in_quotes = True
        elif char == "<":
            in_angle = True
        elif char == ">":
            in_angle = False
        elif char == "," and not in_angle:
            values.append(value[start:index].strip())
            start = index + 1
    values.append(value[start:].strip())
    return [item for item in values if item]


class Headers:
    """Ordered header fields; names compare case-insensitively, compact forms are expanded."""

    __slots__ = ("_fields",)
    #: Mutable, hence unhashable.
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, fields: Iterable[tuple[str, str]] = ()) -> None:
        self._fields: list[tuple[str, str]] = []
        for name, value in fields:
            self.add(name, value)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return self._first_index(name) is not None

    def _first_index(self, name: str) -> int | None:
        canonical, lower, known = _name_key(name)
        if known:
            for index, (existing, _) in enumerate(self._fields):
                if existing == canonical:
                    return index
            return None
        for index, (existing, _) in enumerate(self._fields):
            if existing.lower() == lower:
                return index
        return None

    def _matches(self, name: str) -> Callable[[str], bool]:
        canonical, lower, known = _name_key(name)
        if known:
            return canonical.__eq__
        return lambda existing: existing.lower() == lower

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._fields == other._fields

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"

    def copy(self) -> Headers:
        clone = Headers()
        clone._fields = list(self._fields)
        return clone

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        canonical, lower, known = _name_key(name)
        if known:
            for existing, value in self._fields:
                if existing == canonical:
                    return value
            return default
        for existing, value in self._fields:
            if existing.lower() == lower:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in order (multi-value headers one value per item)."""
        canonical, lower, known = _name_key(name)
        if known:
            return [value for existing, value in self._fields if existing == canonical]
        return [value for existing, value in self._fields if existing.lower() == lower]

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        """Append a value (or insert it before the other values of that name with ``first``)."""
        canonical, lower, _ = _name_key(name)
        values = split_header_values(value) if lower in MULTI_VALUE_HEADERS and value != "*" else [value]
        if not first:
            if len(values) == 1:
                self._fields.append((canonical, values[0]))
            else:
                self._fields.extend((canonical, item) for item in values)
            return
        position = self._first_index(name)
        if position is None:
            position = len(self._fields)
        self._fields[position:position] = [(canonical, item) for item in values]

    def set(self, name: str, value: str) -> None:
        """Replace every value of ``name`` by ``value``, at the position of the first one."""
        self.replace_all(name, [value])

    def replace_all(self, name: str, values: Iterable[str]) -> None:
        """Replace every value of ``name`` by ``values``, at the position of the first one."""
        canonical = _name_key(name)[0]
        same = self._matches(name)
        position = self._first_index(name)
        if position is None:
            self._fields.extend((canonical, v) for v in values)
            return
        rest = [(n, v) for n, v in self._fields[position + 1 :] if not same(n)]
        self._fields[position:] = [*((canonical, v) for v in values), *rest]

    def remove(self, name: str) -> list[str]:
        """Remove every value of ``name``; return the removed values."""
        same = self._matches(name)
        removed = [value for existing, value in self._fields if same(existing)]
        if removed:
            self._fields = [(n, v) for n, v in self._fields if not same(n)]
        return removed

    def pop_first(self, name: str) -> str | None:
        """Remove and return the first value of ``name`` (e.g. the top Via or Route)."""
        index = self._first_index(name)
        if index is None:
            return None
        return self._fields.pop(index)[1]

    def filter(self, keep: Callable[[str, str], bool]) -> None:
        """Keep only the fields for which ``keep(name, value)`` is true."""
        self._fields = [(n, v) for n, v in self._fields if keep(n, v)]


@dataclass
class SipMessage:
    """What requests and responses share: headers and a body."""

    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Serialize with long header names; Content-Length always reflects the body."""
        lines = [self.start_line()]
        for name, value in self.headers:
            if name == "Content-Length":
                continue
            lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body

    # Convenience accessors for the mandatory headers (RFC 3261 §8.1.1).
    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        number, _, method = (self.headers.get("CSeq") or "").strip().partition(" ")
        return int(number), method.strip()

    @property
    def vias(self) -> list[str]:
        return self.headers.get_all("Via")

    @property
    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()


@dataclass
class SipRequest(SipMessage):
    """A SIP request (RFC 3261 §7.1)."""

    method: str = "OPTIONS"
    uri: str = ""

    def start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"

    def copy(self) -> SipRequest:
        return SipRequest(headers=self.headers.copy(), body=self.body, method=self.method, uri=self.uri)


@dataclass
class SipResponse(SipMessage):
    """A SIP response (RFC 3261 §7.2)."""

    status: int = 200
    reason: str = "OK"

    def start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"

    def copy(self) -> SipResponse:
        return SipResponse(
            headers=self.headers.copy(), body=self.body, status=self.status, reason=self.reason
        )


REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
}


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    warning: str | None = None,
) -> SipResponse:
    """Build a response to ``request`` (RFC 3261 §8.2.6): Via, From, To, Call-ID and CSeq copied.

    ``warning`` is a complete Warning header value (``399 host "text"``).
    """
    headers = Headers()
    for via in request.headers.get_all("Via"):
        headers.add("Via", via)
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = request.headers.get(name)
        if value is not None:
            if name == "To" and to_tag and ";tag=" not in value.replace(" ", "").lower():
                value = f"{value};tag={to_tag}"
            headers.add(name, value)
    if warning is not None:
        headers.add("Warning", warning)
    return SipResponse(headers=headers, status=status, reason=reason or REASON_PHRASES.get(status, "Unknown"))


def warning_value(agent: str, text: str, code: int = 399) -> str:
    """A Warning header value (RFC 3261 §20.43): ``399 agent "text"`` with quotes escaped."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'{code} {agent} "{escaped}"'
