"""AgentOrchestrator: control of any run, top-level or a child, over HTTP.

Unlike A3S Code's, these act on the run itself: pause takes effect at the next turn boundary
and frees all compute, resume continues from the checkpoint, cancel cascades to child runs and
pending external tasks, and inject_prompt adds a user message the model sees on its next turn.
"""
from __future__ import annotations

from typing import Any

from .transport import Transport


def _id(value: Any, name: str = "agent id") -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string (a run id), got {value!r}")
    return value


class AgentOrchestrator:
    def __init__(self, transport: Transport | None = None) -> None:
        """`AgentOrchestrator()` (as A3S Code writes it) controls the default agent's runs: the
        deployment at A3S_ENDPOINT with A3S_API_KEY, else the embedded stack (Agent.default())."""
        if transport is None:
            from .agent import Agent  # lazy: agent.py imports this module

            transport = Agent.default()._t
        elif not callable(getattr(transport, "request", None)):
            raise ValueError(f"transport must have a request() method (e.g. HttpTransport), got {transport!r}")
        self._t = transport

    def list(self, session_id: str | None = None) -> list[dict[str, Any]]:
        """Runs of this tenant (of one session if given), oldest first, with status and parent."""
        query = {"session_id": _id(session_id, "session_id")} if session_id is not None else None
        return self._t.request("GET", "/runs", query=query)["runs"]

    def _control(self, run_id: str, action: str, body: dict | None = None) -> dict[str, Any]:
        return self._t.request("POST", f"/runs/{_id(run_id)}/{action}", body)

    def pause_agent(self, run_id: str) -> dict[str, Any]:
        return self._control(run_id, "pause")

    def resume_agent(self, run_id: str) -> dict[str, Any]:
        return self._control(run_id, "resume")

    def cancel_agent(self, run_id: str) -> dict[str, Any]:
        return self._control(run_id, "cancel")

    def inject_prompt(self, run_id: str, text: str) -> dict[str, Any]:
        if not isinstance(text, str) or not text.strip():
            raise ValueError("inject_prompt needs a non-empty prompt")
        return self._control(run_id, "inject", {"prompt": text})
