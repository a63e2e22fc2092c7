"""The whole agent loop (SDK -> API -> run_driver -> tools) driven by a model that speaks the
OpenAI chat-completions protocol, served by a fake on 127.0.0.1."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

TURN_USAGE = [{"prompt_tokens": 210, "completion_tokens": 18}, {"prompt_tokens": 260, "completion_tokens": 11}]


class ScriptedOpenAI:
    """Turn 1: call `read notes.txt`. Turn 2 (the tool result is in the request): quote it."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.authorization: list[str | None] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                fake.authorization.append(self.headers.get("Authorization"))
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
    assert openai_server.authorization == [None, None]  # this stack has no key: none is sent
    assert result.total_tokens == result.prompt_tokens + result.completion_tokens
    first, second = openai_server.requests
    assert first["model"] == "fake-model" and {t["function"]["name"] for t in first["tools"]} >= {"read"}
    assert first["messages"][-1] == {"role": "user", "content": "what do the notes say?"}
    assert second["messages"][-2]["tool_calls"][0]["id"] == "call_read_1"
    assert second["messages"][-1]["role"] == "tool" and second["messages"][-1]["tool_call_id"] == "call_read_1"


# A stack of its own, in a process of its own: the shared one is deployed without a key, and the
# embedded stack (moto, the runtime) is process-wide.
WITH_KEY = textwrap.dedent("""
    import json, sys
    from a3s_serverless import Agent
    from a3s_local.embedded import EmbeddedStack

    stack = EmbeddedStack(parameters={"OpenAIApiKey": "sk-from-the-secret"}, workspace_root=sys.argv[2]).start()
    try:
        session = Agent(stack.transport(), local=True).session(sys.argv[1], model="openai/fake-model")
        text = session.send("what do the notes say?").text
        envs = {fid: f.environment for fid, f in stack.model.functions.items()}
        print(json.dumps({"text": text, "envs": envs}))
    finally:
        stack.stop()
""")


def test_given_the_openai_api_key_parameter_when_the_driver_calls_the_model_then_the_key_comes_from_the_secret(
        workspace, openai_server, tmp_path):
    (workspace / "notes.txt").write_text("water the plants\n")

    proc = subprocess.run([sys.executable, "-c", WITH_KEY, str(workspace), str(tmp_path / "wsroot")],
                          capture_output=True, text=True, timeout=120)

    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "water the plants" in out["text"]
    assert openai_server.authorization == ["Bearer sk-from-the-secret"] * 2
    assert "sk-from-the-secret" not in json.dumps(out["envs"])
    assert out["envs"]["RunDriverFunction"]["OPENAI_API_KEY_SECRET_ARN"].startswith("arn:aws:secretsmanager:")
