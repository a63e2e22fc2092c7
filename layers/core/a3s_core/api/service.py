"""What the HTTP API does: sessions, lane handlers, external tasks and runs, for one tenant."""
from __future__ import annotations

import re
import time
from typing import Any

from a3s_core import telemetry
from a3s_core.api.schemas import (
    AgentBody,
    ClaimBody,
    ClaimTaskBody,
    CompleteTaskBody,
    CreateSessionBody,
    SkillBody,
    StartRunBody,
    StartWorkflowBody,
    StepSpecBody,
)
from a3s_core.domain.errors import BadRequest, Invalid, ModelNotAllowed, NotFound
from a3s_core.domain.items import Run, Session, Task, TaskStatus, Workflow, WorkflowStatus, new_id
from a3s_core.domain.lanes import LANES, LaneHandler
from a3s_core.engine import control, lane_metrics, workflows
from a3s_core.engine.queues import advance_message
from a3s_core.runtime import Runtime
from a3s_core.store.base import update_session
from a3s_core.workspace.tenant import workspace_for

MAX_EVENT_WAIT_MS = 20_000


def _lane(lane: str) -> str:
    if lane not in LANES:
        raise BadRequest(f"unknown lane {lane!r}: expected one of {', '.join(LANES)}")
    return lane


def session_view(s: Session) -> dict[str, Any]:
    return {"session_id": s.session_id, "workspace": s.workspace, "model": s.model, "permissive": s.permissive,
            "max_parallel_tasks": s.max_parallel_tasks, "closed": s.closed, "has_queue": s.has_queue(),
            "lanes": {k: v.model_dump() for k, v in s.lanes.items()}, "created_at": s.created_at,
            "builtin_skills": s.builtin_skills, "skills": sorted(s.skills)}


def run_view(r: Run) -> dict[str, Any]:
    return {"run_id": r.run_id, "session_id": r.session_id, "status": r.status, "text": r.text,
            "error": r.error, "stop_reason": r.stop_reason, "turns": r.turn, "tool_calls_count": r.tool_calls_count,
            "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
            "total_tokens": r.prompt_tokens + r.completion_tokens, "created_at": r.created_at,
            "updated_at": r.updated_at, "agent": r.agent, "children": r.children,
            "parent": r.parent.model_dump(include={"workflow_id", "key", "attempt"}) if r.parent else None}


def progress(wf: Workflow) -> dict[str, Any]:
    """views.WorkflowProgress: what every view of a workflow starts with."""
    return {"workflow_id": wf.workflow_id, "kind": wf.kind, "status": wf.status,
            "done": wf.status != WorkflowStatus.RUNNING, "finished": wf.finished, "total": wf.n,
            "attempt": wf.attempt}


class Service:
    def __init__(self, rt: Runtime, tenant: str) -> None:
        self.rt, self.tenant = rt, tenant

    # -- sessions --------------------------------------------------------------------------
    def create_session(self, body: CreateSessionBody) -> dict[str, Any]:
        workspace_for(self.rt, self.tenant, body.workspace)  # BadRequest: not this tenant's to use
        qc = body.queue_config
        settings = self.rt.settings
        model = body.model or settings.default_model
        if not settings.model_allowed(model):  # the deployment pays for the models, not the tenant
            allowed = ", ".join(dict.fromkeys((settings.default_model, *settings.allowed_models)))
            raise ModelNotAllowed(f"model {model!r} is not allowed in this deployment; allowed: {allowed}")
        session = Session(tenant=self.tenant, session_id=new_id("sess"), workspace=body.workspace,
                          model=model, permissive=body.permissive,
                          builtin_skills=body.builtin_skills, max_parallel_tasks=body.max_parallel_tasks,
                          enable_all_features=bool(qc and qc.enable_all_features))
        if qc:
            session.lanes.update(qc.lane_handlers.items())  # pairs: a lane name is a str, the dict's key type is not
            session.concurrency.update(qc.concurrency.items())
        self.rt.store.create_session(session)
        return session_view(session)

    def session(self, session_id: str, open_only: bool = False) -> Session:
        s = self.rt.store.get_session(self.tenant, session_id)
        if open_only and s.closed:
            raise BadRequest(f"session {session_id!r} is closed")
        return s

    def close_session(self, session_id: str) -> dict[str, Any]:
        return session_view(update_session(self.rt.store, self.tenant, session_id,
                                           lambda s: setattr(s, "closed", True)))

    def set_lane(self, session_id: str, lane: str, handler: LaneHandler) -> dict[str, Any]:
        new = LaneHandler.model_validate(handler.model_dump())
        _lane(lane)
        self.session(session_id, open_only=True)
        return session_view(update_session(self.rt.store, self.tenant, session_id,
                                           lambda s: s.lanes.__setitem__(lane, new)))

    def register_agent(self, session_id: str, name: str, body: AgentBody) -> dict[str, Any]:
        if not name.replace("-", "").replace("_", "").isalnum() or len(name) > 64:
            raise BadRequest(f"agent name {name!r} must be letters, digits, '-' or '_' (at most 64)")
        self.session(session_id, open_only=True)
        spec = body.model_dump(exclude_none=True)
        s = update_session(self.rt.store, self.tenant, session_id, lambda s: s.agents.__setitem__(name, spec))
        return {"session_id": session_id, "agents": s.agents}

    def register_skill(self, session_id: str, name: str, body: SkillBody) -> dict[str, Any]:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,63}", name):
            raise BadRequest(f"skill name {name!r} must be lower-case letters, digits and '-' (at most 64)")
        self.session(session_id, open_only=True)
        s = update_session(self.rt.store, self.tenant, session_id,
                           lambda s: s.skills.__setitem__(name, body.model_dump()))
        return {"session_id": session_id, "skills": sorted(s.skills)}

    def queue(self, session_id: str) -> dict[str, Any]:
        s = self.session(session_id)
        now = self.rt.clock()
        pending = self.rt.store.list_pending_tasks(self.tenant, session_id)
        lanes: dict[str, Any] = {}
        for lane in LANES:
            mine = [t for t in pending if t.lane == lane]
            active = sum(1 for t in mine if t.lease_owner and t.lease_until > now)
            lanes[lane] = {"pending": len(mine) - active, "active": active,
                           "max_concurrency": s.concurrency.get(lane, 1), "handler_mode": s.lanes[lane].mode}
        stats: dict[str, Any] = {"total_pending": sum(v["pending"] for v in lanes.values()),
                                 "total_active": sum(v["active"] for v in lanes.values()),
                                 "external_pending": len(pending), "lanes": lanes}
        if s.enable_all_features:  # per-lane counts and latency percentiles, for every tool call
            raw = self.rt.store.lane_metrics(self.tenant, session_id)
            stats["metrics"] = {lane: lane_metrics.summary(raw.get(lane, {})) for lane in LANES}
        return {"has_queue": s.has_queue(), "stats": stats}

    # -- external tasks --------------------------------------------------------------------
    def pending_tasks(self, session_id: str) -> list[dict[str, Any]]:
        self.session(session_id)
        return [t.public() for t in self.rt.store.list_pending_tasks(self.tenant, session_id)]

    def complete_task(self, session_id: str, task_id: str, body: CompleteTaskBody) -> bool:
        store = self.rt.store
        approved = (body.result or {}).get("approved", True)
        if not isinstance(approved, bool):  # refused for a confirm task only: look which it is (rare)
            task = store.get_task(self.tenant, session_id, task_id)
            if task is not None and task.command_type == "confirm":
                raise Invalid(f"a confirm task's result.approved must be true or false, got {approved!r}")
        status, now = "completed" if body.success else "failed", self.rt.clock()
        # The write answers with the task it finished: nothing is read before or after it.
        won = store.finish_task(self.tenant, session_id, task_id, status, now, result=body.result, error=body.error)
        if won is not None:
            lane_metrics.record_task_end(store, won, status, now)
            telemetry.task_ended(won, status, now)
            self.rt.wake(self.tenant, won.run_id)
            return True
        task = store.get_task(self.tenant, session_id, task_id)
        if task is None:
            self.session(session_id)  # an unknown session is a 404; an unknown task of a known one, False
            return False
        # Lost: finished already (by another call, or a timeout). Wake the run anyway: a retried
        # completion then repairs a wake-up that a crashed first call never sent.
        if task.status != TaskStatus.PENDING:
            self.rt.wake(self.tenant, task.run_id)
        return False

    def claim(self, body: ClaimBody, session_id: str | None = None, lane: str | None = None) -> list[dict]:
        """Lease up to `max` pending tasks to one worker (of a session, or of a lane tenant-wide)."""
        now, store = self.rt.clock(), self.rt.store
        if lane is not None:
            _lane(lane)
        if session_id:  # the index is keyed by tenant and session: only an empty answer needs the session
            candidates = store.list_pending_tasks(self.tenant, session_id)
            if not candidates:
                self.session(session_id)  # an unknown session is a 404
            if lane:
                candidates = [t for t in candidates if t.lane == lane]
        else:
            candidates = store.pending_tasks_for_lane(self.tenant, _lane(lane or ""), body.max * 4)
        claimed: list[Task] = []
        for task in candidates:
            if len(claimed) >= body.max:
                break
            leased = store.claim_task(self.tenant, task.session_id, task.task_id, body.worker, now, body.lease_ms)
            if leased is not None:  # (pending, before its deadline, no live lease: the write's condition)
                telemetry.task_claimed(leased, body.worker, now)
                claimed.append(leased)
        return [t.public() for t in claimed]

    def claim_task(self, session_id: str, task_id: str, body: ClaimTaskBody) -> dict[str, Any]:
        """Lease this one task; when not leased, `reason` says whether to try again later
        ("leased": another worker holds it) or drop it ("finished", "expired")."""
        store, now = self.rt.store, self.rt.clock()
        # One conditional write, keyed by tenant and session: reads only to say why it was not leased.
        leased = store.claim_task(self.tenant, session_id, task_id, body.worker, now, body.lease_ms)
        if leased is not None:
            telemetry.task_claimed(leased, body.worker, now)
            return {"claimed": True, "task": leased.public(), "reason": None}
        task = store.get_task(self.tenant, session_id, task_id)
        if task is None:
            self.session(session_id)  # an unknown session is a 404 of its own
            raise NotFound(f"task {task_id!r} not found")
        reason = "finished" if task.status != TaskStatus.PENDING else "expired" if task.deadline <= now else "leased"
        return {"claimed": False, "task": task.public(), "reason": reason}

    # -- runs ------------------------------------------------------------------------------
    def start_run(self, session_id: str, body: StartRunBody) -> dict[str, Any]:
        s = self.session(session_id, open_only=True)
        run = Run(tenant=self.tenant, run_id=new_id("run"), session_id=session_id, prompt=body.prompt,
                  model=s.model, workspace=s.workspace, max_turns=body.max_turns, history=None,
                  messages=[{"role": "user", "content": body.prompt}])
        self.rt.store.create_run(run)  # its driver writes run_start when it takes it
        telemetry.run_queued(run)
        # If this hand-over is lost, the sweeper finds the run still queued and enqueues it again.
        self.rt.queues.hand_over(advance_message(self.tenant, run.run_id))
        return run_view(run)

    def get_run(self, run_id: str) -> dict[str, Any]:
        return run_view(self.rt.store.get_run(self.tenant, run_id))

    def list_sessions(self, limit: int) -> list[dict[str, Any]]:
        return [session_view(s) for s in self.rt.store.list_sessions(self.tenant, limit)]

    def list_runs(self, session_id: str | None) -> list[dict[str, Any]]:
        return [run_view(r) for r in self.rt.store.list_runs(self.tenant, session_id)]

    def control(self, run_id: str, action: str, prompt: str | None) -> dict[str, Any]:
        status = control.apply(self.rt, self.tenant, run_id, action, prompt)
        return {"run_id": run_id, "action": action, "accepted": True, "status": status}

    def events(self, run_id: str, after: int, wait_ms: int) -> dict[str, Any]:
        """Events after `after`, long-polling up to wait_ms for the first one to appear."""
        store = self.rt.store
        deadline = time.monotonic() + min(max(wait_ms, 0), MAX_EVENT_WAIT_MS) / 1000
        delay = 0.02
        while True:
            run = store.get_run(self.tenant, run_id)  # NotFound for an unknown id
            events = store.list_events(self.tenant, run_id, after)
            if events or run.done or time.monotonic() >= deadline:
                break
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.5)
        return {"events": [e.public() for e in events], "status": run.status, "done": run.done,
                "next": events[-1].seq if events else after}


    # -- workflows -------------------------------------------------------------------------
    def start_workflow(self, session_id: str, body: StartWorkflowBody) -> dict[str, Any]:
        s = self.session(session_id, open_only=True)
        specs = [spec.model_dump(exclude_none=True) for spec in body.specs]
        if body.kind == "pipeline":
            if not body.items or not body.stages:
                raise BadRequest(
                    "a pipeline needs `items` and `stages` (spec templates with {item}, {previous.output})")
            specs = []
            for i, item in enumerate(body.items):
                spec = workflows.render(body.stages[0], item, None)
                spec.setdefault("task_id", f"{i}-0")
                try:
                    specs.append({**StepSpecBody.model_validate(spec).model_dump(exclude_none=True), "item": item})
                except ValueError as err:
                    raise BadRequest(f"stage 0 for item {i} is not a valid step spec: {err}") from err
        elif not specs:
            raise BadRequest(f"a {body.kind} workflow needs at least one spec")
        for spec in specs:
            if spec.get("workspace"):
                workspace_for(self.rt, self.tenant, spec["workspace"])
        if body.kind == "resumable" and not body.workflow_id:
            raise BadRequest("parallel_resumable needs a workflow_id")
        return workflows.start(self.rt, self.tenant, session_id, body.kind, specs, s.max_parallel_tasks,
                               body.budget_tokens, body.stages, body.workflow_id)

    def workflow(self, workflow_id: str, wait_ms: int = 0, after_finished: int = -1) -> dict[str, Any]:
        """The workflow; long-polls (on its one item) until it ends or more steps have finished."""
        deadline = time.monotonic() + min(max(wait_ms, 0), MAX_EVENT_WAIT_MS) / 1000
        delay = 0.05
        while True:
            wf = self.rt.store.get_workflow(self.tenant, workflow_id)
            if wf.status != WorkflowStatus.RUNNING or wf.finished > after_finished or time.monotonic() >= deadline:
                break
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.5)
        if wf.status == WorkflowStatus.RUNNING:  # progress only: listing every step is for the end
            return progress(wf)
        return workflows.view(self.rt, self.tenant, workflow_id)

    def list_workflows(self, session_id: str | None, limit: int) -> list[dict[str, Any]]:
        return [{**progress(w), "session_id": w.session_id, "created_at": w.created_at}
                for w in self.rt.store.list_workflows(self.tenant, session_id, limit)]

    def workflow_steps(self, workflow_id: str) -> dict[str, Any]:
        return workflows.steps_view(self.rt, self.tenant, workflow_id)

    def cancel_workflow(self, workflow_id: str) -> dict[str, Any]:
        if not workflows.cancel(self.rt, self.tenant, workflow_id):
            raise BadRequest(f"workflow {workflow_id!r} is not running")
        return {"workflow_id": workflow_id, "status": "cancelled"}
