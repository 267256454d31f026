"""What every ``mcic`` command shares: the one-line error and the event loop runner."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

from mcinterconnect import aio

T = TypeVar("T")


class CliError(Exception):
    """A failure reported as one line on stderr with exit status 1."""


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run on asyncio's default event loop (``mcinterconnect.aio`` says why not uvloop)."""
    return aio.run(main)
