"""The lane table as the driver applies it (docs/reference.md, "Lane queue"): a turn's tool calls
run lane by lane in priority order, each lane with its own concurrency (by default control 2,
query 4, execute 2, generate 1), and tools route to the lane of their kind. On the in-memory store."""
from __future__ import annotations

import json
import threading

import pytest
from pydantic import ValidationError

from a3s_core.api.schemas import CreateSessionBody, StartRunBody
from a3s_core.api.service import Service
from a3s_core.domain.lanes import LaneHandler, lane_for
from a3s_core.engine import driver
from a3s_core.engine.dispatch import handle_message
from a3s_core.engine.queues import MemoryQueues
from a3s_core.runtime import Runtime, Settings
from a3s_core.store.memory import MemoryStore

QUERY_TOOLS = ["read", "ls", "list_files", "search", "grep", "glob", "web_fetch", "web_search",
               "code_search", "code_outline"]
EXECUTE_TOOLS = ["bash", "write", "edit", "download", "delete", "move", "copy", "execute"]
UNKNOWN_TOOLS = ["frobnicate", "Read", "readme", "mcp__github__create_issue", "", "code"]


class Tools:
    """Stands in for the tools: records the order calls start in, and how many run at once. A call
    waits (on a condition) until `limit` calls run together or no more can come, so a pool smaller
    than the limit shows as a lower peak. When the first `limit` are in, they stay a moment longer
    for one more: a pool bigger than the limit shows as a higher peak (correct code never waits
    on that moment, it only bounds how long a wrong one has to show itself)."""

    def __init__(self, total: int, limit: int) -> None:
        self.total, self.limit = total, limit
        self.order: list[str] = []
        self.active = self.done = self.peak = 0
        self.probed = self.probe_over = False
        self.cond = threading.Condition()

    def __call__(self, name: str, arguments: dict, workspace) -> dict:
        with self.cond:
            self.order.append(f"{name} {arguments.get('n', '')}".strip())
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.active >= self.limit or self.done + self.active == self.total,
                               timeout=10)
            if not self.probed:
                self.probed = True
                self.cond.wait_for(lambda: self.active > self.limit, timeout=0.3)
                self.probe_over = True
                self.cond.notify_all()
            else:
                self.cond.wait_for(lambda: self.probe_over, timeout=10)
            self.active -= 1
            self.done += 1
            self.cond.notify_all()
        return {"output": "ok"}


@pytest.fixture
def rt(tmp_path) -> Runtime:
    (tmp_path / "t1" / "ws").mkdir(parents=True)
    settings = Settings(table="t", runs_queue_url="q", lane_queue_urls={}, workspace_root=str(tmp_path))
    return Runtime(settings=settings, store=MemoryStore(), queues=MemoryQueues())


def run_turn(rt: Runtime, calls: list[tuple[str, dict]], **session) -> str:
    """One run whose first turn makes these tool calls, driven to its end; its text."""
    svc = Service(rt, "t1")
    sid = svc.create_session(CreateSessionBody(workspace=str(rt.settings.workspace_root) + "/t1/ws",
                                               permissive=True, **session))["session_id"]
    prompt = "go\n" + "\n".join(f"/tool {name} {json.dumps(args)}" for name, args in calls)
    run_id = svc.start_run(sid, StartRunBody(prompt=prompt))["run_id"]
    [(message, _)] = rt.queues.runs
    handle_message(rt, message, lambda: 60_000)
    run = rt.store.get_run("t1", run_id)
    assert run.status == "succeeded", run.error
    return run.text


@pytest.mark.parametrize("tool,limit", [("confirm", 2), ("read", 4), ("write", 2)])
def test_given_the_default_concurrency_then_a_lane_runs_that_many_of_its_tools_at_once(rt, monkeypatch, tool, limit):
    tools = Tools(total=9, limit=limit)
    monkeypatch.setattr(driver, "run_tool", tools)
    run_turn(rt, [(tool, {"n": i}) for i in range(9)])
    assert (tools.done, tools.peak) == (9, limit)


def test_given_a_session_concurrency_then_the_lane_runs_that_many_at_once(rt, monkeypatch):
    from a3s_core.api.schemas import QueueConfigBody

    tools = Tools(total=7, limit=3)
    monkeypatch.setattr(driver, "run_tool", tools)
    run_turn(rt, [("read", {"n": i}) for i in range(7)], queue_config=QueueConfigBody(concurrency={"query": 3}))
    assert (tools.done, tools.peak) == (7, 3)


def test_given_a_new_session_then_the_generate_lane_runs_one_at_a_time(rt):
    # No built-in tool routes to the generate lane; its concurrency is the session's to report.
    sid = Service(rt, "t1").create_session(CreateSessionBody(workspace=str(rt.settings.workspace_root) + "/t1/ws"))
    stats = Service(rt, "t1").queue(sid["session_id"])["stats"]
    assert {lane: s["max_concurrency"] for lane, s in stats["lanes"].items()} == \
        {"control": 2, "query": 4, "execute": 2, "generate": 1}


def test_given_calls_on_several_lanes_in_one_turn_then_control_runs_first_then_query_then_execute(rt, monkeypatch):
    tools = Tools(total=5, limit=1)
    monkeypatch.setattr(driver, "run_tool", tools)
    text = run_turn(rt, [("write", {"n": 1}), ("read", {"n": 2}), ("bash_like", {"n": 3}), ("confirm", {"n": 4}),
                         ("ls", {"n": 5})])
    # Lane by lane in priority order; calls of one lane start together, in any order, on its pool.
    assert sorted(tools.order) == ["bash_like 3", "confirm 4", "ls 5", "read 2", "write 1"]
    started = [lane_for(entry.split()[0]) for entry in tools.order]
    assert started == ["control", "query", "query", "execute", "execute"], tools.order
    # ...while the model gets the results in the order it asked for them.
    assert text.splitlines()[1:] == ["write -> ok", "read -> ok", "bash_like -> ok", "confirm -> ok", "ls -> ok"]


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


@pytest.mark.parametrize("bad,field", [({"mode": "remote"}, "mode"), ({"timeout_ms": 0}, "timeout_ms"),
                                       ({"timeout_ms": -1}, "timeout_ms"), ({"on_timeout": "retry"}, "on_timeout")])
def test_given_a_bad_handler_setting_then_it_is_refused(bad, field):
    with pytest.raises(ValidationError, match=f"1 validation error for LaneHandler\n{field}\n"):
        LaneHandler(**bad)


def test_the_mode_registry_the_api_enum_and_the_sdk_name_the_same_modes():
    """A mode is defined once (MODE_POLICIES); the API's enum and the SDK's check must follow it."""
    from typing import get_args

    from a3s_core.api.schemas import LaneHandlerBody
    from a3s_core.domain.lanes import MODES, Mode
    from a3s_serverless.session import MODES as SDK_MODES

    assert get_args(Mode) == MODES
    assert tuple(LaneHandlerBody.model_json_schema()["properties"]["mode"]["enum"]) == MODES
    assert SDK_MODES == MODES
