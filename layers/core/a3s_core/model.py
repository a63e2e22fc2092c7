"""The model interface: one `complete` call per agent turn, and the registry of model adapters.

Conversation messages are plain dicts:
- ``{"role": "user", "content": str}``
- ``{"role": "assistant", "content": str, "tool_calls": [{"id", "name", "arguments": dict}]}``
  (``tool_calls`` may be empty or missing)
- ``{"role": "tool", "tool_call_id": str, "name": str, "content": str, "is_error": bool}``

Tools are ``{"name", "description", "input_schema"}`` dicts (see ``a3s_core.tools.TOOL_SCHEMAS``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Protocol

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


def _scripted(model_id: str) -> ModelClient:
    from .scripted import ScriptedModel  # lazy: scripted imports this module

    return ScriptedModel()


def _bedrock(model_id: str) -> ModelClient:
    from .model_bedrock import BedrockModel  # lazy: only Bedrock deployments load boto3's runtime client

    return BedrockModel(_required_id("bedrock", model_id))


def _openai(name: str) -> ModelClient:
    from .model_openai import OpenAIModel  # lazy: it reads OPENAI_* env at construction

    return OpenAIModel(_required_id("openai", name))


def _required_id(provider: str, model_id: str) -> str:
    if not model_id:
        raise ValueError(f"model {provider!r} needs a model id: use '{provider}/<model-id>'")
    return model_id


# Extension point: provider prefix (the part of the model name before the first "/", or the
# whole name) -> factory called with the rest of the name.
MODEL_FACTORIES: dict[str, Callable[[str], ModelClient]] = {
    "scripted": _scripted,
    "bedrock": _bedrock,  # bedrock/<model-id or inference profile>
    "openai": _openai,  # openai/<model> on any OpenAI-compatible endpoint (OPENAI_BASE_URL)
}


def get_model(name: str) -> ModelClient:
    provider, _, model_id = name.partition("/")
    factory = MODEL_FACTORIES.get(provider)
    if factory is None:
        raise ValueError(f"unknown model {name!r}")
    return factory(model_id)
