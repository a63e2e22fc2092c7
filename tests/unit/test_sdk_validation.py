"""The SDK refuses bad arguments with ValueError before it sends anything (docs/design.md), and reads
its HCL configuration (endpoint, api_key = env("..."), default_model) from text or a file."""
from __future__ import annotations

from typing import Any

import pytest

from a3s_serverless import Agent, SessionOptions, SessionQueueConfig
from a3s_serverless.config import load_config
from a3s_serverless.session import Session

LANES = ("control", "query", "execute", "generate")


class RecordingTransport:
    """Records every request; answers with a plausible body so that valid calls succeed."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    def request(self, method: str, path: str, body: Any = None, query: dict | None = None) -> Any:
        self.calls.append((method, path, body))
        view = {"session_id": "sess-1", "workspace": "/w", "has_queue": False,
                "lanes": {lane: {"mode": "internal", "timeout_ms": 60000} for lane in LANES}}
        if path == "/sessions" or "/lanes/" in path:
            return view
        if path.endswith("/runs"):
            return {"run_id": "run-1"}
        if path.endswith("/complete"):
            return {"completed": True}
        return {}


@pytest.fixture
def transport() -> RecordingTransport:
    return RecordingTransport()


@pytest.fixture
def session(transport) -> Session:
    view = transport.request("POST", "/sessions", {"workspace": "/w"})
    transport.calls.clear()
    return Session(transport, view)


def refused(transport: RecordingTransport, call, match: str) -> None:
    transport.calls.clear()
    with pytest.raises(ValueError, match=match):
        call()
    assert transport.calls == [], "a request was sent before the argument was checked"


# -- the valid calls do reach the service (so "no request" above means something) -------------------
def test_given_valid_arguments_then_each_call_sends_its_request(transport, session):
    transport.calls.clear()
    session.set_lane_handler("execute", "external", 1000)
    session.complete_external_task("task-1", success=True, result={"output": "x"})
    session.send_async("hello")
    Agent(transport).session("/w", permissive=True, queue_config=SessionQueueConfig(concurrency={"execute": 3}))
    assert [(m, p) for m, p, _ in transport.calls] == [
        ("PUT", "/sessions/sess-1/lanes/execute"), ("POST", "/sessions/sess-1/external-tasks/task-1/complete"),
        ("POST", "/sessions/sess-1/runs"), ("POST", "/sessions")]


# -- set_lane_handler -----------------------------------------------------------------------------
@pytest.mark.parametrize("lane", ["bogus", "Execute", "", None, 3])
def test_given_an_unknown_lane_then_set_lane_handler_raises_before_any_request(transport, session, lane):
    refused(transport, lambda: session.set_lane_handler(lane, "external", 1000), "lane")


@pytest.mark.parametrize("mode", ["remote", "External", "", None])
def test_given_an_unknown_mode_then_set_lane_handler_raises_before_any_request(transport, session, mode):
    refused(transport, lambda: session.set_lane_handler("execute", mode, 1000), "mode")


@pytest.mark.parametrize("timeout_ms", [0, -1, 1.5, 1000.0, "1000", True, None])
def test_given_a_timeout_that_is_not_a_positive_int_then_set_lane_handler_raises_before_any_request(
        transport, session, timeout_ms):
    refused(transport, lambda: session.set_lane_handler("execute", "external", timeout_ms), "timeout_ms")


# -- runs -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("prompt", ["", "   ", "\n", None, 42, ["hi"]])
def test_given_an_empty_or_non_string_prompt_then_send_stream_and_send_async_raise_before_any_request(
        transport, session, prompt):
    refused(transport, lambda: session.send_async(prompt), "prompt")
    refused(transport, lambda: session.send(prompt), "prompt")
    refused(transport, lambda: session.stream(prompt), "prompt")


@pytest.mark.parametrize("max_turns", [0, -3, "5"])
def test_given_a_non_positive_max_turns_then_send_async_raises_before_any_request(transport, session, max_turns):
    refused(transport, lambda: session.send_async("hi", max_turns=max_turns),
            f"^max_turns must be a positive integer, got {max_turns!r}$")


# -- external tasks -------------------------------------------------------------------------------
@pytest.mark.parametrize("result", ["ok", ["output", "ok"], 5, ("output", "ok")])
def test_given_a_result_that_is_not_a_dict_then_complete_raises_before_any_request(transport, session, result):
    refused(transport, lambda: session.complete_external_task("task-1", success=True, result=result), "result")


@pytest.mark.parametrize("success", ["yes", 1, None])
def test_given_a_success_that_is_not_a_bool_then_complete_raises_before_any_request(transport, session, success):
    refused(transport, lambda: session.complete_external_task("task-1", success=success), "success")


@pytest.mark.parametrize("kwargs,match", [({"task_id": ""}, "^task_id must be a non-empty string, got ''$"),
                                          ({"task_id": None}, "^task_id must be a non-empty string, got None$"),
                                          ({"task_id": "t", "error": 5}, "^error must be a string or None, got int$")])
def test_given_a_bad_task_id_or_error_then_complete_raises_before_any_request(transport, session, kwargs, match):
    task_id = kwargs.pop("task_id")
    refused(transport, lambda: session.complete_external_task(task_id, success=False, **kwargs), match)


@pytest.mark.parametrize("fn", [None, 42, "handler", {"success": True}])
def test_given_a_non_callable_handler_then_set_external_task_handler_raises_and_starts_nothing(
        transport, session, fn):
    refused(transport, lambda: session.set_external_task_handler(fn), "callable")


# -- sessions -------------------------------------------------------------------------------------
def test_given_an_unknown_session_option_then_agent_session_raises_before_any_request(transport):
    refused(transport, lambda: Agent(transport).session("/w", permisive=True), "permisive")


SESSION_OPTIONS = [
    ({"options": {"permissive": True}}, "^options must be a SessionOptions, got dict$"),
    ({"queue_config": {"concurrency": {"execute": 3}}}, "^queue_config must be a SessionQueueConfig"),
    ({"max_parallel_tasks": 0}, "^max_parallel_tasks must be a positive integer, got 0$"),
    ({"max_parallel_tasks": True}, "^max_parallel_tasks must be a positive integer, got True$"),
    ({"max_parallel_tasks": "8"}, "^max_parallel_tasks must be a positive integer, got '8'$"),
    ({"workspace": ""}, "^workspace must be a non-empty string, got ''$"),
    ({"workspace": 7}, "^workspace must be a non-empty string, got 7$"),
]


@pytest.mark.parametrize("kwargs,match", SESSION_OPTIONS,
                         ids=[next(iter(kw)) + "=" + repr(next(iter(kw.values()))) for kw, _ in SESSION_OPTIONS])
def test_given_a_bad_session_option_value_then_agent_session_raises_before_any_request(transport, kwargs, match):
    if "workspace" in kwargs:
        refused(transport, lambda: Agent(transport).session(kwargs["workspace"]), match)
    else:
        refused(transport, lambda: Agent(transport).session("/w", **kwargs), match)


@pytest.mark.parametrize("qc,match", [
    (SessionQueueConfig(lane_handlers={"bogus": {"mode": "external"}}),
     "^unknown lane 'bogus' in lane_handlers: expected one of control, query, execute, generate$"),
    (SessionQueueConfig(lane_handlers={"execute": {"mode": "remote"}}),
     "^lane 'execute': mode must be one of internal, external, hybrid$"),
    (SessionQueueConfig(lane_handlers={"execute": {"mode": "external", "timeout_ms": 0}}),
     "^lane 'execute': timeout_ms must be a positive integer, got 0$"),
    (SessionQueueConfig(concurrency={"bogus": 2}),
     "^unknown lane 'bogus' in concurrency: expected one of control, query, execute, generate$"),
    (SessionQueueConfig(concurrency={"execute": 0}), "^concurrency of 'execute' must be a positive integer, got 0$"),
], ids=["lane", "mode", "timeout", "concurrency-lane", "concurrency-value"])
def test_given_a_bad_queue_config_then_agent_session_raises_before_any_request(transport, qc, match):
    refused(transport, lambda: Agent(transport).session("/w", queue_config=qc), match)


def test_given_session_options_then_they_are_what_the_request_carries(transport):
    qc = SessionQueueConfig(lane_handlers={"execute": {"mode": "external", "timeout_ms": 5000}},
                            concurrency={"query": 8})
    Agent(transport, default_model="scripted").session("/w", SessionOptions(permissive=True, queue_config=qc,
                                                                            max_parallel_tasks=4))
    [(_, _, body)] = transport.calls
    assert body["permissive"] is True and body["max_parallel_tasks"] == 4 and body["model"] == "scripted"
    assert body["queue_config"]["lane_handlers"] == {"execute": {"mode": "external", "timeout_ms": 5000}}
    assert body["queue_config"]["concurrency"] == {"query": 8}


# -- Agent.create and its HCL ---------------------------------------------------------------------
@pytest.mark.parametrize("config", [None, "", "   \n ", 5, b'endpoint = "https://x"'])
def test_given_no_config_text_then_agent_create_raises_value_error(config):
    with pytest.raises(ValueError, match="^Agent.create needs HCL text or the path of a config file$"):
        Agent.create(config)


@pytest.mark.parametrize("config", ['endpoint = "https://a.example" {', "endpoint = ", 'endpoint = {"x"'])
def test_given_invalid_hcl_then_agent_create_raises_value_error(config):
    with pytest.raises(ValueError, match="HCL"):
        Agent.create(config)


def test_given_a_path_that_does_not_exist_then_agent_create_raises_value_error(tmp_path):
    with pytest.raises(ValueError, match="agent.acl"):
        Agent.create(str(tmp_path / "agent.acl"))


@pytest.mark.parametrize("endpoint", ["ftp://a.example", "a.example", "127.0.0.1:8787"])
def test_given_an_endpoint_that_is_not_an_http_url_then_agent_create_raises_value_error(endpoint):
    with pytest.raises(ValueError, match="endpoint"):
        Agent.create(f'endpoint = "{endpoint}"\n')


HCL = '''
# agent.acl
endpoint      = "https://api.example.com/prod"
api_key       = env("A3S_TEST_KEY")
default_model = "openai/gpt-4o-mini"
'''


def test_given_hcl_text_then_endpoint_api_key_from_env_and_default_model_are_read(monkeypatch):
    monkeypatch.setenv("A3S_TEST_KEY", "k-from-env")
    cfg = load_config(HCL)
    assert (cfg.endpoint, cfg.api_key, cfg.default_model) == \
        ("https://api.example.com/prod", "k-from-env", "openai/gpt-4o-mini")


def test_given_a_config_file_path_then_it_is_read_like_the_text(monkeypatch, tmp_path):
    monkeypatch.setenv("A3S_TEST_KEY", "k-file")
    path = tmp_path / "agent.acl"
    path.write_text(HCL)
    cfg = load_config(str(path))
    assert (cfg.endpoint, cfg.api_key, cfg.default_model) == \
        ("https://api.example.com/prod", "k-file", "openai/gpt-4o-mini")


def test_given_an_env_call_to_an_unset_variable_then_the_key_falls_back_to_a3s_api_key(monkeypatch):
    monkeypatch.delenv("A3S_TEST_KEY", raising=False)
    monkeypatch.setenv("A3S_API_KEY", "k-fallback")
    assert load_config(HCL).api_key == "k-fallback"
    monkeypatch.delenv("A3S_API_KEY")
    assert load_config(HCL).api_key is None


def test_given_a_literal_api_key_and_no_endpoint_then_the_endpoint_defaults_to_local(monkeypatch):
    monkeypatch.delenv("A3S_ENDPOINT", raising=False)
    cfg = load_config('api_key = "literal-key"\n')
    assert (cfg.endpoint, cfg.api_key, cfg.default_model) == ("local", "literal-key", None)


def test_given_a_config_when_agent_create_runs_then_it_connects_with_what_the_file_says(monkeypatch, tmp_path):
    monkeypatch.setenv("A3S_TEST_KEY", "k-create")
    seen: dict = {}

    def connect(cls, endpoint, api_key=None, default_model=None):
        seen.update(endpoint=endpoint, api_key=api_key, default_model=default_model)
        return Agent(RecordingTransport(), default_model)

    monkeypatch.setattr(Agent, "connect", classmethod(connect))
    path = tmp_path / "agent.acl"
    path.write_text(HCL)
    for source in (HCL, str(path)):
        seen.clear()
        assert isinstance(Agent.create(source), Agent)
        assert seen == {"endpoint": "https://api.example.com/prod", "api_key": "k-create",
                        "default_model": "openai/gpt-4o-mini"}


@pytest.mark.parametrize("result", [{"when": object()}, {"n": float("nan")}, {"s": {1, 2}}],
                         ids=["object", "nan", "set"])
def test_given_a_result_that_is_not_json_when_completing_then_value_error_before_any_request(result):
    from a3s_serverless.session import Session

    class NoRequests:
        def request(self, *args, **kwargs):
            raise AssertionError("no request may be made")

    session = Session(NoRequests(), {"session_id": "s", "workspace": ".", "has_queue": False, "lanes": {}})
    with pytest.raises(ValueError, match="result must be JSON-serialisable"):
        session.complete_external_task("t", success=True, result=result)


def test_given_an_unknown_on_timeout_when_setting_a_lane_handler_then_value_error_before_any_request():
    from a3s_serverless.session import Session

    class NoRequests:
        def request(self, *args, **kwargs):
            raise AssertionError("no request may be made")

    session = Session(NoRequests(), {"session_id": "s", "workspace": ".", "has_queue": False, "lanes": {}})
    with pytest.raises(ValueError, match="on_timeout must be 'error' or 'internal', got 'retry'"):
        session.set_lane_handler("execute", "external", 1000, on_timeout="retry")
