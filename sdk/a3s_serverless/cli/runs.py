"""`a3s runs ...`: list, show, read the events of, and steer runs."""
from __future__ import annotations

import json
from typing import Any

from ..push import follow_run
from .output import REFUSED, Fail, clip, clock, emit_json, out, pairs, table, when

_EVENT_KEYS = {"seq", "type", "ts"}


def list_runs(api: Any, args: Any) -> None:
    body = api.request("GET", "/runs", query={"session_id": args.session} if args.session else None)
    if args.json:
        return emit_json(body)
    table(["RUN", "SESSION", "STATUS", "TURNS", "TOOLS", "TOKENS", "AGENT", "UPDATED"],
          ([r["run_id"], r["session_id"], r["status"], r["turns"], r["tool_calls_count"], r["total_tokens"],
            r["agent"], when(r["updated_at"])] for r in body["runs"]), "no runs")


def show(api: Any, args: Any) -> None:
    run = api.request("GET", f"/runs/{args.run}")
    if args.json:
        return emit_json(run)
    parent = run.get("parent")
    pairs([("run", run["run_id"]), ("session", run["session_id"]),
           ("status", run["status"] + (f" ({run['stop_reason']})" if run.get("stop_reason") else "")),
           ("agent", run.get("agent")),
           ("turns", run["turns"]), ("tool calls", run["tool_calls_count"]),
           ("tokens", f"{run['total_tokens']} (prompt {run['prompt_tokens']}, "
                      f"completion {run['completion_tokens']})"),
           ("created", when(run["created_at"])), ("updated", when(run["updated_at"])),
           ("parent", f"workflow {parent['workflow_id']} step {parent['key']} (attempt {parent['attempt']})"
            if parent else None),
           ("workflows", ", ".join(run["children"]) or None), ("error", run.get("error"))])
    if run["text"]:
        out()
        out(run["text"])


def _event_line(event: dict) -> str:
    rest = " ".join(f"{k}={v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}"
                    for k, v in event.items() if k not in _EVENT_KEYS)
    return f"{event['seq']:>5}  {clock(event['ts'])}  {event['type']:<24} {clip(rest, 160)}".rstrip()


def events(api: Any, args: Any) -> None:
    """Every event so far, or with --follow every event until the run ends: each once, in order
    (followed over the WebSocket API where there is one)."""
    if args.follow:
        for event in follow_run(api, args.run):
            out(json.dumps(event, ensure_ascii=False, separators=(",", ":")) if args.json else _event_line(event))
        if not args.json:
            out(f"run {args.run} {api.request('GET', f'/runs/{args.run}')['status']}")
        return
    after = 0
    while True:
        page = api.request("GET", f"/runs/{args.run}/events", query={"after": after, "wait_ms": 0})
        for event in page["events"]:
            out(json.dumps(event, ensure_ascii=False, separators=(",", ":")) if args.json else _event_line(event))
        after = page["next"]
        if not page["events"]:  # a page is empty once there is nothing more so far
            break


def control(api: Any, args: Any) -> None:
    body = {"prompt": args.prompt} if args.action == "inject" else None
    answer = api.request("POST", f"/runs/{args.run}/{args.action}", body)
    if args.json:
        emit_json(answer)
    else:
        verdict = "accepted" if answer["accepted"] else "not accepted"
        out(f"{args.action} {answer['run_id']}: {verdict} (run {answer['status']})")
    if not answer["accepted"]:
        raise Fail(REFUSED, f"the service did not accept {args.action} for run {args.run}")
