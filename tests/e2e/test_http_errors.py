"""Malformed requests through the embedded API Gateway: a 4xx in the one error shape
`{"error": {"code", "message"}}`, never a 500 or a stack trace, and nothing changes."""
from __future__ import annotations

import json
import zlib

import pytest

MAX_BODY = 256 * 1024


def assert_refused(status: int, body, expected: int | tuple[int, ...] | None = None) -> dict:
    """A 4xx in the kit's error shape, with no trace in it; the error object."""
    text = body if isinstance(body, str) else json.dumps(body)
    assert "Traceback" not in text and 'File "' not in text, text[:2000]
    assert 400 <= status < 500, (status, text[:2000])
    if expected is not None:
        assert status in ((expected,) if isinstance(expected, int) else expected), (status, text[:500])
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), text[:500]
    err = body["error"]
    assert isinstance(err.get("code"), str) and err["code"]
    assert isinstance(err.get("message"), str) and err["message"]
    return err


# -- lane changes -------------------------------------------------------------------------------
LANE_BODIES = {
    "bad-json": ('{"mode": "external", ', 422),
    "not-an-object": ("[]", 422),
    "empty-body": ("", 422),
    "unknown-mode": (json.dumps({"mode": "remote"}), 422),
    "extra-field": (json.dumps({"mode": "external", "priority": 1}), 422),
    "zero-timeout": (json.dumps({"mode": "external", "timeout_ms": 0}), 422),
    "negative-timeout": (json.dumps({"mode": "external", "timeout_ms": -5}), 422),
    "fractional-timeout": (json.dumps({"mode": "external", "timeout_ms": 1.5}), 422),
    "text-timeout": (json.dumps({"mode": "external", "timeout_ms": "soon"}), 422),
    "huge-timeout": (json.dumps({"mode": "external", "timeout_ms": 10**12}), 422),
    "unknown-on-timeout": (json.dumps({"mode": "external", "on_timeout": "retry"}), 422),
}


@pytest.mark.parametrize("name", sorted(LANE_BODIES))
def test_given_a_malformed_lane_change_then_it_is_refused_and_the_lanes_are_unchanged(session, api, name):
    raw, expected = LANE_BODIES[name]
    before = api.session_view(session.session_id)
    status, body = api.call("PUT", f"/sessions/{session.session_id}/lanes/execute", raw=raw)
    assert_refused(status, body, (400, expected))
    assert api.session_view(session.session_id) == before


def test_given_an_unknown_lane_then_the_change_is_refused_with_400_and_the_lanes_are_unchanged(session, api):
    before = api.session_view(session.session_id)
    status, body = api.call("PUT", f"/sessions/{session.session_id}/lanes/bogus", {"mode": "external"})
    err = assert_refused(status, body, 400)
    assert "bogus" in err["message"]
    assert api.session_view(session.session_id) == before
    assert sorted(before["lanes"]) == ["control", "execute", "generate", "query"]


def test_given_a_closed_session_then_lane_changes_and_runs_are_refused(agent, workspace, api):
    session = agent.session(str(workspace), permissive=True)
    session.close()
    before = api.session_view(session.session_id)
    status, body = api.call("PUT", f"/sessions/{session.session_id}/lanes/execute", {"mode": "external"})
    assert_refused(status, body)
    status, body = api.call("POST", f"/sessions/{session.session_id}/runs", {"prompt": "hi"})
    assert_refused(status, body)
    assert api.session_view(session.session_id) == before


# -- completions --------------------------------------------------------------------------------
COMPLETION_BODIES = {
    "missing-success": {"result": {"output": "x"}},
    "extra-field": {"success": True, "result": {"output": "x"}, "worker": "w1"},
    "result-not-object": {"success": True, "result": "x"},
    "error-not-string": {"success": False, "error": {"why": "x"}},
    "success-not-bool": {"success": {"yes": True}},
}


@pytest.mark.parametrize("name", sorted(COMPLETION_BODIES))
def test_given_a_malformed_completion_then_it_is_refused_and_the_task_stays_pending(waiting, api, name):
    session, handle, task_id = waiting
    status, body = api.call("POST", f"/sessions/{session.session_id}/external-tasks/{task_id}/complete",
                            COMPLETION_BODIES[name])
    assert_refused(status, body, 422)
    assert [t["task_id"] for t in session.pending_external_tasks()] == [task_id]
    assert handle.status() == "waiting"


def test_given_a_completion_body_that_is_not_json_then_it_is_refused_and_the_task_stays_pending(waiting, api):
    session, handle, task_id = waiting
    status, body = api.call("POST", f"/sessions/{session.session_id}/external-tasks/{task_id}/complete",
                            raw='{"success": true, "result": ')
    assert_refused(status, body, (400, 422))
    assert [t["task_id"] for t in session.pending_external_tasks()] == [task_id]


def test_given_a_body_over_256_kib_then_it_is_refused_with_413_and_the_task_stays_pending(waiting, api):
    session, handle, task_id = waiting
    raw = json.dumps({"success": True, "result": {"output": "x" * (MAX_BODY + 1)}})
    status, body = api.call("POST", f"/sessions/{session.session_id}/external-tasks/{task_id}/complete", raw=raw)
    assert_refused(status, body, 413)
    assert [t["task_id"] for t in session.pending_external_tasks()] == [task_id]


def test_given_a_non_ascii_body_over_256_kib_of_utf8_then_it_is_refused_with_413(waiting, api):
    # 90,000 characters, 270,000 bytes on the wire: the limit is on bytes.
    session, handle, task_id = waiting
    raw = json.dumps({"success": True, "result": {"output": "€" * 90_000}}, ensure_ascii=False)
    assert len(raw) < MAX_BODY < len(raw.encode())
    status, body = api.call("POST", f"/sessions/{session.session_id}/external-tasks/{task_id}/complete", raw=raw)
    assert_refused(status, body, 413)
    assert [t["task_id"] for t in session.pending_external_tasks()] == [task_id]


def test_given_a_non_ascii_result_within_the_body_limit_then_it_is_accepted_and_reaches_the_model(waiting, api):
    # 70,000 "€" are 210,000 bytes on the wire: under the 256 KiB limit, and under DynamoDB's
    # 400 KB item limit that the body limit leaves room for.
    session, handle, task_id = waiting
    raw = json.dumps({"success": True, "result": {"output": "€" * 70_000}}, ensure_ascii=False)
    assert len(raw.encode()) < MAX_BODY
    status, body = api.call("POST", f"/sessions/{session.session_id}/external-tasks/{task_id}/complete", raw=raw)
    assert (status, body) == (200, {"completed": True})
    assert handle.wait(timeout=60).text.splitlines()[1].startswith("bash -> €€€")
    assert session.pending_external_tasks() == []
    [end] = [e for e in handle.events() if e["type"] == "tool_end"]
    assert end["output"] == "€" * 2000  # the event carries its first 2,000 characters


def test_given_a_prompt_over_the_body_limit_then_no_run_is_started(session, api, stack):
    status, body = api.call("POST", f"/sessions/{session.session_id}/runs", {"prompt": "x" * (MAX_BODY + 10)})
    assert_refused(status, body, 413)
    status, body = api.call("POST", f"/sessions/{session.session_id}/runs", {"prompt": ""})
    assert_refused(status, body, 422)
    status, body = api.call("POST", f"/sessions/{session.session_id}/runs", {"prompt": "hi", "model": "x"})
    assert_refused(status, body, 422)
    stack.wait_idle()
    assert api.call("GET", "/runs", query={"session_id": session.session_id}) == (200, {"runs": []})
    assert api.session_view(session.session_id)["closed"] is False
    # ...while a valid prompt does start one, which the listing shows.
    status, body = api.call("POST", f"/sessions/{session.session_id}/runs", {"prompt": "hi"})
    assert status == 202
    runs = api.call("GET", "/runs", query={"session_id": session.session_id})[1]["runs"]
    assert [r["run_id"] for r in runs] == [body["run_id"]]


# -- unknown ids --------------------------------------------------------------------------------
UNKNOWN_IDS = [
    ("GET", "/sessions/sess-nope", None),
    ("GET", "/sessions/sess-nope/queue", None),
    ("GET", "/sessions/sess-nope/external-tasks", None),
    ("PUT", "/sessions/sess-nope/lanes/execute", {"mode": "external"}),
    ("POST", "/sessions/sess-nope/external-tasks/task-nope/complete", {"success": True, "result": {"output": "x"}}),
    ("POST", "/sessions/sess-nope/runs", {"prompt": "hi"}),
    ("DELETE", "/sessions/sess-nope", None),
    ("GET", "/runs/run-nope", None),
    ("GET", "/runs/run-nope/events", None),
]


@pytest.mark.parametrize("method,path,body", UNKNOWN_IDS, ids=[f"{m} {p}" for m, p, _ in UNKNOWN_IDS])
def test_given_an_unknown_session_or_run_id_then_404(api, method, path, body):
    status, out = api.call(method, path, body)
    assert_refused(status, out, 404)


def test_given_a_known_session_and_an_unknown_task_id_then_completion_is_false_not_an_error(session, api):
    status, body = api.call("POST", f"/sessions/{session.session_id}/external-tasks/task-nope/complete",
                            {"success": True, "result": {"output": "x"}})
    assert (status, body) == (200, {"completed": False})


# -- routes and keys ----------------------------------------------------------------------------
@pytest.mark.parametrize("method,path", [("GET", "/nope"), ("POST", "/sessions/x/teleport"), ("PATCH", "/sessions"),
                                         ("DELETE", "/runs/run-x")])
def test_given_an_unknown_route_then_404_in_the_error_shape(api, method, path):
    status, body = api.call(method, path, {})
    assert_refused(status, body, (404, 405))


def table_holds(stack, text: str) -> bool:
    """Whether any item of the stack's table mentions `text` (a scan of the moto table)."""
    pages = stack.boto.client("dynamodb").get_paginator("scan").paginate(TableName=stack.env["A3S_TABLE"])

    def readable(item: dict) -> str:  # compressed attributes (a document, carried events) read as their text
        packed = [zlib.decompress(item.pop(name)["B"]).decode() for name, value in list(item.items()) if "B" in value]
        return json.dumps(item) + "".join(packed)

    return any(text in readable(item) for page in pages for item in page["Items"])


def test_given_no_api_key_then_401_and_a_wrong_key_403_and_nothing_is_created(api, session, stack, tmp_path):
    # These answers come from API Gateway's authorizer step (its own {"message"} shape on AWS).
    before = api.session_view(session.session_id)
    marker = str(tmp_path / "never-made")
    for key, expected in ((None, 401), ("not-a-key", 403)):
        status, body = api.call("PUT", f"/sessions/{session.session_id}/lanes/execute", {"mode": "external"},
                                key=key)
        text = json.dumps(body)
        assert status == expected, (status, text)
        assert "Traceback" not in text and "local" not in text  # nothing about the tenant either
        status, body = api.call("POST", "/sessions", {"workspace": marker}, key=key)
        assert status == expected
    assert api.session_view(session.session_id) == before
    assert not table_holds(stack, marker)
    assert api.call("POST", "/sessions", {"workspace": marker})[0] == 201  # the same request, with the key
    assert table_holds(stack, marker)


def test_given_an_unknown_lane_in_a_claim_then_it_is_refused_even_when_nothing_is_pending(session, api):
    status, body = api.call("POST", f"/sessions/{session.session_id}/external-tasks/claim", {}, query={"lane": "bogus"})
    assert_refused(status, body, 400)
    status, body = api.call("POST", "/lanes/bogus/claim", {})
    assert_refused(status, body, 400)


@pytest.mark.parametrize("query", [{"after": "-1"}, {"after": "abc"}, {"wait_ms": "999999"}, {"wait_ms": "-1"}])
def test_given_bad_event_paging_parameters_then_422(waiting, api, query):
    session, handle, _ = waiting
    status, body = api.call("GET", f"/runs/{handle.run_id}/events", query=query)
    assert_refused(status, body, 422)
