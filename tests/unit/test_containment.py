"""Giving up on a runs-queue message (a3s_core.engine.containment) on the in-memory store: what is failed,
what is left alone, and what a failed run leaves behind (its tasks cancelled, its workflows stopped)."""
from __future__ import annotations

import pytest

from a3s_core.domain.errors import Conflict
from a3s_core.domain.items import PendingCall, Run, Session, Task
from a3s_core.engine import workflows
from a3s_core.engine.containment import dead_letter, fail_run, give_up
from a3s_core.engine.queues import MemoryQueues
from a3s_core.runtime import Runtime, Settings
from a3s_core.store.memory import MemoryStore

NOW = 1_700_000_000_000


@pytest.fixture
def rt() -> Runtime:
    settings = Settings(table="t", runs_queue_url="q", lane_queue_urls={})
    store = MemoryStore()
    store.create_session(Session(tenant="t1", session_id="s1", workspace="/w"))
    return Runtime(settings=settings, store=store, queues=MemoryQueues(), clock=lambda: NOW)


def a_run(rt: Runtime, status: str = "waiting", **fields) -> Run:
    run = Run(tenant="t1", run_id="r1", session_id="s1", prompt="p", model="scripted", workspace="/w",
              status=status, **fields)
    rt.store.create_run(run)
    return rt.store.get_run("t1", "r1")


def a_task(rt: Runtime, task_id: str, lane: str = "execute") -> None:
    rt.store.create_task(Task(tenant="t1", session_id="s1", task_id=task_id, run_id="r1", call_id="c1", lane=lane,
                              command_type="bash", payload={}, timeout_ms=60_000, created_at=NOW,
                              deadline=NOW + 60_000))


def test_given_a_message_that_is_not_json_or_of_an_unknown_kind_then_it_is_dropped_and_nothing_changes(rt):
    a_run(rt)
    assert dead_letter(rt, None) == {"action": "dropped", "reason": "the message is not a JSON object"}
    out = give_up(rt, {"kind": "teleport", "tenant": "t1", "run_id": "r1"}, "boom")
    assert out == {"action": "dropped", "reason": "unknown runs-queue message kind 'teleport'", "error": "boom"}
    assert rt.store.get_run("t1", "r1").status == "waiting"


def test_given_a_run_that_is_given_up_then_it_fails_and_its_tasks_and_workflows_are_stopped(rt):
    workflows.start(rt, "t1", "s1", "parallel", [{"task_id": "a", "agent": "general", "prompt": "x"}], 1,
                    workflow_id="wf-1")
    a_task(rt, "task-run")
    a_task(rt, "task-confirm", lane="control")
    a_run(rt, status="running", children=["wf-1"], pending=[
        PendingCall(id="c1", name="bash", arguments={}, lane="execute", task_id="task-run",
                    confirm_task_id="task-confirm")])
    out = give_up(rt, {"kind": "advance", "tenant": "t1", "run_id": "r1"}, "internal error: it broke")
    assert out == {"action": "failed_run", "kind": "advance", "tenant": "t1", "run_id": "r1",
                   "error": "internal error: it broke"}
    run = rt.store.get_run("t1", "r1")
    assert (run.status, run.stop_reason, run.error) == ("failed", "internal_error", "internal error: it broke")
    assert rt.store.list_events("t1", "r1", 0)[-1].data["status"] == "failed"
    assert {t: rt.store.get_task("t1", "s1", t).status for t in ("task-run", "task-confirm")} == \
        {"task-run": "cancelled", "task-confirm": "cancelled"}
    assert rt.store.get_workflow("t1", "wf-1").status == "cancelled"


def test_given_a_run_that_has_ended_then_it_is_not_failed_again(rt):
    a_run(rt, status="succeeded", text="all good")
    assert fail_run(rt, "t1", "r1", "late") is False
    assert give_up(rt, {"kind": "task_timeout", "tenant": "t1", "session_id": "s1", "task_id": "k1", "run_id": "r1"}, "late")["action"] == "left_run"
    run = rt.store.get_run("t1", "r1")
    assert (run.status, run.text, run.error) == ("succeeded", "all good", None)


def test_given_an_unknown_run_or_workflow_then_nothing_is_failed(rt):
    assert fail_run(rt, "t1", "run-nope", "x") is False
    out = give_up(rt, {"kind": "workflow_timeout", "tenant": "t1", "workflow_id": "wf-nope"}, "x")
    assert out["action"] == "left_workflow"


def test_given_a_run_that_keeps_changing_while_it_is_failed_then_conflict_rather_than_overwrite(rt, monkeypatch):
    a_run(rt, status="running")

    def always_moved_on(run, events):
        raise Conflict("moved on")

    monkeypatch.setattr(rt.store, "save_run", always_moved_on)
    with pytest.raises(Conflict, match="run r1 kept changing while it was being failed"):
        fail_run(rt, "t1", "r1", "x")
