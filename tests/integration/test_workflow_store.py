"""The workflow engine's store contract (the Store's workflow methods), held to the same semantics on the
in-memory fake and on the stack's DynamoStore (moto): every transition is conditional, so a
redelivered or concurrent caller can never launch, count or finish anything twice."""
from __future__ import annotations

import secrets
import threading

import pytest

from a3s_core.domain.errors import Conflict, NotFound
from a3s_core.domain.items import Run, Session, Step, StepRef, Workflow
from a3s_core.domain.outcomes import StepOutcome, Usage
from a3s_core.engine.workflows import spec_hash
from a3s_core.store.base import Settlement
from a3s_core.store.memory import MemoryStore


@pytest.fixture(params=["memory", "dynamo"])
def store(request):
    if request.param == "memory":
        return MemoryStore()
    return request.getfixturevalue("stack").runtime.store


@pytest.fixture
def tenant() -> str:
    return f"wfstore-{secrets.token_hex(4)}"


def make(tenant: str, n: int = 2, attempt: int = 1, kind: str = "parallel") -> tuple[Workflow, list[Step]]:
    wid = f"wf-{secrets.token_hex(6)}"
    keys = [f"{i:06d}" for i in range(n)]
    steps = []
    for i, key in enumerate(keys):
        spec = {"task_id": f"t{i}", "agent": "general", "prompt": f"step {i}"}
        steps.append(Step(tenant=tenant, workflow_id=wid, key=key, index=i, position=i, attempt=attempt,
                          spec=spec, spec_hash=spec_hash(spec)))
    wf = Workflow(tenant=tenant, workflow_id=wid, session_id="sess-x", kind=kind, order=keys, size=len(keys), concurrency=2,
                  attempt=attempt)
    return wf, steps


def outcome(step: Step, ok: bool = True, tokens: int = 7) -> StepOutcome:
    return StepOutcome(task_id=step.spec["task_id"], session_id="s", agent="general", success=ok, output="done",
                       usage=Usage(prompt_tokens=tokens, completion_tokens=0, total_tokens=tokens))


def launch(store, step: Step, run_id: str = "run-1") -> None:
    assert store.move_step(step, "pending", 0, "running", run_id, 0, None, 1_000)


# -- create ----------------------------------------------------------------------------------------
def test_given_a_workflow_when_it_is_created_then_it_and_its_steps_read_back(store, tenant):
    wf, steps = make(tenant, n=3)

    store.create_workflow(wf, steps)

    got = store.get_workflow(tenant, wf.workflow_id)
    assert (got.status, got.finished, got.attempt, got.n, got.order) == ("running", 0, 1, 3, wf.order)
    listed = store.list_steps(tenant, wf.workflow_id)
    assert [s.key for s in listed] == wf.order
    assert all(s.status == "pending" and s.run_id is None and s.outcome is None for s in listed)
    assert store.get_step(tenant, wf.workflow_id, "000001").spec == steps[1].spec


def test_given_an_existing_workflow_when_it_is_created_again_then_conflict(store, tenant):
    wf, steps = make(tenant)
    store.create_workflow(wf, steps)

    with pytest.raises(Conflict):
        store.create_workflow(wf, steps)


@pytest.mark.parametrize("store", [
    "memory",
    pytest.param("dynamo"),
], indirect=True)
def test_given_a_started_workflow_when_a_second_create_loses_then_the_winners_steps_are_untouched(store, tenant):
    wf, steps = make(tenant)
    store.create_workflow(wf, steps)
    launch(store, steps[0], "run-winner")

    with pytest.raises(Conflict):
        store.create_workflow(wf, steps)  # e.g. two parallel_resumable callers racing on a first run

    step = store.get_step(tenant, wf.workflow_id, steps[0].key)
    assert (step.status, step.run_id) == ("running", "run-winner")


@pytest.mark.parametrize("store", [
    "memory",
    pytest.param("dynamo"),
], indirect=True)
def test_given_steps_left_by_a_create_that_never_committed_when_created_again_then_it_succeeds(store, tenant):
    wf, steps = make(tenant)
    store.put_steps(steps)  # the first create died here: no workflow item was written

    store.create_workflow(wf, steps)

    assert store.get_workflow(tenant, wf.workflow_id).status == "running"
    assert [s.status for s in store.list_steps(tenant, wf.workflow_id)] == ["pending", "pending"]


def test_given_an_unknown_workflow_when_read_then_not_found(store, tenant):
    with pytest.raises(NotFound):
        store.get_workflow(tenant, "wf-missing")
    assert store.get_step(tenant, "wf-missing", "000000") is None
    assert store.list_steps(tenant, "wf-missing") == []


# -- move_step -------------------------------------------------------------------------------------
def test_given_a_pending_step_when_two_launchers_move_it_then_only_the_first_wins(store, tenant):
    wf, steps = make(tenant)
    store.create_workflow(wf, steps)

    first = store.move_step(steps[0], "pending", 0, "running", "run-a", 0, None, 1_000)
    second = store.move_step(steps[0], "pending", 0, "running", "run-b", 0, None, 2_000)

    assert (first is not None, second) == (True, None)
    assert (first.status, first.run_id, first.spec) == ("running", "run-a", steps[0].spec)  # as it now stands
    step = store.get_step(tenant, wf.workflow_id, steps[0].key)
    assert (step.status, step.run_id, step.started_at) == ("running", "run-a", 1_000)


def test_given_a_step_of_another_attempt_when_moved_then_nothing_changes(store, tenant):
    wf, steps = make(tenant)
    store.create_workflow(wf, steps)
    stale = steps[0].model_copy(update={"attempt": 2})

    assert not store.move_step(stale, "pending", 0, "running", "run-a", 0, None, 1_000)
    assert store.get_step(tenant, wf.workflow_id, steps[0].key).status == "pending"


def test_given_a_pipeline_step_when_it_moves_to_the_next_stage_then_spec_and_stage_change_once(store, tenant):
    wf, steps = make(tenant, kind="pipeline")
    store.create_workflow(wf, steps)
    launch(store, steps[0], "run-s0")
    nxt = {"task_id": "t0-1", "agent": "general", "prompt": "stage two"}

    moved = store.move_step(steps[0], "running", 0, "running", "run-s1", 1, nxt, 5_000)
    replay = store.move_step(steps[0], "running", 0, "running", "run-s1", 1, nxt, 6_000)

    assert (moved is not None, replay) == (True, None)
    assert (moved.stage, moved.spec) == (1, nxt)
    step = store.get_step(tenant, wf.workflow_id, steps[0].key)
    assert (step.stage, step.run_id, step.spec) == (1, "run-s1", nxt)
    assert step.started_at == 1_000  # the item's chain started with its first stage


# -- settle_step -----------------------------------------------------------------------------------
def test_given_a_running_step_when_settled_twice_then_it_is_counted_once(store, tenant):
    wf, steps = make(tenant)
    store.create_workflow(wf, steps)
    launch(store, steps[0])

    first = store.settle_step(steps[0], "succeeded", outcome(steps[0], tokens=7), 7, 3_000)
    again = store.settle_step(steps[0], "failed", outcome(steps[0], ok=False), 7, 4_000)

    assert (first, again) == (True, False)
    got = store.get_workflow(tenant, wf.workflow_id)
    assert (got.finished, got.used_tokens) == (1, 7)
    step = store.get_step(tenant, wf.workflow_id, steps[0].key)
    assert (step.status, step.finished_at, step.outcome and step.outcome.success) == ("succeeded", 3_000, True)


def test_given_a_step_at_another_stage_when_settled_then_it_is_not_counted(store, tenant):
    wf, steps = make(tenant)
    store.create_workflow(wf, steps)
    moved = store.move_step(steps[0], "pending", 0, "running", "run-s1", 1, {"prompt": "next"}, 2_000)
    assert moved is not None

    assert not store.settle_step(steps[0], "succeeded", outcome(steps[0]), 7, 3_000)  # stage 0's end, late
    assert store.get_workflow(tenant, wf.workflow_id).finished == 0
    assert store.get_step(tenant, wf.workflow_id, steps[0].key).status == "running"


def test_given_a_pending_step_when_settled_then_its_run_and_start_are_recorded(store, tenant):
    wf, steps = make(tenant)
    store.create_workflow(wf, steps)
    ended = steps[0].model_copy(update={"run_id": "run-a", "started_at": 1_500})

    assert store.settle_step(ended, "succeeded", outcome(steps[0]), 7, 3_000)
    got = store.get_step(tenant, wf.workflow_id, steps[0].key)
    assert (got.status, got.run_id, got.started_at, got.finished_at) == ("succeeded", "run-a", 1_500, 3_000)


def test_given_many_concurrent_settlers_of_one_step_then_exactly_one_counts(store, tenant):
    wf, steps = make(tenant)
    store.create_workflow(wf, steps)
    launch(store, steps[0])
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def settler() -> None:
        barrier.wait()
        results.append(store.settle_step(steps[0], "succeeded", outcome(steps[0]), 5, 3_000))

    threads = [threading.Thread(target=settler, daemon=True) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(results) == [False] * 7 + [True]
    got = store.get_workflow(tenant, wf.workflow_id)
    assert (got.finished, got.used_tokens) == (1, 5)


# -- finish_workflow -------------------------------------------------------------------------------
def test_given_unsettled_steps_when_finishing_when_all_done_then_only_the_last_count_allows_it(store, tenant):
    wf, steps = make(tenant, n=2)
    store.create_workflow(wf, steps)
    for s in steps:
        launch(store, s)

    store.settle_step(steps[0], "succeeded", outcome(steps[0]), 1, 3_000)
    early = store.finish_workflow(tenant, wf.workflow_id, 1, "succeeded", when_all_done=True)
    store.settle_step(steps[1], "succeeded", outcome(steps[1]), 1, 3_000)
    done = store.finish_workflow(tenant, wf.workflow_id, 1, "succeeded", when_all_done=True)
    again = store.finish_workflow(tenant, wf.workflow_id, 1, "failed", when_all_done=True)

    assert (early, done, again) == (False, True, False)
    got = store.get_workflow(tenant, wf.workflow_id)
    assert (got.status, got.finished) == ("succeeded", 2)


def test_given_a_running_workflow_when_cancelled_then_it_ends_once_without_waiting_for_steps(store, tenant):
    wf, steps = make(tenant)
    store.create_workflow(wf, steps)

    assert store.finish_workflow(tenant, wf.workflow_id, 1, "cancelled", when_all_done=False)
    assert not store.finish_workflow(tenant, wf.workflow_id, 1, "cancelled", when_all_done=False)
    assert store.get_workflow(tenant, wf.workflow_id).status == "cancelled"


def test_given_another_attempt_when_finishing_then_nothing_changes(store, tenant):
    wf, steps = make(tenant, n=1)
    store.create_workflow(wf, steps)
    launch(store, steps[0])
    store.settle_step(steps[0], "succeeded", outcome(steps[0]), 1, 3_000)

    assert not store.finish_workflow(tenant, wf.workflow_id, 2, "succeeded", when_all_done=True)
    assert store.get_workflow(tenant, wf.workflow_id).status == "running"


# -- reopen_workflow -------------------------------------------------------------------------------
def test_given_a_running_workflow_when_reopened_then_refused(store, tenant):
    wf, steps = make(tenant)
    store.create_workflow(wf, steps)

    reopened = wf.model_copy(update={"attempt": 2, "order": [steps[1].key], "size": 1})
    assert not store.reopen_workflow(reopened, expect_attempt=1)
    got = store.get_workflow(tenant, wf.workflow_id)
    assert (got.attempt, got.order) == (1, wf.order)


def test_given_a_finished_workflow_when_reopened_then_only_one_caller_starts_the_next_attempt(store, tenant):
    wf, steps = make(tenant, n=2)
    store.create_workflow(wf, steps)
    for s in steps:
        launch(store, s)
    store.settle_step(steps[0], "succeeded", outcome(steps[0]), 3, 3_000)
    store.settle_step(steps[1], "failed", outcome(steps[1], ok=False), 3, 3_000)
    assert store.finish_workflow(tenant, wf.workflow_id, 1, "failed", when_all_done=True)

    current = store.get_workflow(tenant, wf.workflow_id)
    reopened = current.model_copy(update={"status": "running", "attempt": 2, "finished": 0, "used_tokens": 0, "size": 1,
                                          "order": [steps[1].key]})
    first = store.reopen_workflow(reopened, expect_attempt=1)
    second = store.reopen_workflow(reopened, expect_attempt=1)

    assert (first, second) == (True, False)
    got = store.get_workflow(tenant, wf.workflow_id)
    assert (got.status, got.attempt, got.finished, got.n, got.order) == ("running", 2, 0, 1, [steps[1].key])


def test_given_a_reopened_workflow_when_a_step_of_the_old_attempt_settles_then_it_is_not_counted(store, tenant):
    wf, steps = make(tenant, n=2)
    store.create_workflow(wf, steps)
    launch(store, steps[0])
    assert store.finish_workflow(tenant, wf.workflow_id, 1, "cancelled", when_all_done=False)
    current = store.get_workflow(tenant, wf.workflow_id)
    assert store.reopen_workflow(current.model_copy(update={"status": "running", "attempt": 2, "finished": 0}),
                                 expect_attempt=1)

    late = store.settle_step(steps[0], "succeeded", outcome(steps[0]), 3, 9_000)  # attempt 1's child ends

    assert not late
    assert store.get_workflow(tenant, wf.workflow_id).finished == 0


def test_given_lane_metric_counters_when_added_concurrently_then_every_add_counts_per_session_and_lane(store):
    import secrets
    import threading

    tenant, sid = f"m-{secrets.token_hex(3)}", "s1"
    adds = [threading.Thread(target=store.add_lane_metrics, args=(tenant, sid, "execute", {"completed": 1, "run_3": 2}))
            for _ in range(8)]
    for t in adds:
        t.start()
    for t in adds:
        t.join()
    store.add_lane_metrics(tenant, sid, "query", {"failed": 1})
    store.add_lane_metrics(tenant, "other", "execute", {"completed": 5})
    assert store.lane_metrics(tenant, sid) == {"execute": {"completed": 8, "run_3": 16}, "query": {"failed": 1}}


def test_given_workflows_of_two_sessions_and_tenants_when_listed_then_newest_first_and_only_the_asked(store, tenant):
    made = []
    for i, session_id in enumerate(["sess-a", "sess-b", "sess-a"]):
        wf, steps = make(tenant)
        wf.session_id, wf.created_at = session_id, 1_000 + i
        store.create_workflow(wf, steps)
        made.append(wf.workflow_id)
    other, other_steps = make(f"{tenant}-other")
    store.create_workflow(other, other_steps)

    assert [w.workflow_id for w in store.list_workflows(tenant)] == made[::-1]
    assert [w.workflow_id for w in store.list_workflows(tenant, "sess-a")] == [made[2], made[0]]
    assert [w.workflow_id for w in store.list_workflows(tenant, "sess-b", limit=1)] == [made[1]]
    assert [w.workflow_id for w in store.list_workflows(tenant, "sess-a", limit=1)] == [made[2]]
    assert store.list_workflows(tenant, "sess-none") == []


@pytest.mark.parametrize("optional", [{}, {"error": "boom", "run_id": "run-9", "structured": {"a": [1, None]}}],
                         ids=["required-keys-only", "every-key"])
def test_given_a_settled_outcome_then_it_reads_back_as_it_was_with_only_the_keys_it_had(store, tenant, optional):
    wf, steps = make(tenant)
    store.create_workflow(wf, steps)
    launch(store, steps[0])
    sent = outcome(steps[0]).model_copy(update=optional)

    store.settle_step(steps[0], "succeeded", sent, 7, 3_000)
    settled = store.get_step(tenant, wf.workflow_id, steps[0].key)
    store.put_steps([settled])  # a resumed workflow writes its journaled steps again, outcome and all
    again = store.get_step(tenant, wf.workflow_id, steps[0].key)

    assert settled.outcome == sent and again.outcome == sent
    required = {"task_id", "session_id", "agent", "success", "output", "usage"}
    assert set(again.outcome.wire()) == required | set(optional)  # an absent key is left out, not null


def test_given_subscriptions_to_a_workflow_then_it_counts_them_so_an_unwatched_one_costs_no_lookup(store, tenant):
    wf, steps = make(tenant)
    store.create_workflow(wf, steps)
    for connection in ("c1", "c2", "c1"):  # the same connection twice counts once
        store.add_watcher(tenant, "workflow", wf.workflow_id, connection, 2_000_000_000)
    assert store.get_workflow(tenant, wf.workflow_id).watchers == 2
    assert store.remove_watcher(tenant, "workflow", wf.workflow_id, "c1") is True
    assert store.remove_watcher(tenant, "workflow", wf.workflow_id, "c1") is False
    assert store.get_workflow(tenant, wf.workflow_id).watchers == 1
    assert store.watchers(tenant, "workflow", wf.workflow_id) == ["c2"]


# -- a child run's end settles its step in the same write ------------------------------------------
def ended_child(store, tenant: str, wf: Workflow, step: Step) -> Run:
    """A child run of `step`, created and taken by a driver, about to write its end."""
    run = Run(tenant=tenant, run_id=f"run-{secrets.token_hex(4)}", session_id=wf.session_id, prompt="p",
              model="scripted", workspace="/w", parent=StepRef(workflow_id=wf.workflow_id, key=step.key,
                                                               attempt=step.attempt, settles=True))
    store.create_run(run)
    run = store.acquire_run(tenant, run.run_id, "drv-1", 1_000, 60_000)
    run.status, run.text, run.lease_owner, run.lease_until = "succeeded", "done", None, 0
    return run


def settling(step: Step, run: Run, tokens: int = 7) -> Settlement:
    return Settlement(step.model_copy(update={"run_id": run.run_id, "started_at": 1_500}), "succeeded",
                      outcome(step, tokens=tokens).model_copy(update={"run_id": run.run_id}), tokens, 3_000)


def test_given_a_child_run_end_with_its_step_then_one_write_ends_the_run_settles_the_step_and_counts_it(store, tenant):
    wf, steps = make(tenant)
    store.create_workflow(wf, steps)
    run = ended_child(store, tenant, wf, steps[0])

    assert store.save_run(run, [], settle=settling(steps[0], run)) is True

    assert store.get_run(tenant, run.run_id).status == "succeeded"
    got = store.get_step(tenant, wf.workflow_id, steps[0].key)
    assert (got.status, got.run_id, got.started_at, got.finished_at) == ("succeeded", run.run_id, 1_500, 3_000)
    assert got.outcome is not None and (got.outcome.task_id, got.outcome.run_id) == ("t0", run.run_id)
    assert (store.get_workflow(tenant, wf.workflow_id).finished, store.get_workflow(tenant, wf.workflow_id).used_tokens) \
        == (1, 7)


def test_given_a_step_settled_before_when_a_replayed_end_settles_it_then_the_run_is_saved_and_nothing_counts_twice(
        store, tenant):
    wf, steps = make(tenant)
    store.create_workflow(wf, steps)
    run = ended_child(store, tenant, wf, steps[0])
    assert store.settle_step(*settling(steps[0], run))  # its end was settled by a replay first

    assert store.save_run(run, [], settle=settling(steps[0], run)) is False

    assert store.get_run(tenant, run.run_id).status == "succeeded"
    assert store.get_workflow(tenant, wf.workflow_id).finished == 1


def test_given_a_step_of_a_later_attempt_when_an_old_child_ends_then_its_run_ends_alone(store, tenant):
    wf, steps = make(tenant)
    store.create_workflow(wf, steps)
    run = ended_child(store, tenant, wf, steps[0])
    stale = steps[0].model_copy(update={"attempt": 2})  # what an earlier attempt's child knows

    assert store.save_run(run, [], settle=settling(stale, run)) is False
    assert store.get_run(tenant, run.run_id).status == "succeeded"
    assert store.get_step(tenant, wf.workflow_id, steps[0].key).status == "pending"
    assert store.get_workflow(tenant, wf.workflow_id).finished == 0


def test_given_a_run_changed_underneath_when_its_end_settles_then_nothing_is_written(store, tenant):
    wf, steps = make(tenant)
    store.create_workflow(wf, steps)
    run = ended_child(store, tenant, wf, steps[0])
    stale = run.model_copy(update={"version": run.version - 1})  # another driver saved it since

    with pytest.raises(Conflict):
        store.save_run(stale, [], settle=settling(steps[0], stale))
    assert store.get_step(tenant, wf.workflow_id, steps[0].key).status == "pending"
    assert store.get_workflow(tenant, wf.workflow_id).finished == 0


def test_given_a_workflow_then_it_its_next_step_and_its_session_are_read_together(store, tenant):
    wf, steps = make(tenant)
    store.create_workflow(wf, steps)

    got, step, session = store.workflow_with(tenant, wf.workflow_id, steps[1].key, wf.session_id)
    assert (got.workflow_id, step.key, session) == (wf.workflow_id, steps[1].key, None)  # no such session
    store.create_session(Session(tenant=tenant, session_id=wf.session_id, workspace="/w"))
    _, none, session = store.workflow_with(tenant, wf.workflow_id, None, wf.session_id)
    assert none is None and session is not None and session.session_id == wf.session_id
    with pytest.raises(NotFound):
        store.workflow_with(tenant, "wf-none", None, wf.session_id)
    with pytest.raises(NotFound):
        store.workflow_with("another-tenant", wf.workflow_id, steps[1].key, wf.session_id)
    assert store.workflow_with(tenant, wf.workflow_id, "no-such-step")[1:] == (None, None)
