"""The lane_worker Lambda and the sweeper, against the embedded stack's moto."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from a3s_core.engine.messages import wire
from a3s_core.engine.sweeper import sweep
from a3s_local.embedded import Function

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


class LosingQueues:
    """The stack's queues, except that the runs-queue messages (and hand-overs) `lose` picks are lost (recorded)."""

    def __init__(self, queues, lose) -> None:
        self.queues, self.lose, self.lost = queues, lose, []

    def _lost(self, message) -> bool:
        if self.lose(wire(message)):
            self.lost.append(wire(message))
            return True
        return False

    def send_run(self, message, delay_s: int = 0) -> None:
        if not self._lost(message):
            self.queues.send_run(message, delay_s)

    def send_runs(self, messages) -> None:
        for message in messages:
            self.send_run(message)

    def hand_over(self, message) -> None:  # a run handed to the driver directly: lost the same way
        if not self._lost(message):
            self.queues.hand_over(message)

    def send_lane(self, lane: str, body: dict) -> None:
        self.queues.send_lane(lane, body)


def test_given_a_task_whose_timer_was_lost_when_the_sweeper_runs_after_its_deadline_then_the_run_goes_on(
        agent, workspace, stack, monkeypatch):
    from a3s_serverless import Agent

    session = agent.session(str(workspace), permissive=True)
    session.set_lane_handler("execute", "external", 600_000)
    losing = LosingQueues(stack.runtime.queues, lambda body: body["kind"] == "task_timeout"
                          and body["session_id"] == session.session_id)
    monkeypatch.setattr(stack.runtime, "queues", losing)
    handle = session.send_async('w\n/tool bash {"command": "true"}')
    next(e for e in handle.events() if e["type"] == "external_task_pending")
    [task] = session.pending_external_tasks()
    assert [m["task_id"] for m in losing.lost] == [task["task_id"]]  # its only timer is gone
    # Another tenant's task whose deadline is an hour away.
    theirs = Agent(stack.transport(stack.tenant_key(f"sweep-{workspace.parent.name}"))).session("ws", permissive=True)
    theirs.set_lane_handler("execute", "external", 3_600_000)
    other = theirs.send_async('o\n/tool bash {"command": "true"}')
    next(e for e in other.events() if e["type"] == "external_task_pending")
    [their_task] = theirs.pending_external_tasks()

    deadline = stack.runtime.store.get_task("local", session.session_id, task["task_id"]).deadline
    sweep(dataclasses.replace(stack.runtime, clock=lambda: deadline - 1))  # the sweeper's clock, the test's
    assert [t["task_id"] for t in session.pending_external_tasks()] == [task["task_id"]]  # not due yet
    assert handle.status() == "waiting"

    assert sweep(dataclasses.replace(stack.runtime, clock=lambda: deadline))["expired_tasks"] >= 1
    assert stack.runtime.store.get_task("local", session.session_id, task["task_id"]).status == "timed_out"
    text = handle.wait(timeout=60).text
    assert text == f"echo: w\nbash -> external task {task['task_id']} timed out after 600000 ms"
    assert session.complete_external_task(task["task_id"], result={"output": "x"}) is False
    # The other tenant's task, not due, is untouched and still completes.
    assert [t["task_id"] for t in theirs.pending_external_tasks()] == [their_task["task_id"]]
    assert theirs.complete_external_task(their_task["task_id"], result={"output": "theirs"}) is True
    assert other.wait(timeout=60).text == "echo: o\nbash -> theirs"


def test_given_a_run_whose_advance_message_was_lost_when_the_sweeper_runs_once_it_is_stale_then_it_is_redriven_and_finishes(
        agent, workspace, stack, monkeypatch):
    from a3s_core.engine.sweeper import STALE_GRACE_MS

    session = agent.session(str(workspace), permissive=True)
    store = stack.runtime.store
    losing = LosingQueues(stack.runtime.queues, lambda body: body["kind"] == "advance"
                          and store.get_run("local", body["run_id"]).session_id == session.session_id)
    monkeypatch.setattr(stack.runtime, "queues", losing)
    handle = session.send_async("lost")
    assert losing.lost == [{"kind": "advance", "tenant": "local", "run_id": handle.run_id}]
    assert handle.status() == "queued"
    monkeypatch.setattr(stack.runtime, "queues", losing.queues)  # from now on messages arrive

    stale = store.get_run("local", handle.run_id).updated_at + stack.runtime.settings.lease_seconds * 1000 \
        + STALE_GRACE_MS
    sweep(dataclasses.replace(stack.runtime, clock=lambda: stale))  # a driver's lease could still be live
    assert store.get_run("local", handle.run_id).redrives == 0 and handle.status() == "queued"
    assert sweep(dataclasses.replace(stack.runtime, clock=lambda: stale + 1))["redriven_runs"] >= 1
    result = handle.wait(timeout=60)
    assert (result.status, result.text) == ("succeeded", "echo: lost")
    assert store.get_run("local", handle.run_id).redrives == 1


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
