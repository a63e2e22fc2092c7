"""The lane queue, row by row of docs/reference.md's "Lane queue" table, through the SDK and the
embedded stack (moto + the kit's own handlers)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from a3s_serverless import SessionQueueConfig

LANES = ("control", "query", "execute", "generate")
DEFAULT_HANDLER = {"mode": "internal", "timeout_ms": 60000}


def bash(command: str, **extra) -> str:
    return "/tool bash " + json.dumps({"command": command, **extra})


def tool(name: str, **arguments) -> str:
    return f"/tool {name} " + json.dumps(arguments)


def wait_for_file(path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)


def pending_task(session, handle, events) -> dict:
    """Wait until the run announces its external task, then return it as the worker sees it."""
    event = events.wait_for(handle.run_id, "external_task_pending")
    [task] = [t for t in session.pending_external_tasks() if t["task_id"] == event["task_id"]]
    return task


# -- lanes ----------------------------------------------------------------------------------------
def test_given_a_new_session_then_it_has_the_four_lanes_each_with_the_default_handler(session, api):
    view = api.session_view(session.session_id)
    assert sorted(view["lanes"]) == sorted(LANES)
    for lane in LANES:
        assert {k: view["lanes"][lane][k] for k in DEFAULT_HANDLER} == DEFAULT_HANDLER
    assert sorted(session.queue_stats()["lanes"]) == sorted(LANES)


# -- per-lane concurrency -------------------------------------------------------------------------
def test_given_no_queue_config_then_each_lane_has_the_reference_default_concurrency(session):
    lanes = session.queue_stats()["lanes"]
    assert {lane: lanes[lane]["max_concurrency"] for lane in LANES} == \
        {"control": 2, "query": 4, "execute": 2, "generate": 1}


def test_given_a_queue_config_when_the_session_is_made_then_its_concurrency_and_handlers_apply(agent, workspace, api):
    qc = SessionQueueConfig(concurrency={"execute": 3, "generate": 2},
                            lane_handlers={"query": {"mode": "external", "timeout_ms": 5000}})
    session = agent.session(str(workspace), permissive=True, queue_config=qc)
    lanes = session.queue_stats()["lanes"]
    assert (lanes["execute"]["max_concurrency"], lanes["generate"]["max_concurrency"]) == (3, 2)
    assert (lanes["control"]["max_concurrency"], lanes["query"]["max_concurrency"]) == (2, 4)
    assert lanes["query"]["handler_mode"] == "external"
    assert api.session_view(session.session_id)["lanes"]["query"]["timeout_ms"] == 5000
    assert session.has_queue() is True


# -- priority -------------------------------------------------------------------------------------
def test_given_tools_on_two_lanes_in_one_turn_then_the_query_lane_runs_before_the_execute_lane(
        session, workspace, events):
    # The model asks for bash first; query outranks execute, so read runs first and finds nothing.
    handle = session.send_async("prio\n" + bash("echo made > prio.txt") + "\n" + tool("read", file_path="prio.txt"))
    result = handle.wait(timeout=30)
    lines = result.text.splitlines()
    assert lines[1] == "bash -> "
    assert lines[2].startswith("read -> ") and "not found" in lines[2]
    starts = [e["tool"] for e in events.all(handle.run_id) if e["type"] == "tool_start"]
    assert starts == ["read", "bash"]
    assert (workspace / "prio.txt").read_text() == "made\n"


# -- tool -> lane ---------------------------------------------------------------------------------
def test_given_query_and_execute_external_when_every_builtin_and_an_unknown_tool_is_called_then_each_lands_on_its_lane(
        session, events):
    session.set_lane_handler("query", "external", 300000)
    session.set_lane_handler("execute", "external", 300000)
    calls = [tool("read", file_path="a"), tool("ls", path="."), tool("glob", pattern="*"), tool("grep", pattern="x"),
             bash("true"), tool("write", file_path="a", content="x"),
             tool("edit", file_path="a", old_string="x", new_string="y"), tool("frobnicate", level=11)]
    handle = session.send_async("route\n" + "\n".join(calls))
    events.wait_for_count(handle.run_id, "external_task_pending", len(calls))
    tasks = session.pending_external_tasks()
    lanes = {t["command_type"]: t["lane"] for t in tasks}
    assert lanes == {"read": "query", "ls": "query", "glob": "query", "grep": "query",
                     "bash": "execute", "write": "execute", "edit": "execute", "frobnicate": "execute"}
    assert next(t for t in tasks if t["command_type"] == "frobnicate")["payload"] == {"level": 11}
    for task in tasks:
        assert session.complete_external_task(task["task_id"], success=True,
                                              result={"output": f"did {task['command_type']}"})
    lines = handle.wait(timeout=30).text.splitlines()
    assert lines[0] == "echo: route"
    assert sorted(lines[1:]) == sorted(f"{n} -> did {n}" for n in lanes)


def test_given_only_the_query_lane_external_when_read_and_bash_are_called_then_read_is_a_query_task_and_bash_runs_here(
        session, workspace, events):
    (workspace / "f.txt").write_text("local data\n")
    session.set_lane_handler("query", "external", 300000)
    handle = session.send_async("mixed\n" + tool("read", file_path="f.txt") + "\n" + bash("echo ran > ran.txt; echo ran"))
    task = pending_task(session, handle, events)
    assert (task["lane"], task["command_type"], task["payload"]) == ("query", "read", {"file_path": "f.txt"})
    assert [t["task_id"] for t in session.pending_external_tasks()] == [task["task_id"]]
    assert session.complete_external_task(task["task_id"], success=True, result={"output": "remote data"})
    assert handle.wait(timeout=30).text == "echo: mixed\nread -> remote data\nbash -> ran"
    assert (workspace / "ran.txt").exists()


# -- handler default / has_queue ------------------------------------------------------------------
def test_given_a_new_session_then_has_queue_is_false_until_a_lane_is_external_or_hybrid(session, api):
    assert session.has_queue() is False
    assert api.session_view(session.session_id)["has_queue"] is False
    session.set_lane_handler("execute", "hybrid", 5000)
    assert session.has_queue() is True
    session.set_lane_handler("execute", "internal", 5000)
    assert session.has_queue() is False
    assert api.session_view(session.session_id)["has_queue"] is False
    session.set_lane_handler("generate", "external")
    assert session.has_queue() is True
    view = api.session_view(session.session_id)
    assert view["has_queue"] is True
    assert {k: view["lanes"]["generate"][k] for k in DEFAULT_HANDLER} == {"mode": "external", "timeout_ms": 60000}


# -- task fields ----------------------------------------------------------------------------------
def test_given_an_external_execute_lane_when_bash_is_called_then_the_task_carries_every_reference_field(
        session, events):
    session.set_lane_handler("execute", "external", 300000)
    before = int(time.time() * 1000)
    handle = session.send_async("fields\n" + bash("echo hi", timeout_ms=5000))
    task = pending_task(session, handle, events)
    after = int(time.time() * 1000)
    assert task["task_id"].strip() and task["id"] == task["task_id"]
    assert task["session_id"] == session.session_id
    assert task["run_id"] == handle.run_id
    assert task["lane"] == "execute"
    assert task["command_type"] == "bash"
    assert task["payload"] == {"command": "echo hi", "timeout_ms": 5000}
    assert task["timeout_ms"] == 300000
    assert before <= task["created_at"] <= after
    assert session.complete_external_task(task["task_id"], success=True, result={"output": "hi"})
    handle.wait(timeout=30)


# -- external -------------------------------------------------------------------------------------
def test_given_an_external_lane_when_the_tool_is_called_then_the_run_suspends_until_a_worker_completes_it(
        session, workspace, events):
    session.set_lane_handler("execute", "external", 300000)
    handle = session.send_async("build\n" + bash("touch ran-here; echo local"))
    event = events.wait_for(handle.run_id, "external_task_pending")
    assert (event["lane"], event["command_type"], event["timeout_ms"]) == ("execute", "bash", 300000)
    assert handle.status() == "waiting"
    assert [t["task_id"] for t in session.pending_external_tasks()] == [event["task_id"]]
    assert session.complete_external_task(event["task_id"], success=True, result={"output": "ok"})
    result = handle.wait(timeout=30)
    assert result.text == "echo: build\nbash -> ok"
    assert not (workspace / "ran-here").exists()  # the worker did the work, not the driver
    assert session.pending_external_tasks() == []


# -- hybrid ---------------------------------------------------------------------------------------
def test_given_a_hybrid_lane_when_the_tool_is_called_then_it_runs_here_with_pending_and_completed_notifications(
        session, workspace, events):
    from a3s_core.engine.driver import task_id_for

    session.set_lane_handler("execute", "hybrid", 300000)
    command = "touch started; while [ ! -f go ]; do sleep 0.02; done; echo ran"
    handle = session.send_async("build\n" + bash(command, timeout_ms=20000))
    try:
        wait_for_file(workspace / "started")
        # While the tool runs, there is nothing to complete: hybrid is notification only.
        assert session.pending_external_tasks() == []
        assert session.queue_stats()["external_pending"] == 0
    finally:
        (workspace / "go").touch()
    result = handle.wait(timeout=30)
    assert result.text == "echo: build\nbash -> ran"
    all_events = events.all(handle.run_id)
    types = [e["type"] for e in all_events]
    assert types.count("external_task_pending") == 1 and types.count("external_task_completed") == 1
    assert types.index("external_task_pending") < types.index("tool_start") < types.index("tool_end") \
        < types.index("external_task_completed")
    pending = next(e for e in all_events if e["type"] == "external_task_pending")
    assert (pending["lane"], pending["command_type"]) == ("execute", "bash")
    assert session.pending_external_tasks() == []
    # Completing it, by the id an external task of that call would have had, does nothing.
    assert session.complete_external_task(task_id_for(handle.run_id, "call_0_0"), success=True,
                                          result={"output": "late"}) is False
    assert events.all(handle.run_id)[-1]["type"] == "run_end" and len(events.all(handle.run_id)) == len(all_events)


def test_given_a_hybrid_lane_when_the_tool_is_still_running_then_its_pending_notification_is_already_visible(
        session, workspace, events):
    session.set_lane_handler("execute", "hybrid", 300000)
    command = "touch started; while [ ! -f go ]; do sleep 0.02; done; echo ran"
    handle = session.send_async("build\n" + bash(command, timeout_ms=20000))
    try:
        wait_for_file(workspace / "started")
        seen = events.wait_for(handle.run_id, lambda e: e["type"] in ("external_task_pending", "tool_end"),
                               timeout=2)
        assert seen["type"] == "external_task_pending"
    finally:
        (workspace / "go").touch()
        handle.wait(timeout=30)


# -- completion -----------------------------------------------------------------------------------
def test_given_a_pending_task_when_completed_twice_then_the_first_call_wins_and_the_second_and_unknown_ids_lose(
        session, events):
    session.set_lane_handler("execute", "external", 300000)
    handle = session.send_async("build\n" + bash("echo hi"))
    task = pending_task(session, handle, events)
    assert session.complete_external_task("task-does-not-exist", success=True, result={"output": "x"}) is False
    assert session.complete_external_task(task["task_id"], success=True, result={"output": "first"}) is True
    assert session.complete_external_task(task["task_id"], success=True, result={"output": "second"}) is False
    assert session.complete_external_task(task["task_id"], success=False, error="third") is False
    assert handle.wait(timeout=30).text == "echo: build\nbash -> first"


def test_given_a_failed_completion_then_the_model_sees_a_tool_error_carrying_the_error(session, events):
    session.set_lane_handler("execute", "external", 300000)
    handle = session.send_async("build\n" + bash("make"))
    task = pending_task(session, handle, events)
    assert session.complete_external_task(task["task_id"], success=False, error="disk full on runner 7")
    result = handle.wait(timeout=30)
    bash_line = result.text.splitlines()[1]
    assert bash_line.startswith("bash -> ") and "disk full on runner 7" in bash_line
    done = next(e for e in events.all(handle.run_id) if e["type"] == "external_task_completed")
    assert (done["task_id"], done["status"]) == (task["task_id"], "failed")


@pytest.mark.parametrize("result, seen", [
    ({"exit_code": 0, "summary": "3 files checked"}, 'bash -> {"exit_code":0,"summary":"3 files checked"}'),
    ({"note": "résumé ok"}, 'bash -> {"note":"résumé ok"}'),
    ({"output": 42}, 'bash -> {"output":42}'),
    ({"output": "built", "exit_code": 2}, "bash -> built"),
    (None, "bash -> (no result)"),
], ids=["seed-shape", "note", "int-output", "output-and-exit-code", "no-result"])
def test_given_a_result_of_any_shape_then_the_model_sees_its_output_or_its_compact_json(
        session, events, result, seen):
    session.set_lane_handler("execute", "external", 300000)
    handle = session.send_async("build\n" + bash("echo hi"))
    task = pending_task(session, handle, events)
    assert session.complete_external_task(task["task_id"], success=True, result=result)
    assert handle.wait(timeout=30).text.splitlines()[1] == seen
    end = next(e for e in events.all(handle.run_id) if e["type"] == "tool_end")
    assert end["is_error"] is (result == {"output": "built", "exit_code": 2})


# -- timeout --------------------------------------------------------------------------------------
def test_given_nobody_completes_the_task_when_its_timeout_passes_then_the_model_sees_timed_out_and_late_completion_loses(
        session, workspace, events):
    session.set_lane_handler("execute", "external", 1000)
    handle = session.send_async("build\n" + bash("touch ran-here; echo local"))
    task = events.wait_for(handle.run_id, "external_task_pending")  # it may expire before we could list it
    result = handle.wait(timeout=30)
    bash_line = result.text.splitlines()[1]
    assert bash_line.startswith("bash -> ") and "timed out" in bash_line
    assert not (workspace / "ran-here").exists()  # no silent local fallback
    assert session.complete_external_task(task["task_id"], success=True, result={"output": "late"}) is False
    done = next(e for e in events.all(handle.run_id) if e["type"] == "external_task_completed")
    assert (done["task_id"], done["status"]) == (task["task_id"], "timed_out")
    assert session.pending_external_tasks() == []


def test_given_on_timeout_internal_when_the_task_times_out_then_the_tool_runs_here_instead(
        session, workspace, api, events):
    status, view = api.call("PUT", f"/sessions/{session.session_id}/lanes/execute",
                            {"mode": "external", "timeout_ms": 1000, "on_timeout": "internal"})
    assert status == 200, view
    assert view["lanes"]["execute"]["on_timeout"] == "internal"
    handle = session.send_async("build\n" + bash("echo fallback > ran-here; echo ran internally"))
    task = events.wait_for(handle.run_id, "external_task_pending")
    assert task["task_id"] and (task["lane"], task["timeout_ms"]) == ("execute", 1000)
    result = handle.wait(timeout=30)
    assert result.text == "echo: build\nbash -> ran internally"
    assert (workspace / "ran-here").read_text() == "fallback\n"
    done = next(e for e in events.all(handle.run_id) if e["type"] == "external_task_completed")
    assert (done["task_id"], done["status"]) == (task["task_id"], "timed_out")


# -- stats ----------------------------------------------------------------------------------------
def test_given_pending_and_claimed_tasks_then_queue_stats_has_the_reference_shape_and_real_counts(session, events):
    session.set_lane_handler("execute", "external", 300000)
    idle = session.queue_stats()
    assert set(idle) == {"total_pending", "total_active", "external_pending", "lanes"}
    assert (idle["total_pending"], idle["total_active"], idle["external_pending"]) == (0, 0, 0)
    handle = session.send_async("two\n" + bash("echo one") + "\n" + bash("echo two"))
    events.wait_for_count(handle.run_id, "external_task_pending", 2)
    stats = session.queue_stats()
    assert set(stats) == {"total_pending", "total_active", "external_pending", "lanes"}
    assert set(stats["lanes"]) == set(LANES)
    for lane in LANES:
        assert set(stats["lanes"][lane]) == {"pending", "active", "max_concurrency", "handler_mode"}
    assert (stats["total_pending"], stats["total_active"], stats["external_pending"]) == (2, 0, 2)
    assert stats["lanes"]["execute"] == {"pending": 2, "active": 0, "max_concurrency": 2, "handler_mode": "external"}
    assert stats["lanes"]["query"] == {"pending": 0, "active": 0, "max_concurrency": 4, "handler_mode": "internal"}

    [claimed] = session.claim_external_tasks(max_tasks=1)
    stats = session.queue_stats()
    assert (stats["total_pending"], stats["total_active"], stats["external_pending"]) == (1, 1, 2)
    assert (stats["lanes"]["execute"]["pending"], stats["lanes"]["execute"]["active"]) == (1, 1)

    for task in session.pending_external_tasks():
        assert session.complete_external_task(task["task_id"], success=True, result={"output": task["task_id"]})
    handle.wait(timeout=30)
    stats = session.queue_stats()
    assert (stats["total_pending"], stats["total_active"], stats["external_pending"]) == (0, 0, 0)
    assert claimed["command_type"] == "bash"


# -- set_external_task_handler --------------------------------------------------------------------
def test_given_a_task_handler_when_the_agent_calls_an_external_tool_then_the_handler_does_it_in_the_background(
        session):
    seen: list[dict] = []

    def handler(task: dict) -> dict:
        seen.append(task)
        return {"success": True, "result": {"output": f"handled {task['command_type']} {task['payload']['command']}"}}

    session.set_lane_handler("execute", "external", 300000)
    session.set_external_task_handler(handler)
    result = session.send("build\n" + bash("echo hi") + "\n" + bash("echo there"))
    assert result.text == "echo: build\nbash -> handled bash echo hi\nbash -> handled bash echo there"
    assert sorted(t["payload"]["command"] for t in seen) == ["echo hi", "echo there"]
    assert all(t["session_id"] == session.session_id and t["lane"] == "execute" for t in seen)
    assert session.pending_external_tasks() == []


@pytest.mark.parametrize("behaviour", ["raises", "returns-garbage"])
def test_given_a_task_handler_that_fails_then_the_task_completes_as_failed_and_the_model_sees_why(session, behaviour):
    def handler(task: dict) -> dict:
        if behaviour == "raises":
            raise RuntimeError("worker exploded")
        return "not a dict"  # type: ignore[return-value]

    session.set_lane_handler("execute", "external", 300000)
    session.set_external_task_handler(handler)
    result = session.send("build\n" + bash("echo hi"))
    bash_line = result.text.splitlines()[1]
    assert bash_line.startswith("bash -> ") and "failed" in bash_line
    if behaviour == "raises":
        assert "worker exploded" in bash_line
    assert session.pending_external_tasks() == []
