"""The backstop for lost messages: expire overdue tasks, and re-drive runs nobody is driving."""
from __future__ import annotations

from a3s_core import telemetry
from a3s_core.engine import lane_metrics
from a3s_core.engine.containment import fail_run
from a3s_core.engine.queues import advance_message
from a3s_core.runtime import Runtime

STALE_GRACE_MS = 60_000
# Lost messages are rare: a run that stalls again and again is failing, not unlucky. After this
# many re-drives in its life (each one lease plus grace after the last) it is failed instead of
# re-driven every minute for ever.
MAX_REDRIVES = 3


def sweep(rt: Runtime, limit: int = 500) -> dict[str, int]:
    now = rt.clock()
    expired = 0
    for task in rt.store.overdue_tasks(now, limit):
        if rt.store.finish_task(task.tenant, task.session_id, task.task_id, "timed_out", now):
            lane_metrics.record_task_end(rt.store, task, "timed_out", now)
            telemetry.task_ended(task, "timed_out", now)
            expired += 1
            rt.wake(task.tenant, task.run_id)
    redriven = failed = 0
    # A live lease lasts lease_seconds; a run untouched for longer than that has lost its message.
    before = now - rt.settings.lease_seconds * 1000 - STALE_GRACE_MS
    for tenant, run_id in rt.store.stale_runs(before, limit):
        count = rt.store.count_redrive(tenant, run_id, before, now)
        if count is None:
            continue  # it moved on since it was listed
        if count <= MAX_REDRIVES:
            rt.queues.send_run(advance_message(tenant, run_id))
            telemetry.run_redriven(tenant, run_id, count)
            redriven += 1
        elif fail_run(rt, tenant, run_id, f"internal error: the run stalled and was re-driven {MAX_REDRIVES} "
                                          "times without finishing", only_stuck=True):
            failed += 1
    return {"expired_tasks": expired, "redriven_runs": redriven, "failed_runs": failed}
