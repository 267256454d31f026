"""``mcic spk``: the SPK of a partner link (TS 33.180 9.1, 5.5 manual configuration; WA-SP-01).

    mcic spk new DIR --system A --partner B [--grace S]
    mcic spk rotate DIR --system A --partner B [--grace S]

``new`` generates an SPK (16 random octets, SPK-ID with purpose tag 3) for the link between A and
its partner B, writes it to ``keys/spk-<partner>.key`` beside A's ``system.toml`` (mode 0600) and
sets ``spk = { file = ..., required = true, kdf_identity = <A's domain>, grace = S }`` in A's
``[[partner]]`` table for B.  Both systems must hold the same SPK: when B is a system of the same
deployment with an agreement for A, the same file is written on B's side and B's table is set
too; otherwise one line says what to hand to B's operator.  The systems use a new ``spk`` setting
after a restart.

``rotate`` makes a new current SPK and keeps the previous one accepted for ``--grace`` seconds
(default: the agreement's ``spk.grace``), on both sides when both are in the deployment (they must
hold the same SPK before).  Running systems pick the rotated file up within a second.

``system.toml`` is edited as ``mcic kms import-partner`` does (one line in the partner's table,
written only if the result loads with exactly that change; otherwise the line is printed and the
command fails).  The key itself is never printed: the SPK-ID and an 8-digit check value are, so
that two operators can compare what they hold.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

from mcinterconnect.border.agreement import PartnerAgreement, SpkSettings
from mcinterconnect.cli.common import CliError
from mcinterconnect.cli.systemfile import set_partner_key, toml_string, write_if_equivalent
from mcinterconnect.deploy.config import (
    ConfigError,
    DeploymentConfig,
    SystemConfig,
    load_deployment,
)
from mcinterconnect.deploy.init import spk_file_name
from mcinterconnect.protect.spk import DEFAULT_GRACE, MAX_GRACE, SpkError, SpkRing

#: Errors of this group reported as one line with exit status 1.
REPORTED: tuple[type[Exception], ...] = (SpkError,)


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("spk", help="the SPK of a partner link (TS 33.180 9.1): new, rotate")
    actions = group.add_subparsers(dest="spk_command", required=True, metavar="ACTION")
    for name, handler, text in (
        ("new", _new, "generate the link's SPK on both sides and set spk in system.toml"),
        ("rotate", _rotate, "new current SPK; the previous one stays accepted for the grace period"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("directory", type=Path, help="deployment folder or deployment.toml")
        action.add_argument("--system", required=True, help="the system (name or domain)")
        action.add_argument("--partner", required=True, help="the partner, as named by a [[partner]] table")
        action.add_argument(
            "--grace",
            type=float,
            help="seconds a rotated-out SPK stays accepted "
            f"(new: default {DEFAULT_GRACE:.0f}; rotate: default the agreement's spk.grace)",
        )
        action.set_defaults(handler=handler)


# --- the two sides ----------------------------------------------------------------------------------


class _Side:
    """One system's end of the link: its configuration and its agreement for the other end."""

    def __init__(self, config: SystemConfig, partner: str) -> None:
        self.config = config
        self.partner = partner
        self.agreement: PartnerAgreement = config.agreement(partner)

    @property
    def name(self) -> str:
        return self.config.system.name

    def default_file(self) -> Path:
        return self.config.source.parent / "keys" / spk_file_name(self.partner)

    def relative(self, path: Path) -> str:
        return os.path.relpath(path, self.config.source.parent).replace(os.sep, "/")


def _sides(directory: Path, system: str, partner: str) -> tuple[_Side, _Side | None]:
    """This side, and the partner's side when the partner is a system of the same deployment
    with an agreement for this one."""
    deployment = load_deployment(directory)
    config = deployment.system(system)
    names = [agreement.name for agreement in config.partner]
    if partner not in names:
        known = ", ".join(names) or "none"
        raise CliError(f"{config.source}: no [[partner]] named {partner!r} (known: {known})")
    own = _Side(config, partner)
    other = _partner_system(deployment, partner)
    if other is None or config.system.name not in [agreement.name for agreement in other.partner]:
        return own, None
    return own, _Side(other, config.system.name)


def _partner_system(deployment: DeploymentConfig, partner: str) -> SystemConfig | None:
    try:
        return deployment.system(partner)
    except ConfigError:
        return None


def _grace(value: float | None, default: float) -> float:
    grace = default if value is None else value
    if not math.isfinite(grace) or not 0 <= grace <= MAX_GRACE:
        raise CliError(f"--grace: {value!r} is not in 0..{MAX_GRACE:.0f} seconds")
    return grace


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def _spk_line(relative: str, settings: SpkSettings) -> str:
    identity = f", kdf_identity = {toml_string(settings.kdf_identity)}" if settings.kdf_identity else ""
    required = "true" if settings.required else "false"
    return (
        f"spk = {{ file = {toml_string(relative)}, required = {required}{identity}, "
        f"grace = {_number(settings.grace)} }}"
    )


def _set_spk(side: _Side, settings: SpkSettings) -> str | None:
    """Set the agreement's ``spk`` in the system file; the line to add when that is not possible."""
    source = side.config.source
    line = _spk_line(side.relative(settings.file), settings)
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return line
    placeholders = [item for item in text.splitlines(keepends=True) if _is_placeholder(item)]
    if len(placeholders) == 1 and len(side.config.partner) == 1:
        # mcic init left a commented example under its explanation: the setting goes there.
        edited: str | None = text.replace(placeholders[0], line + "\n", 1)
    else:
        edited = set_partner_key(text, side.partner, "spk", line)
    if edited is None:
        return line
    expected = side.config.model_copy(
        update={
            "partner": [
                agreement.model_copy(update={"spk": settings})
                if agreement.name == side.partner
                else agreement
                for agreement in side.config.partner
            ]
        }
    )
    return None if write_if_equivalent(side.config, edited, expected) else line


def _is_placeholder(line: str) -> bool:
    """The commented ``spk`` example that ``mcic init`` writes without ``--spk``."""
    return line.startswith("# spk = {") and line.rstrip().endswith("(mcic spk new writes both sides)")


def _describe(ring: SpkRing) -> str:
    return f"SPK-ID {ring.current.name} (check value {ring.current.check_value()})"


# --- commands -------------------------------------------------------------------------------------


def _new(args: argparse.Namespace) -> int:
    own, other = _sides(args.directory, args.system, args.partner)
    grace = _grace(args.grace, DEFAULT_GRACE)
    for side in (own, other):
        if side is None:
            continue
        if side.agreement.spk is not None:
            raise CliError(
                f"{side.config.source}: partner {side.partner} already has an SPK "
                f"({side.relative(side.agreement.spk.file)}): use mcic spk rotate"
            )
        if side.default_file().exists():
            raise CliError(f"{side.default_file()}: already exists (remove it, or configure it as spk.file)")
    # WA-SP-05: the generating system's domain is P0 of the derivation, written in both agreements.
    ring = SpkRing.generate(kdf_identity=own.config.domain)
    comment = f"SPK of the link {own.name} <-> {args.partner}; both sides hold the same file."
    missing: list[tuple[_Side, str]] = []
    for side in (own, other):
        if side is None:
            continue
        path = side.default_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        ring.save(path, comment=comment)
        settings = SpkSettings(
            file=path.resolve(), required=True, kdf_identity=ring.kdf_identity, grace=grace
        )
        print(f"{path}: {_describe(ring)} of the link {side.name} <-> {side.partner}")
        line = _set_spk(side, settings)
        if line is None:
            print(f"{side.config.source}: partner {side.partner}: spk set (restart the system to use it)")
        else:
            missing.append((side, line))
    if other is None:
        print(
            f"give partner {args.partner} the same file {own.default_file()} out of band and have them set "
            f"spk = {{ file = ..., kdf_identity = {toml_string(ring.kdf_identity)} }} in their "
            f"[[partner]] table for {own.name}; compare the {_describe(ring)}"
        )
    return _report_missing(missing)


def _rotate(args: argparse.Namespace) -> int:
    own, other = _sides(args.directory, args.system, args.partner)
    settings = own.agreement.spk
    if settings is None:
        raise CliError(f"{own.config.source}: partner {args.partner} has no SPK: use mcic spk new")
    grace = _grace(args.grace, settings.grace)
    ring = SpkRing.load(settings.file)
    sides = [(own, settings.file)]
    if other is not None and other.agreement.spk is not None:
        theirs = SpkRing.load(other.agreement.spk.file)
        if theirs.current.key_id != ring.current.key_id or theirs.current.key != ring.current.key:
            raise CliError(
                f"the two sides hold different SPKs ({own.name}: {ring.current.name}, "
                f"{other.name}: {theirs.current.name}): nothing rotated"
            )
        sides.append((other, other.agreement.spk.file))
    rotated = ring.rotated(now=time.time(), grace=grace)
    comment = f"SPK of the link {own.name} <-> {args.partner}; both sides hold the same file."
    for side, path in sides:
        rotated.save(path, comment=comment)
        print(f"{path}: now {_describe(rotated)} for the link {side.name} <-> {side.partner}")
    until = rotated.previous[0].until
    print(
        f"previous SPK-ID {ring.current.name} accepted until "
        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(until))} ({_number(grace)} s grace); "
        "running systems use the new SPK within a second"
    )
    if len(sides) == 1:
        print(
            f"give partner {args.partner} the new file {settings.file} out of band now: "
            f"it must install it before the grace period ends"
        )
    return 0


def _report_missing(missing: list[tuple[_Side, str]]) -> int:
    if not missing:
        return 0
    for side, line in missing:
        print(f"add to the [[partner]] table named {side.partner!r} of {side.config.source}:")
        print(f"    {line}")
    raise CliError("system.toml layout not recognised; the file was not changed (add the line above)")
