"""Run control from outside (the orchestrator): pause, resume, cancel, inject_prompt.

A request is recorded on the run's control item; the run driver applies it at the run's next
turn boundary. A run that no driver holds (waiting, paused) is woken so that one does.
"""
from __future__ import annotations

from a3s_core.domain.errors import BadRequest, Conflict
from a3s_core.domain.items import RunStatus
from a3s_core.runtime import Runtime

ACTIONS = ("pause", "resume", "cancel", "inject")


def apply(rt: Runtime, tenant: str, run_id: str, action: str, text: str | None = None) -> str:
    """Record the request; the run's status as it stands now."""
    if action not in ACTIONS:  # the caller's mistake whatever the run, so before looking it up
        raise BadRequest(f"unknown action {action!r}: expected one of {', '.join(ACTIONS)}")
    store = rt.store
    run = store.get_run(tenant, run_id)  # NotFound: unknown id
    if run.done:
        raise Conflict(f"run {run_id!r} has already {run.status}; it cannot be {action}d")
    if action == "pause":
        store.request_control(tenant, run_id, pause=True)
        rt.wake(tenant, run_id)  # a waiting run is paused now, not when its tasks come back
    elif action == "resume":
        if run.status != RunStatus.PAUSED and not store.get_control(tenant, run_id).pause:
            raise BadRequest(f"run {run_id!r} is {run.status}, not paused")
        store.request_control(tenant, run_id, pause=False)
        rt.wake(tenant, run_id, from_status="paused")
    elif action == "cancel":
        store.request_control(tenant, run_id, cancel=True)
        rt.wake(tenant, run_id) or rt.wake(tenant, run_id, from_status="paused")
    elif action == "inject":
        if not text or not text.strip():
            raise BadRequest("inject needs a non-empty prompt")
        store.request_control(tenant, run_id, inject=text)
    return store.get_run(tenant, run_id).status
