"""The `a3s` command line against the embedded stack, over real HTTP: `main(argv)` in this process
for most commands (its stdout and stderr captured), the installed `a3s` script as a subprocess
where a separate process matters (streaming, Ctrl-C, the progress bar, `a3s dev`)."""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from a3s_local.embedded import LOCAL_API_KEY as LOCAL_KEY
from a3s_local.server import make_server
from a3s_serverless import Agent
from a3s_serverless.cli import main

A3S = str(Path(sys.executable).with_name("a3s"))  # the console script of this environment


@pytest.fixture(scope="module")
def endpoint(stack):
    """The shared stack behind a real HTTP server on a free loopback port."""
    server = make_server(stack, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@dataclass
class Out:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


@pytest.fixture
def a3s(endpoint, capsys, monkeypatch):
    """Run `a3s ARGV` in this process against the stack; the endpoint and key as flags unless given."""
    for name in ("A3S_ENDPOINT", "A3S_API_KEY", "A3S_TABLE"):
        monkeypatch.delenv(name, raising=False)

    def run(*argv: str, key: str | None = LOCAL_KEY, url: str | None = "default") -> Out:
        capsys.readouterr()
        flags = (["--endpoint", endpoint if url == "default" else url] if url else []) + \
                (["--api-key", key] if key else [])
        code = main([*argv, *flags])
        got = capsys.readouterr()
        return Out(code, got.out, got.err)

    return run


def env_for(endpoint: str) -> dict[str, str]:
    return {**os.environ, "A3S_ENDPOINT": endpoint, "A3S_API_KEY": LOCAL_KEY, "PYTHONUNBUFFERED": "1"}


def wait_until(check, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout} s")


@pytest.fixture
def external(agent, workspace):
    """A permissive session whose execute lane waits for an outside worker."""
    session = agent.session(str(workspace), permissive=True)
    session.set_lane_handler("execute", "external", 60000)
    yield session
    session.close()


def _pending(events, external, handle) -> dict:
    events.wait_for(handle.run_id, "external_task_pending")
    [task] = external.pending_external_tasks()
    return task


# -- runs ----------------------------------------------------------------------------------------
def test_given_finished_runs_when_listed_and_shown_then_tables_and_json_carry_the_api_state(a3s, session, api):
    result = session.send("hello there")
    other = session.send("again")

    table = a3s("runs", "list", "--session", session.session_id)
    assert table.code == 0 and table.err == ""
    header, *rows = table.out.splitlines()
    assert header.split()[:4] == ["RUN", "SESSION", "STATUS", "TURNS"]
    assert [r.split()[:3] for r in rows] == [[result.run_id, session.session_id, "succeeded"],
                                            [other.run_id, session.session_id, "succeeded"]]
    listed = a3s("runs", "list", "--session", session.session_id, "--json")
    assert listed.code == 0 and listed.json() == api.call("GET", "/runs", query={"session_id": session.session_id})[1]

    shown = a3s("runs", "show", result.run_id)
    assert shown.code == 0
    assert "status      succeeded (end_turn)" in shown.out and shown.out.rstrip().endswith("echo: hello there")
    as_json = a3s("--json", "runs", "show", result.run_id)  # --json before the command works too
    assert as_json.json() == api.call("GET", f"/runs/{result.run_id}")[1]


def test_given_a_run_when_its_events_are_read_then_each_is_printed_once_in_order(a3s, session, events):
    run_id = session.send('hi\n/tool read {"file_path": "nothing.txt"}').run_id
    recorded = events.all(run_id)

    lines = a3s("runs", "events", run_id).out.splitlines()
    assert [(int(line.split()[0]), line.split()[2]) for line in lines] == [(e["seq"], e["type"]) for e in recorded]
    assert a3s("runs", "events", run_id, "--json").out.splitlines() == \
        [json.dumps(e, ensure_ascii=False, separators=(",", ":")) for e in recorded]


def test_given_a_running_run_when_followed_by_the_installed_script_then_every_event_arrives_in_order_until_it_ends(
        endpoint, external, events):
    handle = external.send_async('go\n/tool bash {"command": "make"}')
    follow = subprocess.Popen([A3S, "runs", "events", handle.run_id, "--follow", "--json"], env=env_for(endpoint),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        streamed = []
        while not streamed or streamed[-1]["type"] != "external_task_pending":  # the run is waiting on us
            line = follow.stdout.readline()
            assert line, follow.stderr.read()
            streamed.append(json.loads(line))
        [task] = external.pending_external_tasks()
        assert external.complete_external_task(task["task_id"], result={"output": "built"})
        rest, err = follow.communicate(timeout=60)
    finally:
        follow.kill()
    streamed += [json.loads(line) for line in rest.splitlines()]
    assert follow.returncode == 0 and err == ""
    assert streamed == events.all(handle.run_id)  # each once, in order, to the end
    assert streamed[-1]["type"] == "run_end" and streamed[-1]["status"] == "succeeded"


def test_given_a_follow_when_interrupted_then_it_exits_130_quietly(endpoint, external, events):
    handle = external.send_async('go\n/tool bash {"command": "make"}')
    task = _pending(events, external, handle)
    follow = subprocess.Popen([A3S, "runs", "events", handle.run_id, "--follow"], env=env_for(endpoint),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "run_start" in follow.stdout.readline()  # it is running and long-polling
        follow.send_signal(signal.SIGINT)
        _, err = follow.communicate(timeout=30)
    finally:
        follow.kill()
        external.complete_external_task(task["task_id"], result={"output": "x"})
    assert follow.returncode == 130 and err == ""


def test_given_a_waiting_run_when_paused_resumed_injected_and_cancelled_then_each_is_applied(a3s, external, events, api):
    handle = external.send_async('go\n/tool bash {"command": "make"}')
    task = _pending(events, external, handle)

    assert a3s("runs", "pause", handle.run_id).out.startswith(f"pause {handle.run_id}: accepted")
    wait_until(lambda: a3s("runs", "show", handle.run_id, "--json").json()["status"] == "paused", what="paused")
    resumed = a3s("runs", "resume", handle.run_id, "--json")
    assert resumed.code == 0 and resumed.json()["action"] == "resume" and resumed.json()["accepted"] is True
    assert a3s("runs", "inject", handle.run_id, "also say goodbye").code == 0
    assert external.complete_external_task(task["task_id"], result={"output": "built"})
    assert handle.wait(timeout=30).text == "echo: also say goodbye"  # the model saw the injected prompt

    second = external.send_async('again\n/tool bash {"command": "make"}')
    task = _pending(events, external, second)
    cancelled = a3s("runs", "cancel", second.run_id)
    assert cancelled.code == 0 and "accepted" in cancelled.out
    wait_until(lambda: api.call("GET", f"/runs/{second.run_id}")[1]["status"] == "cancelled", what="cancelled")
    refused = a3s("runs", "resume", second.run_id)
    assert refused.code == 1 and refused.out == "" and "(HTTP 409)" in refused.err


# -- workflows -----------------------------------------------------------------------------------
SPECS = [{"task_id": "alpha", "agent": "general", "prompt": "first"},
         {"task_id": "beta", "agent": "general", "prompt": "second"},
         {"task_id": "gamma", "agent": "general", "prompt": "third\n/fail the tests broke"}]


def test_given_a_finished_parallel_workflow_when_shown_then_one_timeline_row_per_step(a3s, api, session):
    status, started = api.call("POST", f"/sessions/{session.session_id}/workflows", {"kind": "parallel", "specs": SPECS})
    assert status == 202, started
    wf = started["workflow_id"]
    api.wait_workflow(wf)

    shown = a3s("workflows", "show", wf)
    assert shown.code == 0 and shown.err == ""  # finished: no progress bar
    lines = shown.out.splitlines()
    rows = {line.split()[0]: line for line in lines if line.split() and line.split()[0] in ("alpha", "beta", "gamma")}
    assert list(rows) == ["alpha", "beta", "gamma"]  # input order, one row each
    for key, row in rows.items():
        status_word = "failed" if key == "gamma" else "succeeded"
        assert row.split()[1] == status_word, row
        bar = row[row.index("|") + 1:row.rindex("|")]
        assert bar.strip() and set(bar.strip()) <= set("█▓#x"), row  # a bar for a step that ran
        assert row.rstrip().endswith(("ms", " s")), row  # its duration
    assert "gamma: " in shown.out and "the tests broke" in shown.out  # the failed step's error

    as_json = a3s("workflows", "show", wf, "--json").json()
    assert as_json["workflow"]["status"] == "failed" and as_json["workflow"]["done"] is True
    assert [(s["index"], s["status"]) for s in as_json["steps"]] == [(0, "succeeded"), (1, "succeeded"), (2, "failed")]
    assert as_json["steps"] == api.call("GET", f"/workflows/{wf}/steps")[1]["steps"]

    listed = a3s("workflows", "list", "--session", session.session_id)
    [row] = listed.out.splitlines()[1:]
    assert row.split()[:5] == [wf, session.session_id, "parallel", "failed", "3/3"]
    assert a3s("workflows", "list", "--session", session.session_id, "--json").json() == \
        api.call("GET", "/workflows", query={"session_id": session.session_id, "limit": 50})[1]


def test_given_a_running_workflow_when_watched_then_a_progress_bar_runs_until_it_ends_then_the_timeline(
        endpoint, external, api):
    """Its steps wait on external tasks, so it is running when `show` starts and ends only when we say."""
    specs = [{"task_id": key, "agent": "general", "prompt": f'{key}\n/tool bash {{"command": "make {key}"}}'}
             for key in ("one", "two")]
    status, started = api.call("POST", f"/sessions/{external.session_id}/workflows",
                               {"kind": "parallel", "specs": specs})
    assert status == 202, started
    watch = subprocess.Popen([A3S, "workflows", "show", started["workflow_id"]], env=env_for(endpoint),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        seen = b""
        while b"0/2" not in seen:  # tqdm draws the bar at 0 of 2 before the first long-poll
            chunk = os.read(watch.stderr.fileno(), 4096)
            assert chunk, f"no progress bar; stdout: {watch.stdout.read()!r}"
            seen += chunk
        tasks = wait_until(lambda: len(external.pending_external_tasks()) == 2 and external.pending_external_tasks(),
                           what="both steps waiting")
        for task in tasks:
            assert external.complete_external_task(task["task_id"], result={"output": "ok"})
        out, err = watch.communicate(timeout=60)
    finally:
        watch.kill()
    assert watch.returncode == 0
    assert b"2/2" in seen + err  # the bar reached the end
    rows = [line.split() for line in out.decode().splitlines() if line.split()[:1] in (["one"], ["two"])]
    assert [r[:2] for r in rows] == [["one", "succeeded"], ["two", "succeeded"]]


def test_given_a_running_workflow_when_cancelled_then_it_is_and_a_second_cancel_is_refused(a3s, external, api):
    spec = {"task_id": "wait", "agent": "general", "prompt": 'w\n/tool bash {"command": "make"}'}
    wf = api.call("POST", f"/sessions/{external.session_id}/workflows", {"kind": "parallel", "specs": [spec]})[1][
        "workflow_id"]

    cancelled = a3s("workflows", "cancel", wf)
    assert cancelled.code == 0 and cancelled.out.strip() == f"workflow {wf} cancelled"
    again = a3s("workflows", "cancel", wf)
    assert again.code == 1 and "not running" in again.err
    assert a3s("workflows", "show", wf, "--json").json()["workflow"]["status"] == "cancelled"


# -- tasks and approvals -------------------------------------------------------------------------
def test_given_a_pending_task_when_listed_and_completed_with_a_result_then_the_run_gets_it(a3s, external, events):
    handle = external.send_async('go\n/tool bash {"command": "make"}')
    task = _pending(events, external, handle)

    for listing in (a3s("tasks", "list", "--session", external.session_id), a3s("tasks", "list")):
        [row] = [line for line in listing.out.splitlines() if line.startswith(task["task_id"])]
        assert row.split()[1:4] == [external.session_id, "execute", "bash"] and '"command": "make"' in row
    assert a3s("tasks", "list", "--session", external.session_id, "--json").json() == {"tasks": [task]}
    assert task in a3s("tasks", "list", "--json").json()["tasks"]  # every session of the tenant

    bad = a3s("tasks", "complete", external.session_id, task["task_id"], "--result", "{output: nope}")
    assert bad.code == 2 and "--result is not valid JSON" in bad.err
    assert a3s("tasks", "complete", external.session_id, task["task_id"], "--result", "[1]").code == 2
    done = a3s("tasks", "complete", external.session_id, task["task_id"], "--result", '{"output": "built it"}')
    assert done.code == 0 and done.out.strip() == f"task {task['task_id']} completed"
    assert handle.wait(timeout=30).text == "echo: go\nbash -> built it"
    late = a3s("tasks", "complete", external.session_id, task["task_id"], "--error", "too late")
    assert late.code == 1 and "already finished" in late.err


def test_given_a_pending_task_when_completed_with_an_error_then_the_tool_fails_with_it(a3s, external, events):
    handle = external.send_async('go\n/tool bash {"command": "make"}')
    task = _pending(events, external, handle)
    assert a3s("tasks", "complete", external.session_id, task["task_id"], "--error", "disk full").code == 0
    assert "disk full" in handle.wait(timeout=30).text


@pytest.mark.parametrize("verb", ["approve", "deny"])
def test_given_a_confirm_task_when_approved_or_denied_then_the_run_goes_on_or_is_refused(
        a3s, agent, workspace, events, verb):
    session = agent.session(str(workspace))  # not permissive: the write asks first
    handle = session.send_async('save\n/tool write {"file_path": "a.txt", "content": "hello"}')
    events.wait_for(handle.run_id, lambda e: e["type"] == "external_task_pending" and e["command_type"] == "confirm")
    [task] = session.pending_external_tasks()
    listed = a3s("tasks", "list", "--session", session.session_id).out
    assert "confirm" in listed and 'write {"file_path": "a.txt"' in listed

    extra = ["--reason", "not on a Friday"] if verb == "deny" else []
    answered = a3s("tasks", verb, session.session_id, task["task_id"], *extra)
    assert answered.code == 0 and answered.out.strip() == f"task {task['task_id']} {verb}d".replace("yd", "ied")
    text = handle.wait(timeout=30).text
    if verb == "approve":
        assert text == "echo: save\nwrite -> wrote 5 bytes to a.txt" and (workspace / "a.txt").read_text() == "hello"
    else:
        assert text == "echo: save\nwrite -> permission denied for write: not on a Friday"
        assert not (workspace / "a.txt").exists()
    again = a3s("tasks", verb, session.session_id, task["task_id"])
    assert again.code == 1 and "no pending task" in again.err
    session.close()


def test_given_a_task_that_is_not_an_approval_when_approved_then_usage_error_and_nothing_changes(
        a3s, external, events):
    handle = external.send_async('go\n/tool bash {"command": "make"}')
    task = _pending(events, external, handle)
    refused = a3s("tasks", "approve", external.session_id, task["task_id"])
    assert refused.code == 2 and "bash task on the execute lane" in refused.err and "tasks complete" in refused.err
    assert external.pending_external_tasks() == [task]
    external.complete_external_task(task["task_id"], result={"output": "x"})


# -- sessions ------------------------------------------------------------------------------------
def test_given_sessions_when_listed_then_the_newest_first_of_this_tenant_only(a3s, agent, workspace, api, stack):
    key = f"cli-key-{secrets.token_hex(4)}"
    stack.add_api_key(key, f"cli-tenant-{secrets.token_hex(4)}")  # a fresh tenant: its listing is exact
    mine = Agent(stack.transport(key))
    first, second = mine.session("ws"), mine.session("ws", permissive=True)
    other = agent.session(str(workspace))  # the default tenant's

    listed = a3s("sessions", "list", key=key)
    assert [line.split()[:4] for line in listed.out.splitlines()] == [
        ["SESSION", "MODEL", "PERMISSIVE", "CLOSED"],
        [second.session_id, "scripted", "yes", "no"], [first.session_id, "scripted", "no", "no"]]
    assert other.session_id not in listed.out
    body = a3s("sessions", "list", "--json", "--limit", "1", key=key).json()
    assert body == api.call("GET", "/sessions", query={"limit": 1}, key=key)[1]
    assert [s["session_id"] for s in body["sessions"]] == [second.session_id]
    other.close()


# -- configuration and errors --------------------------------------------------------------------
def test_given_a_bad_key_then_exit_1_with_the_refusal(a3s):
    out = a3s("runs", "list", key="not-a-key")
    assert out.code == 1 and out.out == "" and out.err.strip() == "a3s: forbidden (HTTP 403): Forbidden; check the API key"


def test_given_an_unknown_run_then_exit_1_with_the_api_error_code_and_message(a3s):
    out = a3s("runs", "show", "run-nope")
    assert out.code == 1 and out.err.strip() == "a3s: not_found (HTTP 404): run 'run-nope' not found"


def test_given_no_endpoint_or_no_key_then_exit_2_saying_what_to_set(a3s):
    no_url = a3s("runs", "list", url=None)
    assert no_url.code == 2 and "no endpoint" in no_url.err and "A3S_ENDPOINT" in no_url.err
    no_key = a3s("runs", "list", key=None)
    assert no_key.code == 2 and "no API key" in no_key.err and "A3S_API_KEY" in no_key.err
    assert a3s("runs", "list", url="ftp://example").code == 2
    assert a3s("runs").code == 2  # no command: argparse's usage


def test_given_nothing_listening_then_exit_3(a3s):
    with socket.socket() as s:  # a port that was free a moment ago and has no listener
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = a3s("runs", "list", url=f"http://127.0.0.1:{port}")
    assert out.code == 3 and "cannot reach" in out.err and "Traceback" not in out.err


def test_given_a_failing_service_then_exit_3_with_its_error(a3s):
    class Failing(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"error": {"code": "internal_error", "message": "internal error (request r-1)"}}).encode()
            self.send_response(500)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        out = a3s("runs", "list", url=f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    assert out.code == 3 and out.err.strip() == \
        "a3s: the service failed (HTTP 500 internal_error): internal error (request r-1)"


def test_given_flag_env_and_config_then_the_flag_wins_then_the_environment_then_the_config(
        a3s, endpoint, tmp_path, monkeypatch):
    config = tmp_path / "agent.hcl"
    config.write_text(f'endpoint = "{endpoint}"\napi_key = env("CLI_TEST_KEY")\n')
    monkeypatch.setenv("CLI_TEST_KEY", LOCAL_KEY)
    assert a3s("runs", "list", "--config", str(config), url=None, key=None).code == 0  # the config alone

    monkeypatch.setenv("A3S_API_KEY", "env-key-refused")  # the environment beats the config
    assert a3s("runs", "list", "--config", str(config), url=None, key=None).code == 1
    assert a3s("runs", "list", "--config", str(config), url=None).code == 0  # the flag beats the environment
    monkeypatch.setenv("A3S_ENDPOINT", "http://127.0.0.1:9")  # the environment's endpoint beats the config's
    assert a3s("runs", "list", "--config", str(config), url=None).code == 3

    (tmp_path / "bad.hcl").write_text("endpoint = \n")
    bad = a3s("runs", "list", "--config", str(tmp_path / "bad.hcl"), url=None)
    assert bad.code == 2 and "bad.hcl" in bad.err
    missing = a3s("runs", "list", "--config", str(tmp_path / "nope.hcl"), url=None)
    assert missing.code == 2 and "does not exist" in missing.err


# -- a3s dev -------------------------------------------------------------------------------------
def test_given_no_local_extra_when_dev_then_exit_2_naming_the_extra(a3s, monkeypatch):
    monkeypatch.setitem(sys.modules, "moto", None)  # as if the [local] extra were not installed
    out = a3s("dev", "--port", "0", url=None, key=None)
    assert out.code == 2 and "pip install 'a3s-serverless[local]'" in out.err and "moto" in out.err


def test_given_a3s_dev_then_the_stack_serves_http_and_the_cli_talks_to_it(tmp_path):
    dev = subprocess.Popen([A3S, "dev", "--port", "0", "--workspace-root", str(tmp_path)],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        info = json.loads(dev.stdout.readline())  # its first line names the endpoint
        listed = subprocess.run([A3S, "sessions", "list", "--json", "--endpoint", info["endpoint"],
                                 "--api-key", info["api_key"]], capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0 and json.loads(listed.stdout) == {"sessions": []}, listed.stderr
        dev.send_signal(signal.SIGINT)
        assert dev.wait(timeout=30) == 0
    finally:
        dev.kill()
