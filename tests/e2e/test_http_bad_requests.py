"""Requests a fuzzer or a careless client sends: whatever is wrong with them, the answer is a 4xx
in the kit's shape `{"error": {"code", "message"}}`, never a 5xx or a crash, and nothing changes."""
from __future__ import annotations

import json

import pytest
from test_http_errors import assert_refused


def lane_change(api, session, raw: str, content_type: str | None = "application/json"):
    headers = {} if content_type is None else {"content-type": content_type}
    return api.call("PUT", f"/sessions/{session.session_id}/lanes/execute", raw=raw, headers=headers)


# -- content types ------------------------------------------------------------------------------
@pytest.mark.parametrize("content_type", [
    "multipart/form-data", "multipart/form-data; boundary=xyz", "text/plain", "application/x-www-form-urlencoded",
    "application/xml", "application/jsonx", "application/json-patch+json", "application/octet-stream"])
def test_given_a_body_that_is_not_declared_json_then_415_in_the_kit_shape(session, api, content_type):
    before = api.session_view(session.session_id)
    status, body = lane_change(api, session, json.dumps({"mode": "external"}), content_type)
    err = assert_refused(status, body, 415)
    assert err["code"] == "unsupported_media_type" and "application/json" in err["message"]
    assert api.session_view(session.session_id) == before


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON", None])
def test_given_json_with_a_charset_an_odd_case_or_no_content_type_then_it_is_accepted(session, api, content_type):
    status, body = lane_change(api, session, json.dumps({"mode": "external", "timeout_ms": 1234}), content_type)
    assert status == 200, body
    assert body["lanes"]["execute"] == {"mode": "external", "timeout_ms": 1234, "on_timeout": "error"}


def test_given_a_non_json_content_type_on_a_route_without_a_body_then_it_still_works(session, api):
    status, body = api.call("GET", f"/sessions/{session.session_id}", headers={"content-type": "text/plain"})
    assert status == 200, body


# -- malformed JSON ------------------------------------------------------------------------------
@pytest.mark.parametrize("raw", ['{"mode": "external", ', "{'mode': 'external'}", '{"mode": "external"} x',
                                 '{"mode": NaN}', '{"timeout_ms": Infinity}', "\ufeff{}", '{"timeout_ms": 1' + "0" * 5000 + "}"])
def test_given_malformed_json_then_400_bad_json(session, api, raw):
    before = api.session_view(session.session_id)
    status, body = lane_change(api, session, raw)
    err = assert_refused(status, body, 400)
    assert err["code"] == "bad_json"
    assert api.session_view(session.session_id) == before


@pytest.mark.parametrize("depth", [50_000, 1_000, 65])
def test_given_json_nested_too_deep_then_400_bad_json(session, api, depth):
    for raw in ("[" * depth + "]" * depth, '{"mode": "external", "x": ' + '{"a":' * depth + "1" + "}" * depth + "}"):
        status, body = lane_change(api, session, raw)
        err = assert_refused(status, body, (400, 413))  # 413: 50,000 objects deep is over 256 KiB too
        assert status == 413 or (err["code"] == "bad_json" and "deep" in err["message"])


def test_given_json_nested_within_the_limit_then_it_reaches_validation(waiting, api):
    session, handle, task_id = waiting
    deep = {"output": "x"}
    for _ in range(30):
        deep = {"a": deep}
    status, body = api.call("POST", f"/sessions/{session.session_id}/external-tasks/{task_id}/complete",
                            {"success": True, "result": {"output": "ok", "deep": deep}})
    assert (status, body) == (200, {"completed": True})


# -- strict types --------------------------------------------------------------------------------
STRICT_BODIES = [
    ("POST", "/sessions", {"workspace": "/tmp", "permissive": "yes"}),
    ("POST", "/sessions", {"workspace": "/tmp", "permissive": 1}),
    ("POST", "/sessions", {"workspace": "/tmp", "max_parallel_tasks": "8"}),
    ("POST", "/sessions", {"workspace": "/tmp", "max_parallel_tasks": 8.0}),
    ("POST", "/sessions", {"workspace": "/tmp", "queue_config": {"concurrency": {"execute": "3"}}}),
    ("POST", "/sessions", {"workspace": "/tmp", "queue_config": {"lane_handlers": {"execute": {"timeout_ms": "5000"}}}}),
    ("POST", "/sessions", {"workspace": "/tmp", "queue_config": {"enable_all_features": "true"}}),
    ("PUT", "/sessions/{sid}/lanes/execute", {"mode": "external", "timeout_ms": True}),
    ("PUT", "/sessions/{sid}/lanes/execute", {"mode": "external", "timeout_ms": "5000"}),
    ("PUT", "/sessions/{sid}/lanes/execute", {"mode": "external", "timeout_ms": 5000.0}),
    ("POST", "/sessions/{sid}/runs", {"prompt": "hi", "max_turns": "5"}),
    ("PUT", "/sessions/{sid}/agents/helper", {"max_steps": "5"}),
    ("POST", "/sessions/{sid}/external-tasks/claim", {"max": True}),
]


@pytest.mark.parametrize("method,path,body", STRICT_BODIES, ids=[json.dumps(b) for _, _, b in STRICT_BODIES])
def test_given_a_value_of_the_wrong_json_type_then_422_not_a_coercion(session, api, method, path, body):
    before = api.session_view(session.session_id)
    status, out = api.call(method, path.format(sid=session.session_id), body)
    err = assert_refused(status, out, 422)
    assert err["code"] == "validation_error"
    assert api.session_view(session.session_id) == before


# -- bounds ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("method,path,body,query", [
    ("GET", "/runs/{rid}/events", None, {"after": str(10**12)}),
    ("GET", "/runs/{rid}/events", None, {"after": "9" * 50}),
    ("GET", "/workflows/wf-x", None, {"after_finished": "9" * 50}),
    ("POST", "/sessions", {"workspace": "/tmp", "queue_config": {"concurrency": {"execute": 10**40}}}, None),
    ("POST", "/sessions", {"workspace": "/tmp", "queue_config": {"concurrency": {"execute": 0}}}, None),
    ("POST", "/sessions/{sid}/workflows", {"kind": "parallel", "budget_tokens": 10**40,
                                           "specs": [{"task_id": "a", "agent": "general", "prompt": "p"}]}, None),
])
def test_given_a_number_out_of_bounds_then_it_is_refused(waiting, api, method, path, body, query):
    session, handle, _ = waiting
    status, out = api.call(method, path.format(sid=session.session_id, rid=handle.run_id), body, query=query)
    assert_refused(status, out)


@pytest.mark.parametrize("path", ["/sessions/{long}", "/sessions/{long}/queue", "/runs/{long}",
                                  "/runs/{long}/events", "/workflows/{long}", "/sessions/{sid}/external-tasks/{long}/complete"])
def test_given_an_id_longer_than_any_key_then_it_is_refused(session, api, path):
    long = "x" * 3000
    method = "POST" if path.endswith("complete") else "GET"
    body = {"success": True, "result": {"output": "x"}} if method == "POST" else None
    status, out = api.call(method, path.format(long=long, sid=session.session_id), body)
    assert_refused(status, out)


@pytest.mark.parametrize("name", ["0" * 256, "a/" + "0" * 300 + "/b", "\u00e9" * 128])
def test_given_a_workspace_name_longer_than_a_filesystem_takes_then_422(session, api, name):
    # found by Schemathesis: the directory's OSError was a 500
    status, body = api.call("POST", "/sessions", {"workspace": name})
    assert assert_refused(status, body, 422)["code"] == "validation_error"
    spec = {"task_id": "a", "agent": "general", "prompt": "p", "workspace": name}
    status, body = api.call("POST", f"/sessions/{session.session_id}/workflows", {"kind": "parallel", "specs": [spec]})
    assert assert_refused(status, body, 422)["code"] == "validation_error"
    status, body = api.call("POST", "/sessions", {"workspace": "a/" + "0" * 255})
    assert status == 201, body


# -- run control ----------------------------------------------------------------------------------
def test_given_an_unknown_action_then_400_whatever_the_run(agent, workspace, api, waiting):
    _, waiting_handle, _ = waiting
    done = agent.session(str(workspace)).send_async("hi")
    done.wait(timeout=30)
    for run_id in (done.run_id, waiting_handle.run_id, "run-does-not-exist"):
        status, body = api.call("POST", f"/runs/{run_id}/bogus", {})
        err = assert_refused(status, body, 400)
        assert "bogus" in err["message"] and "pause" in err["message"]
    assert waiting_handle.status() == "waiting"


# -- items over DynamoDB's 400 KB -----------------------------------------------------------------
def test_given_agents_that_outgrow_the_session_item_then_413_and_the_session_is_unchanged(session, api):
    prompt = "p" * 100_000
    answers = []
    for i in range(5):
        status, body = api.call("PUT", f"/sessions/{session.session_id}/agents/agent{i}", {"system_prompt": prompt})
        answers.append(status)
        if status != 200:
            break
    assert answers[-1] == 413, answers
    err = assert_refused(status, body, 413)
    assert err["code"] == "item_too_large" and "400 KB" in err["message"]
    view = api.session_view(session.session_id)
    assert view["closed"] is False
    # the session still answers and can still be changed
    status, body = api.call("PUT", f"/sessions/{session.session_id}/lanes/execute", {"mode": "external"})
    assert status == 200, body


def test_given_injected_prompts_that_outgrow_the_control_item_then_413(waiting, api):
    session, handle, _ = waiting
    statuses = [api.call("POST", f"/runs/{handle.run_id}/inject", {"prompt": "i" * 100_000})[0] for _ in range(5)]
    assert statuses[-1] == 413, statuses
    assert handle.status() == "waiting"


# -- anything else ---------------------------------------------------------------------------------
def test_given_an_unexpected_exception_in_a_route_then_500_in_the_kit_shape(session, api, monkeypatch):
    from a3s_core.api.service import Service

    def broken(self, run_id):
        raise RuntimeError("something the kit did not expect")

    monkeypatch.setattr(Service, "get_run", broken)
    status, body = api.call("GET", "/runs/run-x")
    assert status == 500, body
    assert body["error"]["code"] == "internal_error" and "did not expect" not in json.dumps(body)
