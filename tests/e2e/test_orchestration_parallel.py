"""session.parallel on the embedded stack (docs/reference.md, "Orchestration"): outcomes in input order,
failures as outcomes, subagent tool limits, MaxConcurrency, structured output with one repair
turn, and the shared token budget."""
from __future__ import annotations

import json
import time

import pytest

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}, "label": {"type": "string"}},
          "required": ["n"]}


def spec(task_id: str, prompt: str, agent: str = "general", **extra) -> dict:
    return {"task_id": task_id, "agent": agent, "description": task_id, "prompt": prompt, **extra}


def tool(name: str, args: dict) -> str:
    return f"/tool {name} {json.dumps(args)}"


def start(api, session_id: str, body: dict) -> str:
    status, out = api.call("POST", f"/sessions/{session_id}/workflows", body)
    assert status == 202, out
    return out["workflow_id"]




def peak_in_flight(intervals: list[tuple[int, int]]) -> int:
    """The largest number of [start, end) intervals open at once (an end before a start at a tie)."""
    marks = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda m: (m[0], m[1]))
    peak = live = 0
    for _, delta in marks:
        live += delta
        peak = max(peak, live)
    return peak


def run_span(events, run_id: str) -> tuple[int, int]:
    evs = events.all(run_id)
    start = next(e["ts"] for e in evs if e["type"] == "run_start")
    end = next(e["ts"] for e in evs if e["type"] == "run_end")
    return start, end


# -- order, fields, isolation ----------------------------------------------------------------------
def wait_finished(api, workflow_id: str, count: int, timeout: float = 30.0) -> dict:
    """Long-poll until at least `count` steps have settled."""
    deadline, seen = time.monotonic() + timeout, -1
    while time.monotonic() < deadline:
        status, view = api.call("GET", f"/workflows/{workflow_id}", query={"wait_ms": 2000, "after_finished": seen})
        assert status == 200, view
        if view["finished"] >= count or view["done"]:
            return view
        seen = view["finished"]
    raise AssertionError(f"workflow {workflow_id}: fewer than {count} steps settled within {timeout} s")


def wait_pending(session, count: int = 1, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = session.pending_external_tasks()
        if len(tasks) >= count:
            return tasks
        time.sleep(0.02)
    raise AssertionError(f"no {count} pending external task(s) within {timeout} s")


def test_given_the_first_step_finishes_last_when_run_in_parallel_then_outcomes_come_back_in_input_order(
        api, session):
    # The first step reads through an external query lane, so it finishes only when the test says so:
    # after the other two, whatever order the run driver picks its messages up in.
    session.set_lane_handler("query", "external", timeout_ms=60_000)
    specs = [spec("held", "first\n" + tool("read", {"file_path": "notes.txt"})),
             spec("medium", "second\n/sleep 200"), spec("fast", "third")]

    wid = start(api, session.session_id, {"kind": "parallel", "specs": specs})
    progress = wait_finished(api, wid, 2)
    assert (progress["done"], progress["finished"]) == (False, 2)
    [task] = wait_pending(session)
    assert session.complete_external_task(task["task_id"], True, {"output": "from the worker"})
    view = api.wait_workflow(wid)

    finished = [h["step"] for h in view["history"] if h["type"] == "step_finished"]
    assert finished[-1] == "000000" and len(finished) == 3
    assert [o["task_id"] for o in view["outcomes"]] == ["held", "medium", "fast"]
    assert [o["output"] for o in view["outcomes"]] == [
        "echo: first\nread -> from the worker", "echo: second", "echo: third"]


def test_given_mixed_steps_when_run_with_the_sdk_then_each_outcome_carries_the_reference_fields(session):
    outcomes = session.parallel([
        spec("late", "alpha\n/sleep 300"),
        spec("ok", "beta"),
        spec("boom", "gamma\n/fail the model fell over"),
        spec("ghost", "delta", agent="no-such-agent"),
        spec("shaped", "epsilon\n/json {\"n\": 4}", output_schema=SCHEMA),
    ])

    assert [o["task_id"] for o in outcomes] == ["late", "ok", "boom", "ghost", "shaped"]
    for o in outcomes:
        assert o["session_id"] == f"task-run-{o['task_id']}"
        assert set(o["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
        assert o["usage"]["total_tokens"] == o["usage"]["prompt_tokens"] + o["usage"]["completion_tokens"]
    late, ok, boom, ghost, shaped = outcomes
    for good, text in ((late, "alpha"), (ok, "beta")):
        assert (good["success"], good["output"], good["agent"]) == (True, f"echo: {text}", "general")
        assert "error" not in good and "structured" not in good
        assert good["usage"]["total_tokens"] > 0
    assert boom["success"] is False and "the model fell over" in boom["error"]
    assert boom["output"] == boom["error"]  # output is the error text of a failed step
    assert ghost["success"] is False and ghost["agent"] == "no-such-agent"
    assert "unknown agent 'no-such-agent'" in ghost["error"] and "general" in ghost["error"]
    assert ghost["usage"]["total_tokens"] == 0  # it never ran
    assert shaped["success"] is True and shaped["structured"] == {"n": 4}


def test_given_failing_steps_among_good_ones_when_run_in_parallel_then_only_they_fail(session):
    specs = [spec(f"s{i}", f"fine {i}") for i in range(5)]
    specs[1] = spec("s1", "bad\n/fail nope")
    specs[3] = spec("s3", "bad", agent="wizard")

    outcomes = session.parallel(specs)

    assert [o["success"] for o in outcomes] == [True, False, True, False, True]
    assert [o["output"] for o in outcomes[::2]] == ["echo: fine 0", "echo: fine 2", "echo: fine 4"]


@pytest.mark.parametrize("alias,canonical", [
    ("general-purpose", "general"), ("verify", "verification"), ("verifier", "verification"),
    ("reviewer", "review"), ("code-review", "review")])
def test_given_an_agent_alias_when_a_step_names_it_then_it_runs_as_the_builtin_agent(session, events, alias,
                                                                                     canonical):
    [outcome] = session.parallel([spec("a", "aliased", agent=alias)])

    assert (outcome["success"], outcome["agent"], outcome["output"]) == (True, alias, "echo: aliased")
    start_event = events.all(outcome["run_id"])[0]
    assert (start_event["type"], start_event["agent"]) == ("run_start", canonical)


def test_given_read_only_agents_when_their_child_calls_write_then_the_tool_is_refused_and_nothing_is_written(
        session, workspace):
    write = tool("write", {"file_path": "forbidden.txt", "content": "x"})

    outcomes = session.parallel([spec("e", f"try\n{write}", agent="explore"),
                                 spec("p", f"try\n{write}", agent="plan"),
                                 spec("v", f"try\n{write}", agent="verify")])

    for o in outcomes:
        assert o["success"] is True  # a refused tool is a tool error the model sees, not a failed step
        assert "write -> tool 'write' is not available" in o["output"], o["output"]
    assert not (workspace / "forbidden.txt").exists()


def test_given_bash_when_verification_or_explore_children_call_it_then_only_verification_may(session):
    bash = tool("bash", {"command": "echo from-bash"})

    verify, explore = session.parallel([spec("v", f"run\n{bash}", agent="verification"),
                                        spec("e", f"run\n{bash}", agent="explore")])

    assert verify["output"] == "echo: run\nbash -> from-bash"
    assert "bash -> tool 'bash' is not available to the explore agent" in explore["output"]


def test_given_a_general_child_when_it_writes_then_the_file_lands_in_the_parents_workspace(session, workspace):
    [o] = session.parallel([spec("w", "make it\n" + tool("write", {"file_path": "made.txt", "content": "hi"}))])

    assert o["success"] is True and o["output"].startswith("echo: make it\nwrite -> ")
    assert (workspace / "made.txt").read_text() == "hi"


def test_given_a_spec_with_its_own_workspace_then_the_child_works_there_instead_of_the_parents(
        session, workspace, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write = tool("write", {"file_path": "out.txt", "content": "moved"})

    [o] = session.parallel([spec("w", f"write\n{write}", workspace=str(elsewhere))])

    assert o["success"] is True
    assert (elsewhere / "out.txt").read_text() == "moved"
    assert not (workspace / "out.txt").exists()


def test_given_max_steps_when_a_child_needs_more_turns_then_only_its_step_fails_on_the_cap(session):
    two_turns = "look\n" + tool("ls", {"path": "."})

    capped, free = session.parallel([spec("capped", two_turns, max_steps=1), spec("free", two_turns)])

    assert capped["success"] is False and "max_turns" in capped["error"]
    assert free["success"] is True and free["output"].startswith("echo: look\nls -> ")


# -- bounded concurrency ---------------------------------------------------------------------------
def test_given_max_parallel_tasks_3_when_ten_steps_run_then_at_most_three_are_in_flight_and_three_are_reached(
        agent, api, events, workspace):
    s = agent.session(str(workspace), max_parallel_tasks=3)
    specs = [spec(f"t{i}", f"step {i}\n/sleep 200") for i in range(10)]

    view = api.wait_workflow(start(api, s.session_id, {"kind": "parallel", "specs": specs}))

    assert view["status"] == "succeeded" and all(o["success"] for o in view["outcomes"])
    starts = {h["step"]: h["ts"] for h in view["history"] if h["type"] == "step_started"}
    ends = {h["step"]: h["ts"] for h in view["history"] if h["type"] == "step_finished"}
    assert len(starts) == len(ends) == 10
    assert peak_in_flight([(starts[k], ends[k]) for k in starts]) == 3
    # The child runs themselves (their own first and last events) never overlap more either.
    assert peak_in_flight([run_span(events, o["run_id"]) for o in view["outcomes"]]) <= 3


def test_given_the_default_options_when_a_session_is_made_then_its_bound_is_eight(api, session):
    assert api.session_view(session.session_id)["max_parallel_tasks"] == 8


# -- structured output -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def structured(stack, tmp_path_factory):
    """One parallel call covering every structured-output case; the tests below read it."""
    from a3s_serverless import Agent

    ws = tmp_path_factory.mktemp("structured")
    s = Agent(stack.transport(), local=True).session(str(ws))
    digits = {"type": "string", "pattern": "^[0-9]+$"}
    outcomes = s.parallel([
        spec("valid", "give\n/json {\"n\": 7, \"label\": \"seven\"}", output_schema=SCHEMA),
        spec("minimal", "give", output_schema=SCHEMA),
        spec("not-json", "give\n/json not json", output_schema=SCHEMA),
        spec("wrong-shape", "give\n/json {\"n\": \"seven\"}", output_schema=SCHEMA),
        spec("impossible", "give", output_schema=digits),
        spec("plain", "give"),
    ])
    yield dict(zip(["valid", "minimal", "not-json", "wrong-shape", "impossible", "plain"], outcomes, strict=True))
    s.close()


def turns(api, run_id: str) -> int:
    status, run = api.call("GET", f"/runs/{run_id}")
    assert status == 200, run
    return run["turns"]


def test_given_a_schema_valid_answer_then_the_step_succeeds_with_the_parsed_value(structured, api):
    o = structured["valid"]
    assert (o["success"], o["structured"]) == (True, {"n": 7, "label": "seven"})
    assert json.loads(o["output"]) == {"n": 7, "label": "seven"}
    assert turns(api, o["run_id"]) == 1


def test_given_no_json_directive_then_structured_is_the_smallest_instance_of_the_schema(structured, api):
    o = structured["minimal"]
    assert (o["success"], o["structured"]) == (True, {"n": 0})
    assert turns(api, o["run_id"]) == 1


@pytest.mark.parametrize("case", ["not-json", "wrong-shape"])
def test_given_an_invalid_first_answer_then_one_repair_turn_fixes_it(structured, api, events, case):
    o = structured[case]
    assert (o["success"], o["structured"]) == (True, {"n": 0})
    assert "error" not in o
    assert turns(api, o["run_id"]) == 2
    texts = [e["text"] for e in events.all(o["run_id"]) if e["type"] == "text"]
    assert texts[-1] == json.dumps({"n": 0})


def test_given_a_schema_the_answer_cannot_meet_then_the_step_fails_after_one_repair(structured, api):
    o = structured["impossible"]
    assert o["success"] is False and "structured" not in o
    assert o["output"].rstrip().endswith("]")
    last = o["output"].splitlines()[-1]
    assert last.startswith("[structured output failed: ") and "^[0-9]+$" in last
    assert o["error"].startswith("structured output failed")
    assert turns(api, o["run_id"]) == 2


def test_given_no_schema_then_the_outcome_has_no_structured_field(structured):
    o = structured["plain"]
    assert o["success"] is True and "structured" not in o and o["output"] == "echo: give"


# -- token budget ----------------------------------------------------------------------------------
def test_given_a_budget_of_one_token_when_steps_run_one_at_a_time_then_later_steps_fail_on_the_budget(
        agent, workspace):
    s = agent.session(str(workspace), max_parallel_tasks=1)

    outcomes = s.parallel([spec(f"b{i}", f"spend {i}") for i in range(3)], budget_tokens=1)

    first, *later = outcomes
    assert first["success"] is True and first["usage"]["total_tokens"] > 1
    for o in later:
        assert o["success"] is False
        assert "token budget exhausted" in o["error"] and "token budget exhausted" in o["output"]
        assert "run_id" not in o  # refused before a child run was made


def test_given_no_budget_when_the_same_steps_run_then_all_succeed(agent, workspace):
    s = agent.session(str(workspace), max_parallel_tasks=1)

    assert all(o["success"] for o in s.parallel([spec(f"b{i}", f"spend {i}") for i in range(3)]))


def test_given_a_progress_callable_when_parallel_runs_on_the_stack_then_it_counts_every_step_to_the_end(
        session, capsys):
    updates: list[tuple[int, int]] = []
    outcomes = session.parallel([spec(f"p{i}", f"step {i}") for i in range(3)],
                                progress=lambda finished, total: updates.append((finished, total)))
    assert [o["success"] for o in outcomes] == [True] * 3
    assert updates[-1] == (3, 3) and [f for f, _ in updates] == sorted(f for f, _ in updates)
    assert capsys.readouterr().err == ""  # a callable draws no bar


def test_given_steps_launched_together_then_their_runs_are_driven_at_once_not_one_after_another(stack, agent, workspace):
    # One run per driver invocation: eight steps that each spend 1.5 s in their model call are
    # all in a driver invocation at the same time (a batch of runs in one invocation would not be).
    session = agent.session(str(workspace), max_parallel_tasks=8)
    (pump,) = [p for p in stack.pumps if p.function.logical_id == "RunDriverFunction"]
    pump.peak = pump.inflight

    outcomes = session.parallel([spec(f"s{i}", f"step {i}\n/sleep 1500") for i in range(8)])

    assert [o["success"] for o in outcomes] == [True] * 8
    assert pump.peak >= 8
