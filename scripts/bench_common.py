"""What the embedded-stack benchmarks (bench_lanes.py, bench_fanout.py) share: the process environment,
AWS call counting (botocore hooks on every client of the stack), an HTTP request counting transport,
and small helpers for per-unit figures.

Call `setup_env()` first thing, before importing the kit, Powertools or boto3 (Powertools reads the
environment at import). Nothing here imports the kit at import time.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def setup_env() -> None:
    """Quiet handler logs, fake credentials (moto only), and the checkout on sys.path when the kit is
    not installed in editable mode."""
    for k, v in {"POWERTOOLS_LOG_LEVEL": "WARNING", "LOG_LEVEL": "WARNING",
                 "POWERTOOLS_METRICS_NAMESPACE": "a3s-bench", "POWERTOOLS_TRACE_DISABLED": "true",
                 "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_SECURITY_TOKEN": "testing", "AWS_SESSION_TOKEN": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        os.environ[k] = v if k.startswith("AWS_") else os.environ.get(k, v)
    if importlib.util.find_spec("a3s_core") is None or importlib.util.find_spec("a3s_serverless") is None:
        sys.path[:0] = [str(REPO / "sdk"), str(REPO / "layers" / "core")]


# -- what a DynamoDB call touches ------------------------------------------------------------------
def _s(v: Any) -> str:
    return v.get("S", "") if isinstance(v, dict) else str(v or "")


def item_kind(key: dict, names: dict[str, str] | None = None) -> str:
    """The kit's key scheme: T#t#W#wf WF / STEP#k, T#t#R#run RUN / EV#n / CTRL, T#t#RUNS, T#t#S#s SESSION / TASK#.
    `names` renames kinds (a script's own labels)."""
    pk, sk = _s(key.get("pk")), _s(key.get("sk"))
    kind = _kind(pk, sk)
    return names.get(kind, kind) if names else kind


def _kind(pk: str, sk: str) -> str:
    if pk.startswith("APIKEY#"):
        return "apikey"
    if pk.endswith("#RUNS"):
        return "runs-index"
    for prefix, kind in (("WF", "workflow"), ("STEP#", "step"), ("RUN", "run"), ("EV#", "event"),
                         ("CTRL", "control"), ("SESSION", "session"), ("TASK#", "task")):
        if sk.startswith(prefix):
            return kind
    return (sk.split("#")[0].lower() or "item") if sk else "?"


def written_items(op: str, params: dict, names: dict[str, str] | None = None) -> list[str]:
    """The kinds of the items a write call writes (failed conditional writes included: they are billed)."""
    if op == "PutItem":
        return [item_kind(params.get("Item") or {}, names)]
    if op in ("UpdateItem", "DeleteItem"):
        return [item_kind(params.get("Key") or {}, names)]
    kinds = []
    if op == "TransactWriteItems":
        for entry in params.get("TransactItems") or []:
            for action in ("Put", "Update", "Delete"):  # a ConditionCheck writes nothing
                if action in entry:
                    body = entry[action]
                    kinds.append(item_kind(body.get("Item") or body.get("Key") or {}, names))
    elif op == "BatchWriteItem":
        for requests in (params.get("RequestItems") or {}).values():
            for r in requests:
                body = r.get("PutRequest") or r.get("DeleteRequest") or {}
                kinds.append(item_kind(body.get("Item") or body.get("Key") or {}, names))
    return kinds


WRITE_OPS = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")


def ddb_target(op: str, params: dict, names: dict[str, str] | None = None) -> str:
    """Label of a DynamoDB call: the kind of item it touches (a Query: the kinds it lists, or the index)."""
    try:
        if op in ("GetItem", "UpdateItem", "DeleteItem"):
            return item_kind(params.get("Key") or {}, names)
        if op == "PutItem":
            return item_kind(params.get("Item") or {}, names)
        if op == "Query":
            if params.get("IndexName"):
                return params["IndexName"]
            values = [_s(v) for v in (params.get("ExpressionAttributeValues") or {}).values()]
            for prefix, label in (("STEP#", "steps"), ("EV#", "events"), ("TASK#", "tasks")):
                if any(v.startswith(prefix) for v in values):
                    return label
            label = "runs-index" if any(v.endswith("#RUNS") for v in values) else "partition"
            return names.get(label, label) if names else label
        if op in ("TransactWriteItems", "BatchWriteItem"):
            return "+".join(sorted(set(written_items(op, params, names)))) or "?"
    except Exception:  # an unexpected shape: count it, unlabelled
        pass
    return "?"


# -- counting AWS API calls ------------------------------------------------------------------------
class ApiCounter:
    """botocore hooks on every client of the stack.

    before-parameter-build keeps the call's API parameters (thread-local); before-call counts the call
    (once per logical call: retries happen below it) as `service.Operation[label]`, with the DynamoDB
    items it writes and its request bytes; after-call counts ReceiveMessage as `hit` or `idle`, DynamoDB
    response bytes and read capacity, and the time inside the call.

    Origin of a call: a client thread inside a CountingTransport request -> that request's route
    (settled once the response is known); any other thread (the stack's pumps) -> "driver".

    Options: `queue_ops`, the SQS operations labelled with their queue; `mark_delayed`, add ",delayed"
    to a SendMessage label when it has DelaySeconds; `tx_items`, also count the entries of each
    TransactWriteItems as "dynamodb.TransactWriteItems(items)" (a "(" key counts items, not calls);
    `kind_names`, renames of item kinds in the labels."""

    def __init__(self, queue_names: dict[str, str], *, queue_ops: tuple[str, ...] = ("SendMessage",),
                 mark_delayed: bool = False, tx_items: bool = False, kind_names: dict[str, str] | None = None,
                 hook_id: str = "bench") -> None:
        self._lock = threading.Lock()
        self.queue_names = queue_names                          # queue url -> short label
        self.queue_ops, self.mark_delayed, self.tx_items = queue_ops, mark_delayed, tx_items
        self.kind_names, self.hook_id = kind_names, hook_id
        self.local = threading.local()
        self.ignored_threads: set[int] = set()
        self.calls: Counter[str] = Counter()                    # "dynamodb.UpdateItem[run]" -> n
        self.by_origin: dict[str, Counter[str]] = {}            # origin -> Counter(key)
        self.items: dict[str, Counter[str]] = {}                # origin -> Counter(item kind written)
        self.bytes: Counter[str] = Counter()                    # "dynamodb.read" / "dynamodb.sent" -> bytes
        self.rcu: Counter[str] = Counter()                      # origin -> estimated read capacity units
        self.op_time: Counter[str] = Counter()                  # service.op -> seconds inside the call
        self.op_timed: Counter[str] = Counter()                 # service.op -> calls timed

    # -- threads ---------------------------------------------------------------------------------
    def _origin(self) -> str:
        return getattr(self.local, "route", None) or "driver"

    def _ignored(self) -> bool:
        return threading.get_ident() in self.ignored_threads

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """This thread's own calls are not counted meanwhile (the calls they cause elsewhere still are)."""
        me = threading.get_ident()
        self.ignored_threads.add(me)
        try:
            yield
        finally:
            self.ignored_threads.discard(me)

    def _add(self, key: str, k: int = 1) -> None:  # under self._lock
        self.calls[key] += k
        pending = getattr(self.local, "pending", None)
        origin = self._origin()
        if pending is not None and origin != "driver":
            pending[key] += k  # the route label may change once the response is known
        else:
            self.by_origin.setdefault(origin, Counter())[key] += k

    def flush_route(self, route: str) -> None:
        pending = getattr(self.local, "pending", None)
        self.local.pending = None
        self.local.route = None
        if pending:
            with self._lock:
                self.by_origin.setdefault(route, Counter()).update(pending)

    # -- hooks -----------------------------------------------------------------------------------
    def keep_params(self, params: dict, **_: Any) -> None:
        self.local.params = params

    def label(self, service: str, op: str, api: dict) -> str:
        key = f"{service}.{op}"
        if service == "sqs" and op in self.queue_ops:
            queue = self.queue_names.get(api.get("QueueUrl", ""), "queue")
            delayed = self.mark_delayed and op == "SendMessage" and int(api.get("DelaySeconds", 0) or 0) > 0
            key += f"[{queue}{',delayed' if delayed else ''}]"
        elif service == "dynamodb":
            key += f"[{ddb_target(op, api, self.kind_names)}]"
        return key

    def before_call(self, model: Any, params: dict, **_: Any) -> None:
        self.local.t0 = time.perf_counter()
        api = getattr(self.local, "params", None) or {}
        self.local.params = None
        if self._ignored():
            return
        service, op = model.service_model.service_name, model.name
        if service == "sqs" and op == "ReceiveMessage":
            return  # counted in after_call, as hit or idle
        key = self.label(service, op, api)
        kinds = written_items(op, api, self.kind_names) if service == "dynamodb" and op in WRITE_OPS else []
        body = params.get("body") if isinstance(params, dict) else None
        self.local.consistent = bool(api.get("ConsistentRead"))
        origin = self._origin()
        with self._lock:
            if self.tx_items and service == "dynamodb" and op == "TransactWriteItems":
                self._add("dynamodb.TransactWriteItems(items)", len(api.get("TransactItems") or []))
            self._add(key)
            items = self.items.setdefault(origin, Counter())
            for k in kinds:
                items[k] += 1
            if service == "dynamodb" and isinstance(body, (bytes, str)):
                self.bytes["dynamodb.sent"] += len(body)

    def after_call(self, model: Any, parsed: dict, http_response: Any = None, **_: Any) -> None:
        if self._ignored():
            return
        service, op = model.service_model.service_name, model.name
        if service == "sqs" and op == "ReceiveMessage":
            with self._lock:
                self._add("sqs.ReceiveMessage[hit]" if (parsed or {}).get("Messages") else "sqs.ReceiveMessage[idle]")
            return  # its time is mostly the long-poll wait
        t0 = getattr(self.local, "t0", None)
        size = len(getattr(http_response, "content", b"") or b"") if service == "dynamodb" else 0
        # Read capacity as DynamoDB bills it, roughly: 4 KB units per read (a Query sums its items), half
        # for an eventually consistent read; sized on the JSON response, so a slight overestimate.
        rcu = (max(1, math.ceil(size / 4096)) * (1.0 if getattr(self.local, "consistent", False) else 0.5)
               if service == "dynamodb" and op in ("GetItem", "Query", "Scan") else 0.0)
        with self._lock:
            self.bytes["dynamodb.read"] += size
            self.rcu[self._origin()] += rcu
            if t0 is not None:
                self.op_time[f"{service}.{op}"] += time.perf_counter() - t0
                self.op_timed[f"{service}.{op}"] += 1

    def attach(self, emitter: Any) -> None:
        emitter.register("before-parameter-build.*.*", self.keep_params, unique_id=f"{self.hook_id}-params")
        emitter.register("before-call.*.*", self.before_call, unique_id=f"{self.hook_id}-before")
        emitter.register("after-call.*.*", self.after_call, unique_id=f"{self.hook_id}-after")

    # -- reading ---------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"calls": Counter(self.calls), "by_origin": {k: Counter(v) for k, v in self.by_origin.items()},
                    "items": {k: Counter(v) for k, v in self.items.items()}, "bytes": Counter(self.bytes),
                    "rcu": Counter(self.rcu), "op_time": Counter(self.op_time), "op_timed": Counter(self.op_timed)}

    @staticmethod
    def diff(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in after.items():
            if isinstance(v, dict) and not isinstance(v, Counter):  # origin -> Counter
                out[k] = {o: c - before[k].get(o, Counter()) for o, c in v.items()}
            else:
                out[k] = v - before[k]
        return out

    def raw_timings(self) -> tuple[Counter, Counter]:
        with self._lock:
            return Counter(self.op_time), Counter(self.op_timed)

    def reset_timers(self) -> None:
        with self._lock:
            self.op_time.clear()
            self.op_timed.clear()

    @staticmethod
    def mean_ms(time_s: Counter, calls: Counter) -> dict[str, float]:
        """Mean milliseconds per call, by operation (ReceiveMessage excluded)."""
        return {k: round(1000 * time_s[k] / n, 2) for k, n in sorted(calls.items()) if n > 0}

    def timings(self) -> dict[str, float]:
        return self.mean_ms(*self.raw_timings())


def stack_clients(stack: Any) -> list[Any]:
    """Every boto3 client the stack's runtime and pumps hold (they were made before we could hook)."""
    def is_client(v: Any) -> bool:
        return hasattr(v, "meta") and hasattr(v.meta, "events") and hasattr(v, "_make_api_call")

    found = [v for v in vars(stack).values() if is_client(v)]
    for holder in [stack.runtime, *vars(stack.runtime).values()]:  # the runtime, its store, queues, ...
        found += [v for v in (vars(holder).values() if hasattr(holder, "__dict__") else ()) if is_client(v)]
    return list({id(c): c for c in found}.values())


def attach_counter(stack: Any, **options: Any) -> ApiCounter:
    """An ApiCounter (options: see ApiCounter) hooked on every client of the stack, present and future."""
    rt = stack.runtime
    names = {rt.settings.runs_queue_url: "runs"}
    names.update({url: f"lane:{lane}" for lane, url in rt.settings.lane_queue_urls.items()})
    counter = ApiCounter(names, **options)
    for client in stack_clients(stack):
        counter.attach(client.meta.events)
    counter.attach(stack.boto.events)  # clients the stack makes from now on (unique_id: never twice)
    return counter


def table_items(stack: Any, counter: ApiCounter) -> int | None:
    """Items in the stack's table (a paginated COUNT scan, not counted)."""
    db = stack.runtime.store._db
    total, args = 0, {"TableName": stack.runtime.settings.table, "Select": "COUNT"}
    try:
        with counter.quiet():
            while True:
                page = db.scan(**args)
                total += page["Count"]
                if "LastEvaluatedKey" not in page:
                    return total
                args["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    except Exception:
        return None


# -- counting HTTP requests ------------------------------------------------------------------------
_ID = re.compile(r"/(sess|run|task|wf)-[0-9a-zA-Z]+")


class CountingTransport:
    """Wraps the stack's transport: counts HTTP requests by route (ids replaced by {sess}, {run}, ...)
    and labels the AWS calls they make with it. Override `relabel` to refine a route from the response."""

    def __init__(self, inner: Any, counter: ApiCounter) -> None:
        self.inner, self.counter = inner, counter
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()

    def relabel(self, method: str, route: str, out: Any) -> str:
        return route

    def request(self, method: str, path: str, body: Any = None, query: dict | None = None) -> Any:
        route = f"{method} {_ID.sub(lambda m: '/{' + m.group(1) + '}', path)}"
        self.counter.local.route = route
        self.counter.local.pending = Counter()
        try:
            out = self.inner.request(method, path, body, query)
        except BaseException:
            self.counter.flush_route(route + " (error)")
            raise
        route = self.relabel(method, route, out)
        self.counter.flush_route(route)
        with self._lock:
            self.requests[route] += 1
        return out

    def snapshot(self) -> Counter:
        with self._lock:
            return Counter(self.requests)


# -- figures ---------------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def per_unit(counter: Counter, n: int, digits: int = 3) -> dict[str, float]:
    """counter / n, rounded, sorted by key, zeros left out."""
    return {k: round(v / n, digits) for k, v in sorted(counter.items()) if v} if n else {}


def write_json(path: str, payload: dict) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {out}")
