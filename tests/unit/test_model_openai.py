"""The OpenAI-compatible adapter against a real chat-completions server on 127.0.0.1: request
mapping, response mapping, retries and errors."""
from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from a3s_core.llm.base import ModelError, ToolCall, Usage
from a3s_core.llm.openai import OpenAIModel
from a3s_core.llm.registry import get_model

READ_TOOL = {"name": "read", "description": "Read a file",
             "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}},
                              "required": ["file_path"]}}


def completion(content: str | None = None, tool_calls: list[dict] | None = None,
               usage: dict | None = None) -> dict:
    message: dict = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    body: dict = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-mini",
                  "choices": [{"index": 0, "message": message,
                               "finish_reason": "tool_calls" if tool_calls else "stop"}]}
    if usage is not None:
        body["usage"] = usage
    return body


class FakeOpenAI:
    """Answers each POST with the next queued (status, body, headers) and records the requests."""

    def __init__(self) -> None:
        self.replies: list[tuple[int, dict | str, dict]] = []
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status, payload, headers = fake.replies.pop(0)
                data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def reply(self, body: dict | str, status: int = 200, headers: dict | None = None) -> None:
        self.replies.append((status, body, headers or {}))


@pytest.fixture
def server():
    fake = FakeOpenAI()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
    fake.thread.join(5)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def model(server, sleeps) -> OpenAIModel:
    return OpenAIModel("gpt-4o-mini", base_url=server.url, api_key="sk-test", timeout_s=5, sleep=sleeps.append)


def test_given_a_tool_round_trip_when_completing_then_the_request_body_and_auth_are_mapped(server, model):
    server.reply(completion("done", usage={"prompt_tokens": 30, "completion_tokens": 2, "total_tokens": 32}))
    messages = [
        {"role": "user", "content": "read a.txt"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "name": "read", "arguments": {"file_path": "a.txt"}}]},
        {"role": "tool", "tool_call_id": "call_1", "name": "read", "content": "alpha", "is_error": False},
        {"role": "assistant", "content": "a.txt says alpha", "tool_calls": []},
        {"role": "user", "content": "thanks"},
    ]

    resp = model.complete(messages, [READ_TOOL], "You are terse.", output_schema={"type": "object"})

    (req,) = server.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == "Bearer sk-test"
    assert req["headers"]["Content-Type"] == "application/json"
    assert req["body"] == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "read a.txt"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "read", "arguments": json.dumps({"file_path": "a.txt"})}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "alpha"},
            {"role": "assistant", "content": "a.txt says alpha"},
            {"role": "user", "content": "thanks"},
        ],
        "tools": [{"type": "function", "function": {
            "name": "read", "description": "Read a file", "parameters": READ_TOOL["input_schema"]}}],
    }
    assert (resp.text, resp.tool_calls, resp.usage, resp.stop_reason) == ("done", [], Usage(30, 2), "end_turn")


def test_given_a_tool_call_reply_when_completing_then_calls_are_decoded(server, model):
    server.reply(completion(None, [
        {"id": "call_a", "type": "function", "function": {"name": "read", "arguments": '{"file_path": "a.txt"}'}},
        {"id": "call_b", "type": "function", "function": {"name": "ls", "arguments": ""}}],
        usage={"prompt_tokens": 40, "completion_tokens": 9, "total_tokens": 49}))

    resp = model.complete([{"role": "user", "content": "look"}], [READ_TOOL])

    assert resp.text == ""
    assert resp.tool_calls == [ToolCall("call_a", "read", {"file_path": "a.txt"}), ToolCall("call_b", "ls", {})]
    assert resp.usage == Usage(40, 9) and resp.stop_reason == "tool_use"


def test_given_no_usage_and_no_tools_when_completing_then_usage_is_zero_and_tools_are_omitted(server, model):
    server.reply(completion("hi"))

    resp = model.complete([{"role": "user", "content": "hello"}], [])

    assert "tools" not in server.requests[0]["body"]
    assert resp.usage == Usage(0, 0) and resp.text == "hi"


def test_given_invalid_tool_arguments_when_completing_then_model_error_names_the_tool(server, model):
    server.reply(completion(None, [{"id": "c", "type": "function",
                                    "function": {"name": "write", "arguments": '{"file_path": '}}]))

    with pytest.raises(ModelError, match="invalid JSON arguments for tool 'write'"):
        model.complete([{"role": "user", "content": "x"}], [])


def test_given_429_then_200_when_completing_then_it_retries_after_the_servers_retry_after(server, model, sleeps):
    server.reply({"error": {"message": "Rate limit reached", "type": "requests"}}, 429, {"Retry-After": "3"})
    server.reply(completion("ok", usage={"prompt_tokens": 1, "completion_tokens": 1}))

    assert model.complete([{"role": "user", "content": "x"}], []).text == "ok"
    assert sleeps == [3.0] and len(server.requests) == 2


def test_given_5xx_every_time_when_completing_then_it_retries_three_times_with_backoff_then_fails(
        server, model, sleeps):
    for _ in range(4):
        server.reply({"error": {"message": "upstream overloaded"}}, 503)

    with pytest.raises(ModelError, match="openai HTTP 503: upstream overloaded"):
        model.complete([{"role": "user", "content": "x"}], [])
    assert sleeps == [1.0, 2.0, 4.0] and len(server.requests) == 4


def test_given_long_retry_after_when_retrying_then_total_sleep_is_capped_at_20_s(server, model, sleeps):
    server.reply({"error": {"message": "slow down"}}, 429, {"Retry-After": "15"})
    server.reply({"error": {"message": "slow down"}}, 429, {"Retry-After": "15"})
    server.reply({"error": {"message": "slow down"}}, 429, {"Retry-After": "15"})

    with pytest.raises(ModelError, match="openai HTTP 429: slow down"):
        model.complete([{"role": "user", "content": "x"}], [])
    assert sleeps == [15.0, 5.0] and len(server.requests) == 3


def test_given_a_400_when_completing_then_model_error_carries_status_and_servers_message(server, model, sleeps):
    server.reply({"error": {"message": "Invalid value for 'model': 'nope'", "type": "invalid_request_error"}}, 400)

    with pytest.raises(ModelError, match=r"openai HTTP 400: Invalid value for 'model': 'nope'"):
        model.complete([{"role": "user", "content": "x"}], [])
    assert sleeps == [] and len(server.requests) == 1  # the caller's mistake is not retried


def test_given_a_non_json_error_body_when_completing_then_the_body_is_the_message(server, model):
    server.reply("model not loaded", 404)

    with pytest.raises(ModelError, match="openai HTTP 404: model not loaded"):
        model.complete([{"role": "user", "content": "x"}], [])


def test_given_no_server_listening_when_completing_then_connection_refused_is_a_model_error(sleeps):
    with socket.socket() as s:  # a port that was free a moment ago and has no listener
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model = OpenAIModel("m", base_url=f"http://127.0.0.1:{port}/v1", timeout_s=5, sleep=sleeps.append)

    with pytest.raises(ModelError, match="openai connection error .*refused"):
        model.complete([{"role": "user", "content": "x"}], [])


def test_given_a_silent_server_when_the_timeout_passes_then_model_error_says_timed_out():
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        with pytest.raises(ModelError, match="timed out after 0.2 s"):
            OpenAIModel("m", base_url=url, timeout_s=0.2).complete([{"role": "user", "content": "x"}], [])


def test_given_env_config_when_constructed_then_base_url_and_key_come_from_env_at_construction(monkeypatch, server):
    monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    keyless = get_model("openai/llama3.2")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    keyed = OpenAIModel("gpt-4o-mini")
    server.reply(completion("a"))
    server.reply(completion("b"))

    keyless.complete([{"role": "user", "content": "x"}], [])
    keyed.complete([{"role": "user", "content": "x"}], [])

    assert isinstance(keyless, OpenAIModel) and keyless.model == "llama3.2" and keyless.base_url == server.url
    assert "Authorization" not in server.requests[0]["headers"]  # Ollama needs no key
    assert server.requests[1]["headers"]["Authorization"] == "Bearer sk-env"


def test_given_no_env_when_constructed_then_the_openai_endpoint_is_the_default(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert OpenAIModel("gpt-4o-mini").base_url == "https://api.openai.com/v1"


@pytest.mark.parametrize("name", ["openai", "openai/"])
def test_given_openai_without_a_model_when_getting_a_model_then_value_error_explains(name):
    with pytest.raises(ValueError, match="needs a model id: use 'openai/<model-id>'"):
        get_model(name)


def test_given_an_unknown_provider_when_getting_a_model_then_value_error_still_names_it():
    with pytest.raises(ValueError, match="unknown model 'anthropic/claude'"):
        get_model("anthropic/claude")


@pytest.mark.parametrize("reply", [
    {"choices": [{"message": None}]},
    {"choices": [{"index": 0}]},
    {"choices": [None]},
    {"choices": "no"},
    {"choices": [{"message": "hello"}]},
    {"choices": [{"message": {"content": 42}}]},
    {"choices": [{"message": {"content": None, "tool_calls": [None]}}]},
    {"choices": [{"message": {"tool_calls": {"id": "c"}}}]},
    {"choices": [{"message": {"tool_calls": [{"id": "c", "function": None}]}}]},
    {"choices": [{"message": {"tool_calls": [{"id": "c", "function": {"arguments": "{}"}}]}}]},
    [],
])
def test_given_a_reply_with_null_or_malformed_fields_when_parsed_then_model_error(reply):
    from a3s_core.llm.openai import from_openai_response

    with pytest.raises(ModelError, match="^openai: "):
        from_openai_response(reply)


def test_given_usage_that_is_not_a_number_when_parsed_then_it_counts_as_zero():
    from a3s_core.llm.openai import from_openai_response

    reply = {"choices": [{"message": {"content": "hi"}}], "usage": {"prompt_tokens": "many", "completion_tokens": None}}

    assert from_openai_response(reply).usage == Usage(0, 0)
