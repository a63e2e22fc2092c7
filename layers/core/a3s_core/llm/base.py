"""The model interface: one `complete` call per agent turn (adapters: llm/registry.py picks one).

Conversation messages are plain dicts:
- ``{"role": "user", "content": str}``
- ``{"role": "assistant", "content": str, "tool_calls": [{"id", "name", "arguments": dict}]}``
  (``tool_calls`` may be empty or missing)
- ``{"role": "tool", "tool_call_id": str, "name": str, "content": str, "is_error": bool}``

Tools are ``{"name", "description", "input_schema"}`` dicts (see ``a3s_core.tools.builtin.TOOL_SCHEMAS``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

StopReason = Literal["end_turn", "tool_use"]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict

    def to_dict(self) -> dict:
        """The form an assistant message's ``tool_calls`` entries take."""
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class ModelResponse:
    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    stop_reason: StopReason = "end_turn"


class ModelError(Exception):
    """A model call failed; the message is the provider's."""


class ModelClient(Protocol):
    def complete(
        self,
        messages: list[dict],
        tools: list[dict],
        system: str | None = None,
        *,
        output_schema: dict | None = None,
    ) -> ModelResponse:
        """One turn. ``output_schema`` is a hint: real adapters may ignore it (the engine puts
        the contract in the prompt); the scripted model answers with the schema's smallest instance."""
        ...
