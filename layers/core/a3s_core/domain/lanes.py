"""The lane table of A3S Code: which lane a tool runs on, lane priority and default concurrency;
and the lane handler modes, each a policy the driver reads (the one place a mode is defined)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from a3s_core.domain.catalogue import CATALOGUE
from a3s_core.domain.lane_names import LANES as LANES  # re-exported: the lane table is read here

Lane = Literal["control", "query", "execute", "generate"]
Mode = Literal["internal", "external", "hybrid"]  # the API's enum: keep it the keys of MODE_POLICIES

DEFAULT_CONCURRENCY = {"control": 2, "query": 4, "execute": 2, "generate": 1}

_QUERY_TOOLS = {"read", "ls", "list_files", "search", "grep", "glob", "web_fetch", "web_search", "skill"}
_CONTROL_TOOLS = {"confirm"}


def lane_for(tool: str) -> str:
    """The catalogue's lane for the kit's own tools; for any other name (a worker's own command
    type) A3S Code's table: query tools (and code_*) are read-only, everything else executes."""
    known = CATALOGUE.get(tool)
    if known is not None:
        return known.lane
    if tool in _CONTROL_TOOLS:
        return "control"
    if tool in _QUERY_TOOLS or tool.startswith("code_"):
        return "query"
    return "execute"


@dataclass(frozen=True)
class ModePolicy:
    """What a lane handler mode means to the driver: the questions it asks of a lane, answered."""

    runs_here: bool   # the kit runs the lane's tools in-process; otherwise each call becomes an external task
    announces: bool   # in-process runs are also announced as external task events (hybrid=true)
    has_queue: bool   # workers may poll the session's task queue for it (Session.has_queue)


MODE_POLICIES: dict[str, ModePolicy] = {
    "internal": ModePolicy(runs_here=True, announces=False, has_queue=False),
    "external": ModePolicy(runs_here=False, announces=False, has_queue=True),
    "hybrid": ModePolicy(runs_here=True, announces=True, has_queue=True),
}
MODES: tuple[str, ...] = tuple(MODE_POLICIES)


class LaneHandler(BaseModel):
    mode: Mode = "internal"
    timeout_ms: int = Field(60000, ge=1, le=86_400_000)
    # Opt-in to run the tool in-process when the external worker does not answer in time.
    on_timeout: Literal["error", "internal"] = "error"

    @property
    def policy(self) -> ModePolicy:
        return MODE_POLICIES[self.mode]
