"""The registry of model adapters: a model name (`provider/model-id`) picks one. Adding a provider
is one factory here and its adapter module beside it."""
from __future__ import annotations

from collections.abc import Callable

from a3s_core.llm.base import ModelClient


def _scripted(model_id: str) -> ModelClient:
    from a3s_core.llm.scripted import ScriptedModel  # lazy: each adapter loads only when named

    return ScriptedModel()


def _bedrock(model_id: str) -> ModelClient:
    from a3s_core.llm.bedrock import BedrockModel  # lazy: only Bedrock deployments load boto3's runtime client

    return BedrockModel(_required_id("bedrock", model_id))


def _openai(name: str) -> ModelClient:
    from a3s_core.llm.openai import OpenAIModel  # lazy: it reads OPENAI_* env at construction

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
