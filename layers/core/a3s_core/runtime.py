"""What a function needs at run time: settings from its environment, and lazily built clients.

Nothing here runs at import time, and a cold start builds only what its function uses: each client,
the store and the queues are made on first use (the authorizer, one GetItem, never imports the
models or the engine). Tests and the embedded stack inject a Runtime of their own.
"""
from __future__ import annotations

import fnmatch
import gc
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from a3s_core.domain.lane_names import LANES

if TYPE_CHECKING:
    from a3s_core.engine.queues import Queues
    from a3s_core.store.base import Store

SECRET_MAX_AGE_S = 900  # how stale a cached secret (the model key) may get in a warm container


@dataclass(frozen=True)
class Settings:
    table: str
    runs_queue_url: str
    lane_queue_urls: dict[str, str]
    bucket: str = ""
    default_model: str = "scripted"
    lease_seconds: int = 120
    workspace_root: str = ""   # where non-existent workspace paths are made (embedded stack)
    agents_json: str = ""      # A3S_AGENTS: subagents defined for the whole deployment
    skills_json: str = ""      # A3S_SKILLS: skills every session may load
    sandbox_function: str = ""  # A3S_SANDBOX_FUNCTION: the SandboxFunction; empty: run tools isolated here
    host_tenant: str = ""      # A3S_HOST_TENANT: the one tenant that may name host directories (embedded stack)
    lane_worker: bool = False  # A3S_LANE_WORKER: the kit's own worker drains the execute lane
    allowed_models: tuple[str, ...] = ()  # names or patterns; empty: the default model only
    openai_key_secret_arn: str = ""  # the run driver's only: the model key in Secrets Manager
    retention_days: int = 30   # A3S_RETENTION_DAYS: items expire this long after their last write
    ws_endpoint: str = ""      # A3S_WS_ENDPOINT: the WebSocket API's management endpoint (https://.../stage)
    ws_url: str = ""           # A3S_WS_URL: where clients connect (wss://.../stage)
    driver_function: str = ""  # A3S_DRIVER_FUNCTION: hand runs to the run driver by invocation (queues.py)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        return cls(
            table=env["A3S_TABLE"],
            runs_queue_url=env["A3S_RUNS_QUEUE_URL"],
            lane_queue_urls={lane: env[f"A3S_LANE_QUEUE_{lane.upper()}"] for lane in LANES},
            bucket=env.get("A3S_BUCKET", ""),
            default_model=env.get("A3S_DEFAULT_MODEL") or "scripted",
            lease_seconds=int(env.get("A3S_RUN_LEASE_SECONDS") or 120),
            workspace_root=env.get("A3S_WORKSPACE_ROOT", ""),
            agents_json=env.get("A3S_AGENTS", ""),
            skills_json=env.get("A3S_SKILLS", ""),
            sandbox_function=env.get("A3S_SANDBOX_FUNCTION", ""),
            host_tenant=env.get("A3S_HOST_TENANT", ""),
            lane_worker=env.get("A3S_LANE_WORKER", "false") == "true",
            allowed_models=tuple(m.strip() for m in env.get("A3S_ALLOWED_MODELS", "").split(",") if m.strip()),
            openai_key_secret_arn=env.get("OPENAI_API_KEY_SECRET_ARN", ""),
            retention_days=int(env.get("A3S_RETENTION_DAYS") or 30),
            ws_endpoint=env.get("A3S_WS_ENDPOINT", ""),
            ws_url=env.get("A3S_WS_URL", ""),
            driver_function=env.get("A3S_DRIVER_FUNCTION", ""),
        )

    def model_allowed(self, model: str) -> bool:
        """The default model always; others if AllowedModels names them (fnmatch patterns, * for any)."""
        return model == self.default_model or any(fnmatch.fnmatchcase(model, p) for p in self.allowed_models)


class Lazy:
    """Stands for the object `build` makes, and makes it on first use (once, even from several threads)."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build, self._built, self._lock = build, None, threading.Lock()

    def resolve(self) -> Any:
        if self._built is None:
            with self._lock:
                if self._built is None:
                    self._built = self._build()
        return self._built

    def __getattr__(self, name: str) -> Any:
        if name in ("_build", "_built", "_lock"):  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self.resolve(), name)


@dataclass
class Runtime:
    settings: Settings
    store: Store
    queues: Queues
    clock: Callable[[], int] = field(default=lambda: int(time.time() * 1000))
    s3: Any = None  # workspaces on S3, when there is no local directory to work in
    sandbox: Any = None  # where tools that run code execute (sandbox.Sandbox); None: in this process

    session: Any = None  # the boto3 session the clients come from
    api_keys: Any = None  # where the authorizer looks keys up (store/api_keys.py); None: the store
    connections: Any = None  # posts frames to WebSocket connections (engine/push.py); None: nobody to push to
    _secrets: dict[str, tuple[str, float]] = field(default_factory=dict, init=False, repr=False)

    def tool_sandbox(self) -> Any:
        if self.sandbox is None:
            from a3s_core.tools.sandbox import LocalSandbox

            self.sandbox = LocalSandbox()
        return self.sandbox

    def poster(self) -> Any:
        """What delivers frames to WebSocket connections (post(connection_id, data)), or None."""
        return self.connections

    def secret(self, arn: str) -> str:
        """A Secrets Manager secret's value, fetched on first use and then at most every
        SECRET_MAX_AGE_S: not a call per model turn, yet a rotated key reaches warm containers."""
        cached = self._secrets.get(arn)
        if cached is None or time.monotonic() - cached[1] > SECRET_MAX_AGE_S:
            import boto3

            client = (self.session or boto3.session.Session()).client("secretsmanager")
            cached = self._secrets[arn] = (client.get_secret_value(SecretId=arn)["SecretString"], time.monotonic())
        return cached[0]

    def tenant_for_key(self, key_hash: str) -> str | None:
        return (self.store if self.api_keys is None else self.api_keys).tenant_for_key(key_hash)

    def agent(self, name: str, session: Any = None) -> Any:
        """The named subagent's definition as this session sees it (None if there is none)."""
        from a3s_core.domain.agents import deployment_agents, resolve_agent

        return resolve_agent(name, session.agents if session is not None else None,
                             deployment_agents(self.settings.agents_json))

    def wake(self, tenant: str, run_id: str, from_status: str = "waiting", nudge: bool = True) -> bool:
        """waiting (or paused) -> queued, and hand it over: a no-op for all but the caller that wins.
        A run still running (its driver about to suspend it) is nudged instead: that driver's next
        checkpoint is Interrupted and it looks again, so the news is never lost between the two."""
        for _ in range(5):  # each miss means the run moved on: running -> waiting at most once more
            if self.store.wake_run(tenant, run_id, from_status):
                from a3s_core.engine.queues import advance_message

                self.queues.hand_over(advance_message(tenant, run_id))
                from a3s_core import telemetry

                telemetry.run_resumed(tenant, run_id, from_status)
                return True
            if not nudge or from_status != "waiting" or self.store.nudge_run(tenant, run_id):
                return False
            if self.store.run_status(tenant, run_id) != "waiting":
                return False  # queued, paused, done or gone: whoever holds it next looks at everything
        return False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, session: Any = None) -> Runtime:
        settings = Settings.from_env(os.environ if env is None else env)
        session = Lazy(_session) if session is None else session
        dynamodb, s3 = Lazy(lambda: _client(session, "dynamodb")), Lazy(lambda: _client(session, "s3"))
        sqs = Lazy(lambda: _client(session, "sqs"))

        def driver_client() -> Any:
            from botocore.config import Config

            # A hand-over that does not go at once goes through the runs queue: no long retries.
            config = Config(connect_timeout=2, read_timeout=5, retries={"total_max_attempts": 2})
            with _CLIENT_LOCK:
                return session.client("lambda", config=config)

        def store() -> Any:
            from a3s_core.store.dynamo import DynamoStore

            return DynamoStore(dynamodb, settings.table, s3=s3, bucket=settings.bucket,
                               retention_days=settings.retention_days)

        def queues() -> Any:
            from a3s_core.engine.queues import SqsQueues

            driver = (Lazy(driver_client), settings.driver_function) if settings.driver_function else None
            return SqsQueues(sqs, settings.runs_queue_url, settings.lane_queue_urls, driver)

        def sandbox() -> Any:
            from botocore.config import Config

            from a3s_core.tools.sandbox import LambdaSandbox

            # A tool may run for minutes, and a retried invocation would run it twice.
            invoke = Config(read_timeout=910, connect_timeout=10, retries={"total_max_attempts": 1})
            with _CLIENT_LOCK:
                client = session.client("lambda", config=invoke)
            return LambdaSandbox(client, settings.sandbox_function, s3, settings.bucket)

        def connections() -> Any:
            from botocore.config import Config

            from a3s_core.engine.push import ApiGatewayPoster

            # A post is quick or pointless: a short timeout, and no retry storm on a gone connection.
            config = Config(connect_timeout=2, read_timeout=3, retries={"total_max_attempts": 2})
            with _CLIENT_LOCK:
                client = session.client("apigatewaymanagementapi", endpoint_url=settings.ws_endpoint, config=config)
            return ApiGatewayPoster(client)

        from a3s_core.store.api_keys import DynamoApiKeys

        return cls(settings=settings, s3=s3, session=session, store=Lazy(store), queues=Lazy(queues),
                   sandbox=Lazy(sandbox) if settings.sandbox_function else None,
                   api_keys=DynamoApiKeys(dynamodb, settings.table),
                   connections=Lazy(connections) if settings.ws_endpoint else None)


_CLIENT_LOCK = threading.Lock()


def _session() -> Any:
    import boto3

    return boto3.session.Session()


def _client(session: Any, service: str) -> Any:
    from botocore.config import Config

    # Adaptive retries absorb throttling instead of surfacing it as failed work. A boto3 session is
    # not thread-safe, and clients built on first use may be asked for from several threads at once.
    with _CLIENT_LOCK:
        return session.client(service, config=Config(retries={"mode": "adaptive", "max_attempts": 8}))


_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    """The process-wide runtime, built from the environment on first use (a Lambda cold start)."""
    global _runtime
    if _runtime is None:
        # What the imports made lives as long as the process, yet each full collection walks it
        # again (~50 ms with pydantic and botocore loaded, once or more in a cold start): frozen, it
        # is left out. (Tests and the embedded stack inject their runtime and never get here.)
        gc.freeze()
        _runtime = Runtime.from_env()
    return _runtime


def current_runtime() -> Runtime | None:
    """The runtime this process has built or been given, if any (never builds one)."""
    return _runtime


def set_runtime(runtime: Runtime | None) -> None:
    global _runtime
    _runtime = runtime
