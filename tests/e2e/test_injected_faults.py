"""No run is ever stuck: each injected fault ends its run, and whatever waits on it (a workflow, a
delegating parent), within a bounded time on the embedded stack. A fault in a tool is a tool
error the model sees; a fault in a model adapter fails the run with `model_error`; anything else
that keeps failing fails it with `internal_error` once its message is given up on.

Each test waits on the run's own event stream (or the workflow's long poll) with a deadline and
prints how long the fault took to end its run (`pytest -s` shows them)."""
from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from a3s_core.engine import driver
from a3s_core.llm.registry import MODEL_FACTORIES
from a3s_core.tools import builtin as tools
from a3s_serverless import RunFailed

BUG = "#driver-bug"
CRASH = "#driver-crash"


def tool(name: str, args: dict) -> str:
    return f"/tool {name} {json.dumps(args)}"  # json.dumps escapes NUL bytes and lone surrogates


@contextmanager
def timed(label: str, bound_s: float):
    started = time.monotonic()
    yield
    elapsed = time.monotonic() - started
    print(f"\n[fault ended its run] {label}: {elapsed:.2f} s")
    assert elapsed < bound_s, f"{label} took {elapsed:.1f} s"


def finish(session, prompt: str, timeout: float = 30):
    """Send, and wait for the run to end (succeeded: the result; otherwise RunFailed)."""
    return session.send_async(prompt).wait(timeout=timeout)


def failure(session, prompt: str, timeout: float = 30):
    with pytest.raises(RunFailed) as err:
        finish(session, prompt, timeout)
    return err.value.result


def tool_end(events, run_id: str) -> dict:
    return events.wait_for(run_id, "tool_end")


# -- tools: any exception is a tool error the model sees ---------------------------------------------
def test_given_a_glob_with_a_double_star_inside_a_segment_then_the_run_succeeds_with_the_matches(
        session, workspace):
    (workspace / "src").mkdir()
    (workspace / "src" / "app.py").write_text("")
    with timed("glob pattern 'src/**.py'", 30):
        result = finish(session, "globbing\n" + tool("glob", {"pattern": "src/**.py"}))
    assert result.text == "echo: globbing\nglob -> src/app.py"


def test_given_a_nul_byte_in_a_path_then_the_run_succeeds_and_the_model_sees_a_tool_error(
        session, events):
    with timed("NUL byte in a path", 30):
        result = finish(session, "nul\n" + tool("read", {"file_path": "notes\x00.txt"}))
    assert result.text.startswith("echo: nul\nread -> ") and "NUL byte" in result.text
    assert tool_end(events, result.run_id)["is_error"] is True


def test_given_a_lone_surrogate_in_written_content_then_the_run_succeeds_and_the_model_sees_a_tool_error(
        session, workspace, events):
    with timed("lone surrogate in write.content", 30):
        result = finish(session, "surrogate\n" + tool("write", {"file_path": "s.txt", "content": "a\ud800b"}))
    assert result.text.startswith("echo: surrogate\nwrite -> ") and "not valid Unicode" in result.text
    assert tool_end(events, result.run_id)["is_error"] is True
    assert not (workspace / "s.txt").exists()


def test_given_a_tool_that_raises_anything_then_the_run_succeeds_and_the_model_sees_which(
        session, monkeypatch, events):
    def broken(args, workspace):
        raise ZeroDivisionError("the tool divided by zero")

    monkeypatch.setitem(tools._TOOLS, "ls", broken)
    with timed("a tool raising ZeroDivisionError", 30):
        result = finish(session, "tool bug\n" + tool("ls", {}))
    assert result.text == "echo: tool bug\nls -> ls failed: ZeroDivisionError: the tool divided by zero"
    assert tool_end(events, result.run_id)["is_error"] is True


def test_given_tool_execution_that_raises_outside_the_tool_then_the_model_still_gets_a_tool_error(
        session, monkeypatch):
    def broken_run_tool(name, arguments, workspace):
        raise LookupError("no such sandbox")

    monkeypatch.setattr(driver, "run_tool", broken_run_tool)
    with timed("tool execution raising LookupError", 30):
        result = finish(session, "exec bug\n" + tool("ls", {}))
    assert result.text == "echo: exec bug\nls -> ls failed: LookupError: no such sandbox"


# -- models: any exception from an adapter fails the run with model_error --------------------------
class ExplodingModel:
    def complete(self, messages, tools, system=None, *, output_schema=None):
        raise AttributeError("'NoneType' object has no attribute 'text'")


@pytest.mark.parametrize("factory,words", [
    (lambda model_id: ExplodingModel(), ["AttributeError", "has no attribute 'text'"]),
    (lambda model_id: {}["no client"], ["KeyError", "no client"]),
])
def test_given_a_model_adapter_that_raises_anything_then_the_run_fails_with_model_error(
        agent, workspace, monkeypatch, factory, words):
    monkeypatch.setitem(MODEL_FACTORIES, "exploding", factory)
    session = agent.session(str(workspace), model="exploding/v1")
    with timed(f"model adapter raising {words[0]}", 30):
        result = failure(session, "hello")
    assert (result.status, result.stop_reason) == ("failed", "model_error")
    assert result.error.startswith("model error: ") and all(w in result.error for w in words)


class NullMessageServer:
    """An OpenAI-compatible server whose every answer is {"choices": [{"message": null}]}."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                data = json.dumps({"id": "chatcmpl-x", "object": "chat.completion",
                                   "choices": [{"index": 0, "message": None, "finish_reason": "stop"}]}).encode()
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


@pytest.fixture
def null_message_server(monkeypatch):
    fake = NullMessageServer()
    fake.thread.start()
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url)  # the adapter reads it when the driver builds it
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
    fake.thread.join(5)


def test_given_an_openai_server_answering_a_null_message_then_the_run_fails_with_model_error(
        agent, workspace, null_message_server):
    session = agent.session(str(workspace), model="openai/fake-model")
    with timed("OpenAI reply with a null message", 30):
        result = failure(session, "hello")
    assert (result.status, result.stop_reason) == ("failed", "model_error")
    assert "openai: " in result.error and "message" in result.error


# -- workflows and delegation: a failing child settles its step, and the waiting parent goes on -----
EMPTY_ENUM = {"enum": []}


def test_given_a_workflow_step_whose_output_schema_has_an_empty_enum_then_the_step_and_workflow_fail(
        api, session):
    spec = {"task_id": "a", "agent": "general", "prompt": "classify", "output_schema": EMPTY_ENUM}
    with timed("empty-enum output_schema as a workflow step", 30):
        status, started = api.call("POST", f"/sessions/{session.session_id}/workflows",
                                   {"kind": "parallel", "specs": [spec]})
        assert status == 202, started
        view = api.wait_workflow(started["workflow_id"], timeout=30)
    assert view["status"] == "failed"
    [outcome] = view["outcomes"]
    assert outcome["success"] is False and outcome["error"].startswith("model error: ")


def test_given_a_task_call_whose_output_schema_has_an_empty_enum_then_the_parent_run_finishes(
        session, agent, events):
    args = {"agent": "general", "prompt": "classify", "output_schema": EMPTY_ENUM}
    with timed("empty-enum output_schema through a parent's task call", 30):
        result = finish(session, "delegate\n" + tool("task", args))
    assert result.text.splitlines()[1].startswith("task -> Task failed")
    assert "model error" in tool_end(events, result.run_id)["output"]  # what the parent's model read
    [child] = [r for r in agent.orchestrator().list(session.session_id) if r["parent"]]
    assert (child["status"], child["stop_reason"]) == ("failed", "model_error")


# -- the driver itself: what keeps failing is given up on -------------------------------------------
@pytest.fixture
def max_receive_count(stack, monkeypatch):
    """The runs queue gives a message up after 2 receives instead of the stack's 5 (so a give-up
    takes two visibility timeouts, ~10 s); the run driver is told so, as template.yaml does."""
    url = stack.queue_url("RunsQueue")
    policy = json.loads(stack.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])
                        ["Attributes"]["RedrivePolicy"])
    stack.sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": json.dumps({**policy, "maxReceiveCount": 2})})
    monkeypatch.setenv("A3S_MAX_RECEIVE_COUNT", "2")
    yield 2
    stack.sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": json.dumps(policy)})


class SimulatedCrash(BaseException):
    """Like a Lambda killed at its timeout: nothing below the handler gets to clean up."""


@pytest.fixture
def driver_faults(monkeypatch):
    """A bug in the driver that raises on every delivery of a run whose prompt starts with BUG, and
    a crash that kills every delivery of one whose prompt starts with CRASH."""
    real = driver._Turns.model_turn

    def model_turn(self, injections):
        if self.run.prompt.startswith(BUG):
            raise KeyError("a bug in the driver")
        if self.run.prompt.startswith(CRASH):
            raise SimulatedCrash("the driver died")
        return real(self, injections)

    monkeypatch.setattr(driver._Turns, "model_turn", model_turn)


def test_given_a_driver_bug_on_every_delivery_then_the_run_fails_with_internal_error(
        session, driver_faults, max_receive_count, events):
    with timed("driver bug on every delivery (maxReceiveCount 2)", 25):
        result = failure(session, f"{BUG} hello", timeout=25)
    assert (result.status, result.stop_reason) == ("failed", "internal_error")
    assert "KeyError" in result.error and "a bug in the driver" in result.error
    end = events.wait_for(result.run_id, "run_end")
    assert (end["status"], end["stop_reason"]) == ("failed", "internal_error")


def test_given_a_child_run_with_a_driver_bug_then_its_workflow_ends_and_the_delegating_parent_finishes(
        session, agent, driver_faults, max_receive_count, events):
    with timed("driver bug in a child run, through a parent's task call", 30):
        result = finish(session, "delegate\n" + tool("task", {"agent": "general", "prompt": f"{BUG} child"}),
                        timeout=30)
    assert result.text.splitlines()[1].startswith("task -> Task failed")
    assert "KeyError: 'a bug in the driver'" in tool_end(events, result.run_id)["output"]
    [child] = [r for r in agent.orchestrator().list(session.session_id) if r["parent"]]
    assert (child["status"], child["stop_reason"]) == ("failed", "internal_error")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_given_a_driver_that_dies_on_every_delivery_then_the_runs_dlq_consumer_fails_the_run(
        session, driver_faults, max_receive_count, stack):
    with timed("driver dying on every delivery (runs DLQ, maxReceiveCount 2)", 30):
        result = failure(session, f"{CRASH} hello", timeout=30)
    assert (result.status, result.stop_reason) == ("failed", "internal_error")
    assert "dead-letter" in result.error
    stack.wait_idle(timeout=30)  # nothing is left in the runs queue or its DLQ
