"""A workflow's steps as a timeline: one row per step, its bar placed on a time axis common to all."""
from __future__ import annotations

import math
import sys

from .output import clip, duration

# Glyphs by status; plain ASCII where the terminal's encoding cannot show blocks.
BLOCKS = {"succeeded": "█", "failed": "▓", "running": "░"}
ASCII = {"succeeded": "#", "failed": "x", "running": "-"}
STATUS_WIDTH = 9  # len("succeeded")


def glyphs(stream: object = None) -> dict[str, str]:
    encoding = getattr(stream or sys.stdout, "encoding", None) or "ascii"
    try:
        "".join(BLOCKS.values()).encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return ASCII
    return BLOCKS


def render(steps: list[dict], now_ms: int, width: int = 40, chars: dict[str, str] | None = None) -> list[str]:
    """The rows: key, status, |bar| from started_at to finished_at (or now), duration; then the axis."""
    chars = chars or BLOCKS
    started = [s for s in steps if s.get("started_at") is not None]
    t0 = min((s["started_at"] for s in started), default=now_ms)
    t1 = max((s["finished_at"] or now_ms for s in started), default=now_ms)
    span = max(t1 - t0, 1)
    key_width = min(max((len(s["key"]) for s in steps), default=3), 32)
    lines = []
    for step in steps:
        bar, took = " " * width, None
        if step.get("started_at") is not None:
            end = step["finished_at"] if step.get("finished_at") is not None else now_ms
            took = end - step["started_at"]
            left = min(int((step["started_at"] - t0) / span * width), width - 1)
            right = min(max(math.ceil((end - t0) / span * width), left + 1), width)
            glyph = chars.get(step["status"], chars["running"])
            bar = " " * left + glyph * (right - left) + " " * (width - right)
        lines.append(f"{clip(step['key'], key_width).ljust(key_width)}  {step['status'].ljust(STATUS_WIDTH)}  "
                     f"|{bar}|  {duration(took) if took is not None else '-':>8}")
    total = duration(t1 - t0) if started else "not started"
    axis = " 0" + total.rjust(width - 1)  # 0 under the first column of the bars, the span under the last
    lines.append(f"{'':{key_width}}  {'':{STATUS_WIDTH}}  {axis}")
    return lines
