"""One tool catalogue: the tools a model is shown, the ones the kit runs, the delegation tools, the
agents' tool sets, the lanes and the sandbox's code tools all agree with it."""
from __future__ import annotations

from a3s_core.domain import agents, catalogue, skills
from a3s_core.domain.lanes import lane_for
from a3s_core.engine import delegation
from a3s_core.tools import builtin, sandbox


def test_given_the_builtin_tools_then_the_schemas_shown_and_the_code_run_are_the_catalogues():
    assert set(builtin.TOOL_SCHEMAS) == set(builtin._TOOLS) == catalogue.BUILTIN_TOOLS


def test_given_the_delegation_and_skill_tools_then_they_are_in_the_catalogue():
    assert delegation.TOOLS == catalogue.DELEGATION_TOOLS
    assert catalogue.CATALOGUE[skills.NAME].lane == "query"


def test_given_the_read_only_agents_then_every_tool_they_may_use_exists_and_changes_nothing():
    for name in ("explore", "plan"):
        tools = agents.BUILTIN[name].tools
        assert tools <= catalogue.BUILTIN_TOOLS
        assert all(catalogue.CATALOGUE[t].read_only for t in tools)
    assert agents.BUILTIN["general"].tools == catalogue.BUILTIN_TOOLS


def test_given_a_tool_then_its_lane_is_the_catalogues_and_only_code_tools_go_to_the_sandbox():
    assert {name: lane_for(name) for name in ("read", "write", "bash", "skill", "confirm")} == {
        "read": "query", "write": "execute", "bash": "execute", "skill": "query", "confirm": "control"}
    assert {"bash"} == sandbox.CODE_TOOLS
    assert lane_for("web_search") == "query" and lane_for("deploy") == "execute"  # A3S Code's table for the rest
