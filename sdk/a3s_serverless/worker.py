"""An external worker: drains one lane, runs the built-in tools in a directory, completes each task.

    a3s-worker --endpoint http://127.0.0.1:8787 --lane execute --workspace ./repo
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from .extras import WORKER, require
from .push import LaneWatch, claim_pushed
from .transport import HttpTransport, Transport


def builtin_tools() -> Any:
    """The kit's tool runtime (the core package): what runs a task when no handler is given."""
    return require("a3s_core.tools.lane_work", "a worker running the built-in tools", WORKER)

log = logging.getLogger("a3s_serverless.worker")
LANES = ("control", "query", "execute", "generate")


def idle_backoff(first: float = 0.05, cap: float = 1.0) -> Iterator[float]:
    """Waits between empty polls: quick to notice new work, cheap when there is none."""
    delay = first
    while True:
        yield delay
        delay = min(cap, delay * 2)


def complete_with(fn: Callable[[dict], Any], task: dict, complete: Callable[..., bool]) -> bool:
    """Run fn on the task and report what it returned (or raised) as the task's completion.

    Only fn's own errors fail the task: an error of `complete` itself (the service unreachable)
    is the caller's to retry, not a reason to record the work as failed."""
    try:
        out = fn(task)
        if not isinstance(out, dict) or not isinstance(out.get("success"), bool):
            raise ValueError(f"handler must return a dict with a bool 'success', got {out!r}")
    except Exception as err:  # the task fails, the worker carries on
        log.warning("task %s failed in its handler: %s", task.get("task_id"), err)
        return complete(task["task_id"], success=False, error=f"{type(err).__name__}: {err}")
    return complete(task["task_id"], success=out["success"], result=out.get("result"), error=out.get("error"))


class Worker:
    def __init__(self, transport: Transport, lane: str, workspace: str, batch: int = 4,
                 lease_ms: int = 300_000, name: str | None = None,
                 handler: Callable[[dict], dict] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if lane not in LANES:
            raise ValueError(f"unknown lane {lane!r}: expected one of {', '.join(LANES)}")
        if not os.path.isdir(workspace):
            raise ValueError(f"workspace {workspace!r} is not a directory")
        self.transport, self.lane, self.workspace = transport, lane, os.path.abspath(workspace)
        self.batch, self.lease_ms = batch, lease_ms
        self.name = name or f"worker-{os.getpid()}"
        if handler is None:
            builtin_tools()  # the built-in tools are the [worker] extra: refuse now, not fail each task
        self.handler = handler or self.run_builtin
        self.completed = 0
        self.clock = clock  # what the safety poll's minute is measured by

    def run_builtin(self, task: dict) -> dict:
        return builtin_tools().execute_task(task, self.workspace)

    def _complete(self, task: dict, _task_id: str, **body: Any) -> bool:
        return self.transport.request(
            "POST", f"/sessions/{task['session_id']}/external-tasks/{task['task_id']}/complete", body)["completed"]

    def run_once(self, pushed: list[dict] | None = None) -> int:
        """Claim up to `batch` tasks of the lane (or lease those a push told of, by id) and do them;
        the number claimed."""
        if pushed is None:
            tasks = self.transport.request("POST", f"/lanes/{self.lane}/claim",
                                           {"max": self.batch, "lease_ms": self.lease_ms, "worker": self.name})["tasks"]
        else:
            tasks = [t for t in (claim_pushed(self.transport, p, self.name, self.lease_ms) for p in pushed) if t]
        for task in tasks:
            try:
                ok = complete_with(self.handler, task, functools.partial(self._complete, task))
            except Exception as err:  # the completion did not arrive; the lease runs out, then it is retried
                log.warning("task %s: completion failed: %s", task["task_id"], err)
                continue
            log.info("task %s (%s) on %s: %s", task["task_id"], task["command_type"], self.lane,
                     "completed" if ok else "already finished elsewhere")
            self.completed += 1
        return len(tasks)

    def run(self, stop: threading.Event, max_tasks: int | None = None) -> None:
        """Claim now, then whenever the lane's subscription tells of a task, and at least once a
        minute; without a WebSocket API, poll with a backoff."""
        watch = LaneWatch(self.transport, [self.lane], clock=self.clock)
        log.info("worker on lane %s: %s", self.lane, "tasks pushed over WebSocket" if watch.pushed else "polling")
        backoff = idle_backoff()
        pushed: list[dict] | None = None  # first: whatever is pending
        try:
            while not stop.is_set() and (max_tasks is None or self.completed < max_tasks):
                try:
                    done = self.run_once(pushed)
                except Exception as err:  # a blip of the service must not end the worker
                    log.warning("poll failed: %s", err)
                    done = 0
                if done:
                    backoff = idle_backoff()
                    if pushed is None and (done >= self.batch or not watch.pushed):  # maybe more: claim again now
                        continue
                pushed = watch.wait(stop, next(backoff))  # a push that came meanwhile ends it at once
        finally:
            watch.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="a3s-worker", description="Drain one lane of an a3s-serverless deployment.")
    p.add_argument("--endpoint", required=True, help="the HTTP API URL (a deployed kit, or `make dev`)")
    p.add_argument("--lane", required=True, choices=LANES)
    p.add_argument("--workspace", required=True, help="directory the built-in tools run in")
    p.add_argument("--api-key", default=os.environ.get("A3S_API_KEY"), help="default: $A3S_API_KEY")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--max-tasks", type=int, default=None, help="exit after this many tasks")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        worker = Worker(HttpTransport(args.endpoint, args.api_key), args.lane, args.workspace, batch=args.batch)
    except ImportError as err:  # a plain install: the built-in tools are the [worker] extra
        p.exit(2, f"a3s-worker: {err}\n")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        worker.run(stop, args.max_tasks)
    log.info("worker stopped after %d tasks", worker.completed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
