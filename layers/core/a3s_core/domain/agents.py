"""The built-in subagents: what each may use and how many steps it gets (docs/reference.md)."""
from __future__ import annotations

from dataclasses import dataclass

from a3s_core.domain.catalogue import BUILTIN_TOOLS, READ_ONLY_TOOLS

READ_ONLY = READ_ONLY_TOOLS
ALL_TOOLS = BUILTIN_TOOLS


@dataclass(frozen=True)
class AgentDef:
    name: str
    description: str
    max_steps: int
    tools: frozenset[str]
    system: str | None = None  # a user-defined agent's own system prompt

    def system_prompt(self) -> str:
        return self.system or (f"You are the '{self.name}' subagent: {self.description}. You have your own "
                               "conversation; do the task you are given and answer with the result.")


BUILTIN: dict[str, AgentDef] = {a.name: a for a in (
    AgentDef("explore", "explore the codebase with read-only tools", 20, READ_ONLY),
    AgentDef("plan", "plan the work with read-only tools", 30, READ_ONLY),
    AgentDef("general", "a general-purpose agent", 50, ALL_TOOLS),
    AgentDef("verification", "verify the work: read-only tools and bash", 30, READ_ONLY | {"bash"}),
    AgentDef("review", "review the work: read-only tools and bash", 25, READ_ONLY | {"bash"}),
)}
ALIASES = {"general-purpose": "general", "verify": "verification", "verifier": "verification",
           "code-review": "review", "reviewer": "review"}


def from_spec(name: str, spec: dict) -> AgentDef:
    """A user-defined agent: {description, system_prompt, tools, max_steps} (tools: built-in names)."""
    return AgentDef(name=name, description=spec.get("description", ""), max_steps=int(spec.get("max_steps", 50)),
                    tools=frozenset(spec.get("tools") or ALL_TOOLS) & ALL_TOOLS, system=spec.get("system_prompt"))


def deployment_agents(raw: str) -> dict[str, AgentDef]:
    """Agents every session of the deployment may use: A3S_AGENTS, a JSON object name -> spec."""
    import json

    return {name: from_spec(name, spec) for name, spec in (json.loads(raw) if raw else {}).items()}


def resolve_agent(name: str, session_agents: dict[str, dict] | None = None,
                  deployment: dict[str, AgentDef] | None = None) -> AgentDef | None:
    """The session's own agents first, then the deployment's, then the built-in ones."""
    if session_agents and name in session_agents:
        return from_spec(name, session_agents[name])
    if deployment and name in deployment:
        return deployment[name]
    return BUILTIN.get(ALIASES.get(name, name))
