"""The border's audit log: one JSON object per line, one line per decision (interconnection.md §10.2).

Every allow or refuse carries a reason code (``policy.py``).  Lines never hold secrets: no keys,
no sealed tokens, no message bodies.  The last lines stay in memory for the demo and the tests.

Durability: a refusal (or a drop) is flushed to the file at once; allow lines, one per admitted
message on the hot path, are flushed together ``FLUSH_DELAY`` seconds after the first unflushed one
when an event loop runs (at once otherwise), and on ``close``.  A crash loses at most that much of
the allow lines, never a refusal (docs/PERFORMANCE.md: one write system call per message saved).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

#: Seconds an allow line may wait in the buffer before it is flushed.
FLUSH_DELAY = 0.05


class AuditLog:
    """Appends decisions as JSON lines to a file (or a stream) and keeps the recent ones."""

    def __init__(self, sink: Path | TextIO | None, *, system: str, component: str, keep: int = 1000) -> None:
        self.system = system
        self.component = component
        self.recent: deque[dict[str, object]] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._flush_pending = False
        self._owned: TextIO | None = None
        if isinstance(sink, Path):
            sink.parent.mkdir(parents=True, exist_ok=True)
            self._owned = sink.open("a", encoding="utf-8")
            self._stream: TextIO | None = self._owned
        else:
            self._stream = sink

    def record(self, decision: str, reason: str, **fields: object) -> dict[str, object]:
        """Write one line: ``decision`` is "allow", "refuse" or "drop"; ``reason`` a reason code."""
        entry: dict[str, object] = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "system": self.system,
            "component": self.component,
            "decision": decision,
            "reason": reason,
            **{key: value for key, value in fields.items() if value is not None},
        }
        line = json.dumps(entry, separators=(",", ":"), default=str)
        with self._lock:
            self.recent.append(entry)
            if self._stream is not None:
                self._stream.write(line + "\n")
                if decision != "allow" or not self._defer_flush():
                    self._stream.flush()
        return entry

    def _defer_flush(self) -> bool:
        """Arrange a flush ``FLUSH_DELAY`` from now on the running loop; False when there is none."""
        if self._flush_pending:
            return True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        self._flush_pending = True
        loop.call_later(FLUSH_DELAY, self.flush)
        return True

    def flush(self) -> None:
        """Write out what the buffer holds."""
        with self._lock:
            self._flush_pending = False
            if self._stream is not None:
                self._stream.flush()

    def close(self) -> None:
        self.flush()
        if self._owned is not None:
            self._owned.close()
            self._owned = None
            self._stream = None
