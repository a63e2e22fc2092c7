"""The backstop for lost messages: expire overdue tasks, and re-drive runs nobody is driving."""
from __future__ import annotations

from . import lane_metrics
from .queues import advance_message
from .runtime import Runtime

STALE_GRACE_MS = 60_000


def sweep(rt: Runtime, limit: int = 500) -> dict[str, int]:
    now = rt.clock()
    expired = 0
    for task in rt.store.overdue_tasks(now, limit):
        if rt.store.finish_task(task.tenant, task.session_id, task.task_id, "timed_out", now):
            lane_metrics.record_task_end(rt.store, task, "timed_out", now)
            expired += 1
            rt.wake(task.tenant, task.run_id)
    redriven = 0
    # A live lease lasts lease_seconds; a run untouched for longer than that has lost its message.
    for tenant, run_id in rt.store.stale_runs(now - rt.settings.lease_seconds * 1000 - STALE_GRACE_MS, limit):
        rt.queues.send_run(advance_message(tenant, run_id))
        redriven += 1
    return {"expired_tasks": expired, "redriven_runs": redriven}
