#!/usr/bin/env python
"""Benchmark external-task round trips on the embedded stack (moto + the kit's handlers, no network).

One round trip: `send_async("rt\\n/tool bash ...")` -> the run suspends with an external task on the
`execute` lane -> a worker completes it with {"output": ...} -> the run resumes and finishes
(`handle.wait()`, told over the stack's WebSocket connection, as the SDK is). Two workers:
  sdk-*  the SDK's own, `set_external_task_handler` (told of each task over the WebSocket API, it
         leases it by id), the client calling `session.send()`: a program written as the A3S Code
         examples are
  ext-*  this script, polling `claim_external_tasks` with a short back-off (a worker without push)
Baseline: the same prompt with the execute lane internal (the tool runs inside run_driver).

Measured per scenario: round trips per second (sequential, and K threads each with its own session),
latency p50/p95/max of one round trip, AWS API calls per round trip (botocore hooks on every client
of the stack, by service.operation; ReceiveMessage split into calls that returned messages and idle
long-polls, which depend on wall time), HTTP requests per round trip, and where the time goes.

    .venv/bin/python scripts/bench_lanes.py [--n 200] [--concurrency 8] [--json bench-results/bench_lanes.json]

Every scenario gets a fresh embedded stack: moto's Query and TransactWriteItems cost grows with the
size of the whole table, so a shared stack would make later scenarios look slower. Mean ms per call
are client-side times inside botocore (moto's work, and waiting for the embedded stack's moto lock).

Figures are reported, never asserted.
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
from collections.abc import Callable  # noqa: E402
from typing import Any

from bench_common import REPO, CountingTransport, attach_counter, pct, per_unit, table_items, write_json  # noqa: E402

from a3s_local.embedded import EmbeddedStack  # noqa: E402
from a3s_serverless import Agent  # noqa: E402

PROMPT = 'rt\n/tool bash {"command": "echo i"}'
TASK_TIMEOUT_MS = 600_000          # long enough that no timeout fires during the run
ROUND_TRIP_TIMEOUT_S = 20.0

# bench_lanes' labels for two item kinds (bench_common names them "control" and "runs-index")
KIND_NAMES = {"control": "ctrl", "runs-index": "runs"}


class LanesTransport(CountingTransport):
    """Splits claims into those that returned a task (hit) and those that did not (empty). The
    client waits on its runs over the stack's WebSocket connections, as the SDK does."""

    def open_socket(self) -> Any:
        return self.inner.open_socket()

    def relabel(self, method: str, route: str, out: Any) -> str:
        if route.endswith("/external-tasks/claim"):
            route += " (hit)" if out.get("tasks") else " (empty)"
        return route


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
    claimed_ms = time.time() * 1000
    task = tasks[0]
    if not session.complete_external_task(task["task_id"], success=True, result={"output": "i\n"}):
        raise RuntimeError(f"completion of {task['task_id']} was refused")
    t3 = time.perf_counter()
    result = handle.wait(timeout=ROUND_TRIP_TIMEOUT_S)
    t4 = time.perf_counter()
    if "bash -> i" not in result.text:
        raise RuntimeError(f"unexpected answer {result.text!r}")
    return {"total": t4 - t0, "send": t1 - t0, "until_claimed": t2 - t1, "complete": t3 - t2,
            "resume_wait": t4 - t3, "claim_polls": polls, "run_id": handle.run_id, "ended_ms": time.time() * 1000,
            # the task existed this long before a claim returned it (the worker's polling granularity)
            "claim_lag_ms": claimed_ms - float(task.get("created_at") or claimed_ms)}


def handler_round_trip(session: Any, poll: Poll) -> dict[str, float]:
    t0 = time.perf_counter()
    result = session.send(PROMPT)
    t1 = time.perf_counter()
    if "bash -> i" not in result.text:
        raise RuntimeError(f"unexpected answer {result.text!r}")
    return {"total": t1 - t0, "ended_ms": time.time() * 1000}


def internal_round_trip(session: Any, poll: Poll) -> dict[str, float]:
    t0 = time.perf_counter()
    handle = session.send_async(PROMPT)
    t1 = time.perf_counter()
    result = handle.wait(timeout=ROUND_TRIP_TIMEOUT_S)
    t2 = time.perf_counter()
    if "bash -> i" not in result.text:
        raise RuntimeError(f"unexpected answer {result.text!r}")
    return {"total": t2 - t0, "send": t1 - t0, "wait": t2 - t1, "run_id": handle.run_id,
            "ended_ms": time.time() * 1000}


ROUND_TRIPS: dict[str, Callable[[Any, Poll], dict]] = {
    "handler": handler_round_trip, "poll": external_round_trip, "internal": internal_round_trip}


# -- scenarios -------------------------------------------------------------------------------------
class Bench:
    """One fresh embedded stack, with the counters hooked in, for one scenario."""

    def __init__(self, workspace_root: str, workspace: str, poll: Poll) -> None:
        t0 = time.perf_counter()
        self.stack = EmbeddedStack(workspace_root=workspace_root).start()
        try:
            self.counter = attach_counter(self.stack, mark_delayed=True, tx_items=True, kind_names=KIND_NAMES,
                                          hook_id="bench-lanes")
            self.transport = LanesTransport(self.stack.transport(), self.counter)
        except BaseException:
            self.stack.stop()
            raise
        self.agent = Agent(self.transport, default_model="scripted", local=True)
        self.workspace, self.poll = workspace, poll
        self.sessions: list[Any] = []
        self.start_s = time.perf_counter() - t0

    def warm_up(self, kind: str, n: int = 2) -> None:
        """First calls (validators, moto's first requests) on a session of its own, not measured."""
        s = self.new_session(kind)
        for _ in range(n):
            with self.counter.quiet():  # not counted: made before the snapshot anyway
                ROUND_TRIPS[kind](s, self.poll)
        s._stop_handler()  # its handler would be told of the measured sessions' tasks too

    def notice_lags(self, samples: list[dict]) -> None:
        """How long after the run's last checkpoint (its updated_at) did wait() return: the cost of the
        events long-poll's back-off and of the requests that follow. Read after the scenario."""
        from a3s_local.embedded import LOCAL_TENANT

        with self.counter.quiet():
            for s in samples:
                try:
                    run = self.stack.runtime.store.get_run(LOCAL_TENANT, s["run_id"])
                    s["notice_lag_ms"] = s["ended_ms"] - float(run.updated_at)
                except Exception:
                    pass

    def table_items(self) -> int | None:
        return table_items(self.stack, self.counter)

    def driver_invocations(self) -> int:
        """The run driver's invocations: by the runs queue's pump and by hand-over alike."""
        return self.stack.functions["RunDriverFunction"].invocations

    def stop(self) -> None:
        for s in self.sessions:
            s._stop_handler()
        self.stack.stop()

    def new_session(self, kind: str) -> Any:
        with self.counter.quiet():
            s = self.agent.session(self.workspace, model="scripted", permissive=True)
            if kind != "internal":
                s.set_lane_handler("execute", "external", TASK_TIMEOUT_MS)
            if kind == "handler":
                s.set_external_task_handler(lambda task: {"success": True, "result": {"output": "i\n"}})
            self.sessions.append(s)
            return s

    def settle(self) -> None:
        """Wait until the driver has finished its tail work (checkpoints after the client saw `done`),
        without counting this thread's own polling."""
        with self.counter.quiet():
            self.stack.wait_idle(timeout=15)

    def scenario(self, name: str, kind: str, n: int, concurrency: int, budget_s: float) -> dict[str, Any]:
        fn = ROUND_TRIPS[kind]
        concurrency = max(1, min(concurrency, n))
        shares = [n // concurrency + (1 if i < n % concurrency else 0) for i in range(concurrency)]
        sessions = [self.new_session(kind) for _ in range(concurrency)]
        samples: list[list[dict]] = [[] for _ in range(concurrency)]
        errors: list[str] = []
        barrier = threading.Barrier(concurrency + 1)
        deadline = [float("inf")]
        truncated = threading.Event()
        progress, progress_lock = [0], threading.Lock()
        marks: dict[int, Any] = {0: (Counter(), Counter())}   # round trips done -> op timers then

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
                        marks[progress[0]] = self.counter.raw_timings()  # for cost early vs late
                except Exception as err:  # reported, and the thread goes on
                    errors.append(f"{type(err).__name__}: {err}")

        threads = [threading.Thread(target=worker, args=(i,), name=f"bench-{name}-{i}", daemon=True)
                   for i in range(concurrency)]
        for t in threads:
            t.start()
        self.settle()
        snap0 = self.counter.snapshot()
        http0 = self.transport.snapshot()
        items0 = self.table_items()
        self.counter.reset_timers()
        inv0 = self.driver_invocations()
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
        snap1 = self.counter.snapshot()
        http1 = self.transport.snapshot()
        inv1 = self.driver_invocations()
        timings = self.counter.timings()
        end_t, end_c = self.counter.raw_timings()
        # Per-call cost in the first and the last tenth of the round trips (the table grows meanwhile).
        tenth_n = max(1, progress[0] // 10)
        early = self.counter.mean_ms(*marks[tenth_n]) if progress[0] >= 2 else {}
        cut = marks.get(progress[0] - tenth_n)
        late = self.counter.mean_ms(end_t - cut[0], end_c - cut[1]) if cut and progress[0] >= 2 else {}
        items1 = self.table_items()

        ok = [s for per in samples for s in per]
        done = len(ok)
        calls = snap1["calls"] - snap0["calls"]
        origins = {k: v - snap0["by_origin"].get(k, Counter()) for k, v in snap1["by_origin"].items()}
        origins = {k: v for k, v in origins.items() if sum(v.values())}
        http = http1 - http0
        total = sum(v for k, v in calls.items() if "(" not in k)   # "(items)" counts items, not calls
        auth = sum(v for k, v in calls.items() if k.endswith("[apikey]"))
        idle = calls.get("sqs.ReceiveMessage[idle]", 0)
        recv = idle + calls.get("sqs.ReceiveMessage[hit]", 0)
        lat = [s["total"] * 1000 for s in ok]
        # Latency drift over a session's life (its history grows with every run): first vs last tenth.
        tenth = max(1, min(len(per) for per in samples) // 10) if done else 0
        first = [s["total"] * 1000 for per in samples for s in per[:tenth]]
        last = [s["total"] * 1000 for per in samples for s in per[-tenth:]] if tenth else []
        self.notice_lags(ok)
        phases = sorted({k for s in ok for k in s} - {"total", "run_id", "ended_ms", "claim_lag_ms", "notice_lag_ms"})
        lags = {k: {"p50": round(pct([s[k] for s in ok if k in s], 50), 1),
                    "p95": round(pct([s[k] for s in ok if k in s], 95), 1)}
                for k in ("claim_lag_ms", "notice_lag_ms") if any(k in s for s in ok)}
        return {
            "name": name, "lane": "internal" if kind == "internal" else "external", "worker": kind, "n": n,
            "concurrency": concurrency,
            "completed": done, "truncated": truncated.is_set(), "errors": errors[:10], "error_count": len(errors),
            "wall_s": round(wall, 3), "round_trips_per_s": round(done / wall, 2) if wall else None,
            "latency_ms": {"p50": round(pct(lat, 50), 1), "p95": round(pct(lat, 95), 1),
                           "max": round(max(lat), 1) if lat else None,
                           "mean": round(sum(lat) / len(lat), 1) if lat else None,
                           "first_tenth_mean": round(sum(first) / len(first), 1) if first else None,
                           "last_tenth_mean": round(sum(last) / len(last), 1) if last else None},
            "phase_p50_ms": {k: round(pct([s[k] * (1 if k == "claim_polls" else 1000) for s in ok], 50), 2)
                             for k in phases},
            "lags_ms": lags,
            "claim_polls_per_rt": round(sum(s.get("claim_polls", 0) for s in ok) / done, 2) if kind == "poll" and done else None,
            "api_calls_per_rt": {
                "all": round(total / done, 2) if done else None,
                "excluding_idle_receives": round((total - idle) / done, 2) if done else None,
                "excluding_all_receives": round((total - recv) / done, 2) if done else None,
                # HTTP API caches authorizer results (ReauthorizeEvery); the embedded stack does not
                "excluding_idle_receives_and_authorizer": round((total - idle - auth) / done, 2) if done else None,
                "idle_receives_total": idle,
                "by_operation": per_unit(calls, done),
                "by_origin": {k: per_unit(v, done) for k, v in sorted(origins.items())},
            },
            "http_requests_per_rt": {"all": round(sum(http.values()) / done, 2) if done else None,
                                     "by_route": per_unit(http, done)},
            "driver_invocations_per_rt": round((inv1 - inv0) / done, 2) if done else None,
            "ms_per_call": timings,
            "ms_per_call_first_tenth": early,
            "ms_per_call_last_tenth": late,
            "table_items": {"before": items0, "after": items1},
            "stack_start_s": round(self.start_s, 2),
            "lambda_containers": {fid: getattr(fn, "containers", None) for fid, fn in self.stack.functions.items()},
        }


# -- output ----------------------------------------------------------------------------------------
def op_family(key: str) -> str:
    """dynamodb.UpdateItem, sqs.SendMessage[runs,delayed] -> compact column labels."""
    return key.replace("dynamodb.", "ddb.")


def print_report(results: list[dict], meta: dict) -> None:
    print(f"\nbench_lanes  n={meta['n']}  concurrency={meta['concurrency']}  cpus={meta['cpus']}  "
          f"claim poll {meta['poll_ms']}->{meta['poll_cap_ms']} ms  "
          f"total {meta['total_s']} s (cpu {meta['process_cpu_s']} s)  "
          f"load {meta['load_average_1m']['start']}->{meta['load_average_1m']['end']}  kit {meta['kit']['commit']}"
          f"{' +%d modified files' % meta['kit']['modified_files'] if meta['kit']['modified_files'] else ''}")
    head = (f"{'scenario':<10}{'lane':<9}{'K':>3}{'done':>5}{'wall s':>8}{'rt/s':>7}{'p50 ms':>8}{'p95 ms':>8}"
            f"{'max ms':>8}{'drift ms':>12}{'api/rt':>8}{'-idle':>7}{'-recv':>7}{'-auth':>7}{'http/rt':>8}{'polls':>6}")
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
                  f"{api['excluding_idle_receives_and_authorizer']:>7.2f}"
                  f"{r['http_requests_per_rt']['all']:>8.2f}{polls:>6}")
        if r["truncated"]:
            print(f"    stopped at the time limit after {r['completed']} of {r['n']} round trips")
        if r["error_count"]:
            print(f"    {r['error_count']} failed round trips, e.g. {r['errors'][0][:160]}")
    print("  drift: mean latency of the first -> last tenth of each session's round trips; api/rt: AWS calls per "
          "round trip, -idle: without empty ReceiveMessage long-polls, -recv: without any ReceiveMessage,\n"
          "  -auth: without idle receives and the authorizer's API-key GetItem (cached by HTTP API on AWS); "
          "polls: claim requests per round trip")

    results = [r for r in results if r["completed"]]
    if not results:
        return
    names = "".join(f"{r['name']:>10}" for r in results)
    ops = sorted({k for r in results for k in r["api_calls_per_rt"]["by_operation"]})
    w = max([len(op_family(o)) for o in ops] + [24]) + 2
    print(f"\n{'AWS calls / round trip':<{w}}{names}   | mean ms per call: {names}")
    shown: set[str] = set()
    for op in ops:
        base = op.split("[")[0]
        ms = [r["ms_per_call"].get(base) for r in results]
        show_ms = base not in shown  # one mean per operation, on its first row
        shown.add(base)
        ms_cells = "".join(f"{m:>10.2f}" if (m is not None and show_ms) else f"{'':>10}" for m in ms)
        print(f"{op_family(op):<{w}}" + "".join(f"{r['api_calls_per_rt']['by_operation'].get(op, 0):>10.2f}"
                                               for r in results) + f"   | {'':<18}{ms_cells}")

    origins = sorted({k for r in results for k in r["api_calls_per_rt"]["by_origin"]})
    w = max([len(o) for o in origins] + [24]) + 2
    print(f"\n{'by origin (no idle recv)':<{w}}{'http/rt':>8}{names}")
    for o in origins:
        cells = [sum(v for k, v in r["api_calls_per_rt"]["by_origin"].get(o, {}).items()
                     if not k.endswith("[idle]") and "(" not in k)
                 for r in results]
        http = next((h for h in (r["http_requests_per_rt"]["by_route"].get(o) for r in results) if h), None)
        print(f"{o:<{w}}{(f'{http:.2f}' if http else '-'):>8}" + "".join(f"{c:>10.2f}" for c in cells))
    print("  http/rt: requests of that route per round trip (first scenario using it); "
          "driver: calls made inside run_driver invocations (the runs queue's and hand-overs)")

    print("\nmedian ms per phase of a round trip (claim_lag: task created -> claim returned it, "
          "notice_lag: run's last write -> wait() returned; p50/p95):")
    for r in results:
        print(f"  {r['name']:<10}" + "  ".join(f"{k}={v:g}" for k, v in r["phase_p50_ms"].items())
              + "".join(f"  {k[:-3]}={v['p50']:g}/{v['p95']:g}" for k, v in r["lags_ms"].items())
              + f"  | driver invocations/rt={r['driver_invocations_per_rt']}"
              + f"  table items {r['table_items']['before']}->{r['table_items']['after']}")
        growth = [f"{op_family(op)} {r['ms_per_call_first_tenth'][op]:.1f}->{r['ms_per_call_last_tenth'][op]:.1f}"
                  for op in ("dynamodb.TransactWriteItems", "dynamodb.Query", "dynamodb.GetItem")
                  if op in r["ms_per_call_first_tenth"] and op in r["ms_per_call_last_tenth"]]
        if growth:
            print(f"  {'':<10}ms per call, first -> last tenth: " + ", ".join(growth))
    envs = {r["name"]: {f.replace("Function", ""): k for f, k in r["lambda_containers"].items() if k and k > 1}
            for r in results}
    if any(envs.values()):
        print("  Lambda containers (concurrent invocations) per function: " + "; ".join(
            f"{n}: " + ", ".join(f"{f}={k}" for f, k in e.items()) for n, e in envs.items() if e))


def kit_revision() -> dict[str, Any]:
    """Which kit was measured: the commit, and how many files differ from it (others edit freely)."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.splitlines()
        return {"commit": head or None, "modified_files": len(dirty)}
    except Exception:
        return {"commit": None, "modified_files": None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="round trips per scenario (default 200)")
    ap.add_argument("--concurrency", type=int, default=8, help="sessions/threads in the concurrent scenarios")
    ap.add_argument("--json", default="bench-results/bench_lanes.json", help="where to write the figures ('' for none)")
    ap.add_argument("--poll-ms", type=float, default=5.0, help="first wait between empty claims (ms)")
    ap.add_argument("--poll-cap-ms", type=float, default=50.0, help="longest wait between empty claims (ms)")
    ap.add_argument("--skip-baseline", action="store_true", help="only the external-lane scenarios")
    ap.add_argument("--time-limit", type=float, default=160.0,
                    help="seconds for the whole run; a scenario stops starting round trips at its share")
    args = ap.parse_args(argv)
    if args.n < 1 or args.concurrency < 1:
        ap.error("--n and --concurrency must be positive")
    logging.getLogger("samtranslator").setLevel(logging.ERROR)  # "unpublished metrics" at teardown

    t_start, cpu_start = time.perf_counter(), time.process_time()
    load_start = round(os.getloadavg()[0], 2)   # other processes on the machine skew every figure
    plan = [("sdk-seq", "handler", 1), ("sdk-conc", "handler", args.concurrency),
            ("ext-seq", "poll", 1), ("ext-conc", "poll", args.concurrency)]
    if not args.skip_baseline:
        plan += [("int-seq", "internal", 1), ("int-conc", "internal", args.concurrency)]
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="a3s-bench-") as tmp:
        workspace = os.path.join(tmp, "ws")
        os.makedirs(workspace)
        for i, (name, kind, k) in enumerate(plan):
            left = args.time_limit - (time.perf_counter() - t_start)
            budget = max(5.0, left / (len(plan) - i) - 3.0)  # ~3 s per stack start, warm-up and stop
            bench = Bench(os.path.join(tmp, "workspaces"), workspace, Poll(args.poll_ms, args.poll_cap_ms))
            try:
                bench.warm_up(kind)
                results.append(bench.scenario(name, kind, args.n, k, budget))
            finally:
                bench.stop()
            r = results[-1]
            print(f"  {name}: {r['completed']}/{r['n']} round trips in {r['wall_s']} s", file=sys.stderr, flush=True)
    meta = {"n": args.n, "concurrency": args.concurrency, "cpus": os.cpu_count(), "poll_ms": args.poll_ms,
            "poll_cap_ms": args.poll_cap_ms, "time_limit_s": args.time_limit, "total_s": round(time.perf_counter() - t_start, 2),
            "python": sys.version.split()[0], "prompt": PROMPT, "task_timeout_ms": TASK_TIMEOUT_MS}
    meta["kit"] = kit_revision()
    meta["load_average_1m"] = {"start": load_start, "end": round(os.getloadavg()[0], 2)}
    meta["process_cpu_s"] = round(time.process_time() - cpu_start, 1)
    print_report(results, meta)
    if args.json:
        write_json(args.json, {"meta": meta, "scenarios": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
