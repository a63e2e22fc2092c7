#!/usr/bin/env python
"""What the kit costs on AWS, from the calls counted on the embedded stack: $ per 1M units.

Units, measured in one process on one embedded stack (moto + the kit's handlers, scripted model):
  rt        an external round trip: session.send('rt\\n/tool bash {"command": "x"}') on a session whose
            execute lane is external, its bash task done by set_external_task_handler; --round-trips
            in ONE session, the first five and the last five reported apart (a session's history grows)
  step      one step of session.parallel of --steps steps (no tools)
  wait-min  a client following a waiting run's events over the WebSocket API (RunHandle.events(),
            as the SDK does) for --wait-s, connect, subscribe and catch-up included: per minute
  idle-min  an idle a3s-worker (subscribed to its lane) and an idle external task handler
            (subscribed to the session's lanes): a minute without work, extrapolated to a month

Per unit: AWS calls by service and operation; DynamoDB write request units (1 KB of the larger of the
item before and after, x2 in a transaction, plus each gsi1 write), read request units (4 KB; eventual
reads half), item bytes written; SQS requests (64 KB chunks); API Gateway requests; Lambda invocations
and GB-s per function at the template's MemorySize, the duration being the CPU time of the handler's
thread here (an estimate: moto's work stands in for the calls' round trips; the wall time, which on a
busy machine also holds waits for a CPU, is kept beside it). The model's own cost is excluded. The
embedded pumps' empty ReceiveMessage polls are left out of every unit: on AWS, Lambda's SQS pollers
are a fixed cost per queue.

    .venv/bin/python scripts/bench_cost.py [--round-trips 30] [--steps 60] [--wait-s 60]
                                           [--json bench-results/cost.json]
"""
from __future__ import annotations

from bench_common import setup_env

setup_env()  # before anything imports Powertools or boto3

import argparse  # noqa: E402
import json  # noqa: E402
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
from a3s_serverless import Agent, push  # noqa: E402
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

    socket: Any = None  # set for the units measured over the WebSocket API (wait-min, idle-min)

    def open_socket(self) -> Any:
        if self.socket is None:  # outside the units measured over the WebSocket API
            raise ConnectionRefusedError("no WebSocket for this unit")
        return self.socket()


class CountingSocket:
    """The SDK's WebSocket connection, counted: messages both ways (32 KB units, as API Gateway bills
    them), and the WebSocket function's AWS calls labelled by route ("WS $connect", "WS subscribe")."""

    def __init__(self, bench: Bench, who: str) -> None:
        self.bench, self.who = bench, who
        self.inner = self._as("$connect", lambda: bench.transport.inner.open_socket())

    def _as(self, route: str, fn: Any) -> Any:
        counter, label = self.bench.counter, f"WS {self.who} {route}"
        counter.local.route, counter.local.pending = label, Counter()
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            counter.flush_route(label)
            self.bench.ws.add(label, time.perf_counter() - t0)

    def send(self, text: str) -> None:
        self.bench.ws.message(self.who, text)
        self._as(str(json.loads(text).get("action", "$default")), lambda: self.inner.send(text))

    def recv(self, timeout: float) -> str:
        text = self.inner.recv(timeout)
        self.bench.ws.message(self.who, text)
        return text

    def close(self) -> None:
        self._as("WS $disconnect", self.inner.close)


class WsCounts:
    """Messages (32 KB units), connections, and the WebSocket routes' invocations and seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.messages: Counter[str] = Counter()  # who -> messages
        self.routes: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()

    def message(self, who: str, text: str) -> None:
        with self._lock:
            self.messages[who] += max(1, -(-len(text.encode()) // (32 * 1024)))

    def add(self, label: str, seconds: float) -> None:
        with self._lock:
            self.routes[label] += 1
            self.seconds[label] += seconds

    def snapshot(self) -> tuple[Counter, Counter, Counter]:
        with self._lock:
            return Counter(self.messages), Counter(self.routes), Counter(self.seconds)


class Mark:
    """Every counter at one moment."""

    def __init__(self, bench: Bench) -> None:
        self.api = bench.counter.snapshot()
        self.http = bench.transport.snapshot()
        self.http_s = bench.transport.snapshot_seconds()
        self.fn = bench.clock.snapshot()
        self.ws = bench.ws.snapshot()
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
            self.ws = WsCounts()
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
            fn_wall = b.fn["wall"] - a.fn["wall"]
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
            fn_wall = fn_s
        idle_recv = calls.pop("sqs.ReceiveMessage[idle]", 0)
        calls = Counter({k: v for k, v in calls.items() if "(" not in k})
        http = Counter({r: b.http[r] - a.http[r] for r in (routes or b.http) if b.http[r] - a.http[r]})
        by_service = Counter()
        for k, v in calls.items():
            by_service[k.split(".")[0]] += v
        lam = {fid: {"invocations": round(fn_inv[fid] / n, 4), "seconds": round(fn_s[fid] / n, 5),
                     "mean_ms": round(1000 * fn_s[fid] / fn_inv[fid], 1) if fn_inv[fid] else None,
                     "mean_wall_ms": round(1000 * fn_wall[fid] / fn_inv[fid], 1) if fn_inv[fid] else None,
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

        # Over the WebSocket API, as the SDK does: the client keeps one connection (subscribed to the
        # session once), the task handler another (subscribed to the lanes).
        who = threading.local()
        self.transport.socket = lambda: CountingSocket(self, getattr(who, "name", "rt-client"))
        self.transport._a3s_no_hub_until = 0.0  # the warm-up ran without a WebSocket: try again now
        session = self.quiet(lambda: self.agent.session(self.workspace, model="scripted", permissive=True))
        self.quiet(lambda: session.set_lane_handler("execute", "external", 600_000))
        original_drain = session._drain

        def handler_drain(fn: Any, stop: threading.Event) -> None:
            who.name = "rt-handler"
            original_drain(fn, stop)

        session._drain = handler_drain  # type: ignore[method-assign]
        # Each client's connection is opened and subscribed once (counted apart, as `setup`): the
        # round trips are measured from there.
        setup = self.mark(settle=False)
        session.set_external_task_handler(worker)
        push.watch_session(self.transport, session.session_id)
        deadline = time.monotonic() + 10

        def set_up() -> bool:  # subscribed (acks read, 4 lanes and a session) and the handler's first claim made
            messages, routes, _ = self.ws.snapshot()
            subscribed = sum(v for r, v in routes.items() if r.startswith("WS rt-handler subscribe")) >= 4
            claimed = any(r.endswith("/external-tasks/claim (empty)") for r in self.transport.snapshot())
            return subscribed and claimed and messages["rt-handler"] >= 8 and messages["rt-client"] >= 2

        while not set_up():
            if time.monotonic() > deadline:
                raise TimeoutError("the task handler never subscribed to its lanes")
            time.sleep(0.01)
        marks = [self.mark()]
        for i in range(n):
            result = session.send(PROMPT)
            if "bash -> x" not in result.text:
                raise RuntimeError(f"round trip {i + 1}: unexpected answer {result.text!r}")
            marks.append(self.mark())
        session._stop_handler()
        hub = getattr(self.transport, "_a3s_hub", None)
        if hub is not None:
            hub.close()
        self.transport.socket = None
        k = min(5, n)

        def unit(a: Mark, b: Mark, count: int) -> dict[str, Any]:
            return self.with_ws(self.per_unit(a, b, count), a, b, count, ("rt-client", "rt-handler"))

        per_turn = [unit(marks[i], marks[i + 1], 1) for i in range(n)]
        return {"setup": unit(setup, marks[0], 1),
                "first": unit(marks[0], marks[k], k), "last": unit(marks[n - k], marks[n], k),
                "all": unit(marks[0], marks[n], n), "n": n,
                "per_turn": [{"turn": i + 1, "aws_calls": u["aws_calls"], "wru": u["dynamodb"]["wru"],
                              "rru": u["dynamodb"]["rru"], "item_bytes_written": u["dynamodb"]["item_bytes_written"],
                              "usd_per_1m": u["usd_per_1m"]} for i, u in enumerate(per_turn)]}

    # -- 2. a parallel step ----------------------------------------------------------------------
    def parallel(self, n: int) -> dict[str, Any]:
        session = self.quiet(lambda: self.agent.session(self.workspace, model="scripted", permissive=True))
        specs = [{"task_id": f"t{i}", "agent": "general", "prompt": f"step {i}", "max_steps": 1} for i in range(n)]
        # As the SDK waits: a connection of its own, subscribed to the workflow's end (no progress shown).
        self.transport.socket = lambda: CountingSocket(self, "par-client")
        a = self.mark()
        try:
            outcomes = session.parallel(specs, progress=False)
        finally:
            self.transport.socket = None
        wall = time.perf_counter() - a.t
        b = self.mark()
        failed = [o for o in outcomes if not (o and o.get("success"))]
        if failed:
            raise RuntimeError(f"{len(failed)} of {n} steps failed, e.g. {failed[0]}")
        unit = self.with_ws(self.per_unit(a, b, n), a, b, n, ("par-client",))
        unit["workflow_wall_s"] = round(wall, 3)
        return unit

    # -- 3 and 4, side by side: a waiting client and idle workers, over the WebSocket API ------
    def waiting_and_idle(self, seconds: float) -> dict[str, Any]:
        from a3s_serverless.session import RunHandle

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
        who = threading.local()
        self.transport.socket = lambda: CountingSocket(self, getattr(who, "name", "other"))

        def named(name: str, fn: Any) -> Any:
            def run() -> None:
                who.name = name
                fn()
            return run

        pushed: list[dict] = []
        follower = threading.Thread(target=named("wait", lambda: pushed.extend(
            RunHandle(self.transport, handle.run_id).events(after))), daemon=True, name="bench-wait")
        threads = [threading.Thread(target=named("worker", lambda: lane_worker.run(stop)), daemon=True,
                                    name="bench-idle-worker")]
        a = self.mark(settle=False)
        follower.start()
        original_drain = idle_session._drain  # the handler's socket is opened on its own thread: name it

        def handler_drain(fn: Any, stop_: threading.Event) -> None:
            who.name = "handler"
            original_drain(fn, stop_)

        idle_session._drain = handler_drain  # type: ignore[method-assign]
        idle_session.set_external_task_handler(lambda task: {"success": True})
        for t in threads:
            t.start()
        time.sleep(seconds)  # the unit is wall time: a minute of waiting
        b = self.mark(settle=False)
        stop.set()
        idle_session._stop_handler()
        for t in threads:
            t.join(5)
        self.quiet(handle.cancel)
        follower.join(30)
        self.transport.socket = None
        if not pushed or pushed[-1]["type"] != "run_end":
            raise RuntimeError(f"the waiting client did not get the run's end pushed: {pushed[-3:]}")
        # Steady state: the connection's minute, and the HTTP reads the SDK still makes (a quiet read
        # every IDLE_S; a drainer's claim every SAFETY_POLL_S), each measured once here.
        auth = self.authorizer_minute(b)

        def one(method: str, path: str, route: str, body: Any = None, query: dict | None = None) -> float:
            x = self.mark(settle=False)
            self.transport.request(method, path, body, query)
            unit = self.per_unit(x, self.mark(settle=False), 1, (route,))
            self.add_authorizer(unit, auth)  # at most once a minute: each of these is a minute apart or more
            return unit["usd"]["total"]

        claim = {"max": 4, "lease_ms": 300_000, "worker": "bench-once"}
        quiet_read = one("GET", f"/runs/{handle.run_id}/events", "GET /runs/{run}/events",
                         query={"after": after, "wait_ms": 0})
        lane_claim = one("POST", "/lanes/query/claim", "POST /lanes/query/claim (empty)", claim)
        handler_claim = one("POST", f"/sessions/{idle_session.session_id}/external-tasks/claim",
                            "POST /sessions/{sess}/external-tasks/claim (empty)", claim)
        minute = PRICES["ws_connection_minute"]
        steady = {"wait": minute + quiet_read * 60 / push.IDLE_S, "worker": minute + lane_claim * 60 / push.SAFETY_POLL_S,
                  "handler": minute + handler_claim * 60 / push.SAFETY_POLL_S}
        minutes = (b.t - a.t) / 60
        wait = self.ws_unit(a, b, minutes, "wait", ("GET /runs/{run}/events",))
        lane = self.ws_unit(a, b, minutes, "worker", ("POST /lanes/query/claim (empty)",))
        handler = self.ws_unit(a, b, minutes, "handler", ("POST /sessions/{sess}/external-tasks/claim (empty)",))
        for unit in (wait, lane, handler):  # API Gateway caches the answer 60 s per key: at most once a minute
            if unit["http_requests"]:
                self.add_authorizer(unit, auth)
        for unit, key in ((wait, "wait"), (lane, "worker"), (handler, "handler")):
            unit["steady_usd_per_1m"] = round(steady[key] * 1e6, 3)
        for unit in (lane, handler):
            unit["steady_requests_per_minute"] = 60 / push.SAFETY_POLL_S
            unit["requests_per_month"] = round(unit["steady_requests_per_minute"] * MINUTES_PER_MONTH)
            unit["usd_per_month"] = round(steady["worker" if unit is lane else "handler"] * MINUTES_PER_MONTH, 4)
        return {"wait_minute": wait, "idle_worker_minute": lane, "idle_handler_minute": handler,
                "measured_s": round(b.t - a.t, 1), "pushed_events": len(pushed)}

    def with_ws(self, unit: dict[str, Any], a: Mark, b: Mark, n: float, whos: tuple[str, ...],
                connection_minutes: float | None = None) -> dict[str, Any]:
        """`unit` (figures of a..b over n), plus its clients' WebSocket connections: messages both
        ways, the WebSocket function's invocations (a $connect's authorizer too, its time inside the
        $connect's, billed at the function's size) and the connections' minutes (default: each
        open the whole window). Their AWS calls are the caller's to have counted in `unit`."""
        labels = sorted(r for r in set(b.ws[1]) | set(a.ws[1]) if r.split(" ")[1] in whos)
        invocations = sum(b.ws[1][r] - a.ws[1][r] for r in labels)
        secs = sum(b.ws[2][r] - a.ws[2][r] for r in labels)
        connects = sum(b.ws[1][r] - a.ws[1][r] for r in labels if r.endswith("$connect"))
        mem = self.memory["WsFunction"]
        if invocations:
            unit["lambda"]["by_function"]["WsFunction"] = {
                "invocations": round(invocations / n, 4), "seconds": round(secs / n, 5),
                "mean_ms": round(1000 * secs / invocations, 1), "memory_mb": mem,
                "gb_s": round(secs * mem / 1024 / n, 6)}
            unit["lambda"]["invocations"] = round(unit["lambda"]["invocations"] + (invocations + connects) / n, 4)
            unit["lambda"]["gb_s"] = round(unit["lambda"]["gb_s"] + secs * mem / 1024 / n, 6)
        unit["ws_messages"] = round(sum(b.ws[0][w] - a.ws[0][w] for w in whos) / n, 3)
        unit["ws_connection_minutes"] = round(len(whos) * (b.t - a.t) / 60 / n, 5) \
            if connection_minutes is None else connection_minutes
        unit["ws_routes"] = {r.split(" ", 1)[1]: round((b.ws[1][r] - a.ws[1][r]) / n, 3) for r in labels}
        unit["usd"] = {k: round(v, 10) for k, v in dollars(unit).items()}
        unit["usd_per_1m"] = round(unit["usd"]["total"] * 1e6, 2)
        return unit

    def ws_unit(self, a: Mark, b: Mark, minutes: float, who: str, routes: tuple[str, ...]) -> dict[str, Any]:
        """One client's minute: its HTTP requests (routes) and its one WebSocket connection, open the
        whole minute (messages, the WebSocket function's invocations and their AWS calls)."""
        labels = tuple(r for r in set(b.ws[1]) | set(a.ws[1]) if r.startswith(f"WS {who} "))
        return self.with_ws(self.per_unit(a, b, minutes, routes + labels), a, b, minutes, (who,), 1.0)

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
    row("WebSocket messages (32 KB units)", lambda u: u.get("ws_messages"), "{:>14.2f}")
    row("WebSocket connection-minutes", lambda u: u.get("ws_connection_minutes"), "{:>14.2f}")
    print("-" * (w + 14 * len(names)))
    for line in ("lambda_requests", "lambda_gb_s", "dynamodb_writes", "dynamodb_reads", "sqs", "api_gateway",
                 "secrets_manager", "ws_messages", "ws_connection_minutes"):
        row(f"$ per 1M: {line}", lambda u, line=line: u["usd"][line] * 1e6, "{:>14.2f}")
    row("$ per 1M units", lambda u: u["usd_per_1m"], "{:>14.2f}")


def print_report(out: dict[str, Any]) -> None:
    m, rt = out["meta"], out["round_trip"]
    print(f"\nbench_cost  round trips={m['round_trips']} in one session  parallel steps={m['steps']}  "
          f"waiting/idle {out['waiting']['measured_s']} s  total {m['total_s']} s  kit {m['kit']}")
    units = {"rt: connect": rt["setup"], "rt 1-5": rt["first"], f"rt {rt['n'] - 4}-{rt['n']}": rt["last"], "par. step": out["parallel_step"],
             "wait-minute": out["waiting"]["wait_minute"], "idle worker/m": out["waiting"]["idle_worker_minute"],
             "idle handler/m": out["waiting"]["idle_handler_minute"]}
    table(units)
    print("\nprices (us-east-1, on demand): Lambda $0.20/1M requests + $0.0000133334/GB-s (arm64); DynamoDB "
          "$0.625/1M WRU, $0.125/1M RRU;\n  SQS $0.40/1M requests; HTTP API $1.00/1M requests; Secrets Manager "
          "$0.05/10k calls; WebSocket API $1.00/1M messages (32 KB),\n  $0.25/1M connection-minutes. "
          "The model's own cost is excluded.")
    print("  Lambda duration = the CPU time of the handler's thread on the embedded stack (moto), at the template's\n"
          "  MemorySize (the wall time, in the JSON, also holds waits for a CPU or for the stack's one lock;\n"
          "  a WebSocket route's and the waiting units' HTTP routes are timed by the wall clock);\n"
          "  round trips: over the WebSocket API, the client and the task handler each with one connection\n"
          "  opened and subscribed once ('rt: connect', per client, not per round trip);\n"
          "  wait-minute and idle: over the WebSocket API (connect, subscribe and catch-up in the window, the\n"
          "  $disconnect after it); an HTTP request's authorizer runs at most once a minute per key (API Gateway\n"
          "  caches its answer 60 s); the embedded pumps' empty polls are left out (on AWS Lambda's SQS pollers\n"
          "  are a fixed cost per queue).")
    growth = rt["per_turn"]
    print("\ngrowth over one session (per round trip): turn " + ", ".join(
        f"{g['turn']}: {g['aws_calls']:.0f} calls/{g['wru']:.0f} WRU/{g['rru']:.1f} RRU/{g['item_bytes_written']:.0f} B"
        for g in growth if g["turn"] in (1, 2, 5, 10, 20, len(growth))))
    idle = out["waiting"]
    iw, ih = idle["idle_worker_minute"], idle["idle_handler_minute"]
    print(f"\nidle a3s-worker (WebSocket): {iw['http_requests']:.1f} requests in its first minute (connect, subscribe, "
          f"claim); then {iw['steady_requests_per_minute']:.0f}/min = {iw['requests_per_month']:,} a month = "
          f"${iw['usd_per_month']:.2f} a month (${iw['steady_usd_per_1m']:.2f} per 1M idle minutes); idle task "
          f"handler: {ih['http_requests']:.1f} in its first minute, then ${ih['usd_per_month']:.2f} a month")
    w = out["waiting"]["wait_minute"]
    print(f"waiting client (WebSocket): first minute (connect, subscribe, catch-up) {w['http_requests']:.2f} HTTP "
          f"requests, {w['ws_messages']:.2f} messages = ${w['usd_per_1m']:.2f} per 1M; each minute after: the "
          f"connection and a quiet read every {push.IDLE_S:.0f} s = ${w['steady_usd_per_1m']:.2f} per 1M "
          f"client-minutes (goal: <= $1)")
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
                    "lambda_duration": "CPU time of the handler's thread on the embedded stack (moto), "
                                       "an estimate (wall time beside it: mean_wall_ms)"},
           "round_trip": rt, "parallel_step": step, "waiting": waiting,
           "step_functions": sfn_comparison(rt["first"], step, args.steps)}
    print_report(out)
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
