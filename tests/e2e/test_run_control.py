"""pause / resume / cancel / inject on runs waiting for tasks and on runs with children."""
from __future__ import annotations

import json
import threading

import pytest

from a3s_core.llm.base import ModelResponse, ToolCall, Usage
from a3s_core.llm.registry import MODEL_FACTORIES
from a3s_serverless import RunFailed
from a3s_serverless.errors import A3SClientError, NotFoundError


def wait_for(handle, type_: str) -> dict:
    return next(e for e in handle.events() if e["type"] == type_)


@pytest.fixture
def external(agent, workspace):
    session = agent.session(str(workspace), permissive=True)
    session.set_lane_handler("execute", "external", 60000)
    return session


def test_given_a_run_waiting_for_a_task_when_paused_then_it_stays_paused_until_resumed(external):
    handle = external.send_async('go\n/tool bash {"command": "x"}')
    wait_for(handle, "external_task_pending")
    handle.pause()
    wait_for(handle, "control_signal_applied")
    assert handle.status() == "paused"
    [task] = external.pending_external_tasks()
    assert external.complete_external_task(task["task_id"], result={"output": "done"})
    assert handle.status() == "paused"  # the completion does not wake a paused run
    handle.resume()
    assert handle.wait(timeout=30).text == "echo: go\nbash -> done"


def test_given_an_injected_prompt_then_the_model_sees_it_on_its_next_turn(external):
    handle = external.send_async('go\n/tool bash {"command": "x"}')
    wait_for(handle, "external_task_pending")
    handle.inject_prompt("also mention the weather")
    [task] = external.pending_external_tasks()
    external.complete_external_task(task["task_id"], result={"output": "done"})
    assert handle.wait(timeout=30).text == "echo: also mention the weather"
    events = list(handle.events())
    assert any(e["type"] == "control_signal_applied" and e["signal"] == "inject" for e in events)


def test_given_a_waiting_run_when_cancelled_then_its_pending_tasks_can_no_longer_be_completed(external):
    handle = external.send_async('go\n/tool bash {"command": "x"}')
    wait_for(handle, "external_task_pending")
    [task] = external.pending_external_tasks()
    handle.cancel()
    with pytest.raises(RunFailed) as err:
        handle.wait(timeout=30)
    assert err.value.result.status == "cancelled"
    assert external.pending_external_tasks() == []
    assert external.complete_external_task(task["task_id"], result={"output": "late"}) is False


def test_given_a_run_with_children_when_cancelled_then_the_cancel_reaches_them(agent, workspace, stack):
    session = agent.session(str(workspace), permissive=True)
    session.set_lane_handler("execute", "external", 60000)
    args = {"tasks": [{"agent": "general", "prompt": 'a\n/tool bash {"command": "a"}'},
                      {"agent": "general", "prompt": 'b\n/tool bash {"command": "b"}'}]}
    handle = session.send_async("fan\n/tool parallel_task " + json.dumps(args))
    while len(session.pending_external_tasks()) < 2:  # both children are waiting on their bash
        next(e for e in handle.events() if e["type"] == "subagent_start")
        stack.wait_idle(timeout=30)
    agent.orchestrator().cancel_agent(handle.run_id)
    with pytest.raises(RunFailed):
        handle.wait(timeout=30)
    stack.wait_idle(timeout=30)
    children = [r for r in agent.orchestrator().list(session.session_id) if r["parent"]]
    assert len(children) == 2 and {c["status"] for c in children} == {"cancelled"}
    assert session.pending_external_tasks() == []


def test_given_a_finished_or_unknown_run_then_control_is_a_clear_4xx(agent, workspace):
    session = agent.session(str(workspace))
    handle = session.send_async("hi")
    handle.wait(timeout=30)
    orch = agent.orchestrator()
    for action in (orch.pause_agent, orch.resume_agent, orch.cancel_agent):
        with pytest.raises(A3SClientError) as err:
            action(handle.run_id)
        assert err.value.status == 409 and "already succeeded" in err.value.message
    with pytest.raises(NotFoundError):
        orch.pause_agent("run-does-not-exist")
    with pytest.raises(ValueError):
        orch.inject_prompt(handle.run_id, "   ")


def test_given_a_run_that_is_not_paused_when_resumed_then_it_is_refused(external):
    handle = external.send_async('go\n/tool bash {"command": "x"}')
    wait_for(handle, "external_task_pending")
    with pytest.raises(A3SClientError) as err:
        handle.resume()
    assert err.value.status == 400 and "not paused" in err.value.message
    handle.cancel()


def test_given_a_resume_that_lands_while_the_driver_is_pausing_then_the_run_is_not_left_paused(
        agent, workspace, monkeypatch):
    from a3s_core.engine import control, driver
    from a3s_core.runtime import get_runtime

    session = agent.session(str(workspace), permissive=True)
    real_release, raced = driver._Turns.release, []

    def release(self, status, **kw):
        if status == "paused" and not raced:  # the resume arrives after the driver read "pause"
            raced.append(control.apply(get_runtime(), self.run.tenant, self.run.run_id, "resume"))
        return real_release(self, status, **kw)

    monkeypatch.setattr(driver._Turns, "release", release)
    handle = session.send_async("slow\n/sleep 300\n/tool ls {}")
    handle.pause()
    assert handle.wait(timeout=30).text.startswith("echo: slow")
    assert raced  # the race happened, and the run still finished


class HeldModel:
    """A model whose first answer waits until the test releases it: the test acts while the run is
    running, inside a model turn. The first answer is `first`; any later one is "done"."""

    def __init__(self, first) -> None:
        self.first, self.entered, self.release, self.turns = first, threading.Event(), threading.Event(), 0

    def complete(self, messages, tools, system=None, *, output_schema=None):
        self.turns += 1
        if self.turns > 1:
            return ModelResponse("done", usage=Usage(1, 1))
        self.entered.set()
        assert self.release.wait(timeout=60), "the test never released the model"
        return self.first


def held(monkeypatch, agent, workspace, first) -> tuple[HeldModel, object, object]:
    model = HeldModel(first)
    monkeypatch.setitem(MODEL_FACTORIES, "held", lambda _: model)
    session = agent.session(str(workspace), model="held/1", permissive=True)
    handle = session.send_async("go")
    assert model.entered.wait(timeout=60), "the model was never asked"
    return model, session, handle


def test_given_a_running_run_when_paused_then_it_stops_at_the_next_turn_boundary_and_resumes_from_there(
        agent, workspace, monkeypatch, events):
    write = ToolCall("c1", "write", {"file_path": "out.txt", "content": "hi"})
    model, session, handle = held(monkeypatch, agent, workspace, ModelResponse("", [write], Usage(1, 1), "tool_use"))
    assert handle.pause()["status"] == "running"  # mid-turn: recorded, applied at the boundary
    model.release.set()
    events.wait_for(handle.run_id, lambda e: e["type"] == "control_signal_applied" and e["signal"] == "pause")
    assert handle.status() == "paused"
    assert not (workspace / "out.txt").exists()  # the turn's tool call waits for the resume
    assert model.turns == 1
    handle.resume()
    assert handle.wait(timeout=60).text == "done"
    assert (workspace / "out.txt").read_text() == "hi" and model.turns == 2
    types = [e["type"] for e in events.all(handle.run_id)]
    assert types.index("control_signal_applied") < types.index("tool_start")


@pytest.mark.parametrize("answer", ["text", "tool call"])
def test_given_a_run_cancelled_while_the_model_answers_then_the_answer_is_not_used(
        agent, workspace, monkeypatch, events, answer):
    write = ToolCall("c1", "write", {"file_path": "out.txt", "content": "hi"})
    first = (ModelResponse("the secret answer", usage=Usage(1, 1)) if answer == "text"
             else ModelResponse("", [write], Usage(1, 1), "tool_use"))
    model, session, handle = held(monkeypatch, agent, workspace, first)
    assert handle.cancel()["status"] == "running"
    model.release.set()
    with pytest.raises(RunFailed) as err:
        handle.wait(timeout=60)
    assert (err.value.result.status, err.value.result.text) == ("cancelled", "")
    assert not (workspace / "out.txt").exists() and model.turns == 1
    last = events.all(handle.run_id)[-1]
    assert (last["type"], last["status"], last["stop_reason"]) == ("run_end", "cancelled", "cancelled")


def test_given_a_run_waiting_for_approval_when_cancelled_then_the_confirm_task_is_cancelled_and_nothing_runs(
        agent, workspace, stack):
    session = agent.session(str(workspace))  # not permissive: the write asks on the control lane first
    session.set_lane_handler("control", "external", 60000)
    handle = session.send_async('go\n/tool write {"file_path": "out.txt", "content": "hi"}')
    wait_for(handle, "external_task_pending")
    [confirm] = session.pending_external_tasks()
    assert (confirm["lane"], confirm["command_type"]) == ("control", "confirm")
    handle.cancel()
    with pytest.raises(RunFailed) as err:
        handle.wait(timeout=60)
    assert err.value.result.status == "cancelled"
    assert stack.runtime.store.get_task("local", session.session_id, confirm["task_id"]).status == "cancelled"
    assert session.pending_external_tasks() == []
    assert session.complete_external_task(confirm["task_id"], result={"approved": True}) is False  # too late
    assert not (workspace / "out.txt").exists()
