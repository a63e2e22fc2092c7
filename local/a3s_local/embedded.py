"""The embedded local stack: moto's in-memory AWS, provisioned from template.yaml, with the kit's
own handlers run in-process. HTTP requests become API Gateway v2 events; an SQS pump per event
source delivers batches as Lambda does (batch size, visibility timeout, redelivery,
ReportBatchItemFailures, DLQ after maxReceiveCount).

Development tooling only: deployed code never imports this module or moto.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import logging
import os
import re
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .async_invoke import AsyncInvocations
from .moto_patches import apply_all as patch_moto
from .template import Route, StackModel, load_stack, provision

log = logging.getLogger("a3s_local")

LOCAL_API_KEY = "a3s-local-key"
LOCAL_TENANT = "local"
# A laptop is no Lambda: no hard kill at the timeout, so the lease and visibility windows only
# bound how long a crashed driver's work waits before it is delivered again. Local sessions may
# name any model (the scripted one, a local server); a deployment allows only its DefaultModel.
LOCAL_PARAMETERS = {"DriverTimeout": "30", "RunsVisibilityTimeout": "35", "LaneVisibilityTimeout": "30",
                    "AllowedModels": "*"}
# Powertools off AWS: no X-Ray, no EMF lines, and only warnings and errors in the logs, so a script
# using Agent.local() (or `make dev`) is not buried in JSON. Set any of them in the environment to
# see more, e.g. POWERTOOLS_LOG_LEVEL=INFO make dev.
LOCAL_TELEMETRY = {"POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true",
                   "POWERTOOLS_LOG_LEVEL": "WARNING"}
TEMPLATE_TELEMETRY = ("POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE")


MAX_LOCAL_CONCURRENCY = 16  # invocations at once per event source, whatever the template allows


def threadsafe_powertools() -> None:
    """Powertools keeps the request being resolved in class attributes of BaseRouter: right for a
    Lambda process, which serves one request at a time, wrong for the embedded stack, which serves
    many at once on threads. Here they are made per thread, for this process only."""
    from aws_lambda_powertools.event_handler.api_gateway import BaseRouter

    if getattr(BaseRouter, "a3s_threadsafe", False):
        return
    local = threading.local()

    def attribute(name: str) -> property:
        return property(lambda _self: getattr(local, name, None), lambda _self, value: setattr(local, name, value))

    for name in ("current_event", "lambda_context"):
        setattr(BaseRouter, name, attribute(name))  # read through an instance
    meta = type(BaseRouter)
    # read and set on the class; mypy takes __class__ for a method, but a class's metaclass can be swapped
    BaseRouter.__class__ = type("ThreadLocalRouterMeta", (meta,), {  # type: ignore[method-assign]
        "current_event": attribute("current_event"), "lambda_context": attribute("lambda_context"),
        "a3s_threadsafe": True})


def _unsigned(**_: Any) -> Any:
    from botocore import UNSIGNED

    return UNSIGNED


def function_only_environment(functions: dict[str, Any]) -> dict[str, str]:
    """The variables functions declare beyond the environment all of them share (e.g. the run
    driver's A3S_MAX_RECEIVE_COUNT). Lambda gives each function an environment of its own; here the
    handlers share one process, so these are exported to it, and two functions must agree on one."""
    # A blank value is a function opting out of a shared variable (the sandbox blanks them all).
    envs = [f.environment for f in functions.values()]
    shared = {k for k, v in envs[0].items() if all(e.get(k) in (v, "") for e in envs)} if envs else set()
    extra: dict[str, str] = {}
    for env in envs:
        for k, v in env.items():
            if v != "" and k not in shared and extra.setdefault(k, v) != v:
                raise ValueError(f"functions set {k} to different values; the embedded stack has one environment")
    return extra


def kit_root() -> Path:
    """The checkout holding template.yaml (the SDK is installed from it in editable mode)."""
    env = os.environ.get("A3S_KIT_ROOT")
    root = Path(env) if env else Path(__file__).resolve().parents[2]
    if not (root / "template.yaml").is_file():
        raise RuntimeError(f"template.yaml not found under {root}; set A3S_KIT_ROOT to the kit's checkout")
    return root


class LambdaContext:
    """The parts of the Lambda context object the handlers and Powertools use."""

    def __init__(self, name: str, timeout_s: int, memory: int) -> None:
        self.function_name = name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class Function:
    """One function of the template. Like Lambda, each concurrent invocation gets a container of
    its own (a fresh import of the handler module), reused once it is free: handlers and the
    libraries they use may keep per-invocation state at module level, as Powertools does."""

    def __init__(self, logical_id: str, code_dir: Path, handler: str, timeout: int, memory: int) -> None:
        module_name, _, self._attr = handler.rpartition(".")
        self._path = code_dir / f"{module_name}.py"
        self.logical_id, self.timeout, self.memory = logical_id, timeout, memory
        self._idle: list[Callable[[dict, Any], Any]] = []
        self._lock = threading.Lock()
        self.containers = 0
        self.invocations = 0
        self._idle.append(self._cold_start())  # fail fast on a broken handler

    def _cold_start(self) -> Callable[[dict, Any], Any]:
        with self._lock:
            self.containers += 1
            n = self.containers
        spec = importlib.util.spec_from_file_location(f"a3s_fn_{self.logical_id}_{n}", self._path)
        if spec is None or spec.loader is None:
            raise RuntimeError(f"cannot load {self._path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return getattr(module, self._attr)

    def invoke(self, event: dict) -> Any:
        with self._lock:
            handler = self._idle.pop() if self._idle else None
            self.invocations += 1
        handler = handler or self._cold_start()
        try:
            return handler(event, LambdaContext(self.logical_id, self.timeout, self.memory))
        finally:
            with self._lock:
                self._idle.append(handler)


class Pump:
    """Lambda's SQS poller for one event source: receive a batch, invoke, delete what succeeded.

    One poller per event source; up to `concurrency` invocations at once, as Lambda scales out.
    """

    def __init__(self, stack: EmbeddedStack, function: Function, queue_url: str, queue_arn: str,
                 batch_size: int, report_failures: bool, concurrency: int = 4) -> None:
        self.stack, self.function, self.url, self.arn = stack, function, queue_url, queue_arn
        self.batch_size, self.report_failures = batch_size, report_failures
        self.inflight = 0
        self.peak = 0  # most invocations in flight at once
        self.invocations = 0
        self._slots = threading.BoundedSemaphore(concurrency)
        self._count = threading.Lock()
        self._poller = threading.Thread(target=self._loop, daemon=True, name=f"pump-{function.logical_id}")

    def start(self) -> None:
        self._poller.start()

    def join(self) -> None:
        self._poller.join(timeout=5)

    def _loop(self) -> None:
        while not self.stack.stopping.is_set():
            if not self._slots.acquire(timeout=0.5):
                continue
            try:
                msgs = self.stack.sqs.receive_message(
                    QueueUrl=self.url, MaxNumberOfMessages=self.batch_size, WaitTimeSeconds=1,
                    AttributeNames=["All"], MessageAttributeNames=["All"]).get("Messages", [])
            except Exception:  # the stack is being torn down, or moto hiccuped: poll again
                msgs = []
                if not self.stack.stopping.is_set():
                    log.exception("pump %s", self.function.logical_id)
            if not msgs:
                self._slots.release()
                continue
            with self._count:
                self.inflight += 1
                self.peak = max(self.peak, self.inflight)
            threading.Thread(target=self._run, args=(msgs,), daemon=True).start()

    def _run(self, msgs: list[dict]) -> None:
        try:
            self._invoke(msgs)
        except Exception:
            log.exception("pump %s", self.function.logical_id)
        finally:
            with self._count:
                self.inflight -= 1
            self._slots.release()

    def _invoke(self, msgs: list[dict]) -> None:
        records = [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                    "attributes": m.get("Attributes", {}), "messageAttributes": m.get("MessageAttributes", {}),
                    "md5OfBody": m.get("MD5OfBody", ""), "eventSource": "aws:sqs", "eventSourceARN": self.arn,
                    "awsRegion": "us-east-1"} for m in msgs]
        self.invocations += 1
        try:
            response = self.function.invoke({"Records": records}) or {}
        except Exception as err:  # a failed invocation: the whole batch comes back after the timeout
            log.info("%s failed (%s); batch of %d will be redelivered", self.function.logical_id, err, len(msgs))
            return
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])} if self.report_failures else set()
        done = [{"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(records)
                if r["messageId"] not in failed]
        if done:
            self.stack.sqs.delete_message_batch(QueueUrl=self.url, Entries=done)


def _route_regex(path: str) -> re.Pattern[str]:
    pattern = re.sub(r"\{(\w+)\+\}", r"(?P<\1>.+)", path)
    pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
    return re.compile(f"^{pattern}$")


class EmbeddedStack:
    def __init__(self, parameters: dict[str, str] | None = None, workspace_root: str | None = None,
                 pump_concurrency: int = 4, root: Path | None = None) -> None:
        self.root = root or kit_root()
        self.parameters = {**LOCAL_PARAMETERS, **(parameters or {})}
        self.workspace_root = workspace_root or os.path.join(tempfile.gettempdir(), "a3s-workspaces")
        self.pump_concurrency = pump_concurrency
        self.stopping = threading.Event()
        self.pumps: list[Pump] = []
        self.functions: dict[str, Function] = {}
        self.model: StackModel | None = None
        self._mock: Any = None
        self._environ_before: dict[str, str | None] = {}
        self._auth_cache: dict[str, tuple[float, dict[str, Any]]] = {}  # identity -> (expiry, answer)
        self._auth_lock = threading.Lock()
        self.async_invocations = AsyncInvocations(self)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> EmbeddedStack:
        import boto3
        from moto import mock_aws

        from a3s_core.runtime import Runtime, set_runtime

        patch_moto()
        threadsafe_powertools()
        self._mock = mock_aws()
        self._mock.start()
        model = self.model = load_stack(self.root / "template.yaml", self.parameters)
        self.boto = boto3.session.Session(region_name=model.region, aws_access_key_id="testing",
                                          aws_secret_access_key="testing")
        # moto checks no signature: the stack's DynamoDB, SQS and WebSocket posts go unsigned (SigV4 was
        # ~8% of each call's time here; what is sent is otherwise the same).
        for service in ("dynamodb", "sqs", "apigatewaymanagementapi"):
            self.boto.events.register(f"choose-signer.{service}", _unsigned, unique_id=f"a3s-unsigned-{service}")
        self.sqs = self.boto.client("sqs")
        self.async_invocations.attach(self.boto.events)  # before any client that may invoke is made
        provision(model, sqs=self.sqs, dynamodb=self.boto.client("dynamodb"), s3=self.boto.client("s3"),
                  secretsmanager=self.boto.client("secretsmanager"))
        # Every function shares one runtime here, so it gets what any of them is given (on AWS
        # only the run driver sees the model key's secret ARN). The default tenant is the user on
        # their own machine: it may name their directories.
        env: dict[str, str] = {}
        for spec in model.functions.values():  # a value one function blanks (the sandbox) is not the stack's
            env.update({k: v for k, v in spec.environment.items() if v != "" or k not in env})
        env.update({"A3S_WORKSPACE_ROOT": self.workspace_root, "A3S_HOST_TENANT": LOCAL_TENANT})
        # moto cannot run a Lambda without Docker: the sandbox is the same tool code, isolated in a
        # subprocess with a scrubbed environment (a3s_core.tools.isolation), as it is for `make dev`.
        env.pop("A3S_SANDBOX_FUNCTION", None)
        self.env = env
        exported = {**function_only_environment(model.functions),
                    **{k: env[k] for k in TEMPLATE_TELEMETRY if env.get(k)},
                    **{k: v for k, v in LOCAL_TELEMETRY.items() if k not in os.environ}}
        for key, value in exported.items():  # before any handler module (and its Logger) is loaded
            self._environ_before[key] = os.environ.get(key)
            os.environ[key] = value
        self.runtime = Runtime.from_env(env, session=self.boto)
        # post_to_connection reaches the live local connections (through moto's management API)
        from .websocket import LocalConnections

        self.connections = LocalConnections(self, env.get("A3S_WS_ENDPOINT", ""))
        self.runtime.connections = self.connections
        # No WebSocket server until `make dev` starts one (and says where): in-process sockets only.
        self.runtime.settings = dataclasses.replace(self.runtime.settings, ws_url="")
        set_runtime(self.runtime)
        self.add_api_key(LOCAL_API_KEY, LOCAL_TENANT)
        for fid, spec in model.functions.items():
            self.functions[fid] = Function(fid, spec.code_dir, spec.handler, spec.timeout, spec.memory)
        for src in model.event_sources:
            q = model.queues[src.queue_id]
            url = self.sqs.get_queue_url(QueueName=q.name)["QueueUrl"]
            arn = f"arn:aws:sqs:{model.region}:{model.account}:{q.name}"
            # A source the template caps (ScalingConfig) scales to its cap, as Lambda would, up to
            # what one machine's threads sensibly run; any other gets pump_concurrency.
            concurrency = min(src.max_concurrency, MAX_LOCAL_CONCURRENCY) if src.max_concurrency \
                else self.pump_concurrency
            self.pumps.append(Pump(self, self.functions[src.function_id], url, arn, src.batch_size,
                                   src.report_batch_item_failures, concurrency))
        for pump in self.pumps:
            pump.start()
        return self

    def stop(self) -> None:
        from a3s_core.runtime import set_runtime

        self.stopping.set()
        for pump in self.pumps:
            pump.join()
        self.async_invocations.close()
        set_runtime(None)
        for key, value in self._environ_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._environ_before = {}
        if self._mock is not None:
            self._mock.stop()
            self._mock = None

    def add_api_key(self, key: str, tenant: str) -> None:
        self.runtime.store.put_api_key(hashlib.sha256(key.encode()).hexdigest(), tenant)
        with self._auth_lock:  # a key minted here works at once, even if it was tried before
            self._auth_cache.pop(f"Bearer {key}", None)

    def transport(self, api_key: str = LOCAL_API_KEY) -> LocalTransport:
        return LocalTransport(self, api_key)

    def tenant_key(self, tenant: str) -> str:
        """An API key for `tenant` on this stack (made on first use): try multi-tenant set-ups locally."""
        if tenant == LOCAL_TENANT:
            return LOCAL_API_KEY
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", tenant) or tenant in (".", ".."):
            raise ValueError(f"tenant must be 1-64 letters, digits, '.', '_' or '-', got {tenant!r}")
        key = f"{LOCAL_API_KEY}-{tenant}"
        self.add_api_key(key, tenant)
        return key

    def queue_url(self, logical_id: str) -> str:
        assert self.model is not None
        return self.sqs.get_queue_url(QueueName=self.model.queues[logical_id].name)["QueueUrl"]

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Until every pumped queue is empty and no invocation runs (delayed messages aside)."""
        deadline = time.monotonic() + timeout
        urls = {p.url for p in self.pumps}
        while time.monotonic() < deadline:
            busy = any(p.inflight for p in self.pumps) or self.async_invocations.inflight
            counts = [self.sqs.get_queue_attributes(QueueUrl=u, AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"] for u in urls]
            if not busy and all(int(c["ApproximateNumberOfMessages"]) == 0 and
                                int(c["ApproximateNumberOfMessagesNotVisible"]) == 0 for c in counts):
                return
            time.sleep(0.02)
        raise TimeoutError(f"embedded stack not idle after {timeout} s")

    # -- HTTP ------------------------------------------------------------------------------
    def _route(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        assert self.model is not None
        matches = []
        for route in self.model.routes:
            m = _route_regex(route.path).match(path)
            if m and route.method in (method, "ANY"):
                greedy = "+}" in route.path
                matches.append((greedy, route.method == "ANY", route, m.groupdict()))
        if not matches:
            return None
        matches.sort(key=lambda x: (x[0], x[1]))  # exact before greedy, a method before ANY
        return matches[0][2], matches[0][3]

    def _authorize(self, identity: str, event: dict[str, Any], method: str, path: str) -> dict[str, Any]:
        """The authorizer's answer, cached per identity for the template's TTL as API Gateway does
        (so a key stays valid, or refused, that long after it changes, here as on AWS)."""
        assert self.model is not None and self.model.authorizer_function_id
        now = time.monotonic()
        with self._auth_lock:
            cached = self._auth_cache.get(identity)
        if cached and cached[0] > now:
            return cached[1]
        auth = self.functions[self.model.authorizer_function_id].invoke(
            {**event, "type": "REQUEST", "identitySource": [identity],
             "routeArn": f"arn:aws:execute-api:us-east-1:123456789012:local/$default/{method}{path}"})
        if self.model.authorizer_ttl:
            with self._auth_lock:
                self._auth_cache[identity] = (now + self.model.authorizer_ttl, auth)
        return auth

    def invoke_http(self, method: str, path: str, body: str | None = None, query: dict | None = None,
                    headers: dict[str, str] | None = None) -> tuple[int, str]:
        """One request through API Gateway's steps: route, authorize, invoke with a v2 event."""
        status, _, text = self.invoke_http_full(method, path, body, query, headers)
        return status, text

    def invoke_http_full(self, method: str, path: str, body: str | None = None, query: dict | None = None,
                         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        """invoke_http, with the response's headers (what `make dev` sends on)."""
        headers = {k.lower(): v for k, v in (headers or {}).items()}
        found = self._route(method, path)
        json_type = {"Content-Type": "application/json"}
        if found is None:
            return 404, json_type, json.dumps({"message": "Not Found"})
        route, params = found
        qs = urllib.parse.urlencode(query or {})
        now = int(time.time() * 1000)
        ctx: dict[str, Any] = {
            "accountId": "123456789012", "apiId": "local", "domainName": "127.0.0.1", "domainPrefix": "local",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                     "userAgent": headers.get("user-agent", "a3s-local")},
            "requestId": str(uuid.uuid4()), "routeKey": f"{route.method} {route.path}", "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()), "timeEpoch": now}
        event: dict[str, Any] = {
            "version": "2.0", "routeKey": ctx["routeKey"], "rawPath": path, "rawQueryString": qs,
            "headers": headers, "queryStringParameters": {k: str(v) for k, v in (query or {}).items()} or None,
            "pathParameters": params or None, "requestContext": ctx, "body": body, "isBase64Encoded": False}
        if route.authorized and self.model and self.model.authorizer_function_id:
            if "authorization" not in headers:
                return 401, json_type, json.dumps({"message": "Unauthorized"})
            auth = self._authorize(headers["authorization"], event, method, path)
            if not auth.get("isAuthorized"):
                return 403, json_type, json.dumps({"message": "Forbidden"})
            ctx["authorizer"] = {"lambda": auth.get("context", {})}
        out = self.functions[route.function_id].invoke(event)
        sent = dict(out.get("headers") or {})
        if not any(k.lower() == "content-type" for k in sent):
            sent.update(json_type)
        return int(out.get("statusCode", 200)), sent, out.get("body") or ""


class LocalTransport:
    """The SDK's transport for Agent.local(): requests go straight into the embedded stack."""

    def __init__(self, stack: EmbeddedStack, api_key: str) -> None:
        self.stack, self.api_key = stack, api_key

    def open_socket(self) -> Any:
        """A WebSocket connection into the stack, in-process (the SDK's push path)."""
        from .websocket import LocalSocket

        return LocalSocket(self.stack.connections, self.api_key)

    def request(self, method: str, path: str, body: Any = None, query: dict | None = None) -> Any:
        from a3s_serverless.transport import decode

        headers = {"content-type": "application/json", "authorization": f"Bearer {self.api_key}"}
        status, raw = self.stack.invoke_http(method, path, None if body is None else json.dumps(body), query, headers)
        return decode(status, raw)


_shared: EmbeddedStack | None = None
_shared_lock = threading.Lock()


def shared_stack(parameters: dict[str, str] | None = None) -> EmbeddedStack:
    """One embedded stack per process (moto's AWS is process-wide), started on first use with
    these template parameters and stopped at exit."""
    global _shared
    with _shared_lock:
        if _shared is None:
            import atexit

            _shared = EmbeddedStack(parameters=parameters).start()
            atexit.register(_shared.stop)
        elif parameters and any(_shared.parameters.get(k) != str(v) for k, v in parameters.items()):
            running = {k: _shared.parameters.get(k) for k in parameters}
            raise ValueError(f"this process's embedded stack already runs with {running}; a stack with "
                             f"{parameters} needs a process of its own")
        return _shared
