"""The in-memory Store: the same conditional semantics as DynamoDB, one lock making each method
atomic. For tests and tools; nothing deployed uses it."""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from a3s_core.domain.errors import Conflict, Interrupted, NotFound
from a3s_core.domain.items import (
    Control,
    Event,
    Run,
    RunStatus,
    Session,
    Step,
    StepStatus,
    Task,
    TaskStatus,
    Workflow,
    WorkflowStatus,
    now_ms,
)
from a3s_core.domain.outcomes import StepOutcome
from a3s_core.store.base import Settlement, Store, WatchKind, task_transition_allowed


class MemoryStore:
    """In-memory Store for unit tests: one lock makes each method atomic, as a conditional write is."""

    def __init__(self) -> None:
        self._lock = threading.RLock()  # save_run settles a step with settle_step, under the same lock
        self._keys: dict[str, str] = {}
        self._sessions: dict[tuple[str, str], Session] = {}
        self._runs: dict[tuple[str, str], Run] = {}
        self._events: dict[tuple[str, str], list[Event]] = {}
        self._history: dict[tuple[str, str], list[list[dict]]] = {}
        self._tasks: dict[tuple[str, str, str], Task] = {}
        self._workflows: dict[tuple[str, str], Workflow] = {}
        self._steps: dict[tuple[str, str, str], Step] = {}
        self._metrics: dict[tuple[str, str], dict[str, dict[str, int]]] = {}
        self._watchers: dict[tuple[str, str, str], set[str]] = {}  # (tenant, kind, key) -> connection ids
        self._connections: dict[tuple[str, str], set[tuple[str, str]]] = {}  # -> its (kind, key)s
        self._quiet: set[tuple[str, str, str]] = set()  # (tenant, workflow, connection): for its end alone

    def tenant_for_key(self, key_hash: str) -> str | None:
        return self._keys.get(key_hash)

    def put_api_key(self, key_hash: str, tenant: str) -> None:
        self._keys[key_hash] = tenant

    def create_session(self, session: Session) -> None:
        with self._lock:
            key = (session.tenant, session.session_id)
            if key in self._sessions:
                raise Conflict(f"session {session.session_id} exists")
            self._sessions[key] = session.model_copy(deep=True)

    def get_session(self, tenant: str, session_id: str) -> Session:
        s = self._sessions.get((tenant, session_id))
        if s is None:
            raise NotFound(f"session {session_id!r} not found")
        return s.model_copy(deep=True)

    def save_session(self, session: Session) -> None:
        with self._lock:
            key = (session.tenant, session.session_id)
            if key not in self._sessions or self._sessions[key].version != session.version:
                raise Conflict(f"session {session.session_id} changed underneath")
            session.version += 1
            session.watching = self._sessions[key].watching  # changed by subscriptions alone
            self._sessions[key] = session.model_copy(deep=True)

    def list_sessions(self, tenant: str, limit: int = 50) -> list[Session]:
        mine = [s for (t, _), s in self._sessions.items() if t == tenant]
        return [s.model_copy(deep=True) for s in sorted(mine, key=lambda s: s.created_at, reverse=True)[:limit]]

    def create_run(self, run: Run) -> None:
        with self._lock:
            key = (run.tenant, run.run_id)
            if key in self._runs:
                raise Conflict(f"run {run.run_id} exists")
            self._runs[key] = run.model_copy(deep=True)
            self._events[key] = []

    def get_run(self, tenant: str, run_id: str) -> Run:
        r = self._runs.get((tenant, run_id))
        if r is None:
            raise NotFound(f"run {run_id!r} not found")
        return r.model_copy(deep=True)

    def run_status(self, tenant: str, run_id: str) -> str | None:
        run = self._runs.get((tenant, run_id))
        return run.status if run else None

    def run_states(self, tenant: str, run_ids: list[str]) -> dict[str, tuple[str, int]]:
        with self._lock:
            runs = [self._runs[(tenant, r)] for r in run_ids if (tenant, r) in self._runs]
            return {r.run_id: (r.status, r.created_at) for r in runs}

    def acquire_run(self, tenant: str, run_id: str, owner: str, now: int, lease_ms: int) -> Run | None:
        with self._lock:
            r = self._runs.get((tenant, run_id))
            if r is None or r.status not in ("queued", "running") or (r.lease_owner and r.lease_until > now):
                return None
            r.status, r.lease_owner, r.lease_until = RunStatus.RUNNING, owner, now + lease_ms
            r.version += 1
            return r.model_copy(deep=True)

    def save_run(self, run: Run, events: list[Event], append_to: Session | None = None,
                 settle: Settlement | None = None) -> bool:
        with self._lock:
            key = (run.tenant, run.run_id)
            cur = self._runs.get(key)
            if cur is None or cur.version != run.version:
                raise Conflict(f"run {run.run_id} changed underneath (version {run.version})")
            if cur.ctl != run.ctl:  # a request from outside the driver has not seen
                run.control, run.ctl, run.watchers = cur.control.model_copy(deep=True), cur.ctl, cur.watchers
                raise Interrupted(run.run_id)
            run.version += 1
            self._runs[key] = run.model_copy(deep=True)
            self._events.setdefault(key, []).extend(events)
            if append_to is not None:
                self._history.setdefault((run.tenant, run.session_id), []).append([dict(m) for m in run.messages])
            return settle is not None and self.settle_step(*settle)

    def history(self, tenant: str, session_id: str, upto: int) -> list[dict]:
        exchanges = self._history.get((tenant, session_id), [])[:upto]
        return [dict(m) for exchange in exchanges for m in exchange]

    def session_with_history(self, tenant: str, session_id: str) -> tuple[Session, list[dict], int]:
        with self._lock:
            session = self.get_session(tenant, session_id)
            n = len(self._history.get((tenant, session_id), []))
            return session, self.history(tenant, session_id, n), n

    def wake_run(self, tenant: str, run_id: str, from_status: str = "waiting") -> bool:
        with self._lock:
            r = self._runs.get((tenant, run_id))
            if r is None or r.status != from_status:
                return False
            r.status, r.updated_at = RunStatus.QUEUED, now_ms()
            r.version += 1
            return True

    def request_control(self, tenant: str, run_id: str, pause: bool | None = None, cancel: bool = False,
                        inject: str | None = None) -> None:
        with self._lock:
            run = self._runs.get((tenant, run_id))
            if run is None:
                raise NotFound(f"run {run_id!r} not found")
            ctrl = run.control
            if pause is not None:
                ctrl.pause = pause
            ctrl.cancel = ctrl.cancel or cancel
            if inject is not None:
                ctrl.injections.append(inject)
            run.ctl += 1

    def get_control(self, tenant: str, run_id: str) -> Control:
        return self.get_run(tenant, run_id).control

    def nudge_run(self, tenant: str, run_id: str) -> bool:
        with self._lock:
            run = self._runs.get((tenant, run_id))
            if run is None or run.status != RunStatus.RUNNING:
                return False
            run.ctl += 1
            return True

    def list_runs(self, tenant: str, session_id: str | None = None, limit: int = 200) -> list[Run]:
        runs = [r for (t, _), r in self._runs.items() if t == tenant and session_id in (None, r.session_id)]
        return [r.model_copy(deep=True) for r in sorted(runs, key=lambda r: r.created_at)[-limit:]]

    def stale_runs(self, before: int, limit: int) -> list[tuple[str, str]]:
        return [(r.tenant, r.run_id) for r in self._runs.values()
                if r.status in ("queued", "running") and r.updated_at < before][:limit]

    def count_redrive(self, tenant: str, run_id: str, before: int, now: int) -> int | None:
        with self._lock:
            r = self._runs.get((tenant, run_id))
            if r is None or r.status not in ("queued", "running") or r.updated_at >= before:
                return None
            r.redrives, r.updated_at = r.redrives + 1, now
            return r.redrives

    def list_events(self, tenant: str, run_id: str, after: int, limit: int = 500) -> list[Event]:
        return [e for e in self._events.get((tenant, run_id), []) if e.seq > after][:limit]

    def create_task(self, task: Task) -> bool:
        with self._lock:
            key = (task.tenant, task.session_id, task.task_id)
            if key in self._tasks:
                return False
            self._tasks[key] = task.model_copy(deep=True)
            return True

    def get_task(self, tenant: str, session_id: str, task_id: str) -> Task | None:
        t = self._tasks.get((tenant, session_id, task_id))
        return t.model_copy(deep=True) if t else None

    def session_and_tasks(self, tenant: str, session_id: str, task_ids: list[str]) -> tuple[Session, dict[str, Task]]:
        session = self.get_session(tenant, session_id)
        return session, {t: task for t in task_ids if (task := self.get_task(tenant, session_id, t)) is not None}

    def list_pending_tasks(self, tenant: str, session_id: str) -> list[Task]:
        return sorted((t.model_copy(deep=True) for (tn, sid, _), t in self._tasks.items()
                       if tn == tenant and sid == session_id and t.status == "pending"),
                      key=lambda t: t.created_at)

    def pending_tasks_for_lane(self, tenant: str, lane: str, limit: int) -> list[Task]:
        found = [t for t in self._tasks.values() if t.tenant == tenant and t.lane == lane and t.status == "pending"]
        return [t.model_copy(deep=True) for t in sorted(found, key=lambda t: t.created_at)[:limit]]

    def overdue_tasks(self, now: int, limit: int) -> list[Task]:
        return [t.model_copy(deep=True) for t in self._tasks.values()
                if t.status == "pending" and t.deadline <= now][:limit]

    def finish_task(self, tenant: str, session_id: str, task_id: str, status: str, now: int,
                    result: dict | None = None, error: str | None = None) -> Task | None:
        with self._lock:
            t = self._tasks.get((tenant, session_id, task_id))
            if t is None or not task_transition_allowed(t, status, now):
                return None
            t.status, t.result, t.error, t.completed_at = TaskStatus(status), result, error, now
            return t.model_copy(deep=True)

    def claim_task(self, tenant: str, session_id: str, task_id: str, owner: str, now: int,
                   lease_ms: int) -> Task | None:
        with self._lock:
            t = self._tasks.get((tenant, session_id, task_id))
            if t is None or t.status != "pending" or t.deadline <= now or (t.lease_owner and t.lease_until > now):
                return None
            t.lease_owner, t.lease_until = owner, now + lease_ms
            t.claimed_at = t.claimed_at or now
            return t.model_copy(deep=True)

    def add_lane_metrics(self, tenant: str, session_id: str, lane: str, counts: dict[str, int]) -> None:
        with self._lock:
            mine = self._metrics.setdefault((tenant, session_id), {}).setdefault(lane, {})
            for k, v in counts.items():
                mine[k] = mine.get(k, 0) + v

    def lane_metrics(self, tenant: str, session_id: str) -> dict[str, dict[str, int]]:
        with self._lock:
            return {lane: dict(c) for lane, c in self._metrics.get((tenant, session_id), {}).items()}


    # -- workflows ---------------------------------------------------------------------
    def create_workflow(self, wf: Workflow, steps: list[Step], fresh: bool = False) -> None:
        with self._lock:
            key = (wf.tenant, wf.workflow_id)
            if key in self._workflows:
                raise Conflict(f"workflow {wf.workflow_id} exists")
            for step in steps:
                self._steps[(step.tenant, step.workflow_id, step.key)] = step.model_copy(deep=True)
            self._workflows[key] = wf.model_copy(deep=True)

    def list_workflows(self, tenant: str, session_id: str | None = None, limit: int = 50) -> list[Workflow]:
        mine = [w for (t, _), w in self._workflows.items() if t == tenant and session_id in (None, w.session_id)]
        return [w.model_copy(deep=True) for w in sorted(mine, key=lambda w: w.created_at, reverse=True)[:limit]]

    def get_workflow(self, tenant: str, workflow_id: str) -> Workflow:
        wf = self._workflows.get((tenant, workflow_id))
        if wf is None:
            raise NotFound(f"workflow {workflow_id!r} not found")
        return wf.model_copy(deep=True)

    def list_steps(self, tenant: str, workflow_id: str) -> list[Step]:
        return sorted((s.model_copy(deep=True) for (t, w, _), s in self._steps.items()
                       if t == tenant and w == workflow_id), key=lambda s: s.key)

    def get_step(self, tenant: str, workflow_id: str, key: str) -> Step | None:
        s = self._steps.get((tenant, workflow_id, key))
        return s.model_copy(deep=True) if s else None

    def get_steps(self, tenant: str, workflow_id: str, keys: list[str]) -> dict[str, Step]:
        found = (self.get_step(tenant, workflow_id, k) for k in keys)
        return {s.key: s for s in found if s is not None}

    def workflow_with(self, tenant: str, workflow_id: str, key: str | None = None,
                      session_id: str | None = None) -> tuple[Workflow, Step | None, Session | None]:
        with self._lock:
            wf = self.get_workflow(tenant, workflow_id)
            session = self._sessions.get((tenant, session_id)) if session_id else None
            return (wf, self.get_step(tenant, workflow_id, key) if key else None,
                    session.model_copy(deep=True) if session else None)

    def put_steps(self, steps: list[Step]) -> None:
        with self._lock:
            for step in steps:
                self._steps[(step.tenant, step.workflow_id, step.key)] = step.model_copy(deep=True)

    def move_step(self, step: Step, expect_status: str, expect_stage: int, status: str, run_id: str | None,
                  stage: int, spec: dict | None, now: int) -> Step | None:
        with self._lock:
            cur = self._steps.get((step.tenant, step.workflow_id, step.key))
            if cur is None or (cur.status, cur.stage, cur.attempt) != (expect_status, expect_stage, step.attempt):
                return None
            cur.status, cur.run_id, cur.stage = StepStatus(status), run_id, stage
            cur.spec = spec if spec is not None else cur.spec
            cur.started_at = cur.started_at or now
            return cur.model_copy(deep=True)

    def settle_step(self, step: Step, status: str, outcome: StepOutcome, tokens: int, now: int) -> bool:
        with self._lock:
            cur = self._steps.get((step.tenant, step.workflow_id, step.key))
            wf = self._workflows.get((step.tenant, step.workflow_id))
            if cur is None or wf is None or cur.status not in ("pending", "running") or cur.attempt != step.attempt \
                    or cur.stage != step.stage or wf.attempt != step.attempt:
                return False
            cur.status, cur.outcome, cur.finished_at = StepStatus(status), outcome, now
            cur.run_id, cur.started_at = step.run_id, cur.started_at or step.started_at or now
            wf.finished += 1
            wf.used_tokens += tokens
            return True

    def finish_workflow(self, tenant: str, workflow_id: str, attempt: int, status: str, when_all_done: bool) -> bool:
        with self._lock:
            wf = self._workflows.get((tenant, workflow_id))
            if wf is None or wf.status != WorkflowStatus.RUNNING or wf.attempt != attempt or \
                    (when_all_done and wf.finished < wf.n):
                return False
            wf.status = WorkflowStatus(status)
            return True

    def reopen_workflow(self, wf: Workflow, expect_attempt: int) -> bool:
        with self._lock:
            cur = self._workflows.get((wf.tenant, wf.workflow_id))
            if cur is None or cur.status == "running" or cur.attempt != expect_attempt:
                return False
            self._workflows[(wf.tenant, wf.workflow_id)] = wf.model_copy(deep=True)
            return True

    # -- push subscriptions ---------------------------------------------------------------
    def open_connection(self, tenant: str, connection_id: str, expires: int) -> None:
        with self._lock:
            self._connections.setdefault((tenant, connection_id), set())

    def close_connection(self, tenant: str, connection_id: str) -> list[tuple[str, str]]:
        with self._lock:
            return sorted(self._connections.pop((tenant, connection_id), set()))

    def add_watcher(self, tenant: str, kind: WatchKind, key: str, connection_id: str, expires: int,
                    counted: bool = True) -> None:
        with self._lock:
            if kind == "run" and (tenant, key) not in self._runs:
                raise NotFound(f"run {key!r} not found")
            if kind == "workflow" and (tenant, key) not in self._workflows:
                raise NotFound(f"workflow {key!r} not found")
            if kind == "session" and (tenant, key) not in self._sessions:
                raise NotFound(f"session {key!r} not found")
            watching = self._watchers.setdefault((tenant, kind, key), set())
            if connection_id not in watching and kind == "run":
                self._runs[(tenant, key)].watchers += 1
                self._runs[(tenant, key)].ctl += 1  # a driver's next save sees it
            if connection_id not in watching and kind == "workflow" and counted:
                self._workflows[(tenant, key)].watchers += 1
            if connection_id not in watching and kind == "workflow" and not counted:
                self._quiet.add((tenant, key, connection_id))
            if connection_id not in watching and kind == "session":
                self._sessions[(tenant, key)].watching = sorted(watching | {connection_id})
            watching.add(connection_id)
            self._connections.setdefault((tenant, connection_id), set()).add((kind, key))

    def remove_watcher(self, tenant: str, kind: WatchKind, key: str, connection_id: str) -> bool:
        with self._lock:
            watching = self._watchers.get((tenant, kind, key), set())
            if connection_id not in watching:
                return False
            watching.discard(connection_id)
            self._connections.get((tenant, connection_id), set()).discard((kind, key))
            wf = self._workflows.get((tenant, key)) if kind == "workflow" else None
            if (tenant, key, connection_id) in self._quiet:
                self._quiet.discard((tenant, key, connection_id))
            elif wf is not None and wf.watchers > 0:
                wf.watchers -= 1
            session = self._sessions.get((tenant, key)) if kind == "session" else None
            if session is not None:
                session.watching = sorted(watching)
            run = self._runs.get((tenant, key)) if kind == "run" else None
            if run is not None and run.watchers > 0:
                run.watchers, run.ctl = run.watchers - 1, run.ctl + 1
            return True

    def watchers(self, tenant: str, kind: WatchKind, key: str) -> list[str]:
        return sorted(self._watchers.get((tenant, kind, key), set()))


if TYPE_CHECKING:
    _contract: type[Store] = MemoryStore  # mypy holds every method to the Store contract
