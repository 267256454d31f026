"""Writing files that hold keys, secrets and certificates with an exact mode.

``os.open``'s mode applies to new files only and passes through the umask; a key file that
already existed with a wider mode would keep it.  Every writer of key material goes through
``write_with_mode``, which sets the mode on the open descriptor before any byte is written.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Private keys, sealing keys, storage keys, sealed secrets: owner only.
PRIVATE_MODE = 0o600
#: Certificates and other public documents.
PUBLIC_MODE = 0o644


def write_with_mode(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` with exactly ``mode``, also over an existing file."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode & PRIVATE_MODE)
    try:
        os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "wb", closefd=False) as handle:
            handle.write(data)
    finally:
        os.close(descriptor)
