"""SIP URIs, name-addr values and Via values (RFC 3261 §19.1, §20.10, §20.42, §25.1).

Parsed values keep their parameters in order, so that serializing an unmodified value gives
back an equivalent text.  Errors raise ``SipSyntaxError``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mcinterconnect.sip.parser import SipParseError


class SipSyntaxError(SipParseError):
    """A URI, name-addr or Via value that does not follow the RFC 3261 grammar."""


Params = list[tuple[str, str | None]]

_HOST_RE = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+")
_PORT_RE = re.compile(r"[0-9]{1,5}")
_VIA_RE = re.compile(
    r"SIP[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*([A-Za-z0-9\-]+)[ \t]+([^;\s]+)[ \t]*(.*)",
    re.DOTALL | re.ASCII | re.IGNORECASE,
)
_TCHAR = r"[A-Za-z0-9\-.!%*_+`'~]"
#: quoted-string (RFC 3261 §25.1): qdtext or quoted-pair between double quotes.
_QUOTED = r'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*"'
_QUOTED_RE = re.compile(_QUOTED)
#: display-name = *(token LWS) / quoted-string (RFC 3261 §25.1).
_DISPLAY_RE = re.compile(rf"{_TCHAR}+(?:[ \t]+{_TCHAR}+)*|{_QUOTED}")
_PARAM_NAME_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~\[\]/:&$]+")
#: An unquoted parameter value: visible ASCII except ``"``, ``,``, ``;``, ``<`` and ``>``, which
#: delimit values (token, host and paramchar of RFC 3261 §25.1 hold none of them).
_PARAM_VALUE_RE = re.compile(r"[\x21\x23-\x2b\x2d-\x3a\x3d\x3f-\x7e]+")
#: Any absolute URI (the schemes other than sip/sips are not interpreted): visible ASCII but ``"<>``.
_ABSOLUTE_URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:[\x21\x23-\x3b\x3d\x3f-\x7e]+")
#: user and password of a SIP URI (RFC 3261 §25.1: unreserved, escaped, user-unreserved).
_USER_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()%&=+$,;?/]+")
_PASSWORD_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()%&=+$,]*")


#: One parameter without quotes, surrounding white space allowed: the fast path of ``parse_params``.
_SIMPLE_PARAM_RE = re.compile(
    r"[ \t]*([A-Za-z0-9\-.!%*_+`'~\[\]/:&$]+)[ \t]*(?:=[ \t]*([\x21\x23-\x2b\x2d-\x3a\x3d\x3f-\x7e]+))?[ \t]*"
)


def parse_params(text: str) -> Params:
    """Parse ``;name=value;flag`` into an ordered list (values keep their quotes)."""
    params: Params = []
    if not text:
        return params
    if not text.startswith(";"):
        raise SipSyntaxError(f"parameters must start with ';': {text[:40]!r}")
    if '"' not in text:
        # Fast path (no quoted value): one regular expression per parameter; anything it does not
        # take goes through the general path below, which says precisely what is wrong.
        match = _SIMPLE_PARAM_RE.fullmatch
        for raw in text[1:].split(";"):
            found = match(raw)
            if found is None:
                break
            params.append((found[1], found[2]))
        else:
            return params
        params = []
    for raw in _split_outside_quotes(text[1:], ";"):
        chunk = raw.strip(" \t")
        if not chunk:
            raise SipSyntaxError("empty parameter")
        name, eq, value = chunk.partition("=")
        name = name.rstrip(" \t")
        if not _PARAM_NAME_RE.fullmatch(name):
            raise SipSyntaxError(f"malformed parameter name {name[:40]!r}")
        if not eq:
            params.append((name, None))
            continue
        value = value.lstrip(" \t")
        if not value:
            raise SipSyntaxError(f"empty value for parameter {name[:40]!r}")
        if not (_PARAM_VALUE_RE.fullmatch(value) or _QUOTED_RE.fullmatch(value)):
            raise SipSyntaxError(f"malformed value of parameter {name[:40]!r}: {value[:40]!r}")
        params.append((name, value))
    return params


def format_params(params: Params) -> str:
    return "".join(f";{name}" if value is None else f";{name}={value}" for name, value in params)


def get_param(params: Params, name: str) -> str | None:
    lower = name.lower()
    for key, value in params:
        if key.lower() == lower:
            return value if value is not None else ""
    return None


def set_param(params: Params, name: str, value: str | None) -> Params:
    lower = name.lower()
    kept = [(k, v) for k, v in params if k.lower() != lower]
    return [*kept, (name, value)]


def drop_param(params: Params, name: str) -> Params:
    lower = name.lower()
    return [(k, v) for k, v in params if k.lower() != lower]


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    if '"' not in text:
        return text.split(separator)
    parts: list[str] = []
    current: list[str] = []
    in_quotes = False
    escaped = False
    for char in text:
        if in_quotes:
            current.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_quotes = False
        elif char == '"':
            in_quotes = True
            current.append(char)
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if in_quotes:
        raise SipSyntaxError("unterminated quoted string")
    parts.append("".join(current))
    return parts


@dataclass
class SipUri:
    """A ``sip:`` or ``sips:`` URI."""

    scheme: str
    user: str | None
    host: str
    port: int | None = None
    params: Params = field(default_factory=list)
    headers: str = ""
    password: str | None = None

    @classmethod
    def parse(cls, text: str) -> SipUri:
        scheme, colon, rest = text.strip().partition(":")
        scheme = scheme.lower()
        if not colon or scheme not in ("sip", "sips"):
            raise SipSyntaxError(f"not a SIP URI: {text[:60]!r}")
        user: str | None = None
        password: str | None = None
        # The user part may hold ';' and '?' (RFC 3261 §25.1 user-unreserved) but never '@',
        # nor may parameters or headers: the last '@' ends the userinfo.
        if "@" in rest:
            userinfo, _, rest = rest.rpartition("@")
            user, pcolon, pw = userinfo.partition(":")
            password = pw if pcolon else None
            if not user:
                raise SipSyntaxError(f"empty user part in {text[:60]!r}")
            if not _USER_RE.fullmatch(user) or (
                password is not None and not _PASSWORD_RE.fullmatch(password)
            ):
                raise SipSyntaxError(f"malformed user part in {text[:60]!r}")
        rest, _, uri_headers = rest.partition("?")
        hostport, semi, param_text = rest.partition(";")
        host, port = _split_hostport(hostport, text)
        params = parse_params(";" + param_text) if semi else []
        return cls(scheme, user, host, port, params, uri_headers, password)

    def __str__(self) -> str:
        userinfo = ""
        if self.user is not None:
            userinfo = self.user + (f":{self.password}" if self.password is not None else "") + "@"
        port = f":{self.port}" if self.port is not None else ""
        headers = f"?{self.headers}" if self.headers else ""
        return f"{self.scheme}:{userinfo}{self.host}{port}{format_params(self.params)}{headers}"

    def param(self, name: str) -> str | None:
        return get_param(self.params, name)

    @property
    def address_of_record(self) -> str:
        """``scheme:user@host`` in lower-case host, without port or parameters (RFC 3261 §10.3)."""
        user = f"{self.user}@" if self.user is not None else ""
        return f"{self.scheme}:{user}{self.host.lower()}"


def _split_hostport(hostport: str, context: str) -> tuple[str, int | None]:
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise SipSyntaxError(f"unterminated IPv6 reference in {context[:60]!r}")
        host, port_text = hostport[: end + 1], hostport[end + 1 :]
        if port_text and not port_text.startswith(":"):
            raise SipSyntaxError(f"malformed host in {context[:60]!r}")
        port_text = port_text[1:]
    else:
        host, _, port_text = hostport.partition(":")
    if not _HOST_RE.fullmatch(host):
        raise SipSyntaxError(f"malformed host {host[:60]!r}")
    if port_text:
        if not _PORT_RE.fullmatch(port_text) or not 0 < int(port_text) < 65536:
            raise SipSyntaxError(f"malformed port {port_text[:10]!r}")
        return host, int(port_text)
    return host, None


@dataclass
class NameAddr:
    """A From, To, Contact, Route, Record-Route or P-Asserted-Identity value (RFC 3261 §20)."""

    uri: str
    display: str | None = None
    params: Params = field(default_factory=list)
    bracketed: bool = True

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        text = text.strip(" \t")
        if not text:
            raise SipSyntaxError("empty address")
        open_index = _find_unquoted(text, "<")
        if open_index >= 0:
            close_index = text.find(">", open_index)
            if close_index < 0:
                raise SipSyntaxError(f"unterminated '<' in {text[:60]!r}")
            display = text[:open_index].strip(" \t") or None
            if display is not None and not _DISPLAY_RE.fullmatch(display):
                raise SipSyntaxError(f"malformed display name {display[:60]!r}")
            # RFC 3261 §25.1: LAQUOT addr-spec RAQUOT, no white space inside the brackets.
            uri = text[open_index + 1 : close_index]
            if not uri:
                raise SipSyntaxError("empty URI in address")
            if not _ABSOLUTE_URI_RE.fullmatch(uri):
                raise SipSyntaxError(f"malformed URI {uri[:60]!r} in address")
            params = parse_params(text[close_index + 1 :].strip(" \t"))
            return cls(uri, display, params, True)
        # addr-spec without brackets: parameters after ';' belong to the header, not the URI.
        uri, semi, rest = text.partition(";")
        uri = uri.rstrip(" \t")
        if not _ABSOLUTE_URI_RE.fullmatch(uri):
            raise SipSyntaxError(f"malformed address {text[:60]!r}")
        if "," in uri or "?" in uri:
            # RFC 3261 §20: a URI holding a comma, question mark or semicolon must be in <>.
            raise SipSyntaxError(f"URI with ',' or '?' must be enclosed in <>: {uri[:60]!r}")
        return cls(uri, None, parse_params(";" + rest) if semi else [], False)

    def __str__(self) -> str:
        display = f"{self.display} " if self.display else ""
        return f"{display}<{self.uri}>{format_params(self.params)}"

    @property
    def sip_uri(self) -> SipUri:
        return SipUri.parse(self.uri)

    @property
    def tag(self) -> str | None:
        return get_param(self.params, "tag")


def _find_unquoted(text: str, char: str) -> int:
    """Index of the first ``char`` outside quoted strings, or -1; an unclosed quote is an error."""
    in_quotes = False
    escaped = False
    for index, current in enumerate(text):
        if in_quotes:
            if escaped:
                escaped = False
            elif current == "\\":
                escaped = True
            elif current == '"':
                in_quotes = False
        elif current == '"':
            in_quotes = True
        elif current == char:
            return index
    if in_quotes:
        raise SipSyntaxError(f"unterminated quoted string in {text[:60]!r}")
    return -1


@dataclass
class Via:
    """One Via value (RFC 3261 §20.42)."""

    transport: str
    host: str
    port: int | None = None
    params: Params = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> Via:
        match = _VIA_RE.fullmatch(text.strip())
        if not match:
            raise SipSyntaxError(f"malformed Via {text[:60]!r}")
        transport, hostport, rest = match.groups()
        host, port = _split_hostport(hostport, text)
        return cls(transport.upper(), host, port, parse_params(rest.strip()))

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport} {self.host}{port}{format_params(self.params)}"

    @property
    def branch(self) -> str | None:
        return get_param(self.params, "branch")

    def param(self, name: str) -> str | None:
        return get_param(self.params, name)


def tag_of(header_value: str | None) -> str | None:
    """The ``tag`` parameter of a From or To value, or None."""
    if not header_value:
        return None
    try:
        return NameAddr.parse(header_value).tag
    except SipSyntaxError:
        return None
