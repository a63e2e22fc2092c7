"""A run someone waits for reaches the run driver by asynchronous invocation, on the embedded stack
as on AWS: its start and its wake after an external task send nothing to the runs queue, and an
invocation that fails reaches the runs queue whole (the function's on-failure destination), from
where the run goes on."""
from __future__ import annotations

import json
import threading

import pytest

from a3s_core.engine import dispatch


@pytest.fixture
def runs_queue_bodies(stack):
    """The body of every message sent to the runs queue meanwhile, by the functions or by Lambda."""
    url = stack.runtime.settings.runs_queue_url
    bodies: list[dict] = []
    lock = threading.Lock()

    def hook(params, **_):
        if params.get("QueueUrl") == url:
            with lock:
                bodies.append(json.loads(params["MessageBody"]))

    clients = [stack.runtime.queues._sqs, stack.sqs]
    for client in clients:
        client.meta.events.register("before-parameter-build.sqs.SendMessage", hook)
    yield bodies
    for client in clients:
        client.meta.events.unregister("before-parameter-build.sqs.SendMessage", hook)


def test_given_a_run_with_an_external_task_then_its_start_and_wake_are_invocations_not_runs_queue_messages(
        stack, workspace, runs_queue_bodies):
    from a3s_serverless import Agent

    session = Agent.local(tenant=workspace.parent.name).session("ws", permissive=True)
    session.set_lane_handler("execute", "external", 60_000)
    invocations = stack.async_invocations.invocations
    handle = session.send_async('go\n/tool bash {"command": "make"}')
    task_id = next(e for e in handle.events() if e["type"] == "external_task_pending")["task_id"]
    assert session.complete_external_task(task_id, result={"output": "made"})
    assert "bash -> made" in handle.wait(timeout=30).text
    assert stack.async_invocations.invocations - invocations == 2  # the start, the wake
    ours = [b for b in runs_queue_bodies if b.get("run_id") == handle.run_id]
    assert [b["kind"] for b in ours] == ["task_timeout"]  # the task's timer alone: delayed, so queued


def test_given_a_driver_invocation_that_fails_then_the_run_goes_on_through_the_runs_queue(
        stack, workspace, monkeypatch, runs_queue_bodies):
    from a3s_serverless import Agent

    real, failed = dispatch.advance, []

    def advance(rt, tenant, run_id, *args, **kw):
        if tenant == workspace.parent.name and not failed:
            failed.append(run_id)
            raise RuntimeError("the first invocation dies")
        return real(rt, tenant, run_id, *args, **kw)

    monkeypatch.setattr(dispatch, "advance", advance)
    session = Agent.local(tenant=workspace.parent.name).session("ws", permissive=True)
    result = session.send("hello")
    assert result.text and failed
    [record] = [b for b in runs_queue_bodies if b.get("requestPayload", {}).get("run_id") == failed[0]]
    assert record["requestPayload"] == {"kind": "advance", "tenant": workspace.parent.name, "run_id": failed[0]}
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["responsePayload"]["errorMessage"] == "the first invocation dies"


def settle(invocations, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while invocations.inflight and time.monotonic() < deadline:
        time.sleep(0.01)


def test_given_invocations_at_once_then_each_runs_on_a_thread_of_its_own_and_threads_are_reused():
    """Threads that finished an invocation take the next, and one that blocks never holds up another
    (Lambda runs concurrent asynchronous invocations at once)."""
    import types

    from a3s_local.async_invoke import AsyncInvocations
    from a3s_local.template import AsyncInvokeConfig

    first_running, second_ran = threading.Event(), threading.Event()
    threads: list[str] = []

    def invoke(event):
        threads.append(threading.current_thread().name + str(threading.get_ident()))
        if event["n"] == 1:  # holds its thread until the second, invoked meanwhile, has run
            first_running.set()
            assert second_ran.wait(10), "the second invocation waited for the first"
        elif event["n"] == 2:
            second_ran.set()

    stack = types.SimpleNamespace(
        model=types.SimpleNamespace(function_names={"fn": "Fn"}, async_configs={"Fn": AsyncInvokeConfig()}),
        functions={"Fn": types.SimpleNamespace(invoke=invoke)}, stopping=threading.Event())
    invocations = AsyncInvocations(stack)

    def call(n):
        return invocations._before_call({"headers": {"X-Amz-Invocation-Type": "Event"},
                                          "url_path": "/2015-03-31/functions/fn/invocations",
                                          "body": json.dumps({"n": n}).encode()})
    try:
        assert call(1)[1]["StatusCode"] == 202
        assert first_running.wait(10)
        call(2)
        assert second_ran.wait(10)
        settle(invocations)
        call(3)
        settle(invocations)

        assert invocations.invocations == 3 and invocations.inflight == 0
        assert len(threads) == 3 and len(set(threads)) == 2  # the third reused a finished thread
    finally:
        invocations.close()
