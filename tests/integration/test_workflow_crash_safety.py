"""The workflow engine under at-least-once delivery and crashes (engine/workflows.py: "every part is
idempotent, so a redelivered message replays it without doing anything twice").

Two levels: the engine driven message by message on the moto-backed store with recorded queues
(deterministic interleavings: duplicates, a crash between two writes, racing creators), and the
live embedded stack with real SQS redelivery after the 5 s visibility timeout. A bash step that
appends its id to log.txt shows how many times each step really ran."""
from __future__ import annotations

import dataclasses
import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from a3s_core.api.schemas import CreateSessionBody, StartWorkflowBody
from a3s_core.api.service import Service
from a3s_core.domain.errors import NotFound
from a3s_core.engine import workflows
from a3s_core.engine.dispatch import handle_message
from a3s_core.engine.messages import wire
from a3s_core.llm.registry import MODEL_FACTORIES
from a3s_core.llm.scripted import ScriptedModel
from a3s_core.store.memory import MemoryStore

LOCAL = "local"


def plenty() -> int:
    return 60_000


def step(task_id: str, extra: str = "") -> dict:
    bash = json.dumps({"command": f"echo {task_id} >> log.txt"})
    return {"task_id": task_id, "agent": "general", "description": task_id,
            "prompt": f"do {task_id}\n/tool bash {bash}{extra}"}


def log(workspace: Path) -> list[str]:
    path = workspace / "log.txt"
    return path.read_text().splitlines() if path.exists() else []


class Proxy:
    """The store, with some methods replaced by the test."""

    def __init__(self, inner: Any, **overrides: Any) -> None:
        self._inner, self._overrides = inner, overrides

    def __getattr__(self, name: str) -> Any:
        return self._overrides.get(name) or getattr(self._inner, name)


class Engine:
    """One tenant and session on the offline runtime; the test delivers the runs-queue messages."""

    def __init__(self, rt, workspace: Path, concurrency: int = 2) -> None:
        self.rt, self.tenant = rt, workspace.parent.name  # its workspace lies under its own root
        self.svc = Service(rt, self.tenant)
        self.sid = self.svc.create_session(CreateSessionBody(
            workspace=str(workspace), permissive=True, max_parallel_tasks=concurrency))["session_id"]
        self.delivered: list[dict] = []
        self.crashes = 0

    def start(self, specs: list[dict], **body: Any) -> str:
        return self.svc.start_workflow(self.sid, StartWorkflowBody.model_validate(
            {"kind": "parallel", "specs": specs, **body}))["workflow_id"]

    def deliver(self, body: dict, rt=None) -> bool:
        """One delivery; a raise is a crashed invocation, and SQS will deliver the message again."""
        try:
            handle_message(rt or self.rt, body, plenty)
            return True
        except Exception:
            self.crashes += 1
            self.rt.queues.runs.append((body, 0))
            return False

    def drain(self, times: int = 1, limit: int = 500) -> None:
        """Deliver every queued message (each `times` in a row) until the queue is empty."""
        for _ in range(limit):
            if not self.rt.queues.runs:
                return
            body, _ = self.rt.queues.runs.pop(0)
            self.delivered.append(body)
            for _ in range(times):
                if not self.deliver(body):
                    break
        raise AssertionError("the runs queue never drained")

    def workflow(self, wid: str):
        return self.rt.store.get_workflow(self.tenant, wid)

    def steps(self, wid: str):
        return sorted(self.rt.store.list_steps(self.tenant, wid), key=lambda s: s.index)

    def tool_runs(self, run_id: str) -> int:
        return sum(1 for e in self.rt.store.list_events(self.tenant, run_id, 0) if e.type == "tool_end")


@pytest.fixture(params=["dynamo", "memory"])
def engine_rt(request, offline_rt):
    """The offline runtime on the stack's DynamoStore (moto), or on the in-memory fake store."""
    if request.param == "memory":
        return dataclasses.replace(offline_rt, store=MemoryStore())
    return offline_rt


# -- engine level: duplicates and crashes between writes -------------------------------------------
def test_given_every_message_delivered_twice_then_each_step_runs_once_and_the_join_counts_each_once(
        engine_rt, workspace):
    eng = Engine(engine_rt, workspace, concurrency=2)
    wid = eng.start([step(f"s{i}") for i in range(5)])

    eng.drain(times=2)
    for body in list(eng.delivered):  # and the whole history once more, long after the end
        eng.deliver(body)

    wf = eng.workflow(wid)
    assert (wf.status, wf.finished, wf.n) == ("succeeded", 5, 5)
    assert sorted(log(workspace)) == [f"s{i}" for i in range(5)]
    steps = eng.steps(wid)
    assert all(s.status == "succeeded" and s.outcome and s.outcome.success for s in steps)
    assert all(eng.tool_runs(s.run_id) == 1 for s in steps)
    assert all(s.run_id == workflows.child_run_id(wf, s, 0) for s in steps)  # one child run per step
    assert eng.crashes == 0


def test_given_a_driver_that_dies_after_settling_a_step_before_launching_the_next_then_a_redelivery_launches_it(
        engine_rt, workspace, monkeypatch):
    eng = Engine(engine_rt, workspace, concurrency=1)
    real_launch, died = workflows.launch, []

    def launch(rt, wf, position, *rest):
        if position >= wf.concurrency and not died:  # the first chained launch, from on_child_end
            died.append(position)
            raise RuntimeError("invocation killed")
        return real_launch(rt, wf, position, *rest)

    monkeypatch.setattr(workflows, "launch", launch)
    wid = eng.start([step("a"), step("b"), step("c")])

    eng.drain()

    assert died == [1] and eng.crashes == 1
    wf = eng.workflow(wid)
    assert (wf.status, wf.finished) == ("succeeded", 3)
    assert sorted(log(workspace)) == ["a", "b", "c"]


def test_given_a_driver_that_dies_after_the_last_count_before_the_finish_then_a_redelivery_finishes_it(
        engine_rt, workspace):
    store, died = engine_rt.store, []

    def finish_workflow(tenant, workflow_id, attempt, status, when_all_done):
        if when_all_done and not died:
            died.append(workflow_id)
            raise RuntimeError("invocation killed")
        return store.finish_workflow(tenant, workflow_id, attempt, status, when_all_done)

    rt = dataclasses.replace(engine_rt, store=Proxy(store, finish_workflow=finish_workflow))
    eng = Engine(rt, workspace, concurrency=2)
    wid = eng.start([step("a"), step("b")])

    eng.drain()

    assert died == [wid] and eng.crashes == 1
    wf = eng.workflow(wid)
    assert (wf.status, wf.finished) == ("succeeded", 2)
    assert sorted(log(workspace)) == ["a", "b"]


def test_given_two_first_run_resumable_callers_when_the_loser_creates_after_the_winner_launched_then_it_still_finishes(
        engine_rt, workspace):
    eng = Engine(engine_rt, workspace, concurrency=2)
    wid = f"race-{secrets.token_hex(4)}"
    specs = [step("a"), step("b")]
    winner = workflows.resume(engine_rt, eng.tenant, eng.sid, specs, 2, None, wid)
    body, _ = engine_rt.queues.runs.pop(0)
    eng.deliver(body)  # the winner's workflow_start: both steps launched (their child runs exist)
    assert set(workflows.launched(engine_rt, eng.workflow(wid), eng.steps(wid))) == {"a", "b"}

    store, stale = engine_rt.store, []

    def get_workflow(tenant, workflow_id):  # the loser read before the winner wrote
        if not stale:
            stale.append(workflow_id)
            raise NotFound(workflow_id)
        return store.get_workflow(tenant, workflow_id)

    loser_rt = dataclasses.replace(engine_rt, store=Proxy(store, get_workflow=get_workflow))
    loser = workflows.resume(loser_rt, eng.tenant, eng.sid, specs, 2, None, wid)
    eng.drain()

    assert (winner["attached"], loser["attached"]) == (False, True)
    wf = eng.workflow(wid)
    assert (wf.status, wf.finished) == ("succeeded", 2)
    assert sorted(log(workspace)) == ["a", "b"]


@pytest.mark.parametrize("engine_rt", ["memory", pytest.param("dynamo")], indirect=True)
def test_given_a_first_resumable_create_that_died_after_writing_its_steps_when_called_again_then_it_runs(
        engine_rt, workspace):
    eng = Engine(engine_rt, workspace, concurrency=2)
    wid = f"orphan-{secrets.token_hex(4)}"
    specs = [step("a"), step("b")]
    # What the crashed create left behind: its step items, but no workflow item.
    engine_rt.store.put_steps([workflows._step(eng.tenant, wid, s["task_id"], i, i, 1, s) for i, s in enumerate(specs)])

    started = workflows.resume(engine_rt, eng.tenant, eng.sid, specs, 2, None, wid)
    eng.drain()

    assert started["workflow_id"] == wid
    wf = eng.workflow(wid)
    assert (wf.status, wf.finished) == ("succeeded", 2)
    assert sorted(log(workspace)) == ["a", "b"]


# -- the live stack: real redelivery ---------------------------------------------------------------
def wait_view(api, workflow_id: str, timeout: float = 60.0) -> dict:
    deadline, seen = time.monotonic() + timeout, -1
    while time.monotonic() < deadline:
        status, view = api.call("GET", f"/workflows/{workflow_id}", query={"wait_ms": 5000, "after_finished": seen})
        assert status == 200, view
        if view["done"]:
            return view
        seen = view["finished"]
    raise AssertionError(f"workflow {workflow_id} not done within {timeout} s")


class Api:
    """Raw requests through the embedded API Gateway, as the local API key."""

    def __init__(self, stack) -> None:
        self.stack = stack

    def call(self, method: str, path: str, body: Any = None, query: dict | None = None) -> tuple[int, Any]:
        headers = {"content-type": "application/json", "authorization": "Bearer a3s-local-key"}
        status, out = self.stack.invoke_http(method, path, None if body is None else json.dumps(body), query, headers)
        return status, json.loads(out) if out else None


@pytest.fixture
def api(stack) -> Api:
    return Api(stack)


@pytest.fixture
def redelivery(stack):
    """The shared stack, with the runs queue's 5 s visibility timeout that these tests count on
    (another module provisioning template.yaml into the same moto backend may have changed it)."""
    want = str(stack.model.parameters["RunsVisibilityTimeout"])
    stack.sqs.set_queue_attributes(QueueUrl=stack.queue_url("RunsQueue"), Attributes={"VisibilityTimeout": want})
    return stack


def start(api, session_id: str, specs: list[dict]) -> str:
    status, out = api.call("POST", f"/sessions/{session_id}/workflows", {"kind": "parallel", "specs": specs})
    assert status == 202, out
    return out["workflow_id"]


@pytest.mark.slow
def test_given_a_driver_that_dies_between_a_child_runs_end_and_its_step_settling_then_sqs_redelivery_settles_it_once(
        redelivery, stack, api, agent, workspace, monkeypatch):
    s = agent.session(str(workspace), permissive=True, max_parallel_tasks=2)
    real, died = workflows.on_child_end, []

    def on_child_end(rt, run):
        if run.session_id == s.session_id and not died:
            died.append(run.run_id)
            raise RuntimeError("Lambda killed after the run ended, before the step settled")
        return real(rt, run)

    monkeypatch.setattr(workflows, "on_child_end", on_child_end)
    specs = [step(f"c{i}") for i in range(3)]

    view = wait_view(api, start(api, s.session_id, specs))

    assert len(died) == 1
    assert (view["status"], view["finished"]) == ("succeeded", 3)
    assert [o["task_id"] for o in view["outcomes"]] == ["c0", "c1", "c2"]
    assert all(o["success"] and o["output"] == f"echo: do {o['task_id']}\nbash -> " for o in view["outcomes"])
    assert died[0] in {o["run_id"] for o in view["outcomes"]}
    assert stack.runtime.store.get_workflow(LOCAL, view["workflow_id"]).finished == 3
    assert sorted(log(workspace)) == ["c0", "c1", "c2"]


class LambdaKilled(BaseException):
    """Like a Lambda killed at its timeout: not an exception the model adapter could have raised."""


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_given_a_driver_that_dies_mid_step_after_a_tool_ran_then_the_step_resumes_without_running_it_again(
        redelivery, stack, api, agent, workspace, monkeypatch):
    crashed: list[str] = []

    class Crashy:
        def complete(self, messages, tools, system=None, *, output_schema=None):
            if any(m["role"] == "tool" for m in messages) and "CRASH" in messages[0]["content"] and not crashed:
                crashed.append(messages[0]["content"])
                raise LambdaKilled("Lambda killed mid-turn")  # the invocation dies
            return ScriptedModel().complete(messages, tools, system, output_schema=output_schema)

    monkeypatch.setitem(MODEL_FACTORIES, "crashy", lambda _id: Crashy())
    s = agent.session(str(workspace), permissive=True, model="crashy")

    view = wait_view(api, start(api, s.session_id, [step("m0", "\nCRASH"), step("m1")]))

    assert len(crashed) == 1
    assert (view["status"], view["finished"]) == ("succeeded", 2)
    assert [o["output"] for o in view["outcomes"]] == ["echo: do m0\nbash -> ", "echo: do m1\nbash -> "]
    assert sorted(log(workspace)) == ["m0", "m1"]


@pytest.mark.slow
def test_given_duplicate_workflow_start_and_advance_messages_on_the_runs_queue_then_nothing_runs_twice(
        redelivery, stack, api, agent, workspace):
    s = agent.session(str(workspace), permissive=True, max_parallel_tasks=2)
    wid = start(api, s.session_id, [step(f"d{i}", "\n/sleep 100") for i in range(4)])
    store = stack.runtime.store
    wf = store.get_workflow(LOCAL, wid)
    children = [workflows.child_run_id(wf, st, 0) for st in store.list_steps(LOCAL, wid)]
    messages = [wire(workflows.workflow_message(LOCAL, wid))] + [{"kind": "advance", "tenant": LOCAL, "run_id": r}
                                                                for r in children]

    def send_all() -> None:
        for body in messages * 2:
            stack.sqs.send_message(QueueUrl=stack.queue_url("RunsQueue"), MessageBody=json.dumps(body))

    send_all()  # while it runs
    view = wait_view(api, wid)
    send_all()  # and after it ended
    stack.wait_idle(timeout=60)

    assert (view["status"], view["finished"]) == ("succeeded", 4)
    wf = store.get_workflow(LOCAL, wid)
    assert (wf.status, wf.finished, wf.n) == ("succeeded", 4, 4)  # the join counted each step once
    assert sorted(log(workspace)) == ["d0", "d1", "d2", "d3"]
    assert [o["run_id"] for o in view["outcomes"]] == children
    for run_id in children:
        types = [e.type for e in store.list_events(LOCAL, run_id, 0)]
        assert types.count("tool_end") == 1 and types.count("run_end") == 1


# -- a step's launch: its run's creation, its session sent with it ----------------------------------
def test_given_launched_steps_then_their_view_shows_them_running_with_their_runs_and_the_rest_pending(
        engine_rt, workspace):
    eng = Engine(engine_rt, workspace, concurrency=1)
    wid = eng.start([step("a"), step("b")])
    body, _ = engine_rt.queues.runs.pop(0)
    eng.deliver(body)  # workflow_start: the first step launched, its run queued

    steps = workflows.steps_view(engine_rt, eng.tenant, wid)["steps"]
    wf = eng.workflow(wid)
    assert [(s["status"], s["run_id"]) for s in steps] == [
        ("running", workflows.child_run_id(wf, eng.steps(wid)[0], 0)), ("pending", None)]
    assert steps[0]["started_at"] is not None
    eng.drain()
    assert [s["status"] for s in workflows.steps_view(engine_rt, eng.tenant, wid)["steps"]] == ["succeeded"] * 2


def test_given_a_launch_then_its_run_message_carries_the_session_and_the_first_pick_up_reads_none(
        engine_rt, workspace):
    eng = Engine(engine_rt, workspace, concurrency=1)
    eng.start([step("a")])
    eng.deliver(engine_rt.queues.runs.pop(0)[0])  # workflow_start: step a launched
    (advance, _), = engine_rt.queues.runs
    assert advance["kind"] == "advance" and advance["session"]["session_id"] == eng.sid

    reads = []
    store = engine_rt.store
    counted = Proxy(store, get_session=lambda *a: reads.append(a) or store.get_session(*a),
                    session_and_tasks=lambda *a: reads.append(a) or store.session_and_tasks(*a))
    first = eng.deliver(advance, rt=dataclasses.replace(engine_rt, store=counted))
    assert first and reads == []  # the run's first pick-up: the session came with it


def test_given_a_message_carrying_another_tenants_session_then_the_driver_reads_its_own(engine_rt, workspace):
    eng = Engine(engine_rt, workspace, concurrency=1)
    eng.start([step("a")])
    eng.deliver(engine_rt.queues.runs.pop(0)[0])
    (advance, _), = engine_rt.queues.runs
    forged = {**advance, "session": {**advance["session"], "tenant": "someone-else", "workspace": "/elsewhere"}}

    reads = []
    store = engine_rt.store
    counted = Proxy(store, session_and_tasks=lambda *a: reads.append(a) or store.session_and_tasks(*a))
    assert eng.deliver(forged, rt=dataclasses.replace(engine_rt, store=counted))
    assert [r[:2] for r in reads] == [(eng.tenant, eng.sid)]
