"""enable_all_features turns on the session's queue metrics: per lane, how many tool calls
completed, failed, timed out or were cancelled, and percentiles of their wait and run times."""
from __future__ import annotations

from a3s_serverless import SessionQueueConfig


def _metrics_session(agent, workspace):
    qc = SessionQueueConfig()
    qc.enable_all_features = True
    return agent.session(str(workspace), permissive=True, queue_config=qc)


def test_given_all_features_when_tools_run_internally_then_each_lane_counts_them_with_latency_percentiles(
        agent, workspace):
    session = _metrics_session(agent, workspace)
    session.send('work\n/tool bash {"command": "sleep 0.3; echo ok"}\n/tool bash {"command": "exit 3"}\n'
                 '/tool read {"file_path": "missing.txt"}')
    metrics = session.queue_stats()["metrics"]
    execute, query = metrics["execute"], metrics["query"]
    assert (execute["completed"], execute["failed"], execute["timed_out"]) == (1, 1, 0)
    assert (query["completed"], query["failed"]) == (0, 1)
    assert execute["run_ms"]["count"] == 2 and execute["run_ms"]["p99"] >= 250  # the 0.3 s sleep's bucket
    assert metrics["generate"] == {"completed": 0, "failed": 0, "timed_out": 0, "cancelled": 0,
                                   "wait_ms": {"count": 0, "p50": None, "p90": None, "p95": None, "p99": None},
                                   "run_ms": {"count": 0, "p50": None, "p90": None, "p95": None, "p99": None}}


def test_given_all_features_when_external_tasks_finish_then_completions_and_timeouts_are_counted(
        agent, workspace, events):
    session = _metrics_session(agent, workspace)
    session.set_lane_handler("execute", "external", 300000)
    handle = session.send_async('go\n/tool bash {"command": "make"}')
    task_id = events.wait_for(handle.run_id, "external_task_pending")["task_id"]
    [claimed] = agent._t.request("POST", f"/sessions/{session.session_id}/external-tasks/claim",
                                 {"max": 1, "worker": "w"})["tasks"]
    assert claimed["task_id"] == task_id
    assert session.complete_external_task(task_id, success=True, result={"output": "built"})
    handle.wait(timeout=30)
    session.set_lane_handler("execute", "external", 1)
    session.send('go\n/tool bash {"command": "make"}')  # nobody answers within 1 ms
    execute = session.queue_stats()["metrics"]["execute"]
    assert (execute["completed"], execute["timed_out"]) == (1, 1)
    assert execute["wait_ms"]["count"] == 2 and execute["run_ms"]["count"] == 1  # the timed-out one never ran


def test_given_a_session_without_all_features_then_its_stats_carry_no_metrics(session):
    session.send('work\n/tool bash {"command": "true"}')
    assert "metrics" not in session.queue_stats()
