"""Delegation tools: task, parallel_task, run_team; nesting refused; long output cut."""
from __future__ import annotations

import dataclasses
import json
import time

import pytest

from a3s_core.llm.base import ModelResponse, ToolCall, Usage
from a3s_core.llm.registry import MODEL_FACTORIES


def tool(name: str, args: dict) -> str:
    return f"/tool {name} {json.dumps(args)}"


def tool_output(session, prompt: str) -> str:
    """What the parent's model got back from its (single) tool call."""
    handle = session.send_async(prompt)
    ends = [e for e in handle.events() if e["type"] == "tool_end"]
    handle.wait(timeout=60)
    return ends[-1]["output"]


def test_given_a_task_call_then_the_child_runs_with_its_own_conversation_and_the_parent_gets_its_result(
        agent, workspace):
    session = agent.session(str(workspace), permissive=True)
    result = session.send("delegate\n" + tool("task", {"agent": "explore", "prompt": "look around\n/tool ls {}"}))
    line = result.text.splitlines()[1]
    assert line.startswith("task -> Task completed (agent=explore, task_id=") and "run_id=run-" in line
    children = [r for r in agent.orchestrator().list(session.session_id) if r["parent"]]
    assert [(c["agent"], c["status"]) for c in children] == [("explore", "succeeded")]
    assert children[0]["text"].startswith("echo: look around\nls -> ")  # its own conversation


def test_given_an_unknown_agent_then_the_task_fails_and_the_model_is_told_why(agent, workspace):
    session = agent.session(str(workspace), permissive=True)
    text = tool_output(session, "delegate\n" + tool("task", {"agent": "wizard", "prompt": "x"}))
    assert text.startswith("Task failed") and "unknown agent 'wizard'" in text


def test_given_a_background_task_then_the_tool_returns_at_once_and_the_outcome_arrives_later(
        agent, workspace, stack):
    session = agent.session(str(workspace), permissive=True)
    text = tool_output(session, "bg\n" + tool("task", {"agent": "general", "prompt": "slow\n/sleep 300",
                                                       "background": True}))
    assert "Task started in background" in text
    workflow_id = text.split("workflow_id=")[1].split(")")[0]
    view = session._orch.wait(workflow_id, total=1)
    assert view["done"] and view["outcomes"][0]["success"] and view["outcomes"][0]["output"] == "echo: slow"


@pytest.mark.parametrize("partial,expected", [(False, "parallel_task failed: 1 of 2"),
                                              (True, "parallel_task succeeded: 1 of 2")])
def test_given_one_failing_child_then_parallel_task_succeeds_only_if_partial_failure_is_allowed(
        agent, workspace, partial, expected):
    session = agent.session(str(workspace), permissive=True)
    args = {"tasks": [{"agent": "general", "prompt": "ok"}, {"agent": "general", "prompt": "no\n/fail broken"}],
            "allow_partial_failure": partial, "min_success_count": 1}
    text = tool_output(session, "fan\n" + tool("parallel_task", args))
    assert expected in text and "Task failed" in text and "broken" in text


def children_of(agent, session) -> dict[str, dict]:
    """The session's child runs by their step key ("000000" is the first task)."""
    return {r["parent"]["key"]: r for r in agent.orchestrator().list(session.session_id) if r["parent"]}


def test_given_a_timeout_beyond_15_minutes_then_it_is_chained_and_at_its_deadline_unfinished_children_are_cancelled(
        agent, workspace, stack, api, events):
    from a3s_core.engine import workflows
    from a3s_core.engine.queues import MemoryQueues

    session = agent.session(str(workspace), permissive=True)
    # The slow child waits on an external task nobody completes. The timeout is 20 minutes: its
    # timer cannot fire during the test, and the test moves a clock of its own to the deadline.
    session.set_lane_handler("execute", "external", 3_600_000)
    args = {"tasks": [{"agent": "general", "prompt": "quick"},
                      {"agent": "general", "prompt": "slow\n" + tool("bash", {"command": "make"})}],
            "timeout_ms": 1_200_000}
    handle = session.send_async("fan\n" + tool("parallel_task", args))
    workflow_id = events.wait_for(handle.run_id, "subagent_start")["workflow_id"]
    deadline = time.monotonic() + 60
    while not (api.call("GET", f"/workflows/{workflow_id}")[1]["finished"] == 1
               and session.pending_external_tasks()):
        assert time.monotonic() < deadline, "the quick child did not finish, or the slow one did not wait"
        time.sleep(0.05)
    slow_run = children_of(agent, session)["000001"]["run_id"]

    wf = stack.runtime.store.get_workflow("local", workflow_id)
    timers = MemoryQueues()
    # Five minutes before the deadline (the first timer fired after SQS's longest delay, 15 minutes):
    # nothing is cancelled, another timer is chained for the rest.
    workflows.expire(dataclasses.replace(stack.runtime, clock=lambda: wf.deadline - 300_000, queues=timers),
                     "local", workflow_id)
    assert timers.runs == [({"kind": "workflow_timeout", "tenant": "local", "workflow_id": workflow_id}, 300)]
    assert api.call("GET", f"/workflows/{workflow_id}")[1]["status"] == "running"
    assert handle.status() == "waiting"

    workflows.expire(dataclasses.replace(stack.runtime, clock=lambda: wf.deadline), "local", workflow_id)
    ends = [e for e in handle.events() if e["type"] == "tool_end"]
    assert handle.wait(timeout=60).status == "succeeded"
    text = ends[-1]["output"]
    assert text.startswith("parallel_task failed: 1 of 2 tasks succeeded")
    assert "--- [1] Task completed" in text and "echo: quick" in text
    # The slow step counts as failed: unsettled when the parent reads the outcomes, or settled as
    # cancelled if its child's cancellation got there first.
    second = text.split("--- [2] ")[1]
    assert second.startswith("Task failed") and ("did not finish (timed out or cancelled)" in second
                                                  or second.endswith("\ncancelled by request"))
    assert events.wait_for(slow_run, "run_end")["status"] == "cancelled"
    children = children_of(agent, session)
    assert (children["000000"]["status"], children["000001"]["status"]) == ("succeeded", "cancelled")
    assert api.call("GET", f"/workflows/{workflow_id}")[1]["status"] == "timed_out"
    assert session.pending_external_tasks() == []  # the slow child's task was cancelled with it


def test_given_a_child_that_tries_to_delegate_then_nesting_is_refused(agent, workspace):
    session = agent.session(str(workspace), permissive=True)
    inner = tool("task", {"agent": "general", "prompt": "deeper"})
    text = tool_output(session, "outer\n" + tool("task", {"agent": "general", "prompt": "inner\n" + inner}))
    assert "task -> task is not available to subagents (no nesting)" in text


class HugeChildModel:
    """Top level: delegates one task, then records the tool result it is given. The child answers
    with 58,000 characters: 4,000 "A", 50,000 "M", 4,000 "Z"."""

    seen: list[str] = []

    def complete(self, messages, tools, system=None, *, output_schema=None):
        if messages[0]["content"] == "produce":
            return ModelResponse("A" * 4000 + "M" * 50_000 + "Z" * 4000, usage=Usage(1, 1))
        if messages[-1]["role"] == "tool":
            self.seen.append(messages[-1]["content"])
            return ModelResponse("done", usage=Usage(1, 1))
        return ModelResponse("", [ToolCall("c1", "task", {"agent": "general", "prompt": "produce"})],
                             Usage(1, 1), "tool_use")


def test_given_a_huge_child_output_then_the_tool_result_keeps_head_and_tail_and_names_the_full_text(
        agent, workspace, monkeypatch):
    monkeypatch.setitem(MODEL_FACTORIES, "huge", lambda _: HugeChildModel())
    monkeypatch.setattr(HugeChildModel, "seen", [])
    session = agent.session(str(workspace), model="huge/1", permissive=True)
    assert session.send("delegate").text == "done"
    [child] = [r for r in agent.orchestrator().list(session.session_id) if r["parent"]]
    run_id = child["run_id"]
    assert session._t.request("GET", f"/runs/{run_id}")["text"] == "A" * 4000 + "M" * 50_000 + "Z" * 4000
    assert HugeChildModel.seen == [
        f"Task completed (agent=general, task_id=c1, session_id=task-run-c1, run_id={run_id})\n"
        + "A" * 4000
        + f"\n[... 50000 characters omitted; the full output is run {run_id}'s text (GET /runs/{run_id})]\n"
        + "Z" * 4000]


class TeamModel:
    """Lead: one task. Worker: does it, and heeds feedback. Reviewer: rejects work that lacks
    tests, with that feedback. Top level: calls run_team, then reports."""

    def complete(self, messages, tools, system=None, *, output_schema=None):
        last = next(m for m in reversed(messages) if m["role"] == "user")["content"]
        answered = messages[-1]["role"] == "tool"
        usage = Usage(1, 1)
        if last.startswith("lead the team") and not answered:
            return ModelResponse("", [ToolCall("c1", "run_team", {"goal": "ship auth", "max_rounds": 3})],
                                 usage, "tool_use")
        if last.startswith("lead the team"):
            return ModelResponse("report:\n" + messages[-1]["content"], usage=usage)
        if "Break this goal" in last:
            return ModelResponse(json.dumps({"tasks": [{"id": "auth", "description": "write auth"}]}), usage=usage)
        if "Review the work" in last:
            ok = "with tests" in last
            return ModelResponse(json.dumps({"approved": ok, "feedback": "" if ok else "add tests"}), usage=usage)
        if "rejected your previous attempt" in last and "add tests" in last:
            return ModelResponse("auth written, with tests", usage=usage)
        return ModelResponse("auth written", usage=usage)


def test_given_rejected_work_then_the_feedback_reaches_the_rework_and_the_reviewer_approves_it(
        agent, workspace, monkeypatch):
    monkeypatch.setitem(MODEL_FACTORIES, "team", lambda _: TeamModel())
    session = agent.session(str(workspace), model="team/1", permissive=True)
    text = session.send("lead the team").text
    assert "run_team completed: 1 of 1 tasks approved in 2 round(s)" in text
    assert "auth written, with tests" in text
    agents = [r["agent"] for r in agent.orchestrator().list(session.session_id) if r["parent"]]
    assert sorted(agents) == ["general"] * 5  # lead, worker, reviewer, worker again, reviewer again


def test_given_a_background_task_when_the_parent_goes_on_then_its_end_shows_in_the_parents_history(
        agent, workspace):
    session = agent.session(str(workspace), permissive=True)
    session.set_lane_handler("query", "external", 60000)  # holds the parent at a turn boundary
    prompt = ("bg\n" + tool("task", {"agent": "general", "prompt": "quick", "background": True})
              + '\n/tool ls {}')
    handle = session.send_async(prompt)
    next(e for e in handle.events() if e["type"] == "external_task_pending")
    workflow_id = handle._t.request("GET", f"/runs/{handle.run_id}")["children"][0]
    session._orch.wait(workflow_id, total=1)  # the background child is done
    [task] = session.pending_external_tasks()
    session.complete_external_task(task["task_id"], result={"output": "listed"})
    handle.wait(timeout=30)
    ends = [e for e in handle.events() if e["type"] == "subagent_end" and e.get("background")]
    assert ends and ends[0]["workflow_id"] == workflow_id and ends[0]["output"] == "echo: quick"


@pytest.mark.parametrize("count", [1, 33])
def test_given_fewer_than_2_or_more_than_32_tasks_then_parallel_task_is_refused_and_starts_no_child(
        agent, workspace, count):
    session = agent.session(str(workspace), permissive=True)
    tasks = [{"agent": "general", "prompt": f"t{i}"} for i in range(count)]
    text = tool_output(session, "fan\n" + tool("parallel_task", {"tasks": tasks}))
    assert text == "parallel_task needs between 2 and 32 tasks"
    runs = agent.orchestrator().list(session.session_id)
    assert [r["parent"] for r in runs] == [None] and runs[0]["children"] == []
