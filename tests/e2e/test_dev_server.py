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
