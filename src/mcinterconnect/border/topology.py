"""Sealed, stateless topology hiding at the IS proxy (TS 33.180 11.1.1; interconnection.md BC-6).

What one side of the border must not learn about the other travels only inside AEAD-sealed
tokens (AES-SIV, see ``sealing.py``) under a key shared by every instance of one border:

* the **Via stack** of a request becomes one Via of the IS proxy carrying ``vs=`` seal(stack),
  whose branch is ``z9hG4bK`` + a keyed fingerprint of the stack (stable for a CANCEL or a
  non-2xx ACK of the same INVITE); a response is routed back by unsealing ``vs``;
* the **Record-Route set** of a dialog-creating request becomes one Record-Route of the IS proxy
  with ``th=`` seal(set); responses get the mirror treatment, so each side's route set is kept
  sealed in the IS proxy's entry that faces the other side;
* every **Contact** URI becomes an IS proxy URI with ``ct=`` seal(URI), so in-dialog requests
  come back to the border, which restores the Request-URI;
* the **Call-ID** is transformed by deterministic encryption, one way per direction of travel,
  so both sides see stable but unrelated Call-IDs.

Nothing is stored per dialog: any instance holding the key restores responses, CANCEL, ACK and
in-dialog requests from either side (field-notes.md §3.6, the model of Kamailio ``topoh`` with
real cryptography).  Towards the partner, headers that reveal internals are removed: Server,
User-Agent, and any header naming a configured internal host or address.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass

from mcinterconnect.border.sealing import Sealer
from mcinterconnect.sip.message import SipMessage, SipRequest, SipResponse
from mcinterconnect.sip.proxy import DEFAULT_PORTS, MAGIC_COOKIE, RoutingError
from mcinterconnect.sip.uri import NameAddr, SipSyntaxError, SipUri, Via, get_param


class Side(enum.Enum):
    """The two faces of the IS proxy."""

    INTERNAL = "internal"
    EXTERNAL = "external"

    @property
    def other(self) -> Side:
        return Side.EXTERNAL if self is Side.INTERNAL else Side.INTERNAL


class TopologyError(RoutingError):
    """A message whose sealed routing data cannot be restored, or that would leak topology."""


class TopologyLeakError(TopologyError):
    """A header that cannot be removed (From, To) names an internal host or address."""


#: Methods whose initial request creates a dialog (RFC 3261 §12, RFC 6665, RFC 3515).
DIALOG_CREATING = frozenset({"INVITE", "SUBSCRIBE", "REFER"})
#: Headers never removed by the internal-name scrub (they are rewritten or checked instead).
_STRUCTURAL = frozenset(
    {
        "via",
        "route",
        "record-route",
        "contact",
        "call-id",
        "cseq",
        "from",
        "to",
        "max-forwards",
        "content-type",
        "content-length",
        "p-asserted-identity",
    }
)
#: Headers that describe software or internals and never cross the border.
_ALWAYS_REMOVED = ("Server", "User-Agent")


@dataclass(frozen=True)
class Face:
    """Where one side reaches the IS proxy: the URI host used in Via/Record-Route/Contact."""

    host: str
    port: int
    transport: str

    def hostport(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def matches(self, host: str, port: int | None, transport: str | None = None) -> bool:
        effective = port or DEFAULT_PORTS.get((transport or self.transport).lower(), 5060)
        return host.strip("[]").lower() == self.host.lower() and effective == self.port


class TopologyHider:
    """Seals and restores routing data of messages crossing the IS proxy (sans-IO)."""

    def __init__(
        self, sealer: Sealer, internal: Face, external: Face, internal_markers: Iterable[str]
    ) -> None:
        self.sealer = sealer
        self.faces = {Side.INTERNAL: internal, Side.EXTERNAL: external}
        markers = sorted({marker.lower() for marker in internal_markers if marker}, key=len, reverse=True)
        # A marker matches as a whole host or address, not inside a longer name or number.
        self._leak_re = (
            re.compile(
                r"(?<![\w.\-])(?:" + "|".join(re.escape(m) for m in markers) + r")(?![\w\-]|\.\w)", re.I
            )
            if markers
            else None
        )

    # ----------------------------------------------------------------- requests
    def restore_request(self, request: SipRequest, arrived_on: Side) -> int | None:
        """Undo what this border sealed for in-dialog requests arriving on ``arrived_on``.

        The Request-URI ``ct`` token gives back the remote target; our Record-Route entry
        (now the top Route) gives back the far side's route set (RFC 3261 §16.4, §16.12).
        Our entries are recognised by their tokens, which must verify under this border's keys,
        so any instance restores what another instance sealed.  Returns the id of the key that
        sealed the dialog's data (``hide_request`` keeps using it), or ``None`` when the request
        carries no sealed data: then nothing proves that its dialog crossed this border.
        """
        face = self.faces[arrived_on]
        dialog_key: int | None = None
        # Tokens are bound to the dialog's Call-ID as seen on this side: one dialog's Contact or
        # Record-Route token is worthless in another dialog.
        call_id = request.call_id
        target = self._own_uri(request.uri, face, call_id)
        if target is not None:
            token = target.param("ct")
            if token is None:
                raise TopologyError("Request-URI names the IS proxy without a sealed target", 404)
            uri, dialog_key = self._unseal_text(
                _bound("ct", arrived_on, call_id), token, "Request-URI target (for this dialog)"
            )
            request.uri = uri
        routes = request.headers.get_all("Route")
        restored: list[str] = []
        while routes:
            try:
                top = NameAddr.parse(routes[0]).sip_uri
            except SipSyntaxError as exc:
                raise TopologyError(f"malformed Route: {exc.reason}") from None
            token = top.param("th")
            if token is None and not face.matches(top.host, top.port, top.param("transport")):
                break
            if token is not None and not (
                face.matches(top.host, top.port, top.param("transport"))
                or self.sealer.try_unseal(_bound("rr", arrived_on, call_id), token) is not None
            ):
                break
            routes = routes[1:]
            if token is not None:
                sealed, dialog_key = self._unseal_text(
                    _bound("rr", arrived_on, call_id), token, "Route set (for this dialog)"
                )
                restored = [value for value in sealed.split("\n") if value]
                # Anything the sender placed after our entry is not part of the sealed route set.
                routes = []
        request.headers.replace_all("Route", [*restored, *routes])
        return dialog_key

    def hide_request(self, request: SipRequest, arrived_on: Side, dialog_key: int | None = None) -> None:
        """Seal the Via stack, Record-Route set, Contact and Call-ID of a request leaving
        ``arrived_on`` for the other side; the request then carries only this proxy's routing data.

        ``dialog_key`` is what ``restore_request`` returned: an in-dialog request is sealed with
        the key of its dialog, a new one with the current sealing key.
        """
        toward = arrived_on.other
        face = self.faces[toward]
        vias = request.headers.get_all("Via")
        if not vias:
            raise TopologyError("request without Via")
        # The branch must not change with received/rport (a CANCEL may come over another
        # connection than its INVITE, RFC 3261 §9.1); the stack itself rides in ``vs``.
        stable = "\n".join(_without_return_address(value) for value in vias).encode()
        branch = MAGIC_COOKIE + self.sealer.fingerprint(f"branch:{toward.value}", stable, dialog_key)
        token = self.sealer.seal(f"via:{toward.value}", "\n".join(vias).encode(), dialog_key)
        request.headers.replace_all(
            "Via", [f"SIP/2.0/{face.transport.upper()} {face.hostport()};branch={branch};vs={token};rport"]
        )
        record_routes = request.headers.remove("Record-Route")
        is_initial = _to_tag(request) is None
        # The Call-ID first: the tokens below are bound to the Call-ID the other side will see.
        self._transform_call_id(request, toward, dialog_key)
        call_id = request.call_id
        # A NOTIFY may create the subscriber's dialog before the 2xx of the SUBSCRIBE arrives, and
        # who record-routed the SUBSCRIBE must record-route every NOTIFY (RFC 6665 §4.1.2.4, §4.3).
        if (is_initial and request.method in DIALOG_CREATING) or request.method == "NOTIFY":
            # The set as received, nearest hop first: the route towards the request's sender.
            sealed = self.sealer.seal(
                _bound("rr", toward, call_id), "\n".join(record_routes).encode(), dialog_key
            )
            request.headers.add("Record-Route", self._own_entry(face, "th", sealed))
        self._hide_contacts(request, toward, dialog_key)
        if toward is Side.EXTERNAL:
            self.scrub(request)

    # ---------------------------------------------------------------- responses
    def restore_response(self, response: SipResponse, arrived_on: Side) -> None:
        """Route a response back across the border: unseal the Via stack from our Via, swap the
        Record-Route sets (RFC 3261 §12.1.1) and hide the Contact and Call-ID toward the other side.

        Everything sealed for the response uses the key that sealed its request's Via stack.
        """
        toward = arrived_on.other
        top = response.headers.get("Via")
        if top is None:
            raise TopologyError("response without Via")
        try:
            via = Via.parse(top)
        except SipSyntaxError as exc:
            raise TopologyError(f"malformed top Via: {exc.reason}") from None
        token = via.param("vs")
        # Not face.matches(): another instance of this border (same keys, another address) may
        # have sent the request; the sealed stack, which must verify, proves the Via is ours.
        if not token:
            raise TopologyError("top Via of the response is not this border's")
        stack, dialog_key = self._unseal_text(f"via:{arrived_on.value}", token, "Via stack")
        response.headers.replace_all("Via", [value for value in stack.split("\n") if value])
        arrived_call_id = response.call_id
        self._transform_call_id(response, toward, dialog_key)
        call_id = response.call_id
        record_routes = response.headers.get_all("Record-Route")
        if record_routes:
            far_side: list[str] = []
            near_side: list[str] = []
            for value in record_routes:
                own = self._own_route_token(value, arrived_on, arrived_call_id)
                if own is not None:
                    near_side = [item for item in own.split("\n") if item]
                    break
                far_side.append(value)
            # Seen from the other side, the far side's set (nearest hop first) hides behind us.
            sealed_far = self.sealer.seal(
                _bound("rr", toward, call_id), "\n".join(reversed(far_side)).encode(), dialog_key
            )
            response.headers.replace_all(
                "Record-Route", [self._own_entry(self.faces[toward], "th", sealed_far), *near_side]
            )
        self._hide_contacts(response, toward, dialog_key)
        if toward is Side.EXTERNAL:
            self.scrub(response)

    # ----------------------------------------------------------------- helpers
    def scrub(self, message: SipMessage) -> list[str]:
        """Remove headers that reveal internals before a message crosses to the partner.

        Server and User-Agent always go; any other header naming a configured internal host or
        address goes too.  From and To cannot be removed: naming an internal host there refuses
        the message.  Returns the names of the removed headers (for the audit log).
        """
        removed: list[str] = []
        for name in _ALWAYS_REMOVED:
            if message.headers.remove(name):
                removed.append(name)
        if self._leak_re is None:
            return removed
        leak_re = self._leak_re

        def keep(name: str, value: str) -> bool:
            if name.lower() in _STRUCTURAL or not leak_re.search(value):
                return True
            removed.append(name)
            return False

        message.headers.filter(keep)
        for name in ("From", "To"):
            if leak_re.search(message.headers.get(name) or ""):
                raise TopologyLeakError(f"{name} names an internal host or address", 403)
        return removed

    def leaks(self, text: str) -> bool:
        """Whether ``text`` names a configured internal host or address."""
        return bool(self._leak_re and self._leak_re.search(text))

    def _hide_contacts(self, message: SipMessage, toward: Side, dialog_key: int | None) -> None:
        contacts = message.headers.get_all("Contact")
        if not contacts:
            return
        face = self.faces[toward]
        hidden: list[str] = []
        for value in contacts:
            if value.strip() == "*":
                hidden.append(value)
                continue
            try:
                address = NameAddr.parse(value)
            except SipSyntaxError as exc:
                raise TopologyError(f"malformed Contact: {exc.reason}") from None
            token = self.sealer.seal(_bound("ct", toward, message.call_id), address.uri.encode(), dialog_key)
            address.uri = f"sip:{face.hostport()};transport={face.transport};ct={token}"
            address.display = None
            hidden.append(str(address))
        message.headers.replace_all("Contact", hidden)

    def _transform_call_id(self, message: SipMessage, toward: Side, dialog_key: int | None) -> None:
        """Deterministic Call-ID mapping: undo the other direction's seal, else seal this way."""
        call_id = message.call_id
        back = self.sealer.try_unseal(f"cid:{toward.other.value}", call_id)
        if back is not None:
            message.headers.set("Call-ID", back.decode("utf-8", "replace"))
        else:
            message.headers.set(
                "Call-ID", self.sealer.seal(f"cid:{toward.value}", call_id.encode(), dialog_key)
            )

    def _own_entry(self, face: Face, param: str, token: str) -> str:
        return f"<sip:{face.hostport()};transport={face.transport};lr;{param}={token}>"

    def _own_route_token(self, value: str, arrived_on: Side, call_id: str) -> str | None:
        """The route set sealed in one of our Record-Route entries (recognised by its token)."""
        try:
            uri = NameAddr.parse(value).sip_uri
        except SipSyntaxError:
            return None
        token = get_param(uri.params, "th")
        if token is None:
            return None
        plain = self.sealer.try_unseal(_bound("rr", arrived_on, call_id), token)
        return None if plain is None else plain.decode("utf-8", "replace")

    def _own_uri(self, uri: str, face: Face, call_id: str) -> SipUri | None:
        """The Request-URI when it names this border: its face, or a ``ct`` token that verifies."""
        try:
            parsed = SipUri.parse(uri)
        except SipSyntaxError:
            return None
        if parsed.user is not None:
            return None
        if face.matches(parsed.host, parsed.port, parsed.param("transport")):
            return parsed
        token = parsed.param("ct")
        if token is not None and any(
            self.sealer.try_unseal(_bound("ct", side, call_id), token) is not None for side in Side
        ):
            return parsed
        return None

    def _unseal_text(self, kind: str, token: str, what: str) -> tuple[str, int]:
        opened = self.sealer.try_unseal_with_key_id(kind, token)
        if opened is None:
            raise TopologyError(f"sealed {what} does not verify under this border's keys", 403)
        plain, key_id = opened
        try:
            return plain.decode("utf-8"), key_id
        except UnicodeDecodeError:
            raise TopologyError(f"sealed {what} is not text", 403) from None


def _bound(kind: str, side: Side, call_id: str) -> str:
    """The associated data of a dialog token: its kind, the side it faces and the dialog's Call-ID
    as seen on that side (so a token cannot be replayed in another role, side or dialog)."""
    return f"{kind}:{side.value}:{call_id}"


def _without_return_address(via_value: str) -> str:
    """A Via value without the ``received``/``rport`` values that depend on the connection used,
    nor the ``vs`` of a border before us, which seals such values of the hops behind it."""
    try:
        via = Via.parse(via_value)
    except SipSyntaxError:
        return via_value
    via.params = [
        (name, value) for name, value in via.params if name.lower() not in ("received", "rport", "vs")
    ]
    return str(via)


def _to_tag(message: SipMessage) -> str | None:
    try:
        return NameAddr.parse(message.headers.get("To") or "").tag
    except SipSyntaxError:
        return None
