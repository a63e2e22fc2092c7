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
ROUND_TRIP_TIMEOUT_S = 60.0


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

    def _origin(self) -> str:
        bucket = getattr(self.local, "route", None)
        if bucket:
            return bucket
        name = threading.current_thread().name
        return "driver" if name.startswith("pump-") else f"other:{name.split('-')[0]}"

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
        if model.service_model.service_name == "sqs" and model.name == "ReceiveMessage":
            self._add("sqs.ReceiveMessage[hit]" if (parsed or {}).get("Messages") else "sqs.ReceiveMessage[idle]")

    def attach(self, emitter: Any) -> None:
        # before-parameter-build: once per logical call (retries are not new calls), with the API params
        emitter.register("before-parameter-build.*.*", self.before_call, unique_id="bench-lanes-before")
        emitter.register("after-call.sqs.ReceiveMessage", self.after_call, unique_id="bench-lanes-after")

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


def attach_counter(stack: EmbeddedStack) -> ApiCounter:
    rt = stack.runtime
    names = {rt.settings.runs_queue_url: "runs"}
    names.update({url: f"lane:{lane}" for lane, url in rt.settings.lane_queue_urls.items()})
    counter = ApiCounter(names)
    clients = {id(c): c for c in (stack.sqs, getattr(rt.store, "_db", None), getattr(rt.queues, "_sqs", None))
               if c is not None}
    for client in clients.values():
        counter.attach(client.meta.events)
    counter.attach(stack.boto.events)  # clients the stack makes from now on (unique_id: never twice)
    return counter


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
    def __init__(self, stack: EmbeddedStack, counter: ApiCounter, transport: CountingTransport,
                 workspace: str, poll: Poll) -> None:
        self.stack, self.counter, self.transport = stack, counter, transport
        self.agent = Agent(transport, default_model="scripted", local=True)
        self.workspace, self.poll = workspace, poll

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
            self.stack.wait_idle(timeout=30)
        finally:
            self.counter.ignored_threads.discard(me)

    def scenario(self, name: str, external: bool, n: int, concurrency: int) -> dict[str, Any]:
        fn: Callable[[Any, Poll], dict] = external_round_trip if external else internal_round_trip
        concurrency = max(1, min(concurrency, n))
        shares = [n // concurrency + (1 if i < n % concurrency else 0) for i in range(concurrency)]
        sessions = [self.new_session(external) for _ in range(concurrency)]
        samples: list[list[dict]] = [[] for _ in range(concurrency)]
        errors: list[str] = []
        barrier = threading.Barrier(concurrency + 1)

        def worker(i: int) -> None:
            barrier.wait()
            for _ in range(shares[i]):
                try:
                    samples[i].append(fn(sessions[i], self.poll))
                except Exception as err:  # reported, and the thread goes on
                    errors.append(f"{type(err).__name__}: {err}")

        threads = [threading.Thread(target=worker, args=(i,), name=f"bench-{name}-{i}", daemon=True)
                   for i in range(concurrency)]
        for t in threads:
            t.start()
        self.settle()
        calls0, origins0 = self.counter.snapshot()
        http0 = self.transport.snapshot()
        inv0 = sum(p.invocations for p in self.stack.pumps)
        barrier.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        self.settle()
        calls1, origins1 = self.counter.snapshot()
        http1 = self.transport.snapshot()
        inv1 = sum(p.invocations for p in self.stack.pumps)

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
            "completed": done, "errors": errors[:10], "error_count": len(errors),
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
        }


# -- output ----------------------------------------------------------------------------------------
def op_family(key: str) -> str:
    """dynamodb.UpdateItem, sqs.SendMessage[runs,delayed] -> compact column labels."""
    return key.replace("dynamodb.", "ddb.")


def print_report(results: list[dict], meta: dict) -> None:
    print(f"\nbench_lanes  n={meta['n']}  concurrency={meta['concurrency']}  cpus={meta['cpus']}  "
          f"claim poll {meta['poll_ms']} ms (doubling to {meta['poll_cap_ms']} ms)  "
          f"setup {meta['setup_s']} s  total {meta['total_s']} s")
    head = (f"{'scenario':<16}{'lane':<9}{'K':>3}{'done':>6}{'wall s':>8}{'rt/s':>8}{'p50 ms':>9}{'p95 ms':>9}"
            f"{'max ms':>9}{'drift ms':>13}{'api/rt':>8}{'-idle':>7}{'-recv':>7}{'http/rt':>8}{'polls':>7}")
    print(head)
    print("-" * len(head))
    for r in results:
        lat, api = r["latency_ms"], r["api_calls_per_rt"]
        drift = f"{lat['first_tenth_mean']:.0f}->{lat['last_tenth_mean']:.0f}" if lat["first_tenth_mean"] else "-"
        polls = f"{r['claim_polls_per_rt']:.2f}" if r["claim_polls_per_rt"] is not None else "-"
        print(f"{r['name']:<16}{r['lane']:<9}{r['concurrency']:>3}{r['completed']:>6}{r['wall_s']:>8.2f}"
              f"{r['round_trips_per_s']:>8.2f}{lat['p50']:>9.1f}{lat['p95']:>9.1f}{lat['max']:>9.1f}{drift:>13}"
              f"{api['all']:>8.2f}{api['excluding_idle_receives']:>7.2f}{api['excluding_all_receives']:>7.2f}"
              f"{r['http_requests_per_rt']['all']:>8.2f}{polls:>7}")
        if r["error_count"]:
            print(f"    {r['error_count']} errors, e.g. {r['errors'][0]}")
    print("  drift: mean latency of each session's first tenth -> last tenth of round trips; "
          "api/rt: all AWS calls, -idle: without empty ReceiveMessage long-polls, -recv: without any ReceiveMessage")

    ops = sorted({k for r in results for k in r["api_calls_per_rt"]["by_operation"]})
    print("\nAWS API calls per round trip, by operation")
    w = max(len(op_family(o)) for o in ops) + 2 if ops else 20
    print(f"{'operation':<{w}}" + "".join(f"{r['name']:>16}" for r in results))
    for op in ops:
        print(f"{op_family(op):<{w}}" + "".join(f"{r['api_calls_per_rt']['by_operation'].get(op, 0):>16.2f}"
                                               for r in results))
    print("\nAWS API calls per round trip, by origin (HTTP route or the run_driver pump), excluding idle receives")
    origins = sorted({k for r in results for k in r["api_calls_per_rt"]["by_origin"]})
    w = max(len(o) for o in origins) + 2 if origins else 20
    print(f"{'origin':<{w}}{'http/rt':>8}" + "".join(f"{r['name']:>16}" for r in results))
    for o in origins:
        cells = []
        for r in results:
            c = r["api_calls_per_rt"]["by_origin"].get(o, {})
            cells.append(sum(v for k, v in c.items() if not k.endswith("[idle]")))
        hits = [r["http_requests_per_rt"]["by_route"].get(o) for r in results]
        http = next((h for h in hits if h), None)
        print(f"{o:<{w}}{(f'{http:.2f}' if http else '-'):>8}" + "".join(f"{c:>16.2f}" for c in cells))
    print("  (http/rt: requests per round trip of that route, in the first scenario that uses it)")
    print("\nMedian time per phase of one round trip (ms)")
    for r in results:
        print(f"  {r['name']:<16}" + "  ".join(f"{k}={v:g}" for k, v in r["phase_p50_ms"].items()))
    print(f"  driver invocations per round trip: "
          + ", ".join(f"{r['name']}={r['driver_invocations_per_rt']}" for r in results))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="round trips per scenario (default 200)")
    ap.add_argument("--concurrency", type=int, default=8, help="sessions/threads in the concurrent scenarios")
    ap.add_argument("--json", default="bench-results/bench_lanes.json", help="where to write the figures")
    ap.add_argument("--poll-ms", type=float, default=5.0, help="first wait between empty claims (ms)")
    ap.add_argument("--poll-cap-ms", type=float, default=50.0, help="longest wait between empty claims (ms)")
    ap.add_argument("--skip-baseline", action="store_true", help="only the external-lane scenarios")
    args = ap.parse_args(argv)
    if args.n < 1 or args.concurrency < 1:
        ap.error("--n and --concurrency must be positive")

    t_start = time.perf_counter()
    tmp = tempfile.TemporaryDirectory(prefix="a3s-bench-")
    workspace = os.path.join(tmp.name, "ws")
    os.makedirs(workspace)
    stack = EmbeddedStack(workspace_root=os.path.join(tmp.name, "workspaces")).start()
    results: list[dict] = []
    try:
        counter = attach_counter(stack)
        transport = CountingTransport(stack.transport(), counter)
        bench = Bench(stack, counter, transport, workspace, Poll(args.poll_ms, args.poll_cap_ms))
        # Warm-up (not measured): first imports, model and validator set-up, moto's first calls.
        for external in (True, False):
            s = bench.new_session(external)
            for _ in range(3):
                (external_round_trip if external else internal_round_trip)(s, bench.poll)
        setup_s = time.perf_counter() - t_start
        plan = [("ext-seq", True, 1), ("ext-conc", True, args.concurrency)]
        if not args.skip_baseline:
            plan += [("int-seq", False, 1), ("int-conc", False, args.concurrency)]
        for name, external, k in plan:
            results.append(bench.scenario(name, external, args.n, k))
        meta = {"n": args.n, "concurrency": args.concurrency, "cpus": os.cpu_count(), "poll_ms": args.poll_ms,
                "poll_cap_ms": args.poll_cap_ms, "setup_s": round(setup_s, 2),
                "total_s": round(time.perf_counter() - t_start, 2), "python": sys.version.split()[0],
                "prompt": PROMPT, "task_timeout_ms": TASK_TIMEOUT_MS,
                "pump_concurrency": stack.pump_concurrency}
    finally:
        stack.stop()
        tmp.cleanup()
    print_report(results, meta)
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"meta": meta, "scenarios": results}, indent=2) + "\n")
        print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
