"""User-defined subagents: per session (register_agent) and per deployment (A3S_AGENTS)."""
from __future__ import annotations

import dataclasses
import json

import pytest

from a3s_serverless.errors import RequestError


def test_given_a_session_agent_then_specs_can_name_it_and_it_only_gets_its_tools(agent, workspace):
    session = agent.session(str(workspace), permissive=True)
    session.register_agent("auditor", "reads and reports", system_prompt="You audit.", tools=["read", "ls"],
                           max_steps=3)
    [denied, allowed] = session.parallel([
        {"task_id": "w", "agent": "auditor", "prompt": 'try\n/tool write {"file_path": "x", "content": "y"}'},
        {"task_id": "l", "agent": "auditor", "prompt": "look\n/tool ls {}"}])
    assert denied["success"] and "write -> tool 'write' is not available to the auditor agent" in denied["output"]
    assert allowed["output"] == "echo: look\nls -> (empty directory)"
    assert not (workspace / "x").exists()
    other = agent.session(str(workspace))  # another session does not know it
    [outcome] = other.parallel([{"task_id": "a", "agent": "auditor", "prompt": "hi"}])
    assert not outcome["success"] and "unknown agent 'auditor'" in outcome["output"]


def test_given_bad_agent_definitions_then_they_are_refused_with_a_clear_message(agent, workspace):
    session = agent.session(str(workspace))
    with pytest.raises(RequestError, match="agent name"):
        session.register_agent("no spaces allowed")
    with pytest.raises(RequestError, match=r"body\.tools\.0: Input should be 'read', .* or 'bash' \(HTTP 422"):
        session.register_agent("x", tools=["rm_rf"])
    with pytest.raises(ValueError, match="max_steps must be a positive integer, got 0"):
        session.register_agent("x", max_steps=0)
    # None of them was made: a valid definition's answer lists the session's agents.
    answer = session._t.request("PUT", f"/sessions/{session.session_id}/agents/ok", {"description": "fine"})
    assert sorted(answer["agents"]) == ["ok"]


def test_given_a_deployment_agent_then_every_session_can_use_it(agent, workspace, stack, monkeypatch):
    spec = {"translator": {"description": "translates", "tools": ["read"], "max_steps": 2}}
    monkeypatch.setattr(stack.runtime, "settings",
                        dataclasses.replace(stack.runtime.settings, agents_json=json.dumps(spec)))
    session = agent.session(str(workspace))
    [outcome] = session.parallel([{"task_id": "t", "agent": "translator", "prompt": "bonjour"}])
    assert outcome["success"] and outcome["agent"] == "translator" and outcome["output"] == "echo: bonjour"
