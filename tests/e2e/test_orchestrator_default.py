"""AgentOrchestrator() with no arguments, as the seeds write it, controls the default agent's runs:
the deployment named by A3S_ENDPOINT (with A3S_API_KEY), else the embedded stack."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from a3s_serverless import AgentOrchestrator, RunFailed


@pytest.fixture
def fake_deployment():
    """An HTTP endpoint that answers GET /runs and records who asked."""
    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            seen.append((self.path, self.headers.get("Authorization")))
            body = json.dumps({"runs": [{"run_id": "run-remote", "status": "running"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_given_a3s_endpoint_when_orchestrator_is_made_without_arguments_then_it_talks_to_that_deployment(
        fake_deployment, monkeypatch):
    url, seen = fake_deployment
    monkeypatch.setenv("A3S_ENDPOINT", url)
    monkeypatch.setenv("A3S_API_KEY", "k-orch")
    assert AgentOrchestrator().list() == [{"run_id": "run-remote", "status": "running"}]
    assert seen == [("/runs", "Bearer k-orch")]


@pytest.mark.parametrize("endpoint", [None, "local"])
def test_given_no_endpoint_when_orchestrator_is_made_without_arguments_then_it_controls_the_embedded_stacks_runs(
        waiting, monkeypatch, endpoint):
    if endpoint is None:
        monkeypatch.delenv("A3S_ENDPOINT", raising=False)
    else:
        monkeypatch.setenv("A3S_ENDPOINT", endpoint)
    session, handle, task_id = waiting
    orchestrator = AgentOrchestrator()
    assert handle.run_id in [r["run_id"] for r in orchestrator.list(session.session_id)]
    orchestrator.cancel_agent(handle.run_id)
    with pytest.raises(RunFailed):
        handle.wait(timeout=30)
    assert handle.status() == "cancelled"


@pytest.mark.parametrize("bad", ["http://127.0.0.1:1", 5])
def test_given_something_that_is_not_a_transport_then_value_error(bad):
    with pytest.raises(ValueError, match="transport"):
        AgentOrchestrator(bad)
