"""Where the CLI connects and with which key: flag, then environment, then the HCL config file."""
from __future__ import annotations

import os
from pathlib import Path

from ..config import AgentConfig, load_config
from ..transport import HttpTransport
from .output import USAGE, Fail

# Long polls ask for at most 20 s; the socket waits a little longer than any of them.
TIMEOUT_S = 60.0


def _config(path: str | None) -> AgentConfig | None:
    if not path:
        return None
    file = Path(path)
    if not file.is_file():
        raise Fail(USAGE, f"config file {path!r} does not exist")
    try:
        # As text, never as a path: load_config takes a one-line string without "=" for a file name.
        return load_config(file.read_text() + "\n")
    except (ValueError, OSError, UnicodeDecodeError) as err:
        raise Fail(USAGE, f"config file {path}: {err}") from None


def resolve(endpoint: str | None, api_key: str | None, config: str | None) -> tuple[str, str]:
    """(endpoint, api_key), each the first set of: the flag, A3S_ENDPOINT / A3S_API_KEY, the config."""
    cfg = _config(config)
    # load_config falls back to the environment itself; the environment is consulted first here anyway.
    endpoint = endpoint or os.environ.get("A3S_ENDPOINT") or (cfg.endpoint if cfg else None)
    api_key = api_key or os.environ.get("A3S_API_KEY") or (cfg.api_key if cfg else None)
    if not endpoint:
        raise Fail(USAGE, "no endpoint: pass --endpoint URL, set A3S_ENDPOINT, or name a config file "
                          "with endpoint = \"https://...\" (--config PATH)")
    if endpoint == "local":
        raise Fail(USAGE, "endpoint \"local\" is the in-process stack of Agent.local(); the a3s CLI speaks "
                          "HTTP: start `a3s dev` and use --endpoint http://127.0.0.1:8787")
    if not api_key:
        raise Fail(USAGE, "no API key: pass --api-key KEY, set A3S_API_KEY, or set api_key in the config "
                          "file (--config PATH)")
    return endpoint, api_key


def transport(endpoint: str | None, api_key: str | None, config: str | None) -> HttpTransport:
    url, key = resolve(endpoint, api_key, config)
    try:
        return HttpTransport(url, key, timeout_s=TIMEOUT_S)
    except ValueError as err:
        raise Fail(USAGE, str(err)) from None
