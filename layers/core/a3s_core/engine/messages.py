"""The runs queue's messages, typed: one model per kind, told apart by `kind` (a pydantic
discriminated union). The engine builds them here and nowhere else, and reads them through
`parse`, so a misspelt field is a validation error where the message is made or read, not a
poison message found at its last delivery."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from a3s_core.domain.items import Session, Task


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")  # a newer sender's extra field is harmless
    tenant: str


class Advance(_Message):
    """Advance a run: its next turn, or its first. A workflow step's launch sends the run's session
    as it has just read it: the run's first pick-up reads nothing else (a redelivery after it reads)."""

    kind: Literal["advance"] = "advance"
    run_id: str
    session: Session | None = None


class TaskTimeout(_Message):
    """An external task's deadline (chained past SQS's 15-minute delay)."""

    kind: Literal["task_timeout"] = "task_timeout"
    session_id: str
    task_id: str
    run_id: str  # the run the task's end wakes (and fails, if this message is given up)


class WorkflowStart(_Message):
    """Launch a workflow's first steps (or make sure a running one moves)."""

    kind: Literal["workflow_start"] = "workflow_start"
    workflow_id: str


class WorkflowTimeout(_Message):
    """A parallel_task's deadline: steps not finished by then are cancelled."""

    kind: Literal["workflow_timeout"] = "workflow_timeout"
    workflow_id: str


RunsMessage = Annotated[Advance | TaskTimeout | WorkflowStart | WorkflowTimeout, Field(discriminator="kind")]
RUN_MESSAGES = (Advance, TaskTimeout)            # giving one up fails its run
WORKFLOW_MESSAGES = (WorkflowStart, WorkflowTimeout)  # giving one up fails its workflow
_RUNS_MESSAGE: TypeAdapter[RunsMessage] = TypeAdapter(RunsMessage)
KINDS = ("advance", "task_timeout", "workflow_start", "workflow_timeout")


def timeout_message(task: Task) -> TaskTimeout:
    """The timer of an external task, due at its deadline."""
    return TaskTimeout(tenant=task.tenant, session_id=task.session_id, task_id=task.task_id, run_id=task.run_id)


def parse(body: dict[str, Any] | RunsMessage) -> RunsMessage:
    """The message a body carries (pydantic's ValidationError, a ValueError, if it carries none)."""
    return body if isinstance(body, _Message) else _RUNS_MESSAGE.validate_python(body)


def read(body: dict[str, Any] | RunsMessage) -> tuple[RunsMessage | None, str]:
    """The message a body carries, or None and why it carries none."""
    try:
        return parse(body), ""
    except ValidationError as err:
        if isinstance(body, dict) and body.get("kind") not in KINDS:
            return None, f"unknown runs-queue message kind {body.get('kind')!r}"
        first = err.errors()[0]
        return None, f"not a runs-queue message: {'.'.join(map(str, first['loc']))}: {first['msg']}"


def wire(message: RunsMessage) -> dict[str, Any]:
    """The message as it travels: a JSON object (an advance without a session leaves it out)."""
    return message.model_dump(mode="json", exclude={"session"} if getattr(message, "session", 0) is None else None)
