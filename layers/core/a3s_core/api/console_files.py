"""The web console's files (console/*): which names exist, and the headers they are served with.

Only the names listed here are served, so a request can never reach another file whatever its
path says. Files are read on first request and kept: nothing is read at import time.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import NamedTuple

MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8"}
PAGE = "index.html"
ASSETS = ("app.js", "api.js", "dom.js", "poll.js", "timeline.js", "gantt.js", "tasks.js", "app.css")

# Scripts and styles from this origin only (no inline script or style), requests to this API only,
# never framed. The console builds every element with DOM calls, so nothing else is needed.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class ConsoleFile(NamedTuple):
    text: str
    etag: str
    headers: dict[str, str]


def page() -> ConsoleFile:
    return _load(PAGE)


def asset(name: str) -> ConsoleFile | None:
    """The asset `name`, or None for any other name (the page included: its links are relative to /console)."""
    return _load(name) if name in ASSETS else None


@functools.cache
def _load(name: str) -> ConsoleFile:
    text = (Path(__file__).parent / "console" / name).read_text(encoding="utf-8")
    etag = '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'
    headers = {
        "Content-Type": MEDIA_TYPES[Path(name).suffix],
        "Content-Security-Policy": CSP,
        # Revalidate on every load (the ETag makes that a 304): a new deployment shows at once,
        # and the modules a page imports never come from two versions.
        "Cache-Control": "no-cache",
        "ETag": etag,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    return ConsoleFile(text, etag, headers)
