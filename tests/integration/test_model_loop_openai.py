"""The whole agent loop (SDK -> API -> run_driver -> tools) driven by a model that speaks the
OpenAI chat-completions protocol, served by a fake on 127.0.0.1."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

TURN_USAGE = [{"prompt_tokens": 210, "completion_tokens": 18}, {"prompt_tokens": 260, "completion_tokens": 11}]


class ScriptedOpenAI:
    """Turn 1: call `read notes.txt`. Turn 2 (the tool result is in the request): quote it."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                data = json.dumps(fake.answer(body["messages"])).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @staticmethod
    def answer(messages: list[dict]) -> dict:
        results = [m for m in messages if m["role"] == "tool"]
        if not results:
            message = {"role": "assistant", "content": None, "tool_calls": [{
                "id": "call_read_1", "type": "function",
                "function": {"name": "read", "arguments": json.dumps({"file_path": "notes.txt"})}}]}
            usage = TURN_USAGE[0]
        else:
            message = {"role": "assistant", "content": f"the notes say: {results[-1]['content']}"}
            usage = TURN_USAGE[1]
        return {"id": "chatcmpl-x", "object": "chat.completion", "model": "fake-model",
                "choices": [{"index": 0, "message": message,
                             "finish_reason": "tool_calls" if "tool_calls" in message else "stop"}],
                "usage": {**usage, "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]}}


@pytest.fixture
def openai_server(monkeypatch):
    fake = ScriptedOpenAI()
    fake.thread.start()
    # The embedded stack runs the handlers in this process, so the adapter sees this at call time.
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
    fake.thread.join(5)


def test_given_an_openai_compatible_model_when_sending_then_the_loop_reads_the_file_and_answers(
        agent, workspace, openai_server):
    (workspace / "notes.txt").write_text("buy oat milk; call the plumber\n")
    session = agent.session(str(workspace), model="openai/fake-model")

    result = session.send("what do the notes say?")

    assert "buy oat milk; call the plumber" in result.text
    assert result.text.startswith("the notes say: ")
    assert result.tool_calls_count == 1
    assert result.prompt_tokens == sum(u["prompt_tokens"] for u in TURN_USAGE)
    assert result.completion_tokens == sum(u["completion_tokens"] for u in TURN_USAGE)
    assert result.total_tokens == result.prompt_tokens + result.completion_tokens
    first, second = openai_server.requests
    assert first["model"] == "fake-model" and {t["function"]["name"] for t in first["tools"]} >= {"read"}
    assert first["messages"][-1] == {"role": "user", "content": "what do the notes say?"}
    assert second["messages"][-2]["tool_calls"][0]["id"] == "call_read_1"
    assert second["messages"][-1]["role"] == "tool" and second["messages"][-1]["tool_call_id"] == "call_read_1"
