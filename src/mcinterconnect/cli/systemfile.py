"""Editing a ``system.toml`` in place, safely: one key of one ``[[partner]]`` table, and the
result written only when it loads into exactly the configuration expected (else the caller prints
the line to add).  Used by ``mcic kms import-partner`` and ``mcic spk new|rotate``."""

from __future__ import annotations

import os
import re
import tomllib

from mcinterconnect.deploy.config import ConfigError, SystemConfig, load_system
from mcinterconnect.files import write_with_mode

_PARTNER_HEADER_RE = re.compile(r"^\s*\[\[\s*partner\s*\]\]\s*(#.*)?$")
_TABLE_HEADER_RE = re.compile(r"^\s*\[")
_KEY_RE = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")


def toml_string(value: str) -> str:
    """A TOML basic string holding ``value``."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(
        f"\\u{ord(char):04x}" if ord(char) < 0x20 or ord(char) == 0x7F else char for char in escaped
    )
    return f'"{escaped}"'


def set_partner_key(text: str, partner: str, key: str, line: str) -> str | None:
    """``text`` with ``line`` (``key = value``) set in the ``[[partner]]`` table named ``partner``;
    None when the layout is not recognised (the caller then prints the line instead)."""
    lines = text.splitlines(keepends=True)
    for start, header in enumerate(lines):
        if not _PARTNER_HEADER_RE.match(header):
            continue
        end = next((i for i in range(start + 1, len(lines)) if _TABLE_HEADER_RE.match(lines[i])), len(lines))
        name: object = None
        found: list[int] = []
        last = start
        for index in range(start + 1, end):
            stripped = lines[index].strip()
            if stripped and not stripped.startswith("#"):
                last = index
            match = _KEY_RE.match(lines[index])
            if match is None:
                continue
            if match.group(1) == "name":
                try:
                    name = tomllib.loads(lines[index]).get("name")
                except tomllib.TOMLDecodeError:
                    return None
            elif match.group(1) == key:
                found.append(index)
        if name != partner:
            continue
        if len(found) > 1:
            return None
        if found:
            lines[found[0]] = line + "\n"
        else:
            if not lines[last].endswith("\n"):
                lines[last] += "\n"
            lines.insert(last + 1, line + "\n")
        return "".join(lines)
    return None


def write_if_equivalent(config: SystemConfig, edited: str, expected: SystemConfig) -> bool:
    """Replace ``config``'s file by ``edited`` only if that loads into exactly ``expected``."""
    source = config.source
    temporary = source.with_name(f".{source.name}.{os.getpid()}.tmp")
    write_with_mode(temporary, edited.encode("utf-8"), source.stat().st_mode & 0o7777)
    try:
        loaded = load_system(temporary)
        same = loaded.model_dump(exclude={"source"}) == expected.model_dump(exclude={"source"})
    except ConfigError:
        same = False
    if not same:
        temporary.unlink(missing_ok=True)
        return False
    os.replace(temporary, source)
    return True
