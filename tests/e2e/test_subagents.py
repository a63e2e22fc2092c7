"""Delegation tools: task, parallel_task, run_team; nesting refused; long output cut."""
from __future__ import annotations

import json

import pytest

from a3s_core.model import MODEL_FACTORIES, ModelResponse, ToolCall, Usage


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


def test_given_a_timeout_then_unfinished_children_are_cancelled_and_marked_failed(agent, workspace, stack):
    session = agent.session(str(workspace), permissive=True)
    # The slow child waits on an external task nobody completes: it can never finish in time,
    # whatever the machine's speed, while the quick one has the whole timeout to finish.
    session.set_lane_handler("execute", "external", 600_000)
    args = {"tasks": [{"agent": "general", "prompt": "quick"},
                      {"agent": "general", "prompt": "slow\n" + tool("bash", {"command": "make"})}],
            "timeout_ms": 8000}
    text = tool_output(session, "fan\n" + tool("parallel_task", args))
    assert "parallel_task failed: 1 of 2 tasks succeeded" in text
    stack.wait_idle(timeout=30)
    children = {r["text"].split("\n")[0] or r["error"]: r["status"]
                for r in agent.orchestrator().list(session.session_id) if r["parent"]}
    assert children.get("echo: quick") == "succeeded" and "cancelled" in children.values()


def test_given_a_child_that_tries_to_delegate_then_nesting_is_refused(agent, workspace):
    session = agent.session(str(workspace), permissive=True)
    inner = tool("task", {"agent": "general", "prompt": "deeper"})
    text = tool_output(session, "outer\n" + tool("task", {"agent": "general", "prompt": "inner\n" + inner}))
    assert "task -> task is not available to subagents (no nesting)" in text


def test_given_a_huge_child_output_then_the_tool_result_keeps_head_and_tail_and_names_the_full_text(
        agent, workspace):
    from a3s_core.delegation import OUTPUT_HEAD, cut

    text = "A" * OUTPUT_HEAD + "M" * 50_000 + "Z" * OUTPUT_HEAD
    out = cut(text, "run-abc")
    assert out.startswith("A" * OUTPUT_HEAD) and out.endswith("Z" * OUTPUT_HEAD) and "M" not in out
    assert "50000 characters omitted; the full output is run run-abc's text" in out
    session = agent.session(str(workspace), permissive=True)
    big = json.dumps({"x": "z" * 20000})
    result = tool_output(session, "cut\n" + tool("task", {"agent": "general", "prompt": "big\n/json " + big}))
    run_id = result.split("run_id=")[1].split(")")[0]
    assert len(session._t.request("GET", f"/runs/{run_id}")["text"]) == len(big)  # kept whole in the child


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
