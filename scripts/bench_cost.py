#!/usr/bin/env python
"""What the kit costs on AWS, from the calls counted on the embedded stack: $ per 1M units.

Units, measured in one process on one embedded stack (moto + the kit's handlers, scripted model):
  rt        an external round trip: session.send('rt\\n/tool bash {"command": "x"}') on a session whose
            execute lane is external, its bash task done by set_external_task_handler; --round-trips
            in ONE session, the first five and the last five reported apart (a session's history grows)
  step      one step of session.parallel of --steps steps (no tools)
  wait-min  a client long-polling a run's events (wait_ms 15000, as the SDK does) for a minute
  idle-min  an idle a3s-worker (POST /lanes/{lane}/claim) and an idle external task handler
            (POST /sessions/{id}/external-tasks/claim): a minute without work, extrapolated to a month

Per unit: AWS calls by service and operation; DynamoDB write request units (1 KB of the larger of the
item before and after, x2 in a transaction, plus each gsi1 write), read request units (4 KB; eventual
reads half), item bytes written; SQS requests (64 KB chunks); API Gateway requests; Lambda invocations
and GB-s per function at the template's MemorySize, the duration being the handler's wall time here
(an estimate: moto is not DynamoDB). The model's own cost is excluded. The embedded pumps' empty
ReceiveMessage polls are left out of every unit: on AWS, Lambda's SQS pollers are a fixed cost per queue.

    .venv/bin/python scripts/bench_cost.py [--round-trips 30] [--steps 60] [--wait-s 60]
                                           [--json bench-results/cost.json]
"""
from __future__ import annotations

from bench_common import setup_env

setup_env()  # before anything imports Powertools or boto3

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from typing import Any  # noqa: E402

from bench_common import REPO, CountingTransport, write_json  # noqa: E402
from cost_model import PRICES, FunctionClock, attach_cost_counter, dollars, step_functions  # noqa: E402

from a3s_local.embedded import EmbeddedStack  # noqa: E402
from a3s_local.template import load_stack  # noqa: E402
from a3s_serverless import Agent  # noqa: E402
from a3s_serverless.worker import Worker  # noqa: E402

PROMPT = 'rt\n/tool bash {"command": "x"}'
SQS_OPS = ("SendMessage", "SendMessageBatch", "DeleteMessageBatch", "DeleteMessage")
EVENT_WAIT_MS = 15_000            # what the SDK's RunHandle.wait asks for
MINUTES_PER_MONTH = 30 * 24 * 60
API_FN, AUTH_FN = "ApiFunction", "AuthorizerFunction"


class CostTransport(CountingTransport):
    """Counts requests by route (claims split into hit / empty) and the time each route takes."""

    def __init__(self, inner: Any, counter: Any) -> None:
        super().__init__(inner, counter)
        self.seconds: Counter[str] = Counter()
        self._route = threading.local()

    def relabel(self, method: str, route: str, out: Any) -> str:
        if route.endswith("/claim"):
            route += " (hit)" if out.get("tasks") else " (empty)"
        self._route.last = route
        return route

    def request(self, method: str, path: str, body: Any = None, query: dict | None = None) -> Any:
        t0 = time.perf_counter()
        out = super().request(method, path, body, query)
        with self._lock:
            self.seconds[self._route.last] += time.perf_counter() - t0
        return out

    def snapshot_seconds(self) -> Counter:
        with self._lock:
            return Counter(self.seconds)


class Mark:
    """Every counter at one moment."""

    def __init__(self, bench: Bench) -> None:
        self.api = bench.counter.snapshot()
        self.http = bench.transport.snapshot()
        self.http_s = bench.transport.snapshot_seconds()
        self.fn = bench.clock.snapshot()
        self.t = time.perf_counter()


class Bench:
    def __init__(self, tmp: str) -> None:
        self.workspace = os.path.join(tmp, "ws")
        os.makedirs(self.workspace)
        self.stack = EmbeddedStack(workspace_root=os.path.join(tmp, "workspaces")).start()
        try:
            self.counter = attach_cost_counter(self.stack, queue_ops=SQS_OPS, hook_id="bench-cost")
            self.clock = FunctionClock(self.stack)
            self.transport = CostTransport(self.stack.transport(), self.counter)
            self.agent = Agent(self.transport, default_model="scripted", local=True)
            self.memory = {fid: spec.memory for fid, spec in load_stack(REPO / "template.yaml").functions.items()}
        except BaseException:
            self.stack.stop()
            raise

    def quiet(self, fn: Any) -> Any:
        with self.counter.quiet():
            return fn()

    def settle(self) -> None:
        self.quiet(lambda: self.stack.wait_idle(timeout=30))

    def mark(self, settle: bool = True) -> Mark:
        if settle:
            self.settle()
        return Mark(self)

    def stop(self) -> None:
        self.stack.stop()

    # -- one window of counts, per unit ----------------------------------------------------------
    def per_unit(self, a: Mark, b: Mark, n: float, routes: tuple[str, ...] | None = None) -> dict[str, Any]:
        """Figures of the window a..b divided by n. With `routes`, only those HTTP routes' calls, and
        their Lambda time from the route timings (the API function's, authorizer included)."""
        if routes is None:
            calls = b.api["calls"] - a.api["calls"]
            cost = b.api["cost"] - a.api["cost"]
            fn_inv = b.fn["invocations"] - a.fn["invocations"]
            fn_s = b.fn["seconds"] - a.fn["seconds"]
        else:
            calls = Counter()
            for r in routes:
                calls += b.api["by_origin"].get(r, Counter()) - a.api["by_origin"].get(r, Counter())
            cost = Counter()
            for r in {r.split(" (")[0] for r in routes}:  # capacity is kept by the route as requested
                cost += b.api["cost_by_origin"].get(r, Counter()) - a.api["cost_by_origin"].get(r, Counter())
            http_n = sum((b.http[r] - a.http[r]) for r in routes)
            fn_inv = Counter({API_FN: http_n})
            fn_s = Counter({API_FN: sum(b.http_s[r] - a.http_s[r] for r in routes)})
        idle_recv = calls.pop("sqs.ReceiveMessage[idle]", 0)
        calls = Counter({k: v for k, v in calls.items() if "(" not in k})
        http = Counter({r: b.http[r] - a.http[r] for r in (routes or b.http) if b.http[r] - a.http[r]})
        by_service = Counter()
        for k, v in calls.items():
            by_service[k.split(".")[0]] += v
        lam = {fid: {"invocations": round(fn_inv[fid] / n, 4), "seconds": round(fn_s[fid] / n, 5),
                     "mean_ms": round(1000 * fn_s[fid] / fn_inv[fid], 1) if fn_inv[fid] else None,
                     "memory_mb": self.memory[fid],
                     "gb_s": round(fn_s[fid] * self.memory[fid] / 1024 / n, 6)}
               for fid in sorted(fn_inv) if fn_inv[fid]}
        sent = None if routes else (b.api["bytes"]["dynamodb.sent"] - a.api["bytes"]["dynamodb.sent"]) / n
        ddb = {"wru": cost["wru"] / n, "wru_table": cost["wru_table"] / n, "wru_gsi": cost["wru_gsi"] / n,
               "gsi_writes": cost["gsi_writes"] / n, "rru": cost["rru"] / n,
               "item_bytes_written": cost["ddb_item_bytes_written"] / n, "request_bytes_sent": sent}
        sqs = (cost["sqs_requests"] - idle_recv) / n  # an empty receive is billed 1 request: left out with it
        secrets = cost["secrets_calls"] / n
        unit = {
            "aws_calls": round(sum(calls.values()) / n, 3),
            "aws_calls_by_service": {k: round(v / n, 3) for k, v in sorted(by_service.items())},
            "aws_calls_by_operation": {k: round(v / n, 3) for k, v in sorted(calls.items())},
            "dynamodb": {k: (round(v, 3) if v is not None else None) for k, v in ddb.items()},
            "sqs_requests": round(sqs, 3), "secrets_calls": round(secrets, 3),
            "http_requests": round(sum(http.values()) / n, 3),
            "http_requests_by_route": {k: round(v / n, 3) for k, v in sorted(http.items())},
            "lambda": {"invocations": round(sum(fn_inv.values()) / n, 4),
                       "gb_s": round(sum(f["gb_s"] for f in lam.values()), 6), "by_function": lam},
            "pump_idle_receives_left_out": idle_recv,
            "wall_s": round((b.t - a.t) / n, 4),
        }
        unit["usd"] = {k: round(v, 10) for k, v in dollars(unit).items()}
        unit["usd_per_1m"] = round(unit["usd"]["total"] * 1e6, 2)
        return unit

    # -- 1. external round trips -----------------------------------------------------------------
    def round_trips(self, n: int) -> dict[str, Any]:
        def worker(task: dict) -> dict:
            return {"success": True, "result": {"output": "x\n"}}

        session = self.quiet(lambda: self.agent.session(self.workspace, model="scripted", permissive=True))
        self.quiet(lambda: session.set_lane_handler("execute", "external", 600_000))
        session.set_external_task_handler(worker)
        marks = [self.mark()]
        for i in range(n):
            result = session.send(PROMPT)
            if "bash -> x" not in result.text:
                raise RuntimeError(f"round trip {i + 1}: unexpected answer {result.text!r}")
            marks.append(self.mark())
        session._stop_handler()
        k = min(5, n)
        per_turn = [self.per_unit(marks[i], marks[i + 1], 1) for i in range(n)]
        return {"first": self.per_unit(marks[0], marks[k], k), "last": self.per_unit(marks[n - k], marks[n], k),
                "all": self.per_unit(marks[0], marks[n], n), "n": n,
                "per_turn": [{"turn": i + 1, "aws_calls": u["aws_calls"], "wru": u["dynamodb"]["wru"],
                              "rru": u["dynamodb"]["rru"], "item_bytes_written": u["dynamodb"]["item_bytes_written"],
                              "usd_per_1m": u["usd_per_1m"]} for i, u in enumerate(per_turn)]}

    # -- 2. a parallel step ----------------------------------------------------------------------
    def parallel(self, n: int) -> dict[str, Any]:
        session = self.quiet(lambda: self.agent.session(self.workspace, model="scripted", permissive=True))
        specs = [{"task_id": f"t{i}", "agent": "general", "prompt": f"step {i}", "max_steps": 1} for i in range(n)]
        a = self.mark()
        outcomes = session.parallel(specs, progress=False)
        wall = time.perf_counter() - a.t
        b = self.mark()
        failed = [o for o in outcomes if not (o and o.get("success"))]
        if failed:
            raise RuntimeError(f"{len(failed)} of {n} steps failed, e.g. {failed[0]}")
        unit = self.per_unit(a, b, n)
        unit["workflow_wall_s"] = round(wall, 3)
        return unit

    # -- 3 and 4, side by side: a waiting client and idle workers --------------------------------
    def waiting_and_idle(self, seconds: float) -> dict[str, Any]:
        waiting = self.quiet(lambda: self.agent.session(self.workspace, model="scripted", permissive=True))
        self.quiet(lambda: waiting.set_lane_handler("execute", "external", 3_600_000))
        handle = self.quiet(lambda: waiting.send_async(PROMPT))
        deadline = time.monotonic() + 30
        while not self.quiet(waiting.pending_external_tasks):  # the run suspends on its task
            if time.monotonic() > deadline:
                raise TimeoutError("the waiting run never suspended on its external task")
            time.sleep(0.05)
        after = self.quiet(lambda: self.transport.inner.request(
            "GET", f"/runs/{handle.run_id}/events", query={"after": 0, "wait_ms": 0}))["next"]

        idle_session = self.quiet(lambda: self.agent.session(self.workspace, model="scripted", permissive=True))
        stop = threading.Event()
        lane_worker = Worker(self.transport, "query", self.workspace, name="bench-idle")
        threads = [threading.Thread(target=lane_worker.run, args=(stop,), daemon=True, name="bench-idle-worker")]
        a = self.mark(settle=False)
        idle_session.set_external_task_handler(lambda task: {"success": True})
        for t in threads:
            t.start()
        ramp = min(5.0, seconds / 4)  # the idle back-off reaches its 1 s cap after ~1.6 s
        end = time.perf_counter() + seconds
        steady: list[Mark] = []
        timer = threading.Timer(ramp, lambda: steady.append(self.mark(settle=False)))
        timer.start()
        polls = 0
        while (left := end - time.perf_counter()) > 0.05:
            page = self.transport.request("GET", f"/runs/{handle.run_id}/events",
                                          query={"after": after, "wait_ms": int(min(EVENT_WAIT_MS, left * 1000))})
            polls += 1
            if page["events"]:
                raise RuntimeError(f"the waiting run moved on: {page['events'][0]['type']}")
        b = self.mark(settle=False)
        stop.set()
        idle_session._stop_handler()
        for t in threads:
            t.join(5)
        timer.join()
        self.quiet(handle.cancel)
        minutes = (b.t - a.t) / 60
        events = ("GET /runs/{run}/events",)
        wait = self.per_unit(a, b, minutes, events)
        s, minutes_steady = steady[0], (b.t - steady[0].t) / 60
        lane = self.per_unit(s, b, minutes_steady, ("POST /lanes/query/claim (empty)",))
        handler = self.per_unit(s, b, minutes_steady, ("POST /sessions/{sess}/external-tasks/claim (empty)",))
        auth = self.authorizer_minute(b)
        for unit in (wait, lane, handler):  # API Gateway caches the answer 60 s per key: once a minute
            self.add_authorizer(unit, auth)
        wait["long_polls_per_minute"] = round(polls / minutes, 2)
        for unit in (lane, handler):
            unit["requests_per_month"] = round(unit["http_requests"] * MINUTES_PER_MONTH)
            unit["usd_per_month"] = round(unit["usd"]["total"] * MINUTES_PER_MONTH, 4)
        return {"wait_minute": wait, "idle_worker_minute": lane, "idle_handler_minute": handler,
                "measured_s": round(b.t - a.t, 1)}

    def authorizer_minute(self, b: Mark) -> dict[str, float]:
        inv, sec = b.fn["invocations"][AUTH_FN], b.fn["seconds"][AUTH_FN]
        return {"seconds": sec / inv if inv else 0.02, "memory_mb": self.memory[AUTH_FN]}

    @staticmethod
    def add_authorizer(unit: dict[str, Any], auth: dict[str, float]) -> None:
        """One authorizer invocation (and its API-key GetItem, half a read unit) per minute per key."""
        gb_s = auth["seconds"] * auth["memory_mb"] / 1024
        unit["lambda"]["by_function"][AUTH_FN] = {"invocations": 1, "seconds": round(auth["seconds"], 5),
                                                  "mean_ms": round(1000 * auth["seconds"], 1),
                                                  "memory_mb": auth["memory_mb"], "gb_s": round(gb_s, 6),
                                                  "modelled": "once a minute per key (gateway cache)"}
        unit["lambda"]["invocations"] = round(unit["lambda"]["invocations"] + 1, 4)
        unit["lambda"]["gb_s"] = round(unit["lambda"]["gb_s"] + gb_s, 6)
        unit["aws_calls"] = round(unit["aws_calls"] + 1, 3)
        unit["aws_calls_by_operation"]["dynamodb.GetItem[apikey]"] = \
            unit["aws_calls_by_operation"].get("dynamodb.GetItem[apikey]", 0) + 1
        unit["dynamodb"]["rru"] = round(unit["dynamodb"]["rru"] + 0.5, 3)
        unit["usd"] = {k: round(v, 10) for k, v in dollars(unit).items()}
        unit["usd_per_1m"] = round(unit["usd"]["total"] * 1e6, 2)

    def warm_up(self) -> None:
        """Cold starts and moto's first requests, not measured."""
        def go() -> None:
            s = self.agent.session(self.workspace, model="scripted", permissive=True)
            s.set_lane_handler("execute", "external", 600_000)
            s.set_external_task_handler(lambda task: {"success": True, "result": {"output": "x\n"}})
            s.send(PROMPT)
            s._stop_handler()
            s.parallel([{"task_id": f"w{i}", "agent": "general", "prompt": "w", "max_steps": 1} for i in range(2)],
                       progress=False)
        self.quiet(go)
        self.settle()


# -- Step Functions, for comparison ----------------------------------------------------------------
# A round trip as a Standard state machine with the callback pattern: ModelTurn (Task) -> Choice ->
# RunTool (Task, .waitForTaskToken: the token goes to the worker through SQS) -> ModelTurn -> Choice
# -> Succeed. A parallel step: one iteration of an inline Map whose one Task runs the step, plus the
# workflow's own Start/Map/Succeed shared by the N steps.
RT_TRANSITIONS = 6
RT_MODEL_TURNS = 2
RT_WORKER_SQS = 3   # send the token, the worker's receive, its delete


def sfn_comparison(rt: dict[str, Any], step: dict[str, Any], steps: int) -> dict[str, Any]:
    driver = rt["lambda"]["by_function"].get("RunDriverFunction", {})
    turn_gb_s = (driver.get("mean_ms") or 0) / 1000 * driver.get("memory_mb", 1024) / 1024
    lam_turn = PRICES["lambda_request"] + turn_gb_s * PRICES["lambda_gb_s"]
    rt_other = RT_MODEL_TURNS * lam_turn + RT_WORKER_SQS * PRICES["sqs_request"]
    rt_cost = step_functions(RT_TRANSITIONS, 1, rt["wall_s"], rt_other)
    step_cost = step_functions(1 + 3 / steps, 1 / steps, step["workflow_wall_s"] / steps, lam_turn)
    return {
        "round_trip": {"transitions": RT_TRANSITIONS, "usd_per_1m_standard": round(rt_cost["standard"] * 1e6, 2),
                       "usd_per_1m_express": round(rt_cost["express"] * 1e6, 2),
                       "note": "Express has no callback pattern: its figure bills the round trip's wall time "
                               "here as execution duration"},
        "parallel_step": {"transitions": round(1 + 3 / steps, 3),
                          "usd_per_1m_standard": round(step_cost["standard"] * 1e6, 2),
                          "usd_per_1m_express": round(step_cost["express"] * 1e6, 2)},
        "includes": "the model-turn Lambda invocations at the run driver's measured duration "
                    "(and for a round trip the worker's 3 SQS requests)",
    }


# -- output ----------------------------------------------------------------------------------------
def table(units: dict[str, dict[str, Any]]) -> None:
    names = list(units)
    w = 46
    print(f"{'per unit':<{w}}" + "".join(f"{n:>14}" for n in names))
    print("-" * (w + 14 * len(names)))

    def row(label: str, get: Any, fmt: str = "{:>14.3f}") -> None:
        cells = []
        for n in names:
            try:
                v = get(units[n])
            except (KeyError, TypeError):
                v = None
            cells.append(f"{'-':>14}" if v is None else fmt.format(v))
        print(f"{label:<{w}}" + "".join(cells))

    row("AWS calls", lambda u: u["aws_calls"], "{:>14.2f}")
    services = sorted({s for u in units.values() for s in u["aws_calls_by_service"]})
    for s in services:
        row(f"  {s}", lambda u, s=s: u["aws_calls_by_service"].get(s, 0), "{:>14.2f}")
    ops = sorted({o for u in units.values() for o in u["aws_calls_by_operation"]})
    for o in ops:
        row(f"    {o.replace('dynamodb.', 'ddb.')[:w - 5]}", lambda u, o=o: u["aws_calls_by_operation"].get(o, 0) or None,
            "{:>14.2f}")
    row("DynamoDB write req. units", lambda u: u["dynamodb"]["wru"], "{:>14.2f}")
    row("  of which indexes", lambda u: u["dynamodb"]["wru_gsi"], "{:>14.2f}")
    row("DynamoDB read req. units", lambda u: u["dynamodb"]["rru"], "{:>14.2f}")
    row("DynamoDB item bytes written", lambda u: u["dynamodb"]["item_bytes_written"], "{:>14.0f}")
    row("SQS requests", lambda u: u["sqs_requests"], "{:>14.2f}")
    row("API Gateway requests", lambda u: u["http_requests"], "{:>14.2f}")
    row("Lambda invocations", lambda u: u["lambda"]["invocations"], "{:>14.2f}")
    fns = sorted({f for u in units.values() for f in u["lambda"]["by_function"]})
    for f in fns:
        row(f"  {f.replace('Function', '')} (ms each)", lambda u, f=f: u["lambda"]["by_function"][f]["mean_ms"],
            "{:>14.1f}")
    row("Lambda GB-s", lambda u: u["lambda"]["gb_s"], "{:>14.4f}")
    print("-" * (w + 14 * len(names)))
    for line in ("lambda_requests", "lambda_gb_s", "dynamodb_writes", "dynamodb_reads", "sqs", "api_gateway",
                 "secrets_manager"):
        row(f"$ per 1M: {line}", lambda u, line=line: u["usd"][line] * 1e6, "{:>14.2f}")
    row("$ per 1M units", lambda u: u["usd_per_1m"], "{:>14.2f}")


def print_report(out: dict[str, Any]) -> None:
    m, rt = out["meta"], out["round_trip"]
    print(f"\nbench_cost  round trips={m['round_trips']} in one session  parallel steps={m['steps']}  "
          f"waiting/idle {out['waiting']['measured_s']} s  total {m['total_s']} s  kit {m['kit']}")
    units = {"rt 1-5": rt["first"], f"rt {rt['n'] - 4}-{rt['n']}": rt["last"], "par. step": out["parallel_step"],
             "wait-minute": out["waiting"]["wait_minute"], "idle worker/m": out["waiting"]["idle_worker_minute"],
             "idle handler/m": out["waiting"]["idle_handler_minute"]}
    table(units)
    print("\nprices (us-east-1, on demand): Lambda $0.20/1M requests + $0.0000133334/GB-s (arm64); DynamoDB "
          "$0.625/1M WRU, $0.125/1M RRU;\n  SQS $0.40/1M requests; HTTP API $1.00/1M requests; Secrets Manager "
          "$0.05/10k calls. The model's own cost is excluded.")
    print("  Lambda duration = the handler's wall time on the embedded stack (moto), at the template's MemorySize;\n"
          "  wait-minute: the API function is held for each long-poll's wait_ms; the authorizer runs once a minute\n"
          "  per key (API Gateway caches its answer 60 s); the embedded pumps' empty polls are left out (on AWS\n"
          "  Lambda's SQS pollers are a fixed cost per queue).")
    growth = rt["per_turn"]
    print("\ngrowth over one session (per round trip): turn " + ", ".join(
        f"{g['turn']}: {g['aws_calls']:.0f} calls/{g['wru']:.0f} WRU/{g['rru']:.1f} RRU/{g['item_bytes_written']:.0f} B"
        for g in growth if g["turn"] in (1, 2, 5, 10, 20, len(growth))))
    idle = out["waiting"]
    print(f"\nidle a3s-worker: {idle['idle_worker_minute']['http_requests']:.1f} requests/min = "
          f"{idle['idle_worker_minute']['requests_per_month']:,} a month = ${idle['idle_worker_minute']['usd_per_month']:.2f}"
          f" a month; idle task handler: {idle['idle_handler_minute']['http_requests']:.1f}/min = "
          f"${idle['idle_handler_minute']['usd_per_month']:.2f} a month")
    w = out["waiting"]["wait_minute"]
    print(f"waiting client: {w['long_polls_per_minute']:.1f} long-polls/min, {w['lambda']['gb_s']:.1f} GB-s, "
          f"{w['aws_calls']:.0f} AWS calls per minute = ${w['usd']['total']:.6f} per client-minute")
    s = out["step_functions"]
    print(f"\nStep Functions for comparison ($ per 1M, incl. {s['includes']}):")
    print(f"  external round trip: Standard ({s['round_trip']['transitions']} transitions) "
          f"${s['round_trip']['usd_per_1m_standard']:.2f}, Express ${s['round_trip']['usd_per_1m_express']:.2f} "
          f"({s['round_trip']['note']}); the kit ${rt['first']['usd_per_1m']:.2f} (turns 1-5)")
    print(f"  parallel step: Standard ({s['parallel_step']['transitions']} transitions) "
          f"${s['parallel_step']['usd_per_1m_standard']:.2f}, Express ${s['parallel_step']['usd_per_1m_express']:.2f}; "
          f"the kit ${out['parallel_step']['usd_per_1m']:.2f}")


def kit_commit() -> str | None:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    except Exception:
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--round-trips", type=int, default=30, help="external round trips in one session (>= 5)")
    ap.add_argument("--steps", type=int, default=60, help="steps of the parallel workflow")
    ap.add_argument("--wait-s", type=float, default=60.0, help="seconds of waiting client and idle workers")
    ap.add_argument("--json", default="bench-results/cost.json", help="where to write the figures ('' for none)")
    args = ap.parse_args(argv)
    if args.round_trips < 5 or args.steps < 1 or args.wait_s < 4:
        ap.error("--round-trips must be at least 5, --steps at least 1, --wait-s at least 4")
    logging.getLogger("samtranslator").setLevel(logging.ERROR)

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="a3s-bench-cost-") as tmp:
        bench = Bench(tmp)
        try:
            bench.warm_up()
            rt = bench.round_trips(args.round_trips)
            print(f"  {args.round_trips} round trips", file=sys.stderr, flush=True)
            step = bench.parallel(args.steps)
            print(f"  {args.steps} parallel steps", file=sys.stderr, flush=True)
            waiting = bench.waiting_and_idle(args.wait_s)
        finally:
            bench.stop()
    out = {"meta": {"round_trips": args.round_trips, "steps": args.steps, "wait_s": args.wait_s,
                    "total_s": round(time.perf_counter() - t0, 1), "kit": kit_commit(), "cpus": os.cpu_count(),
                    "prices": PRICES, "model": "scripted (its own cost excluded)",
                    "lambda_duration": "handler wall time on the embedded stack (moto), an estimate"},
           "round_trip": rt, "parallel_step": step, "waiting": waiting,
           "step_functions": sfn_comparison(rt["first"], step, args.steps)}
    print_report(out)
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
