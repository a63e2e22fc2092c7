"""The built-in subagents: what each may use and how many steps it gets (REFERENCE.md)."""
from __future__ import annotations

from dataclasses import dataclass

READ_ONLY = frozenset({"read", "ls", "glob", "grep", "search", "web_fetch"})
ALL_TOOLS = frozenset({"read", "write", "edit", "ls", "glob", "grep", "bash"})


@dataclass(frozen=True)
class AgentDef:
    name: str
    description: str
    max_steps: int
    tools: frozenset[str]

    def system_prompt(self) -> str:
        return (f"You are the '{self.name}' subagent: {self.description}. You have your own conversation; "
                "do the task you are given and answer with the result.")


BUILTIN: dict[str, AgentDef] = {a.name: a for a in (
    AgentDef("explore", "explore the codebase with read-only tools", 20, READ_ONLY),
    AgentDef("plan", "plan the work with read-only tools", 30, READ_ONLY),
    AgentDef("general", "a general-purpose agent", 50, ALL_TOOLS),
    AgentDef("verification", "verify the work: read-only tools and bash", 30, READ_ONLY | {"bash"}),
    AgentDef("review", "review the work: read-only tools and bash", 25, READ_ONLY | {"bash"}),
)}
ALIASES = {"general-purpose": "general", "verify": "verification", "verifier": "verification",
           "code-review": "review", "reviewer": "review"}


def resolve_agent(name: str) -> AgentDef | None:
    return BUILTIN.get(ALIASES.get(name, name))
