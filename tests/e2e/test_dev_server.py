"""The same flows against `make dev`: the stack, the client and the worker are separate processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from a3s_serverless import Agent


@pytest.fixture
def dev_server(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "a3s_local.server", "--port", "0",
                             "--workspace-root", str(tmp_path / "wsroot")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        info = json.loads(proc.stdout.readline())  # the server's first line names its endpoint
        yield info
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def start_worker(endpoint: str, api_key: str, workspace, lane: str = "execute") -> subprocess.Popen:
    env = {**os.environ, "A3S_API_KEY": api_key}
    return subprocess.Popen([sys.executable, "-m", "a3s_serverless.worker", "--endpoint", endpoint, "--lane", lane,
                             "--workspace", str(workspace), "--max-tasks", "2"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_given_a_worker_process_when_the_agent_runs_bash_then_the_worker_does_it_and_the_agent_sees_the_output(
        dev_server, tmp_path):
    workspace = tmp_path / "repo"
    workspace.mkdir()
    agent = Agent.connect(dev_server["endpoint"], api_key=dev_server["api_key"])
    session = agent.session(str(workspace))
    session.set_lane_handler("execute", "external", 60000)
    worker = start_worker(dev_server["endpoint"], dev_server["api_key"], workspace)
    try:
        result = session.send('build\n/tool bash {"command": "echo built > out.txt && echo done"}\n'
                              '/tool write {"file_path": "notes.md", "content": "by the worker"}')
        assert worker.wait(timeout=60) == 0
    finally:
        worker.kill()
    assert result.text.splitlines() == ["echo: build", "bash -> done", "write -> wrote 13 bytes to notes.md"]
    assert (workspace / "out.txt").read_text() == "built\n"
    assert (workspace / "notes.md").read_text() == "by the worker"
    assert session.pending_external_tasks() == []


def test_given_the_dev_server_when_the_key_is_wrong_then_requests_are_refused(dev_server):
    from a3s_serverless.errors import AuthError

    agent = Agent.connect(dev_server["endpoint"], api_key="not-a-key")
    with pytest.raises(AuthError):
        agent.session("/tmp")


# -- events over WebSocket ------------------------------------------------------------------------
def test_given_the_dev_server_then_its_websocket_api_pushes_a_runs_events_in_order_and_within_200_ms(
        dev_server, tmp_path):
    import time

    from websockets.sync.client import connect

    from a3s_serverless.transport import HttpTransport

    workspace = tmp_path / "repo"
    workspace.mkdir()
    http = HttpTransport(dev_server["endpoint"], dev_server["api_key"])
    assert http.request("GET", "/health")["websocket_url"] == dev_server["websocket_url"]
    session = Agent.connect(dev_server["endpoint"], api_key=dev_server["api_key"]).session(str(workspace))
    session.set_lane_handler("execute", "external", 60000)
    handle = session.send_async('build\n/tool bash {"command": "make"}\n/tool ls {"path": "."}')
    task_id = None
    after = 0
    while task_id is None:  # the run waits on its task: the driver takes it again only once told
        page = http.request("GET", f"/runs/{handle.run_id}/events", query={"after": after, "wait_ms": 5000})
        after = page["next"]
        task_id = next((e["task_id"] for e in page["events"] if e["type"] == "external_task_pending"), None)
    arrivals: list[tuple[float, dict]] = []
    with connect(dev_server["websocket_url"], additional_headers={"Authorization": f"Bearer {dev_server['api_key']}"},
                 proxy=None) as ws:
        ws.send(json.dumps({"action": "subscribe", "run_id": handle.run_id, "after": 0}))
        while (frame := json.loads(ws.recv(10)))["type"] != "subscribed":
            arrivals.extend((0.0, e) for e in frame.get("events", []))
        session.complete_external_task(task_id, result={"output": "built"})
        while not any(e["type"] == "run_end" for _, e in arrivals):
            frame = json.loads(ws.recv(20))
            arrivals.extend((time.time() * 1000, e) for e in frame.get("events", []))
    got = [e for _, e in arrivals]
    assert [e["seq"] for e in got] == list(range(1, len(got) + 1))
    assert got == list(handle.events())  # what the SDK follows (pushed too) is what was pushed here
    pushed = {e["seq"]: round(at - e["ts"]) for at, e in arrivals if at}
    print("ms from event to arrival, by seq:", pushed)
    assert len(pushed) >= 4 and max(pushed.values()) <= 200, pushed  # event made -> here, so commit -> here too


def test_given_the_dev_server_when_the_key_is_wrong_then_the_websocket_refuses_and_a_browsers_key_works(dev_server):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with pytest.raises(InvalidStatus) as refused:
        connect(dev_server["websocket_url"], additional_headers={"Authorization": "Bearer not-a-key"}, proxy=None)
    assert refused.value.response.status_code == 403
    with connect(f"{dev_server['websocket_url']}?key={dev_server['api_key']}", proxy=None) as ws:
        ws.send(json.dumps({"action": "subscribe", "lane": "execute"}))
        assert json.loads(ws.recv(10)) == {"type": "subscribed", "lane": "execute", "pending": 0}


def test_given_a_websocket_url_that_refuses_then_the_sdk_polls_the_dev_server_instead(dev_server, tmp_path):
    from a3s_serverless.session import Session
    from a3s_serverless.transport import HttpTransport

    transport = HttpTransport(dev_server["endpoint"], dev_server["api_key"], ws_url="ws://127.0.0.1:9")
    agent = Agent.connect(dev_server["endpoint"], api_key=dev_server["api_key"])
    view = agent.session(str(tmp_path)).session_id
    session = Session(transport, transport.request("GET", f"/sessions/{view}"))
    result = session.send("hello")
    assert result.status == "succeeded"
    assert [e["type"] for e in session.stream("again")][-1] == "run_end"
