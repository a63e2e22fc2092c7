"""The lane_worker Lambda and the sweeper, against the embedded stack's moto."""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from a3s_core.sweeper import sweep
from a3s_serverless.local.embedded import Function

ROOT = Path(__file__).resolve().parents[2]


def record(body: dict, message_id: str = "m1") -> dict:
    return {"Records": [{"messageId": message_id, "receiptHandle": "r", "body": json.dumps(body), "attributes": {},
                         "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                         "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"}]}


def pending_task(agent, workspace, prompt: str, timeout_ms: int = 60000):
    session = agent.session(str(workspace), permissive=True)
    session.set_lane_handler("execute", "external", timeout_ms)
    handle = session.send_async(prompt)
    next(e for e in handle.events() if e["type"] == "external_task_pending")
    [task] = session.pending_external_tasks()
    return session, handle, task


def test_given_a_task_on_the_lane_queue_when_the_lane_worker_lambda_runs_then_it_does_the_work_once(
        agent, workspace, stack):
    worker = Function("LaneWorkerFunction", ROOT / "functions" / "lane_worker", "app.handler", 60, 512)
    session, handle, task = pending_task(agent, workspace, 'w\n/tool write {"file_path": "o.txt", "content": "hi"}')
    message = {"tenant": "local", **task}
    assert worker.invoke(record(message)) == {"batchItemFailures": []}
    assert handle.wait(timeout=30).text == "echo: w\nwrite -> wrote 2 bytes to o.txt"
    assert (workspace / "o.txt").read_text() == "hi"
    # The same message again (SQS delivers at least once): the task is finished, nothing runs.
    (workspace / "o.txt").write_text("changed")
    assert worker.invoke(record(message, "m2")) == {"batchItemFailures": []}
    assert (workspace / "o.txt").read_text() == "changed"


def test_given_a_task_whose_timer_was_lost_when_the_sweeper_runs_after_its_deadline_then_the_run_goes_on(
        agent, workspace, stack):
    # A ten-minute timeout: its timer message is still delayed in SQS for the whole test, as good as
    # lost. The sweeper runs on a clock of its own, past the deadline (the stack's clock is untouched).
    session, handle, task = pending_task(agent, workspace, 'w\n/tool bash {"command": "true"}', timeout_ms=600_000)
    later = dataclasses.replace(stack.runtime, clock=lambda: int(time.time() * 1000) + 700_000)
    sweep(later)
    stored = stack.runtime.store.get_task("local", session.session_id, task["task_id"])
    assert stored is not None and stored.status == "timed_out"
    text = handle.wait(timeout=30).text
    assert "timed out" in text and session.complete_external_task(task["task_id"], result={"output": "x"}) is False


def test_given_a_non_permissive_sessions_task_nobody_approved_when_the_lane_worker_gets_it_then_it_refuses(
        agent, workspace, stack):
    worker = Function("LaneWorkerFunction", ROOT / "functions" / "lane_worker", "app.handler", 60, 512)
    session = agent.session(str(workspace))  # not permissive; the stack's driver does not ask (no lane worker)
    session.set_lane_handler("execute", "external", 60000)
    handle = session.send_async('w\n/tool write {"file_path": "o.txt", "content": "hi"}')
    next(e for e in handle.events() if e["type"] == "external_task_pending")
    [task] = session.pending_external_tasks()
    assert worker.invoke(record({"tenant": "local", **task})) == {"batchItemFailures": []}
    assert "refused: the session is not permissive and no one approved this task" in handle.wait(timeout=30).text
    assert not (workspace / "o.txt").exists()


def test_given_a_message_that_names_another_command_when_the_lane_worker_runs_then_it_runs_the_stored_one(
        agent, workspace, stack):
    worker = Function("LaneWorkerFunction", ROOT / "functions" / "lane_worker", "app.handler", 60, 512)
    session, handle, task = pending_task(agent, workspace, 'w\n/tool write {"file_path": "o.txt", "content": "hi"}')
    forged = {"tenant": "local", **task, "command_type": "bash", "payload": {"command": "touch forged"}}
    assert worker.invoke(record(forged)) == {"batchItemFailures": []}
    assert handle.wait(timeout=30).text == "echo: w\nwrite -> wrote 2 bytes to o.txt"
    assert not (workspace / "forged").exists()
