"""The WebSocket API's routes: a connection of a tenant subscribes to a run, a workflow or a lane,
and gets what was committed so far (the catch-up) on the connection, then what the engine pushes;
or to a session, and gets the events of every run of it committed from then on (no catch-up: a
client that keeps one connection subscribes before it starts its runs).

Frames the client sends: {"action": "subscribe", "run_id": ..., "after": seq} (or "workflow_id",
"lane" or "session_id"), {"action": "unsubscribe", ...}. Frames it gets: {"type": "events", ...},
{"type": "task", ...}, {"type": "workflow", ...}, {"type": "subscribed", ...}, {"type": "error", ...}.
"""
from __future__ import annotations

import json
import time
from typing import Any

from a3s_core.domain.errors import A3SError, BadRequest
from a3s_core.domain.items import Run, RunStatus
from a3s_core.domain.lane_names import LANES
from a3s_core.engine import push
from a3s_core.runtime import Runtime
from a3s_core.store.base import WatchKind

CONNECTION_S = 2 * 3600  # API Gateway closes a WebSocket connection after 2 hours
CATCH_UP_TASKS = 100


def connect(rt: Runtime, tenant: str, connection_id: str) -> None:
    rt.store.open_connection(tenant, connection_id, int(time.time()) + CONNECTION_S)


def disconnect(rt: Runtime, tenant: str, connection_id: str) -> None:
    for kind, key in rt.store.close_connection(tenant, connection_id):
        rt.store.remove_watcher(tenant, kind, key, connection_id)  # type: ignore[arg-type]


def target(body: dict[str, Any]) -> tuple[WatchKind, str]:
    """What a frame names: exactly one of run_id, workflow_id, lane, session_id."""
    named = [(k, body[f]) for k, f in (("run", "run_id"), ("workflow", "workflow_id"), ("lane", "lane"),
                                       ("session", "session_id")) if f in body]
    if len(named) != 1:
        raise BadRequest("name exactly one of run_id, workflow_id, lane, session_id")
    kind, key = named[0]
    if not isinstance(key, str) or not 0 < len(key) <= 200 or "#" in key:
        raise BadRequest(f"{kind} must be an id of 1-200 characters")
    if kind == "lane" and key not in LANES:
        raise BadRequest(f"unknown lane {key!r}: expected one of {', '.join(LANES)}")
    return kind, key  # type: ignore[return-value]


def message(rt: Runtime, tenant: str, connection_id: str, raw: str | None) -> None:
    """One frame from the client; an error goes back to it as an `error` frame."""
    try:
        body = json.loads(raw or "{}")
        if not isinstance(body, dict):
            raise BadRequest("a frame is a JSON object")
        action = body.get("action")
        if action == "subscribe":
            return subscribe(rt, tenant, connection_id, body)
        if action == "unsubscribe":
            kind, key = target(body)
            rt.store.remove_watcher(tenant, kind, key, connection_id)
            return reply(rt, tenant, connection_id, {"type": "unsubscribed", _named(kind): key})
        raise BadRequest(f"unknown action {str(action)[:40]!r}: expected subscribe or unsubscribe")
    except ValueError as err:
        reply(rt, tenant, connection_id, {"type": "error", "status": 400, "code": "bad_request", "message": str(err)})
    except A3SError as err:
        reply(rt, tenant, connection_id, {"type": "error", "status": err.status, "code": err.code,
                                          "message": str(err)})


def _named(kind: WatchKind) -> str:
    return "lane" if kind == "lane" else f"{kind}_id"


def reply(rt: Runtime, tenant: str, connection_id: str, frame: dict[str, Any]) -> None:
    poster = rt.poster()
    if poster is not None:
        try:
            poster.post(connection_id, json.dumps(frame, ensure_ascii=False, default=str).encode())
        except push.Gone:
            disconnect(rt, tenant, connection_id)


def counted(rt: Runtime, tenant: str, run_id: str, connection_id: str, expires: int) -> Run:
    """The run, once its counter shows this watcher. A checkpoint that began before the
    subscription writes the counter it read: if it wrote it over ours, count the watcher again.
    A run still `running` is left as it is: its driver may push late, and the client reads sooner."""
    for _ in range(3):
        run = rt.store.get_run(tenant, run_id)
        if run.watchers > 0 or run.status == RunStatus.RUNNING or run.done:
            break
        rt.store.remove_watcher(tenant, "run", run_id, connection_id)
        rt.store.add_watcher(tenant, "run", run_id, connection_id, expires)
    return run


def subscribe(rt: Runtime, tenant: str, connection_id: str, body: dict[str, Any]) -> None:
    """The watcher first, then the catch-up: an event committed before the watcher was written
    is in the catch-up, one committed after is pushed (engine/push.py)."""
    kind, key = target(body)
    after = body.get("after", 0)
    if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after <= 10**9:
        raise BadRequest("after must be an event seq (an integer >= 0)")
    steps = body.get("steps", True)  # a workflow's settled steps too, or its end alone
    if not isinstance(steps, bool):
        raise BadRequest("steps must be true or false")
    expires = int(time.time()) + CONNECTION_S
    rt.store.add_watcher(tenant, kind, key, connection_id, expires, counted=steps)  # NotFound: not yours
    if kind == "run":
        run = counted(rt, tenant, key, connection_id, expires)
        last = after
        while True:
            events = rt.store.list_events(tenant, key, last)
            for frame in push.frames(key, events):
                if not push.send(rt, tenant, kind, key, connection_id, frame):
                    return
            if len(events) < 500:
                break
            last = events[-1].seq
        last = events[-1].seq if events else last
        reply(rt, tenant, connection_id, {"type": "subscribed", "run_id": key, "status": run.status,
                                          "done": run.done, "next": last})
    elif kind == "session":
        reply(rt, tenant, connection_id, {"type": "subscribed", "session_id": key})
    elif kind == "workflow":
        wf = rt.store.get_workflow(tenant, key)
        reply(rt, tenant, connection_id, {"type": "subscribed", "workflow_id": key, "status": wf.status,
                                          "done": wf.status != "running", "finished": wf.finished, "total": wf.n})
    else:
        pending = rt.store.pending_tasks_for_lane(tenant, key, CATCH_UP_TASKS)
        for task in pending:
            push.send(rt, tenant, kind, key, connection_id, {"type": "task", **task.public()})
        reply(rt, tenant, connection_id, {"type": "subscribed", "lane": key, "pending": len(pending)})
