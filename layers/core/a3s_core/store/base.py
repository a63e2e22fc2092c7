"""The Store contract, complete: what the engine and the API may ask of storage. Its adapters are
store/dynamo.py (deployed) and store/memory.py (tests and tools).

Every method is scoped by tenant; every state change is conditional, so concurrent or repeated
callers (SQS delivers at least once) cannot both win.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple, Protocol

from a3s_core.domain.errors import Conflict
from a3s_core.domain.items import Control, Event, Run, Session, Step, Task, TaskStatus, Workflow
from a3s_core.domain.outcomes import StepOutcome

WatchKind = Literal["run", "workflow", "lane", "session"]
FINAL_TASK = ("completed", "failed", "timed_out", "cancelled")


class Settlement(NamedTuple):
    """A step's end: `step` (its keys, attempt and stage; `run_id` and `started_at` as they are to be
    recorded) goes from pending or running to `status`, and its workflow counts it and `tokens`."""
    step: Step
    status: str
    outcome: StepOutcome
    tokens: int
    now: int


class Store(Protocol):
    def tenant_for_key(self, key_hash: str) -> str | None: ...
    def put_api_key(self, key_hash: str, tenant: str) -> None: ...

    def create_session(self, session: Session) -> None: ...
    def get_session(self, tenant: str, session_id: str) -> Session: ...
    def save_session(self, session: Session) -> None:
        """Write the session if session.version is still current (Conflict if not); bumps it."""
    def list_sessions(self, tenant: str, limit: int = 50) -> list[Session]:
        """The tenant's sessions, newest first."""

    def create_run(self, run: Run) -> None:
        """A new run (Conflict if it exists). A driver writes its first events when it takes it."""
    def get_run(self, tenant: str, run_id: str) -> Run: ...
    def run_status(self, tenant: str, run_id: str) -> str | None:
        """The run's status only (None: no such run)."""
    def run_states(self, tenant: str, run_ids: list[str]) -> dict[str, tuple[str, int]]:
        """Of those runs that exist: run id -> (status, created_at), in one batched read."""
    def acquire_run(self, tenant: str, run_id: str, owner: str, now: int, lease_ms: int) -> Run | None:
        """queued/running with no live lease -> running, leased to owner. None if not possible."""
    def save_run(self, run: Run, events: list[Event], append_to: Session | None = None,
                 settle: Settlement | None = None) -> bool:
        """Checkpoint run (and append events) atomically if run.version is still current; bumps it.
        Interrupted (run.control and run.ctl refreshed) if only a request from outside came since.
        With `append_to` (the run's session, as read), the same write adds the run's own messages
        to that session's conversation as its next exchange (whatever other runs appended meanwhile).
        With `settle`, the same write settles a step as settle_step would; False if that step or its
        workflow was no longer as expected (the run is saved alone then)."""
    def history(self, tenant: str, session_id: str, upto: int) -> list[dict]:
        """The messages of the session's first `upto` exchanges, in order (they never change; one
        that has expired reads as none)."""
    def session_with_history(self, tenant: str, session_id: str) -> tuple[Session, list[dict], int]:
        """The session, the messages of its whole conversation and its number of exchanges, in one
        read (NotFound: no such session)."""
    def wake_run(self, tenant: str, run_id: str, from_status: str = "waiting") -> bool:
        """waiting (or paused) -> queued. True for the one caller that made the change."""
    def list_events(self, tenant: str, run_id: str, after: int, limit: int = 500) -> list[Event]: ...
    def request_control(self, tenant: str, run_id: str, pause: bool | None = None, cancel: bool = False,
                        inject: str | None = None) -> None:
        """Record a control request (the driver or the API applies it)."""
    def get_control(self, tenant: str, run_id: str) -> Control: ...
    def nudge_run(self, tenant: str, run_id: str) -> bool:
        """Count a change on a running run (its driver's next checkpoint is Interrupted). False if
        the run is not running."""
    def list_runs(self, tenant: str, session_id: str | None = None, limit: int = 200) -> list[Run]: ...
    def stale_runs(self, before: int, limit: int) -> list[tuple[str, str]]:
        """(tenant, run_id) of queued/running runs not touched since `before`: a message was lost."""
    def count_redrive(self, tenant: str, run_id: str, before: int, now: int) -> int | None:
        """One more re-drive of a run still queued/running and not touched since `before`: the new
        count (one per caller, however many race), or None if the run has moved on. The run counts
        as touched at `now`, so the next re-drive waits as long again."""

    def create_task(self, task: Task) -> bool:
        """False if a task with this id exists already (a replayed turn)."""
    def get_task(self, tenant: str, session_id: str, task_id: str) -> Task | None: ...
    def session_and_tasks(self, tenant: str, session_id: str, task_ids: list[str]) -> tuple[Session, dict[str, Task]]:
        """The session and those of its tasks that exist, in one read (NotFound: no such session)."""
    def list_pending_tasks(self, tenant: str, session_id: str) -> list[Task]: ...
    def pending_tasks_for_lane(self, tenant: str, lane: str, limit: int) -> list[Task]: ...
    def overdue_tasks(self, now: int, limit: int) -> list[Task]: ...
    def finish_task(self, tenant: str, session_id: str, task_id: str, status: str, now: int,
                    result: dict | None = None, error: str | None = None) -> Task | None:
        """pending -> status, if still allowed at `now`: a completion must beat the deadline,
        a timeout must not come before it. The finished task for the one caller that made the
        change (the write answers with it), else None."""
    def claim_task(self, tenant: str, session_id: str, task_id: str, owner: str, now: int,
                   lease_ms: int) -> Task | None:
        """Lease a pending task before its deadline to one worker, so two workers do not both do
        it: the task as leased, or None (no such task, finished, expired or leased to another)."""

    def add_lane_metrics(self, tenant: str, session_id: str, lane: str, counts: dict[str, int]) -> None:
        """Add to a session's per-lane queue counters (lane_metrics)."""

    def lane_metrics(self, tenant: str, session_id: str) -> dict[str, dict[str, int]]:
        """The session's per-lane queue counters."""

    # -- workflows: one item per workflow and one per step ----------------------------------
    def create_workflow(self, wf: Workflow, steps: list[Step], fresh: bool = False) -> None:
        """The workflow and its steps (Conflict if it exists). `fresh`: its id was made just now, so
        no other creator can race it."""
    def get_workflow(self, tenant: str, workflow_id: str) -> Workflow: ...
    def list_workflows(self, tenant: str, session_id: str | None = None, limit: int = 50) -> list[Workflow]:
        """The tenant's workflows (of one session, if given), newest first."""
    def list_steps(self, tenant: str, workflow_id: str) -> list[Step]: ...
    def get_step(self, tenant: str, workflow_id: str, key: str) -> Step | None: ...
    def get_steps(self, tenant: str, workflow_id: str, keys: list[str]) -> dict[str, Step]:
        """Those of the steps at `keys` that exist, by key, in one batched read."""
    def workflow_with(self, tenant: str, workflow_id: str, key: str | None = None,
                      session_id: str | None = None) -> tuple[Workflow, Step | None, Session | None]:
        """The workflow, one of its steps (if `key`) and a session (if `session_id`), in one read
        (NotFound: no such workflow; a step or session that is not there is None)."""
    def put_steps(self, steps: list[Step]) -> None: ...
    def move_step(self, step: Step, expect_status: str, expect_stage: int, status: str, run_id: str | None,
                  stage: int, spec: dict | None, now: int) -> Step | None:
        """Conditional step transition (same attempt): a pipeline's step to its next stage.
        The step as it now stands, or None if it was not in the expected state."""
    def settle_step(self, step: Step, status: str, outcome: StepOutcome, tokens: int, now: int) -> bool:
        """pending or running (at step.stage, of step.attempt) -> status, with step.run_id and
        step.started_at recorded, and count it on the workflow, in one transaction; True if counted now."""
    def finish_workflow(self, tenant: str, workflow_id: str, attempt: int, status: str, when_all_done: bool) -> bool:
        """running -> status (if every step of the attempt is counted, when asked); one winner."""
    def reopen_workflow(self, wf: Workflow, expect_attempt: int) -> bool:
        """A finished workflow starts attempt+1 over `wf.order` (resumable re-runs)."""

    # -- push subscriptions: WebSocket connections watching a run, a workflow or a lane -------
    # A watcher lives in the watched thing's partition (tenant-scoped by its key); the connection
    # remembers its subscriptions so that its end removes them. `expires` is epoch seconds.
    def open_connection(self, tenant: str, connection_id: str, expires: int) -> None: ...
    def close_connection(self, tenant: str, connection_id: str) -> list[tuple[str, str]]:
        """Forget the connection; the (kind, key) subscriptions it still had."""
    def add_watcher(self, tenant: str, kind: WatchKind, key: str, connection_id: str, expires: int,
                    counted: bool = True) -> None:
        """Watch a run, a workflow or a lane (NotFound for a run or workflow the tenant lacks);
        a run's or workflow's `watchers` counter goes up (once per connection), unless a workflow's
        watcher is not `counted` (it waits for the end alone: steps are not pushed for it)."""
    def remove_watcher(self, tenant: str, kind: WatchKind, key: str, connection_id: str) -> bool:
        """Stop watching; True if the watcher was there (the counter goes down then, if it counted it)."""
    def watchers(self, tenant: str, kind: WatchKind, key: str) -> list[str]:
        """Connection ids watching it."""


def task_transition_allowed(task: Task, status: str, now: int) -> bool:
    if task.status != TaskStatus.PENDING:
        return False
    if status == "timed_out":
        return task.deadline <= now
    if status == "cancelled":
        return True
    return now < task.deadline


def update_session(store: Store, tenant: str, session_id: str, change: Callable[[Session], None]) -> Session:
    """Read-modify-write a session, retrying when a concurrent writer got there first."""
    for _ in range(20):
        session = store.get_session(tenant, session_id)
        change(session)
        try:
            store.save_session(session)
            return session
        except Conflict:
            continue
    raise Conflict(f"session {session_id} is changing too often; try again")
