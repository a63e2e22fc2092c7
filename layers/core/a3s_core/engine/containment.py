"""Failure containment: no run, workflow or delegating parent waits for ever on a message that
keeps failing.

SQS delivers a runs-queue message again after each failed delivery, and after maxReceiveCount
receives moves it to the runs DLQ, where nothing would ever handle it. So the last delivery does
not fail: the work its message carries is given up instead. A run is forced to `failed` with
stop_reason `internal_error` and the error, which settles its workflow step (its workflow, and a
parent waiting in a delegation tool, go on); a workflow message ends its workflow failed. A
message whose last delivery died outright (a Lambda timeout, out of memory) still reaches the
runs DLQ; its consumer gives the work up the same way.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

from a3s_core import telemetry
from a3s_core.domain.errors import Conflict, NotFound
from a3s_core.domain.items import Event, Run, RunStatus
from a3s_core.engine import messages, push, workflows
from a3s_core.engine.messages import RUN_MESSAGES, WORKFLOW_MESSAGES, RunsMessage
from a3s_core.runtime import Runtime

INTERNAL_ERROR = "internal_error"
TAKEOVER_ATTEMPTS = 20  # a driver still checkpointing can win a few rounds, not all of them


def parse_body(raw: str) -> dict[str, Any] | None:
    """The message as a dict; None for one that is not a JSON object (no delivery can handle it).
    A failed asynchronous invocation's record (its on-failure destination) gives the event it had."""
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    if isinstance(body, dict) and "requestContext" in body and "requestPayload" in body:
        body = body["requestPayload"]
    return body if isinstance(body, dict) else None


def deliver(rt: Runtime, body: dict[str, Any] | None, receive_count: int, max_receive_count: int,
            remaining_ms: Callable[[], int]) -> dict[str, Any] | None:
    """Handle one runs-queue message. A failure is raised, so that SQS delivers the message again,
    except on its last delivery (receive_count reaching max_receive_count; 0 means unknown, and
    the DLQ's consumer is the only backstop), where the message's work is given up instead.
    Returns what was given up, for the log, or None."""
    # The run driver's own: the sweeper and the DLQ consumer, which only give work up, never load it.
    from a3s_core.engine.dispatch import Busy, handle_message

    if body is None:
        return {"action": "dropped", "reason": "the message is not a JSON object"}
    message, why = messages.read(body)
    if message is None:  # no delivery could ever handle it: say so now, not at its last delivery
        return {"action": "dropped", "reason": why}
    last = 0 < max_receive_count <= receive_count
    try:
        handle_message(rt, message, remaining_ms)
        return None
    except Busy:
        if not last:
            raise
        # A live driver holds the run and carries on; should it die, the sweeper re-drives the run.
        return {"action": "dropped", "reason": "a live driver holds the run's lease", **_ids(message)}
    except Exception as err:
        if not last:
            raise
        return give_up(rt, message, f"internal error after {receive_count} deliveries: {type(err).__name__}: {err}")


def dead_letter(rt: Runtime, body: dict[str, Any] | None) -> dict[str, Any]:
    """A message from the runs DLQ: every delivery of it died before it could be contained. Its
    run is failed only if it is still queued or running with no live driver (a run that is
    waiting, paused or driven by another message is not stuck on this one)."""
    if body is None:
        return {"action": "dropped", "reason": "the message is not a JSON object"}
    return give_up(rt, body, "internal error: the run driver died on every delivery of its message "
                             "(dead-lettered; see the run driver's logs)", only_stuck=True)


def give_up(rt: Runtime, body: dict[str, Any] | RunsMessage, error: str, only_stuck: bool = False) -> dict[str, Any]:
    message, why = messages.read(body)
    if isinstance(message, RUN_MESSAGES):
        failed = fail_run(rt, message.tenant, message.run_id, error, only_stuck=only_stuck)
        return {"action": "failed_run" if failed else "left_run", **_ids(message), "error": error}
    if isinstance(message, WORKFLOW_MESSAGES):
        failed = fail_workflow(rt, message.tenant, message.workflow_id)
        return {"action": "failed_workflow" if failed else "left_workflow", **_ids(message), "error": error}
    return {"action": "dropped", "reason": why, "error": error}


def fail_run(rt: Runtime, tenant: str, run_id: str, error: str, only_stuck: bool = False) -> bool:
    """Force a run that has not ended to `failed` (internal_error), whoever holds its lease. The
    write is a checkpoint conditioned on the version just read, so an end that lands first is never
    overwritten and a driver still at work loses its next checkpoint. Then what waits on the run
    is settled: its workflow step (replayed even if the run had ended). True if this call failed it.
    only_stuck: leave it unless it is queued or running and no live driver holds it."""
    for _ in range(TAKEOVER_ATTEMPTS):
        try:
            run = rt.store.get_run(tenant, run_id)
        except NotFound:
            return False
        if run.done:
            failed = False
            break
        if only_stuck and (run.status not in (RunStatus.QUEUED, RunStatus.RUNNING) or
                           (run.lease_owner and run.lease_until > rt.clock())):
            return False
        run.event_seq += 1
        end = Event(seq=run.event_seq, type="run_end",
                    data={"status": "failed", "stop_reason": INTERNAL_ERROR, "text": run.text, "error": error})
        run.status, run.stop_reason, run.error = RunStatus.FAILED, INTERNAL_ERROR, error
        run.lease_owner, run.lease_until, run.updated_at = None, 0, rt.clock()
        try:
            rt.store.save_run(run, [end])
        except Conflict:
            continue  # it moved on underneath: look again
        push.publish_run(rt, run, [end], _session_watchers(rt, run))  # its watchers learn it ended
        failed = True
        telemetry.run_ended(run)
        _abandon(rt, run)
        break
    else:
        raise Conflict(f"run {run_id} kept changing while it was being failed")
    if run.parent:
        _settle_step(rt, run)
    return failed


def fail_workflow(rt: Runtime, tenant: str, workflow_id: str) -> bool:
    """End a running workflow failed: its running children are cancelled, its parent run woken."""
    try:
        return workflows.cancel(rt, tenant, workflow_id, status="failed")
    except NotFound:
        return False


def _abandon(rt: Runtime, run: Run) -> None:
    """Nobody waits for what a failed run started: its tasks are cancelled (no worker does them for
    nothing) and its child workflows stopped."""
    now = rt.clock()
    for call in run.pending:
        for task_id in (call.task_id, call.confirm_task_id):
            if task_id and rt.store.finish_task(run.tenant, run.session_id, task_id, "cancelled", now):
                telemetry.task_cancelled(run, task_id, call.lane if task_id == call.task_id else "control")
    for workflow_id in run.children:
        with contextlib.suppress(NotFound):
            workflows.cancel(rt, run.tenant, workflow_id)


def _settle_step(rt: Runtime, run: Run) -> None:
    assert run.parent is not None
    try:
        workflows.on_child_end(rt, run)
    except Exception:  # settling is what keeps failing: end the workflow, so its waiters go on
        fail_workflow(rt, run.tenant, run.parent.workflow_id)


def _ids(message: RunsMessage) -> dict[str, Any]:
    return message.model_dump(include={"kind", "tenant", "run_id", "workflow_id", "task_id"})


def _session_watchers(rt: Runtime, run: Run) -> list[str]:
    """The connections watching the run's session (none if it cannot be read: the run is failed anyway)."""
    try:
        return rt.store.get_session(run.tenant, run.session_id).watching
    except Exception:
        return []
