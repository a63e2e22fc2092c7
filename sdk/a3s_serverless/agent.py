"""Agent: where sessions come from. Agent.local() embeds the whole stack in this process."""
from __future__ import annotations

import os
from typing import Any

from .config import AgentConfig, load_config
from .extras import LOCAL, require
from .model_names import kit_model
from .orchestration import warn_session_store
from .orchestrator import AgentOrchestrator
from .session import Session, SessionOptions, SessionQueueConfig
from .transport import HttpTransport, Transport

DEFAULT_MAX_PARALLEL_TASKS = 8


class Agent:
    def __init__(self, transport: Transport, default_model: str | None = None, local: bool = False) -> None:
        self._t, self.default_model, self._local = transport, default_model, local
        self.max_parallel_tasks = DEFAULT_MAX_PARALLEL_TASKS
        self._providers: tuple[str, ...] = ()  # A3S Code providers of the config: their models are mapped

    @classmethod
    def local(cls, default_model: str | None = None, *, parameters: dict[str, str] | None = None,
              tenant: str | None = None) -> Agent:
        """The embedded stack: moto's in-memory AWS and the kit's own handlers, in this process.

        `parameters` are template parameters for the stack (e.g. {"EnableLaneWorker": "true"}); a
        process has one stack. `tenant` talks to it as another tenant, with workspaces of its own."""
        embedded = require("a3s_local.embedded", "Agent.local()", LOCAL)  # moto, the core, the template

        if parameters is not None and (
                not isinstance(parameters, dict)
                or not all(isinstance(k, str) and isinstance(v, str) for k, v in parameters.items())):
            raise ValueError("parameters must be a dict of template parameter names to string values")
        if tenant is not None and not isinstance(tenant, str):
            raise ValueError(f"tenant must be a string, got {tenant!r}")
        stack = embedded.shared_stack(parameters)
        host = tenant in (None, embedded.LOCAL_TENANT)
        # Only the default tenant works in this machine's directories; others name workspaces
        # relative to their own root.
        return cls(stack.transport(stack.tenant_key(tenant or embedded.LOCAL_TENANT)), default_model, local=host)

    @classmethod
    def connect(cls, endpoint: str, api_key: str | None = None, default_model: str | None = None) -> Agent:
        return cls(HttpTransport(endpoint, api_key or os.environ.get("A3S_API_KEY")), default_model)

    @classmethod
    def create(cls, config: str) -> Agent:
        """From HCL text or a file path: the kit's `endpoint` ("local" or a URL) and `api_key`, and
        A3S Code's `default_model`, `providers` and `max_parallel_tasks` (see config.py)."""
        if not isinstance(config, str) or not config.strip():
            raise ValueError("Agent.create needs HCL text or the path of a config file")
        cfg: AgentConfig = load_config(config)
        if cfg.endpoint == "local":
            agent = cls.local(cfg.default_model)
        else:
            agent = cls.connect(cfg.endpoint, cfg.api_key, cfg.default_model)
        agent._providers = cfg.providers
        agent.max_parallel_tasks = cfg.max_parallel_tasks or DEFAULT_MAX_PARALLEL_TASKS
        return agent

    @classmethod
    def default(cls) -> Agent:
        """The agent of this environment: the deployment at A3S_ENDPOINT (with A3S_API_KEY), else
        the embedded stack, as Agent.create decides for a config that names no endpoint."""
        endpoint = os.environ.get("A3S_ENDPOINT") or "local"
        return cls.local() if endpoint == "local" else cls.connect(endpoint)

    def orchestrator(self) -> AgentOrchestrator:
        """Pause, resume, cancel and inject into any run of this tenant (A3S Code's AgentOrchestrator)."""
        return AgentOrchestrator(self._t)

    def session(self, workspace: str = ".", options: SessionOptions | None = None, **kwargs: Any) -> Session:
        if options is not None and not isinstance(options, SessionOptions):
            raise ValueError(f"options must be a SessionOptions, got {type(options).__name__}")
        opts = options or SessionOptions()
        for key, value in kwargs.items():
            if not hasattr(opts, key):
                raise ValueError(f"unknown session option {key!r}")
            setattr(opts, key, value)
        workspace = opts.workspace or workspace
        if not isinstance(workspace, str) or not workspace:
            raise ValueError(f"workspace must be a non-empty string, got {workspace!r}")
        if opts.queue_config is not None and not isinstance(opts.queue_config, SessionQueueConfig):
            raise ValueError("queue_config must be a SessionQueueConfig")
        max_parallel = self.max_parallel_tasks if opts.max_parallel_tasks is None else opts.max_parallel_tasks
        if isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 1:
            raise ValueError(f"max_parallel_tasks must be a positive integer, got {max_parallel!r}")
        if opts.model is not None and (not isinstance(opts.model, str) or not opts.model.strip()):
            raise ValueError(f"model must be a non-empty string, got {opts.model!r}")
        model = kit_model(opts.model, self._providers) if opts.model else self.default_model
        if opts.session_store is not None:
            warn_session_store()
        if self._local:  # the embedded stack shares this machine's filesystem
            workspace = os.path.abspath(workspace) if not workspace.startswith("/") else workspace
        queue = opts.queue_config.to_body() if opts.queue_config is not None else None  # checks it too
        body: dict[str, Any] = {"workspace": workspace, "model": model,
                                "permissive": bool(opts.permissive), "builtin_skills": bool(opts.builtin_skills),
                                "max_parallel_tasks": max_parallel}
        if queue is not None:
            body["queue_config"] = queue
        return Session(self._t, self._t.request("POST", "/sessions", body))
