"""Outside permissive mode, execute-lane tools wait for a `confirm` task on the control lane."""
from __future__ import annotations


def _confirm(handle, session):
    next(e for e in handle.events() if e["type"] == "external_task_pending" and e["command_type"] == "confirm")
    [task] = session.pending_external_tasks()
    return task


def test_given_a_non_permissive_session_when_the_agent_writes_then_it_asks_first_and_writes_once_approved(
        agent, workspace):
    session = agent.session(str(workspace))
    handle = session.send_async('save\n/tool write {"file_path": "a.txt", "content": "hello"}')
    task = _confirm(handle, session)
    assert (task["lane"], task["command_type"]) == ("control", "confirm")
    assert task["payload"] == {"tool": "write", "arguments": {"file_path": "a.txt", "content": "hello"}}
    assert not (workspace / "a.txt").exists()  # nothing ran before the approval
    assert session.complete_external_task(task["task_id"], success=True, result={"approved": True})
    assert handle.wait(timeout=30).text == "echo: save\nwrite -> wrote 5 bytes to a.txt"
    assert (workspace / "a.txt").read_text() == "hello"


def test_given_a_denial_when_the_agent_writes_then_the_model_sees_permission_denied_and_nothing_is_written(
        agent, workspace):
    session = agent.session(str(workspace))
    handle = session.send_async('save\n/tool bash {"command": "touch x"}')
    task = _confirm(handle, session)
    assert session.complete_external_task(task["task_id"], success=False, error="not on a Friday")
    text = handle.wait(timeout=30).text
    assert text == "echo: save\nbash -> permission denied for bash: not on a Friday"
    assert not (workspace / "x").exists()


def test_given_a_non_permissive_session_when_the_agent_only_reads_then_no_approval_is_needed(agent, workspace):
    (workspace / "f.txt").write_text("data\n")
    session = agent.session(str(workspace))
    result = session.send('look\n/tool read {"file_path": "f.txt"}')
    assert result.text.startswith("echo: look\nread -> ")
    assert session.pending_external_tasks() == []


def test_given_an_unanswered_approval_when_the_control_lane_times_out_then_the_tool_is_denied(agent, workspace):
    session = agent.session(str(workspace))
    session.set_lane_handler("control", "internal", 1000)
    result = session.send('save\n/tool write {"file_path": "a.txt", "content": "x"}')
    assert "permission denied for write" in result.text and "timed out" in result.text
    assert not (workspace / "a.txt").exists()
