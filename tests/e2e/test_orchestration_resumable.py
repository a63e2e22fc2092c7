"""session.parallel_resumable (docs/reference.md, "Orchestration"): a journal of successful steps in
DynamoDB; a re-run runs only what is missing or failed, fails closed when a journaled step's spec
changed, ignores ids no longer asked for, attaches to a run still going, and returns the recorded
outcomes after full success. Side effects (a line appended by bash) prove what ran, and how often."""
from __future__ import annotations

import json
import secrets
import threading
import time
from pathlib import Path

import pytest

from a3s_core.llm.base import ModelError
from a3s_core.llm.registry import MODEL_FACTORIES
from a3s_core.llm.scripted import ScriptedModel
from a3s_serverless import FileSessionStore, MemorySessionStore, SessionOptions


def step(task_id: str, text: str | None = None, extra: str = "", agent: str = "general") -> dict:
    """A step that appends its id to log.txt (once per execution) and answers `echo: <text>`."""
    bash = json.dumps({"command": f"echo {task_id} >> log.txt"})
    return {"task_id": task_id, "agent": agent, "description": task_id,
            "prompt": f"{text or 'do ' + task_id}\n/tool bash {bash}{extra}"}


def log(workspace: Path) -> list[str]:
    path = workspace / "log.txt"
    return path.read_text().splitlines() if path.exists() else []


def wid() -> str:
    return f"resumable-{secrets.token_hex(6)}"


class Outage:
    """A model provider that is down for prompts marked FLAKY until the test ends the outage: the
    same spec fails on one call and succeeds on the next, as after a real transient error."""

    def __init__(self) -> None:
        self.down = True
        self.refused = 0

    def factory(self, _model_id: str):
        outage, scripted = self, ScriptedModel()

        class Flaky:
            def complete(self, messages, tools, system=None, *, output_schema=None):
                if outage.down and any("FLAKY" in str(m.get("content")) for m in messages if m["role"] == "user"):
                    outage.refused += 1
                    raise ModelError("provider unavailable (503)")
                return scripted.complete(messages, tools, system, output_schema=output_schema)

        return Flaky()


@pytest.fixture
def outage(monkeypatch) -> Outage:
    o = Outage()
    monkeypatch.setitem(MODEL_FACTORIES, "flaky", o.factory)
    return o


@pytest.fixture
def flaky_session(agent, workspace, outage):
    s = agent.session(str(workspace), permissive=True, model="flaky")
    yield s
    s.close()


# -- re-runs ---------------------------------------------------------------------------------------
def test_given_a_failed_step_when_called_again_then_only_it_runs_and_the_journaled_one_is_replayed(
        flaky_session, workspace, outage):
    workflow_id = wid()
    specs = [step("a"), step("b", extra="\nFLAKY")]

    first = flaky_session.parallel_resumable(specs, workflow_id)
    assert [o["success"] for o in first] == [True, False]
    assert "provider unavailable" in first[1]["error"]
    assert log(workspace) == ["a"]

    outage.down = False
    second = flaky_session.parallel_resumable(specs, workflow_id)

    assert [o["task_id"] for o in second] == ["a", "b"]
    assert [o["success"] for o in second] == [True, True]
    assert second[0] == first[0]  # replayed from the journal: same run, same output
    assert second[1]["run_id"] != first[1]["run_id"]
    assert second[1]["output"] == "echo: do b\nbash -> "
    assert sorted(log(workspace)) == ["a", "b"]  # a did not run again
    assert outage.refused == 1


def test_given_a_fully_successful_workflow_when_called_again_then_the_recorded_outcomes_come_back(
        session, workspace):
    workflow_id = wid()
    specs = [step("x"), step("y"), step("z")]

    first = session.parallel_resumable(specs, workflow_id)
    again = session.parallel_resumable(specs, workflow_id)

    assert all(o["success"] for o in first)
    assert again == first
    assert [o["run_id"] for o in again] == [o["run_id"] for o in first]
    assert sorted(log(workspace)) == ["x", "y", "z"]


def test_given_a_changed_spec_of_a_journaled_step_then_the_whole_call_fails_closed(session, workspace):
    workflow_id = wid()
    specs = [step("a"), step("b")]
    recorded = session.parallel_resumable(specs, workflow_id)

    changed = [step("a", text="do a differently"), step("b"), step("c")]
    refused = session.parallel_resumable(changed, workflow_id)

    assert [o["task_id"] for o in refused] == ["a", "b", "c"]
    for o in refused:
        assert o["success"] is False
        assert "cannot be resumed" in o["output"] and "cannot be resumed" in o["error"]
        assert o["session_id"] == f"task-run-{o['task_id']}"
    assert sorted(log(workspace)) == ["a", "b"]  # nothing ran, not even the new step c
    assert session.parallel_resumable(specs, workflow_id) == recorded  # the journal is intact


def test_given_a_changed_spec_of_a_failed_step_then_it_runs_with_the_new_spec(flaky_session, workspace, outage):
    workflow_id = wid()
    first = flaky_session.parallel_resumable([step("a"), step("b", extra="\nFLAKY")], workflow_id)
    assert [o["success"] for o in first] == [True, False]

    second = flaky_session.parallel_resumable([step("a"), step("b", text="b, fixed")], workflow_id)

    assert [o["success"] for o in second] == [True, True]
    assert second[1]["output"].startswith("echo: b, fixed")
    assert sorted(log(workspace)) == ["a", "b"]


def test_given_ids_no_longer_in_the_specs_then_they_are_ignored(flaky_session, workspace, outage):
    workflow_id = wid()
    first = flaky_session.parallel_resumable([step("a"), step("gone", extra="\nFLAKY")], workflow_id)
    assert [o["success"] for o in first] == [True, False]

    second = flaky_session.parallel_resumable([step("c"), step("a")], workflow_id)

    assert [o["task_id"] for o in second] == ["c", "a"]  # the caller's order, without "gone"
    assert [o["success"] for o in second] == [True, True]
    assert second[1] == first[0]
    assert outage.refused == 1  # "gone" was not tried again
    assert sorted(log(workspace)) == ["a", "c"]


def test_given_ids_no_longer_in_the_specs_when_the_rest_succeed_then_the_workflow_reads_succeeded(
        flaky_session, api, outage):
    workflow_id = wid()
    flaky_session.parallel_resumable([step("a"), step("gone", extra="\nFLAKY")], workflow_id)

    second = flaky_session.parallel_resumable([step("a"), step("c")], workflow_id)
    assert all(o["success"] for o in second)

    status, view = api.call("GET", f"/workflows/{workflow_id}")
    assert status == 200 and view["status"] == "succeeded"


def test_given_a_workflow_still_running_when_called_again_then_the_call_attaches_instead_of_rerunning(
        session, workspace, api):
    # The first step reads through an external query lane: the workflow runs until the test answers.
    session.set_lane_handler("query", "external", timeout_ms=60_000)
    workflow_id = wid()
    held = {"task_id": "held", "agent": "general", "description": "held",
            "prompt": "held\n/tool read " + json.dumps({"file_path": "f.txt"})}
    specs = [held, step("s1"), step("s2")]
    results: dict[str, list] = {}

    def call(name: str) -> threading.Thread:
        t = threading.Thread(target=lambda: results.setdefault(name, session.parallel_resumable(specs, workflow_id)),
                             daemon=True)
        t.start()
        return t

    first = call("first")
    deadline = time.monotonic() + 30
    while not (tasks := session.pending_external_tasks()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(tasks) == 1, "the held step never started"
    second = call("second")
    status, raw = api.call("POST", f"/sessions/{session.session_id}/workflows",
                           {"kind": "resumable", "workflow_id": workflow_id, "specs": specs})
    assert status == 202 and (raw["attached"], raw["status"]) == (True, "running")

    assert session.complete_external_task(tasks[0]["task_id"], True, {"output": "answer"})
    first.join(60)
    second.join(60)

    assert results["second"] == results["first"]
    assert [o["success"] for o in results["first"]] == [True, True, True]
    assert results["first"][0]["output"] == "echo: held\nread -> answer"
    assert sorted(log(workspace)) == ["s1", "s2"]  # each step's child ran once


def test_given_a_cancelled_workflow_when_called_again_then_only_the_steps_that_did_not_succeed_run(
        session, workspace, api):
    session.set_lane_handler("query", "external", timeout_ms=60_000)
    workflow_id = wid()
    held = {"task_id": "held", "agent": "general", "description": "held",
            "prompt": "held\n/tool read " + json.dumps({"file_path": "f.txt"})}
    specs = [step("a"), held]
    status, started = api.call("POST", f"/sessions/{session.session_id}/workflows",
                               {"kind": "resumable", "workflow_id": workflow_id, "specs": specs})
    assert status == 202
    status, progress = api.call("GET", f"/workflows/{workflow_id}", query={"wait_ms": 10_000, "after_finished": 0})
    assert progress["finished"] >= 1  # step a is done; "held" waits on its external task
    assert api.call("POST", f"/workflows/{workflow_id}/cancel")[0] == 200
    deadline = time.monotonic() + 30  # the cancel reaches the held step's child run, which settles it
    while (view := api.call("GET", f"/workflows/{workflow_id}")[1])["outcomes"][1] is None:
        assert time.monotonic() < deadline, view
        time.sleep(0.02)
    assert view["status"] == "cancelled" and view["outcomes"][1]["success"] is False

    session.set_lane_handler("query", "internal")  # the read now runs in the service
    outcomes = session.parallel_resumable(specs, workflow_id)

    assert [o["success"] for o in outcomes] == [True, True]
    assert outcomes[1]["output"].startswith("echo: held\nread -> ")
    assert log(workspace) == ["a"]  # a was journaled before the cancel: not run again


def test_given_two_callers_at_once_on_a_new_id_then_each_step_runs_once(session, workspace):
    workflow_id = wid()
    specs = [step(f"r{i}", extra="\n/sleep 300") for i in range(3)]
    barrier, results = threading.Barrier(2), {}

    def call(name: str) -> None:
        barrier.wait()
        results[name] = session.parallel_resumable(specs, workflow_id)

    threads = [threading.Thread(target=call, args=(n,), daemon=True) for n in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert results["one"] == results["two"]
    assert all(o["success"] for o in results["one"])
    assert sorted(log(workspace)) == ["r0", "r1", "r2"]


# -- session store compatibility and argument checks -----------------------------------------------
def test_given_a_file_session_store_when_the_session_opens_then_it_is_accepted_with_a_warning(
        agent, workspace, tmp_path):
    with pytest.warns(UserWarning, match="session_store"):
        s = agent.session(str(workspace), permissive=True, session_store=FileSessionStore(str(tmp_path / "j")))

    outcomes = s.parallel_resumable([step("only")], wid())

    assert outcomes[0]["success"] is True
    assert not (tmp_path / "j").exists()  # the journal lives in the service


def test_given_options_with_a_memory_session_store_then_it_is_accepted_with_a_warning(agent, workspace):
    with pytest.warns(UserWarning, match="DynamoDB"):
        s = agent.session(str(workspace), SessionOptions(session_store=MemorySessionStore()))
    assert s.parallel_resumable([{"task_id": "t", "agent": "explore", "prompt": "look"}], wid())[0]["success"]


@pytest.mark.parametrize("specs,workflow_id,match", [
    ([{"task_id": "a", "agent": "general", "prompt": "p"}] * 2, "w-dup", "distinct task_id"),
    ([{"task_id": "a", "agent": "general", "prompt": "p"}], "", "workflow_id"),
    ([{"task_id": "a", "agent": "general", "prompt": "p"}], None, "workflow_id"),
    ([{"task_id": "a", "agent": "general"}], "w-np", "prompt"),
])
def test_given_bad_arguments_when_calling_parallel_resumable_then_value_error(session, specs, workflow_id, match):
    with pytest.raises(ValueError, match=match):
        session.parallel_resumable(specs, workflow_id)
