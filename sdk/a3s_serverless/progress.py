"""Progress of a workflow, for parallel, pipeline and parallel_resumable.

`progress=` takes None (the default: a tqdm bar on stderr when stderr is a terminal, else
nothing), True (a bar, terminal or not), False (nothing), or a callable `progress(finished, total)`
called each time the number of finished steps changes.
"""
from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

ProgressArg = bool | Callable[[int, int], Any] | None


def check_progress(progress: Any) -> None:
    if progress is None or isinstance(progress, bool) or callable(progress):
        return
    raise ValueError(f"progress must be True, False, None or a callable(finished, total), got {progress!r}")


def _stderr_is_terminal() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class Reporter:
    """Reports a finished count as a bar or to a callable; thread-safe, for chains on a pool."""

    def __init__(self, progress: ProgressArg, total: int) -> None:
        check_progress(progress)
        self.total, self._last, self._lock = total, -1, threading.Lock()
        self._fn = progress if callable(progress) and not isinstance(progress, bool) else None
        self._bar = None
        if progress is True or (progress is None and _stderr_is_terminal()):
            from tqdm import tqdm  # only when a bar is drawn

            self._bar = tqdm(total=total, unit="step", desc="workflow", file=sys.stderr)

    @property
    def active(self) -> bool:
        """Whether anyone is watching: if not, the caller need not poll for each step."""
        return self._fn is not None or self._bar is not None

    def update(self, finished: int) -> None:
        with self._lock:
            self._report(finished)

    def advance(self) -> None:
        """One more finished (for counts kept here, as the client-side pipeline's)."""
        with self._lock:
            self._report(max(self._last, 0) + 1)

    def _report(self, finished: int) -> None:
        if finished == self._last:
            return
        if self._bar is not None:
            self._bar.update(finished - max(self._last, 0))
        self._last = finished
        if self._fn is not None:
            self._fn(finished, self.total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
