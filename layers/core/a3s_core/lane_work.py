"""What an external worker does with a task: run the built-in tool it names in a workspace.

Shared by the `a3s-worker` process and the SQS-triggered lane_worker function.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .tools import ToolError, run_tool
from .workspace import LocalWorkspace


def execute_task(task: dict[str, Any], workspace: str | Path) -> dict[str, Any]:
    """A completion body ({success, result?, error?}) for the task, never an exception."""
    try:
        result = run_tool(task["command_type"], task.get("payload") or {}, LocalWorkspace(workspace))
    except ToolError as err:
        return {"success": False, "error": str(err)}
    return {"success": True, "result": result}
