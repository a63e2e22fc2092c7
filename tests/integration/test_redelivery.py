"""At-least-once delivery, at the run-driver level on the moto-backed store: a message delivered
twice, or a driver that dies mid-turn, never runs a tool or a model turn twice: every handler is
idempotent, and an invocation that dies is replayed from the last checkpoint (docs/design.md)."""
from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from a3s_core.api.schemas import CompleteTaskBody, CreateSessionBody, LaneHandlerBody, StartRunBody
from a3s_core.api.service import Service
from a3s_core.engine import driver
from a3s_core.engine.dispatch import Busy, handle_message
from a3s_core.llm.registry import MODEL_FACTORIES
from a3s_core.llm.scripted import ScriptedModel
from a3s_core.tools.sandbox import LocalSandbox
from a3s_serverless import RunFailed

APPEND = "echo line >> log.txt; echo appended"


def plenty() -> int:
    return 60_000  # remaining Lambda time: never close to a handoff here


def record(body: dict, message_id: str | None = None) -> dict:
    """One SQS record as Lambda's event source mapping hands it to run_driver."""
    return {"messageId": message_id or str(uuid.uuid4()), "receiptHandle": secrets.token_hex(8),
            "body": json.dumps(body), "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
            "md5OfBody": "", "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:RunsQueue", "awsRegion": "us-east-1"}


def lines(workspace: Path) -> int:
    log = workspace / "log.txt"
    return len(log.read_text().splitlines()) if log.exists() else 0


class Fixture:
    """A tenant of its own, a session on `workspace`, and the runs it starts (messages recorded)."""

    def __init__(self, rt, workspace: Path, **lane) -> None:
        self.rt, self.tenant = rt, workspace.parent.name  # its workspace lies under its own root
        self.svc = Service(rt, self.tenant)
        self.sid = self.svc.create_session(CreateSessionBody(workspace=str(workspace), permissive=True))["session_id"]
        if lane:
            self.svc.set_lane(self.sid, "execute", LaneHandlerBody(**lane))

    def start(self, prompt: str) -> tuple[str, dict]:
        run_id = self.svc.start_run(self.sid, StartRunBody(prompt=prompt))["run_id"]
        return run_id, self.take_runs_message("advance")

    def take_runs_message(self, kind: str) -> dict:
        [found] = [(i, body) for i, (body, _) in enumerate(self.rt.queues.runs) if body["kind"] == kind]
        del self.rt.queues.runs[found[0]]
        return found[1]

    def run(self, run_id: str):
        return self.rt.store.get_run(self.tenant, run_id)

    def event_types(self, run_id: str) -> list[str]:
        return [e.type for e in self.rt.store.list_events(self.tenant, run_id, 0)]


# -- duplicated messages ---------------------------------------------------------------------------
def test_given_the_same_advance_message_twice_in_one_batch_when_run_driver_handles_it_then_the_tool_runs_once(
        stack, offline_rt, workspace):
    fx = Fixture(offline_rt, workspace)
    run_id, advance = fx.start("dup\n/tool bash " + json.dumps({"command": APPEND}))
    run_driver = stack.functions["RunDriverFunction"]

    out = run_driver.invoke({"Records": [record(advance, "m-1"), record(advance, "m-1")]})

    assert out == {"batchItemFailures": []}
    assert lines(workspace) == 1
    run = fx.run(run_id)
    assert (run.status, run.text) == ("succeeded", "echo: dup\nbash -> appended")
    types = fx.event_types(run_id)
    assert types.count("tool_start") == 1 and types.count("run_end") == 1

    # A straggler copy delivered long after the run ended changes nothing either.
    handle_message(offline_rt, advance, plenty)
    assert lines(workspace) == 1 and fx.event_types(run_id) == types


def test_given_two_copies_of_an_advance_message_delivered_at_once_then_one_driver_runs_the_tool_and_the_other_backs_off(
        offline_rt, workspace):
    fx = Fixture(offline_rt, workspace)
    # The tool holds the first driver until the test lets it go: the second copy arrives while the
    # first one's lease is live, whatever the machine's speed.
    hold = "echo line >> log.txt; while [ ! -f go ]; do sleep 0.01; done; echo ok"
    run_id, advance = fx.start("dup\n/tool bash " + json.dumps({"command": hold}))
    outcomes: list[str] = []
    first = threading.Thread(target=lambda: (handle_message(offline_rt, advance, plenty), outcomes.append("done")))
    first.start()
    deadline = time.monotonic() + 60
    while not lines(workspace):
        assert time.monotonic() < deadline, "the first driver never started the tool"
        time.sleep(0.01)
    with pytest.raises(Busy, match=run_id):  # SQS delivers this copy again later
        handle_message(offline_rt, advance, plenty)
    (workspace / "go").touch()
    first.join(timeout=60)
    assert outcomes == ["done"]
    handle_message(offline_rt, advance, plenty)  # the redelivery of the copy that backed off
    assert lines(workspace) == 1
    assert fx.run(run_id).status == "succeeded"
    assert fx.event_types(run_id).count("tool_start") == 1


def test_given_a_run_waiting_on_a_task_when_advance_and_wake_messages_are_duplicated_then_it_resumes_once(
        offline_rt, workspace):
    fx = Fixture(offline_rt, workspace, mode="external", timeout_ms=300000)
    run_id, advance = fx.start("ext\n/tool bash " + json.dumps({"command": "make"}))
    handle_message(offline_rt, advance, plenty)
    assert fx.run(run_id).status == "waiting"
    [task] = offline_rt.store.list_pending_tasks(fx.tenant, fx.sid)
    before = fx.event_types(run_id)

    handle_message(offline_rt, advance, plenty)  # a duplicate of the first advance
    assert fx.run(run_id).status == "waiting"
    assert [t.task_id for t in offline_rt.store.list_pending_tasks(fx.tenant, fx.sid)] == [task.task_id]
    assert fx.event_types(run_id) == before
    assert len(offline_rt.queues.lanes) == 1  # one lane message for the one task

    assert fx.svc.complete_task(fx.sid, task.task_id, CompleteTaskBody(success=True, result={"output": "built"}))
    assert not fx.svc.complete_task(fx.sid, task.task_id, CompleteTaskBody(success=True, result={"output": "again"}))
    wake = fx.take_runs_message("advance")  # exactly one wake-up was sent
    handle_message(offline_rt, wake, plenty)
    handle_message(offline_rt, wake, plenty)

    run = fx.run(run_id)
    assert (run.status, run.text) == ("succeeded", "echo: ext\nbash -> built")
    types = fx.event_types(run_id)
    assert types.count("external_task_completed") == 1 and types.count("run_end") == 1
    assert types.count("turn_start") == 2
    assert [body["kind"] for body, _ in offline_rt.queues.runs] == ["task_timeout"]


def test_given_a_task_timeout_message_delivered_twice_then_the_task_expires_once_and_the_run_wakes_once(
        offline_rt, workspace):
    fx = Fixture(offline_rt, workspace, mode="external", timeout_ms=1000)
    run_id, advance = fx.start("slow\n/tool bash " + json.dumps({"command": "make"}))
    handle_message(offline_rt, advance, plenty)
    timeout = fx.take_runs_message("task_timeout")

    handle_message(offline_rt, timeout, plenty)  # delivered before its deadline: re-armed, nothing expires
    [task] = offline_rt.store.list_pending_tasks(fx.tenant, fx.sid)
    rearmed = fx.take_runs_message("task_timeout")
    assert rearmed["task_id"] == task.task_id and offline_rt.queues.runs == []

    offline_rt.clock.advance(2_000)
    handle_message(offline_rt, timeout, plenty)
    handle_message(offline_rt, rearmed, plenty)
    assert offline_rt.store.get_task(fx.tenant, fx.sid, task.task_id).status == "timed_out"
    wake = fx.take_runs_message("advance")  # one wake-up, though two messages fired
    assert offline_rt.queues.runs == []
    handle_message(offline_rt, wake, plenty)
    run = fx.run(run_id)
    assert run.status == "succeeded" and "timed out" in run.text.splitlines()[1]
    assert fx.event_types(run_id).count("external_task_completed") == 1


def _completed_unwoken(offline_rt, workspace, prompt: str) -> tuple[Fixture, str, dict]:
    """A run suspended on one external task, the task completed and the run not woken (as if the
    completing API invocation died right after its write): the fixture, the run, the task's timer."""
    fx = Fixture(offline_rt, workspace, mode="external", timeout_ms=1000)
    run_id, advance = fx.start(prompt + "\n/tool bash " + json.dumps({"command": "make"}))
    handle_message(offline_rt, advance, plenty)
    timer = fx.take_runs_message("task_timeout")
    [task] = offline_rt.store.list_pending_tasks(fx.tenant, fx.sid)
    assert offline_rt.store.finish_task(fx.tenant, fx.sid, task.task_id, "completed", offline_rt.clock(),
                                        result={"output": "built"})
    assert fx.run(run_id).status == "waiting"
    return fx, run_id, timer


def test_given_a_completion_whose_wake_up_was_lost_when_the_tasks_timer_fires_then_the_run_still_resumes(
        offline_rt, workspace):
    fx, run_id, timer = _completed_unwoken(offline_rt, workspace, "lost")

    offline_rt.clock.advance(2_000)
    handle_message(offline_rt, timer, plenty)  # the task's own timer is the backstop that is left
    wakes = [body for body, _ in offline_rt.queues.runs if body["kind"] == "advance"]
    assert wakes, "nothing woke the run"
    handle_message(offline_rt, wakes[0], plenty)
    run = fx.run(run_id)
    assert (run.status, run.text) == ("succeeded", "echo: lost\nbash -> built")


def test_given_a_task_whose_run_has_ended_when_its_timer_fires_then_it_reads_the_run_and_writes_nothing(
        offline_rt, workspace, monkeypatch):
    fx, run_id, timer = _completed_unwoken(offline_rt, workspace, "done")
    assert offline_rt.wake(fx.tenant, run_id)  # this time the wake-up came
    handle_message(offline_rt, fx.take_runs_message("advance"), plenty)
    assert fx.run(run_id).status == "succeeded"

    # The timer fires later, as every task's does: its run has moved on, so no wake is tried (a
    # failed conditional write is billed as a write, by the size of the run's item).
    wakes: list = []
    monkeypatch.setattr(offline_rt.store, "wake_run", lambda *a, **k: wakes.append(a) or False)
    offline_rt.clock.advance(2_000)
    handle_message(offline_rt, timer, plenty)
    assert wakes == [] and offline_rt.queues.runs == []


# -- a driver that dies mid-turn -------------------------------------------------------------------
class SimulatedCrash(BaseException):
    """Like a Lambda killed at its timeout: nothing below the handler gets to clean up."""


MODEL_CALLS: Counter = Counter()
CRASH_ON_CALL: dict[str, int] = {}


class CountingModel:
    """The scripted model, counting its calls per model id, and crashing on one call if told."""

    def __init__(self, key: str) -> None:
        self.key = key

    def complete(self, messages, tools, system=None, *, output_schema=None):
        MODEL_CALLS[self.key] += 1
        if CRASH_ON_CALL.get(self.key) == MODEL_CALLS[self.key]:
            raise SimulatedCrash(f"driver died during model call {MODEL_CALLS[self.key]}")
        return ScriptedModel().complete(messages, tools, system, output_schema=output_schema)


@pytest.fixture
def counted(monkeypatch):
    monkeypatch.setitem(MODEL_FACTORIES, "counted", lambda model_id: CountingModel(f"counted/{model_id}"))
    return lambda: f"counted/{secrets.token_hex(4)}"


def finished_run(agent, stack, tmp_path: Path, name: str, model: str):
    workspace = tmp_path / name
    workspace.mkdir()
    session = agent.session(str(workspace), permissive=True, model=model)
    handle = session.send_async("crash test\n/tool bash " + json.dumps({"command": APPEND}))
    result = handle.wait(timeout=45)
    events = list(handle.events())
    view = stack.transport().request("GET", f"/runs/{handle.run_id}")
    return workspace, result, events, view


def assert_same_as_clean(result, view, clean_result, clean_view, events, tool_starts: int = 1) -> None:
    assert result.text == clean_result.text == "echo: crash test\nbash -> appended"
    assert (view["turns"], view["prompt_tokens"], view["completion_tokens"], view["tool_calls_count"]) == \
        (clean_view["turns"], clean_view["prompt_tokens"], clean_view["completion_tokens"],
         clean_view["tool_calls_count"])
    assert [e["turn"] for e in events if e["type"] == "turn_start"] == [1, 2]
    types = [e["type"] for e in events]
    assert (types.count("tool_start"), types.count("tool_end")) == (tool_starts, 1)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_given_a_driver_that_dies_before_the_tool_runs_when_sqs_redelivers_then_the_run_finishes_without_a_second_model_turn(
        agent, stack_as_configured, tmp_path, monkeypatch, counted):
    stack = stack_as_configured
    clean_model, crash_model = counted(), counted()
    _, clean, clean_events, clean_view = finished_run(agent, stack, tmp_path, "clean", clean_model)

    crashes: list[str] = []
    real_run_tool = LocalSandbox.run_tool  # bash runs in the (local) sandbox

    def dying_run_tool(self, tenant, name, arguments, workspace):
        if not crashes and name == "bash" and arguments.get("command") == APPEND:
            crashes.append(name)
            raise SimulatedCrash("driver died after the model turn was checkpointed")
        return real_run_tool(self, tenant, name, arguments, workspace)

    monkeypatch.setattr(LocalSandbox, "run_tool", dying_run_tool)
    workspace, result, events, view = finished_run(agent, stack, tmp_path, "crash-ws", crash_model)

    assert crashes == ["bash"]  # the first invocation did die
    assert lines(workspace) == 1  # the side effect happened once
    assert MODEL_CALLS[crash_model] == MODEL_CALLS[clean_model] == 2  # turn 1 was not asked again
    # The stream shows the start that died and the one that finished; the tool ended once.
    assert_same_as_clean(result, view, clean, clean_view, events, tool_starts=2)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_given_a_driver_that_dies_after_the_tool_ran_when_sqs_redelivers_then_the_tool_is_not_run_again(
        agent, stack_as_configured, tmp_path, counted):
    stack = stack_as_configured
    clean_model, crash_model = counted(), counted()
    _, clean, _, clean_view = finished_run(agent, stack, tmp_path, "clean", clean_model)

    CRASH_ON_CALL[crash_model] = 2  # dies in turn 2, after turn 1's tool result was checkpointed
    workspace, result, events, view = finished_run(agent, stack, tmp_path, "crash-ws", crash_model)

    assert lines(workspace) == 1  # the replay did not run bash again
    assert MODEL_CALLS[clean_model] == 2
    assert MODEL_CALLS[crash_model] == 3  # turn 2 was asked again (it never finished), turn 1 was not
    assert_same_as_clean(result, view, clean, clean_view, events)


# -- poison messages -------------------------------------------------------------------------------
@pytest.mark.slow
def test_given_a_run_whose_every_delivery_fails_then_the_last_one_fails_the_run_and_no_queue_keeps_it(
        agent, workspace, stack_as_configured, monkeypatch):
    stack = stack_as_configured
    real = driver._Turns.model_turn

    def buggy(self, injections):
        if self.run.prompt.startswith("#poison"):
            raise RuntimeError("poisoned")
        return real(self, injections)

    monkeypatch.setattr(driver._Turns, "model_turn", buggy)
    # SQS redelivers the message after each visibility timeout (5 s here); its MaxReceiveCount-th
    # delivery (the template passes the count to the run driver) fails the run instead of raising.
    handle = agent.session(str(workspace)).send_async("#poison")
    with pytest.raises(RunFailed) as err:
        handle.wait(timeout=60)

    count = stack.model.parameters["MaxReceiveCount"]
    assert err.value.result.stop_reason == "internal_error"
    assert err.value.result.error == f"internal error after {count} deliveries: RuntimeError: poisoned"
    stack.wait_idle(timeout=30)  # and it is gone from the runs queue, without a trip to the DLQ
