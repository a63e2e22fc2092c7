"""What an external worker does with a task: run the built-in tool it names in a workspace.

Shared by the `a3s-worker` process (tools run on the worker's own machine, commands isolated)
and the SQS-triggered lane_worker function (tools that run code go to the sandbox).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .sandbox import CODE_TOOLS, LocalSandbox, Sandbox
from .tools import ToolError
from .workspace import LocalWorkspace, Workspace


def execute_task(task: dict[str, Any], workspace: str | Path | Workspace, sandbox: Sandbox | None = None,
                 tenant: str = "") -> dict[str, Any]:
    """A completion body ({success, result?, error?}) for the task, never an exception."""
    ws = LocalWorkspace(workspace) if isinstance(workspace, (str, Path)) else workspace
    name = task["command_type"]
    runner = sandbox if sandbox is not None and name in CODE_TOOLS else LocalSandbox()
    try:
        result = runner.run_tool(tenant, name, task.get("payload") or {}, ws)
    except ToolError as err:
        return {"success": False, "error": str(err)}
    return {"success": True, "result": result}
