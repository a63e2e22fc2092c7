"""The `a3s` parser and what each outcome exits with.

    a3s runs list --session S          a3s workflows show WF --watch
    a3s tasks approve SESSION TASK     a3s keys create --tenant acme --table T
"""
from __future__ import annotations

import argparse
import http.client
import os
import sys
from collections.abc import Callable
from typing import Any

from ..errors import A3SClientError
from . import admin, runs, sessions, settings, tasks, workflows
from .output import INTERRUPTED, REFUSED, UNAVAILABLE, Fail

EPILOG = """endpoint and key: --endpoint/--api-key, else A3S_ENDPOINT/A3S_API_KEY, else the config file (--config).
exit codes: 0 ok, 1 the service refused (4xx), 2 usage or configuration, 3 cannot connect or the service failed (5xx),
130 interrupted."""


def _common() -> argparse.ArgumentParser:
    """Options every command takes, before or after its name (SUPPRESS: a later one does not unset an earlier)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--endpoint", default=argparse.SUPPRESS, metavar="URL", help="the HTTP API (default: $A3S_ENDPOINT)")
    p.add_argument("--api-key", default=argparse.SUPPRESS, metavar="KEY", help="default: $A3S_API_KEY")
    p.add_argument("--config", default=argparse.SUPPRESS, metavar="PATH",
                   help="an HCL agent config (endpoint, api_key)")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="the API's JSON bodies, for scripts")
    return p


def build_parser() -> argparse.ArgumentParser:
    common = _common()  # the commands' copy; the top level's must be another (set_defaults changes actions)
    parser = argparse.ArgumentParser(prog="a3s", parents=[_common()], epilog=EPILOG,
                                     description="Operate an a3s-serverless deployment over its HTTP API.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(endpoint=None, api_key=None, config=None, json=False)
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")

    def group(name: str, help: str) -> Any:
        return groups.add_parser(name, help=help).add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(sub: Any, name: str, fn: Callable, help: str, http: bool = True,
                **defaults: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help, description=help)
        p.set_defaults(fn=fn, http=http, **defaults)
        return p

    r = group("runs", "runs of the tenant's sessions")
    command(r, "list", runs.list_runs, "list runs (oldest first)").add_argument("--session", metavar="S")
    command(r, "show", runs.show, "a run's state and its text").add_argument("run", metavar="RUN")
    p = command(r, "events", runs.events, "a run's events (--json: one JSON object a line)")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--follow", "-f", action="store_true", help="stream until the run ends")
    for action, help in (("pause", "pause at the next turn boundary"), ("resume", "resume a paused run"),
                         ("cancel", "cancel the run, its child runs and its pending tasks")):
        command(r, action, runs.control, help, action=action).add_argument("run", metavar="RUN")
    p = command(r, "inject", runs.control, "add a user message the model sees on its next turn", action="inject")
    p.add_argument("run", metavar="RUN")
    p.add_argument("prompt", metavar="PROMPT")

    w = group("workflows", "parallel, pipeline and resumable workflows")
    p = command(w, "list", workflows.list_workflows, "list workflows (newest first)")
    p.add_argument("--session", metavar="S")
    p.add_argument("--limit", type=int, default=50, help="at most this many (1-200, default 50)")
    p = command(w, "show", workflows.show, "a workflow's steps as a timeline (a progress bar while it runs)")
    p.add_argument("workflow", metavar="WF")
    p.add_argument("--watch", action="store_true", help="wait for a running workflow to end (also with --json)")
    command(w, "cancel", workflows.cancel, "cancel a running workflow").add_argument("workflow", metavar="WF")

    t = group("tasks", "pending external tasks and approvals")
    command(t, "list", tasks.list_tasks, "pending tasks of a session, or of every session").add_argument(
        "--session", metavar="S")
    p = command(t, "complete", tasks.complete, "answer a task: a result, or an error that fails it")
    p.add_argument("session", metavar="SESSION")
    p.add_argument("task", metavar="TASK")
    answer = p.add_mutually_exclusive_group()
    answer.add_argument("--result", metavar="JSON", help='the result object, e.g. \'{"output": "done"}\'')
    answer.add_argument("--error", metavar="MSG", help="fail the task with this message")
    for name, fn, help in (("approve", tasks.approve, "let the tool of a confirm task run"),
                           ("deny", tasks.deny, "refuse the tool of a confirm task")):
        p = command(t, name, fn, help)
        p.add_argument("session", metavar="SESSION")
        p.add_argument("task", metavar="TASK")
    p.add_argument("--reason", default="denied by the operator", help="what the model is told")

    s = group("sessions", "the tenant's sessions")
    p = command(s, "list", sessions.list_sessions, "list sessions (newest first)")
    p.add_argument("--limit", type=int, default=50, help="at most this many (1-200, default 50)")

    k = group("keys", "API keys of a deployment (needs AWS credentials and boto3)")
    p = command(k, "create", admin.create_key, "mint an API key for a tenant; prints it once", http=False)
    p.add_argument("--tenant", required=True)
    p.add_argument("--table", help="the stack's TableName output (default: $A3S_TABLE)")
    p.add_argument("--region", help="default: the AWS SDK's (AWS_REGION, profile)")

    p = groups.add_parser("dev", parents=[common], help="the local stack as an HTTP API (`make dev`)",
                          description="The embedded stack as an HTTP API on 127.0.0.1; needs the [local] extra.")
    p.set_defaults(fn=admin.dev, http=False)
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8787)), help="0 picks a free port")
    p.add_argument("--workspace-root", help="where workspaces that do not exist are made")
    return parser


def _fail(code: int, message: str) -> int:
    print(f"a3s: {message}", file=sys.stderr, flush=True)
    return code


def _run(argv: list[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit:  # argparse has printed usage (2) or help (0)
        return int(exit.code or 0)
    try:
        if not args.http:
            return args.fn(args) or 0
        api = settings.transport(args.endpoint, args.api_key, args.config)
        return args.fn(api, args) or 0
    except Fail as err:
        return _fail(err.code, err.message)
    except A3SClientError as err:
        if err.status == 0:  # the transport's "unreachable"
            return _fail(UNAVAILABLE, err.message)
        if err.status >= 500:
            return _fail(UNAVAILABLE, f"the service failed (HTTP {err.status} {err.code}): {err.message}")
        hint = "; check the API key" if err.status in (401, 403) else ""
        return _fail(REFUSED, f"{err.code} (HTTP {err.status}): {err.message}{hint}")
    except BrokenPipeError:
        raise
    except (OSError, http.client.HTTPException) as err:  # a connection dropped or timed out mid-answer
        return _fail(UNAVAILABLE, f"connection to the service failed: {err}")


def main(argv: list[str] | None = None) -> int:
    try:
        return _run(argv)
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:  # `a3s ... | head`: the reader has gone; nothing left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        return 0
