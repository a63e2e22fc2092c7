"""Listing what a tenant has: GET /sessions, GET /workflows (optionally one session's) and a
workflow's steps with their timing, GET /workflows/{id}/steps. Each lists the caller's own
tenant only, newest first, with the limit counting what matches."""
from __future__ import annotations

import secrets

import pytest

from a3s_serverless import Agent

GOOD = {"task_id": "a", "agent": "general", "prompt": "hello"}


@pytest.fixture
def tenant(stack):
    """A fresh tenant: (its key, an agent of its own), so listings are exact."""
    key = f"key-{secrets.token_hex(6)}"
    stack.add_api_key(key, f"tenant-{secrets.token_hex(4)}")
    return key, Agent(stack.transport(key))


def _start(api, key, session_id, specs):
    status, started = api.call("POST", f"/sessions/{session_id}/workflows", {"kind": "parallel", "specs": specs},
                               key=key)
    assert status == 202, started
    return started["workflow_id"]


def _wait(api, key, workflow_id):
    seen = -1
    for _ in range(100):
        status, view = api.call("GET", f"/workflows/{workflow_id}", query={"wait_ms": 2000, "after_finished": seen},
                                key=key)
        assert status == 200, view
        if view["done"]:
            return view
        seen = view["finished"]
    raise AssertionError(f"workflow {workflow_id} did not end")


def test_given_a_tenants_sessions_when_listed_then_its_own_newest_first_and_no_other_tenants(
        api, tenant, workspace, session):
    key, agent = tenant
    first = agent.session("ws")
    second = agent.session("ws")

    status, body = api.call("GET", "/sessions", key=key)
    _, limited = api.call("GET", "/sessions", query={"limit": 1}, key=key)

    assert status == 200
    assert [s["session_id"] for s in body["sessions"]] == [second.session_id, first.session_id]
    assert body["sessions"][0] == api.session_view(second.session_id, key=key)
    assert [s["session_id"] for s in limited["sessions"]] == [second.session_id]
    # The default tenant's session (the `session` fixture) is not among them, nor they among its.
    _, local = api.call("GET", "/sessions")
    listed = {s["session_id"] for s in local["sessions"]}
    assert session.session_id in listed and not listed & {first.session_id, second.session_id}


def test_given_workflows_in_two_sessions_when_listed_by_session_then_only_that_sessions(api, tenant, workspace):
    key, agent = tenant
    a, b = agent.session("ws"), agent.session("ws")
    wa = _start(api, key, a.session_id, [GOOD])
    wb1 = _start(api, key, b.session_id, [GOOD])
    wb2 = _start(api, key, b.session_id, [GOOD, {**GOOD, "task_id": "b"}])
    for wid in (wa, wb1, wb2):
        _wait(api, key, wid)

    _, all_of_them = api.call("GET", "/workflows", key=key)
    _, of_b = api.call("GET", "/workflows", query={"session_id": b.session_id}, key=key)
    _, of_b_limited = api.call("GET", "/workflows", query={"session_id": b.session_id, "limit": 1}, key=key)
    _, of_a_limited = api.call("GET", "/workflows", query={"session_id": a.session_id, "limit": 1}, key=key)

    assert [w["workflow_id"] for w in all_of_them["workflows"]] == [wb2, wb1, wa]
    assert [w["workflow_id"] for w in of_b["workflows"]] == [wb2, wb1]
    assert of_b["workflows"][0] == {"workflow_id": wb2, "session_id": b.session_id, "kind": "parallel",
                                    "status": "succeeded", "done": True, "finished": 2, "total": 2, "attempt": 1,
                                    "created_at": of_b["workflows"][0]["created_at"]}
    assert [w["workflow_id"] for w in of_b_limited["workflows"]] == [wb2]
    # The limit counts matches: a's one workflow is found under b's two newer ones.
    assert [w["workflow_id"] for w in of_a_limited["workflows"]] == [wa]
    assert not {w["workflow_id"] for w in api.call("GET", "/workflows")[1]["workflows"]} & {wa, wb1, wb2}


def test_given_a_finished_workflow_when_its_steps_are_read_then_each_in_input_order_with_timing_and_errors(
        api, tenant, workspace):
    key, agent = tenant
    s = agent.session("ws")
    specs = [{**GOOD, "task_id": "ok", "prompt": "fine"}, {**GOOD, "task_id": "bad", "prompt": "/fail boom"},
             {**GOOD, "task_id": "ok2", "prompt": "fine too"}]
    wid = _start(api, key, s.session_id, specs)
    _wait(api, key, wid)

    status, body = api.call("GET", f"/workflows/{wid}/steps", key=key)

    assert status == 200 and (body["workflow_id"], body["status"]) == (wid, "failed")
    steps = body["steps"]
    assert [(st["index"], st["task_id"], st["status"]) for st in steps] == [
        (0, "ok", "succeeded"), (1, "bad", "failed"), (2, "ok2", "succeeded")]
    for st in steps:
        assert st["run_id"] and st["agent"] == "general" and st["attempt"] == 1
        assert st["started_at"] <= st["finished_at"]
    assert steps[0]["error"] is None and "boom" in steps[1]["error"]


def test_given_another_tenants_or_an_unknown_workflow_when_its_steps_are_read_then_404(api, tenant, session):
    key, _ = tenant
    wid = _start(api, "a3s-local-key", session.session_id, [GOOD])

    assert api.call("GET", f"/workflows/{wid}/steps", key=key)[0] == 404
    assert api.call("GET", "/workflows/wf-nope/steps")[0] == 404
    assert wid not in {w["workflow_id"] for w in api.call("GET", "/workflows", key=key)[1]["workflows"]}
    _wait(api, "a3s-local-key", wid)


@pytest.mark.parametrize("path,query", [("/sessions", {"limit": 0}), ("/sessions", {"limit": 201}),
                                        ("/workflows", {"limit": 0}), ("/workflows", {"session_id": "x" * 65})])
def test_given_an_out_of_range_listing_query_then_422(api, path, query):
    status, out = api.call("GET", path, query=query)

    assert status == 422 and out["error"]["code"] == "validation_error"
