"""``mcic group``: a user reads a group, and optionally its GMK, from her own GMS (issue 6).

    mcic group get DIR --system A --user alice GROUP-ID [--gmk]

The request goes where an MC client's must (TS 33.180 11.1.1): to the client side of the user's
own HTTP proxy, with her certificate (``users/<user>.crt`` written by ``mcic init``), to her own
GMS.  A group homed in a partner system is answered from what GMS A keeps (WA-IC-21), filtered
(WA-IC-12).  ``--gmk`` also fetches the group's GMK (a MIKEY-SAKKE I_MESSAGE signed by the own
GMS, WA-IC-22), opens it with the user's keys from her own KMS and prints its GMK-ID and signer
(the key itself is never printed).  Output: one JSON object.  Any failure: one line, exit 1.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mcinterconnect.cli.common import CliError, run_async
from mcinterconnect.crypto.kms import KmsError
from mcinterconnect.deploy.config import load_deployment
from mcinterconnect.deploy.users import UserError, proxy_url, user_context, user_files, user_keys, user_uri
from mcinterconnect.identity import IdentityError, McServiceId
from mcinterconnect.services.gmk import GmkError
from mcinterconnect.services.gms_client import GmsClientError, fetch_gmk, fetch_group
from mcinterconnect.tlsprofile import TlsConfigError

#: Errors of this group reported as one line with exit status 1.
REPORTED: tuple[type[Exception], ...] = (UserError, GmkError, KmsError, TlsConfigError)


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("group", help="read a group (and its GMK) from the user's own GMS")
    actions = group.add_subparsers(dest="group_command", required=True, metavar="ACTION")
    get = actions.add_parser("get", help="GET a group document through the own HTTP proxy")
    get.add_argument("directory", type=Path, help="deployment folder or deployment.toml")
    get.add_argument("--system", required=True, help="the user's system (name or domain)")
    get.add_argument("--user", required=True, help="the user, as named in users/ (e.g. alice)")
    get.add_argument("group_id", help="the MC service group ID, e.g. sip:rescue@b.mc.example")
    get.add_argument("--gmk", action="store_true", help="also fetch and open the group's GMK")
    get.add_argument("--timeout", type=float, default=10.0, help="seconds for each exchange (default 10)")
    get.set_defaults(handler=_get)


def _get(args: argparse.Namespace) -> int:
    try:
        group_id = str(McServiceId.parse(args.group_id))
    except IdentityError as error:
        raise CliError(f"group ID {args.group_id[:80]!r}: {error}") from None
    if not 0 < args.timeout <= 300:
        raise CliError("--timeout: must be more than 0 and at most 300 seconds")
    home = load_deployment(args.directory).system(args.system)
    cert, _ = user_files(home, args.user)
    uri = user_uri(cert)
    url, name = proxy_url(home)
    context = user_context(home, args.user)

    async def fetch() -> dict[str, object]:
        try:
            fetched = await fetch_group(
                url, group_id, ssl_context=context, server_hostname=name, timeout=args.timeout
            )
        except GmsClientError as error:
            raise CliError(f"{group_id}: {error}") from None
        document = fetched.document
        assert document is not None  # no If-None-Match was sent: 200 or an error
        result: dict[str, object] = {
            "group": document.group_id,
            "etag": fetched.etag,
            "display_name": document.display_name,
            "members": [member.id for member in document.members],
            "services": list(document.services),
        }
        if args.gmk:
            if home.gms is None:
                raise CliError(f"{home.source}: gms: missing table: the GMK comes from the own GMS")
            keys = await user_keys(home, args.user)
            try:
                opened = await fetch_gmk(
                    url,
                    group_id,
                    user_uri=uri,
                    keys=keys,
                    gms_psi=home.gms.psi,
                    ssl_context=context,
                    server_hostname=name,
                    timeout=args.timeout,
                )
            except GmsClientError as error:
                raise CliError(f"{group_id}: GMK: {error}") from None
            result["gmk_id"] = f"{opened.gmk_id:08x}"
            result["gmk_signed_by"] = opened.initiator_uri
        return result

    print(json.dumps({"user": uri, **run_async(fetch())}, indent=2))
    return 0
