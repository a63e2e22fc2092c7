"""`a3s sessions list`: the tenant's sessions, newest first."""
from __future__ import annotations

from typing import Any

from .output import emit_json, table, when


def list_sessions(api: Any, args: Any) -> None:
    body = api.request("GET", "/sessions", query={"limit": args.limit})
    if args.json:
        return emit_json(body)
    table(["SESSION", "MODEL", "PERMISSIVE", "CLOSED", "WORKSPACE", "CREATED"],
          ([s["session_id"], s["model"], "yes" if s["permissive"] else "no", "yes" if s["closed"] else "no",
            s["workspace"], when(s["created_at"])] for s in body["sessions"]), "no sessions")
