"""The lane table of A3S Code: which lane a tool runs on, lane priority and default concurrency."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from a3s_core.domain.catalogue import CATALOGUE
from a3s_core.domain.lane_names import LANES as LANES  # re-exported: the lane table is read here

Lane = Literal["control", "query", "execute", "generate"]
Mode = Literal["internal", "external", "hybrid"]

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


class LaneHandler(BaseModel):
    mode: Mode = "internal"
    timeout_ms: int = Field(60000, ge=1, le=86_400_000)
    # Opt-in to run the tool in-process when the external worker does not answer in time.
    on_timeout: Literal["error", "internal"] = "error"
