"""What every ``mcic`` command shares: the one-line error and the event loop runner."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class CliError(Exception):
    """A failure reported as one line on stderr with exit status 1."""


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop where it is installed (ARCHITECTURE.md §4), else on asyncio's default loop."""
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main)
