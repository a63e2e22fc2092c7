"""Per-lane queue metrics of a session (`enable_all_features`): how many tool calls completed,
failed, timed out or were cancelled, and how long they waited and ran, as percentiles.

Durations go into fixed histogram buckets (counters a single DynamoDB ADD can bump), so recording
is one write per batch of tool calls, whatever the history, and a percentile is the upper bound of
the bucket where the cumulative count reaches it (as Prometheus histograms do).
"""
from __future__ import annotations

from typing import Any

from a3s_core.domain.items import Task

BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000, 900_000,
              3_600_000, 86_400_000)
OUTCOMES = ("completed", "failed", "timed_out", "cancelled")
PERCENTILES = (50, 90, 95, 99)


def _bucket(ms: int) -> int:
    return next((i for i, bound in enumerate(BUCKETS_MS) if ms <= bound), len(BUCKETS_MS))


def counters(status: str, wait_ms: int | None, run_ms: int | None) -> dict[str, int]:
    """The counters one finished tool call adds."""
    out = {status: 1}
    if wait_ms is not None:
        out[f"wait_{_bucket(max(0, wait_ms))}"] = 1
    if run_ms is not None:
        out[f"run_{_bucket(max(0, run_ms))}"] = 1
    return out


def merge(into: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    for k, v in more.items():
        into[k] = into.get(k, 0) + v
    return into


def task_end(task: Task, status: str, now: int) -> dict[str, int]:
    """An external task's end: it waited until a worker claimed it (or until it ended unclaimed)
    and ran from the claim to the end."""
    claimed = task.claimed_at
    return counters(status, (claimed or now) - task.created_at, now - claimed if claimed else None)


def record_task_end(store: Any, task: Task, status: str, now: int) -> None:
    """Count an external task's end, if its session records metrics."""
    if task.metrics:
        store.add_lane_metrics(task.tenant, task.session_id, task.lane, task_end(task, status, now))


def summary(raw: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {name: raw.get(name, 0) for name in OUTCOMES}
    for kind in ("wait", "run"):
        counts = [raw.get(f"{kind}_{i}", 0) for i in range(len(BUCKETS_MS) + 1)]
        total = sum(counts)
        pcts: dict[str, int | None] = {}
        for p in PERCENTILES:
            if not total:
                pcts[f"p{p}"] = None
                continue
            need, seen = total * p / 100, 0
            for i, n in enumerate(counts):
                seen += n
                if seen >= need:
                    pcts[f"p{p}"] = BUCKETS_MS[i] if i < len(BUCKETS_MS) else None  # None: beyond the last bound
                    break
        out[f"{kind}_ms"] = {"count": total, **pcts}
    return out
