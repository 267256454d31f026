"""``mcic ear``: decode, sign and verify EARs (TS 33.180 9.6, Annex J; protect/ear.py).

    mcic ear decode B64
    mcic ear sign --source-id URI --source-role NAME|N --target-id URI --target-role NAME|N
                  [--request-type NAME|N [--request-id N] [--expiry UNIX]]
                  --kms-uri URI --key-period S --key-offset S --ssk HEX --pvt HEX --kpak HEX
                  [--time UNIX]
    mcic ear verify B64 --kms-uri URI --key-period S --key-offset S --kpak HEX
                  [--source-domain D ...] [--target-domain D ...] [--target-id URI]
                  [--allow-request-type NAME|N|none ...] [--skew S] [--now UNIX]

``B64`` is the ``MC-EAR`` header value (standard base64 with padding).  ``decode`` prints every
field as one JSON object (the signer's UID needs the KMS parameters, so it is not shown).
``sign`` checks that the SSK and PVT are the key set of ``--source-id`` for the key period holding
``--time`` (default now), then prints the header value.  ``verify`` runs the receiver checks of
WA-SP-26 (protect/ear_check.py) and prints ``valid: ...``; without ``--source-domain`` (or
``--target-domain``) the host of the Source ID (Target ID) is taken as allowed; the request types
allowed default to all but OFF-NETWORK.  The replay step needs a store and is not run.
Roles and request types are names (``mcx-server``, ``group``) or numbers (``2``, ``0x03``).
Points are hex of 04 || x || y on P-256, the SSK a hex integer.  Every refusal is one line
``mcic: error: <reason>: <detail>`` on stderr with exit status 1.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import time
from collections.abc import Callable
from enum import IntEnum
from typing import Any, TypeVar

from mcinterconnect.cli.arguments import curve_point, hex_octets, key_period, seconds, whole_number
from mcinterconnect.cli.common import CliError
from mcinterconnect.crypto import eccsi
from mcinterconnect.crypto.uid import UidError
from mcinterconnect.protect import ear_check
from mcinterconnect.protect.ear import (
    EarError,
    EarPayload,
    RequestPayload,
    RequestType,
    Role,
    SignedEar,
    decode_header_value,
    ear_signer_identity,
    encode_header_value,
    new_payload,
    parse_signed_ear,
    sign_ear,
)

#: Errors of this group reported as one line (handlers convert EarError themselves).
REPORTED: tuple[type[Exception], ...] = (EarError,)

E = TypeVar("E", bound=IntEnum)


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("ear", help="decode, sign and verify EARs (TS 33.180 9.6, Annex J)")
    actions = group.add_subparsers(dest="ear_command", required=True, metavar="ACTION")

    decode = actions.add_parser("decode", help="print every field of an EAR as JSON")
    decode.add_argument("ear", metavar="B64", help="the MC-EAR header value (base64)")
    decode.set_defaults(handler=_decode)

    sign = actions.add_parser("sign", help="build and sign an EAR; print the MC-EAR header value")
    sign.add_argument("--source-id", metavar="URI", required=True, help="the signer (sip:user@host)")
    sign.add_argument("--source-role", metavar="NAME|N", required=True, help=_names(Role))
    sign.add_argument("--target-id", metavar="URI", required=True, help="the receiving entity")
    sign.add_argument("--target-role", metavar="NAME|N", required=True, help=_names(Role))
    sign.add_argument("--request-type", metavar="NAME|N", help=_names(RequestType))
    sign.add_argument("--request-id", metavar="N", help="Request ID, 0..65535 (needs --request-type)")
    sign.add_argument("--expiry", metavar="UNIX", help="Request Expiry, Unix seconds (needs --request-type)")
    _add_kms(sign)
    sign.add_argument("--ssk", metavar="HEX", required=True, help="the signer's SSK (hex integer)")
    sign.add_argument("--pvt", metavar="HEX", required=True, help="the signer's PVT (hex, 04 || x || y)")
    sign.add_argument("--time", metavar="UNIX", help="Date and time, Unix seconds (default: now)")
    sign.set_defaults(handler=_sign)

    verify = actions.add_parser("verify", help="run the receiver checks (WA-SP-26) on an EAR")
    verify.add_argument("ear", metavar="B64", help="the MC-EAR header value (base64)")
    _add_kms(verify)
    verify.add_argument(
        "--source-domain", metavar="D", action="append", default=[], help="a partner domain (repeatable)"
    )
    verify.add_argument(
        "--target-domain", metavar="D", action="append", default=[], help="an own domain (repeatable)"
    )
    verify.add_argument("--target-id", metavar="URI", help="the receiving entity: exact Target ID")
    verify.add_argument(
        "--allow-request-type",
        metavar="NAME|N|none",
        action="append",
        default=[],
        help="a request type accepted ('none': Request IE absent); repeatable; default all",
    )
    verify.add_argument("--skew", metavar="S", default="30", help="allowed clock skew in seconds (30)")
    verify.add_argument("--now", metavar="UNIX", help="the receiver's time, Unix seconds (default: now)")
    verify.set_defaults(handler=_verify)


def _add_kms(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kms-uri", metavar="URI", required=True, help="the signer's KMS URI")
    parser.add_argument("--key-period", metavar="S", required=True, help="UserKeyPeriod in seconds")
    parser.add_argument("--key-offset", metavar="S", required=True, help="UserKeyOffset in seconds")
    parser.add_argument("--kpak", metavar="HEX", required=True, help="the KMS's KPAK (hex, 04 || x || y)")


def _names(kind: type[IntEnum]) -> str:
    return ", ".join(f"{_name(member)}={member.value}" for member in kind)


def _name(member: IntEnum) -> str:
    return str(member.name).lower().replace("_", "-")


# --- argument decoding: each failure is one line naming the option ----------------------------------


def _unix(option: str, text: str) -> int:
    value = seconds(option, text)
    if not 0 <= value < 1 << 40:
        raise CliError(f"{option}: {text[:20]!r} is outside 0..2^40-1 Unix seconds")
    return math.floor(value)


def _member(option: str, text: str, kind: type[E]) -> E:
    """An enumeration member by name (any case, '-' or '_') or by number."""
    key = text.strip().upper().replace("-", "_")
    for member in kind:
        if member.name == key:
            return member
    number = whole_number(option, text, 0xFF) if key[:1].isdigit() else None
    if number is not None:
        for member in kind:
            if member.value == number:
                return member
        raise CliError(f"{option}: {number} is reserved or unknown ({_names(kind)})")
    raise CliError(f"{option}: {text[:20]!r} is not one of {_names(kind)}")


def _refusal(error: EarError) -> CliError:
    return CliError(f"{error.reason}: {error}")


def _parse(text: str) -> SignedEar:
    try:
        return parse_signed_ear(decode_header_value(text))
    except EarError as error:
        raise _refusal(error) from None


# --- decode --------------------------------------------------------------------------------------------


def _iso(seconds: int) -> str | None:
    try:
        moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    except (OverflowError, ValueError, OSError):
        return None  # 40-bit seconds reach far beyond year 9999
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _enum_json(kind: type[IntEnum], value: int) -> dict[str, Any]:
    try:
        name: str | None = _name(kind(value))
    except ValueError:
        name = None
    return {"name": name, "value": value}


def _payload_json(payload: EarPayload) -> dict[str, Any]:
    request: dict[str, Any] | None = None
    if payload.request is not None:
        expiry = payload.request.expiry
        request = {
            "type": _enum_json(RequestType, payload.request.request_type),
            "request_id": payload.request.request_id,
            "expiry": expiry,
            "expiry_iso": None if expiry is None else _iso(expiry),
        }
    return {
        "time": payload.time,
        "time_iso": _iso(payload.time),
        "ear_id": str(payload.ear_id),
        "source_role": _enum_json(Role, payload.source_role),
        "source_id": payload.source_id,
        "target_role": _enum_json(Role, payload.target_role),
        "target_id": payload.target_id,
        "request": request,
    }


def _decode(args: argparse.Namespace) -> int:
    ear = _parse(args.ear)
    result = _payload_json(ear.payload)
    result["payload_octets"] = len(ear.payload_octets)
    result["signature"] = ear.signature.hex()
    print(json.dumps(result))
    return 0


# --- sign ----------------------------------------------------------------------------------------------


def _request(args: argparse.Namespace) -> RequestPayload | None:
    if args.request_type is None:
        if args.request_id is not None or args.expiry is not None:
            raise CliError("--request-id/--expiry: need --request-type")
        return None
    return RequestPayload(
        _member("--request-type", args.request_type, RequestType),
        None if args.request_id is None else whole_number("--request-id", args.request_id, 0xFFFF),
        None if args.expiry is None else _unix("--expiry", args.expiry),
    )


def _sign(args: argparse.Namespace) -> int:
    period = key_period(args)
    kpak = curve_point("--kpak", args.kpak)
    pvt = curve_point("--pvt", args.pvt)
    ssk = int.from_bytes(hex_octets("--ssk", args.ssk), "big")
    try:
        payload = new_payload(
            source_role=_member("--source-role", args.source_role, Role),
            source_id=args.source_id,
            target_role=_member("--target-role", args.target_role, Role),
            target_id=args.target_id,
            request=_request(args),
            now=None if args.time is None else _unix("--time", args.time),
        )
    except EarError as error:
        raise _refusal(error) from None
    try:
        identity = ear_signer_identity(
            payload.source_id, payload.time, kms_uri=args.kms_uri, key_period=period
        )
    except UidError as error:
        raise CliError(f"--source-id/--kms-uri/--time: {error}") from None
    try:
        eccsi.validate_ssk(ssk, pvt, kpak, identity)
    except eccsi.EccsiError as error:
        raise CliError(
            f"--ssk/--pvt: not a key set of --source-id in the key period at {payload.time} ({error.reason})"
        ) from None
    try:
        signed = sign_ear(payload, ssk=ssk, pvt=pvt, kpak=kpak, kms_uri=args.kms_uri, key_period=period)
        print(encode_header_value(signed))
    except EarError as error:
        raise _refusal(error) from None
    return 0


# --- verify --------------------------------------------------------------------------------------------


def _own_host(entity_id: str) -> list[str]:
    try:
        return [ear_check.entity_host(entity_id)]
    except ValueError:
        return []  # the check itself then refuses the ID with its reason


def _request_types(options: list[str]) -> Callable[[RequestType | None], bool]:
    if not options:
        return lambda _: True
    allowed: set[RequestType | None] = set()
    for text in options:
        if text.strip().lower() == "none":
            allowed.add(None)
        else:
            allowed.add(_member("--allow-request-type", text, RequestType))
    return lambda request_type: request_type in allowed


def _verify(args: argparse.Namespace) -> int:
    period = key_period(args)
    kpak = curve_point("--kpak", args.kpak)
    skew = seconds("--skew", args.skew)
    if skew < 0:
        raise CliError("--skew: must be 0 or more")
    now = time.time() if args.now is None else seconds("--now", args.now)
    allowed = _request_types(args.allow_request_type)
    ear = _parse(args.ear)  # malformed input is refused before any other option is needed
    verdict = ear_check.check_ear(
        args.ear,
        now=now,
        policy=ear_check.EarPolicy(skew=skew),
        source_domains=args.source_domain or _own_host(ear.payload.source_id),
        target_domains=args.target_domain or _own_host(ear.payload.target_id),
        target_id=args.target_id,
        allowed_request_types=allowed,
        kms_uri=args.kms_uri,
        kpak=kpak,
        key_period=period,
    )
    if not verdict.ok:
        raise CliError(f"{verdict.reason}: {verdict.detail}")
    request = ear.payload.request
    shown = "no request" if request is None else f"request {_name(request.request_type)}"
    print(
        f"valid: EAR {ear.payload.ear_id} from {ear.payload.source_id} to {ear.payload.target_id}, "
        f"{shown}, time {_iso(ear.payload.time)}"
    )
    return 0
