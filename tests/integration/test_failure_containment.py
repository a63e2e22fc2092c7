"""Failure containment at the run-driver level, on the moto-backed store with recorded queues: a
message that keeps failing is given up on its last delivery (ApproximateReceiveCount reaching
A3S_MAX_RECEIVE_COUNT), and whatever it carried ends instead of waiting for ever: the run fails
with `internal_error`, its workflow step settles, a workflow message ends its workflow failed,
and the delegating parent is woken. A message in the runs DLQ (its last delivery died outright)
does the same. The sweeper re-drives a run a bounded number of times."""
from __future__ import annotations

import importlib.util
import json
import secrets
import uuid
from pathlib import Path

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from a3s_core.api.schemas import CreateSessionBody, LaneHandlerBody, StartRunBody
from a3s_core.api.service import Service
from a3s_core.domain.items import Run, Session
from a3s_core.engine import containment, dispatch, driver, workflows
from a3s_core.engine.queues import MemoryQueues
from a3s_core.engine.sweeper import MAX_REDRIVES, STALE_GRACE_MS, sweep
from a3s_core.runtime import Runtime, Settings
from a3s_core.store.memory import MemoryStore
from a3s_local.embedded import LambdaContext

ROOT = Path(__file__).resolve().parents[2]
MAX = 5
BUG = "#driver-bug"


def plenty() -> int:
    return 60_000


def load_handler(function_dir: str, rt, monkeypatch):
    """A fresh import of a function's handler module, bound to `rt` instead of the stack's runtime."""
    spec = importlib.util.spec_from_file_location(f"containment_{function_dir}_{uuid.uuid4().hex}",
                                                  ROOT / "functions" / function_dir / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "get_runtime", lambda: rt)
    return lambda event: module.handler(event, LambdaContext(function_dir, 60, 512))


def delivered(handler, rec: dict) -> str:
    """"redelivered" if SQS would deliver the record again (a batch item failure, or an invocation
    that failed as a whole, as powertools makes it when every record failed), else "consumed"."""
    try:
        out = handler({"Records": [rec]})
    except BatchProcessingError:
        return "redelivered"
    return "redelivered" if out["batchItemFailures"] else "consumed"


def record(body: dict | str, receive_count: int, queue: str = "RunsQueue") -> dict:
    return {"messageId": str(uuid.uuid4()), "receiptHandle": secrets.token_hex(8),
            "body": body if isinstance(body, str) else json.dumps(body),
            "attributes": {"ApproximateReceiveCount": str(receive_count)}, "messageAttributes": {},
            "md5OfBody": "", "eventSource": "aws:sqs",
            "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{queue}", "awsRegion": "us-east-1"}


@pytest.fixture
def driver_bug(monkeypatch):
    """A bug in the driver that raises on every delivery of a run whose prompt starts with BUG."""
    real = driver._Turns.model_turn

    def model_turn(self, injections):
        if self.run.prompt.startswith(BUG):
            raise KeyError("a bug in the driver")
        return real(self, injections)

    monkeypatch.setattr(driver._Turns, "model_turn", model_turn)


class Tenant:
    """A tenant of its own and one permissive session; run-queue messages are recorded."""

    def __init__(self, rt, workspace: Path) -> None:
        self.rt, self.tenant = rt, workspace.parent.name  # its workspace lies under its own root
        self.svc = Service(rt, self.tenant)
        self.sid = self.svc.create_session(CreateSessionBody(workspace=str(workspace), permissive=True))["session_id"]

    def start(self, prompt: str) -> tuple[str, dict]:
        run_id = self.svc.start_run(self.sid, StartRunBody(prompt=prompt))["run_id"]
        return run_id, self.take("advance", run_id)

    def take(self, kind: str, run_id: str | None = None) -> dict:
        for i, (body, _) in enumerate(self.rt.queues.runs):
            if body["kind"] == kind and run_id in (None, body.get("run_id")):
                del self.rt.queues.runs[i]
                return body
        raise AssertionError(f"no {kind} message for {run_id}: {self.rt.queues.runs}")

    def settle(self, limit: int = 50) -> None:
        """Deliver every recorded runs-queue message as its last delivery, until none is left."""
        for _ in range(limit):
            if not self.rt.queues.runs:
                return
            body, _ = self.rt.queues.runs.pop(0)
            containment.deliver(self.rt, body, MAX, MAX, plenty)
        raise AssertionError("the runs queue never drained")

    def run(self, run_id: str) -> Run:
        return self.rt.store.get_run(self.tenant, run_id)

    def events(self, run_id: str) -> list[dict]:
        return [{"type": e.type, **e.data} for e in self.rt.store.list_events(self.tenant, run_id, 0)]


@pytest.fixture
def tenant(offline_rt, workspace) -> Tenant:
    return Tenant(offline_rt, workspace)


# -- a run handed over by invocation ---------------------------------------------------------------
def test_given_a_driver_bug_when_a_run_is_handed_over_by_invocation_then_it_raises_and_its_record_is_contained(
        tenant, driver_bug, monkeypatch):
    """The invocation fails (Lambda sends it to the runs queue); the queue's deliveries of Lambda's
    record are counted and contained like any message's."""
    monkeypatch.setenv("A3S_MAX_RECEIVE_COUNT", str(MAX))
    run_driver = load_handler("run_driver", tenant.rt, monkeypatch)
    run_id, advance = tenant.start(f"{BUG} hello")
    with pytest.raises(KeyError):
        run_driver(advance)  # the event of an asynchronous invocation is the message itself
    assert tenant.run(run_id).status == "running"

    failed = json.dumps({"version": "1.0", "requestContext": {"condition": "RetriesExhausted"},
                         "requestPayload": advance, "responsePayload": {"errorType": "KeyError"}})
    tenant.rt.clock.advance(tenant.rt.settings.lease_seconds * 1000)
    assert delivered(run_driver, record(failed, 1)) == "redelivered"
    tenant.rt.clock.advance(tenant.rt.settings.lease_seconds * 1000)
    assert delivered(run_driver, record(failed, MAX)) == "consumed"
    assert (tenant.run(run_id).status, tenant.run(run_id).stop_reason) == ("failed", "internal_error")


def test_given_an_invocation_whose_event_is_no_message_then_it_is_dropped_not_failed(tenant, monkeypatch):
    run_driver = load_handler("run_driver", tenant.rt, monkeypatch)
    assert run_driver({"kind": "teleport", "tenant": tenant.tenant}) is None  # nothing for Lambda to retry
    assert tenant.rt.queues.runs == []


# -- the last delivery of a message that keeps failing ----------------------------------------------
def test_given_a_driver_bug_on_every_delivery_then_the_last_one_fails_the_run_with_internal_error(
        tenant, driver_bug, monkeypatch):
    monkeypatch.setenv("A3S_MAX_RECEIVE_COUNT", str(MAX))
    run_driver = load_handler("run_driver", tenant.rt, monkeypatch)
    run_id, advance = tenant.start(f"{BUG} hello")

    lease_ms = tenant.rt.settings.lease_seconds * 1000
    for count in range(1, MAX):
        assert delivered(run_driver, record(advance, count)) == "redelivered"
        assert tenant.run(run_id).status == "running"
        tenant.rt.clock.advance(lease_ms)  # the next delivery comes a visibility timeout later
    assert delivered(run_driver, record(advance, MAX)) == "consumed"

    run = tenant.run(run_id)
    assert (run.status, run.stop_reason) == ("failed", "internal_error")
    assert "KeyError" in run.error and "a bug in the driver" in run.error and f"{MAX} deliveries" in run.error
    assert run.lease_owner is None
    ends = [e for e in tenant.events(run_id) if e["type"] == "run_end"]
    assert ends == [{"type": "run_end", "status": "failed", "stop_reason": "internal_error", "text": "",
                     "error": run.error}]
    # A straggler copy changes nothing.
    assert delivered(run_driver, record(advance, MAX + 1)) == "consumed"
    assert tenant.run(run_id).version == run.version


def test_given_no_max_receive_count_configured_then_failures_are_always_redelivered(tenant, driver_bug, monkeypatch):
    monkeypatch.delenv("A3S_MAX_RECEIVE_COUNT", raising=False)
    run_driver = load_handler("run_driver", tenant.rt, monkeypatch)
    run_id, advance = tenant.start(f"{BUG} hello")

    assert delivered(run_driver, record(advance, 50)) == "redelivered"
    assert tenant.run(run_id).status == "running"  # the runs DLQ's consumer is the backstop then


def test_given_a_live_driver_holding_the_lease_on_the_last_delivery_then_the_run_is_not_failed(
        tenant, monkeypatch):
    monkeypatch.setenv("A3S_MAX_RECEIVE_COUNT", str(MAX))
    run_driver = load_handler("run_driver", tenant.rt, monkeypatch)
    run_id, advance = tenant.start("hello")
    held = tenant.rt.store.acquire_run(tenant.tenant, run_id, "drv-live", tenant.rt.clock(), 60_000)

    assert delivered(run_driver, record(advance, 2)) == "redelivered"
    assert delivered(run_driver, record(advance, MAX)) == "consumed"  # Busy: the live driver carries on

    run = tenant.run(run_id)
    assert (run.status, run.lease_owner, run.version) == ("running", "drv-live", held.version)


def test_given_a_message_that_is_not_json_then_it_is_dropped_at_once(tenant, monkeypatch):
    monkeypatch.setenv("A3S_MAX_RECEIVE_COUNT", str(MAX))
    run_driver = load_handler("run_driver", tenant.rt, monkeypatch)

    assert delivered(run_driver, record("{not json", 1)) == "consumed"
    assert delivered(run_driver, record("[1, 2]", 1)) == "consumed"


def test_given_a_child_run_with_a_driver_bug_then_its_step_settles_and_the_delegating_parent_finishes(
        tenant, driver_bug):
    task = {"agent": "general", "prompt": f"{BUG} child"}
    parent_id, advance = tenant.start("delegate\n/tool task " + json.dumps(task))
    containment.deliver(tenant.rt, advance, 1, MAX, plenty)
    assert tenant.run(parent_id).status == "waiting"

    tenant.settle()

    [child_id] = [r.run_id for r in tenant.rt.store.list_runs(tenant.tenant, tenant.sid) if r.parent]
    child = tenant.run(child_id)
    assert (child.status, child.stop_reason) == ("failed", "internal_error")
    [workflow_id] = tenant.run(parent_id).children
    view = workflows.view(tenant.rt, tenant.tenant, workflow_id)
    assert view["status"] == "failed" and view["outcomes"][0]["error"] == child.error
    parent = tenant.run(parent_id)
    assert parent.status == "succeeded" and parent.text.splitlines()[1].startswith("task -> Task failed")
    [result] = [m["content"] for m in parent.messages if m["role"] == "tool"]
    assert "internal_error" not in result and "KeyError: 'a bug in the driver'" in result  # what the model read


def test_given_a_workflow_start_that_keeps_failing_then_the_workflow_fails_and_the_parent_finishes(
        tenant, monkeypatch):
    parent_id, advance = tenant.start("delegate\n/tool task " + json.dumps({"agent": "general", "prompt": "x"}))

    def broken_kick(rt, tenant_, workflow_id):
        raise RuntimeError("cannot launch")

    monkeypatch.setattr(workflows, "kick", broken_kick)
    containment.deliver(tenant.rt, advance, 1, MAX, plenty)
    start = tenant.take("workflow_start")
    with pytest.raises(RuntimeError):
        containment.deliver(tenant.rt, start, MAX - 1, MAX, plenty)
    report = containment.deliver(tenant.rt, start, MAX, MAX, plenty)

    assert report["action"] == "failed_workflow" and "RuntimeError: cannot launch" in report["error"]
    [workflow_id] = tenant.run(parent_id).children
    assert tenant.rt.store.get_workflow(tenant.tenant, workflow_id).status == "failed"
    tenant.settle()  # the parent was woken
    parent = tenant.run(parent_id)
    assert parent.status == "succeeded" and "task -> Task failed" in parent.text


def test_given_a_task_timeout_that_keeps_failing_then_the_waiting_run_fails(tenant, monkeypatch):
    tenant.svc.set_lane(tenant.sid, "execute", LaneHandlerBody(mode="external", timeout_ms=1000))
    run_id, advance = tenant.start("ext\n/tool bash " + json.dumps({"command": "make"}))
    containment.deliver(tenant.rt, advance, 1, MAX, plenty)
    timer = tenant.take("task_timeout")

    def broken_expire_task(*args):
        raise OSError("store unreachable")

    monkeypatch.setattr(dispatch, "expire_task", broken_expire_task)

    containment.deliver(tenant.rt, timer, MAX, MAX, plenty)

    run = tenant.run(run_id)
    assert (run.status, run.stop_reason) == ("failed", "internal_error") and "store unreachable" in run.error
    assert tenant.rt.store.list_pending_tasks(tenant.tenant, tenant.sid) == []  # its task was cancelled


# -- the runs DLQ: a message whose last delivery died before it could contain anything ---------------
def test_given_a_dead_lettered_message_of_a_run_whose_driver_died_then_the_run_fails(tenant, monkeypatch):
    runs_dlq = load_handler("runs_dlq", tenant.rt, monkeypatch)
    run_id, advance = tenant.start("hello")
    tenant.rt.store.acquire_run(tenant.tenant, run_id, "drv-dead", tenant.rt.clock(), 1_000)
    tenant.rt.clock.advance(2_000)  # the lease of the driver that died has run out

    assert delivered(runs_dlq, record(advance, MAX + 1, "RunsDLQ")) == "consumed"

    run = tenant.run(run_id)
    assert (run.status, run.stop_reason) == ("failed", "internal_error")
    assert "dead-letter" in run.error
    assert [e["type"] for e in tenant.events(run_id)][-1] == "run_end"


@pytest.mark.parametrize("state", ["live lease", "waiting", "succeeded"])
def test_given_a_dead_lettered_message_of_a_run_that_is_fine_then_it_is_left_alone(tenant, monkeypatch, state):
    runs_dlq = load_handler("runs_dlq", tenant.rt, monkeypatch)
    run_id, advance = tenant.start("hello")
    if state == "live lease":
        tenant.rt.store.acquire_run(tenant.tenant, run_id, "drv-live", tenant.rt.clock(), 60_000)
    else:
        run = tenant.rt.store.acquire_run(tenant.tenant, run_id, "drv", tenant.rt.clock(), 60_000)
        run.status = state
        tenant.rt.store.save_run(run, [])
    before = tenant.run(run_id)

    assert delivered(runs_dlq, record(advance, MAX + 1, "RunsDLQ")) == "consumed"

    after = tenant.run(run_id)
    assert (after.status, after.version) == (before.status, before.version)


def test_given_a_dead_lettered_workflow_start_then_the_workflow_fails(tenant, monkeypatch):
    runs_dlq = load_handler("runs_dlq", tenant.rt, monkeypatch)
    started = workflows.start(tenant.rt, tenant.tenant, tenant.sid, "parallel",
                              [{"task_id": "a", "agent": "general", "prompt": "x"}], 2)
    start = tenant.take("workflow_start")

    assert delivered(runs_dlq, record(start, MAX + 1, "RunsDLQ")) == "consumed"

    assert tenant.rt.store.get_workflow(tenant.tenant, started["workflow_id"]).status == "failed"


# -- the sweeper: a bounded number of re-drives ------------------------------------------------------
@pytest.fixture
def memory_rt(offline_rt) -> Runtime:
    """The in-memory store, so a sweep sees only this test's runs (with the same movable clock)."""
    settings = Settings(table="t", runs_queue_url="q", lane_queue_urls={}, lease_seconds=4)
    return Runtime(settings=settings, store=MemoryStore(), queues=MemoryQueues(), clock=type(offline_rt.clock)())


def test_given_a_run_whose_message_keeps_getting_lost_then_the_sweeper_redrives_it_a_bounded_number_of_times(
        memory_rt, workspace):
    rt = memory_rt
    rt.store.create_session(Session(tenant="t1", session_id="s1", workspace=str(workspace)))
    rt.store.create_run(Run(tenant="t1", run_id="r1", session_id="s1", prompt="p", model="scripted",
                            workspace=str(workspace), updated_at=rt.clock()))
    stale_after = rt.settings.lease_seconds * 1000 + STALE_GRACE_MS + 1

    sent = []
    for _ in range(MAX_REDRIVES):
        rt.clock.advance(stale_after)
        assert sweep(rt)["redriven_runs"] == 1
        sent += [body for body, _ in rt.queues.runs]
        rt.queues.runs.clear()  # and lost again
    assert sent == [{"kind": "advance", "tenant": "t1", "run_id": "r1"}] * MAX_REDRIVES
    assert sweep(rt)["redriven_runs"] == 0  # not stale again yet

    rt.clock.advance(stale_after)
    assert sweep(rt) == {"expired_tasks": 0, "redriven_runs": 0, "failed_runs": 1}

    run = rt.store.get_run("t1", "r1")
    assert (run.status, run.stop_reason) == ("failed", "internal_error") and "re-driven" in run.error
    assert rt.queues.runs == []
    rt.clock.advance(stale_after)
    assert sweep(rt) == {"expired_tasks": 0, "redriven_runs": 0, "failed_runs": 0}


def test_given_a_stale_run_whose_driver_holds_a_live_lease_then_the_sweeper_does_not_fail_it(memory_rt, workspace):
    rt = memory_rt
    rt.store.create_session(Session(tenant="t1", session_id="s1", workspace=str(workspace)))
    rt.store.create_run(Run(tenant="t1", run_id="r1", session_id="s1", prompt="p", model="scripted",
                            workspace=str(workspace), updated_at=rt.clock(), redrives=MAX_REDRIVES))
    rt.clock.advance(rt.settings.lease_seconds * 1000 + STALE_GRACE_MS + 1)
    rt.store.acquire_run("t1", "r1", "drv-live", rt.clock(), 60_000)

    assert sweep(rt)["failed_runs"] == 0
    assert rt.store.get_run("t1", "r1").status == "running"


