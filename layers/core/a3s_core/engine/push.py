"""Push to WebSocket watchers: what was committed goes out to the connections watching it.

Gap-free by order: the engine commits FIRST and looks watchers up after; a subscription writes
its watcher FIRST and reads its catch-up after. Whichever comes second sees the other, so every
event reaches a watcher by push or by catch-up (clients drop the seqs they have). A failed post
is logged and never fails the work that made it; a connection that has gone loses its watcher.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from a3s_core.domain.items import Event, Run, Task
from a3s_core.runtime import Runtime
from a3s_core.store.base import WatchKind

log = logging.getLogger("a3s_core.push")
FRAME_BYTES = 96_000  # API Gateway takes 128 KB per WebSocket frame: events split under it


class Gone(Exception):
    """The connection is closed: its watchers can go."""


class ApiGatewayPoster:
    """post_to_connection through the API Gateway management API (one client, built on first use)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def post(self, connection_id: str, data: bytes) -> None:
        try:
            self._client.post_to_connection(ConnectionId=connection_id, Data=data)
        except Exception as err:
            if getattr(err, "response", {}).get("Error", {}).get("Code") == "GoneException":
                raise Gone(connection_id) from err
            raise


def frames(run_id: str, events: list[Event]) -> list[dict[str, Any]]:
    """The events as `events` frames, each under FRAME_BYTES."""
    out: list[dict[str, Any]] = []
    batch: list[dict[str, Any]] = []
    size = 0
    for event in events:
        public = event.public()
        n = len(json.dumps(public, ensure_ascii=False).encode())
        if batch and size + n > FRAME_BYTES:
            out.append({"type": "events", "run_id": run_id, "events": batch})
            batch, size = [], 0
        batch.append(public)
        size += n
    if batch:
        out.append({"type": "events", "run_id": run_id, "events": batch})
    return out


def send(rt: Runtime, tenant: str, kind: WatchKind, key: str, connection_id: str, frame: dict[str, Any]) -> bool:
    """One frame to one connection; False (and its watcher removed) if it has gone."""
    poster = rt.poster()
    if poster is None:
        return False
    try:
        poster.post(connection_id, json.dumps(frame, ensure_ascii=False, default=str).encode())
        return True
    except Gone:
        try:
            rt.store.remove_watcher(tenant, kind, key, connection_id)
        except Exception:
            log.warning("could not remove the watcher of gone connection %s", connection_id, exc_info=True)
    except Exception:
        log.warning("post to connection %s failed", connection_id, exc_info=True)
    return False


def _broadcast(rt: Runtime, tenant: str, kind: WatchKind, key: str, payloads: list[dict[str, Any]],
               lookup: bool = True, also: dict[str, tuple[WatchKind, str]] | None = None) -> None:
    """To the connections watching (kind, key) (looked up if `lookup`), and those of `also`
    (connection -> what it watches), each connection once."""
    if rt.poster() is None:
        return
    targets: dict[str, tuple[WatchKind, str]] = dict(also or {})
    try:
        targets.update((c, (kind, key)) for c in (rt.store.watchers(tenant, kind, key) if lookup else ()))
    except Exception:
        log.warning("watchers of %s %s could not be read", kind, key, exc_info=True)
    for connection_id, (k, name) in targets.items():
        for frame in payloads:
            if not send(rt, tenant, k, name, connection_id, frame):
                break


def publish_run(rt: Runtime, run: Run, events: list[Event], session_watchers: list[str] | None = None) -> None:
    """Right after `events` of `run` were committed: to the run's watchers, if it has any, and to
    its session's (as the caller's read of the session names them)."""
    if events and (run.watchers > 0 or session_watchers):
        _broadcast(rt, run.tenant, "run", run.run_id, frames(run.run_id, events), lookup=run.watchers > 0,
                   also={c: ("session", run.session_id) for c in session_watchers or ()})


def publish_task(rt: Runtime, task: Task) -> None:
    """A new task on a lane: its watchers (workers of the tenant) claim it."""
    _broadcast(rt, task.tenant, "lane", task.lane, [{"type": "task", **task.public()}])


def publish_workflow(rt: Runtime, tenant: str, workflow_id: str, notice: dict[str, Any], watched: bool = True) -> None:
    """A step settled or the workflow ended. `watched`: as the caller's read of the workflow says
    (a step's notice is skipped for a workflow nobody watches; its end is always looked up)."""
    if not watched:
        return
    _broadcast(rt, tenant, "workflow", workflow_id, [{"type": "workflow", "workflow_id": workflow_id, **notice}])
