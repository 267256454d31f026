"""Request Expiry of admitted EARs: the dialogs a request created end when it expires (J.2.4).

TS 33.180 J.2.4: at the Request Expiry instant, whatever the request set up (calls, for example)
has to be ended.  The IS proxy that admitted the request (entry point, explicit mode) releases
the INVITE dialogs it created: a BYE toward the inside and a BYE toward the partner.

This module is the sans-IO bookkeeping, ``ExpiryTracker``:

* ``admitted`` — an initial INVITE whose EAR carries a Request Expiry was forwarded inside:
  remember it (as forwarded: inside Call-ID, this border's Record-Route and Contact entries);
* ``answered`` — a 2xx to it came back from the inside: a dialog exists; remember the callee's
  tag and what the partner was told (this border's Contact and Record-Route facing the partner);
  a final non-2xx forgets the pending INVITE;
* ``observed`` — in-dialog requests passing the border keep the CSeq numbers current; a BYE ends
  the tracking;
* ``due(now)`` — the dialogs whose expiry passed, each as two BYEs built **as the two ends would
  send them**: the caller's BYE as it would arrive from the partner (Request-URI and Route are
  this border's sealed entries facing the partner, partner-side Call-ID) and the callee's BYE as
  it would arrive from the inside.  The IS proxy passes each through the topology hider
  (``restore_request`` then ``hide_request``), which gives the inside BYE the inside Call-ID and
  route and the partner's BYE the partner-side Call-ID and route, sealed as any message is.

Each BYE carries a Via marked ``release`` so that its response ends here (``is_release``).

This table is the IS proxy's **only per-instance state** (docs/PROFILE.md): an instance that
stops forgets the expiries it was tracking; sharing them between instances would need a shared
store (a later scale-out step).  Dialogs of SUBSCRIBE or REFER are not tracked (their
subscriptions end by their own Expires).  An INVITE answered after its expiry is released as
soon as it is answered.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from mcinterconnect.border.topology import Face
from mcinterconnect.sip.message import Headers, SipRequest, SipResponse
from mcinterconnect.sip.proxy import MAGIC_COOKIE
from mcinterconnect.sip.uri import NameAddr, SipSyntaxError, Via

#: Via parameter that marks a BYE this border originated to release a dialog.
RELEASE_PARAM = "release"
#: Seconds a pending INVITE is kept after its expiry (or admission) waiting for a final answer:
#: an INVITE transaction may ring for three minutes (RFC 3261 Timer C) before it is answered.
PENDING_GRACE = 200.0
#: Most INVITEs (pending or answered) tracked at once; the IS proxy refuses beyond (fail closed).
MAX_TRACKED = 10_000
#: Highest CSeq number (RFC 3261 §8.1.1.5: below 2**31).
_MAX_CSEQ = 2**31 - 1


@dataclass(frozen=True)
class Release:
    """The two BYEs that release one expired dialog (module docstring)."""

    partner: str
    expiry: float
    #: The caller's BYE as it would arrive from the partner (restore with ``Side.EXTERNAL``).
    toward_inside: SipRequest
    #: The callee's BYE as it would arrive from the inside (restore with ``Side.INTERNAL``).
    toward_partner: SipRequest


@dataclass
class _Pending:
    partner: str
    expiry: float
    admitted_at: float
    invite: SipRequest  # as forwarded to the inside


@dataclass
class _Dialog:
    partner: str
    expiry: float
    inside_call_id: str
    outside_call_id: str
    caller: str  # From of the INVITE (with the caller's tag)
    callee: str  # To of the 2xx (with the callee's tag)
    #: The caller's next request would go here, through this Route (this border's partner-facing entries).
    caller_target: str
    caller_route: list[str]
    #: The callee's next request would go here, through this Route (this border's inside-facing entries).
    callee_target: str
    callee_route: list[str]
    caller_cseq: int
    callee_cseq: int = 0

    @property
    def call_ids(self) -> tuple[str, str]:
        return (self.inside_call_id, self.outside_call_id)


def _tag(value: str | None) -> str | None:
    try:
        return NameAddr.parse(value or "").tag
    except SipSyntaxError:
        return None


def _contact_uri(message: SipRequest | SipResponse) -> str | None:
    value = message.headers.get("Contact")
    if value is None or value.strip() == "*":
        return None
    try:
        return NameAddr.parse(value).uri
    except SipSyntaxError:
        return None


def is_release(response: SipResponse) -> bool:
    """Whether ``response`` answers a BYE this border sent to release a dialog (its top Via)."""
    try:
        via = Via.parse(response.headers.get("Via") or "")
    except SipSyntaxError:
        return False
    return any(name.lower() == RELEASE_PARAM for name, _ in via.params)


class ExpiryTracker:
    """The INVITE dialogs to release at their Request Expiry, for one IS proxy instance."""

    def __init__(
        self, internal: Face, external: Face, *, max_tracked: int = MAX_TRACKED, grace: float = PENDING_GRACE
    ) -> None:
        """``internal``/``external``: the IS proxy's faces (for the Via of the BYEs it builds)."""
        self.faces = (internal, external)
        self.max_tracked = max_tracked
        self.grace = grace
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._dialogs: dict[tuple[str, str, str], _Dialog] = {}
        #: Call-ID (either side's) → dialog keys, for in-dialog requests.
        self._by_call_id: dict[str, set[tuple[str, str, str]]] = {}

    def __len__(self) -> int:
        return len(self._pending) + len(self._dialogs)

    @property
    def full(self) -> bool:
        return len(self) >= self.max_tracked

    # ------------------------------------------------------------------ events
    def admitted(self, invite: SipRequest, *, partner: str, expiry: float, now: float) -> bool:
        """An initial INVITE with a Request Expiry was forwarded inside (``invite`` as forwarded).
        False when the table is full or the INVITE cannot be tracked (no From tag)."""
        from_tag = _tag(invite.headers.get("From"))
        if from_tag is None or self.full:
            return False
        self._pending[(invite.call_id, from_tag)] = _Pending(partner, expiry, now, invite.copy())
        return True

    def answered(self, inside_call_id: str, response: SipResponse) -> None:
        """A final response to an INVITE came back from the inside.

        ``inside_call_id`` is its Call-ID as it arrived; ``response`` is the response as it goes
        to the partner (after ``restore_response``)."""
        if not self._pending:
            return
        key = (inside_call_id, _tag(response.headers.get("From")) or "")
        pending = self._pending.get(key)
        if pending is None:
            return
        if response.status >= 300:
            del self._pending[key]
            return
        if response.status < 200:
            return
        to_tag = _tag(response.headers.get("To"))
        caller_target = _contact_uri(response)
        callee_target = _contact_uri(pending.invite)
        if to_tag is None or caller_target is None or callee_target is None:
            return  # a 2xx without a callee tag or Contact sets up nothing we could address
        # The first 2xx makes the dialog; a forked second 2xx is not tracked (PROFILE.md).
        del self._pending[key]
        dialog_key = (inside_call_id, key[1], to_tag)
        invite = pending.invite
        try:
            caller_cseq = invite.cseq[0]
        except ValueError:
            return
        record_routes = response.headers.get_all("Record-Route")
        dialog = _Dialog(
            partner=pending.partner,
            expiry=pending.expiry,
            inside_call_id=inside_call_id,
            outside_call_id=response.call_id,
            caller=invite.headers.get("From") or "",
            callee=response.headers.get("To") or "",
            caller_target=caller_target,
            # The caller reaches this border through its partner-facing entry (the first one).
            caller_route=record_routes[:1],
            callee_target=callee_target,
            # The callee's route set ends at this border's inside-facing entry (the INVITE's only one).
            callee_route=invite.headers.get_all("Record-Route")[-1:],
            caller_cseq=caller_cseq,
        )
        self._dialogs[dialog_key] = dialog
        for call_id in dialog.call_ids:
            self._by_call_id.setdefault(call_id, set()).add(dialog_key)

    def observed(self, request: SipRequest, *, from_partner: bool) -> None:
        """An in-dialog request crossed the border (before its Call-ID was transformed)."""
        keys = self._by_call_id.get(request.call_id)
        if not keys:
            return
        try:
            number = request.cseq[0]
        except ValueError:
            return
        for key in list(keys):
            dialog = self._dialogs.get(key)
            if dialog is None:
                continue
            if request.method == "BYE":
                self._forget(key)
                continue
            if from_partner:
                dialog.caller_cseq = max(dialog.caller_cseq, number)
            else:
                dialog.callee_cseq = max(dialog.callee_cseq, number)

    # ------------------------------------------------------------------ timer
    def due(self, now: float) -> list[Release]:
        """The dialogs whose Request Expiry passed, released (and forgotten) now."""
        for pending_key, pending in list(self._pending.items()):
            if now > max(pending.expiry, pending.admitted_at) + self.grace:
                del self._pending[pending_key]
        releases: list[Release] = []
        for key, dialog in list(self._dialogs.items()):
            if dialog.expiry > now:
                continue
            self._forget(key)
            releases.append(
                Release(dialog.partner, dialog.expiry, self._caller_bye(dialog), self._callee_bye(dialog))
            )
        return releases

    # ----------------------------------------------------------------- helpers
    def _forget(self, key: tuple[str, str, str]) -> None:
        dialog = self._dialogs.pop(key, None)
        if dialog is None:
            return
        for call_id in dialog.call_ids:
            keys = self._by_call_id.get(call_id)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_call_id[call_id]

    def _caller_bye(self, dialog: _Dialog) -> SipRequest:
        """The BYE the caller (partner side) would send, as it arrives at the partner-facing face."""
        external = self.faces[1]
        return _bye(
            dialog.caller_target,
            via=f"SIP/2.0/TLS {external.hostport()}",
            route=dialog.caller_route,
            from_=dialog.caller,
            to=dialog.callee,
            call_id=dialog.outside_call_id,
            cseq=min(dialog.caller_cseq + 1, _MAX_CSEQ),
        )

    def _callee_bye(self, dialog: _Dialog) -> SipRequest:
        """The BYE the callee (inside) would send, as it arrives at the inside face."""
        internal = self.faces[0]
        return _bye(
            dialog.callee_target,
            via=f"SIP/2.0/{internal.transport.upper()} {internal.hostport()}",
            route=dialog.callee_route,
            from_=dialog.callee,
            to=dialog.caller,
            call_id=dialog.inside_call_id,
            cseq=min(dialog.callee_cseq + 1, _MAX_CSEQ),
        )


def _bye(
    target: str, *, via: str, route: list[str], from_: str, to: str, call_id: str, cseq: int
) -> SipRequest:
    headers = Headers([("Via", f"{via};branch={MAGIC_COOKIE}{secrets.token_hex(12)};{RELEASE_PARAM}")])
    headers.add("Max-Forwards", "70")
    for value in route:
        headers.add("Route", value)
    headers.add("From", from_)
    headers.add("To", to)
    headers.add("Call-ID", call_id)
    headers.add("CSeq", f"{cseq} BYE")
    headers.add("Content-Length", "0")
    return SipRequest(headers=headers, body=b"", method="BYE", uri=target)
