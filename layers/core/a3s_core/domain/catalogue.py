"""The tool catalogue: every tool the kit itself offers a model, with the lane it runs on and what
it may do. Everything that asks "which tools" (agents, lanes, the sandbox, metrics, the tool
schemas a model is shown) reads it here. A tool the kit does not know (a worker's own command
type) still gets a lane from lanes.lane_for's A3S Code table."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["builtin", "delegation", "skill", "approval"]


@dataclass(frozen=True)
class Tool:
    name: str
    lane: str
    kind: Kind
    read_only: bool = False  # reads the workspace, changes nothing
    runs_code: bool = False  # runs what the model wrote: only ever in the sandbox


CATALOGUE: dict[str, Tool] = {t.name: t for t in (
    Tool("read", "query", "builtin", read_only=True),
    Tool("ls", "query", "builtin", read_only=True),
    Tool("glob", "query", "builtin", read_only=True),
    Tool("grep", "query", "builtin", read_only=True),
    Tool("write", "execute", "builtin"),
    Tool("edit", "execute", "builtin"),
    Tool("bash", "execute", "builtin", runs_code=True),
    Tool("task", "execute", "delegation"),
    Tool("parallel_task", "execute", "delegation"),
    Tool("run_team", "execute", "delegation"),
    Tool("skill", "query", "skill", read_only=True),
    Tool("confirm", "control", "approval"),
)}

BUILTIN_TOOLS = frozenset(t.name for t in CATALOGUE.values() if t.kind == "builtin")
READ_ONLY_TOOLS = frozenset(t.name for t in CATALOGUE.values() if t.kind == "builtin" and t.read_only)
CODE_TOOLS = frozenset(t.name for t in CATALOGUE.values() if t.runs_code)
DELEGATION_TOOLS = frozenset(t.name for t in CATALOGUE.values() if t.kind == "delegation")
