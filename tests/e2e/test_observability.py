"""What an operator sees of a flow on the embedded stack: the structured JSON log lines Powertools
writes (one per transition, with the ids), and the EMF metrics each invocation flushes."""
from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from a3s_core.engine import dispatch
from a3s_serverless import Worker
from a3s_serverless.errors import RunFailed

SERVICE = "a3s-local"  # POWERTOOLS_SERVICE_NAME is the stack's name


class Telemetry:
    """Log lines as Powertools formats them, and the EMF lines printed to stdout."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys, self.lines, self._emf = capsys, [], ""
        self.logger = logging.getLogger(SERVICE)
        formatter = self.logger.handlers[0].formatter  # the Powertools JSON formatter the functions set up
        telemetry = self

        class Collect(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                telemetry.lines.append(json.loads(formatter.format(record)))

        self.handler = Collect()

    def logs(self, **match: Any) -> list[dict]:
        return [line for line in self.lines if all(line.get(k) == v for k, v in match.items())]

    def transitions(self, **match: Any) -> Counter:
        return Counter(line["transition"] for line in self.logs(**match) if "transition" in line)

    def wait_for(self, timeout: float = 20.0, **match: Any) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.logs(**match)
            if found:
                return found[0]
            time.sleep(0.02)
        raise AssertionError(f"no log line with {match} within {timeout} s")

    def metrics(self) -> list[tuple[str, dict[str, str], list[float]]]:
        """(name, dimensions, values) of every EMF metric printed so far."""
        self._emf += self.capsys.readouterr().out
        out = []
        for raw in self._emf.splitlines():
            if not raw.startswith('{"_aws"'):
                continue
            doc = json.loads(raw)
            [directive] = doc["_aws"]["CloudWatchMetrics"]
            assert directive["Namespace"] == "A3S"
            [dims] = directive["Dimensions"]
            for metric in directive["Metrics"]:
                values = doc[metric["Name"]]
                out.append((metric["Name"], {d: doc[d] for d in dims}, values if isinstance(values, list) else [values]))
        return out

    def total(self, name: str, **dims: str) -> float:
        return sum(sum(v) for n, d, v in self.metrics() if n == name and d == {"service": SERVICE, **dims})

    def dimensions(self, name: str) -> list[dict[str, str]]:
        return [d for n, d, _ in self.metrics() if n == name]


@pytest.fixture
def telemetry(stack, capsys, monkeypatch):
    stack.wait_idle()  # nothing of an earlier test still running into this one's lines
    seen = Telemetry(capsys)
    capsys.readouterr()
    level = seen.logger.level
    seen.logger.setLevel(logging.INFO)  # the embedded stack keeps INFO out unless asked
    seen.logger.addHandler(seen.handler)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")  # ... and EMF
    yield seen
    seen.logger.removeHandler(seen.handler)
    seen.logger.setLevel(level)


def test_given_a_run_whose_tool_a_worker_does_then_each_transition_is_logged_once_with_its_ids_and_counted(
        stack, agent, workspace, telemetry):
    session = agent.session(str(workspace), permissive=True)
    session.set_lane_handler("execute", "external", 300000)
    handle = session.send_async('obs\n/tool bash {"command": "echo hi"}')
    task = telemetry.wait_for(transition="task_created", run_id=handle.run_id)
    assert Worker(stack.transport(), "execute", str(workspace)).run_once() == 1
    assert handle.wait(timeout=30).text.endswith("bash -> hi")
    stack.wait_idle()  # every invocation has ended, so flushed its metrics

    ids = {"tenant": "local", "session_id": session.session_id, "run_id": handle.run_id}
    assert telemetry.transitions(**ids) == Counter({
        "run_queued": 1, "run_started": 1, "task_created": 1, "run_suspended": 1, "task_claimed": 1,
        "task_completed": 1, "run_resumed": 1, "run_ended": 1})
    [ended] = telemetry.logs(transition="run_ended", **ids)
    assert (ended["level"], ended["status"], ended["stop_reason"], ended["turns"]) == ("INFO", "succeeded", "end_turn", 2)
    assert ended["service"] == SERVICE
    for line in (x for x in telemetry.logs(task_id=task["task_id"]) if x.get("transition", "").startswith("task_")):
        assert (line["lane"], line["command_type"], line["run_id"]) == ("execute", "bash", handle.run_id)
    [suspended] = telemetry.logs(transition="run_suspended", **ids)
    assert (suspended["status"], suspended["waiting_on"]) == ("waiting", 1)

    assert telemetry.total("RunsStarted") >= 1
    assert telemetry.total("RunsEnded", StopReason="end_turn") >= 1
    assert telemetry.total("Turns", Model="scripted") >= 2
    assert telemetry.total("PromptTokens", Model="scripted") > 0
    assert {"service": SERVICE, "Model": "scripted"} in telemetry.dimensions("ModelLatency")
    assert telemetry.total("TasksEnded", Lane="execute", Status="completed") == 1
    assert telemetry.total("ToolCalls", Tool="bash", Lane="execute") == 1
    assert {"service": SERVICE, "Lane": "execute"} in telemetry.dimensions("TaskWaitTime")
    for name, dims, _ in telemetry.metrics():  # never an id as a dimension
        assert not {"run_id", "session_id", "RunId", "SessionId"} & set(dims), (name, dims)


def test_given_a_parallel_workflow_then_its_start_each_step_and_its_end_are_logged_once_and_counted(
        agent, workspace, stack, telemetry):
    session = agent.session(str(workspace), permissive=True)
    outcomes = session.parallel([{"task_id": "a", "agent": "general", "prompt": "one"},
                                 {"task_id": "b", "agent": "general", "prompt": "two"}])
    assert [o["success"] for o in outcomes] == [True, True]
    stack.wait_idle()

    [started] = telemetry.logs(transition="workflow_started", session_id=session.session_id)
    wf = started["workflow_id"]
    assert (started["kind"], started["steps"], started["tenant"]) == ("parallel", 2, "local")
    assert telemetry.transitions(workflow_id=wf) == Counter({
        "workflow_started": 1, "step_launched": 2, "run_queued": 2, "run_started": 2, "run_ended": 2,
        "step_settled": 2, "workflow_ended": 1})
    launched = telemetry.logs(transition="step_launched", workflow_id=wf)
    settled = telemetry.logs(transition="step_settled", workflow_id=wf)
    assert sorted(x["run_id"] for x in launched) == sorted(x["run_id"] for x in settled) == \
        sorted(o["run_id"] for o in outcomes)
    assert {x["status"] for x in settled} == {"succeeded"}
    assert telemetry.logs(transition="workflow_ended", workflow_id=wf)[0]["status"] == "succeeded"

    assert telemetry.total("StepsLaunched") == 2
    assert telemetry.total("StepsSettled", Status="succeeded") == 2
    assert telemetry.total("WorkflowsEnded", Status="succeeded") == 1


def test_given_a_model_that_fails_then_the_run_end_is_an_error_with_the_exception_logged(
        agent, workspace, stack, telemetry):
    session = agent.session(str(workspace), permissive=True)
    handle = session.send_async("/fail the provider is down")
    with pytest.raises(RunFailed, match="the provider is down"):
        handle.wait(timeout=30)
    stack.wait_idle()

    [failed] = telemetry.logs(message="model call failed", run_id=handle.run_id)
    assert failed["level"] == "WARNING" and "the provider is down" in failed["exception"]
    assert failed["exception_name"]
    [ended] = telemetry.logs(transition="run_ended", run_id=handle.run_id)
    assert (ended["level"], ended["stop_reason"], ended["status"]) == ("ERROR", "model_error", "failed")
    assert "the provider is down" in ended["error"]
    assert telemetry.total("RunErrors") == 1
    assert telemetry.total("RunsEnded", StopReason="model_error") == 1


def _record(body: str, receive_count: int) -> dict:
    return {"messageId": f"m-{receive_count}", "receiptHandle": "r", "body": body, "md5OfBody": "",
            "attributes": {"ApproximateReceiveCount": str(receive_count), "SentTimestamp": "0"},
            "messageAttributes": {}, "eventSource": "aws:sqs", "awsRegion": "us-east-1",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:a3s-RunsQueue"}


def test_given_a_runs_queue_record_that_fails_then_it_is_logged_with_its_exception_and_its_last_delivery_given_up(
        stack, telemetry, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the driver broke")

    monkeypatch.setattr(dispatch, "advance", broken)
    driver = stack.functions["RunDriverFunction"]
    body = json.dumps({"kind": "advance", "tenant": "local", "run_id": "run-obs-x"})
    last = int(os.environ["A3S_MAX_RECEIVE_COUNT"])

    with pytest.raises(BatchProcessingError):  # the whole batch failed: SQS delivers it again
        driver.invoke({"Records": [_record(body, 1)]})
    [failed] = telemetry.logs(message="record failed; it will be delivered again")
    assert failed["level"] == "WARNING" and "the driver broke" in failed["exception"]
    assert (failed["run_id"], failed["tenant"], failed["receive_count"]) == ("run-obs-x", "local", 1)

    assert driver.invoke({"Records": [_record(body, last)]}) == {"batchItemFailures": []}
    [given_up] = telemetry.logs(transition="message_given_up")
    assert (given_up["level"], given_up["action"], given_up["run_id"]) == ("ERROR", "left_run", "run-obs-x")
    assert telemetry.total("MessagesGivenUp") == 1


def test_given_telemetry_left_as_the_embedded_stack_sets_it_then_info_lines_and_metrics_stay_out(stack, agent,
                                                                                                 workspace, capsys):
    stack.wait_idle()
    capsys.readouterr()
    session = agent.session(str(workspace), permissive=True)
    session.send("quiet")
    stack.wait_idle()

    assert logging.getLogger(SERVICE).getEffectiveLevel() == logging.WARNING
    assert '"_aws"' not in capsys.readouterr().out


def test_given_a_request_that_breaks_inside_the_kit_then_the_500_is_logged_with_its_trace_and_counted(
        api, telemetry, monkeypatch):
    from a3s_core.api.service import Service

    def broken(self, run_id):
        raise RuntimeError("the store fell over")

    monkeypatch.setattr(Service, "get_run", broken)
    status, body = api.call("GET", "/runs/run-obs-500")

    assert (status, body["error"]["code"]) == (500, "internal_error")
    assert "fell over" not in json.dumps(body)  # the trace is for the log only
    [line] = telemetry.logs(message="internal error in api")
    assert (line["level"], line["tenant"], line["run_id"]) == ("ERROR", "local", "run-obs-500")
    assert "the store fell over" in line["exception"]
    assert telemetry.total("InternalErrors") == 1
