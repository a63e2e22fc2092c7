"""The workflow HTTP API as a client sees it: POST /sessions/{id}/workflows, GET /workflows/{id}
(long-poll with wait_ms / after_finished) and POST /workflows/{id}/cancel. Bad requests get a 4xx
with one JSON error shape and a message that says what is wrong."""
from __future__ import annotations

import json
import time

import pytest

from a3s_core.domain.errors import NotFound
from a3s_core.engine.workflows import child_run_id

GOOD = {"task_id": "a", "agent": "general", "prompt": "hello"}
TEMPLATE = {"agent": "general", "prompt": "do {item}"}




@pytest.mark.parametrize("body,status,words", [
    ({"kind": "map", "specs": [GOOD]}, 422, ["kind"]),
    ({"specs": [GOOD]}, 422, ["kind"]),
    ({"kind": "parallel", "specs": []}, 400, ["at least one spec"]),
    ({"kind": "parallel"}, 400, ["at least one spec"]),
    ({"kind": "parallel", "specs": [{"task_id": "a", "agent": "general"}]}, 422, ["prompt"]),
    ({"kind": "parallel", "specs": [{**GOOD, "prompt": ""}]}, 422, ["prompt"]),
    ({"kind": "parallel", "specs": [{"agent": "general", "prompt": "p"}]}, 422, ["task_id"]),
    ({"kind": "parallel", "specs": [{**GOOD, "colour": "red"}]}, 422, ["colour"]),
    ({"kind": "parallel", "specs": [{**GOOD, "max_steps": 0}]}, 422, ["max_steps"]),
    ({"kind": "parallel", "specs": [GOOD], "budget_tokens": 0}, 422, ["budget_tokens"]),
    ({"kind": "resumable", "specs": [GOOD]}, 400, ["workflow_id"]),
    ({"kind": "resumable", "specs": [GOOD], "workflow_id": "has spaces/slash"}, 422, ["workflow_id"]),
    ({"kind": "resumable", "specs": [GOOD, GOOD], "workflow_id": "dup-ids"}, 400, ["distinct task_id"]),
    ({"kind": "pipeline", "items": ["x"]}, 400, ["stages"]),
    ({"kind": "pipeline", "items": ["x"], "stages": []}, 400, ["stages"]),
    ({"kind": "pipeline", "stages": [TEMPLATE]}, 400, ["items"]),
    ({"kind": "pipeline", "items": ["x"], "stages": [{"prompt": "no agent {item}"}]}, 400, ["stage 0", "agent"]),
])
def test_given_a_bad_workflow_body_when_posted_then_4xx_with_a_clear_message(api, session, body, status, words):
    got, out = api.call("POST", f"/sessions/{session.session_id}/workflows", body)

    assert got == status, out
    assert set(out) == {"error"} and {"code", "message"} <= set(out["error"])
    for word in words:
        assert word in out["error"]["message"], out["error"]["message"]


def test_given_a_body_that_is_not_json_when_posted_then_4xx(api, session):
    status, out = api.call("POST", f"/sessions/{session.session_id}/workflows", raw="{kind: parallel")

    assert 400 <= status < 500 and "json" in out["error"]["message"].lower(), out


def test_given_an_unknown_session_when_a_workflow_is_posted_then_404(api):
    status, out = api.call("POST", "/sessions/sess-nope/workflows", {"kind": "parallel", "specs": [GOOD]})

    assert status == 404 and "sess-nope" in out["error"]["message"]


def test_given_a_closed_session_when_a_workflow_is_posted_then_400(api, agent, workspace):
    s = agent.session(str(workspace))
    s.close()

    status, out = api.call("POST", f"/sessions/{s.session_id}/workflows", {"kind": "parallel", "specs": [GOOD]})

    assert status == 400 and "closed" in out["error"]["message"]


@pytest.mark.parametrize("method,path", [("GET", "/workflows/wf-nope"), ("POST", "/workflows/wf-nope/cancel")])
def test_given_an_unknown_workflow_id_then_404(api, method, path):
    status, out = api.call(method, path)

    assert status == 404 and out["error"]["code"] == "not_found" and "wf-nope" in out["error"]["message"]


def test_given_another_tenants_workflow_when_read_then_404(api, session, stack):
    status, started = api.call("POST", f"/sessions/{session.session_id}/workflows", {"kind": "parallel", "specs": [GOOD]})
    assert status == 202
    stack.add_api_key("other-tenant-key", "other-tenant")

    for method, path in (("GET", f"/workflows/{started['workflow_id']}"),
                         ("POST", f"/workflows/{started['workflow_id']}/cancel")):
        assert api.call(method, path, key="other-tenant-key")[0] == 404
    api.wait_workflow(started["workflow_id"])


@pytest.mark.parametrize("query", [{"wait_ms": 20001}, {"wait_ms": -1}, {"after_finished": -2}])
def test_given_an_out_of_range_long_poll_query_then_422(api, session, query):
    status, started = api.call("POST", f"/sessions/{session.session_id}/workflows", {"kind": "parallel", "specs": [GOOD]})

    got, out = api.call("GET", f"/workflows/{started['workflow_id']}", query=query)

    assert got == 422 and out["error"]["code"] == "validation_error"
    api.wait_workflow(started["workflow_id"])


def test_given_a_posted_workflow_when_read_while_and_after_it_runs_then_progress_then_the_full_view(api, session):
    specs = [{**GOOD, "task_id": f"p{i}", "prompt": f"p{i}\n/sleep 200"} for i in range(3)]
    status, started = api.call("POST", f"/sessions/{session.session_id}/workflows", {"kind": "parallel", "specs": specs})
    assert status == 202 and started == {"workflow_id": started["workflow_id"], "status": "running", "attached": False}

    got, progress = api.call("GET", f"/workflows/{started['workflow_id']}")
    view = api.wait_workflow(started["workflow_id"])

    assert got == 200
    if not progress["done"]:  # while it runs: progress only
        assert {"workflow_id", "kind", "status", "done", "finished", "total"} <= set(progress)
        assert "outcomes" not in progress and progress["total"] == 3
    assert (view["status"], view["done"], view["finished"], view["total"]) == ("succeeded", True, 3, 3)
    assert [o["task_id"] for o in view["outcomes"]] == ["p0", "p1", "p2"]


# -- cancel ----------------------------------------------------------------------------------------
def test_given_a_running_workflow_when_cancelled_then_no_further_step_is_launched(api, agent, workspace, stack):
    s = agent.session(str(workspace), max_parallel_tasks=1)
    s.set_lane_handler("query", "external", timeout_ms=60_000)  # step 0 waits on a worker we control
    specs = [{"task_id": "held", "agent": "general", "prompt": "held\n/tool read " + json.dumps({"file_path": "f"})},
             {**GOOD, "task_id": "second"}, {**GOOD, "task_id": "third"}]
    status, started = api.call("POST", f"/sessions/{s.session_id}/workflows", {"kind": "parallel", "specs": specs})
    assert status == 202
    wid = started["workflow_id"]
    deadline = time.monotonic() + 30
    while not (tasks := s.pending_external_tasks()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(tasks) == 1, "step 0 never reached its external task"

    status, out = api.call("POST", f"/workflows/{wid}/cancel")
    assert (status, out) == (200, {"workflow_id": wid, "status": "cancelled"})
    again, out = api.call("POST", f"/workflows/{wid}/cancel")
    assert again == 400 and "not running" in out["error"]["message"]
    deadline = time.monotonic() + 30  # the cancel reaches step 0's child run, which then settles it
    while (view := api.call("GET", f"/workflows/{wid}")[1])["outcomes"][0] is None:
        assert time.monotonic() < deadline, view
        time.sleep(0.02)
    # The cancel cascaded to the running step's child run, and so to its pending external task.
    assert s.complete_external_task(tasks[0]["task_id"], True, {"output": "late"}) is False

    assert (view["status"], view["done"]) == ("cancelled", True)
    assert view["outcomes"][0]["success"] is False and "cancel" in view["outcomes"][0]["error"]
    assert view["outcomes"][1] is None and view["outcomes"][2] is None
    assert {h["step"] for h in view["history"]} == {"000000"}
    store = stack.runtime.store
    wf = store.get_workflow("local", wid)
    assert store.get_run("local", store.get_step("local", wid, "000000").run_id).status == "cancelled"
    for key in ("000001", "000002"):
        step = store.get_step("local", wid, key)
        assert step.status == "pending" and step.run_id is None
        with pytest.raises(NotFound):
            store.get_run("local", child_run_id(wf, step, 0))


def test_given_a_finished_workflow_when_cancelled_then_400(api, session):
    status, started = api.call("POST", f"/sessions/{session.session_id}/workflows", {"kind": "parallel", "specs": [GOOD]})
    view = api.wait_workflow(started["workflow_id"])
    assert view["status"] == "succeeded"

    status, out = api.call("POST", f"/workflows/{started['workflow_id']}/cancel")

    assert status == 400 and out["error"]["code"] == "bad_request" and "not running" in out["error"]["message"]
    assert api.call("GET", f"/workflows/{started['workflow_id']}")[1]["status"] == "succeeded"
