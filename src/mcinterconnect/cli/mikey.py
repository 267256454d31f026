"""``mcic mikey``: make and open MIKEY-SAKKE I_MESSAGEs from the command line (crypto/mikey.py).

    mcic mikey make --key HEX --key-id HEX --kms-uri URI --key-period S --key-offset S
                    [--period-no N] --kpak HEX --z HEX --initiator-uri URI --responder-uri URI
                    --ssk HEX --pvt HEX [--rand HEX] [--timestamp UNIX] [--sdp]
    mcic mikey open --message B64 --kms-uri URI --key-period S --key-offset S --period-no N
                    --kpak HEX --z HEX --initiator-uri URI --responder-uri URI --rsk HEX
                    [--max-skew S]

Both ends use one KMS (``--kms-uri``, ``--kpak``, ``--z``, the key period ``--key-period`` /
``--key-offset``): it names IDRkmsi and IDRkmsr.  Period number and T payload (TS 33.180 F.2.1):
the UIDs are those of the key period in force at the T payload time, so ``--period-no`` and T must
agree.  ``make`` with ``--period-no`` puts T in that period: ``--timestamp`` if given (refused if
outside it), else now if now is inside it, else the first second of the period; without
``--period-no``, T is ``--timestamp`` or now and the period follows from it.  ``open`` refuses a
message whose T lies outside ``--period-no`` (the period of ``--rsk``); it checks T against the
local clock only when ``--max-skew`` is given, so stored messages can be opened later.

Points are hex of the uncompressed encoding 04 || x || y (KPAK and PVT on P-256, 65 octets; Z
and the RSK on the SAKKE curve, 257 octets); the SSK is a hex integer.  ``open`` prints one JSON
object: key, key_id, purpose, initiator_uid, responder_uid, signature ("valid") and, for a GMK,
gmk_id (recovered from the GUK-ID).  Every refusal is one line on stderr with exit status 1.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import math
import time

from mcinterconnect.cli.arguments import curve_point, hex_octets, key_period, seconds, whole_number
from mcinterconnect.cli.common import CliError
from mcinterconnect.crypto import ec, eccsi, keyids, mikey, sakke
from mcinterconnect.crypto.ec import Point
from mcinterconnect.crypto.keyids import KeyIdError, Purpose
from mcinterconnect.crypto.uid import KeyPeriod, UidError, unix_from_ntp_seconds


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("mikey", help="make and open MIKEY-SAKKE I_MESSAGEs (TS 33.180 Annex E)")
    actions = group.add_subparsers(dest="mikey_command", required=True, metavar="ACTION")

    make = actions.add_parser("make", help="build a signed I_MESSAGE carrying a key; print it in base64")
    make.add_argument("--key", metavar="HEX", required=True, help="the key (SSV) to send, 16 octets in hex")
    make.add_argument(
        "--key-id", metavar="HEX", required=True, help="CSB ID: 8 hex digits with a purpose tag"
    )
    _add_common(make, period_required=False)
    make.add_argument("--ssk", metavar="HEX", required=True, help="the initiator's SSK (hex integer)")
    make.add_argument("--pvt", metavar="HEX", required=True, help="the initiator's PVT (hex, 04 || x || y)")
    make.add_argument(
        "--rand", metavar="HEX", help="the RAND payload (hex, 16 to 255 octets; random by default)"
    )
    make.add_argument(
        "--timestamp", metavar="UNIX", help="T payload time in Unix seconds (default: see --period-no)"
    )
    make.add_argument("--sdp", action="store_true", help="print 'mikey <base64>' (SDP key-mgmt form)")
    make.set_defaults(handler=_make)

    open_ = actions.add_parser("open", help="verify an I_MESSAGE, decapsulate it, print the key as JSON")
    open_.add_argument(
        "--message", metavar="B64", required=True, help="the I_MESSAGE in base64, or 'mikey <base64>'"
    )
    _add_common(open_, period_required=True)
    open_.add_argument("--rsk", metavar="HEX", required=True, help="the responder's RSK (hex, 04 || x || y)")
    open_.add_argument("--max-skew", metavar="S", help="refuse a T payload this many seconds away from now")
    open_.set_defaults(handler=_open)


def _add_common(parser: argparse.ArgumentParser, *, period_required: bool) -> None:
    parser.add_argument("--kms-uri", metavar="URI", required=True, help="the KMS URI (IDRkmsi and IDRkmsr)")
    parser.add_argument("--key-period", metavar="S", required=True, help="UserKeyPeriod of the KMS, seconds")
    parser.add_argument("--key-offset", metavar="S", required=True, help="UserKeyOffset of the KMS, seconds")
    parser.add_argument(
        "--period-no",
        metavar="N",
        required=period_required,
        help="key period number of the keys; the T payload time must fall in it",
    )
    parser.add_argument(
        "--kpak", metavar="HEX", required=True, help="the KMS's KPAK (hex, 04 || x || y on P-256)"
    )
    parser.add_argument(
        "--z", metavar="HEX", required=True, help="the KMS's SAKKE public key Z (hex, 04 || x || y)"
    )
    parser.add_argument(
        "--initiator-uri", metavar="URI", required=True, help="MC service ID of the initiator (IDRi)"
    )
    parser.add_argument(
        "--responder-uri", metavar="URI", required=True, help="MC service ID of the responder (IDRr)"
    )


# --- argument decoding: each failure is one line naming the option ----------------------------------


def _kms_public_key(text: str) -> Point:
    """``--z``: a point of the SAKKE curve in the subgroup of order q."""
    point = curve_point("--z", text, sakke.CURVE)
    try:
        return sakke.validate_kms_public_key(point)
    except sakke.SakkeError as error:
        raise CliError(f"--z: {error}") from None


def _message(text: str) -> bytes:
    value = text.strip()
    if value.startswith("a=key-mgmt:") or any(c.isspace() for c in value):
        return mikey.from_sdp_key_mgmt(value)
    try:
        data = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise CliError("--message: not base64 (nor 'mikey <base64>')") from None
    if not data:
        raise CliError("--message: empty")
    return data


# --- make --------------------------------------------------------------------------------------------


def _timestamp_for(args: argparse.Namespace, period: KeyPeriod) -> float:
    """T time (Unix): --timestamp, else now, else the start of --period-no (module docstring)."""
    given = None if args.timestamp is None else seconds("--timestamp", args.timestamp)
    if args.period_no is None:
        return time.time() if given is None else given
    number = whole_number("--period-no", args.period_no)
    if given is not None:
        found = period.number_at(mikey.Timestamp.ntp_utc(given).utc_seconds()[0])
        if found != number:
            raise CliError(f"--timestamp {given:.0f} lies in key period {found}, not --period-no {number}")
        return given
    now = math.floor(time.time())  # whole seconds: the NTP fraction cannot round into the next period
    if period.number_at(mikey.Timestamp.ntp_utc(now).utc_seconds()[0]) == number:
        return now
    return unix_from_ntp_seconds(period.start_of(number))


def _make(args: argparse.Namespace) -> int:
    key = hex_octets("--key", args.key)
    if len(key) != sakke.SSV_LENGTH:
        raise CliError(f"--key: {len(key)} octets, expected {sakke.SSV_LENGTH}")
    try:
        key_id = keyids.parse_key_id(args.key_id)
    except KeyIdError as error:
        raise CliError(f"--key-id: {error}") from None
    period = key_period(args)
    try:
        timestamp = _timestamp_for(args, period)
    except UidError as error:
        raise CliError(f"--period-no/--timestamp: {error}") from None
    data = mikey.make_i_message(
        ssv=key,
        key_id=key_id,
        initiator_uri=args.initiator_uri,
        responder_uri=args.responder_uri,
        initiator_kms_uri=args.kms_uri,
        responder_kms_uri=args.kms_uri,
        initiator_period=period,
        responder_period=period,
        ssk=int.from_bytes(hex_octets("--ssk", args.ssk), "big"),
        pvt=curve_point("--pvt", args.pvt, ec.P256),
        kpak=curve_point("--kpak", args.kpak, ec.P256),
        responder_z=_kms_public_key(args.z),
        timestamp=timestamp,
        rand=None if args.rand is None else hex_octets("--rand", args.rand),
    )
    print(mikey.to_sdp_key_mgmt(data) if args.sdp else base64.b64encode(data).decode("ascii"))
    return 0


# --- open --------------------------------------------------------------------------------------------


def _open(args: argparse.Namespace) -> int:
    data = _message(args.message)
    period = key_period(args)
    opened = mikey.open_i_message(
        data,
        initiator_kpak=curve_point("--kpak", args.kpak, ec.P256),
        initiator_period=period,
        responder_period=period,
        responder_rsk=curve_point("--rsk", args.rsk, sakke.CURVE),
        responder_z=_kms_public_key(args.z),
        expected_initiator_uri=args.initiator_uri,
        expected_responder_uri=args.responder_uri,
        expected_initiator_kms_uri=args.kms_uri,
        expected_responder_kms_uri=args.kms_uri,
        period_number=whole_number("--period-no", args.period_no),
        max_skew=None if args.max_skew is None else seconds("--max-skew", args.max_skew),
    )
    result = {
        "key": opened.key.hex(),
        "key_id": keyids.format_key_id(opened.key_id),
        "purpose": opened.purpose.name,
        "initiator_uid": opened.initiator_uid.hex(),
        "responder_uid": opened.responder_uid.hex(),
        "signature": "valid",
    }
    if opened.purpose == Purpose.GMK and opened.gmk_id is not None:
        result["gmk_id"] = keyids.format_key_id(opened.gmk_id)
    print(json.dumps(result))
    return 0


#: Errors of the crypto layer that a handler may meet; cli/__init__ reports them as one line.
REPORTED = (mikey.MikeyError, eccsi.EccsiError, sakke.SakkeError, UidError, KeyIdError, ec.EcError)
