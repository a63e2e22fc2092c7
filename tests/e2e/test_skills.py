"""builtin_skills gives the model the `skill` tool: the shipped catalogue, plus the deployment's and
the session's own skills, listed by name and description and loaded by name."""
from __future__ import annotations

import pytest

from a3s_core.llm.base import ModelResponse, Usage
from a3s_core.llm.registry import MODEL_FACTORIES


class ToolsSeen:
    """A model that records the tools it was offered and answers at once."""

    offered: list[dict] = []

    def __init__(self, _model_id: str) -> None:
        pass

    def complete(self, messages, tools, system=None, *, output_schema=None) -> ModelResponse:
        ToolsSeen.offered = tools
        return ModelResponse(text="done", tool_calls=[], usage=Usage(prompt_tokens=1, completion_tokens=1))


@pytest.fixture
def tools_seen(monkeypatch):
    monkeypatch.setitem(MODEL_FACTORIES, "tools-seen", ToolsSeen)
    ToolsSeen.offered = []
    return ToolsSeen


def _skill_tool(tools: list[dict]) -> dict | None:
    return next((t for t in tools if t["name"] == "skill"), None)


def test_given_builtin_skills_when_the_model_is_asked_then_it_is_offered_the_catalogue_by_name_and_description(
        agent, workspace, tools_seen):
    agent.session(str(workspace), builtin_skills=True, model="tools-seen/x").send("hi")
    tool = _skill_tool(tools_seen.offered)
    assert tool is not None
    assert "- code-review: Review a change for bugs" in tool["description"]
    assert {"code-review", "write-tests", "debug-failure", "git-commit"} <= set(tool["input_schema"]["properties"]["name"]["enum"])
    assert "## " not in tool["description"]  # documents are loaded on demand, not sent every turn


def test_given_no_builtin_skills_and_none_registered_then_there_is_no_skill_tool(agent, workspace, tools_seen):
    agent.session(str(workspace), model="tools-seen/x").send("hi")
    assert tools_seen.offered and _skill_tool(tools_seen.offered) is None


def test_given_builtin_skills_when_the_model_loads_one_then_it_reads_the_document(agent, workspace):
    session = agent.session(str(workspace), builtin_skills=True)
    text = session.send('review this\n/tool skill {"name": "code-review"}').text
    assert text.splitlines()[1] == "skill -> # Skill: code-review"


def test_given_a_skill_of_the_session_when_loaded_then_its_content_reaches_the_model_even_without_builtins(
        agent, workspace, tools_seen, events):
    session = agent.session(str(workspace))
    session.register_skill("release", "Cut a release of this repository.", "Bump the version, tag, push.")
    assert agent._t.request("GET", f"/sessions/{session.session_id}")["skills"] == ["release"]
    handle = session.send_async('ship it\n/tool skill {"name": "release"}')
    assert handle.wait(timeout=30).text.splitlines()[1] == "skill -> # Skill: release"
    end = events.wait_for(handle.run_id, "tool_end")
    assert end["tool"] == "skill" and "Bump the version, tag, push." in end["output"] and not end["is_error"]
    text = session.send('again\n/tool skill {"name": "code-review"}').text  # built-ins were not asked for
    assert "unknown skill 'code-review'" in text


def test_given_a_bad_skill_registration_then_a_clear_error_and_nothing_is_stored(agent, workspace, api):
    session = agent.session(str(workspace))
    with pytest.raises(ValueError, match="content must be a non-empty string"):
        session.register_skill("x", "d", "")
    status, body = api.call("PUT", f"/sessions/{session.session_id}/skills/Bad Name", {"description": "d", "content": "c"})
    assert status == 400 and "skill name" in body["error"]["message"]
    status, body = api.call("PUT", f"/sessions/{session.session_id}/skills/ok", {"description": "d"})
    assert status == 422
    assert api.session_view(session.session_id)["skills"] == []
