"""A3S Code's "provider/model" names as the kit names its models (scripted, bedrock/<id>,
openai/<model>; layers/core/a3s_core/llm/base.py)."""
from __future__ import annotations

import re

# An Anthropic model as Bedrock names it (optionally behind a cross-region inference profile).
_BEDROCK_ANTHROPIC_ID = re.compile(r"^(?:[a-z]{2,6}\.)?anthropic\.")


def provider_prefix(provider: str, model: str) -> str:
    """The kit model prefix for an A3S Code provider, as A3S Code picks its client: Anthropic's
    own API for anthropic/claude, an OpenAI-compatible one for every other name."""
    if provider == "bedrock":
        return "bedrock"
    if provider in ("anthropic", "claude"):
        if _BEDROCK_ANTHROPIC_ID.match(model):
            return "bedrock"
        raise ValueError(f"model {provider}/{model}: a3s-serverless reaches Anthropic models through Amazon "
                         "Bedrock only; name the Bedrock model id or inference profile, e.g. "
                         '"anthropic/anthropic.claude-3-5-sonnet-20240620-v1:0" or '
                         '"bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0"')
    return "openai"


def kit_model(name: str, providers: tuple[str, ...] | list[str]) -> str:
    """A3S Code's "provider/model" as the kit names it, for providers the config declares (and
    anthropic/claude, which the kit cannot take as they are); other names pass unchanged."""
    provider, slash, model = name.partition("/")
    if providers and not slash and name != "scripted":
        raise ValueError(f'model {name!r} must be "provider/model" with one of the providers {list(providers)}')
    if provider not in providers and provider not in ("anthropic", "claude"):
        return name
    if not slash or not model:
        raise ValueError(f'model {name!r} must be "provider/model" (or "scripted")')
    return f"{provider_prefix(provider, model)}/{model}"
