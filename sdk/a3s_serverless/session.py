"""Session: the A3S Code session surface, each call one request to the service."""
from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import push
from .errors import RunFailed
from .orchestration import Workflows
from .orchestrator import AgentOrchestrator
from .progress import ProgressArg
from .transport import Transport

LANES = ("control", "query", "execute", "generate")
MODES = ("internal", "external", "hybrid")  # the API's lane handler modes (a test keeps them in step)
EVENT_WAIT_MS = push.EVENT_WAIT_MS
HANDLER_BATCH = 4  # tasks an external task handler claims at a time


@dataclass
class SessionQueueConfig:
    enable_all_features: bool = False
    lane_handlers: dict[str, dict] = field(default_factory=dict)
    concurrency: dict[str, int] = field(default_factory=dict)

    def to_body(self) -> dict[str, Any]:
        for lane, handler in self.lane_handlers.items():
            if lane not in LANES:
                raise ValueError(f"unknown lane {lane!r} in lane_handlers: expected one of {', '.join(LANES)}")
            if not isinstance(handler, dict) or handler.get("mode", "internal") not in MODES:
                raise ValueError(f"lane {lane!r}: mode must be one of {', '.join(MODES)}")
            _positive(handler.get("timeout_ms", 60000), f"lane {lane!r}: timeout_ms")
        for lane, n in self.concurrency.items():
            if lane not in LANES:
                raise ValueError(f"unknown lane {lane!r} in concurrency: expected one of {', '.join(LANES)}")
            _positive(n, f"concurrency of {lane!r}")
        return {"enable_all_features": bool(self.enable_all_features),
                "lane_handlers": dict(self.lane_handlers), "concurrency": dict(self.concurrency)}


@dataclass
class SessionOptions:
    model: str | None = None
    permissive: bool = False
    queue_config: SessionQueueConfig | None = None
    builtin_skills: bool = False
    max_parallel_tasks: int | None = None  # None: the agent's (its config's max_parallel_tasks, else 8)
    session_store: Any = None
    workspace: str | None = None


@dataclass(frozen=True)
class AgentResult:
    text: str
    tool_calls_count: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    run_id: str
    status: str = "succeeded"
    error: str | None = None
    stop_reason: str | None = None

    @classmethod
    def from_run(cls, run: dict[str, Any]) -> AgentResult:
        return cls(text=run["text"], tool_calls_count=run["tool_calls_count"],
                   prompt_tokens=run["prompt_tokens"], completion_tokens=run["completion_tokens"],
                   total_tokens=run["total_tokens"], run_id=run["run_id"], status=run["status"],
                   error=run.get("error"), stop_reason=run.get("stop_reason"))


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


class RunHandle:
    """A run started with send_async: poll it, follow its events, or wait for its result."""

    def __init__(self, transport: Transport, run_id: str, session_id: str | None = None,
                 watched_since: push.Hub | None = None) -> None:
        """session_id: its session, so waits use the client's kept connection (push.Hub);
        watched_since: the connection that watched the session before the run was started."""
        self._t, self.run_id, self.session_id, self._since = transport, run_id, session_id, watched_since

    def status(self) -> str:
        return self._t.request("GET", f"/runs/{self.run_id}")["status"]

    def pause(self) -> dict[str, Any]:
        """Stop at the next turn boundary; no compute is held while paused."""
        return AgentOrchestrator(self._t).pause_agent(self.run_id)

    def resume(self) -> dict[str, Any]:
        return AgentOrchestrator(self._t).resume_agent(self.run_id)

    def cancel(self) -> dict[str, Any]:
        """Cancel the run, its child runs and its pending external tasks."""
        return AgentOrchestrator(self._t).cancel_agent(self.run_id)

    def inject_prompt(self, text: str) -> dict[str, Any]:
        """A user message the model sees on its next turn."""
        return AgentOrchestrator(self._t).inject_prompt(self.run_id, text)

    def events(self, after: int = 0) -> Iterator[dict[str, Any]]:
        """Every event of the run, in order, until it ends: pushed over the WebSocket API, or
        long-polled where there is none."""
        if self.session_id is not None:
            return push.follow_session_run(self._t, self.run_id, self.session_id, after, since=self._since)
        return push.follow_run(self._t, self.run_id, after)

    def wait(self, timeout: float | None = None) -> AgentResult:
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        events = push.follow_run(self._t, self.run_id, 0, deadline) if self.session_id is None else \
            push.follow_session_run(self._t, self.run_id, self.session_id, 0, deadline, self._since)
        end: dict[str, Any] = {}
        try:
            for event in events:
                end = event
        except TimeoutError:
            raise TimeoutError(f"run {self.run_id} still {self.status()} after {timeout} s") from None
        if end.get("type") == "run_end" and "prompt_tokens" in end:  # the run's end says all of it
            result = AgentResult.from_run({**end, "run_id": self.run_id,
                                           "total_tokens": end["prompt_tokens"] + end["completion_tokens"]})
        else:
            result = AgentResult.from_run(self._t.request("GET", f"/runs/{self.run_id}"))
        if result.status != "succeeded":
            raise RunFailed(result, f"run {self.run_id} {result.status}: {result.error}")
        return result


class Session:
    def __init__(self, transport: Transport, view: dict[str, Any]) -> None:
        self._t = transport
        self.session_id: str = view["session_id"]
        self.workspace: str = view["workspace"]
        self._has_queue: bool = view["has_queue"]
        self._orch = Workflows(transport, self.session_id, view.get("max_parallel_tasks", 8))
        self._handler_thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- lane queue ------------------------------------------------------------------------
    def set_lane_handler(self, lane: str, mode: str = "internal", timeout_ms: int = 60000,
                         on_timeout: str | None = None) -> None:
        """`on_timeout="internal"` runs a timed-out external task's tool here instead (asking first
        outside permissive mode); the default reports the timeout to the model."""
        if lane not in LANES:
            raise ValueError(f"unknown lane {lane!r}: expected one of {', '.join(LANES)}")
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}: expected one of {', '.join(MODES)}")
        _positive(timeout_ms, "timeout_ms")
        if on_timeout not in (None, "error", "internal"):
            raise ValueError(f"on_timeout must be 'error' or 'internal', got {on_timeout!r}")
        body: dict[str, Any] = {"mode": mode, "timeout_ms": timeout_ms}
        if on_timeout is not None:
            body["on_timeout"] = on_timeout
        view = self._t.request("PUT", f"/sessions/{self.session_id}/lanes/{lane}", body)
        self._has_queue = view["has_queue"]

    def has_queue(self) -> bool:
        """False until a lane is external or hybrid (answered locally, like A3S Code's, from the
        service's last view of the session: what each mode means is the service's to say)."""
        return self._has_queue

    def pending_external_tasks(self) -> list[dict[str, Any]]:
        return self._t.request("GET", f"/sessions/{self.session_id}/external-tasks")["tasks"]

    def complete_external_task(self, task_id: str, success: bool = True, result: dict | None = None,
                               error: str | None = None) -> bool:
        _text(task_id, "task_id")
        if not isinstance(success, bool):
            raise ValueError(f"success must be a bool, got {success!r}")
        if result is not None and not isinstance(result, dict):
            raise ValueError(f"result must be a dict or None, got {type(result).__name__}")
        if error is not None and not isinstance(error, str):
            raise ValueError(f"error must be a string or None, got {type(error).__name__}")
        try:
            json.dumps(result, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ValueError(f"result must be JSON-serialisable: {err}") from None
        body = {"success": success, "result": result, "error": error}
        return self._t.request("POST", f"/sessions/{self.session_id}/external-tasks/{task_id}/complete",
                               body)["completed"]

    def claim_external_tasks(self, max_tasks: int = 1, lease_ms: int = 300_000, worker: str = "sdk") -> list[dict]:
        """Lease pending tasks so that concurrent drainers do not do the same one twice."""
        return self._t.request("POST", f"/sessions/{self.session_id}/external-tasks/claim",
                               {"max": max_tasks, "lease_ms": lease_ms, "worker": worker})["tasks"]

    def set_external_task_handler(self, fn: Callable[[dict], dict]) -> None:
        """Run fn(task) -> {"success", "result"?, "error"?} for each task, on a background thread."""
        if not callable(fn):
            raise ValueError("the external task handler must be callable")
        self._stop_handler()
        self._stop = threading.Event()
        self._handler_thread = threading.Thread(target=self._drain, args=(fn, self._stop), daemon=True,
                                                name=f"a3s-external-{self.session_id}")
        self._handler_thread.start()

    def _drain(self, fn: Callable[[dict], dict], stop: threading.Event) -> None:
        from .worker import complete_with, idle_backoff

        # Told of new tasks on the lanes (claimed once now, then when told, and every minute);
        # without a WebSocket API, polled with a backoff.
        watch = push.LaneWatch(self._t, list(LANES))
        backoff, worker = idle_backoff(), f"handler-{self.session_id}"
        pushed: list[dict[str, Any]] | None = None  # first: whatever is pending
        try:
            while not stop.is_set():
                if pushed is not None:  # told of these (the lanes are the tenant's): lease ours by id
                    found = [push.claim_pushed(self._t, p, worker, 300_000) for p in pushed
                             if p.get("session_id") == self.session_id]
                    tasks, more = [t for t in found if t], False
                else:
                    try:
                        tasks = self.claim_external_tasks(max_tasks=HANDLER_BATCH, worker=worker)
                    except Exception:  # service briefly unreachable: try again, never kill the thread
                        tasks = []
                    more = len(tasks) == HANDLER_BATCH or not watch.pushed  # maybe more: claim again now
                for task in tasks:
                    # an error here: the completion did not arrive, the lease runs out and it is claimed again
                    with contextlib.suppress(Exception):
                        complete_with(fn, task, self.complete_external_task)
                if tasks:
                    backoff = idle_backoff()
                if tasks and more:
                    pushed = None
                    continue
                pushed = watch.wait(stop, next(backoff))  # a push that came meanwhile ends it at once
        finally:
            watch.close()

    def _stop_handler(self) -> None:
        if self._handler_thread is not None:
            self._stop.set()
            self._handler_thread.join(timeout=10)
            self._handler_thread = None

    def queue_stats(self) -> dict[str, Any]:
        return self._t.request("GET", f"/sessions/{self.session_id}/queue")["stats"]

    # -- runs ------------------------------------------------------------------------------
    def send_async(self, prompt: str, max_turns: int = 50) -> RunHandle:
        _text(prompt, "prompt")
        _positive(max_turns, "max_turns")
        watching = push.watch_session(self._t, self.session_id)  # first: every event of the run is pushed
        run = self._t.request("POST", f"/sessions/{self.session_id}/runs", {"prompt": prompt, "max_turns": max_turns})
        if watching is not None:
            watching.expect(run["run_id"])
        return RunHandle(self._t, run["run_id"], self.session_id, watching)

    def send(self, prompt: str) -> AgentResult:
        return self.send_async(prompt).wait()

    def stream(self, prompt: str) -> Iterator[dict[str, Any]]:
        return self.send_async(prompt).events()

    def register_agent(self, name: str, description: str = "", system_prompt: str | None = None,
                       tools: list[str] | None = None, max_steps: int = 50) -> None:
        """A subagent of this session's own, usable by name in specs and delegation tools."""
        _text(name, "name")
        if tools is not None and (not isinstance(tools, list) or not all(isinstance(t, str) for t in tools)):
            raise ValueError("tools must be a list of built-in tool names")
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
        body = {"description": description, "system_prompt": system_prompt, "tools": tools, "max_steps": max_steps}
        self._t.request("PUT", f"/sessions/{self.session_id}/agents/{name}",
                        {k: v for k, v in body.items() if v is not None})

    def register_skill(self, name: str, description: str, content: str) -> None:
        """A skill of this session's own: instructions the model can load with the `skill` tool."""
        for value, what in ((name, "name"), (description, "description"), (content, "content")):
            _text(value, what)
        self._t.request("PUT", f"/sessions/{self.session_id}/skills/{name}",
                        {"description": description, "content": content})

    # -- orchestration ---------------------------------------------------------------------
    # `progress`: None (a bar on stderr when it is a terminal), True (a bar), False (nothing), or a
    # callable(finished, total); see progress.py.
    def parallel(self, specs: list[dict], budget_tokens: int | None = None, *,
                 progress: ProgressArg = None) -> list[dict]:
        """Run the specs as child agents, at most max_parallel_tasks at once; outcomes in input order."""
        return self._orch.parallel(specs, budget_tokens, progress)

    def pipeline(self, items: list, stages: list, *, progress: ProgressArg = None) -> list[dict | None]:
        """Each item through the stages (callables ctx -> spec | None, or server-side templates)."""
        return self._orch.pipeline(items, stages, progress)

    def parallel_resumable(self, specs: list[dict], workflow_id: str, *,
                           progress: ProgressArg = None) -> list[dict]:
        """parallel with a journal: a re-run with the same id runs only what did not succeed."""
        return self._orch.parallel_resumable(specs, workflow_id, progress)

    def close(self) -> None:
        self._stop_handler()
        self._t.request("DELETE", f"/sessions/{self.session_id}")
