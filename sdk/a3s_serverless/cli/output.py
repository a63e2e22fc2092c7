"""What the CLI prints: the API's bodies as JSON for scripts, or tables and short lines for people."""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from typing import Any

# Exit codes: the service said no (4xx), bad usage or configuration, service unreachable or failed (5xx).
REFUSED, USAGE, UNAVAILABLE, INTERRUPTED = 1, 2, 3, 130


class Fail(Exception):
    """An expected failure: a message for stderr and the exit code it maps to."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def out(line: str = "") -> None:
    print(line, file=sys.stdout, flush=True)


def emit_json(body: Any, compact: bool = False) -> None:
    out(json.dumps(body, ensure_ascii=False, separators=(",", ":")) if compact
        else json.dumps(body, ensure_ascii=False, indent=2))


def table(headers: list[str], rows: Iterable[list[Any]], empty: str) -> None:
    rows = [["-" if v is None else str(v) for v in row] for row in rows]
    if not rows:
        out(empty)
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for row in [headers, *rows]:
        out("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=False)).rstrip())


def pairs(items: list[tuple[str, Any]]) -> None:
    """A record as `name  value` lines (None values left out)."""
    width = max(len(k) for k, _ in items)
    for key, value in items:
        if value is not None:
            out(f"{key.ljust(width)}  {value}")


def when(ms: int | None) -> str | None:
    """Milliseconds since the epoch as local time to the second."""
    return None if ms is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def clock(ms: int) -> str:
    """Local time of day to the millisecond (for events)."""
    return time.strftime("%H:%M:%S", time.localtime(ms / 1000)) + f".{ms % 1000:03d}"


def duration(ms: int | float | None) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{int(ms)} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    minutes, seconds = divmod(int(ms // 1000), 60)
    return f"{minutes}m{seconds:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def clip(text: str, limit: int) -> str:
    text = " ".join(text.split())  # one line
    return text if len(text) <= limit else text[: limit - 3] + "..."
