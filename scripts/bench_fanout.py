#!/usr/bin/env python
"""Benchmark the fan-out engine: `session.parallel(specs)` with N trivial steps on the embedded stack.

Each step is a child run of the "general" subagent with prompt "step i" and max_steps 1; the offline
`scripted` model answers at once, so what is measured is the engine itself: launching, settling,
counting and finishing steps on DynamoDB + SQS, at most `max_parallel_tasks` (--concurrency) at once.

Measured per N: wall time and time per step; AWS API calls per step by service and operation
(botocore `before-call` hooks on every client of the stack; ReceiveMessage counted apart, as
`hit` or `idle`, since idle long-polls depend on wall time), split into the engine's calls (the run
driver, fed by the runs-queue pump) and the client's (the HTTP requests session.parallel makes:
submit, progress long-polls, the final view, each with the authorizer's API-key read); DynamoDB items
written per step (PutItem, UpdateItem, DeleteItem: one each; TransactWriteItems: each Put, Update or
Delete entry; BatchWriteItem: each request) by item kind; DynamoDB bytes read per step, with the read
and write capacity DynamoDB would bill (estimated from sizes: the workflow's one item grows with N);
the peak number of steps in flight, from the `history` of GET /workflows/{id} (step_started /
step_finished); and where the wall time goes (time inside AWS calls, how busy the embedded stack's
serialised moto DynamoDB is, process CPU / wall).

    .venv/bin/python scripts/bench_fanout.py [--sizes 10,100,1000] [--concurrency 8]
                                             [--json bench-results/bench_fanout.json]

Every size gets a fresh embedded stack (moto's in-memory table grows, and some of moto's operations
cost more on a larger table). Cost per step should stay flat as N grows: the report ends with the
ratio of calls/step and items/step at the largest N to the smallest. Figures are reported, never
asserted; a size that does not finish within --timeout seconds is cancelled and reported as such.
"""
from __future__ import annotations

from bench_common import setup_env

setup_env()  # before anything imports Powertools or boto3

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any

from bench_common import ApiCounter, CountingTransport, attach_counter, per_unit, table_items, write_json  # noqa: E402

from a3s_local import moto_patches  # noqa: E402
from a3s_local.embedded import EmbeddedStack  # noqa: E402
from a3s_serverless import Agent  # noqa: E402

AGENT = "general"
WARM_UP_STEPS = 2
SQS_QUEUE_OPS = ("SendMessage", "SendMessageBatch", "DeleteMessageBatch", "DeleteMessage")  # labelled by queue


class FanoutTransport(CountingTransport):
    """Also keeps the id of the workflow session.parallel starts, and splits GET /workflows/{wf} into
    progress long-polls and the final view."""

    def __init__(self, inner: Any, counter: ApiCounter) -> None:
        super().__init__(inner, counter)
        self.workflow_ids: list[str] = []

    def relabel(self, method: str, route: str, out: Any) -> str:
        if route.endswith("/workflows") and method == "POST" and isinstance(out, dict):
            self.workflow_ids.append(out.get("workflow_id", ""))
        if route.startswith("GET /workflows/") and isinstance(out, dict):
            route += " (final)" if out.get("done") else " (progress)"
        return route


def engine_client(by_origin: dict[str, Counter]) -> dict[str, Counter]:
    """Origins folded into the engine's (run driver, fed by the pumps) and the client's (HTTP requests)."""
    client: Counter[str] = Counter()
    for origin, c in by_origin.items():
        if origin != "driver":
            client += c
    return {"engine": Counter(by_origin.get("driver", Counter())), "client": client}


# -- moto's DynamoDB lock: how busy the embedded stack's one serialised resource is -----------------
class MotoLockMeter:
    """Time moto spends inside DynamoDB operations, which the embedded stack serialises under one lock
    (moto_patches._MOTO_LOCK) to make conditional writes atomic. busy / wall near 1 means that lock, not
    the engine, bounds throughput. Measured by acquiring the (re-entrant) lock first, then timing."""

    OPS = ("put_item", "update_item", "delete_item", "transact_write_items", "get_item", "query", "scan",
           "batch_write_item")

    def __init__(self) -> None:
        self.busy = 0.0
        self.wait = 0.0
        self.by_op: Counter[str] = Counter()    # moto operation -> seconds busy
        self._meter_lock = threading.Lock()

    def install(self) -> None:
        from moto.dynamodb.models import DynamoDBBackend

        lock, depth = moto_patches._MOTO_LOCK, threading.local()
        for name in self.OPS:
            original = getattr(DynamoDBBackend, name, None)
            if original is None or getattr(original, "a3s_bench_timed", False):
                continue

            def timed(backend: Any, *args: Any, __original: Callable = original, __name: str = name,
                      **kwargs: Any) -> Any:
                if getattr(depth, "n", 0):  # inside a transaction or batch: timed by the outer call
                    return __original(backend, *args, **kwargs)
                t0 = time.perf_counter()
                with lock:
                    t1 = time.perf_counter()
                    depth.n = 1
                    try:
                        return __original(backend, *args, **kwargs)
                    finally:
                        depth.n = 0
                        t2 = time.perf_counter()
                        with self._meter_lock:
                            self.wait += t1 - t0
                            self.busy += t2 - t1
                            self.by_op[__name] += t2 - t1

            timed.a3s_bench_timed = True  # type: ignore[attr-defined]
            timed.a3s_atomic = True  # type: ignore[attr-defined]  (it holds the stack's lock around the call)
            setattr(DynamoDBBackend, name, timed)

    def read(self) -> tuple[float, float, Counter]:
        with self._meter_lock:
            return self.busy, self.wait, Counter(self.by_op)


METER = MotoLockMeter()


# -- one size --------------------------------------------------------------------------------------
def peak_in_flight(history: list[dict]) -> tuple[int, float]:
    """Most steps running at once, and the mean over the span, from step_started/step_finished.
    At equal timestamps finishes count first (a finisher launches its successor after settling)."""
    order = sorted(history, key=lambda h: (h["ts"], h["type"] == "step_started"))
    running = peak = 0
    area, last_ts = 0.0, None
    for h in order:
        if last_ts is not None:
            area += running * (h["ts"] - last_ts)
        last_ts = h["ts"]
        running += 1 if h["type"] == "step_started" else -1
        peak = max(peak, running)
    span = (order[-1]["ts"] - order[0]["ts"]) if order else 0
    return peak, (area / span if span else float(peak))


def workflow_item_cost(size: int | None, calls: Counter, n: int) -> dict[str, Any]:
    """What the workflow's one item costs per step, given its size: DynamoDB bills a consistent read
    per 4 KB and a write per 1 KB of the item (the larger of before and after for an update), twice
    that inside a transaction. The item holds `order` (every step key), so its size grows with N."""
    reads = sum(v for k, v in calls.items() if k.startswith("dynamodb.GetItem[workflow]")) / n
    tx_updates = sum(v for k, v in calls.items() if k.startswith("dynamodb.TransactWriteItems[") and "workflow" in k) / n
    updates = sum(v for k, v in calls.items() if k.startswith("dynamodb.UpdateItem[workflow]")) / n
    out: dict[str, Any] = {"bytes": size, "reads_per_step": round(reads, 3),
                           "tx_updates_per_step": round(tx_updates, 3), "updates_per_step": round(updates, 3)}
    if size:
        out["rcu_per_step_est"] = round(reads * math.ceil(size / 4096), 2)
        out["wcu_per_step_est"] = round((2 * tx_updates + updates) * math.ceil(size / 1024), 2)
    return out


class Bench:
    """One fresh embedded stack, hooked, with one session of max_parallel_tasks = concurrency."""

    def __init__(self, workspace_root: str, workspace: str, concurrency: int) -> None:
        t0 = time.perf_counter()
        self.stack = EmbeddedStack(workspace_root=workspace_root).start()
        try:
            METER.install()
            self.counter = attach_counter(self.stack, queue_ops=SQS_QUEUE_OPS, hook_id="bench-fanout")
            self.transport = FanoutTransport(self.stack.transport(), self.counter)
            self.agent = Agent(self.transport, default_model="scripted", local=True)
            self.session = self.quiet(lambda: self.agent.session(
                workspace, model="scripted", permissive=True, max_parallel_tasks=concurrency))
        except BaseException:
            self.stack.stop()
            raise
        self.concurrency = concurrency
        self.start_s = time.perf_counter() - t0

    def quiet(self, fn: Callable[[], Any]) -> Any:
        """fn's own AWS calls are not counted (the engine's calls it causes still are)."""
        with self.counter.quiet():
            return fn()

    def settle(self, timeout: float = 30.0) -> None:
        self.quiet(lambda: self.stack.wait_idle(timeout=timeout))

    def table_items(self) -> int | None:
        return table_items(self.stack, self.counter)

    def workflow_item_bytes(self, workflow_id: str) -> int | None:
        """Size of the workflow's one item (it holds `order`, every step key): read on every launch."""
        def get() -> int | None:
            rt = self.stack.runtime
            out = rt.store._db.get_item(TableName=rt.settings.table, ConsistentRead=True,
                                        Key={"pk": {"S": f"T#local#W#{workflow_id}"}, "sk": {"S": "WF"}})
            return len(json.dumps(out["Item"])) if "Item" in out else None
        try:
            return self.quiet(get)
        except Exception:
            return None

    def warm_up(self) -> None:
        """First workflow (validators, imports, moto's first requests): run, not measured."""
        specs = [{"task_id": f"warm-{i}", "agent": AGENT, "prompt": f"warm {i}", "max_steps": 1}
                 for i in range(WARM_UP_STEPS)]
        self.quiet(lambda: self.session.parallel(specs))
        self.settle()

    def stop(self) -> None:
        self.stack.stop()

    def measure(self, n: int, timeout_s: float) -> dict[str, Any]:
        specs = [{"task_id": f"t{i:06d}", "agent": AGENT, "prompt": f"step {i}", "max_steps": 1} for i in range(n)]
        self.settle()
        items0 = self.table_items()
        before = self.counter.snapshot()
        http0 = self.transport.snapshot()
        inv0 = sum(p.invocations for p in self.stack.pumps)
        busy0, wait0, ops0 = METER.read()
        wf_seen = len(self.transport.workflow_ids)
        result: dict[str, Any] = {}
        samples: list[tuple[float, dict]] = []     # (epoch s, counter snapshot) every half second
        stop_sampling = threading.Event()

        def run() -> None:
            try:
                result["outcomes"] = self.session.parallel(specs)
            except Exception as err:  # reported
                result["error"] = f"{type(err).__name__}: {err}"

        def sample() -> None:
            while not stop_sampling.wait(0.5):
                samples.append((time.time(), self.counter.snapshot()))

        worker = threading.Thread(target=run, name=f"bench-fanout-{n}", daemon=True)
        sampler = threading.Thread(target=sample, name="bench-fanout-sampler", daemon=True)
        cpu0, t_epoch0, t0 = time.process_time(), time.time(), time.perf_counter()
        samples.append((t_epoch0, before))
        worker.start()
        sampler.start()
        worker.join(timeout_s)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        busy1, wait1, ops1 = METER.read()
        timed_out = worker.is_alive()
        stop_sampling.set()
        sampler.join()
        workflow_id = self.transport.workflow_ids[wf_seen] if len(self.transport.workflow_ids) > wf_seen else None
        if timed_out and workflow_id:  # stop launching; the client's long-poll then sees the end
            try:
                self.quiet(lambda: self.stack.transport().request("POST", f"/workflows/{workflow_id}/cancel"))
            except Exception as err:
                result.setdefault("error", f"cancel: {type(err).__name__}: {err}")
            worker.join(20)
        try:
            self.settle(timeout=60)
        except TimeoutError as err:  # a lost message or a stuck run: report, do not hang
            result.setdefault("error", f"settle: {err}")
        after = self.counter.snapshot()
        http = self.transport.snapshot() - http0
        inv = sum(p.invocations for p in self.stack.pumps) - inv0
        items1 = self.table_items()
        d = ApiCounter.diff(after, before)
        calls, items_by_origin = engine_client(d["by_origin"]), engine_client(d["items"])
        rcu = {"engine": d["rcu"]["driver"], "client": sum(v for k, v in d["rcu"].items() if k != "driver")}

        view: dict[str, Any] = {}
        if workflow_id:
            try:
                view = self.quiet(lambda: self.stack.transport().request("GET", f"/workflows/{workflow_id}"))
            except Exception as err:  # reported; the counts above stand without the history
                result.setdefault("error", f"view: {type(err).__name__}: {err}")
        history = view.get("history") or []
        outcomes = result.get("outcomes") or view.get("outcomes") or []
        ok = sum(1 for o in outcomes if o and o.get("success"))
        peak, mean_in_flight = peak_in_flight(history)
        finished_ts = sorted(h["ts"] for h in history if h["type"] == "step_finished")

        # ms per call early and late in the run: samples nearest the 10th and 90th percentile of finishes
        def at(frac: float) -> dict | None:
            if len(finished_ts) < 10 or len(samples) < 3:
                return None
            ts = finished_ts[int(frac * (len(finished_ts) - 1))] / 1000
            return min(samples, key=lambda s: abs(s[0] - ts))[1]

        def mean_ms(a: dict, b: dict) -> dict[str, float]:
            return ApiCounter.mean_ms(b["op_time"] - a["op_time"], b["op_timed"] - a["op_timed"])

        early_mark, late_mark = at(0.1), at(0.9)
        early = mean_ms(before, early_mark) if early_mark else {}
        late = mean_ms(late_mark, after) if late_mark else {}

        engine, client = calls["engine"], calls["client"]
        recv = Counter({k: v for k, v in (engine + client).items() if k.startswith("sqs.ReceiveMessage")})
        no_recv = lambda c: Counter({k: v for k, v in c.items() if not k.startswith("sqs.ReceiveMessage")})  # noqa: E731
        engine_calls, client_calls = no_recv(engine), no_recv(client)
        by_service: Counter[str] = Counter()
        for k, v in (engine_calls + client_calls).items():
            by_service[k.split(".")[0]] += v
        items = items_by_origin["engine"] + items_by_origin["client"]
        done = len(finished_ts) or n
        denom = n if not timed_out else max(1, done)
        time_s, timed = d["op_time"], d["op_timed"]
        return {
            "n": n, "concurrency": self.concurrency, "workflow_id": workflow_id,
            "completed": not timed_out and "error" not in result, "timed_out": timed_out,
            "error": result.get("error"), "steps_finished": len(finished_ts), "steps_succeeded": ok,
            "wall_s": round(wall, 3), "ms_per_step": round(1000 * wall / denom, 2),
            "steps_per_s": round(denom / wall, 2) if wall else None,
            "cpu_s": round(cpu, 2), "cpu_per_wall": round(cpu / wall, 2) if wall else None,
            "moto_ddb_lock": {"busy_s": round(busy1 - busy0, 2), "busy_per_wall": round((busy1 - busy0) / wall, 2),
                              "wait_s": round(wait1 - wait0, 2),
                              "busy_s_by_op": {k: round(v, 2) for k, v in (ops1 - ops0).most_common() if v > 0.005}},
            "peak_in_flight": peak, "mean_in_flight": round(mean_in_flight, 2),
            "api_calls_per_step": {
                "engine": round(sum(engine_calls.values()) / denom, 3),
                "client": round(sum(client_calls.values()) / denom, 3),
                "all_but_receive": round(sum((engine_calls + client_calls).values()) / denom, 3),
                "receive_hit": round((recv["sqs.ReceiveMessage[hit]"]) / denom, 3),
                "receive_idle": round((recv["sqs.ReceiveMessage[idle]"]) / denom, 3),
                "receive_idle_total": recv["sqs.ReceiveMessage[idle]"],
                "by_service": per_unit(by_service, denom),
                "engine_by_operation": per_unit(engine_calls, denom),
                "client_by_operation": per_unit(client_calls, denom),
            },
            "api_calls_total": {"engine": sum(engine_calls.values()), "client": sum(client_calls.values()),
                                "receive": dict(recv)},
            "ddb_items_written_per_step": {"all": round(sum(items.values()) / denom, 3), "by_kind": per_unit(items, denom)},
            "ddb_items_written_total": sum(items.values()),
            "ddb_kb_per_step": {"read": round(d["bytes"]["dynamodb.read"] / 1024 / denom, 2),
                                "sent": round(d["bytes"]["dynamodb.sent"] / 1024 / denom, 2)},
            "ddb_rcu_per_step_est": {o: round(rcu[o] / denom, 2) for o in ("engine", "client")},
            "workflow_item": workflow_item_cost(self.workflow_item_bytes(workflow_id) if workflow_id else None,
                                                engine_calls + client_calls, denom),
            "http_requests_per_step": {"all": round(sum(http.values()) / denom, 3), "by_route": per_unit(http, denom)},
            "http_requests_total": dict(http),
            "driver_invocations": inv, "driver_invocations_per_step": round(inv / denom, 3),
            "ms_per_call": ApiCounter.mean_ms(time_s, timed),
            "seconds_in_calls": {k: round(v, 2) for k, v in sorted(time_s.items(), key=lambda kv: -kv[1]) if v > 0.005},
            "ms_per_call_first_tenth": early, "ms_per_call_last_tenth": late,
            "table_items": {"before": items0, "after": items1},
            "stack_start_s": round(self.start_s, 2),
            "lambda_containers": {fid: getattr(fn, "containers", None) for fid, fn in self.stack.functions.items()},
        }


# -- output ----------------------------------------------------------------------------------------
def short(op: str) -> str:
    return op.replace("dynamodb.", "ddb.")


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.3f}" if a is not None and b else "n/a"


def print_report(results: list[dict], meta: dict) -> None:
    print(f"\nbench_fanout  sizes={meta['sizes']}  max_parallel_tasks={meta['concurrency']}  cpus={meta['cpus']}  "
          f"runs-queue pump: {meta['pump_concurrency']} invocations x batch {meta['runs_batch_size']}  "
          f"total {meta['total_s']} s")
    head = (f"{'N':>6}{'wall s':>9}{'ms/step':>9}{'step/s':>8}{'peak':>6}{'mean':>6}"
            f"{'api/step':>10}{'engine':>8}{'client':>8}{'recv hit':>9}{'idle':>6}"
            f"{'items/step':>11}{'KB rd/st':>9}{'http/st':>8}{'inv/st':>7}{'lock%':>7}{'cpu%':>6}")
    print(head)
    print("-" * len(head))
    for r in results:
        api = r["api_calls_per_step"]
        print(f"{r['n']:>6}{r['wall_s']:>9.2f}{r['ms_per_step']:>9.2f}{r['steps_per_s']:>8.1f}"
              f"{r['peak_in_flight']:>6}{r['mean_in_flight']:>6.1f}"
              f"{api['all_but_receive']:>10.2f}{api['engine']:>8.2f}{api['client']:>8.2f}"
              f"{api['receive_hit']:>9.2f}{api['receive_idle_total']:>6}"
              f"{r['ddb_items_written_per_step']['all']:>11.2f}{r['ddb_kb_per_step']['read']:>9.2f}"
              f"{r['http_requests_per_step']['all']:>8.2f}{r['driver_invocations_per_step']:>7.2f}"
              f"{100 * r['moto_ddb_lock']['busy_per_wall']:>7.0f}{100 * r['cpu_per_wall']:>6.0f}")
        if r["timed_out"]:
            print(f"    stopped after {r['wall_s']} s (--timeout) with {r['steps_finished']} of {r['n']} steps "
                  f"finished; the workflow was cancelled")
        elif r["steps_succeeded"] != r["n"]:
            print(f"    only {r['steps_succeeded']} of {r['n']} steps succeeded")
        if r["error"]:
            print(f"    error: {r['error'][:200]}")
    print("  peak/mean: steps in flight from the workflow's history (bound: max_parallel_tasks); api/step: AWS calls\n"
          "  per step without ReceiveMessage = engine (run driver + pump) + client (session.parallel's HTTP requests,\n"
          "  with the authorizer's reads); recv hit: ReceiveMessage calls that returned messages, per step; idle:\n"
          "  empty long-polls in total (they depend on wall time); KB rd/st: DynamoDB response bytes per step;\n"
          "  inv/st: run_driver invocations per step; lock%: time moto's serialised DynamoDB spent busy / wall;\n"
          "  cpu%: process CPU time / wall (one GIL: ~100% means Python-bound)")

    names = "".join(f"{'N=' + str(r['n']):>10}" for r in results)
    for title, field in (("engine calls / step", "engine_by_operation"), ("client calls / step", "client_by_operation")):
        ops = sorted({k for r in results for k in r["api_calls_per_step"][field]})
        if not ops:
            continue
        w = max([len(short(o)) for o in ops] + [30]) + 2
        print(f"\n{title:<{w}}{names}")
        for op in ops:
            print(f"{short(op):<{w}}" + "".join(f"{r['api_calls_per_step'][field].get(op, 0):>10.3f}" for r in results))
    kinds = sorted({k for r in results for k in r["ddb_items_written_per_step"]["by_kind"]})
    w = 32
    print(f"\n{'DynamoDB items written / step':<{w}}{names}")
    for k in kinds:
        print(f"{k:<{w}}" + "".join(f"{r['ddb_items_written_per_step']['by_kind'].get(k, 0):>10.3f}" for r in results))
    print(f"{'(all)':<{w}}" + "".join(f"{r['ddb_items_written_per_step']['all']:>10.3f}" for r in results))
    routes = sorted({k for r in results for k in r["http_requests_per_step"]["by_route"]})
    w = max([len(x) for x in routes] + [30]) + 2
    print(f"\n{'HTTP requests / step':<{w}}{names}")
    for route in routes:
        print(f"{route:<{w}}" + "".join(f"{r['http_requests_per_step']['by_route'].get(route, 0):>10.3f}" for r in results))

    print(f"\n{'the workflow item':<{w}}{names}")
    for label, key in (("bytes", "bytes"), ("reads / step", "reads_per_step"),
                       ("updates in transactions / step", "tx_updates_per_step"),
                       ("est. RCU / step for its reads", "rcu_per_step_est"),
                       ("est. WCU / step for its updates", "wcu_per_step_est")):
        cells = [r["workflow_item"].get(key) for r in results]
        print(f"{label:<{w}}" + "".join(f"{'-':>10}" if c is None else f"{c:>10}" if key == "bytes" else f"{c:>10.2f}"
                                        for c in cells))
    print(f"{'est. RCU / step, all reads':<{w}}"
          + "".join(f"{r['ddb_rcu_per_step_est']['engine'] + r['ddb_rcu_per_step_est']['client']:>10.2f}" for r in results))
    print("  (DynamoDB bills a consistent read per 4 KB, a write per 1 KB of the item, x2 in a transaction;\n"
          "   estimated from response sizes and the workflow item's size at the end)")

    print("\nwhere the time goes (seconds inside AWS calls, summed over threads; mean ms per call, first -> last tenth):")
    for r in results:
        top = list(r["seconds_in_calls"].items())[:4]
        growth = [f"{short(op)} {r['ms_per_call_first_tenth'][op]:.1f}->{r['ms_per_call_last_tenth'][op]:.1f}"
                  for op in ("dynamodb.GetItem", "dynamodb.UpdateItem", "dynamodb.TransactWriteItems", "dynamodb.Query")
                  if op in r["ms_per_call_first_tenth"] and op in r["ms_per_call_last_tenth"]]
        print(f"  N={r['n']:<6}" + ", ".join(f"{short(k)} {v:.1f}" for k, v in top)
              + ("  | ms/call: " + ", ".join(growth) if growth else "")
              + f"  | moto busy {r['moto_ddb_lock']['busy_s']} s ("
              + ", ".join(f"{k} {v}" for k, v in list(r['moto_ddb_lock']['busy_s_by_op'].items())[:2])
              + f"), waited {r['moto_ddb_lock']['wait_s']} s"
              + f"  | table items {r['table_items']['before']}->{r['table_items']['after']}")

    done = [r for r in results if r["steps_finished"]]
    if len(done) >= 2:
        lo, hi = min(done, key=lambda r: r["n"]), max(done, key=lambda r: r["n"])
        a_lo, a_hi = lo["api_calls_per_step"], hi["api_calls_per_step"]
        partial = (f"; N={hi['n']} was stopped after {hi['steps_finished']} steps, its figures are per finished step"
                   if not hi["completed"] else "")
        print(f"\nflatness, N={hi['n']} vs N={lo['n']} (per-step ratio; 1.000 = flat{partial}):")
        print(f"  AWS calls/step (no ReceiveMessage)  {ratio(a_hi['all_but_receive'], a_lo['all_but_receive'])}"
              f"   ({a_lo['all_but_receive']:.2f} -> {a_hi['all_but_receive']:.2f})")
        print(f"    engine calls/step                 {ratio(a_hi['engine'], a_lo['engine'])}"
              f"   ({a_lo['engine']:.2f} -> {a_hi['engine']:.2f})")
        print(f"    client calls/step                 {ratio(a_hi['client'], a_lo['client'])}"
              f"   ({a_lo['client']:.2f} -> {a_hi['client']:.2f})")
        print(f"  DynamoDB items written/step         "
              f"{ratio(hi['ddb_items_written_per_step']['all'], lo['ddb_items_written_per_step']['all'])}"
              f"   ({lo['ddb_items_written_per_step']['all']:.2f} -> {hi['ddb_items_written_per_step']['all']:.2f})")
        rcu = [sum(r["ddb_rcu_per_step_est"].values()) for r in (lo, hi)]
        print(f"  est. DynamoDB RCU/step              {ratio(rcu[1], rcu[0])}   ({rcu[0]:.2f} -> {rcu[1]:.2f})")
        print(f"  DynamoDB KB read/step               {ratio(hi['ddb_kb_per_step']['read'], lo['ddb_kb_per_step']['read'])}"
              f"   ({lo['ddb_kb_per_step']['read']:.2f} -> {hi['ddb_kb_per_step']['read']:.2f})")
        print(f"  wall ms/step                        {ratio(hi['ms_per_step'], lo['ms_per_step'])}"
              f"   ({lo['ms_per_step']:.1f} -> {hi['ms_per_step']:.1f})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10,100,1000", help="comma-separated step counts (default 10,100,1000)")
    ap.add_argument("--concurrency", type=int, default=8, help="the session's max_parallel_tasks (default 8)")
    ap.add_argument("--json", default="bench-results/bench_fanout.json", help="where to write the figures ('' for none)")
    ap.add_argument("--timeout", type=float, default=300.0,
                    help="seconds one size may take before its workflow is cancelled (default 300)")
    args = ap.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        ap.error("--sizes must be comma-separated integers")
    if not sizes or min(sizes) < 1 or args.concurrency < 1:
        ap.error("--sizes and --concurrency must be positive")
    logging.getLogger("samtranslator").setLevel(logging.ERROR)  # "unpublished metrics" at teardown

    t_start = time.perf_counter()
    results: list[dict] = []
    pump_info: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="a3s-bench-fanout-") as tmp:
        workspace = os.path.join(tmp, "ws")
        os.makedirs(workspace)
        for n in sizes:
            bench = Bench(os.path.join(tmp, "workspaces"), workspace, args.concurrency)
            try:
                runs = next((p for p in bench.stack.pumps if p.url == bench.stack.runtime.settings.runs_queue_url), None)
                pump_info = {"pump_concurrency": bench.stack.pump_concurrency,
                             "runs_batch_size": runs.batch_size if runs else None}
                bench.warm_up()
                results.append(bench.measure(n, args.timeout))
            finally:
                bench.stop()
            r = results[-1]
            print(f"  N={n}: {r['steps_finished']}/{n} steps in {r['wall_s']} s"
                  + (" (timed out)" if r["timed_out"] else ""), file=sys.stderr, flush=True)
    meta = {"sizes": sizes, "concurrency": args.concurrency, "cpus": os.cpu_count(), "timeout_s": args.timeout,
            "total_s": round(time.perf_counter() - t_start, 2), "python": sys.version.split()[0],
            "agent": AGENT, "prompt": "step i", "max_steps": 1, "model": "scripted", **pump_info}
    print_report(results, meta)
    if args.json:
        write_json(args.json, {"meta": meta, "sizes": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
