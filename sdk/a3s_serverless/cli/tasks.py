"""`a3s tasks ...`: pending external tasks, their answers, approvals."""
from __future__ import annotations

import json
from typing import Any

from .output import REFUSED, USAGE, Fail, clip, duration, emit_json, out, table, when

SESSIONS_LIMIT = 200  # the API's largest page of sessions


def _payload(task: dict) -> str:
    payload = task["payload"]
    if task["command_type"] == "confirm" and "tool" in payload:
        return f"{payload['tool']} {json.dumps(payload.get('arguments', {}), ensure_ascii=False)}"
    return json.dumps(payload, ensure_ascii=False)


def list_tasks(api: Any, args: Any) -> None:
    if args.session:
        tasks = api.request("GET", f"/sessions/{args.session}/external-tasks")["tasks"]
    else:  # every session of the tenant (the newest SESSIONS_LIMIT)
        sessions = api.request("GET", "/sessions", query={"limit": SESSIONS_LIMIT})["sessions"]
        tasks = [t for s in sessions
                 for t in api.request("GET", f"/sessions/{s['session_id']}/external-tasks")["tasks"]]
        tasks.sort(key=lambda t: t["created_at"])
    if args.json:
        return emit_json({"tasks": tasks})
    table(["TASK", "SESSION", "LANE", "TYPE", "CREATED", "TIMEOUT", "PAYLOAD"],
          ([t["task_id"], t["session_id"], t["lane"], t["command_type"], when(t["created_at"]),
            duration(t["timeout_ms"]), clip(_payload(t), 80)] for t in tasks), "no pending tasks")


def _complete(api: Any, args: Any, body: dict, done: str) -> None:
    answer = api.request("POST", f"/sessions/{args.session}/external-tasks/{args.task}/complete", body)
    if args.json:
        emit_json(answer)
    elif answer["completed"]:
        out(f"task {args.task} {done}")
    if not answer["completed"]:
        raise Fail(REFUSED, f"task {args.task} was not completed: it is unknown in session {args.session} "
                            "or already finished (the first answer wins)")


def complete(api: Any, args: Any) -> None:
    if args.error is not None:
        return _complete(api, args, {"success": False, "error": args.error}, "failed")
    result = None
    if args.result is not None:
        try:
            result = json.loads(args.result)
        except ValueError as err:
            raise Fail(USAGE, f"--result is not valid JSON: {err}") from None
        if not isinstance(result, dict):
            raise Fail(USAGE, f"--result must be a JSON object, e.g. '{{\"output\": \"done\"}}', got {args.result}")
    _complete(api, args, {"success": True, "result": result}, "completed")


def _confirm_task(api: Any, args: Any) -> dict:
    pending = api.request("GET", f"/sessions/{args.session}/external-tasks")["tasks"]
    task = next((t for t in pending if t["task_id"] == args.task), None)
    if task is None:
        raise Fail(REFUSED, f"no pending task {args.task} in session {args.session} (already answered, timed "
                            "out or cancelled?)")
    if task["command_type"] != "confirm":
        raise Fail(USAGE, f"task {args.task} is a {task['command_type']} task on the {task['lane']} lane, not "
                          "an approval request: answer it with `a3s tasks complete`")
    return task


def approve(api: Any, args: Any) -> None:
    _confirm_task(api, args)
    _complete(api, args, {"success": True, "result": {"approved": True}}, "approved")


def deny(api: Any, args: Any) -> None:
    _confirm_task(api, args)
    # The reason reaches the model: "permission denied for <tool>: <reason>".
    _complete(api, args, {"success": True, "result": {"approved": False}, "error": args.reason}, "denied")
