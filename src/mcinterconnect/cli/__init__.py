"""``mcic``: the command line of mcinterconnect.

    mcic init DIR [--force] [--explicit] [--spk]   write a ready two-system deployment on loopback
    mcic run DIR [--system NAME ...] [--workers N]   run the systems of a deployment until interrupted
    mcic demo [--keep DIR]            run A and B, send a MESSAGE, play the attacker, print a table
    mcic client DIR --system A --user sip:alice@a.mc.example [--to URI --text TEXT] [--wait S]
    mcic kms export-cert|import-partner|provision DIR --system A ...   (see cli/kms.py)
    mcic spk new|rotate DIR --system A --partner B [--grace S]          (see cli/spk.py)
    mcic group get DIR --system A --user alice GROUP-ID [--gmk]         (see cli/group.py)

Exit status: 0 success, 1 a failure (one line on stderr, never a traceback), 2 a usage error.
Each group of commands lives in its own module and registers its parsers here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from mcinterconnect import __version__
from mcinterconnect.cli import ear, group, kms, mikey, spk, system
from mcinterconnect.cli.common import CliError
from mcinterconnect.deploy.config import ConfigError
from mcinterconnect.deploy.init import InitError
from mcinterconnect.deploy.runner import StartError
from mcinterconnect.services.client import ClientError

#: Errors that end a command with one line and exit status 1 (never a traceback).
REPORTED_ERRORS: tuple[type[Exception], ...] = (
    CliError,
    ConfigError,
    InitError,
    StartError,
    ClientError,
    *mikey.REPORTED,
    *kms.REPORTED,
    *spk.REPORTED,
    *group.REPORTED,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcic", description="Security of interconnection between MC systems."
    )
    parser.add_argument("--version", action="version", version=f"mcic {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    system.add_parsers(commands)
    mikey.add_parsers(commands)
    kms.add_parsers(commands)
    ear.add_parsers(commands)
    spk.add_parsers(commands)
    group.add_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except REPORTED_ERRORS as error:
        print(f"mcic: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
