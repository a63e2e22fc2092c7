"""session.pipeline (docs/reference.md, "Orchestration"): per-item chains through ordered stages, no
barrier between stages, early stops (None, a failed step, a raised stage), results in input order;
and the server-side declarative form, which keeps going without its client."""
from __future__ import annotations

import json
import threading
import time

import pytest


def spec(task_id: str, prompt: str, agent: str = "general") -> dict:
    return {"task_id": task_id, "agent": agent, "description": task_id, "prompt": prompt}


def first_line(outcome: dict) -> str:
    return outcome["output"].splitlines()[0]




# -- client-side stages ----------------------------------------------------------------------------
def test_given_two_stages_when_items_flow_through_then_stage_two_builds_on_stage_ones_output(session):
    seen: list[dict] = []

    def summarize(ctx):
        assert ctx["previous"] is None
        return spec("sum", f"summary of {ctx['item']}")

    def classify(ctx):
        seen.append(ctx)
        return spec("cls", f"classify <{ctx['previous']['output']}>")

    results = session.pipeline(["rust", "go", "zig"], [summarize, classify])

    assert [r["output"] for r in results] == [f"echo: classify <echo: summary of {x}>" for x in ("rust", "go", "zig")]
    assert all(r["success"] and r["task_id"] == "cls" for r in results)
    assert sorted(c["item"] for c in seen) == ["go", "rust", "zig"]
    for ctx in seen:
        prev = ctx["previous"]
        assert (prev["task_id"], prev["success"], prev["output"]) == ("sum", True, f"echo: summary of {ctx['item']}")


def test_given_stages_that_return_none_then_the_chain_stops_there(session):
    calls: list[tuple[str, int]] = []

    def stage(n):
        def make(ctx):
            calls.append((ctx["item"], n))
            if ctx["item"] == "none-at-1" and n == 1:
                return None
            if ctx["item"] == "none-at-2" and n == 2:
                return None
            return spec(f"s{n}", f"{ctx['item']} stage {n}")
        return make

    results = session.pipeline(["none-at-1", "none-at-2", "all"], [stage(1), stage(2), stage(3)])

    assert results[0] is None  # stage 1 made nothing, so the item has no outcome
    assert (results[1]["task_id"], results[1]["output"]) == ("s1", "echo: none-at-2 stage 1")
    assert (results[2]["task_id"], results[2]["output"]) == ("s3", "echo: all stage 3")
    assert sorted(calls) == sorted([("none-at-1", 1), ("none-at-2", 1), ("none-at-2", 2),
                                    ("all", 1), ("all", 2), ("all", 3)])


def test_given_a_failed_step_then_the_chain_stops_and_its_result_is_the_failure(session):
    later: list[str] = []

    def first(ctx):
        suffix = "\n/fail stage one broke" if ctx["item"] == "bad" else ""
        return spec("one", f"{ctx['item']}{suffix}")

    def second(ctx):
        later.append(ctx["item"])
        return spec("two", f"after {ctx['item']}")

    bad, good = session.pipeline(["bad", "good"], [first, second])

    assert (bad["task_id"], bad["success"]) == ("one", False) and "stage one broke" in bad["error"]
    assert (good["task_id"], good["success"], good["output"]) == ("two", True, "echo: after good")
    assert later == ["good"]


def test_given_a_stage_that_raises_then_it_counts_as_none(session):
    def first(ctx):
        if ctx["item"] == "explode-early":
            raise RuntimeError("no spec for you")
        return spec("one", f"first {ctx['item']}")

    def second(ctx):
        if ctx["item"] == "explode-late":
            raise KeyError("previous")
        return spec("two", f"second {ctx['item']}")

    results = session.pipeline(["explode-early", "explode-late", "fine"], [first, second])

    assert results[0] is None
    assert (results[1]["task_id"], results[1]["output"]) == ("one", "echo: first explode-late")
    assert (results[2]["task_id"], results[2]["output"]) == ("two", "echo: second fine")


def test_given_a_slow_item_when_a_fast_one_moves_on_then_there_is_no_barrier_between_stages(
        session, events):
    """The slow item's stage 1 is held on an external task that is released only once the fast item
    has gone through every stage: with a barrier between stages, that could never happen."""
    session.set_lane_handler("query", "external", timeout_ms=60_000)
    fast_done = threading.Event()
    previous: dict[str, dict] = {}

    def first(ctx):
        if ctx["item"] == "slow":
            return spec("one", "slow one\n/tool read " + json.dumps({"file_path": "big.txt"}))
        return spec("one", "fast one")

    def second(ctx):
        previous[ctx["item"]] = ctx["previous"]
        return spec("two", f"two after {first_line(ctx['previous'])}")

    def third(ctx):
        if ctx["item"] == "fast":
            fast_done.set()
        return None

    results: list = []
    worker = threading.Thread(target=lambda: results.extend(session.pipeline(["slow", "fast"], [first, second, third])),
                              daemon=True)
    worker.start()
    try:
        assert fast_done.wait(30), "the fast item never got past stage 2 while the slow one sat in stage 1"
        deadline = time.monotonic() + 30
        while not (tasks := session.pending_external_tasks()) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(tasks) == 1 and "slow" not in previous  # the slow item is still in stage 1
    finally:
        for t in session.pending_external_tasks():
            session.complete_external_task(t["task_id"], True, {"output": "big file"})
        worker.join(60)

    slow, fast = results  # input order, though the fast item finished long before
    assert fast["output"] == "echo: two after echo: fast one"
    assert slow["output"] == "echo: two after echo: slow one"
    fast_two_started = events.all(fast["run_id"])[0]["ts"]
    slow_one_ended = [e for e in events.all(previous["slow"]["run_id"]) if e["type"] == "run_end"][0]["ts"]
    assert fast_two_started < slow_one_ended


def test_given_no_items_then_the_pipeline_returns_an_empty_list(session):
    assert session.pipeline([], [lambda ctx: spec("x", "never")]) == []


def test_given_stages_mixing_callables_and_templates_then_the_sdk_refuses(session):
    with pytest.raises(ValueError, match="callables"):
        session.pipeline(["a"], [lambda ctx: None, {"agent": "general", "prompt": "{item}"}])


# -- declarative stages (server-side) --------------------------------------------------------------
STAGES = [{"agent": "general", "description": "first", "prompt": "first {item}"},
          {"agent": "general", "description": "second", "prompt": "second <{previous.output}>"}]


def test_given_template_stages_when_items_flow_through_then_each_result_is_the_items_last_stage(session):
    results = session.pipeline(["apple", "pear", {"k": 1}], STAGES)

    assert [r["output"] for r in results] == ["echo: second <echo: first apple>", "echo: second <echo: first pear>",
                                              'echo: second <echo: first {"k": 1}>']
    assert all(r["success"] for r in results)
    assert len({r["run_id"] for r in results}) == 3


def test_given_template_stages_when_an_items_stage_fails_then_only_its_chain_stops(session):
    bad, good = session.pipeline(["bad\n/fail no first stage", "good"], STAGES)

    assert bad["success"] is False and "no first stage" in bad["error"]
    assert good["success"] is True and good["output"] == "echo: second <echo: first good>"


def test_given_a_declarative_pipeline_when_the_client_goes_away_then_it_still_finishes(api, session, stack):
    body = {"kind": "pipeline", "items": ["left", "right"],
            "stages": [{**STAGES[0], "prompt": "first {item}\n/sleep 300"}, STAGES[1]]}

    status, started = api.call("POST", f"/sessions/{session.session_id}/workflows", body)
    assert status == 202 and started["status"] == "running"
    # Nobody polls: the client is gone. The service carries the chains through both stages.
    stack.wait_idle(timeout=60)
    status, view = api.call("GET", f"/workflows/{started['workflow_id']}")

    assert status == 200 and (view["kind"], view["status"], view["done"]) == ("pipeline", "succeeded", True)
    assert [o["output"] for o in view["outcomes"]] == ["echo: second <echo: first left>",
                                                       "echo: second <echo: first right>"]


@pytest.mark.parametrize("bad_stage,words", [
    ({"agent": "wizard", "description": "bad", "prompt": "second {previous.output}"}, ["unknown agent", "wizard"]),
    ({"agent": "general", "description": "no prompt"}, ["prompt"]),
])
def test_given_a_later_template_stage_that_is_not_a_valid_spec_then_it_is_refused_or_fails_only_that_item(
        api, session, stack, bad_stage, words):
    body = {"kind": "pipeline", "items": ["x", "y"], "stages": [STAGES[0], bad_stage]}

    status, started = api.call("POST", f"/sessions/{session.session_id}/workflows", body)
    if 400 <= status < 500:  # refused up front: fine too
        assert all(w in started["error"]["message"] for w in words), started
        return
    wid = started["workflow_id"]
    try:
        view = api.wait_workflow(wid, timeout=15)
        assert view["status"] == "failed"
        for o in view["outcomes"]:
            assert o["success"] is False and all(w in o["error"] for w in words), o
    finally:  # were it to loop on the runs queue, stop it before the next test
        api.call("POST", f"/workflows/{wid}/cancel")
