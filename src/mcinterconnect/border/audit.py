"""The border's audit log: one JSON object per line, one line per decision (interconnection.md §10.2).

Every allow or refuse carries a reason code (``policy.py``).  Lines never hold secrets: no keys,
no sealed tokens, no message bodies.  The last lines stay in memory for the demo and the tests.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO


class AuditLog:
    """Appends decisions as JSON lines to a file (or a stream) and keeps the recent ones."""

    def __init__(self, sink: Path | TextIO | None, *, system: str, component: str, keep: int = 1000) -> None:
        self.system = system
        self.component = component
        self.recent: deque[dict[str, object]] = deque(maxlen=keep)
        self._lock = threading.Lock()
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
                self._stream.flush()
        return entry

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()
            self._owned = None
            self._stream = None
