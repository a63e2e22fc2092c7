"""Tenants cannot see or touch each other's sessions, tasks or runs: every key starts with the
tenant (docs/design.md, data model)."""
from __future__ import annotations

import json
import secrets
import threading

import pytest

from a3s_serverless import Agent, NotFoundError
from a3s_serverless.session import RunHandle, Session


@pytest.fixture
def other_key(stack) -> str:
    """An API key of a second tenant."""
    key = f"key-{secrets.token_hex(6)}"
    stack.add_api_key(key, f"tenant-{secrets.token_hex(4)}")
    return key


def test_given_a_second_tenant_then_it_cannot_see_the_first_tenants_session_tasks_or_runs(waiting, api, other_key):
    session, handle, task_id = waiting
    sid = session.session_id
    for path in (f"/sessions/{sid}", f"/sessions/{sid}/queue", f"/sessions/{sid}/external-tasks",
                 f"/runs/{handle.run_id}", f"/runs/{handle.run_id}/events"):
        status, body = api.call("GET", path, key=other_key)
        assert status == 404, (path, status, body)
        assert task_id not in str(body) and '"command": "make"' not in str(body)  # nothing leaks
    # ...while the owner still can.
    assert api.call("GET", f"/runs/{handle.run_id}")[0] == 200


def test_given_a_second_tenant_when_it_tries_to_complete_the_first_tenants_task_then_it_fails_and_the_task_stays_pending(
        waiting, stack, api, other_key):
    session, handle, task_id = waiting
    theirs = Session(stack.transport(other_key), {"session_id": session.session_id, "workspace": "/",
                                                  "has_queue": True, "lanes": {"execute": {"mode": "external"}}})
    try:
        assert theirs.complete_external_task(task_id, success=True, result={"output": "forged"}) is False
    except NotFoundError:
        pass
    with pytest.raises(NotFoundError):
        theirs.pending_external_tasks()
    with pytest.raises(NotFoundError):
        RunHandle(stack.transport(other_key), handle.run_id).status()
    assert [t["task_id"] for t in session.pending_external_tasks()] == [task_id]
    assert handle.status() == "waiting"
    assert session.complete_external_task(task_id, success=True, result={"output": "genuine"}) is True
    assert handle.wait(timeout=30).text == "echo: build\nbash -> genuine"


def test_given_a_second_tenant_when_it_changes_closes_or_runs_in_the_first_tenants_session_then_404_and_nothing_changes(
        waiting, api, other_key):
    session, handle, task_id = waiting
    sid = session.session_id
    before = api.session_view(sid)
    attempts = [("PUT", f"/sessions/{sid}/lanes/execute", {"mode": "internal"}),
                ("DELETE", f"/sessions/{sid}", None),
                ("POST", f"/sessions/{sid}/runs", {"prompt": "exfiltrate"}),
                ("POST", f"/sessions/{sid}/external-tasks/claim", {"max": 5}),
                ("POST", f"/sessions/{sid}/external-tasks/{task_id}/complete",
                 {"success": False, "error": "sabotage"})]
    for method, path, body in attempts:
        status, out = api.call(method, path, body, key=other_key)
        assert status == 404 or (status == 200 and out == {"completed": False}), (method, path, status, out)
    assert api.session_view(sid) == before
    assert [t["task_id"] for t in api.pending(sid)] == [task_id]
    stats = session.queue_stats()
    assert (stats["total_pending"], stats["total_active"]) == (1, 0)  # not leased by the other tenant


def test_given_a_second_tenant_when_it_claims_a_whole_lane_then_it_gets_none_of_the_first_tenants_tasks(
        waiting, api, other_key):
    session, handle, task_id = waiting
    status, body = api.call("POST", "/lanes/execute/claim", {"max": 50, "lease_ms": 60000, "worker": "thief"},
                            key=other_key)
    assert (status, body) == (200, {"tasks": []})
    assert session.queue_stats()["total_active"] == 0
    # The owner's own lane-wide claim does find it: the claim above could have, had tenancy leaked.
    status, body = api.call("POST", "/lanes/execute/claim", {"max": 50, "lease_ms": 60000, "worker": "owner"})
    assert status == 200 and task_id in [t["task_id"] for t in body["tasks"]]


def test_given_another_tenants_request_in_flight_when_a_request_is_resolved_then_it_keeps_its_own_tenant(
        stack, agent, workspace, other_key, monkeypatch):
    # Two requests in one process at once (the SDK's task-handler thread and the caller's, or two
    # clients of `make dev`), in a fixed schedule: request A is paused just after the API function
    # took it in; a request of tenant B runs in between; then A carries on.
    from aws_lambda_powertools.utilities.data_classes.api_gateway_proxy_event import APIGatewayProxyEventV2

    theirs = Agent(stack.transport(other_key)).session("theirs", permissive=True)  # a tenant of its own root
    original = APIGatewayProxyEventV2.path
    paused, b_done, a_thread = threading.Event(), threading.Event(), []

    def path(self):
        if a_thread and threading.current_thread() is a_thread[0] and not paused.is_set():
            paused.set()
            b_done.wait(timeout=2)  # a stack that serialises requests makes B wait instead: fine
        return original.fget(self)

    monkeypatch.setattr(APIGatewayProxyEventV2, "path", property(path))
    answers: dict = {}

    def request_a() -> None:  # tenant A asks for tenant B's session: must be 404
        try:
            answers["a"] = stack.invoke_http("GET", f"/sessions/{theirs.session_id}", None, None,
                                             {"authorization": "Bearer a3s-local-key"})
        except Exception as err:  # noqa: BLE001
            answers["a"] = (500, repr(err))

    a_thread.append(threading.Thread(target=request_a))
    a_thread[0].start()
    assert paused.wait(timeout=10)
    answers["b"] = stack.invoke_http("GET", f"/sessions/{theirs.session_id}", None, None,
                                     {"authorization": f"Bearer {other_key}"})
    b_done.set()
    a_thread[0].join(timeout=30)
    assert answers["b"][0] == 200
    status, body = answers["a"]
    assert status == 404 and theirs.session_id in body and '"workspace"' not in body, (status, body[:300])


def test_given_a_second_tenant_when_it_controls_lists_or_delegates_in_the_first_tenants_session_then_404_and_nothing_changes(
        waiting, api, stack, other_key):
    session, handle, task_id = waiting
    sid, run_id = session.session_id, handle.run_id
    before = api.session_view(sid)
    attempts = [("POST", f"/runs/{run_id}/pause", None), ("POST", f"/runs/{run_id}/resume", None),
                ("POST", f"/runs/{run_id}/cancel", None), ("POST", f"/runs/{run_id}/inject", {"prompt": "leak it"}),
                ("PUT", f"/sessions/{sid}/agents/spy", {"description": "theirs", "tools": ["read"]}),
                ("POST", f"/sessions/{sid}/workflows", {"kind": "parallel",
                                                        "specs": [{"task_id": "x", "agent": "general",
                                                                   "prompt": "exfiltrate"}]})]
    for method, path, body in attempts:
        status, out = api.call(method, path, body, key=other_key)
        assert status == 404, (method, path, status, out)
        assert out["error"]["code"] == "not_found" and "make" not in json.dumps(out)
    # Listing by the first tenant's session finds nothing of it (the filter is the caller's own runs).
    assert api.call("GET", "/runs", query={"session_id": sid}, key=other_key) == (200, {"runs": []})

    assert api.session_view(sid) == before  # no agent registered
    control = stack.runtime.store.get_control("local", run_id)
    assert (control.pause, control.cancel, control.injections) == (False, False, [])
    assert handle.status() == "waiting"
    assert [r["run_id"] for r in api.call("GET", "/runs", query={"session_id": sid})[1]["runs"]] == [run_id]
    assert [t["task_id"] for t in api.pending(sid)] == [task_id]
    assert session.complete_external_task(task_id, success=True, result={"output": "genuine"}) is True
    assert handle.wait(timeout=60).text == "echo: build\nbash -> genuine"  # not paused, cancelled or injected
