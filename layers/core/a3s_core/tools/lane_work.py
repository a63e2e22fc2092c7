"""What an external worker does with a task: run the built-in tool it names in a workspace.

Shared by the `a3s-worker` process (tools run on the worker's own machine, commands isolated)
and the SQS-triggered lane_worker function (tools that run code go to the sandbox).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from a3s_core.tools.builtin import ToolError
from a3s_core.tools.sandbox import CODE_TOOLS, LocalSandbox, Sandbox, within
from a3s_core.workspace.base import LocalWorkspace, Workspace


def execute_task(task: dict[str, Any], workspace: str | Path | Workspace, sandbox: Sandbox | None = None,
                 tenant: str = "", time_left_ms: int | None = None) -> dict[str, Any]:
    """A completion body ({success, result?, error?}) for the task, never an exception. A command
    gets at most `time_left_ms`: a result after the task's deadline would be refused anyway."""
    ws = LocalWorkspace(workspace) if isinstance(workspace, (str, Path)) else workspace
    name = task["command_type"]
    runner = sandbox if sandbox is not None and name in CODE_TOOLS else LocalSandbox()
    arguments = dict(task.get("payload") or {})
    if name in CODE_TOOLS and time_left_ms is not None:
        arguments = within(arguments, time_left_ms)
    try:
        result = runner.run_tool(tenant, name, arguments, ws)
    except ToolError as err:
        return {"success": False, "error": str(err)}
    except Exception as err:  # the sandbox or the workspace failed around the tool: still this task's failure
        return {"success": False, "error": f"{name} failed: {type(err).__name__}: {err}"}
    return {"success": True, "result": result}
