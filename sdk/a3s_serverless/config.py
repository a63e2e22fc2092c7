"""Agent configuration in HCL (agent.hcl / agent.acl): the kit's own keys (endpoint, api_key,
default_model) and A3S Code's model settings (default_model = "provider/model", providers blocks).

A3S Code writes providers two ways, both read here:

    providers { name = "openai"  models { id = "gpt-4o" } }      # HCL
    providers "openai" { models "gpt-4o" { ... } }               # ACL (labels)

The model becomes a kit model name (model_names.py). Model credentials and URLs stay with the
deployment, so a config that sets them is refused rather than half-honoured; so is any key the
kit does not know, with its line.
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .model_names import kit_model

_ENV_CALL = re.compile(r'^\$\{env\("([^"]+)"\)\}$')

TOP = "the top level"
TOP_KEYS = {"endpoint", "api_key", "default_model", "providers", "max_parallel_tasks"}
STORAGE_KEYS = {"storage_backend", "sessions_dir", "storage_url"}  # accepted: the service keeps sessions
PROVIDER_KEYS = {"name", "models"}
MODEL_KEYS = {"id", "name", "family", "attachment", "reasoning", "tool_call", "toolCall", "temperature",
              "release_date", "releaseDate", "modalities", "cost", "limit"}  # descriptive only
# Provider or model keys that point the model elsewhere: the deployment decides that.
DEPLOYMENT_KEYS = {"api_key", "apiKey", "base_url", "baseUrl", "headers", "session_id_header", "sessionIdHeader"}
UNSUPPORTED = {  # A3S Code settings with no meaning here, and what to do instead
    "queue": "route lanes per session with session.set_lane_handler or SessionQueueConfig",
    "max_tool_rounds": "pass max_turns to session.send_async",
    "skill_dirs": "skills are not part of the kit", "skills": "skills are not part of the kit",
    "agent_dirs": "register subagents with session.register_agent or the AgentsJson parameter",
    "mcp_servers": "MCP servers are not part of the kit", "search": "web search is not part of the kit",
    "memory": "memory is not part of the kit", "memory_dir": "memory is not part of the kit",
    "thinking_budget": "set model options on the deployment",
    "llm_api_timeout_ms": "the deployment sets model timeouts",
    "auto_delegation": "the model delegates with the task tools", "auto_parallel": "use session.parallel",
}


@dataclass(frozen=True)
class AgentConfig:
    endpoint: str = "local"
    api_key: str | None = None
    default_model: str | None = None
    max_parallel_tasks: int | None = None
    providers: tuple[str, ...] = ()  # the A3S Code providers the config declares


@dataclass
class _Entry:
    """One attribute or block of the config, with the line it starts on."""
    name: str
    line: int
    value: Any = None              # attributes
    label: str | None = None       # blocks
    body: list[_Entry] | None = None

    @property
    def is_block(self) -> bool:
        return self.body is not None


def _entries(body: Any) -> list[_Entry]:
    from hcl2.rules.base import AttributeRule, BlockRule
    from hcl2.utils import SerializationOptions

    opts = SerializationOptions(strip_string_quotes=True, with_comments=False, explicit_blocks=False)
    out = []
    for child in body.children:
        # python-hcl2 (pinned) keeps no line numbers in its dicts, but its rules keep Lark's meta.
        if isinstance(child, AttributeRule):
            out.append(_Entry(child.identifier.serialize(opts), child.to_lark().meta.line,
                              value=child.expression.serialize(opts)))
        elif isinstance(child, BlockRule):
            name, *labels = [label.serialize(opts) for label in child.labels]
            out.append(_Entry(name, child.to_lark().meta.line, label=labels[0] if labels else None,
                              body=_entries(child.body)))
    return out


def _fail(entry: _Entry, message: str) -> ValueError:
    return ValueError(f"agent config line {entry.line}: {message}")


def _string(entry: _Entry) -> str | None:
    """A string attribute; `env("NAME")` reads the environment at load time (None if unset)."""
    if entry.is_block or not isinstance(entry.value, str):
        raise _fail(entry, f"{entry.name} must be a string or env(\"NAME\")")
    m = _ENV_CALL.match(entry.value)
    if m:
        return os.environ.get(m.group(1))
    if "${" in entry.value:
        raise _fail(entry, f"{entry.name} must be a plain string or env(\"NAME\"), not an expression")
    return entry.value


def _check_keys(entries: list[_Entry], allowed: set[str], where: str) -> dict[str, _Entry]:
    """Refuse unknown, unsupported and repeated keys; the single entries by name."""
    top = where == TOP
    seen: dict[str, _Entry] = {}
    for e in entries:
        if e.name in DEPLOYMENT_KEYS and not top:  # at the top, api_key is the kit's own
            raise _fail(e, f"{e.name} in {where}: a3s-serverless takes model credentials and URLs from the "
                           "deployment (template parameters OpenAIBaseUrl / OpenAIApiKey, or OPENAI_BASE_URL / "
                           "OPENAI_API_KEY for the embedded stack; Bedrock uses the function's IAM role), "
                           "never from the client; remove it here")
        if e.name in UNSUPPORTED and top:
            raise _fail(e, f"{e.name!r} (an A3S Code setting) is not supported by a3s-serverless: "
                           f"{UNSUPPORTED[e.name]}")
        if e.name not in allowed:
            raise _fail(e, f"unknown key {e.name!r} in {where}; allowed: {', '.join(sorted(allowed))}")
        if e.name in seen and not e.is_block:
            raise _fail(e, f"{e.name} is set twice (first on line {seen[e.name].line})")
        seen.setdefault(e.name, e)
    return seen


def _provider(block: _Entry) -> str:
    """The provider's name (label or `name`); its models are descriptive and only checked."""
    keys = _check_keys(block.body or [], PROVIDER_KEYS, f'providers "{block.label}"' if block.label else "providers")
    name = block.label or (_string(keys["name"]) if "name" in keys else None)
    if not name:
        raise _fail(block, 'providers needs a name: providers "openai" { ... } or name = "openai"')
    for model in (e for e in block.body or [] if e.name == "models"):
        if not model.is_block:
            raise _fail(model, "models must be a block")
        mkeys = _check_keys(model.body or [], MODEL_KEYS, f"models of provider {name!r}")
        if not (model.label or ("id" in mkeys and _string(mkeys["id"]))):
            raise _fail(model, 'models needs an id: models "gpt-4o" { ... } or id = "gpt-4o"')
    return name


def _positive_int(entry: _Entry) -> int:
    if isinstance(entry.value, bool) or not isinstance(entry.value, int) or entry.value < 1:
        raise _fail(entry, f"{entry.name} must be a positive integer, got {entry.value!r}")
    return entry.value


def _parse(source: str) -> list[_Entry]:
    import hcl2
    from lark.exceptions import UnexpectedInput

    try:
        return _entries(hcl2.parses(source).body)
    except UnexpectedInput as err:
        raise ValueError(f"agent config is not valid HCL (line {err.line}, column {err.column}): "
                         f"{str(err).splitlines()[0]}") from err
    except Exception as err:  # the parser raises a few other kinds on odd input
        raise ValueError(f"agent config is not valid HCL: {err}") from err


def load_config(source: str) -> AgentConfig:
    """`source` is HCL text, or the path of a file holding it."""
    if "\n" not in source and "=" not in source:
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"agent config {source!r} is neither HCL text nor an existing file")
        source = path.read_text()
    entries = _parse(source)
    keys = _check_keys(entries, TOP_KEYS | STORAGE_KEYS, TOP)
    storage = sorted(STORAGE_KEYS & keys.keys(), key=lambda k: keys[k].line)
    if storage:
        where = ", ".join(f"{k} (line {keys[k].line})" for k in storage)
        warnings.warn(f"agent config: {where} accepted for compatibility; the service keeps sessions "
                      "and journals in DynamoDB", stacklevel=3)
    providers: list[str] = []
    for block in (e for e in entries if e.name == "providers"):
        if not block.is_block:
            raise _fail(block, "providers must be a block")
        providers.append(_provider(block))
    model = None
    if "default_model" in keys:
        entry = keys["default_model"]
        raw = _string(entry)
        try:
            model = kit_model(raw, providers) if raw else None
        except ValueError as err:
            raise _fail(entry, f"default_model: {err}") from None
    value = {k: _string(keys[k]) if k in keys else None for k in ("endpoint", "api_key")}
    return AgentConfig(endpoint=value["endpoint"] or os.environ.get("A3S_ENDPOINT") or "local",
                       api_key=value["api_key"] or os.environ.get("A3S_API_KEY"), default_model=model,
                       max_parallel_tasks=_positive_int(keys["max_parallel_tasks"])
                       if "max_parallel_tasks" in keys else None,
                       providers=tuple(providers))
