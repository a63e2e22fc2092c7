"""The delegation tools a top-level run's model may call: task, parallel_task, run_team.

Each starts a workflow of child runs whose end wakes the parent run (it is suspended meanwhile,
holding no compute); the tool's result is then read from the workflow's outcomes.
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Protocol

from a3s_core.domain.items import EVENT_OUTPUT_CHARS, PendingCall, Run, Session, ToolOutcome, WorkflowStatus
from a3s_core.domain.outcomes import StepOutcome, TeamState, TeamTask
from a3s_core.engine import workflows
from a3s_core.workspace import tenant as tenant_workspace

if TYPE_CHECKING:
    from a3s_core.runtime import Runtime


class Turn(Protocol):
    """What a delegation tool may use of the turn that called it: the runtime, the run (whose
    `children` and `background` it records), its session, and the run's event stream."""

    rt: Runtime
    run: Run
    session: Session

    def emit(self, type_: str, **data: Any) -> None: ...

OUTPUT_HEAD = OUTPUT_TAIL = 4_000

_SPEC: dict[str, Any] = {"type": "object", "properties": {
    "agent": {"type": "string", "description": "explore, plan, general, verification or review"},
    "description": {"type": "string"}, "prompt": {"type": "string"},
    "max_steps": {"type": "integer", "minimum": 1}, "output_schema": {"type": "object"},
    "workspace": {"type": "string"}}, "required": ["agent", "prompt"]}

SCHEMAS: dict[str, dict] = {
    "task": {"name": "task", "description": "Delegate one focused piece of work to a subagent with its own "
             "conversation. background=true returns at once.",
             "input_schema": {**_SPEC, "properties": {**_SPEC["properties"], "background": {"type": "boolean"}}}},
    "parallel_task": {"name": "parallel_task", "description": "Run 2 to 32 independent subagent tasks at once.",
                      "input_schema": {"type": "object", "properties": {
                          "tasks": {"type": "array", "items": _SPEC, "minItems": 2, "maxItems": 32},
                          "allow_partial_failure": {"type": "boolean"},
                          "min_success_count": {"type": "integer", "minimum": 1},
                          "timeout_ms": {"type": "integer", "minimum": 1000}}, "required": ["tasks"]}},
    "run_team": {"name": "run_team", "description": "A lead splits the goal into tasks, workers do them in "
                 "parallel, a reviewer approves or rejects each; rejected work is redone with the feedback.",
                 "input_schema": {"type": "object", "properties": {
                     "goal": {"type": "string"}, "lead_agent": {"type": "string"},
                     "worker_agent": {"type": "string"}, "reviewer_agent": {"type": "string"},
                     "max_steps": {"type": "integer", "minimum": 1}, "max_rounds": {"type": "integer", "minimum": 1}},
                     "required": ["goal"]}},
}
TOOLS = frozenset(SCHEMAS)

LEAD_SCHEMA = {"type": "object", "required": ["tasks"], "properties": {"tasks": {
    "type": "array", "minItems": 1, "maxItems": 32, "items": {
        "type": "object", "required": ["id", "description"],
        "properties": {"id": {"type": "string"}, "description": {"type": "string"}}}}}}
VERDICT_SCHEMA = {"type": "object", "required": ["approved", "feedback"],
                  "properties": {"approved": {"type": "boolean"}, "feedback": {"type": "string"}}}


def cut(text: str, run_id: str | None) -> str:
    """Long child output: head and tail, the full text kept in the child run."""
    if len(text) <= OUTPUT_HEAD + OUTPUT_TAIL:
        return text
    omitted = len(text) - OUTPUT_HEAD - OUTPUT_TAIL
    return (f"{text[:OUTPUT_HEAD]}\n[... {omitted} characters omitted; the full output is run "
            f"{run_id}'s text (GET /runs/{run_id})]\n{text[-OUTPUT_TAIL:]}")


def step_spec(args: dict[str, Any], task_id: str) -> dict[str, Any]:
    spec = {"task_id": task_id, "agent": args.get("agent") or "general",
            "description": args.get("description", ""), "prompt": args.get("prompt", "")}
    for key in ("max_steps", "output_schema", "workspace"):
        if args.get(key) is not None:
            spec[key] = args[key]
    return spec


def describe(outcome: StepOutcome | None, task_id: str) -> str:
    if outcome is None:
        return f"Task failed (task_id={task_id}): it did not finish (timed out or cancelled)"
    word = "completed" if outcome.success else "failed"
    ids = f"agent={outcome.agent}, task_id={task_id}, session_id={outcome.session_id}"
    if outcome.run_id:
        ids += f", run_id={outcome.run_id}"
    return f"Task {word} ({ids})\n{cut(outcome.output, outcome.run_id)}"


def task_result(outcomes: list[StepOutcome | None], call: PendingCall) -> ToolOutcome:
    outcome = outcomes[0] if outcomes else None
    return ToolOutcome(content=describe(outcome, call.id), is_error=not (outcome and outcome.success))


def parallel_result(outcomes: list[StepOutcome | None], call: PendingCall) -> ToolOutcome:
    args = call.arguments
    ok = sum(1 for o in outcomes if o and o.success)
    if args.get("allow_partial_failure"):
        success = ok >= int(args.get("min_success_count") or 1)
    else:
        success = ok == len(outcomes)
    lines = [f"parallel_task {'succeeded' if success else 'failed'}: {ok} of {len(outcomes)} tasks succeeded"]
    for i, o in enumerate(outcomes):
        lines.append(f"--- [{i + 1}] " + describe(o, f"{call.id}-{i}"))
    return ToolOutcome(content="\n".join(lines), is_error=not success)


def check(call: PendingCall) -> str | None:
    """A refusal for arguments the schema cannot express; None if they are fine."""
    args = call.arguments
    if call.name in ("task",) and not (isinstance(args.get("prompt"), str) and args["prompt"].strip()):
        return "task needs a prompt"
    if call.name == "parallel_task":
        tasks = args.get("tasks")
        if not isinstance(tasks, list) or not 2 <= len(tasks) <= 32:
            return "parallel_task needs between 2 and 32 tasks"
        if any(not isinstance(t, dict) or not str(t.get("prompt", "")).strip() for t in tasks):
            return "every parallel_task task needs a prompt"
    if call.name == "run_team" and not str(args.get("goal", "")).strip():
        return "run_team needs a goal"
    return None


def workspace_refusal(turns: Turn, call: PendingCall) -> str | None:
    """A child may work in another workspace of this tenant's, never outside them."""
    tasks = call.arguments.get("tasks") if call.name == "parallel_task" else [call.arguments]
    for args in tasks or []:
        if isinstance(args, dict) and args.get("workspace") is not None:
            refused = tenant_workspace.refusal(turns.rt, turns.run.tenant, args["workspace"])
            if refused:
                return refused
    return None


def team_prompt(kind: str, goal: str, task: TeamTask | None = None, work: str = "", feedback: str = "") -> str:
    if kind == "lead":
        return (f"You lead a team. Break this goal into independent tasks for workers.\nGoal: {goal}\n"
                "Return the task list as JSON.")
    if task is None:
        raise ValueError(f"a {kind} prompt is about one task; none was given")
    if kind == "worker":
        redo = f"\nA reviewer rejected your previous attempt. Their feedback:\n{feedback}\n" if feedback else ""
        return f"Team goal: {goal}\nYour task ({task.id}): {task.description}{redo}"
    return (f"Team goal: {goal}\nReview the work done for task ({task.id}): {task.description}\n"
            f"--- work ---\n{work}\n--- end ---\nApprove it or reject it with feedback, as JSON.")


def team_summary(state: TeamState) -> ToolOutcome:
    tasks = state.tasks
    approved = [t for t in tasks if t.approved]
    lines = [f"run_team {'completed' if len(approved) == len(tasks) and tasks else 'incomplete'}: "
             f"{len(approved)} of {len(tasks)} tasks approved in {state.round} round(s)"]
    if state.error:
        lines.append(f"error: {state.error}")
    for t in tasks:
        verdict = "approved" if t.approved else "not approved"
        lines.append(f"--- [{t.id}] {t.description} ({verdict})\n{cut(t.work or '', t.run_id)}")
        if t.feedback and not t.approved:
            lines.append(f"reviewer: {t.feedback}")
    return ToolOutcome(content="\n".join(lines), is_error=len(approved) != len(tasks) or not tasks)


def _member_steps(args: dict[str, Any]) -> dict[str, Any]:
    return {"max_steps": args["max_steps"]} if isinstance(args.get("max_steps"), int) else {}


# -- the tools at work, on a run the driver holds (`turns`: its _Turns) ---------------------------
def delegate(turns: Turn, call: PendingCall) -> str | None:
    """Start or follow a delegation tool's child workflow: the id to wait on, or None once the
    call has its outcome."""
    run = turns.run
    if run.parent is not None or run.allowed_tools is not None:
        call.outcome = ToolOutcome(content=f"{call.name} is not available to subagents (no nesting)",
                                   is_error=True)
        return None
    if call.name == "run_team":
        return team(turns, call)
    if call.workflow_id is None:
        problem = check(call) or workspace_refusal(turns, call)
        if problem:
            call.outcome = ToolOutcome(content=problem, is_error=True)
            return None
        args = call.arguments
        if call.name == "task":
            specs = [step_spec(args, call.id)]
        else:
            specs = [step_spec(t, f"{call.id}-{i}") for i, t in enumerate(args["tasks"])]
        background = call.name == "task" and bool(args.get("background"))
        timeout_ms = args.get("timeout_ms") if call.name == "parallel_task" else None
        call.workflow_id = child_workflow(turns, call, "0", specs, wake_me=not background, timeout_ms=timeout_ms)
        if background:
            run.background.append(call.workflow_id)
            call.outcome = ToolOutcome(content=(
                f"Task started in background (agent={specs[0]['agent']}, workflow_id={call.workflow_id}); "
                f"its outcome will be at GET /workflows/{call.workflow_id}"))
            return None
    status, outcomes = workflows.results(turns.rt, run.tenant, call.workflow_id)
    if status == WorkflowStatus.RUNNING:
        return call.workflow_id
    turns.emit("subagent_end", tool=call.name, workflow_id=call.workflow_id, status=status)
    result = task_result if call.name == "task" else parallel_result
    call.outcome = result(outcomes, call)
    return None

def report_background(turns: Turn) -> None:
    """A background task that has ended shows up in this run's history at its next turn."""
    for workflow_id in list(turns.run.background):
        status, outcomes = workflows.results(turns.rt, turns.run.tenant, workflow_id)
        if status != WorkflowStatus.RUNNING:
            outcome = (outcomes or [None])[0]
            turns.emit("subagent_end", tool="task", workflow_id=workflow_id, status=status,
                      background=True, success=bool(outcome and outcome.success),
                      output=(outcome.output if outcome else "")[:EVENT_OUTPUT_CHARS])
            turns.run.background.remove(workflow_id)

def child_workflow(turns: Turn, call: PendingCall, phase: str, specs: list[dict], wake_me: bool = True,
                   timeout_ms: int | None = None) -> str:
    run = turns.run
    wid = "wf-" + hashlib.sha256(f"{run.run_id}/{call.id}/{phase}".encode()).hexdigest()[:20]
    workflows.start(turns.rt, run.tenant, run.session_id, "parallel", specs, turns.session.max_parallel_tasks,
                    workflow_id=wid, parent_run_id=run.run_id if wake_me else None, timeout_ms=timeout_ms)
    if wid not in run.children:
        run.children.append(wid)
    turns.emit("subagent_start", tool=call.name, workflow_id=wid, phase=phase,
              agents=[s["agent"] for s in specs])
    return wid

def team(turns: Turn, call: PendingCall) -> str | None:
    """run_team as a small state machine over child workflows: lead -> workers -> reviewers,
    rejected work redone with the reviewer's feedback, at most max_rounds rounds."""
    args = call.arguments
    state = call.team
    if state is None:
        problem = check(call) or workspace_refusal(turns, call)
        if problem:
            call.outcome = ToolOutcome(content=problem, is_error=True)
            return None
        spec = {"task_id": "lead", "agent": args.get("lead_agent") or "general",
                "prompt": team_prompt("lead", args["goal"]),
                "output_schema": LEAD_SCHEMA, **_member_steps(args)}
        state = call.team = TeamState(wid=child_workflow(turns, call, "lead", [spec]))
    status, outcomes = workflows.results(turns.rt, turns.run.tenant, state.wid)
    if status == WorkflowStatus.RUNNING:
        return state.wid
    goal, tasks = args["goal"], state.tasks
    if state.phase == "lead":
        lead = outcomes[0] if outcomes else None
        if not lead or not lead.success or not isinstance(lead.structured, dict):
            state.error = f"the lead did not produce a task list: {lead.output if lead else 'no outcome'}"
            call.outcome = team_summary(state)
            return None
        seen: set[str] = set()
        for i, t in enumerate(lead.structured["tasks"][:32]):
            tid = str(t.get("id") or f"t{i + 1}")
            tid = tid if tid not in seen else f"{tid}-{i + 1}"
            seen.add(tid)
            tasks.append(TeamTask(id=tid, description=str(t.get("description", ""))))
    elif state.phase == "work":
        todo = [t for t in tasks if not t.approved]
        for t, o in zip(todo, outcomes, strict=False):
            t.work = (o.output if o else None) or "(no output)"
            t.run_id = o.run_id if o else None
        state.phase = "review"
        specs = [{"task_id": f"review-{t.id}", "agent": args.get("reviewer_agent") or "general",
                  "prompt": team_prompt("review", goal, t, work=t.work or ""),
                  "output_schema": VERDICT_SCHEMA, **_member_steps(args)} for t in todo]
        state.wid = child_workflow(turns, call, f"review-{state.round}", specs)
        return state.wid
    else:  # review
        todo = [t for t in tasks if not t.approved]
        for t, o in zip(todo, outcomes, strict=False):
            verdict = o.structured if o and o.success else None
            t.approved = isinstance(verdict, dict) and verdict.get("approved") is True
            t.feedback = verdict.get("feedback", "") if isinstance(verdict, dict) else \
                f"the review failed: {o.output if o else 'no outcome'}"
    todo = [t for t in tasks if not t.approved]
    if not todo or state.round >= int(args.get("max_rounds") or 3):
        turns.emit("subagent_end", tool="run_team", workflow_id=state.wid, rounds=state.round)
        call.outcome = team_summary(state)
        return None
    state.round += 1
    state.phase = "work"
    specs = [{"task_id": t.id, "agent": args.get("worker_agent") or "general",
              "prompt": team_prompt("worker", goal, t, feedback=t.feedback or ""),
              **_member_steps(args)} for t in todo]
    state.wid = child_workflow(turns, call, f"work-{state.round}", specs)
    return state.wid
