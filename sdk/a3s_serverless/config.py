"""Agent configuration in HCL (agent.acl / agent.hcl): endpoint, api_key, default_model."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

_ENV_CALL = re.compile(r'^\$\{env\("([^"]+)"\)\}$')


@dataclass(frozen=True)
class AgentConfig:
    endpoint: str = "local"
    api_key: str | None = None
    default_model: str | None = None


def _value(raw: object) -> str | None:
    """A string attribute; `env("NAME")` reads the environment at load time."""
    if raw is None:
        return None
    text = str(raw).strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    m = _ENV_CALL.match(text)
    if m:
        return os.environ.get(m.group(1))
    return text


def load_config(source: str) -> AgentConfig:
    """`source` is HCL text, or the path of a file holding it."""
    import hcl2

    if "\n" not in source and "=" not in source:
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"agent config {source!r} is neither HCL text nor an existing file")
        source = path.read_text()
    try:
        data = hcl2.loads(source)
    except Exception as err:  # hcl2 raises lark errors of several kinds
        raise ValueError(f"agent config is not valid HCL: {err}") from err
    endpoint = _value(data.get("endpoint")) or os.environ.get("A3S_ENDPOINT") or "local"
    return AgentConfig(endpoint=endpoint, api_key=_value(data.get("api_key")) or os.environ.get("A3S_API_KEY"),
                       default_model=_value(data.get("default_model")))
