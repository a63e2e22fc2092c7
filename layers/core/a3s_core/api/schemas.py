"""Request bodies of the HTTP API: validated by Powertools against these models."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from a3s_core.domain.items import WorkflowKind
from a3s_core.domain.lanes import LaneHandler

MAX_PROMPT_CHARS = 100_000
MAX_NAME_BYTES = 255  # of one name in a path: what a filesystem takes (NAME_MAX)


def _names_fit(workspace: str) -> str:
    # A workspace becomes a directory where the stack has a disk of its own: a longer name there
    # was the filesystem's OSError, a 500, rather than the caller's 422.
    if any(len(name.encode()) > MAX_NAME_BYTES for name in workspace.split("/")):
        raise ValueError(f"each name in a workspace path must be at most {MAX_NAME_BYTES} bytes")
    return workspace


Workspace = Annotated[str, AfterValidator(_names_fit)]


class _Strict(BaseModel):
    # strict: a JSON value of the wrong type ("yes", "5000", true for an int, 8.0) is refused, not coerced
    model_config = ConfigDict(extra="forbid", strict=True)


class LaneHandlerBody(_Strict, LaneHandler):
    pass


class QueueConfigBody(_Strict):
    enable_all_features: bool = False
    lane_handlers: dict[Literal["control", "query", "execute", "generate"], LaneHandlerBody] = Field(
        default_factory=dict)
    concurrency: dict[Literal["control", "query", "execute", "generate"], Annotated[int, Field(ge=1, le=256)]] = Field(
        default_factory=dict)


class CreateSessionBody(_Strict):
    workspace: Workspace = Field(".", min_length=1, max_length=1024)
    model: str | None = Field(None, max_length=256)
    permissive: bool = False
    builtin_skills: bool = False
    max_parallel_tasks: int = Field(8, ge=1, le=256)
    queue_config: QueueConfigBody | None = None


class CompleteTaskBody(_Strict):
    success: bool
    result: dict[str, Any] | None = None
    error: str | None = Field(None, max_length=100_000)


class StartRunBody(_Strict):
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    max_turns: int = Field(50, ge=1, le=1000)


class ClaimBody(_Strict):
    max: int = Field(1, ge=1, le=50)
    lease_ms: int = Field(300_000, ge=1_000, le=43_200_000)
    worker: str = Field("worker", min_length=1, max_length=128)


class StepSpecBody(_Strict):
    task_id: str = Field(min_length=1, max_length=200)
    agent: str = Field(min_length=1, max_length=100)
    description: str = Field("", max_length=2_000)
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    max_steps: int | None = Field(None, ge=1, le=1000)
    output_schema: dict[str, Any] | None = None
    workspace: Workspace | None = Field(None, max_length=1024)


class StartWorkflowBody(_Strict):
    kind: WorkflowKind
    specs: list[StepSpecBody] = Field(default_factory=list, max_length=10_000)
    items: list[Any] | None = Field(None, max_length=10_000)   # pipeline: the inputs
    stages: list[dict[str, Any]] | None = Field(None, max_length=50)  # pipeline: spec templates
    workflow_id: str | None = Field(None, pattern=r"^[A-Za-z0-9._:-]{1,128}$")
    budget_tokens: int | None = Field(None, ge=1, le=10**15)


class InjectBody(_Strict):
    """A user message the run's model sees on its next turn."""

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)


class SkillBody(_Strict):
    """A skill of one session: instructions the model can load with the `skill` tool."""

    description: str = Field(min_length=1, max_length=1_000)
    content: str = Field(min_length=1, max_length=50_000)


class AgentBody(_Strict):
    """A user-defined subagent for one session."""

    description: str = Field("", max_length=2_000)
    system_prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    tools: list[Literal["read", "write", "edit", "ls", "glob", "grep", "bash"]] | None = None
    max_steps: int = Field(50, ge=1, le=1000)


class ClaimTaskBody(_Strict):
    """Lease one task by id (a worker fed by the lane's queue, which names the task)."""
    lease_ms: int = Field(300_000, ge=1_000, le=43_200_000)
    worker: str = Field("worker", min_length=1, max_length=128)
