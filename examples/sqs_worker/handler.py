"""A CI runner as a Lambda on the execute lane's SQS queue (see template-snippet.yaml).

The agent's `bash` calls on an external execute lane become tasks; this function claims each one,
runs it if it is a CI command it knows, and reports compact evidence back to the model.
Environment: A3S_ENDPOINT (the kit's ApiUrl), A3S_API_KEY (a key of the tenant it serves),
CI_WORKDIR (a checkout to run in; /tmp by default).
"""
from __future__ import annotations

import os
import shlex
import subprocess

from a3s_serverless.sqs_worker import handle_lane_event

# The first word of a command this runner accepts: the model proposes, the runner decides.
CI_TOOLS = ("make", "npm", "pytest", "cargo", "go")
OUTPUT_TAIL = 4_000  # characters of output the model gets back


def ci_job(task: dict) -> dict:
    """One CI step for a task: {"success", "result"?, "error"?}, as external tasks complete."""
    if task["command_type"] != "bash":
        return {"success": False, "error": f"this runner runs CI commands, not {task['command_type']}"}
    command = str(task["payload"].get("command", ""))
    argv = shlex.split(command)
    if not argv or argv[0] not in CI_TOOLS:
        return {"success": False, "error": f"{command!r} is not a CI command this runner accepts ({', '.join(CI_TOOLS)})"}
    proc = subprocess.run(argv, cwd=os.environ.get("CI_WORKDIR", "/tmp"), capture_output=True, text=True,
                          timeout=max(1, task.get("timeout_ms", 60_000) // 1000))
    output = (proc.stdout + proc.stderr)[-OUTPUT_TAIL:]
    return {"success": True, "result": {"output": output, "command": command, "exit_code": proc.returncode}}


def handler(event: dict, context) -> dict:
    return handle_lane_event(event, ci_job, context=context)
