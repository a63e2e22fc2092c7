"""parallel, pipeline and parallel_resumable over the service's workflow engine."""
from __future__ import annotations

import json
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import push
from .progress import ProgressArg, Reporter, check_progress
from .transport import Transport

SPEC_FIELDS = {"task_id", "agent", "description", "prompt", "max_steps", "output_schema", "workspace"}
WAIT_MS = 15_000


class FileSessionStore:
    """Accepted for source compatibility: the service journals in DynamoDB, not in this directory."""

    def __init__(self, path: str = "./.a3s/sessions") -> None:
        self.path = path


class MemorySessionStore(FileSessionStore):
    def __init__(self) -> None:
        super().__init__("")


def check_spec(spec: Any, where: str = "spec") -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise ValueError(f"{where} must be a dict, got {type(spec).__name__}")
    unknown = set(spec) - SPEC_FIELDS
    if unknown:
        raise ValueError(f"{where} has unknown field(s) {sorted(unknown)}; allowed: {sorted(SPEC_FIELDS)}")
    for field in ("task_id", "agent", "prompt"):
        if not isinstance(spec.get(field), str) or not spec[field].strip():
            raise ValueError(f"{where} needs a non-empty string {field!r}")
    if "max_steps" in spec and (isinstance(spec["max_steps"], bool) or not isinstance(spec["max_steps"], int)
                                or spec["max_steps"] < 1):
        raise ValueError(f"{where}: max_steps must be a positive integer")
    if spec.get("output_schema") is not None and not isinstance(spec["output_schema"], dict):
        raise ValueError(f"{where}: output_schema must be a dict (a JSON Schema)")
    return {k: v for k, v in spec.items() if v is not None}


class Workflows:
    def __init__(self, transport: Transport, session_id: str, max_parallel: int = 8) -> None:
        self._t, self.session_id, self.max_parallel = transport, session_id, max_parallel

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._t.request("POST", f"/sessions/{self.session_id}/workflows", body)

    def wait(self, workflow_id: str, total: int, progress: ProgressArg = None) -> dict[str, Any]:
        """Until the workflow ends: told of each settled step over the WebSocket API (subscribed
        before the first read, so nothing is missed), or long-polling where there is none."""
        sock = push.open_socket(self._t)
        try:
            with Reporter(progress, total) as report:
                if sock is not None:  # told of each step only if someone is shown it, else of the end alone
                    sock.send(json.dumps({"action": "subscribe", "workflow_id": workflow_id,
                                          **({} if report.active else {"steps": False})}))
                seen = -1
                while True:
                    # Watched, come back on every finished step; unwatched, only at the end.
                    after = seen if report.active else max(seen, total - 1)
                    view = self._t.request("GET", f"/workflows/{workflow_id}",
                                           query={"wait_ms": 0 if sock else WAIT_MS, "after_finished": after})
                    report.update(view["finished"])
                    seen = view["finished"]
                    if view["done"]:
                        return view
                    if sock is not None:
                        sock = self._notice(sock, seen, report.active)
        finally:
            if sock is not None:
                sock.close()

    @staticmethod
    def _notice(sock: push.Socket, seen: int, watched: bool) -> push.Socket | None:
        """Until the next read is worth making: the workflow ended, or (watched) a step settled;
        at most IDLE_S. None once the connection has gone (then long-poll)."""
        while True:
            try:
                frame = json.loads(sock.recv(push.IDLE_S))
            except TimeoutError:
                return sock
            except ConnectionError:
                sock.close()
                return None
            if frame.get("type") == "error":
                return sock  # the read that follows says what is wrong
            if frame.get("done") or frame.get("status", "running") != "running" or \
                    (watched and frame.get("finished", -1) > seen):
                return sock

    def parallel(self, specs: list[dict], budget_tokens: int | None = None,
                 progress: ProgressArg = None) -> list[dict]:
        check_progress(progress)
        checked = [check_spec(s, f"specs[{i}]") for i, s in enumerate(_list(specs, "specs"))]
        if not checked:
            return []
        started = self.submit({"kind": "parallel", "specs": checked, "budget_tokens": budget_tokens})
        return self.wait(started["workflow_id"], len(checked), progress)["outcomes"]

    def pipeline(self, items: list, stages: list, progress: ProgressArg = None) -> list[dict | None]:
        check_progress(progress)
        items, stages = _list(items, "items"), _list(stages, "stages")
        if all(isinstance(s, dict) for s in stages) and stages:
            # Declarative stages run server-side: the chain keeps going if this client goes away.
            started = self.submit({"kind": "pipeline", "items": items, "stages": stages})
            view = self.wait(started["workflow_id"], len(items), progress)
            return list(view["outcomes"])
        if not all(callable(s) for s in stages):
            raise ValueError("stages must all be callables (ctx -> spec | None) or all be spec templates (dicts)")

        def run(item: Any, report: Reporter) -> dict | None:
            try:
                return self._chain(item, stages)
            finally:
                report.advance()  # progress counts the items whose chain has ended

        with Reporter(progress, len(items)) as report, \
                ThreadPoolExecutor(max_workers=max(1, min(self.max_parallel, len(items) or 1))) as pool:
            # No barrier: each item moves through the stages on its own.
            return list(pool.map(lambda item: run(item, report), items))

    def _chain(self, item: Any, stages: list) -> dict | None:
        ctx: dict[str, Any] = {"item": item, "previous": None}
        last = None
        for stage in stages:
            try:
                spec = stage(ctx)
            except Exception:  # a raised stage ends the chain, as returning None does
                spec = None
            if spec is None:
                break
            last = self.parallel([spec], progress=False)[0]  # the item's chain reports, not each step
            if not last["success"]:
                break
            ctx = {"item": item, "previous": last}
        return last

    def parallel_resumable(self, specs: list[dict], workflow_id: str, progress: ProgressArg = None) -> list[dict]:
        check_progress(progress)
        checked = [check_spec(s, f"specs[{i}]") for i, s in enumerate(_list(specs, "specs"))]
        if not isinstance(workflow_id, str) or not workflow_id.strip():
            raise ValueError("workflow_id must be a non-empty string")
        ids = [s["task_id"] for s in checked]
        if len(set(ids)) != len(ids):
            raise ValueError("parallel_resumable needs a distinct task_id for every spec")
        started = self.submit({"kind": "resumable", "specs": checked, "workflow_id": workflow_id})
        if started.get("refused"):  # fail closed: nothing ran, every outcome says why
            return [{"task_id": s["task_id"], "session_id": f"task-run-{s['task_id']}", "agent": s["agent"],
                     "success": False, "output": started["refused"], "error": started["refused"]} for s in checked]
        view = self.wait(workflow_id, len(checked), progress)
        by_id = {o["task_id"]: o for o in view["outcomes"] if o}
        return [by_id.get(i) or {"task_id": i, "success": False, "output": "no outcome recorded",
                                 "error": "no outcome recorded"} for i in ids]


def _list(value: Any, name: str) -> list:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{name} must be a list, got {type(value).__name__}")
    return list(value)


def warn_session_store() -> None:
    warnings.warn("session_store is accepted for compatibility; the service keeps journals in DynamoDB",
                  stacklevel=3)


__all__ = ["FileSessionStore", "MemorySessionStore", "Workflows", "check_spec"]
