"""The store's conditional semantics, the same for the in-memory fake and for DynamoStore on a
moto table (the embedded stack's): every state change has one winner, whatever the callers do."""
from __future__ import annotations

import secrets
import threading

import pytest

from a3s_core.domain.errors import Conflict, NotFound
from a3s_core.domain.items import Event, Run, Session, Task, now_ms
from a3s_core.store.memory import MemoryStore

T0 = 1_700_000_000_000  # a fixed "now" for tasks, so deadlines are exact


@pytest.fixture(params=["memory", "dynamo"])
def store(request):
    if request.param == "memory":
        return MemoryStore()
    return request.getfixturevalue("stack").runtime.store  # DynamoStore on the moto table


@pytest.fixture
def tenant() -> str:
    return f"t-{secrets.token_hex(4)}"  # the Dynamo table is shared: keep each test to itself


def a_task(tenant: str, task_id: str = "task-1", session_id: str = "sess-1", timeout_ms: int = 1000,
           lane: str = "execute") -> Task:
    return Task(tenant=tenant, session_id=session_id, task_id=task_id, run_id="run-1", call_id="call-1",
                lane=lane, command_type="bash", payload={"command": "make"}, timeout_ms=timeout_ms,
                created_at=T0, deadline=T0 + timeout_ms)


def a_run(tenant: str, run_id: str = "run-1", status: str = "queued") -> Run:
    return Run(tenant=tenant, run_id=run_id, session_id="sess-1", prompt="p", model="scripted",
               workspace="/w", status=status)


def race(n: int, fn) -> list:
    barrier, out = threading.Barrier(n), [None] * n

    def one(i: int) -> None:
        barrier.wait()
        out[i] = fn(i)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return out


# -- tasks ----------------------------------------------------------------------------------------
def test_given_a_task_when_created_twice_then_the_second_is_refused_and_the_first_kept(store, tenant):
    assert store.create_task(a_task(tenant)) is True
    replay = a_task(tenant)
    replay.payload = {"command": "rm -rf /"}
    assert store.create_task(replay) is False
    assert store.get_task(tenant, "sess-1", "task-1").payload == {"command": "make"}


def test_given_a_pending_task_when_finished_twice_then_the_first_wins_and_its_result_stays(store, tenant):
    store.create_task(a_task(tenant))
    won = store.finish_task(tenant, "sess-1", "task-1", "completed", T0 + 10, result={"output": "first"})
    assert won is not None and (won.status, won.result, won.run_id) == ("completed", {"output": "first"}, "run-1")
    assert store.finish_task(tenant, "sess-1", "task-1", "completed", T0 + 20, result={"output": "second"}) is None
    assert store.finish_task(tenant, "sess-1", "task-1", "failed", T0 + 30, error="third") is None
    assert store.finish_task(tenant, "sess-1", "task-1", "cancelled", T0 + 40) is None
    task = store.get_task(tenant, "sess-1", "task-1")
    assert (task.status, task.result, task.completed_at) == ("completed", {"output": "first"}, T0 + 10)


def test_given_a_failed_completion_then_the_error_is_kept(store, tenant):
    store.create_task(a_task(tenant))
    assert store.finish_task(tenant, "sess-1", "task-1", "failed", T0 + 1, error="disk full") is not None
    task = store.get_task(tenant, "sess-1", "task-1")
    assert (task.status, task.error, task.result) == ("failed", "disk full", None)


@pytest.mark.parametrize("late_by", [0, 1, 60_000])
def test_given_a_task_past_its_deadline_then_a_completion_is_refused(store, tenant, late_by):
    store.create_task(a_task(tenant))
    for status in ("completed", "failed"):
        assert store.finish_task(tenant, "sess-1", "task-1", status, T0 + 1000 + late_by,
                                 result={"output": "late"}) is None
    assert store.get_task(tenant, "sess-1", "task-1").status == "pending"


@pytest.mark.parametrize("early_by", [1, 999])
def test_given_a_task_before_its_deadline_then_a_timeout_is_refused(store, tenant, early_by):
    store.create_task(a_task(tenant))
    assert store.finish_task(tenant, "sess-1", "task-1", "timed_out", T0 + 1000 - early_by) is None
    assert store.get_task(tenant, "sess-1", "task-1").status == "pending"
    assert store.finish_task(tenant, "sess-1", "task-1", "completed", T0 + 1000 - early_by,
                             result={"output": "in time"}) is not None


def test_given_a_task_at_its_deadline_then_it_times_out_once_and_nothing_completes_it_afterwards(store, tenant):
    store.create_task(a_task(tenant))
    assert store.finish_task(tenant, "sess-1", "task-1", "timed_out", T0 + 1000) is not None
    assert store.finish_task(tenant, "sess-1", "task-1", "timed_out", T0 + 2000) is None
    assert store.finish_task(tenant, "sess-1", "task-1", "completed", T0 + 1, result={"output": "x"}) is None
    assert store.get_task(tenant, "sess-1", "task-1").status == "timed_out"


def test_given_a_pending_task_then_it_can_be_cancelled_once_even_after_its_deadline(store, tenant):
    store.create_task(a_task(tenant))
    assert store.finish_task(tenant, "sess-1", "task-1", "cancelled", T0 + 5000) is not None
    assert store.finish_task(tenant, "sess-1", "task-1", "cancelled", T0 + 5000) is None


def test_given_an_unknown_task_then_finish_and_claim_are_refused(store, tenant):
    assert store.finish_task(tenant, "sess-1", "nope", "completed", T0, result={"output": "x"}) is None
    assert store.claim_task(tenant, "sess-1", "nope", "w", T0, 1000) is None
    assert store.get_task(tenant, "sess-1", "nope") is None


def test_given_a_finished_task_then_it_is_no_longer_listed_as_pending(store, tenant):
    store.create_task(a_task(tenant, "task-1"))
    store.create_task(a_task(tenant, "task-2", lane="query"))
    assert sorted(t.task_id for t in store.list_pending_tasks(tenant, "sess-1")) == ["task-1", "task-2"]
    assert [t.task_id for t in store.pending_tasks_for_lane(tenant, "execute", 10)] == ["task-1"]
    store.finish_task(tenant, "sess-1", "task-1", "completed", T0 + 1, result={"output": "x"})
    assert [t.task_id for t in store.list_pending_tasks(tenant, "sess-1")] == ["task-2"]
    assert store.pending_tasks_for_lane(tenant, "execute", 10) == []


def test_given_a_claimed_task_then_a_second_worker_cannot_claim_it_until_the_lease_ends(store, tenant):
    store.create_task(a_task(tenant, timeout_ms=600_000))
    leased = store.claim_task(tenant, "sess-1", "task-1", "w1", T0, 1000)
    assert leased is not None and (leased.lease_owner, leased.lease_until) == ("w1", T0 + 1000)
    assert leased.payload == a_task(tenant).payload  # the task as stored, from the one write
    assert store.claim_task(tenant, "sess-1", "task-1", "w2", T0 + 999, 1000) is None
    assert store.claim_task(tenant, "sess-1", "task-1", "w2", T0 + 1000, 1000) is not None
    store.finish_task(tenant, "sess-1", "task-1", "completed", T0 + 1500, result={"output": "x"})
    assert store.claim_task(tenant, "sess-1", "task-1", "w3", T0 + 99_999, 1000) is None


def test_given_a_task_past_its_deadline_then_no_one_can_lease_it(store, tenant):
    store.create_task(a_task(tenant, timeout_ms=1_000))
    assert store.claim_task(tenant, "sess-1", "task-1", "w1", T0 + 1_000, 60_000) is None
    assert store.get_task(tenant, "sess-1", "task-1").lease_owner is None


def test_given_another_tenant_then_it_cannot_see_or_finish_the_task(store, tenant):
    store.create_task(a_task(tenant))
    other = tenant + "-other"
    assert store.get_task(other, "sess-1", "task-1") is None
    assert store.list_pending_tasks(other, "sess-1") == []
    assert store.pending_tasks_for_lane(other, "execute", 10) == []
    assert store.finish_task(other, "sess-1", "task-1", "completed", T0 + 1, result={"output": "x"}) is None
    assert store.get_task(tenant, "sess-1", "task-1").status == "pending"


def test_given_16_concurrent_finishers_of_one_task_then_exactly_one_wins_every_time(store, tenant):
    for round_ in range(10):  # one lost race in ten rounds is enough to see
        task_id = f"task-{round_}"
        store.create_task(a_task(tenant, task_id, timeout_ms=600_000))
        wins = race(16, lambda i: store.finish_task(tenant, "sess-1", task_id, "completed", T0 + 1,
                                                    result={"output": str(i)}) is not None)
        assert wins.count(True) == 1, (round_, wins)
        winner = wins.index(True)
        assert store.get_task(tenant, "sess-1", task_id).result == {"output": str(winner)}


# -- runs -----------------------------------------------------------------------------------------
def test_given_a_queued_run_then_one_driver_acquires_it_and_others_are_refused_while_the_lease_lives(store, tenant):
    store.create_run(a_run(tenant))
    now = now_ms()
    first = store.acquire_run(tenant, "run-1", "drv-1", now, 10_000)
    assert first is not None and (first.status, first.lease_owner) == ("running", "drv-1")
    assert store.acquire_run(tenant, "run-1", "drv-2", now + 9_999, 10_000) is None
    second = store.acquire_run(tenant, "run-1", "drv-2", now + 10_000, 10_000)  # the lease ran out
    assert second is not None and second.lease_owner == "drv-2"
    assert store.get_run(tenant, "run-1").lease_owner == "drv-2"


@pytest.mark.parametrize("status", ["waiting", "paused", "succeeded", "failed", "cancelled"])
def test_given_a_run_that_is_not_queued_or_running_then_it_cannot_be_acquired(store, tenant, status):
    store.create_run(a_run(tenant, status=status))
    assert store.acquire_run(tenant, "run-1", "drv-1", now_ms(), 10_000) is None
    assert store.get_run(tenant, "run-1").status == status


def test_given_16_concurrent_drivers_then_exactly_one_acquires_the_run_every_time(store, tenant):
    for round_ in range(10):
        run_id = f"run-{round_}"
        store.create_run(a_run(tenant, run_id))
        now = now_ms()
        got = race(16, lambda i: store.acquire_run(tenant, run_id, f"drv-{i}", now, 60_000))
        owners = [r.lease_owner for r in got if r is not None]
        assert len(owners) == 1, (round_, owners)
        assert store.get_run(tenant, run_id).lease_owner == owners[0]


def test_given_a_stale_copy_of_a_run_when_saved_then_conflict_and_the_newer_state_stays(store, tenant):
    store.create_run(a_run(tenant))
    mine = store.acquire_run(tenant, "run-1", "drv-1", now_ms(), 60_000)
    stale = mine.model_copy(deep=True)
    mine.text = "newer"
    store.save_run(mine, [])
    stale.text = "older"
    with pytest.raises(Conflict):
        store.save_run(stale, [])
    assert store.get_run(tenant, "run-1").text == "newer"
    mine.text = "newest"  # the winner's copy was bumped by its save: it may go on saving
    store.save_run(mine, [])
    assert store.get_run(tenant, "run-1").text == "newest"


def test_given_a_run_taken_over_by_another_driver_then_the_old_drivers_checkpoint_conflicts(store, tenant):
    store.create_run(a_run(tenant))
    now = now_ms()
    old = store.acquire_run(tenant, "run-1", "drv-old", now, 1_000)
    new = store.acquire_run(tenant, "run-1", "drv-new", now + 1_000, 60_000)
    assert new is not None
    old.turn = 7
    with pytest.raises(Conflict):
        store.save_run(old, [])
    assert store.get_run(tenant, "run-1").turn == 0


@pytest.mark.parametrize("status", ["queued", "running", "paused", "succeeded", "failed", "cancelled"])
def test_given_a_run_that_is_not_waiting_then_wake_is_refused(store, tenant, status):
    store.create_run(a_run(tenant, status=status))
    assert store.wake_run(tenant, "run-1") is False
    assert store.get_run(tenant, "run-1").status == status


def test_given_a_waiting_run_then_exactly_one_wake_succeeds(store, tenant):
    store.create_run(a_run(tenant, status="waiting"))
    assert store.wake_run(tenant, "run-1") is True
    assert store.get_run(tenant, "run-1").status == "queued"
    assert store.wake_run(tenant, "run-1") is False
    assert store.wake_run(tenant, "run-unknown") is False


def test_given_16_concurrent_wakers_of_a_waiting_run_then_exactly_one_wins_every_time(store, tenant):
    for round_ in range(10):
        run_id = f"run-{round_}"
        store.create_run(a_run(tenant, run_id, status="waiting"))
        wins = race(16, lambda i: store.wake_run(tenant, run_id))
        assert wins.count(True) == 1, (round_, wins)


def test_given_another_tenant_then_the_run_is_not_found_for_it(store, tenant):
    store.create_run(a_run(tenant, status="waiting"))
    with pytest.raises(NotFound):
        store.get_run(tenant + "-other", "run-1")
    assert store.wake_run(tenant + "-other", "run-1") is False
    assert store.acquire_run(tenant + "-other", "run-1", "drv", now_ms(), 1000) is None


def test_given_a_waiting_run_then_it_is_never_re_driven_and_a_wake_brings_it_back(store, tenant):
    run = a_run(tenant, status="waiting")
    run.updated_at = T0
    store.create_run(run)

    for _ in range(2):  # a long wait: the sweeper passes it by (and takes it out of its index)
        assert (tenant, "run-1") not in store.stale_runs(T0 + 10_000, 10_000)
    assert store.wake_run(tenant, "run-1") is True
    assert store.get_run(tenant, "run-1").status == "queued"
    assert (tenant, "run-1") in store.stale_runs(now_ms() + 3_600_000, 10_000)  # live again: re-driven if lost


def test_given_a_run_that_waits_only_a_moment_then_its_wake_rewrites_no_index_entry(stack):
    from a3s_core.store.dynamo import DynamoStore
    store: DynamoStore = stack.runtime.store
    tenant = f"t-{secrets.token_hex(4)}"
    store.create_run(a_run(tenant))
    run = store.acquire_run(tenant, "run-1", "drv", now_ms(), 60_000)
    run.status = "waiting"
    store.save_run(run, [])  # suspended: keeps its entry in the live-run index
    item = store._get({"pk": f"T#{tenant}#R#run-1", "sk": "RUN"})
    assert (item["gsi1pk"], item["gsi1sk"]) == ("RUNS#LIVE", f"{tenant}#run-1")
    store.stale_runs(now_ms() + 3_600_000, 10_000)  # waited an hour: the sweeper takes it out
    assert "gsi1pk" not in store._get({"pk": f"T#{tenant}#R#run-1", "sk": "RUN"})
    assert store.wake_run(tenant, "run-1") is True  # and a wake puts it back
    assert store._get({"pk": f"T#{tenant}#R#run-1", "sk": "RUN"})["gsi1pk"] == "RUNS#LIVE"


def test_given_a_stale_live_run_then_each_redrive_is_counted_once_and_a_run_that_moved_on_is_not(store, tenant):
    run = a_run(tenant)
    run.updated_at = T0
    store.create_run(run)

    assert [store.count_redrive(tenant, "run-1", T0 + 10 * i + 1, T0 + 10 * i + 5) for i in range(3)] == [1, 2, 3]
    assert store.get_run(tenant, "run-1").redrives == 3
    assert store.count_redrive(tenant, "run-1", T0 + 25, T0 + 30) is None  # re-driven at T0 + 25: not stale
    assert store.stale_runs(T0 + 25, 10_000).count((tenant, "run-1")) == 0
    assert store.stale_runs(T0 + 26, 10_000).count((tenant, "run-1")) == 1
    assert store.count_redrive(tenant, "run-unknown", T0 + 1, T0 + 2) is None
    mine = store.acquire_run(tenant, "run-1", "drv-1", now_ms(), 60_000)
    assert mine.redrives == 3
    mine.turn, mine.updated_at = 1, T0 + 100
    store.save_run(mine, [])  # a checkpoint keeps the count (and makes the run fresh)
    assert store.get_run(tenant, "run-1").redrives == 3
    assert store.count_redrive(tenant, "run-1", T0 + 100, T0 + 200) is None


@pytest.mark.parametrize("status", ["waiting", "paused", "succeeded", "failed", "cancelled"])
def test_given_a_run_nothing_should_be_driving_then_no_redrive_is_counted(store, tenant, status):
    run = a_run(tenant, status=status)
    run.updated_at = T0
    store.create_run(run)

    assert store.count_redrive(tenant, "run-1", T0 + 1, T0 + 2) is None
    assert store.get_run(tenant, "run-1").redrives == 0


def test_given_16_concurrent_sweepers_then_one_redrive_is_counted(store, tenant):
    run = a_run(tenant)
    run.updated_at = T0
    store.create_run(run)

    counts = race(16, lambda i: store.count_redrive(tenant, "run-1", T0 + 1, T0 + 2))

    assert counts.count(1) == 1 and counts.count(None) == 15  # the first marks it fresh for the rest
    assert store.get_run(tenant, "run-1").redrives == 1


# -- sessions -------------------------------------------------------------------------------------
def test_given_a_stale_copy_of_a_session_when_saved_then_conflict(store, tenant):
    store.create_session(Session(tenant=tenant, session_id="sess-1", workspace="/w"))
    a = store.get_session(tenant, "sess-1")
    b = store.get_session(tenant, "sess-1")
    a.closed = True
    store.save_session(a)
    b.permissive = True
    with pytest.raises(Conflict):
        store.save_session(b)
    got = store.get_session(tenant, "sess-1")
    assert (got.closed, got.permissive) == (True, False)
    with pytest.raises(Conflict):
        store.create_session(Session(tenant=tenant, session_id="sess-1", workspace="/elsewhere"))
    with pytest.raises(NotFound):
        store.get_session(tenant + "-other", "sess-1")


# -- push subscriptions ---------------------------------------------------------------------------
EXPIRES = 2_000_000_000


def test_given_a_run_when_watched_then_the_watcher_is_listed_and_counted_once_per_connection(store, tenant):
    store.create_run(a_run(tenant))
    for _ in range(2):  # a repeated subscribe of one connection counts once
        store.add_watcher(tenant, "run", "run-1", "c1", EXPIRES)
    store.add_watcher(tenant, "run", "run-1", "c2", EXPIRES)

    assert sorted(store.watchers(tenant, "run", "run-1")) == ["c1", "c2"]
    assert store.get_run(tenant, "run-1").watchers == 2
    assert store.list_events(tenant, "run-1", 0) == []  # watcher items are no events


def test_given_watchers_when_removed_then_the_counter_drops_and_never_below_zero(store, tenant):
    store.create_run(a_run(tenant))
    store.add_watcher(tenant, "run", "run-1", "c1", EXPIRES)

    assert store.remove_watcher(tenant, "run", "run-1", "c1") is True
    assert store.remove_watcher(tenant, "run", "run-1", "c1") is False
    assert store.watchers(tenant, "run", "run-1") == []
    assert store.get_run(tenant, "run-1").watchers == 0


def test_given_another_tenants_run_or_workflow_when_watched_then_not_found_and_nothing_written(store, tenant):
    store.create_run(a_run(tenant))
    other = f"{tenant}-other"

    with pytest.raises(NotFound):
        store.add_watcher(other, "run", "run-1", "c1", EXPIRES)
    with pytest.raises(NotFound):
        store.add_watcher(other, "workflow", "wf-1", "c1", EXPIRES)
    assert store.watchers(other, "run", "run-1") == [] and store.watchers(tenant, "run", "run-1") == []
    assert store.get_run(tenant, "run-1").watchers == 0


def test_given_a_connection_when_closed_then_it_names_its_subscriptions(store, tenant):
    store.create_run(a_run(tenant))
    store.open_connection(tenant, "c1", EXPIRES)
    store.add_watcher(tenant, "run", "run-1", "c1", EXPIRES)
    store.add_watcher(tenant, "lane", "execute", "c1", EXPIRES)
    store.add_watcher(tenant, "lane", "query", "c1", EXPIRES)
    store.remove_watcher(tenant, "lane", "query", "c1")

    assert store.close_connection(tenant, "c1") == [("lane", "execute"), ("run", "run-1")]
    assert store.close_connection(tenant, "c1") == []
    assert store.watchers(tenant, "lane", "execute") == ["c1"]  # the caller removes them (api/subscriptions.py)


def test_given_a_lane_when_watched_by_two_tenants_then_each_sees_only_its_own(store, tenant):
    other = f"{tenant}-other"
    store.add_watcher(tenant, "lane", "execute", "c1", EXPIRES)
    store.add_watcher(other, "lane", "execute", "c2", EXPIRES)

    assert store.watchers(tenant, "lane", "execute") == ["c1"]
    assert store.watchers(other, "lane", "execute") == ["c2"]


def test_given_a_session_when_watched_then_its_connections_come_with_it_and_survive_its_saves(store, tenant):
    store.create_session(Session(tenant=tenant, session_id="sess-1", workspace="/w"))
    store.open_connection(tenant, "c1", EXPIRES)
    for _ in range(2):  # a repeated subscribe of one connection is one watcher
        store.add_watcher(tenant, "session", "sess-1", "c1", EXPIRES)
    store.add_watcher(tenant, "session", "sess-1", "c2", EXPIRES)
    session = store.get_session(tenant, "sess-1")
    assert session.watching == ["c1", "c2"]  # the driver has them from the read it makes anyway
    assert sorted(store.watchers(tenant, "session", "sess-1")) == ["c1", "c2"]

    stale = store.get_session(tenant, "sess-1")
    stale.watching = []  # a save of the session's settings leaves its watchers as they are
    stale.permissive = True
    store.save_session(stale)
    assert store.get_session(tenant, "sess-1").watching == ["c1", "c2"]

    assert store.close_connection(tenant, "c1") == [("session", "sess-1")]
    assert store.remove_watcher(tenant, "session", "sess-1", "c1") is True
    assert store.remove_watcher(tenant, "session", "sess-1", "c1") is False
    assert store.get_session(tenant, "sess-1").watching == ["c2"]


def test_given_another_tenants_session_when_watched_then_not_found_and_nothing_written(store, tenant):
    store.create_session(Session(tenant=tenant, session_id="sess-1", workspace="/w"))
    other = f"{tenant}-other"

    with pytest.raises(NotFound):
        store.add_watcher(other, "session", "sess-1", "c1", EXPIRES)
    assert store.get_session(tenant, "sess-1").watching == []
    assert store.remove_watcher(other, "session", "sess-1", "c1") is False
    with pytest.raises(NotFound):
        store.get_session(other, "sess-1")  # the refused subscribe made no item of the other tenant's


def test_given_runs_when_listed_then_in_the_order_made_per_session_from_the_one_write_that_made_each(store, tenant):
    for i, sid in enumerate(["s-a", "s-b", "s-a"]):
        run = a_run(tenant, f"run-{i}")
        run.session_id, run.created_at = sid, 1_000 + i
        store.create_run(run)
    assert [r.run_id for r in store.list_runs(tenant)] == ["run-0", "run-1", "run-2"]
    assert [r.run_id for r in store.list_runs(tenant, "s-a")] == ["run-0", "run-2"]
    assert store.list_runs(f"{tenant}-other") == []
    assert store.list_events(tenant, "run-0", 0) == []  # made without events: its driver writes run_start


def test_given_small_checkpoints_then_large_ones_then_every_event_comes_back_once_in_order_after_any_seq(store, tenant):
    # A store may keep a checkpoint's events in the run's own item until it fills (DynamoStore does):
    # readers see no difference, whether events are carried, written out, or some of each.
    run = a_run(tenant)
    store.create_run(run)
    run = store.get_run(tenant, "run-1")
    seq = 0
    for size in (1, 1, 2, 1, 400, 1, 3, 9000, 1):
        events = [Event(seq=seq + k + 1, type="text", data={"text": "x" * size}) for k in range(2)]
        seq += 2
        store.save_run(run, events)
        for after in range(0, seq + 1):
            assert [e.seq for e in store.list_events(tenant, "run-1", after)] == list(range(after + 1, seq + 1))
    again = store.get_run(tenant, "run-1")  # a fresh reader (another driver) carries on where it was left
    again.status = "succeeded"  # its last checkpoint: a store may carry more in it (nothing rewrites it after)
    store.save_run(again, [Event(seq=seq + 1, type="run_end", data={"text": "y" * 1500})])
    assert [e.seq for e in store.list_events(tenant, "run-1", 0)] == list(range(1, seq + 2))
    assert store.list_events(tenant, "run-1", seq)[0].data == {"text": "y" * 1500}
    assert store.get_run(tenant, "run-1").status == "succeeded"
    assert [e.data for e in store.list_events(tenant, "run-1", 14, limit=2)] == [{"text": "x" * 9000}] * 2


# -- items read back as written ----------------------------------------------------------------------
def test_given_a_run_and_a_task_made_now_when_read_back_then_every_field_is_as_written(store, tenant):
    # Their items leave out what the keys say and fields at a fixed default; times made by a factory
    # in the same millisecond must still come back as written, not as the time of the read.
    run = Run(tenant=tenant, run_id="run-1", session_id="sess-1", prompt="p", model="scripted", workspace="/w")
    store.create_run(run)
    assert store.get_run(tenant, "run-1") == run
    task = a_task(tenant)
    task.created_at = now_ms()
    store.create_task(task)
    assert store.get_task(tenant, "sess-1", "task-1") == task


# -- a session's conversation -------------------------------------------------------------------------
def _session_with_run(store, tenant: str, run_id: str) -> tuple[Session, Run]:
    try:
        store.create_session(Session(tenant=tenant, session_id="sess-1", workspace="/w"))
    except Conflict:
        pass
    run = a_run(tenant, run_id)
    run.messages = [{"role": "user", "content": f"q {run_id}"}, {"role": "assistant", "content": f"a {run_id}"}]
    store.create_run(run)
    return store.get_session(tenant, "sess-1"), store.get_run(tenant, run_id)


def test_given_runs_that_end_with_append_then_the_next_run_reads_each_exchange_once_in_order(store, tenant):
    for i in range(3):
        session, run = _session_with_run(store, tenant, f"run-{i}")
        run.history = i
        store.save_run(run, [], append_to=session)
    session, messages, n = store.session_with_history(tenant, "sess-1")
    assert (session.session_id, n) == ("sess-1", 3)
    assert [m["content"] for m in messages] == [f"{k} run-{i}" for i in range(3) for k in "qa"]
    assert [m["content"] for m in store.history(tenant, "sess-1", 2)] == ["q run-0", "a run-0", "q run-1", "a run-1"]
    assert len(store.history(tenant, "sess-1", 3)) == 6
    assert store.history(tenant, "sess-1", 0) == []


def test_given_runs_that_all_read_an_empty_conversation_when_they_append_at_once_then_every_exchange_is_kept(
        store, tenant):
    pairs = [_session_with_run(store, tenant, f"run-{i}") for i in range(4)]  # each continues 0 exchanges
    race(4, lambda i: store.save_run(pairs[i][1], [], append_to=pairs[i][0]))
    _, messages, n = store.session_with_history(tenant, "sess-1")
    assert n == 4
    assert sorted(m["content"] for m in messages) == sorted(f"{k} run-{i}" for i in range(4) for k in "qa")


def test_given_an_append_then_the_session_is_not_rewritten_and_a_save_of_it_read_before_keeps_the_exchange(
        store, tenant):
    session, run = _session_with_run(store, tenant, "run-0")
    before = store.get_session(tenant, "sess-1")
    store.save_run(run, [], append_to=session)
    assert store.get_session(tenant, "sess-1").version == before.version  # the exchanges count themselves
    before.permissive = True
    store.save_session(before)
    assert store.session_with_history(tenant, "sess-1")[2] == 1


def test_given_no_such_session_then_its_history_read_is_not_found(store, tenant):
    with pytest.raises(NotFound):
        store.session_with_history(tenant, "sess-none")
    store.create_session(Session(tenant=tenant, session_id="sess-1", workspace="/w"))
    with pytest.raises(NotFound):
        store.session_with_history(f"{tenant}-other", "sess-1")  # another tenant's: as good as none


# -- events -----------------------------------------------------------------------------------------
def test_given_checkpoints_of_many_and_large_events_then_events_after_any_seq_come_back_in_order(store, tenant):
    run = a_run(tenant)
    store.create_run(run)
    run = store.get_run(tenant, "run-1")
    small = [Event(seq=s, type="text", data={"text": f"e{s}"}) for s in range(1, 7)]
    store.save_run(run, small)
    large = [Event(seq=s, type="tool_end", data={"output": str(s) * 60_000}) for s in range(7, 11)]
    store.save_run(run, large)  # more than one item's worth: split, and still all there
    assert [e.seq for e in store.list_events(tenant, "run-1", 0)] == list(range(1, 11))
    assert [e.seq for e in store.list_events(tenant, "run-1", 3)] == list(range(4, 11))  # from inside a checkpoint
    assert [e.seq for e in store.list_events(tenant, "run-1", 8)] == [9, 10]
    assert [e.seq for e in store.list_events(tenant, "run-1", 2, limit=3)] == [3, 4, 5]
    assert store.list_events(tenant, "run-1", 10) == []
    assert store.list_events(tenant, "run-1", 9)[0].data["output"] == "10" * 60_000


# -- control on the run's item --------------------------------------------------------------------
def test_given_a_control_request_after_a_driver_read_the_run_then_its_save_is_interrupted_and_carries_it(
        store, tenant):
    from a3s_core.domain.errors import Interrupted

    store.create_run(a_run(tenant))
    held = store.acquire_run(tenant, "run-1", "drv", T0, 60_000)
    store.request_control(tenant, "run-1", pause=True)
    store.request_control(tenant, "run-1", inject="also this")
    with pytest.raises(Interrupted):
        store.save_run(held, [Event(seq=1, type="text")])
    assert (held.control.pause, held.control.injections) == (True, ["also this"])  # handed to the driver
    store.save_run(held, [Event(seq=1, type="text")])  # again, with what it now knows: saved
    saved = store.get_run(tenant, "run-1")
    assert (saved.control.pause, saved.control.injections, saved.ctl) == (True, ["also this"], 2)
    assert store.get_control(tenant, "run-1") == saved.control
    store.request_control(tenant, "run-1", pause=False, cancel=True)
    assert store.get_control(tenant, "run-1").model_dump() == {"pause": False, "cancel": True,
                                                                 "injections": ["also this"]}


def test_given_an_unknown_run_then_a_control_request_is_not_found(store, tenant):
    with pytest.raises(NotFound):
        store.request_control(tenant, "nope", cancel=True)


def test_given_a_run_then_only_a_running_one_can_be_nudged_and_its_driver_sees_the_nudge(store, tenant):
    from a3s_core.domain.errors import Interrupted

    store.create_run(a_run(tenant))
    assert store.nudge_run(tenant, "run-1") is False  # queued: whoever takes it reads everything anyway
    assert store.nudge_run(tenant, "nope") is False
    held = store.acquire_run(tenant, "run-1", "drv", T0, 60_000)
    assert store.run_status(tenant, "run-1") == "running"
    assert store.nudge_run(tenant, "run-1") is True
    with pytest.raises(Interrupted):
        store.save_run(held, [])
    store.save_run(held, [])
    assert store.run_status(tenant, "nope") is None


def test_given_sessions_then_they_are_listed_newest_first(store, tenant):
    for i in range(3):
        store.create_session(Session(tenant=tenant, session_id=f"s{i}", workspace="/w", created_at=T0 + i))
    assert [s.session_id for s in store.list_sessions(tenant)] == ["s2", "s1", "s0"]
    assert [s.session_id for s in store.list_sessions(tenant, limit=2)] == ["s2", "s1"]
    assert store.list_sessions(f"{tenant}-other") == []
