"""The optional parts of the SDK, each its own distribution installed through an extra: a missing
one is a clear ImportError saying what to install, never a bare ModuleNotFoundError from deep inside."""
from __future__ import annotations

import importlib
from types import ModuleType

LOCAL = "pip install 'a3s-serverless[local]'   (in a checkout: make install)"
WORKER = "pip install 'a3s-serverless[worker]'   (in a checkout: make install)"


def require(module: str, what: str, install: str) -> ModuleType:
    """`module` imported, or an ImportError naming what needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        raise ImportError(f"{what} needs {install} (module {err.name!r} is missing)") from err
