"""Runs-queue work: each message (engine/messages.py) routed to what it asks for. Advancing a run
is the driver's (engine/driver.py); a task's or a workflow's timer is handled here and in the
workflow engine.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from a3s_core import telemetry
from a3s_core.domain.errors import NotFound
from a3s_core.domain.items import RunStatus, Session, TaskStatus, new_id
from a3s_core.engine import lane_metrics, messages, workflows
from a3s_core.engine.driver import drive
from a3s_core.engine.messages import Advance, RunsMessage, TaskTimeout, WorkflowStart, WorkflowTimeout, timeout_message
from a3s_core.runtime import Runtime


class Busy(Exception):
    """Another live invocation holds the run's lease: deliver this message again later."""


def handle_message(rt: Runtime, body: dict[str, Any] | RunsMessage, remaining_ms: Callable[[], int]) -> None:
    """Do what one runs-queue message asks (a body that is no message is a ValueError)."""
    match messages.parse(body):
        case Advance(tenant=tenant, run_id=run_id, session=session):
            advance(rt, tenant, run_id, remaining_ms, session)
        case TaskTimeout(tenant=tenant, session_id=session_id, task_id=task_id):
            expire_task(rt, tenant, session_id, task_id)
        case WorkflowStart(tenant=tenant, workflow_id=workflow_id):
            workflows.kick(rt, tenant, workflow_id)
        case WorkflowTimeout(tenant=tenant, workflow_id=workflow_id):
            workflows.expire(rt, tenant, workflow_id)


def advance(rt: Runtime, tenant: str, run_id: str, remaining_ms: Callable[[], int],
            session: Session | None = None) -> None:
    owner = new_id("drv")
    run = rt.store.acquire_run(tenant, run_id, owner, rt.clock(), rt.settings.lease_seconds * 1000)
    if run is None:
        try:
            current = rt.store.get_run(tenant, run_id)
        except NotFound:
            return
        if current.status in (RunStatus.QUEUED, RunStatus.RUNNING):
            raise Busy(run_id)
        if current.done and current.parent:  # a replay may find its step not yet settled
            workflows.on_child_end(rt, current)
        return  # waiting, paused or finished: this message is a duplicate or stale
    if run.event_seq == 0:  # nothing done yet: its first pick-up (its driver writes run_start)
        telemetry.run_started(run)
    # The session the message carries is the launcher's read: good for the first pick-up only.
    drive(rt, run, remaining_ms, session if run.event_seq == 0 and session and session.tenant == tenant else None)


def expire_task(rt: Runtime, tenant: str, session_id: str, task_id: str) -> None:
    task = rt.store.get_task(tenant, session_id, task_id)
    if task is None:
        return
    if task.status != TaskStatus.PENDING:  # finished; if its completer died before waking the run, wake it
        # (a running run's driver reads the task itself). Usually the run has moved on: a read of its
        # status is cheaper than the wake's failed conditional write, billed by the run's size.
        if rt.store.run_status(tenant, task.run_id) == RunStatus.WAITING:
            rt.wake(tenant, task.run_id, nudge=False)
        return
    now = rt.clock()
    if now < task.deadline:  # beyond SQS's 15-minute delay: chain another timer
        rt.queues.send_run(timeout_message(task), math.ceil((task.deadline - now) / 1000))
        return
    if rt.store.finish_task(tenant, session_id, task_id, "timed_out", now):
        lane_metrics.record_task_end(rt.store, task, "timed_out", now)
        telemetry.task_ended(task, "timed_out", now)
        rt.wake(tenant, task.run_id)
