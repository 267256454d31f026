"""Running crypto tests under each integer backend (``MCIC_CRYPTO_BACKEND``, crypto/backend.py)."""

from __future__ import annotations

import importlib
import types
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from mcinterconnect.crypto import backend


@contextmanager
def reloaded_under(name: str, modules: list[types.ModuleType]) -> Iterator[str]:
    """Reload ``modules`` (in order, ``backend`` first) with the backend ``name``; restore after.

    The original module dictionaries are put back afterwards, so the very objects other modules
    imported (error classes, curves) stay the ones every other test sees.
    """
    if name == "gmpy2":
        pytest.importorskip("gmpy2", reason="gmpy2 (the test extras install it) is not installed")
    saved = [dict(module.__dict__) for module in modules]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MCIC_CRYPTO_BACKEND", name)
        try:
            for module in modules:
                importlib.reload(module)
            assert name == backend.NAME
            yield name
        finally:
            for module, namespace in zip(modules, saved, strict=True):
                module.__dict__.clear()
                module.__dict__.update(namespace)
