"""Skills: instruction documents the model can list and load through the `skill` tool.

The kit ships a catalogue (skills/*.md, front matter `name` and `description`); a deployment adds
its own (A3S_SKILLS, JSON {name: {description, content}}) and a session its own
(PUT /sessions/{id}/skills/{name}). The tool is offered when the session asked for the built-in
skills (`builtin_skills`) or has skills of its own or of the deployment; later sources override
earlier ones by name. Only names and descriptions go into the tool's description; a document's
text reaches the model when it loads it.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from a3s_core.domain.items import ToolOutcome

NAME = "skill"
_FRONT = re.compile(r"\A---\n(.*?)\n---\n(.*)\Z", re.S)


@lru_cache(maxsize=1)
def builtin() -> dict[str, dict[str, str]]:
    """The catalogue shipped with the kit."""
    found: dict[str, dict[str, str]] = {}
    for path in sorted((Path(__file__).parent / "skills").glob("*.md")):
        m = _FRONT.match(path.read_text(encoding="utf-8"))
        if not m:
            continue
        meta = dict(line.split(":", 1) for line in m.group(1).splitlines() if ":" in line)
        name = meta.get("name", path.stem).strip()
        found[name] = {"description": meta.get("description", "").strip(), "content": m.group(2).strip()}
    return found


def catalogue(builtin_skills: bool, deployment_json: str, session_skills: dict[str, dict[str, Any]]
              ) -> dict[str, dict[str, str]]:
    """Every skill a run of this session may load (empty: no `skill` tool)."""
    out: dict[str, dict[str, str]] = dict(builtin()) if builtin_skills else {}
    for source in (_deployment(deployment_json), session_skills):
        out.update({name: {"description": str(s.get("description", "")), "content": str(s.get("content", ""))}
                    for name, s in source.items() if isinstance(s, dict)})
    return out


def _deployment(raw: str) -> dict[str, Any]:
    """SkillsJson; a value that is not a JSON object adds nothing (it must never break a run)."""
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def schema(skills: dict[str, dict[str, str]]) -> dict[str, Any]:
    listing = "\n".join(f"- {name}: {s['description']}" for name, s in sorted(skills.items()))
    return {"name": NAME,
            "description": "Load a skill: instructions for a kind of task. Call it with a name before doing "
                           f"such a task. Available skills:\n{listing}",
            "input_schema": {"type": "object", "properties": {"name": {"type": "string", "enum": sorted(skills)}},
                             "required": ["name"]}}


def use(skills: dict[str, dict[str, str]], arguments: dict[str, Any]) -> ToolOutcome:
    name = arguments.get("name")
    if not isinstance(name, str) or name not in skills:
        return ToolOutcome(content=f"unknown skill {name!r}: expected one of {', '.join(sorted(skills)) or 'none'}",
                           is_error=True)
    return ToolOutcome(content=f"# Skill: {name}\n\n{skills[name]['content']}")
