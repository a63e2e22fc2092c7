"""Helpers for the SDK-level tests: raw HTTP through the embedded gateway, and event waits that
synchronise on the run's own (long-polled, ordered) event stream instead of sleeping."""
from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from typing import Any

import pytest

LOCAL_KEY = "a3s-local-key"


class Api:
    """Raw requests through the embedded API Gateway: (status, decoded body or raw text)."""

    def __init__(self, stack) -> None:
        self.stack = stack

    def call(self, method: str, path: str, body: Any = None, *, query: dict | None = None,
             key: str | None = LOCAL_KEY, raw: str | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        hdrs = {"content-type": "application/json"}
        if key is not None:
            hdrs["authorization"] = f"Bearer {key}"
        hdrs.update(headers or {})
        text = raw if raw is not None else (None if body is None else json.dumps(body))
        try:
            status, out = self.stack.invoke_http(method, path, text, query, hdrs)
        except Exception:  # the handler raised: API Gateway would answer 500 Internal Server Error
            return 500, traceback.format_exc()
        try:
            return status, json.loads(out) if out else None
        except ValueError:
            return status, out

    def session_view(self, session_id: str, key: str = LOCAL_KEY) -> dict:
        status, body = self.call("GET", f"/sessions/{session_id}", key=key)
        assert status == 200, body
        return body

    def pending(self, session_id: str, key: str = LOCAL_KEY) -> list[dict]:
        status, body = self.call("GET", f"/sessions/{session_id}/external-tasks", key=key)
        assert status == 200, body
        return body["tasks"]

    def wait_workflow(self, workflow_id: str, timeout: float = 30.0) -> dict:
        """Long-poll the workflow as a client does, until it is done."""
        deadline, seen = time.monotonic() + timeout, -1
        while time.monotonic() < deadline:
            status, view = self.call("GET", f"/workflows/{workflow_id}",
                                     query={"wait_ms": 2000, "after_finished": seen})
            assert status == 200, view
            if view["done"]:
                return view
            seen = view["finished"]
        raise AssertionError(f"workflow {workflow_id} not done within {timeout} s")


@pytest.fixture
def api(stack) -> Api:
    return Api(stack)


class Events:
    """Read a run's events as a client does: long-polled pages, in order, with a deadline."""

    def __init__(self, stack) -> None:
        self.stack = stack

    def wait_for(self, run_id: str, match: str | Callable[[dict], bool], timeout: float = 30.0,
                 key: str = LOCAL_KEY) -> dict:
        """The first event of the run that matches (a type name or a predicate)."""
        pred = (lambda e: e["type"] == match) if isinstance(match, str) else match
        transport, after = self.stack.transport(key), 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            page = transport.request("GET", f"/runs/{run_id}/events", query={"after": after, "wait_ms": 2000})
            for event in page["events"]:
                if pred(event):
                    return event
            after = page["next"]
            if page["done"] and not page["events"]:
                break
        raise AssertionError(f"no matching event in run {run_id} within {timeout} s")

    def wait_for_count(self, run_id: str, type_: str, count: int, timeout: float = 30.0,
                       key: str = LOCAL_KEY) -> list[dict]:
        """The first `count` events of that type (e.g. every task of a turn announced)."""
        seen: list[dict] = []

        def enough(event: dict) -> bool:
            if event["type"] == type_:
                seen.append(event)
            return len(seen) >= count

        self.wait_for(run_id, enough, timeout, key)
        return seen

    def all(self, run_id: str, key: str = LOCAL_KEY) -> list[dict]:
        """Every event recorded so far (call it once the run is done)."""
        transport, after, out = self.stack.transport(key), 0, []
        while True:
            page = transport.request("GET", f"/runs/{run_id}/events", query={"after": after, "wait_ms": 0})
            out.extend(page["events"])
            if not page["events"]:
                return out
            after = page["next"]


@pytest.fixture
def events(stack) -> Events:
    return Events(stack)


@pytest.fixture
def session(agent, workspace):
    """A permissive session (execute-lane tools need no approval) on a fresh workspace."""
    s = agent.session(str(workspace), permissive=True)
    yield s
    s.close()  # stops a background task handler, so that none outlives its test


@pytest.fixture
def waiting(session, events):
    """The session, with a run suspended on one pending external bash task."""
    session.set_lane_handler("execute", "external", 300000)
    handle = session.send_async('build\n/tool bash {"command": "make"}')
    task_id = events.wait_for(handle.run_id, "external_task_pending")["task_id"]
    yield session, handle, task_id
    if session.complete_external_task(task_id, success=True, result={"output": "cleanup"}):
        handle.wait(timeout=30)
