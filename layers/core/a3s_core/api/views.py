"""Response bodies of the HTTP API, as pydantic models: what /openapi.json documents.

They describe the dicts that api/service.py and engine/workflows.py build; they are never instantiated on
a request (the handlers return those dicts as they are), so they cost nothing at run time. The
e2e suite checks every response it gets against the document generated from them, which is what
keeps the two in step.

Objects are closed (`additionalProperties: false`) so that a field added to a response without
being documented here fails that check; payloads that are the caller's or a tool's own (a task's
payload and result, an event's data, a step's structured output) stay open.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from a3s_core.domain.items import RunStatus, StepStatus, TaskStatus, WorkflowKind, WorkflowStatus
from a3s_core.domain.lanes import Lane, Mode

# A key that is sometimes left out of the response (never sent as null): `Absent`, `absent()`.
# A step's outcome is the stored one, documented as it is.
from a3s_core.domain.outcomes import Absent, StepOutcome, absent


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- errors --------------------------------------------------------------------------------------
class ValidationIssue(BaseModel):
    """One problem pydantic found in the request (its error dict, made JSON)."""

    model_config = ConfigDict(extra="allow")
    loc: list[str | int]
    msg: str
    type: str


class ErrorDetail(_View):
    code: str = Field(description="bad_request, bad_json, model_not_allowed, unauthorized, not_found, no_route, "
                                  "conflict, payload_too_large, item_too_large, unsupported_media_type, "
                                  "validation_error, internal_error")
    message: str
    detail: list[ValidationIssue] | Absent = absent("422 only: each field that failed validation")


class ErrorBody(_View):
    """Every error the kit itself answers, whatever the status."""

    error: ErrorDetail


class GatewayError(_View):
    """API Gateway's own answer when it refuses a request before the kit sees it (no or an unknown key)."""

    message: str


# -- sessions ------------------------------------------------------------------------------------
class Health(_View):
    ok: bool
    websocket_url: str | None = None


class LaneHandlerView(_View):
    mode: Mode
    timeout_ms: int
    on_timeout: Literal["error", "internal"]


class SessionView(_View):
    session_id: str
    workspace: str
    model: str
    permissive: bool
    max_parallel_tasks: int
    closed: bool
    has_queue: bool
    lanes: dict[Lane, LaneHandlerView]
    created_at: int = Field(description="milliseconds since the epoch")
    builtin_skills: bool
    skills: list[str] = Field(description="names of the session's own skills, sorted")


class SessionsView(_View):
    sessions: list[SessionView] = Field(description="newest first")


class AgentSpecView(_View):
    description: str
    system_prompt: str | Absent = absent()
    tools: list[str] | Absent = absent()
    max_steps: int


class AgentsView(_View):
    session_id: str
    agents: dict[str, AgentSpecView] = Field(description="every subagent the session defines, by name")


class SkillsView(_View):
    session_id: str
    skills: list[str] = Field(description="names of the session's own skills, sorted")


class LaneStats(_View):
    pending: int
    active: int
    max_concurrency: int
    handler_mode: Mode


class Percentiles(_View):
    """Upper bounds of histogram buckets, in ms; null when nothing was counted or beyond the last bucket."""

    count: int
    p50: int | None
    p90: int | None
    p95: int | None
    p99: int | None


class LaneMetrics(_View):
    completed: int
    failed: int
    timed_out: int
    cancelled: int
    wait_ms: Percentiles
    run_ms: Percentiles


class QueueStats(_View):
    total_pending: int
    total_active: int
    external_pending: int
    lanes: dict[Lane, LaneStats]
    metrics: dict[Lane, LaneMetrics] | Absent = absent("only for a session created with enable_all_features")


class QueueView(_View):
    has_queue: bool
    stats: QueueStats


# -- external tasks ------------------------------------------------------------------------------
class TaskView(_View):
    task_id: str
    id: str = Field(description="the same as task_id")
    session_id: str
    run_id: str
    lane: Lane
    command_type: str
    payload: dict[str, Any]
    timeout_ms: int
    created_at: int
    status: TaskStatus


class TasksView(_View):
    tasks: list[TaskView]


class ClaimView(_View):
    claimed: bool
    task: TaskView
    reason: Literal["leased", "finished", "expired"] | None = Field(
        description="null when claimed; otherwise leased (try again later), finished or expired (drop it)")


class CompletedView(_View):
    completed: bool = Field(description="false if the task was unknown or already finished (the first call won)")


# -- runs ----------------------------------------------------------------------------------------
class StepRefView(_View):
    workflow_id: str
    key: str
    attempt: int


class RunView(_View):
    run_id: str
    session_id: str
    status: RunStatus
    text: str
    error: str | None
    stop_reason: str | None
    turns: int
    tool_calls_count: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    created_at: int
    updated_at: int
    agent: str | None = Field(description="the subagent of a workflow step's run; null for a session's own")
    children: list[str] = Field(description="workflows this run started")
    parent: StepRefView | None = Field(description="the workflow step this run is the child run of")


class RunsView(_View):
    runs: list[RunView]


class EventView(BaseModel):
    """One event of a run; its other fields depend on its type."""

    model_config = ConfigDict(extra="allow")
    seq: int
    type: str
    ts: int


class EventsView(_View):
    events: list[EventView]
    status: RunStatus
    done: bool
    next: int = Field(description="pass as `after` to read on")


class ControlView(_View):
    run_id: str
    action: Literal["pause", "resume", "cancel", "inject"]
    accepted: bool
    status: RunStatus = Field(description="the run's status as the request was recorded")


# -- workflows -----------------------------------------------------------------------------------
class WorkflowStarted(_View):
    workflow_id: str
    status: WorkflowStatus
    attached: bool = Field(description="a resumable workflow already running: this call joined it")
    refused: str | Absent = absent("why a resumable workflow could not be resumed")


class StepHistory(_View):
    type: Literal["step_started", "step_finished"]
    step: str
    ts: int
    status: Literal["succeeded", "failed"] | Absent = absent("step_finished only")


class WorkflowProgress(_View):
    """How far a workflow is: what every view of one starts with."""

    workflow_id: str
    kind: WorkflowKind
    status: WorkflowStatus
    done: bool
    finished: int
    total: int
    attempt: int


class WorkflowView(WorkflowProgress):
    """While running: progress only. Once done: also tokens, outcomes (in input order) and history."""

    used_tokens: int | Absent = absent("once done")
    outcomes: list[StepOutcome | None] | Absent = absent("once done; null for a step that did not settle")
    history: list[StepHistory] | Absent = absent("once done")


class WorkflowSummary(WorkflowProgress):
    session_id: str
    created_at: int


class WorkflowsView(_View):
    workflows: list[WorkflowSummary] = Field(description="newest first")


class StepView(_View):
    key: str
    task_id: str | None = Field(description="the spec's task_id: the step's name for the caller")
    index: int = Field(description="position in the caller's input")
    attempt: int
    status: StepStatus
    run_id: str | None = Field(description="the step's child run, once launched")
    started_at: int | None
    finished_at: int | None
    agent: str | None
    error: str | None = Field(description="why a failed step failed")


class StepsView(_View):
    workflow_id: str
    status: WorkflowStatus
    steps: list[StepView] = Field(description="in input order")


class WorkflowCancelled(_View):
    workflow_id: str
    status: Literal["cancelled"]
