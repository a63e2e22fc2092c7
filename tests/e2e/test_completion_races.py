"""Many callers completing external tasks at once: the first completion wins by a conditional
write, and the run is woken exactly once (REFERENCE.md: "safe across many concurrent callers")."""
from __future__ import annotations

import json
import threading

import pytest

THREADS = 16


def race(calls: list) -> list:
    """Run every call at the same instant (behind a barrier); their results, or what they raised."""
    barrier = threading.Barrier(len(calls))
    out: list = [None] * len(calls)

    def one(i: int) -> None:
        barrier.wait()
        try:
            out[i] = calls[i]()
        except Exception as err:  # noqa: BLE001 - reported by the test
            out[i] = err

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return out


def test_given_16_threads_completing_the_same_task_then_exactly_one_wins_and_the_run_resumes_once(
        session, events, stack):
    session.set_lane_handler("execute", "external", 300000)
    handle = session.send_async('build\n/tool bash {"command": "make"}')
    task_id = events.wait_for(handle.run_id, "external_task_pending")["task_id"]

    def complete(i: int):
        return lambda: session.complete_external_task(task_id, success=True, result={"output": f"worker {i}"})

    results = race([complete(i) for i in range(THREADS)])
    assert [r for r in results if not isinstance(r, bool)] == []
    assert results.count(True) == 1 and results.count(False) == THREADS - 1
    winner = results.index(True)

    result = handle.wait(timeout=30)
    assert result.text == f"echo: build\nbash -> worker {winner}"
    stack.wait_idle()
    all_events = events.all(handle.run_id)
    completed = [e for e in all_events if e["type"] == "external_task_completed" and e["task_id"] == task_id]
    assert len(completed) == 1
    assert [e["type"] for e in all_events].count("run_end") == 1
    assert [e["turn"] for e in all_events if e["type"] == "turn_start"] == [1, 2]
    seqs = [e["seq"] for e in all_events]
    assert seqs == list(range(1, len(seqs) + 1))
    assert session.complete_external_task(task_id, success=True, result={"output": "after the fact"}) is False


@pytest.mark.parametrize("attempt", range(3))
def test_given_two_tasks_of_one_run_completed_at_the_same_instant_then_each_has_one_winner_and_the_run_is_not_lost(
        session, events, stack, attempt):
    # Two wake-ups race each other and the driver: one may land while the run is still running,
    # which must not leave the run waiting forever.
    session.set_lane_handler("execute", "external", 300000)
    handle = session.send_async("pair\n" + "\n".join(
        "/tool bash " + json.dumps({"command": f"echo {n}"}) for n in ("a", "b")))
    events.wait_for(handle.run_id, "external_task_pending")
    tasks = {t["payload"]["command"]: t["task_id"] for t in session.pending_external_tasks()}
    assert sorted(tasks) == ["echo a", "echo b"]

    def complete(command: str, i: int):
        return lambda: session.complete_external_task(tasks[command], success=True,
                                                      result={"output": f"{command} by {i}"})

    calls = [complete(c, i) for i in range(THREADS // 2) for c in tasks]
    results = race(calls)
    assert [r for r in results if not isinstance(r, bool)] == []
    for command in tasks:
        mine = [r for call_cmd, r in zip([c for _ in range(THREADS // 2) for c in tasks], results) if call_cmd == command]
        assert mine.count(True) == 1, (command, mine)

    lines = handle.wait(timeout=30).text.splitlines()
    assert lines[0] == "echo: pair"
    assert lines[1].startswith("bash -> echo a by ") and lines[2].startswith("bash -> echo b by ")
    stack.wait_idle()
    all_events = events.all(handle.run_id)
    done = [e["task_id"] for e in all_events if e["type"] == "external_task_completed"]
    assert sorted(done) == sorted(tasks.values())
    assert [e["type"] for e in all_events].count("run_end") == 1
