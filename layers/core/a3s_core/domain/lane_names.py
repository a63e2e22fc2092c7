"""The lanes, in strict priority order: control first, generate last. Apart from lanes.py (and its
models) so that reading a function's settings imports no pydantic."""
from __future__ import annotations

LANES: tuple[str, ...] = ("control", "query", "execute", "generate")
