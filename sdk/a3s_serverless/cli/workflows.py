"""`a3s workflows ...`: list, show (a progress bar while it runs, then the steps' timeline), cancel."""
from __future__ import annotations

import shutil
import time
from typing import Any

from ..progress import Reporter
from . import timeline
from .output import clip, emit_json, out, pairs, table, when

WORKFLOW_WAIT_MS = 20_000  # the API's longest long-poll


def list_workflows(api: Any, args: Any) -> None:
    query = {"limit": args.limit, **({"session_id": args.session} if args.session else {})}
    body = api.request("GET", "/workflows", query=query)
    if args.json:
        return emit_json(body)
    table(["WORKFLOW", "SESSION", "KIND", "STATUS", "STEPS", "ATTEMPT", "CREATED"],
          ([w["workflow_id"], w["session_id"], w["kind"], w["status"], f"{w['finished']}/{w['total']}",
            w["attempt"], when(w["created_at"])] for w in body["workflows"]),
          "no workflows")


def watch(api: Any, workflow_id: str, view: dict) -> dict:
    """Long-poll the workflow until it is done, drawing its finished steps as a bar on stderr."""
    with Reporter(True, view["total"]) as bar:
        bar.update(view["finished"])
        while not view["done"]:
            view = api.request("GET", f"/workflows/{workflow_id}",
                               query={"wait_ms": WORKFLOW_WAIT_MS, "after_finished": view["finished"]})
            bar.update(view["finished"])
    return view


def show(api: Any, args: Any) -> None:
    view = api.request("GET", f"/workflows/{args.workflow}")
    # People watch a running workflow to its end; a script asks for that with --watch.
    if not view["done"] and (args.watch or not args.json):
        view = watch(api, args.workflow, view)
    steps = api.request("GET", f"/workflows/{args.workflow}/steps")
    if args.json:
        return emit_json({"workflow": view, "steps": steps["steps"]})
    pairs([("workflow", view["workflow_id"]), ("kind", view["kind"]), ("status", view["status"]),
           ("steps", f"{view['finished']}/{view['total']} finished"), ("attempt", view["attempt"]),
           ("tokens", view.get("used_tokens"))])
    out()
    # A step's key is the workflow's own; its outcome names it as the caller did (the spec's task_id).
    names = {i: o["task_id"] for i, o in enumerate(view.get("outcomes") or []) if o and o.get("task_id")}
    rows = [{**s, "key": names.get(s["index"], s["key"])} for s in steps["steps"]]
    width = max(10, min(60, shutil.get_terminal_size((100, 24)).columns - 60))
    for line in timeline.render(rows, int(time.time() * 1000), width, timeline.glyphs()):
        out(line)
    failed = [s for s in rows if s["status"] == "failed"]
    if failed:
        out()
        for step in failed:
            out(f"{step['key']}: {clip(step.get('error') or 'failed', 200)}")


def cancel(api: Any, args: Any) -> None:
    answer = api.request("POST", f"/workflows/{args.workflow}/cancel")
    if args.json:
        return emit_json(answer)
    out(f"workflow {answer['workflow_id']} {answer['status']}")
