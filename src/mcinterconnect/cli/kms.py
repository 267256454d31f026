"""``mcic kms``: KMS certificates across partners (WA-IC-19) and offline provisioning for labs.

    mcic kms export-cert DIR --system A [-o FILE]
    mcic kms import-partner DIR --system A --partner B --cert FILE
    mcic kms provision DIR --system A --user sip:alice@a.mc.example [--periods N]

``export-cert`` prints (or writes) the system's own KMS certificate, checked, with its
fingerprint on stderr when written to a file.  ``import-partner`` is the receiving half of the
manual cross-certification: the certificate is checked (document, curve points, validity now, not
the system's own), written as ``partners/<partner>-kms.xml`` beside the system file with role
External, and the partner's ``kms_certificate`` key is set in ``system.toml``.

Editing ``system.toml``: the key is set by a line edit inside the ``[[partner]]`` table whose
``name`` is the partner (an existing ``kms_certificate`` line is replaced, else one is added at the
end of that table); comments and layout stay as they are.  The result is written only if it loads
and differs from the old configuration in that one value (then atomically, keeping the file's
mode).  If the file's layout is not recognised (no such ``[[partner]]`` header, inline tables) the
file is left untouched, the exact line to add is printed on stdout and the command fails.

``provision`` issues key sets from the sealed secrets without the running service (labs, tests):
previous, current and next key periods (WA-CR-07), or ``--periods N`` periods from the current
one.  The JSON it prints holds the **secret** SSK and RSK, in the forms ``mcic mikey`` takes
(points 04 || x || y in hex, SSK a hex integer).  Each key set is validated before it is printed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
from pathlib import Path

from mcinterconnect.cli.common import CliError
from mcinterconnect.cli.systemfile import set_partner_key, toml_string, write_if_equivalent
from mcinterconnect.crypto import ec, sakke
from mcinterconnect.crypto.ec import P256
from mcinterconnect.crypto.kms import KmsCertificate, KmsError, validate_key_set
from mcinterconnect.deploy.config import SystemConfig, load_deployment
from mcinterconnect.identity import IdentityError, McServiceId
from mcinterconnect.services.kms import KmsSettings, read_certificate, read_kms, write_certificate

#: Errors of this group reported as one line with exit status 1.
REPORTED: tuple[type[Exception], ...] = (KmsError,)

MAX_PERIODS = 12

_FILE_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,60}")


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser(
        "kms", help="KMS certificates across partners (WA-IC-19) and offline provisioning"
    )
    actions = group.add_subparsers(dest="kms_command", required=True, metavar="ACTION")

    export = actions.add_parser("export-cert", help="print or write the system's KMS certificate (XML)")
    export.add_argument("directory", type=Path, help="deployment folder or deployment.toml")
    export.add_argument("--system", required=True, help="the system (name or domain)")
    export.add_argument("-o", "--output", type=Path, help="write the certificate to this file")
    export.set_defaults(handler=_export)

    imported = actions.add_parser(
        "import-partner", help="import a partner's KMS certificate and set it in system.toml"
    )
    imported.add_argument("directory", type=Path, help="deployment folder or deployment.toml")
    imported.add_argument("--system", required=True, help="the importing system (name or domain)")
    imported.add_argument("--partner", required=True, help="the partner, as named by a [[partner]] table")
    imported.add_argument("--cert", required=True, type=Path, help="the partner's KMS certificate (XML)")
    imported.set_defaults(handler=_import)

    provision = actions.add_parser(
        "provision", help="issue key sets offline from the sealed secrets (JSON with SECRET keys, labs)"
    )
    provision.add_argument("directory", type=Path, help="deployment folder or deployment.toml")
    provision.add_argument("--system", required=True, help="the system whose KMS issues (name or domain)")
    provision.add_argument("--user", required=True, help="MC service ID, e.g. sip:alice@a.mc.example")
    provision.add_argument(
        "--periods",
        type=int,
        help=f"this many key periods from the current one (1..{MAX_PERIODS}; "
        "default: previous, current, next)",
    )
    provision.set_defaults(handler=_provision)


# --- helpers --------------------------------------------------------------------------------------


def _system(directory: Path, name: str) -> tuple[SystemConfig, KmsSettings]:
    config = load_deployment(directory).system(name)
    if config.kms is None:
        raise CliError(f"{config.source}: system {config.system.name} has no [kms] section")
    return config, config.kms


def _update_system_file(config: SystemConfig, partner: str, target: Path) -> str | None:
    """Set ``kms_certificate`` of ``partner`` in the system file; the line to add if not possible."""
    source = config.source
    relative = os.path.relpath(target, source.parent).replace(os.sep, "/")
    line = f"kms_certificate = {toml_string(relative)}"
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return line
    edited = set_partner_key(text, partner, "kms_certificate", line)
    if edited is None:
        return line
    expected = config.model_copy(
        update={
            "partner": [
                agreement.model_copy(update={"kms_certificate": target.resolve()})
                if agreement.name == partner
                else agreement
                for agreement in config.partner
            ]
        }
    )
    return None if write_if_equivalent(config, edited, expected) else line


# --- commands -------------------------------------------------------------------------------------


def _export(args: argparse.Namespace) -> int:
    config, settings = _system(args.directory, args.system)
    certificate = read_certificate(settings.kms_certificate)
    if args.output is None:
        sys.stdout.buffer.write(certificate.to_xml())
        sys.stdout.flush()
        return 0
    try:
        write_certificate(args.output, certificate)
    except OSError as exc:
        raise CliError(f"{args.output}: cannot write: {exc.strerror}") from None
    print(
        f"KMS certificate of system {config.system.name} ({certificate.kms_uri}) written to {args.output}; "
        f"fingerprint {certificate.fingerprint()}"
    )
    return 0


def _import(args: argparse.Namespace) -> int:
    deployment = load_deployment(args.directory)
    config = deployment.system(args.system)
    names = [agreement.name for agreement in config.partner]
    if args.partner not in names:
        known = ", ".join(names) or "none"
        raise CliError(f"{config.source}: no [[partner]] named {args.partner!r} (known: {known})")
    try:
        data = args.cert.read_bytes()
    except OSError as exc:
        raise CliError(f"{args.cert}: cannot read: {exc.strerror}") from None
    try:
        certificate = KmsCertificate.from_xml(data)
    except KmsError as exc:
        raise CliError(f"{args.cert}: not a usable KMS certificate: {exc}") from None
    if not certificate.is_valid_at(datetime.datetime.now(datetime.UTC)):
        start, end = (
            f"{moment:%Y-%m-%dT%H:%M:%SZ}" for moment in (certificate.valid_from, certificate.valid_to)
        )
        raise CliError(f"{args.cert}: the certificate is not valid now (ValidFrom {start}, ValidTo {end})")
    if config.kms is not None and certificate.kms_uri == config.kms.uri:
        raise CliError(f"{args.cert}: this is system {config.system.name}'s own KMS ({certificate.kms_uri})")
    stem = args.partner.lower()
    file_name = (
        f"{stem}-kms.xml" if _FILE_NAME_RE.fullmatch(stem) else f"partner-{names.index(args.partner)}-kms.xml"
    )
    target = config.source.parent / "partners" / file_name
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_certificate(target, certificate.as_role("External"))
    except OSError as exc:
        raise CliError(f"{target}: cannot write: {exc.strerror}") from None
    print(
        f"imported KMS certificate of partner {args.partner} ({certificate.kms_uri}) as {target}; "
        f"fingerprint {certificate.fingerprint()} (compare it with the partner out of band)"
    )
    missing = _update_system_file(config, args.partner, target)
    if missing is not None:
        print(f"add to the [[partner]] table named {args.partner!r} of {config.source}:")
        print(f"    {missing}")
        raise CliError(
            f"{config.source}: layout not recognised; the file was not changed (add the line above)"
        )
    print(f"{config.source}: partner {args.partner}: kms_certificate set (restart the system to serve it)")
    return 0


def _provision(args: argparse.Namespace) -> int:
    config, settings = _system(args.directory, args.system)
    try:
        user = McServiceId.parse(args.user)
    except IdentityError as exc:
        raise CliError(f"--user: {exc}") from None
    if str(user) != args.user:
        raise CliError(f"--user: write the MC service ID exactly as {str(user)!r}")
    if user.domain not in config.system.domains:
        raise CliError(
            f"--user: {args.user} is not a user of system {config.system.name} (its KMS serves its own)"
        )
    kms = read_kms(settings)
    if args.periods is None:
        numbers = list(kms.periods_around_now())
    elif not 1 <= args.periods <= MAX_PERIODS:
        raise CliError(f"--periods: {args.periods} is not in 1..{MAX_PERIODS}")
    else:
        current = kms.periods_around_now()[1]
        numbers = list(range(current, current + args.periods))
    certificate = kms.certificate
    key_sets = kms.provision(args.user, numbers)
    for key_set in key_sets:
        validate_key_set(key_set, certificate, args.user)
    output = {
        "kms_uri": certificate.kms_uri,
        "user_uri": args.user,
        "key_period": certificate.user_key_period,
        "key_offset": certificate.user_key_offset,
        "kpak": ec.encode_point(P256, certificate.pub_auth_key).hex(),
        "z": ec.encode_point(sakke.CURVE, certificate.pub_enc_key).hex(),
        "certificate_fingerprint": certificate.fingerprint(),
        "key_sets": [
            {
                "period_no": key_set.key_period_no,
                "valid_from": f"{key_set.valid_from:%Y-%m-%dT%H:%M:%SZ}",
                "valid_to": f"{key_set.valid_to:%Y-%m-%dT%H:%M:%SZ}",
                "user_id": key_set.user_id.hex(),
                "ssk": f"{key_set.ssk:064x}",
                "pvt": ec.encode_point(P256, key_set.pvt).hex(),
                "rsk": ec.encode_point(sakke.CURVE, key_set.rsk).hex(),
            }
            for key_set in key_sets
        ],
    }
    print(json.dumps(output, indent=2))
    return 0
