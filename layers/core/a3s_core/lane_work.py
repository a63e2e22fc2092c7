"""What an external worker does with a task: run the built-in tool it names in a workspace.

Shared by the `a3s-worker` process and the SQS-triggered lane_worker function.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from .tools import ToolError, run_tool
from .workspace import LocalWorkspace, Workspace
from .workspace_s3 import S3Workspace


def execute_task(task: dict[str, Any], workspace: str | Path | Workspace) -> dict[str, Any]:
    """A completion body ({success, result?, error?}) for the task, never an exception.

    On an S3 workspace the tool runs on a local copy (so `bash` works in a worker Lambda), and
    what it changed is written back."""
    ws = LocalWorkspace(workspace) if isinstance(workspace, (str, Path)) else workspace
    if isinstance(ws, S3Workspace):
        with tempfile.TemporaryDirectory(prefix="a3s-task-") as tmp:
            before = ws.snapshot_to(Path(tmp))
            outcome = _run(task, LocalWorkspace(tmp))
            ws.sync_from(Path(tmp), before)
            return outcome
    return _run(task, ws)


def _run(task: dict[str, Any], ws: Workspace) -> dict[str, Any]:
    try:
        result = run_tool(task["command_type"], task.get("payload") or {}, ws)
    except ToolError as err:
        return {"success": False, "error": str(err)}
    return {"success": True, "result": result}
