"""What a workflow step comes to (StepOutcome) and run_team's progress (TeamState): typed here,
stored and sent as the JSON objects they always were. A key that is sometimes left out of that
JSON (never written as null) is a field that is None and excluded when dumped."""
from __future__ import annotations

from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

# Such a key is typed `str | Absent` (Absent is None, to the type checker and to pydantic); the
# API documents it as optional and of its type only, without the `null` and the `default` pydantic
# would otherwise add. Not pydantic's SkipJsonSchema: importing pydantic.json_schema costs every
# function's cold start ~10-40 ms for a document only the API makes, and only when asked.
Absent: TypeAlias = None


def _optional_in_doc(schema: dict[str, Any]) -> None:
    schema.pop("default", None)
    kinds = [k for k in schema.pop("anyOf", []) if k != {"type": "null"}]
    if len(kinds) == 1:
        schema.update(kinds[0])
    elif kinds:
        schema["anyOf"] = kinds


def _is_none(value: Any) -> bool:
    return value is None


def absent(description: str | None = None) -> Any:
    """A field left out of the JSON when it is None."""
    return Field(None, description=description, json_schema_extra=_optional_in_doc, exclude_if=_is_none)


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")  # also what the API documents: no undocumented keys


class Usage(_Closed):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class StepOutcome(_Closed):
    """What a settled step came to: returned in its workflow's outcomes, in input order."""

    task_id: str
    session_id: str
    agent: str | None
    success: bool
    output: str
    error: str | Absent = absent("when success is false")
    run_id: str | Absent = absent("the step's child run, if it started one")
    usage: Usage
    structured: Any = absent("the output parsed, when the step asked for an output_schema")

    def wire(self) -> dict[str, Any]:
        """As the API returns it and DynamoDB keeps it."""
        return self.model_dump(mode="json")


class TeamTask(BaseModel):
    """One task the lead set: the latest work done for it and the reviewer's verdict."""

    id: str
    description: str
    approved: bool = False
    work: str | None = None      # set with run_id once a worker has done it (run_id null if it never ran)
    run_id: str | None = None
    feedback: str | None = None  # the last review's, or why the review failed

    @model_serializer(mode="wrap")
    def _as_stored(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if self.work is None:  # not done yet: neither key, as before
            data.pop("work", None)
            data.pop("run_id", None)
        if self.feedback is None:
            data.pop("feedback", None)
        return data


class TeamState(BaseModel):
    """run_team's progress, kept on its pending call between the child workflows of its phases."""

    phase: Literal["lead", "work", "review"] = "lead"
    round: int = 0
    tasks: list[TeamTask] = Field(default_factory=list)
    wid: str                                                # the child workflow of the current phase
    error: str | None = Field(None, exclude_if=_is_none)    # why the team stopped short
