"""The stored items: one pydantic model each, mapped to DynamoDB in store_dynamo."""
from __future__ import annotations

import secrets
import time
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

from a3s_core.domain.lanes import DEFAULT_CONCURRENCY, LANES, LaneHandler
from a3s_core.domain.outcomes import StepOutcome, TeamState


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"      # for external tasks, a confirm or child workflows
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_RUN = (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.WAITING, RunStatus.PAUSED)


class TaskStatus(StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


def now_ms() -> int:
    return int(time.time() * 1000)


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


class Session(BaseModel):
    tenant: str
    session_id: str
    workspace: str
    model: str = "scripted"
    permissive: bool = False
    builtin_skills: bool = False
    enable_all_features: bool = False
    max_parallel_tasks: int = 8
    lanes: dict[str, LaneHandler] = Field(default_factory=lambda: {lane: LaneHandler() for lane in LANES})
    concurrency: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_CONCURRENCY))
    agents: dict[str, dict[str, Any]] = Field(default_factory=dict)  # user-defined subagents
    skills: dict[str, dict[str, Any]] = Field(default_factory=dict)  # the session's own skills
    closed: bool = False
    version: int = 0
    # WebSocket connections subscribed to every run of it: the driver reads them with the session
    watching: list[str] = Field(default_factory=list)
    expires: int = 0  # when a store lets it expire (epoch seconds; 0: never): kept apart from its document
    created_at: int = Field(default_factory=now_ms)

    def has_queue(self) -> bool:
        return any(h.policy.has_queue for h in self.lanes.values())


class ToolOutcome(BaseModel):
    content: str
    is_error: bool = False


class PendingCall(BaseModel):
    """One tool call of the current turn, tracked until its result is known."""

    id: str
    name: str
    arguments: dict[str, Any]
    lane: str
    task_id: str | None = None
    confirm_task_id: str | None = None  # the approval asked for on the control lane
    approved: bool = False
    fallback: bool = False              # its external task timed out and the lane runs it here instead
    workflow_id: str | None = None      # a delegation tool's child workflow (of its current phase)
    team: TeamState | None = None       # run_team's progress: phase, round, tasks
    reported: bool = False               # its tool_end event has been emitted
    outcome: ToolOutcome | None = None


class Run(BaseModel):
    tenant: str
    run_id: str
    session_id: str
    status: RunStatus = RunStatus.QUEUED
    prompt: str
    model: str
    workspace: str
    # The session's exchanges this run continues (`messages` holds only its own). None: as many as
    # there are when its driver first takes it (and reads them with the session).
    history: int | None = 0
    messages: list[dict] = Field(default_factory=list)
    pending: list[PendingCall] = Field(default_factory=list)
    turn: int = 0
    max_turns: int = 50
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tool_calls_count: int = 0
    text: str = ""
    error: str | None = None
    stop_reason: str | None = None  # end_turn | max_turns | model_error | cancelled | internal_error
    version: int = 0
    event_seq: int = 0
    lease_owner: str | None = None
    lease_until: int = 0
    redrives: int = 0  # times the sweeper sent a message for it again (bounded: sweeper.MAX_REDRIVES)
    watchers: int = 0  # WebSocket connections subscribed to it: the engine looks them up only when > 0
    created_at: int = Field(default_factory=now_ms)
    updated_at: int = Field(default_factory=now_ms)
    # A child run of a workflow step: its subagent, its tools, and the step to settle when it ends.
    parent: StepRef | None = None
    agent: str | None = None
    allowed_tools: list[str] | None = None
    output_schema: dict[str, Any] | None = None
    repaired: bool = False
    structured: Any = None
    injected: int = 0                # control injections already added to the conversation
    paused_by_signal: bool = False
    children: list[str] = Field(default_factory=list)  # workflows this run started (delegation tools)
    # Requests from outside, on the run's own item (the driver reads them with the run): `ctl`
    # counts every request and nudge, so a checkpoint that has not seen the latest one fails.
    control: Control = Field(default_factory=lambda: Control())
    ctl: int = 0
    background: list[str] = Field(default_factory=list)  # background tasks not yet reported back
    # Committed events a store keeps in the run's own item until they fill it (its bookkeeping: not
    # part of the document; a store without it leaves it empty)
    carried: list[dict[str, Any]] = Field(default_factory=list, exclude=True)

    @property
    def done(self) -> bool:
        return self.status in ("succeeded", "failed", "cancelled")


class Control(BaseModel):
    """Requests made to a run from outside; the driver applies them at its next turn boundary."""

    pause: bool = False
    cancel: bool = False
    injections: list[str] = Field(default_factory=list)


class StepRef(BaseModel):
    workflow_id: str
    key: str
    attempt: int
    # What the run's end needs to settle its step without reading it first (a parallel or resumable
    # step's child; a pipeline's stages are read with their workflow): the outcome's task id (and
    # agent, if the spec named it otherwise than the run), the step's launch position, and the key
    # launched after it in the same slot (None: the last).
    settles: bool = False
    task_id: str | None = None
    agent: str | None = None
    position: int = 0
    next: str | None = None

    @model_serializer(mode="wrap")
    def _set_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Kept in its run's item, rewritten at each step: the fields at their default are left out."""
        return {k: v for k, v in handler(self).items() if not (v is None or v is False or (k == "position" and v == 0))}


Run.model_rebuild()


class Task(BaseModel):
    """An external task: a tool call routed to a lane whose handler is external."""

    tenant: str
    session_id: str
    task_id: str
    run_id: str
    call_id: str
    lane: str
    command_type: str
    payload: dict[str, Any]
    timeout_ms: int
    status: TaskStatus = TaskStatus.PENDING
    created_at: int = Field(default_factory=now_ms)
    deadline: int = 0
    result: dict[str, Any] | None = None
    error: str | None = None
    lease_owner: str | None = None
    lease_until: int = 0
    completed_at: int | None = None
    approved: bool = False  # approved by a confirm task, or a permissive session's: the kit's worker may run it
    claimed_at: int | None = None  # when a worker first leased it
    metrics: bool = False    # its session records queue metrics (enable_all_features)

    def public(self) -> dict[str, Any]:
        """The task as a worker sees it (the seed's fields plus id, created_at, run_id)."""
        return {
            "task_id": self.task_id,
            "id": self.task_id,
            "session_id": self.session_id,
            "run_id": self.run_id,
            "lane": self.lane,
            "command_type": self.command_type,
            "payload": self.payload,
            "timeout_ms": self.timeout_ms,
            "created_at": self.created_at,
            "status": self.status,
        }


EVENT_OUTPUT_CHARS = 2_000  # of a tool's output carried in an event (the model gets all of it)


class Event(BaseModel):
    seq: int
    type: str
    ts: int = Field(default_factory=now_ms)
    data: dict[str, Any] = Field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        return {"seq": self.seq, "type": self.type, "ts": self.ts, **self.data}


WorkflowKind = Literal["parallel", "pipeline", "resumable"]


class WorkflowStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


class Workflow(BaseModel):
    """A Map-state-like fan-out: steps launched `concurrency` at a time, joined by a counter.

    Launching is positional: the step at position p of `order`, when it settles, launches position
    p + concurrency, so at most `concurrency` steps are ever in flight and no finisher has to know
    what the others did. The finisher whose count reaches `n` (and only it) ends the workflow.
    """

    tenant: str
    workflow_id: str
    session_id: str
    kind: WorkflowKind
    status: WorkflowStatus = WorkflowStatus.RUNNING
    size: int                        # steps in this attempt
    # Resumable re-runs name their steps (task ids) in launch order; every other workflow's step
    # at position p is simply f"{p:06d}", so its item stays the same size whatever N is.
    order: list[str] = Field(default_factory=list)
    concurrency: int = 8
    finished: int = 0
    attempt: int = 1
    budget_tokens: int | None = None
    used_tokens: int = 0
    stages: list[dict[str, Any]] | None = None  # declarative pipeline: spec templates per stage
    parent_run_id: str | None = None  # a delegation tool's run, woken when this workflow ends
    deadline: int | None = None       # parallel_task timeout_ms: unfinished steps are cancelled then
    watchers: int = 0                 # WebSocket subscriptions: a step's notice is pushed only if any
    created_at: int = Field(default_factory=now_ms)
    updated_at: int = Field(default_factory=now_ms)

    @property
    def n(self) -> int:
        return self.size

    def key_at(self, position: int) -> str:
        return self.order[position] if self.order else f"{position:06d}"


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Step(BaseModel):
    tenant: str
    workflow_id: str
    key: str
    index: int                       # position in the caller's input (outcomes come back in this order)
    position: int = 0                # position in this attempt's launch order
    attempt: int = 1
    spec: dict[str, Any]
    spec_hash: str = ""
    status: StepStatus = StepStatus.PENDING
    run_id: str | None = None
    outcome: StepOutcome | None = None
    stage: int = 0                   # declarative pipeline: the stage this item has reached
    started_at: int | None = None
    finished_at: int | None = None
