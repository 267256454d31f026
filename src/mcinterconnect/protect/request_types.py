"""Which EAR Request type fits which SIP request (WA-SP-27), for the signer and the checker.

The rule this project applies (docs/PROFILE.md, "Explicit authentication"):

* a request whose ``mcptt-info`` names a calling group is group signalling: Request type
  ``GROUP`` (0x03), and nothing else;
* any other request (private call, one-to-one short data) omits the Request IE (``None``), or
  carries PRIVILEGED, INTERWORKING or MIGRATION signalling when the partner agreement allows it
  (the MC services of this version never send those);
* OFF-NETWORK signalling is never valid on the interconnection interface.

A partner agreement lists the types it accepts by name (``allowed_request_types``; "none" is the
Request IE omitted).  Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from mcinterconnect.mcinfo import McpttInfo
from mcinterconnect.protect.ear import RequestType

#: The name of "Request IE omitted" in ``allowed_request_types``.
NO_REQUEST = "none"


def names_group(info: McpttInfo | None) -> bool:
    """Whether the request is group signalling: its ``mcptt-info`` names a calling group."""
    return info is not None and bool(info.calling_group_id)


def request_type_for(info: McpttInfo | None) -> RequestType | None:
    """The Request type a sender writes: GROUP when a calling group is named, else no Request IE."""
    return RequestType.GROUP if names_group(info) else None


def request_type_rule(
    info: McpttInfo | None, allowed: Collection[str]
) -> Callable[[RequestType | None], bool]:
    """The predicate ``check_ear`` asks (``allowed_request_types``) for one request.

    ``allowed`` holds names of ``RequestType`` members and ``"none"``, as in the agreement."""
    group = names_group(info)
    names = frozenset(allowed)

    def fits(request_type: RequestType | None) -> bool:
        if request_type is RequestType.OFF_NETWORK:
            return False
        if group:
            return request_type is RequestType.GROUP and RequestType.GROUP.name in names
        if request_type is None:
            return NO_REQUEST in names
        return request_type is not RequestType.GROUP and request_type.name in names

    return fits
