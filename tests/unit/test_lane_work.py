"""What an external worker does with a task (a3s_core.tools.lane_work): the completion body it sends,
never an exception, and a command's timeout cut to the time the task has left."""
from __future__ import annotations

from a3s_core.tools.builtin import ToolError
from a3s_core.tools.lane_work import execute_task


class RecordingSandbox:
    """Stands in for the sandbox that runs code: records what it is asked, answers or fails."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.fail, self.calls = fail, []

    def run_tool(self, tenant, name, arguments, workspace):
        self.calls.append((tenant, name, arguments))
        if self.fail:
            raise self.fail
        return {"output": "ran", "exit_code": 0}


def task(command_type: str, payload: dict) -> dict:
    return {"task_id": "task-1", "command_type": command_type, "payload": payload}


def test_given_a_write_task_then_the_tool_runs_in_the_workspace_and_succeeds(tmp_path):
    out = execute_task(task("write", {"file_path": "a.txt", "content": "hi"}), tmp_path)
    assert out == {"success": True, "result": {"output": "wrote 2 bytes to a.txt"}}
    assert (tmp_path / "a.txt").read_text() == "hi"


def test_given_a_tool_that_refuses_then_the_completion_is_a_failure_with_its_message(tmp_path):
    out = execute_task(task("read", {"file_path": "missing.txt"}), tmp_path)
    assert out["success"] is False and "missing.txt" in out["error"] and "result" not in out


def test_given_a_command_then_it_goes_to_the_sandbox_with_its_timeout_cut_to_the_time_left(tmp_path):
    sandbox = RecordingSandbox()
    out = execute_task(task("bash", {"command": "make", "timeout_ms": 600_000}), tmp_path, sandbox, "t1",
                       time_left_ms=5_000)
    assert out == {"success": True, "result": {"output": "ran", "exit_code": 0}}
    assert sandbox.calls == [("t1", "bash", {"command": "make", "timeout_ms": 5_000})]


def test_given_no_time_limit_then_the_command_keeps_its_own_timeout_and_file_tools_stay_local(tmp_path):
    sandbox = RecordingSandbox()
    execute_task(task("bash", {"command": "make", "timeout_ms": 7_000}), tmp_path, sandbox, "t1")
    execute_task(task("write", {"file_path": "b.txt", "content": "x"}), tmp_path, sandbox, "t1")
    assert sandbox.calls == [("t1", "bash", {"command": "make", "timeout_ms": 7_000})]  # write ran here
    assert (tmp_path / "b.txt").read_text() == "x"


def test_given_a_sandbox_that_fails_around_the_tool_then_the_task_fails_with_what_went_wrong(tmp_path):
    out = execute_task(task("bash", {"command": "make"}), tmp_path, RecordingSandbox(RuntimeError("no capacity")))
    assert out == {"success": False, "error": "bash failed: RuntimeError: no capacity"}
    out = execute_task(task("bash", {"command": "make"}), tmp_path, RecordingSandbox(ToolError("command refused")))
    assert out == {"success": False, "error": "command refused"}
