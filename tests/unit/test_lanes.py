"""The lane table itself (docs/reference.md, "Lane queue"): names, order, defaults and tool -> lane."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from a3s_core.lanes import DEFAULT_CONCURRENCY, LANES, LaneHandler, lane_for

QUERY_TOOLS = ["read", "ls", "list_files", "search", "grep", "glob", "web_fetch", "web_search",
               "code_search", "code_outline"]
EXECUTE_TOOLS = ["bash", "write", "edit", "download", "delete", "move", "copy", "execute"]
UNKNOWN_TOOLS = ["frobnicate", "Read", "readme", "mcp__github__create_issue", "", "code"]


def test_given_the_lanes_then_there_are_four_in_strict_priority_order():
    assert LANES == ("control", "query", "execute", "generate")


def test_given_the_lanes_then_the_internal_concurrency_defaults_are_the_reference_ones():
    assert DEFAULT_CONCURRENCY == {"control": 2, "query": 4, "execute": 2, "generate": 1}


@pytest.mark.parametrize("name", QUERY_TOOLS)
def test_given_a_read_only_tool_when_routed_then_it_lands_on_the_query_lane(name):
    assert lane_for(name) == "query"


@pytest.mark.parametrize("name", EXECUTE_TOOLS)
def test_given_a_tool_that_changes_things_when_routed_then_it_lands_on_the_execute_lane(name):
    assert lane_for(name) == "execute"


@pytest.mark.parametrize("name", UNKNOWN_TOOLS)
def test_given_an_unknown_tool_when_routed_then_it_lands_on_the_execute_lane(name):
    assert lane_for(name) == "execute"


def test_given_no_settings_then_a_lane_handler_is_internal_with_a_60_second_timeout():
    handler = LaneHandler()
    assert (handler.mode, handler.timeout_ms) == ("internal", 60000)


@pytest.mark.parametrize("bad", [{"mode": "remote"}, {"timeout_ms": 0}, {"timeout_ms": -1},
                                 {"on_timeout": "retry"}])
def test_given_a_bad_handler_setting_then_it_is_refused(bad):
    with pytest.raises(ValidationError):
        LaneHandler(**bad)
