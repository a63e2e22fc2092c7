#!/usr/bin/env python
"""Benchmark external-task round trips on the embedded stack (moto + the kit's handlers, no network).

One round trip: `send_async("rt\\n/tool bash ...")` -> the run suspends with an external task on the
`execute` lane -> this script, as the worker, claims the task (polling `claim_external_tasks`) and
completes it with {"output": ...} -> the run resumes and finishes (`handle.wait()`).
Baseline: the same prompt with the execute lane internal (the tool runs inside run_driver).

Measured per scenario: round trips per second (sequential, and K threads each with its own session),
latency p50/p95/max of one round trip, AWS API calls per round trip (botocore hooks on every client
of the stack, by service.operation; ReceiveMessage split into calls that returned messages and idle
long-polls, which depend on wall time), HTTP requests per round trip, and where the time goes.

    .venv/bin/python scripts/bench_lanes.py [--n 200] [--concurrency 8] [--json bench-results/bench_lanes.json]

Every scenario gets a fresh embedded stack (moto's cost per TransactWriteItems grows with the table,
so a shared stack would make later scenarios look slower). Two harness adaptations, on by default
and both off with --as-is, make the concurrent scenarios measurable (see `Harness`):
  * each Lambda function gets a pool of execution environments (its module loaded once per
    environment, one invocation at a time per environment), as Lambda does; the embedded stack as it
    is runs concurrent invocations through one module instance, whose Powertools resolver and
    BatchProcessor keep per-invocation state on module globals;
  * calls to moto's DynamoDB are serialized: moto is not thread-safe (TransactWriteItems deep-copies
    the whole table while other threads write to it).

Figures are reported, never asserted.
"""
from __future__ import annotations

import os

# Before anything imports Powertools or boto3: quiet handler logs, fake credentials (moto only).
for _k, _v in {"POWERTOOLS_LOG_LEVEL": "WARNING", "LOG_LEVEL": "WARNING",
               "POWERTOOLS_METRICS_NAMESPACE": "a3s-bench", "POWERTOOLS_TRACE_DISABLED": "true",
               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_SECURITY_TOKEN": "testing", "AWS_SESSION_TOKEN": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}.items():
    os.environ[_k] = _v if _k.startswith("AWS_") else os.environ.get(_k, _v)

import argparse  # noqa: E402
import logging  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
try:
    import a3s_core  # noqa: F401
    import a3s_serverless  # noqa: F401
except ImportError:  # not installed in editable mode: use the checkout
    sys.path[:0] = [str(REPO / "sdk"), str(REPO / "layers" / "core")]

from a3s_serverless import Agent  # noqa: E402
from a3s_serverless.local.embedded import EmbeddedStack  # noqa: E402

PROMPT = 'rt\n/tool bash {"command": "echo i"}'
TASK_TIMEOUT_MS = 600_000          # long enough that no timeout fires during the run
ROUND_TRIP_TIMEOUT_S = 20.0


# -- counting AWS API calls ------------------------------------------------------------------------
class ApiCounter:
    """botocore hooks: before-parameter-build counts every logical API call (not retry attempts); ReceiveMessage
    is counted after the call, as `hit` (returned messages) or `idle` (an empty long-poll).

    Calls made by a client thread inside a CountingTransport request are attributed to that request's
    route; calls from the stack's pump threads are attributed to `driver`."""

    def __init__(self, queue_names: dict[str, str]) -> None:
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()                    # "dynamodb.UpdateItem" -> n
        self.by_origin: dict[str, Counter[str]] = {}            # origin -> Counter(op)
        self.queue_names = queue_names                          # queue url -> short label
        self.local = threading.local()
        self.ignored_threads: set[int] = set()

        self.op_time: Counter[str] = Counter()                  # op -> seconds inside the call
        self.op_timed: Counter[str] = Counter()                 # op -> calls timed

    def _origin(self) -> str:
        # Client threads make AWS calls only inside an HTTP request (CountingTransport labels it);
        # every other call comes from a pumped invocation: the run driver.
        return getattr(self.local, "route", None) or "driver"

    def _add(self, op: str) -> None:
        if threading.get_ident() in self.ignored_threads:
            return
        origin = self._origin()
        pending = getattr(self.local, "pending", None)
        with self._lock:
            self.calls[op] += 1
            if pending is not None and origin != "driver":
                pending[op] += 1  # the route label may change once the response is known
            else:
                self.by_origin.setdefault(origin, Counter())[op] += 1

    def before_call(self, model: Any, params: dict, **_: Any) -> None:
        service = model.service_model.service_name
        op = model.name
        if service == "sqs" and op == "ReceiveMessage":
            return  # counted in after_call
        key = f"{service}.{op}"
        if service == "sqs" and op == "SendMessage":
            url = params.get("QueueUrl", "")
            delayed = int(params.get("DelaySeconds", 0) or 0) > 0
            key += f"[{self.queue_names.get(url, 'queue')}{',delayed' if delayed else ''}]"
        self._add(key)

    def after_call(self, model: Any, parsed: dict, **_: Any) -> None:
        service, op = model.service_model.service_name, model.name
        if service == "sqs" and op == "ReceiveMessage":
            self._add("sqs.ReceiveMessage[hit]" if (parsed or {}).get("Messages") else "sqs.ReceiveMessage[idle]")
            return  # its time is mostly the long-poll wait
        t0 = getattr(self.local, "t0", None)
        if t0 is not None and threading.get_ident() not in self.ignored_threads:
            with self._lock:
                self.op_time[f"{service}.{op}"] += time.perf_counter() - t0
                self.op_timed[f"{service}.{op}"] += 1

    def start_timer(self, **_: Any) -> None:
        self.local.t0 = time.perf_counter()

    def attach(self, emitter: Any) -> None:
        # before-parameter-build: once per logical call (retries are not new calls), with the API params
        emitter.register("before-parameter-build.*.*", self.before_call, unique_id="bench-lanes-before")
        emitter.register("before-call.*.*", self.start_timer, unique_id="bench-lanes-timer")
        emitter.register("after-call.*.*", self.after_call, unique_id="bench-lanes-after")

    def flush_route(self, route: str) -> None:
        pending = getattr(self.local, "pending", None)
        self.local.pending = None
        self.local.route = None
        if pending:
            with self._lock:
                self.by_origin.setdefault(route, Counter()).update(pending)

    def snapshot(self) -> tuple[Counter, dict[str, Counter]]:
        with self._lock:
            return Counter(self.calls), {k: Counter(v) for k, v in self.by_origin.items()}

    def raw_timings(self) -> tuple[Counter, Counter]:
        with self._lock:
            return Counter(self.op_time), Counter(self.op_timed)

    @staticmethod
    def mean_ms(time_s: Counter, calls: Counter) -> dict[str, float]:
        """Mean milliseconds per call, by operation (ReceiveMessage excluded)."""
        return {k: round(1000 * time_s[k] / n, 2) for k, n in sorted(calls.items()) if n > 0}

    def timings(self) -> dict[str, float]:
        return self.mean_ms(*self.raw_timings())


def stack_clients(stack: EmbeddedStack) -> list[Any]:
    """Every boto3 client the stack's runtime and pumps hold (they were made before we could hook)."""
    rt = stack.runtime
    found = [getattr(stack, "sqs", None), getattr(rt, "s3", None)]
    for holder in (rt.store, rt.queues):
        found += [v for v in vars(holder).values() if hasattr(v, "meta") and hasattr(v.meta, "events")]
    unique = {id(c): c for c in found if c is not None and hasattr(c, "meta")}
    return list(unique.values())


def attach_counter(stack: EmbeddedStack) -> ApiCounter:
    rt = stack.runtime
    names = {rt.settings.runs_queue_url: "runs"}
    names.update({url: f"lane:{lane}" for lane, url in rt.settings.lane_queue_urls.items()})
    counter = ApiCounter(names)
    for client in stack_clients(stack):
        counter.attach(client.meta.events)
    counter.attach(stack.boto.events)  # clients the stack makes from now on (unique_id: never twice)
    return counter


# -- harness adaptations (see the module docstring) ------------------------------------------------
class EnvPool:
    """One Lambda function as Lambda runs it: a pool of execution environments, each a fresh load of
    the handler module serving one invocation at a time; a new one (a cold start) when all are busy."""

    def __init__(self, first: Any, make: Callable[[], Any]) -> None:
        self._first, self._make = first, make
        self._free = [first]
        self._lock = threading.Lock()
        self.environments, self.cold_starts = 1, 0

    def __getattr__(self, name: str) -> Any:   # logical_id, timeout, memory, handler
        return getattr(self._first, name)

    def invoke(self, event: dict) -> Any:
        with self._lock:
            env = self._free.pop() if self._free else None
        if env is None:
            env = self._make()
            with self._lock:
                self.environments += 1
                self.cold_starts += 1
        try:
            return env.invoke(event)
        finally:
            with self._lock:
                self._free.append(env)


class SerializedClient:
    """A boto3 client whose API calls run one at a time (moto's DynamoDB is not thread-safe)."""

    def __init__(self, client: Any, lock: threading.Lock) -> None:
        self._client, self._lock = client, lock
        self._ops = set(client.meta.method_to_api_mapping)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name not in self._ops:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)
        return call


class Harness:
    def __init__(self, stack: EmbeddedStack, pooled: bool, serialize_dynamodb: bool) -> None:
        self.pools: dict[str, EnvPool] = {}
        self.notes: list[str] = []
        if pooled:
            try:
                from a3s_serverless.local.embedded import Function

                assert stack.model is not None
                for fid, fn in list(stack.functions.items()):
                    spec = stack.model.functions[fid]
                    make = (lambda f=fid, sp=spec: Function(f, sp.code_dir, sp.handler, sp.timeout, sp.memory))
                    self.pools[fid] = stack.functions[fid] = EnvPool(fn, make)  # type: ignore[assignment]
                for pump in stack.pumps:
                    pump.function = self.pools[pump.function.logical_id]
            except Exception as err:  # the embedded stack changed shape: run it as it is
                self.notes.append(f"handler pools not installed ({type(err).__name__}: {err})")
        if serialize_dynamodb and self._kit_serializes_moto():
            self.notes.append("moto DynamoDB already serialized by the embedded stack")
        elif serialize_dynamodb:
            db = getattr(stack.runtime.store, "_db", None)
            if db is not None and hasattr(db, "meta"):
                stack.runtime.store._db = SerializedClient(db, threading.Lock())  # type: ignore[attr-defined]
            else:
                self.notes.append("DynamoDB client not found: calls not serialized")

    @staticmethod
    def _kit_serializes_moto() -> bool:
        from moto.dynamodb.models import DynamoDBBackend

        return all(getattr(getattr(DynamoDBBackend, op, None), "a3s_atomic", False)
                   for op in ("transact_write_items", "update_item", "put_item", "query"))

    def environments(self) -> dict[str, dict[str, int]]:
        return {fid: {"environments": p.environments, "cold_starts": p.cold_starts} for fid, p in self.pools.items()}


_ID = re.compile(r"/(sess|run|task|wf)-[0-9a-zA-Z]+")


class CountingTransport:
    """Wraps the stack's transport: counts HTTP requests by route and labels the AWS calls they make."""

    def __init__(self, inner: Any, counter: ApiCounter) -> None:
        self.inner, self.counter = inner, counter
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()

    def request(self, method: str, path: str, body: Any = None, query: dict | None = None) -> Any:
        route = f"{method} {_ID.sub(lambda m: '/{' + m.group(1) + '}', path)}"
        self.counter.local.route = route
        self.counter.local.pending = Counter()
        try:
            out = self.inner.request(method, path, body, query)
        except BaseException:
            self.counter.flush_route(route + " (error)")
            raise
        if route.endswith("/external-tasks/claim"):
            route += " (hit)" if out.get("tasks") else " (empty)"
        self.counter.flush_route(route)
        with self._lock:
            self.requests[route] += 1
        return out

    def snapshot(self) -> Counter:
        with self._lock:
            return Counter(self.requests)


# -- one round trip --------------------------------------------------------------------------------
class Poll:
    """Client-side wait between empty claims: starts short, doubles to a cap."""

    def __init__(self, first_ms: float, cap_ms: float) -> None:
        self.first, self.cap = first_ms / 1000, cap_ms / 1000

    def waits(self):
        d = self.first
        while True:
            yield d
            d = min(self.cap, d * 2)


def external_round_trip(session: Any, poll: Poll) -> dict[str, float]:
    t0 = time.perf_counter()
    handle = session.send_async(PROMPT)
    t1 = time.perf_counter()
    polls = 0
    deadline = t1 + ROUND_TRIP_TIMEOUT_S
    waits = poll.waits()
    while True:
        tasks = session.claim_external_tasks(max_tasks=1, worker="bench")
        polls += 1
        if tasks:
            break
        if time.perf_counter() > deadline:
            raise TimeoutError(f"no external task for run {handle.run_id} after {ROUND_TRIP_TIMEOUT_S} s")
        time.sleep(next(waits))
    t2 = time.perf_counter()
    task = tasks[0]
    if not session.complete_external_task(task["task_id"], success=True, result={"output": "i\n"}):
        raise RuntimeError(f"completion of {task['task_id']} was refused")
    t3 = time.perf_counter()
    result = handle.wait(timeout=ROUND_TRIP_TIMEOUT_S)
    t4 = time.perf_counter()
    if "bash -> i" not in result.text:
        raise RuntimeError(f"unexpected answer {result.text!r}")
    return {"total": t4 - t0, "send": t1 - t0, "until_claimed": t2 - t1, "complete": t3 - t2,
            "resume_wait": t4 - t3, "claim_polls": polls}


def internal_round_trip(session: Any, poll: Poll) -> dict[str, float]:
    t0 = time.perf_counter()
    handle = session.send_async(PROMPT)
    t1 = time.perf_counter()
    result = handle.wait(timeout=ROUND_TRIP_TIMEOUT_S)
    t2 = time.perf_counter()
    if "bash -> i" not in result.text:
        raise RuntimeError(f"unexpected answer {result.text!r}")
    return {"total": t2 - t0, "send": t1 - t0, "wait": t2 - t1}


# -- scenarios -------------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def per_rt(counter: Counter, n: int) -> dict[str, float]:
    return {k: round(v / n, 3) for k, v in sorted(counter.items()) if v} if n else {}


class Bench:
    """One fresh embedded stack, hooked and adapted, for one scenario."""

    def __init__(self, workspace_root: str, workspace: str, poll: Poll, as_is: bool) -> None:
        t0 = time.perf_counter()
        self.stack = EmbeddedStack(workspace_root=workspace_root).start()
        try:
            self.harness = Harness(self.stack, pooled=not as_is, serialize_dynamodb=not as_is)
            self.counter = attach_counter(self.stack)
            self.transport = CountingTransport(self.stack.transport(), self.counter)
        except BaseException:
            self.stack.stop()
            raise
        self.agent = Agent(self.transport, default_model="scripted", local=True)
        self.workspace, self.poll = workspace, poll
        self.start_s = time.perf_counter() - t0

    def warm_up(self, external: bool, n: int = 2) -> None:
        """First calls (validators, moto's first requests) on a session of its own, not measured."""
        s = self.new_session(external)
        me = threading.get_ident()
        for _ in range(n):
            self.counter.ignored_threads.add(me)  # not counted: made before the snapshot anyway
            try:
                (external_round_trip if external else internal_round_trip)(s, self.poll)
            finally:
                self.counter.ignored_threads.discard(me)

    def table_items(self) -> int | None:
        me = threading.get_ident()
        self.counter.ignored_threads.add(me)
        try:
            db = self.stack.boto.client("dynamodb")
            return db.scan(TableName=self.stack.runtime.settings.table, Select="COUNT")["Count"]
        except Exception:
            return None
        finally:
            self.counter.ignored_threads.discard(me)

    def stop(self) -> None:
        self.stack.stop()

    def new_session(self, external: bool) -> Any:
        self.counter.ignored_threads.add(threading.get_ident())
        try:
            s = self.agent.session(self.workspace, model="scripted", permissive=True)
            if external:
                s.set_lane_handler("execute", "external", TASK_TIMEOUT_MS)
            return s
        finally:
            self.counter.ignored_threads.discard(threading.get_ident())

    def settle(self) -> None:
        """Wait until the driver has finished its tail work (checkpoints after the client saw `done`),
        without counting this thread's own polling."""
        me = threading.get_ident()
        self.counter.ignored_threads.add(me)
        try:
            self.stack.wait_idle(timeout=15)
        finally:
            self.counter.ignored_threads.discard(me)

    def scenario(self, name: str, external: bool, n: int, concurrency: int, budget_s: float) -> dict[str, Any]:
        fn: Callable[[Any, Poll], dict] = external_round_trip if external else internal_round_trip
        concurrency = max(1, min(concurrency, n))
        shares = [n // concurrency + (1 if i < n % concurrency else 0) for i in range(concurrency)]
        sessions = [self.new_session(external) for _ in range(concurrency)]
        samples: list[list[dict]] = [[] for _ in range(concurrency)]
        errors: list[str] = []
        barrier = threading.Barrier(concurrency + 1)
        deadline = [float("inf")]
        truncated = threading.Event()
        progress, progress_lock = [0], threading.Lock()
        step = max(1, n // 10)
        marks: dict[int, Any] = {}    # round trips done -> op timers then (every tenth of n)

        def worker(i: int) -> None:
            barrier.wait()
            for _ in range(shares[i]):
                if time.perf_counter() > deadline[0]:
                    truncated.set()
                    return
                try:
                    samples[i].append(fn(sessions[i], self.poll))
                    with progress_lock:
                        progress[0] += 1
                        if progress[0] % step == 0:  # per-call cost early and late in the scenario
                            marks[progress[0]] = self.counter.raw_timings()
                except Exception as err:  # reported, and the thread goes on
                    errors.append(f"{type(err).__name__}: {err}")

        threads = [threading.Thread(target=worker, args=(i,), name=f"bench-{name}-{i}", daemon=True)
                   for i in range(concurrency)]
        for t in threads:
            t.start()
        self.settle()
        calls0, origins0 = self.counter.snapshot()
        http0 = self.transport.snapshot()
        items0 = self.table_items()
        self.counter.op_time.clear()
        self.counter.op_timed.clear()
        inv0 = sum(p.invocations for p in self.stack.pumps)
        deadline[0] = time.perf_counter() + budget_s
        barrier.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        try:
            self.settle()
        except TimeoutError as err:  # a lost message or a stuck run: report, do not hang
            errors.append(f"settle: {err}")
        calls1, origins1 = self.counter.snapshot()
        http1 = self.transport.snapshot()
        inv1 = sum(p.invocations for p in self.stack.pumps)
        timings = self.counter.timings()
        end_t, end_c = self.counter.raw_timings()
        early = self.counter.mean_ms(*marks[step]) if step in marks else {}
        last_mark = max((m for m in marks if m <= progress[0] - step and m > step), default=None)
        late = (self.counter.mean_ms(end_t - marks[last_mark][0], end_c - marks[last_mark][1])
                if last_mark else {})
        items1 = self.table_items()

        ok = [s for per in samples for s in per]
        done = len(ok)
        calls = calls1 - calls0
        origins = {k: v - origins0.get(k, Counter()) for k, v in origins1.items()}
        origins = {k: v for k, v in origins.items() if sum(v.values())}
        http = http1 - http0
        total = sum(calls.values())
        idle = calls.get("sqs.ReceiveMessage[idle]", 0)
        recv = idle + calls.get("sqs.ReceiveMessage[hit]", 0)
        lat = [s["total"] * 1000 for s in ok]
        # Latency drift over a session's life (its history grows with every run): first vs last tenth.
        tenth = max(1, min(len(per) for per in samples) // 10) if done else 0
        first = [s["total"] * 1000 for per in samples for s in per[:tenth]]
        last = [s["total"] * 1000 for per in samples for s in per[-tenth:]] if tenth else []
        phases = sorted({k for s in ok for k in s} - {"total"})
        return {
            "name": name, "lane": "external" if external else "internal", "n": n, "concurrency": concurrency,
            "completed": done, "truncated": truncated.is_set(), "errors": errors[:10], "error_count": len(errors),
            "wall_s": round(wall, 3), "round_trips_per_s": round(done / wall, 2) if wall else None,
            "latency_ms": {"p50": round(pct(lat, 50), 1), "p95": round(pct(lat, 95), 1),
                           "max": round(max(lat), 1) if lat else None,
                           "mean": round(sum(lat) / len(lat), 1) if lat else None,
                           "first_tenth_mean": round(sum(first) / len(first), 1) if first else None,
                           "last_tenth_mean": round(sum(last) / len(last), 1) if last else None},
            "phase_p50_ms": {k: round(pct([s[k] * (1 if k == "claim_polls" else 1000) for s in ok], 50), 2)
                             for k in phases},
            "claim_polls_per_rt": round(sum(s.get("claim_polls", 0) for s in ok) / done, 2) if external and done else None,
            "api_calls_per_rt": {
                "all": round(total / done, 2) if done else None,
                "excluding_idle_receives": round((total - idle) / done, 2) if done else None,
                "excluding_all_receives": round((total - recv) / done, 2) if done else None,
                "idle_receives_total": idle,
                "by_operation": per_rt(calls, done),
                "by_origin": {k: per_rt(v, done) for k, v in sorted(origins.items())},
            },
            "http_requests_per_rt": {"all": round(sum(http.values()) / done, 2) if done else None,
                                     "by_route": per_rt(http, done)},
            "driver_invocations_per_rt": round((inv1 - inv0) / done, 2) if done else None,
            "ms_per_call": timings,
            "ms_per_call_first_tenth": early,
            "ms_per_call_last_tenth": late,
            "table_items": {"before": items0, "after": items1},
            "stack_start_s": round(self.start_s, 2),
            "lambda_environments": self.harness.environments(),
            "harness_notes": self.harness.notes,
        }


# -- output ----------------------------------------------------------------------------------------
def op_family(key: str) -> str:
    """dynamodb.UpdateItem, sqs.SendMessage[runs,delayed] -> compact column labels."""
    return key.replace("dynamodb.", "ddb.")


def print_report(results: list[dict], meta: dict) -> None:
    print(f"\nbench_lanes  n={meta['n']}  concurrency={meta['concurrency']}  cpus={meta['cpus']}  "
          f"claim poll {meta['poll_ms']}->{meta['poll_cap_ms']} ms  harness={meta['harness']}  "
          f"total {meta['total_s']} s")
    head = (f"{'scenario':<10}{'lane':<9}{'K':>3}{'done':>5}{'wall s':>8}{'rt/s':>7}{'p50 ms':>8}{'p95 ms':>8}"
            f"{'max ms':>8}{'drift ms':>12}{'api/rt':>8}{'-idle':>7}{'-recv':>7}{'http/rt':>8}{'polls':>6}")
    print(head)
    print("-" * len(head))
    for r in results:
        lat, api = r["latency_ms"], r["api_calls_per_rt"]
        if not r["completed"]:
            print(f"{r['name']:<10}{r['lane']:<9}{r['concurrency']:>3}{0:>5}  (no round trip completed)")
        else:
            drift = f"{lat['first_tenth_mean']:.0f}->{lat['last_tenth_mean']:.0f}"
            polls = f"{r['claim_polls_per_rt']:.2f}" if r["claim_polls_per_rt"] is not None else "-"
            print(f"{r['name']:<10}{r['lane']:<9}{r['concurrency']:>3}{r['completed']:>5}{r['wall_s']:>8.2f}"
                  f"{r['round_trips_per_s']:>7.2f}{lat['p50']:>8.1f}{lat['p95']:>8.1f}{lat['max']:>8.1f}{drift:>12}"
                  f"{api['all']:>8.2f}{api['excluding_idle_receives']:>7.2f}{api['excluding_all_receives']:>7.2f}"
                  f"{r['http_requests_per_rt']['all']:>8.2f}{polls:>6}")
        if r["truncated"]:
            print(f"    stopped at the time limit after {r['completed']} of {r['n']} round trips")
        if r["error_count"]:
            print(f"    {r['error_count']} failed round trips, e.g. {r['errors'][0][:160]}")
        for note in r["harness_notes"]:
            print(f"    note: {note}")
    print("  drift: mean latency of the first -> last tenth of each session's round trips; api/rt: AWS calls per "
          "round trip, -idle: without empty ReceiveMessage long-polls, -recv: without any ReceiveMessage; "
          "polls: claim requests per round trip")

    results = [r for r in results if r["completed"]]
    if not results:
        return
    names = "".join(f"{r['name']:>10}" for r in results)
    ops = sorted({k for r in results for k in r["api_calls_per_rt"]["by_operation"]})
    w = max([len(op_family(o)) for o in ops] + [24]) + 2
    print(f"\n{'AWS calls / round trip':<{w}}{names}   | mean ms per call: {names}")
    for op in ops:
        base = op.split("[")[0]
        ms = [r["ms_per_call"].get(base) for r in results]
        show_ms = not op.startswith("sqs.ReceiveMessage") and not op.endswith(("delayed]", "lane:execute]"))
        ms_cells = "".join(f"{m:>10.2f}" if (m is not None and show_ms) else f"{'':>10}" for m in ms)
        print(f"{op_family(op):<{w}}" + "".join(f"{r['api_calls_per_rt']['by_operation'].get(op, 0):>10.2f}"
                                               for r in results) + f"   | {'':<18}{ms_cells}")

    origins = sorted({k for r in results for k in r["api_calls_per_rt"]["by_origin"]})
    w = max([len(o) for o in origins] + [24]) + 2
    print(f"\n{'by origin (no idle recv)':<{w}}{'http/rt':>8}{names}")
    for o in origins:
        cells = [sum(v for k, v in r["api_calls_per_rt"]["by_origin"].get(o, {}).items() if not k.endswith("[idle]"))
                 for r in results]
        http = next((h for h in (r["http_requests_per_rt"]["by_route"].get(o) for r in results) if h), None)
        print(f"{o:<{w}}{(f'{http:.2f}' if http else '-'):>8}" + "".join(f"{c:>10.2f}" for c in cells))
    print("  http/rt: requests of that route per round trip (first scenario using it); "
          "driver: run_driver invocations fed by the runs-queue pump")

    print("\nmedian ms per phase of a round trip:")
    for r in results:
        print(f"  {r['name']:<10}" + "  ".join(f"{k}={v:g}" for k, v in r["phase_p50_ms"].items())
              + f"  | driver invocations/rt={r['driver_invocations_per_rt']}"
              + f"  table items {r['table_items']['before']}->{r['table_items']['after']}")
        growth = [f"{op_family(op)} {r['ms_per_call_first_tenth'][op]:.1f}->{r['ms_per_call_last_tenth'][op]:.1f}"
                  for op in ("dynamodb.TransactWriteItems", "dynamodb.Query", "dynamodb.GetItem")
                  if op in r["ms_per_call_first_tenth"] and op in r["ms_per_call_last_tenth"]]
        if growth:
            print(f"  {'':<10}ms per call, first -> last tenth: " + ", ".join(growth))
    envs = {r["name"]: {f: e["environments"] for f, e in r["lambda_environments"].items() if e["environments"] > 1}
            for r in results}
    if any(envs.values()):
        print("  Lambda environments used: " + "; ".join(
            f"{n}: " + ", ".join(f"{f}={k}" for f, k in e.items()) for n, e in envs.items() if e))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="round trips per scenario (default 200)")
    ap.add_argument("--concurrency", type=int, default=8, help="sessions/threads in the concurrent scenarios")
    ap.add_argument("--json", default="bench-results/bench_lanes.json", help="where to write the figures ('' for none)")
    ap.add_argument("--poll-ms", type=float, default=5.0, help="first wait between empty claims (ms)")
    ap.add_argument("--poll-cap-ms", type=float, default=50.0, help="longest wait between empty claims (ms)")
    ap.add_argument("--skip-baseline", action="store_true", help="only the external-lane scenarios")
    ap.add_argument("--as-is", action="store_true",
                    help="no harness adaptations: one shared module per function, concurrent moto calls")
    ap.add_argument("--time-limit", type=float, default=110.0,
                    help="seconds for the whole run; a scenario stops starting round trips at its share")
    args = ap.parse_args(argv)
    if args.n < 1 or args.concurrency < 1:
        ap.error("--n and --concurrency must be positive")
    logging.getLogger("samtranslator").setLevel(logging.ERROR)  # "unpublished metrics" at teardown

    t_start = time.perf_counter()
    plan = [("ext-seq", True, 1), ("ext-conc", True, args.concurrency)]
    if not args.skip_baseline:
        plan += [("int-seq", False, 1), ("int-conc", False, args.concurrency)]
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="a3s-bench-") as tmp:
        workspace = os.path.join(tmp, "ws")
        os.makedirs(workspace)
        for i, (name, external, k) in enumerate(plan):
            left = args.time_limit - (time.perf_counter() - t_start)
            budget = max(5.0, left / (len(plan) - i) - 3.0)  # ~3 s per stack start, warm-up and stop
            bench = Bench(os.path.join(tmp, "workspaces"), workspace, Poll(args.poll_ms, args.poll_cap_ms), args.as_is)
            try:
                bench.warm_up(external)
                results.append(bench.scenario(name, external, args.n, k, budget))
            finally:
                bench.stop()
            r = results[-1]
            print(f"  {name}: {r['completed']}/{r['n']} round trips in {r['wall_s']} s", file=sys.stderr, flush=True)
    meta = {"n": args.n, "concurrency": args.concurrency, "cpus": os.cpu_count(), "poll_ms": args.poll_ms,
            "poll_cap_ms": args.poll_cap_ms, "harness": "as-is" if args.as_is else "pooled-envs+serialized-ddb",
            "time_limit_s": args.time_limit, "total_s": round(time.perf_counter() - t_start, 2),
            "python": sys.version.split()[0], "prompt": PROMPT, "task_timeout_ms": TASK_TIMEOUT_MS}
    print_report(results, meta)
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"meta": meta, "scenarios": results}, indent=2) + "\n")
        print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
